"""Direct tests of engine/analysis/findings.py on the small network (``Net``) the verdict tests use: the
WD001, WD003 and WD004 findings must be exactly those implied by the verdicts and the decay
settings (assumed for all parameters, none, only matrices, or read from an optimizer's param
groups), WD002 flags coupled weight decay in Adam but not in AdamW, and skipped parameters are
hidden from every finding while their verdicts are still reported."""

from __future__ import annotations

import math

import pytest
import torch

from tests.support.probes import build_net
from tests.support.sets import merged
from wdaudit import report as R
from wdaudit.rules import RULES as R_RULES
from wdaudit.engine.analysis import findings as findings_stage
from wdaudit.engine.analysis import verdicts as verdicts_stage


@pytest.fixture(scope="module")
def net():
    return build_net()


def _findings(net, policy):
    _, _, claims, checked = net
    verdicts = verdicts_stage.decide(claims, checked)
    return verdicts, findings_stage.find(verdicts, policy)


def _expected(verdicts, decayed, skip=lambda n: False):
    """WD001/WD003/WD004 as the verdicts and decay settings imply them: (code, members).
    Scaling claims that share a member are one set of tensors that scale together, so they
    are merged (repeatedly, until no two sets overlap) into one WD001 and at most one WD004."""
    out = set()
    sets = []  # (members of the claims, named members, members of partly decayed claims)
    for g in verdicts.groups:
        holding = [n for n in g.names if verdicts.parameters[n].verdict == R.INEFFECTIVE]
        named = frozenset(n for n in holding if n in decayed and not skip(n))
        if not named:
            continue
        if g.kind == "no-effect":
            out.add(("WD003", named))
            continue
        partial = len(g.names) > 1 and set(g.names) - decayed - {n for n in g.names if skip(n)}
        sets.append((set(g.names), set(named),
                     {n for n in g.names if not skip(n)} if partial else set()))
    for _, named, partial in merged(sets):
        out.add(("WD001", frozenset(named)))
        if partial:
            out.add(("WD004", frozenset(partial)))
    return out


def _codes(found, *codes):
    return {(f.code, frozenset(f.parameters)) for f in found.findings if f.code in codes}


def test_assumed_decay_on_everything_gives_wd001_and_wd003(net):
    model = net[0]
    params = dict(model.named_parameters())
    decay = findings_stage.decay_settings(params, None, "all")
    verdicts, found = _findings(net, findings_stage.Policy(decay))
    expected = _expected(verdicts, decay.decayed)
    assert {c for c, _ in expected} == {"WD001", "WD003"}  # both rules are exercised
    assert _codes(found, "WD001", "WD003", "WD004") == expected
    assert not _codes(found, "WD002")
    # every no-effect claim is a WD003, every scaling group a WD001
    assert {p for c, ps in expected if c == "WD003" for p in ps} == \
        {n for g in verdicts.groups if g.kind == "no-effect" for n in g.names}
    assert len(found.findings) == len(expected)  # one finding per set that scales together
    assert any(len(f.groups) > 1 for f in found.findings if f.code == "WD001")  # a merged set


def test_assumed_no_decay_gives_no_findings_and_matrices_only_matrices(net):
    params = dict(net[0].named_parameters())
    _, none = _findings(net, findings_stage.Policy(findings_stage.decay_settings(params, None,
                                                                                 "none")))
    assert none.findings == ()
    decay = findings_stage.decay_settings(params, None, "matrices")
    verdicts, found = _findings(net, findings_stage.Policy(decay))
    assert decay.decayed == {n for n, p in params.items() if p.dim() >= 2}
    assert _codes(found, "WD001", "WD003", "WD004") == _expected(verdicts, decay.decayed)
    assert all(params[n].dim() >= 2 for f in found.findings if f.code == "WD001"
               for n in f.parameters)


def test_a_partly_decayed_joint_group_gives_wd004(net):
    model = net[0]
    verdicts = verdicts_stage.decide(net[2], net[3])
    joint = next(g for g in verdicts.groups if g.kind == "joint")
    spared = frozenset(joint.names[:-1])  # leave all but one member undecayed
    params = dict(model.named_parameters())
    optimizer = torch.optim.SGD([
        {"params": [p for n, p in params.items() if n not in spared], "weight_decay": 0.1},
        {"params": [p for n, p in params.items() if n in spared], "weight_decay": 0.0},
    ], lr=0.1)
    decay = findings_stage.decay_settings(params, optimizer)
    assert decay.decayed == set(params) - spared
    verdicts, found = _findings(net, findings_stage.Policy(decay))
    expected = _expected(verdicts, decay.decayed)
    assert ("WD004", frozenset(joint.names)) in expected
    assert _codes(found, "WD001", "WD003", "WD004") == expected
    assert not _codes(found, "WD002")  # SGD has no adaptive step
    for n in params:
        assert found.parameters[n].weight_decay == (0.0 if n in spared else 0.1)


