"""Equilibrium along a schedule (issue 25): torch's AdamW and SGD with momentum under torch's own
schedulers (warmup + cosine as transformers builds it, a LambdaLR; WSD as a SequentialLR), the
lr read by wdaudit from a copy of the scheduler; the trajectory's rotation and norm must follow a
simulation of the scale-invariant toy within 15 %, and so must the end-of-training rise of
‖g‖/‖w‖ — with and without the corrected decay (AdamC), which the simulation applies through
``wdaudit.corrected_decay``'s hook."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import wdaudit
from tests.support.spheres import train, window_mean
from wdaudit.advice.equilibrium import predict
from wdaudit.advice.schedule import Schedule, lr_paths
from wdaudit.advice.settings import per_parameter
from wdaudit.advice.trajectory import along

T, WARMUP, DECAY = 2000, 200, 400
C = 1024
L = torch.optim.lr_scheduler


def cosine(opt):
    return L.LambdaLR(opt, lambda t: t / WARMUP if t < WARMUP
                      else 0.5 * (1 + math.cos(math.pi * (t - WARMUP) / (T - WARMUP))))


def wsd(opt):
    return L.SequentialLR(opt, [L.LinearLR(opt, 1e-3, 1.0, total_iters=WARMUP),
                                L.ConstantLR(opt, 1.0, total_iters=0),
                                L.LinearLR(opt, 1.0, 1e-3, total_iters=DECAY)],
                          milestones=[WARMUP, T - DECAY])


ADAMW = (torch.optim.AdamW, dict(lr=1e-2, betas=(0.9, 0.95), weight_decay=0.5))
SGDM = (torch.optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=5e-3))


def _start(cls, kwargs):
    if cls is torch.optim.SGD:  # SGD's trajectory assumes the peak lr's equilibrium now:
        # ‖w‖⁴ = ηG²/(2λ(1−β)), G² = C − 1 for this toy
        return (kwargs["lr"] * (C - 1) / (2 * kwargs["weight_decay"]
                                          * (1 - kwargs["momentum"]))) ** 0.25
    return 2 * math.sqrt(kwargs["lr"] * C / (2 * kwargs["weight_decay"]))  # 2× equilibrium


def _predicted(opt, scheduler, norm):
    """The trajectory as the audit computes it: settings and lr path from the live objects."""
    p = opt.param_groups[0]["params"][0]
    settings = per_parameter(opt, {"w": p})["w"]
    paths = lr_paths(opt, scheduler, T)
    path = paths.by_tensor[id(p)]
    from dataclasses import replace

    eq = predict(replace(settings, lr=float(path.max())), C, norm)
    return along(eq, path, paths.description), path


def _compare(eq, path, run):
    """Worst relative errors of rotation (per unit lr, averaged over ±10 steps: per-step
    angles are noisy) and norm, over the trajectory's points past Adam's bias correction."""
    with np.errstate(divide="ignore", invalid="ignore"):
        per_lr = np.where(path > 0, run.angle / path, np.nan)
    angle, norm = [], []
    for point in eq.trajectory:
        if point.step < 50 or point.lr <= 0:
            continue
        measured = np.nanmean(per_lr[max(0, point.step - 10):point.step + 11])
        angle.append(abs(measured / (point.angular_update / point.lr) - 1))
        norm.append(abs(math.sqrt(window_mean(run.x, point.step, 10)) / point.norm - 1))
    return max(angle), max(norm)


def _rise(run, path):
    return window_mean(run.grad_ratio, T - 1, 3) / run.grad_ratio[int(np.argmax(path))]


@pytest.mark.parametrize("schedule", [cosine, wsd], ids=["warmup-cosine", "wsd"])
@pytest.mark.parametrize("optimizer", [
    pytest.param(ADAMW, id="AdamW"),
    pytest.param(SGDM, id="SGD-momentum", marks=pytest.mark.slow)])  # the slow tier, in CI
def test_trajectory_follows_torchs_optimizer_and_scheduler(optimizer, schedule):
    cls, kwargs = optimizer
    norm = _start(cls, kwargs)
    probe = nn.Parameter(torch.zeros(C, dtype=torch.float64))
    opt = cls([probe], **kwargs)
    eq, path = _predicted(opt, schedule(opt), norm)
    assert len(eq.trajectory) >= 20 and eq.trajectory[0].norm == pytest.approx(norm)
    run = train(lambda ps: cls(ps, **kwargs), (C,), T, norm, make_scheduler=schedule)
    angle, norm_error = _compare(eq, path, run)
    assert angle < 0.15 and norm_error < 0.15
    assert eq.grad_ratio_rise == pytest.approx(_rise(run, path), rel=0.15)


def test_corrected_decay_removes_the_end_of_training_rise():
    """AdamW, warmup + cosine: ‖g‖/‖w‖ rises at the end (Defazio 2025); with the decay scaled
    by lr/lr_max on the scale-free group it does not; the prediction follows both."""
    cls, kwargs = ADAMW
    norm = math.sqrt(kwargs["lr"] * C / (2 * kwargs["weight_decay"]))
    rises = {}
    for corrected in (False, True):
        probe = nn.Parameter(torch.zeros(C, dtype=torch.float64))
        opt = cls([{"params": [probe], "corrected_decay": corrected}], **kwargs)
        scheduler = cosine(opt)
        if corrected:
            wdaudit.corrected_decay(opt, scheduler, total_steps=T)
        eq, path = _predicted(opt, scheduler, norm)

        def make(ps, corrected=corrected):
            o = cls([{"params": ps, "corrected_decay": corrected}], **kwargs)
            return o

        def schedule_and_hook(o, corrected=corrected):
            s = cosine(o)
            if corrected:
                wdaudit.corrected_decay(o, s, total_steps=T)
            return s

        run = train(make, (C,), T, norm, make_scheduler=schedule_and_hook)
        rises[corrected] = _rise(run, path)
        assert eq.grad_ratio_rise == pytest.approx(rises[corrected], rel=0.15)
    assert rises[False] > 2 and rises[True] < 1.2


def test_the_users_scheduler_and_optimizer_are_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
    scheduler = wsd(opt)
    state, lrs = scheduler.state_dict(), [g["lr"] for g in opt.param_groups]
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    report = wdaudit.audit(model, torch.randn(4, 8), optimizer=opt, scheduler=scheduler,
                           total_steps=T)
    assert scheduler.state_dict() == state and [g["lr"] for g in opt.param_groups] == lrs
    assert scheduler.last_epoch == 0 and not opt.state
    assert all(torch.equal(weights[n], p) for n, p in model.named_parameters())
    eqs = [g for g in report.to_dict()["groups"] if g["equilibrium"] and g["kind"] != "no-effect"]
    assert eqs
    for g in eqs:
        points = g["equilibrium"]["trajectory"]
        assert len(points) >= 20 and all(set(p) == {"step", "lr", "angular_update", "norm"}
                                         for p in points)
        assert isinstance(g["equilibrium"]["grad_ratio_rise"], float)
        assert isinstance(g["equilibrium"]["reaches_equilibrium"], bool)


@pytest.mark.parametrize("make", [
    lambda o: L.OneCycleLR(o, max_lr=0.1, total_steps=300),
    lambda o: L.CosineAnnealingLR(o, T_max=300),
    lambda o: L.SequentialLR(o, [L.LinearLR(o, 0.1, 1.0, total_iters=30),
                                 L.ExponentialLR(o, 0.99)], milestones=[30]),
    lambda o: L.LambdaLR(o, [lambda t: 1 / (1 + t), lambda t: 0.5 ** (t // 50)]),
], ids=["OneCycleLR", "CosineAnnealingLR", "SequentialLR", "LambdaLR-per-group"])
def test_the_lr_read_is_the_lr_training_sees(make):
    """What lr_paths reads on its copy is what stepping the real scheduler gives."""
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1, momentum=0.9)
    scheduler = make(opt)
    paths = lr_paths(opt, scheduler, 300)
    seen = []
    for _ in range(300):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        scheduler.step()
    seen = np.asarray(seen)
    assert np.allclose(paths.by_tensor[id(a)], seen[:, 0], rtol=1e-12)
    assert np.allclose(paths.by_tensor[id(b)], seen[:, 1], rtol=1e-12)


def test_a_schedule_by_name_and_lightnings_dicts():
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2))], lr=1e-3)
    factors = Schedule("wsd", warmup=10).factors(100)
    assert factors[0] == 0 and factors[10] == 1 and factors[79] == 1 and factors[-1] < 0.1
    scheduler = cosine(opt)
    direct = lr_paths(opt, scheduler, 50).by_tensor
    for shape in ({"optimizer": opt, "lr_scheduler": scheduler},
                  {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}},
                  ([opt], [scheduler])):
        read = lr_paths(opt, shape, 50).by_tensor
        assert all(np.array_equal(read[k], direct[k]) for k in direct)
    per_epoch = lr_paths(opt, {"scheduler": scheduler, "interval": "epoch"}, 50)
    assert per_epoch.notes and "epoch" in per_epoch.notes[0]
