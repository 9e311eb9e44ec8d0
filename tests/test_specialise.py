"""The third tracer (``engine/tracing/specialise.py``): a forward that branches on tensor values, which
symbolic_trace and torch.export both refuse, is traced as the ops of one run (make_fx), and
confirmation compares that program with the model at every point it evaluates it."""

import pytest
import torch
from torch import nn

import wdaudit
from tests.support import oracle
from tests.support.differential import differential
from wdaudit.engine.tracing.trace import trace


class Segments(nn.Module):
    """Variable-length segments normalised one by one, as the variable-resolution vision
    encoders do with ``cu_seqlens``: the loop runs over values of an input tensor."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)
        self.skip = nn.Linear(6, 3)

    def forward(self, x, lengths):
        h = self.fc(x)
        if bool((lengths > 0).all()):  # a branch on an input's values
            parts = [self.norm(seg) for seg in torch.split(h, lengths.tolist())]
            h = torch.cat(parts)
        return self.head(h) + self.skip(x)


def segments():
    torch.manual_seed(0)
    return Segments(), (torch.randn(7, 6), torch.tensor([3, 4]))


def test_value_branches_are_traced_as_one_run():
    model, inputs = segments()
    program = trace(model, inputs)
    assert program.method == "specialised"
    notes = " ".join(program.notes)
    assert "symbolic_trace was not used" in notes and "torch.export was not used" in notes


def test_specialised_program_matches_the_oracle():
    model, inputs = segments()
    report, truth = differential(model, inputs)
    assert report.coverage.method == "specialised"
    assert {"fc.weight", "fc.bias"} <= truth.ineffective  # the comparison has content


def test_specialised_program_takes_none_inputs():
    class Optional(Segments):
        def forward(self, x, unused, lengths):  # None in the middle: no graph input for it
            return super().forward(x, lengths)

    torch.manual_seed(0)
    model = Optional()
    x, lengths = torch.randn(7, 6), torch.tensor([3, 4])
    report = wdaudit.audit(model, (x, None, lengths))
    assert report.coverage.method == "specialised"
    assert {"fc.weight", "fc.bias"} <= report.ineffective


class WeightBranch(nn.Module):
    """Normalises only while ``fc`` is not much larger than ``other``: at the weights it is traced
    at (the two of the same size) the program holds the norm.  ``.data`` hides the branch's
    read from the analysis (make_fx records the weights it reads as constants), so a claim that
    ``fc`` is scale-free follows, which doubling ``fc`` makes false for the model itself."""

    def __init__(self, hidden: bool = True):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.other = nn.Linear(16, 16)
        self.norm = nn.LayerNorm(16, elementwise_affine=False)
        self.head = nn.Linear(16, 2)
        self.hidden = hidden
        with torch.no_grad():
            self.other.weight.copy_(self.fc.weight)

    def forward(self, x):
        h = self.fc(x)
        fc, other = self.fc.weight, self.other.weight
        if self.hidden:
            fc, other = fc.data, other.data
        if fc.norm() < 1.5 * other.norm():
            h = self.norm(h)
        return self.head(h) + self.other(x).sum(-1, keepdim=True)


def test_a_branch_the_analysis_cannot_see_confirms_nothing():
    torch.manual_seed(0)
    model, x = WeightBranch(), torch.randn(6, 16)
    assert trace(model, (x,)).method == "specialised"
    report = wdaudit.audit(model, x, strict=False)
    # the frozen program holds the norm, so fc looks scale-free; the model is not
    assert "fc.weight" not in oracle.check(model, x).ineffective
    assert report.parameters["fc.weight"].verdict != "ineffective"
    notes = [g.note for g in report.groups if "fc.weight" in g.names]
    assert notes and not any(g.confirmed for g in report.groups if "fc.weight" in g.names)


def test_a_value_the_branch_reads_must_not_scale():
    """The same branch, read in the graph: make_fx records ``norm`` and the ``item`` its ``<``
    asks for, and nothing in the program uses that result.  Such a value is the model's
    Python reading it, so it is held fixed like an output: no claim scales ``fc``."""
    torch.manual_seed(0)
    model, x = WeightBranch(hidden=False), torch.randn(6, 16)
    program = trace(model, (x,))
    assert program.method == "specialised"
    from wdaudit.engine.analysis.graph import build
    nodes = {n.name: n for n in program.gm.graph.nodes}
    assert any(nodes[r].target is torch.ops.aten.item.default for r in build(program).read)
    report = wdaudit.audit(model, x)
    assert report.parameters["fc.weight"].verdict == "effective"
    assert not report.confirmation.defects
    # with the reads dropped, the branch is invisible again and fc.weight is claimed
    from wdaudit.engine.analysis import graph as graph_stage
    original = graph_stage._read_by_python
    try:
        graph_stage._read_by_python = lambda program, mutations: []
        blind = wdaudit.audit(model, x, strict=False)
    finally:
        graph_stage._read_by_python = original
    assert any("fc.weight" in g.names for g in blind.groups)


def test_without_confirmation_no_specialised_claim_is_reported():
    torch.manual_seed(0)
    model, x = WeightBranch(), torch.randn(6, 16)
    report = wdaudit.audit(model, x, strict=False, confirm=False)
    assert "fc.weight" not in report.ineffective


class WeightLength(nn.Module):
    """How many rows come out is decided by a weight, as VITS's predicted durations decide its
    waveform's length: at any other weights the program's frozen length is not the model's."""

    def __init__(self):
        super().__init__()
        self.fc, self.norm, self.head = nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)
        self.length = nn.Parameter(torch.tensor(0.3))

    def forward(self, x):
        rows = 3 if bool(self.length == 0.3) else 2
        return self.head(self.norm(self.fc(x)))[:rows]


