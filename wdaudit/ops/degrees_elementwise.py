"""Degree rules for elementwise, shape and selection ops: how one op maps the scaling degrees of
its operands to the degree of its result, and which equality constraints it imposes on the way
(DESIGN.md §3).  Arithmetic lives in :mod:`wdaudit.ops.degrees_arithmetic`, layers in
:mod:`wdaudit.ops.degrees_layers`.

Every rule receives a :class:`Call` whose arguments are bound by name (``input``, ``weight``,
``bias``, ``eps`` …) whatever spelling the tracer produced (``F.layer_norm``, ``aten.layer_norm``,
``nn.LayerNorm``).  A rule must look at every tensor operand it lets through; the propagation
engine forces any operand a rule ignored to degree 0, so a forgotten operand costs precision,
never soundness.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .degree import CONST, ZERO, Deg, Multi, Split
from .op_call import Call, as_deg, is_eps, is_number

# ---------------------------------------------------------------------------------------
# degree-preserving and friends
# ---------------------------------------------------------------------------------------


def preserve(c: Call) -> Deg | None:
    """Positively homogeneous of degree 1: relu, pooling, views, dropout (off), reductions."""
    return c.deg("input")


def transposed(c: Call) -> Deg | Split | None:
    """transpose/swapaxes: degree-preserving; a Split keeps its parts with its axis swapped, so
    that a per-channel norm after a transpose still accepts it."""
    raw = c.raw("input")
    rank = len(c.out_shape) if c.out_shape else None
    if not isinstance(raw, Split) or rank is None:
        return preserve(c)
    a, b = (c.raw(n) for n in list(c.args)[1:3])
    swap = {a % rank: b % rank, b % rank: a % rank}
    return Split(swap.get(raw.dim, raw.dim), raw.parts)


def permuted(c: Call) -> Deg | Split | None:
    """permute: degree-preserving; a Split's axis moves with the permutation."""
    raw = c.raw("input")
    rank = len(c.out_shape) if c.out_shape else None
    if not isinstance(raw, Split) or rank is None:
        return preserve(c)
    dims = [c.raw(n) for n in list(c.args)[1:]]
    dims = list(dims[0]) if len(dims) == 1 and isinstance(dims[0], (list, tuple)) else dims
    return Split([d % rank for d in dims].index(raw.dim), raw.parts)


def same_layout(c: Call) -> Deg | Split | None:
    """contiguous, clone, dropout (off): the values as they are, a Split included."""
    raw = c.raw("input")
    if not isinstance(raw, Split) or not c.out_shape:
        return preserve(c)
    for name in list(c.args)[1:]:
        c.raw(name)
    return raw


def preserve_nonneg(c: Call) -> Deg | None:
    d = c.deg("input")
    return None if d is None else Deg(d.form, d.zero, True)


def preserve_list(c: Call) -> Multi:
    """split/chunk/unbind: every piece keeps the input's degree."""
    c.read_rest("input")
    d = c.operand("input")
    return Multi(d, d)


def each(c: Call) -> tuple:
    """broadcast_tensors: output i is input i, broadcast to the common shape (a view)."""
    tensors = c.raw("tensors", "input")
    items = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    return tuple(as_deg(t) for t in items)


def pool(c: Call) -> Any:
    """Max pooling: homogeneous; with return_indices it also yields scale-invariant indices."""
    c.read_rest("input")
    d = c.operand("input")
    if c.args.get("return_indices") is True:
        return (d, Deg(nonneg=True))
    return d


def scale_invariant(c: Call) -> Deg:
    """sign, argmax, ``x > 0``, ``x != 0``, ``x.bool()``: unchanged by positive scaling."""
    c.raw("input")
    return Deg(nonneg=True)


def nonlinear(c: Call) -> Deg:
    """Not homogeneous (gelu, tanh, softmax, exp …): the input must not scale at all."""
    for name in list(c.args):
        c.require_zero(c.raw(name), f"{c.op} is not positively homogeneous")
    return CONST


