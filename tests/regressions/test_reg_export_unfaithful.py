"""Found by the breadth sweep (issue 8): transformers ``paligemma`` — every claim failed
confirmation with "the traced program and the model disagree by 8.64e-01 at the check point".

Cause: the model computes otherwise while ``torch.export`` traces it (transformers code asks
whether it is being compiled or exported; here the program and the model were 6 % apart at the
user's own weights).  symbolic_trace's program was checked against the model on the example
inputs, export's was not: nothing caught it before confirmation, and under ``--no-confirm``
its claims would have been reported.

Fixed in the trace (``engine/tracing/trace.py``): export's program is checked like symbolic_trace's.
One that does not reproduce the model counts as export failing, and the fallbacks follow (since
then the specialising tracer first, which records the ops the model runs, not what it would
export; then opaque parts, then the model as one opaque op).
The same run also showed a part whose own forward is opaque being audited as itself, four
levels deep (``parts.py``: the part's children are audited instead).
"""

import pytest
import torch
from torch import nn

import wdaudit
from tests.support import oracle


class ExportsOtherwise(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4, elementwise_affine=False)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        if x.shape[0] > 1:  # control flow on a shape: symbolic_trace cannot follow it
            x = x + 0
        h = self.fc(x)
        if torch.compiler.is_exporting():  # what export records, the model does not compute
            h = self.norm(h)
        return self.head(h)


def example():
    torch.manual_seed(0)
    return ExportsOtherwise(), torch.randn(3, 4)


@pytest.mark.parametrize("confirm", [True, False])
def test_an_unfaithful_export_is_not_analysed(confirm):
    model, x = example()
    report = wdaudit.audit(model, x, strict=False, confirm=confirm)
    assert report.coverage.method == "specialised"
    assert any("does not reproduce" in n for n in report.coverage.notes)
    assert report.ineffective <= oracle.check(model, x).ineffective
    assert report.parameters["fc.weight"].verdict != "ineffective"
    assert not report.confirmation.defects


def test_strict_mode_takes_the_specialised_program():
    model, x = example()
    report = wdaudit.audit(model, x, strict=True)
    assert report.coverage.method == "specialised"
    assert report.ineffective == oracle.check(model, x).ineffective


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        if x.shape[0] > 1:
            x = x + 0
        return self.fc(x)


class TracesOtherwise(nn.Module):
    """Computes otherwise under either tracer (transformers asks ``is_fx_tracing`` too): after
    ``block`` is made opaque, neither program is faithful, and the module is one opaque op."""

    def __init__(self):
        super().__init__()
        self.block = Branchy()
        self.norm = nn.LayerNorm(4, elementwise_affine=False)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = self.block(x)
        if torch.fx._symbolic_trace.is_fx_tracing() or torch.compiler.is_exporting():
            h = self.norm(h)
        return self.head(h)


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = TracesOtherwise()
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(self.inner(x))


def test_an_opaque_part_is_audited_through_its_children_not_as_itself_again():
    torch.manual_seed(0)
    model, x = Outer(), torch.randn(3, 4)
    report = wdaudit.audit(model, x, strict=False)
    assert report.coverage.method == "opaque"
    audited = [n for n in report.coverage.notes if "audited on its own" in n]
    assert any(n.startswith("submodule 'inner.block'") for n in audited), audited
    assert not any("'part" in n or "inner.part" in n for n in audited), audited
    assert report.ineffective <= oracle.check(model, x).ineffective
