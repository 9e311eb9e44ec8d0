"""Found merging issue 8's KV-cache finding: transformers' ``DynamicCache`` starts each layer
from an empty tensor and concatenates the new keys and values onto it.  The empty part was
treated like any constant ("concatenated tensors must scale alike"), which pinned LLaMA's
``v_proj`` although the attention reads only the concatenation's real part.  A part with no
elements contributes no value, so how it scales cannot matter."""

import torch
from torch import nn

from tests.support import oracle
import wdaudit


class EmptyThenCat(nn.Module):
    def __init__(self, d=4):
        super().__init__()
        self.inp = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, elementwise_affine=False)
        self.wide = nn.LayerNorm(d + 1, elementwise_affine=False)
        self.head = nn.Linear(d, 2, bias=False)

    def forward(self, x):
        cache = x.new_tensor([]).detach_()  # how DynamicCache starts a layer: no elements
        h = torch.cat([cache, self.inp(x)], dim=-1)
        return self.head(self.norm(h))


class ConstantThenCat(EmptyThenCat):
    """A constant part with elements still pins the scale of the parts beside it."""

    def forward(self, x):
        cache = torch.ones(6, 1)
        h = torch.cat([cache, self.inp(x)], dim=-1)
        return self.head(self.wide(h)[..., 1:])


def test_an_empty_part_does_not_pin_the_scale():
    torch.manual_seed(0)
    model, x = EmptyThenCat(), torch.randn(6, 4)
    truth = oracle.check(model, x)
    report = wdaudit.audit(model, x)
    assert {"inp.weight", "inp.bias"} <= truth.ineffective
    assert {"inp.weight", "inp.bias"} <= report.ineffective


def test_a_constant_part_with_elements_still_does():
    torch.manual_seed(0)
    model, x = ConstantThenCat(), torch.randn(6, 4)
    truth = oracle.check(model, x)
    report = wdaudit.audit(model, x)
    assert "inp.weight" not in truth.ineffective
    assert "inp.weight" not in report.ineffective
