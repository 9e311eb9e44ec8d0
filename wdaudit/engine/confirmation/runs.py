"""What every confirmation run shares: running the user's code at check precision, telling a
missing kernel from a model that raises, scaling claims in place and measuring changes."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from . import generic_point as generic
from ...messages import first_line
from ..analysis.names import short
from ...report import Check


class CannotConfirm(RuntimeError):
    def __init__(self, message: str, kernel: bool = False, raised: bool = False,
                 final: bool = False):
        super().__init__(message)
        self.kernel = kernel  # the failure is this precision's (a missing kernel, an overflow)
        self.raised = raised or kernel  # the user's code raised (another precision may run)
        self.final = final  # no other precision or batch changes it
        self.passes = 0  # how many passes ran before it
        self.trail: tuple[str, ...] = ()  # and which


class Strayed(Exception):
    """A specialised program and the model part ways at a point (the model branches otherwise
    there than in the run the program was specialised on)."""

    def __init__(self, gap: float, detail: str = ""):
        super().__init__(gap)
        self.gap, self.detail = gap, detail
        self.why = (f"the model branches otherwise here than in the run its specialised "
                    f"program froze ({detail or f'apart by {gap:.2e}'})")
        self.reason = f"cannot confirm: {self.why}"


def unseen(names: set[str]) -> str:
    """Why claims from a specialised program's first recording cannot be judged at a point
    where it was recorded again and read parameters the first never did."""
    return (f"the program recorded again at confirmation's points reads {short(sorted(names))},"
            " which the recording the claims came from never reached (such as an expert no "
            "example token was routed to); its checks cannot judge claims made without them")


def unmeasured(why: str) -> Check:
    """A check that could not measure: not confirmed, every number NaN, the reason."""
    nan = float("nan")
    return Check(confirmed=False, max_relative_change=nan, exact_relative_change=nan,
                 euler_residual=nan, eps_limited=False, note=why)


def version(point: generic.Point) -> tuple[int, int]:
    """Which values a point holds, as a key never repeated for other values."""
    return (point.serial, point.changes)


@dataclass(frozen=True)
class Tolerances:
    exact: float
    euler: float


FLOAT32_TOL = 2**10 * torch.finfo(torch.float32).eps
"""Exact and Euler tolerance when an op has no float64 kernel: a thousand units of float32
round-off (1.2e-4), the float64 tolerances' margin being out of reach in float32."""


def tolerances(dtype: torch.dtype, exact: float, euler: float) -> Tolerances:
    """The float64 tolerances, or float32's round-off where that is the check's precision."""
    if dtype == torch.float64:
        return Tolerances(exact, euler)
    return Tolerances(max(exact, FLOAT32_TOL), max(euler, FLOAT32_TOL))


def gradient_products(loss: torch.Tensor, leaves: Mapping[str, torch.Tensor]):
    """``⟨∇_p L, θ_p⟩`` and ``‖∇_p L‖‖θ_p‖`` for every leaf, from one backward pass.  Each
    gradient is folded into two numbers and dropped as soon as it is complete, so the pass
    never holds a second copy of the parameters."""
    dots: dict[str, float] = {}
    norms: dict[str, float] = {}

    def fold(name):
        def hook(p: torch.Tensor) -> None:
            g, theta = p.grad.reshape(-1), p.detach().reshape(-1)
            dots[name] = float(torch.dot(g, theta))
            norms[name] = norm(g) * norm(theta)
            p.grad = None
        return hook

    handles = [v.register_post_accumulate_grad_hook(fold(k)) for k, v in leaves.items()]
    try:
        with running("the backward pass through the traced program"):
            loss.backward()
    finally:
        for h in handles:
            h.remove()
    return dots, norms


@contextlib.contextmanager
def applied(params: generic.Point, claims, factors, seed: int):
    """Scale group members in place (exact for powers of two) and redraw no-effect members;
    on exit divide back and redraw the generic values exactly, so only one float64 copy of
    the parameters ever exists."""
    scales: dict[str, float] = {}
    for claim, a in zip(claims, factors):
        for name, s in claim.exponents.items():
            scales[name] = scales.get(name, 1.0) * a ** float(s)
    redrawn = [name for claim in claims for name in claim.redraw]
    params.changes += 1
    for name, noise in zip(redrawn, noise_like([params[n] for n in redrawn], seed)):
        params[name] = noise * (params[name].abs().mean() + 1.0)
    for name, f in scales.items():
        params[name].mul_(f)
    try:
        yield
    finally:
        params.changes += 1  # the values are the point's own again, but not known to be
        for name, f in scales.items():
            params[name].div_(f)
        for name in redrawn:
            params[name] = params.fresh(name)


