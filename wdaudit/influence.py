"""Stage 2b: parameters that cannot change any output at all.

Two ways a parameter has no effect: no path from it to an output, or every path carries it as
an additive offset that a mean-subtracting normaliser removes (a conv bias right before a
BatchNorm, a per-channel shift before an InstanceNorm).  The second needs axes: an offset is
removed only if it is constant along every axis the norm averages over.

For each node we keep ``deps`` (parameters it depends on) and ``offsets``: parameters whose
whole contribution to the node is an additive term constant along the given axes.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any, Mapping

from torch import fx

from . import optable
from .graph import ModelGraph
from .modules import ModuleRule, Tensor
from .program import Program

_PASS_THROUGH = {"clone", "contiguous", "alias", "detach", "lift_fresh_copy", "dropout",
                 "feature_dropout", "alpha_dropout", "Dropout", "Dropout1d", "Dropout2d",
                 "Dropout3d", "Identity", "to", "_to_copy", "type_as", "float", "double",
                 "half", "bfloat16", "positive", "neg"}
_CONV = {"conv1d", "conv2d", "conv3d", "convolution", "_convolution", "conv_transpose1d",
         "conv_transpose2d", "conv_transpose3d", "Conv"}


@dataclass(frozen=True)
class Info:
    deps: frozenset[str] = frozenset()
    offsets: Mapping[str, frozenset[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class TupleInfo:
    first: Info  # the normalised output
    rest: Info  # statistics: depend on everything the input does


@dataclass(frozen=True)
class Influence:
    no_effect: frozenset[str]
    absorbed_at: Mapping[str, str]  # parameter -> node of the norm that removes it


def analyse(program: Program, graph: ModelGraph, params: tuple[str, ...]) -> Influence:
    walker = _Walker(program)
    for node in program.gm.graph.nodes:
        if node.name in graph.relevant and node.op != "output":
            walker.visit(node)
    reaching: set[str] = set()
    for name in graph.outputs:
        reaching |= _deps(walker.info.get(name))
    no_effect = frozenset(p for p in params if p not in reaching)
    absorbed = {p: n for p, n in walker.absorbed.items() if p in no_effect}
    return Influence(no_effect, absorbed)


def _deps(info: Any) -> frozenset[str]:
    if isinstance(info, TupleInfo):
        return info.first.deps | info.rest.deps
    return info.deps if isinstance(info, Info) else frozenset()


class _Walker:
    def __init__(self, program: Program):
        self.program = program
        self.info: dict[str, Any] = {}
        self.absorbed: dict[str, str] = {}

    def rank(self, name: str) -> int | None:
        meta = self.program.shapes.get(name)
        return len(meta[0]) if isinstance(meta, tuple) and len(meta) == 2 and isinstance(meta[0], tuple) else None

    def shape(self, name: str) -> tuple[int, ...] | None:
        meta = self.program.shapes.get(name)
        return meta[0] if isinstance(meta, tuple) and len(meta) == 2 and isinstance(meta[0], tuple) else None

    def visit(self, node: fx.Node) -> None:
        prog = self.program
        if node.name in prog.params:
            p = prog.params[node.name]
            shape = self.shape(node.name)
            axes = frozenset(i for i, s in enumerate(shape) if s == 1) if shape is not None else None
            self.info[node.name] = Info(frozenset({p}), {p: axes} if axes is not None else {})
            return
        if node.op in ("placeholder", "get_attr"):
            self.info[node.name] = Info()
            return
        if node.op == "call_function" and node.target is operator.getitem:
            src = self.info.get(node.args[0].name) if isinstance(node.args[0], fx.Node) else None
            if isinstance(src, TupleInfo):
                self.info[node.name] = src.first if node.args[1] == 0 else src.rest
            else:
                self.info[node.name] = Info(_deps(src))
            return
        module = prog.gm.get_submodule(node.target) if node.op == "call_module" else None
        entry = optable.entry_for(node, module)
        everything = self._all_deps(node)
        if entry is None:
            self.info[node.name] = Info(everything)
            return
        args = self._bound(node, entry, module)
        self.info[node.name] = self._rule(node, entry.name, args, everything)

    def _all_deps(self, node: fx.Node) -> frozenset[str]:
        deps: set[str] = set()
        for n in node.all_input_nodes:
            deps |= _deps(self.info.get(n.name))
        leaf = self.program.leaves.get(node.name)
        if leaf is not None:
            deps |= set(leaf.params.values())
        return frozenset(deps)

    def _bound(self, node: fx.Node, entry, module) -> dict[str, Any]:
        if isinstance(entry, ModuleRule):
            bound = entry.adapter(module, tuple(node.args), dict(node.kwargs))
            leaf = self.program.leaves.get(node.name)
            out = {}
            for k, v in bound.items():
                if isinstance(v, Tensor):
                    canon = leaf.params.get(v.name) if leaf else None
                    v = ("param", canon) if canon else None
                out[k] = v
            return out
        return optable.bind(entry, tuple(node.args), dict(node.kwargs))[0]

    def _of(self, value: Any) -> Info:
        if isinstance(value, fx.Node):
            info = self.info.get(value.name)
            return info if isinstance(info, Info) else Info(_deps(info))
        if isinstance(value, tuple) and value and value[0] == "param":
            return Info(frozenset({value[1]}))
        return Info()

    def _rule(self, node: fx.Node, op: str, args: dict, everything: frozenset[str]) -> Any:
        rank = self.rank(node.name)
        x = args.get("input")
        if op in _PASS_THROUGH or (op in ("mul", "div") and _is_number(args.get("other"))):
            return Info(everything, dict(self._of(x).offsets))
        if op in ("add", "sub"):
            return self._add(node, x, args.get("other"), everything)
        if op in ("linear", "Linear", "bilinear") or op in _CONV:
            bias = args.get("bias")
            binfo = self._of(bias)
            if rank is None or not binfo.deps or len(binfo.deps) != 1:
                return Info(everything)
            (b,) = binfo.deps
            others = self._of(x).deps | self._of(args.get("weight")).deps
            if b in others or not _pure_param(bias, self.program):
                return Info(everything)
            channel = 1 if op in _CONV else rank - 1
            return Info(everything, {b: frozenset(range(rank)) - {channel}})
        if op in ("layer_norm", "native_layer_norm", "LayerNorm", "group_norm",
                  "native_group_norm", "GroupNorm", "batch_norm", "InstanceNorm", "BatchNorm",
                  "SyncBatchNorm", "_native_batch_norm_legit",
                  "_native_batch_norm_legit_functional", "native_batch_norm", "instance_norm"):
            return self._norm(node, op, args, everything)
        return Info(everything)

    def _add(self, node, a, b, everything) -> Info:
        out_shape = self.shape(node.name)
        if out_shape is None:
            return Info(everything)
        pieces = []
        for operand in (a, b):
            if not isinstance(operand, fx.Node):
                continue
            info = self._of(operand)
            shape = self.shape(operand.name)
            pieces.append((info, _align(info.offsets, shape, out_shape)))
        offsets: dict[str, frozenset[int]] = {}
        blocked: set[str] = set()
        for info, aligned in pieces:
            blocked |= info.deps - set(info.offsets)
        for _, aligned in pieces:
            for p, axes in aligned.items():
                offsets[p] = offsets[p] & axes if p in offsets else axes
        for p in blocked:
            offsets.pop(p, None)
        if node.op == "call_function" and _mean_of_same(node, a, b, self.program):
            return self._subtract_mean(node, a, b, everything)
        return Info(everything, offsets)

    def _subtract_mean(self, node, a, b, everything) -> Info:
        """``x - x.mean(dims, keepdim=True)`` removes offsets constant along ``dims``."""
        rank = self.rank(a.name)
        dims = b.kwargs.get("dim", b.args[1] if len(b.args) > 1 else None)
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        reduced = frozenset(d % rank for d in dims) if rank else frozenset()
        return Info(self._absorb(node, self._of(a), reduced, everything - self._of(a).deps), {})

    def _norm(self, node, op, args, everything) -> Any:
        x = args.get("input")
        rank = self.rank(x.name) if isinstance(x, fx.Node) else None
        xinfo = self._of(x)
        affine = self._of(args.get("weight")).deps | self._of(args.get("bias")).deps
        if rank is None:
            return Info(everything)
        if op in ("layer_norm", "native_layer_norm", "LayerNorm"):
            k = len(tuple(args.get("normalized_shape") or ()))
            reduced = frozenset(range(rank - k, rank))
        elif op in ("group_norm", "native_group_norm", "GroupNorm"):
            shape = self.shape(x.name)
            groups = args.get("num_groups", args.get("group"))
            per_channel = shape is not None and groups == shape[1]
            reduced = frozenset(range(2 if per_channel else 1, rank))
        elif op in ("InstanceNorm", "instance_norm"):
            if not args.get("use_input_stats", True):
                return Info(everything)
            reduced = frozenset(range(2, rank))
        else:
            if not args.get("training", True):
                return Info(everything)
            reduced = frozenset(range(rank)) - {1}
        kept = self._absorb(node, xinfo, reduced, affine)
        out = Info(kept | affine)
        if op.startswith("native") or op.startswith("_native"):
            return TupleInfo(out, Info(everything))
        return out

    def _absorb(self, node, xinfo: Info, reduced: frozenset[int], extra) -> frozenset[str]:
        gone = {p for p, axes in xinfo.offsets.items() if reduced and reduced <= axes}
        for p in gone:
            self.absorbed.setdefault(p, node.name)
        return (xinfo.deps - gone) | frozenset(extra)


def _align(offsets, shape, out_shape) -> dict[str, frozenset[int]]:
    """Map an operand's constant axes into the broadcast output's coordinates."""
    if shape is None:
        return {}
    lead = len(out_shape) - len(shape)
    aligned = {}
    for p, axes in offsets.items():
        const = set(range(lead))
        for i, s in enumerate(shape):
            if i in axes or (s == 1 and out_shape[lead + i] != 1):
                const.add(lead + i)
        aligned[p] = frozenset(const)
    return aligned


def _pure_param(value, program: Program) -> bool:
    if isinstance(value, tuple) and value and value[0] == "param":
        return True
    return isinstance(value, fx.Node) and value.name in program.params


def _mean_of_same(node: fx.Node, a, b, program: Program) -> bool:
    if not (isinstance(a, fx.Node) and isinstance(b, fx.Node)):
        return False
    target = node.target
    is_sub = target in (operator.sub,) or str(target).startswith("aten.sub")
    mean_like = b.op in ("call_method", "call_function") and (
        b.target == "mean" or str(b.target).startswith("aten.mean") or getattr(b.target, "__name__", "") == "mean")
    keep = b.kwargs.get("keepdim", b.args[2] if len(b.args) > 2 else False)
    return is_sub and mean_like and bool(b.args) and b.args[0] is a and bool(keep)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
