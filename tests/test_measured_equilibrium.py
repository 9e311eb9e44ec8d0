"""Any optimizer, measured (issue 25): the measurement runs the optimizer's own class on a
synthetic scale-free group; it must agree with the closed forms where they exist, and, for a
class nobody has a formula for, with a full simulation of that class run to equilibrium."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import wdaudit
from tests.support.spheres import train
from wdaudit.advice import measured, muon
from wdaudit.advice.equilibrium import predict
from wdaudit.advice.settings import from_class

SHAPE = (32, 64)  # 2048 coordinates: the long-run variance is read to ~1 % per replica


class SignumW(torch.optim.Optimizer):
    """A user's own optimizer: sign of a momentum, decoupled decay (no closed form in wdaudit)."""

    def __init__(self, params, lr=1e-3, weight_decay=0.0, beta=0.9):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, beta=beta))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                m.mul_(group["beta"]).add_(p.grad, alpha=1 - group["beta"])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                p.add_(torch.sign(m), alpha=-group["lr"])


CLOSED = [  # (class, kwargs, weight decay): closed forms the measurement must reproduce
    (torch.optim.AdamW, dict(lr=1e-2, betas=(0.9, 0.99)), 0.5),
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9), 5e-3),
    (torch.optim.Muon, dict(lr=0.02), 0.1),
]


@pytest.mark.parametrize("cls, kwargs, wd", CLOSED, ids=[c.__name__ for c, _, _ in CLOSED])
def test_the_measurement_reproduces_the_closed_forms(cls, kwargs, wd):
    settings = from_class(cls, kwargs, wd)
    closed = predict(settings, math.prod(SHAPE), 1.0, shapes=(SHAPE,))
    with muon.one_thread():
        found = measured.equilibrium(settings, (SHAPE,), 1.0)
    assert found.model == "simulated" and found.spread is not None
    assert found.angular_update == pytest.approx(closed.angular_update, rel=0.05)
    if closed.equilibrium_norm is not None:
        assert found.equilibrium_norm == pytest.approx(closed.equilibrium_norm, rel=0.05)


def test_a_users_optimizer_measured_matches_its_own_simulation():
    """SignumW is measured (annotate's path: no closed form), then simulated for real from the
    measured norm for three timescales and a fourth measured: rotation and norm within 5 %."""
    kwargs, wd = dict(lr=2e-3, beta=0.9), 0.5
    settings = from_class(SignumW, kwargs, wd)
    assert predict(settings, math.prod(SHAPE), 1.0).angular_update is None
    eq = measured.equilibrium(settings, (SHAPE,), 1.0)
    assert eq.model == "simulated" and eq.equilibrium_norm is not None
    assert eq.spread < 0.05 * eq.angular_update
    settle = int(3 * eq.timescale_steps)
    run = train(lambda ps: SignumW(ps, weight_decay=wd, **kwargs), SHAPE, settle + 200,
                eq.equilibrium_norm, replicas=2, measure_from=settle)
    assert run.angle[settle:].mean() == pytest.approx(eq.angular_update, rel=0.05)
    assert math.sqrt(run.x[settle:].mean()) == pytest.approx(eq.equilibrium_norm, rel=0.05)


def test_the_cost_is_bounded_and_the_shape_reduced():
    big = ((4096, 4096), (4096,))
    small, reduced = measured.reduction(big)
    assert reduced and sum(math.prod(s) for s in small) <= measured.MAX_COORDINATES
    assert small[0][0] == small[0][1]  # aspect ratio kept
    found = measured.measure(from_class(SignumW, dict(lr=1e-3), 0.1), big)
    assert found.reduced and found.steps <= measured.MAX_STEPS


def test_what_cannot_be_measured_says_why():
    # coupled L2 in Adam: the equilibrium depends on the real gradients' size
    assert not measured.measurable(from_class(torch.optim.Adam, dict(lr=1e-3), 0.1))
    # an optimizer that never decays: nothing balances the growth
    eq = measured.equilibrium(from_class(SignumW, dict(lr=1e-3), 0.0), ((16,),), 1.0)
    assert eq.model == "none" and "does not shrink" in eq.note


def test_audit_reports_a_measured_group():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32, elementwise_affine=False),
                          nn.Linear(32, 4))
    opt = SignumW(model.parameters(), lr=1e-3, weight_decay=0.1)
    report = wdaudit.audit(model, torch.randn(4, 8), optimizer=opt)
    eqs = [g.equilibrium for g in report.groups if g.equilibrium is not None]
    assert eqs and all(e.model == "simulated" for e in eqs)
    doc = [g["equilibrium"] for g in report.to_dict()["groups"] if g["equilibrium"]]
    assert all(d["model"] == "simulated" and d["spread"] is not None for d in doc)
