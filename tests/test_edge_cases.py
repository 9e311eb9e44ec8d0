"""Says when it cannot answer: the audit's behaviour at the edges — nothing to audit, nothing
to measure, nothing it can see — is a clear verdict ("unknown" with a reason, or a report that
says confirmation was skipped), never a guess and never a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import wdaudit
from tests.support.differential import differential
from tests.test_guarantees import changes, fingerprint

GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class Normed(nn.Module):
    """``head(LN(fc(x)))``: fc is scale-free, the head is not."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.fc = nn.Linear(4, d)
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        return self.head(self.ln(self.fc(x)))


def normed(cls=Normed):
    torch.manual_seed(0)
    return cls(), torch.randn(5, 4)


SCALE_FREE = {"fc.weight", "fc.bias"}


# --- nothing to audit ----------------------------------------------------------------------


def test_model_without_parameters():
    report = wdaudit.audit(nn.Sequential(nn.ReLU(), nn.Flatten()), torch.randn(3, 4))
    assert report.parameters == {} and report.groups == () and report.findings == ()
    assert report.summary()["parameters"] == 0


def test_all_parameters_frozen():
    model, x = normed()
    model.requires_grad_(False)
    report = wdaudit.audit(model, x)
    # nothing trains, so nothing can be rescaled (DESIGN.md §1): constants, never ineffective
    assert report.ineffective == frozenset() and report.groups == ()
    assert report.frozen == set(report.parameters)
    assert all("requires_grad=False" in p.reason for p in report.parameters.values())
    assert report.findings == ()  # nothing is decayed, so nothing to warn about
    model.requires_grad_(True)  # the same model trained: its claims are back
    assert wdaudit.audit(model, x).ineffective == SCALE_FREE


def test_parameters_on_the_meta_device():
    with torch.device("meta"):
        model, x = Normed(), torch.randn(5, 4)
    report = wdaudit.audit(model, x)
    assert not report.confirmation.performed
    assert "meta" in report.confirmation.reason
    assert not report.summary()["confirmed"]
    assert report.ineffective == SCALE_FREE  # the static analysis still ran
    for name in SCALE_FREE:
        assert "not confirmed" in report.parameters[name].reason


# --- nothing to measure ----------------------------------------------------------------------


class ArgmaxOnly(Normed):
    def forward(self, x):
        return super().forward(x).argmax(-1)


class EmptyOutput(Normed):
    def forward(self, x):
        return super().forward(x)[:0]


class LogOfSigned(Normed):
    """NaN wherever the head is negative, which at any generic point is somewhere."""

    def forward(self, x):
        return torch.log(super().forward(x))


@pytest.mark.parametrize("cls, why", [(ArgmaxOnly, "no floating-point output"),
                                      (EmptyOutput, "no floating-point output"),
                                      (LogOfSigned, "NaN or Inf")],
                         ids=["integer output", "empty output", "NaN output"])
def test_nothing_to_measure_means_no_claim(cls, why):
    model, x = normed(cls)
    report = wdaudit.audit(model, x)
    assert not report.confirmation.performed and why in report.confirmation.reason
    assert report.ineffective == frozenset()
    claimed = {m.name for g in report.groups for m in g.members}
    assert claimed and report.unknown == claimed  # exactly the claims, none of them made
    for name in claimed:
        assert report.parameters[name].reason.startswith("cannot confirm")
    assert report.effective == set(report.parameters) - claimed
    assert report.summary()["unknown"] == len(claimed)


# --- what the analysis cannot see (non-strict mode) ------------------------------------------


class UnknownOpOnPath(Normed):
    def forward(self, x):
        return self.head(self.ln(torch.special.i0(self.fc(x))))


def test_unknown_op_makes_its_path_unknown():
    model, x = normed(UnknownOpOnPath)
    with pytest.raises(wdaudit.UnsupportedOpError):
        wdaudit.audit(model, x, strict=True)
    report = wdaudit.audit(model, x, strict=False)
    assert report.unknown == SCALE_FREE  # scale-free if i0 were transparent: cannot tell
    for name in SCALE_FREE:
        assert "i0" in report.parameters[name].reason
    assert report.parameters["head.weight"].verdict == "effective"
    summary = report.summary()
    assert summary["unknown_ops"] == len(report.coverage.unknown_ops) == 1
    assert summary["unknown"] == len(SCALE_FREE)


class DataDependent(nn.Module):
    def forward(self, h):
        return h * 2 if h.sum() > 0 else h


class UntraceablePart(Normed):
    def __init__(self):
        super().__init__()
        self.odd = DataDependent()

    def forward(self, x):
        return self.head(self.odd(self.ln(self.fc(x))))


def test_untraceable_submodule_is_unknown_not_fatal(beyond_make_fx):
    model, x = normed(UntraceablePart)
    with pytest.raises(wdaudit.UnsupportedOpError, match="odd"):
        wdaudit.audit(model, x, strict=True)
    report = wdaudit.audit(model, x, strict=False)
    assert report.summary()["unknown_ops"] >= 1
    assert any("'odd'" in note for note in report.coverage.notes)
    # the LayerNorm before the opaque part still makes fc scale-free, whatever follows it;
    # the LN's own scale crosses the opaque part: that cannot be judged
    assert report.ineffective == SCALE_FREE
    assert {"ln.weight", "ln.bias"} <= report.unknown


