"""Stage 1: turn an ``nn.Module`` and example inputs into a :class:`Program`.

``torch.fx.symbolic_trace`` first (fast, keeps standard layers as single nodes); when Python
control flow defeats it, leaves calls the op table cannot see into, or does not reproduce the
model, ``torch.export`` (non-strict) on the same inputs, whose writes are made out of place
(``outplace``) or decomposed.  A symbolic trace is run against the real model before it is
accepted (it can freeze control flow); an export is specialised to these very inputs, taken
with the shapes it recorded, and checked likewise.  A forward that branches on tensor values,
which both refuse, is recorded as the ops of one run by make_fx (``specialise``; confirmation
then follows it at every point); only what defeats that too becomes an opaque op.
"""

from __future__ import annotations

from dataclasses import replace
import operator
import traceback
from typing import Any

import torch
from torch import fx, nn
from torch.nn.utils import parametrize

from ...ops.leaf_modules import module_op
from ...ops.lookup import lookup
from ...messages import first_line, one_line
from .exported import export_program, module_path
from .batch import CAP_BATCH, batch_size, first
from .program import LeafModule, Program, run, run_model
from ..rng import seeded
from .specialise import specialise
from .working_copy import (Flattened, forget_caches, once_per_slot, set_training_semantics,
                           structural_copy)


_SPECIALISED = ("the program is the model's ops as they ran on the example inputs (make_fx): "
                "its branches are frozen, so confirmation compares it with the model at every "
                "point")


class TraceError(RuntimeError):
    """Neither tracer produced a faithful program; the message says where and what to do."""


class InputError(ValueError):
    """The model does not run on the example inputs (the model's own error is attached)."""


def trace(model: nn.Module, inputs: tuple) -> Program:
    """The model as a runnable program, checked against the model on ``inputs``."""
    program = _trace(model, inputs)
    return replace(program, parameters=tuple(n for n, _ in model.named_parameters()))


def _trace(model: nn.Module, inputs: tuple) -> Program:
    copy = structural_copy(model)
    set_training_semantics(copy)
    root = _flattened(copy, len(inputs))
    canon = {id(p): n for n, p in model.named_parameters()}
    runnable = not any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    # symbolic_trace is checked on the first CAP_BATCH examples: its program is not
    # specialised to the batch size (a branch on a size fails the trace instead of freezing
    # it), so the model and the program agree on eight examples where they agree on 32, and
    # confirmation runs it on as many.  Export specialises to the shapes it saw and is taken
    # and checked on the user's batch; so is anything after a capped run fails (BatchBound).
    small, reference = _reference(root, canon, inputs) if runnable else (inputs, None)
    attempts: list[tuple[str, Exception]] = []
    fx_prog = None
    try:
        fx_prog = _check(_symbolic(root, canon), reference, small)
        if not _unknown_ops(fx_prog):
            return fx_prog
    except Exception as exc:  # noqa: BLE001 - any tracer failure sends us to the next tracer
        attempts.append(("symbolic_trace", exc))
        fx_prog = None
    if small is not inputs:
        small, reference = _reference(root, canon, inputs, capped=False)
    try:
        # checked like symbolic_trace's: a model may compute otherwise while exported
        # (transformers' paligemma: 6 % apart), and an unfaithful program fails every claim
        ex_prog = _check(export_program(root, canon, inputs), reference, inputs)
    except Exception as exc:  # noqa: BLE001
        attempts.append(("torch.export", exc))
        if fx_prog is not None:
            return fx_prog
        if reference is not None:  # specialising runs the model: it needs real weights
            try:
                return _replace_notes(_check(specialise(root, canon, inputs), reference, inputs),
                                      _not_used(attempts) + (_SPECIALISED,))
            except Exception as again:  # noqa: BLE001 - then opaque parts, as before
                attempts.append(("make_fx", again))
        opaque_prog = _with_opaque_parts(root, canon, reference, inputs, attempts)
        if opaque_prog is not None:
            return opaque_prog
        if reference is None:  # nothing ran: the parts cannot be found either
            raise TraceError(_explain(attempts, root)) from exc
        return _opaque_whole(root, canon, reference, inputs, attempts)
    if fx_prog is not None and len(_unknown_ops(fx_prog)) <= len(_unknown_ops(ex_prog)):
        return fx_prog
    notes = _not_used(attempts)
    if fx_prog is not None:
        notes += ("symbolic_trace left opaque calls; torch.export sees through them",)
    return _replace_notes(ex_prog, notes)


def _with_opaque_parts(root, canon, reference, inputs, attempts) -> Program | None:
    """Keep the submodules that defeat both tracers as opaque nodes: the rest of the model is
    still analysed, and what crosses an opaque part is reported as unknown."""
    opaque: set[str] = set()
    exc = attempts[-1][1]
    for _ in range(8):
        where = _failing_module(exc, root) or _failing_module(attempts[0][1], root)
        if not where or where in opaque:
            return None
        opaque.add(where)
        try:
            prog = _check(_symbolic(root, canon, frozenset(opaque)), reference, inputs)
        except Exception as again:  # noqa: BLE001 - another part may defeat it too
            exc = again
            continue
        notes = tuple(f"submodule '{p}' could not be traced (data-dependent control flow); it "
                      "is an opaque op and what crosses it is unknown" for p in sorted(opaque))
        return _replace_notes(prog, notes)
    return None