def euler_residuals(outs: list[torch.Tensor], leaves: generic.Point, claims, seed: int,
                    floor: float) -> list[float]:
    """Each claim's Euler residual ``|Σ_p s_p ⟨∇_p L, θ_p⟩|`` over its gradient scale, for
    ``L`` the outputs against seeded noise.  ``outs`` is emptied: outputs can be large, and
    the graph keeps what the backward needs."""
    weights = noise_like(outs, seed)
    loss = sum((y * w).sum() for y, w in zip(outs, weights) if y.requires_grad)
    # |L| ≤ Σ‖y‖‖w‖: the natural size of any log-scale derivative of L
    loss_scale = sum(norm(y.detach()) * norm(w) for y, w in zip(outs, weights))
    names = [k for k, v in leaves.items() if v.requires_grad]
    outs.clear()
    del weights
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        return [0.0] * len(claims)
    dots, norms = gradient_products(loss, {k: leaves[k] for k in names})
    out = []
    for claim in claims:
        e = sum(s * dots.get(k, 0.0) for k, s in claim.exponents.items())
        scale = sum(abs(s) * norms.get(k, 0.0) for k, s in claim.exponents.items())
        members = [e, scale, loss_scale] + [norms.get(k, 0.0) for k in claim.redraw]
        if not all(math.isfinite(v) for v in members):
            # a NaN gradient compares as neither large nor small: the identity is not
            # measured here (NaN: "cannot confirm"), never passed by default
            out.append(float("nan"))
            continue
        # a group whose whole gradient is negligible at this point (saturated or dead
        # units, a norm over a constant channel) cannot be judged here: the identity has no
        # power there and the finite checks decide
        residual = abs(e) / scale if scale > floor * loss_scale else 0.0
        for k in claim.redraw:  # no effect: the gradient itself must vanish
            residual = max(residual, norms.get(k, 0.0) / max(loss_scale, 1e-300))
        out.append(residual)
    return out


def noise_like(tensors: Sequence[torch.Tensor], seed: int) -> list[torch.Tensor]:
    """Seeded standard normal noise shaped like each tensor, drawn on its device (a CPU draw
    and a copy of an output-sized tensor would cost a GPU more than the check itself)."""
    if not tensors:
        return []
    device = tensors[0].device
    where = device if device.type == "cuda" else torch.device("cpu")
    gen = torch.Generator(device=where).manual_seed(seed)
    return [torch.randn(t.shape, generator=gen, dtype=torch.float64, device=where)
            .to(device=t.device, dtype=t.dtype) for t in tensors]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Tensors the model creates without a dtype (``torch.zeros(n, d)``) are made at check
    precision too, so that they mix with our parameters; restored afterwards."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def running(what: str):
    """An error raised while running the user's code means the point cannot be measured."""
    try:
        yield
    except CannotConfirm:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the model raises, we cannot measure
        first = first_line(exc, 200)
        raise CannotConfirm(f"{what} raised {type(exc).__name__} at the check point: "
                             f"{first}", kernel=_missing_kernel(exc), raised=True) from exc


# Whether a failure is the precision's (the op has no float64 kernel, or float64 values do not
# fit the model's own float32 tensors) rather than the model's.  torch says so only in words:
# its dtype checks raise the generic RuntimeError of TORCH_CHECK (a dispatch switch without
# Double may raise NotImplementedError, a Python-level check TypeError), with no type, code or
# attribute of their own, and the same types are what a model raises for its own reasons.  So
# the types narrow it and the message decides, by these phrases, kept here and nowhere else.
_PRECISION_TYPES = (RuntimeError, TypeError, NotImplementedError)
_PRECISION_PHRASES = (
    "not implemented for 'double'",  # a dispatch switch without Double
    "expected scalar type",  # an op given float64 beside float32
    # every other kernel's dtype check in its own words ("expected m1 and m2 to have the same
    # dtype", "Expected mat_a to be Float32, BFloat16 or Float16 matrix, got Double")
    "float64", "double", "dtype",
    # a model filling a float32 tensor with float64's finfo.min (fsmt's causal mask)
    "cannot be converted to type float without overflow",
)


def _missing_kernel(exc: Exception) -> bool:
    """Whether an error is about the precision (no float64 kernel), not about the model."""
    if not isinstance(exc, _PRECISION_TYPES):
        return False
    text = str(exc).lower()
    return any(phrase in text for phrase in _PRECISION_PHRASES)


def cast(x, device, dtype: torch.dtype = torch.float64):
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.is_floating_point():
            return x.to(device=device, dtype=dtype)
        return x.to(device)
    return x


