"""Hooks into training loops: audit the model with the optimizer and a batch the loop really
uses, when training begins (``integrations.transformers``, ``integrations.lightning``).

What both share lives here: turning a training batch into the positional example inputs
``audit()`` takes, reaching the optimizer inside the wrappers trainers put around it, and
telling the findings (as logged warnings, and optionally as :class:`FindingsFound`).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Mapping

import torch
from torch import nn

from ..audit import audit
from ..report import Report
from ..rules import SEVERITIES, at_least

logger = logging.getLogger("wdaudit")
LABEL_KEYS = ("labels", "label", "label_ids")  # the loss is not the function decay acts on


class FindingsFound(RuntimeError):
    """Raised by a callback with ``fail_on=`` when the audit found something at or above it;
    ``.report`` is the full report."""

    def __init__(self, message: str, report: Report):
        super().__init__(message)
        self.report = report


def first_batch(dataloader) -> Any:
    """The dataloader's first batch, drawn without moving the global RNGs: a shuffling sampler
    seeds itself from torch's RNG, and training's own data order must not depend on the audit."""
    with torch.random.fork_rng(devices=[]):
        return next(iter(dataloader))


def check_fail_on(fail_on: str | None) -> str | None:
    if fail_on is not None and fail_on not in SEVERITIES:
        raise ValueError(f"fail_on must be one of {', '.join(SEVERITIES)} or None, "
                         f"got {fail_on!r}")
    return fail_on


def positional_inputs(model: nn.Module, batch: Any, keep: int = 2) -> tuple:
    """A batch as ``forward``'s positional arguments, cut to ``keep`` samples.

    A dict (Hugging Face style) is ordered by ``forward``'s signature, stopping at the first
    parameter it does not hold (wdaudit passes inputs positionally); labels are left out.  A
    tuple or list is ``(inputs, targets)``: its first element is the input.
    """
    if isinstance(batch, Mapping):
        present = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
        values = []
        for name, p in inspect.signature(model.forward).parameters.items():
            if name not in present or p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                break
            values.append(present[name])
        if not values:
            raise ValueError(f"none of the batch's keys ({', '.join(map(str, batch))}) is the "
                             f"first argument of {type(model).__name__}.forward")
        inputs = tuple(values)
    elif isinstance(batch, (tuple, list)):
        inputs = batch[0] if isinstance(batch[0], (tuple, list)) else (batch[0],)
    else:
        inputs = (batch,)
    device = next((p.device for p in model.parameters()), None)
    return tuple(_cut(x, keep, device) for x in inputs)


def _cut(x: Any, keep: int, device) -> Any:
    if isinstance(x, torch.Tensor):
        x = x[:keep] if x.dim() > 0 else x
        return x.to(device) if device is not None else x
    return x


def inner_optimizer(optimizer: Any) -> Any:
    """The torch optimizer inside accelerate's or Lightning's wrapper (its class says whether
    its decay is coupled to an adaptive step)."""
    for attribute in ("optimizer", "_optimizer"):
        inner = getattr(optimizer, attribute, None)
        if inner is not None and hasattr(inner, "param_groups"):
            return inner_optimizer(inner)
    return optimizer


def run_audit(model: nn.Module, batch: Any, optimizer: Any, options: Mapping) -> Report:
    """Audit ``model`` on a training batch with the loop's optimizer; log each finding."""
    inputs = positional_inputs(model, batch)
    report = audit(model, inputs, optimizer=inner_optimizer(optimizer), **options)
    for finding in report.findings:
        logger.warning("wdaudit %s: %s", finding.code, finding.message)
    if not report.findings:
        logger.info("wdaudit: no findings on %s", report.model)
    return report


def enforce(report: Report, fail_on: str | None) -> None:
    if fail_on is None:
        return
    failing = [f for f in report.findings if at_least(f.severity, fail_on)]
    if failing:
        codes = ", ".join(sorted({f.code for f in failing}))
        raise FindingsFound(f"wdaudit found {len(failing)} finding(s) at or above {fail_on} "
                            f"({codes}) on {report.model}: training stopped (fail_on="
                            f"{fail_on!r}); the callback's .report has them all.", report)
