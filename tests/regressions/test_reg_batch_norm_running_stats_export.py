"""Regression: ``F.batch_norm(..., training=False)`` in a model that torch.export decomposes
becomes ``aten._native_batch_norm_legit_no_training``, which normalises with the running
statistics: an affine map, not a normaliser.  Its degree rule read the missing ``training``
argument as True and claimed the Linear before it scale-free; confirmation refuted the claim
(strict mode: AnalysisDefect)."""

import torch
import torch.nn.functional as F
from torch import nn

from tests.support.differential import differential


class EvalNormAfterBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("mean", torch.zeros(4))
        self.register_buffer("var", torch.ones(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        if x.shape[0] > 1:  # defeats symbolic_trace: torch.export runs
            h = F.batch_norm(h, self.mean, self.var, training=False)
            h.mul_(1.0)  # an in-place op: the exported graph is decomposed
        return self.head(h)


def test_batch_norm_on_running_statistics_in_a_decomposed_export():
    torch.manual_seed(0)
    report, _ = differential(EvalNormAfterBranch(), torch.randn(5, 4))
    assert report.coverage.method == "export"
    assert {"fc.weight", "fc.bias"} <= report.effective
