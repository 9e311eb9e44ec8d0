"""The op table: which transfer rule every traced op kind follows (the table *is* the spec).

A traced node is ``call_function`` (a torch function, an ``operator`` function or an ATen
overload from ``torch.export``), ``call_method`` (``x.view(...)``) or ``call_module`` (a leaf
``nn.Module``).  All spellings of one op resolve to one rule; arguments are bound by name so the
rule never cares which spelling it came from.  Anything not listed here is an *unknown op*:
its inputs are forced to degree 0 and it is counted in the report (and raises in strict mode).
"""

from __future__ import annotations

import inspect
import operator
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import call as K
from . import transfer as T
from . import transfer_layers as L
from .modules import MODULE_RULES, ModuleRule

aten = torch.ops.aten


@dataclass(frozen=True)
class Entry:
    name: str
    rule: Callable[[K.Call], Any]
    signature: tuple[str, ...] | None = None
    inplace: bool = False


# rule, then "namespace: names" lines.  Namespaces: torch (torch.X), F (torch.nn.functional.X),
# method (Tensor.X), aten (every overload of aten.X), op (operator.X), builtin (builtins.X).
_SPEC: list[tuple[Callable, str]] = [
    (T.preserve, """
        aten: view reshape _unsafe_view t unsqueeze squeeze expand flatten unflatten detach
              lift_fresh_copy slice select index index_select gather narrow flip roll repeat tile
              movedim swapaxes diagonal tril triu pixel_shuffle pixel_unshuffle channel_shuffle
              native_channel_shuffle as_strided unfold im2col col2im mean sum nansum amax amin
              cumsum max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d
              adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
              _adaptive_avg_pool3d upsample_nearest1d upsample_nearest2d upsample_nearest3d
              upsample_bilinear2d upsample_linear1d upsample_trilinear3d upsample_bicubic2d
              _upsample_nearest_exact2d feature_dropout alpha_dropout feature_alpha_dropout
              reflection_pad1d reflection_pad2d reflection_pad3d replication_pad1d
              replication_pad2d replication_pad3d _unsafe_index squeeze_copy unsqueeze_copy
              view_copy permute_copy expand_copy transpose_copy slice_copy select_copy unbind_copy
              t_copy alias_copy detach_copy _reshape_alias mT mH adjoint conj resolve_conj
              resolve_neg positive lp_pool2d lp_pool1d lp_pool3d trace _unsafe_view_copy diag
              diag_embed take take_along_dim index_fill masked_select repeat_interleave
        torch: flatten unflatten reshape t squeeze unsqueeze narrow select index_select gather
               flip roll tile movedim diagonal tril triu pixel_shuffle pixel_unshuffle
               channel_shuffle mean sum nansum amax amin cumsum max_pool1d max_pool2d max_pool3d
               avg_pool1d adaptive_avg_pool1d alpha_dropout feature_dropout detach diag take
               take_along_dim repeat_interleave masked_select
        F: dropout2d dropout3d alpha_dropout feature_alpha_dropout avg_pool1d avg_pool2d
           avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d interpolate
           upsample upsample_nearest upsample_bilinear pixel_shuffle pixel_unshuffle unfold fold
           lp_pool1d lp_pool2d lp_pool3d channel_shuffle
        method: view reshape t unsqueeze squeeze expand flatten unflatten detach narrow select
                index_select gather flip roll repeat tile movedim diagonal tril triu mean sum
                nansum amax amin cumsum unfold to_dense float double half bfloat16 cpu cuda
                requires_grad_ mT mH conj masked_select take repeat_interleave
        builtin: id
    """),
    (T.moved, """
        aten: transpose permute contiguous clone dropout alias
        torch: transpose permute swapaxes clone dropout
        F: dropout dropout1d
        method: transpose permute swapaxes contiguous clone
    """),
    (T.preserve_list, """
        aten: split split_with_sizes chunk unbind tensor_split unsafe_split
              unsafe_split_with_sizes unsafe_chunk split_copy split_with_sizes_copy
        torch: split chunk unbind tensor_split hsplit vsplit dsplit
        method: split chunk unbind tensor_split
    """),
    (T.relu, "aten: relu\n torch: relu\n F: relu\n method: relu"),
    (T.pool, """
        F: max_pool1d max_pool2d max_pool3d adaptive_max_pool1d adaptive_max_pool2d
           adaptive_max_pool3d fractional_max_pool2d fractional_max_pool3d
    """),
    (T.preserve_nonneg, "aten: abs\n torch: abs\n method: abs"),
    (T.neg, "aten: neg\n torch: neg negative\n method: neg negative\n op: neg"),
    (T.leaky_relu, "aten: leaky_relu rrelu\n F: leaky_relu rrelu\n method: leaky_relu"),
    (T.prelu, "aten: prelu _prelu_kernel\n torch: prelu\n F: prelu"),
    (T.clamp, """
        aten: clamp clamp_min clamp_max hardtanh
        torch: clamp clip clamp_min clamp_max
        F: hardtanh
        method: clamp clip clamp_min clamp_max
    """),
    (T.threshold, "aten: threshold\n torch: threshold\n F: threshold"),
    (T.scale_invariant, """
        aten: sign sgn argmax argmin isnan isinf isfinite signbit heaviside logical_not
              logical_and logical_or logical_xor bitwise_not bitwise_and bitwise_or
              bitwise_xor
        torch: sign sgn argmax argmin isnan isinf isfinite signbit logical_not logical_and
               logical_or logical_xor bitwise_not bitwise_and bitwise_or bitwise_xor
        method: sign sgn argmax argmin bool isnan isinf isfinite signbit logical_not
                logical_and logical_or logical_xor bitwise_not __invert__ __and__ __or__
                __xor__
        op: invert and_ or_ xor not_
    """),
    (T.compare, """
        aten: eq ne lt gt le ge
        torch: eq ne lt gt le ge greater less greater_equal less_equal not_equal
        method: eq ne lt gt le ge __eq__ __ne__ __lt__ __gt__ __le__ __ge__
        op: eq ne lt gt le ge
    """),
    (T.add, "aten: add\n torch: add\n method: add __add__ __radd__\n op: add iadd"),
    (T.sub, """
        aten: sub rsub
        torch: sub subtract rsub
        method: sub subtract __sub__
        op: sub isub
    """),
    (T.mul, """
        aten: mul
        torch: mul multiply
        method: mul multiply __mul__ __rmul__
        op: mul imul
    """),
    (T.div, """
        aten: div
        torch: div divide true_divide
        method: div divide true_divide
        op: truediv itruediv
    """),
    (T.floordiv, """
        aten: floor_divide remainder fmod
        torch: floor_divide remainder fmod
        method: floor_divide remainder fmod
        op: floordiv mod
    """),
    (T.reciprocal, "aten: reciprocal\n torch: reciprocal\n method: reciprocal"),
    (T.power, """
        aten: pow float_power
        torch: pow float_power
        method: pow float_power __pow__
        op: pow
    """),
    (T.square, "aten: square\n torch: square\n method: square"),
    (T.sqrt, "aten: sqrt\n torch: sqrt\n method: sqrt"),
    (T.rsqrt, "aten: rsqrt\n torch: rsqrt\n method: rsqrt"),
    (L.matmul, """
        aten: mm bmm matmul mv dot vdot outer ger inner _convolution_mode
        torch: mm bmm matmul mv dot vdot outer ger inner
        method: mm bmm matmul mv dot outer __matmul__
        op: matmul
    """),
    (L.addmm, """
        aten: addmm baddbmm addbmm addmv addr addcmul
        torch: addmm baddbmm addbmm addmv addr addcmul
        method: addmm baddbmm addmv addcmul
    """),
    (L.einsum, "aten: einsum\n torch: einsum"),
    (L.linear, """
        aten: linear conv1d conv2d conv3d convolution conv_transpose1d conv_transpose2d
              conv_transpose3d _convolution bilinear conv_tbc
        torch: conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d bilinear
        F: linear conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d bilinear
    """),
    (T.maximum, """
        aten: maximum minimum fmax fmin
        torch: maximum minimum fmax fmin
        method: maximum minimum fmax fmin
    """),
    (T.max_min, "aten: max min\n torch: max min\n method: max min"),
    (T.reduce_with_indices, """
        aten: sort topk kthvalue median nanmedian mode cummax cummin max_pool2d_with_indices
              max_pool3d_with_indices adaptive_max_pool2d adaptive_max_pool1d adaptive_max_pool3d
              native_dropout
        torch: sort topk kthvalue median nanmedian mode cummax cummin
        method: sort topk kthvalue median nanmedian mode cummax cummin
    """),
    (T.where, "aten: where\n torch: where\n method: where"),
    (T.masked_fill, "aten: masked_fill\n torch: masked_fill\n method: masked_fill"),
    (T.scatter, """
        aten: index_put slice_scatter select_scatter scatter scatter_add index_add index_copy
              masked_scatter diagonal_scatter as_strided_scatter index_reduce scatter_reduce
        torch: index_put slice_scatter select_scatter scatter scatter_add index_add index_copy
               masked_scatter diagonal_scatter scatter_reduce
        method: index_put slice_scatter scatter scatter_add index_add index_copy masked_scatter
                scatter_reduce
    """),
    (T.copy, "aten: copy"),
    (T.pad, "aten: pad constant_pad_nd\n torch: constant_pad_nd\n F: pad"),
    (T.cat, """
        aten: cat stack hstack vstack dstack concat concatenate column_stack
        torch: cat stack hstack vstack dstack concat concatenate column_stack
    """),
    (T.convert, """
        aten: _to_copy to _autocast_to_reduced_precision
        method: to type long int short bool byte char
    """),
    (T.like, """
        aten: expand_as type_as view_as reshape_as
        method: view_as reshape_as expand_as type_as
    """),
    (T.first_value, """
        aten: scalar_tensor _local_scalar_dense
        torch: tensor as_tensor scalar_tensor
        method: item tolist
    """),
    (T.variance, "aten: var\n torch: var\n method: var"),
    (T.var_mean, "aten: var_mean\n torch: var_mean"),
    (T.norm, """
        aten: norm linalg_vector_norm frobenius_norm linalg_norm nuclear_norm std
        torch: norm frobenius_norm std
        method: norm std
    """),
    (L.layer_norm, """
        aten: layer_norm native_layer_norm group_norm native_group_norm
        torch: layer_norm group_norm
        F: layer_norm group_norm
    """),
    (L.batch_norm, """
        aten: batch_norm _native_batch_norm_legit _native_batch_norm_legit_functional
              _native_batch_norm_legit_no_training native_batch_norm instance_norm
              _batch_norm_with_update _batch_norm_no_update
        torch: batch_norm instance_norm
        F: batch_norm instance_norm
    """),
    (L.rms_norm, "aten: rms_norm _fused_rms_norm\n torch: rms_norm\n F: rms_norm"),
    (L.normalize, """
        aten: cosine_similarity
        torch: cosine_similarity
        F: normalize cosine_similarity
    """),
    (L.weight_norm, "aten: _weight_norm _weight_norm_interface\n torch: _weight_norm"),
    (L.attention, """
        aten: scaled_dot_product_attention _scaled_dot_product_flash_attention_for_cpu
              _scaled_dot_product_attention_math _scaled_dot_product_efficient_attention
              _scaled_dot_product_flash_attention _scaled_dot_product_cudnn_attention
        F: scaled_dot_product_attention
    """),
    (L.embedding, """
        aten: embedding embedding_bag _embedding_bag
        torch: embedding embedding_bag
        F: embedding embedding_bag
    """),
    (L.softmax_like, """
        aten: softmax _softmax log_softmax _log_softmax logsumexp special_softmax
              _safe_softmax
        torch: softmax log_softmax logsumexp softmin
        F: softmax log_softmax softmin gumbel_softmax
        method: softmax log_softmax logsumexp
    """),
    (T.nonlinear, """
        aten: gelu silu mish sigmoid tanh hardswish hardsigmoid softplus elu selu celu
              log_sigmoid glu hardshrink softshrink tanhshrink exp expm1 exp2 log log2 log10
              log1p sin cos tan asin acos atan atan2 sinh cosh asinh acosh atanh erf erfc erfinv
              round floor ceil trunc frac logit sinc lgamma digamma xlogy special_xlog1py
              local_response_norm logaddexp logaddexp2 hypot relu6 prod cumprod logcumsumexp
              nan_to_num fake_quantize_per_tensor_affine bernoulli poisson multinomial
        torch: sigmoid tanh exp expm1 exp2 log log2 log10 log1p sin cos tan asin acos atan atan2
               sinh cosh erf erfc erfinv round floor ceil trunc frac logit sinc lgamma digamma
               prod cumprod logaddexp hypot nan_to_num celu selu bernoulli poisson
               multinomial
        F: gelu silu mish sigmoid tanh hardswish hardsigmoid softplus elu selu celu logsigmoid
           glu hardshrink softshrink tanhshrink softsign relu6 local_response_norm
        method: sigmoid tanh exp expm1 log log2 log10 log1p sin cos tan asin acos atan sinh cosh
                erf erfc round floor ceil trunc frac prod cumprod logit nan_to_num
    """),
    (T.constant, """
        aten: ones ones_like arange linspace logspace eye rand randn randint rand_like
              randn_like randint_like randperm empty empty_like empty_strided new_ones new_empty
              one_hot triu_indices tril_indices meshgrid
        torch: ones ones_like arange linspace logspace eye rand randn randint rand_like
               randn_like randint_like randperm empty empty_like meshgrid triu_indices
               tril_indices
        F: one_hot
        method: new_ones new_empty new_tensor
    """),
    (T.full, "aten: full new_full full_like\n torch: full full_like\n method: new_full"),
    (T.zeros, """
        aten: zeros zeros_like new_zeros
        torch: zeros zeros_like
        method: new_zeros zero_
    """),
    (T.no_value, """
        aten: _assert_tensor_metadata _assert_async _assert_scalar sym_constrain_range
              sym_constrain_range_for_size _functional_assert_async _print
        torch: _assert _assert_async
    """),
    (T.shape_query, """
        aten: sym_size sym_numel sym_stride sym_storage_offset size stride numel dim
        torch: numel is_floating_point is_tensor is_complex
        method: size dim numel stride nelement ndimension element_size is_floating_point
                is_contiguous data_ptr get_device
        builtin: len isinstance
    """),
    (T.preserve, "method: data __getitem__\n op: getitem"),
]


