"""The degrees and claims stages on their own: every node's degree is checked against what
scaling the parameters does to that node's value (so no expected degree is typed in), the
constraints hold exactly for the symmetries and fail for a scaling that is not one, and the
claims are the no-effect parameters and the symmetry groups, in that order."""

from __future__ import annotations

import torch
from torch import fx, nn

from wdaudit.engine.analysis import claims as claims_stage
from wdaudit.engine.analysis import degrees, graph, influence, symmetries
from wdaudit.engine.tracing.trace import trace
from wdaudit.ops.degree import Deg


class Block(nn.Module):
    """conv (bias) → BatchNorm → ReLU → Linear → LayerNorm → head; conv.bias has no effect."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 1)
        self.bn = nn.BatchNorm1d(4, eps=1e-12)  # invariance is exact only as eps -> 0
        self.fc = nn.Linear(4 * 5, 6)
        self.ln = nn.LayerNorm(6, eps=1e-12)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x))).flatten(1)
        return self.head(self.ln(self.fc(h)))


def _stages(model, x):
    program = trace(model, (x,))
    found = influence.analyse(graph.build(program), strict=True)
    d = degrees.propagate(found, strict=True)
    return program, d


def _node_values(program, model, params, x) -> dict[str, torch.Tensor]:
    """Every node's value under ``params``, from an interpreter over the traced graph (the
    program shares the model's parameter tensors, so they are set in place)."""
    values = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                values[n.name] = out.detach().clone()
            return out

    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(params[name])
        Recorder(program.gm).run(x)
    return values


def test_every_node_scales_by_its_degree_under_each_symmetry():
    torch.manual_seed(0)
    model, x = Block().double().train(), torch.randn(6, 3, 5, dtype=torch.float64)
    program, d = _stages(model, x)
    assert program.method == "symbolic_trace"
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    for name in d.influence.no_effect:  # analysed at zero: the function is the same there
        params[name].zero_()
    base = _node_values(program, model, params, x)
    groups = symmetries.solve(d).groups
    assert groups
    a, moved = 2.0, 0
    for g in groups:
        s = {n: float(g.exponents.get(n, 0.0)) for n in d.variables}
        at = {i: s[n] for i, n in enumerate(d.variables)}
        after = _node_values(program, model, {n: v * a ** s[n] for n, v in params.items()}, x)
        for node, value in d.values.items():
            if isinstance(value, Deg) and not value.zero and node in base \
                    and base[node].is_floating_point():
                degree = value.form.evaluate(at)
                torch.testing.assert_close(after[node], base[node] * a ** degree,
                                           msg=f"node {node}, degree {degree}")
                moved += degree != 0
    assert moved >= 3  # the check is not only about nodes that do not scale


def test_constraints_hold_for_symmetries_and_fail_otherwise():
    torch.manual_seed(0)
    program, d = _stages(Block().train(), torch.randn(6, 3, 5))
    index = {n: i for i, n in enumerate(d.variables)}
    sym = symmetries.solve(d)
    assert sym.groups
    for g in sym.groups:
        s = {index[n]: float(v) for n, v in g.exponents.items()}
        assert all(abs(c.form.evaluate(s)) < 1e-9 for c in d.constraints)
    head = {index["head.weight"]: 1.0}  # the head meets the output: not a symmetry
    assert any(abs(c.form.evaluate(head)) > 0 for c in d.constraints)
    assert set(d.candidates) == {n for n in d.variables if n not in d.influence.no_effect}
    assert not d.unknown_ops and not d.failures
    # every epsilon of the two norms is recorded for confirmation to move
    assert len({site.node for site in d.eps_sites}) == 2


def test_claims_are_no_effect_parameters_then_groups():
    torch.manual_seed(0)
    _, d = _stages(Block().train(), torch.randn(6, 3, 5))
    sym = symmetries.solve(d)
    claims = claims_stage.claims_for(sym).claims
    kinds = [c.kind for c in claims]
    no_effect = [c for c in claims if c.kind == "no-effect"]
    assert kinds == ["no-effect"] * len(no_effect) + [c.kind for c in claims[len(no_effect):]]
    assert {c.redraw[0] for c in no_effect} == d.influence.no_effect == {"conv.bias"}
    assert [c.group for c in claims[len(no_effect):]] == list(sym.groups)
    for c in claims[len(no_effect):]:
        modules = {n.rpartition(".")[0] for n in c.exponents}
        assert c.kind == ("scale-free" if len(modules) == 1 else "joint")
        assert c.exponents == {k: float(v) for k, v in c.group.exponents.items()}
