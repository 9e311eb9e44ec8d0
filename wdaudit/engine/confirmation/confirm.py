"""Stage 7: confirm every static claim numerically (DESIGN.md §4).

All claims are checked together, each group scaled by a random ``a ∈ {0.5, 2}``, no-effect
parameters redrawn, bisection only when that fails.  A claim is confirmed when

* fidelity: the traced program reproduces the real model at the check point and at the
  scaled point, so the model's own change under the scaling is what eps explains (``_faithful``;
  a specialised program, branches frozen by make_fx, is followed at every point, and recorded
  again where the model's branches there are others: ``anchor``); the model must not read
  the user's own tensors while it runs on ours (a closure the copy could not redirect);
* exact invariance: the traced program with every normalisation eps → 0 does not change;
* first order: the Euler identity ``Σ_p s_p ⟨∇_p L, θ_p⟩ = 0`` holds at a second, saturating
  point (a no-effect claim swamped by round-off there is redrawn instead).  A no-effect claim
  may pass with the model's own eps instead of eps → 0 (it holds at any eps).

Above ``EPS_MATTERS`` a claim is flagged eps-limited (true only in the eps → 0 limit).
Memory: one float64 copy of the parameters at a time, plus activations and one gradient; the
bill is estimated first (``budget``).  What cannot be measured is "cannot confirm: ...".  What
adapts is never a check (point, precision, batch), and the Confirmation says which was used.
"""

from __future__ import annotations

import contextlib
import random
import time
from dataclasses import replace

import torch

from ...report import CHECKED, FAILED, SKIPPED, Check, Confirmation
from .. import ceiling
from ..analysis.claims import Claims
from ..rng import seeded
from ..tracing.program import EPS_TINY, placed, run, run_model
from ..tracing.specialise import is_specialised, read_params, respecialised
from ..tracing.working_copy import reads_of
from . import budget, runs, second_looks
from .plan import Plan, Setup, plan_for
from . import generic_point as generic
from .euler import SaturatingPoint

TOL_EXACT = 1e-8  # relative output change allowed with eps -> 0 (float64 round-off)
TOL_EULER = 1e-6  # |E| relative to the group's own gradient scale ...
TOL_FAITHFUL = 1e-4  # real model vs traced program, both eps as is (the model may cast to fp32)
EPS_MATTERS = 1e-4  # real-model change above which a claim is reported as eps-limited
PLAUSIBLY_EPS = 1e-2  # residuals above this are never attributed to eps
_DISAGREE = "the traced program and the model disagree"
_NO_GRADIENT = "cannot confirm: the gradient is NaN or Inf at the saturating point"
AT_MODEL_EPS = "no effect at the model's own eps (eps -> 0 is 0/0 in a channel constant here)"


def confirm(claims: Claims, setup: Setup) -> Confirmation:
    with torch.inference_mode(False), torch.enable_grad():  # the Euler check differentiates
        return _confirm(claims, setup)