_UNARY = {"neg", "pos", "invert", "not_", "abs", "index"}


def _method_signature(name: str) -> tuple[str, ...]:
    """``x.name(*args)`` binds like ``aten.name(self, *args)``; ``x.__op__(y)`` like a binary op."""
    if name.startswith("__"):
        return ("input", "other")
    packet = getattr(aten, name, None)
    sig = _aten_signature(packet) if packet is not None else None
    return sig or ("input", "*args")


def _aten_signature(packet) -> tuple[str, ...] | None:
    try:
        first = getattr(packet, packet.overloads()[0])
    except (IndexError, AttributeError):
        return None
    return tuple(_rename(a.name) for a in first._schema.arguments)


def _rename(name: str) -> str:
    return "input" if name in ("self", "a") else name


# explicit signatures for spellings whose Python signature is not introspectable
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "getitem": ("input", "index"),
    "setitem": ("input", "index", "value"),
    "getattr": ("input", "name"),
    "einsum": ("equation", "*operands"),
    "cat": ("tensors", "dim"),
    "stack": ("tensors", "dim"),
    "where": ("condition", "input", "other"),
    "linear": ("input", "weight", "bias"),
    "bilinear": ("input", "input2", "weight", "bias"),
    "scaled_dot_product_attention": (
        "query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"),
    "embedding": ("input", "weight", "padding_idx", "max_norm"),
    "to": ("input", "dtype"),
    "type": ("input", "dtype"),
    "type_as": ("input", "other"),
    "max": ("input", "other"),
    "min": ("input", "other"),
    "masked_fill": ("input", "mask", "value"),
    "new_full": ("input", "size", "fill_value"),
    "full": ("size", "fill_value"),
    "clamp": ("input", "min", "max"),
    "clip": ("input", "min", "max"),
    "clamp_min": ("input", "min"),
    "clamp_max": ("input", "max"),
    "addmm": ("input", "mat1", "mat2", "beta", "alpha"),
    "baddbmm": ("input", "batch1", "batch2", "beta", "alpha"),
    "addcmul": ("input", "tensor1", "tensor2", "value"),
    "pow": ("input", "exponent"),
}


