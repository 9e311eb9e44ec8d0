"""The op table: what every traced op kind means to the analyses (the table *is* the spec).

A traced node is ``call_function`` (a torch function, an ``operator`` function or an ATen
overload from ``torch.export``), ``call_method`` (``x.view(...)``) or ``call_module`` (a leaf
``nn.Module``).  All spellings of one op resolve to one :class:`~wdaudit.ops.record.Op`, which
carries everything the analyses and confirmation need to know about it (its fields:
:mod:`wdaudit.ops.record`).

Anything not listed is an *unknown op*, the same for every analysis: its inputs are forced to
degree 0, it mixes every term it reads, and it is counted once in the report (strict mode:
raises).

The table has three parts: these rows (shape, elementwise, arithmetic, selection ops),
:mod:`wdaudit.ops.table_layers` (products, normalisers, attention, softmax) and
:mod:`wdaudit.ops.leaf_modules` (layers kept whole); :mod:`wdaudit.ops.lookup` finds ops.
"""

from __future__ import annotations

import operator
from functools import partial
from typing import Any

from . import degrees_arithmetic as A
from . import degrees_elementwise as E
from . import kernels
from . import offsets as O
from .degree import Deg, element
from .op_call import Call
from .record import Op, Row

# Namespaces: torch (torch.X), F (torch.nn.functional.X), method (Tensor.X), aten (every
# overload of aten.X), op (operator.X), builtin (builtins.X), fft (torch.fft.X), library (every overload of a
# custom op by its qualified name, ns::name: libraries register theirs when imported).
ROWS: list[Row] = [
    # -- degree-preserving shape ops: where each additive term's constant axes go ----------
    Row(E.preserve, O.reshape, """
        aten: reshape flatten unflatten squeeze unsqueeze
        torch: flatten unflatten reshape squeeze unsqueeze
        method: view reshape unsqueeze squeeze flatten unflatten
    """, view=True),
    Row(E.preserve, O.reshape, "aten: view", view=True, replay=kernels.view_by_reshape),
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
    Row(E.preserve, O.expand, """
        aten: expand broadcast_to
        torch: broadcast_to
        method: expand broadcast_to
    """, view=True),
    Row(E.each, O.mixes, "aten: broadcast_tensors\n torch: broadcast_tensors", view=True),
    Row(E.preserve, O.expand, "aten: expand_copy"),
    Row(E.like, O.expand, "aten: expand_as\n method: expand_as", view=True),
    Row(E.preserve, O.select, "aten: select\n torch: select\n method: select", view=True),
    Row(E.preserve, O.pass_through, "aten: slice narrow\n torch: narrow\n method: narrow",
        view=True),
    Row(E.preserve, O.pass_through, "aten: detach\n torch: detach\n method: detach", view=True,
        metadata_only=True),
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
    Row(E.like, O.pass_through, "aten: type_as\n method: type_as",
        signatures={"type_as": ("input", "other")}),
    Row(E.convert, O.pass_through, "aten: _to_copy to\n method: to",
        signatures={"to": ("input", "dtype")}),
    Row(E.convert, O.mixes, """
        aten: _autocast_to_reduced_precision
        method: type long int short bool byte char
    """, signatures={"type": ("input", "dtype")}),
    Row(E.preserve, O.mean, "aten: mean\n torch: mean\n method: mean"),
    Row(E.preserve, O.mixes, """
        aten: as_strided diagonal movedim unfold mT numpy_T matrix_H
        torch: movedim diagonal
        method: movedim diagonal unfold mT data __getitem__
        op: getitem
    """, view=True, signatures={"getitem": ("input", "index")}),
    # -- linear maps of complex and spectral values: degree-preserving, terms mixed ----------
    Row(E.preserve, O.mixes, """
        aten: view_as_complex view_as_real real imag _conj conj
        torch: view_as_complex view_as_real real imag conj
        method: conj
    """, view=True),
    Row(E.polar, O.mixes, "aten: polar\n torch: polar"),
    Row(E.preserve, O.mixes, """
        aten: fft_fft fft_ifft fft_fft2 fft_ifft2 fft_fftn fft_ifftn fft_rfft fft_irfft fft_rfft2
              fft_irfft2 fft_rfftn fft_irfftn fft_hfft fft_ihfft fft_fftshift fft_ifftshift
              _fft_r2c _fft_c2r _fft_c2c conj_physical
        fft: fft ifft fft2 ifft2 fftn ifftn rfft irfft rfft2 irfft2 rfftn irfftn hfft ihfft
             fftshift ifftshift
        torch: conj_physical resolve_conj
        method: conj_physical resolve_conj
    """),
    Row(E.scale_invariant, O.mixes, "aten: angle\n torch: angle\n method: angle"),
    # -- losses computed inside the model: not homogeneous in their input --------------------
    Row(E.nonlinear, O.mixes, """
        aten: cross_entropy_loss nll_loss nll_loss_nd nll_loss2d mse_loss l1_loss smooth_l1_loss
              huber_loss binary_cross_entropy binary_cross_entropy_with_logits kl_div
              soft_margin_loss multilabel_margin_loss multi_margin_loss
        F: cross_entropy nll_loss mse_loss l1_loss smooth_l1_loss huber_loss binary_cross_entropy
           binary_cross_entropy_with_logits kl_div soft_margin_loss multilabel_margin_loss
           multi_margin_loss
    """),
    # -- degree-preserving, terms mixed -----------------------------------------------------
    Row(E.preserve, O.mixes, """
        aten: index index_select gather flip roll repeat tile tril triu pixel_shuffle
              pixel_unshuffle channel_shuffle native_channel_shuffle im2col col2im sum nansum
              amax amin cumsum max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d
              adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
              _adaptive_avg_pool3d upsample_nearest1d upsample_nearest2d upsample_nearest3d
              upsample_bilinear2d upsample_linear1d upsample_trilinear3d upsample_bicubic2d
              _upsample_bicubic2d_aa _upsample_bilinear2d_aa
              _upsample_nearest_exact2d feature_alpha_dropout reflection_pad1d reflection_pad2d
              reflection_pad3d replication_pad1d replication_pad2d replication_pad3d
              _unsafe_index slice_copy select_copy unbind_copy t_copy alias_copy detach_copy mH
              adjoint resolve_conj resolve_neg trace
              diag diag_embed take take_along_dim index_fill masked_select
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
                repeat_interleave
                to_dense cpu cuda requires_grad_ mH masked_select take
                diag take_along_dim
        builtin: id
    """, signatures={
        # its first ATen overload takes ``repeats`` alone; the Python and method spellings
        # take the tensor first (timm's gcvit)
        "repeat_interleave": ("input", "repeats", "dim", "output_size")}),
    Row(E.preserve_list, O.mixes, """
        aten: split split_with_sizes chunk unbind
        torch: split chunk unbind
        method: split chunk unbind
    """, view=True),
    Row(E.preserve_list, O.mixes, """
        aten: tensor_split hsplit vsplit dsplit unsafe_split unsafe_split_with_sizes unsafe_chunk
              split_copy
              split_with_sizes_copy
        torch: tensor_split hsplit vsplit dsplit
        method: tensor_split hsplit vsplit dsplit
    """),
    Row(E.relu, O.mixes, "aten: relu\n torch: relu\n F: relu\n method: relu"),
    # linear in the input; the grid is where to read, pinned (the engine pins what is unread)
    Row(E.preserve, O.mixes, """
        aten: grid_sampler grid_sampler_2d grid_sampler_3d
        torch: grid_sampler
        F: grid_sample
    """),
    Row(E.pool, O.mixes, """
        F: max_pool1d max_pool2d max_pool3d adaptive_max_pool1d adaptive_max_pool2d
           adaptive_max_pool3d fractional_max_pool2d fractional_max_pool3d
    """),
    Row(E.preserve_nonneg, O.mixes, "aten: abs\n torch: abs\n method: abs"),
    Row(A.neg, O.pass_through, """
        aten: neg negative
        torch: neg negative
        method: neg negative
        op: neg
    """, signatures={"neg": ("input",)}),
    # -- piecewise-linear ops with thresholds, comparisons ----------------------------------
    Row(E.leaky_relu, O.mixes, "aten: leaky_relu rrelu\n F: leaky_relu rrelu"),
    Row(E.prelu, O.mixes, "aten: prelu _prelu_kernel\n torch: prelu\n F: prelu\n method: prelu"),
    Row(E.clamp, O.mixes, """
        aten: clamp clip clamp_min clamp_max hardtanh
        torch: clamp clip clamp_min clamp_max
        F: hardtanh
        method: clamp clip clamp_min clamp_max
    """, signatures={"clamp": ("input", "min", "max"), "clip": ("input", "min", "max"),
                     "clamp_min": ("input", "min"), "clamp_max": ("input", "max")}),
    Row(E.threshold, O.mixes, "aten: threshold\n torch: threshold\n F: threshold"),
    Row(E.scale_invariant, O.mixes, """
        aten: sign sgn argmax argmin isnan isinf isfinite signbit heaviside logical_not
              logical_and logical_or logical_xor bitwise_not bitwise_and bitwise_or
              bitwise_xor
        torch: sign sgn argmax argmin isnan isinf isfinite signbit logical_not logical_and
               logical_or logical_xor bitwise_not bitwise_and bitwise_or bitwise_xor
        method: sign sgn argmax argmin isnan isinf isfinite signbit logical_not
                logical_and logical_or logical_xor bitwise_not __invert__ __and__ __or__
                __xor__ bitwise_and bitwise_or bitwise_xor
        op: invert and_ or_ xor not_
    """, signatures={"invert": ("input",), "not_": ("input",)}),
    Row(E.compare, O.mixes, """
        aten: eq ne lt gt le ge greater less greater_equal less_equal not_equal
        torch: eq ne lt gt le ge greater less greater_equal less_equal not_equal
        method: eq ne lt gt le ge __eq__ __ne__ __lt__ __gt__ __le__ __ge__ greater less
                greater_equal less_equal not_equal
        op: eq ne lt gt le ge
    """),
    # -- arithmetic ---------------------------------------------------------------------------
    Row(A.add, O.add, "aten: add\n torch: add\n method: add __add__ __radd__\n op: add"),
    Row(A.add, O.add, "op: iadd", inplace=True),
    Row(A.sub, O.subtract, """
        aten: sub subtract
        torch: sub subtract
        method: sub subtract __sub__
        op: sub
    """),
    Row(A.sub, O.subtract, "op: isub", inplace=True),
    Row(A.sub, O.add, "aten: rsub\n torch: rsub"),  # other - input: a sum all the same
    Row(A.mul, O.product, """
        aten: mul multiply
        torch: mul multiply
        method: mul multiply __mul__ __rmul__
        op: mul
    """),
    Row(A.mul, O.product, "op: imul", inplace=True),
    Row(A.div, O.scaled, """
        aten: div divide true_divide
        torch: div divide true_divide
        method: div divide true_divide
        op: truediv
    """),
    Row(A.div, O.scaled, "op: itruediv", inplace=True),
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
    """, signatures={"pow": ("input", "exponent")}),
    Row(A.square, O.mixes, "aten: square\n torch: square\n method: square"),
    Row(A.sqrt, O.mixes, "aten: sqrt\n torch: sqrt\n method: sqrt"),
    Row(A.rsqrt, O.mixes, "aten: rsqrt\n torch: rsqrt\n method: rsqrt"),
    # -- elementwise max/min, selection, scatter, padding, concatenation ----------------------
    Row(E.maximum, O.mixes, """
        aten: maximum minimum fmax fmin
        torch: maximum minimum fmax fmin
        method: maximum minimum fmax fmin
    """),
    Row(E.max_min, O.mixes, "aten: max min\n torch: max min\n method: max min",
        signatures={"max": ("input", "other"), "min": ("input", "other")}),
    Row(E.reduce_with_indices, O.mixes, """
        aten: sort topk kthvalue median nanmedian mode cummax cummin max_pool2d_with_indices
              max_pool3d_with_indices adaptive_max_pool2d adaptive_max_pool1d adaptive_max_pool3d
              native_dropout
        torch: sort topk kthvalue median nanmedian mode cummax cummin
        method: sort topk kthvalue median nanmedian mode cummax cummin
    """),
    Row(E.where, O.mixes, "aten: where\n torch: where\n method: where",
        signatures={"where": ("condition", "input", "other")}),
    Row(E.masked_fill, O.masked_fill, "aten: masked_fill\n torch: masked_fill\n method: masked_fill",
        signatures={"masked_fill": ("input", "mask", "value")}),
    Row(E.scatter, O.mixes, """
        aten: index_put slice_scatter select_scatter scatter scatter_add index_add index_copy
              masked_scatter diagonal_scatter as_strided_scatter index_reduce scatter_reduce
        torch: index_put slice_scatter select_scatter scatter scatter_add index_add index_copy
               masked_scatter diagonal_scatter scatter_reduce
        method: index_put slice_scatter scatter scatter_add index_add index_copy masked_scatter
                scatter_reduce select_scatter diagonal_scatter
    """),
    Row(E.copy, O.mixes, "aten: copy", replay=kernels.copy_values),
    Row(E.pad, O.mixes, "aten: pad constant_pad_nd pad_sequence\n torch: constant_pad_nd\n F: pad"),
    Row(partial(E.cat, split=True), O.mixes, "aten: cat\n torch: cat",
        signatures={"cat": ("tensors", "dim")}),
    Row(E.cat, O.mixes, """
        aten: stack hstack vstack dstack concat concatenate column_stack
        torch: stack hstack vstack dstack concat concatenate column_stack
    """, signatures={"stack": ("tensors", "dim")}),
    Row(E.first_value, O.mixes, """
        aten: scalar_tensor _local_scalar_dense
        torch: tensor as_tensor scalar_tensor
        method: item tolist
    """),
    # -- statistics --------------------------------------------------------------------------
    Row(A.variance, O.mixes, "aten: var\n torch: var\n method: var"),
    Row(A.var_mean, O.mixes, "aten: var_mean\n torch: var_mean"),
    Row(A.norm, O.mixes, """
        aten: norm linalg_vector_norm frobenius_norm linalg_norm nuclear_norm std
        torch: norm frobenius_norm std
        method: norm std
    """),
    # -- not homogeneous: the input must not scale -------------------------------------------
    Row(E.nonlinear, O.mixes, """
        aten: gelu silu mish sigmoid tanh hardswish hardsigmoid softplus elu selu celu
              log_sigmoid glu hardshrink softshrink exp expm1 exp2 log log2 log10
              log1p sin cos tan asin acos atan atan2 sinh cosh asinh acosh atanh erf erfc erfinv
              round floor ceil trunc frac logit sinc lgamma digamma xlogy special_xlog1py
              logaddexp logaddexp2 hypot relu6 prod cumprod logcumsumexp
              nan_to_num fake_quantize_per_tensor_affine bernoulli poisson multinomial histc
              bincount
        torch: sigmoid tanh exp expm1 exp2 log log2 log10 log1p sin cos tan asin acos atan atan2
               sinh cosh erf erfc erfinv round floor ceil trunc frac logit sinc lgamma digamma
               prod cumprod logaddexp hypot nan_to_num celu selu bernoulli poisson
               multinomial histc bincount
        F: gelu silu mish sigmoid tanh hardswish hardsigmoid softplus elu selu celu logsigmoid
           glu hardshrink softshrink tanhshrink softsign relu6 local_response_norm
        method: sigmoid tanh exp expm1 log log2 log10 log1p sin cos tan asin acos atan sinh cosh
                erf erfc round floor ceil trunc frac prod cumprod logit nan_to_num histc bincount
                exp2 atan2 erfinv sinc lgamma digamma logaddexp hypot bernoulli multinomial
    """),
    # -- tensors made from constants, metadata -------------------------------------------------
    Row(E.constant, O.value_free, """
        aten: ones ones_like arange linspace logspace eye rand randn randint rand_like
              randn_like randint_like randperm empty empty_like empty_strided new_ones new_empty
              triu_indices tril_indices
        torch: ones ones_like arange linspace logspace eye rand randn randint rand_like
               randn_like randint_like randperm empty empty_like triu_indices tril_indices
        method: new_ones new_empty new_tensor
    """),
    Row(E.constant, O.mixes, "aten: one_hot meshgrid\n torch: meshgrid\n F: one_hot"),
    Row(E.full, O.value_free,
        "aten: full new_full full_like fill\n torch: full full_like fill\n method: new_full fill",
        signatures={"full": ("size", "fill_value"), "new_full": ("input", "size", "fill_value")}),
    Row(E.zeros, O.value_free, """
        aten: zeros zeros_like new_zeros
        torch: zeros zeros_like
        method: new_zeros zero_
    """),
    Row(E.no_value, O.mixes, """
        aten: _assert_async _assert_scalar sym_constrain_range
              sym_constrain_range_for_size _functional_assert_async _print
        torch: _assert _assert_async"""),
    Row(E.no_value, O.mixes, "aten: _assert_tensor_metadata", dtype_check=True),
    Row(E.shape_query, O.value_free, """
        aten: sym_size sym_numel sym_stride sym_storage_offset size stride numel dim
              _has_compatible_shallow_copy_type is_same_size
        torch: numel is_floating_point is_tensor is_complex
        method: size dim numel stride nelement ndimension element_size is_floating_point
                is_contiguous data_ptr get_device is_complex
        builtin: len isinstance
    """),
]

def _getattr_rule(c: Call) -> Any:
    name = c.raw("name")
    if name in ("T", "mT", "H", "mH", "data", "real", "imag"):
        return c.deg("input")
    container = c.args.get("input")
    if name in _FIELDS and not isinstance(container, Deg):
        c.raw("input")
        return element(container, _FIELDS[name])
    if name in _METADATA:
        c.raw("input")
    # any other attribute may hold the input's values in a way not modelled here (hiera's
    # ``x.max(dim=1).values`` was once taken for a constant): its input is left unread, so
    # the engine pins it, as for an unknown op
    return E.CONST


_FIELDS = {"values": 0, "indices": 1}  # torch.return_types of max, min, sort, topk, mode …
_METADATA = {"shape", "dtype", "device", "ndim", "layout", "is_cuda", "is_meta", "is_sparse",
             "is_quantized", "requires_grad", "itemsize", "nbytes"}


def _getattr_offsets(c: O.OffsetCall) -> Any:
    if c.args.get("name") in _METADATA:
        return O.value_free(c)  # a tensor's metadata carries none of its values
    return O.mixes(c)


HOMONYMS = {"F: unfold"}
"""Spellings that share a name with a different op (``F.unfold`` is im2col, ``Tensor.unfold``
a sliding view): exempt from the rule that one name's spellings share one view flag."""

# spellings that are not an op of any namespace above
SPECIAL: dict[Any, Op] = {
    operator.setitem: Op("setitem", E.scatter, O.mixes, ("input", "index", "value"),
                         inplace=True),
    getattr: Op("getattr", _getattr_rule, _getattr_offsets, ("input", "name")),
}
