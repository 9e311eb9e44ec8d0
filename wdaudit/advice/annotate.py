"""The audit's hook into this layer: each decayed group's equilibrium and the folklore table,
added to a finished :class:`~wdaudit.report.Report` (the engine's verdicts are not touched)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Mapping

import torch
from torch import nn

from ..report import INEFFECTIVE, Group, Report
from . import folklore
from .equilibrium import Equilibrium, no_effect, predict
from .settings import Settings, per_parameter


def annotate(report: Report, model: nn.Module, optimizer=None,
             total_steps: int | None = None) -> Report:
    """``report`` with ``folklore`` filled in and, with an optimizer, every group's
    ``equilibrium`` (``None`` where the optimizer does not decay it)."""
    verdicts = {n: p.verdict for n, p in report.parameters.items()}
    table = folklore.compare(model, verdicts)
    groups = report.groups
    if optimizer is not None and optimizer != ():
        params = dict(model.named_parameters())
        settings = per_parameter(optimizer, params)
        # only a group that stands (its members ineffective through it) has an equilibrium:
        # an unconfirmed claim is unknown, and the numbers would contradict the header
        groups = tuple(replace(g, equilibrium=for_group(g, settings, params, total_steps))
                       if _stands(g, report) else g for g in groups)
    return replace(report, groups=groups, folklore=table)


def _stands(group: Group, report: Report) -> bool:
    return any(report.parameters[n].verdict == INEFFECTIVE and group.id in
               report.parameters[n].groups for n in group.names if n in report.parameters)


def for_group(group: Group, settings: Mapping[str, Settings],
              params: Mapping[str, torch.Tensor], total_steps: int | None = None
              ) -> Equilibrium | None:
    """The equilibrium of one group under these per-parameter settings; ``None`` when no
    member is decayed."""
    names = [n for n in group.names if n in params]
    decayed = [n for n in names if n in settings and settings[n].weight_decay > 0
               and params[n].requires_grad]
    if not decayed:
        return None
    first = settings[decayed[0]]
    if group.kind == "no-effect":
        return no_effect(first, total_steps)
    why = _outside_theory(group, names, decayed, settings)
    if why:
        return Equilibrium(first.optimizer, "none", first.lr, first.weight_decay, None, None,
                           total_steps=total_steps, note=f"no closed form: {why}")
    numel = sum(params[n].numel() for n in names)
    return predict(first, numel, _norm([params[n] for n in names]), total_steps)


def _outside_theory(group: Group, names, decayed, settings) -> str:
    if len(decayed) < len(names):
        return "the group is only partly decayed (WD004): its undecayed members can grow"
    if len({settings[n] for n in names}) > 1:
        return "its members have different optimizer settings"
    if len({m.exponent for m in group.members}) > 1:
        return "its members rescale with different exponents (the theory covers one sphere)"
    return ""


def _norm(tensors) -> float:
    """The group's joint norm, in float64; NaN where it cannot be read (meta tensors)."""
    try:
        with torch.no_grad():
            return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in tensors))
    except (RuntimeError, NotImplementedError):
        return float("nan")
