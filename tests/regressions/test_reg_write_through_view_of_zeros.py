"""Found by the breadth sweep (issue 8): transformers ``glm5_next`` — the claim that
``layers.0.self_attn.o_proj.weight`` alone is scale-free failed confirmation ("output changed by
5.42e-01 (relative) with eps -> 0"); with ``--no-confirm`` it would have been reported.

Cause: its chunked linear attention (``chunk_kda``) fills a ``zeros_like`` buffer chunk by chunk
through a view (``o[:, :, i] = ...``: ``select`` then an in-place copy).  The degree analysis
updated the view the write went through but not the buffer it is a view of: ``o`` stayed
"identically zero", so everything computed from it was zero, and the projection reading it
looked free to scale.  (The influence analysis already followed the write to every alias.)

Fixed in ``engine/analysis/degrees.py``: after an in-place op, every alias of its target that was
zero takes the degree the write gave the target (what is written into a zero tensor is pinned
to degree 0, so the aliases become constants, not zero).
"""

import torch
from torch import nn

from tests.support.differential import differential


class ChunkedFill(nn.Module):
    def __init__(self, d=4, t=3):
        super().__init__()
        self.t = t
        self.fc, self.o_proj, self.head = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, 2)

    def forward(self, x):
        h = self.fc(x)
        out = torch.zeros_like(h)
        rows = out.view(x.shape[0], self.t, -1)
        if bool(x.abs().sum() > 0):  # a value branch: only make_fx, which keeps in-place ops
            for i in range(self.t):  # written through a view, one chunk at a time
                rows[:, i] = torch.tanh(h[:, i])
        return self.head(self.o_proj(out) + x)


def test_written_buffer_is_not_zero():
    torch.manual_seed(0)
    model, x = ChunkedFill(), torch.randn(2, 3, 4)
    report, truth = differential(model, x)
    assert report.coverage.method == "specialised"
    assert "o_proj.weight" in report.effective and "o_proj.weight" not in truth.ineffective
