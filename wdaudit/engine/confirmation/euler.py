"""Confirmation's third check: the Euler identity ``Σ_p s_p ⟨∇_p L, θ_p⟩ = 0`` at a second,
saturating point (DESIGN.md §4).

:class:`SaturatingPoint` is a record the confirmation context holds: it owns the point (drawn
from the generic one, which the context hands over when its checks are done) and its spread,
and measures there through the context's runs, which it is given: ``tol`` and ``infs`` (the
base point's tolerances and structural infinities), ``handover`` (the generic point, given up),
``graded_run`` (the program with gradients), ``anchor`` (a specialised program following the
model), and ``program_run`` through ``second_looks.redrawn`` (the output change when
claims' members are redrawn).
"""

from __future__ import annotations

import torch

from . import runs, second_looks
from . import generic_point as generic
from ..tracing.program import EPS_TINY

EULER_FLOOR = 1e-4  # |E| is judged when the group's gradient scale is above this fraction of
# the loss's size (TOL_EULER in confirm.py is the bound on |E| relative to that scale)
EPS_TIERS = (1e-4, 1e-8, 1e-16, 1e-24)  # finer eps for Euler residuals above tolerance
# (fastvit_t8: a channel of variance ~1e-17 at the saturating point needs eps 1e-24 to leave its
# eps effect; mobileone_s4's deep stage, channels near 1e-30, eps 1e-32)
SPREADS = (3.0, 1.5)  # the saturating point's vector spread; the milder one after an overflow


class SaturatingPoint:
    def __init__(self, ctx):
        self.ctx = ctx  # confirmation's context: its runs, tolerances and seed (see above)
        self.large: generic.Point | None = None  # drawn when the generic point is done with
        self.spread: float | None = None  # the spread it was drawn at, once used

    def euler(self, claims) -> list[float]:
        try:
            return self._euler_tiers(claims)
        except runs.Strayed as exc:
            raise runs.CannotConfirm(exc.why) from exc

    def _euler_tiers(self, claims) -> list[float]:
        residuals = self._euler(claims, EPS_TINY)
        for factor in EPS_TIERS:
            shaky = [i for i, r in enumerate(residuals) if r > self.ctx.tol.euler]
            if not shaky:
                break
            # a group whose influence at this point is itself an eps effect (a channel of near
            # zero variance) fades in proportion to eps; a violation does not fade at all.
            # Each tier is a closer look at the eps -> 0 limit the claim is about; round-off
            # in constant channels grows like 1/sqrt(eps), which can only fail a claim
            finer = self._euler([claims[i] for i in shaky], EPS_TINY * factor)
            for i, r in zip(shaky, finer):
                residuals[i] = r
        # what is then reported as the residual is that output change, at most TOL_EXACT
        for i, claim in enumerate(claims):
            if residuals[i] > self.ctx.tol.euler and claim.redraw and not claim.exponents:
                # its gradient must cancel, and at a channel nearly constant beside its offset
                # its round-off grows like (|offset|/spread)^2, the forward change's like the
                # first power; a real violation changes the output at first order
                change = second_looks.redrawn(self.ctx, self.large, [claim], eps_zero=True)
                if change > self.ctx.tol.exact:  # a constant channel's 0/0 (see redrawn)
                    change = min(change, second_looks.redrawn(self.ctx, self.large, [claim],
                                                              eps_zero=False))
                if change <= self.ctx.tol.exact:
                    residuals[i] = change
        return residuals

    def _saturating_point(self, claims, spread: float) -> generic.Point:
        if self.large is None:
            # the generic point is done with: it becomes the saturating one, in place.  Only
            # claimed parameters need a gradient: the backward pass skips every other weight's
            self.large = generic.saturate(self.ctx.handover(), spread=spread)
            claimed = {k for c in claims for k in list(c.exponents) + list(c.redraw)}
            for k, v in self.large.items():
                v.requires_grad_(v.is_floating_point() and k in claimed)
        elif spread != self.spread:
            with torch.no_grad():
                self.large = generic.saturate(self.large, spread=spread)
        self.spread = spread
        return self.large

    def _euler(self, claims, eps_value: float) -> list[float]:
        spreads = SPREADS if self.spread is None else (self.spread,)
        for spread in spreads:
            leaves = self._saturating_point(claims, spread)
            outs = self.ctx.graded_run(leaves, eps_value, f"spread {spread:g}")
            if runs.same_infinities(outs, self.ctx.infs):  # none, or the same structural ones
                outs = runs.finite_part(outs, self.ctx.infs)
                break
            # overflow at this spread (exp, a deep stack of gains): a milder one still saturates
            # clamps; give up only when the mildest overflows too
            outs = []
        else:
            raise runs.CannotConfirm(f"the model's output is NaN or Inf at the saturating point "
                                 f"(spread {spreads[-1]:g} too)")
        self.ctx.count("backward", at="saturating point", passes=2)  # counted as two forwards
        return runs.euler_residuals(outs, leaves, claims, self.ctx.seed + 3, EULER_FLOOR)


