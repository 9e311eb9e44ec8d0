"""Found by the property test: one Linear applied twice, then BatchNorm without affine:
``BN(fc(fc(x))) = BN(W²x + Wb + b)``.

``Wb + b`` is a per-channel constant that the mean subtraction removes, so the bias has no
effect, and what remains, ``W²x``, is normalised: W is scale-free (as ``a²``).  The analysis
treats the second application's bias as pinned to the first's output and finds neither."""

import torch
from torch import nn

from tests.support import oracle
import wdaudit


class SharedTwiceThenNorm(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.bn = nn.BatchNorm1d(d, affine=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        return self.head(self.bn(self.fc(self.fc(x))))


class AppliedOnce(SharedTwiceThenNorm):
    def forward(self, x):
        return self.head(self.bn(self.fc(x)))


def example(cls=SharedTwiceThenNorm):
    torch.manual_seed(0)
    return cls(), torch.randn(8, 4)


def test_oracle_finds_the_shared_layer_ineffective():
    truth = oracle.check(*example())
    for name in ("fc.weight", "fc.bias"):
        assert truth.witness[name].get(name, 0.0) > 0.5


def test_applied_once_it_is_found():
    assert {"fc.weight", "fc.bias"} <= wdaudit.audit(*example(AppliedOnce)).ineffective


def test_layer_applied_twice_before_a_norm():  # fixed: W·b and b are one additive term
    assert {"fc.weight", "fc.bias"} <= wdaudit.audit(*example()).ineffective
