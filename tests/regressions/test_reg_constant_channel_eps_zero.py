"""Found by the breadth sweep (issue 8): timm ``swiftformer_l3`` and ``swiftformer_xs`` — the
no-effect claim on ``stages.0.blocks.0.dwconv.bias`` (a depthwise conv's bias before a
BatchNorm on batch statistics) failed confirmation: "output changed by 2.95e-04 (relative) with
eps -> 0", Euler residual 2.8e7.  Bisecting down to that one claim was most of swiftformer_l3's
four minutes.

Cause: not the static analysis, round-off in the eps -> 0 check.  At confirmation's generic
point one channel of the stem's last ReLU is dead for the whole batch, so that channel of the
depthwise conv is its bias alone: constant.  The BatchNorm then computes
``(x - mean) / sqrt(var + eps)`` with ``x - mean`` and ``var`` both pure round-off, and with eps
-> 0 (1e-16) that is 0/0: the round-off is divided by ~1e-8 and comes out at order one.  A
finer eps makes it worse (it grows like 1/sqrt(eps)), so the "finer eps" look could not clear
it.  The claim is exact: a per-channel offset before a mean subtraction has no effect at any
eps, the model's own included.

Fixed in confirmation (``engine/confirmation/confirm.py``, ``_Context._redrawn``): a no-effect claim that
fails with eps -> 0 is measured again with the model's own eps, where the same round-off is
~1e-14; the check and its tolerance are unchanged, and the group's note says which eps was used.

Since the MobileOne fix (``engine/tracing/shifted_norms.py``) library norms compute on shifted data
and see exact zeros in such a channel, so the model's eps is now the second line, for norms
written out op by op.

Below, the same mechanism in a few lines: an input channel that is exactly zero.
"""

import contextlib

import torch
from torch import nn

import wdaudit
from tests.support import oracle
from tests.support.probes import confirm_made
from wdaudit.engine.confirmation import confirm
from wdaudit.engine.tracing import program
from wdaudit.engine.analysis.claims import Claim

CLAIMED = "dw.bias"


class ConstantChannel(nn.Module):
    def __init__(self, channels: int = 8):
        super().__init__()
        self.dw = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)
        self.bn = nn.BatchNorm2d(channels)
        self.head = nn.Linear(channels * 16, 3)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.dw(x))).flatten(1))


def example():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4)
    x[:, 3] = 0.0  # a channel dead across the batch, as after a ReLU
    return ConstantChannel(), x


def test_the_oracle_agrees_the_bias_has_no_effect():
    model, x = example()
    assert CLAIMED in oracle.check(model, x).ineffective


def test_library_norms_see_exact_zeros_there_now():  # since the MobileOne fix
    model, x = example()
    report = wdaudit.audit(model, x, seed=0)
    assert report.parameters[CLAIMED].verdict == "ineffective"
    group = next(g for g in report.groups if CLAIMED in g.names)
    assert group.note == "" and group.exact_relative_change <= confirm.TOL_EXACT


def test_confirmation_accepts_it_at_the_model_eps(monkeypatch):  # fixed: _Context._redrawn
    # a norm written out op by op still computes ``x - mean`` in round-off at eps -> 0: played
    # here by the library norm with its shifted data switched off
    monkeypatch.setattr(program, "ShiftedNorms", contextlib.nullcontext)
    model, x = example()
    report = wdaudit.audit(model, x, seed=0)
    assert report.parameters[CLAIMED].verdict == "ineffective"
    assert not report.confirmation.defects
    group = next(g for g in report.groups if CLAIMED in g.names)
    assert group.note == confirm.AT_MODEL_EPS


def test_the_model_eps_does_not_clear_a_false_no_effect_claim():
    # the BatchNorm's own bias is added after the mean subtraction: it has an effect at any
    # eps.  Claimed anyway, it fails with eps -> 0, is re-measured at the model's eps, and fails
    model, x = example()
    assert "bn.bias" not in oracle.check(model, x).ineffective
    result = confirm_made(model, x, [Claim({}, ("bn.bias",), "no-effect")])
    check = result.checks[0]
    assert not check.confirmed and result.defects
    assert check.exact_relative_change > confirm.TOL_EXACT and check.note != confirm.AT_MODEL_EPS
