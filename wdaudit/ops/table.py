"""The op table: what every traced op kind means to the analyses (the table *is* the spec).

A traced node is ``call_function`` (a torch function, an ``operator`` function or an ATen
overload from ``torch.export``), ``call_method`` (``x.view(...)``) or ``call_module`` (a leaf
``nn.Module``, see :mod:`wdaudit.ops.leaf_modules`).  All spellings of one op resolve to one
:class:`Op`, which carries everything the analyses need to know about it:

* ``degrees``: how the op maps the scaling degrees of its operands (DESIGN.md §3);
* ``offsets``: how additive terms travel through it (:mod:`wdaudit.ops.offsets`);
* ``view``: whether its result may share its input's storage (in-place ops reach it);
* ``keeps_split``: whether it accepts a concatenation whose parts scale apart.

Anything not listed is an *unknown op*, the same for every analysis: its inputs are forced to
degree 0, it mixes every term it reads, and it is counted once in the report (strict mode:
raises).
"""

from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import degrees_arithmetic as A
from . import degrees_elementwise as E
from . import degrees_layers as L
from . import offsets as O
from .op_call import Call
from .signatures import (EXPLICIT, UNARY, aten_signature, bind, method_signature,
                         overload_signature, python_signature)

aten = torch.ops.aten


@dataclass(frozen=True)
class Op:
    name: str
    degrees: Callable[[Call], Any]
    offsets: Callable[[O.OffsetCall], Any] = O.mixes
    signature: tuple[str, ...] | None = None
    inplace: bool = False
    view: bool = False
    keeps_split: bool = False
    # leaf modules only: module(args, kwargs) -> named arguments; the attribute holding eps
    adapter: Callable[[nn.Module, tuple, dict], dict[str, Any]] | None = None
    eps_attr: str | None = None


@dataclass(frozen=True)
class Row:
    degrees: Callable[[Call], Any]
    offsets: Callable[[O.OffsetCall], Any]
    names: str  # "namespace: names" lines
    view: bool = False
    keeps_split: bool = False


