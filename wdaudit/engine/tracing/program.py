"""The traced program: an fx graph plus what each of its inputs stands for, runnable with any
set of parameter and buffer tensors.

Both tracers (``symbolic_trace`` and ``torch.export``) end up here, so the later stages see one
kind of object.  :func:`placed` gives confirmation a program whose stray tensors live on its
device, without touching the traced one.  Running goes through :class:`Runner`, an ``fx.Interpreter`` that reads every
parameter and buffer from dictionaries we own, which is what lets confirmation work in float64
on a generic point without touching the user's tensors, and substitute eps → 0 in place.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import torch
from torch import fx, nn
from torch.func import functional_call
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from ...ops.leaf_modules import module_op
from ...ops.lookup import function_op, stand_in
from .. import ceiling
from .shifted_norms import ShiftedNorms
from .working_copy import forget_caches, structural_copy, tensor_slots

EPS_TINY = 1e-16
"""What "eps → 0" means in a run: negligible beside any float64 variance we meet (1e-12
relative at var = 1e-4), yet a channel that is constant across the batch (a ReLU6 saturated
everywhere: variance exactly 0) keeps finite derivatives instead of round-off times 1e15."""


@dataclass(frozen=True)
class LeafModule:
    """A ``call_module`` node: which of our tensors its own parameters and buffers are."""

    params: Mapping[str, str]  # local name -> canonical parameter name
    buffers: Mapping[str, str]  # local name -> buffer name
    other: tuple[str, ...] = ()  # local tensor attributes that are neither (plain attributes)


@dataclass(frozen=True, kw_only=True)
class Program:
    root: nn.Module  # the working copy, wrapped so that it returns a flat tuple of tensors
    gm: fx.GraphModule
    method: str  # "symbolic_trace", "export", "specialised" (make_fx) or "opaque" (none could)
    params: Mapping[str, str]  # node -> canonical parameter name
    buffers: Mapping[str, str]  # node -> buffer name (in the wrapper's namespace)
    constants: Mapping[str, torch.Tensor]  # node -> constant tensor baked into the graph
    inputs: tuple[str, ...]  # placeholder nodes of the user's inputs, in order
    output_index: tuple[int, ...] | None  # user outputs within the output node's tuple
    output_paths: tuple[str, ...]
    leaves: Mapping[str, LeafModule]  # call_module node -> its tensors
    module_paths: Mapping[str, str]  # node -> owning module path (for readable reports)
    notes: tuple[str, ...] = ()
    shapes: Mapping[str, Any] = field(default_factory=dict)  # node -> recorded(value), if run
    parameters: tuple[str, ...] = ()  # every canonical parameter name of the model, in order
    recorded_batch: int | None = None  # examples per input where shapes were recorded (None: all)

    def shape(self, node: str) -> tuple[int, ...] | None:
        """The shape a run recorded for a single-tensor node; None for anything else."""
        meta = self.shapes.get(node)
        return meta.shape if isinstance(meta, TensorMeta) else None


@dataclass(frozen=True)
class TensorMeta:
    """What a run (or export's fake tensors) recorded of one tensor value."""

    shape: tuple[int, ...]
    dtype: torch.dtype

    @classmethod
    def of(cls, t: torch.Tensor) -> "TensorMeta":
        return cls(tuple(int(s) for s in t.shape), t.dtype)  # int(): export's sizes are SymInts

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


def recorded(value: Any) -> Any:
    """A node's value as ``Program.shapes`` holds it: a TensorMeta for a tensor, a tuple of
    these for a tuple or list (a torch.Size: one None per number), None for anything else."""
    if isinstance(value, torch.Tensor):
        return TensorMeta.of(value)
    if isinstance(value, (tuple, list)):
        return tuple(recorded(v) for v in value)
    return None


@dataclass(frozen=True)
class EpsSite:
    """Where a normalisation epsilon enters: a node argument or a leaf module's attribute."""

    node: str
    kind: str  # "arg", "kwarg" or "attr"
    key: Any


class Runner(fx.Interpreter):
    """Runs the traced program reading parameters, buffers and constants from our dicts."""

    def __init__(self, program: Program, params, buffers, *, constants=None, eps_zero=(),
                 record=None, promote: torch.dtype | None = None, eps_value: float = EPS_TINY):
        super().__init__(program.gm, garbage_collect_values=True)
        self.promote = promote
        self.eps_value = eps_value
        self.program = program
        self.params = params
        self.buffers = buffers
        self.constants = program.constants if constants is None else constants
        self.record = record
        self._inputs: list = []
        self._eps: dict[str, list[EpsSite]] = {}
        for site in eps_zero:
            self._eps.setdefault(site.node, []).append(site)

    def run_program(self, inputs: tuple) -> tuple:
        self._inputs = list(inputs)
        out = self.run(*self._placeholders_args())
        flat = list(out) if isinstance(out, (tuple, list)) else [out]
        if self.program.output_index is not None:
            flat = [flat[i] for i in self.program.output_index]
        return tuple(_flat_tensors(flat))

    def _placeholders_args(self) -> list:
        values = []
        # the specialised program takes the inputs' leaves (None takes no placeholder)
        user = iter(pytree.tree_leaves(self._inputs) if self.program.method == "specialised"
                    else self._inputs)
        for node in self.program.gm.graph.nodes:
            if node.op != "placeholder":
                continue
            values.append(self._leaf_value(node.name, user))
        return values

    def _leaf_value(self, name: str, user_inputs) -> Any:
        prog = self.program
        if name in prog.params:
            return self.params[prog.params[name]]
        if name in prog.buffers:
            return self.buffers[prog.buffers[name]]
        if name in self.constants:
            return self.constants[name]
        return next(user_inputs)

    def run_node(self, n: fx.Node) -> Any:
        prog = self.program
        if n.op == "get_attr" and (n.name in prog.params or n.name in prog.buffers
                                   or n.name in self.constants):
            result = self._leaf_value(n.name, iter(()))
        elif n.op == "call_module":
            result = self._call_leaf(n)
        elif n.op in ("call_function", "call_method") and (n.name in self._eps or self.promote):
            op = function_op(n.target) if n.op == "call_function" else None
            if self.promote and op is not None and op.dtype_check:
                return None  # an assertion of the traced dtype, which a promoted run changes
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            args, kwargs = _with_tiny_eps(list(args), dict(kwargs), self._eps.get(n.name, ()),
                                          self.eps_value)
            if self.promote:
                # the trace baked the model's float dtype into casts: run them at check precision
                args, kwargs = _promote(args, self.promote), _promote(kwargs, self.promote)
            with _shifted(n.name in self._eps):
                result = getattr(self, n.op)(n.target, tuple(args), kwargs)
        else:
            result = super().run_node(n)
        if self.record is not None:
            self.record[n.name] = recorded(result)
        return result

    def call_function(self, target, args, kwargs):
        # the op table says where the kernel is not what a check may run (ops/kernels.py): a
        # replay computes the same values honestly (view of odd strides, embedding's
        # gradient-only arguments, functional copy); a stand-in computes a fused kernel with
        # no float64 implementation (MoE's grouped matmul) from float64-capable ops
        op = function_op(target)
        if op is not None and op.replay is not None:
            return op.replay(target, args, kwargs)
        if op is not None and op.stand_in is not None and self.promote == torch.float64:
            return op.stand_in(*args, **kwargs)
        return super().call_function(target, args, kwargs)

    def _call_leaf(self, n: fx.Node) -> Any:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        module = self.fetch_attr(n.target)
        leaf = self.program.leaves.get(n.name, LeafModule({}, {}))
        tensors = {local: self.params[canon] for local, canon in leaf.params.items()}
        tensors.update({local: self.buffers[b] for local, b in leaf.buffers.items()})
        sites = self._eps.get(n.name, ())
        overrides = {s.key: self.eps_value for s in sites}
        op = module_op(module)
        if op is not None:
            overrides.update(op.run_attrs)  # attributes that change only the gradient
        saved = {k: getattr(module, k) for k in overrides}
        try:
            for k, v in overrides.items():
                setattr(module, k, v)
            # the leaf lists each tensor once per module object (trace._leaf): swap just those
            with _shifted(bool(sites)):
                return functional_call(module, tensors, tuple(args), kwargs, strict=False,
                                       tie_weights=False)
        finally:
            for k, v in saved.items():
                setattr(module, k, v)


def _shifted(at_eps_site: bool):
    """An eps site taking eps -> 0 makes a group constant at this point a 0/0 of round-off:
    its norm computes on shifted data there (``shifted_norms``); no other node pays for it."""
    return ShiftedNorms() if at_eps_site else contextlib.nullcontext()


def _with_tiny_eps(args: list, kwargs: dict, sites, value: float) -> tuple[list, dict]:
    for site in sites:
        if site.kind == "arg":
            args[site.key] = value
        else:
            kwargs[site.key] = value
    return args, kwargs


def _promote(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.dtype):
        return dtype if value.is_floating_point else value
    if isinstance(value, (list, tuple)):
        return type(value)(_promote(v, dtype) for v in value)
    if isinstance(value, dict):
        return {k: _promote(v, dtype) for k, v in value.items()}
    return value


def _flat_tensors(values) -> list[torch.Tensor]:
    out = []
    for v in values:
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (tuple, list)):
            out += _flat_tensors(v)
    return out


