"""A generic point to confirm claims at (DESIGN.md §4).

At the user's weights a perturbation test can pass for the wrong reason: zero-initialised
biases, ReZero gates at 0, LayerScale at 1e-6, or weights small enough that ReLU6 never
saturates.  So confirmation draws fresh, seeded weights of sensible scale instead:
matrix-like tensors He-scaled by fan-in, vector-like tensors (biases, norm scales, gates,
tokens, position tables with a leading 1) of order one around their current mean.
"""

from __future__ import annotations

import itertools
import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping

import torch


_SERIALS = itertools.count()


class Point(dict):
    """A generic point: parameter name -> tensor.  Every entry comes from its own seeded
    generator, so any one of them can be redrawn exactly (``fresh``) instead of being saved."""

    def __init__(self, source: Mapping[str, torch.Tensor], device: torch.device,
                 dtype: torch.dtype, seed: int, spread: float):
        super().__init__()
        self._recipe = (source, device, dtype, seed, spread)
        # which values the point holds: (serial, changes) is never repeated, so a run at a
        # point can be known to be done (``confirm_runs.applied`` counts the changes)
        self.serial = next(_SERIALS)
        self.changes = 0

    def fresh(self, name: str) -> torch.Tensor:
        source, device, dtype, seed, spread = self._recipe
        return _value(name, source[name], device, dtype, seed, spread)


def draw(params: Mapping[str, torch.Tensor], *, device: torch.device, dtype: torch.dtype,
         seed: int, spread: float = 0.5) -> Point:
    """``spread`` sets the size of vector-like entries; a large spread saturates clamps."""
    point = Point(params, device, dtype, seed, spread)
    # every entry has its own generator, and torch draws without the GIL: use every core
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        for name, value in zip(params, pool.map(point.fresh, params)):
            point[name] = value
    return point


def _value(name: str, p: torch.Tensor, device, dtype, seed: int, spread: float) -> torch.Tensor:
    if not p.is_floating_point():
        return p.detach().to(device)
    # drawn where it is used: on a GPU, a CPU draw and its copy cost more than the checks
    where = torch.device(device) if torch.device(device).type == "cuda" else torch.device("cpu")
    gen = torch.Generator(device=where).manual_seed(_seed_for(seed, name))
    # uniform noise of unit variance: as generic as a Gaussian, and 2.7x cheaper to draw
    # (drawing dominated confirming a GPT-2-sized model)
    noise = torch.rand(p.shape, generator=gen, dtype=torch.float64, device=where)
    noise.sub_(0.5).mul_(_UNIT)
    if _matrix_like(p):
        value = noise.mul_(math.sqrt(2.0 / p[0].numel()))
    else:
        value = noise.mul_(spread).add_(_center(p))
    return value.to(device=device, dtype=dtype)


_UNIT = math.sqrt(12.0)  # scales U(-1/2, 1/2) to unit variance


def saturate(point: Point, spread: float) -> Point:
    """The same point with vector-like entries (biases, norm gains) spread wider, in place:
    large enough that clamps saturate, without drawing 100M new random numbers."""
    source, device, dtype, seed, old = point._recipe
    wide = Point(source, device, dtype, seed, spread)
    for name, value in point.items():
        p = source[name]
        if p.is_floating_point() and not _matrix_like(p):
            center = _center(p)
            value.sub_(center).mul_(spread / old).add_(center)
        wide[name] = value
    return wide


def _seed_for(seed: int, name: str) -> int:
    """Per-parameter seeds: stable under renaming or reordering the other parameters."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (1 << 63)


def _matrix_like(p: torch.Tensor) -> bool:
    return p.dim() >= 2 and p.shape[0] > 1 and p[0].numel() > 1


def _center(p: torch.Tensor) -> float:
    """Norm scales initialised at 1 stay near 1; biases, gates and tokens centre on 0.  The
    mean is rounded to an integer so that the point depends on what an initialisation means,
    not on its random noise: two instances of one model are checked at the same point."""
    if p.is_meta or p.numel() == 0:
        return 0.0
    mean = float(p.detach().double().mean())
    return float(round(mean)) if math.isfinite(mean) else 0.0
