"""A failure is the precision's (retried in float32) or the model's (reported): torch's own
dtype errors, in its current words, are the former; a model's own errors the latter."""

import pytest
import torch

from wdaudit.engine.confirmation.runs import _missing_kernel

aten = torch.ops.aten


def _raised(f) -> Exception:
    with pytest.raises(Exception) as info:
        f()
    return info.value


@pytest.mark.parametrize("f", [
    lambda: aten._grouped_mm(torch.randn(4, 16, dtype=torch.float64),
                             torch.randn(2, 16, 16, dtype=torch.float64),
                             torch.tensor([2, 4], dtype=torch.int32)),
    lambda: torch.randn(3, 3) @ torch.randn(3, 3, dtype=torch.float64),
    lambda: torch.full((2,), torch.finfo(torch.float64).min, dtype=torch.float32),
], ids=["no float64 kernel", "float32 beside float64", "float64 value in float32"])
def test_torchs_dtype_errors_are_the_precisions(f):
    assert _missing_kernel(_raised(f))


@pytest.mark.parametrize("exc", [
    RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"),
    ValueError("expected a double-sided mask"),  # the phrase, but not a type torch raises
    KeyError("dtype"),
])
def test_a_models_own_errors_are_not(exc):
    assert not _missing_kernel(exc)
