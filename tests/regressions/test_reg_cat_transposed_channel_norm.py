"""Found by the property test: ``Norm1d(cat([W x, x]).transpose(1, 2))`` on channels-last data
(batch, length, channels), as sequence models apply BatchNorm1d or InstanceNorm1d.

Each channel is normalised on its own, so the concatenated parts need not scale alike and W
is scale-free — exactly as in test_reg_cat_then_channel_norm.py, but the transpose between
the concatenation and the norm hides that the norm is per channel, and W is pinned."""

import pytest
import torch
from torch import nn

from tests.support import oracle
import wdaudit

NORMS = {"batch": nn.BatchNorm1d, "instance": lambda c: nn.InstanceNorm1d(c, affine=True)}


class CatTransposedNorm(nn.Module):
    def __init__(self, norm: str):
        super().__init__()
        self.fc = nn.Linear(4, 4, bias=False)
        self.norm = NORMS[norm](8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.cat([self.fc(x), x], dim=-1)
        return self.head(self.norm(h.transpose(1, 2)).transpose(1, 2))


def example(norm: str):
    torch.manual_seed(0)
    return CatTransposedNorm(norm), torch.randn(4, 3, 4)


@pytest.mark.parametrize("norm", list(NORMS))
def test_oracle_finds_the_branch_scale_free(norm):
    truth = oracle.check(*example(norm))
    assert truth.witness["fc.weight"].get("fc.weight", 0.0) > 0.5


@pytest.mark.parametrize("norm", list(NORMS))
def test_parts_scale_independently_before_a_transposed_channel_norm(norm):
    # fixed: transpose/permute carry a Split with its axis moved
    assert "fc.weight" in wdaudit.audit(*example(norm)).ineffective
