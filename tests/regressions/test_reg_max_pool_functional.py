"""Found by the property test: ``F.max_pool1d(x, 3, 1, 1)`` followed by a bias-free Linear.

The analysis gives the pooled node no degree at all (its positional arguments are not bound:
"operand 'args' of max_pool1d is not modelled"), so nothing after it is constrained and the
Linear's weight is claimed scale-free although it feeds the output directly.  Confirmation
caught the claim (an AnalysisDefect in strict mode).  Fixed: boolean-dispatch wrappers bind by
their ATen schema, and a rule that binds no operand is an unknown op, never "no degree"."""

import torch
import torch.nn.functional as F
from torch import nn

from tests.support.differential import differential


class PoolThenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3, bias=False)

    def forward(self, x):  # x: (batch, length, channels); pool over length, keep it
        return self.fc(F.max_pool1d(x.transpose(1, 2), 3, 1, 1).transpose(1, 2))


def example():
    torch.manual_seed(0)
    return PoolThenLinear(), torch.randn(4, 3, 3)


def test_max_pool_functional_keeps_degree():
    model, x = example()
    report, _ = differential(model, x)
    assert "fc.weight" in report.effective and not report.confirmation.defects
