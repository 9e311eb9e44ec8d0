"""A generic point to confirm claims at (DESIGN.md §4).

At the user's weights a perturbation test can pass for the wrong reason: zero-initialised
biases, ReZero gates at 0, LayerScale at 1e-6, or weights small enough that ReLU6 never
saturates.  So confirmation draws fresh, seeded weights of sensible scale instead:
matrix-like tensors He-scaled by fan-in, vector-like tensors (biases, norm scales, gates,
tokens, position tables with a leading 1) of order one around their current mean.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch


def draw(params: Mapping[str, torch.Tensor], *, device: torch.device, dtype: torch.dtype,
         seed: int, spread: float = 0.5) -> dict[str, torch.Tensor]:
    """``spread`` sets the size of vector-like entries; a large spread saturates clamps."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for name, p in params.items():
        if not p.is_floating_point():
            out[name] = p.detach().to(device)
            continue
        noise = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if _matrix_like(p):
            fan_in = p[0].numel()
            value = noise * math.sqrt(2.0 / fan_in)
        else:
            center = _center(p)
            value = center + spread * noise
        out[name] = value.to(device=device, dtype=dtype)
    return out


def _matrix_like(p: torch.Tensor) -> bool:
    return p.dim() >= 2 and p.shape[0] > 1 and p[0].numel() > 1


def _center(p: torch.Tensor) -> float:
    """Norm scales initialised at 1 stay near 1; biases and gates centre on 0."""
    if p.is_meta or p.numel() == 0:
        return 0.0
    mean = float(p.detach().double().mean())
    return mean if math.isfinite(mean) and abs(mean) > 0.1 else 0.0
