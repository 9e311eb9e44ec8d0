"""Muon's rotational equilibrium (``torch.optim.Muon``): the long-run variance of an
orthogonalised momentum.

Muon's update is ``O_t = NS(u_t)``, the Newton–Schulz orthogonalisation of ``u_t``: the momentum
buffer (an EMA with ``β = momentum``) or, with Nesterov, ``(1−β)·g_t + β·m_t``.  In the random-walk
model of :mod:`.equilibrium` (gradients zero-mean noise, independent across steps) ``u_t`` is a
linear filter of white noise, so every entry of ``(u_t, u_{t+k})`` is a pair of Gaussians with the
same correlation ``ρ_k``, independent across entries.  ``NS`` is odd and scale-free, so

    Cov(O_t, O_{t+k}) = c · h(ρ_k),   c = E‖NS(X)‖²,   h(ρ) = E⟨NS(X), NS(ρX + √(1−ρ²)Z)⟩ / c

with ``X, Z`` independent Gaussian matrices of the parameter's shape — the same step Lion's sign
takes with ``h = (2/π)·arcsin ρ``.  For NS no closed form of ``h`` is known, so it is evaluated
once per shape by Monte Carlo on torch's own iteration (bfloat16, its coefficients), antithetically
(``h`` is odd: ``h(0) = 0`` exactly).  The long-run variance is ``c·S``, ``S = 1 + 2·Σ_k h(ρ_k)``; at
equilibrium the rotation is ``√(2ηλ/S)``.  torch decays with the unadjusted lr (``w ← (1−ηλ)w``)
and steps with the adjusted one (``adjust_lr_fn``), so the rotation does not depend on
``adjust_lr_fn``; the norm does: ``‖w‖² = η_adj²·c·S/(2ηλ)``.
"""

from __future__ import annotations

import contextlib
import math
from functools import lru_cache

import numpy as np
import torch

REDUCED_SIDE = 64  # h is evaluated on a copy of the shape with its shorter side at most this
MAX_ASPECT = 32  # and its longer side at most this many times the shorter
_SAMPLES = 16  # Monte-Carlo pairs per ρ (each a sum over every entry of the matrix)
_GRID = 24  # ρ grid points, dense near 1 where h is steep
_SEED = 20250


def defaults() -> dict:
    """torch's Muon defaults for the settings the derivation reads."""
    try:
        from torch.optim import _muon
        coefficients = (_muon.DEFAULT_A, _muon.DEFAULT_B, _muon.DEFAULT_C)
        return dict(momentum=0.95, nesterov=True, ns_coefficients=coefficients,
                    ns_steps=_muon.DEFAULT_NS_STEPS, eps=_muon.EPS)
    except (ImportError, AttributeError):  # torch before 2.9 has no Muon
        return dict(momentum=0.95, nesterov=True, ns_coefficients=(3.4445, -4.7750, 2.0315),
                    ns_steps=5, eps=1e-7)


def orthogonalise(x: torch.Tensor, coefficients, steps: int, eps: float) -> torch.Tensor:
    """torch's ``_zeropower_via_newtonschulz`` on a batch of matrices (the same bfloat16
    operations in the same order; tests compare the two)."""
    a, b, c = coefficients
    out = x.bfloat16()
    tall = x.size(-2) > x.size(-1)
    if tall:
        out = out.mT
    out = out / out.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = out @ out.mT
        update = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)
        out = torch.baddbmm(out, update, out, beta=a)
    return out.mT if tall else out


def reduced(shape: tuple[int, int]) -> tuple[int, int]:
    """The shape ``h`` is evaluated on: the same aspect ratio (capped at MAX_ASPECT), the
    shorter side at most REDUCED_SIDE."""
    rows, cols = shape
    short, long = min(rows, cols), max(rows, cols)
    new_short = min(short, REDUCED_SIDE)
    new_long = min(max(1, round(long * new_short / short)), MAX_ASPECT * new_short)
    return (new_long, new_short) if rows > cols else (new_short, new_long)


