"""Muon's equilibrium against torch's own Muon (issue 25): one scale-invariant matrix per replica
(gradient orthogonal to W, ∝ 1/‖W‖: tests/support/spheres.py), trained by ``torch.optim.Muon``
from the predicted norm for three timescales (a wrong prediction would have relaxed away by then)
and measured over a fourth: rotation and norm within 5 % of the prediction."""

from __future__ import annotations

import math

import pytest
import torch

from tests.support.spheres import train
from wdaudit.advice import muon
from wdaudit.advice.equilibrium import predict
from wdaudit.advice.settings import from_class

LR, WD = 0.02, 0.1

CASES = [  # (shape, Muon keyword arguments, tier): the fast tier keeps one square and one
    # rectangular case, the slow tier (CI runs both) the non-default settings
    ((64, 64), {}, ()),  # defaults: momentum 0.95, Nesterov
    ((128, 32), {}, ()),  # rectangular
    ((64, 64), dict(momentum=0.9, nesterov=False), (pytest.mark.slow,)),
    ((32, 128), dict(adjust_lr_fn="match_rms_adamw"), (pytest.mark.slow,)),
]


def _predicted(shape, kwargs):
    settings = from_class(torch.optim.Muon, dict(lr=LR, **kwargs), WD)
    return predict(settings, math.prod(shape), 1.0, shapes=(shape,))


@pytest.fixture(autouse=True)
def one_thread():
    with muon.one_thread():  # torch's bfloat16 products crawl on two busy threads
        yield


@pytest.mark.parametrize("shape, kwargs", [
    pytest.param(s, k, marks=m, id=f"{s[0]}x{s[1]}-{k}") for s, k, m in CASES])
def test_muon_matches_torchs_muon(shape, kwargs):
    eq = _predicted(shape, kwargs)
    assert eq.model.startswith("Muon") and eq.timescale_steps == pytest.approx(1 / (2 * LR * WD))
    settle = int(3 * eq.timescale_steps)
    run = train(lambda ps: torch.optim.Muon(ps, lr=LR, weight_decay=WD, **kwargs), shape,
                settle + 250, eq.equilibrium_norm, replicas=2, measure_from=settle)
    assert run.angle[settle:].mean() == pytest.approx(eq.angular_update, rel=0.05)
    assert math.sqrt(run.x[settle:].mean()) == pytest.approx(eq.equilibrium_norm, rel=0.05)


def test_momentum_zero_is_exactly_the_random_walk():
    """No momentum: successive updates are independent, S = 1, the rotation √(2ηλ)."""
    eq = _predicted((64, 64), dict(momentum=0.0))
    assert eq.angular_update == pytest.approx(math.sqrt(2 * LR * WD), rel=1e-9)


def test_rotation_ignores_adjust_lr_fn_the_norm_does_not():
    """torch decays with the unadjusted lr and steps with the adjusted one."""
    plain = _predicted((128, 32), {})
    moonshot = _predicted((128, 32), dict(adjust_lr_fn="match_rms_adamw"))
    assert moonshot.angular_update == pytest.approx(plain.angular_update, rel=1e-9)
    ratio = muon.adjusted_ratio("match_rms_adamw", (128, 32)) / muon.adjusted_ratio(None, (128, 32))
    assert moonshot.equilibrium_norm == pytest.approx(plain.equilibrium_norm * ratio, rel=1e-9)


def test_the_orthogonalisation_is_torchs_own():
    """The batched copy computes what torch's Muon computes, bit for bit."""
    from torch.optim._muon import _zeropower_via_newtonschulz

    d = muon.defaults()
    x = torch.randn(3, 48, 16, generator=torch.Generator().manual_seed(0))
    ours = muon.orthogonalise(x, d["ns_coefficients"], d["ns_steps"], d["eps"])
    for i in range(3):
        theirs = _zeropower_via_newtonschulz(x[i], d["ns_coefficients"], d["ns_steps"], d["eps"])
        assert torch.equal(ours[i], theirs)


def test_a_group_of_matrices_and_a_non_matrix():
    """A joint group of two matrices sums their energies; a member that is not a matrix
    (torch's Muon refuses it) leaves no closed form."""
    settings = from_class(torch.optim.Muon, dict(lr=LR), WD)
    joint = predict(settings, 2 * 64 * 64, 1.0, shapes=((64, 64), (64, 64)))
    one = predict(settings, 64 * 64, 1.0, shapes=((64, 64),))
    assert joint.angular_update == pytest.approx(one.angular_update, rel=1e-9)
    assert joint.equilibrium_norm == pytest.approx(one.equilibrium_norm * math.sqrt(2), rel=1e-9)
    assert predict(settings, 64, 1.0, shapes=((64,),)).angular_update is None
