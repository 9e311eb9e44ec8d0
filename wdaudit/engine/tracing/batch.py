"""How many examples a run uses: the inputs' common batch size, the first ``k`` examples, and
the cap that the trace's check and confirmation share."""

from __future__ import annotations

import torch

CAP_BATCH = 8
"""Confirmation runs on at most this many examples when the program allows it (a traced, not
exported, program is not specialised to the batch size): the claims are structural, so eight
examples exercise them as well as 256 do, and the user's large batch stays out of float64.
The trace's own check runs on as many, for the same reason (``trace``)."""


def batch_size(inputs: tuple) -> int | None:
    """The common leading size of the tensor inputs, if they have one."""
    sizes = {x.shape[0] for x in inputs if isinstance(x, torch.Tensor) and x.dim() > 0}
    return sizes.pop() if len(sizes) == 1 else None


def first(inputs: tuple, k: int) -> tuple:
    """The first ``k`` examples of every tensor input."""
    return tuple(x[:k] if isinstance(x, torch.Tensor) and x.dim() > 0 else x for x in inputs)
