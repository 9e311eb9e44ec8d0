"""Leaf ``nn.Module`` kinds that symbolic tracing keeps as one node, mapped onto the same
transfer rules as their functional spellings.

An adapter turns ``module(x)`` into named arguments; ``Tensor("weight")`` stands for the
module's own parameter or buffer of that name, resolved by the propagation engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from . import call as K
from . import transfer as T
from . import transfer_layers as L


@dataclass(frozen=True)
class Tensor:
    """The module's own tensor attribute ``name`` (a parameter, a buffer, or None)."""

    name: str


@dataclass(frozen=True)
class ModuleRule:
    name: str
    rule: Callable[[K.Call], Any]
    adapter: Callable[[nn.Module, tuple, dict], dict[str, Any]]
    eps_attr: str | None = None
    inplace: bool = False


def _input(m, args, kwargs) -> dict[str, Any]:
    return {"input": args[0] if args else kwargs.get("input")}


def _own(m: nn.Module, name: str) -> Tensor | None:
    return Tensor(name) if getattr(m, name, None) is not None else None


def _linear(m, args, kwargs):
    return {**_input(m, args, kwargs), "weight": _own(m, "weight"), "bias": _own(m, "bias"),
            "padding_mode": getattr(m, "padding_mode", "zeros")}


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


def _pool_rule(c: K.Call) -> Any:
    d = c.deg("input")
    if c.raw("return_indices"):
        return (d, T.Deg(nonneg=True))
    return d


def _all_inputs(m, args, kwargs):
    out = {f"_arg{i}": a for i, a in enumerate(args)}
    out.update(kwargs)
    for name, _ in m.named_parameters(recurse=True):
        out[f"param:{name}"] = Tensor(name)
    return out


def _rnn_rule(c: K.Call) -> Any:
    """LSTM/GRU/RNN: gated by sigmoid/tanh, so nothing inside scales."""
    for name in list(c.args):
        c.require_zero(c.raw(name), "recurrent cell with saturating gates")
    return K.Multi(T.CONST, K.Multi(T.CONST, T.CONST))


def _mha(m: nn.MultiheadAttention, args, kwargs):
    names = ["query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
             "average_attn_weights", "is_causal"]
    out = dict(zip(names, args))
    out.update(kwargs)
    for n in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight",
              "in_proj_bias", "bias_k", "bias_v"):
        out[n] = _own(m, n)
    out["out_weight"] = Tensor("out_proj.weight")
    out["out_bias"] = Tensor("out_proj.bias") if m.out_proj.bias is not None else None
    return out


def _mha_rule(c: K.Call) -> Any:
    """nn.MultiheadAttention: q/k/v projections (one packed tensor or three), a softmax over
    q·kᵀ, the output projection."""
    packed = c.deg("in_proj_weight")
    proj = {k: packed or c.deg(f"{k[0]}_proj_weight") for k in ("query", "key", "value")}
    bias = c.deg("in_proj_bias")
    heads = {}
    for k in ("query", "key", "value"):
        x, w = c.deg(k), proj[k]
        prod = T.ZERO if (x is None or w is None or x.zero or w.zero) else T.Deg(x.form + w.form)
        heads[k] = c.same([prod, bias], "attention projection bias")
    heads["key"] = c.same([heads["key"], c.deg("bias_k")], "bias_k joins the keys")
    heads["value"] = c.same([heads["value"], c.deg("bias_v")], "bias_v joins the values")
    q, k = heads["query"], heads["key"]
    if not q.zero and not k.zero:
        c.require_zero(T.Deg(q.form + k.form), "attention logits feed a softmax")
    c.require_zero(c.deg("attn_mask"), "an additive attention mask")
    c.raw("key_padding_mask", "need_weights", "average_attn_weights", "is_causal")
    v, wo = heads["value"], c.deg("out_weight")
    prod = T.ZERO if (v.zero or wo is None or wo.zero) else T.Deg(v.form + wo.form)
    out = c.same([prod, c.deg("out_bias")], "output projection bias")
    return (out, T.Deg(nonneg=True))


