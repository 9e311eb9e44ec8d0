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
``η·√E‖u‖² / ‖w‖``.  README ("The numbers") lists every formula with its assumptions; the
simulation tests (tests/test_equilibrium.py) check each against real torch optimizers.

Numbers are for the optimizer's current ``lr``: a schedule is out of scope.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from .settings import Settings

SOURCES = ("van Laarhoven 2017; Wan et al. 2021 (Spherical Motion Dynamics); "
           "Kosson, Messmer & Jaggi, ICML 2024 (Rotational Equilibrium)")
TOLERANCE = 0.1  # "at equilibrium": the angular update within 10 % of its equilibrium value
TIMESCALES = 3  # without a known distance to equilibrium, three timescales count as reaching it
_COUPLED_ADAPTIVE = ("Adam", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta")


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

    def to_dict(self) -> dict:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, float):
                out[key] = float(f"{value:.4g}") if math.isfinite(value) else None
        out["source"] = SOURCES if self.angular_update is not None else ""
        return out


def predict(settings: Settings, numel: int, norm: float,
            total_steps: int | None = None) -> Equilibrium:
    """The equilibrium of a scale-free group of ``numel`` coordinates and current ``norm``
    whose members all have these optimizer ``settings`` (and ``weight_decay > 0``)."""
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
    elif settings.is_a(*_COUPLED_ADAPTIVE):
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
    return _reach(eq)


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


def _decay_per_step(settings: Settings) -> float:
    """κ, the fraction of ``w`` decoupled decay removes per step (timm's corrected decay uses
    lr²/max_lr in place of lr)."""
    max_lr = settings.get("max_lr")
    scale = settings.lr ** 2 / max_lr if max_lr else settings.lr
    return scale * settings.weight_decay


def _sgd(settings: Settings, base: dict) -> Equilibrium:
    """torch.optim.SGD adds λw to the gradient before momentum, so the decay is amplified by
    momentum as much as the noise.  Effective step η' = η(1 − dampening); per step the noise
    adds η'²G²/(‖w‖²(1−β)²) to ‖w‖² (long-run variance of the momentum buffer) and decay
    takes 2η'λ‖w‖²/(1−β): ‖w‖⁴ = η'G²/(2λ(1−β)), which needs the gradient norm G (at unit
    weight norm), unknown here; the angle does not."""
    beta = float(settings.get("momentum", 0.0) or 0.0)
    damp = float(settings.get("dampening", 0.0) or 0.0)
    eta, lam = settings.lr * (1 - damp), settings.weight_decay
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
    return Equilibrium(model=model, angular_update=angular, timescale_steps=timescale,
                       formula=f"angular update {formula}, timescale (1−β)/(4η'λ)",
                       note=note, **base)


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
               per_step: float, long_run: float, formula: str, note: str) -> Equilibrium:
    """Updates whose size does not depend on ‖w‖ (per-coordinate normalised: AdamW, Lion):
    ‖w‖² relaxes linearly, x(t) = x* + (x0 − x*)·e^{−2κt}, with x* = η²C·L/(2κ)."""
    x_star = eta ** 2 * numel * long_run / (2 * kappa)
    norm_star = math.sqrt(x_star)
    step = eta * math.sqrt(numel * per_step)
    known = math.isfinite(norm) and norm > 0 and x_star > 0
    return Equilibrium(model=model, angular_update=math.sqrt(2 * kappa * per_step / long_run),
                       timescale_steps=1 / (2 * kappa), equilibrium_norm=norm_star,
                       norm_ratio=norm / norm_star if known else None,
                       current_angular_update=step / norm if known else None,
                       steps_to_equilibrium=_steps(norm ** 2 / x_star, 2 * kappa)
                       if known else None,
                       formula=formula, note=note, **base)


def _steps(r0: float, rate: float) -> float:
    """Steps until x/x* (starting at r0, relaxing to 1 at ``rate``) puts the angular update,
    ∝ 1/√x, within TOLERANCE of its equilibrium value."""
    high, low = 1 / (1 - TOLERANCE) ** 2 - 1, 1 - 1 / (1 + TOLERANCE) ** 2
    gap = r0 - 1
    allowed = high if gap > 0 else low
    if abs(gap) <= allowed:
        return 0.0
    return math.log(abs(gap) / allowed) / rate


def _reach(eq: Equilibrium) -> Equilibrium:
    if eq.total_steps is None:
        return eq
    if eq.steps_to_equilibrium is not None:
        return replace(eq, reaches_equilibrium=eq.total_steps >= eq.steps_to_equilibrium)
    if eq.timescale_steps is not None:
        return replace(eq, reaches_equilibrium=eq.total_steps >= TIMESCALES * eq.timescale_steps,
                       note=f"{eq.note}; 'reaches' means {TIMESCALES} timescales, which assumes "
                            "the norm starts within a small factor of its equilibrium")
    return eq
