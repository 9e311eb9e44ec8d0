"""The audit's hook into this layer: each decayed group's equilibrium (a closed form, else a
measurement of the optimizer's own code; along the schedule where one is given) and the folklore
table, added to a finished :class:`~wdaudit.report.Report` (the engine's verdicts are not
touched)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Mapping

import torch
from torch import nn

from ..report import INEFFECTIVE, Group, Report
from . import folklore, measured
from .equilibrium import Equilibrium, no_effect, predict
from .schedule import LrPaths, lr_paths, total_steps_of
from .settings import Settings, per_parameter
from .trajectory import along


def annotate(report: Report, model: nn.Module, optimizer=None,
             total_steps: int | None = None, scheduler=None) -> Report:
    """``report`` with ``folklore`` filled in and, with an optimizer, every group's
    ``equilibrium`` (``None`` where the optimizer does not decay it); with a ``scheduler`` (or
    a :class:`~.schedule.Schedule`) and the number of steps, each one's trajectory."""
    verdicts = {n: p.verdict for n, p in report.parameters.items()}
    table = folklore.compare(model, verdicts)
    groups, notes = report.groups, ()
    if optimizer is not None and optimizer != ():
        params = dict(model.named_parameters())
        settings = per_parameter(optimizer, params)
        paths = None
        if scheduler is not None:
            steps = total_steps or total_steps_of(scheduler)
            if steps:
                paths = lr_paths(optimizer, scheduler, steps)
                notes = paths.notes
            else:
                notes = ("the schedule is not followed: give the number of training steps "
                         "(total_steps=, --steps)",)
        # only a group that stands (its members ineffective through it) has an equilibrium:
        # an unconfirmed claim is unknown, and the numbers would contradict the header
        groups = tuple(replace(g, equilibrium=for_group(g, settings, params, total_steps, paths))
                       if _stands(g, report) else g for g in groups)
    corrections = {"adamc": folklore.adamc(model, report, groups)}
    coverage = replace(report.coverage, notes=report.coverage.notes + tuple(
        f"schedule: {n}" for n in notes))
    return replace(report, groups=groups, folklore=table, corrections=corrections,
                   coverage=coverage)


def _stands(group: Group, report: Report) -> bool:
    return any(report.parameters[n].verdict == INEFFECTIVE and group.id in
               report.parameters[n].groups for n in group.names if n in report.parameters)


def for_group(group: Group, settings: Mapping[str, Settings],
              params: Mapping[str, torch.Tensor], total_steps: int | None = None,
              paths: LrPaths | None = None, measure: bool = True) -> Equilibrium | None:
    """The equilibrium of one group under these per-parameter settings; ``None`` when no
    member is decayed.  With ``paths``, at the schedule's peak lr and along it; where no
    closed form applies and ``measure``, measured (:mod:`.measured`)."""
    names = [n for n in group.names if n in params]
    decayed = [n for n in names if n in settings and settings[n].weight_decay > 0
               and params[n].requires_grad]
    if not decayed:
        return None
    first = settings[decayed[0]]
    path = _path(paths, [params[n] for n in names]) if paths is not None else None
    if path is not None:
        first = replace(first, lr=float(path.max()))
    if group.kind == "no-effect":
        return no_effect(first, total_steps)
    why = _outside_theory(group, names, decayed, settings)
    if why:
        return Equilibrium(first.optimizer, "none", first.lr, first.weight_decay, None, None,
                           total_steps=total_steps, note=f"no closed form: {why}")
    numel = sum(params[n].numel() for n in names)
    shapes = tuple(tuple(params[n].shape) for n in names)
    norm = _norm([params[n] for n in names])
    eq = predict(first, numel, norm, total_steps, shapes)
    if eq.model == "none" and measure and measured.measurable(first):
        eq = measured.equilibrium(first, shapes, norm, total_steps)
    if path is None:
        if paths is not None:
            return replace(eq, note=f"{eq.note}; its members follow different schedules: "
                                    "no trajectory")
        return eq
    eq = replace(eq, note=f"{eq.note}; numbers at the schedule's peak lr")
    return along(eq, path, paths.description)


def _path(paths: LrPaths, tensors):
    found = [paths.by_tensor.get(id(t)) for t in tensors]
    if any(p is None for p in found) or any(p is not found[0] and not (p == found[0]).all()
                                            for p in found):
        return None
    return found[0]


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
