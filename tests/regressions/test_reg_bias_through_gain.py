"""Found by the property test: ``BN((W x + b) * gamma) @ W`` — BatchNorm without affine, then
the same W used transposed (a tied head), which pins W's scale.

``b * gamma`` is a per-channel constant, which BatchNorm's mean subtraction removes: the bias
has no effect.  The influence analysis does not follow an additive offset through a
per-channel multiplication by a parameter, so it pins the bias to W's scale instead."""

import torch
from torch import nn

from tests.support import oracle
import wdaudit


class BiasThroughGain(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.fc = nn.Linear(3, d)
        self.gamma = nn.Parameter(torch.ones(d))
        self.bn = nn.BatchNorm1d(d, affine=False)

    def forward(self, x):
        return self.bn(self.fc(x) * self.gamma) @ self.fc.weight


class BiasWithoutGain(BiasThroughGain):
    def forward(self, x):
        return self.bn(self.fc(x)) @ self.fc.weight


def example(cls=BiasThroughGain):
    torch.manual_seed(0)
    return cls(), torch.randn(8, 3)


def test_oracle_finds_the_bias_has_no_effect():
    model, x = example()
    truth = oracle.check(model, x)
    assert truth.ineffective == {"fc.bias", "gamma"}
    assert truth.witness["fc.bias"] == {"fc.bias": 1.0}


def test_without_the_gain_the_bias_is_found():
    model, x = example(BiasWithoutGain)
    assert wdaudit.audit(model, x).parameters["fc.bias"].verdict == "ineffective"


def test_bias_before_gain_and_norm_has_no_effect():  # fixed: terms pass through a gain
    model, x = example()
    assert wdaudit.audit(model, x).parameters["fc.bias"].verdict == "ineffective"
