"""Found by the hidden differential corpus (issue 8): the key bias of a hand-written multi-head
attention, ``softmax(q @ k.transpose(-2, -1) / sqrt(k.size(-1)))``, was missed though the SDPA
form was found.

``q · b_k`` is constant along each softmax row, so the key bias has no effect.  Two things
hid it: ``k.size(-1)`` was taken to depend on k's values (shape queries mixed every term),
so the scale ``1 / sqrt(k.size(-1))`` looked like a tensor made of k.bias and the product
dropped the term; and the einsum spelling of ``q kᵀ`` mixed every term."""

import math

import pytest
import torch
from torch import nn

from tests.support.differential import differential


class HandWrittenAttention(nn.Module):
    def __init__(self, d=8, heads=2, spelling="matmul"):
        super().__init__()
        self.heads, self.spelling = heads, spelling
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.head_bias = nn.Parameter(torch.randn(heads, 1, d // heads))  # per-head key bias
        self.out = nn.Linear(d, 3)

    def forward(self, x):
        b, t, d = x.shape

        def split(y):
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q(x)), split(self.k(x)) + self.head_bias, split(self.v(x))
        if self.spelling == "einsum":
            logits = torch.einsum("bhqd,bhkd->bhqk", q, k) * k.size(-1) ** -0.5
        else:
            logits = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        y = (logits.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        return self.out(y)


@pytest.mark.parametrize("spelling", ["matmul", "einsum"])
def test_key_biases_of_hand_written_attention_have_no_effect(spelling):
    torch.manual_seed(0)
    model, x = HandWrittenAttention(spelling=spelling), torch.randn(2, 5, 8)
    report, truth = differential(model, x)
    assert {"k.bias", "head_bias"} <= truth.ineffective  # the oracle's own finding
    assert report.parameters["k.bias"].verdict == "ineffective"
