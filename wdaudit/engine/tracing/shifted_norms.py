"""Mean-subtracting normalisers computed on shifted data, for confirmation's eps -> 0 runs.

A channel that is constant across the batch at a check point (a ReLU dead for every example,
then a sum of BatchNorm biases: timm's MobileOne) reaches the next norm with ``x - mean`` and
``var`` both pure float64 round-off.  With eps -> 0 that is 0/0, and the round-off comes out
at order one: a true claim fails.  Subtracting, per normalised group, its first element first
makes such a group exactly zero, so mean, variance and output are exactly what exact
arithmetic gives, while every other group is unchanged: the norm is invariant to that shift,
and so is its derivative (shifted data is also the textbook way to compute a variance stably).

Which spellings shift, and how, is the op table's ``shifted`` field (the forms are in
:mod:`wdaudit.ops.shifted`; the table refuses a mean-subtracting norm row without one): this
mode only finds the called function's op and hands the form its arguments bound by name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from ...ops.lookup import function_op
from ...ops.signatures import bind
from ...ops.record import Op


class ShiftedNorms(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        op = _shifting(func)
        if op is None or not args or not isinstance(args[0], torch.Tensor) \
                or not args[0].is_floating_point() or args[0].numel() == 0:
            return func(*args, **kwargs)
        bound, _ = bind(op.signature, tuple(args), kwargs)
        return op.shifted(func, list(args), kwargs, bound)


_SEEN: dict[Any, Op | None] = {}


def _shifting(func: Any) -> Op | None:
    """The table's op for ``func`` if it has a shifted form (every torch call in an eps -> 0
    run passes here: the answer is kept per function)."""
    try:
        return _SEEN[func]
    except KeyError:
        op = function_op(func)
        _SEEN[func] = op if op is not None and op.shifted is not None else None
        return _SEEN[func]
    except TypeError:  # unhashable
        return None
