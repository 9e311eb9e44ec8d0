"""Offset rules: how an op carries additive terms that something downstream may remove.

The influence stage asks, for every node, which parameters it depends on (``deps``) and which
of them contribute only an additive term constant along some axes (``offsets``).  Invariant:
node = f(everything but p) + h_p, with h_p constant along ``offsets[p]``.  A mean-subtracting
normaliser removes a term constant along the axes it averages over (a conv bias right before
BatchNorm), a softmax one constant along its axis, attention one of the keys constant across
key positions.  Each op's rule lives in the op table beside its degree rule; an op whose rule
is :func:`mixes` combines everything it reads (the sound default).

When in doubt a rule keeps fewer axes or fewer offsets: that only costs precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import fx

from . import axes as ax

MASK_FILL = -1e30  # filling with this or less keeps a row's softmax shift-invariant


@dataclass(frozen=True)
class Info:
    deps: frozenset[str] = frozenset()
    offsets: Mapping[str, frozenset[int]] = field(default_factory=dict)
    # a keepdim mean: (the node averaged, the axes) — what ``x - x.mean(dims)`` subtracts
    mean_of: tuple[str, frozenset[int]] | None = None


@dataclass(frozen=True)
class TupleInfo:
    first: Info  # the main output (normalised, attended)
    rest: Info  # statistics: depend on everything the input does


def deps(info: Any) -> frozenset[str]:
    if isinstance(info, TupleInfo):
        return info.first.deps | info.rest.deps
    return info.deps if isinstance(info, Info) else frozenset()


@dataclass
class OffsetCall:
    """One op application as an offset rule sees it: arguments bound by name (``fx.Node``
    operands, ``("param", name)`` for a leaf module's own parameter, literals)."""

    node: str
    args: dict[str, Any]
    positional: tuple  # the node's own positional arguments, for ops with varargs dims
    infos: Mapping[str, Any]  # node -> Info / TupleInfo computed so far
    shape_of: Callable[[str], tuple[int, ...] | None]  # node -> shape the trace recorded
    params: Mapping[str, str]  # parameter nodes -> canonical name
    everything: frozenset[str]  # every parameter any operand depends on
    absorbed: dict[str, str] = field(default_factory=dict)  # parameter -> node removing it
    summands: dict[str, tuple[str, str]] = field(default_factory=dict)  # pseudo -> (node, role)

    def info(self, value: Any) -> Info:
        if isinstance(value, fx.Node):
            info = self.infos.get(value.name)
            return info if isinstance(info, Info) else Info(deps(info))
        if isinstance(value, tuple) and value and value[0] == "param":
            return Info(frozenset({value[1]}))
        return Info()

    def shape(self, value: Any) -> tuple[int, ...] | None:
        if isinstance(value, fx.Node):
            value = value.name
        return self.shape_of(value) if isinstance(value, str) else None

    @property
    def out_shape(self) -> tuple[int, ...] | None:
        return self.shape(self.node)

    def mixed(self, offsets: Mapping[str, frozenset[int]] | None = None) -> Info:
        return Info(self.everything, dict(offsets or {}))

    def absorb(self, info: Info, reduced: frozenset[int]) -> frozenset[str]:
        """The offsets of ``info`` constant along every axis in ``reduced``: removed here."""
        gone = frozenset(p for p, a in info.offsets.items() if reduced and reduced <= a)
        for p in gone:
            self.absorbed.setdefault(p, self.node)
        return gone

    def pure_param(self, value: Any) -> bool:
        if isinstance(value, tuple) and value and value[0] == "param":
            return True
        return isinstance(value, fx.Node) and value.name in self.params


OffsetRule = Callable[[OffsetCall], Any]


def mixes(c: OffsetCall) -> Info:
    """The default: the result depends on everything, no term stays additive."""
    return c.mixed()


def pass_through(c: OffsetCall) -> Info:
    """clone, dropout (off), dtype casts, slices: every term stays as it was."""
    return c.mixed(c.info(c.args.get("input")).offsets)


def scaled(c: OffsetCall) -> Info:
    """``x * c`` and ``x / c`` for a number ``c``: terms stay additive; tensors mix."""
    if _is_number(c.args.get("other")):
        return pass_through(c)
    return mixes(c)


def product(c: OffsetCall) -> Info:
    """(f + h)·y = f·y + h·y: the term stays additive, constant where it was and where y
    does not vary (a per-channel gain keeps it constant along the batch)."""
    if _is_number(c.args.get("other")):
        return pass_through(c)
    a, b = c.args.get("input"), c.args.get("other")
    out = c.out_shape
    if out is None:
        return c.mixed()
    offsets: dict[str, frozenset[int]] = {}
    for u, v in ((a, b), (b, a)):
        if not isinstance(u, fx.Node):
            continue
        ushape = c.shape(u)
        vshape = c.shape(v) if isinstance(v, fx.Node) else ()
        if ushape is None or vshape is None:
            return c.mixed()
        flat = ax.broadcast(frozenset(), vshape, out)  # axes along which v does not vary
        uinfo, vinfo = c.info(u), c.info(v)
        for p, axes in uinfo.offsets.items():
            if p not in vinfo.deps:
                offsets[p] = ax.broadcast(axes, ushape, out) & flat
    return c.mixed(offsets)


def add(c: OffsetCall) -> Info:
    """A sum keeps the additive terms of both sides.  A parameter-free summand (a constant,
    a buffer, the input) is followed as a term of its own, a pseudo-parameter: if it never
    reaches an output, the model is the same function with it at zero."""
    out = c.out_shape
    if out is None:
        return c.mixed()
    pieces = []
    for role in ("input", "other"):
        operand = c.args.get(role)
        if isinstance(operand, fx.Node):
            info, shape = c.info(operand), c.shape(operand)
            if shape is None:
                return c.mixed()
        elif _is_number(operand) and operand != 0:
            info, shape = Info(), ()
        else:
            continue
        if not info.deps:
            pseudo = f"@{c.node}:{role}"
            c.summands[pseudo] = (c.node, role)
            # a tensor is constant only along its size-1 axes (broadcast adds the rest)
            flat = frozenset(i for i, n in enumerate(shape) if n == 1)
            info = Info(frozenset({pseudo}), {pseudo: flat})
        pieces.append((info, {p: ax.broadcast(v, shape, out) for p, v in info.offsets.items()}))
    offsets: dict[str, frozenset[int]] = {}
    blocked: set[str] = set()
    for info, _ in pieces:
        blocked |= info.deps - set(info.offsets)
    for _, aligned in pieces:
        for p, v in aligned.items():
            offsets[p] = offsets[p] & v if p in offsets else v
    for p in blocked:
        offsets.pop(p, None)
    extra = frozenset().union(*(info.deps for info, _ in pieces)) if pieces else frozenset()
    return Info(c.everything | extra, offsets)


def subtract(c: OffsetCall) -> Info:
    """``x - x.mean(dims, keepdim=True)`` removes the terms of x constant along ``dims``;
    any other difference is a sum."""
    x, other = c.args.get("input"), c.args.get("other")
    mean = c.info(other).mean_of if isinstance(other, fx.Node) else None
    if isinstance(x, fx.Node) and mean is not None and mean[0] == x.name:
        rank = len(c.shape(x) or ())
        reduced = frozenset(d % rank for d in mean[1]) if rank else frozenset()
        return Info(c.everything - c.absorb(c.info(x), reduced))
    return add(c)


def mean(c: OffsetCall) -> Info:
    """A reduction mixes what it averages; a keepdim mean is remembered for :func:`subtract`."""
    x = c.args.get("input")
    dims = c.positional[1] if len(c.positional) > 1 else c.args.get("dim")
    keep = c.positional[2] if len(c.positional) > 2 else c.args.get("keepdim", False)
    if not isinstance(x, fx.Node) or not keep:
        return c.mixed()
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    return Info(c.everything, {}, (x.name, frozenset(dims)))


def masked_fill(c: OffsetCall) -> Info:
    """Masked logits stay at -inf: a softmax over the row still ignores the shift."""
    value = c.args.get("value")
    if _is_number(value) and value <= MASK_FILL:
        return pass_through(c)
    return c.mixed()


# --- shape ops: where the constant axes go ---------------------------------------------------


def _mapped(c: OffsetCall, fn: Callable[[frozenset[int]], frozenset[int]]) -> Info:
    return c.mixed({p: fn(a) for p, a in c.info(c.args.get("input")).offsets.items()})


def reshape(c: OffsetCall) -> Info:
    x = c.args.get("input")
    shape, out = c.shape(x), c.out_shape
    if shape is None or out is None:
        return _unshaped(c)
    return _mapped(c, lambda a: ax.reshape(a, shape, out))


def permute(c: OffsetCall) -> Info:
    rest = list(c.positional[1:])
    dims = list(rest[0]) if len(rest) == 1 and isinstance(rest[0], (list, tuple)) \
        else list(rest or c.args.get("dims", ()))
    if c.out_shape is None or not all(isinstance(d, int) for d in dims):
        return _unshaped(c)
    rank = len(c.out_shape)
    return _mapped(c, lambda a: ax.permute(a, dims, rank))


def transpose(c: OffsetCall) -> Info:
    dims = tuple(c.positional[1:3])
    if len(dims) != 2 or not all(isinstance(d, int) for d in dims) or c.out_shape is None:
        return _unshaped(c)
    rank = len(c.out_shape)
    return _mapped(c, lambda a: ax.transpose(a, dims[0], dims[1], rank))


def matrix_transpose(c: OffsetCall) -> Info:
    """``t``: a transpose of the first two axes."""
    if c.out_shape is None:
        return _unshaped(c)
    rank = len(c.out_shape)
    return _mapped(c, lambda a: ax.transpose(a, 0, 1, rank))


def expand(c: OffsetCall) -> Info:
    shape, out = c.shape(c.args.get("input")), c.out_shape
    if shape is None or out is None:
        return _unshaped(c)
    return _mapped(c, lambda a: ax.broadcast(a, shape, out))


def select(c: OffsetCall) -> Info:
    dim = c.args.get("dim", 0)
    shape = c.shape(c.args.get("input"))
    if shape is None or not isinstance(dim, int):
        return _unshaped(c)
    return _mapped(c, lambda a: ax.remove(a, dim, len(shape)))


def _unshaped(c: OffsetCall) -> Info:
    """No recorded shape (a value the trace did not see) or dims given in a form not read
    here: the axes cannot be followed."""
    return c.mixed()


# --- products -------------------------------------------------------------------------------


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


# --- what removes terms -----------------------------------------------------------------------


def softmax(c: OffsetCall) -> Info:
    x = c.args.get("input")
    shape, dim = c.shape(x), c.args.get("dim")
    if shape is None or not isinstance(dim, int):
        return c.mixed()
    removed = c.absorb(c.info(x), frozenset({dim % len(shape)}))
    return Info(c.everything - removed)


def attention(c: OffsetCall, *, extras: bool = False) -> Any:
    """softmax(q kᵀ + mask) v: a term of the keys constant across key positions, or of
    the mask constant along its last axis, shifts every logit of a row alike."""
    q, k, v = (c.info(c.args.get(n)) for n in ("query", "key", "value"))
    mask = c.info(c.args.get("attn_mask"))
    removed: set[str] = set()
    kshape = c.shape(c.args.get("key"))
    if kshape is not None:
        for p in c.absorb(k, frozenset({len(kshape) - 2})):
            if not any(p in o.deps for o in (q, v, mask)):
                removed.add(p)
    mshape = c.shape(c.args.get("attn_mask")) if c.args.get("attn_mask") is not None else None
    if mshape:
        for p in c.absorb(mask, frozenset({len(mshape) - 1})):
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
    out = Info(c.everything - c.absorb(c.info(x), reduced), offsets)
    return TupleInfo(out, Info(c.everything)) if stats else out


def layer_norm(c: OffsetCall, *, stats: bool = False) -> Any:
    k = len(tuple(c.args.get("normalized_shape") or ()))
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


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
