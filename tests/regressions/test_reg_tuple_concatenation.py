"""Found by the breadth sweep (issue 8): transformers ``longformer`` — the claims that each
layer's ``LayerNorm`` (weight and bias) is scale-free were refuted by confirmation (output
change 0.2-1.0 with eps -> 0); under ``--no-confirm`` they would have been reported.

Cause: a layer returns ``(layer_output,) + attention_outputs[1:]``, and the trace records that
as ``operator.add`` on two tuples.  The add rule read its operands as tensors; a tuple is no
tensor, so both were dropped, and the layer output's degree vanished from everything
downstream.  A tuple slice (``outputs[1:]``) was likewise read as a constant.

Fixed in the degree analysis (``ops/degree.py``: ``Seq``, ``element``, ``concatenated``; the
add rule; ``Call.deg``; ``degrees.getitem``): ``+`` on sequences concatenates them, slices of
tuples are tuples, a sequence an opaque op returned is followed by its known prefix, and a
sequence anywhere a rule expects a tensor, or an element that cannot be placed, pins what it
holds instead of dropping it.
"""

import pytest
import torch
from torch import nn

import wdaudit
from tests.support import oracle
from wdaudit.ops.degree import CONST, Deg, Form, Multi, Seq, concatenated, element


class Attention(nn.Module):
    def __init__(self, dim: int, branchy: bool):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.branchy = branchy

    def forward(self, x):
        if self.branchy and bool(x.sum() > 1e9):  # data-dependent: no tracer follows it
            x = x * 2
        probs = torch.softmax(self.q(x) @ x.transpose(-1, -2), dim=-1)
        return probs @ x, probs


class Layer(nn.Module):
    """A post-norm layer that returns its output with the attention's extras, as HF's do."""

    def __init__(self, dim: int, branchy: bool):
        super().__init__()
        self.attention = Attention(dim, branchy)
        self.dense = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        outputs = self.attention(x)
        h = self.norm(self.dense(outputs[0]) + x)
        return (h,) + outputs[1:]


class Stack(nn.Module):
    def __init__(self, dim: int = 6, branchy: bool = False):
        super().__init__()
        self.layers = nn.ModuleList([Layer(dim, branchy), Layer(dim, branchy)])
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        for layer in self.layers:
            out = layer(x)
            x = out[0]
        return self.head(x), out[-1]


def test_sequences_concatenate_and_slice_element_by_element():
    x, y, z = (Deg(Form.var(i)) for i in range(3))
    # a sequence an unknown op returned is one constant degree, and so is any slice of it
    joined = concatenated((x,), CONST)
    assert element(joined, 0) == x and element(joined, 5) == CONST
    assert element(concatenated((x,), (y, z)), 2) == z
    assert element(element(Multi(x, y), slice(1, None)), 0) == y
    assert element(element(Seq((x, y), z), slice(1, None)), 0) == y
    # what cannot be placed is None, and the engine pins the container
    assert element(Seq((x,), z), -1) is None and concatenated(Seq((x,), z), (y,)) is None
    assert element(Multi(x, y), slice(0, 1)) is None


@pytest.mark.parametrize("confirm", [True, False])
def test_behind_an_opaque_attention_nothing_is_claimed_that_the_oracle_refutes(confirm):
    torch.manual_seed(0)
    model, x = Stack(branchy=True), torch.randn(2, 4, 6)
    report = wdaudit.audit(model, x, strict=False, confirm=confirm)
    truth = oracle.check(model, x)
    assert report.ineffective <= truth.ineffective
    assert not report.confirmation.defects