def constant(c: Call) -> Deg:
    """A tensor made from constants (ones, arange, ones_like, rand_like …): tensor operands
    only lend their shape, dtype or device."""
    c.read_rest()
    return CONST


def zeros(c: Call) -> Deg:
    c.read_rest()
    return ZERO


def full(c: Call) -> Deg:
    """full / full_like / new_full: the result scales like the fill value."""
    value = c.raw("fill_value", "value")
    c.read_rest()
    if is_number(value):
        return ZERO if value == 0 else CONST
    d = as_deg(value)
    return CONST if d is None else Deg(d.form, d.zero, d.nonneg)


def first_value(c: Call) -> Deg | None:
    """torch.tensor(v), scalar_tensor(v), .item(): a new tensor (or number) holding the values
    of its first argument, which keep their scale."""
    names = list(c.args)
    for name in names[1:]:
        c.raw(name)
    return c.deg(names[0]) if names else None


def like(c: Call) -> Deg | None:
    """view_as / reshape_as / expand_as / type_as: ``other`` lends only its shape or dtype."""
    c.raw("other")
    return c.deg("input")


def no_value(c: Call) -> None:
    """Assertions and metadata checks: no tensor result."""
    c.read_rest()
    return None


def shape_query(c: Call) -> Deg:
    """``x.size()``, ``x.dim()``, ``x.shape``: never depends on parameter values."""
    c.read_rest()
    return CONST


# ---------------------------------------------------------------------------------------
# piecewise-linear ops with thresholds
# ---------------------------------------------------------------------------------------


def relu(c: Call) -> Deg | None:
    return preserve_nonneg(c)


def _bound_ok(bound: Any) -> bool:
    return bound is None or (is_number(bound) and (bound == 0 or math.isinf(bound)))


def clamp(c: Call) -> Deg | None:
    """clamp/hardtanh: homogeneous only with bounds in {0, ±inf} (relu-like); a tiny lower bound
    on a non-negative input is a normalisation epsilon (``F.normalize``)."""
    x = c.deg("input")
    lo = c.raw("min", "min_val")
    hi = c.raw("max", "max_val")
    if x is None:
        return None
    if _bound_ok(lo) and _bound_ok(hi):
        return Deg(x.form, x.zero, x.nonneg or (is_number(lo) and lo == 0))
    if hi is None and is_eps(lo) and x.nonneg:
        c.mark_eps("min" if c.has("min") else "min_val")
        return Deg(x.form, nonneg=True)
    c.require_zero(x, f"{c.op} saturates at a non-zero bound")
    c.require_zero(lo, "clamp bound")
    c.require_zero(hi, "clamp bound")
    return CONST


def threshold(c: Call) -> Deg | None:
    th, value = c.raw("threshold"), c.raw("value")
    x = c.deg("input")
    if is_number(th) and th == 0 and is_number(value) and value == 0:
        return x
    c.require_zero(x, "threshold at a non-zero level")
    return CONST


def leaky_relu(c: Call) -> Deg | None:
    c.raw("negative_slope")
    return c.deg("input")


def prelu(c: Call) -> Deg | None:
    c.require_zero(c.deg("weight"), "a PReLU slope does not scale")
    return c.deg("input")


def compare(c: Call) -> Deg:
    """``x > t``: scale-invariant when t is 0 (or ±inf), equal degrees for two tensors."""
    a, b = c.raw("input"), c.raw("other")
    da, db = as_deg(a), as_deg(b)
    for lit, other in ((b, da), (a, db)):
        if is_number(lit):
            if lit != 0 and not math.isinf(lit):
                c.require_zero(other, f"compares against the constant {lit:g}")
            return Deg(nonneg=True)
    c.require_equal(da, db, "compared tensors must scale alike")
    return Deg(nonneg=True)


def maximum(c: Call) -> Deg:
    return c.same([c.deg("input"), c.deg("other")], "elementwise max/min of tensors")


def where(c: Call) -> Deg:
    c.raw("condition")  # a boolean mask: scale-invariant by construction
    return c.same([c.deg("input", "self_"), c.deg("other")], "both branches of where()")


