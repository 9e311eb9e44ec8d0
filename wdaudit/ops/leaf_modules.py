"""The op table's leaf-module half: ``nn.Module`` kinds that symbolic tracing keeps as one
node, mapped onto the same degree and offset rules as their functional spellings.

An adapter turns ``module(x)`` into named arguments; ``OwnTensor("weight")`` stands for the
module's own parameter or buffer of that name, which each analysis resolves.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import nn

from . import degrees_elementwise as E
from . import degrees_layers as L
from . import kernels
from . import offsets as O
from . import offsets_layers as OL
from .record import Op


@dataclass(frozen=True)
class OwnTensor:
    """The module's own tensor attribute ``name`` (a parameter, a buffer, or None)."""

    name: str


def _input(m, args, kwargs) -> dict[str, Any]:
    return {"input": args[0] if args else kwargs.get("input")}


def _own(m: nn.Module, name: str) -> OwnTensor | None:
    return OwnTensor(name) if getattr(m, name, None) is not None else None


def _linear(m, args, kwargs):
    return {**_input(m, args, kwargs), "weight": _own(m, "weight"), "bias": _own(m, "bias"),
            "padding_mode": getattr(m, "padding_mode", "zeros")}


def _conv(m, args, kwargs):
    return {**_linear(m, args, kwargs), "padding": m.padding, "transposed": m.transposed}


def _softmax(m, args, kwargs):
    return {**_input(m, args, kwargs), "dim": getattr(m, "dim", None)}


def _bilinear(m, args, kwargs):
    return {"input": args[0], "input2": args[1], "weight": _own(m, "weight"),
            "bias": _own(m, "bias")}


def _layer_norm(m, args, kwargs):
    return {**_input(m, args, kwargs), "normalized_shape": tuple(m.normalized_shape),
            "weight": _own(m, "weight"), "bias": _own(m, "bias"), "eps": m.eps}


def _group_norm(m, args, kwargs):
    return {**_input(m, args, kwargs), "num_groups": m.num_groups, "weight": _own(m, "weight"),
            "bias": _own(m, "bias"), "eps": m.eps}


def _batch_norm(m, args, kwargs):
    # nn.BatchNorm uses batch statistics in training or when it tracks none
    use_batch = m.training or (m.running_mean is None and m.running_var is None)
    return {**_input(m, args, kwargs), "weight": _own(m, "weight"), "bias": _own(m, "bias"),
            "running_mean": _own(m, "running_mean"), "running_var": _own(m, "running_var"),
            "training": use_batch, "eps": m.eps}


def _instance_norm(m, args, kwargs):
    use_input_stats = m.training or not m.track_running_stats
    return {**_input(m, args, kwargs), "weight": _own(m, "weight"), "bias": _own(m, "bias"),
            "running_mean": _own(m, "running_mean"), "running_var": _own(m, "running_var"),
            "use_input_stats": use_input_stats, "eps": m.eps}


def _rms_norm(m, args, kwargs):
    return {**_input(m, args, kwargs), "weight": _own(m, "weight"), "eps": m.eps}


def _embedding(m, args, kwargs):
    out = {"input": args[0] if args else kwargs.get("input"), "weight": _own(m, "weight"),
           "max_norm": m.max_norm}
    if isinstance(m, nn.EmbeddingBag):
        rest = list(args[1:])
        out["offsets"] = rest[0] if rest else kwargs.get("offsets")
        out["per_sample_weights"] = rest[1] if len(rest) > 1 else kwargs.get("per_sample_weights")
    return out


def _prelu(m, args, kwargs):
    return {**_input(m, args, kwargs), "weight": _own(m, "weight")}


def _hardtanh(m, args, kwargs):
    return {**_input(m, args, kwargs), "min": m.min_val, "max": m.max_val}


def _threshold(m, args, kwargs):
    return {**_input(m, args, kwargs), "threshold": m.threshold, "value": m.value}


def _const_pad(m, args, kwargs):
    return {**_input(m, args, kwargs), "value": m.value}


def _max_pool(m, args, kwargs):
    return {**_input(m, args, kwargs), "return_indices": getattr(m, "return_indices", False)}


def _all_inputs(m, args, kwargs):
    out = {f"_arg{i}": a for i, a in enumerate(args)}
    out.update(kwargs)
    for name, _ in m.named_parameters(recurse=True):
        out[f"param:{name}"] = OwnTensor(name)
    return out


