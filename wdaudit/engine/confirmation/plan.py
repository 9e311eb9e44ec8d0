"""What confirmation is given, and the plan it makes before any pass runs: on which examples,
in which precision, within which memory bill (DESIGN.md §4: what adapts is never a check)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

from . import budget


@dataclass(frozen=True)
class Setup:
    """What confirmation needs beyond the claims: the user's parameters (only ever read), the
    example inputs, where to run and with which seed, whether to run at all, and how many
    bytes it may use (default: what the device has free)."""

    params: Mapping[str, torch.Tensor]
    inputs: tuple
    device: torch.device
    seed: int = 0
    enabled: bool = True
    memory_budget: int | None = None


@dataclass(frozen=True)
class Plan:
    """The examples the passes run on, their precision, the bill estimated for them, and why
    none fits (``short``); ``capped`` where fewer examples than the user's are used."""

    inputs: tuple
    dtype: torch.dtype
    batch: int | None
    estimate: int | None
    short: str
    capped: bool

    @property
    def extra(self) -> dict:  # what the Confirmation reports of it
        return dict(batch=self.batch, estimate=self.estimate)


def plan_for(program, setup: Setup, cap: bool = True) -> Plan:
    inputs, bill, short, dtype = budget.precise_plan(program, setup.params, setup.inputs,
                                                     setup.device, setup.memory_budget, cap=cap)
    capped = cap and bill.batch == budget.CAP_BATCH < (budget.batch_size(setup.inputs) or 0)
    return Plan(inputs, dtype, bill.batch, bill.total, short, capped)
