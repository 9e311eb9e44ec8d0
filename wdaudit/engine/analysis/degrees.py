"""Stage 4: propagate scaling degrees through the graph and collect the constraints.

Walks the nodes that reach an output, applies each op's degree rule from the op table, and
returns every node's degree, the equality constraints ``C s = 0``, the unknown ops met on the
way, and where normalisation epsilons enter.  Parameters with no effect and constant summands
that never reach an output are analysed at zero: the model computes the same function there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import fx

from ...ops.degree import CONST, ZERO, Deg, Form, Requires, Split, element
from ...ops.degrees_elementwise import no_value
from ...ops.leaf_modules import OwnTensor
from ...ops.op_call import Call, Constraint, iter_degs
from ...ops.record import Op
from ...report import UnknownOp
from .graph import describe
from .influence import Influence
from ..tracing.program import EpsSite
from .walk import GraphWalk, UnsupportedOpError


@dataclass(frozen=True)
class Degrees:
    influence: Influence
    variables: tuple[str, ...]  # canonical parameter name per exponent index
    values: Mapping[str, Any]  # node -> Deg (or a tuple of them)
    constraints: tuple[Constraint, ...]
    unknown_ops: tuple[UnknownOp, ...]
    eps_sites: tuple[EpsSite, ...]
    # the parameters whose scales the constraints are about: those that reach an output
    # (the ones with no effect are claims of their own)
    candidates: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()  # nodes the walk could not follow (non-strict mode)


def propagate(influence: Influence, strict: bool = False) -> Degrees:
    graph = influence.graph
    walk = _DegreeWalk(influence, strict)
    walk.run()
    sinks = [(n, "model output") for n in graph.outputs]
    sinks += [(n, "a value the model's control flow read (frozen in this run)") for n in graph.read]
    for name, why in sinks:
        for d in iter_degs(walk.env.get(name)):
            if not d.zero and not d.form.is_zero:
                walk.constraints.append(Constraint(d.form, name, why))
    candidates = tuple(n for n in walk.variables
                       if n in graph.used_params and n not in influence.no_effect)
    return Degrees(influence, walk.variables, dict(walk.env), tuple(walk.constraints),
                   tuple(walk.unknown_ops), tuple(walk.eps), candidates, tuple(walk.failures))


class _DegreeWalk(GraphWalk):
    stage = "degrees"

    def __init__(self, influence: Influence, strict: bool):
        super().__init__(influence.graph, strict)
        self.variables = self.program.parameters
        self.index = {name: i for i, name in enumerate(self.variables)}
        self.no_effect = influence.no_effect
        self.dead = influence.dead_summands
        self.constraints: list[Constraint] = []
        self.unknown_ops: list[UnknownOp] = []
        self.eps: list[EpsSite] = []

    def param(self, canonical: str) -> Deg:
        if canonical in self.no_effect:
            return ZERO  # its value cannot matter, so analyse the model with it at 0
        return Deg(Form.var(self.index[canonical]))

    def leaf(self, node: fx.Node) -> Any:
        if node.name in self.program.params:
            return self.param(self.program.params[node.name])
        if node.name in self.program.constants:
            return _constant(self.program.constants[node.name])
        return CONST

    def getitem(self, node: fx.Node) -> Any:
        container = self._resolve(node, self._value(node.args[0]))
        if isinstance(container, Deg):  # tensor indexing
            return container
        item = element(container, node.args[1])
        if item is None:
            # an element that cannot be placed (a slice of a slice, an index from the end of a
            # sequence of unknown length): whatever the container holds is pinned
            for d in iter_degs(container):
                if not d.zero and not d.form.is_zero:
                    self.constraints.append(Constraint(d.form, node.name,
                                                       "an element wdaudit cannot place"))
            return CONST
        if isinstance(item, Requires):
            for form in item.forms:
                if not form.is_zero:
                    self.constraints.append(Constraint(form, node.name, item.why))
            return item.value
        return item

    def apply(self, node: fx.Node, op: Op, args: dict[str, Any], where: dict) -> Any:
        call = self._call(node, op, args)
        out = op.degrees(call)
        if out is None and op.degrees is not no_value:
            # the rule found no operand it knows: never let a tensor leave without a degree
            if self.strict:
                raise UnsupportedOpError(
                    f"{describe(node, self.program)} at node '{node.name}': its operands did not "
                    f"bind ({sorted(call.args)}); fix its signature in wdaudit's op table")
            return self.unknown(node, "its operands did not bind")
        for name, value in call.args.items():
            if name not in call.used:
                call.require_zero(value, f"operand '{name}' of {call.op} is not modelled")
        if op.inplace or "_inplace" in where:
            out = self._inplace(node, call, out, overwrites=op.overwrites)
        self.constraints.extend(call.constraints)
        for arg in call.eps_args:
            self.eps.append(_eps_site(node, op, where, arg))
        return out

    def _call(self, node: fx.Node, op: Op, args: dict[str, Any]) -> Call:
        leaf = self.program.leaves.get(node.name)
        bound = {}
        for k, v in args.items():
            if isinstance(v, OwnTensor):
                canon = leaf.params.get(v.name) if leaf is not None else None
                v = self.param(canon) if canon else CONST  # a buffer or a plain attribute
            elif _has_node(v):
                v = fx.node.map_arg(v, self._value)
            bound[k] = v
        if op.adapter is None:
            for role in ("input", "other"):
                if (node.name, role) in self.dead and role in bound:
                    bound[role] = 0
        if not op.keeps_split:
            bound = {k: self._resolve(node, v) for k, v in bound.items()}
        sources = {k: v.name for k, v in args.items() if isinstance(v, fx.Node)}
        shapes = {k: self.program.shape(v) for k, v in sources.items()}
        for k, v in args.items():  # the parts of a list operand (cat's tensors), by index
            if isinstance(v, (list, tuple)):
                shapes.update({f"{k}[{i}]": self.program.shape(x.name)
                               for i, x in enumerate(v) if isinstance(x, fx.Node)})
        return Call(node.name, op.name, bound, sources, shapes,
                    out_shape=self.program.shape(node.name))

    def _resolve(self, node: fx.Node, value: Any) -> Any:
        """A concatenation whose parts scale apart, used by anything but a per-channel norm:
        its parts must scale alike after all."""
        if isinstance(value, Split):
            live = [p for p in value.parts if not p.zero]
            for p in live[1:]:
                diff = p.form - live[0].form
                if not diff.is_zero:
                    self.constraints.append(
                        Constraint(diff, node.name, "concatenated tensors must scale alike"))
            return live[0] if live else ZERO
        if isinstance(value, (list, tuple)):
            return type(value)(self._resolve(node, v) for v in value)
        return value

    def _value(self, n: fx.Node) -> Any:
        return self.env.get(n.name, CONST)

    def _inplace(self, node: fx.Node, call: Call, out: Any, overwrites: bool = False) -> Any:
        """An in-place op must leave its target's degree unchanged: other references
        (views, later uses of the same node) still see the old tensor object.  A zero target
        has no degree to keep: it takes the written one (``after`` gives it to its aliases);
        nor has a target that an op reading none of its values (``fill_``) overwrites, where no
        view of its storage is read afterwards (vits fills ``empty_like`` with a tensor)."""
        target = node.args[0] if node.args else None
        if not isinstance(target, fx.Node):
            return out
        old = self._resolve(node, self._value(target))
        if isinstance(old, Deg) and isinstance(out, Deg):
            if old.zero or (overwrites and not self._views_read_later(node, target)):
                # a zero buffer written into holds what was written and zeros, which scale
                # with anything (an MoE's experts index_add_ into zeros): the written degree
                self.env[target.name] = out
                return out
            call.require_equal(old, out, f"in-place {call.op} on {target.name}")
            return old
        return out

    def _views_read_later(self, node: fx.Node, target: fx.Node) -> bool:
        views = self.graph.mutations.get(node.name, frozenset()) - {target.name}
        later = node.next
        while views and later.op != "root":
            if any(n.name in views for n in later.all_input_nodes):
                return True
            later = later.next
        return False

    def after(self, node: fx.Node) -> None:
        # a write through one view reaches every alias: a zero buffer written into (glm5_next's
        # chunked attention fills a zeros_like through select views) is zero no longer: it
        # holds what was written, of the degree _inplace gave the target
        if node.name in self.graph.mutations and self.env.get(node.name) is not None:
            written = self.env.get(node.args[0].name)
            for alias in self.graph.mutations[node.name]:
                value = self.env.get(alias)
                if isinstance(value, Deg) and value.zero:
                    self.env[alias] = written if isinstance(written, Deg) else CONST

    def unknown(self, node: fx.Node, reason: str) -> Any:
        operands = fx.node.map_arg((node.args, node.kwargs), self._value)
        leaf = self.program.leaves.get(node.name)
        if not leaf or not leaf.params:
            if all(d.zero or d.form.is_zero for d in iter_degs(operands)):
                # whatever it computes, it computes from constants: the result is a constant
                return CONST
        op = describe(node, self.program)
        module = self.program.module_paths.get(node.name, "")
        if self.strict:
            where = f" in module '{module}'" if module else ""
            raise UnsupportedOpError(
                f"unknown op {op} at node '{node.name}'{where}: add it to wdaudit's op table "
                "(strict mode refuses to treat it conservatively)")
        self.unknown_ops.append(UnknownOp(node.name, op, module))
        for d in iter_degs(operands):
            if not d.zero and not d.form.is_zero:
                self.constraints.append(Constraint(d.form, node.name, f"unknown op {op}", True))
        if node.op == "call_module":
            for canon in (leaf.params.values() if leaf else ()):
                d = self.param(canon)
                if not d.zero:
                    self.constraints.append(Constraint(d.form, node.name, f"inside {op}", True))
        return CONST


def _has_node(value: Any) -> bool:
    found = []
    fx.node.map_arg(value, found.append)
    return bool(found)


def _constant(t: torch.Tensor) -> Deg:
    if isinstance(t, torch.Tensor) and not t.is_meta and t.numel() <= 1 << 20 and not bool(t.any()):
        return ZERO
    return CONST


def _eps_site(node: fx.Node, op: Op, where: dict, arg: str) -> EpsSite:
    if op.adapter is not None:
        return EpsSite(node.name, "attr", op.eps_attr or "eps")
    kind, key = where.get(arg, ("kwarg", arg))
    return EpsSite(node.name, kind, key)