def run(program: Program, params, buffers, inputs, *, constants=None, eps_zero=(),
        record=None, promote: torch.dtype | None = None, eps_value: float = EPS_TINY) -> tuple:
    """Run the traced program on our own tensors (buffers are copied: BatchNorm writes them).
    ``promote`` runs every baked floating-point cast at that dtype instead; the eps sites in
    ``eps_zero`` take ``eps_value``."""

    def once(params, inputs):
        fresh = {k: v.clone() for k, v in buffers.items()}
        runner = Runner(program, params, fresh, constants=constants, eps_zero=tuple(eps_zero),
                        record=record, promote=promote, eps_value=eps_value)
        return runner.run_program(tuple(inputs))

    return _read_only(once, params, inputs)


def run_model(root: nn.Module, params, buffers, inputs) -> tuple:
    """Run the real model (the working copy, wrapped) on our own tensors: the ground truth."""

    slots = tensor_slots(root)

    def once(params, inputs):
        forget_caches(root)  # a memo of the last run's parameters is not this run's
        state = {"model." + k: v for k, v in params.items()}
        state.update({k: v.clone() for k, v in buffers.items()})
        state = {slot: state[name] for slot, name in slots.items() if name in state}
        out = functional_call(root, state, tuple(inputs), strict=False, tie_weights=False)
        return tuple(_flat_tensors(out))

    return _read_only(once, params, inputs)


