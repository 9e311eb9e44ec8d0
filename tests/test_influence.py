"""Direct tests of engine/analysis/influence.py, the stage that finds parameters with no effect on the
output (biases before a normalisation or a softmax, unused tensors) and the node that absorbs
each one. Expectations are derived from the model itself: the parameters claimed to have no
effect must be exactly those whose redraw leaves the float64 model's output unchanged, and a
ReLU between a bias and its normalisation must keep the bias effective."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support.probes import (ConvBN, analysed, module_node, node_where,
                                  numerically_no_effect, redraw_change)
from wdaudit.ops.offsets import Absorption


class ReluBeforeBN(ConvBN):
    def forward(self, x):  # the ReLU sits between the bias and the mean subtraction
        return self.head(self.bn(F.relu(self.conv(x))).mean((2, 3)))


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x):
        scores = self.q(x) @ self.k(x).transpose(-2, -1) / 2.0
        return torch.softmax(scores, dim=-1) @ self.v(x)


class BiasThroughLinearToNorm(nn.Module):
    """Both Linears act along features; the LayerNorm normalises over the *token* axis, along
    which their biases (and W_b·b_a) are constant."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)
        self.ln = nn.LayerNorm(3)
        self.head = nn.Linear(3, 2)

    def forward(self, x):  # x: (batch, 3 tokens, 4 features)
        return self.head(self.ln(self.b(self.a(x)).transpose(1, 2)))


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)
        self.spare = nn.Parameter(torch.randn(3))

    def forward(self, x):
        return self.fc(x)


def _is_softmax(node, module) -> bool:
    return node.target in (torch.softmax, F.softmax, "softmax")


INFLUENCE_CASES = {
    # model, input, the parameters the brief is about, where each is removed (None: unused)
    "conv bias before BatchNorm": (ConvBN, (3, 2, 4, 4), {"conv.bias": nn.BatchNorm2d}),
    "key bias of softmax attention": (Attention, (2, 3, 4), {"k.bias": _is_softmax}),
    "bias through a Linear into LayerNorm": (BiasThroughLinearToNorm, (2, 3, 4),
                                             {"a.bias": nn.LayerNorm, "b.bias": nn.LayerNorm}),
    "never used": (Unused, (3, 4), {"spare": None}),
}


@pytest.mark.parametrize("case", list(INFLUENCE_CASES))
def test_no_effect_parameters_and_where_they_are_absorbed(case):
    cls, shape, expected = INFLUENCE_CASES[case]
    torch.manual_seed(0)
    model, x = cls(), torch.randn(*shape)
    g, found = analysed(model, x)
    assert set(expected) <= found.no_effect
    # derived from the model itself: exactly the parameters whose redraw changes nothing
    assert found.no_effect == numerically_no_effect(model, x)
    for name, remover in expected.items():
        if remover is None:
            assert name not in g.used_params and name not in found.absorbed_at
        elif isinstance(remover, type):  # a normalisation layer: it removes what it normalises
            assert found.absorbed_at[name] == Absorption(module_node(g, remover), "normalisation")
        else:
            assert found.absorbed_at[name] == Absorption(node_where(g, remover), "softmax")
    assert set(found.absorbed_at) <= found.no_effect
    assert not found.failures


def test_a_relu_between_bias_and_norm_keeps_the_bias_effective():
    torch.manual_seed(0)
    model, x = ReluBeforeBN(), torch.randn(3, 2, 4, 4)
    _, found = analysed(model, x)
    assert "conv.bias" not in found.no_effect and "conv.bias" not in found.absorbed_at
    assert redraw_change(model, x, "conv.bias") > 1e-3
    assert found.no_effect == numerically_no_effect(model, x) == frozenset()
    # the same layers without the ReLU in between: the bias is removed (the contrast matters)
    _, plain = analysed(ConvBN(), x)
    assert "conv.bias" in plain.no_effect
