"""The op table's layer-level rows: products (degrees add, a bias must match), normalisers
(degree 0 out, whatever goes in), attention, embeddings, softmax and recurrent layers.  Same
row format as :mod:`wdaudit.ops.table`; a rule whose op has several spellings with different
outputs gets its keyword here, per spelling."""

from __future__ import annotations

from functools import partial

from . import degrees_arithmetic as A
from . import degrees_elementwise as E
from . import degrees_layers as L
from . import kernels
from . import offsets as O
from . import offsets_layers as OL
from . import shifted as S
from .record import Row

_RUNNING = "running statistics only: no mean of the data is taken"

ROWS: list[Row] = [
    # -- multiplicative: degrees add, a bias must match -------------------------------------
    Row(L.matmul, OL.matmul, """
        aten: mm bmm matmul
        torch: mm bmm matmul
        method: mm bmm matmul __matmul__
        op: matmul
    """),
    Row(L.matmul, O.mixes, """
        aten: mv dot vdot outer ger inner kron _convolution_mode
        torch: mv dot vdot outer ger inner kron
        method: mv dot outer vdot ger inner kron
    """),
    Row(L.grouped_mm, O.mixes, "aten: _grouped_mm", stand_in=kernels.grouped_mm),
    Row(L.grouped_mm, O.mixes, "F: grouped_mm\n library: transformers::grouped_mm_fallback"),
    Row(L.addmm, partial(OL.linear, addmm=True), "aten: addmm\n torch: addmm\n method: addmm",
        signatures={"addmm": ("input", "mat1", "mat2", "beta", "alpha")}),
    Row(L.addmm, O.mixes, """
        aten: baddbmm addbmm addmv addr addcmul
        torch: baddbmm addbmm addmv addr addcmul
        method: baddbmm addmv addcmul addbmm addr
    """, signatures={"baddbmm": ("input", "batch1", "batch2", "beta", "alpha"),
                     "addcmul": ("input", "tensor1", "tensor2", "value")}),
    Row(L.einsum, OL.einsum, "aten: einsum\n torch: einsum",
        signatures={"einsum": ("equation", "*operands")}),
    Row(L.linear, OL.linear, "aten: linear\n F: linear",
        signatures={"linear": ("input", "weight", "bias")}),
    Row(L.linear, partial(OL.linear, conv=True), """
        aten: conv1d conv2d conv3d convolution _convolution
        torch: conv1d conv2d conv3d
        F: conv1d conv2d conv3d
    """),
    Row(L.linear, O.mixes, """
        aten: conv_transpose1d conv_transpose2d conv_transpose3d bilinear conv_tbc
        torch: conv_transpose1d conv_transpose2d conv_transpose3d bilinear
        F: conv_transpose1d conv_transpose2d conv_transpose3d bilinear
    """, signatures={"bilinear": ("input", "input2", "weight", "bias")}),
    # -- normalisers: degree 0 out, whatever goes in -------------------------------------------
    # a mean-subtracting norm names its form on shifted data (eps -> 0 runs, ops/shifted.py)
    # or says why it has none
    Row(L.layer_norm, OL.layer_norm, "aten: layer_norm\n torch: layer_norm\n F: layer_norm",
        shifted=S.layer_norm),
    Row(partial(L.layer_norm, stats=True), partial(OL.layer_norm, stats=True),
        "aten: native_layer_norm", shifted=S.layer_norm_stats),
    Row(L.layer_norm, OL.group_norm, "aten: group_norm\n torch: group_norm\n F: group_norm",
        shifted=S.group_norm),
    Row(partial(L.layer_norm, stats=True), partial(OL.group_norm, stats=True),
        "aten: native_group_norm", shifted=S.group_norm_stats),
    Row(L.batch_norm, OL.batch_norm, "aten: batch_norm\n torch: batch_norm\n F: batch_norm",
        keeps_split=True, shifted=S.batch_norm),
    Row(L.batch_norm, OL.instance_norm, "aten: instance_norm\n torch: instance_norm\n "
                                       "F: instance_norm", keeps_split=True, shifted=S.instance_norm),
    Row(L.batch_norm, O.mixes, "aten: _batch_norm_with_update", keeps_split=True,
        shifted=S.batch_norm_with_update),
    Row(partial(L.batch_norm, batch_stats=False), O.mixes, "aten: _batch_norm_no_update",
        unshifted=_RUNNING),
    Row(partial(L.batch_norm, stats="saved"), partial(OL.batch_norm, stats=True),
        "aten: _native_batch_norm_legit native_batch_norm", keeps_split=True,
        shifted=S.batch_norm_saved),
    Row(partial(L.batch_norm, stats="saved", batch_stats=False), O.mixes,
        "aten: _native_batch_norm_legit_no_training", unshifted=_RUNNING),
    Row(partial(L.batch_norm, stats="functional"), partial(OL.batch_norm, stats=True),
        "aten: _native_batch_norm_legit_functional", keeps_split=True,
        shifted=S.batch_norm_functional),
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
    Row(L.attention, OL.attention, "aten: scaled_dot_product_attention\n "
                                  "F: scaled_dot_product_attention",
        signatures={"scaled_dot_product_attention": (
            "query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
            "enable_gqa")}),
    Row(partial(L.attention, extras=True), partial(OL.attention, extras=True), """
        aten: _scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_attention_math
              _scaled_dot_product_efficient_attention _scaled_dot_product_flash_attention
    """),
    Row(partial(L.attention, extras=True), O.mixes, "aten: _scaled_dot_product_cudnn_attention"),
    Row(L.embedding, O.mixes, "aten: embedding\n torch: embedding\n F: embedding",
        signatures={"embedding": ("input", "weight", "padding_idx", "max_norm")},
        replay=kernels.honest_embedding),
    Row(L.embedding, O.mixes, """
        aten: embedding_bag _embedding_bag
        torch: embedding_bag
        F: embedding_bag
    """),
    Row(L.softmax_like, OL.softmax, """
        aten: softmax _softmax log_softmax _log_softmax special_softmax _safe_softmax
        torch: softmax log_softmax
        F: softmax log_softmax softmin
        method: softmax log_softmax
    """),
    Row(L.softmax_like, O.mixes, """
        aten: logsumexp
        torch: logsumexp
        F: gumbel_softmax
        method: logsumexp
    """),
    Row(A.distance, O.mixes, "aten: cdist _cdist_forward\n torch: cdist"),
    # recurrent layers as export spells them (nn.LSTM/GRU/RNN are leaf modules otherwise):
    # gated by sigmoid/tanh, so nothing they read may scale; their outputs are constants
    Row(E.nonlinear, O.mixes, """
        aten: lstm gru rnn_tanh rnn_relu lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell
              _thnn_fused_lstm_cell _thnn_fused_gru_cell
        torch: lstm gru rnn_tanh rnn_relu lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell
    """),
]