def _mha(m: nn.MultiheadAttention, args, kwargs):
    names = ["query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
             "average_attn_weights", "is_causal"]
    out = dict(zip(names, args))
    out.update(kwargs)
    for n in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
              "in_proj_bias", "bias_k", "bias_v"):
        out[n] = _own(m, n)
    out["out_weight"] = OwnTensor("out_proj.weight")
    out["out_bias"] = OwnTensor("out_proj.bias") if m.out_proj.bias is not None else None
    return out


_ACT = {
    nn.ReLU: E.relu, nn.LeakyReLU: E.leaky_relu, nn.RReLU: E.leaky_relu,
    nn.Identity: E.preserve, nn.Flatten: E.preserve, nn.Unflatten: E.preserve,
    nn.Dropout: E.preserve, nn.Dropout1d: E.preserve, nn.Dropout2d: E.preserve,
    nn.Dropout3d: E.preserve, nn.AlphaDropout: E.preserve, nn.FeatureAlphaDropout: E.preserve,
    nn.AvgPool1d: E.preserve, nn.AvgPool2d: E.preserve, nn.AvgPool3d: E.preserve,
    nn.AdaptiveAvgPool1d: E.preserve, nn.AdaptiveAvgPool2d: E.preserve,
    nn.AdaptiveAvgPool3d: E.preserve, nn.LPPool1d: E.preserve, nn.LPPool2d: E.preserve,
    nn.Upsample: E.preserve, nn.PixelShuffle: E.preserve, nn.PixelUnshuffle: E.preserve,
    nn.ChannelShuffle: E.preserve, nn.ZeroPad1d: E.preserve, nn.ZeroPad2d: E.preserve,
    nn.ZeroPad3d: E.preserve, nn.ReflectionPad1d: E.preserve, nn.ReflectionPad2d: E.preserve,
    nn.ReflectionPad3d: E.preserve, nn.ReplicationPad1d: E.preserve,
    nn.ReplicationPad2d: E.preserve, nn.ReplicationPad3d: E.preserve,
    nn.CircularPad1d: E.preserve, nn.CircularPad2d: E.preserve, nn.CircularPad3d: E.preserve,
    nn.Fold: E.preserve, nn.Unfold: E.preserve,
    nn.GELU: E.nonlinear, nn.SiLU: E.nonlinear, nn.Mish: E.nonlinear, nn.ELU: E.nonlinear,
    nn.SELU: E.nonlinear, nn.CELU: E.nonlinear, nn.Sigmoid: E.nonlinear, nn.Tanh: E.nonlinear,
    nn.Hardswish: E.nonlinear, nn.Hardsigmoid: E.nonlinear, nn.Softplus: E.nonlinear,
    nn.Softsign: E.nonlinear, nn.Tanhshrink: E.nonlinear, nn.LogSigmoid: E.nonlinear,
    nn.GLU: E.nonlinear, nn.Hardshrink: E.nonlinear, nn.Softshrink: E.nonlinear,
    nn.LocalResponseNorm: E.nonlinear, nn.ReLU6: E.nonlinear,
}
# how additive terms pass the activation-like modules above (default: mixed)
_ACT_OFFSETS = {
    nn.Identity: O.pass_through, nn.Dropout: O.pass_through, nn.Dropout1d: O.pass_through,
    nn.Dropout2d: O.pass_through, nn.Dropout3d: O.pass_through,
    nn.Flatten: O.reshape, nn.Unflatten: O.reshape,
}


def _op(cls: type, degrees, adapter, offsets=O.mixes, eps_attr: str | None = None) -> Op:
    return Op(cls.__name__, degrees, offsets, adapter=adapter, eps_attr=eps_attr)


