"""The third tracer: the model's ATen ops as they ran on the example inputs (``make_fx`` in real
mode), for a forward that branches on tensor values, which both symbolic_trace and
torch.export refuse (variable-resolution vision encoders, local attention, audio codecs).

Every branch, loop count and ``.item()`` is frozen at the values of this one run, so the
program is the model's function only where the model would take the same branches.  The
frozen values may depend on the weights (an MoE router's split sizes), not only on the inputs:
confirmation therefore compares the program with the real model at *every* point it evaluates
it (``program.method == "specialised"``), not only at the check point, records the ops again
(``respecialised``) at a point it measures from whose branches are others, and a point where
the two still part is a point where nothing is confirmed.  What the branches read is held
fixed by the analysis (``graph.read``).
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import torch
import torch.fx.traceback as fx_traceback
from torch.func import functional_call
from torch.nn.modules.module import (register_module_forward_hook,
                                     register_module_forward_pre_hook)
from torch.utils import _pytree as pytree

from .program import EpsSite, Program
from .quiet import torch_silenced
from ..rng import seeded
from .working_copy import Flattened, forget_caches, tensor_slots

METHOD = "specialised"


def specialise(root: Flattened, canon: dict[int, str], inputs: tuple) -> Program:
    """The model's ops on ``inputs`` at its own weights, parameters and buffers as inputs."""
    params: dict[str, torch.Tensor] = {}
    for p in root.model.parameters():
        if id(p) in canon:
            params.setdefault(canon[id(p)], p.detach())
    buffers = {name: b.detach() for name, b in root.named_buffers()}
    forget_caches(root)  # else a memo of the reference run is baked in as a constant
    with torch.no_grad(), seeded(0), torch_silenced():
        return _record(root, params, buffers, inputs)


def respecialised(program: Program, params, buffers, inputs, eps_sites: tuple[EpsSite, ...]
                  ) -> tuple[Program, tuple[EpsSite, ...]]:
    """The same model's ops at another point (confirmation's, whose weights may take other
    branches: an MoE router's split sizes), with the normalisation eps sites found again.

    The sites move to the node of the same op and module and rank among that op's nodes in
    that module; where the two runs do not call such an op in its module equally often, the
    sites cannot be found and this raises."""
    names = list(program.params.values())
    forget_caches(program.root)
    fresh = _record(program.root, {k: params[k] for k in names}, dict(buffers), inputs)
    if list(fresh.params.values()) != names:
        raise RuntimeError("make_fx recorded the parameters in another order")
    old, new = _by_op(program), _by_op(fresh)
    where = {name: (key, rank) for key, names in old.items() for rank, name in enumerate(names)}
    moved = []
    for site in eps_sites:
        key, rank = where[site.node]
        if len(new.get(key, ())) != len(old[key]):
            raise RuntimeError(f"{key[1]} ran another number of times in "
                               f"'{key[2] or 'the model'}' at this point")
        moved.append(EpsSite(new[key][rank], site.kind, site.key))
    return replace(program, gm=fresh.gm, params=fresh.params, buffers=fresh.buffers,
                   constants=fresh.constants, inputs=fresh.inputs,
                   module_paths=fresh.module_paths, shapes={}), tuple(moved)


def _by_op(program: Program) -> dict[tuple, list[str]]:
    """(op, target, module) -> the nodes that apply it there, in order"""
    out: dict[tuple, list[str]] = {}
    for node in program.gm.graph.nodes:
        key = (node.op, node.target, program.module_paths.get(node.name, ""))
        out.setdefault(key, []).append(node.name)
    return out


def _record(root: Flattened, params: dict, buffers: dict, inputs: tuple) -> Program:
    from torch.fx.experimental.proxy_tensor import make_fx

    slots = tensor_slots(root)
    pnames, bnames = list(params), list(buffers)

    def forward(ps, bs, *xs):
        state = {"model." + k: v for k, v in zip(pnames, ps)}
        state.update({k: v.clone() for k, v in zip(bnames, bs)})  # BatchNorm writes its own
        state = {slot: state[name] for slot, name in slots.items() if name in state}
        return functional_call(root, state, xs, strict=False, tie_weights=False)

    with _module_paths(root):
        # pre-dispatch: the ops as the model calls them (aten.linear, aten.lstm), as export
        # records them, not their per-device kernels (mkldnn_rnn_layer on CPU, cudnn on GPU)
        gm = make_fx(forward, tracing_mode="real", _error_on_data_dependent_ops=False,
                     pre_dispatch=True)(
            [p.detach() for p in params.values()], [b.detach() for b in buffers.values()],
            *inputs)
    for node in list(gm.graph.nodes):
        # a no_grad region inside the model, recorded under our no_grad as False ... False:
        # run with gradients on (the Euler check) it would switch them off for good
        if node.op == "call_function" and node.target is torch._C._set_grad_enabled:
            gm.graph.erase_node(node)
    gm.recompile()
    placeholders = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    n_user = len(pytree.tree_leaves(list(inputs)))  # None takes no graph input (the runner knows)
    if len(placeholders) != len(pnames) + len(bnames) + n_user:
        raise RuntimeError("make_fx produced an unexpected number of graph inputs")
    param_nodes = dict(zip(placeholders, pnames))
    buffer_nodes = dict(zip(placeholders[len(pnames):], bnames))
    paths = {node: name.rpartition(".")[0] for node, name in param_nodes.items()}
    constants = {}
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = getattr(gm, node.target)
            if isinstance(value, torch.Tensor):
                constants[node.name] = value
        stack = node.meta.get("nn_module_stack")
        if stack:
            paths[node.name] = list(stack)[-1]
    return Program(root=root, gm=gm, method=METHOD, params=param_nodes, buffers=buffer_nodes,
                   constants=constants, inputs=tuple(placeholders[len(pnames) + len(bnames):]),
                   output_index=None, output_paths=tuple(root.output_paths), leaves={},
                   module_paths=paths)


@contextlib.contextmanager
def _module_paths(root: Flattened):
    """Each recorded op's owning module, in ``node.meta["nn_module_stack"]`` as export records
    it: make_fx records what fx's ``current_meta`` holds while a node is created, and global
    module hooks keep it at the innermost module running (for readable reports)."""
    paths = {id(m): name.removeprefix("model.") for name, m in root.model.named_modules(
        prefix="model")}
    stack: list[str] = []

    def mark() -> None:
        meta = fx_traceback.current_meta  # rebound by preserve_node_meta: looked up each time
        if stack:
            meta["nn_module_stack"] = {stack[-1]: (stack[-1], "")}
        else:
            meta.pop("nn_module_stack", None)

    def enter(module, args):
        if id(module) in paths:
            stack.append("" if paths[id(module)] == "model" else paths[id(module)])
            mark()

    def leave(module, args, out):
        if id(module) in paths and stack:
            stack.pop()
            mark()

    with fx_traceback.preserve_node_meta():
        handles = [register_module_forward_pre_hook(enter), register_module_forward_hook(leave)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def is_specialised(program: Program) -> bool:
    return program.method == METHOD


def read_params(program: Program) -> set[str]:
    """The parameters a recording's ops read (every parameter is an input of the recording;
    one whose ops a run never reached, an expert no token was routed to, has no users)."""
    users = {node.name for node in program.gm.graph.nodes if node.op == "placeholder"
             and node.users}
    return {name for node, name in program.params.items() if node in users}