_ACT = {
    nn.ReLU: T.relu, nn.LeakyReLU: T.leaky_relu, nn.RReLU: T.leaky_relu,
    nn.Identity: T.preserve, nn.Flatten: T.preserve, nn.Unflatten: T.preserve,
    nn.Dropout: T.preserve, nn.Dropout1d: T.preserve, nn.Dropout2d: T.preserve,
    nn.Dropout3d: T.preserve, nn.AlphaDropout: T.preserve, nn.FeatureAlphaDropout: T.preserve,
    nn.AvgPool1d: T.preserve, nn.AvgPool2d: T.preserve, nn.AvgPool3d: T.preserve,
    nn.AdaptiveAvgPool1d: T.preserve, nn.AdaptiveAvgPool2d: T.preserve,
    nn.AdaptiveAvgPool3d: T.preserve, nn.LPPool1d: T.preserve, nn.LPPool2d: T.preserve,
    nn.Upsample: T.preserve, nn.PixelShuffle: T.preserve, nn.PixelUnshuffle: T.preserve,
    nn.ChannelShuffle: T.preserve, nn.ZeroPad1d: T.preserve, nn.ZeroPad2d: T.preserve,
    nn.ZeroPad3d: T.preserve, nn.ReflectionPad1d: T.preserve, nn.ReflectionPad2d: T.preserve,
    nn.ReflectionPad3d: T.preserve, nn.ReplicationPad1d: T.preserve,
    nn.ReplicationPad2d: T.preserve, nn.ReplicationPad3d: T.preserve,
    nn.CircularPad1d: T.preserve, nn.CircularPad2d: T.preserve, nn.CircularPad3d: T.preserve,
    nn.Fold: T.preserve, nn.Unfold: T.preserve,
    nn.GELU: T.nonlinear, nn.SiLU: T.nonlinear, nn.Mish: T.nonlinear, nn.ELU: T.nonlinear,
    nn.SELU: T.nonlinear, nn.CELU: T.nonlinear, nn.Sigmoid: T.nonlinear, nn.Tanh: T.nonlinear,
    nn.Hardswish: T.nonlinear, nn.Hardsigmoid: T.nonlinear, nn.Softplus: T.nonlinear,
    nn.Softsign: T.nonlinear, nn.Tanhshrink: T.nonlinear, nn.LogSigmoid: T.nonlinear,
    nn.GLU: T.nonlinear, nn.Hardshrink: T.nonlinear, nn.Softshrink: T.nonlinear,
    nn.LocalResponseNorm: T.nonlinear, nn.ReLU6: T.nonlinear,
    nn.Softmax: L.softmax_like, nn.LogSoftmax: L.softmax_like, nn.Softmin: L.softmax_like,
    nn.Softmax2d: L.softmax_like,
}

MODULE_RULES: dict[type, ModuleRule] = {
    cls: ModuleRule(cls.__name__, rule, _input, inplace=False) for cls, rule in _ACT.items()
}
MODULE_RULES.update({
    nn.Hardtanh: ModuleRule("Hardtanh", T.clamp, _hardtanh),  # ReLU6 subclasses it: listed above
    nn.Threshold: ModuleRule("Threshold", T.threshold, _threshold),
    nn.PReLU: ModuleRule("PReLU", T.prelu, _prelu),
    nn.ConstantPad1d: ModuleRule("ConstantPad1d", T.pad, _const_pad),
    nn.ConstantPad2d: ModuleRule("ConstantPad2d", T.pad, _const_pad),
    nn.ConstantPad3d: ModuleRule("ConstantPad3d", T.pad, _const_pad),
    nn.Linear: ModuleRule("Linear", L.linear, _linear),
    nn.Bilinear: ModuleRule("Bilinear", L.linear, _bilinear),
    nn.modules.conv._ConvNd: ModuleRule("Conv", L.linear, _linear),
    nn.LayerNorm: ModuleRule("LayerNorm", L.layer_norm, _layer_norm, eps_attr="eps"),
    nn.GroupNorm: ModuleRule("GroupNorm", L.layer_norm, _group_norm, eps_attr="eps"),
    nn.modules.instancenorm._InstanceNorm: ModuleRule(
        "InstanceNorm", L.batch_norm, _instance_norm, eps_attr="eps"),
    nn.modules.batchnorm._BatchNorm: ModuleRule(
        "BatchNorm", L.batch_norm, _batch_norm, eps_attr="eps"),
    nn.SyncBatchNorm: ModuleRule("SyncBatchNorm", L.batch_norm, _batch_norm, eps_attr="eps"),
    nn.Embedding: ModuleRule("Embedding", L.embedding, _embedding),
    nn.EmbeddingBag: ModuleRule("EmbeddingBag", L.embedding, _embedding),
    nn.MaxPool1d: ModuleRule("MaxPool1d", _pool_rule, _max_pool),
    nn.MaxPool2d: ModuleRule("MaxPool2d", _pool_rule, _max_pool),
    nn.MaxPool3d: ModuleRule("MaxPool3d", _pool_rule, _max_pool),
    nn.AdaptiveMaxPool1d: ModuleRule("AdaptiveMaxPool1d", _pool_rule, _max_pool),
    nn.AdaptiveMaxPool2d: ModuleRule("AdaptiveMaxPool2d", _pool_rule, _max_pool),
    nn.AdaptiveMaxPool3d: ModuleRule("AdaptiveMaxPool3d", _pool_rule, _max_pool),
    nn.MultiheadAttention: ModuleRule("MultiheadAttention", _mha_rule, _mha),
    nn.LSTM: ModuleRule("LSTM", _rnn_rule, _all_inputs),
    nn.GRU: ModuleRule("GRU", _rnn_rule, _all_inputs),
    nn.RNN: ModuleRule("RNN", _rnn_rule, _all_inputs),
    nn.CosineSimilarity: ModuleRule("CosineSimilarity", L.normalize, lambda m, a, k: {
        "input": a[0], "x2": a[1], "eps": m.eps}, eps_attr="eps"),
})
if hasattr(nn, "RMSNorm"):
    MODULE_RULES[nn.RMSNorm] = ModuleRule("RMSNorm", L.rms_norm, _rms_norm, eps_attr="eps")