def test_an_output_size_the_weights_decide_is_recorded_again():
    """At the check point the model returns two rows where the program froze three: its ops
    are recorded again there, and the claims are judged on the model's own branches."""
    torch.manual_seed(0)
    model, x = WeightLength(), torch.randn(5, 4)
    report = wdaudit.audit(model, x)
    assert report.coverage.method == "specialised"
    assert report.confirmation.recorded_again == ("check point",)
    # fc feeds the norm at either length; length decides it (compared with 0.3, read)
    assert {"fc.weight", "fc.bias"} <= oracle.check(model, x).ineffective
    assert report.ineffective == {"fc.weight", "fc.bias"}
    assert report.parameters["length"].verdict == "effective"


def test_every_change_of_a_point_is_a_new_version():
    """A specialised program is compared with the model once per point it is evaluated at; the
    key says which values a point holds and must never repeat for other values (two redraws
    of the same member make tensors of equal version counters and possibly equal ids)."""
    from wdaudit.engine.confirmation import runs as confirm_runs, generic_point
    from wdaudit.engine.analysis.claims import Claim

    params = {"w": torch.randn(4, 4), "b": torch.randn(4)}
    point = generic_point.draw(params, device=torch.device("cpu"), dtype=torch.float64, seed=0)
    seen = [confirm_runs.version(point)]
    redraw, scale = Claim({}, ("b",), "no-effect"), Claim({"w": 1.0})
    for claims, factors, salt in (([redraw], [1.0], 0), ([redraw], [1.0], 7),
                                  ([scale], [2.0], 0), ([scale], [0.5], 0)):
        with confirm_runs.applied(point, claims, factors, salt):
            seen.append(confirm_runs.version(point))
        seen.append(confirm_runs.version(point))
    assert len(set(seen)) == len(seen)
    wider = generic_point.saturate(point, spread=3.0)
    assert confirm_runs.version(wider) not in seen


class WeightSized(nn.Module):
    """How much it allocates is decided by a weight, as a text-to-speech model's predicted
    durations decide how many frames it makes: at the user's weights (``duration`` 0) nothing
    extra, at any other about 300 MB that the memory bill, made from the traced sizes, cannot
    foresee.  The output does not depend on it: only the ceiling can stop it."""

    def __init__(self):
        super().__init__()
        self.fc, self.norm, self.head = nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)
        self.duration = nn.Parameter(torch.tensor(0.0))

    def forward(self, x):
        h = self.norm(self.fc(x))
        if bool(self.duration != 0):
            # 5 x 64 MB in float64: above glibc's largest mmap threshold (32 MB), so each is
            # fresh memory, not memory an earlier test freed and the allocator kept resident
            frames = [torch.ones(4096, 2048) for _ in range(5)]
            h = h + 0 * sum(f[0, 0] for f in frames)
        return self.head(h)


_CEILING_SCRIPT = """
import torch, wdaudit
from tests.test_specialise import WeightSized
torch.manual_seed(0)
model, x = WeightSized(), torch.randn(5, 4)
for budget in (100 * 2**20, 4 * 2**30):
    report = wdaudit.audit(model, x, strict=False, memory_budget=budget)
    print(report.coverage.method, sorted(report.ineffective), repr(report.confirmation.reason))
"""


def test_sizes_the_weights_decide_are_stopped_at_the_ceiling():
    """In a process of its own: the ceiling watches the growth of the resident set, which
    memory an earlier test freed and the allocator kept can hide."""
    import subprocess
    import sys
    from pathlib import Path

    from wdaudit.engine import ceiling

    if ceiling.resident() is None:
        pytest.skip("no /proc/self/statm here: nothing is watched")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", _CEILING_SCRIPT], cwd=root, text=True,
                          capture_output=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    tight, roomy = done.stdout.strip().splitlines()[-2:]
    assert tight.startswith("specialised [] ") and "outgrow the memory" in tight
    assert roomy.startswith("specialised ") and "'fc.bias', 'fc.weight'" in roomy  # room: runs


def test_a_specialised_audit_leaves_model_and_torch_as_found():
    from tests.test_guarantees import changes, fingerprint

    model, inputs = segments()
    model.fc.weight.requires_grad_(False)
    model.train()
    before = fingerprint(model)
    hooks = (dict(nn.modules.module._global_forward_hooks),
             dict(nn.modules.module._global_forward_pre_hooks))
    report = wdaudit.audit(model, inputs)
    assert report.coverage.method == "specialised"
    assert changes(before, fingerprint(model)) == []
    assert hooks == (dict(nn.modules.module._global_forward_hooks),
                     dict(nn.modules.module._global_forward_pre_hooks))


