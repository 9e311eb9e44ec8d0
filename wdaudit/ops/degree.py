"""Scaling degrees: linear forms over the per-tensor exponents, and the values the degree
analysis tracks for every graph node (a degree, a tuple element that exists only under a
constraint, a multi-output whose length no rule needs, a concatenation whose parts scale apart).

A parameter tensor ``p`` scaled as ``θ_p → a^{s_p} θ_p`` makes every downstream tensor that is
positively homogeneous scale as ``a^{Σ c_q s_q}``; that exponent is a :class:`Form`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Mapping


@dataclass(frozen=True)
class Form:
    """A linear form ``Σ c_q s_q`` with exact rational coefficients (zero terms dropped)."""

    terms: tuple[tuple[int, Fraction], ...] = ()

    @staticmethod
    def var(index: int) -> Form:
        return Form(((index, Fraction(1)),))

    @staticmethod
    def of(mapping: Mapping[int, Fraction]) -> Form:
        return Form(tuple(sorted((k, Fraction(v)) for k, v in mapping.items() if v != 0)))

    def __add__(self, other: Form) -> Form:
        if not other.terms:
            return self
        if not self.terms:
            return other
        acc = dict(self.terms)
        for k, v in other.terms:
            acc[k] = acc.get(k, Fraction(0)) + v
        return Form.of(acc)

    def __neg__(self) -> Form:
        return Form(tuple((k, -v) for k, v in self.terms))

    def __sub__(self, other: Form) -> Form:
        return self + (-other)

    def scale(self, factor: Fraction | int | float) -> Form:
        f = Fraction(factor).limit_denominator(1 << 20)
        if f == 0:
            return ZERO_FORM
        return Form(tuple((k, v * f) for k, v in self.terms))

    @property
    def is_zero(self) -> bool:
        return not self.terms

    @property
    def variables(self) -> frozenset[int]:
        return frozenset(k for k, _ in self.terms)

    def evaluate(self, s: Mapping[int, float] | Iterable[float]) -> float:
        if not isinstance(s, Mapping):
            s = dict(enumerate(s))
        return float(sum(float(v) * s.get(k, 0.0) for k, v in self.terms))


ZERO_FORM = Form()


@dataclass(frozen=True)
class Deg:
    """What the analysis knows about one tensor (or number) computed by the model.

    ``form`` is its scaling degree.  ``zero`` marks a tensor that is identically zero and
    therefore homogeneous of every degree (``torch.zeros``, a parameter proven to have no
    effect).  ``nonneg`` marks a tensor that is elementwise non-negative by construction
    (squares, norms, variances), which is what lets ``x + eps`` count as eps-limited.
    """

    form: Form = ZERO_FORM
    zero: bool = False
    nonneg: bool = False


CONST = Deg()
"""A tensor that does not depend on any parameter scale: inputs, buffers, shapes, masks."""

ZERO = Deg(zero=True, nonneg=True)


@dataclass(frozen=True)
class Requires:
    """A tuple element that is only homogeneous if every form in ``forms`` is 0, e.g. the
    updated running statistics that a functional batch_norm returns.  The constraints are
    imposed when (and only when) the element is actually read."""

    forms: tuple[Form, ...]
    value: Deg
    why: str


@dataclass(frozen=True)
class Multi:
    """A multi-output op whose length the rule does not need to know: element 0 is ``first``,
    every other element is ``rest`` (split pieces, SDPA's (out, logsumexp, …))."""

    first: Any
    rest: Any


@dataclass(frozen=True)
class Seq:
    """A Python sequence whose leading ``items`` are known and whose other elements, however
    many, are all ``rest``: ``(x,) + outputs[1:]`` with ``outputs`` from an opaque op."""

    items: tuple
    rest: Any


def element(container: Any, index: Any) -> Any:
    """``container[index]``, or None where it cannot be known (the caller pins the container)."""
    if isinstance(index, slice):
        return _sliced(container, index)
    if isinstance(container, dict):
        return container.get(index)
    if not isinstance(index, int):
        return None
    if isinstance(container, Multi):
        return container.first if index == 0 else container.rest
    if isinstance(container, Seq):
        if index < 0:
            return None  # counted from an end whose position is not known
        return container.items[index] if index < len(container.items) else container.rest
    if isinstance(container, (list, tuple)) and -len(container) <= index < len(container):
        return container[index]
    return None


def _sliced(container: Any, index: slice) -> Any:
    if isinstance(container, (list, tuple)):
        return container[index]
    start = index.start or 0
    if index.step not in (None, 1) or index.stop is not None or not isinstance(start, int) \
            or start < 0:
        return None
    if isinstance(container, Multi):
        return container if start == 0 else Seq((), container.rest)
    if isinstance(container, Seq):
        return Seq(container.items[start:], container.rest)
    return None


def concatenated(a: Any, b: Any) -> Any:
    """``a + b`` for Python sequences; None when the result's elements cannot be placed (the
    left side's length is not known)."""
    if not isinstance(a, (list, tuple)):
        return None
    if isinstance(b, (list, tuple)):
        return tuple(a) + tuple(b)
    if isinstance(b, Seq):
        return Seq(tuple(a) + b.items, b.rest)
    if isinstance(b, Multi):
        return Seq(tuple(a) + (b.first,), b.rest)
    return Seq(tuple(a), b)  # the elements of a sequence an unknown op returned


@dataclass(frozen=True)
class Split:
    """A concatenation along ``dim`` whose parts scale differently.  Only a normaliser that
    treats each index of ``dim`` on its own (BatchNorm's channels) accepts it as is; the
    engine makes every other consumer equate the parts first."""

    dim: int
    parts: tuple[Deg, ...]
