"""Found by the breadth sweep (issue 8): timm ``mobileone_s0`` / ``mobileone_s2`` — the joint
claim over a MobileOne block's branch BatchNorms (all gains and biases together) failed
confirmation: Euler residual 3.2e-2 at the saturating point; a rescaling by 1.001 there moved
the output by 46 % with eps 1e-24.

Cause: not the static analysis, round-off.  At the saturating point one channel of the stem
is dead (a ReLU negative for the whole batch); every branch's depthwise conv of it is 0, each
BatchNorm turns that 0 into its bias, and the block's ReLU passes their constant sum to the
next block's BatchNorms.  There ``x - mean`` and ``var`` are pure float64 round-off, and with
eps -> 0 the 0/0 returns it at order one; rescaling the claimed biases changes the round-off.
The claim is exact: the next block normalises everything it reads.  (swiftformer's constant
channel, a no-effect bias, was cleared by re-measuring at the model's own eps; a scale-free
claim cannot use that, its invariance being exact only as eps -> 0.)

Fixed in the program's eps -> 0 runs (``engine/tracing/shifted_norms.py``): mean-subtracting norms
first subtract each normalised group's first element, so a constant group is exactly zero and
the norm returns exactly what exact arithmetic does; no other value changes.

Below, the same mechanism: two input channels that are zero, two BatchNorm branches, the next
block's BatchNorms.
"""

from functools import partial

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support.differential import differential
from wdaudit.engine.tracing.shifted_norms import ShiftedNorms

aten = torch.ops.aten


class Branch(nn.Module):
    def __init__(self, c: int, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.bn = norm(c)

    def forward(self, x):
        return self.bn(self.conv(x))


class TwoBlocks(nn.Module):
    def __init__(self, c: int = 8, norm=nn.BatchNorm2d):
        super().__init__()
        self.a, self.b = Branch(c, norm), Branch(c, norm)
        self.identity = norm(c)
        self.c = Branch(c, norm)
        self.head = nn.Linear(c, 3)

    def forward(self, x):
        y = torch.relu(self.a(x) + self.b(x))
        z = torch.relu(self.identity(y) + self.c(y))
        return self.head(z.mean(dim=(2, 3)))


@pytest.mark.parametrize("norm", [nn.BatchNorm2d, partial(nn.InstanceNorm2d, affine=True)],
                         ids=["batch", "instance"])
def test_a_constant_channel_between_norms_keeps_the_claim(norm):
    """InstanceNorm's groups are each example's channels: without its shifted form (until
    2026-12-07) the claims were unknown and the differential check called them missed."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    x[:, ::2] = 0.0  # dead channels, as after a ReLU
    report, _ = differential(TwoBlocks(norm=norm), x)
    assert {"a.bn.weight", "a.bn.bias", "b.bn.weight", "b.bn.bias"} <= report.ineffective


@pytest.mark.parametrize("norm", ["batch", "layer", "group", "native_batch", "functional_batch",
                                  "native_layer", "native_group", "instance", "torch_instance",
                                  "batch_with_update"])
def test_shifted_norms_change_nothing_but_a_constant_group_is_exactly_zero(norm):
    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5, dtype=torch.float64) * 3 + 7
    x[:, 1] = 19.863433020167626  # constant across the batch: one channel, one group
    w, b = torch.rand(4, dtype=torch.float64) + 0.5, torch.randn(4, dtype=torch.float64)
    eps = 1e-24
    run = {
        "batch": lambda: F.batch_norm(x, None, None, w, b, True, 0.1, eps),
        "layer": lambda: F.layer_norm(x[:, 1:2], (1, 5, 5), eps=eps),
        "group": lambda: F.group_norm(x, 4, w, b, eps),
        "native_batch": lambda: aten.native_batch_norm.default(x, w, b, None, None, True, 0.1,
                                                               eps),
        "functional_batch": lambda: aten._native_batch_norm_legit_functional.default(
            x, w, b, torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64),
            True, 0.1, eps),
        "native_layer": lambda: aten.native_layer_norm.default(x[:, 1:2], (1, 5, 5), None,
                                                               None, eps),
        "native_group": lambda: aten.native_group_norm.default(x, w, b, 3, 4, 25, 4, eps),
        "instance": lambda: F.instance_norm(x, None, None, w, b, True, 0.1, eps),
        "torch_instance": lambda: torch.instance_norm(x, w, b, None, None, True, 0.1, eps,
                                                      False),
        "batch_with_update": lambda: aten._batch_norm_with_update.default(
            x, w, b, torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64),
            0.1, eps),
    }[norm]
    if norm == "torch_instance":  # no spatial axes: one value per group, returned as is
        flat = x[:, :, 0, 0]
        alone = torch.instance_norm(flat, w, b, None, None, True, 0.1, eps, False)
        with ShiftedNorms():
            assert torch.equal(torch.instance_norm(flat, w, b, None, None, True, 0.1, eps, False),
                               alone)
    plain = run()
    with ShiftedNorms():
        shifted = run()
    plain = plain if isinstance(plain, tuple) else (plain,)
    shifted = shifted if isinstance(shifted, tuple) else (shifted,)
    # the constant group: exactly its bias (or 0), where plain arithmetic returns round-off
    y = shifted[0]
    constant = y if norm in ("layer", "native_layer") else y[:, 1]
    assert torch.equal(constant, (b[1] if norm != "layer" and norm != "native_layer"
                                  else torch.tensor(0.0, dtype=torch.float64)).expand_as(constant))
    # everything else, and every statistic returned beside the output, as before
    keep = [0, 2, 3]
    if constant is not y:
        assert torch.allclose(y[:, keep], plain[0][:, keep], rtol=1e-10, atol=1e-10)
    for i, (s, p) in enumerate(zip(shifted[1:], plain[1:]), start=1):
        if i in (2, 4):  # 1/std (and the running variance): channel 1's is round-off in plain
            if norm == "native_layer":
                continue
            # native_group_norm's statistics are per (example, group)
            s, p = (s[:, keep], p[:, keep]) if norm == "native_group" else (s[keep], p[keep])
        assert torch.allclose(s, p, rtol=1e-10, atol=1e-10), i  # means: with the shift added back
