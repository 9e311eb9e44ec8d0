"""Found by the property test: ``BN(W3 W2 (W0 x + 1))``.  The constant offset becomes the
per-channel constant ``W3 W2 1``, which BatchNorm's mean subtraction removes, so scaling W0
changes nothing; the analysis pins W0 at the ``+ 1`` ("adds the constant 1")."""

from tests.support.differential import differential
import torch
from torch import nn

from tests.support import oracle
import wdaudit


class OffsetThenNorm(nn.Module):
    def __init__(self, d=3):
        super().__init__()
        self.inp = nn.Linear(d, d, bias=False)
        self.mid = nn.Linear(d, d, bias=False)
        self.bn = nn.BatchNorm1d(d, affine=False)
        self.head = nn.Linear(d, d, bias=False)

    def forward(self, x):
        return self.head(self.bn(self.mid(self.inp(x) + 1.0)))


def example():
    torch.manual_seed(0)
    return OffsetThenNorm(), torch.randn(8, 3)


def test_oracle_finds_the_input_layer_scale_free():
    model, x = example()
    truth = oracle.check(model, x)
    assert "inp.weight" in truth.ineffective
    assert truth.witness["inp.weight"].get("inp.weight", 0.0) > 0.5


def test_offset_removed_by_norm_does_not_pin_scale():  # fixed: dead summands are analysed at 0
    model, x = example()
    assert "inp.weight" in wdaudit.audit(model, x).ineffective


class DataResidualThenNorm(nn.Module):
    """The input itself varies along the batch: BatchNorm does not remove it, so it still pins
    the scale of the branch it is added to."""

    def __init__(self, d=3):
        super().__init__()
        self.inp = nn.Linear(d, d, bias=False)
        self.bn = nn.BatchNorm1d(d, affine=False)

    def forward(self, x):
        return self.bn(self.inp(x) + x)


def test_a_data_summand_is_not_mistaken_for_a_constant():
    torch.manual_seed(0)
    report, _ = differential(DataResidualThenNorm(), torch.randn(8, 3))
    assert "inp.weight" in report.effective