MODULE_OPS: dict[type, Op] = {
    cls: _op(cls, rule, _input, _ACT_OFFSETS.get(cls, O.mixes)) for cls, rule in _ACT.items()
}
MODULE_OPS.update({
    nn.Softmax: _op(nn.Softmax, L.softmax_like, _softmax, OL.softmax),
    nn.LogSoftmax: _op(nn.LogSoftmax, L.softmax_like, _softmax, OL.softmax),
    nn.Softmin: _op(nn.Softmin, L.softmax_like, _softmax, OL.softmax),
    nn.Softmax2d: _op(nn.Softmax2d, L.softmax_like, _softmax, OL.softmax),
    nn.Hardtanh: _op(nn.Hardtanh, E.clamp, _hardtanh),  # ReLU6 subclasses it: listed above
    nn.Threshold: _op(nn.Threshold, E.threshold, _threshold),
    nn.PReLU: _op(nn.PReLU, E.prelu, _prelu),
    nn.ConstantPad1d: _op(nn.ConstantPad1d, E.pad, _const_pad),
    nn.ConstantPad2d: _op(nn.ConstantPad2d, E.pad, _const_pad),
    nn.ConstantPad3d: _op(nn.ConstantPad3d, E.pad, _const_pad),
    nn.Linear: _op(nn.Linear, L.linear, _linear, OL.linear),
    nn.Bilinear: _op(nn.Bilinear, L.linear, _bilinear),
    nn.modules.conv._ConvNd: Op("Conv", L.linear, partial(OL.linear, conv=True), adapter=_conv),
    nn.LayerNorm: _op(nn.LayerNorm, L.layer_norm, _layer_norm, OL.layer_norm, "eps"),
    nn.GroupNorm: _op(nn.GroupNorm, L.layer_norm, _group_norm, OL.group_norm, "eps"),
    nn.modules.instancenorm._InstanceNorm: Op(
        "InstanceNorm", L.batch_norm, OL.instance_norm, adapter=_instance_norm, eps_attr="eps",
        keeps_split=True),
    nn.modules.batchnorm._BatchNorm: Op(
        "BatchNorm", L.batch_norm, OL.batch_norm, adapter=_batch_norm, eps_attr="eps",
        keeps_split=True),
    nn.SyncBatchNorm: Op("SyncBatchNorm", L.batch_norm, OL.batch_norm, adapter=_batch_norm,
                         eps_attr="eps", keeps_split=True),
    nn.Embedding: Op("Embedding", L.embedding, O.mixes, adapter=_embedding,
                     run_attrs=kernels.EMBEDDING_ATTRS),
    nn.EmbeddingBag: _op(nn.EmbeddingBag, L.embedding, _embedding),
    nn.MaxPool1d: _op(nn.MaxPool1d, E.pool, _max_pool),
    nn.MaxPool2d: _op(nn.MaxPool2d, E.pool, _max_pool),
    nn.MaxPool3d: _op(nn.MaxPool3d, E.pool, _max_pool),
    nn.AdaptiveMaxPool1d: _op(nn.AdaptiveMaxPool1d, E.pool, _max_pool),
    nn.AdaptiveMaxPool2d: _op(nn.AdaptiveMaxPool2d, E.pool, _max_pool),
    nn.AdaptiveMaxPool3d: _op(nn.AdaptiveMaxPool3d, E.pool, _max_pool),
    nn.MultiheadAttention: _op(nn.MultiheadAttention, L.multihead_attention, _mha),
    nn.LSTM: _op(nn.LSTM, L.recurrent, _all_inputs),
    nn.GRU: _op(nn.GRU, L.recurrent, _all_inputs),
    nn.RNN: _op(nn.RNN, L.recurrent, _all_inputs),
    nn.CosineSimilarity: _op(nn.CosineSimilarity, L.normalize, lambda m, a, k: {
        "input": a[0], "x2": a[1], "eps": m.eps}, eps_attr="eps"),
})
if hasattr(nn, "RMSNorm"):
    MODULE_OPS[nn.RMSNorm] = _op(nn.RMSNorm, L.rms_norm, _rms_norm, eps_attr="eps")

_FORWARDS = ("forward", "_conv_forward")


def module_op(module: nn.Module | None) -> Op | None:
    """The op for a leaf module, found along its class's MRO — but only if the subclass still
    computes what the base class does: timm's LayerNorm2d subclasses nn.LayerNorm and permutes
    to channels-last in its own forward(), so it must be traced through, not taken as one."""
    if module is None:
        return None
    kind = type(module)
    for cls in kind.__mro__:
        op = MODULE_OPS.get(cls)
        if op is not None:
            same = all(getattr(kind, f, None) is getattr(cls, f, None) for f in _FORWARDS)
            return op if same else None
    return None