def _read_only(run_once, params: Mapping[str, torch.Tensor], inputs) -> tuple:
    """Run so that no parameter or input tensor is written: they may be the user's own.

    A forward that writes in place to a parameter (``nn.Embedding(max_norm=...)`` renormalises
    its weight) or to its input (``nn.ReLU(inplace=True)`` first) is stopped before the write
    and run again on copies of exactly the tensors it writes to.
    """
    params, inputs = dict(params), list(inputs)
    protected = list(params.values()) + inputs
    while True:
        guard = _WriteGuard(protected)
        try:
            with guard:
                return run_once(params, tuple(inputs))
        except _Written:
            written = guard.written
        # each round copies one more written tensor, so this ends
        protected = [t for t in protected if _storage(t) != written]
        params = {k: (v.clone() if _storage(v) == written else v) for k, v in params.items()}
        inputs = [x.clone() if _storage(x) == written else x for x in inputs]


class _Written(Exception):
    """Raised from inside the dispatcher, before a write to a protected tensor happens."""


class _WriteGuard(TorchDispatchMode):
    def __init__(self, tensors):
        super().__init__()
        self.protected = {_storage(t) for t in tensors} - {None}
        self.written = None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        ceiling.check()
        if self.protected and func._schema.is_mutable:
            for spec, value in _arguments(func._schema, args, kwargs):
                info = spec.alias_info
                if info is not None and info.is_write and _storage(value) in self.protected:
                    self.written = _storage(value)
                    raise _Written(str(func))
        alt = stand_in(func)
        if alt is not None and any(isinstance(a, torch.Tensor) and a.dtype == torch.float64
                                   for a in args):
            # the real model calls a kernel with no float64 implementation (MoE's grouped
            # matmul): its float64 stand-in, as the traced program's runner does
            return alt(*args, **kwargs)
        return func(*args, **kwargs)


def _arguments(schema, args, kwargs):
    for i, spec in enumerate(schema.arguments):
        if i < len(args):
            yield spec, args[i]
        elif spec.name in kwargs:
            yield spec, kwargs[spec.name]


def _storage(t: Any) -> int | None:
    if not isinstance(t, torch.Tensor) or t.is_meta or t.numel() == 0:
        return None
    try:
        return t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):  # tensor subclasses without real storage
        return None


def placed(program: Program, device: torch.device) -> Program:
    """The program with every plain tensor attribute of its working copy on ``device``.

    Parameters and buffers are swapped in per run; only stray tensors stored as ordinary
    attributes (the ``weight`` the old ``weight_norm`` hook computes) would stay behind.  When
    one is elsewhere, the working copy is copied again (sharing the parameters), so the traced
    program itself is left as it is."""
    if all(t.device == device for t in _stray_tensors(program.root)):
        return program
    root = structural_copy(program.root)
    for m in root.modules():
        for k, v in list(vars(m).items()):
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter) \
                    and v.device != device:
                setattr(m, k, v.to(device))
    # a graph of its own: the new module must not become the owner of the traced graph
    gm = program.gm
    if program.method == "symbolic_trace":
        gm = fx.GraphModule(root, copy.deepcopy(program.gm.graph))
    elif program.method == "opaque":  # the one node calls the root itself
        holder = nn.Module()
        holder.whole = root
        gm = fx.GraphModule(holder, copy.deepcopy(program.gm.graph))
    return replace(program, root=root, gm=gm)


def _stray_tensors(module: nn.Module):
    for m in module.modules():
        for v in vars(m).values():
            if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter):
                yield v
