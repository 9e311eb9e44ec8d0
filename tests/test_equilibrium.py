"""The equilibrium numbers against simulation (issue 9): a scale-invariant toy — rows of a weight
matrix, each feeding a normalisation, so each row's gradient is orthogonal to it and ∝ 1/‖row‖ —
trained with noisy gradients by the real torch (and timm) optimizer, started at the predicted
equilibrium norm; the measured mean angle per step must be within 10 % of the prediction."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import wdaudit
from wdaudit.advice.equilibrium import predict
from wdaudit.advice.settings import from_class

ROWS, DIM = 16, 128  # independent scale-invariant vectors, coordinates each


def _lion():
    return pytest.importorskip("timm.optim").Lion


CASES = [  # (optimizer class, kwargs, weight decay)
    (torch.optim.SGD, dict(lr=0.1), 5e-3),
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9), 5e-3),
    (torch.optim.SGD, dict(lr=0.1, momentum=0.5, dampening=0.3), 5e-3),
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True), 5e-3),
    (torch.optim.AdamW, dict(lr=1e-2, betas=(0.9, 0.99)), 0.5),
    (torch.optim.AdamW, dict(lr=1e-2, betas=(0.5, 0.99)), 0.5),
    (torch.optim.Adam, dict(lr=1e-2, betas=(0.8, 0.99), decoupled_weight_decay=True), 0.5),
    ("Lion", dict(lr=1e-3, betas=(0.9, 0.99)), 0.5),  # ηλ·1/(1−β2) ≪ 1: see docs/advice.md
    ("Lion", dict(lr=1e-3, betas=(0.5, 0.9)), 2.0),
]


def _noisy_gradient(w: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """d/dw of ⟨ξ, w/‖w‖⟩ per row: the gradient a normalisation passes back to its input."""
    xi = torch.randn(w.shape, generator=gen, dtype=w.dtype)
    norm = w.norm(dim=1, keepdim=True)
    u = w / norm
    return (xi - (xi * u).sum(1, keepdim=True) * u) / norm


def _start_norm(eq, kwargs, wd) -> float:
    if eq.equilibrium_norm is not None:
        return eq.equilibrium_norm
    # SGD: the theory's norm needs the gradient norm at unit weight norm, G² = DIM − 1 here
    beta, damp = kwargs.get("momentum", 0.0), kwargs.get("dampening", 0.0)
    eta = kwargs["lr"] * (1 - damp)
    return (eta * (DIM - 1) / (2 * wd * (1 - beta))) ** 0.25


def simulate(cls, kwargs, wd, burn: int = 300, steps: int = 300, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    eq = predict(from_class(cls, kwargs, wd), DIM, 1.0)
    w = torch.randn(ROWS, DIM, generator=gen, dtype=torch.float64)
    w = w / w.norm(dim=1, keepdim=True) * _start_norm(eq, kwargs, wd)
    p = nn.Parameter(w)
    opt = cls([p], weight_decay=wd, **kwargs)
    angles = []
    for t in range(burn + steps):
        before = p.detach().clone()
        p.grad = _noisy_gradient(before, gen)
        opt.step()
        if t >= burn:
            after = p.detach()
            cos = (before * after).sum(1) / (before.norm(dim=1) * after.norm(dim=1))
            angles.append(torch.arccos(cos.clamp(-1, 1)).mean())
    return float(torch.stack(angles).mean()), eq


@pytest.mark.parametrize("cls, kwargs, wd", CASES,
                         ids=[f"{c if isinstance(c, str) else c.__name__}-{k}" for c, k, _ in CASES])
def test_angular_update_matches_simulation(cls, kwargs, wd):
    cls = _lion() if cls == "Lion" else cls
    measured, eq = simulate(cls, kwargs, wd)
    assert eq.angular_update is not None and eq.timescale_steps > 0
    assert measured == pytest.approx(eq.angular_update, rel=0.10), eq


def test_dropping_the_beta1_factor_would_fail_the_simulation():
    """The β1 factor is what the test discriminates: √(2ηλ) alone is far off for AdamW."""
    measured, eq = simulate(torch.optim.AdamW, dict(lr=1e-2, betas=(0.9, 0.99)), 0.5)
    assert measured < 0.5 * math.sqrt(2 * 1e-2 * 0.5)


def test_adamw_relaxes_to_its_equilibrium_norm_from_far_away():
    """Started 4× above equilibrium, the norm relaxes on the predicted timescale (‖w‖² moves
    as x* + (x0 − x*)·e^{−2ηλt}); far away the rotation is much smaller than at equilibrium."""
    kwargs, wd = dict(lr=1e-2, betas=(0.9, 0.99)), 0.5
    settings = from_class(torch.optim.AdamW, kwargs, wd)
    star = predict(settings, DIM, 1.0).equilibrium_norm
    far = predict(settings, DIM, 4 * star)
    assert far.current_angular_update == pytest.approx(far.angular_update / 4)
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(ROWS, DIM, generator=gen, dtype=torch.float64)
    p = nn.Parameter(w / w.norm(dim=1, keepdim=True) * 4 * star)
    opt = torch.optim.AdamW([p], weight_decay=wd, **kwargs)
    steps = int(far.timescale_steps)
    for _ in range(steps):
        p.grad = _noisy_gradient(p.detach(), gen)
        opt.step()
    x = float(p.detach().norm(dim=1).pow(2).mean())
    expected = star ** 2 + (16 - 1) * star ** 2 * math.exp(-2 * 1e-2 * wd * steps)
    assert x == pytest.approx(expected, rel=0.10)
    assert far.steps_to_equilibrium > far.timescale_steps


@pytest.mark.parametrize("cls, kwargs, wd", [
    (torch.optim.SGD, dict(lr=0.1, momentum=0.9), 5e-3),
    (torch.optim.AdamW, dict(lr=1e-2), 0.5),
])
def test_a_parameter_without_effect_shrinks_on_the_predicted_timescale(cls, kwargs, wd):
    """No gradient reaches it (zero gradients): decay alone shrinks it, by e per timescale."""
    from wdaudit.advice.equilibrium import no_effect

    eq = no_effect(from_class(cls, kwargs, wd))
    p = nn.Parameter(torch.ones(DIM, dtype=torch.float64))
    opt = cls([p], weight_decay=wd, **kwargs)
    steps = int(2 * eq.timescale_steps)
    for _ in range(steps):
        p.grad = torch.zeros_like(p)
        opt.step()
    assert float(p.detach().norm()) / math.sqrt(DIM) == pytest.approx(math.exp(-2), rel=0.10)


def test_coupled_l2_and_unknown_optimizers_have_no_closed_form():
    adam = predict(from_class(torch.optim.Adam, dict(lr=1e-3), 0.1), DIM, 1.0)
    assert adam.angular_update is None and "WD002" in adam.note
    rms = predict(from_class(torch.optim.RMSprop, dict(lr=1e-3), 0.1), DIM, 1.0)
    assert rms.angular_update is None and "coupled L2" in rms.note
    other = predict(from_class(torch.optim.ASGD, dict(lr=1e-3), 0.1), DIM, 1.0)
    assert other.angular_update is None and other.timescale_steps is None
    assert "no closed form" in other.note


def _model():
    return nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 16),
                         nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))


def test_report_contract_none_without_optimizer_or_decay():
    torch.manual_seed(0)
    model, x = _model(), torch.randn(8, 8)
    plain = wdaudit.audit(model, x)
    assert plain.groups and all(g.equilibrium is None for g in plain.groups)
    undecayed = wdaudit.audit(model, x, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert all(g.equilibrium is None for g in undecayed.groups)
    assert all(g["equilibrium"] is None for g in undecayed.to_dict()["groups"])


def test_report_carries_the_numbers_and_total_steps():
    torch.manual_seed(0)
    model, x = _model(), torch.randn(8, 8)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    short = wdaudit.audit(model, x, optimizer=opt, total_steps=10)
    long = wdaudit.audit(model, x, optimizer=opt, total_steps=10 ** 7)
    scale_free = [g for g in short.groups if g.kind != "no-effect"]
    assert scale_free
    for g in scale_free:
        eq = g.equilibrium
        assert eq.angular_update == pytest.approx(math.sqrt(2 * 1e-3 * 0.1 * 0.1 / 1.9))
        numel = sum(dict(model.named_parameters())[n].numel() for n in g.names)
        assert eq.equilibrium_norm == pytest.approx(math.sqrt(1e-3 * numel / 0.2))
        assert eq.reaches_equilibrium is False
    assert all(g.equilibrium.reaches_equilibrium for g in long.groups if g.kind != "no-effect")
    doc = short.to_dict()["groups"]
    assert all(set(d["equilibrium"]) >= {"angular_update", "timescale_steps"} for d in doc)
