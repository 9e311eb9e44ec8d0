"""Found by the breadth sweep (issue 8): transformers ``fsmt`` — every claim "cannot confirm:
the model raised RuntimeError at the check point: value cannot be converted to type float
without overflow".

Cause: fsmt builds its causal mask as ``t.float().fill_(torch.finfo(t.dtype).min)`` with ``t``
made at the default dtype.  Confirmation runs at float64, so ``t`` is float64 and its ``min``
does not fit the float32 tensor ``t.float()``: the model itself cannot run in float64.  The
error did not name a dtype, so it was not taken for a precision problem and nothing was
checked.

Fixed in ``engine/confirmation/runs.py``: that overflow counts as a missing float64 kernel, and the
checks run in float32 with float32 tolerances, as for any model that has no float64 path.
"""

import torch
from torch import nn

import wdaudit


class FillsFloat32Mask(nn.Module):
    def __init__(self, d=6):
        super().__init__()
        self.fc, self.norm, self.head = nn.Linear(d, d), nn.LayerNorm(d), nn.Linear(d, 3)

    def forward(self, x):
        t = torch.zeros(x.shape[-2], x.shape[-2])  # the default dtype: float64 when checked
        mask = t.float().fill_(torch.finfo(t.dtype).min).triu(1).type_as(x)
        mixed = torch.softmax(mask, dim=-1) @ self.fc(x)
        return self.head(self.norm(mixed))


def test_claims_confirmed_in_float32():
    torch.manual_seed(0)
    model, x = FillsFloat32Mask(), torch.randn(2, 5, 6)
    report = wdaudit.audit(model, x)
    assert report.confirmation.precision == "float32"
    assert {"fc.weight", "fc.bias"} <= report.ineffective
    assert not report.unknown
    assert "head.weight" in report.effective
    # the oracle runs in float64, which this model cannot: the claim checked by hand instead
    before = model(x)
    with torch.no_grad():
        model.fc.weight.mul_(3.0)
        model.fc.bias.mul_(3.0)
    assert torch.allclose(model(x), before, rtol=1e-4, atol=1e-5)
