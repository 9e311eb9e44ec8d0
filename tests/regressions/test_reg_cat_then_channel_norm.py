"""Found by the property test: ``BN(cat([W x, x]))``.

BatchNorm normalises each channel on its own, so the concatenated parts need not scale alike:
scaling W leaves the output unchanged.  The analysis requires concatenated tensors to scale
alike and pins W."""

import torch
from torch import nn

from tests.support import oracle
import wdaudit
from tests.support.differential import differential


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


def test_parts_of_a_concatenation_scale_independently_before_a_channel_norm():  # fixed
    model, x = example()
    assert "fc.weight" in wdaudit.audit(model, x).ineffective


class CatThenLayerNorm(CatThenBatchNorm):
    """A LayerNorm mixes the concatenated features: there the parts must scale alike."""

    def __init__(self):
        super().__init__()
        self.bn = nn.LayerNorm(7)


def test_a_norm_across_the_parts_still_equates_them():
    torch.manual_seed(0)
    report, _ = differential(CatThenLayerNorm(), torch.randn(8, 3))
    assert "fc.weight" in report.effective


class CatThenIndex(CatThenBatchNorm):
    """Indexing the concatenation is not a per-channel norm either."""

    def forward(self, x):
        return torch.cat([self.fc(x), x], dim=-1)[:, 2:5]


def test_indexing_a_concatenation_equates_the_parts():
    torch.manual_seed(0)
    report, _ = differential(CatThenIndex(), torch.randn(8, 3))
    assert "fc.weight" in report.effective