def floats(outs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [y for y in outs if y.is_floating_point() or y.is_complex()]


def apart(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """:func:`relative` for two runs that should be one function: NaN or Inf in one and not
    at the same places in the other is infinitely apart (a NaN never compares as large)."""
    if len(a) != len(b):
        return float("inf")
    for x, y in zip(a, b):
        if x.shape != y.shape or not torch.equal(torch.isfinite(x), torch.isfinite(y)):
            return float("inf")
    finite = [(x[torch.isfinite(x)], y[torch.isfinite(y)]) for x, y in zip(a, b)]
    return relative([x for x, _ in finite], [y for _, y in finite])


def infinities(outs: Sequence[torch.Tensor]) -> list[torch.Tensor | None]:
    """Per output, its ±inf entries (0 elsewhere), or None where it is all finite.  NaN stays
    NaN, so it never equals another run's pattern."""
    return [None if bool(torch.isfinite(y).all()) else
            torch.where(torch.isfinite(y), torch.zeros((), dtype=y.dtype, device=y.device), y)
            for y in outs]


def same_infinities(outs: Sequence[torch.Tensor], pattern: Sequence[torch.Tensor | None]
                    ) -> bool:
    """Whether every output is ±inf at exactly the entries ``pattern`` has, with its signs,
    and finite (not NaN) everywhere else."""
    if len(outs) != len(pattern):
        return False
    for mine, theirs in zip(infinities(outs), pattern):
        if mine is None or theirs is None:
            if mine is not theirs:
                return False
        elif mine.shape != theirs.shape or not torch.equal(mine, theirs):
            return False
    return True


def structural(real: list[torch.Tensor], exact: list[torch.Tensor], dtype: torch.dtype
               ) -> list[torch.Tensor | None]:
    """The base point's infinities, where the model and its program (eps -> 0) put the same
    ±inf at the same entries and nothing is NaN: a mask's -inf (a detector's logits at padded
    text positions) is part of the function.  Every later run must repeat them exactly, and
    only the finite entries are compared (``relative``, and the Euler check's loss); anything
    else non-finite cannot be measured.  A model NaN in float64 itself (canine: its masks
    overflow there) is run at the precision it runs at, as for a missing kernel."""
    pattern = infinities(real)
    if any(bool(torch.isnan(y).any()) for y in real) or not same_infinities(exact, pattern) \
            or all(p is not None and bool(torch.isinf(p).all()) for p in pattern):
        raise CannotConfirm("the model's output is NaN or Inf at the check point",
                            kernel=any(p is not None for p in pattern)
                            and dtype == torch.float64)
    return pattern


def finite_part(outs: list[torch.Tensor], pattern: Sequence[torch.Tensor | None]
                ) -> list[torch.Tensor]:
    """The outputs with their structural infinities zeroed (they carry no gradient)."""
    return [y if p is None else torch.where(torch.isinf(p), torch.zeros((), dtype=y.dtype,
                                                                        device=y.device), y)
            for y, p in zip(outs, pattern)]


def relative(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """Largest per-output relative change (so a small output is not drowned by a big one),
    over the finite entries of outputs with the same infinities (``structural``); other
    infinities, or NaN, are an infinite change."""
    worst = 0.0
    if len(a) != len(b):
        return float("inf")
    for x, y in zip(a, b):
        if x.shape != y.shape:  # a specialised program's frozen sizes (vits: durations)
            return float("inf")
        x, y = x.detach().double(), y.detach().double()
        finite = torch.isfinite(y)
        if not bool(finite.all()):
            if not same_infinities([x], infinities([y])):
                return float("inf")
            x, y = x[finite], y[finite]
        diff = norm(x - y)
        if diff != diff:  # NaN where the other is not: never "no change" (max() would drop it)
            return float("inf")
        ref = norm(y)
        worst = max(worst, diff / ref if ref > 0 else (0.0 if diff == 0 else float("inf")))
    return worst


def norm(t: torch.Tensor) -> float:
    """‖t‖, without the overflow of its sum of squares (entries past 1e154 square past float64:
    an inf norm of finite entries made inf/inf a NaN that compared as no change)."""
    plain = float(t.detach().norm())
    if plain != float("inf"):  # the common case, without a copy of t (a gradient's size)
        return plain
    top = float(t.detach().abs().max())
    return top * float((t.detach() / top).norm()) if math.isfinite(top) else top


def refuse_users_own(read: set[str], baked: set[str]) -> None:
    """Raises (final: no precision or batch changes it) where the model read the user's own
    tensors while run on ours, or its program holds one as a constant."""
    if not read and not baked:
        return
    names = sorted(read | baked)
    shown = ", ".join(f"'{n}'" for n in names[:3]) + \
        (f" and {len(names) - 3} more" if len(names) > 3 else "")
    raise CannotConfirm(
        f"the model reads the user's own tensor{'s' if len(names) > 1 else ''} {shown} outside "
        "the tensors the audit swaps in (a closure, hook or global the working copy cannot "
        "redirect)" + (": the traced program holds it as a constant" if baked else "")
        + "; a check there would measure another function than the one trained", final=True)


def constants_of(program, tensors: Mapping[str, torch.Tensor]) -> set[str]:
    """Names of ``tensors`` (the user's) that the program holds as constants (by storage):
    an export that met a closure over the model bakes the tensor in."""
    held = {c.untyped_storage().data_ptr() for c in program.constants.values()
            if isinstance(c, torch.Tensor) and not c.is_meta and c.numel()}
    return {n for n, t in tensors.items()
            if not t.is_meta and t.numel() and t.untyped_storage().data_ptr() in held}
