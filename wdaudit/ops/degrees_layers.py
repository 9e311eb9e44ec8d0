"""Degree rules for layer-level ops: products (matmul, linear, conv, einsum), normalisers,
attention, embeddings and softmax.  Same contract as :mod:`wdaudit.ops.degrees_elementwise`.

A rule whose op has several spellings with different outputs (``layer_norm`` returns the
tensor, ``native_layer_norm`` the tensor and its statistics) takes a keyword that the op table
sets per spelling."""

from __future__ import annotations

from typing import Any

from .degree import CONST, ZERO, ZERO_FORM, Deg, Multi, Requires, Split
from .op_call import Call, as_deg, is_number


def matmul(c: Call) -> Deg | None:
    a, b = c.deg("input"), c.deg("other", "mat2", "vec")
    if a is None or b is None:
        return None
    if a.zero or b.zero:
        return ZERO
    return Deg(a.form + b.form)


def grouped_mm(c: Call) -> Deg | None:
    """Mixture-of-experts products: rows of ``input`` grouped by expert (``offs``, integer
    boundaries the router chose), each group times its expert's matrix.  Per group a matmul,
    so degrees add; a bias must match the product."""
    a, b = c.deg("input"), c.deg("weight", "mat2")
    c.raw("offs", "out_dtype")
    if a is None or b is None:
        return None
    prod = ZERO if (a.zero or b.zero) else Deg(a.form + b.form)
    return c.same([prod, c.deg("bias")], "a bias must scale like the product it is added to")


def addmm(c: Call) -> Deg | None:
    """``beta * input + alpha * (mat1 @ mat2)``: a bias add after a product (GPT-2's Conv1D)."""
    m1 = c.deg("mat1", "batch1", "tensor1", "mat", "vec1")
    m2 = c.deg("mat2", "batch2", "tensor2", "vec", "vec2")
    prod = ZERO if (m1 is None or m2 is None or m1.zero or m2.zero) else Deg(m1.form + m2.form)
    alpha = c.raw("alpha", "value", default=1)
    if is_number(alpha) and alpha == 0:
        prod = ZERO
    bias = c.deg("input")
    beta = c.raw("beta", default=1)
    if is_number(beta) and beta == 0:
        bias = ZERO
    return c.same([bias, prod], "a bias must scale like the product it is added to")


def einsum(c: Call) -> Deg | None:
    c.raw("equation")
    ops = c.raw("operands", "tensors")
    degs = [as_deg(o) for o in (ops if isinstance(ops, (list, tuple)) else [ops])]
    if any(d is not None and d.zero for d in degs):
        return ZERO
    total = ZERO_FORM
    for d in degs:
        if d is not None:
            total = total + d.form
    return Deg(total)


def linear(c: Call) -> Deg | None:
    """linear, conv*, conv_transpose*, bilinear: product of input and weight, then the bias."""
    x, w = c.deg("input"), c.deg("weight")
    x2 = c.deg("input2")
    if x is None or w is None:
        return None
    if x.zero or w.zero or (x2 is not None and x2.zero):
        prod = ZERO
    else:
        prod = Deg(x.form + w.form + (x2.form if x2 is not None else ZERO_FORM))
    if c.raw("padding_mode", default="zeros") not in ("zeros", "reflect", "replicate", "circular"):
        c.require_zero(prod, "unusual padding mode")
    return c.same([prod, c.deg("bias")], "a bias must scale like the product it is added to")


# ---------------------------------------------------------------------------------------
# normalisers: output degree 0 (plus the affine), whatever the input's degree
# ---------------------------------------------------------------------------------------


def _affine(c: Call, normalised: Deg) -> Deg:
    w, b = c.deg("weight"), c.deg("bias")
    out = normalised if w is None else (ZERO if w.zero else Deg(normalised.form + w.form))
    return c.same([out, b], "a norm's bias must scale like its weight")


def layer_norm(c: Call, *, stats: bool = False) -> Any:
    """layer and group norm; ``stats``: also (mean, rstd), as ``native_layer_norm`` returns."""
    c.raw("input")
    for name in ("normalized_shape", "num_groups", "momentum", "cudnn_enable", "cudnn_enabled"):
        c.raw(name)
    c.mark_eps("eps")
    c.raw("eps")
    out = _affine(c, Deg())
    if stats:
        x = c.deg("input") or CONST
        for name in ("N", "C", "HxW", "group"):
            c.raw(name)
        return (out, x, Deg(-x.form, nonneg=True))
    return out


def batch_norm(c: Call, *, stats: str | None = None, batch_stats: bool | None = None) -> Any:
    """batch and instance norm.  ``stats``: the statistics returned beside the output —
    ``"saved"`` (mean, rstd) or ``"functional"`` (those and the updated running statistics).
    ``batch_stats``: set by spellings that say it in their name rather than in an argument
    (``_native_batch_norm_legit_no_training`` normalises with the running statistics)."""
    training = c.raw("training", "use_input_stats", default=True) if batch_stats is None \
        else batch_stats
    raw = c.raw("input")
    if isinstance(raw, Split) and training and raw.dim == 1:
        # per-channel statistics: each concatenated part is normalised on its own
        c.raw("running_mean", "running_var", "momentum", "cudnn_enabled", "eps")
        c.mark_eps("eps")
        out = _affine(c, Deg())
        if stats is not None:
            equal = tuple(p.form - raw.parts[0].form for p in raw.parts[1:])
            stats = Requires(equal, CONST, "per-channel statistics of parts that scale apart")
            return Multi(out, stats)
        return out
    x = c.deg("input")
    rm, _ = c.raw("running_mean"), c.raw("running_var")
    c.raw("momentum", "cudnn_enabled")
    if not training and rm is not None:
        # eval mode: an affine map with constant shift; the input must not scale
        c.require_zero(x, "batch_norm on running statistics is affine with a constant shift")
        c.raw("eps")
        out = _affine(c, Deg())
    else:
        c.mark_eps("eps")
        c.raw("eps")
        out = _affine(c, Deg())
    if stats is not None:
        xf = (x or CONST).form
        saved = (Deg(xf), Deg(-xf, nonneg=True))
        if stats == "functional":
            updated = Requires((xf,), CONST, "updated running statistics read as a tensor")
            return (out, *saved, updated, Requires((xf.scale(2),), CONST, "running variance"))
        return (out, *saved)
    return out


