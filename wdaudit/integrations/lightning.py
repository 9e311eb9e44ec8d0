"""``WDAuditCallback`` for Lightning: when training starts, audit the LightningModule with
``trainer.optimizers`` and its ``example_input_array`` (else the first training batch, whose
first element is the input when it is a tuple).

    trainer = L.Trainer(callbacks=[WDAuditCallback()])

Works with ``lightning`` or ``pytorch_lightning``; without either it is a plain class with the
same hook, for loops that mirror Lightning's.
"""

from __future__ import annotations

import math
from typing import Any

from . import check_fail_on, enforce, first_batch, run_audit

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        from pytorch_lightning import Callback
    except ImportError:
        Callback = object


def schedule_of(trainer) -> dict:
    """The trainer's schedulers and its length in optimizer steps, as ``audit()`` takes them.
    A scheduler stepped per epoch becomes one stepped every epoch's worth of optimizer steps
    (the trainer knows the epoch's length; a file alone does not)."""
    configs = list(getattr(trainer, "lr_scheduler_configs", None) or ())
    if not configs:
        return {}
    batches = getattr(trainer, "num_training_batches", None)
    accumulate = max(1, int(getattr(trainer, "accumulate_grad_batches", 1) or 1))
    per_epoch = int(batches) // accumulate if isinstance(batches, (int, float)) \
        and math.isfinite(batches) and batches > 0 else None
    schedulers = []
    for config in configs:
        every = int(getattr(config, "frequency", 1) or 1)
        if getattr(config, "interval", "epoch") == "epoch":
            if not per_epoch:
                schedulers.append(config)  # left to the advice layer, which says so
                continue
            every *= per_epoch
        schedulers.append({"scheduler": config.scheduler, "interval": "step",
                           "frequency": every})
    out: dict = {"scheduler": schedulers}
    steps = getattr(trainer, "estimated_stepping_batches", None)
    if isinstance(steps, (int, float)) and math.isfinite(steps) and steps > 0:
        out["total_steps"] = int(steps)
    return out


class WDAuditCallback(Callback):
    """Audit once, on ``on_train_start``; other ``audit()`` keyword arguments pass through."""

    def __init__(self, fail_on: str | None = None, **audit_options: Any):
        super().__init__()
        self.fail_on = check_fail_on(fail_on)
        self.audit_options = audit_options
        self.report = None

    def on_train_start(self, trainer, pl_module) -> None:
        example = getattr(pl_module, "example_input_array", None)
        if example is not None:
            # Lightning's convention: a tuple is *args, a dict **kwargs, a tensor the one input
            batch = [tuple(example)] if isinstance(example, (tuple, list)) else example
        else:
            batch = lambda: first_batch(trainer.train_dataloader)  # noqa: E731 - drawn guarded
        # every optimizer, each tensor's settings from the one holding it (a GAN's two, Muon
        # beside AdamW); audit() unwraps LightningOptimizer
        optimizers = tuple(getattr(trainer, "optimizers", None) or ()) or None
        self.report = run_audit(pl_module, batch, optimizers,
                                {**schedule_of(trainer), **self.audit_options})
        enforce(self.report, self.fail_on)
