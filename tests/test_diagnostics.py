"""The one collector of what an audit says besides its verdicts (engine/diagnostics.py): the
report's coverage notes keep notes and failures in the order they arose and leave defects
out; strict mode raises on the defects it collected, from the model or a part alike."""

import pytest
import torch
from torch import nn

import wdaudit
from wdaudit.audit import AnalysisDefect
from wdaudit.engine import diagnostics as D
from wdaudit.engine.confirmation import confirm as confirm_stage


def test_coverage_keeps_the_order_and_leaves_defects_out():
    said = (D.Diagnostics.of(D.NOTE, ["traced by export"]) + D.Diagnostics.of(D.DEFECT, ["bug"])
            + D.Diagnostics.of(D.FAILURE, ["node x"]) + D.Diagnostics.of(D.NOTE, ["part y"]))
    assert said.coverage == ("traced by export", "node x", "part y")
    assert said.defects == ("bug",)
    with pytest.raises(AssertionError):
        D.Diagnostics.of("warning", ["no such kind"])


def test_defects_reach_the_report_and_strict_mode_raises(monkeypatch):
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    x = torch.randn(4, 6)
    real_run = confirm_stage._Context._real_run

    def drifting(self, params):  # the model moves under any scaling: every claim fails
        out = real_run(self, params)
        return [y * 1.01 for y in out] if params.changes else out

    monkeypatch.setattr(confirm_stage._Context, "_real_run", drifting)
    report = wdaudit.audit(model, x, strict=False)
    assert report.confirmation.defects
    assert not set(report.confirmation.defects) & set(report.coverage.notes)
    with pytest.raises(AnalysisDefect, match="failed confirmation"):
        wdaudit.audit(model, x, strict=True)
