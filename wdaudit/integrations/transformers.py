"""``WDAuditCallback`` for the Hugging Face ``Trainer``: when training begins, audit the model
with the Trainer's own optimizer (its decay groups, as built by ``create_optimizer``) and a
batch from its training dataloader.

    trainer = Trainer(model, args, train_dataset=ds, callbacks=[WDAuditCallback()])

Findings are logged as warnings (logger ``wdaudit``) and kept on ``callback.report``;
``fail_on="warning"`` raises :class:`~wdaudit.integrations.FindingsFound` before the first step.
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from . import check_fail_on, enforce, first_batch, run_audit


class WDAuditCallback(TrainerCallback):
    """Audit once, on ``on_train_begin``; other ``audit()`` keyword arguments pass through
    (``confirm=``, ``device=``, ``ignore_parameters=`` …)."""

    def __init__(self, fail_on: str | None = None, **audit_options: Any):
        self.fail_on = check_fail_on(fail_on)
        self.audit_options = audit_options
        self.report = None

    def on_train_begin(self, args, state, control, *, model=None, optimizer=None,
                       train_dataloader=None, lr_scheduler=None, **kwargs):
        # the Trainer passes everything after control by keyword
        if model is None or train_dataloader is None:
            return control
        # the Trainer's own schedule over its own length (its schedules are LambdaLRs, stepped
        # once per optimizer step); audit() steps a copy
        options = dict(self.audit_options)
        if lr_scheduler is not None:
            options.setdefault("scheduler", lr_scheduler)
        if getattr(state, "max_steps", 0):
            options.setdefault("total_steps", int(state.max_steps))
        self.report = run_audit(model, lambda: first_batch(train_dataloader), optimizer,
                                options)
        enforce(self.report, self.fail_on)
        return control
