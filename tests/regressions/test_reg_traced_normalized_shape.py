"""Found re-reading issue 10's nanoGPT recipe: nanoGPT's LayerNorm calls
``F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)``, and hand-written code
often passes ``x.shape[-1:]``.  Traced, ``normalized_shape`` is a node, not a tuple; the
influence rule took its ``len()`` and failed ("'Node' object is not iterable"), so in the
default mode the whole norm became an unknown op and every group through it was missed.
(nanoGPT's own GPT is traced by export, where the shape is a literal, and was unaffected;
a model that symbolic_trace follows was not.)"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support import oracle
import wdaudit

EPS = 1e-12  # the oracle cannot shrink a functional call's eps: keep it out of its way


class WeightShape(nn.Module):
    """nanoGPT's spelling: the normalised shape is the weight's."""

    def __init__(self, d=4):
        super().__init__()
        self.inp = nn.Linear(d, d)
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))
        self.head = nn.Linear(d, 2)

    def forward(self, x):
        return self.head(F.layer_norm(self.inp(x), self.weight.shape, self.weight, self.bias,
                                      EPS))


class InputShape(WeightShape):
    """No affine: the normalised shape is read off the input."""

    def forward(self, x):
        h = self.inp(x)
        return self.head(F.layer_norm(h, h.shape[-1:], eps=EPS))


@pytest.mark.parametrize("cls", [WeightShape, InputShape])
def test_a_traced_normalized_shape_is_read(cls):
    torch.manual_seed(0)
    model, x = cls(), torch.randn(6, 4)
    report = wdaudit.audit(model, x, strict=True)  # raised AnalysisError before the fix
    assert not report.coverage.unknown_ops
    truth = oracle.check(model, x)
    assert {"inp.weight", "inp.bias"} <= report.ineffective
    assert report.ineffective == truth.ineffective