@pytest.mark.parametrize("optimizer,coupled", [
    (lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=0.01), True),
    (lambda ps: torch.optim.Adam(ps, lr=1e-3, weight_decay=0.0), False),
    (lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01), False),
])
def test_wd002_for_coupled_decay_in_adam_but_not_adamw(net, optimizer, coupled):
    params = dict(net[0].named_parameters())
    decay = findings_stage.decay_settings(params, optimizer(list(params.values())))
    verdicts, found = _findings(net, findings_stage.Policy(decay))
    wd002 = [f for f in found.findings if f.code == "WD002"]
    if coupled:
        (f,) = wd002
        assert f.parameters == tuple(params)  # every parameter of the decayed param group
        assert "Adam" in f.message and "AdamW" in f.message
    else:
        assert wd002 == []
    assert _codes(found, "WD001", "WD003", "WD004") == _expected(verdicts, decay.decayed)


def test_skip_hides_parameters_from_findings(net):
    params = dict(net[0].named_parameters())

    def skip(name):
        return name.startswith("fc2.") or name == "spare"

    optimizer = torch.optim.Adam(list(params.values()), lr=1e-3, weight_decay=0.01)
    decay = findings_stage.decay_settings(params, optimizer)
    verdicts, found = _findings(net, findings_stage.Policy(decay, skip=skip))
    _, unskipped = _findings(net, findings_stage.Policy(decay))
    assert any(skip(n) for f in unskipped.findings for n in f.parameters)  # skip hides some
    named = {n for f in found.findings for n in f.parameters}
    assert named and not any(skip(n) for n in named)
    assert _codes(found, "WD001", "WD003", "WD004") == _expected(verdicts, decay.decayed, skip)
    (wd002,) = [f for f in found.findings if f.code == "WD002"]
    assert wd002.parameters == tuple(n for n in params if not skip(n))
    # verdicts are still reported for skipped parameters, with their decay
    assert found.parameters.keys() == params.keys()
    assert math.isclose(found.parameters["spare"].weight_decay, 0.01)
    assert found.parameters["spare"].verdict == R.INEFFECTIVE


@pytest.mark.parametrize("decay_bn", [True, False])
def test_skipped_group_mates_are_not_named_in_any_finding(net, decay_bn):
    params = dict(net[0].named_parameters())
    verdicts = verdicts_stage.decide(net[2], net[3])
    joint = next(g for g in verdicts.groups if g.kind == "joint")
    hidden = {n for n in joint.names if n.startswith("bn.")}
    assert hidden and set(joint.names) - hidden  # the group has members on both sides
    decayed = [p for n, p in params.items() if decay_bn or n not in hidden]
    spared = [p for n, p in params.items() if not decay_bn and n in hidden]
    optimizer = torch.optim.SGD([{"params": decayed, "weight_decay": 0.1},
                                 {"params": spared, "weight_decay": 0.0}], lr=0.1)
    policy = findings_stage.Policy(findings_stage.decay_settings(params, optimizer),
                                   skip=lambda n: n in hidden)
    _, found = _findings(net, policy)
    assert found.findings
    for f in found.findings:
        assert not hidden & set(f.parameters), (f.code, f.parameters)
        assert not any(f"'{n}'" in f.message for n in hidden), (f.code, f.message)


def test_every_message_is_its_rules_template_filled_in(net):
    """Messages are data (rules.py): each finding's text is one of its rule's templates with
    the fields filled, so a rule's wording lives in one place."""
    import re
    import string

    params = dict(net[0].named_parameters())
    joint = next(g for g in verdicts_stage.decide(net[2], net[3]).groups if g.kind == "joint")
    spared = set(joint.names[:-1])
    optimizer = torch.optim.Adam([
        {"params": [p for n, p in params.items() if n not in spared], "weight_decay": 0.1},
        {"params": [p for n, p in params.items() if n in spared], "weight_decay": 0.0}])
    _, found = _findings(net, findings_stage.Policy(findings_stage.decay_settings(params,
                                                                                  optimizer)))
    seen = {f.code for f in found.findings}
    assert {"WD001", "WD002", "WD003", "WD004"} <= seen
    for f in found.findings:
        patterns = []
        for template in R_RULES[f.code].messages.values():
            parts = string.Formatter().parse(template)
            patterns.append("".join(re.escape(text) + (".*?" if name is not None else "")
                                    for text, name, _, _ in parts))
        assert any(re.fullmatch(p, f.message, re.S) for p in patterns), (f.code, f.message)
