"""The public entry points, ``audit()`` and ``param_groups()``: the engine's driver composed
with what sits above it — where each finding points and the picture's overview (the front
end), the equilibrium numbers and the folklore table (the advice layer).  The driver takes
those as arguments, so that nothing below this module imports upwards."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from .audit import Options, audit as drive
from .advice.annotate import annotate
from .advice.param_groups import groups_for
from .engine.analysis.training import optimizers_of
from .frontend.locations import Locator
from .frontend.overview import overview_of
from .report import Report


def audit(model: nn.Module, example_inputs: Any, *, optimizer: Any = None,
          device: str | torch.device | None = None, confirm: bool = True,
          assume_decay: str = "all", strict: bool | None = None, seed: int = 0,
          locate: Callable | None = None, ignore_parameters: Sequence[str] = (),
          progress: Callable[[str], None] | None = None,
          total_steps: int | None = None, memory_budget: int | None = None,
          scheduler: Any = None, confirm_on: str = "model") -> Report:
    """Audit ``model``: which weight-decay terms cannot regularise anything.

    ``example_inputs`` is a tensor or a tuple of positional arguments.  ``optimizer`` is one
    optimizer or several (a list, tuple or dict: Muon for the matrices beside AdamW for the
    rest); with it, verdicts carry each parameter's actual ``weight_decay``, read from the
    optimizer that holds it, and a parameter none of them holds is held fixed.  Without one,
    ``assume_decay`` (``"all"``, ``"matrices"`` or ``"none"``) says which parameters count as
    decayed.  Parameters with ``requires_grad=False`` are always held fixed: training cannot
    rescale them, so their verdict is ``frozen`` and nothing is claimed about them.
    ``strict`` (default: the ``WDAUDIT_STRICT`` environment variable) makes an unknown op or
    an analysis that fails at a node an error instead of a conservatively-handled, counted
    event.  ``ignore_parameters`` are glob patterns of parameter names never named in findings
    (their verdicts are still reported).  ``progress`` is called with ``"trace"``,
    ``"analysis"`` and ``"confirm"`` as each starts.  ``total_steps`` (the planned length of
    training) says in each group's ``equilibrium`` whether training reaches it.
    ``scheduler`` (a torch LR scheduler, several, Lightning's dicts, or an
    ``advice.schedule.Schedule``) makes each equilibrium follow the schedule over
    ``total_steps``; it is stepped on a copy, never on the object given.
    ``memory_budget`` (bytes; default: what the device has free, or
    ``WDAUDIT_MEMORY_BUDGET``) bounds what confirmation may allocate.  ``Report.timings``
    accounts for every second of the call, stage by stage.
    ``confirm_on="twin"`` checks the claims on a *twin* instead of the model itself: for a
    Hugging Face model (a transformers ``PretrainedConfig`` at ``model.config``; the model may
    live on the meta device), the same class built from a copy of its configuration with every
    width reduced and the same depth and topology, audited in float64 on the CPU.  The model's
    claims are confirmed only where the twin makes the same claims one to one (by parameter
    name); otherwise they stay unknown, the first difference named.  ``Report.confirmation``
    says ``on="twin"`` and which widths the twin had.  A model without such a configuration
    raises ``wdaudit.twin.NoTwin``.
    """
    options = Options(optimizer=optimizer, device=device, confirm=confirm,
                      assume_decay=assume_decay, strict=strict, seed=seed, locate=locate,
                      ignore_parameters=tuple(ignore_parameters), progress=progress,
                      total_steps=total_steps, memory_budget=memory_budget, scheduler=scheduler,
                      confirm_on=confirm_on)
    return audit_with(model, example_inputs, options)


def audit_with(model: nn.Module, example_inputs: Any, options: Options) -> Report:
    """:func:`audit` from an options record (the command line builds one)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"audit() needs an nn.Module, got {type(model).__name__}")
    options = replace(options, locate=options.locate or Locator(model), overview=overview_of)
    report = drive(model, example_inputs, options)
    start = time.perf_counter()
    report = annotate(report, model, optimizers_of(options.optimizer), options.total_steps,
                      options.scheduler)
    timings = dict(report.timings)
    timings["report"] = timings.get("report", 0.0) + time.perf_counter() - start
    return replace(report, timings=timings)


def param_groups(model: nn.Module, example_inputs: Any, weight_decay: float, *,
                 scale_free_decay: float | None = None,
                 optimizer_kwargs: Mapping[str, Any] | None = None,
                 optimizer_class: type = torch.optim.AdamW, total_steps: int | None = None,
                 report: Report | None = None, corrected_decay: bool = False,
                 **audit_kwargs) -> list[dict[str, Any]]:
    """Parameter groups for ``optimizer_class(groups, **optimizer_kwargs)`` that follow the
    audit's proof (``advice.param_groups``).  ``report`` reuses an audit already made;
    otherwise ``audit(model, example_inputs, **audit_kwargs)`` runs.  ``corrected_decay`` marks
    each scale-free group for the corrected decay (AdamC/SGDC) that
    ``wdaudit.corrected_decay(optimizer, scheduler)`` applies."""
    if report is None:
        report = audit(model, example_inputs, **audit_kwargs)
    return groups_for(report, model, weight_decay, scale_free_decay=scale_free_decay,
                      optimizer_kwargs=optimizer_kwargs, optimizer_class=optimizer_class,
                      total_steps=total_steps, corrected_decay=corrected_decay)
