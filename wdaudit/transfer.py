"""Transfer rules: how one op maps the scaling degrees of its operands to the degree of its
result, and which equality constraints it imposes on the way (DESIGN.md §3).

Every rule receives a :class:`Call` whose arguments are bound by name (``input``, ``weight``,
``bias``, ``eps`` …) whatever spelling the tracer produced (``F.layer_norm``, ``aten.layer_norm``,
``nn.LayerNorm``).  A rule must look at every tensor operand it lets through; the propagation
engine forces any operand a rule ignored to degree 0, so a forgotten operand costs precision,
never soundness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Callable, Sequence

import torch

from .forms import CONST, ZERO, ZERO_FORM, Deg, Form, Requires

EPS_MAX = 1e-2
"""Largest constant that ``x + c`` (x ≥ 0) or ``clamp(x, min=c)`` may add and still count as a
normalisation epsilon.  Confirmation measures what the epsilon costs (eps as is vs eps → 0)."""


@dataclass(frozen=True)
class Constraint:
    form: Form
    node: str
    why: str
    unknown: bool = False  # imposed only because the op is not understood


@dataclass
class Call:
    """One op application as the rules see it: arguments bound by name."""

    node: str
    op: str
    args: dict[str, Any]
    sources: dict[str, str | None] = field(default_factory=dict)  # arg name -> producing node
    shapes: dict[str, tuple[int, ...] | None] = field(default_factory=dict)
    out_shape: tuple[int, ...] | None = None
    constraints: list[Constraint] = field(default_factory=list)
    eps_args: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)

    # -- reading arguments -------------------------------------------------------------
    def has(self, name: str) -> bool:
        return name in self.args

    def raw(self, *names: str, default: Any = None) -> Any:
        for name in names:
            if name in self.args:
                self.used.add(name)
                return self.args[name]
        return default

    def deg(self, *names: str) -> Deg | None:
        """The operand as a degree; Python numbers are constants, ``0`` is ZERO."""
        return as_deg(self.raw(*names))

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    # -- imposing constraints ------------------------------------------------------------
    def require_zero(self, value: Any, why: str) -> None:
        for d in iter_degs(value):
            if not d.zero and not d.form.is_zero:
                self.constraints.append(Constraint(d.form, self.node, why))

    def require_equal(self, a: Deg | None, b: Deg | None, why: str) -> None:
        if a is None or b is None or a.zero or b.zero:
            return
        diff = a.form - b.form
        if not diff.is_zero:
            self.constraints.append(Constraint(diff, self.node, why))

    def same(self, values: Sequence[Deg | None], why: str) -> Deg:
        """All summands of a sum must share one degree; returns that degree."""
        present = [v for v in values if v is not None]
        live = [v for v in present if not v.zero]
        if not live:
            # identically zero only if every summand provably is; nothing seen is not "zero"
            return ZERO if present else CONST
        for v in live[1:]:
            self.require_equal(live[0], v, why)
        return Deg(live[0].form, nonneg=all(v.nonneg for v in live))

    def mark_eps(self, name: str) -> None:
        self.eps_args.append(name)


def as_deg(value: Any) -> Deg | None:
    if isinstance(value, Deg):
        return value
    if isinstance(value, bool) or value is None:
        return None if value is None else CONST
    if isinstance(value, (int, float)):
        return ZERO if value == 0 else Deg(nonneg=value > 0)
    if isinstance(value, torch.Tensor):  # a literal tensor baked into the graph
        return CONST
    return None


def iter_degs(value: Any):
    if isinstance(value, Deg):
        yield value
    elif isinstance(value, Requires):
        yield value.value
    elif isinstance(value, Split):
        yield from value.parts
    elif isinstance(value, Multi):
        yield from iter_degs(value.first)
        yield from iter_degs(value.rest)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from iter_degs(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_degs(v)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_eps(value: Any) -> bool:
    return is_number(value) and 0 < value <= EPS_MAX


Rule = Callable[[Call], Any]

# ---------------------------------------------------------------------------------------
# degree-preserving and friends
# ---------------------------------------------------------------------------------------


def preserve(c: Call) -> Deg | None:
    """Positively homogeneous of degree 1: relu, pooling, views, dropout (off), reductions."""
    return c.deg("input")


def preserve_nonneg(c: Call) -> Deg | None:
    d = c.deg("input")
    return None if d is None else Deg(d.form, d.zero, True)


@dataclass(frozen=True)
class Multi:
    """A multi-output op whose length the rule does not need to know: element 0 is ``first``,
    every other element is ``rest`` (split pieces, SDPA's (out, logsumexp, …))."""

    first: Any
    rest: Any


def preserve_list(c: Call) -> Multi:
    """split/chunk/unbind: every piece keeps the input's degree."""
    for name in list(c.args):
        if name != "input":
            c.raw(name)
    d = c.deg("input")
    return Multi(d, d)


def element(container: Any, index: Any) -> Any:
    if isinstance(container, Multi):
        return container.first if index == 0 else container.rest
    if isinstance(container, (list, tuple)) and isinstance(index, int):
        return container[index]
    return None


def pool(c: Call) -> Any:
    """Max pooling: homogeneous; with return_indices it also yields scale-invariant indices."""
    for name in list(c.args):
        if name != "input":
            c.raw(name)
    d = c.deg("input")
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
    for name in list(c.args):
        c.raw(name)
    return CONST


def zeros(c: Call) -> Deg:
    for name in list(c.args):
        c.raw(name)
    return ZERO


def full(c: Call) -> Deg:
    """full / full_like / new_full: the result scales like the fill value."""
    value = c.raw("fill_value", "value")
    for name in list(c.args):
        c.raw(name)
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
    for name in list(c.args):
        c.raw(name)
    return None


def shape_query(c: Call) -> Deg:
    """``x.size()``, ``x.dim()``, ``x.shape``: never depends on parameter values."""
    for name in list(c.args):
        c.raw(name)
    return CONST


# ---------------------------------------------------------------------------------------
# arithmetic
# ---------------------------------------------------------------------------------------


def add(c: Call, subtract: bool = False) -> Deg | None:
    a, b = c.raw("input"), c.raw("other")
    alpha = c.raw("alpha", default=1)
    if is_number(alpha) and alpha == 0:
        b = 0
    for lit_name, lit, other in (("other", b, as_deg(a)), ("input", a, as_deg(b))):
        if is_number(lit) and lit != 0 and other is not None and not other.zero:
            if is_eps(lit) and other.nonneg and not subtract:
                c.mark_eps(lit_name)  # ``var + eps`` inside a hand-written norm
                return Deg(other.form, nonneg=True)
            c.require_zero(other, f"adds the constant {lit:g}")
            return CONST
    d = c.same([as_deg(a), as_deg(b)], "summands must scale alike")
    return Deg(d.form, d.zero, d.nonneg and not subtract)


def sub(c: Call) -> Deg | None:
    return add(c, subtract=True)


def mul(c: Call) -> Deg | None:
    a, b = c.deg("input"), c.deg("other")
    if a is None or b is None:
        return a or b
    if a.zero or b.zero:
        return ZERO
    src = c.sources
    same_node = src.get("input") is not None and src.get("input") == src.get("other")
    return Deg(a.form + b.form, nonneg=(a.nonneg and b.nonneg) or same_node)


def div(c: Call) -> Deg | None:
    mode = c.raw("rounding_mode")
    if mode is not None:
        return nonlinear(c)
    a, b = c.deg("input"), c.deg("other")
    if a is None or b is None:
        return a
    if a.zero:
        return ZERO
    return Deg(a.form - b.form, nonneg=a.nonneg and b.nonneg)


def floordiv(c: Call) -> Deg:
    return nonlinear(c)


def reciprocal(c: Call) -> Deg | None:
    d = c.deg("input")
    return None if d is None else Deg(-d.form, nonneg=d.nonneg)


def power(c: Call) -> Deg | None:
    base, exponent = c.raw("input"), c.raw("exponent", "other")
    if is_number(exponent) and isinstance(as_deg(base), Deg) and not is_number(base):
        d = as_deg(base)
        if exponent == 0:
            return Deg(nonneg=True)
        even = float(exponent).is_integer() and int(exponent) % 2 == 0
        return Deg(d.form.scale(exponent), nonneg=d.nonneg or even)
    c.require_zero(base, "pow with a tensor exponent")
    c.require_zero(exponent, "pow with a tensor exponent")
    return CONST


def square(c: Call) -> Deg | None:
    d = c.deg("input")
    return None if d is None else Deg(d.form.scale(2), d.zero, True)


def sqrt(c: Call) -> Deg | None:
    d = c.deg("input")
    return None if d is None else Deg(d.form.scale(Fraction(1, 2)), d.zero, True)


def rsqrt(c: Call) -> Deg | None:
    d = c.deg("input")
    return None if d is None else Deg(d.form.scale(Fraction(-1, 2)), nonneg=True)


def matmul(c: Call) -> Deg | None:
    a, b = c.deg("input"), c.deg("other", "mat2", "vec")
    if a is None or b is None:
        return None
    if a.zero or b.zero:
        return ZERO
    return Deg(a.form + b.form)


def addmm(c: Call) -> Deg | None:
    """``beta * input + alpha * (mat1 @ mat2)``: a bias add after a product (GPT-2's Conv1D)."""
    m1 = c.deg("mat1", "batch1", "tensor1", "mat", "vec1")
    m2 = c.deg("mat2", "batch2", "tensor2", "vec", "vec2")
    prod = ZERO if (m1 is None or m2 is None or m1.zero or m2.zero) else Deg(m1.form + m2.form)
    alpha = c.raw("alpha", "value", default=1)
    if is_number(alpha) and alpha == 0:
        prod = ZERO
    bias = c.deg("input")
    beta = c.raw("beta", default=1)
    if is_number(beta) and beta == 0:
        bias = ZERO
    return c.same([bias, prod], "a bias must scale like the product it is added to")


def einsum(c: Call) -> Deg | None:
    c.raw("equation")
    ops = c.raw("operands", "tensors")
    degs = [as_deg(o) for o in (ops if isinstance(ops, (list, tuple)) else [ops])]
    if any(d is not None and d.zero for d in degs):
        return ZERO
    total = ZERO_FORM
    for d in degs:
        if d is not None:
            total = total + d.form
    return Deg(total)


def linear(c: Call) -> Deg | None:
    """linear, conv*, conv_transpose*, bilinear: product of input and weight, then the bias."""
    x, w = c.deg("input"), c.deg("weight")
    x2 = c.deg("input2")
    if x is None or w is None:
        return None
    if x.zero or w.zero or (x2 is not None and x2.zero):
        prod = ZERO
    else:
        prod = Deg(x.form + w.form + (x2.form if x2 is not None else ZERO_FORM))
    if c.raw("padding_mode", default="zeros") not in ("zeros", "reflect", "replicate", "circular"):
        c.require_zero(prod, "unusual padding mode")
    return c.same([prod, c.deg("bias")], "a bias must scale like the product it is added to")


def neg(c: Call) -> Deg | None:
    d = c.deg("input")
    return None if d is None else Deg(d.form, d.zero, False)


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
    """Padding is homogeneous unless it pads with a non-zero constant."""
    c.raw("pad", "mode")
    value = c.raw("value", default=0)
    x = c.deg("input")
    if is_number(value) and value != 0 and c.raw("mode", default="constant") == "constant":
        c.require_zero(x, f"pads with the constant {value:g}")
        return CONST
    return x


def copy(c: Call) -> Deg | None:
    c.raw("input")
    return c.deg("src")


@dataclass(frozen=True)
class Split:
    """A concatenation along ``dim`` whose parts scale differently.  Only a normaliser that
    treats each index of ``dim`` on its own (BatchNorm's channels) accepts it as is; the
    engine makes every other consumer equate the parts first."""

    dim: int
    parts: tuple[Deg, ...]


def cat(c: Call) -> Deg | Split:
    tensors = c.raw("tensors", "input")
    dim = c.raw("dim", "axis", default=0)
    items = tensors if isinstance(tensors, (list, tuple)) else [tensors]
    parts = [as_deg(t) for t in items]
    live = {p.form for p in parts if p is not None and not p.zero}
    rank = len(c.out_shape) if c.out_shape else None
    if len(live) > 1 and isinstance(dim, int) and rank and c.op == "cat" and None not in parts:
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
    for name in list(c.args):
        c.raw(name)
    return (d, Deg(nonneg=True))


def max_min(c: Call) -> Any:
    """torch.max/min is a reduction, a reduction with indices, or an elementwise op."""
    other = c.raw("other", "dim")
    if isinstance(other, Deg):
        return maximum(c)
    if other is None:
        return preserve(c)
    return reduce_with_indices(c)


def variance(c: Call) -> Deg | None:
    d = c.deg("input")
    for name in list(c.args):
        c.raw(name)
    return None if d is None else Deg(d.form.scale(2), d.zero, True)


def var_mean(c: Call) -> Any:
    d = c.deg("input")
    for name in list(c.args):
        c.raw(name)
    return (Deg(d.form.scale(2), d.zero, True), d)


def norm(c: Call) -> Deg | None:
    p = c.raw("p", "ord", default=2)
    d = c.deg("input")
    for name in list(c.args):
        c.raw(name)
    if d is None:
        return None
    if is_number(p) and p == 0:  # counts non-zeros
        return Deg(nonneg=True)
    return Deg(d.form, d.zero, True)


# ---------------------------------------------------------------------------------------
# normalisers: output degree 0 (plus the affine), whatever the input's degree
# ---------------------------------------------------------------------------------------


def _affine(c: Call, normalised: Deg) -> Deg:
    w, b = c.deg("weight"), c.deg("bias")
    out = normalised if w is None else (ZERO if w.zero else Deg(normalised.form + w.form))
    return c.same([out, b], "a norm's bias must scale like its weight")


def layer_norm(c: Call) -> Any:
    """layer/group/instance/rms norm and batch norm on batch statistics."""
    c.raw("input")
    for name in ("normalized_shape", "num_groups", "momentum", "cudnn_enable", "cudnn_enabled"):
        c.raw(name)
    c.mark_eps("eps")
    c.raw("eps")
    out = _affine(c, Deg())
    if c.op.startswith("native_layer_norm") or c.op == "native_group_norm":
        x = c.deg("input") or CONST
        for name in ("N", "C", "HxW", "group"):
            c.raw(name)
        return (out, x, Deg(-x.form, nonneg=True))
    return out


def batch_norm(c: Call) -> Any:
    training = c.raw("training", "use_input_stats", default=True)
    raw = c.raw("input")
    if isinstance(raw, Split) and training and raw.dim == 1:
        # per-channel statistics: each concatenated part is normalised on its own
        c.raw("running_mean", "running_var", "momentum", "cudnn_enabled", "eps")
        c.mark_eps("eps")
        out = _affine(c, Deg())
        if c.op.startswith("_native_batch_norm_legit") or c.op == "native_batch_norm":
            equal = tuple(p.form - raw.parts[0].form for p in raw.parts[1:])
            stats = Requires(equal, CONST, "per-channel statistics of parts that scale apart")
            return Multi(out, stats)
        return out
    x = c.deg("input")
    rm, _ = c.raw("running_mean"), c.raw("running_var")
    c.raw("momentum", "cudnn_enabled")
    if not training and rm is not None:
        # eval mode: an affine map with constant shift; the input must not scale
        c.require_zero(x, "batch_norm on running statistics is affine with a constant shift")
        c.raw("eps")
        out = _affine(c, Deg())
    else:
        c.mark_eps("eps")
        c.raw("eps")
        out = _affine(c, Deg())
    if c.op.startswith("_native_batch_norm_legit") or c.op == "native_batch_norm":
        xf = (x or CONST).form
        stats = (Deg(xf), Deg(-xf, nonneg=True))
        if c.op.endswith("functional"):
            updated = Requires((xf,), CONST, "updated running statistics read as a tensor")
            return (out, *stats, updated, Requires((xf.scale(2),), CONST, "running variance"))
        return (out, *stats)
    return out


def rms_norm(c: Call) -> Any:
    c.raw("input", "normalized_shape")
    c.mark_eps("eps")
    c.raw("eps")
    w = c.deg("weight")
    out = Deg() if w is None else w
    if c.op == "_fused_rms_norm":
        return (out, Deg(-(c.deg("input") or CONST).form, nonneg=True))
    return out


def normalize(c: Call) -> Deg:
    """F.normalize / cosine_similarity: degree 0 whatever the input."""
    for name in list(c.args):
        if name != "eps":
            c.raw(name)
    c.mark_eps("eps")
    c.raw("eps")
    return Deg()


def weight_norm(c: Call) -> Any:
    """``g * v / ‖v‖``: scale-free in v, degree of g."""
    v, g = c.deg("v"), c.deg("g")
    c.raw("dim")
    out = g if g is not None else Deg()
    if c.op == "_weight_norm_interface":
        return (out, Deg((v or CONST).form, nonneg=True))
    return out


# ---------------------------------------------------------------------------------------
# attention, embeddings, RNNs
# ---------------------------------------------------------------------------------------


def attention(c: Call) -> Any:
    """softmax(q kᵀ · scale + mask) v: the logits must not scale; the output scales like v."""
    q, k, v = c.deg("query"), c.deg("key"), c.deg("value")
    mask = c.raw("attn_mask")
    for name in ("dropout_p", "is_causal", "scale", "enable_gqa"):
        c.raw(name)
    if q is not None and k is not None and not q.zero and not k.zero:
        c.require_zero(Deg(q.form + k.form), "attention logits feed a softmax")
    md = as_deg(mask)
    if md is not None and mask is not None:
        c.require_zero(md, "an additive attention mask")
    out = v if v is not None else CONST
    if c.op.startswith("_scaled_dot_product"):
        return Multi(out, CONST)  # (output, logsumexp, …)
    return out


def embedding(c: Call) -> Deg | None:
    c.raw("indices", "input", "offsets", "padding_idx", "scale_grad_by_freq", "sparse")
    w = c.deg("weight")
    max_norm = c.raw("max_norm")
    if max_norm is not None:
        c.require_zero(w, "embedding max_norm renormalises rows above a threshold")
        return CONST
    psw = c.deg("per_sample_weights")
    if psw is not None and w is not None:
        return Deg(w.form + psw.form)
    return w


def softmax_like(c: Call) -> Deg:
    x = c.raw("input")
    for name in list(c.args):
        c.raw(name)
    c.require_zero(x, f"{c.op} is not positively homogeneous")
    return Deg(nonneg=True)
