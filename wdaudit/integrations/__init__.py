"""Hooks into training loops: audit the model with the optimizer and a batch the loop really
uses, when training begins (``integrations.transformers``, ``integrations.lightning``).

What both share lives here: reaching the model inside the wrappers training puts around it
(``torch.compile``, DDP/FSDP, accelerate) and the signature inside a PEFT model, turning a
training batch into the positional example inputs ``audit()`` takes, and telling the findings
(as logged warnings, and optionally as :class:`FindingsFound`).  The optimizers are passed on
as the loop holds them (``audit()`` unwraps accelerate's and Lightning's wrappers).  An audit
that fails is logged and training goes on: the audit is advice, never a reason to stop a run
(only ``fail_on=`` stops it, by choice).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Mapping

import torch
from torch import nn

from ..api import audit
from ..engine.confirmation.budget import CAP_BATCH
from ..messages import one_line
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


_WRAPPERS = ("_orig_mod", "module")  # torch.compile's OptimizedModule; DDP, FSDP, DataParallel


def trained_module(model: nn.Module) -> nn.Module:
    """The module the loop trains, under ``torch.compile``'s and the distributed wrappers (a
    compiled or DDP forward is not the function to trace; its parameters are the inner
    module's own tensors)."""
    seen = set()
    while id(model) not in seen:
        seen.add(id(model))
        inner = next((getattr(model, a) for a in _WRAPPERS
                      if isinstance(getattr(model, a, None), nn.Module)
                      and _is_wrapper(model)), None)
        if inner is None:
            break
        model = inner
    return model


def _is_wrapper(model: nn.Module) -> bool:
    names = {c.__name__ for c in type(model).__mro__}
    return bool(names & {"OptimizedModule", "DistributedDataParallel", "DataParallel",
                         "FullyShardedDataParallel"})


def forward_signature(model: nn.Module) -> inspect.Signature:
    """``forward``'s signature, or, where it takes only ``*args, **kwargs`` (a ``PeftModel``
    passing everything to its base model), the signature of the model it passes them to."""
    seen = set()
    while True:
        signature = inspect.signature(model.forward)
        named = [p for p in signature.parameters.values()
                 if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if named or id(model) in seen:
            return signature
        seen.add(id(model))
        inner = model.get_base_model() if callable(getattr(model, "get_base_model", None)) \
            else getattr(model, "model", None)
        if not isinstance(inner, nn.Module) or inner is model:
            return signature
        model = inner


def positional_inputs(model: nn.Module, batch: Any, keep: int = CAP_BATCH) -> tuple:
    """A batch as ``forward``'s positional arguments, cut to ``keep`` samples (confirmation
    checks at most that many; never fewer than 4 where the batch has them, or BatchNorm makes
    the check blind).

    A dict (Hugging Face style) is ordered by ``forward``'s signature (the base model's, under
    a PEFT model), stopping at the first parameter it does not hold (wdaudit passes inputs
    positionally); labels are left out.  A tuple or list is ``(inputs, targets)``: its first
    element is the input.
    """
    if isinstance(batch, Mapping):
        present = {k: v for k, v in batch.items() if k not in LABEL_KEYS}
        values = []
        for name, p in forward_signature(model).parameters.items():
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


def run_audit(model: nn.Module, batch: Any, optimizer: Any, options: Mapping) -> Report | None:
    """Audit ``model`` on a training batch (or what a zero-argument callable returns: drawing
    it may fail too) with the loop's optimizer(s); log each finding.  Whatever goes wrong is
    logged, and ``None`` returned: training goes on."""
    try:
        batch = batch() if callable(batch) else batch
        model = trained_module(model)
        inputs = positional_inputs(model, batch)
        report = audit(model, inputs, optimizer=optimizer, **options)
    except Exception as exc:  # noqa: BLE001 - the audit never stops a training run
        logger.error("wdaudit: the audit of %s failed and training goes on without it: %s",
                     type(model).__name__, one_line(exc),
                     exc_info=logger.isEnabledFor(logging.DEBUG))
        return None
    for finding in report.findings:
        logger.warning("wdaudit %s: %s", finding.code, finding.message)
    if not report.findings:
        logger.info("wdaudit: no findings on %s", report.model)
    return report


def enforce(report: Report | None, fail_on: str | None) -> None:
    if fail_on is None or report is None:
        return
    failing = [f for f in report.findings if at_least(f.severity, fail_on)]
    if failing:
        codes = ", ".join(sorted({f.code for f in failing}))
        raise FindingsFound(f"wdaudit found {len(failing)} finding(s) at or above {fail_on} "
                            f"({codes}) on {report.model}: training stopped (fail_on="
                            f"{fail_on!r}); the callback's .report has them all.", report)
