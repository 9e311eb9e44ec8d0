"""The confirmation stage (DESIGN.md §4): it checks claims at a generic point, rejects false
ones even where the user's weights would let them pass, attributes failures by bisection at a
cost independent of the number of groups, and reports eps-limited invariance."""

from dataclasses import replace

import torch
from torch import nn

import wdaudit
from wdaudit.engine import claims as claims_stage
from wdaudit.engine import confirm as C
from wdaudit.engine import degrees, graph, influence, symmetries
from wdaudit.engine.claims import Claim
from wdaudit.engine.trace import trace


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


def test_saturation_is_not_mistaken_for_homogeneity():
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
    from wdaudit.engine.program import placed

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
