"""``param_groups()``: the optimizer parameter groups the audit's proof calls for.

A drop-in for timm's ``param_groups_weight_decay``, nanoGPT's ``configure_optimizers``
grouping and Hugging Face's ``get_decay_parameter_names``: the list goes straight into
``torch.optim.AdamW(groups, lr=…)`` (or SGD, Lion …).  Every trainable parameter appears exactly
once (tied parameters once, under their first name; frozen ones not at all):

* effective and unknown parameters get ``weight_decay`` (unknown is never a licence to drop it);
* parameters with no effect on the output get 0 (decay would only shrink them to no purpose);
* each scale-free group gets ``scale_free_decay`` (default ``weight_decay``, so training is
  unchanged until you choose), with its equilibrium numbers attached so that you can choose
  knowingly: there, decay sets the effective learning rate, it does not regularise.  With
  ``corrected_decay=True`` each is marked for the corrected decay (AdamC/SGDC) that
  ``wdaudit.corrected_decay(optimizer, scheduler)`` then applies to exactly those groups.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..report import EFFECTIVE, FROZEN, INEFFECTIVE, UNKNOWN, Report
from .annotate import for_group
from .corrected import MARK
from .equilibrium import CORRECTED_MAX_LR
from .settings import from_class


def groups_for(report: Report, model: nn.Module, weight_decay: float, *,
               scale_free_decay: float | None = None,
               optimizer_kwargs: Mapping[str, Any] | None = None,
               optimizer_class: type = torch.optim.AdamW,
               total_steps: int | None = None,
               corrected_decay: bool = False) -> list[dict[str, Any]]:
    """Parameter groups for ``optimizer_class(groups, **optimizer_kwargs)`` from ``report``
    (``wdaudit.param_groups`` runs the audit first when it is not given one).

    Each group is a dict with ``params``, ``weight_decay``, ``kind`` (``"effective"``,
    ``"scale-free"``, ``"no-effect"`` or ``"unknown"``), ``names`` and, for a scale-free group,
    ``equilibrium``: the numbers of :mod:`wdaudit.advice.equilibrium` for ``optimizer_class``
    with ``optimizer_kwargs`` (its current lr), as a plain dict (checkpoints stay loadable with
    ``torch.load(weights_only=True)``).  ``corrected_decay`` marks
    each scale-free group ``"corrected_decay": True`` (its equilibrium then assumes the
    correction, with lr_max the ``lr`` of ``optimizer_kwargs``).
    """
    if scale_free_decay is None:
        scale_free_decay = weight_decay
    params = {n: p for n, p in model.named_parameters()
              if p.requires_grad and report.parameters[n].verdict != FROZEN}
    kwargs = dict(optimizer_kwargs or {})
    out: list[dict[str, Any]] = []
    placed: set[str] = set()
    no_effect = [n for n, p in report.parameters.items()
                 if n in params and p.verdict == INEFFECTIVE and _no_effect(report, p.groups)]
    placed.update(no_effect)
    for g in report.groups:
        if g.kind == "no-effect":
            continue
        names = [n for n in g.names if n in params and n not in placed
                 and report.parameters[n].verdict == INEFFECTIVE]
        if not names:
            continue
        placed.update(names)
        corrected = {CORRECTED_MAX_LR: kwargs["lr"]} if corrected_decay and kwargs.get("lr") \
            else {}
        settings = from_class(optimizer_class, {**kwargs, **corrected}, scale_free_decay)
        eq = for_group(g, {n: settings for n in names}, params, total_steps)
        extra = {MARK: True} if corrected_decay else {}
        out.append(_group(params, names, scale_free_decay, "scale-free",
                          equilibrium=eq.to_dict() if eq is not None else None, **extra))
    effective = [n for n in params if report.parameters[n].verdict == EFFECTIVE]
    unknown = [n for n in params if n not in placed and n not in effective]
    kinds = ((effective, weight_decay, "effective"), (unknown, weight_decay, UNKNOWN),
             (no_effect, 0.0, "no-effect"))
    out[:0] = [_group(params, names, wd, kind) for names, wd, kind in kinds if names]
    return out


def _no_effect(report: Report, group_ids) -> bool:
    kinds = {g.id: g.kind for g in report.groups}
    return any(kinds.get(i) == "no-effect" for i in group_ids)


def _group(params, names, weight_decay, kind, **extra) -> dict[str, Any]:
    return {"params": [params[n] for n in names], "weight_decay": float(weight_decay),
            "names": list(names), "kind": kind, **extra}
