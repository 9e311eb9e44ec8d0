"""An optimizer's settings for one parameter, as the equilibrium formulas read them.

From a live optimizer (its ``param_groups``) or from a class and keyword arguments (what
``param_groups()`` is told the user will build), the same frozen record: the class, the
learning rate, the weight decay and the rest of the group's scalar hyperparameters."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ..engine.analysis.training import optimizers_of

BASE_DECAY = "corrected_decay_weight_decay"  # the group key wdaudit.corrected_decay sets


@dataclass(frozen=True)
class Settings:
    optimizer: str  # the class name
    bases: tuple[str, ...]  # the class names of its MRO (a subclass of AdamW is an AdamW)
    lr: float
    weight_decay: float
    hyper: tuple[tuple[str, Any], ...]  # the group's other scalar settings, sorted by key
    origins: tuple[str, ...] = ()  # the module of each class in ``bases``
    # what a measurement needs to build the optimizer again (advice.measured); not compared
    cls: Any = field(default=None, compare=False, repr=False)
    group: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.hyper).get(key, default)

    def is_a(self, *names: str) -> bool:
        return any(n in self.bases for n in names)


def _scalar(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, (list, tuple)):
        return tuple(_scalar(v) for v in value)
    return value


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, tuple))


def from_group(cls: type, group: Mapping[str, Any]) -> Settings:
    hyper = {k: _scalar(v) for k, v in group.items() if k not in ("params", "param_names")}
    lr = float(hyper.pop("lr", 0.0) or 0.0)
    wd = float(hyper.pop("weight_decay", 0.0) or 0.0)
    # wdaudit.corrected_decay rescales weight_decay every step and keeps the decay it was
    # given: that is the group's setting, not the value of the moment
    wd = float(hyper.pop(BASE_DECAY, wd) or 0.0)
    kept = tuple(sorted((k, v) for k, v in hyper.items() if _plain(v)))
    everything = tuple((k, v) for k, v in group.items() if k not in ("params", "param_names"))
    return Settings(cls.__name__, tuple(c.__name__ for c in cls.__mro__), lr, wd, kept,
                    tuple(c.__module__ for c in cls.__mro__), cls, everything)


def per_parameter(optimizer, params: Mapping[str, torch.Tensor]) -> dict[str, Settings]:
    """Each optimised parameter's settings, by name, from the optimizer that holds it
    (``optimizer``: one or several, as ``engine.training.optimizers_of`` reads them);
    parameters none of them holds are absent."""
    names = {id(p): n for n, p in params.items()}
    out: dict[str, Settings] = {}
    for opt in optimizers_of(optimizer):
        for group in opt.param_groups:
            settings = from_group(type(opt), group)
            for p in group["params"]:
                if id(p) in names:
                    out[names[id(p)]] = settings
    return out


def from_class(cls: type, kwargs: Mapping[str, Any], weight_decay: float) -> Settings:
    """The settings an optimizer of class ``cls`` built with ``kwargs`` gives a group whose
    weight decay is ``weight_decay``: the class's own defaults, then ``kwargs``."""
    defaults: dict[str, Any] = {}
    try:
        signature = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        defaults = {k: p.default for k, p in signature.parameters.items()
                    if k not in ("self", "params") and p.default is not inspect.Parameter.empty}
    group = {**defaults, **dict(kwargs), "weight_decay": weight_decay}
    return from_group(cls, group)
