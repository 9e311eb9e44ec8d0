"""What the training run updates (DESIGN.md §1): the tensors a rescaling may move.

A parameter is *trained* when it requires grad and, where optimizers are given, one of them
holds it.  Every other parameter is a constant of the run, like a buffer: symmetries give it
``s = 0``, confirmation never scales or redraws it, and its verdict is "frozen" (never
"ineffective").  The optimizers come as the user has them: one, a sequence, a dict (Lightning's
``{"optimizer": ...}``), or wrapped (accelerate's ``AcceleratedOptimizer``, Lightning's
``LightningOptimizer``); each is unwrapped to the torch optimizer that holds the tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

FROZEN_GRAD = "requires_grad=False"
FROZEN_HELD = "held by none of the optimizers"
_WRAPPED = ("optimizer", "_optimizer")  # accelerate, Lightning (and transformers' wrappers)


class SetupError(ValueError):
    """The training setup contradicts itself (a tensor held by two optimizers), or an object
    given as an optimizer is none."""


def optimizers_of(optimizer: Any) -> tuple:
    """The torch optimizers in ``optimizer``: ``None``, one, a list/tuple, or a dict of them
    (Lightning's return shapes), each unwrapped; raises ``SetupError`` for anything else."""
    if optimizer is None:
        return ()
    if isinstance(optimizer, dict):
        if "optimizer" in optimizer:  # Lightning: {"optimizer": opt, "lr_scheduler": ...}
            return optimizers_of(optimizer["optimizer"])
        return tuple(o for v in optimizer.values() for o in optimizers_of(v))
    if isinstance(optimizer, (list, tuple)):
        return tuple(o for v in optimizer for o in optimizers_of(v))
    return (unwrap(optimizer),)


def unwrap(optimizer: Any) -> Any:
    """The optimizer under a wrapper that delegates to it (so its class names its settings)."""
    seen = set()
    while id(optimizer) not in seen:
        seen.add(id(optimizer))
        inner = next((getattr(optimizer, a) for a in _WRAPPED
                      if isinstance(getattr(optimizer, a, None), torch.optim.Optimizer)), None)
        if inner is None or inner is optimizer:
            break
        optimizer = inner
    if not hasattr(optimizer, "param_groups"):
        raise SetupError(f"{type(optimizer).__name__} is not an optimizer (it has no "
                         "param_groups): pass a torch optimizer, or a list or dict of them")
    return optimizer


@dataclass(frozen=True)
class Training:
    """The run: its optimizers, and which of them holds each tensor (by identity)."""

    optimizers: tuple = ()
    holder: Mapping[int, int] = None  # id(tensor) -> index into optimizers

    @property
    def given(self) -> bool:
        return bool(self.optimizers)

    def why_fixed(self, tensor: torch.Tensor) -> str | None:
        """Why training cannot move ``tensor``; ``None`` when it trains."""
        if not tensor.requires_grad:
            return FROZEN_GRAD
        if self.given and id(tensor) not in self.holder:
            return FROZEN_HELD
        return None

    def fixed(self, model: nn.Module) -> dict[str, str]:
        """``name -> why`` for every parameter of ``model`` that training holds fixed."""
        out = {}
        for name, p in model.named_parameters():
            why = self.why_fixed(p)
            if why:
                out[name] = why
        return out

    def holding(self, tensor: torch.Tensor):
        """The optimizer that holds ``tensor``, or ``None``."""
        i = (self.holder or {}).get(id(tensor))
        return None if i is None else self.optimizers[i]


def training(params: Mapping[str, torch.Tensor], optimizer: Any = None) -> Training:
    """The run for these parameters under ``optimizer`` (one, several, or none); raises
    ``SetupError`` where a parameter of the model is held by two optimizers."""
    found = optimizers_of(optimizer)
    names = {id(p): n for n, p in params.items()}
    holder: dict[int, int] = {}
    for i, opt in enumerate(found):
        for group in opt.param_groups:
            for p in group["params"]:
                j = holder.setdefault(id(p), i)
                if j != i and id(p) in names:
                    raise SetupError(
                        f"parameter '{names[id(p)]}' is held by two optimizers "
                        f"({_label(found, j)} and {_label(found, i)}): both would update it "
                        "every step, each with its own decay. Give each tensor to one optimizer")
    return Training(found, holder)


def _label(found: tuple, i: int) -> str:
    return f"#{i + 1} {type(found[i]).__name__}"
