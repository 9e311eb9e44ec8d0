"""What a degree rule sees: one op application with its arguments bound by name
(:class:`Call`), and the constraints it imposes on the way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch

from .degree import CONST, ZERO, Deg, Form, Multi, Requires, Seq, Split

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

    def read_rest(self, *keep: str) -> None:
        """Mark every argument but ``keep`` as read: it lends only shape, dtype, device or a
        flag, so the engine must not pin it to degree 0."""
        for name in self.args:
            if name not in keep:
                self.used.add(name)

    def operand(self, name: str) -> Deg | None:
        """The rule's tensor operand, which the binding must have: a rule that marks the rest
        as read and then finds no operand would hand on no degree at all."""
        if name not in self.args:
            raise LookupError(f"the rule reads '{name}', but the call binds {sorted(self.args)}")
        return self.deg(name)

    def deg(self, *names: str) -> Deg | None:
        """The operand as a degree; Python numbers are constants, ``0`` is ZERO.  A sequence
        where a tensor belongs is not understood: what it holds is pinned, never dropped."""
        value = self.raw(*names)
        if isinstance(value, (list, tuple, Multi, Seq)):
            self.require_zero(value, "a sequence where the rule expects a tensor")
            return CONST
        return as_deg(value)

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
    elif isinstance(value, Seq):
        yield from iter_degs(value.items)
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
