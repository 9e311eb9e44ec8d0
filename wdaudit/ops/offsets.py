"""Offset rules: how an op carries additive terms that something downstream may remove.

The influence stage asks, for every node, which parameters it depends on (``deps``) and which
of them contribute only an additive term constant along some axes (``offsets``).  Invariant:
node = f(everything but p) + h_p, with h_p constant along ``offsets[p]``.  A mean-subtracting
normaliser removes a term constant along the axes it averages over (a conv bias right before
BatchNorm), a softmax one constant along its axis, attention one of the keys constant across
key positions.  Each op's rule lives in the op table beside its degree rule; an op whose rule
is :func:`mixes` combines everything it reads (the sound default).  The rules of layer-level
ops (products, softmax, attention, normalisers) are in :mod:`wdaudit.ops.offsets_layers`.

When in doubt a rule keeps fewer axes or fewer offsets: that only costs precision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import fx

from . import axes as ax
from .op_call import is_number

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


# what can remove an additive offset, so that a finding names the mechanism, not a guess
MECHANISMS = ("mean subtraction", "normalisation", "softmax", "attention keys", "attention mask")


@dataclass(frozen=True)
class Absorption:
    node: str  # the node that removes the offset
    by: str  # how: one of MECHANISMS


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
    absorbed: dict[str, "Absorption"] = field(default_factory=dict)  # parameter -> what removes it
    summands: dict[str, tuple[str, str]] = field(default_factory=dict)  # pseudo -> (node, role)
    # node -> whether the trace saw it hold a Python number (a size, a scale made from one)
    number_of: Callable[[str], bool] = lambda name: False
    # node -> how many numbers the trace saw it hold, for a size (``x.shape[-1:]``)
    length_of: Callable[[str], int | None] = lambda name: None

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

    def absorb(self, info: Info, reduced: frozenset[int], by: str) -> frozenset[str]:
        """The offsets of ``info`` constant along every axis in ``reduced``: removed here, by
        the mechanism ``by`` names (one of :data:`MECHANISMS`)."""
        assert by in MECHANISMS, by
        gone = frozenset(p for p, a in info.offsets.items() if reduced and reduced <= a)
        for p in gone:
            self.absorbed.setdefault(p, Absorption(self.node, by))
        return gone

    def is_number(self, value: Any) -> bool:
        """A literal number, or a node the trace saw hold one (``1 / sqrt(k.size(-1))``)."""
        return is_number(value) or (isinstance(value, fx.Node) and self.number_of(value.name))

    def pure_param(self, value: Any) -> bool:
        if isinstance(value, tuple) and value and value[0] == "param":
            return True
        return isinstance(value, fx.Node) and value.name in self.params



def mixes(c: OffsetCall) -> Info:
    """The default: the result depends on everything, no term stays additive."""
    return c.mixed()


def value_free(c: OffsetCall) -> Info:
    """Shape queries and tensors made like another (``x.size(-1)``, ``ones_like(x)``): the
    result does not depend on the values of a tensor ``input``, only on what the other
    arguments hold (a size made from ``p.item()`` still depends on p)."""
    found: set[str] = set()
    for name, value in c.args.items():
        if name != "input" or c.shape(value) is None:
            found |= _node_deps(c, value)
    return Info(frozenset(found))


def _node_deps(c: OffsetCall, value: Any) -> frozenset[str]:
    if isinstance(value, (list, tuple)) and not (value and value[0] == "param"):
        return frozenset().union(*(_node_deps(c, v) for v in value)) if value else frozenset()
    if isinstance(value, dict):
        return _node_deps(c, list(value.values()))
    return deps(c.infos.get(value.name)) if isinstance(value, fx.Node) else c.info(value).deps


def pass_through(c: OffsetCall) -> Info:
    """clone, dropout (off), dtype casts, slices: every term stays as it was."""
    return c.mixed(c.info(c.args.get("input")).offsets)


def scaled(c: OffsetCall) -> Info:
    """``x * c`` and ``x / c`` for a number ``c``: terms stay additive (those the number itself
    is made of excepted); tensors mix."""
    other = c.args.get("other")
    if c.is_number(other):
        gone = c.info(other).deps
        return c.mixed({p: a for p, a in c.info(c.args.get("input")).offsets.items()
                        if p not in gone})
    return mixes(c)


def product(c: OffsetCall) -> Info:
    """(f + h)·y = f·y + h·y: the term stays additive, constant where it was and where y
    does not vary (a per-channel gain keeps it constant along the batch)."""
    a, b = c.args.get("input"), c.args.get("other")
    if c.is_number(b):
        return scaled(c)
    if c.is_number(a):
        return scaled(OffsetCall(c.node, {**c.args, "input": b, "other": a}, c.positional,
                                 c.infos, c.shape_of, c.params, c.everything, c.absorbed,
                                 c.summands, c.number_of, c.length_of))
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
        elif is_number(operand) and operand != 0:
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
        return Info(c.everything - c.absorb(c.info(x), reduced, "mean subtraction"))
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
    if is_number(value) and value <= MASK_FILL:
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
