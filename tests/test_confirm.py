"""The confirmation stage (DESIGN.md §4): it checks claims at a generic point, rejects false
ones even where the user's weights would let them pass, attributes failures by bisection at a
cost independent of the number of groups, and reports eps-limited invariance."""

from dataclasses import replace

import torch
from torch import nn

import wdaudit
from wdaudit.engine.confirmation import budget
from wdaudit.engine.analysis import claims as claims_stage
from wdaudit.engine.confirmation import confirm as C
from wdaudit.engine.confirmation import euler as confirm_euler
from wdaudit.engine.analysis import degrees, graph, influence, symmetries
from wdaudit.engine.analysis.claims import Claim
from wdaudit.engine.tracing.trace import trace


def derived_claims(model, x) -> claims_stage.Claims:
    """The stages up to confirmation, exactly as the driver chains them."""
    program = trace(model, (x,))
    found = influence.analyse(graph.build(program), strict=True)
    return claims_stage.claims_for(symmetries.solve(degrees.propagate(found, strict=True)))


def check(model, x, claims):
    """Confirm hand-made claims about the model (some of them false on purpose)."""
    made = replace(derived_claims(model, x), claims=tuple(claims))
    return C.confirm(made, C.Setup(dict(model.named_parameters()), (x,), torch.device("cpu")))


class Gated(nn.Module):
    """y = LN(x + gate · f(x)): at gate = 0 (ReZero) or 1e-6 (LayerScale) the branch is
    invisible, so scaling f looks free at the current weights; it is not."""

    def __init__(self, gate: float):
        super().__init__()
        self.f = nn.Linear(6, 6)
        self.gate = nn.Parameter(torch.full((6,), gate))
        self.ln = nn.LayerNorm(6)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.ln(x + self.gate * torch.tanh(self.f(x))))


def at_current_weights(model, x, scaled: dict[str, float]) -> float:
    with torch.no_grad():
        y = model(x)
        params = {n: p * scaled.get(n, 1.0) for n, p in model.named_parameters()}
        z = torch.func.functional_call(model, params, (x,))
    return float((y - z).norm() / y.norm())


def test_false_claims_fail_where_the_current_weights_would_pass_them():
    torch.manual_seed(0)
    x = torch.randn(5, 6)
    for gate in (0.0, 1e-6):
        model = Gated(gate)
        wrong = Claim({"f.weight": 1.0, "f.bias": 1.0})
        assert at_current_weights(model, x, {"f.weight": 2.0, "f.bias": 2.0}) < 1e-5
        result = check(model, x, [wrong])
        assert not result.checks[0].confirmed and result.defects


