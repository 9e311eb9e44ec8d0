"""Mean-subtracting normalisers computed on shifted data: the forms the op table's ``shifted``
field names, which confirmation's eps -> 0 runs use (``engine/tracing/shifted_norms.py`` says
why).  Each form receives the call as dispatched (``func``, its positional ``args`` as a list
and its ``kwargs``) and the same arguments bound by name (``bound``, by the spelling's own
signature), so that one form serves every spelling of its op whatever their argument order.
The operand is always the first positional argument (the mode passes nothing else on).

The shift is detached; statistics the op returns beside its output get it added back.  A
running mean the op updates in place keeps the shifted batch mean: training-mode norms never
read it, and correcting it in place would disturb the backward pass that saved it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch


def _channels(x: torch.Tensor) -> torch.Tensor:
    """BatchNorm's groups are channels (dim 1): the first element of each, shaped to broadcast."""
    index = (slice(0, 1), slice(None)) + (slice(0, 1),) * (x.dim() - 2)
    return x.detach()[index]


def _batch_norm(func, args: list, kwargs: dict, bound: dict, *, fix=None,
                batch_stats: bool = False) -> Any:
    # a spelling without running statistics (_native_batch_norm_legit.no_stats) always takes
    # the batch's; one with them takes the batch's in training or when it was given none
    # (_batch_norm_with_update: always, it is training's spelling)
    if not batch_stats and not bound.get("training") and (
            "running_mean" not in bound or bound["running_mean"] is not None):
        return func(*args, **kwargs)  # running statistics: no mean of the data is taken
    ref = _channels(args[0])
    args[0] = args[0] - ref
    out = func(*args, **kwargs)
    return fix(out, ref.reshape(-1), bound) if fix is not None else out


def _saved_mean(out, ref, bound):
    return (out[0], out[1] + ref, *out[2:])


def _functional(out, ref, bound):
    # (out, save_mean, save_rstd, new_running_mean, new_running_var): running mean moves by
    # momentum times the batch mean
    momentum = bound.get("momentum", 0.1)
    return (out[0], out[1] + ref, out[2], out[3] + momentum * ref, out[4])


batch_norm = _batch_norm
batch_norm_saved = partial(_batch_norm, fix=_saved_mean)
batch_norm_functional = partial(_batch_norm, fix=_functional)
# (out, save_mean, save_invstd, reserve)
batch_norm_with_update = partial(_batch_norm, fix=_saved_mean, batch_stats=True)


def instance_norm(func, args: list, kwargs: dict, bound: dict) -> Any:
    """Each example's channel is its own group (with running statistics only if asked)."""
    x = args[0]
    # running statistics: no mean of the data is taken; no spatial axes: one value per group,
    # whose deviation from its mean is exactly zero already
    if bound.get("use_input_stats", True) is False or x.dim() < 3:
        return func(*args, **kwargs)
    ref = x.detach().flatten(2)[:, :, :1].reshape(x.shape[:2] + (1,) * (x.dim() - 2))
    args[0] = x - ref
    return func(*args, **kwargs)


def layer_norm(func, args: list, kwargs: dict, bound: dict, *, stats: bool = False) -> Any:
    x, shape = args[0], bound["normalized_shape"]
    k = len(shape) if isinstance(shape, (list, tuple, torch.Size)) else 1
    ref = x.detach().flatten(x.dim() - k)[..., :1].reshape(x.shape[: x.dim() - k] + (1,) * k)
    args[0] = x - ref
    out = func(*args, **kwargs)
    return (out[0], out[1] + ref, out[2]) if stats else out


layer_norm_stats = partial(layer_norm, stats=True)


def group_norm(func, args: list, kwargs: dict, bound: dict, *, stats: bool = False) -> Any:
    x = args[0]
    groups = bound["group" if stats else "num_groups"]  # native_group_norm's own name
    ref = x.detach().reshape(x.shape[0], groups, -1)[:, :, :1]
    args[0] = x - ref.expand(-1, -1, x[0].numel() // groups).reshape(x.shape)
    out = func(*args, **kwargs)
    # native_group_norm: (out, mean, rstd), its mean per (example, group)
    return (out[0], out[1] + ref.reshape(out[1].shape), out[2]) if stats else out


group_norm_stats = partial(group_norm, stats=True)