def test_one_allocation_past_the_ceiling_is_refused_as_it_is_asked_for():
    """fastspeech2 at the generic point asked for 15 GB in one op, and the kernel killed the
    process before the next op could be checked: inside the watch, the address space is capped
    too, and lifted afterwards."""
    resource = pytest.importorskip("resource")
    from wdaudit.engine import ceiling

    if ceiling.resident() is None:
        pytest.skip("no /proc/self/statm here: nothing is watched")
    before = resource.getrlimit(resource.RLIMIT_AS)
    with ceiling.watching(100 * 2**20):
        with pytest.raises(RuntimeError, match="allocate"):
            torch.empty(2 * ceiling.FLOOR, dtype=torch.uint8)  # never touched: costs nothing
    assert resource.getrlimit(resource.RLIMIT_AS) == before


class WeightPicked(nn.Module):
    """Picks the features its weights select (``nonzero``, as an MoE router's token choice
    does) and then sizes a tensor by how many there were: at the user's weights one, at the
    generic point (gate values near their mean, -2.5) none, and the program's frozen size no
    longer fits what ``nonzero`` returns there."""

    def __init__(self):
        super().__init__()
        self.fc, self.norm, self.head = nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2)
        self.gate = nn.Parameter(torch.tensor([-5.0, -5.0, -5.0, 5.0]))

    def forward(self, x):
        h = self.fc(x)
        if bool((self.gate > 0).any()):  # a value branch: only make_fx follows this forward
            picked = h[:, torch.nonzero(self.gate > 0).squeeze(1)]
            flat = picked.reshape(x.shape[0] * picked.shape[1])  # a size make_fx freezes
            h = h + flat.sum()
        return self.head(self.norm(h))


def test_frozen_sizes_that_do_not_fit_are_recorded_again():
    """At the generic point no gate is positive: the frozen reshape no longer fits, the ops
    are recorded again there (the MoE case: split sizes that the router's weights decide)."""
    torch.manual_seed(0)
    model, x = WeightPicked(), torch.randn(5, 4)
    report, truth = differential(model, x)
    assert report.coverage.method == "specialised"
    assert "check point" in report.confirmation.recorded_again
    # the gate is compared with 0 only: scale-free, as the norm makes fc
    assert {"fc.weight", "fc.bias", "gate"} <= truth.ineffective


def test_a_branch_that_recording_again_cannot_follow_confirms_nothing():
    """Recording again is a second chance, not a pass: where the new recording still parts from
    the model, nothing is confirmed and the reason says both."""
    from wdaudit.engine.confirmation import confirm as confirm_stage

    def broken(program, params, buffers, inputs, eps_sites):
        raise RuntimeError("no second recording")

    torch.manual_seed(0)
    model, x = WeightPicked(), torch.randn(5, 4)
    original = confirm_stage.respecialised
    try:
        confirm_stage.respecialised = broken
        report = wdaudit.audit(model, x, strict=False)
    finally:
        confirm_stage.respecialised = original
    assert not report.ineffective and report.confirmation.recorded_again == ()
    assert "branches otherwise" in report.confirmation.reason
    assert "no second recording" in report.confirmation.reason


def test_nan_in_one_run_only_is_infinitely_apart():
    """A follow check compares the program with the model; a NaN never compares as large, so
    NaN or Inf in one and not at the same places in the other must count as parting."""
    from wdaudit.engine.confirmation import runs as confirm_runs

    finite, nan = torch.tensor([1.0, 2.0]), torch.tensor([1.0, float("nan")])
    assert confirm_runs.apart([nan], [finite]) == float("inf")
    assert confirm_runs.apart([finite], [nan]) == float("inf")
    assert confirm_runs.apart([nan], [nan.clone()]) == 0.0
    # relative() once returned 0.0 here: max(0.0, nan) keeps 0.0, and a scaling that made
    # the output NaN would have passed as "unchanged"
    assert confirm_runs.relative([nan], [finite]) == float("inf")


class NoGradRegion(Segments):
    """transformers' eager MoE computes its routing mask under ``torch.no_grad()``: make_fx,
    tracing under no_grad itself, recorded ``_set_grad_enabled(False)`` at both ends of it."""

    def forward(self, x, lengths):
        with torch.no_grad():
            lengths = lengths.clone()
        return super().forward(x, lengths)


def test_a_no_grad_region_does_not_switch_gradients_off():
    torch.manual_seed(0)
    model, inputs = NoGradRegion(), (torch.randn(7, 6), torch.tensor([3, 4]))
    program = trace(model, inputs)
    assert program.method == "specialised"
    assert not [n for n in program.gm.graph.nodes if n.target is torch._C._set_grad_enabled]
    report, _ = differential(model, inputs)
    assert torch.is_grad_enabled()  # the Euler check ran with gradients, and left them on
    assert report.confirmation.performed
