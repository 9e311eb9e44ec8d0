"""The learning rate along training: each tensor's lr at each of the next ``steps`` steps.

From a torch LR scheduler (``LambdaLR``, ``SequentialLR``, ``OneCycleLR``, ``CosineAnnealingLR``
…; transformers' schedules are ``LambdaLR``), several of them, Lightning's shapes (``{"optimizer":
…, "lr_scheduler": s}``, ``{"scheduler": s, "interval": "step"}``, a trainer's configs), or a
schedule by name (:class:`Schedule`, the command line's ``--schedule``).  A scheduler is stepped
on a copy, never on the user's object: the copy shares nothing with it (its optimizer's tensors
are replaced by empty stand-ins, so copying costs nothing whatever the model's size).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..engine.analysis.training import optimizers_of, unwrap
from . import SCHEDULES as KINDS

WSD_DECAY = 0.2  # wsd: the last fifth of training decays (linearly) to 0
MAX_STEPS = 2_000_000  # stepping a scheduler costs ~10 µs a step


@dataclass(frozen=True)
class Schedule:
    """A schedule by name: linear warmup over ``warmup`` steps from 0 to the optimizer's lr,
    then cosine or linear decay to 0, constant, or (``wsd``) constant until the last
    WSD_DECAY of training and linear to 0 from there."""

    kind: str
    warmup: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule '{self.kind}': use one of {', '.join(KINDS)}")
        if self.warmup < 0:
            raise ValueError("warmup must be 0 or more steps")

    def factors(self, steps: int) -> np.ndarray:
        t = np.arange(steps, dtype=np.float64)
        warm = np.minimum(1.0, t / self.warmup) if self.warmup else np.ones(steps)
        span = max(1, steps - self.warmup)
        progress = np.clip((t - self.warmup) / span, 0.0, 1.0)
        if self.kind == "cosine":
            after = 0.5 * (1 + np.cos(math.pi * progress))
        elif self.kind == "linear":
            after = 1 - progress
        elif self.kind == "wsd":
            after = np.clip((steps - t) / max(1.0, WSD_DECAY * steps), 0.0, 1.0)
        else:
            after = np.ones(steps)
        return np.where(t < self.warmup, warm, after)

    def describe(self) -> str:
        warm = f", warmup {self.warmup}" if self.warmup else ""
        return f"{self.kind}{warm}"


@dataclass(frozen=True)
class LrPaths:
    """``by_tensor[id(p)]``: the lr of the group holding ``p`` at each of the next ``steps``
    steps (tensors sharing a group share one array)."""

    by_tensor: Mapping[int, np.ndarray]
    steps: int
    description: str
    notes: tuple[str, ...] = ()


def schedulers_of(value: Any) -> tuple[tuple[Any, int], ...]:
    """``(scheduler, optimizer steps per scheduler step)`` for every scheduler in ``value``."""
    if value is None or isinstance(value, Schedule):
        return ()
    if isinstance(value, Mapping):
        if "scheduler" in value:
            return _config(value["scheduler"], value.get("interval", "epoch"),
                           value.get("frequency", 1))
        if "lr_scheduler" in value:
            return schedulers_of(value["lr_scheduler"])
        return tuple(s for v in value.values() for s in schedulers_of(v))
    if isinstance(value, (list, tuple)):
        return tuple(s for v in value for s in schedulers_of(v))
    if hasattr(value, "scheduler") and hasattr(value, "interval"):  # Lightning's config
        return _config(value.scheduler, value.interval, getattr(value, "frequency", 1))
    if hasattr(value, "optimizer") and hasattr(value, "step"):
        return ((value, 1),)
    return ()  # an optimizer in Lightning's ([optimizers], [schedulers]) is not a scheduler


def _config(scheduler, interval, frequency) -> tuple:
    # Lightning steps a scheduler every `frequency` intervals; per epoch needs the epoch's
    # length, which the Lightning callback turns into steps (a file alone does not say)
    every = int(frequency or 1)
    return ((scheduler, every if interval == "step" else -every),)


def total_steps_of(value: Any) -> int | None:
    """The length of training where a scheduler states it (OneCycleLR, CosineAnnealingLR)."""
    for scheduler, _ in schedulers_of(value):
        for attribute in ("total_steps", "T_max"):
            found = getattr(scheduler, attribute, None)
            if isinstance(found, int) and found > 0:
                return found
    return None


def lr_paths(optimizer: Any, scheduler: Any, steps: int) -> LrPaths:
    """Every tensor's lr over the next ``steps`` steps under ``scheduler`` (tensors of an
    optimizer no scheduler drives keep their lr)."""
    optimizers = optimizers_of(optimizer)
    paths: dict[int, np.ndarray] = {}
    notes: list[str] = []
    if isinstance(scheduler, Schedule):
        factors = scheduler.factors(steps)
        for opt in optimizers:
            for group in opt.param_groups:
                # a scheduler built on the optimizer has moved "lr" (to 0 under a warmup);
                # the base it scales is "initial_lr"
                _assign(paths, group, float(group.get("initial_lr", group["lr"])) * factors)
        return LrPaths(paths, steps, scheduler.describe())
    found = schedulers_of(scheduler)
    by_optimizer: dict[int, list] = {}
    for sched, every in found:
        if every < 0:
            notes.append(f"{type(sched).__name__} steps per epoch, and the epoch's length is "
                         "not known here: not modelled (its lr held)")
            continue
        try:
            owner = unwrap(sched.optimizer)
        except Exception:  # noqa: BLE001 - not an optimizer we can read
            continue
        by_optimizer.setdefault(id(owner), []).append((sched, every))
    names = []
    for opt in optimizers:
        chain = by_optimizer.get(id(opt), [])
        lrs, why = _stepped(opt, chain, steps) if chain else (None, "")
        if why:
            notes.append(why)
        names += [type(s).__name__ for s, _ in chain] if lrs is not None else []
        for i, group in enumerate(opt.param_groups):
            path = lrs[:, i] if lrs is not None else np.full(steps, float(group["lr"]))
            _assign(paths, group, path)
    if found and not names:
        notes.append("no scheduler drives the audited optimizers")
    return LrPaths(paths, steps, " + ".join(names) or "constant lr", tuple(notes))


def _assign(paths: dict, group: Mapping, path: np.ndarray) -> None:
    for p in group["params"]:
        paths[id(p)] = path


def _stepped(opt, chain: list, steps: int) -> tuple[np.ndarray | None, str]:
    """``lrs[t, i]``: group ``i``'s lr at step ``t``, from copies of the schedulers."""
    names = " + ".join(type(s).__name__ for s, _ in chain)
    if any(type(s).__name__ == "ReduceLROnPlateau" for s, _ in chain):
        return None, "ReduceLROnPlateau follows a metric: not modelled (its lr held)"
    if steps > MAX_STEPS:
        return None, f"{names}: schedules longer than {MAX_STEPS} steps are not read"
    if len(chain) == 1 and type(chain[0][0]) is torch.optim.lr_scheduler.LambdaLR \
            and chain[0][1] == 1:
        return _lambda(chain[0][0], steps), ""
    schedulers = _copies(opt, [s for s, _ in chain])
    own = schedulers[0].optimizer
    lrs = np.empty((steps, len(own.param_groups)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()"
            for t in range(steps):
                lrs[t] = [float(g["lr"]) for g in own.param_groups]
                for sched, (_, every) in zip(schedulers, chain):
                    if (t + 1) % every == 0:
                        sched.step()
    except Exception as exc:  # noqa: BLE001 - the user's lambdas run in here
        return None, f"{names} could not be stepped ({type(exc).__name__}: {exc}): not modelled"
    return lrs, ""


def _lambda(sched, steps: int) -> np.ndarray:
    """LambdaLR's lr is a function of the step alone: ``base_lr · λ(step)``."""
    start = sched.last_epoch
    columns = [[base * float(fn(start + t)) for t in range(steps)]
               for base, fn in zip(sched.base_lrs, sched.lr_lambdas)]
    return np.asarray(columns, dtype=np.float64).T


def _copies(opt, schedulers: list) -> list:
    """Deep copies of ``schedulers`` sharing one copy of ``opt`` whose tensors (parameters and
    state) are empty stand-ins: stepping them cannot touch the user's objects."""
    memo: dict[int, Any] = {}
    for group in opt.param_groups:
        for p in group["params"]:
            memo[id(p)] = torch.empty(0)
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                memo[id(value)] = torch.empty(0)
    return copy.deepcopy(list(schedulers), memo)
