"""Regression: timm's efficientformer/levit attention keeps, in eval mode, a memo of a parameter
(``attention_bias_cache[str(device)] = attention_biases[:, idxs]``), filled on the first run.
Under the audit's training semantics (eval but for BatchNorm) the memo held the user's weights
when confirmation swapped in its own: the symbolic trace (whose ``x.device`` is a proxy, so it
missed the memo) disagreed with the model at the generic point, every claim was rejected, and
bisection ran 525 passes (efficientformer_l1: 268 s, 124 parameters unknown).  An export,
which hits the memo, would bake the stale copy in as a constant, making the table look unused:
a "no effect" claim both the program and the model would pass.  Memos are now emptied before
every run and every trace, and a program that is not the model fails all claims at once."""

import pytest
import torch
from torch import nn

from tests.support.differential import differential
import wdaudit


class CachedBiasAttention(nn.Module):
    def __init__(self, dim=8, tokens=4, exported=False):
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.randn(tokens, tokens))
        self.attention_bias_cache = {}
        self.exported = exported

    def biases(self, device):
        if self.training:
            return self.attention_biases
        key = str(device)
        if key not in self.attention_bias_cache:
            self.attention_bias_cache[key] = self.attention_biases * 1.0
        return self.attention_bias_cache[key]

    def forward(self, x):
        if self.exported:
            x = x.reshape(len(x), x.shape[1], -1)  # len() of a proxy: symbolic_trace gives up
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        attn = (q @ k.transpose(-2, -1) + self.biases(x.device)).softmax(dim=-1)
        return self.proj(attn @ v)


class Model(nn.Module):
    def __init__(self, exported=False):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.attn = CachedBiasAttention(exported=exported)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.norm(self.attn(self.fc(x))))


@pytest.mark.parametrize("exported", [False, True], ids=["symbolic_trace", "export"])
def test_a_memo_of_a_parameter_follows_the_parameter(exported):
    torch.manual_seed(0)
    model, x = Model(exported).eval(), torch.randn(3, 4, 8)
    model(x)  # the user ran it in eval mode: the memo holds their weights
    report, truth = differential(model, x)
    assert report.coverage.method == ("export" if exported else "symbolic_trace")
    assert report.confirmation.performed and not report.confirmation.defects
    assert report.parameters["attn.attention_biases"].verdict == "effective"
    assert "attn.proj.weight" in report.ineffective  # feeds the norm


def test_a_program_that_is_not_the_model_fails_every_claim_at_once(monkeypatch):
    from wdaudit.engine.tracing import working_copy

    monkeypatch.setattr(working_copy, "forget_caches", lambda model: None)
    from wdaudit.engine.tracing import program, trace
    monkeypatch.setattr(program, "forget_caches", lambda model: None, raising=False)
    monkeypatch.setattr(trace, "forget_caches", lambda model: None)
    torch.manual_seed(0)
    model, x = Model().eval(), torch.randn(3, 4, 8)
    report = wdaudit.audit(model, x, strict=False)
    assert report.confirmation.passes <= 3  # the base point only: no bisection
    assert report.groups and not any(g.confirmed for g in report.groups)
    assert all("disagree" in g.note for g in report.groups)
    assert not report.ineffective
