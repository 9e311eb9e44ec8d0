"""Found by the breadth sweep (issue 8): transformers ``hiera`` — the claims that each pooling
stage's ``layers.0.proj`` (weight and bias) is scale-free were refuted by confirmation (output
change 0.2-0.5 with eps -> 0), and under ``--no-confirm`` they would have been reported.

Cause: Hiera pools with ``proj(x).view(...).max(dim=1).values``.  Symbolic tracing records the
field access ``.values`` as ``getattr(result, "values")``, and the getattr rule took every
attribute but a few views (``.T``, ``.data``, ``.real``) for metadata: a constant.  The
projection's scale vanished there, so nothing downstream could see it.

Fixed in the op table (``ops/table.py``, ``_getattr_rule``): ``.values`` and ``.indices`` are
the elements of the (values, indices) result, ``.imag`` is a view like ``.real``, metadata
stays a constant, and any other attribute pins its input (degree 0), as an unknown op does.
"""

import torch
from torch import nn

from tests.support.differential import differential


class MaxPooled(nn.Module):
    """Hiera's query pooling: a projection, then a max over the pooled axis, into the stream."""

    def __init__(self, dim: int = 6):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.mix = nn.Linear(dim, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):  # (B, 4, dim)
        b, n, d = x.shape
        pooled = self.proj(x).view(b, 2, n // 2, d).max(dim=1).values
        where = x.abs().max(dim=1).indices  # (B, dim): an index, scale-free
        picked = torch.gather(self.mix(x), 1, where.unsqueeze(1))
        return self.head(pooled + x[:, : n // 2] + picked)


class Imag(nn.Module):
    def __init__(self, dim: int = 8):
        super().__init__()
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        spectrum = torch.fft.fft(self.proj(x), dim=-1)
        return self.head(self.norm(spectrum.real + spectrum.imag))


def test_a_projection_pooled_by_max_values_is_effective():
    torch.manual_seed(0)
    report, _ = differential(MaxPooled(), torch.randn(3, 4, 6))
    assert report.parameters["proj.weight"].verdict == "effective"
    assert report.parameters["mix.weight"].verdict == "effective"


def test_the_imaginary_part_scales_like_the_real_part():
    torch.manual_seed(0)
    report, _ = differential(Imag(), torch.randn(3, 8))
    assert {"proj.weight", "proj.bias"} <= report.ineffective
