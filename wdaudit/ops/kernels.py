"""How confirmation computes an op other than by its kernel: the functions the op table's
``stand_in`` and ``replay`` fields name (the program runner applies them, DESIGN.md §4).

* A float64 stand-in computes the same mathematical function from float64-capable ops, for a
  fused kernel that only exists for float32/bfloat16 on CPU (``aten._grouped_mm``, the grouped
  expert matmul that transformers' mixture-of-experts layers call by default): a claim is
  still checked in float64 instead of being left unknown.
* A replay computes the same values as the traced call where the kernel itself would fail or
  give the Euler check a derivative that is not the forward function's.  It receives the
  node's target (one overload of a packet, or a Python function) and runs it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

aten = torch.ops.aten


# -- float64 stand-ins -------------------------------------------------------------------------

def grouped_mm(input: torch.Tensor, mat2: torch.Tensor, offs: torch.Tensor | None = None,
               bias: torch.Tensor | None = None, out_dtype: Any = None) -> torch.Tensor:
    """``aten._grouped_mm``: rows of a 2-D ``input`` split at the cumulative ends ``offs``,
    group g times ``mat2[g]``; without ``offs``, a batched matmul of 3-D operands."""
    if offs is None:
        out = torch.bmm(input, mat2) if input.dim() == 3 and mat2.dim() == 3 else input @ mat2
    elif input.dim() == 2 and mat2.dim() == 3:
        out = input.new_zeros(input.shape[0], mat2.shape[-1])
        start = 0
        for g, end in enumerate(offs.tolist()):
            if end > start:
                out[start:end] = input[start:end] @ mat2[g]
            start = end
    else:
        raise NotImplementedError(f"_grouped_mm of {input.dim()}-D by {mat2.dim()}-D with offsets")
    if bias is not None:
        out = out + bias
    return out if out_dtype is None else out.to(out_dtype)


# -- replays -------------------------------------------------------------------------------------

def view_by_reshape(target, args, kwargs) -> Any:
    """Decomposed graphs may view a tensor whose strides differ from what export saw (T5's
    transposed attention output); reshape computes the same values.  Only ``view.default``:
    ``view.dtype`` reinterprets bits, which reshape does not."""
    return (aten.reshape.default if target is aten.view.default else target)(*args, **kwargs)


def honest_embedding(target, args, kwargs) -> Any:
    """padding_idx and scale_grad_by_freq only change the *gradient* of an embedding; the
    Euler check needs the true derivative of the forward function, so drop them (the forward
    value is identical)."""
    args, kwargs = list(args), dict(kwargs)
    if target is F.embedding:  # (input, weight, padding_idx, max_norm, norm_type, scale_grad…)
        for position, name, value in ((2, "padding_idx", None), (5, "scale_grad_by_freq", False)):
            if len(args) > position:  # given positionally: a keyword too would be given twice
                args[position] = value
            else:
                kwargs[name] = value
    else:  # ATen's order: (weight, indices, padding_idx, scale_grad_by_freq, sparse)
        if len(args) > 2:
            args[2] = -1
        if len(args) > 3:
            args[3] = False
        kwargs.pop("padding_idx", None)
        kwargs.pop("scale_grad_by_freq", None)
    return target(*args, **kwargs)


def copy_values(target, args, kwargs) -> Any:
    """Functional copy (what export makes of ``x[i] = v``) has no derivative formula; these
    are its values, differentiably."""
    if target is not aten.copy.default:
        return target(*args, **kwargs)
    dst, src = args[0], args[1]
    return src.to(dtype=dst.dtype, device=dst.device).expand_as(dst).clone()


EMBEDDING_ATTRS = (("padding_idx", None), ("scale_grad_by_freq", False))
"""``nn.Embedding``'s attributes that change only its gradient (see ``honest_embedding``),
set so while confirmation's runner calls the module."""
