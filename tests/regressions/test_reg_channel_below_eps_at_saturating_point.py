"""Found by the breadth sweep (issue 8): timm ``fastvit_t8`` — scale-free claims on the
MobileOne/RepMixer branches (``token_mixer.mixer.conv_kxk.0.conv.weight``,
``conv_scale.conv.weight``) failed confirmation with Euler residuals up to 1e-1.

Cause: not the static analysis, the check point.  Each claim is exact: a conv weight right
before a BatchNorm on batch statistics, ``BN(a·W x) = BN(W x)`` for every channel of non-zero
variance.  At confirmation's *saturating* point (norm gains and biases spread x3) the stem's
three summed BatchNorm branches drive a few GELU channels deep into saturation; one reaches the
mixer with variance ~1e-17 (times w² for the depthwise 1x1 scale branch), below even the tiny
eps (1e-16, then 1e-20) the Euler check uses for eps -> 0.  There ``BN`` is ~linear in its
input and the identity measures the epsilon, not the claim.  With eps ~0 (1e-300) the same
rescaling leaves the output unchanged to round-off (tested below).

Fixed in confirmation (``engine/confirmation/confirm.py``, ``EPS_TIERS``): an Euler residual above
tolerance is re-measured at finer eps, down to 1e-24.  Here it fades in proportion to eps
(4e-4, 2e-5, 2e-9 at 1e-16, 1e-20, 1e-24), as an eps effect does; a violated claim's residual
does not fade at all."""

import torch
from torch import nn
from torch.func import functional_call

import wdaudit
from wdaudit.engine.confirmation import generic_point as generic

CLAIMED = "stages.0.blocks.0.token_mixer.mixer.conv_kxk.0.conv.weight"


class FastVitStem(nn.Module):
    """fastvit_t8's stem and first stage, under the same parameter names (the check point is
    seeded per name)."""

    def __init__(self):
        super().__init__()
        import timm

        torch.manual_seed(0)
        full = timm.create_model("fastvit_t8", pretrained=False, num_classes=10)
        self.stem, self.stages = full.stem, full.stages[:1]

    def forward(self, x):
        return self.stages(self.stem(x)).mean((2, 3))


def example():
    torch.manual_seed(0)
    return FastVitStem(), torch.randn(2, 3, 64, 64)


def test_the_claim_is_exact_at_the_saturating_point_with_eps_zero():
    model, x = example()
    model = model.double().train()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps = 1e-300  # torch refuses 0 in training; far below every variance here
    point = generic.saturate(generic.draw(dict(model.named_parameters()),
                                          device=torch.device("cpu"), dtype=torch.float64,
                                          seed=0), spread=3.0)
    with torch.no_grad():
        y0 = functional_call(model, dict(point), (x.double(),))
        scaled = {**point, CLAIMED: point[CLAIMED] * 2.0}
        y1 = functional_call(model, scaled, (x.double(),))
    assert float((y1 - y0).norm() / y0.norm()) < 1e-10


def test_confirmation_accepts_every_claim():  # fixed: a finer eps tier (EPS_TIERS)
    model, x = example()
    report = wdaudit.audit(model, x)
    assert report.parameters[CLAIMED].verdict == "ineffective"
    assert all(g.confirmed for g in report.groups)
