"""The corrected decay for exactly the proven groups: AdamC / SGDC (Defazio 2025).

A scale-free group's equilibrium norm is ``√(ηC/(2λ))`` (AdamW): as the schedule lowers ``η`` at
the end of training the norm is pulled down, and ‖g‖/‖w‖ (∝ 1/‖w‖² for a scale-free weight)
rises.  Scaling the decay by ``η_t/η_max`` keeps ``η/λ`` and with it the equilibrium norm fixed.
Defazio applies it to "every linear layer but the output"; the proof says which groups are
scale-free, and only those are corrected here — a group whose decay acts (it regularises) keeps
its plain decay.

    groups = wdaudit.param_groups(model, x, 0.1, corrected_decay=True)
    optimizer = torch.optim.AdamW(groups, lr=3e-4)
    scheduler = ...
    wdaudit.corrected_decay(optimizer, scheduler, total_steps=10_000)

The hook is an optimizer step pre-hook: before every step it sets each corrected group's
``weight_decay`` to ``λ·lr/lr_max``, with ``λ`` and ``lr_max`` kept in the group (an audit of the
optimizer afterwards reads the corrected decay from them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.analysis.training import unwrap
from ..report import INEFFECTIVE
from .equilibrium import CORRECTED_MAX_LR
from .schedule import lr_paths, total_steps_of
from .settings import BASE_DECAY

MARK = "corrected_decay"  # param_groups(corrected_decay=True) marks the scale-free groups


@dataclass
class CorrectedDecay:
    """The registered hook: which of the optimizer's groups it corrects (by index) and which
    decayed groups it leaves alone because not all of their tensors are proven scale-free."""

    optimizer: Any
    corrected: tuple[int, ...]
    left: tuple[int, ...]
    lr_max: tuple[float, ...]
    _handle: Any = field(default=None, repr=False)

    def remove(self) -> None:
        """Unregister the hook and give every corrected group its plain decay back."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        for i in self.corrected:
            group = self.optimizer.param_groups[i]
            group["weight_decay"] = group.pop(BASE_DECAY, group["weight_decay"])
            group.pop(CORRECTED_MAX_LR, None)


def corrected_decay(optimizer, scheduler=None, report=None, *, model=None,
                    total_steps: int | None = None, lr_max: float | None = None
                    ) -> CorrectedDecay:
    """Scale the decay of the proven scale-free groups of ``optimizer`` by lr_t/lr_max.

    The groups: those ``param_groups(corrected_decay=True)`` marked, or, with ``report``
    (``wdaudit.audit``'s), every decayed group whose tensors are all proven scale-free (their
    names from the group's ``names``/``param_names``, else from ``model``).  ``lr_max``: as
    given, else the peak of ``scheduler`` over ``total_steps`` (read on a copy), else the
    group's ``initial_lr`` (a torch scheduler's base lr) or its lr now."""
    opt = unwrap(optimizer)
    proven = _proven(report) if report is not None else None
    names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
    peaks = _peaks(opt, scheduler, total_steps) if scheduler is not None else {}
    corrected, left, maxima = [], [], []
    for i, group in enumerate(opt.param_groups):
        if float(group.get("weight_decay", 0.0) or 0.0) <= 0 and BASE_DECAY not in group:
            continue
        if not _chosen(group, proven, names):
            left.append(i)
            continue
        top = lr_max or peaks.get(i) or float(group.get("initial_lr", group["lr"]))
        group.setdefault(BASE_DECAY, float(group["weight_decay"]))
        group[CORRECTED_MAX_LR] = float(top)
        corrected.append(i)
        maxima.append(float(top))

    def hook(optimizer, args, kwargs):
        for i in corrected:
            group = opt.param_groups[i]
            group["weight_decay"] = group[BASE_DECAY] * float(group["lr"]) / group[CORRECTED_MAX_LR]

    handle = opt.register_step_pre_hook(hook)
    return CorrectedDecay(opt, tuple(corrected), tuple(left), tuple(maxima), handle)


def _proven(report) -> set[str]:
    """Tensors in a scale-free group that stands (not merely without effect: decay there only
    shrinks, and param_groups() already gives them none)."""
    kinds = {g.id: g.kind for g in report.groups}
    return {n for n, p in report.parameters.items() if p.verdict == INEFFECTIVE
            and any(kinds.get(i) not in (None, "no-effect") for i in p.groups)}


def _chosen(group, proven, names) -> bool:
    if proven is None:
        return bool(group.get(MARK, False))
    listed = group.get("names") or group.get("param_names")
    members = list(listed) if listed else [names.get(id(p)) for p in group["params"]]
    return bool(members) and all(m is not None and m in proven for m in members)


def _peaks(opt, scheduler, total_steps) -> dict[int, float]:
    steps = total_steps or total_steps_of(scheduler)
    if not steps:
        return {}
    paths = lr_paths(opt, scheduler, steps)
    out = {}
    for i, group in enumerate(opt.param_groups):
        path = paths.by_tensor.get(id(group["params"][0])) if group["params"] else None
        if path is not None:
            out[i] = float(np.max(path))
    return out