# Namespaces: torch (torch.X), F (torch.nn.functional.X), method (Tensor.X), aten (every
# overload of aten.X), op (operator.X), builtin (builtins.X).
ROWS: list[Row] = [
    # -- degree-preserving shape ops: where each additive term's constant axes go ----------
    Row(E.preserve, O.reshape, """
        aten: view reshape flatten unflatten squeeze unsqueeze
        torch: flatten unflatten reshape squeeze unsqueeze
        method: view reshape unsqueeze squeeze flatten unflatten
    """, view=True),
    Row(E.preserve, O.reshape, "aten: _unsafe_view _reshape_alias view_copy squeeze_copy "
                               "unsqueeze_copy"),
    Row(E.like, O.reshape, "aten: view_as reshape_as\n method: view_as reshape_as", view=True),
    Row(E.preserve, O.matrix_transpose, "aten: t\n torch: t\n method: t", view=True),
    Row(E.transposed, O.transpose, """
        aten: transpose swapaxes
        torch: transpose swapaxes
        method: transpose swapaxes
    """, view=True, keeps_split=True),
    Row(E.preserve, O.transpose, "aten: transpose_copy"),
    Row(E.permuted, O.permute, "aten: permute\n torch: permute\n method: permute", view=True,
        keeps_split=True),
    Row(E.preserve, O.permute, "aten: permute_copy"),
    Row(E.preserve, O.expand, "aten: expand\n method: expand", view=True),
    Row(E.preserve, O.expand, "aten: expand_copy"),
    Row(E.like, O.expand, "aten: expand_as\n method: expand_as", view=True),
    Row(E.preserve, O.select, "aten: select\n torch: select\n method: select", view=True),
    Row(E.preserve, O.pass_through, """
        aten: detach slice narrow
        torch: narrow detach
        method: detach narrow
    """, view=True),
    Row(E.same_layout, O.pass_through, "aten: contiguous alias\n method: contiguous", view=True,
        keeps_split=True),
    Row(E.same_layout, O.pass_through, """
        aten: clone dropout
        torch: clone dropout
        F: dropout dropout1d
        method: clone
    """, keeps_split=True),
    Row(E.preserve, O.pass_through, """
        aten: lift_fresh_copy feature_dropout alpha_dropout positive
        torch: alpha_dropout feature_dropout
        F: alpha_dropout
        method: float double half bfloat16
    """),
    Row(E.like, O.pass_through, "aten: type_as\n method: type_as"),
    Row(E.convert, O.pass_through, "aten: _to_copy to\n method: to"),
    Row(E.convert, O.mixes, """
        aten: _autocast_to_reduced_precision
        method: type long int short bool byte char
    """),
    Row(E.preserve, O.mean, "aten: mean\n torch: mean\n method: mean"),
    Row(E.preserve, O.mixes, """
        aten: as_strided diagonal movedim unfold mT
        torch: movedim diagonal
        method: movedim diagonal unfold mT data __getitem__
        op: getitem
    """, view=True),
    # -- degree-preserving, terms mixed -----------------------------------------------------
    Row(E.preserve, O.mixes, """
        aten: index index_select gather flip roll repeat tile tril triu pixel_shuffle
              pixel_unshuffle channel_shuffle native_channel_shuffle im2col col2im sum nansum
              amax amin cumsum max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d
              adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
              _adaptive_avg_pool3d upsample_nearest1d upsample_nearest2d upsample_nearest3d
              upsample_bilinear2d upsample_linear1d upsample_trilinear3d upsample_bicubic2d
              _upsample_nearest_exact2d feature_alpha_dropout reflection_pad1d reflection_pad2d
              reflection_pad3d replication_pad1d replication_pad2d replication_pad3d
              _unsafe_index slice_copy select_copy unbind_copy t_copy alias_copy detach_copy mH
              adjoint conj resolve_conj resolve_neg lp_pool2d lp_pool1d lp_pool3d trace
              _unsafe_view_copy diag diag_embed take take_along_dim index_fill masked_select
              repeat_interleave
        torch: index_select gather flip roll tile tril triu pixel_shuffle pixel_unshuffle
               channel_shuffle sum nansum amax amin cumsum max_pool1d max_pool2d max_pool3d
               avg_pool1d adaptive_avg_pool1d diag take take_along_dim repeat_interleave
               masked_select
        F: dropout2d dropout3d feature_alpha_dropout avg_pool1d avg_pool2d
           avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d interpolate
           upsample upsample_nearest upsample_bilinear pixel_shuffle pixel_unshuffle unfold fold
           lp_pool1d lp_pool2d lp_pool3d channel_shuffle
        method: index_select gather flip roll repeat tile tril triu sum nansum amax amin cumsum
                to_dense cpu cuda requires_grad_ mH conj masked_select take
                repeat_interleave
        builtin: id
    """),
    Row(E.preserve_list, O.mixes, """
        aten: split split_with_sizes chunk unbind
        torch: split chunk unbind
        method: split chunk unbind
    """, view=True),
    Row(E.preserve_list, O.mixes, """
        aten: tensor_split unsafe_split unsafe_split_with_sizes unsafe_chunk split_copy
              split_with_sizes_copy
        torch: tensor_split hsplit vsplit dsplit
        method: tensor_split
    """),
    Row(E.relu, O.mixes, "aten: relu\n torch: relu\n F: relu\n method: relu"),
    Row(E.pool, O.mixes, """
        F: max_pool1d max_pool2d max_pool3d adaptive_max_pool1d adaptive_max_pool2d
           adaptive_max_pool3d fractional_max_pool2d fractional_max_pool3d
    """),
    Row(E.preserve_nonneg, O.mixes, "aten: abs\n torch: abs\n method: abs"),
    Row(A.neg, O.pass_through, "aten: neg\n torch: neg negative\n method: neg negative\n op: neg"),
    # -- piecewise-linear ops with thresholds, comparisons ----------------------------------
    Row(E.leaky_relu, O.mixes, "aten: leaky_relu rrelu\n F: leaky_relu rrelu\n method: leaky_relu"),
    Row(E.prelu, O.mixes, "aten: prelu _prelu_kernel\n torch: prelu\n F: prelu"),
    Row(E.clamp, O.mixes, """
        aten: clamp clamp_min clamp_max hardtanh
        torch: clamp clip clamp_min clamp_max
        F: hardtanh
        method: clamp clip clamp_min clamp_max
    """),
    Row(E.threshold, O.mixes, "aten: threshold\n torch: threshold\n F: threshold"),
    Row(E.scale_invariant, O.mixes, """
        aten: sign sgn argmax argmin isnan isinf isfinite signbit heaviside logical_not
              logical_and logical_or logical_xor bitwise_not bitwise_and bitwise_or
              bitwise_xor
        torch: sign sgn argmax argmin isnan isinf isfinite signbit logical_not logical_and
               logical_or logical_xor bitwise_not bitwise_and bitwise_or bitwise_xor
        method: sign sgn argmax argmin isnan isinf isfinite signbit logical_not
                logical_and logical_or logical_xor bitwise_not __invert__ __and__ __or__
                __xor__
        op: invert and_ or_ xor not_
    """),
    Row(E.compare, O.mixes, """
        aten: eq ne lt gt le ge
        torch: eq ne lt gt le ge greater less greater_equal less_equal not_equal
        method: eq ne lt gt le ge __eq__ __ne__ __lt__ __gt__ __le__ __ge__
        op: eq ne lt gt le ge
    """),
    # -- arithmetic ---------------------------------------------------------------------------
    Row(A.add, O.add, "aten: add\n torch: add\n method: add __add__ __radd__\n op: add iadd"),
    Row(A.sub, O.subtract, """
        aten: sub
        torch: sub subtract
        method: sub subtract __sub__
        op: sub isub
    """),
    Row(A.sub, O.add, "aten: rsub\n torch: rsub"),  # other - input: a sum all the same
    Row(A.mul, O.product, """
        aten: mul
        torch: mul multiply
        method: mul multiply __mul__ __rmul__
        op: mul imul
    """),
    Row(A.div, O.scaled, """
        aten: div
        torch: div divide true_divide
        method: div divide true_divide
        op: truediv itruediv
    """),
    Row(A.floordiv, O.mixes, """
        aten: floor_divide remainder fmod
        torch: floor_divide remainder fmod
        method: floor_divide remainder fmod
        op: floordiv mod
    """),
    Row(A.reciprocal, O.mixes, "aten: reciprocal\n torch: reciprocal\n method: reciprocal"),
    Row(A.power, O.mixes, """
        aten: pow float_power
        torch: pow float_power
        method: pow float_power __pow__
        op: pow
    """),
    Row(A.square, O.mixes, "aten: square\n torch: square\n method: square"),
    Row(A.sqrt, O.mixes, "aten: sqrt\n torch: sqrt\n method: sqrt"),
    Row(A.rsqrt, O.mixes, "aten: rsqrt\n torch: rsqrt\n method: rsqrt"),
    # -- multiplicative ----------------------------------------------------------------------
    Row(L.matmul, O.matmul, """
        aten: mm bmm matmul
        torch: mm bmm matmul
        method: mm bmm matmul __matmul__
        op: matmul
    """),
    Row(L.matmul, O.mixes, """
        aten: mv dot vdot outer ger inner _convolution_mode
        torch: mv dot vdot outer ger inner
        method: mv dot outer
    """),
    Row(L.addmm, partial(O.linear, addmm=True), "aten: addmm\n torch: addmm\n method: addmm"),
    Row(L.addmm, O.mixes, """
        aten: baddbmm addbmm addmv addr addcmul
        torch: baddbmm addbmm addmv addr addcmul
        method: baddbmm addmv addcmul
    """),
    Row(L.einsum, O.mixes, "aten: einsum\n torch: einsum"),
    Row(L.linear, O.linear, "aten: linear\n F: linear"),
    Row(L.linear, partial(O.linear, conv=True), """
        aten: conv1d conv2d conv3d convolution _convolution
        torch: conv1d conv2d conv3d
        F: conv1d conv2d conv3d
    """),
    Row(L.linear, O.mixes, """
        aten: conv_transpose1d conv_transpose2d conv_transpose3d bilinear conv_tbc
        torch: conv_transpose1d conv_transpose2d conv_transpose3d bilinear
        F: conv_transpose1d conv_transpose2d conv_transpose3d bilinear
    """),
    # -- elementwise max/min, selection, scatter, padding, concatenation ----------------------
    Row(E.maximum, O.mixes, """
        aten: maximum minimum fmax fmin
        torch: maximum minimum fmax fmin
        method: maximum minimum fmax fmin
    """),
    Row(E.max_min, O.mixes, "aten: max min\n torch: max min\n method: max min"),
    Row(E.reduce_with_indices, O.mixes, """
        aten: sort topk kthvalue median nanmedian mode cummax cummin max_pool2d_with_indices
              max_pool3d_with_indices adaptive_max_pool2d adaptive_max_pool1d adaptive_max_pool3d
              native_dropout
        torch: sort topk kthvalue median nanmedian mode cummax cummin
        method: sort topk kthvalue median nanmedian mode cummax cummin
    """),
    Row(E.where, O.mixes, "aten: where\n torch: where\n method: where"),
    Row(E.masked_fill, O.masked_fill, "aten: masked_fill\n torch: masked_fill\n method: masked_fill"),
    Row(E.scatter, O.mixes, """
        aten: index_put slice_scatter select_scatter scatter scatter_add index_add index_copy
              masked_scatter diagonal_scatter as_strided_scatter index_reduce scatter_reduce
        torch: index_put slice_scatter select_scatter scatter scatter_add index_add index_copy
               masked_scatter diagonal_scatter scatter_reduce
        method: index_put slice_scatter scatter scatter_add index_add index_copy masked_scatter
                scatter_reduce
    """),
    Row(E.copy, O.mixes, "aten: copy"),
    Row(E.pad, O.mixes, "aten: pad constant_pad_nd\n torch: constant_pad_nd\n F: pad"),
    Row(partial(E.cat, split=True), O.mixes, "aten: cat\n torch: cat"),
    Row(E.cat, O.mixes, """
        aten: stack hstack vstack dstack concat concatenate column_stack
        torch: stack hstack vstack dstack concat concatenate column_stack
    """),
    Row(E.first_value, O.mixes, """
        aten: scalar_tensor _local_scalar_dense
        torch: tensor as_tensor scalar_tensor
        method: item tolist
    """),
    # -- statistics and normalisers ------------------------------------------------------------
    Row(A.variance, O.mixes, "aten: var\n torch: var\n method: var"),
    Row(A.var_mean, O.mixes, "aten: var_mean\n torch: var_mean"),
    Row(A.norm, O.mixes, """
        aten: norm linalg_vector_norm frobenius_norm linalg_norm nuclear_norm std
        torch: norm frobenius_norm std
        method: norm std
    """),
    Row(L.layer_norm, O.layer_norm, "aten: layer_norm\n torch: layer_norm\n F: layer_norm"),
    Row(partial(L.layer_norm, stats=True), partial(O.layer_norm, stats=True),
        "aten: native_layer_norm"),
    Row(L.layer_norm, O.group_norm, "aten: group_norm\n torch: group_norm\n F: group_norm"),
    Row(partial(L.layer_norm, stats=True), partial(O.group_norm, stats=True),
        "aten: native_group_norm"),
    Row(L.batch_norm, O.batch_norm, "aten: batch_norm\n torch: batch_norm\n F: batch_norm",
        keeps_split=True),
    Row(L.batch_norm, O.instance_norm, "aten: instance_norm\n torch: instance_norm\n "
                                       "F: instance_norm", keeps_split=True),
    Row(L.batch_norm, O.mixes, "aten: _batch_norm_with_update", keeps_split=True),
    Row(partial(L.batch_norm, batch_stats=False), O.mixes, "aten: _batch_norm_no_update"),
    Row(partial(L.batch_norm, stats="saved"), partial(O.batch_norm, stats=True),
        "aten: _native_batch_norm_legit native_batch_norm", keeps_split=True),
    Row(partial(L.batch_norm, stats="saved", batch_stats=False), O.mixes,
        "aten: _native_batch_norm_legit_no_training"),
    Row(partial(L.batch_norm, stats="functional"), partial(O.batch_norm, stats=True),
        "aten: _native_batch_norm_legit_functional", keeps_split=True),
    Row(L.rms_norm, O.mixes, "aten: rms_norm\n torch: rms_norm\n F: rms_norm"),
    Row(partial(L.rms_norm, stats=True), O.mixes, "aten: _fused_rms_norm"),
    Row(L.normalize, O.mixes, """
        aten: cosine_similarity
        torch: cosine_similarity
        F: normalize cosine_similarity
    """),
    Row(L.weight_norm, O.mixes, "aten: _weight_norm\n torch: _weight_norm"),
    Row(partial(L.weight_norm, norms=True), O.mixes, "aten: _weight_norm_interface"),
    # -- attention, embeddings, softmax --------------------------------------------------------
    Row(L.attention, O.attention, "aten: scaled_dot_product_attention\n "
                                  "F: scaled_dot_product_attention"),
    Row(partial(L.attention, extras=True), partial(O.attention, extras=True), """
        aten: _scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_attention_math
              _scaled_dot_product_efficient_attention _scaled_dot_product_flash_attention
    """),
    Row(partial(L.attention, extras=True), O.mixes, "aten: _scaled_dot_product_cudnn_attention"),
    Row(L.embedding, O.mixes, """
        aten: embedding embedding_bag _embedding_bag
        torch: embedding embedding_bag
        F: embedding embedding_bag
    """),
    Row(L.softmax_like, O.softmax, """
        aten: softmax _softmax log_softmax _log_softmax special_softmax _safe_softmax
        torch: softmax log_softmax softmin
        F: softmax log_softmax softmin
        method: softmax log_softmax
    """),
    Row(L.softmax_like, O.mixes, """
        aten: logsumexp
        torch: logsumexp
        F: gumbel_softmax
        method: logsumexp
    """),
    # -- not homogeneous: the input must not scale -------------------------------------------
    Row(E.nonlinear, O.mixes, """
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
    # -- tensors made from constants, metadata -------------------------------------------------
    Row(E.constant, O.mixes, """
        aten: ones ones_like arange linspace logspace eye rand randn randint rand_like
              randn_like randint_like randperm empty empty_like empty_strided new_ones new_empty
              one_hot triu_indices tril_indices meshgrid
        torch: ones ones_like arange linspace logspace eye rand randn randint rand_like
               randn_like randint_like randperm empty empty_like meshgrid triu_indices
               tril_indices
        F: one_hot
        method: new_ones new_empty new_tensor
    """),
    Row(E.full, O.mixes, "aten: full new_full full_like\n torch: full full_like\n method: new_full"),
    Row(E.zeros, O.mixes, """
        aten: zeros zeros_like new_zeros
        torch: zeros zeros_like
        method: new_zeros zero_
    """),
    Row(E.no_value, O.mixes, """
        aten: _assert_tensor_metadata _assert_async _assert_scalar sym_constrain_range
              sym_constrain_range_for_size _functional_assert_async _print
        torch: _assert _assert_async
    """),
    Row(E.shape_query, O.mixes, """
        aten: sym_size sym_numel sym_stride sym_storage_offset size stride numel dim
        torch: numel is_floating_point is_tensor is_complex
        method: size dim numel stride nelement ndimension element_size is_floating_point
                is_contiguous data_ptr get_device
        builtin: len isinstance
    """),
]


def _getattr_rule(c: Call) -> Any:
    name = c.raw("name")
    if name in ("T", "mT", "H", "mH", "data", "real"):
        return c.deg("input")
    c.raw("input")
    return E.CONST  # shape, dtype, device, ndim …


@dataclass(frozen=True)
class Lookup:
    functions: dict[Any, Op]
    methods: dict[str, Op]
    packets: dict[Any, Op]


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


def _build() -> Lookup:
    functions: dict[Any, Op] = {}
    methods: dict[str, Op] = {}
    packets: dict[Any, Op] = {}
    namespaces = {"torch": torch, "F": F, "builtin": builtins}
    for row in ROWS:
        for ns, name in _parse(row.names):
            op = Op(name, row.degrees, row.offsets, view=row.view, keeps_split=row.keeps_split)
            if ns == "method":
                op = replace(op, signature=EXPLICIT.get(name) or method_signature(name))
                methods[name] = op
                methods.setdefault(name + "_", replace(op, inplace=True))
            elif ns == "aten":
                packet = getattr(aten, name, None)
                if packet is not None:
                    packets[packet] = replace(op, signature=aten_signature(packet))
                inplace = getattr(aten, name + "_", None)
                if inplace is not None and inplace not in packets:
                    packets[inplace] = replace(op, signature=aten_signature(inplace),
                                               inplace=True)
            elif ns == "op":
                unary = ("input",) if name in UNARY else ("input", "other")
                # operator.iadd & co. mutate a tensor in place
                functions[getattr(operator, name)] = replace(
                    op, signature=EXPLICIT.get(name) or unary, inplace=name.startswith("i"))
            else:
                fn = getattr(namespaces[ns], name, None)
                if fn is not None and fn not in functions:
                    functions[fn] = replace(op, signature=EXPLICIT.get(name)
                                            or python_signature(fn))
    functions[operator.setitem] = Op("setitem", E.scatter, O.mixes, EXPLICIT["setitem"], True)
    functions[getattr] = Op("getattr", _getattr_rule, O.mixes, EXPLICIT["getattr"])
    return Lookup(functions, methods, packets)


LOOKUP = _build()
_OVERLOADS: dict[Any, Op | None] = {}


def lookup(node: fx.Node, module: nn.Module | None = None) -> Op | None:
    """The table's op for a traced node, or None when the op is unknown."""
    if node.op == "call_module":
        from .leaf_modules import module_op

        return module_op(module)
    if node.op == "call_method":
        return LOOKUP.methods.get(node.target)
    if node.op != "call_function":
        return None
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        if target not in _OVERLOADS:
            op = LOOKUP.packets.get(target.overloadpacket)
            # bind by this overload's own schema (aten.mean.dim is not aten.mean.default)
            _OVERLOADS[target] = None if op is None else \
                replace(op, signature=overload_signature(target))
        return _OVERLOADS[target]
    try:
        op = LOOKUP.functions.get(target)
    except TypeError:  # unhashable target
        return None
    if op is not None:
        return op
    if getattr(target, "__module__", None) == "_operator":
        return None
    # torch.add and friends reach here as builtins with their own identity
    return LOOKUP.functions.get(getattr(torch, getattr(target, "__name__", ""), None))


def bound_arguments(op: Op, node: fx.Node, module: nn.Module | None
                    ) -> tuple[dict[str, Any], dict[str, tuple]]:
    """The node's arguments bound by name, and where each came from (for eps substitution).
    A leaf module's own tensors appear as :class:`~wdaudit.ops.leaf_modules.OwnTensor`."""
    if op.adapter is not None:
        return dict(op.adapter(module, tuple(node.args), dict(node.kwargs))), {}
    return bind(op.signature, tuple(node.args), dict(node.kwargs))
