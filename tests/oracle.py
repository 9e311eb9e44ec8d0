"""The brute-force numerical check the static analysis is tested against (DESIGN.md §6).

At several generic float64 weight draws (one of them large, so that saturation shows) and
input draws, take the derivative of every output with respect to the log-scale of every
parameter tensor: column ``J[:, p] = d/dt f(θ_p · e^t)`` at ``t = 0``.  Symmetries are the
null space of J; parameter p is ineffective iff ``min ‖J s‖₁ over s ≥ 0, s_p = 1`` is (relatively)
zero — one LP per parameter.  Every witness is then re-checked with a finite rescaling.

Deliberately independent of the product's analysis: it shares only the plumbing that runs a
model under training semantics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linprog
from torch.func import functional_call, jacfwd, jacrev

from wdaudit.workcopy import flatten_outputs, set_training_semantics, structural_copy

TOL = 1e-3  # relative residual below which a direction counts as a symmetry (eps effects)
FINITE_TOL = 1e-2


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
        num = np.abs(self.jacobian @ s).sum()
        den = (np.abs(self.jacobian).sum(axis=0) * np.abs(s)).sum()
        return float(num / den) if den > 0 else 0.0


def check(model: torch.nn.Module, inputs, *, draws: int | None = None, seed: int = 0,
          int_high: int | None = None) -> Oracle:
    inputs = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    copy = structural_copy(model)
    set_training_semantics(copy)
    names = tuple(n for n, p in model.named_parameters() if p.is_floating_point())
    buffers = {n: (b.detach().double() if b.is_floating_point() else b.detach())
               for n, b in copy.named_buffers()}
    gen = torch.Generator().manual_seed(seed)
    blocks, points, rank = [], [], 0
    k = 0
    while True:
        large = k % 3 == 2
        theta = _draw(model, names, gen, large)
        x = _inputs(inputs, gen, k, int_high)
        blocks.append(_jacobian(copy, theta, buffers, x, names))
        points.append((theta, x))
        k += 1
        # stop once a draw adds nothing to the rank (J has all its rows, in effect)
        stacked = np.concatenate(blocks, axis=0)
        stacked = stacked[np.isfinite(stacked).all(axis=1)]
        new_rank = int(np.linalg.matrix_rank(stacked, tol=1e-4 * max(np.abs(stacked).max(initial=0), 1e-300)))
        saturated = new_rank == rank or new_rank == len(names)
        rank = new_rank
        if draws is not None:
            if k >= draws:
                break
        elif (saturated and k >= 3) or k >= 40:
            break
    J = np.concatenate(blocks, axis=0)
    J = J[np.isfinite(J).all(axis=1)]
    residual, witness = {}, {}
    colnorm = np.linalg.norm(J, axis=0)
    live = colnorm > 1e-12 * max(colnorm.max(initial=0.0), 1e-300)
    R = np.linalg.qr(J[:, live] / colnorm[live], mode="r")
    live_idx = np.flatnonzero(live)
    for j, name in enumerate(names):
        if not live[j]:  # no effect at all
            residual[name] = 0.0
            witness[name] = {name: 1.0}
            continue
        r, s_live = _min_l1(R, int(np.searchsorted(live_idx, j)))
        residual[name] = r
        if r <= TOL:
            s = np.zeros(len(names))
            s[live_idx] = s_live / colnorm[live_idx]
            s = s / s[j]
            witness[name] = {names[i]: float(v) for i, v in enumerate(s) if v > 1e-9}
    ineffective = set()
    for name, s in witness.items():
        if _finite_ok(copy, points[0], buffers, s):
            ineffective.add(name)
    return Oracle(names, frozenset(ineffective), residual, witness, J)


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
    out = functional_call(copy, state, x, strict=False, tie_weights=True)
    return [y for y in flatten_outputs(out, "out", []) if y.is_floating_point()]


def _jacobian(copy, theta, buffers, x, names) -> np.ndarray:
    with torch.no_grad():
        ref = _outputs(copy, theta, buffers, x)
    norms = [max(float(y.norm()), 1e-300) for y in ref]

    def f(t):
        scaled = {n: theta[n] * torch.exp(t[i]) for i, n in enumerate(names)}
        ys = _outputs(copy, scaled, buffers, x)
        return torch.cat([(y / s).reshape(-1) for y, s in zip(ys, norms)])

    t0 = torch.zeros(len(names), dtype=torch.float64)
    try:
        J = jacrev(f)(t0)  # one batched backward per output: cheaper than n JVPs in practice
    except Exception:  # noqa: BLE001 - some ops lack a reverse-mode batching rule
        J = jacfwd(f)(t0)
    return J.detach().numpy()


def _min_l1(R: np.ndarray, j: int) -> tuple[float, np.ndarray]:
    """min ‖R s‖₁ over s ≥ 0 with s_j = 1, where R (from a QR of J with unit columns) has
    the same null space as J: a true symmetry gives ~0, anything else a residual of order
    the angle between column j and the cone of the others."""
    m, n = R.shape
    c = np.concatenate([np.zeros(n), np.ones(m)])
    eye = np.eye(m)
    a_ub = np.block([[R, -eye], [-R, -eye]])
    bounds = [(0, None)] * (n + m)
    bounds[j] = (1, 1)
    res = linprog(c, A_ub=a_ub, b_ub=np.zeros(2 * m), bounds=bounds, method="highs")
    if res.status != 0:
        return float("inf"), np.zeros(n)
    return float(res.fun), res.x[:n]


def _finite_ok(copy, point, buffers, s: dict[str, float]) -> bool:
    theta, x = point
    with torch.no_grad():
        ref = _outputs(copy, theta, buffers, x)
        for a in (0.5, 2.0):
            scaled = {n: (v * a ** s[n] if n in s else v) for n, v in theta.items()}
            got = _outputs(copy, scaled, buffers, x)
            for y, r in zip(got, ref):
                if float((y - r).norm()) > FINITE_TOL * max(float(r.norm()), 1e-300):
                    return False
    return True
