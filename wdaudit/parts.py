"""Opaque parts, audited on their own: the finer-grained fallback for forwards no tracer can
follow.

When a module's ``forward`` defeats every tracer (data-dependent control flow that make_fx
cannot record either), the trace keeps
it whole as one opaque op, and everything that crosses it is unknown.  Its submodules may still
trace.  A submodule ``C`` called with the same structure every time can be audited as a model
of its own, on the arguments the model really passed it: a rescaling that leaves ``C``'s output
unchanged leaves the whole model's output unchanged, provided the rescaled parameters act on
nothing but through ``C``.  This module finds such parts and says which of their parameters
qualify; the driver runs the pipeline on each part and :func:`merge` carries the part's
ineffective verdicts into the model's.

What qualifies is observed on the example inputs: the calls' structure and where each parameter
is used.  A parameter also read outside its part (tied weights, a parent reading
``self.child.weight``) keeps the model's own verdict.  Only "output unchanged" transfers: a
group found through a norm *outside* the part is not seen (sound, not complete).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Mapping

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from .ops.lookup import lookup
from .report import INEFFECTIVE, UNKNOWN, Confirmation, Group, Member
from .engine.tracing.program import Program, TensorMeta, run_model
from .engine.rng import seeded

MAX_DEPTH = 4  # parts inside opaque parts inside opaque parts ...

@dataclass(frozen=True)
class Part:
    """A submodule to audit on its own: called as ``module(*args, **kwargs)`` with the tensors
    of ``inputs`` in the slots the model passed them."""

    path: str
    module: nn.Module
    inputs: tuple
    spec: Any  # pytree spec of (args, kwargs)
    leaves: tuple  # the non-tensor leaves, None where an input goes
    slots: tuple[int, ...]  # where the inputs go among the leaves
    eligible: frozenset[str]  # its parameters (the model's names) that act only through it


class Bound(nn.Module):
    """A part called exactly as the model called it: its tensors are the inputs, everything
    else is fixed.  Its parameters are the part's, under ``part.``."""

    def __init__(self, part: Part):
        super().__init__()
        self.part = part.module
        self._spec, self._leaves, self._slots = part.spec, part.leaves, part.slots

    def forward(self, *tensors):
        leaves = list(self._leaves)
        for i, t in zip(self._slots, tensors):
            leaves[i] = t
        args, kwargs = pytree.tree_unflatten(leaves, self._spec)
        return self.part(*args, **kwargs)


def opaque_paths(program: Program) -> tuple[str, ...]:
    """The module paths of the program's opaque ops ("" is the whole model)."""
    found = []
    for node in program.gm.graph.nodes:
        if node.op != "call_module":
            continue
        module = program.gm.get_submodule(node.target)
        if lookup(node, module) is None:
            found.append(program.module_paths.get(node.name, node.target))
    return tuple(dict.fromkeys(found))


def find(program: Program, inputs: tuple) -> tuple[tuple[Part, ...], tuple[str, ...]]:
    """The parts inside the program's opaque ops, and notes on submodules passed over."""
    opaque = opaque_paths(program)
    model = program.root.model
    if not opaque or any(t.is_meta for t in model.parameters()):
        return (), ()
    watched = {p: m for p, m in model.named_modules()
               if any(_inside(p, o) and p != o for o in opaque)}
    calls, uses = _record(program, inputs, watched)
    found = _Finder(model, calls, uses)
    for o in opaque:
        found.select(o)
    return tuple(found.parts), tuple(found.notes)


def _inside(path: str, outer: str) -> bool:
    return outer == "" or path == outer or path.startswith(outer + ".")


class _Finder:
    """Walks down from an opaque module to the submodules that can stand alone."""

    def __init__(self, model: nn.Module, calls, uses):
        self.model, self.calls, self.uses = model, calls, uses
        self.owners = _owners(model)
        self.parts: list[Part] = []
        self.notes: list[str] = []

    def select(self, path: str) -> None:
        module = self.model.get_submodule(path) if path else self.model
        for name, child in module.named_children():
            p = f"{path}.{name}" if path else name
            if not any(True for _ in child.parameters()):
                continue
            call = self.calls.get(p)
            if isinstance(self.model, Bound) and p == "part":
                call = None  # a part whose own forward is opaque: the same module again
            if call is _VARYING:
                self.notes.append(f"submodule '{p}' is called with differing arguments: it is "
                                  "not audited whole, its own submodules may be")
            if call is None or call is _UNBINDABLE or call is _VARYING:
                self.select(p)  # its children may stand alone
                continue
            tensors, spec, frozen, _ = call
            slots = tuple(i for i, v in enumerate(frozen) if v is _SLOT)
            leaves = tuple(None if v is _SLOT else v for v in frozen)
            self.parts.append(Part(p, child, tensors, spec, leaves, slots, self._eligible(p)))

    def _eligible(self, p: str) -> frozenset[str]:
        """Its parameters registered nowhere else and read only while it runs (one read at
        least: a parameter unused here may be used on another input)."""
        mine = [n for n, _ in self.model.named_parameters() if _inside(n, p)]
        return frozenset(n for n in mine
                         if all(_inside(o, p) for o in self.owners.get(n, ()))
                         and self.uses.get(n)
                         and all(p in stack for stack in self.uses[n]))


# --- one recorded forward -------------------------------------------------------------------

