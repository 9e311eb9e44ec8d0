"""Found by the breadth sweep (issue 8): timm ``mobileone_s4`` — scale-free claims on conv
branches right before their own BatchNorm (``stages.2.14.conv_scale.conv.weight``,
``stages.2.16.conv_scale.conv.weight``, ``stages.2.14.conv_kxk.0.conv.weight``) failed
confirmation with Euler residuals 3.5e-3, 4.6e-3 and 2e-5, the finite checks passing.

Cause: not the static analysis, the eps tiers.  Deep in its third stage, at the saturating
point, channels reach a BatchNorm with variance near 1e-30; the Euler check's finest eps was
1e-24, so there BatchNorm is nearly linear in its input and the identity measured eps.  The
residuals went 3e-2, 1e-2, 4e-3 at eps 1e-16, 1e-20, 1e-24 (still in eps's regime, not yet
fading in proportion), and the doubling of the weight changed the output by 1e-8, then 6e-15
at eps 1e-32, 1e-40: an eps effect, which fades as eps -> 0; a violation does not.

Fixed in confirmation (``engine/confirmation/euler.py``, ``EPS_TIERS``): the tiers go on to eps
1e-32 and 1e-40.  A steep gate reproduces it in a few lines below."""

import torch
from torch import nn

import wdaudit
from wdaudit.engine.confirmation import euler as confirm_euler
from tests.support.differential import differential


class Fading(nn.Module):
    """A depthwise conv into BatchNorm behind a gate of steepness ``k`` (the gate also reaches
    the head directly, so it has an effect).  Whatever ``k``, the conv's weight has none on the
    output; at k = 16 some gates at the saturating point are near sigmoid(-80) and their
    channels' variance near 1e-30, far below eps 1e-24."""

    def __init__(self, k: float):
        super().__init__()
        self.k = k
        self.gate = nn.Parameter(torch.zeros(16))
        self.conv = nn.Conv1d(16, 16, 3, groups=16, bias=False)
        self.bn = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, 2)

    def forward(self, x):
        h = x * torch.sigmoid(self.k * self.gate)[:, None]
        return self.head(self.bn(self.conv(h)).mean(-1) + h.mean(-1))


def test_a_channel_far_below_eps_at_the_saturating_point_is_an_eps_effect_that_fades(
        monkeypatch):
    tiers = []
    real = confirm_euler.SaturatingPoint._euler

    def spy(self, claims, eps_value):
        tiers.append(eps_value)
        return real(self, claims, eps_value)

    monkeypatch.setattr(confirm_euler.SaturatingPoint, "_euler", spy)
    torch.manual_seed(0)
    x = torch.randn(8, 16, 6)
    steep = wdaudit.audit(Fading(16.0).train(), x)
    assert min(tiers) < 1e-24  # the case this model is for: the coarser tiers did not settle it
    # the truth does not depend on k; the oracle, whose eps is 0, measures it where the
    # channels' variance leaves its derivatives their precision
    torch.manual_seed(0)
    mild, _ = differential(Fading(4.0).train(), x)
    assert steep.ineffective == mild.ineffective == {"conv.weight"}