class Clipped(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm1d(6)
        self.ln = nn.LayerNorm(6, eps=1e-12)
        self.head = nn.Linear(6, 2)
        with torch.no_grad():
            self.bn.weight.fill_(0.3)  # ReLU6 never reaches 6 at these weights

    def forward(self, x):
        # unsaturated, relu6 is relu: homogeneous, and the LayerNorm absorbs the scale
        return self.head(self.ln(torch.nn.functional.relu6(self.bn(x))))


def test_saturation_is_not_mistaken_for_homogeneity():
    torch.manual_seed(0)
    model, x = Clipped().train(), torch.randn(8, 6)
    wrong = Claim({"bn.weight": 1.0, "bn.bias": 1.0})
    assert at_current_weights(model, x, {"bn.weight": 2.0, "bn.bias": 2.0}) < 1e-6
    assert not check(model, x, [wrong]).checks[0].confirmed


def test_bisection_isolates_the_one_false_claim():
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [nn.Linear(6, 6), nn.LayerNorm(6)]
    model = nn.Sequential(*layers, nn.Linear(6, 2))
    x = torch.randn(5, 6)
    claims = [Claim({f"{2 * i}.weight": 1.0, f"{2 * i}.bias": 1.0}) for i in range(6)]
    claims.insert(3, Claim({"12.weight": 1.0}))  # the head: false
    result = check(model, x, claims)
    assert [c.confirmed for c in result.checks] == [i != 3 for i in range(7)]


def test_cost_does_not_grow_with_the_number_of_groups():
    def passes(depth):
        torch.manual_seed(0)
        layers = []
        for _ in range(depth):
            layers += [nn.Linear(6, 6), nn.LayerNorm(6)]
        report = wdaudit.audit(nn.Sequential(*layers, nn.Linear(6, 2)), torch.randn(5, 6))
        assert len(report.groups) >= depth and all(g.confirmed for g in report.groups)
        return report.confirmation.passes

    assert passes(2) == passes(12)


def test_invariance_that_only_holds_as_eps_vanishes_is_flagged():
    class BigEps(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 6)
            self.ln = nn.LayerNorm(6, eps=1.0)  # comparable to the variance it divides by
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            return self.head(self.ln(self.fc(x)))

    torch.manual_seed(0)
    report = wdaudit.audit(BigEps(), torch.randn(5, 6))
    (group,) = [g for g in report.groups if "fc.weight" in g.names]
    assert group.confirmed and group.eps_limited and group.max_relative_change > 1e-3
    assert "eps" in report.parameters["fc.weight"].reason
    assert any("eps-limited" in f.message for f in report.findings if f.code == "WD001")
    # the model moved under the scaling: its program at the model's eps had to explain it,
    # and at the check point eps -> 0 is too far from the model to stand for its program
    trail = report.confirmation.trail
    assert any(t.startswith("scaled") and t.endswith("program, eps as is") for t in trail)
    assert "check point: program, eps as is" in trail


class PlainAttribute(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.ln = nn.LayerNorm(4)
        self.gain = torch.full((4,), 2.0)  # a plain tensor attribute: neither buffer nor parameter

    def forward(self, x):
        return self.ln(self.fc(x)) * self.gain


def test_confirmation_places_a_copy_of_the_program_and_leaves_the_traced_one():
    """Stray tensor attributes must be on the confirmation device when the real model runs
    there; the traced program, another stage's output, is not touched."""
    from wdaudit.engine.tracing.program import placed

    def strays(program):
        return [v for m in program.root.modules() for v in vars(m).values()
                if isinstance(v, torch.Tensor) and not isinstance(v, nn.Parameter)]

    program = trace(PlainAttribute(), (torch.randn(3, 4),))
    assert strays(program) and all(t.device.type == "cpu" for t in strays(program))
    assert placed(program, torch.device("cpu")) is program  # nothing to move: no copy
    moved = placed(program, torch.device("meta"))
    assert moved.root is not program.root and moved.gm.graph is not program.gm.graph
    assert all(t.device.type == "meta" for t in strays(moved))
    assert all(t.device.type == "cpu" for t in strays(program))
    assert [n.name for n in moved.gm.graph.nodes] == [n.name for n in program.gm.graph.nodes]
    shared = {id(p) for p in program.root.parameters()}
    assert {id(p) for p in moved.root.parameters()} == shared  # parameters are not copied


# --- accounting, memory, and confirmation that adapts without giving ground -----------------


class ConvBN(nn.Module):
    """Convs before train-mode BatchNorm: every conv weight is scale-free, the head is not."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.c2, self.b2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu(self.b1(self.c1(x)))
        return self.head(self.b2(self.c2(h)).mean((2, 3)))


def _conv_bn():
    torch.manual_seed(0)
    return ConvBN(), torch.randn(12, 3, 8, 8)


def test_timings_account_for_every_second_of_the_audit():
    import time

    model, x = _conv_bn()
    start = time.perf_counter()
    report = wdaudit.audit(model, x)
    wall = time.perf_counter() - start
    assert {"setup", "trace", "analysis", "generic point", "confirm", "report"} \
        <= set(report.timings)
    assert all(v >= 0 for v in report.timings.values())
    assert abs(sum(report.timings.values()) - wall) <= 0.02 * wall + 1e-3


def test_a_large_batch_is_confirmed_on_a_few_examples_with_the_same_verdicts(monkeypatch):
    model, x = _conv_bn()  # 12 examples
    capped = wdaudit.audit(model, x)
    assert capped.confirmation.performed and capped.confirmation.batch == budget.CAP_BATCH
    monkeypatch.setattr(budget, "CAP_BATCH", 1000)
    whole = wdaudit.audit(model, x)
    assert whole.confirmation.batch == 12
    assert capped.ineffective == whole.ineffective and capped.effective == whole.effective
    assert capped.ineffective and not capped.unknown


class BatchBound(nn.Module):
    """A traced program that only runs at the batch size it was traced with (a per-example
    gain table): on fewer examples the model raises, and the full batch is used instead."""

    def __init__(self, n):
        super().__init__()
        self.fc, self.ln, self.head = nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 2)
        self.register_buffer("gain", torch.rand(n, 6) + 0.5)

    def forward(self, x):
        return self.head(self.ln(self.fc(x) * self.gain))


def test_a_program_bound_to_its_batch_is_confirmed_on_the_full_batch():
    torch.manual_seed(0)
    report = wdaudit.audit(BatchBound(12), torch.randn(12, 6))
    assert report.coverage.method == "symbolic_trace"
    assert report.confirmation.performed and report.confirmation.batch == 12
    assert {"fc.weight", "fc.bias"} <= report.ineffective and not report.unknown


def test_a_bill_over_budget_confirms_on_fewer_examples_with_the_same_verdicts():
    model, x = _conv_bn()
    full = wdaudit.audit(model, x)
    assert full.confirmation.batch == budget.CAP_BATCH and full.confirmation.estimate > 0
    # room for the parameters and just over half the activations: a reduced batch fits
    bill = budget.bill(full_program(model, x), dict(model.named_parameters()), (x,),
                       batch=budget.CAP_BATCH)
    room = int(budget.HEADROOM * (bill.parameters + bill.gradient + bill.activations * 0.55))
    reduced = wdaudit.audit(model, x, memory_budget=room)
    assert reduced.confirmation.performed
    assert budget.MIN_BATCH <= reduced.confirmation.batch < budget.CAP_BATCH
    assert reduced.confirmation.estimate <= room
    assert reduced.ineffective == full.ineffective and reduced.effective == full.effective
    assert "batch" in reduced.to_dict()["confirmation"]


def test_a_bill_nothing_can_pay_leaves_claims_unconfirmed_and_unknown_never_silent():
    model, x = _conv_bn()
    full = wdaudit.audit(model, x)
    report = wdaudit.audit(model, x, memory_budget=1000)
    assert not report.confirmation.performed
    assert "not enough memory" in report.confirmation.reason
    assert report.confirmation.passes == 0  # nothing was allocated for it
    claimed = {m.name for g in report.groups for m in g.members}
    assert claimed == full.ineffective
    assert report.ineffective == frozenset() and report.unknown == claimed
    # never silent: the claims that could not be checked are one WD005, with the reason
    about = [f for f in report.findings if set(f.parameters) & claimed]
    assert [f.code for f in about] == ["WD005"] and set(about[0].parameters) == claimed
    assert "not enough memory" in about[0].message
    for name in claimed:
        assert "[not confirmed numerically]" in report.parameters[name].reason
    assert report.effective == full.effective  # static "effective" verdicts stand


def full_program(model, x):
    return trace(model, (x,))


class Overflowing(nn.Module):
    """A second output exp(250·g): at the saturating point's spread of 3 some entry of g
    overflows float64; at 1.5 none does."""

    def __init__(self):
        super().__init__()
        self.fc, self.ln, self.head = nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 2)
        self.g = nn.Parameter(torch.zeros(16))

    def forward(self, x):
        return self.head(self.ln(self.fc(x))), torch.exp(250.0 * self.g)


def test_overflow_at_the_saturating_point_retries_a_milder_one():
    torch.manual_seed(0)
    model, x = Overflowing(), torch.randn(5, 6)
    report = wdaudit.audit(model, x)
    assert report.confirmation.performed and report.confirmation.spread == confirm_euler.SPREADS[1]
    assert {"fc.weight", "fc.bias"} <= report.ineffective
    assert "g" in report.effective and "head.weight" in report.effective


class NoDoubleKernel(nn.Module):
    """Refuses float64 like an expert kernel without a float64 implementation."""

    def __init__(self):
        super().__init__()
        self.fc, self.ln, self.head = nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 2)

    def forward(self, x):
        if x.dtype == torch.float64:
            raise RuntimeError("\"grouped_mm\" not implemented for 'Double'")
        return self.head(self.ln(self.fc(x)))


def test_an_op_without_a_float64_kernel_is_confirmed_in_float32():
    torch.manual_seed(0)
    model, x = NoDoubleKernel(), torch.randn(5, 6)
    report = wdaudit.audit(model, x)
    assert report.confirmation.performed and report.confirmation.precision == "float32"
    assert report.to_dict()["confirmation"]["precision"] == "float32"
    assert report.ineffective == {"fc.weight", "fc.bias"}


def test_false_claims_fail_in_float32_too():
    torch.manual_seed(0)
    x = torch.randn(5, 6)
    model = Gated(0.0)
    made = replace(derived_claims(model, x), claims=(Claim({"f.weight": 1.0, "f.bias": 1.0}),))
    setup = C.Setup(dict(model.named_parameters()), (x,), torch.device("cpu"))
    program = made.symmetries.degrees.influence.graph.program
    plan = C.Plan((x,), torch.float32, None, None, "", False)
    result = C._attempt(made, program, setup, plan, {"generic point": 0.0})
    assert result.precision == "float32" and not result.checks[0].confirmed and result.defects


class NanInDouble(nn.Module):
    """NaN in float64 only, as canine's attention is (its masks overflow there)."""

    def __init__(self):
        super().__init__()
        self.fc, self.ln, self.head = nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 2)

    def forward(self, x):
        y = self.head(self.ln(self.fc(x)))
        if x.dtype == torch.float64:
            y = y * float("nan")
        return y


def test_a_model_that_is_nan_in_float64_is_confirmed_in_float32():
    torch.manual_seed(0)
    model, x = NanInDouble(), torch.randn(5, 6)
    report = wdaudit.audit(model, x)
    assert report.confirmation.performed and report.confirmation.precision == "float32"
    assert report.ineffective == {"fc.weight", "fc.bias"}


def test_a_bill_only_float32_can_pay_is_confirmed_in_float32():
    model, x = _conv_bn()
    full = wdaudit.audit(model, x)
    program = full_program(model, x)
    params = dict(model.named_parameters())
    # float64 does not fit even on the fewest examples; float32, half the bill, does
    smallest = budget.bill(program, params, (x,), batch=budget.MIN_BATCH)
    half = budget.bill(program, params, (x,), 4, batch=budget.CAP_BATCH)
    room = max(half.total, smallest.total - 1)
    assert half.total <= room < smallest.total
    report = wdaudit.audit(model, x, memory_budget=room)
    assert report.confirmation.performed and report.confirmation.precision == "float32"
    assert report.confirmation.estimate <= room
    assert report.ineffective == full.ineffective and report.effective == full.effective


def test_a_callers_no_grad_does_not_silence_the_euler_check():
    """Under ``torch.no_grad()`` (a validation loop, a callback) the saturating point's forward
    recorded no graph, the Euler residual came out 0, and the false claim above passed."""
    torch.manual_seed(0)
    model, x = Clipped().train(), torch.randn(8, 6)
    with torch.no_grad():
        result = check(model, x, [Claim({"bn.weight": 1.0, "bn.bias": 1.0})])
        assert not torch.is_grad_enabled()
    assert not result.checks[0].confirmed



def test_the_pass_sequence_of_a_typical_model_is_the_protocol():
    """DESIGN.md §4's three checks, as named passes: at the check point the model and its
    program with eps -> 0 (fidelity, as the model's eps effects there are below its
    tolerance, and the base of exact invariance), at the scaled point the same two (exact
    invariance; the model did not move, so its program at the model's eps has nothing to
    explain there), then one forward and backward pass at the saturating point (Euler)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))
    report = wdaudit.audit(model, torch.randn(4, 6))
    assert report.ineffective == {"0.weight", "0.bias"}  # one claim, checked once
    assert list(report.confirmation.trail) == [
        "check point: model", "check point: program, eps -> 0 (1e-16)",
        "scaled (1 claim): model", "scaled (1 claim): program, eps -> 0 (1e-16)",
        "saturating point: program, eps -> 0 (1e-16), spread 3", "saturating point: backward"]
    # the backward pass counts as two forward passes; every other pass once
    assert report.confirmation.passes == len(report.confirmation.trail) + 1
    assert report.to_dict()["confirmation"]["trail"] == list(report.confirmation.trail)