@lru_cache(maxsize=128)
def correlation(shape: tuple[int, int], coefficients: tuple, steps: int, eps: float
                ) -> tuple[np.ndarray, np.ndarray, float]:
    """``(ρ grid, h(ρ), c)`` for matrices of ``shape`` (seeded: the same numbers every run)."""
    with one_thread():
        return _correlation(shape, coefficients, steps, eps)


@contextlib.contextmanager
def one_thread():
    """Small bfloat16 products run ~100× slower on two busy threads than on one (spinning
    OpenMP workers); the caller's setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _correlation(shape, coefficients, steps, eps):
    gen = torch.Generator().manual_seed(_SEED)
    x = torch.randn(_SAMPLES, *shape, generator=gen)
    z = torch.randn(_SAMPLES, *shape, generator=gen)
    ox = orthogonalise(x, coefficients, steps, eps).double()
    c = float((ox * ox).sum((-2, -1)).mean())
    grid = np.unique(np.concatenate([[0.0], 1 - np.geomspace(1, 1e-4, _GRID), [1.0]]))
    h = []
    for rho in grid:
        s = math.sqrt(max(0.0, 1 - rho * rho))
        plus = orthogonalise(rho * x + s * z, coefficients, steps, eps).double()
        minus = orthogonalise(-rho * x + s * z, coefficients, steps, eps).double()
        h.append(float((ox * (plus - minus)).sum((-2, -1)).mean()) / (2 * c))
    return grid, np.asarray(h), c


def lag_correlations(momentum: float, nesterov: bool, tol: float = 1e-10) -> np.ndarray:
    """``ρ_k`` (k ≥ 1) of the orthogonalised input: torch's buffer is ``m ← β·m + (1−β)·g``
    (``lerp``), the Nesterov input ``(1−β)·g + β·m``; both are linear filters of ``g``."""
    if momentum <= 0:
        return np.zeros(0)
    n = int(math.ceil(math.log(tol) / math.log(momentum))) + 1
    weights = (1 - momentum) * momentum ** np.arange(n)
    if nesterov:
        weights = momentum * weights
        weights[0] += 1 - momentum
    auto = np.correlate(weights, weights, "full")[n - 1:]
    rho = auto[1:] / auto[0]
    return rho[rho > tol]


def long_run(shape: tuple[int, int], settings) -> tuple[float, float]:
    """``(c, S)`` for one matrix: ``c = E‖O‖²`` per step (noise of unit variance per entry:
    NS ignores the scale) and ``S`` the long-run variance over ``c``."""
    d = defaults()
    momentum = float(settings.get("momentum", d["momentum"]))
    nesterov = bool(settings.get("nesterov", d["nesterov"]))
    coefficients = tuple(float(v) for v in settings.get("ns_coefficients", d["ns_coefficients"]))
    steps = int(settings.get("ns_steps", d["ns_steps"]))
    eps = float(settings.get("eps", d["eps"]))
    small = reduced(shape)
    grid, h, c = correlation(small, coefficients, steps, eps)
    rho = lag_correlations(momentum, nesterov)
    S = 1 + 2 * float(np.interp(rho, grid, h).sum())
    # c grows with the rank: the reduced matrix's c per unit of its shorter side, scaled
    c *= min(shape) / min(small)
    return c, S


def adjusted_ratio(adjust_lr_fn, shape: tuple[int, int]) -> float:
    """The factor torch's ``_adjust_lr`` multiplies the lr by for the update (not the decay)."""
    rows, cols = shape
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1.0, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    if adjust_lr_fn == "spectral_unclamped":
        return math.sqrt(rows / cols)
    return 1.0


def energy_and_long_run(settings, shapes) -> tuple[float, float, str]:
    """Per unit lr, for a group of matrices each orthogonalised on its own: ``E‖u‖²`` summed
    over the members, the long-run variance summed, and a description of ``S``."""
    energy = total = 0.0
    factors = []
    for shape in shapes:
        c, S = long_run(tuple(shape), settings)
        r2 = adjusted_ratio(settings.get("adjust_lr_fn"), tuple(shape)) ** 2
        energy += r2 * c
        total += r2 * c * S
        factors.append(S)
    low, high = min(factors), max(factors)
    text = f"S = {low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"S = {low:.3g}–{high:.3g}"
    return energy, total, text
