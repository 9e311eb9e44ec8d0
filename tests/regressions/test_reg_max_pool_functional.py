"""Found by the property test: ``F.max_pool1d(x, 3, 1, 1)`` followed by a bias-free Linear.

The analysis gives the pooled node no degree at all (its positional arguments are not bound:
"operand 'args' of max_pool1d is not modelled"), so nothing after it is constrained and the
Linear's weight is claimed scale-free although it feeds the output directly.  Confirmation
catches the claim; in strict mode that is an AnalysisDefect."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wdaudit
from helpers import differential


class PoolThenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3, bias=False)

    def forward(self, x):  # x: (batch, length, channels); pool over length, keep it
        return self.fc(F.max_pool1d(x.transpose(1, 2), 3, 1, 1).transpose(1, 2))


def example():
    torch.manual_seed(0)
    return PoolThenLinear(), torch.randn(4, 3, 3)


def test_the_false_claim_is_dropped_not_reported():
    model, x = example()
    report = wdaudit.audit(model, x, strict=False)
    assert report.confirmation.defects
    assert report.parameters["fc.weight"].verdict == "unknown"


@pytest.mark.xfail(strict=True, raises=wdaudit.AnalysisDefect,
                   reason="F.max_pool1d with positional kernel/stride/padding gets no degree")
def test_max_pool_functional_keeps_degree():
    model, x = example()
    report, _ = differential(model, x)
    assert "fc.weight" in report.effective
