"""Test-side derivation of "sets of tensors that scale together", independent of the
engine's graph search: repeated pairwise merging until no two member sets overlap."""

from __future__ import annotations


def merged(sets: list[tuple[set, ...]]) -> list[tuple[set, ...]]:
    """``sets`` — tuples whose first element is a claim's members — with every two that share
    a member joined (element-wise union), until none do."""
    sets = [tuple(set(x) for x in s) for s in sets]
    changed = True
    while changed:
        changed = False
        for i in range(len(sets)):
            j = next((j for j in range(i + 1, len(sets)) if sets[i][0] & sets[j][0]), None)
            if j is not None:
                other = sets.pop(j)
                sets[i] = tuple(a | b for a, b in zip(sets[i], other))
                changed = True
                break
    return sets