_VARYING, _UNBINDABLE = object(), object()
_SLOT = object()  # a tensor's place among a call's arguments, while recording
_PLAIN = (type(None), bool, int, float, str, torch.dtype, torch.device, slice, type(Ellipsis))


def _record(program: Program, inputs: tuple, watched: Mapping[str, nn.Module]):
    """One forward of the working copy: the first call of every watched module (its tensors
    cloned), whether later calls differ, and, for every parameter, the module stacks it was
    used under."""
    model = program.root.model
    paths = {id(m): p for p, m in model.named_modules()}
    stack: list[str] = []
    calls: dict[str, Any] = {}
    handles = []

    def pre(module, args, kwargs):
        path = paths.get(id(module))
        if path is None:
            return
        stack.append(path)
        if path in watched:
            calls[path] = _merged(calls.get(path), args, kwargs)

    def post(module, args, kwargs, out):
        if paths.get(id(module)) is not None and stack:
            stack.pop()

    for m in model.modules():
        handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(m.register_forward_hook(post, with_kwargs=True, always_call=True))
    params = {n: p.detach() for n, p in model.named_parameters()}
    usage = _Usage(params, stack)
    try:
        with torch.no_grad(), seeded(0), usage:
            run_model(program.root, params, dict(program.root.named_buffers()), inputs)
    finally:
        for h in handles:
            h.remove()
    return calls, usage.stacks


def _merged(previous: Any, args: tuple, kwargs: dict) -> Any:
    leaves, spec = pytree.tree_flatten((args, kwargs))
    if any(not isinstance(v, (torch.Tensor, *_PLAIN)) for v in leaves):
        return _UNBINDABLE  # an object (a cache, a config) cannot be fixed as a constant
    frozen = tuple(_SLOT if isinstance(v, torch.Tensor) else v for v in leaves)
    shapes = tuple(TensorMeta.of(v) for v in leaves if isinstance(v, torch.Tensor))
    if previous is None:
        tensors = tuple(v.detach().clone() for v in leaves if isinstance(v, torch.Tensor))
        return (tensors, spec, frozen, shapes)
    if previous in (_VARYING, _UNBINDABLE):
        return previous
    same = previous[1] == spec and previous[3] == shapes and _equal(previous[2], frozen)
    return previous if same else _VARYING


def _equal(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y or (type(x) is type(y) and x == y)
                                     for x, y in zip(a, b))


class _Usage(TorchFunctionMode):
    """Records, for each parameter an op reads, the module paths active at every read."""

    def __init__(self, params: Mapping[str, torch.Tensor], stack: list[str]):
        super().__init__()
        self.names = {id(t): n for n, t in params.items()}
        self.stack = stack
        self.stacks: dict[str, set[tuple[str, ...]]] = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # outside every forward (an empty stack) it is the harness reading, not the model
        for leaf in pytree.tree_leaves((args, kwargs)) if self.stack else ():
            name = self.names.get(id(leaf)) if isinstance(leaf, torch.Tensor) else None
            if name is not None:
                self.stacks.setdefault(name, set()).add(tuple(self.stack))
        return func(*args, **kwargs)


def _owners(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Every name each parameter is registered under (tied weights have several)."""
    canon = {id(t): n for n, t in model.named_parameters()}
    owners: dict[str, list[str]] = {}
    for n, t in model.named_parameters(remove_duplicate=False):
        owners.setdefault(canon[id(t)], []).append(n)
    return {k: tuple(v) for k, v in owners.items()}


# --- carrying a part's verdicts into the model's ------------------------------------------------


@dataclass(frozen=True)
class Audited:
    """What the pipeline found for one part, in the part's own names (``part.…``)."""

    part: Part
    parameters: Mapping[str, Any]  # name -> ParameterReport
    groups: tuple[Group, ...]
    confirmation: Confirmation
    method: str  # how the part was traced


def merge(parameters: Mapping[str, Any], groups: tuple[Group, ...], done: Audited):
    """The model's parameters and groups with the part's qualifying ineffective verdicts
    carried over (renamed, groups renumbered); a group counts only if every member
    qualifies.  Returns (parameters, groups, how many verdicts changed)."""
    part = done.part
    name = lambda local: f"{part.path}.{local.removeprefix('part.')}"  # noqa: E731
    kept: dict[int, Group] = {}
    for g in done.groups:
        members = tuple(Member(name(m.name), m.exponent) for m in g.members)
        if all(m.name in part.eligible for m in members):
            kept[g.id] = replace(g, id=len(groups) + len(kept), members=members,
                                 normalising_nodes=tuple(renamed(n, part.path)
                                                         for n in g.normalising_nodes),
                                 note=renamed(g.note, part.path))
    parameters = dict(parameters)
    changed = 0
    for local, report in done.parameters.items():
        full = name(local)
        ids = tuple(kept[i].id for i in report.groups if i in kept)
        if not ids or full not in parameters or parameters[full].verdict != UNKNOWN:
            continue
        if report.verdict == INEFFECTIVE:
            reason = (f"{renamed(report.reason, part.path)} (within '{part.path}', audited on "
                      "its own: the model's forward around it could not be traced)")
            parameters[full] = replace(parameters[full], verdict=INEFFECTIVE, reason=reason,
                                       groups=ids)
            changed += 1
    return parameters, groups + tuple(kept.values()), changed


def renamed(text: str, path: str) -> str:
    """A part's own names (``part.fc.weight``) in the model's (``encoder.fc.weight``)."""
    return re.sub(r"(?<![\w.])part(?=[.\s)]|$)", path, text)
