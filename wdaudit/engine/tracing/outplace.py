"""In-place ops of an exported graph whose writes nobody can observe, made out of place.

``torch.export`` keeps ``relu_``, ``silu_`` and ``x += y`` as written, and a graph that writes
to a tensor is functionalised (``run_decompositions``), which costs about as much as the export
itself: on an exported tf_efficientnet_b0, whose only writes are in-place activations, the
trace stage took 2.3 times as long for nothing (``benchmarks/bench_trace.py``).  A write is unobservable when the tensor it
writes was made by an op that returns fresh storage, and nothing reads that tensor after the
write or holds a view of it: then ``relu_(x)`` and ``relu(x)`` compute the same values for
everyone who looks.  Every other write is left for functionalisation.
"""

from __future__ import annotations

import operator

import torch
from torch import fx


def outplaced(ep) -> int:
    """Rewrites the unobservable in-place ops of an ``ExportedProgram``'s graph in place;
    returns how many.  A buffer counts as storage of the program's own (the audit runs on
    copies): BatchNorm's ``num_batches_tracked += 1`` in train mode is a write nobody reads."""
    from torch.export.graph_signature import InputKind

    gm = ep.graph_module
    owned = {s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.BUFFER}
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    done = 0
    for node in gm.graph.nodes:
        functional = _functional(node)
        if functional is None:
            continue
        x = node.args[0]
        if not isinstance(x, fx.Node) or not (_fresh(x) or x.name in owned):
            continue
        others = [u for u in x.users if u is not node]
        if any(order[u] > order[node] or not _fresh(u) for u in others):
            continue  # read after the write, or seen through a view
        node.target = functional
        done += 1
    if done:
        gm.recompile()
    return done


def _functional(node: fx.Node):
    """The out-of-place overload of an op that writes its first argument and nothing else."""
    target = node.target
    if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload) \
            or not node.args:
        return None
    name = target.overloadpacket.__name__
    if not name.endswith("_") or name.startswith("_"):
        return None
    schema = target._schema
    writes = [a.alias_info is not None and a.alias_info.is_write for a in schema.arguments]
    if not writes or not writes[0] or any(writes[1:]):
        return None
    packet = getattr(torch.ops.aten, name[:-1], None)
    functional = getattr(packet, target._overloadname, None) if packet is not None else None
    if functional is None:
        return None
    theirs = functional._schema
    if [a.name for a in theirs.arguments] != [a.name for a in schema.arguments] \
            or theirs.is_mutable or any(r.alias_info is not None for r in theirs.returns):
        return None
    return functional


def _fresh(node: fx.Node) -> bool:
    """Whether a node's result is storage of its own (not a view or an alias of an input)."""
    if node.op != "call_function":
        return False
    target = node.target
    if target is operator.getitem:  # a piece of a multi-output op: fresh if the op returns no alias
        source = node.args[0]
        return isinstance(source, fx.Node) and source.op == "call_function" \
            and isinstance(source.target, torch._ops.OpOverload) \
            and not _aliases(source.target)
    return isinstance(target, torch._ops.OpOverload) and not _aliases(target)


def _aliases(target: torch._ops.OpOverload) -> bool:
    schema = target._schema
    return schema.is_mutable or any(r.alias_info is not None for r in schema.returns)

