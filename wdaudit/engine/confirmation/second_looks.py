"""Second looks at a residual that may be an eps or round-off effect rather than a violation:
the exact check again at a much finer eps, and a no-effect claim's members redrawn.  Both run
through the confirmation context they are given (``confirm._Context``): its ``program_run``,
``params``, ``tol`` and ``seed``."""

from __future__ import annotations

import torch

from . import runs
from ..tracing.program import EPS_TINY

EPS_FINER = 1e-6  # a residual must shrink by ~this factor when eps does to count as an eps effect


def finer_limit(ctx, claims, factors, coarse: float) -> float:
    """A channel with variance near EPS_TINY (constant across the batch but for one value)
    leaves an eps effect at eps = EPS_TINY.  Re-measure with a much smaller eps: an eps effect
    shrinks with it, a real change does not.  Returns the residual to judge."""
    fine = EPS_TINY * EPS_FINER
    base = ctx.program_run(ctx.params, eps_zero=True, eps_value=fine)
    worst = 0.0
    for fs, salt in ((factors, 0), ([1.0 / f for f in factors], 7)):
        with runs.applied(ctx.params, claims, fs, ctx.seed + salt):
            out = ctx.program_run(ctx.params, eps_zero=True, eps_value=fine)
        worst = max(worst, runs.relative(out, base))
    return 0.0 if worst <= max(ctx.tol.exact, coarse * EPS_FINER * 1e3) else worst


def redrawn(ctx, point, claims, eps_zero: bool) -> float:
    """The output's relative change when no-effect claims' members are redrawn (twice), with
    eps -> 0 or the model's own: an offset that a mean subtraction removes has no effect at any
    eps, and a channel constant here (a ReLU dead across the batch) makes eps -> 0 a 0/0 whose
    round-off grows like 1/sqrt(eps) (swiftformer_xs: 3e-4)."""
    base = ctx.program_run(point, eps_zero=eps_zero)
    worst = 0.0
    ones = [1.0] * len(claims)
    for salt in (0, 7):
        with torch.no_grad(), runs.applied(point, claims, ones, ctx.seed + salt):
            worst = max(worst, runs.relative(ctx.program_run(point, eps_zero=eps_zero), base))
    return worst
