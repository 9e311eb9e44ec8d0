"""Stage 6: what the static analysis claims, in the order confirmation checks it.

Each parameter with no effect is a claim of its own (redrawing it must not change any output);
each group of the symmetry cone is a claim that scaling its members together by their
exponents leaves every output unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from .symmetries import GroupSpec, Symmetries


@dataclass(frozen=True)
class Claim:
    exponents: Mapping[str, float]  # scaled members; empty for a no-effect claim
    redraw: tuple[str, ...] = ()  # no-effect members: replaced by fresh values
    kind: str = "scale-free"  # "no-effect" | "scale-free" | "joint"
    group: GroupSpec | None = None  # the exact group a scaling claim stands for


@dataclass(frozen=True)
class Claims:
    symmetries: Symmetries
    claims: tuple[Claim, ...]


def claims_for(symmetries: Symmetries) -> Claims:
    influence = symmetries.degrees.influence
    fixed = symmetries.fixed or {}
    # a fixed tensor with no effect is still a constant: nothing to claim about its decay
    claims = [Claim({}, (name,), "no-effect") for name in sorted(influence.no_effect)
              if name not in fixed]
    for g in symmetries.groups:
        modules = {k.rpartition(".")[0] for k in g.exponents}
        claims.append(Claim({k: float(v) for k, v in g.exponents.items()}, (),
                            "scale-free" if len(modules) == 1 else "joint", g))
    return Claims(symmetries, tuple(claims))