def rms_norm(c: Call, *, stats: bool = False) -> Any:
    """RMS norm; ``stats``: also the rstd, as ``_fused_rms_norm`` returns."""
    c.raw("input", "normalized_shape")
    c.mark_eps("eps")
    c.raw("eps")
    w = c.deg("weight")
    out = Deg() if w is None else w
    if stats:
        return (out, Deg(-(c.deg("input") or CONST).form, nonneg=True))
    return out


def normalize(c: Call) -> Deg:
    """F.normalize / cosine_similarity: degree 0 whatever the input."""
    c.read_rest("eps")
    c.mark_eps("eps")
    c.raw("eps")
    return Deg()


def weight_norm(c: Call, *, norms: bool = False) -> Any:
    """``g * v / ‖v‖``: scale-free in v, degree of g; ``norms``: also ‖v‖."""
    v, g = c.deg("v"), c.deg("g")
    c.raw("dim")
    out = g if g is not None else Deg()
    if norms:
        return (out, Deg((v or CONST).form, nonneg=True))
    return out


# ---------------------------------------------------------------------------------------
# attention, embeddings, RNNs
# ---------------------------------------------------------------------------------------


def attention(c: Call, *, extras: bool = False) -> Any:
    """softmax(q kᵀ · scale + mask) v: the logits must not scale; the output scales like v.
    ``extras``: the fused kernels also return (logsumexp, …)."""
    q, k, v = c.deg("query"), c.deg("key"), c.deg("value")
    mask = c.raw("attn_mask")
    for name in ("dropout_p", "is_causal", "scale", "enable_gqa"):
        c.raw(name)
    if q is not None and k is not None and not q.zero and not k.zero:
        c.require_zero(Deg(q.form + k.form), "attention logits feed a softmax")
    md = as_deg(mask)
    if md is not None and mask is not None:
        c.require_zero(md, "an additive attention mask")
    out = v if v is not None else CONST
    if extras:
        return Multi(out, CONST)  # (output, logsumexp, …)
    return out


def embedding(c: Call) -> Deg | None:
    c.raw("indices", "input", "offsets", "padding_idx", "scale_grad_by_freq", "sparse")
    w = c.deg("weight")
    max_norm = c.raw("max_norm")
    if max_norm is not None:
        c.require_zero(w, "embedding max_norm renormalises rows above a threshold")
        return CONST
    psw = c.deg("per_sample_weights")
    if psw is not None and w is not None:
        return Deg(w.form + psw.form)
    return w


def softmax_like(c: Call) -> Deg:
    x = c.raw("input")
    c.read_rest()
    c.require_zero(x, f"{c.op} is not positively homogeneous")
    return Deg(nonneg=True)


# -- leaf modules kept whole (ops/leaf_modules.py binds their arguments) -----------------

def recurrent(c: Call) -> Any:
    """LSTM/GRU/RNN: gated by sigmoid/tanh, so nothing inside scales."""
    for name in list(c.args):
        c.require_zero(c.raw(name), "recurrent cell with saturating gates")
    return Multi(CONST, Multi(CONST, CONST))


def multihead_attention(c: Call) -> Any:
    """nn.MultiheadAttention: q/k/v projections (one packed tensor or three), a softmax over
    q·kᵀ, the output projection."""
    packed = c.deg("in_proj_weight")
    proj = {k: packed or c.deg(f"{k[0]}_proj_weight") for k in ("query", "key", "value")}
    bias = c.deg("in_proj_bias")
    heads = {}
    for k in ("query", "key", "value"):
        x, w = c.deg(k), proj[k]
        prod = ZERO if (x is None or w is None or x.zero or w.zero) else Deg(x.form + w.form)
        heads[k] = c.same([prod, bias], "attention projection bias")
    heads["key"] = c.same([heads["key"], c.deg("bias_k")], "bias_k joins the keys")
    heads["value"] = c.same([heads["value"], c.deg("bias_v")], "bias_v joins the values")
    q, k = heads["query"], heads["key"]
    if not q.zero and not k.zero:
        c.require_zero(Deg(q.form + k.form), "attention logits feed a softmax")
    c.require_zero(c.deg("attn_mask"), "an additive attention mask")
    c.raw("key_padding_mask", "need_weights", "average_attn_weights", "is_causal")
    v, wo = heads["value"], c.deg("out_weight")
    prod = ZERO if (v.zero or wo is None or wo.zero) else Deg(v.form + wo.form)
    out = c.same([prod, c.deg("out_bias")], "output projection bias")
    return (out, Deg(nonneg=True))
