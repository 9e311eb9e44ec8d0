"""The solver stage on hand-built constraint systems (exact answers known by construction),
and mixed-sign rescalings on real layers."""

from fractions import Fraction

import numpy as np
import torch
from torch import nn

from tests.support.differential import differential
from wdaudit.engine.analysis.degrees import Degrees
from wdaudit.ops.degree import Form
from wdaudit.engine.analysis.symmetries import solve
from wdaudit.ops.op_call import Constraint


def system(names, *rows, unknown=()):
    """Constraints given as {name: coefficient} rows."""
    index = {n: i for i, n in enumerate(names)}
    cons = [Constraint(Form.of({index[k]: Fraction(v) for k, v in r.items()}), "n", "test")
            for r in rows]
    cons += [Constraint(Form.of({index[k]: Fraction(v) for k, v in r.items()}), "u", "unknown",
                        True) for r in unknown]
    return Degrees(None, tuple(names), {}, tuple(cons), (), (), candidates=tuple(names))


def test_support_groups_and_rescalings_of_a_known_system():
    names = ["w1", "b1", "q", "k", "head"]
    # b1 scales like w1 (a bias); q·k feeds a softmax; the head meets the output
    d = system(names, {"w1": 1, "b1": -1}, {"q": 1, "k": 1}, {"head": 1})
    sol = solve(d)
    assert sol.support == {"w1", "b1"}
    assert [dict(g.exponents) for g in sol.groups] == [{"w1": 1, "b1": 1}]
    # q·a with k/a is a symmetry of mixed sign: information, never a verdict
    assert [dict(r) for r in sol.rescalings] == [{"q": 1, "k": -1}]


def test_groups_are_minimal_extreme_rays():
    names = ["a", "b", "c"]
    # a + b = c: rays {a, c} and {b, c}; their sum is a symmetry but not a readable group
    d = system(names, {"a": 1, "b": 1, "c": -1})
    sol = solve(d)
    assert sol.support == {"a", "b", "c"}
    assert sorted(sorted(g.exponents) for g in sol.groups) == [["a", "c"], ["b", "c"]]
    for g in sol.groups:
        total = sum(v * (-1 if k == "c" else 1) for k, v in g.exponents.items())
        assert total == 0  # each reported group satisfies the constraint exactly


def test_fractional_exponents_from_roots():
    names = ["v", "g"]
    # an rsqrt of a square: 2·v enters with coefficient -1/2 against g
    d = system(names, {"v": 1, "g": Fraction(-1, 2)})
    sol = solve(d)
    (g,) = sol.groups
    assert g.exponents["g"] == 2 * g.exponents["v"]


def test_unknown_constraints_shrink_the_sound_support_only():
    names = ["x", "y"]
    d = system(names, {"x": 1, "y": -1}, unknown=[{"y": 1}])
    sol = solve(d)
    assert sol.support == frozenset() and sol.optimistic == {"x", "y"}


def test_q_k_and_v_o_rescalings_of_real_attention_are_information_only():
    class Attention(nn.Module):
        def __init__(self, d=8):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(d, d, bias=False) for _ in range(4))
            self.head = nn.Linear(d, 2)

        def forward(self, x):
            a = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2), dim=-1)
            return self.head(torch.relu(self.o(a @ self.v(x))))

    torch.manual_seed(0)
    report, truth = differential(Attention(), torch.randn(2, 5, 8))
    assert not report.ineffective
    rows = [{m.name: float(m.exponent) for m in r.members} for r in report.rescalings]
    for row in rows:  # each is a genuine symmetry of the model, just not a non-negative one
        assert truth.residual_of(row) < 1e-6 and min(row.values()) < 0
    names = sorted({n for row in rows for n in row} | {"v.weight", "o.weight"})
    basis = np.array([[row.get(n, 0.0) for n in names] for row in rows])
    for pair in ({"q.weight": 1, "k.weight": -1}, {"v.weight": 1, "o.weight": -1}):
        vec = np.array([[pair.get(n, 0.0) for n in names]])
        assert np.linalg.matrix_rank(np.vstack([basis, vec])) == np.linalg.matrix_rank(basis)
