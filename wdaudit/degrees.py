"""Stage 3: propagate scaling degrees through the graph and collect the constraints.

Walks the nodes in execution order (only those that reach an output), applies the op table's
transfer rule to each, and returns every node's degree, the equality constraints ``C s = 0``,
the unknown ops met on the way, and where normalisation epsilons enter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import fx

from . import optable
from . import call as K
from . import transfer as T
from . import transfer_layers as L
from .forms import CONST, ZERO, Deg, Form, Requires
from .graph import ModelGraph, describe
from .modules import ModuleRule, Tensor
from .program import EpsSite, Program
from .call import Constraint


class UnsupportedOpError(RuntimeError):
    """Strict mode: an op the table does not know would have been treated conservatively."""


@dataclass(frozen=True)
class UnknownOp:
    node: str
    op: str
    module: str


@dataclass(frozen=True)
class Degrees:
    variables: tuple[str, ...]  # canonical parameter name per exponent index
    values: Mapping[str, Any]  # node -> Deg (or a tuple of them)
    constraints: tuple[Constraint, ...]
    unknown_ops: tuple[UnknownOp, ...]
    eps_sites: tuple[EpsSite, ...]


def propagate(program: Program, graph: ModelGraph, variables: tuple[str, ...],
              no_effect: frozenset[str], strict: bool,
              dead_summands: frozenset[tuple[str, str]] = frozenset()) -> Degrees:
    """``no_effect`` parameters and ``dead_summands`` (constant summands that never reach an
    output) are analysed at zero: the model computes the same function with them there."""
    index = {name: i for i, name in enumerate(variables)}
    walker = _Walker(program, index, no_effect, strict, dead_summands)
    for node in program.gm.graph.nodes:
        if node.name in graph.relevant:
            walker.visit(node)
    for name in graph.outputs:
        for d in K.iter_degs(walker.values.get(name)):
            if not d.zero and not d.form.is_zero:
                walker.constraints.append(Constraint(d.form, name, "model output"))
    return Degrees(variables, dict(walker.values), tuple(walker.constraints),
                   tuple(walker.unknown), tuple(walker.eps))


class _Walker:
    def __init__(self, program: Program, index: dict[str, int], no_effect: frozenset[str],
                 strict: bool, dead_summands: frozenset[tuple[str, str]] = frozenset()):
        self.program = program
        self.dead = dead_summands
        self.index = index
        self.no_effect = no_effect
        self.strict = strict
        self.values: dict[str, Any] = {}
        self.constraints: list[Constraint] = []
        self.unknown: list[UnknownOp] = []
        self.eps: list[EpsSite] = []

    def param(self, canonical: str) -> Deg:
        if canonical in self.no_effect:
            return ZERO  # its value cannot matter, so analyse the model with it at 0
        return Deg(Form.var(self.index[canonical]))

    def visit(self, node: fx.Node) -> None:
        prog = self.program
        if node.op in ("placeholder", "get_attr"):
            if node.name in prog.params:
                self.values[node.name] = self.param(prog.params[node.name])
            elif node.name in prog.constants:
                self.values[node.name] = _constant(prog.constants[node.name])
            else:
                self.values[node.name] = CONST
            return
        if node.op == "output":
            return
        if _is_getitem(node):
            self.values[node.name] = self._getitem(node)
            return
        module = prog.gm.get_submodule(node.target) if node.op == "call_module" else None
        entry = optable.entry_for(node, module)
        if entry is None:
            self._unknown(node)
            return
        call, where = self._bind(node, entry, module)
        out = entry.rule(call)
        if out is None and entry.rule is not T.no_value:
            # the rule found no operand it knows: never let a tensor leave without a degree
            if self.strict:
                raise UnsupportedOpError(
                    f"{describe(node, self.program)} at node '{node.name}': its operands did not "
                    f"bind ({sorted(call.args)}); fix its signature in wdaudit's op table")
            self._unknown(node)
            return
        for name, value in call.args.items():
            if name not in call.used:
                call.require_zero(value, f"operand '{name}' of {call.op} is not modelled")
        if entry.inplace or "_inplace" in where:
            out = self._inplace(node, call, out)
        self.constraints.extend(call.constraints)
        for arg in call.eps_args:
            self.eps.append(_eps_site(node, entry, where, arg))
        self.values[node.name] = out

    def _bind(self, node: fx.Node, entry, module) -> tuple[K.Call, dict]:
        if isinstance(entry, ModuleRule):
            args = fx.node.map_arg(node.args, self._value)
            kwargs = fx.node.map_arg(node.kwargs, self._value)
            bound = entry.adapter(module, tuple(args), dict(kwargs))
            bound = {k: self._own(node, v) for k, v in bound.items()}
            sources = {}
            where: dict[str, tuple] = {}
        else:
            raw, where = optable.bind(entry, tuple(node.args), dict(node.kwargs))
            bound = {k: fx.node.map_arg(v, self._value) if _has_node(v) else v
                     for k, v in raw.items()}
            for role in ("input", "other"):
                if (node.name, role) in self.dead and role in bound:
                    bound[role] = 0
            sources = {k: v.name for k, v in raw.items() if isinstance(v, fx.Node)}
        if entry.rule not in (L.batch_norm, T.moved):  # the rules that take a Split as it is
            bound = {k: self._resolve(node, v) for k, v in bound.items()}
        shapes = {k: _shape(self.program, v) for k, v in sources.items()}
        call = K.Call(node.name, entry.name, bound, sources, shapes,
                      out_shape=_shape(self.program, node.name))
        return call, where

    def _resolve(self, node: fx.Node, value: Any) -> Any:
        """A concatenation whose parts scale apart, used by anything but a per-channel norm:
        its parts must scale alike after all."""
        if isinstance(value, K.Split):
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

    def _own(self, node: fx.Node, value: Any) -> Any:
        if not isinstance(value, Tensor):
            return value
        leaf = self.program.leaves.get(node.name)
        if leaf is not None and value.name in leaf.params:
            return self.param(leaf.params[value.name])
        return CONST  # a buffer or a plain tensor attribute

    def _value(self, n: fx.Node) -> Any:
        return self.values.get(n.name, CONST)

    def _getitem(self, node: fx.Node) -> Any:
        container = self._resolve(node, self._value(node.args[0]))
        index = node.args[1]
        if isinstance(container, Deg):  # tensor indexing
            return container
        item = K.element(container, index)
        if isinstance(item, Requires):
            for form in item.forms:
                if not form.is_zero:
                    self.constraints.append(Constraint(form, node.name, item.why))
            return item.value
        return CONST if item is None else item

    def _inplace(self, node: fx.Node, call: K.Call, out: Any) -> Any:
        """An in-place op must leave its target's degree unchanged: other references
        (views, later uses of the same node) still see the old tensor object."""
        target = node.args[0] if node.args else None
        if not isinstance(target, fx.Node):
            return out
        old = self._resolve(node, self._value(target))
        if isinstance(old, Deg) and isinstance(out, Deg):
            old_nonzero = CONST if old.zero else old
            call.require_equal(old_nonzero, out, f"in-place {call.op} on {target.name}")
            if old.zero:
                self.values[target.name] = CONST
            return old_nonzero
        return out

    def _unknown(self, node: fx.Node) -> None:
        operands = fx.node.map_arg((node.args, node.kwargs), self._value)
        leaf = self.program.leaves.get(node.name)
        if not leaf or not leaf.params:
            if all(d.zero or d.form.is_zero for d in K.iter_degs(operands)):
                # whatever it computes, it computes from constants: the result is a constant
                self.values[node.name] = CONST
                return
        op = describe(node, self.program)
        module = self.program.module_paths.get(node.name, "")
        if self.strict:
            where = f" in module '{module}'" if module else ""
            raise UnsupportedOpError(
                f"unknown op {op} at node '{node.name}'{where}: add it to wdaudit's op table "
                "(strict mode refuses to treat it conservatively)")
        self.unknown.append(UnknownOp(node.name, op, module))
        for d in K.iter_degs(operands):
            if not d.zero and not d.form.is_zero:
                self.constraints.append(Constraint(d.form, node.name, f"unknown op {op}", True))
        if node.op == "call_module":
            for canon in (leaf.params.values() if leaf else ()):
                d = self.param(canon)
                if not d.zero:
                    self.constraints.append(Constraint(d.form, node.name, f"inside {op}", True))
        self.values[node.name] = CONST


def _is_getitem(node: fx.Node) -> bool:
    import operator

    return node.op == "call_function" and node.target is operator.getitem


def _has_node(value: Any) -> bool:
    found = []
    fx.node.map_arg(value, lambda n: found.append(n))
    return bool(found)


def _constant(t: torch.Tensor) -> Deg:
    if isinstance(t, torch.Tensor) and not t.is_meta and t.numel() <= 1 << 20 and not bool(t.any()):
        return ZERO
    return CONST


def _shape(program: Program, node_name: str) -> tuple[int, ...] | None:
    meta = program.shapes.get(node_name)
    if isinstance(meta, tuple) and len(meta) == 2 and isinstance(meta[1], torch.dtype):
        return meta[0]
    return None


def _eps_site(node: fx.Node, entry, where: dict, arg: str) -> EpsSite:
    if isinstance(entry, ModuleRule):
        return EpsSite(node.name, "attr", entry.eps_attr or "eps")
    kind, key = where.get(arg, ("kwarg", arg))
    return EpsSite(node.name, kind, key)
