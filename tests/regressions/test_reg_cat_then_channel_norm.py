"""Found by the property test: ``BN(cat([W x, x]))``.

BatchNorm normalises each channel on its own, so the concatenated parts need not scale alike:
scaling W leaves the output unchanged.  The analysis requires concatenated tensors to scale
alike and pins W."""

import pytest
import torch
from torch import nn

import oracle
import wdaudit


class CatThenBatchNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4, bias=False)
        self.bn = nn.BatchNorm1d(7)

    def forward(self, x):
        return self.bn(torch.cat([self.fc(x), x], dim=-1))


def example():
    torch.manual_seed(0)
    return CatThenBatchNorm(), torch.randn(8, 3)


def test_oracle_finds_the_branch_scale_free():
    model, x = example()
    truth = oracle.check(model, x)
    assert "fc.weight" in truth.ineffective
    assert truth.witness["fc.weight"].get("fc.weight", 0.0) > 0.5


@pytest.mark.xfail(strict=True, reason="cat: parts that a per-channel norm normalises "
                   "separately are forced to scale alike")
def test_parts_of_a_concatenation_scale_independently_before_a_channel_norm():
    model, x = example()
    assert "fc.weight" in wdaudit.audit(model, x).ineffective
