"""Exported in-place ops whose writes nobody observes are made out of place
(``engine/tracing/outplace.py``) instead of functionalising the whole export; every other write is
left for ``run_decompositions``."""

import torch
from torch import nn
from torch.export import export

from tests.support.differential import differential
from wdaudit.engine.tracing.outplace import outplaced
from wdaudit.engine.tracing.exported import _mutates


class InPlaceBlock(nn.Module):
    """ResNet's writes: ``ReLU(inplace=True)`` on a fresh conv output and ``out += identity``."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU(inplace=True)
        self.head = nn.Linear(3, 2)

    def forward(self, x):
        out = self.act(self.bn(self.conv(x)))
        if x.shape[-1] > 4:  # a branch on a shape: symbolic_trace refuses, export takes it
            out += x
        return self.head(out.mean((2, 3)))


class ObservedWrites(nn.Module):
    """Writes someone sees: ``kept`` is a view of ``h`` taken before ``h``'s ``relu_``, and
    ``v`` is a view of ``g`` that ``mul_`` writes through."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[-1] < 2:  # for export, as above
            return x
        h = self.fc(x)
        kept = h[:, :2]
        h.relu_()
        g = self.fc(x) * 2.0
        v = g[:, :2]
        v.mul_(3.0)
        return self.head(self.norm(torch.cat([h[:, 2:], kept], -1) + g))


def _exported(model, x):
    model.eval()
    with torch.no_grad():
        return export(model, (x,), strict=False)


def test_unobserved_writes_are_made_out_of_place():
    torch.manual_seed(0)
    model, x = InPlaceBlock(), torch.randn(2, 3, 8, 8)
    ep = _exported(model, x)
    assert _mutates(ep.graph_module)
    assert outplaced(ep) == 2
    assert not _mutates(ep.graph_module)  # no decomposition needed
    with torch.no_grad():
        assert torch.equal(ep.module()(x), model(x))


def test_batchnorm_step_count_in_train_mode_is_a_write_nobody_reads():
    torch.manual_seed(0)
    model, x = InPlaceBlock().train(), torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        ep = export(model, (x,), strict=False)
    assert outplaced(ep) == 3  # and num_batches_tracked += 1
    assert not _mutates(ep.graph_module)


def test_observed_writes_are_left_for_functionalisation():
    torch.manual_seed(0)
    model, x = ObservedWrites(), torch.randn(3, 4)
    ep = _exported(model, x)
    assert outplaced(ep) == 0
    assert _mutates(ep.graph_module)
    with torch.no_grad():
        assert torch.equal(ep.module()(x), model(x))


def test_verdicts_through_made_out_of_place_writes_match_the_oracle():
    torch.manual_seed(0)
    report, truth = differential(InPlaceBlock(), torch.randn(2, 3, 8, 8))
    assert report.coverage.method == "export" and truth.ineffective
    report, truth = differential(ObservedWrites(), torch.randn(3, 4))
    assert report.coverage.method == "export"
    assert truth.ineffective  # fc feeds the norm whichever way it is written