@dataclass(frozen=True)
class Lookup:
    functions: dict[Any, Entry]
    methods: dict[str, Entry]
    packets: dict[Any, Entry]


def _build() -> Lookup:
    functions: dict[Any, Entry] = {}
    methods: dict[str, Entry] = {}
    packets: dict[Any, Entry] = {}
    namespaces = {"torch": torch, "F": F, "builtin": __import__("builtins")}
    for rule, spec in _SPEC:
        for ns, name in _parse(spec):
            if ns == "method":
                sig = _SIGNATURES.get(name) or _method_signature(name)
                methods[name] = Entry(name, rule, sig)
                methods.setdefault(name + "_", Entry(name, rule, sig, True))
            elif ns == "aten":
                packet = getattr(aten, name, None)
                if packet is not None:
                    packets[packet] = Entry(name, rule, _aten_signature(packet))
                inplace = getattr(aten, name + "_", None)
                if inplace is not None and inplace not in packets:
                    packets[inplace] = Entry(name, rule, _aten_signature(inplace), True)
            elif ns == "op":
                unary = ("input",) if name in _UNARY else ("input", "other")
                sig = _SIGNATURES.get(name) or unary
                # operator.iadd & co. mutate a tensor in place
                functions[getattr(operator, name)] = Entry(name, rule, sig, name.startswith("i"))
            else:
                fn = getattr(namespaces[ns], name, None)
                if fn is not None and fn not in functions:
                    functions[fn] = Entry(name, rule, _SIGNATURES.get(name) or _signature(fn))
    functions[operator.setitem] = Entry("setitem", T.scatter, _SIGNATURES["setitem"], True)
    functions[getattr] = Entry("getattr", _getattr_rule, _SIGNATURES["getattr"])
    return Lookup(functions, methods, packets)


