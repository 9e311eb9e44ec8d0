"""Float64 stand-ins for kernels that have no float64 implementation.

Confirmation runs the traced program in float64 (DESIGN.md §4); a few fused kernels only exist
for float32/bfloat16 on CPU — ``aten._grouped_mm``, the grouped expert matmul that
transformers' mixture-of-experts layers call by default.  Each stand-in computes the same
mathematical function from float64-capable ops, so a claim is still checked in float64
instead of being left unknown.  The program runner looks a node's target up in
:data:`STAND_INS` when it promotes to float64.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

aten = torch.ops.aten


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


STAND_INS: dict[Any, Callable[..., torch.Tensor]] = {aten._grouped_mm: grouped_mm}


def stand_in(target: Any) -> Callable[..., torch.Tensor] | None:
    """The float64 stand-in for a node's target (an overload or its packet), if it has one."""
    packet = getattr(target, "overloadpacket", target)
    return STAND_INS.get(packet)
