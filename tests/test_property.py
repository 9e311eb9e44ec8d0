"""Never lies: on random models (randmodels.py), no parameter that wdaudit reports ineffective is
refuted by the brute-force numerical check (oracle.py).  Recall against that check is measured
and printed.

CI runs a fixed, seeded set of examples; ``WDAUDIT_PROPERTY_EXAMPLES=2000`` runs a longer one.
A counterexample becomes a named fixture in tests/regressions/.

How a claim is judged.  The oracle decides "ineffective" from the numerical rank of its Jacobian
J after scaling every column to unit norm.  When a model's output is (nearly) invariant to
*every* parameter — common here, where the last op is often a norm without affine — all
columns are round-off or eps effects, the unit scaling turns that noise into independent
directions, and the oracle calls true symmetries effective.  So a disagreement is settled on
absolute terms instead: J's rows are already relative output changes per unit of log-scale, so
a claimed group ``s`` is refuted when ``‖J s‖ / ‖s‖₁`` exceeds ``REFUTED`` *and* a finite
rescaling ``θ_p → a^{s_p} θ_p`` (``a ∈ {½, 2}``) at independent generic points changes an
output by more than ``REFUTED`` (relative).

How recall is counted.  The oracle's support LP lets a null vector's round-off components count
(its free coefficients can be scaled up without bound), so its witness for a parameter need not
involve that parameter at all.  A parameter counts as oracle-ineffective only when its own
component in its witness is at least ``WITNESS_MIN`` (witnesses are scaled to a largest
component of 1) — the witness then passed the oracle's finite re-check with it included.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings

from tests.support import oracle
import wdaudit
from tests.support.randmodels import build, specs
from wdaudit.engine.tracing.working_copy import set_training_semantics, structural_copy

EXAMPLES = int(os.environ.get("WDAUDIT_PROPERTY_EXAMPLES", "400"))
QUICK = 60  # the fast tier's seeded examples (the full tier runs EXAMPLES)
# the fast tier's 60 seeded examples: every oracle-ineffective parameter is reported; the full
# tier's 400 met 2 misses of 1,116 on a fresh-clone run (2026-12-07, not yet explained), and
# longer runs meet identities the algebra does not see (docs/limitations.md).  Misses only: no
# reported parameter may ever be refuted, at any size.
RECALL_FLOOR = float(os.environ.get("WDAUDIT_RECALL_FLOOR", "0.995"))
QUICK_RECALL_FLOOR = 1.0
REFUTED = 1e-6  # relative output change per unit log-scale that no symmetry can have
WITNESS_MIN = 1e-3


@dataclass
class Tally:
    models: int = 0
    oracle_ineffective: int = 0
    found_of_those: int = 0
    reported: int = 0
    oracle_blind: int = 0  # reported, refuted by the oracle's rank test, upheld on absolute terms
    unknown: int = 0
    defects: list = field(default_factory=list)  # claims the confirmation itself dropped

    @property
    def recall(self) -> float:
        return self.found_of_those / self.oracle_ineffective if self.oracle_ineffective else 1.0

    def line(self) -> str:
        recall = self.recall
        return (f"wdaudit property: {self.models} random models, recall {recall:.1%} "
                f"({self.found_of_those}/{self.oracle_ineffective} oracle-ineffective parameters "
                f"reported), {self.reported} reported ineffective ({self.oracle_blind} beyond the "
                f"oracle's rank test, upheld on absolute terms), {self.unknown} unknown, "
                f"{len(self.defects)} models with a claim dropped by confirmation")


def refutations(model, x, report: wdaudit.Report, truth: oracle.Oracle) -> dict[str, str]:
    """Reported-ineffective parameters whose every claim the numerical check refutes."""
    out = {}
    for name in sorted(report.ineffective - truth.ineffective):
        evidence = []
        for g in report.groups:
            if name in g.names:
                s = {m.name: float(m.exponent) for m in g.members}
                evidence.append((_absolute_residual(truth, s), _finite_change(model, x, s)))
        upheld = [e for e in evidence if min(e) <= REFUTED]
        if not upheld:
            out[name] = "; ".join(f"|Js|/|s| = {j:.1e}, finite change {f:.1e}" for j, f in evidence)
    return out


def oracle_ineffective(truth: oracle.Oracle) -> frozenset[str]:
    return frozenset(n for n in truth.ineffective if truth.witness[n].get(n, 0.0) >= WITNESS_MIN)


def _absolute_residual(truth: oracle.Oracle, exponents: dict[str, float]) -> float:
    s = np.array([exponents.get(n, 0.0) for n in truth.names])
    return float(np.linalg.norm(truth.jacobian @ s) / max(np.abs(s).sum(), 1e-300))


def _finite_change(model, x, exponents: dict[str, float]) -> float:
    """Largest relative output change under the rescaling, at a generic and a large point,
    in float64 with every normalisation eps near 0 (the oracle's own setting)."""
    copy = structural_copy(model)
    set_training_semantics(copy)
    oracle._zero_eps(copy)
    names = tuple(n for n, p in model.named_parameters() if p.is_floating_point())
    buffers = {n: (b.detach().double() if b.is_floating_point() else b.detach())
               for n, b in copy.named_buffers()}
    gen = torch.Generator().manual_seed(12345)  # independent of both the oracle's and ours
    worst = 0.0
    with torch.no_grad():
        for large in (False, True):
            theta = oracle._draw(model, names, gen, large)
            inputs = ((4.0 if large else 1.0) * x.double(),)
            ref = oracle._outputs(copy, theta, buffers, inputs)
            for a in (0.5, 2.0):
                scaled = {n: v * a ** exponents.get(n, 0.0) for n, v in theta.items()}
                for y, r in zip(oracle._outputs(copy, scaled, buffers, inputs), ref):
                    worst = max(worst, float((y - r).norm() / max(float(r.norm()), 1e-300)))
    return worst


# the oracle's jacrev through weight_norm falls back to a slow loop and says so on every call
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
@pytest.mark.parametrize("examples", [pytest.param(QUICK, id="quick"),
                                      pytest.param(EXAMPLES, id="full", marks=pytest.mark.slow)])
def test_no_reported_parameter_is_refuted(capsys, examples):
    tally = Tally()

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(specs())
    def check(spec):
        model, x = build(spec)
        # strict: an unknown op, an analysis failing at a node, or a claim that confirmation
        # refutes (a bug in the analysis, DESIGN.md §4) raises here
        report = wdaudit.audit(model, x, strict=True)
        truth = oracle.check(model, x)
        refuted = refutations(model, x, report, truth)
        assert not refuted, f"reported ineffective but refuted: {refuted}\n{spec}"
        tally.models += 1
        expected = oracle_ineffective(truth)
        tally.oracle_ineffective += len(expected)
        tally.found_of_those += len(expected & report.ineffective)
        tally.reported += len(report.ineffective)
        tally.oracle_blind += len(report.ineffective - truth.ineffective)
        tally.unknown += len(report.unknown)
        if report.confirmation.defects:
            tally.defects.append(spec)

    check()
    with capsys.disabled():
        sys.stdout.write("\n" + tally.line() + "\n")
    assert tally.models >= min(examples, 50)  # the strategy is not filtering everything away
    assert not tally.defects, f"claims dropped by confirmation: {tally.defects[:3]}"
    assert not tally.unknown, f"{tally.unknown} parameters left unknown"
    assert tally.recall >= (QUICK_RECALL_FLOOR if examples <= QUICK else RECALL_FLOOR), \
        tally.line()


def test_the_judge_refutes_a_false_claim():
    """The property can fail: a report that calls an effective layer scale-free is refuted."""
    from dataclasses import replace

    from tests.support.randmodels import Op, Spec
    from wdaudit.report import INEFFECTIVE, Group, Member

    spec = Spec(3, (Op("linear", (0,), 4), Op("norm", (1,), "layer", False),
                    Op("linear", (2,), 3)), outputs=(3,))
    model, x = build(spec)
    report = wdaudit.audit(model, x)
    truth = oracle.check(model, x)
    assert refutations(model, x, report, truth) == {}
    head = "layers.op2.weight"
    assert head in report.effective
    lie = Group(len(report.groups), "scale-free", (Member(head, 1),), True, 0.0, 0.0, 0.0,
                False, ())
    parameters = dict(report.parameters)
    parameters[head] = replace(parameters[head], verdict=INEFFECTIVE, groups=(lie.id,))
    forged = replace(report, parameters=parameters, groups=report.groups + (lie,))
    assert set(refutations(model, x, forged, truth)) == {head}
