"""Stage 7: confirm every static claim numerically (DESIGN.md §4).

All claims are checked together: each group is scaled by an independent random
``a ∈ {0.5, 2}`` (exponent-weighted) in one pass and by ``1/a`` in a second; parameters with no
effect are redrawn.  Only when the joint pass fails do we bisect.  A claim is confirmed when

* the traced program with every normalisation eps → 0 does not change (exact, float64);
* the traced program with eps as is reproduces the real model at the check point (both
  tracers refuse value-dependent control flow, and opaque parts run eagerly, so a program
  that agrees there computes the model's function);
* the Euler identity ``Σ_p s_p ⟨∇_p L, θ_p⟩ = 0`` holds at a second, saturating point.

The real model's own change under the scaling is measured and reported; above
``EPS_MATTERS`` the claim is flagged eps-limited (true only in the eps → 0 limit).

Memory: one float64 copy of the parameters lives at a time (the generic point, scaled and
redrawn in place, then the saturating point), plus activations and one parameter's gradient.
When the model cannot be run or measured at the check point, nothing is confirmed and the
reason says why ("cannot confirm: ...").
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..report import CHECKED, FAILED, SKIPPED, Check, Confirmation
from . import generic_point as generic
from .claims import Claims
from .program import EPS_TINY, placed, run, run_model
from .rng import seeded

TOL_EXACT = 1e-8  # relative output change allowed with eps -> 0 (float64 round-off)
TOL_EULER = 1e-6  # |E| relative to the group's own gradient scale ...
EULER_FLOOR = 1e-4  # ... when that scale is above this fraction of the loss's size
TOL_FAITHFUL = 1e-4  # real model vs traced program, both eps as is (the model may cast to fp32)
EPS_MATTERS = 1e-4  # real-model change above which a claim is reported as eps-limited
EPS_FINER = 1e-6  # a residual must shrink by ~this factor when eps does to count as an eps effect
PLAUSIBLY_EPS = 1e-2  # residuals above this are never attributed to eps


@dataclass(frozen=True)
class Setup:
    """What confirmation needs beyond the claims: the user's parameters (only ever read), the
    example inputs, where to run and with which seed, and whether to run at all."""

    params: Mapping[str, torch.Tensor]
    inputs: tuple
    device: torch.device
    seed: int = 0
    enabled: bool = True


class _CannotConfirm(RuntimeError):
    pass


def confirm(claims: Claims, setup: Setup) -> Confirmation:
    device = setup.device
    if not claims.claims:
        return Confirmation(CHECKED, str(device), 0)
    if not setup.enabled:
        return Confirmation(SKIPPED, str(device), 0, "confirmation switched off")
    if device.type == "meta" or any(p.is_meta for p in setup.params.values()):
        return Confirmation(SKIPPED, "meta", 0, "parameters are on the meta device: static "
                            "analysis only, claims are not confirmed")
    degrees = claims.symmetries.degrees
    program = placed(degrees.influence.graph.program, device)
    ctx = _Context(program, tuple(degrees.eps_sites), setup)
    todo = claims.claims
    rng = random.Random(setup.seed)
    factors = [rng.choice((0.5, 2.0)) for _ in todo]
    results: dict[int, Check] = {}
    try:
        ctx.baseline()
        ctx.bisect(list(range(len(todo))), todo, factors, results)
        euler = ctx.euler(todo)
    except _CannotConfirm as exc:
        reason = f"cannot confirm: {exc}"
        nan = float("nan")
        return Confirmation(FAILED, str(device), ctx.passes, reason, (),
                            tuple(Check(False, nan, nan, nan, False, reason) for _ in todo))
    checks, defects = [], []
    for i, claim in enumerate(todo):
        check = results[i]
        ok = check.confirmed and euler[i] <= TOL_EULER
        note = check.note or ("" if euler[i] <= TOL_EULER else f"Euler residual {euler[i]:.2e}")
        checks.append(Check(ok, check.max_relative_change, check.exact_relative_change,
                            euler[i], check.eps_limited, note))
        if not ok:
            members = ", ".join(list(claim.exponents) + list(claim.redraw))
            defects.append(f"claim over [{members}] failed confirmation: {note}")
    return Confirmation(CHECKED, str(device), ctx.passes, "", tuple(defects), tuple(checks))


class _Context:
    """One confirmation run: the float64 point, the casted buffers, constants and inputs."""

    def __init__(self, program, eps_sites, setup: Setup):
        params, device, seed = setup.params, setup.device, setup.seed
        buffers, inputs = dict(program.root.named_buffers()), setup.inputs
        self.program = program
        self.eps = eps_sites
        self.device = device
        self.source = params  # the user's tensors: only read, for shapes and centres
        self.params = generic.draw(params, device=device, dtype=torch.float64, seed=seed)
        self.large: generic.Point | None = None  # drawn when the generic point is done with
        self.buffers = {k: _cast(v, device) for k, v in buffers.items()}
        self.constants = {k: _cast(v, device) for k, v in program.constants.items()}
        self.inputs = tuple(_cast(x, device) for x in inputs)
        self.passes = 0
        self.seed = seed

    # -- runs -------------------------------------------------------------------------
    def _program(self, params, eps_zero: bool, eps_value: float = EPS_TINY) -> list[torch.Tensor]:
        self.passes += 1
        with torch.no_grad(), seeded(self.seed, self.device), _float64_default(), \
                _running("the traced program"):
            return _floats(run(self.program, params, self.buffers, self.inputs,
                               constants=self.constants, eps_zero=self.eps if eps_zero else (),
                               promote=torch.float64, eps_value=eps_value))

    def _real(self, params) -> list[torch.Tensor]:
        self.passes += 1
        with torch.no_grad(), seeded(self.seed, self.device), _float64_default(), \
                _running("the model"):
            return _floats(run_model(self.program.root, params, self.buffers, self.inputs))

    def baseline(self) -> None:
        self.real0 = self._real(self.params)
        if not any(y.numel() for y in self.real0):
            raise _CannotConfirm("the model has no floating-point output to measure")
        self.exact0 = self._program(self.params, eps_zero=True)
        for y in self.real0 + self.exact0:
            if not torch.isfinite(y).all():
                raise _CannotConfirm("the model's output is NaN or Inf at the check point")
        self.fidelity0 = _relative(self._program(self.params, eps_zero=False), self.real0)

    # -- the joint test and bisection -----------------------------------------------------
    def bisect(self, idx: list[int], claims, factors, results: dict[int, Check]) -> None:
        check = self._test([claims[i] for i in idx], [factors[i] for i in idx])
        if check.confirmed or len(idx) == 1:
            for i in idx:
                results[i] = check
            return
        half = len(idx) // 2
        self.bisect(idx[:half], claims, factors, results)
        self.bisect(idx[half:], claims, factors, results)

    def _test(self, claims, factors) -> Check:
        # each output is reduced to a number as soon as it exists: outputs can be large
        # the traced program is checked against the model at the base point only: both
        # tracers refuse value-dependent control flow, so what agrees there agrees here
        with _applied(self.params, claims, factors, self.seed):
            real = _relative(self._real(self.params), self.real0)
            exact = _relative(self._program(self.params, eps_zero=True), self.exact0)
        with _applied(self.params, claims, [1.0 / f for f in factors], self.seed + 7):
            exact = max(exact, _relative(self._program(self.params, eps_zero=True), self.exact0))
        if TOL_EXACT < exact <= PLAUSIBLY_EPS:
            exact = self._finer_limit(claims, factors, exact)
        faithful = self.fidelity0
        ok = exact <= TOL_EXACT and faithful <= TOL_FAITHFUL
        note = ""
        if faithful > TOL_FAITHFUL:
            note = f"the traced program and the model disagree by {faithful:.2e} at the check point"
        elif exact > TOL_EXACT:
            note = f"output changed by {exact:.2e} (relative) with eps -> 0"
        return Check(ok, real, exact, 0.0, real > EPS_MATTERS, note)

    def _finer_limit(self, claims, factors, coarse: float) -> float:
        """A channel with variance near EPS_TINY (constant across the batch but for one
        value) leaves an eps effect at eps = EPS_TINY.  Re-measure with a much smaller eps: an
        eps effect shrinks with it, a real change does not.  Returns the residual to judge."""
        fine = EPS_TINY * EPS_FINER
        base = self._program(self.params, eps_zero=True, eps_value=fine)
        worst = 0.0
        for fs, salt in ((factors, 0), ([1.0 / f for f in factors], 7)):
            with _applied(self.params, claims, fs, self.seed + salt):
                out = self._program(self.params, eps_zero=True, eps_value=fine)
            worst = max(worst, _relative(out, base))
        return 0.0 if worst <= max(TOL_EXACT, coarse * EPS_FINER * 1e3) else worst

    # -- Euler identity at a saturating point --------------------------------------------
    def euler(self, claims) -> list[float]:
        residuals = self._euler(claims, EPS_TINY)
        shaky = [i for i, r in enumerate(residuals) if r > TOL_EULER]
        if shaky:
            # a group whose influence at this point is itself an eps effect (a channel of near
            # zero variance) fades as eps does; a violation does not.  Not finer than 1e-4:
            # below that, round-off in constant channels grows like 1/sqrt(eps)
            finer = self._euler([claims[i] for i in shaky], EPS_TINY * 1e-4)
            for i, r in zip(shaky, finer):
                residuals[i] = r
        return residuals

    def _saturating_point(self) -> generic.Point:
        if self.large is None:
            # the generic point is done with: it becomes the saturating one, in place
            self.large = generic.saturate(self.params, spread=3.0)
            self.params = self.real0 = self.exact0 = None
            for v in self.large.values():
                v.requires_grad_(v.is_floating_point())
        return self.large

    def _euler(self, claims, eps_value: float) -> list[float]:
        leaves = self._saturating_point()
        self.passes += 3  # a forward and a backward
        with seeded(self.seed, self.device), _float64_default(), \
                _running("the traced program"):
            outs = _floats(run(self.program, leaves, self.buffers, self.inputs,
                               constants=self.constants, eps_zero=self.eps, promote=torch.float64,
                               eps_value=eps_value))
        for y in outs:
            if not torch.isfinite(y).all():
                raise _CannotConfirm("the model's output is NaN or Inf at the saturating point")
        gen = torch.Generator(device="cpu").manual_seed(self.seed + 3)
        weights = [torch.randn(y.shape, generator=gen, dtype=y.dtype).to(y.device) for y in outs]
        loss = sum((y * w).sum() for y, w in zip(outs, weights) if y.requires_grad)
        # |L| ≤ Σ‖y‖‖w‖: the natural size of any log-scale derivative of L
        loss_scale = sum(float(y.detach().norm() * w.norm()) for y, w in zip(outs, weights))
        names = [k for k, v in leaves.items() if v.requires_grad]
        del outs, weights  # the graph keeps what the backward needs; outputs can be large
        if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
            return [0.0] * len(claims)
        dots, norms = _gradient_products(loss, {k: leaves[k] for k in names})
        floor = EULER_FLOOR * loss_scale
        out = []
        for claim in claims:
            e = sum(s * dots.get(k, 0.0) for k, s in claim.exponents.items())
            scale = sum(abs(s) * norms.get(k, 0.0) for k, s in claim.exponents.items())
            # a group whose whole gradient is negligible at this point (saturated or dead
            # units, a norm over a constant channel) cannot be judged here: the identity has no
            # power there and the finite checks decide
            residual = abs(e) / scale if scale > floor else 0.0
            for k in claim.redraw:  # no effect: the gradient itself must vanish
                residual = max(residual, norms.get(k, 0.0) / max(loss_scale, 1e-300))
            out.append(residual)
        return out


def _gradient_products(loss: torch.Tensor, leaves: Mapping[str, torch.Tensor]):
    """``⟨∇_p L, θ_p⟩`` and ``‖∇_p L‖‖θ_p‖`` for every leaf, from one backward pass.  Each
    gradient is folded into two numbers and dropped as soon as it is complete, so the pass
    never holds a second copy of the parameters."""
    dots: dict[str, float] = {}
    norms: dict[str, float] = {}

    def fold(name):
        def hook(p: torch.Tensor) -> None:
            g, theta = p.grad.reshape(-1), p.detach().reshape(-1)
            dots[name] = float(torch.dot(g, theta))
            norms[name] = float(g.norm() * theta.norm())
            p.grad = None
        return hook

    handles = [v.register_post_accumulate_grad_hook(fold(k)) for k, v in leaves.items()]
    try:
        with _running("the backward pass through the traced program"):
            loss.backward()
    finally:
        for h in handles:
            h.remove()
    return dots, norms


@contextlib.contextmanager
def _applied(params: generic.Point, claims, factors, seed: int):
    """Scale group members in place (exact for powers of two) and redraw no-effect members;
    on exit divide back and redraw the generic values exactly, so only one float64 copy of
    the parameters ever exists."""
    scales: dict[str, float] = {}
    for claim, a in zip(claims, factors):
        for name, s in claim.exponents.items():
            scales[name] = scales.get(name, 1.0) * a ** float(s)
    redrawn = [name for claim in claims for name in claim.redraw]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for name in redrawn:
        noise = torch.randn(params[name].shape, generator=gen, dtype=torch.float64)
        params[name] = noise.to(params[name]) * (params[name].abs().mean() + 1.0)
    for name, f in scales.items():
        params[name].mul_(f)
    try:
        yield
    finally:
        for name, f in scales.items():
            params[name].div_(f)
        for name in redrawn:
            params[name] = params.fresh(name)


@contextlib.contextmanager
def _float64_default():
    """Tensors the model creates without a dtype (``torch.zeros(n, d)``) are made at check
    precision too, so that they mix with our float64 parameters; restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def _running(what: str):
    """An error raised while running the user's code means the point cannot be measured."""
    try:
        yield
    except _CannotConfirm:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the model raises, we cannot measure
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise _CannotConfirm(f"{what} raised {type(exc).__name__} at the check point: "
                             f"{first}") from exc


def _cast(x, device):
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point():
            return x.to(device=device, dtype=torch.float64)
        return x.to(device)
    return x


def _floats(outs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [y for y in outs if y.is_floating_point() or y.is_complex()]


def _relative(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Largest per-output relative change (so a small output is not drowned by a big one)."""
    worst = 0.0
    for x, y in zip(a, b):
        x, y = x.detach().double(), y.detach().double()
        diff = float((x - y).norm())
        ref = float(y.norm())
        worst = max(worst, diff / ref if ref > 0 else (0.0 if diff == 0 else float("inf")))
    return worst