def masked_fill(c: Call) -> Deg | None:
    x, value = c.deg("input"), c.raw("value")
    c.raw("mask")
    if is_number(value) and (value == 0 or math.isinf(value)):
        return x
    c.require_zero(x, "masked_fill with a non-zero value")
    c.require_zero(value, "masked_fill value")
    return CONST


def scatter(c: Call) -> Deg:
    """index_put / slice_scatter / scatter / copy: result mixes ``input`` and ``src``."""
    src = c.deg("src", "values", "source", "value", "other")
    c.raw("index", "indices", "mask", "dim", "start", "end", "step", "accumulate", "reduce")
    return c.same([c.deg("input"), src], "scattered values must scale like the target")


def pad(c: Call) -> Deg | None:
    """Padding is homogeneous unless it pads with a non-zero constant.  ``pad_sequence`` pads
    sequences to one length and stacks them: they scale alike."""
    c.raw("pad", "mode")
    value = c.raw("value", "padding_value", default=0)
    if c.has("sequences"):
        x = c.same([as_deg(t) for t in c.raw("sequences")], "padded sequences must scale alike")
    else:
        x = c.deg("input")
    if is_number(value) and value != 0 and c.raw("mode", default="constant") == "constant":
        c.require_zero(x, f"pads with the constant {value:g}")
        return CONST
    return x


def polar(c: Call) -> Deg | None:
    """``abs · e^(i·angle)``: homogeneous in the magnitude; the angle must not scale."""
    c.require_zero(c.deg("angle"), "is the angle of a complex number")
    return c.deg("abs")


def copy(c: Call) -> Deg | None:
    c.raw("input")
    return c.deg("src")


def cat(c: Call, *, split: bool = False) -> Deg | Split:
    """Concatenation: the parts must scale alike, unless ``split`` (``cat`` itself) lets them
    scale apart as a :class:`Split` for a per-channel norm to accept."""
    tensors = c.raw("tensors", "input")
    dim = c.raw("dim", "axis", default=0)
    items = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    key = "tensors" if c.has("tensors") else "input"
    # a part with no elements contributes no value (a KV cache's lazily created empty
    # tensor): how it scales cannot matter, so it constrains nothing
    empty = [i for i in range(len(items)) if _no_elements(c.shape(f"{key}[{i}]"))]
    if len(empty) < len(items):
        items = [t for i, t in enumerate(items) if i not in empty]
    parts = [as_deg(t) for t in items]
    live = {p.form for p in parts if p is not None and not p.zero}
    rank = len(c.out_shape) if c.out_shape else None
    if split and len(live) > 1 and isinstance(dim, int) and rank and None not in parts:
        return Split(dim % rank, tuple(parts))
    return c.same(parts, "concatenated tensors must scale alike")


def convert(c: Call) -> Deg | None:
    """``.to(dtype)``: integer targets truncate (not homogeneous), bool is scale-invariant."""
    dtype = c.raw("dtype")
    for name in ("other", "device", "non_blocking", "copy", "memory_format", "layout"):
        c.raw(name)
    x = c.deg("input")
    if isinstance(dtype, torch.dtype):
        if dtype == torch.bool:
            return Deg(nonneg=True)
        if not (dtype.is_floating_point or dtype.is_complex):
            c.require_zero(x, f"conversion to {dtype} truncates")
            return CONST
    return x


def reduce_with_indices(c: Call) -> Any:
    """max/min/sort/topk/kthvalue/median along a dim: (values, indices)."""
    d = c.deg("input")
    c.read_rest()
    return (d, Deg(nonneg=True))


def max_min(c: Call) -> Any:
    """torch.max/min is a reduction, a reduction with indices, or an elementwise op."""
    other = c.raw("other", "dim")
    if isinstance(other, Deg):
        return maximum(c)
    if other is None:
        return preserve(c)
    return reduce_with_indices(c)


def _no_elements(shape: tuple[int, ...] | None) -> bool:
    return shape is not None and 0 in shape
