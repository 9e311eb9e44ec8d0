"""The scale-invariant toy the equilibrium tests train: independent replicas, each a weight
(a vector, a matrix, or several tensors jointly) feeding a normalisation, so that its gradient is
orthogonal to it and ∝ 1/‖w‖ — Gaussian noise projected off ``w``, the random-walk regime.  The
optimizer and scheduler are torch's own (or the user's), stepped exactly as in training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def noisy_gradient(w: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """d/dw of ⟨ξ, w/‖w‖⟩ over the whole tensor: the gradient a normalisation passes back."""
    xi = torch.randn(w.shape, generator=gen, dtype=w.dtype)
    norm = w.norm()
    u = w / norm
    return (xi - (xi * u).sum() * u) / norm


@dataclass(frozen=True)
class Run:
    angle: np.ndarray  # [step]: the mean over replicas of the angle each turned at that step
    x: np.ndarray  # [step]: the mean over replicas of ‖w‖² before that step
    grad_ratio: np.ndarray  # [step]: the mean over replicas of ‖g‖/‖w‖ at that step
    angle_by_replica: np.ndarray  # [replica]: the mean angle over the measured steps


def train(make_optimizer, shape, steps: int, norm: float, *, replicas: int = 8,
          make_scheduler=None, seed: int = 0, measure_from: int = 0) -> Run:
    """Train ``replicas`` tensors of ``shape`` (each its own sphere, started at ``norm``) for
    ``steps`` steps with ``make_optimizer(params)`` and, if given, ``make_scheduler(opt)``
    stepped after every optimizer step."""
    gen = torch.Generator().manual_seed(seed)
    params = []
    for _ in range(replicas):
        w = torch.randn(shape, generator=gen, dtype=torch.float64)
        params.append(nn.Parameter(w / w.norm() * norm))
    opt = make_optimizer(params)
    scheduler = make_scheduler(opt) if make_scheduler is not None else None
    angle, x, ratio = np.empty(steps), np.empty(steps), np.empty(steps)
    per_replica = np.zeros(replicas)
    for t in range(steps):
        before = [p.detach().clone() for p in params]
        grads = []
        for p in params:
            p.grad = noisy_gradient(p.detach(), gen)
            grads.append(float(p.grad.norm()))
        opt.step()
        if scheduler is not None:
            scheduler.step()
        a = np.array([float(torch.arccos(((b * p.detach()).sum() / (b.norm() * p.detach().norm()))
                                         .clamp(-1, 1))) for b, p in zip(before, params)])
        norms = np.array([float(b.norm()) for b in before])
        angle[t], x[t] = a.mean(), (norms ** 2).mean()
        ratio[t] = (np.array(grads) / norms).mean()
        if t >= measure_from:
            per_replica += a / (steps - measure_from)
    return Run(angle, x, ratio, per_replica)


def window_mean(values: np.ndarray, step: int, half: int) -> float:
    """The mean of ``values`` over the steps within ``half`` of ``step`` (per-step angles are
    noisy; the model's are smooth)."""
    low, high = max(0, step - half), min(len(values), step + half + 1)
    return float(values[low:high].mean())
