"""Shape queries and tensors made like another carry no parameter's values (the offset rule
``value_free``), but what their other arguments hold still counts."""

import torch
from torch import nn

from tests.support import oracle
import wdaudit


class OnlyItsShapeMatters(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.table = nn.Linear(4, 3), nn.Parameter(torch.randn(5, 4))

    def forward(self, x):
        return self.fc(x) * self.table.size(0) + torch.ones_like(self.table).sum()


class FillFromAParameter(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.level = nn.Linear(4, 3), nn.Parameter(torch.tensor(0.7))

    def forward(self, x):
        y = self.fc(x)
        return y + y.new_full(y.shape, 1.0) * self.level


def test_a_parameter_read_only_for_its_shape_has_no_effect():
    torch.manual_seed(0)
    model, x = OnlyItsShapeMatters(), torch.randn(6, 4)
    report = wdaudit.audit(model, x)
    assert "table" in oracle.check(model, x).ineffective
    assert report.parameters["table"].verdict == "ineffective"
    assert report.parameters["fc.weight"].verdict == "effective"


def test_a_value_made_like_another_still_carries_what_multiplies_it():
    torch.manual_seed(0)
    model, x = FillFromAParameter(), torch.randn(6, 4)
    report = wdaudit.audit(model, x)
    assert "level" not in oracle.check(model, x).ineffective
    assert report.parameters["level"].verdict == "effective"
