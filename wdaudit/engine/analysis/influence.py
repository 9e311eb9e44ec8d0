"""Stage 3: parameters that cannot change any output at all.

Two ways a parameter has no effect: no path from it to an output, or every path carries it as
an additive term that something downstream removes exactly (a conv bias right before
BatchNorm, the key bias of attention).  How each op carries and removes additive terms is the
op table's ``offsets`` rule (:mod:`wdaudit.ops.offsets`); this stage walks the graph with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from torch import fx

from ...ops.leaf_modules import OwnTensor
from ...ops.offsets import Absorption, Info, OffsetCall, TupleInfo, deps
from ...ops.record import Op
from .graph import ModelGraph
from .walk import GraphWalk


@dataclass(frozen=True)
class Influence:
    graph: ModelGraph
    no_effect: frozenset[str]
    absorbed_at: Mapping[str, Absorption]  # parameter -> the node and mechanism removing it
    # (add/sub node, operand) whose parameter-free summand is removed before every output:
    # the model computes the same function with it at 0, so it pins no degree
    dead_summands: frozenset[tuple[str, str]] = frozenset()
    failures: tuple[str, ...] = ()  # nodes the walk could not follow (non-strict mode)


def analyse(graph: ModelGraph, strict: bool = False) -> Influence:
    walk = _InfluenceWalk(graph, strict)
    walk.run()
    reaching: set[str] = set()
    for name in graph.outputs + graph.read:
        reaching |= deps(walk.env.get(name))
    no_effect = frozenset(p for p in graph.program.parameters if p not in reaching)
    absorbed = {p: n for p, n in walk.absorbed.items() if p in no_effect}
    dead = frozenset(site for pseudo, site in walk.summands.items() if pseudo not in reaching)
    return Influence(graph, no_effect, absorbed, dead, tuple(walk.failures))


class _InfluenceWalk(GraphWalk):
    stage = "influence"

    def __init__(self, graph: ModelGraph, strict: bool):
        super().__init__(graph, strict)
        self.absorbed: dict[str, Absorption] = {}
        self.summands: dict[str, tuple[str, str]] = {}  # pseudo-parameter -> (node, operand)

    def leaf(self, node: fx.Node) -> Info:
        p = self.program.params.get(node.name)
        if p is None:
            return Info()
        shape = self.program.shape(node.name)
        # a parameter is constant along its size-1 axes: a bias broadcast over the batch
        offsets = {p: frozenset(i for i, s in enumerate(shape) if s == 1)} if shape else {}
        return Info(frozenset({p}), offsets)

    def getitem(self, node: fx.Node) -> Info:
        source = node.args[0]
        value = self.env.get(source.name) if isinstance(source, fx.Node) else None
        if isinstance(value, TupleInfo) and isinstance(node.args[1], int):
            return value.first if node.args[1] == 0 else value.rest
        return Info(deps(value))

    def apply(self, node: fx.Node, op: Op, args: dict[str, Any], where) -> Any:
        leaf = self.program.leaves.get(node.name)
        own = {k: _own(v, leaf) for k, v in args.items() if isinstance(v, OwnTensor)}
        call = OffsetCall(node.name, {**args, **own}, tuple(node.args), self.env,
                          self.program.shape, self.program.params, self._everything(node),
                          number_of=self._number, length_of=self._length)
        info = op.offsets(call)
        for p, at in call.absorbed.items():
            self.absorbed.setdefault(p, at)
        self.summands.update(call.summands)
        return info

    def _number(self, name: str) -> bool:
        # a run records None for a value that is not a tensor (nothing for nodes not run)
        shapes = self.program.shapes
        return name in shapes and shapes[name] is None

    def _length(self, name: str) -> int | None:
        # a torch.Size (or tuple of ints) is recorded as one None per number
        meta = self.program.shapes.get(name)
        if isinstance(meta, tuple) and all(v is None for v in meta):
            return len(meta)
        return None

    def unknown(self, node: fx.Node, reason: str) -> Info:
        return Info(self._everything(node))

    def after(self, node: fx.Node) -> None:
        for alias in self.graph.mutations.get(node.name, ()):
            # later readers of the mutated storage see what the in-place op wrote
            self.env[alias] = Info(deps(self.env.get(alias)) | deps(self.env[node.name]))

    def _everything(self, node: fx.Node) -> frozenset[str]:
        found: set[str] = set()
        for n in node.all_input_nodes:
            found |= deps(self.env.get(n.name))
        leaf = self.program.leaves.get(node.name)
        if leaf is not None:
            found |= set(leaf.params.values())
        return frozenset(found)


def _own(value: OwnTensor, leaf) -> tuple[str, str] | None:
    canon = leaf.params.get(value.name) if leaf is not None else None
    return ("param", canon) if canon else None

