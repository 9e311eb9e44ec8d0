"""Random number generators: runs that draw the same numbers, and an audit that leaves every
generator as it found it.

``torch.manual_seed`` would seed every backend, and queue a seed for each one not yet started
(which would reseed that device behind the user's back when it starts), so only the
generators a run actually uses are seeded.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

_LAZY_BACKENDS = ("cuda", "xpu", "mtia")


def cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None):
    """Random ops draw the same numbers in every run inside this block: the CPU generator,
    and the CUDA generator of ``device`` when it is one, are seeded and restored after."""
    cuda = [cuda_index(device)] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.random.default_generator.manual_seed(seed)
        for i in cuda:
            torch.cuda.default_generators[i].manual_seed(seed)
        yield


@contextlib.contextmanager
def untouched(device: torch.device):
    """The global RNG state is as we found it: the CPU generator, every started CUDA device and
    the one we are about to use, and the seeds that ``torch.manual_seed`` queues for backends
    not yet started (each would reseed its device when the user first starts it)."""
    devices = set(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else set()
    if device.type == "cuda":
        devices.add(cuda_index(device))
    queued = _queued_seeds()
    try:
        with torch.random.fork_rng(devices=sorted(devices)):
            yield
    finally:
        for tracker, state in queued:
            tracker.__dict__.update(state)


def _queued_seeds() -> list[tuple[Any, dict]]:
    saved = []
    for name in _LAZY_BACKENDS:
        tracker = getattr(getattr(torch, name, None), "_lazy_seed_tracker", None)
        if tracker is not None and hasattr(tracker, "__dict__"):
            saved.append((tracker, {k: (list(v) if isinstance(v, list) else v)
                                    for k, v in vars(tracker).items()}))
    return saved