_NAMESPACES = ("torch", "F", "method", "aten", "op", "builtin")


def _parse(spec: str):
    """Yield (namespace, name) from "ns: a b c" lines; indented lines continue the last ns."""
    ns = None
    for line in spec.strip().splitlines():
        head, sep, rest = line.partition(":")
        if sep and head.strip() in _NAMESPACES:
            ns, line = head.strip(), rest
        if ns is None:
            raise ValueError(f"op table line without a namespace: {line!r}")
        for name in line.split():
            yield ns, name


def _signature(fn) -> tuple[str, ...] | None:
    packet = getattr(aten, getattr(fn, "__name__", "") or "", None)
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return _aten_signature(packet) if packet is not None else None
    if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        # boolean_dispatch wrappers (F.max_pool1d & co.) hide their signature behind *args
        return _aten_signature(packet) if packet is not None else None
    names = []
    for p in params:
        names.append(("*" + p.name) if p.kind is p.VAR_POSITIONAL else _rename(p.name))
    return tuple(names)


def _getattr_rule(c: K.Call) -> Any:
    name = c.raw("name")
    if name in ("T", "mT", "H", "mH", "data", "real"):
        return c.deg("input")
    c.raw("input")
    return T.CONST  # shape, dtype, device, ndim …


LOOKUP = _build()


