"""Degree rules for arithmetic: sums (all summands must scale alike; a constant pins the
degree, unless it is a normalisation epsilon), products and quotients (degrees add and
subtract), powers and roots (fractional degrees, which is how a hand-written
``x * rsqrt(mean(x²) + eps)`` comes out at degree 0), and the statistics ops.  Same contract
as :mod:`wdaudit.ops.degrees_elementwise`."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from .degree import CONST, ZERO, Deg, Multi, Seq, concatenated
from .degrees_elementwise import nonlinear
from .op_call import Call, as_deg, is_eps, is_number


def add(c: Call, subtract: bool = False) -> Any:
    a, b = c.raw("input"), c.raw("other")
    if not subtract and any(isinstance(v, (list, tuple, Multi, Seq)) for v in (a, b)):
        # ``(x,) + outputs[1:]`` (longformer's layers): Python sequences joined, not tensors
        # added; once dropped here, x's degree vanished from everything downstream
        joined = concatenated(a, b)
        if joined is None:
            c.require_zero((a, b), "sequences joined in an order that is not followed")
            return CONST
        return joined
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


def neg(c: Call) -> Deg | None:
    d = c.deg("input")
    return None if d is None else Deg(d.form, d.zero, False)


# --- statistics -----------------------------------------------------------------------------


def variance(c: Call) -> Deg | None:
    d = c.deg("input")
    c.read_rest()
    return None if d is None else Deg(d.form.scale(2), d.zero, True)


def var_mean(c: Call) -> Any:
    d = c.deg("input")
    c.read_rest()
    return (Deg(d.form.scale(2), d.zero, True), d)


def norm(c: Call) -> Deg | None:
    p = c.raw("p", "ord", default=2)
    d = c.deg("input")
    c.read_rest()
    if d is None:
        return None
    if is_number(p) and p == 0:  # counts non-zeros
        return Deg(nonneg=True)
    return Deg(d.form, d.zero, True)


def distance(c: Call) -> Deg | None:
    """Pairwise distances ``‖x1_i - x2_j‖_p``: homogeneous when both sets scale alike (a
    p = 0 distance counts differences and does not scale)."""
    p = c.raw("p", default=2)
    d = c.same([c.deg("x1"), c.deg("x2")], "distances compare points that must scale alike")
    c.read_rest()
    if is_number(p) and p == 0:
        return Deg(nonneg=True)
    return Deg(d.form, d.zero, True)