def _confirm(claims: Claims, setup: Setup) -> Confirmation:
    device = setup.device
    if not claims.claims:
        return Confirmation(CHECKED, str(device), 0)
    degrees = claims.symmetries.degrees
    program = degrees.influence.graph.program
    if is_specialised(program) and not setup.enabled:
        # its branches are one run's: a claim from it stands only where checks show the
        # model taking the same branches, so none stands unchecked
        return _failed(claims.claims, str(device), 0, "cannot confirm: confirmation is "
                       "switched off, and the claims of a specialised program need it", {})
    if not setup.enabled:
        return Confirmation(SKIPPED, str(device), 0, "confirmation switched off")
    if device.type == "meta" or any(p.is_meta for p in setup.params.values()):
        return Confirmation(SKIPPED, "meta", 0, "parameters are on the meta device: static "
                            "analysis only, claims are not confirmed" + budget.TWIN_OFFER)
    plan = plan_for(program, setup)
    if plan.short:
        return _failed(claims.claims, str(device), 0, plan.short, {}, plan.extra)
    start = time.perf_counter()
    program = placed(program, device)
    timings = {"generic point": time.perf_counter() - start}
    try:
        done = _attempt(claims, program, setup, plan, timings)
        if not (plan.capped and any(c.note.startswith(_DISAGREE) for c in done.checks)):
            return done
        passes, trail = done.passes, done.trail
    except runs.CannotConfirm as exc:
        if not plan.capped or exc.kernel or exc.final:
            return _fallbacks(claims, program, setup, plan, timings, exc)
        passes, trail = exc.passes, exc.trail
    # on fewer examples the model disagreed with its program, or could not run: a program
    # specialised to the batch after all; the claims are judged on the full batch instead
    plan = plan_for(program, setup, cap=False)
    if plan.short:
        return _failed(claims.claims, str(device), passes, plan.short, timings,
                       dict(plan.extra, trail=trail))
    try:
        done = _attempt(claims, program, setup, plan, timings)
        return replace(done, passes=done.passes + passes, trail=trail + done.trail)
    except runs.CannotConfirm as exc:
        exc.passes, exc.trail = exc.passes + passes, trail + exc.trail
        return _fallbacks(claims, program, setup, plan, timings, exc)


