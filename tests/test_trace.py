"""Tracing any nn.Module (issue 2, point 1): both tracers, parameters read directly,
parametrizations and weight-norm hooks, tied parameters, structured outputs, token inputs,
and clear errors when the model cannot be traced or run."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import wdaudit
from tests.support.differential import differential
from wdaudit.engine.tracing.trace import trace


class Direct(nn.Module):
    """pos_embed, cls_token and a layer-scale gamma read with get_attr; functional and
    method ops; a pre-norm residual stream closed by a final (hand-spelled) layer norm."""

    def __init__(self, d=8):
        super().__init__()
        self.proj = nn.Linear(6, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, d))
        self.gamma = nn.Parameter(1e-6 * torch.ones(d))  # LayerScale: generic point needed
        self.norm1 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)
        self.norm_w = nn.Parameter(torch.ones(d))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), self.proj(x)], dim=1)
        h = h + self.pos_embed
        h = h + self.gamma * self.fc(F.relu(self.norm1(h)))
        h = F.layer_norm(h, (h.shape[-1],), self.norm_w, None, 1e-6)
        return self.head(h.mean(1))


def test_parameters_read_directly_and_functional_ops():
    torch.manual_seed(0)
    report, _ = differential(Direct(), torch.randn(2, 4, 6))
    stream = {"cls_token", "pos_embed", "proj.weight", "proj.bias", "gamma"}
    assert stream <= report.ineffective
    assert report.coverage.method == "symbolic_trace"


def test_weight_norm_parametrization_is_traced_through():
    torch.manual_seed(0)
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(5, 6)), nn.ReLU(),
                          nn.Linear(6, 2))
    report, _ = differential(model, torch.randn(7, 5))
    # w = g·v/‖v‖: the direction v is scale-free on its own whatever follows
    assert "0.parametrizations.weight.original1" in report.ineffective
    assert "0.parametrizations.weight.original0" not in report.ineffective


def test_hook_based_weight_norm_is_traced_through():
    torch.manual_seed(0)
    model = nn.Sequential(nn.utils.weight_norm(nn.Linear(5, 6)), nn.ReLU(), nn.Linear(6, 2))
    report, _ = differential(model, torch.randn(7, 5))
    assert "0.weight_v" in report.ineffective and "0.weight_g" not in report.ineffective


class Tied(nn.Module):
    def __init__(self, vocab=20, d=8):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied: one tensor, two names

    def forward(self, ids):
        return self.head(self.ln(self.embed(ids)))


def test_tied_parameters_are_one_variable_under_their_first_name():
    torch.manual_seed(0)
    model = Tied()
    report, _ = differential(model, torch.randint(0, 20, (2, 5)), int_high=20)
    assert "head.weight" not in report.parameters
    assert report.parameters["embed.weight"].verdict == "effective"  # it is also the head


@dataclasses.dataclass
class Out:
    normalised: torch.Tensor
    raw: torch.Tensor


class Outputs(nn.Module):
    def __init__(self, as_dataclass):
        super().__init__()
        self.as_dataclass = as_dataclass
        self.fc = nn.Linear(4, 4)
        self.ln = nn.LayerNorm(4)
        self.aux = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        normalised, raw = self.ln(h), self.aux(x)
        if self.as_dataclass:
            return Out(normalised, raw)
        return {"normalised": normalised, "extra": (raw, raw.argmax(-1))}


@pytest.mark.parametrize("as_dataclass", [False, True])
def test_every_tensor_output_counts(as_dataclass):
    torch.manual_seed(0)
    report, _ = differential(Outputs(as_dataclass), torch.randn(5, 4))
    assert {"fc.weight", "fc.bias"} <= report.ineffective
    assert report.parameters["aux.weight"].verdict == "effective"  # the raw output pins it


class ShapeBranch(nn.Module):
    """Python control flow on a shape: symbolic_trace cannot evaluate it, export can."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.ln = nn.LayerNorm(4)

    def forward(self, x):
        if x.shape[0] > 1:
            x = x * 2
        return self.ln(self.fc(x))


def test_export_takes_over_when_control_flow_defeats_symbolic_trace():
    torch.manual_seed(0)
    program = trace(ShapeBranch(), (torch.randn(3, 4),))
    assert program.method == "export"
    assert any("symbolic_trace" in note for note in program.notes)
    report, _ = differential(ShapeBranch(), torch.randn(3, 4))
    assert report.ineffective == {"fc.weight", "fc.bias"}


class Gate(nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent: neither tracer can follow it
            return x
        return -x


class ValueBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.gate = Gate()

    def forward(self, x):
        h = self.gate(self.fc(x))
        if h.mean() > 0:  # in the model's own forward: no part of it can be set aside
            h = h * 2
        return h


def test_untraceable_model_says_why_and_what_to_do(beyond_make_fx):
    with pytest.raises(wdaudit.TraceError) as info:
        wdaudit.audit(ValueBranch(), torch.randn(3, 4))
    message = str(info.value)
    assert "control flow" in message and "symbolic_trace" in message and "torch.export" in message


def test_untraceable_submodule_becomes_an_opaque_op(beyond_make_fx):
    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.gate = Gate()

        def forward(self, x):
            return self.gate(self.fc(x))

    report = wdaudit.audit(Outer(), torch.randn(3, 4), strict=False)
    assert [u.module for u in report.coverage.unknown_ops] == ["gate"]
    assert report.parameters["fc.weight"].verdict != "ineffective"


def test_inputs_that_do_not_fit_show_the_models_own_error():
    with pytest.raises(wdaudit.InputError, match="mat1 and mat2 shapes cannot be multiplied"):
        wdaudit.audit(nn.Linear(4, 2), torch.randn(3, 5))


def test_token_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(30, 8), nn.LayerNorm(8), nn.Linear(8, 4))
    report, _ = differential(model, torch.randint(0, 30, (2, 6)), int_high=30)
    assert report.ineffective == {"0.weight"}  # the embedding feeds the norm


class _BatchBound(nn.Module):
    """With ``n``, a per-example gain table: it runs on that batch size only."""

    def __init__(self, n: int | None = None):
        super().__init__()
        self.fc, self.bn, self.head = nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Linear(6, 2)
        self.register_buffer("gain", torch.rand(n or 1, 6) + 0.5)

    def forward(self, x):
        return self.head(self.bn(self.fc(x) * self.gain))


def test_a_symbolic_trace_is_checked_on_the_capped_batch():
    """The reference run and the program-vs-model check use CAP_BATCH of 32 examples (the
    program is not specialised to the batch size); the shapes say how many they saw."""
    from wdaudit.engine.tracing.batch import CAP_BATCH

    program = trace(_BatchBound(), (torch.randn(32, 6),))
    assert program.method == "symbolic_trace" and program.recorded_batch == CAP_BATCH
    assert program.shape(program.inputs[0]) == (CAP_BATCH, 6)


def test_a_model_bound_to_its_batch_size_is_checked_on_the_whole_batch():
    program = trace(_BatchBound(32), (torch.randn(32, 6),))
    assert program.method == "symbolic_trace" and program.recorded_batch == 32
    assert program.shape(program.inputs[0]) == (32, 6)
