"""Outputs that are ±inf by construction (a detector's logits at padded text positions, set to
-inf by a mask) are part of the model's function: confirmation compares the finite entries of
runs that put the same infinities at the same entries, and refuses everything else non-finite.
Grounding DINO's claims were all "cannot confirm" before.  A NaN gradient at the saturating
point leaves the Euler check unmeasured, and a norm past float64's range is measured: neither
passes by default, as both once did (a NaN compared as neither large nor small)."""

import torch
from torch import nn

import wdaudit
from wdaudit.engine.confirmation import runs as runs
from wdaudit.engine.analysis.claims import Claim
from tests.support.differential import differential
from tests.test_confirm import check


class MaskedLogits(nn.Module):
    """Scores over 6 text positions, the last two padding: -inf there whatever the weights."""

    def __init__(self):
        super().__init__()
        self.fc, self.ln, self.head = nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 6)
        self.register_buffer("padded", torch.tensor([False] * 4 + [True] * 2))

    def forward(self, x):
        return self.head(self.ln(self.fc(x))).masked_fill(self.padded, float("-inf"))


def test_a_masks_infinities_are_compared_around_and_claims_confirmed():
    torch.manual_seed(0)
    model, x = MaskedLogits(), torch.randn(5, 6)
    report, truth = differential(model, x)
    assert report.confirmation.performed and report.confirmation.precision == "float64"
    assert {"fc.weight", "fc.bias"} <= report.ineffective
    assert "head.weight" in report.effective


class InfWhereGated(nn.Module):
    """The same scores, +inf where ``a · x`` passes 1: which entries are infinite follows the
    weight ``a``, so scaling ``a`` moves infinities without moving any finite entry."""

    def __init__(self):
        super().__init__()
        self.fc, self.ln, self.head = nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 6)
        self.a = nn.Parameter(torch.ones(6))

    def forward(self, x):
        return self.head(self.ln(self.fc(x))).masked_fill(self.a * x > 1.0, float("inf"))


def test_infinities_that_move_are_a_change_never_compared_around():
    torch.manual_seed(0)
    model, x = InfWhereGated(), torch.randn(8, 6)
    result = check(model, x, [Claim({"a": 1.0})])  # false: it moves the infinities only
    assert not result.checks[0].confirmed
    report = wdaudit.audit(model, x)
    assert "a" not in report.ineffective
    # their pattern differs at the saturating point: no claim is confirmed across it
    assert not report.ineffective and {"fc.weight", "fc.bias"} <= report.unknown
    assert "NaN or Inf" in report.parameters["fc.weight"].reason


def test_relative_change_over_the_same_infinities():
    inf = float("inf")
    base = torch.tensor([1.0, 2.0, -inf, inf])
    assert runs.relative([torch.tensor([1.0, 2.0, -inf, inf])], [base]) == 0.0
    moved = runs.relative([torch.tensor([1.0, 2.2, -inf, inf])], [base])
    assert abs(moved - 0.2 / 5**0.5) < 1e-6  # the finite entries' change
    for other in ([1.0, -inf, -inf, inf], [1.0, 2.0, inf, inf], [1.0, 2.0, -inf, 3.0],
                  [1.0, 2.0, float("nan"), inf]):
        assert runs.relative([torch.tensor(other)], [base]) == inf
    nan = torch.tensor([1.0, float("nan")])
    assert runs.relative([nan], [nan]) == inf  # NaN is never the same as itself


class NanGradient(nn.Module):
    """Finite output, NaN gradient: ``sqrt(0 · y)`` is 0, its derivative ``inf · 0``."""

    def __init__(self):
        super().__init__()
        self.fc, self.ln, self.head = nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 2)

    def forward(self, x):
        y = self.ln(self.fc(x))
        return self.head(y) + torch.sqrt(y * 0.0).sum(-1, keepdim=True)


def test_a_nan_gradient_leaves_the_euler_check_unmeasured_not_passed():
    torch.manual_seed(0)
    model, x = NanGradient(), torch.randn(5, 6)
    report = wdaudit.audit(model, x)
    assert {"fc.weight", "fc.bias"} <= report.unknown and not report.ineffective
    assert "gradient is NaN or Inf" in report.parameters["fc.weight"].reason
    assert not report.confirmation.defects  # a gap, not a refuted claim


def test_huge_finite_outputs_are_measured_not_overflowed():
    # entries near 1e200 square past float64: their norms were inf, and inf / inf a NaN that
    # compared as no change at all
    big = torch.full((4,), 1e200, dtype=torch.float64)
    assert abs(runs.relative([1.5 * big], [big]) - 0.5) < 1e-12
    assert runs.norm(big) == 2e200