def entry_for(node: torch.fx.Node, module: nn.Module | None = None) -> Entry | ModuleRule | None:
    """The table entry for a traced node, or None when the op is unknown."""
    if node.op == "call_module":
        return module_rule(module)
    if node.op == "call_method":
        return LOOKUP.methods.get(node.target)
    if node.op == "call_function":
        target = node.target
        if isinstance(target, torch._ops.OpOverload):
            packet = target.overloadpacket
            entry = LOOKUP.packets.get(packet)
            if entry is not None:
                sig = tuple(_rename(a.name) for a in target._schema.arguments)
                return Entry(entry.name, entry.rule, sig, entry.inplace)
            return None
        try:
            entry = LOOKUP.functions.get(target)
        except TypeError:  # unhashable target
            return None
        if entry is not None:
            return entry
        if getattr(target, "__module__", None) == "_operator":
            return None
        # torch.add and friends reach here as builtins with their own identity
        return LOOKUP.functions.get(getattr(torch, getattr(target, "__name__", ""), None))
    return None


_FORWARDS = ("forward", "_conv_forward")


def module_rule(module: nn.Module | None) -> ModuleRule | None:
    """The rule for a leaf module, found along its class's MRO — but only if the subclass still
    computes what the base class does: timm's LayerNorm2d subclasses nn.LayerNorm and permutes
    to channels-last in its own forward(), so it must be traced through, not taken as one."""
    if module is None:
        return None
    kind = type(module)
    for cls in kind.__mro__:
        rule = MODULE_RULES.get(cls)
        if rule is not None:
            same = all(getattr(kind, f, None) is getattr(cls, f, None) for f in _FORWARDS)
            return rule if same else None
    return None


def bind(entry: Entry, args: tuple, kwargs: dict) -> tuple[dict[str, Any], dict[str, tuple]]:
    """Bind positional and keyword arguments to names.

    Returns the bound values and, per name, where the value came from (``("arg", i)`` or
    ``("kwarg", key)``) so that confirmation can substitute an epsilon in place.
    """
    sig = entry.signature or ()
    bound: dict[str, Any] = {}
    where: dict[str, tuple] = {}
    rest: list[Any] = []
    star = next((n[1:] for n in sig if n.startswith("*")), None)
    plain = [n for n in sig if not n.startswith("*")]
    for i, value in enumerate(args):
        if star is not None and i >= sig.index("*" + star):
            rest.append(value)
            continue
        if i < len(plain):
            bound[plain[i]] = value
            where[plain[i]] = ("arg", i)
        else:
            bound[f"_arg{i}"] = value
            where[f"_arg{i}"] = ("arg", i)
    if star is not None:
        bound[star] = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
    for key, value in kwargs.items():
        name = _rename(key)
        bound[name] = value
        where[name] = ("kwarg", key)
    for name in sig:
        if name not in where and not name.startswith("*"):
            where[name] = ("kwarg", name)
    if kwargs.get("inplace") is True:
        where["_inplace"] = ("kwarg", "inplace")
    return bound, where
