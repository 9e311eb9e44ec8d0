"""Where an axis of a tensor goes through a shape op, for the influence stage.

Every function maps a set of *constant* axes of the input (axes along which some additive
term does not vary) to the constant axes of the output.  When in doubt an axis is not
constant: losing an axis only costs precision.
"""

from __future__ import annotations

from typing import Sequence

Axes = frozenset[int]


def _norm(dim: int, rank: int) -> int:
    return dim % rank if rank else 0


def broadcast(axes: Axes, shape: Sequence[int], out: Sequence[int]) -> Axes:
    """An operand broadcast into ``out``: new leading axes and stretched size-1 axes are
    constant."""
    lead = len(out) - len(shape)
    result = set(range(lead))
    for i, s in enumerate(shape):
        if i in axes or (s == 1 and out[lead + i] != 1):
            result.add(lead + i)
    return frozenset(result)


def permute(axes: Axes, dims: Sequence[int], rank: int) -> Axes:
    order = [_norm(d, rank) for d in dims]
    return frozenset(new for new, old in enumerate(order) if old in axes)


def transpose(axes: Axes, d0: int, d1: int, rank: int) -> Axes:
    a, b = _norm(d0, rank), _norm(d1, rank)
    swap = {a: b, b: a}
    return frozenset(swap.get(x, x) for x in axes)


def reshape(axes: Axes, shape: Sequence[int], out: Sequence[int]) -> Axes:
    """Group input and output dims whose products match; an output dim is constant when every
    input dim of its group is (size-1 dims are constant on both sides)."""
    result = {j for j, s in enumerate(out) if s == 1}
    i = j = 0
    while i < len(shape) and j < len(out):
        gi, gj = [i], [j]
        pi, pj = shape[i], out[j]
        while pi != pj:
            if pi < pj:
                i += 1
                if i >= len(shape):
                    return frozenset(result)
                gi.append(i)
                pi *= shape[i]
            else:
                j += 1
                if j >= len(out):
                    return frozenset(result)
                gj.append(j)
                pj *= out[j]
        if all(k in axes or shape[k] == 1 for k in gi):
            result.update(gj)
        i += 1
        j += 1
    return frozenset(result)


def remove(axes: Axes, dim: int, rank: int) -> Axes:
    d = _norm(dim, rank)
    return frozenset(x - (x > d) for x in axes if x != d)


def insert(axes: Axes, dim: int, rank_out: int) -> Axes:
    d = _norm(dim, rank_out)
    return frozenset({x + (x >= d) for x in axes} | {d})
