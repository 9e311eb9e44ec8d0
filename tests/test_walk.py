"""Direct tests of the failure handling in engine/analysis/walk.py, the traversal the analysis stages
share: when an op's rule raises, strict mode stops with an AnalysisError that names the stage
and the node, while non-strict mode records the failure, treats the node as an unknown op and
stays conservative, claiming nothing that the broken rule would have been needed to prove."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from tests.support.probes import ConvBN, analysed, module_node
from wdaudit.engine.analysis import degrees as degrees_stage
from wdaudit.engine.analysis import influence as influence_stage
from wdaudit.engine.analysis import symmetries as symmetries_stage
from wdaudit.engine.analysis.walk import AnalysisError


def _raises(call):
    raise ValueError("rule exploded on purpose")


def _broken(g, node: str, **rule):
    ops = dict(g.ops)
    ops[node] = dataclasses.replace(ops[node], **rule)
    return dataclasses.replace(g, ops=ops)


def test_a_failing_offsets_rule_names_its_node_in_strict_mode():
    g, healthy = analysed(ConvBN(), torch.randn(3, 2, 4, 4))
    bn = module_node(g, nn.BatchNorm2d)
    assert "conv.bias" in healthy.no_effect  # what the broken rule would have found
    with pytest.raises(AnalysisError, match=f"influence at node '{bn}'") as info:
        influence_stage.analyse(_broken(g, bn, offsets=_raises), strict=True)
    assert isinstance(info.value.__cause__, ValueError)
    assert "rule exploded on purpose" in str(info.value)


def test_a_failing_offsets_rule_is_recorded_and_conservative_when_not_strict():
    g, healthy = analysed(ConvBN(), torch.randn(3, 2, 4, 4))
    bn = module_node(g, nn.BatchNorm2d)
    found = influence_stage.analyse(_broken(g, bn, offsets=_raises), strict=False)
    (failure,) = found.failures
    assert f"'{bn}'" in failure and "rule exploded on purpose" in failure
    # treated as an unknown op: it removes nothing, so nothing is claimed to have no effect
    assert healthy.no_effect == {"conv.bias"} and found.no_effect == frozenset()
    assert "conv.bias" not in found.absorbed_at


def test_a_failing_degrees_rule_is_an_error_or_an_unknown_op():
    g, healthy = analysed(ConvBN(), torch.randn(3, 2, 4, 4))
    bn = module_node(g, nn.BatchNorm2d)
    broken = dataclasses.replace(healthy, graph=_broken(g, bn, degrees=_raises))
    with pytest.raises(AnalysisError, match=f"degrees at node '{bn}'"):
        degrees_stage.propagate(broken, strict=True)
    lenient = degrees_stage.propagate(broken, strict=False)
    assert len(lenient.failures) == 1 and f"'{bn}'" in lenient.failures[0]
    assert [u.node for u in lenient.unknown_ops] == [bn]
    # conservative: the conv weight, scale-free through the BatchNorm, is no longer claimed
    before = symmetries_stage.solve(degrees_stage.propagate(healthy, strict=True))
    after = symmetries_stage.solve(lenient)
    assert "conv.weight" in before.support
    assert "conv.weight" not in after.support and "conv.weight" in after.optimistic
