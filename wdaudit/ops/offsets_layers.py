"""Offset rules for layer-level ops: products carry additive terms (a bias is a new one),
softmax, attention and mean-subtracting normalisers remove them.  Same contract as
:mod:`wdaudit.ops.offsets`."""

from __future__ import annotations

from typing import Any, Callable

from torch import fx

from . import axes as ax
from .offsets import Info, OffsetCall, TupleInfo


def linear(c: OffsetCall, *, conv: bool = False, addmm: bool = False) -> Info:
    """W(x + h) + b = Wx + Wh + b: Wh keeps x's constant axes except the one contracted
    (and, for a convolution, the spatial ones when padding makes borders differ); the bias
    is a new term constant along everything but the output channel."""
    rank = len(c.out_shape or ())
    if not rank:
        return c.mixed()
    x = c.args.get("mat1") if addmm else c.args.get("input")
    xinfo = c.info(x)
    weight = c.info(c.args.get("mat2") if addmm else c.args.get("weight"))
    bias_arg = c.args.get("input") if addmm else c.args.get("bias")
    bias = c.info(bias_arg)
    offsets: dict[str, frozenset[int]] = {}
    if conv:
        keep = frozenset(range(rank)) - {1}
        if c.args.get("transposed") or not _no_padding(c.args.get("padding", 0)):
            keep = frozenset({0})  # zero borders (or a transposed conv) break spatial constancy
        channel = 1
    else:
        keep, channel = frozenset(range(rank - 1)), rank - 1
    pure_bias = None
    if len(bias.deps) == 1 and c.pure_param(bias_arg):
        (pure_bias,) = bias.deps
    for p, a in xinfo.offsets.items():
        if p in weight.deps or (p in bias.deps and p != pure_bias):
            continue  # multiplied by itself, or inside the bias in some other way
        offsets[p] = a & keep
    own = frozenset(range(rank)) - {channel}
    if pure_bias is not None and pure_bias not in weight.deps:
        if pure_bias in offsets:  # a layer applied twice: W·b through x, plus b itself
            offsets[pure_bias] &= own
        elif pure_bias not in xinfo.deps:
            offsets[pure_bias] = own
    return c.mixed(offsets)


def matmul(c: OffsetCall) -> Info:
    """(x + h) @ y: h @ y keeps x's row axis; x @ (y + h): keeps y's column axis; batch
    axes only where the other side broadcasts."""
    x, y = c.args.get("input"), c.args.get("other", c.args.get("mat2"))
    out, xs, ys = c.out_shape, c.shape(x), c.shape(y)
    if not (out and xs and ys) or len(xs) < 2 or len(ys) < 2:
        return c.mixed()
    xinfo, yinfo = c.info(x), c.info(y)
    offsets: dict[str, frozenset[int]] = {}
    r = len(out)
    for info, other, shape, oshape, own_axis in ((xinfo, yinfo, xs, ys, r - 2),
                                                (yinfo, xinfo, ys, xs, r - 1)):
        flat_other = ax.broadcast(frozenset(), oshape[:-2], out[:-2])
        for p, a in info.offsets.items():
            if p in other.deps:
                continue  # p may stay an offset only if nothing else the op combines has it
            aligned = ax.broadcast(a, shape, out)
            kept = {i for i in aligned if i < r - 2 and i in flat_other}
            if own_axis in aligned:
                kept.add(own_axis)
            offsets[p] = frozenset(kept)
    return c.mixed(offsets)


def einsum(c: OffsetCall) -> Info:
    """Two operands, explicit output: a term of one operand constant along its letter ℓ stays
    constant along ℓ in the output when the other operand does not carry ℓ (a key-side term
    of ``bhqd,bhkd->bhqk`` is constant along k)."""
    eq, ops = c.args.get("equation"), c.args.get("operands", c.args.get("tensors"))
    if isinstance(ops, (list, tuple)) and len(ops) == 1 and isinstance(ops[0], (list, tuple)):
        ops = ops[0]
    if not isinstance(eq, str) or "->" not in eq or "." in eq or not isinstance(ops, (list, tuple)) \
            or len(ops) != 2 or not all(isinstance(o, fx.Node) for o in ops):
        return c.mixed()
    ins, out = eq.replace(" ", "").split("->")
    subs = ins.split(",")
    shapes = [c.shape(o) for o in ops]
    if len(subs) != 2 or any(s is None or len(s) != len(sub) or len(set(sub)) != len(sub)
                             for s, sub in zip(shapes, subs)):
        return c.mixed()
    offsets: dict[str, frozenset[int]] = {}
    for i in (0, 1):
        mine, other = subs[i], subs[1 - i]
        other_deps = c.info(ops[1 - i]).deps
        for p, a in c.info(ops[i]).offsets.items():
            if p in other_deps:
                continue
            flat = {mine[j] for j in a} - set(other)
            offsets[p] = frozenset(k for k, letter in enumerate(out) if letter in flat)
    return c.mixed(offsets)


