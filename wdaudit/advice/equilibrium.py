"""What weight decay does to a scale-free group, in numbers: its rotational equilibrium.

A scale-free weight ``w`` (``C`` coordinates) gets gradients orthogonal to it, of size
``∝ 1/‖w‖``.  Gradient noise makes ``‖w‖`` grow, decay makes it shrink; they balance at an
equilibrium where the expected angle ``w`` turns per step depends only on the optimizer's
hyperparameters (van Laarhoven 2017; Wan et al. 2021, "Spherical Motion Dynamics"; Kosson,
Messmer & Jaggi 2024, "Rotational Equilibrium").  The derivation, for every optimizer here, is
the random-walk model of Kosson et al.: updates ``u_t`` orthogonal to ``w``, zero-mean noise
independent across steps, ``ηλ ≪ 1``.  Per step, decay takes ``2κ‖w‖²`` off ``‖w‖²`` (``κ``
the decay per step) and the updates add ``η²·L``, with ``L`` the *long-run* variance of the
update (the sum of its autocovariances over all lags: momentum correlates successive updates,
and correlated steps add up).  So at equilibrium ``‖w‖² = η²L/(2κ)`` and the angular update
``η·√E‖u‖² / ‖w‖``.  docs/advice.md ("The numbers") lists every formula with its assumptions; the
simulation tests (tests/test_equilibrium.py) check each against real torch optimizers.

Numbers are for one ``lr``: the optimizer's current one, or a schedule's peak.  Each closed form
also carries its :class:`Balance`, the per-step recurrence it comes from, which
:mod:`.trajectory` runs along a schedule; Muon's long-run variance is in :mod:`.muon`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from .settings import Settings

SOURCES = ("van Laarhoven 2017; Wan et al. 2021 (Spherical Motion Dynamics); "
           "Kosson, Messmer & Jaggi, ICML 2024 (Rotational Equilibrium)")
SCHEDULE_SOURCE = "Defazio 2025 (Why Gradients Rapidly Increase Near the End of Training)"
TOLERANCE = 0.1  # "at equilibrium": the angular update within 10 % of its equilibrium value
TIMESCALES = 3  # without a known distance to equilibrium, three timescales count as reaching it
COUPLED_ADAPTIVE = ("Adam", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta")


@dataclass(frozen=True)
class Balance:
    """The per-step recurrence behind the numbers, per unit lr ``η``: decay takes
    ``κ = decay·η^lr_power`` off ``w`` each step (``lr_power`` 2: timm's lr²/max_lr, AdamC);
    the update adds ``η²·long_run`` to ``‖w‖²`` (``power`` 0: its size ignores ``‖w‖``) or
    ``η²·long_run/‖w‖²`` (``power`` 1: SGD, gradients ∝ 1/‖w‖, in units of an unknown
    gradient scale); the rotation per step is ``η·√energy/‖w‖^(1+power)``."""

    decay: float
    energy: float
    long_run: float
    power: int = 0
    lr_power: int = 1

    def kappa(self, lr):
        return self.decay * lr ** self.lr_power


@dataclass(frozen=True)
class TrajectoryPoint:
    step: int
    lr: float
    angular_update: float  # radians per step
    norm: float


@dataclass(frozen=True)
class Equilibrium:
    """The rotational equilibrium of one scale-free group under its optimizer's decay.

    ``angular_update`` (radians per step) and ``timescale_steps`` (steps for the norm's
    distance to equilibrium to shrink by e) are ``None`` where the theory has no closed form;
    ``note`` then says why."""

    optimizer: str
    model: str  # which derivation applies: "SGD", "SGD momentum", "AdamW", "Lion", … or "none"
    lr: float
    weight_decay: float
    angular_update: float | None
    timescale_steps: float | None
    equilibrium_norm: float | None = None  # where the theory gives one (AdamW, Lion)
    norm: float | None = None  # the group's norm now
    norm_ratio: float | None = None  # norm / equilibrium_norm
    current_angular_update: float | None = None  # the rotation per step at the current norm
    steps_to_equilibrium: float | None = None  # from the current norm, to within TOLERANCE
    total_steps: int | None = None
    reaches_equilibrium: bool | None = None
    formula: str = ""
    note: str = ""
    spread: float | None = None  # model "simulated": the angular update's spread (one std)
    schedule: str = ""  # what the trajectory follows, when a schedule is given
    trajectory: tuple[TrajectoryPoint, ...] | None = None  # along the schedule, from now
    grad_ratio_rise: float | None = None  # ‖g‖/‖w‖ at the last step over its value at peak lr
    first_at_equilibrium: int | None = None  # along the schedule: the first step there
    balance: Balance | None = None  # the recurrence the numbers come from (not in JSON)

    def rotation(self, where: str) -> float | None:
        """The angular update at the trajectory's ``"start"``, ``"peak"`` lr or ``"end"``."""
        if not self.trajectory:
            return None
        if where == "peak":
            return max(self.trajectory, key=lambda p: p.lr).angular_update
        return self.trajectory[0 if where == "start" else -1].angular_update

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("balance")
        out = {key: _rounded(value) for key, value in out.items()}
        if self.trajectory is not None:
            out["trajectory"] = [{k: _rounded(v) for k, v in asdict(p).items()}
                                 for p in self.trajectory]
        out["source"] = SOURCES if self.angular_update is not None else ""
        if self.trajectory is not None:
            out["source"] += f"; schedule: {SCHEDULE_SOURCE}"
        return out


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else None
    return value


def predict(settings: Settings, numel: int, norm: float,
            total_steps: int | None = None, shapes: tuple = ()) -> Equilibrium:
    """The equilibrium of a scale-free group of ``numel`` coordinates and current ``norm``
    whose members all have these optimizer ``settings`` (and ``weight_decay > 0``);
    ``shapes`` (the members' shapes) matter to Muon, which orthogonalises each matrix."""
    base = dict(optimizer=settings.optimizer, lr=settings.lr,
                weight_decay=settings.weight_decay, norm=norm, total_steps=total_steps)
    if settings.lr <= 0:
        return Equilibrium(model="none", angular_update=None, timescale_steps=None,
                           note="lr is 0: nothing moves", **base)
    if settings.is_a("SGD"):
        eq = _sgd(settings, base)
    elif _decoupled_adam(settings):
        eq = _adamw(settings, numel, norm, base)
    elif settings.optimizer == "Lion":
        eq = _lion(settings, numel, norm, base)
    elif settings.is_a("Muon") and _is_torch_muon(settings):
        eq = _muon(settings, shapes, norm, base)
    elif settings.is_a(*COUPLED_ADAPTIVE):
        eq = Equilibrium(
            model="none", angular_update=None, timescale_steps=None, note=(
                f"no closed form: {settings.optimizer} applies the decay as coupled L2 (WD002), "
                "so the adaptive step divides it by each coordinate's gradient scale; the "
                "equilibrium then depends on the gradient's size, not only on the "
                "hyperparameters (Kosson et al. 2024, Adam+L2). With decoupled decay (AdamW) "
                "it would not"), **base)
    else:
        eq = Equilibrium(model="none", angular_update=None, timescale_steps=None,
                         note=f"no closed form for {settings.optimizer}", **base)
    return reach(eq)


def no_effect(settings: Settings, total_steps: int | None = None) -> Equilibrium:
    """A parameter no gradient reaches: decay only shrinks it towards zero."""
    eta, lam = settings.lr, settings.weight_decay
    base = dict(optimizer=settings.optimizer, lr=eta, weight_decay=lam, angular_update=None,
                equilibrium_norm=0.0, total_steps=total_steps)
    if settings.is_a("SGD"):
        beta = float(settings.get("momentum", 0.0) or 0.0)
        rate = eta * (1 - float(settings.get("dampening", 0.0) or 0.0)) * lam / (1 - beta)
    elif _decoupled_adam(settings) or settings.optimizer == "Lion":
        rate = _decay_per_step(settings)
    else:
        rate = 0.0
    if rate <= 0:
        return Equilibrium(model="none", timescale_steps=None,
                           note="no gradient reaches it; how fast the decay shrinks it has no "
                                "closed form here", **base)
    return Equilibrium(model="no gradient", timescale_steps=1 / rate,
                       formula="‖w‖ ∝ exp(−t/τ), τ = 1/(decay per step)",
                       note="no gradient reaches it: decay only shrinks it towards zero", **base)


def _decoupled_adam(settings: Settings) -> bool:
    if not (settings.is_a("AdamW") or (settings.optimizer == "Adam"
                                        and settings.get("decoupled_weight_decay", False))):
        return False
    return True


CORRECTED_MAX_LR = "corrected_decay_max_lr"  # the group key wdaudit.corrected_decay sets


def corrected_max_lr(settings: Settings) -> float | None:
    """The max lr of a corrected decay (decay scaled by lr/max_lr: AdamC, SGDC, timm's
    ``corrected_weight_decay``), or ``None`` where the decay is the plain one.  (A bare
    ``max_lr`` key says nothing: OneCycleLR writes one into every group it drives.)"""
    found = settings.get(CORRECTED_MAX_LR)
    if not found and settings.get("corrected_weight_decay", False):
        found = settings.get("max_lr_snapshot")
    return float(found) if found else None


def _decay_per_step(settings: Settings) -> float:
    """κ, the fraction of ``w`` decoupled decay removes per step (a corrected decay uses
    lr²/max_lr in place of lr)."""
    max_lr = corrected_max_lr(settings)
    scale = settings.lr ** 2 / max_lr if max_lr else settings.lr
    return scale * settings.weight_decay


def _lr_power(settings: Settings) -> int:
    return 2 if corrected_max_lr(settings) else 1


def _sgd(settings: Settings, base: dict) -> Equilibrium:
    """torch.optim.SGD adds λw to the gradient before momentum, so the decay is amplified by
    momentum as much as the noise.  Effective step η' = η(1 − dampening); per step the noise
    adds η'²G²/(‖w‖²(1−β)²) to ‖w‖² (long-run variance of the momentum buffer) and decay
    takes 2η'λ‖w‖²/(1−β): ‖w‖⁴ = η'G²/(2λ(1−β)), which needs the gradient norm G (at unit
    weight norm), unknown here; the angle does not."""
    beta = float(settings.get("momentum", 0.0) or 0.0)
    damp = float(settings.get("dampening", 0.0) or 0.0)
    max_lr = corrected_max_lr(settings)
    # a corrected decay (SGDC) is λ·η/max_lr at this lr
    lam0 = settings.weight_decay / max_lr if max_lr else settings.weight_decay
    eta, lam = settings.lr * (1 - damp), lam0 * (settings.lr if max_lr else 1.0)
    if not 0 <= beta < 1:
        return Equilibrium(model="none", angular_update=None, timescale_steps=None,
                           note=f"no closed form for momentum={beta}", **base)
    nesterov = bool(settings.get("nesterov", False))
    if nesterov:
        # step = d_t + β·buf_t: per-step variance ((1+β)² + β⁴/(1−β²))·G², long-run the same
        # as heavy ball; the ratio gives the factor below
        factor = (1 + 2 * beta - 2 * beta ** 3) / (1 + beta)
        model, formula = "SGD nesterov", "√(2η'λ·(1+2β−2β³)/(1+β))"
    else:
        factor = 1 / (1 + beta)
        model = "SGD momentum" if beta else "SGD"
        formula = "√(2η'λ/(1+β))" if beta else "√(2ηλ)"
    angular = math.sqrt(2 * eta * lam * factor)
    timescale = (1 - beta) / (4 * eta * lam)  # ‖w‖⁴ relaxes at rate 4η'λ/(1−β)
    note = ("equilibrium norm (η'G²/(2λ(1−β)))^¼ depends on the gradient norm G, which a "
            "static audit does not know")
    if damp:
        note += f"; η' = lr·(1 − dampening) = {eta:.3g}"
    # per unit lr, in units of the unknown gradient scale: κ/η = (1−δ)λ/(1−β), and the
    # ratio energy/long-run that gives the angle above through angle² = 2κ·energy/long_run
    balance = Balance(decay=(1 - damp) * lam0 / (1 - beta), energy=factor * (1 - beta),
                      long_run=1.0, power=1, lr_power=2 if max_lr else 1)
    return Equilibrium(model=model, angular_update=angular, timescale_steps=timescale,
                       formula=f"angular update {formula}, timescale (1−β)/(4η'λ)",
                       note=note, balance=balance, **base)


def _adamw(settings: Settings, numel: int, norm: float, base: dict) -> Equilibrium:
    """AdamW in the noise-dominated regime: each coordinate of m/√v is an EMA of unit-variance
    noise, E u_i² = (1−β1)/(1+β1) per step, long-run variance 1 (the EMA's weights sum to 1)."""
    if settings.get("amsgrad", False):
        return Equilibrium(model="none", angular_update=None, timescale_steps=None,
                           note="no closed form with amsgrad (the running max of v)", **base)
    beta1 = float(settings.get("betas", (0.9, 0.999))[0])
    kappa, eta = _decay_per_step(settings), settings.lr
    per_step = (1 - beta1) / (1 + beta1)
    return _spherical("AdamW", eta, kappa, numel, norm, base, per_step=per_step, long_run=1.0,
                      lr_power=_lr_power(settings),
                      formula="angular update √(2ηλ(1−β1)/(1+β1)), norm √(ηC/(2λ)), "
                              "timescale 1/(2ηλ)",
                      note="assumes ε ≪ √v (noise-dominated gradients)")


def _lion(settings: Settings, numel: int, norm: float, base: dict) -> Equilibrium:
    """Lion: u = sign(β1·m + (1−β1)·g), so ‖u‖² = C exactly; successive signs are correlated
    through m (an EMA with β2), which the long-run variance S counts: for Gaussian noise,
    Corr(sign x, sign y) = (2/π)·arcsin ρ."""
    if settings.get("caution", False):
        return Equilibrium(model="none", angular_update=None, timescale_steps=None,
                           note="no closed form for cautious Lion", **base)
    beta1, beta2 = (float(b) for b in settings.get("betas", (0.9, 0.99)))
    if not (0 <= beta1 <= 1 and 0 <= beta2 < 1):
        return Equilibrium(model="none", angular_update=None, timescale_steps=None,
                           note=f"no closed form for betas=({beta1}, {beta2})", **base)
    S = lion_long_run_variance(beta1, beta2)
    return _spherical("Lion", settings.lr, _decay_per_step(settings), numel, norm, base,
                      lr_power=_lr_power(settings),
                      per_step=1.0, long_run=S, formula="angular update √(2ηλ/S), norm √(ηCS/(2λ)), timescale 1/(2ηλ); "
                      f"S = {S:.3g} (sign correlations through β2)",
                      note="our derivation in the random-walk model of Kosson et al.; assumes ηλ ≪ 1 − β2")


def lion_long_run_variance(beta1: float, beta2: float) -> float:
    """S = 1 + 2·Σ_k (2/π)·arcsin ρ_k, ρ_k the correlation of Lion's pre-sign update
    z_t = (1−β1)·g_t + β1·(1−β2)·Σ_j β2^j g_{t−1−j} at lag k."""
    var = (1 - beta1) ** 2 + beta1 ** 2 * (1 - beta2) / (1 + beta2)
    if var <= 0:
        return 1.0
    c = beta1 * (1 - beta2) * ((1 - beta1) + beta1 * beta2 / (1 + beta2))
    n = int(min(1e6, math.ceil(math.log(1e-12) / math.log(beta2)))) if beta2 > 0 else 1
    rho = np.clip(c / var * beta2 ** np.arange(n), -1.0, 1.0)
    return float(1 + 2 * (2 / math.pi) * np.arcsin(rho).sum())


def _spherical(model: str, eta: float, kappa: float, numel: int, norm: float, base: dict, *,
               per_step: float, long_run: float, formula: str, note: str,
               lr_power: int = 1) -> Equilibrium:
    """Updates whose size does not depend on ‖w‖ (per-coordinate normalised: AdamW, Lion):
    ‖w‖² relaxes linearly, x(t) = x* + (x0 − x*)·e^{−2κt}, with x* = η²C·L/(2κ)."""
    x_star = eta ** 2 * numel * long_run / (2 * kappa)
    norm_star = math.sqrt(x_star)
    step = eta * math.sqrt(numel * per_step)
    known = math.isfinite(norm) and norm > 0 and x_star > 0
    balance = Balance(decay=kappa / eta ** lr_power, energy=numel * per_step,
                      long_run=numel * long_run, lr_power=lr_power)
    return Equilibrium(model=model, angular_update=math.sqrt(2 * kappa * per_step / long_run),
                       timescale_steps=1 / (2 * kappa), equilibrium_norm=norm_star,
                       norm_ratio=norm / norm_star if known else None,
                       current_angular_update=step / norm if known else None,
                       steps_to_equilibrium=relax_steps(norm ** 2 / x_star, 2 * kappa)
                       if known else None,
                       formula=formula, note=note, balance=balance, **base)


def _is_torch_muon(settings: Settings) -> bool:
    """torch's Muon (or a subclass): the derivation follows its update step by step; other
    classes named Muon decay and adjust differently, and are measured instead."""
    return any(name == "Muon" and module.startswith("torch.optim")
               for name, module in zip(settings.bases, settings.origins))


def _muon(settings: Settings, shapes, norm: float, base: dict) -> Equilibrium:
    """torch.optim.Muon (see .muon): rotation √(2ηλ·energy/long-run) = √(2ηλ/S)."""
    from . import muon

    momentum = float(settings.get("momentum", 0.95))
    matrices = [tuple(s) for s in shapes if len(s) == 2]
    if not matrices or len(matrices) < len(shapes):
        return Equilibrium(model="none", angular_update=None, timescale_steps=None,
                           note="no closed form: Muon updates matrices, and a member of the "
                                "group is not one", **base)
    if not 0 <= momentum < 1:
        return Equilibrium(model="none", angular_update=None, timescale_steps=None,
                           note=f"no closed form for momentum={momentum}", **base)
    energy, long_run, text = muon.energy_and_long_run(settings, matrices)
    nesterov = bool(settings.get("nesterov", True)) and momentum > 0
    return _spherical(
        "Muon nesterov" if nesterov else "Muon", settings.lr, settings.lr * settings.weight_decay,
        1, norm, base, per_step=energy, long_run=long_run,
        formula=f"angular update √(2ηλ/S), norm η_adj·√(c·S/(2ηλ)), timescale 1/(2ηλ); {text} "
                "(long-run variance of the orthogonalised momentum, h(ρ) of torch's "
                "Newton–Schulz evaluated by Monte Carlo)",
        note="our derivation in the random-walk model of Kosson et al.; h(ρ) evaluated on "
             f"matrices with the shorter side at most {muon.REDUCED_SIDE} (same aspect ratio, "
             f"capped at {muon.MAX_ASPECT}); the rotation does not depend on adjust_lr_fn "
             "(torch decays with the unadjusted lr), the norm does")


def relax_steps(r0: float, rate: float) -> float:
    """Steps until x/x* (starting at r0, relaxing to 1 at ``rate``) puts the angular update,
    ∝ 1/√x, within TOLERANCE of its equilibrium value."""
    high, low = 1 / (1 - TOLERANCE) ** 2 - 1, 1 - 1 / (1 + TOLERANCE) ** 2
    gap = r0 - 1
    allowed = high if gap > 0 else low
    if abs(gap) <= allowed:
        return 0.0
    return math.log(abs(gap) / allowed) / rate


def reach(eq: Equilibrium) -> Equilibrium:
    if eq.total_steps is None:
        return eq
    if eq.steps_to_equilibrium is not None:
        return replace(eq, reaches_equilibrium=eq.total_steps >= eq.steps_to_equilibrium)
    if eq.timescale_steps is not None:
        return replace(eq, reaches_equilibrium=eq.total_steps >= TIMESCALES * eq.timescale_steps,
                       note=f"{eq.note}; 'reaches' means {TIMESCALES} timescales, which assumes "
                            "the norm starts within a small factor of its equilibrium")
    return eq
