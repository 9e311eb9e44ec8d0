"""Regression: ``torch.split(tensor, sizes, dim)`` names its operand ``tensor``.  Bound under that
name, the split rule found no ``input``, marked the operand as read (it lends only shape) and
handed its pieces no degree at all, so whatever followed a split looked unscaled: a Linear whose
output was split between a GELU and a LayerNorm was claimed scale-free.  Confirmation refuted
every such claim (timm vit_base_patch16_xp_224's ParallelScalingBlock: 24 claims, sebotnet's
self-attention qkv: 4), so nothing wrong was reported, but the parameters were left unknown.
The operand is now bound as ``input``, and a rule whose operand is missing fails loudly."""

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from tests.support.differential import differential
from wdaudit.ops.signatures import python_signature


class SplitThenGeluAndNorm(nn.Module):
    def __init__(self, sizes=(6, 4)):
        super().__init__()
        self.sizes = list(sizes)
        self.fc = nn.Linear(8, sum(sizes))
        self.ln = nn.LayerNorm(sizes[1])
        self.head = nn.Linear(sum(sizes), 3)

    def forward(self, x):
        a, b = torch.split(self.fc(x), self.sizes, dim=-1)
        return self.head(torch.cat([F.gelu(a), self.ln(b)], dim=-1))


def test_torch_split_binds_its_operand_as_input():
    assert python_signature(torch.split)[0] == "input"


def test_a_split_between_a_gelu_and_a_norm_pins_the_projection():
    torch.manual_seed(0)
    report, _ = differential(SplitThenGeluAndNorm(), torch.randn(5, 8))
    assert report.parameters["fc.weight"].verdict == "effective"


def test_timm_parallel_scaling_block_matches_the_oracle():
    pytest.importorskip("timm")
    from timm.models.vision_transformer import ParallelScalingBlock

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Linear(8, 16)
            self.blk = ParallelScalingBlock(16, 2, qk_norm=True, qkv_bias=True)
            self.norm = nn.LayerNorm(16)
            self.head = nn.Linear(16, 3)

        def forward(self, x):
            return self.head(self.norm(self.blk(self.emb(x))))

    torch.manual_seed(0)
    report, truth = differential(Model(), torch.randn(2, 5, 8))  # exact agreement
    assert report.parameters["blk.in_proj.weight"].verdict == "effective"  # split to a GELU
