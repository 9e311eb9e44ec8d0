"""The brute-force numerical check the static analysis is tested against (DESIGN.md §6).

At several generic float64 weight draws (one of them large, so that saturation shows) and
input draws, take the derivative of every output with respect to the log-scale of every
parameter tensor: column ``J[:, p] = d/dt f(θ_p · e^t)`` at ``t = 0`` (reverse-mode AD).
Draws are added until they stop adding rank.  Symmetries are the null space of J; parameter p
is ineffective iff some ``s ≥ 0`` in that null space has ``s_p > 0`` — one LP over null-space
coordinates gives the largest such support.  Every witness is re-checked with a finite
rescaling.

The check works in the eps → 0 limit, like the claims it tests: every normalisation epsilon
held as a module attribute is set to ~0 on the oracle's own copy, so that exact symmetries sit
at round-off (a clean gap in the singular values) instead of at eps/var.

Deliberately independent of the product's analysis: it shares only the plumbing that runs a
model under training semantics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from scipy.optimize import linprog
from torch.func import functional_call, jacfwd, jacrev

from wdaudit.engine.tracing.working_copy import (flatten_outputs, forget_caches, set_training_semantics,
                                        structural_copy, tensor_slots)

RANK_TOL = 1e-5  # singular values below this (relative, unit columns) span the null space;
# above float32 round-off, which models that compute norms in float32 (LLaMA) leave in J
TOL = 1e-6  # residual ‖J s‖ / ‖J‖|s| below which a claimed direction is a symmetry
FINITE_TOL = 1e-5
SLACK = 1e-4  # how far below zero a null vector's entry may dip, relative to its sum
SHARE = 1e-3  # the least share of a null vector a parameter must carry to count as in it
ZERO_COL = 1e-9
ABS_ZERO_COL = 1e-10
EPS_TINY = 1e-16  # as in the product: far below any healthy variance, finite for var = 0
_EPS_ATTRS = ("eps", "variance_epsilon", "epsilon", "layer_norm_eps", "norm_eps")


@dataclass(frozen=True)
class Oracle:
    names: tuple[str, ...]
    ineffective: frozenset[str]
    residual: dict[str, float]
    witness: dict[str, dict[str, float]]
    jacobian: np.ndarray  # rows: outputs of all draws; columns: parameters

    def residual_of(self, exponents: dict[str, float]) -> float:
        """Relative size of J s for a claimed symmetry s."""
        s = np.array([float(exponents.get(n, 0.0)) for n in self.names])
        return _residual(self.jacobian, s)


def check(model: torch.nn.Module, inputs, *, draws: int | None = None, seed: int = 0,
          int_high: int | None = None, trained=None) -> Oracle:
    """The oracle over the columns of the tensors training moves: floating parameters with
    ``requires_grad`` (and, where ``trained`` names them, only those).  Every other tensor is
    a constant, drawn like the rest but never a column: no symmetry moves it."""
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    copy = structural_copy(model)
    set_training_semantics(copy)
    _zero_eps(copy)
    drawn = tuple(n for n, p in model.named_parameters() if p.is_floating_point())
    names = tuple(n for n, p in model.named_parameters() if p.is_floating_point()
                  and p.requires_grad and (trained is None or n in trained))
    buffers = {n: (b.detach().double() if b.is_floating_point() else b.detach())
               for n, b in copy.named_buffers()}
    gen = torch.Generator().manual_seed(seed)
    blocks, points, rank = [], [], 0
    k = 0
    while True:
        large = k % 3 == 2
        theta = _draw(model, drawn, gen, large)
        x = _inputs(inputs, gen, k, int_high)
        blocks.append(_jacobian(copy, theta, buffers, x, names))
        points.append((theta, x))
        k += 1
        new_rank = _rank(_stack(blocks))[0]
        saturated = new_rank == rank or new_rank == len(names)
        rank = new_rank
        if draws is not None:
            if k >= draws:
                break
        elif (saturated and k >= 3) or k >= 40:
            break
    J = _stack(blocks)
    support, witness = _max_support(J)
    residual = {}
    verified: dict[bytes, bool] = {}  # one finite re-check per distinct witness direction

    def holds(s: np.ndarray) -> bool:
        key = (s > 1e-9).tobytes()
        if key not in verified:
            exps = {names[i]: float(v) for i, v in enumerate(s) if v > 1e-9}
            verified[key] = _finite_ok(copy, points[0], buffers, exps)
        return verified[key]

    ineffective = set()
    for j, name in enumerate(names):
        s = witness.get(j) if j in support else None
        if s is None or s[j] < 1e-3:
            residual[name] = float("inf")
            continue
        if not holds(s):
            # a witness shared from another parameter's ray can carry a near-null direction
            # of J that no finite rescaling honours; give j the DESIGN.md §6 LP of its own
            own = _direct(J, j)
            if own is not None and holds(own):
                s = witness[j] = own
        residual[name] = _residual(J, s)
        if holds(s):
            ineffective.add(name)
    return Oracle(names, frozenset(ineffective), residual,
                  {names[j]: {names[i]: float(v) for i, v in enumerate(s) if v > 1e-9}
                   for j, s in witness.items()}, J)


def _zero_eps(model: torch.nn.Module) -> None:
    for m in model.modules():
        for attr in _EPS_ATTRS:
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, EPS_TINY)
        if isinstance(m, torch.nn.Embedding):
            # both only change the gradient: J must be the derivative of the forward function
            m.padding_idx, m.scale_grad_by_freq = None, False


def _stack(blocks) -> np.ndarray:
    J = np.concatenate(blocks, axis=0)
    return J[np.isfinite(J).all(axis=1)]


def _rank(J: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """Numerical rank of J with unit-norm columns; also the null-space basis (columns).

    A column below ZERO_COL of the largest is zero (its parameter alone is a symmetry):
    normalising it would blow eps residue and round-off up to a unit vector of noise."""
    norms = np.linalg.norm(J, axis=0)
    # rows are derivatives of unit-norm outputs: a column this small is round-off even when
    # every column is (an output invariant to everything)
    live = norms > max(ZERO_COL * norms.max(initial=0.0), ABS_ZERO_COL)
    Jn = np.where(live, J / np.where(live, norms, 1.0), 0.0)
    _, S, Vt = np.linalg.svd(Jn, full_matrices=True)
    r = int((S > RANK_TOL * max(S.max(initial=0.0), 1e-300)).sum())
    return r, Vt[r:].T, norms


def _max_support(J: np.ndarray) -> tuple[set[int], dict[int, np.ndarray]]:
    """Parameters with a non-negative null vector through them, each with a sparse witness.

    For each j, one LP over null-space coordinates (an extreme ray through j when feasible):
    minimise Σs over s = N c with s_j = 1, every s_k ≥ -SLACK·Σs (round-off may dip a
    numerical null vector a hair below zero) and Σs ≤ 1/SHARE (j carries a real share)."""
    n = J.shape[1]
    _, N, norms = _rank(J)
    if N.shape[1] == 0:
        return set(), {}
    support: set[int] = set()
    witness: dict[int, np.ndarray] = {}
    for j in range(n):
        if j in witness:
            support.add(j)
            continue
        s_unit = _ray(N, j)
        if s_unit is None:
            continue
        s_unit = np.clip(s_unit, 0.0, None)
        # round-off members, not members: judged in unit coordinates, where noise is bounded by
        # the slack (in physical exponents a tiny column would blow it up)
        s_unit[s_unit < 1e-3 * s_unit.max()] = 0.0
        if s_unit[j] == 0.0:  # j itself is only round-off in the best ray through it
            continue
        support.add(j)
        s = s_unit / np.where(norms > 0, norms, 1.0)
        s = _snap(s / s.max())
        witness[j] = s
        for i in np.flatnonzero(s >= 1e-3):
            witness.setdefault(int(i), s)
    return {j for j in support if witness[j][j] >= 1e-3}, witness


def _direct(J: np.ndarray, j: int) -> np.ndarray | None:
    """min ‖J s‖₁ over s ≥ 0 with s_j = 1, straight on J (DESIGN.md §6): a witness through j
    when the minimum is round-off, else None."""
    m, n = J.shape
    norms = np.linalg.norm(J, axis=0)
    scale = np.where(norms > 0, norms, 1.0)
    A = J / scale  # unit columns: exponents in units where every column counts alike
    # variables [s (n), u (m)]: minimise Σu with -u ≤ A s ≤ u
    c = np.concatenate([np.zeros(n), np.ones(m)])
    a_ub = np.block([[A, -np.eye(m)], [-A, -np.eye(m)]])
    bounds = [(0, None)] * n + [(0, None)] * m
    bounds[j] = (1, 1)
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * m), bounds=bounds, method="highs")
    if res.status != 0:
        return None
    s_unit = np.clip(res.x[:n], 0.0, None)
    s_unit[s_unit < 1e-3 * s_unit.max()] = 0.0
    s = s_unit / scale
    s = _snap(s / s.max())
    return s if _residual(J, s) <= TOL and s[j] >= 1e-3 else None


def _snap(s: np.ndarray) -> np.ndarray:
    """True exponents are small rationals (1, 1/2, 2 …); the numerical null space gives them
    up to round-off over the conditioning of J (1e-3 where a model computes in float32, T5).
    Snap when that changes them by < 1e-2; the finite re-check decides either way."""
    snapped = np.array([float(Fraction(float(v)).limit_denominator(12)) for v in s])
    return snapped if np.abs(snapped - s).max() < 1e-2 else s


def _ray(N: np.ndarray, j: int) -> np.ndarray | None:
    n, d = N.shape
    total = N.sum(axis=0)  # Σs as a function of c
    a_ub = np.vstack([-N - SLACK * total[None, :],  # -s_k - SLACK·Σs ≤ 0
                      total[None, :]])               # Σs ≤ 1/SHARE
    b_ub = np.concatenate([np.zeros(n), [1.0 / SHARE]])
    res = linprog(total, A_ub=a_ub, b_ub=b_ub, A_eq=N[j:j + 1], b_eq=[1.0],
                  bounds=[(None, None)] * d, method="highs")
    return None if res.status != 0 else N @ res.x


def _residual(J: np.ndarray, s: np.ndarray) -> float:
    """‖J s‖ against the largest column, per unit of |s|: ~round-off for a true symmetry."""
    scale = np.linalg.norm(J, axis=0).max(initial=0.0) * np.abs(s).sum()
    return float(np.linalg.norm(J @ s) / scale) if scale > 0 else 0.0


def _draw(model, names, gen, large: bool) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    out = {}
    for name in names:
        p = params[name]
        z = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        if p.dim() >= 2 and p.shape[0] > 1 and p[0].numel() > 1:
            out[name] = z * math.sqrt((4.0 if large else 2.0) / p[0].numel())
        else:
            mean = float(p.detach().double().mean()) if p.numel() else 0.0
            center = mean if abs(mean) > 0.1 else 0.0
            out[name] = center + (2.5 if large else 0.7) * z
    return out


def _inputs(inputs, gen, k, int_high):
    out = []
    for x in inputs:
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            if k == 0:
                out.append(x.detach().double())
            else:
                scale = 4.0 if k % 3 == 2 else 1.0
                out.append(scale * torch.randn(x.shape, generator=gen, dtype=torch.float64))
        elif isinstance(x, torch.Tensor) and not x.is_floating_point() and x.dtype != torch.bool \
                and k > 0 and int_high is not None:
            out.append(torch.randint(0, int_high, x.shape, generator=gen, dtype=x.dtype))
        else:
            out.append(x)
    return tuple(out)


def _outputs(copy, theta, buffers, x) -> list[torch.Tensor]:
    state = dict(theta)
    state.update({k: v.clone() for k, v in buffers.items()})
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # tensors the model makes without a dtype
    try:
        forget_caches(copy)  # a memo of one draw's parameters is not the next draw's
        # once per module object: functional_call's tie_weights restores a module registered
        # twice in the wrong order (the product runs the model the same way)
        state = {slot: state[name] for slot, name in tensor_slots(copy).items() if name in state}
        out = functional_call(copy, state, x, strict=False, tie_weights=False)
    finally:
        torch.set_default_dtype(previous)
    return [y for y in flatten_outputs(out, "out", []) if y.is_floating_point()]


def _jacobian(copy, theta, buffers, x, names) -> np.ndarray:
    with torch.no_grad():
        ref = _outputs(copy, theta, buffers, x)
    norms = [max(float(_finite(y).norm()), 1e-300) for y in ref]  # a mask's -inf: not a size

    def f(t):
        scaled = dict(theta)  # the columns' tensors scaled, the constants as drawn
        scaled.update({n: theta[n] * torch.exp(t[i]) for i, n in enumerate(names)})
        ys = _outputs(copy, scaled, buffers, x)
        return torch.cat([(y / s).reshape(-1) for y, s in zip(ys, norms)])

    t0 = torch.zeros(len(names), dtype=torch.float64)
    try:
        J = jacrev(f)(t0)  # one batched backward per output: cheaper than n JVPs in practice
    except Exception:  # noqa: BLE001 - some ops lack a reverse-mode batching rule
        J = jacfwd(f)(t0)
    return J.detach().numpy()


def _finite_ok(copy, point, buffers, s: dict[str, float]) -> bool:
    theta, x = point
    with torch.no_grad():
        ref = _outputs(copy, theta, buffers, x)
        for a in (0.5, 2.0):
            scaled = {n: (v * a ** s[n] if n in s else v) for n, v in theta.items()}
            got = _outputs(copy, scaled, buffers, x)
            for y, r in zip(got, ref):
                same = torch.equal(torch.isfinite(y), torch.isfinite(r)) and \
                    torch.equal(y[~torch.isfinite(r)], r[~torch.isfinite(r)])  # NaN: never
                if not same or float(_finite(y - r).norm()) > \
                        FINITE_TOL * max(float(_finite(r).norm()), 1e-300):
                    return False
    return True


def _finite(y: torch.Tensor) -> torch.Tensor:
    """The finite entries (inf - inf is NaN: those are compared as patterns, above)."""
    return y[torch.isfinite(y)]
