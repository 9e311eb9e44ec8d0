"""Any optimizer, measured: the equilibrium of an optimizer no formula covers, from its own code.

A fresh instance of the user's class, built with the group's own settings, trains a synthetic
scale-free group — tensors of the group's shapes (or a stated reduction), jointly one sphere,
whose gradient is Gaussian noise orthogonal to them and ∝ 1/‖w‖ (what a normalisation passes
back) — in the random-walk model the closed forms of :mod:`.equilibrium` come from.  Three things
are read off its steps:

* the decay per step ``κ``: with zero gradients only the decay moves ``w`` (checked to be a
  uniform shrink: decay coupled to a per-coordinate scaling has no such ``κ``);
* the update's energy ``E‖d‖²`` and its long-run variance ``L`` (all lags summed: momentum and
  sign or orthogonalisation memories correlate successive steps), with ``w`` held at a fixed norm
  (renormalised after each step, which leaves every direction as it was);
* how the energy depends on the norm, from replicas held at norms 1 and 2.

The equilibrium is where decay and growth balance, ``2κ‖w‖² = L``: the rotation is
``√(2κ·E‖d‖²/L)``, measured per replica; the spread across replicas is reported.  The cost is
bounded (at most MAX_STEPS steps of at most MAX_COORDINATES coordinates a replica, a few
seconds) and does not depend on ``ηλ``: nothing waits for the norm to relax.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import dataclass, replace
from functools import lru_cache

import torch

from .equilibrium import COUPLED_ADAPTIVE, Balance, Equilibrium, reach, relax_steps
from .muon import one_thread
from .settings import Settings

MAX_COORDINATES = 4096  # a replica's coordinates, after reduction
MAX_MEMBERS = 8  # a replica's tensors: the group's largest members
MAX_MEMORY = 100  # steps: the optimizer's memory as its betas say, capped
MAX_STEPS = 3000
MAX_SECONDS = 15.0
NORMS = (1.0, 1.0, 2.0, 2.0)  # the replicas' fixed norms
_MEMORY_KEYS = ("momentum", "beta", "beta1", "beta2", "beta3", "betas", "b1", "b2")


@dataclass(frozen=True)
class Measurement:
    angular_update: float  # radians per step at equilibrium, mean over replicas
    spread: float  # its standard deviation across replicas
    decay: float  # κ, per step
    energy: float  # E‖d‖² per step, at unit norm
    long_run: float  # the long-run variance of d, at unit norm
    power: float  # E‖d‖² ∝ ‖w‖^(−2·power): 0 normalised updates, 1 SGD-like
    shapes: tuple  # what was simulated
    reduced: bool  # shapes differ from the group's
    steps: int  # optimizer steps taken, probe included
    seconds: float


class NotMeasurable(Exception):
    """Why the measurement could not be made (the message says)."""


def measurable(settings: Settings) -> bool:
    """Worth measuring: a class to build and a decay that is not coupled L2 in an adaptive
    optimizer (that equilibrium depends on the real gradients' size, not the settings)."""
    coupled = settings.is_a(*COUPLED_ADAPTIVE) and not (
        settings.is_a("AdamW") or settings.get("decoupled_weight_decay", False))
    return settings.cls is not None and settings.lr > 0 and not coupled


def measure(settings: Settings, shapes: tuple) -> Measurement:
    """The equilibrium of a scale-free group of tensors of ``shapes`` under ``settings``'s
    class and settings; raises :class:`NotMeasurable`."""
    small, reduced = reduction(tuple(tuple(s) for s in shapes))
    found = _cached(settings.cls, settings, small, reduced)
    if isinstance(found, NotMeasurable):
        raise found
    return found


def equilibrium(settings: Settings, shapes: tuple, norm: float,
                total_steps: int | None = None) -> Equilibrium:
    """The measured equilibrium as the report carries it (model ``"simulated"``), or the
    reason it could not be measured (model ``"none"``)."""
    base = dict(optimizer=settings.optimizer, lr=settings.lr,
                weight_decay=settings.weight_decay, norm=norm, total_steps=total_steps)
    try:
        m = measure(settings, shapes)
    except NotMeasurable as exc:
        return Equilibrium(model="none", angular_update=None, timescale_steps=None,
                           note=f"no closed form for {settings.optimizer}, and not measurable: "
                                f"{exc}", **base)
    power = round(m.power)
    exact = abs(m.power - power) < 0.1 and power in (0, 1)
    scale = sum(math.prod(s) for s in shapes) / sum(math.prod(s) for s in m.shapes)
    lr = settings.lr
    balance = Balance(decay=m.decay / lr, energy=m.energy * scale / lr ** 2,
                      long_run=m.long_run * scale / lr ** 2, power=power) if exact else None
    where = (f"{len(m.shapes)} tensor(s) {', '.join('×'.join(map(str, s)) for s in m.shapes)}"
             + (" (a reduction of the group: its update energy scaled by the number of "
                "coordinates)" if m.reduced else ""))
    note = (f"measured: a fresh {settings.optimizer} with the group's settings on a synthetic "
            f"scale-free group of {where}, {m.steps} steps, {m.seconds:.1f} s; spread across "
            f"{len(NORMS)} replicas; {_dependence(m.power)}")
    eq = Equilibrium(model="simulated", angular_update=m.angular_update,
                     timescale_steps=1 / (2 * m.decay * (1 + max(0.0, m.power))),
                     spread=m.spread, balance=balance, formula="rotation √(2κ·E‖d‖²/L), κ, "
                     "E‖d‖² and L (long-run variance) measured", note=note, **base)
    if power == 0 and exact and math.isfinite(norm) and norm > 0:
        x_star = m.long_run * scale / (2 * m.decay)
        eq = replace(eq, equilibrium_norm=math.sqrt(x_star), norm_ratio=norm / math.sqrt(x_star),
                     current_angular_update=math.sqrt(m.energy * scale) / norm,
                     steps_to_equilibrium=relax_steps(norm ** 2 / x_star, 2 * m.decay))
    return reach(eq)


def _dependence(power: float) -> str:
    if abs(power) < 0.05:
        return "update size independent of ‖w‖"
    if abs(power - 1) < 0.05:
        return "update size ∝ 1/‖w‖ (SGD-like: the norm needs the gradient's scale)"
    return f"update energy ∝ ‖w‖^{-2 * power:.2g} (no trajectory: neither 0 nor −2)"


def reduction(shapes: tuple) -> tuple[tuple, bool]:
    """At most MAX_MEMBERS tensors (the largest) of at most MAX_COORDINATES in all, each
    shrunk by the same factor on every axis (so aspect ratios stay as they were)."""
    kept = tuple(sorted(shapes, key=lambda s: -math.prod(s))[:MAX_MEMBERS])
    total = sum(math.prod(s) for s in kept)
    if total <= MAX_COORDINATES and len(kept) == len(shapes):
        return shapes, False
    factor = min(1.0, MAX_COORDINATES / total)
    small = tuple(tuple(max(1, int(d * factor ** (1 / max(1, len(s))))) for d in s) or ()
                  for s in kept)
    return small, True


@lru_cache(maxsize=64)
def _cached(cls, settings: Settings, shapes: tuple, reduced: bool):
    """One measurement per class, settings and shapes, failures included (a failure that
    took its whole budget must not be paid again for the next group)."""
    try:
        with one_thread():
            return _measure(cls, settings, shapes, reduced)
    except NotMeasurable as exc:
        return exc


def _measure(cls, settings: Settings, shapes: tuple, reduced: bool) -> Measurement:
    start = time.perf_counter()
    memory = _memory(settings)
    gen = torch.Generator().manual_seed(0)
    kappa = _decay(cls, settings, shapes, gen, 3 * memory + 10)
    burn, window = 3 * memory + 20, max(10 * memory, 100)
    if 2 * window + burn + 3 * memory + 10 > MAX_STEPS:
        window = (MAX_STEPS - burn - 3 * memory - 10) // 2
    replicas = [_replica(shapes, norm, gen) for norm in NORMS]
    opt = _build(cls, settings, [p for r in replicas for p in r])
    sums = [[None, None] for _ in replicas]
    energy = [0.0 for _ in replicas]
    for t in range(burn + 2 * window):
        before = [_flat(r) for r in replicas]
        for r in replicas:
            _noisy_gradient(r, gen)
        opt.step()
        for i, r in enumerate(replicas):
            after = _flat(r)
            d = (1 - kappa) * before[i] - after
            if not torch.isfinite(d).all():
                raise NotMeasurable(f"{cls.__name__} produced non-finite steps")
            _renormalise(r, NORMS[i])
            if t >= burn:
                half = (t - burn) // window
                sums[i][half] = d if sums[i][half] is None else sums[i][half] + d
                energy[i] += float(d.pow(2).sum()) / (2 * window)
        if time.perf_counter() - start > MAX_SECONDS:
            raise NotMeasurable(f"the measurement ran past its budget ({MAX_SECONDS:g} s)")
    angles, long_runs = [], []
    for (d1, d2), e in zip(sums, energy):
        lrv = float(d1.pow(2).sum() + d2.pow(2).sum() + 4 * (d1 * d2).sum()) / (2 * window)
        if lrv <= 0 or e <= 0:
            raise NotMeasurable(f"{cls.__name__} does not move the synthetic group")
        long_runs.append(lrv)
        angles.append(math.sqrt(2 * kappa * e / lrv))
    at = {n: [(e, lrv) for e, lrv, m in zip(energy, long_runs, NORMS) if m == n] for n in NORMS}
    mean = {n: sum(e for e, _ in v) / len(v) for n, v in at.items()}
    power = math.log(mean[1.0] / mean[2.0]) / math.log(4.0)
    unit = [lrv for lrv, m in zip(long_runs, NORMS) if m == 1.0]
    angle = sum(angles) / len(angles)
    spread = math.sqrt(sum((a - angle) ** 2 for a in angles) / (len(angles) - 1))
    return Measurement(angle, spread, kappa, mean[1.0], sum(unit) / len(unit), power, shapes,
                       reduced, burn + 2 * window + 3 * memory + 10,
                       time.perf_counter() - start)


def _memory(settings: Settings) -> int:
    """Steps the optimizer remembers, from its betas (``1/(1−β)``), capped at MAX_MEMORY."""
    betas = []
    for key in _MEMORY_KEYS:
        value = settings.get(key)
        values = value if isinstance(value, tuple) else (value,)
        betas += [float(v) for v in values if isinstance(v, (int, float))
                  and not isinstance(v, bool) and 0 < v < 1]
    tau = max((1 / (1 - b) for b in betas), default=10.0)
    return int(min(MAX_MEMORY, max(10.0, tau)))


def _decay(cls, settings, shapes, gen, steps: int) -> float:
    """κ: the shrink per step with zero gradients, once the optimizer's memory has filled
    (SGD's decay passes through its momentum)."""
    replica = _replica(shapes, 1.0, gen)
    opt = _build(cls, settings, replica)
    previous = None
    for _ in range(steps):
        previous = _flat(replica)
        for p in replica:
            p.grad = torch.zeros_like(p)
        opt.step()
    ratio = _flat(replica) / previous
    kappa = 1 - float(ratio.mean())
    if not math.isfinite(kappa) or kappa <= 0:
        raise NotMeasurable(f"{cls.__name__} with these settings does not shrink the weights "
                            "when no gradient comes (no decay per step to balance)")
    if float(ratio.std()) > 1e-3 * kappa:
        raise NotMeasurable(f"{cls.__name__}'s decay is not a uniform shrink (coupled to a "
                            "per-coordinate scaling?): its equilibrium depends on the gradients")
    return kappa


def _build(cls, settings: Settings, params: list):
    """A fresh instance over ``params`` with the group's settings: as keyword arguments where
    the constructor names them, else as a parameter group."""
    group = {**dict(settings.group), "lr": settings.lr, "weight_decay": settings.weight_decay}
    try:
        named = inspect.signature(cls.__init__).parameters
    except (TypeError, ValueError):
        named = {}
    kwargs = {k: v for k, v in group.items() if k in named}
    errors = []
    for attempt in (lambda: cls(params, **kwargs), lambda: cls([{"params": params, **group}])):
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - the user's constructor
            errors.append(f"{type(exc).__name__}: {exc}")
    raise NotMeasurable(f"{cls.__name__} could not be built again with the group's settings "
                        f"({errors[-1][:200]})")


def _replica(shapes, norm: float, gen) -> list[torch.Tensor]:
    tensors = [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=torch.float64))
               for s in shapes]
    _renormalise(tensors, norm)
    return tensors


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors]).clone()


def _renormalise(tensors, norm: float) -> None:
    with torch.no_grad():
        scale = norm / float(_flat(tensors).norm())
        for t in tensors:
            t.mul_(scale)


def _noisy_gradient(tensors, gen) -> None:
    """The gradient a normalisation passes back to its input: d/dw ⟨ξ, w/‖w‖⟩, orthogonal to
    the group's joint vector and ∝ 1/‖w‖."""
    w = _flat(tensors)
    norm = w.norm()
    u = w / norm
    xi = torch.randn(w.shape, generator=gen, dtype=w.dtype)
    g = (xi - (xi @ u) * u) / norm
    offset = 0
    for t in tensors:
        t.grad = g[offset:offset + t.numel()].view_as(t).clone()
        offset += t.numel()
