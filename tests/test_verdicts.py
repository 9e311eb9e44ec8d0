"""Direct tests of engine/analysis/verdicts.py on one small network (``Net``) that has every kind of
claim: the static claims agree with redrawing the real model, a checked confirmation makes
every claimed parameter ineffective, a skipped one keeps them ineffective but marked
unconfirmed, a failed confirmation makes them unknown with its reason, and a single failed
check makes only the members of its own claim unknown."""

from __future__ import annotations

import dataclasses

import pytest

from tests.support.probes import CPU, build_net, numerically_no_effect
from wdaudit import report as R
from wdaudit.engine.confirmation import confirm as confirm_stage
from wdaudit.engine.analysis import verdicts as verdicts_stage


@pytest.fixture(scope="module")
def net():
    return build_net()


def _members(claim) -> frozenset[str]:
    return frozenset(claim.exponents) | frozenset(claim.redraw)


def _claimed(claims) -> frozenset[str]:
    return frozenset().union(*(_members(c) for c in claims.claims))


def _by_verdict(verdicts, verdict) -> frozenset[str]:
    return frozenset(n for n, p in verdicts.parameters.items() if p.verdict == verdict)


def test_the_network_has_every_kind_of_claim(net):
    model, x, claims, _ = net
    kinds = {c.kind for c in claims.claims}
    assert kinds == {"no-effect", "scale-free", "joint"}
    # static claims agree with the model: no-effect claims by redrawing
    no_effect = {c.redraw[0] for c in claims.claims if c.kind == "no-effect"}
    assert no_effect == numerically_no_effect(model, x)


def test_checked_confirmation_makes_every_claimed_parameter_ineffective(net):
    model, _, claims, checked = net
    v = verdicts_stage.decide(claims, checked)
    claimed = _claimed(claims)
    assert _by_verdict(v, R.INEFFECTIVE) == claimed
    assert _by_verdict(v, R.EFFECTIVE) == {n for n, _ in model.named_parameters()} - claimed
    assert all(g.confirmed for g in v.groups)
    for name in claimed:
        assert "[not confirmed numerically]" not in v.parameters[name].reason


def test_skipped_confirmation_keeps_claims_marked_unconfirmed(net):
    model, x, claims, _ = net
    setup = confirm_stage.Setup(dict(model.named_parameters()), (x,), CPU, enabled=False)
    skipped = confirm_stage.confirm(claims, setup)
    assert skipped.outcome == R.SKIPPED
    v = verdicts_stage.decide(claims, skipped)
    claimed = _claimed(claims)
    assert _by_verdict(v, R.INEFFECTIVE) == claimed
    for name in claimed:
        assert v.parameters[name].reason.endswith("[not confirmed numerically]")
    assert not any(g.confirmed for g in v.groups)
    assert _by_verdict(v, R.EFFECTIVE) == {n for n, _ in model.named_parameters()} - claimed


def test_failed_confirmation_makes_claims_unknown_with_the_reason(net):
    model, _, claims, _ = net
    reason = "cannot confirm: the model raised RuntimeError at the check point"
    nan = float("nan")
    failed = R.Confirmation(R.FAILED, "cpu", 1, reason, (),
                            tuple(R.Check(confirmed=False, max_relative_change=nan,
                                          exact_relative_change=nan, euler_residual=nan,
                                          eps_limited=False, note=reason)
                                  for _ in claims.claims))
    v = verdicts_stage.decide(claims, failed)
    claimed = _claimed(claims)
    assert _by_verdict(v, R.UNKNOWN) == claimed
    assert {v.parameters[n].reason for n in claimed} == {reason}
    # parameters the analysis pinned statically stay effective: nothing needed checking there
    assert _by_verdict(v, R.EFFECTIVE) == {n for n, _ in model.named_parameters()} - claimed
    assert _by_verdict(v, R.INEFFECTIVE) == frozenset()


@pytest.mark.parametrize("kind", ["no-effect", "joint"])
def test_a_failed_check_makes_only_its_own_members_unknown(net, kind):
    _, _, claims, checked = net
    i = next(i for i, c in enumerate(claims.claims) if c.kind == kind)
    note = "output changed by 1.00e-01 (relative) with eps -> 0"
    checks = list(checked.checks)
    checks[i] = dataclasses.replace(checks[i], confirmed=False, note=note)
    one_failed = dataclasses.replace(checked, checks=tuple(checks), defects=(note,))
    v = verdicts_stage.decide(claims, one_failed)
    holding = frozenset().union(*(_members(c) for j, c in enumerate(claims.claims) if j != i))
    # a member also covered by a confirmed claim stays ineffective through that claim
    assert _by_verdict(v, R.UNKNOWN) == _members(claims.claims[i]) - holding
    assert _by_verdict(v, R.UNKNOWN)  # the test is not vacuous
    assert _by_verdict(v, R.INEFFECTIVE) == holding
    for name in _members(claims.claims[i]) - holding:
        assert note in v.parameters[name].reason
        assert i in v.parameters[name].groups
    assert not v.groups[i].confirmed
