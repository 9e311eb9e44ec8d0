"""Float64 stand-ins compute what the kernels they replace compute."""

import torch

from wdaudit.ops.kernels import grouped_mm
from wdaudit.ops.lookup import stand_in


def test_grouped_mm_matches_the_float32_kernel():
    torch.manual_seed(0)
    x, w = torch.randn(7, 16), torch.randn(3, 16, 16)
    offs = torch.tensor([2, 2, 7], dtype=torch.int32)  # the middle expert gets no rows
    expected = torch.ops.aten._grouped_mm(x, w, offs)
    got = grouped_mm(x.double(), w.double(), offs)
    assert got.dtype == torch.float64
    assert torch.allclose(got.float(), expected, atol=1e-5)


def test_the_stand_in_is_found_by_overload_and_runs_in_float64():
    x, w = torch.randn(4, 16, dtype=torch.float64), torch.randn(2, 16, 16, dtype=torch.float64)
    offs = torch.tensor([1, 4], dtype=torch.int32)
    assert stand_in(torch.ops.aten._grouped_mm.default) is grouped_mm
    assert stand_in(torch.ops.aten.mm.default) is None
    expected = torch.cat([x[:1] @ w[0], x[1:] @ w[1]])
    assert torch.equal(grouped_mm(x, w, offs), expected)
