"""Direct tests of ops/axes.py, the bookkeeping of which axes a tensor is constant along as it
passes through shape ops (broadcast, permute, transpose, reshape, select, unsqueeze). The
expected axes are measured, not pasted: each rule is compared with what the real torch op does
to a tensor built constant along every subset of its axes, and must be sound (never claim a
varying axis) and, where the op keeps whole dims together, precise."""

from __future__ import annotations

import itertools

import pytest
import torch

from wdaudit.ops import axes


def subsets(n: int):
    return [frozenset(c) for k in range(n + 1) for c in itertools.combinations(range(n), k)]


def constant_along(shape, axes_, seed: int = 0) -> torch.Tensor:
    """A generic tensor of ``shape`` that is constant along exactly ``axes_`` (and its size-1
    axes)."""
    g = torch.Generator().manual_seed(seed)
    small = [1 if i in axes_ else s for i, s in enumerate(shape)]
    return torch.randn(small, generator=g, dtype=torch.float64).expand(*shape)


def constant_axes(t: torch.Tensor) -> frozenset[int]:
    """The axes along which ``t`` really does not vary."""
    return frozenset(i for i in range(t.dim())
                     if torch.equal(t, t.narrow(i, 0, 1).expand_as(t)))


def assert_axes_match(claimed: frozenset[int], out: torch.Tensor, what: str) -> None:
    """Sound (every claimed axis is constant) and precise where it matters (every constant
    axis of size > 1 is claimed: a size-1 axis is trivially constant and may be left out)."""
    truth = constant_axes(out)
    assert claimed <= truth, f"{what}: claims {sorted(claimed - truth)} constant, they vary"
    missed = {i for i in truth - claimed if out.shape[i] > 1}
    assert not missed, f"{what}: axes {sorted(missed)} are constant but not claimed"


@pytest.mark.parametrize("shape,out", [
    ((3, 1), (2, 3, 4)), ((4,), (2, 3, 4)), ((1, 3, 1), (2, 3, 4)), ((2, 3, 4), (2, 3, 4)),
    ((1,), (1, 3)), ((3, 1), (3, 1)),
])
def test_broadcast_axes_follow_broadcast_to(shape, out):
    for a in subsets(len(shape)):
        t = constant_along(shape, a)
        assert_axes_match(axes.broadcast(a, shape, out), torch.broadcast_to(t, out),
                          f"broadcast {shape}->{out} from {sorted(a)}")
    # a new leading axis and a stretched size-1 axis are constant even for a generic tensor
    new = set(range(len(out) - len(shape))) | {len(out) - len(shape) + i
                                               for i, s in enumerate(shape)
                                               if s == 1 and out[len(out) - len(shape) + i] > 1}
    assert new <= axes.broadcast(frozenset(), shape, out)


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 1, 3)])
def test_permute_axes_follow_torch_permute(shape):
    rank = len(shape)
    for dims in itertools.permutations(range(rank)):
        # the same permutation spelled with negative dims must mean the same thing
        for spelled in (dims, tuple(d - rank if d % 2 else d for d in dims)):
            for a in subsets(rank):
                out = constant_along(shape, a).permute(*spelled)
                assert_axes_match(axes.permute(a, spelled, rank), out,
                                  f"permute{spelled} of {shape} from {sorted(a)}")


def test_transpose_axes_follow_torch_transpose():
    shape = (2, 3, 4)
    rank = len(shape)
    for d0, d1 in itertools.product(range(-rank, rank), repeat=2):
        for a in subsets(rank):
            out = constant_along(shape, a).transpose(d0, d1)
            assert_axes_match(axes.transpose(a, d0, d1, rank), out,
                              f"transpose({d0}, {d1}) from {sorted(a)}")


@pytest.mark.parametrize("shape,out", [
    # merges and splits of whole dims (and size-1 dims): the grouping rule is exact there
    ((2, 3, 4), (6, 4)), ((2, 3, 4), (2, 12)), ((2, 3, 4), (24,)), ((6, 4), (2, 3, 4)),
    ((2, 1, 3), (2, 3)), ((2, 3), (2, 1, 3)), ((2, 3, 4), (1, 6, 4)), ((4, 6), (2, 2, 2, 3)),
    ((2, 3, 4), (2, 3, 4, 1)), ((2, 3, 4), (2, 3, 2, 2)),
])
def test_reshape_axes_follow_torch_reshape(shape, out):
    for a in subsets(len(shape)):
        result = constant_along(shape, a).reshape(out)
        assert_axes_match(axes.reshape(a, shape, out), result,
                          f"reshape {shape}->{out} from {sorted(a)}")


@pytest.mark.parametrize("shape,out", [
    ((2, 3, 4), (4, 3, 2)), ((2, 3, 4), (3, 2, 4)), ((2, 6), (4, 3)), ((6, 1), (2, 3)),
    ((2, 3, 4), (3, 8)), ((4, 3), (2, 6)),
])
def test_reshape_across_dim_boundaries_is_sound(shape, out):
    """Where a reshape regroups factors across input dims, the rule may lose constant axes
    (that only costs precision) but must never claim one that varies."""
    for a in subsets(len(shape)):
        truth = constant_axes(constant_along(shape, a).reshape(out))
        claimed = axes.reshape(a, shape, out)
        assert claimed <= truth, f"reshape {shape}->{out} from {sorted(a)}: {sorted(claimed)}"
        if a == frozenset(range(len(shape))):  # constant everywhere stays so
            assert claimed == frozenset(range(len(out)))


def test_remove_axes_follow_torch_select():
    shape = (2, 3, 4)
    rank = len(shape)
    for dim in range(-rank, rank):
        for a in subsets(rank):
            out = constant_along(shape, a).select(dim, 1)
            assert_axes_match(axes.remove(a, dim, rank), out, f"select({dim}) from {sorted(a)}")


def test_insert_axes_follow_torch_unsqueeze():
    shape = (2, 3)
    rank_out = len(shape) + 1
    for dim in range(-rank_out, rank_out):
        for a in subsets(len(shape)):
            out = constant_along(shape, a).unsqueeze(dim)
            claimed = axes.insert(a, dim, rank_out)
            assert_axes_match(claimed, out, f"unsqueeze({dim}) from {sorted(a)}")
            assert dim % rank_out in claimed  # the new axis has size 1: constant