def _not_used(attempts) -> tuple[str, ...]:
    return tuple(f"{name} was not used: {_short(exc)}" for name, exc in attempts)


def _opaque_whole(root, canon, reference, inputs, attempts) -> Program:
    """Neither tracer follows the model's own forward: the model is one opaque op, and
    ``engine.parts`` audits the submodules it calls, each on its own."""
    graph = fx.Graph()
    args = tuple(graph.placeholder(f"input_{i}") for i in range(len(inputs)))
    whole = graph.call_module("whole", args)
    graph.output(tuple(graph.call_function(operator.getitem, (whole, i))
                       for i in range(len(reference))))
    holder = nn.Module()
    holder.whole = root
    gm = fx.GraphModule(holder, graph)
    buffer_names = {id(b): n for n, b in root.named_buffers()}
    prog = Program(root=root, gm=gm, method="opaque", params={}, buffers={}, constants={},
                   inputs=tuple(a.name for a in args), output_index=None,
                   output_paths=tuple(root.output_paths),
                   leaves={whole.name: _leaf(root, canon, buffer_names)},
                   module_paths={whole.name: ""})
    prog = _check(prog, reference, inputs)
    return _replace_notes(prog, (_explain(attempts, root) + " The model is audited as one "
                                 "opaque op, and the submodules it calls each on their own.",))


# --- the wrapper -------------------------------------------------------------------------


def _flattened(model: nn.Module, arity: int) -> Flattened:
    """A ``Flattened`` subclass whose forward takes exactly ``arity`` positional arguments,
    because fx cannot trace ``*args``."""
    names = ", ".join(f"input_{i}" for i in range(arity))
    src = f"def forward(self, {names}):\n    return self._run({names})\n"
    namespace: dict[str, Any] = {}
    exec(compile(src, "<wdaudit-wrapper>", "exec"), namespace)  # noqa: S102 - fixed template
    cls = type(f"Flattened{arity}", (Flattened,), {"forward": namespace["forward"]})
    cls._run = Flattened.forward
    return cls(model)


def _reference(root: Flattened, canon: dict[int, str], inputs: tuple, capped: bool = True
               ) -> tuple[tuple, tuple]:
    """The inputs the check runs on (the first ``CAP_BATCH`` examples with ``capped``, unless
    the model raises on those) and the model's own outputs there."""
    small = first(inputs, CAP_BATCH) if capped and (batch_size(inputs) or 0) > CAP_BATCH \
        else inputs
    params = {canon[id(p)]: p.detach() for p in root.model.parameters() if id(p) in canon}
    buffers = dict(root.named_buffers())
    try:
        with torch.no_grad(), seeded(0):  # both runs draw the same random numbers
            return small, run_model(root, params, buffers, small)
    except Exception as exc:  # noqa: BLE001 - whatever the model raises, it is the input
        if small is not inputs:  # bound to its batch size: checked on the whole batch
            return _reference(root, canon, inputs, capped=False)
        head = first_line(exc)
        raise InputError(f"the model raised {type(exc).__name__} on the example inputs: "
                         f"{head}") from exc


def _check(prog: Program, reference: tuple | None, inputs: tuple) -> Program:
    """The traced program must reproduce the model's own outputs on the example inputs.

    The same run records every node's shape, which the influence stage needs."""
    if reference is None:
        return prog
    params = {name: p.detach() for name, p in prog.root.model.named_parameters()}
    buffers = dict(prog.root.named_buffers())
    shapes: dict[str, Any] = {}
    with torch.no_grad(), seeded(0):
        got = run(prog, params, buffers, inputs, record=shapes)
    if len(got) != len(reference):
        raise TraceError(f"the traced program returns {len(got)} tensors, "
                         f"the model {len(reference)}")
    for g, r in zip(got, reference):
        if g.shape != r.shape or not _close(g, r):
            raise TraceError("the traced program does not reproduce the model's outputs "
                             "(Python control flow was frozen at trace time)")
    return replace(prog, shapes=shapes, recorded_batch=batch_size(inputs))


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    if not (a.is_floating_point() or a.is_complex()):
        return torch.equal(a, b)
    a, b = a.double(), b.double()
    finite = torch.isfinite(b)
    if not torch.equal(finite, torch.isfinite(a)):
        return False
    diff = (a[finite] - b[finite]).norm()
    return bool(diff <= 1e-3 * b[finite].norm() + 1e-6)


# --- symbolic_trace ----------------------------------------------------------------------