# --- what removes terms -----------------------------------------------------------------------


def softmax(c: OffsetCall) -> Info:
    x = c.args.get("input")
    shape, dim = c.shape(x), c.args.get("dim")
    if shape is None or not isinstance(dim, int):
        return c.mixed()
    removed = c.absorb(c.info(x), frozenset({dim % len(shape)}), "softmax")
    return Info(c.everything - removed)


def attention(c: OffsetCall, *, extras: bool = False) -> Any:
    """softmax(q kᵀ + mask) v: a term of the keys constant across key positions, or of
    the mask constant along its last axis, shifts every logit of a row alike."""
    q, k, v = (c.info(c.args.get(n)) for n in ("query", "key", "value"))
    mask = c.info(c.args.get("attn_mask"))
    removed: set[str] = set()
    kshape = c.shape(c.args.get("key"))
    if kshape is not None:
        for p in c.absorb(k, frozenset({len(kshape) - 2}), "attention keys"):
            if not any(p in o.deps for o in (q, v, mask)):
                removed.add(p)
    mshape = c.shape(c.args.get("attn_mask")) if c.args.get("attn_mask") is not None else None
    if mshape:
        for p in c.absorb(mask, frozenset({len(mshape) - 1}), "attention mask"):
            if not any(p in o.deps for o in (q, k, v)):
                removed.add(p)
    for p in [p for p in c.absorbed if p not in removed]:
        del c.absorbed[p]
    out = Info(c.everything - removed)
    return TupleInfo(out, Info(c.everything)) if extras else out


def _norm(c: OffsetCall, reduced_of: Callable[[int], frozenset[int] | None],
          own: Callable[[int], tuple[int, ...]], stats: bool) -> Any:
    """A normaliser removes the terms constant along the axes it reduces; its own bias is a
    term constant along all but its own axes."""
    x = c.args.get("input")
    shape = c.shape(x)
    if shape is None:
        return c.mixed()
    rank = len(shape)
    reduced = reduced_of(rank)
    if reduced is None:  # running statistics: an affine map, nothing removed
        return c.mixed()
    offsets = {}
    bias_arg, weight = c.args.get("bias"), c.info(c.args.get("weight"))
    bias = c.info(bias_arg)
    if len(bias.deps) == 1 and c.pure_param(bias_arg):
        (b,) = bias.deps  # γ·x̂ + β: β is a term constant along all but its own axes
        if b not in c.info(x).deps and b not in weight.deps:
            offsets[b] = frozenset(range(rank)) - set(own(rank))
    out = Info(c.everything - c.absorb(c.info(x), reduced, "normalisation"), offsets)
    return TupleInfo(out, Info(c.everything)) if stats else out


def layer_norm(c: OffsetCall, *, stats: bool = False) -> Any:
    k = _normalized_rank(c)
    return _norm(c, lambda r: frozenset(range(r - k, r)), lambda r: tuple(range(r - k, r)),
                 stats)


def group_norm(c: OffsetCall, *, stats: bool = False) -> Any:
    groups = c.args.get("num_groups", c.args.get("group"))
    channels = (c.shape(c.args.get("input")) or (0, 0))[1:2]
    start = 2 if (channels and groups == channels[0]) else 1
    return _norm(c, lambda r: frozenset(range(start, r)), lambda r: (1,), stats)


def instance_norm(c: OffsetCall) -> Any:
    batch_stats = c.args.get("use_input_stats", True)
    return _norm(c, lambda r: frozenset(range(2, r)) if batch_stats else None, lambda r: (1,),
                 False)


def batch_norm(c: OffsetCall, *, stats: bool = False) -> Any:
    batch_stats = c.args.get("training", True)
    return _norm(c, lambda r: (frozenset(range(r)) - {1}) if batch_stats else None,
                 lambda r: (1,), stats)


def _no_padding(padding) -> bool:
    if padding == "valid":
        return True
    if isinstance(padding, int):
        return padding == 0
    return isinstance(padding, (list, tuple)) and all(p == 0 for p in padding)


def _normalized_rank(c: OffsetCall) -> int:
    """How many trailing dims a layer norm normalises.  ``normalized_shape`` may be a traced
    size (nanoGPT's ``F.layer_norm(x, self.weight.shape, ...)``, ``x.shape[-1:]``): then the
    weight's shape (it equals normalized_shape) or the length the trace saw.  Unknown: 0,
    which absorbs no additive term (conservative)."""
    shape = c.args.get("normalized_shape")
    if not isinstance(shape, fx.Node):
        return len(tuple(shape or ()))
    weight = c.shape(c.args.get("weight"))
    if weight is not None:
        return len(weight)
    return c.length_of(shape.name) or 0
