"""Mixture-of-experts (issue 8): routing must not scale (router logits feed a softmax and a
top-k), while the experts' projections into the residual stream join its scale-free group.
Differential against the brute-force oracle on three families; the default grouped-matmul
spelling (``transformers::grouped_mm_fallback`` / ``aten._grouped_mm``) is checked statically
against the same verdicts."""

import pytest
import torch

from tests.support import zoo
from tests.support.differential import differential
import wdaudit


@pytest.mark.zoo
@pytest.mark.parametrize("name", sorted(zoo.MOE))
def test_moe_matches_oracle(name):
    torch.manual_seed(0)
    model, ids, high = zoo.MOE[name]()
    report, truth = differential(model, ids, int_high=high)
    layer = "model.layers.0.mlp."
    router = [n for n in report.parameters if n.startswith(layer + "gate.")
              or n.startswith(layer + "router.")]
    assert router and all(report.parameters[n].verdict == "effective" for n in router)
    assert report.parameters[layer + "experts.down_proj"].verdict == "ineffective"


def test_grouped_matmul_experts_get_the_same_verdicts():
    torch.manual_seed(0)
    model, ids, _ = zoo.hf_mixtral("grouped_mm")
    # aten._grouped_mm has no float64 kernel on CPU: confirmation runs its float64 stand-in
    grouped = wdaudit.audit(model, ids)
    assert not grouped.coverage.unknown_ops
    assert grouped.confirmation.performed and grouped.confirmation.precision == "float64"
    assert not [n for n, p in grouped.parameters.items() if p.verdict == "unknown"]
    model.config._experts_implementation = "batched_mm"
    batched = wdaudit.audit(model, ids)  # confirmed, and matches the oracle (above)
    assert {n: p.verdict for n, p in grouped.parameters.items()} == \
        {n: p.verdict for n, p in batched.parameters.items()}


@pytest.mark.zoo
def test_eager_expert_loop_gets_the_same_verdicts():
    """transformers' "eager" experts loop over the experts that tokens were routed to
    (``torch.where`` on the routing mask): control flow on values, which only the specialising
    tracer follows.  Its expert outputs are ``index_add_``-ed into a zero buffer in place."""
    torch.manual_seed(0)
    model, ids, _ = zoo.hf_mixtral("eager")
    eager = wdaudit.audit(model, ids)
    assert eager.coverage.method == "specialised"
    model.config._experts_implementation = "batched_mm"
    batched = wdaudit.audit(model, ids)  # matches the oracle (above)
    assert batched.ineffective  # the comparison has content
    assert {n: p.verdict for n, p in eager.parameters.items()} == \
        {n: p.verdict for n, p in batched.parameters.items()}
