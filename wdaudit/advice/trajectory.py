"""A scale-free group along a learning-rate schedule: its norm and rotation at every step.

The same per-step recurrence the closed forms come from (:class:`.equilibrium.Balance`), with
the lr of each step: ``‖w‖² ← (1−κ_t)²‖w‖² + η_t²·L`` where the update's size ignores ``‖w‖``
(AdamW, Lion, Muon), and for SGD (updates ∝ 1/‖w‖) the same in ``‖w‖⁴``:
``‖w‖⁴ ← (1−κ_t)⁴‖w‖⁴ + 2(1−κ_t)²η_t²·A``.  It starts from the group's norm now.  SGD's ``A``
needs the gradient's scale, which a static audit does not know: the group is taken to sit at its
equilibrium for the schedule's peak lr now (the note says so).

The gradient of a scale-free weight is ∝ 1/‖w‖, so ``‖g‖/‖w‖ ∝ 1/‖w‖²``: a norm that falls at
the end of training, when the lr decays and the decay's pull outlasts the updates' push (Defazio
2025), makes ‖g‖/‖w‖ rise by ``‖w_peak‖²/‖w_end‖²``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from .equilibrium import TOLERANCE, Balance, Equilibrium, TrajectoryPoint

POINTS = 41  # points reported, evenly spaced (the peak lr's step added)


def along(eq: Equilibrium, lrs: np.ndarray, description: str) -> Equilibrium:
    """``eq`` with its trajectory over ``lrs`` (the group's lr at each step), the end-of-training
    rise of ‖g‖/‖w‖ and whether (and when) it reaches equilibrium."""
    balance, norm = eq.balance, eq.norm
    if balance is None or eq.angular_update is None:
        return replace(eq, schedule=description)
    if norm is None or not math.isfinite(norm) or norm <= 0 or len(lrs) < 2:
        return replace(eq, schedule=description,
                       note=f"{eq.note}; no trajectory: the group's norm is not known")
    x, rotation = norms_and_rotation(balance, np.asarray(lrs, dtype=np.float64), norm ** 2)
    peak = int(np.argmax(lrs))
    at_eq = _at_equilibrium(balance, lrs, x, rotation)
    steps = sorted(set(np.linspace(0, len(lrs) - 1, POINTS).round().astype(int)) | {peak})
    points = tuple(TrajectoryPoint(int(t), float(lrs[t]), float(rotation[t]),
                                   float(math.sqrt(x[t]))) for t in steps)
    first = int(np.argmax(at_eq)) if at_eq.any() else None
    note = eq.note
    if balance.power == 1:
        note += ("; along the schedule the group is taken to be at its equilibrium for the "
                 "peak lr now (SGD's norm needs the gradient's scale)")
    return replace(eq, schedule=description, trajectory=points,
                   grad_ratio_rise=float(x[peak] / x[-1]), reaches_equilibrium=first is not None,
                   first_at_equilibrium=first, note=note)


def norms_and_rotation(balance: Balance, lrs: np.ndarray, x0: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``‖w‖²`` before each step and the rotation of that step."""
    kappa = balance.kappa(lrs)
    if balance.power == 0:
        z = _linear(x0, (1 - kappa) ** 2, lrs ** 2 * balance.long_run)
        x = z
        rotation = lrs * math.sqrt(balance.energy) / np.sqrt(x)
    else:
        # A from "at equilibrium for the peak lr now": y* = 2η²A/(1 − (1−κ)⁴) = x0²
        top = int(np.argmax(lrs))
        k, eta = kappa[top], lrs[top]
        gain = x0 ** 2 * (1 - (1 - k) ** 4) / (2 * eta ** 2 * (1 - k) ** 2) if eta > 0 else 0.0
        y = _linear(x0 ** 2, (1 - kappa) ** 4, 2 * (1 - kappa) ** 2 * lrs ** 2 * gain)
        x = np.sqrt(y)
        # angle = η·√(A·energy/long_run)/‖w‖²
        rotation = lrs * np.sqrt(gain * balance.energy / balance.long_run) / x
    return x, rotation


def _linear(z0: float, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``z[t]`` for ``z[t+1] = alpha[t]·z[t] + beta[t]``, in chunks of closed form (cumulative
    products; a chunk is short enough that they neither overflow nor underflow)."""
    steepest = float(-np.log(alpha).max()) if len(alpha) else 0.0
    chunk = int(min(4096, max(1, 50 / steepest))) if steepest > 0 else 4096
    out = np.empty(len(alpha))
    z = z0
    for start in range(0, len(alpha), chunk):
        a, b = alpha[start:start + chunk], beta[start:start + chunk]
        # z before step j of the chunk: P_j·z + Σ_{i<j} b_i·P_j/P_{i+1}, P_j = Π_{i<j} a_i
        log_p = np.concatenate([[0.0], np.cumsum(np.log(a))])
        inside = np.concatenate([[0.0], np.cumsum(b * np.exp(-log_p[1:]))])
        values = np.exp(log_p) * (z + inside)
        out[start:start + len(a)] = values[:-1]
        z = values[-1]
    return out


def _at_equilibrium(balance: Balance, lrs, x, rotation) -> np.ndarray:
    """Steps whose rotation is within TOLERANCE of the equilibrium rotation for that step's lr,
    ``√(2κ_t·energy/long_run)``."""
    star = np.sqrt(2 * balance.kappa(lrs) * balance.energy / balance.long_run)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = rotation / star
    return (lrs > 0) & (np.abs(ratio - 1) <= TOLERANCE)