def _fallbacks(claims: Claims, program, setup: Setup, plan: Plan, timings,
               exc: runs.CannotConfirm) -> Confirmation:
    """After a float64 attempt that could not run: float32 where the model raised (a missing
    kernel, or a model refusing float64: an assert on a buffer's dtype), else the reason."""
    extra = dict(plan.extra, trail=exc.trail)
    if not exc.raised or exc.final or plan.dtype == torch.float32:
        return _failed(claims.claims, str(setup.device), exc.passes, f"cannot confirm: {exc}",
                       timings, extra)
    # the same checks in float32, float32 tolerances; the report says why
    half = replace(plan, dtype=torch.float32, estimate=(plan.estimate or 0) // 2)
    try:
        done = _attempt(claims, program, setup, half, timings)
        return replace(done, passes=done.passes + exc.passes, trail=exc.trail + done.trail,
                       fallback=f"float64 could not run: {exc}")
    except runs.CannotConfirm as again:
        reason = f"cannot confirm: {exc}; in float32 too: {again}"
        return _failed(claims.claims, str(setup.device), exc.passes + again.passes, reason,
                       timings, dict(extra, trail=exc.trail + again.trail))


def _failed(todo, device: str, passes: int, reason: str, timings, extra=None) -> Confirmation:
    return Confirmation(FAILED, device, passes, reason, (),
                        tuple(runs.unmeasured(reason) for _ in todo),
                        timings=dict(timings), **(extra or {}))


def _attempt(claims: Claims, program, setup: Setup, plan: Plan, timings) -> Confirmation:
    todo, inputs, dtype = claims.claims, plan.inputs, plan.dtype
    start = time.perf_counter()
    ctx = _Context(program, tuple(claims.symmetries.degrees.eps_sites), setup, inputs, dtype)
    timings["generic point"] += time.perf_counter() - start
    rng = random.Random(setup.seed)
    factors = [rng.choice((0.5, 2.0)) for _ in todo]
    results: dict[int, Check] = {}
    start = time.perf_counter()
    # a specialised model's sizes may follow its weights: past half of what is free (the op in
    # flight may be as large again) it is stopped; on a GPU such an allocation raises anyway
    watched = is_specialised(program) and torch.device(setup.device).type == "cpu"
    free = budget.available(torch.device("cpu"), setup.memory_budget) if watched else None
    headroom = free // 2 if free is not None else None
    try:
        with ceiling.watching(headroom):
            ctx.baseline()
            if ctx.fidelity0 > TOL_FAITHFUL:
                # no claim can pass where the program is not the model: bisecting would only run
                # every claim alone to learn the same (efficientformer: 525 passes)
                results = dict.fromkeys(range(len(todo)), ctx.unfaithful())
                euler = [0.0] * len(todo)
            else:
                ctx.bisect(list(range(len(todo))), todo, factors, results)
                timings["checks"] = time.perf_counter() - start
                start = time.perf_counter()
                euler = ctx.saturating.euler(todo)
                timings["euler"] = time.perf_counter() - start
    except runs.CannotConfirm as exc:
        exc.passes, exc.trail = ctx.passes, tuple(ctx.trail)
        raise
    finally:
        ctx.release()
    tol = runs.tolerances(dtype, TOL_EXACT, TOL_EULER)
    checks, defects = [], []
    for i, claim in enumerate(todo):
        check = results[i]
        ok = check.confirmed and euler[i] <= tol.euler
        note = check.note if not check.confirmed or euler[i] <= tol.euler else \
            f"Euler residual {euler[i]:.2e}" if euler[i] == euler[i] else _NO_GRADIENT
        if not ok and ctx.unseen and not note.startswith("cannot confirm"):
            # the checks ran on ops the analysis never saw: they cannot judge its claims
            note = f"cannot confirm: {runs.unseen(ctx.unseen)}; {note}"
        checks.append(replace(check, confirmed=ok, euler_residual=euler[i], note=note))
        if not ok and not note.startswith("cannot confirm"):  # a failed check, not a gap
            members = ", ".join(list(claim.exponents) + list(claim.redraw))
            defects.append(f"claim over [{members}] failed confirmation: {note}")
    return Confirmation(CHECKED, str(setup.device), ctx.passes, "", tuple(defects),
                        tuple(checks), precision=str(dtype).removeprefix("torch."),
                        tolerances=dict(exact=tol.exact, euler=tol.euler, faithful=TOL_FAITHFUL),
                        spread=ctx.saturating.spread, timings=dict(timings), trail=tuple(ctx.trail),
                        recorded_again=tuple(ctx.recorded), **plan.extra)


class _Context:
    """One confirmation run: the float64 point, the casted buffers, constants and inputs, and
    the saturating point it holds (drawn from the generic one when the checks are done)."""

    def __init__(self, program, eps_sites, setup: Setup, inputs: tuple, dtype: torch.dtype):
        params, device, seed = setup.params, setup.device, setup.seed
        buffers = dict(program.root.named_buffers())
        self.program = program
        self.eps = eps_sites
        self.device = device
        self.dtype = dtype
        self.tol = runs.tolerances(dtype, TOL_EXACT, TOL_EULER)
        self.source = params  # the user's tensors: only read, for shapes and centres
        self.params = generic.draw(params, device=device, dtype=dtype, seed=seed)
        self.saturating = SaturatingPoint(self)
        self.buffers = {k: runs.cast(v, device, dtype) for k, v in buffers.items()}
        self.constants = {k: runs.cast(v, device, dtype) for k, v in program.constants.items()}
        self.inputs = tuple(runs.cast(x, device, dtype) for x in inputs)
        self.passes = 0
        self.trail: list[str] = []  # every pass, named: where it ran and what
        self.at = "check point"  # where the passes now run (the protocol's named stages)
        self.seed = seed
        # a specialised program must follow the model at every point (those it did, by version)
        self.followed: set | None = None
        self._last_real: tuple = ((), None)
        self.recorded: list[str] = []  # the points its ops were recorded again at
        # parameters a recording again reads that the one the claims came from never did
        self.first_read = read_params(program) if is_specialised(program) else set()
        self.unseen: set[str] = set()

    def release(self) -> None:
        """Drop the points and the outputs now, not when the caller's frame goes."""
        self.handover()
        self.saturating.large, self._last_real = None, ((), None)

    def handover(self) -> generic.Point:
        """The generic point, given up: the saturating point is drawn from it, in place."""
        point, self.params, self.real0, self.exact0 = self.params, None, None, None
        return point

    # -- runs -------------------------------------------------------------------------
    def program_run(self, params, eps_zero: bool, eps_value: float = EPS_TINY
                    ) -> list[torch.Tensor]:
        if self.followed is not None:
            self._follows(params)
        return self._run(params, eps_zero, eps_value)

    def count(self, what: str, at: str | None = None, passes: int = 1) -> None:
        self.passes += passes
        self.trail.append(f"{at or self.at}: {what}")

    def _run(self, params, eps_zero: bool, eps_value: float = EPS_TINY, graded: str = ""
             ) -> list[torch.Tensor]:  # graded: the saturating point's run, for Euler's gradient
        self.count("program, eps " + (f"-> 0 ({eps_value:g})" if eps_zero else "as is")
                   + (f", {graded}" if graded else ""), at="saturating point" if graded else None)
        with contextlib.nullcontext() if graded else torch.no_grad(), \
                seeded(self.seed, self.device), runs.default_dtype(self.dtype), \
                runs.running("the traced program"):
            return runs.floats(run(self.program, params, self.buffers, self.inputs,
                               constants=self.constants, eps_zero=self.eps if eps_zero else (),
                               promote=self.dtype, eps_value=eps_value))

    def graded_run(self, leaves, eps_value: float, what: str) -> list[torch.Tensor]:
        if self.followed is not None:
            self.anchor(leaves, "saturating point")
        return self._run(leaves, True, eps_value, graded=what)

    def _real(self, params) -> list[torch.Tensor]:
        key = runs.version(params)
        if self.followed is not None and key == self._last_real[0]:
            return self._last_real[1]  # a specialised program's follow check just ran it
        out = self._real_run(params)
        if self.followed is not None:
            self._last_real = (key, out)
        return out

    def _real_run(self, params) -> list[torch.Tensor]:
        self.count("model")
        with torch.no_grad(), seeded(self.seed, self.device), runs.default_dtype(self.dtype), \
                runs.running("the model"):
            return runs.floats(run_model(self.program.root, params, self.buffers, self.inputs))

    def baseline(self) -> None:
        with reads_of(self.source) as read:
            self.real0 = self._real(self.params)
        # a copy computing with the user's tensors, not the ones swapped in, is another function
        runs.refuse_users_own(read, runs.constants_of(self.program, self.source))
        if not any(y.numel() for y in self.real0):
            raise runs.CannotConfirm("the model has no floating-point output to measure")
        gap = None
        if is_specialised(self.program):
            self.followed = set()  # its branches are the user's weights': are they this point's?
            try:
                gap = self.anchor(self.params, "check point")
            except runs.Strayed as exc:
                raise runs.CannotConfirm(exc.why) from exc
        self.exact0 = self.program_run(self.params, eps_zero=True)
        self.infs = runs.structural(self.real0, self.exact0, self.dtype)  # a mask's -inf
        # a specialised program's follow check has just measured it
        self.fidelity0 = gap if gap is not None else \
            self._faithful(self.exact0, self.real0, runs.relative)

    def _faithful(self, exact: list[torch.Tensor], real: list[torch.Tensor],
                  measure=runs.apart) -> float:
        """How far the model is from its program here: the eps -> 0 run of the exact check
        serves where it is within TOL_FAITHFUL (eps effects cancelling an unfaithful program's
        error would be a coincidence at a generic point), else the program runs at eps as is."""
        near = measure(exact, real)
        if near <= TOL_FAITHFUL:
            return near
        return measure(self.program_run(self.params, eps_zero=False), real)

    def anchor(self, params, where: str) -> float | None:
        """Makes a specialised program follow the model at a point confirmation measures from
        (the generic and the saturating one): where the model takes other branches there than
        in the run the program froze (an MoE router's split sizes follow its weights), its ops
        are recorded again at this point.  Raises ``runs.Strayed`` if even that does not follow;
        returns the gap (None: followed before)."""
        try:
            return self._follows(params)
        except runs.Strayed as exc:
            first = exc
        with torch.no_grad(), seeded(self.seed, self.device), runs.default_dtype(self.dtype):
            try:
                self.program, self.eps = respecialised(self.program, params, self.buffers,
                                                       self.inputs, self.eps)
            except Exception as exc:  # noqa: BLE001 - recording again is a second chance only
                raise runs.Strayed(first.gap, f"{first.detail}; recorded again: "
                                   f"{type(exc).__name__}: {exc}") from exc
        self.constants = {k: runs.cast(v, self.device, self.dtype)
                          for k, v in self.program.constants.items()}
        self.unseen |= read_params(self.program) - self.first_read
        self.followed = set()  # the points followed so far followed the other recording
        gap = self._follows(params)
        self.recorded.append(where)
        return gap

    def _follows(self, params) -> float | None:
        """Raises ``runs.Strayed`` where the model and its program part ways; returns the gap."""
        key = runs.version(params)
        if key in self.followed:
            return None
        detail = ""
        with torch.no_grad():
            theirs = self._real(params)
            try:
                gap = runs.apart(self._run(params, eps_zero=False), theirs)
            except runs.CannotConfirm as exc:  # its frozen shapes do not fit this point
                if exc.kernel:
                    raise
                gap, detail = float("inf"), str(exc)
        if gap > TOL_FAITHFUL:
            raise runs.Strayed(gap, detail)
        self.followed.add(key)
        return gap

    def unfaithful(self) -> Check:
        if is_specialised(self.program):  # its branches are another run's: nothing is known
            return runs.unmeasured(runs.Strayed(self.fidelity0).reason)
        return runs.unmeasured(f"{_DISAGREE} by {self.fidelity0:.2e} at the check point")

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
        try:
            return self._scaled(claims, factors)
        except runs.Strayed as exc:  # the scaling changed the model's branches
            return runs.unmeasured(exc.reason)

    def _scaled(self, claims, factors) -> Check:
        self.at = f"scaled ({len(claims)} claim{'s' if len(claims) > 1 else ''})"
        # outputs are reduced to numbers at once (they can be large); a specialised program is
        # followed in program_run
        with runs.applied(self.params, claims, factors, self.seed):
            moved = self._real(self.params)
            real = runs.relative(moved, self.real0)
            scaled = self.program_run(self.params, eps_zero=True)
            exact = runs.relative(scaled, self.exact0)
            # only a model that moved beyond fidelity's tolerance needs its program to explain
            # the move: near the invariant eps -> 0 program here and at the check point, its
            # unexplained part is bounded as by the program at the model's eps (2 x TOL_FAITHFUL)
            gap = 0.0 if self.followed is not None or real <= TOL_FAITHFUL else \
                self._faithful(scaled, moved)
            del moved, scaled
        if self.tol.exact < exact <= PLAUSIBLY_EPS:
            exact = second_looks.finer_limit(self, claims, factors, exact)
        note = ""
        if exact > self.tol.exact and not any(c.exponents for c in claims):
            exact = min(exact, second_looks.redrawn(self, self.params, claims,
                                                    eps_zero=False))
            note = AT_MODEL_EPS if exact <= self.tol.exact else ""
        faithful = self.fidelity0
        ok = exact <= self.tol.exact and faithful <= TOL_FAITHFUL and gap <= TOL_FAITHFUL
        if faithful > TOL_FAITHFUL:
            note = f"{_DISAGREE} by {faithful:.2e} at the check point"
        elif gap > TOL_FAITHFUL:
            note = (f"the model changed by {real:.2e} under the scaling, more than its traced "
                    f"program with the model's own eps explains (apart by {gap:.2e})")
        elif exact > self.tol.exact:
            note = f"output changed by {exact:.2e} (relative) with eps -> 0"
        return Check(confirmed=ok, max_relative_change=real, exact_relative_change=exact,
                     euler_residual=0.0, eps_limited=real > EPS_MATTERS, note=note)
