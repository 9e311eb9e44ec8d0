"""Differential tests on real architectures nobody here wrote (issue 2, point 4): every
parameter's verdict must match the brute-force oracle, and every group must be a verified
null direction of the oracle's Jacobian.  Models come from tests/zoo.py (tiny configs, random
weights, nothing downloaded)."""

import pytest
import torch

from tests.support import zoo
from tests.support.differential import differential


# the largest convolutional nets go to the second tier (each 10-35 s on 2 cores)
SLOW = {"timm_resnet18d", "tv_resnet18", "timm_efficientnet", "tv_mobilenet_v2"}


@pytest.mark.zoo
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(zoo.ZOO)])
def test_architecture_matches_oracle(name):
    torch.manual_seed(0)
    model, inputs, int_high = zoo.ZOO[name]()
    report, truth = differential(model, inputs, int_high=int_high)
    # the audit never counts an op it does not know on these models (strict mode would raise)
    assert not report.coverage.unknown_ops
    assert report.confirmation.performed and not report.confirmation.defects
    # the oracle's verdicts are not vacuous: it sees effective parameters in every model
    assert set(truth.names) - truth.ineffective