# --- outputs of every shape ------------------------------------------------------------------


@dataclass
class Output:
    logits: torch.Tensor
    extras: tuple


class Structured(Normed):
    """A dict holding a dataclass holding nested tuples: every tensor output counts, so the
    head is pinned through the tuple even though ``logits`` alone is normalised."""

    def forward(self, x):
        h = self.ln(self.fc(x))
        return {"out": Output(logits=h, extras=((self.head(h),), None)), "n": 3}


class LogitsOnly(Structured):
    def forward(self, x):
        return {"out": Output(logits=self.ln(self.fc(x)), extras=(None,))}


def test_outputs_in_dicts_dataclasses_and_nested_tuples():
    report, _ = differential(*normed(Structured))
    assert report.ineffective == SCALE_FREE
    report, _ = differential(*normed(LogitsOnly))
    assert {"head.weight", "head.bias"} <= report.ineffective  # unused: no effect


# --- a module that changes its own state -------------------------------------------------------


class SelfMutating(Normed):
    """Counts its calls in a buffer and a plain attribute, and keeps a running mean."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.register_buffer("seen_mean", torch.zeros(()))
        self.python_calls = 0

    def forward(self, x):
        self.calls += 1
        self.python_calls += 1
        self.seen_mean.mul_(0.9).add_(0.1 * x.mean())
        return super().forward(x)


def test_module_mutating_its_state_in_forward():
    model, x = normed(SelfMutating)
    before = fingerprint(model)
    report, _ = differential(model, x)
    assert report.ineffective == SCALE_FREE
    assert changes(before, fingerprint(model)) == []


# --- precision -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_models_get_the_float32_verdicts(dtype):
    model, x = normed()
    expected = wdaudit.audit(model, x)
    report = wdaudit.audit(model.to(dtype), x.to(dtype))
    assert report.confirmation.performed
    assert {n: p.verdict for n, p in report.parameters.items()} == \
        {n: p.verdict for n, p in expected.parameters.items()}
    for g in report.groups:  # checked in float64, so exact, not limited by the model's dtype
        assert g.confirmed and g.exact_relative_change <= wdaudit.engine.confirmation.confirm.TOL_EXACT


# --- determinism -----------------------------------------------------------------------------


def _json(report) -> str:
    return json.dumps(report.to_dict(timings=False), sort_keys=True)


def test_same_model_same_report():
    model, x = normed()
    first = _json(wdaudit.audit(model, x))
    torch.manual_seed(1234)  # the global RNG must not leak into the report
    torch.rand(7)
    assert _json(wdaudit.audit(model, x)) == first
    wdaudit.audit(*normed(Structured))  # nor anything left over from another audit
    assert _json(wdaudit.audit(model, x)) == first


_CHILD = """
import json, sys, torch
sys.path.insert(0, {root!r})
from tests.test_edge_cases import normed
from tests.test_guarantees import tiny
import wdaudit
docs = [wdaudit.audit(*build()).to_dict(timings=False) for build in (normed, tiny)]
print(json.dumps(docs, sort_keys=True))
"""


@pytest.mark.slow  # two fresh interpreters importing torch
def test_same_report_across_processes():
    """String hashing differs per process (PYTHONHASHSEED): no set order may leak into the
    report."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outputs = []
    for hashseed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed, OMP_NUM_THREADS="1")
        done = subprocess.run([sys.executable, "-c", _CHILD.format(root=root)], env=env,
                              capture_output=True, text=True, check=True, timeout=300)
        outputs.append(done.stdout.strip().splitlines()[-1])
    assert outputs[0] == outputs[1]
    normed_doc, tiny_doc = json.loads(outputs[0])
    assert normed_doc["summary"]["ineffective"] == len(SCALE_FREE)
    assert len(tiny_doc["groups"]) > 1  # several groups: their order is part of the report


# --- devices ---------------------------------------------------------------------------------


@GPU
def test_cuda_model_audited_on_cpu():
    model, x = normed()
    expected = wdaudit.audit(model, x)
    model, x = model.cuda(), x.cuda()
    before = fingerprint(model)
    report = wdaudit.audit(model, x, device="cpu")
    assert report.confirmation.device == "cpu" and report.ineffective == expected.ineffective
    assert changes(before, fingerprint(model)) == []


@GPU
def test_cpu_model_confirmed_on_cuda_agrees_with_cpu():
    model, x = normed()
    expected = wdaudit.audit(model, x)
    before = fingerprint(model)
    report = wdaudit.audit(model, x, device="cuda")
    assert report.confirmation.device.startswith("cuda")
    assert {n: p.verdict for n, p in report.parameters.items()} == \
        {n: p.verdict for n, p in expected.parameters.items()}
    assert changes(before, fingerprint(model)) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="tests the machine without CUDA")
def test_cuda_requested_without_cuda_is_a_clear_error():
    model, x = normed()
    with pytest.raises(ValueError, match="CUDA is not available"):
        wdaudit.audit(model, x, device="cuda")
