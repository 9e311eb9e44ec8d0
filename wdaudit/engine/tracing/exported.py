"""The second tracer: ``torch.export`` (non-strict) on the example inputs, its writes made out of
place (``outplace``) or, where they are observed, decomposed; the exported graph read into a
:class:`Program` with the shapes export recorded.  ``trace`` checks it against the model."""

from __future__ import annotations

import torch
from torch import fx

from ...ops.lookup import function_op
from ..rng import seeded
from .outplace import outplaced
from .program import Program, recorded
from .quiet import torch_silenced
from .working_copy import Flattened, forget_caches


class ExportError(RuntimeError):
    """torch.export produced something the program record cannot hold."""


def export_program(root: Flattened, canon: dict[int, str], inputs: tuple) -> Program:
    from torch.export import export
    from torch.export.graph_signature import InputKind, OutputKind

    forget_caches(root)  # else export bakes the reference run's memo in as a constant
    with seeded(0), torch_silenced():
        ep = export(root, tuple(inputs), strict=False)
        output_paths = tuple(root.output_paths)
        outplaced(ep)  # relu_, x += y, BatchNorm's step count: writes nobody sees
        if _mutates(ep.graph_module):
            ep = ep.run_decompositions({})  # functionalise: no in-place ops, no aliasing left
    gm = ep.graph_module
    buffer_names = {id(b): n for n, b in root.named_buffers()}
    params, buffers, constants, user_inputs = {}, {}, {}, []
    for spec in ep.graph_signature.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.PARAMETER:
            params[name] = canon[id(root.get_parameter(spec.target))]
        elif spec.kind == InputKind.BUFFER:
            buffers[name] = buffer_names[id(root.get_buffer(spec.target))]
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            constants[name] = ep.constants[spec.target]
        elif spec.kind == InputKind.USER_INPUT:
            user_inputs.append(name)
        else:
            raise ExportError(f"torch.export produced an input of kind {spec.kind.name}")
    outputs = tuple(i for i, s in enumerate(ep.graph_signature.output_specs)
                    if s.kind == OutputKind.USER_OUTPUT)
    paths, shapes = {}, {}
    for node in gm.graph.nodes:
        shapes[node.name] = recorded(node.meta.get("val"))  # export's fake tensors
        stack = node.meta.get("nn_module_stack")
        if stack:
            paths[node.name] = module_path(list(stack.values())[-1][0])
        elif node.name in params:
            paths[node.name] = params[node.name].rpartition(".")[0]
    return Program(root=root, gm=gm, method="export", params=params, buffers=buffers,
                   constants=constants, inputs=tuple(user_inputs), output_index=outputs,
                   output_paths=output_paths, leaves={}, module_paths=paths, shapes=shapes)


def _mutates(gm: fx.GraphModule) -> bool:
    """Whether an exported graph needs decomposing (which costs about as much as the export
    itself): it writes to a tensor, or hides ops in nested graphs (``no_grad`` regions become
    higher-order ops that decomposition inlines)."""
    for node in gm.graph.nodes:
        target = node.target
        if node.op == "get_attr" or isinstance(target, torch._ops.HigherOrderOperator):
            return True
        if node.op == "call_function" and isinstance(target, torch._ops.OpOverload):
            if target._schema.is_mutable:
                op = function_op(target)  # the table knows writes that change no values
                if op is None or not op.metadata_only:
                    return True
    return False


def module_path(path: str) -> str:
    """A node's module path inside the wrapper, as the model names it."""
    return path[len("model."):] if path.startswith("model.") else ("" if path == "model" else path)
