"""Stage 5: the cone of scale symmetries ``{s ≥ 0 : C s = 0}``.

* its maximal support (one LP): the parameters whose decay is ineffective;
* a cover of that support by extreme rays (one small LP per uncovered parameter, inside its
  connected component): the readable groups, each a minimal set that scales together;
* the mixed-sign null-space directions among the remaining parameters (q/k, v/o, ReLU in/out):
  rescalings that decay *does* act on (it balances norms), reported as information only.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np
from scipy import sparse
from scipy.linalg import null_space
from scipy.optimize import linprog
from scipy.sparse.csgraph import connected_components

from .degrees import Degrees

MAX_RESCALINGS = 64


@dataclass(frozen=True)
class GroupSpec:
    exponents: Mapping[str, Fraction]  # member -> positive exponent


@dataclass(frozen=True)
class Symmetries:
    degrees: Degrees
    support: frozenset[str]  # provably scale-free (given the op table)
    optimistic: frozenset[str]  # scale-free if every unknown op were transparent
    groups: tuple[GroupSpec, ...]
    rescalings: tuple[Mapping[str, Fraction], ...]
    rows: int  # constraints after deduplication
    columns: int
    fixed: Mapping[str, str] = None  # parameters training holds fixed (s = 0) -> why


class SolverError(RuntimeError):
    pass


def solve(degrees: Degrees, fixed: Mapping[str, str] | None = None) -> Symmetries:
    """The cone over the degrees' candidate parameters (those that reach an output) that
    training moves: a ``fixed`` parameter (frozen, or held by no optimizer) is a constant, its
    exponent 0, so it has no column and its terms drop out of every constraint."""
    fixed = dict(fixed or {})
    names = [n for n in degrees.candidates if n not in fixed]
    col = {degrees.variables.index(n): j for j, n in enumerate(names)}
    sound_rows = _matrix(degrees, col, include_unknown=True)
    support = _max_support(sound_rows, len(names))
    optimistic = support
    if any(c.unknown for c in degrees.constraints):
        seen = _matrix(degrees, col, include_unknown=False)
        optimistic = support | _max_support(seen, len(names))
    groups = _groups(sound_rows, support, names)
    effective = [j for j in range(len(names)) if j not in support]
    rescalings = _rescalings(sound_rows, effective, names)
    return Symmetries(degrees, frozenset(names[j] for j in support),
                      frozenset(names[j] for j in optimistic), tuple(groups), tuple(rescalings),
                      sound_rows.shape[0], len(names), fixed)


def _matrix(degrees: Degrees, col: dict[int, int], include_unknown: bool) -> sparse.csr_matrix:
    rows = set()
    for c in degrees.constraints:
        if c.unknown and not include_unknown:
            continue
        terms = tuple((col[k], float(v)) for k, v in c.form.terms if k in col)
        if not terms:
            continue
        scale = terms[0][1]  # normalise so that duplicates collapse
        rows.add(tuple((j, v / scale) for j, v in terms))
    data, ri, ci = [], [], []
    for i, row in enumerate(sorted(rows)):
        for j, v in row:
            ri.append(i)
            ci.append(j)
            data.append(v)
    return sparse.csr_matrix((data, (ri, ci)), shape=(len(rows), len(col)))


def _components(A: sparse.csr_matrix, cols: Sequence[int]) -> list[list[int]]:
    """Columns linked through shared constraints; the cone is a product over components."""
    sub = A[:, cols]
    incidence = (abs(sub) > 0).astype(np.int8)
    link = (incidence.T @ incidence).tocsr()
    n, labels = connected_components(link, directed=False)
    comps: dict[int, list[int]] = {}
    for local, label in enumerate(labels):
        comps.setdefault(label, []).append(cols[local])
    return list(comps.values())


def _rows_for(A: sparse.csr_matrix, cols: Sequence[int]) -> sparse.csr_matrix:
    sub = A[:, cols]
    keep = np.flatnonzero(np.asarray(abs(sub).sum(axis=1)).ravel() > 0)
    return sub[keep]


def _max_support(A: sparse.csr_matrix, n: int) -> frozenset[int]:
    if n == 0:
        return frozenset()
    support: set[int] = set()
    for comp in _components(A, list(range(n))):
        sub = _rows_for(A, comp)
        if sub.shape[0] == 0:
            support.update(comp)
            continue
        k = len(comp)
        # variables [s, t]: maximise Σt with t ≤ s, 0 ≤ t ≤ 1, C s = 0, s ≥ 0
        c = np.concatenate([np.zeros(k), -np.ones(k)])
        a_eq = sparse.hstack([sub, sparse.csr_matrix(sub.shape)]).tocsr()
        eye = sparse.identity(k, format="csr")
        a_ub = sparse.hstack([-eye, eye]).tocsr()
        res = linprog(c, A_ub=a_ub, b_ub=np.zeros(k), A_eq=a_eq, b_eq=np.zeros(sub.shape[0]),
                      bounds=[(0, None)] * k + [(0, 1)] * k, method="highs")
        if res.status != 0:
            raise SolverError(f"support LP failed: {res.message}")
        s = res.x[:k]
        if np.abs(sub @ s).max(initial=0) > 1e-6 * max(1.0, np.abs(s).max()):
            raise SolverError("support LP returned an infeasible point")
        support.update(comp[i] for i in range(k) if res.x[k + i] > 0.5)
    return frozenset(support)


def _groups(A: sparse.csr_matrix, support: frozenset[int], names: list[str]) -> list[GroupSpec]:
    groups: list[GroupSpec] = []
    cols = sorted(support)
    if not cols:
        return groups
    for comp in _components(A, cols):
        sub = _rows_for(A, comp)
        if sub.shape[0] == 0:  # no constraint touches them: each scales on its own
            groups += [GroupSpec({names[j]: Fraction(1)}) for j in comp]
            continue
        covered: set[int] = set()
        for local, j in enumerate(comp):
            if j in covered:
                continue
            ray = _extreme_ray(sub, local)
            members = {comp[i]: v for i, v in ray.items()}
            covered.update(members)
            groups.append(GroupSpec({names[i]: v for i, v in sorted(members.items())}))
    return groups


def _extreme_ray(sub: sparse.csr_matrix, p: int) -> dict[int, Fraction]:
    """A vertex of {C s = 0, s ≥ 0, s_p = 1}: an extreme ray of the cone through p, i.e. a
    minimal set of parameters that can scale together with p."""
    k = sub.shape[1]
    bounds = [(0, None)] * k
    bounds[p] = (1, 1)
    res = linprog(np.ones(k), A_eq=sub, b_eq=np.zeros(sub.shape[0]), bounds=bounds,
                  method="highs-ds")
    if res.status != 0:
        raise SolverError(f"group LP failed: {res.message}")
    return {i: Fraction(float(v)).limit_denominator(1 << 12)
            for i, v in enumerate(res.x) if v > 1e-9}


def _rescalings(A: sparse.csr_matrix, effective: list[int], names: list[str]) -> list[dict]:
    if not effective:
        return []
    sub = A[:, effective].toarray()
    if sub.shape[0] == 0:
        return []
    basis = null_space(sub, rcond=1e-10)
    if basis.size == 0:
        return []
    reduced = _rref(basis.T)
    out = []
    for row in reduced[:MAX_RESCALINGS]:
        scale = row[np.flatnonzero(np.abs(row) > 1e-9)[0]]
        vec = {names[effective[i]]: Fraction(float(v / scale)).limit_denominator(1 << 12)
               for i, v in enumerate(row) if abs(v) > 1e-9}
        if any(v < 0 for v in vec.values()):
            out.append(vec)
    return out


def _rref(m: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Reduced row echelon form: turns an SVD null-space basis into sparse, readable rows."""
    m = m.copy()
    rows, cols = m.shape
    r = 0
    for c in range(cols):
        if r == rows:
            break
        pivot = r + int(np.argmax(np.abs(m[r:, c])))
        if abs(m[pivot, c]) < tol:
            continue
        m[[r, pivot]] = m[[pivot, r]]
        m[r] /= m[r, c]
        others = [i for i in range(rows) if i != r]
        m[others] -= np.outer(m[others, c], m[r])
        r += 1
    m[np.abs(m) < tol] = 0.0
    return m[:r]
