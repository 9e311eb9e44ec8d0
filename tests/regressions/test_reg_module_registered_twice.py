"""Regression: timm's CoaT registers one convolutional position encoding under two names
(``cpe1`` and ``serial_blocks1.0.cpe``).  ``functional_call(..., tie_weights=True)`` swapped that
one module's weight under both names and restored it in the wrong order, leaving a plain tensor
where the parameter was; the trace then baked it in as a constant, the program disagreed with
the model at the generic point, and every claim was rejected (coat_mini: 64 parameters unknown,
a timeout before the failing claims were failed together).  Each tensor is now swapped once per
module object that holds it."""

import torch
from torch import nn

from tests.support.differential import differential
from wdaudit.engine.tracing.working_copy import tensor_slots


class PosEnc(nn.Module):
    def __init__(self, dim=6):
        super().__init__()
        self.proj = nn.Conv1d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x):  # (B, T, C)
        return x + self.proj(x.transpose(1, 2)).transpose(1, 2)


class Block(nn.Module):
    def __init__(self, shared, dim=6):
        super().__init__()
        self.cpe = shared  # the same module object as the model's ``cpe``
        self.fc = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        return self.norm(self.fc(self.cpe(x)))


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.cpe = PosEnc()
        self.blocks = nn.Sequential(Block(self.cpe), Block(self.cpe))
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        return self.head(self.blocks(x))


def test_a_module_registered_twice_is_swapped_once():
    model = Model()
    slots = tensor_slots(model)
    assert sum(name == "cpe.proj.weight" for name in slots.values()) == 1


def test_a_model_sharing_a_module_matches_the_oracle():
    torch.manual_seed(0)
    model, x = Model(), torch.randn(2, 5, 6)
    report, _ = differential(model, x)  # no claim left unknown: the program is the model
    assert report.confirmation.performed and not report.confirmation.defects
    assert isinstance(model.cpe.proj.weight, nn.Parameter)  # and the user's model is intact
    assert "blocks.0.fc.weight" in report.ineffective