class _Tracer(fx.Tracer):
    """Keeps as leaves exactly the modules the op table has a rule for; inlines the rest.

    A module with hooks is inlined so that the hook is traced too (the old hook-based
    ``weight_norm`` recomputes the weight in a pre-hook).
    """

    def __init__(self, opaque: frozenset[str] = frozenset()):
        super().__init__()
        self.opaque = {"model." + p for p in opaque}

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname in self.opaque:
            return True
        if m._forward_hooks or m._forward_pre_hooks or parametrize.is_parametrized(m):
            return False
        if module_op(m) is not None:
            return True
        if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            return False
        mod = type(m).__module__
        in_torch = (mod.startswith(("torch.nn", "torch.ao.nn"))
                    and not mod.startswith("torch.nn.utils"))
        owns_tensors = any(True for _ in m.parameters()) or any(True for _ in m.buffers())
        return in_torch and not owns_tensors


def _symbolic(root: Flattened, canon: dict[int, str], opaque: frozenset[str] = frozenset()
              ) -> Program:
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        raise TraceError("global module hooks are installed; symbolic_trace cannot see them")
    forget_caches(root)  # the reference run filled them: traced, they must come from parameters
    graph = _Tracer(opaque).trace(root)
    gm = fx.GraphModule(root, graph)
    params, buffers, constants, leaves, paths = {}, {}, {}, {}, {}
    buffer_names = {id(b): n for n, b in root.named_buffers()}
    for node in graph.nodes:
        if node.op == "get_attr":
            value = _resolve(root, node.target)
            if isinstance(value, torch.Tensor):
                if id(value) in canon:
                    params[node.name] = canon[id(value)]
                    paths[node.name] = canon[id(value)].rpartition(".")[0]
                elif id(value) in buffer_names:
                    buffers[node.name] = buffer_names[id(value)]
                else:
                    constants[node.name] = value
        elif node.op == "call_module":
            module = root.get_submodule(node.target)
            leaves[node.name] = _leaf(module, canon, buffer_names)
            paths[node.name] = module_path(node.target)
        elif "nn_module_stack" in node.meta and node.meta["nn_module_stack"]:
            paths[node.name] = module_path(list(node.meta["nn_module_stack"].values())[-1][0])
    inputs = tuple(n.name for n in graph.nodes if n.op == "placeholder")
    return Program(root=root, gm=gm, method="symbolic_trace", params=params, buffers=buffers,
                   constants=constants, inputs=inputs, output_index=None,
                   output_paths=tuple(root.output_paths), leaves=leaves, module_paths=paths)


def _resolve(root: nn.Module, target: str) -> Any:
    obj: Any = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _leaf(module: nn.Module, canon: dict[int, str], buffer_names: dict[int, str]) -> LeafModule:
    """Its tensors, once per (module object, attribute): the runner swaps exactly these."""
    params = dict(module.named_parameters(remove_duplicate=False))
    buffers = dict(module.named_buffers(remove_duplicate=False))
    once = once_per_slot(module, list(params) + list(buffers))
    return LeafModule({n: canon[id(p)] for n, p in params.items() if n in once and id(p) in canon},
                      {n: buffer_names[id(b)] for n, b in buffers.items()
                       if n in once and id(b) in buffer_names})




# --- helpers -----------------------------------------------------------------------------


def _unknown_ops(prog: Program) -> list[str]:
    unknown = []
    for node in prog.gm.graph.nodes:
        if node.op in ("call_function", "call_method", "call_module"):
            module = prog.gm.get_submodule(node.target) if node.op == "call_module" else None
            if lookup(node, module) is None:
                unknown.append(node.name)
    return unknown


def _replace_notes(prog: Program, notes: tuple[str, ...]) -> Program:
    return replace(prog, notes=prog.notes + notes)


def _short(exc: Exception) -> str:
    return one_line(exc)[:300]


def _explain(attempts: list[tuple[str, Exception]], root: nn.Module) -> str:
    where = _failing_module(attempts[-1][1], root) or _failing_module(attempts[0][1], root)
    parts = [f"{name}: {_short(exc)}" for name, exc in attempts]
    place = f" The failure is inside module '{where}'." if where else ""
    return ("Could not trace the model. " + " | ".join(parts) + "." + place +
            " Data-dependent Python control flow (if/for on tensor values) defeats "
            "symbolic_trace and torch.export, and make_fx could not record this run either: "
            "make the branch depend on shapes or configuration, move it out of "
            "forward(), or audit the submodule that traces on its own.")


def _failing_module(exc: BaseException, root: nn.Module) -> str | None:
    paths = {id(m): module_path(n) for n, m in root.named_modules()}
    found = None
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        self_obj = frame.f_locals.get("self")
        if isinstance(self_obj, nn.Module) and id(self_obj) in paths and paths[id(self_obj)]:
            found = paths[id(self_obj)]
    cause = exc.__cause__ or exc.__context__
    if found is None and cause is not None and cause is not exc:
        return _failing_module(cause, root)
    return found


