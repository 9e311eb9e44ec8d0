"""Mean-subtracting normalisers computed on shifted data, for confirmation's eps -> 0 runs.

A channel that is constant across the batch at a check point (a ReLU dead for every example,
then a sum of BatchNorm biases: timm's MobileOne) reaches the next norm with ``x - mean`` and
``var`` both pure float64 round-off.  With eps -> 0 that is 0/0, and the round-off comes out
at order one: a true claim fails.  Subtracting, per normalised group, its first element first
makes such a group exactly zero, so mean, variance and output are exactly what exact
arithmetic gives, while every other group is unchanged: the norm is invariant to that shift,
and so is its derivative (shifted data is also the textbook way to compute a variance stably).
The shift is detached; statistics the op returns beside its output get it added back.  A
running mean the op updates in place keeps the shifted batch mean: training-mode norms never
read it, and correcting it in place would disturb the backward pass that saved it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

aten = torch.ops.aten


class ShiftedNorms(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        rule = _RULES.get(func)
        if rule is None or not args or not isinstance(args[0], torch.Tensor) \
                or not args[0].is_floating_point() or args[0].numel() == 0:
            return func(*args, **kwargs)
        return rule(func, list(args), kwargs)


def _channels(x: torch.Tensor) -> torch.Tensor:
    """BatchNorm's groups are channels (dim 1): the first element of each, shaped to broadcast."""
    index = (slice(0, 1), slice(None)) + (slice(0, 1),) * (x.dim() - 2)
    return x.detach()[index]


def _batch_norm(training_at: int, stats_at: int | None, fix: Callable | None = None):
    def rule(func, args: list, kwargs: dict) -> Any:
        training = args[training_at] if len(args) > training_at else kwargs.get("training")
        running = args[stats_at] if stats_at is not None and len(args) > stats_at else None
        if not training and (stats_at is None or running is not None):
            return func(*args, **kwargs)  # running statistics: no mean of the data is taken
        ref = _channels(args[0])
        args[0] = args[0] - ref
        out = func(*args, **kwargs)
        return fix(out, ref.reshape(-1), args) if fix is not None else out
    return rule


def _saved_mean(out, ref, args):
    return (out[0], out[1] + ref, *out[2:])


def _functional(out, ref, args):
    # (out, save_mean, save_rstd, new_running_mean, new_running_var): running mean moves by
    # momentum times the batch mean
    momentum = args[6] if len(args) > 6 else 0.1
    return (out[0], out[1] + ref, out[2], out[3] + momentum * ref, out[4])


def _layer_norm(fix: bool = False):
    def rule(func, args: list, kwargs: dict) -> Any:
        x, shape = args[0], args[1] if len(args) > 1 else kwargs["normalized_shape"]
        k = len(shape) if isinstance(shape, (list, tuple, torch.Size)) else 1
        ref = x.detach().flatten(x.dim() - k)[..., :1].reshape(x.shape[: x.dim() - k] + (1,) * k)
        args[0] = x - ref
        out = func(*args, **kwargs)
        return (out[0], out[1] + ref, out[2]) if fix else out
    return rule


def _group_norm(func, args: list, kwargs: dict) -> Any:
    x = args[0]
    groups = args[1] if len(args) > 1 else kwargs["num_groups"]
    ref = x.detach().reshape(x.shape[0], groups, -1)[:, :, :1]
    args[0] = x - ref.expand(-1, -1, x[0].numel() // groups).reshape(x.shape)
    return func(*args, **kwargs)


_RULES: dict[Any, Callable] = {
    # F.batch_norm(input, running_mean, running_var, weight, bias, training, ...)
    F.batch_norm: _batch_norm(5, 1),
    # (input, weight, bias, running_mean, running_var, training, momentum, eps, ...)
    torch.batch_norm: _batch_norm(5, 3),
    aten.batch_norm.default: _batch_norm(5, 3),
    aten.native_batch_norm.default: _batch_norm(5, 3, _saved_mean),
    aten._native_batch_norm_legit.default: _batch_norm(5, 3, _saved_mean),
    aten._native_batch_norm_legit.no_stats: _batch_norm(3, None, _saved_mean),
    aten._native_batch_norm_legit_functional.default: _batch_norm(5, 3, _functional),
    F.layer_norm: _layer_norm(),
    torch.layer_norm: _layer_norm(),
    aten.layer_norm.default: _layer_norm(),
    aten.native_layer_norm.default: _layer_norm(fix=True),
    F.group_norm: _group_norm,
    torch.group_norm: _group_norm,
    aten.group_norm.default: _group_norm,
}
