"""Probes shared by the stage tests: the float64 redraw that decides numerically whether a
parameter changes a model's output, the trace-graph-influence run the stage tests start from,
lookups of single nodes in a traced program, the ConvBN model that both the influence and the
failure-handling tests analyse, and the small network (``Net``) whose claims, confirmation,
verdicts and findings the verdict and finding tests share through their ``net`` fixture."""

from __future__ import annotations

import copy
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from wdaudit import report as R
from wdaudit.engine.analysis import claims as claims_stage
from wdaudit.engine.confirmation import confirm as confirm_stage
from wdaudit.engine.analysis import degrees as degrees_stage
from wdaudit.engine.analysis import graph as graph_stage
from wdaudit.engine.analysis import influence as influence_stage
from wdaudit.engine.analysis import symmetries as symmetries_stage
from wdaudit.engine.tracing.trace import trace

STRICT = True  # every stage tested runs strict unless a test is about the non-strict mode
TOL_SAME = 1e-10  # relative output change of a float64 model that counts as "unchanged"
CPU = torch.device("cpu")


def analysed(model: nn.Module, x: torch.Tensor, strict: bool = STRICT):
    program = trace(model, (x,))
    g = graph_stage.build(program)
    return g, influence_stage.analyse(g, strict)


def confirm_made(model: nn.Module, x: torch.Tensor, claims) -> R.Confirmation:
    """Confirmation of hand-made claims about the model (some of them false on purpose), the
    stages before it chained as the driver chains them."""
    program = trace(model, (x,))
    found = influence_stage.analyse(graph_stage.build(program), strict=True)
    derived = claims_stage.claims_for(
        symmetries_stage.solve(degrees_stage.propagate(found, strict=True)))
    made = replace(derived, claims=tuple(claims))
    return confirm_stage.confirm(made, confirm_stage.Setup(dict(model.named_parameters()), (x,),
                                                           CPU))


def node_where(g, predicate) -> str:
    """The one node of the traced program that satisfies ``predicate(node, module)``."""
    gm = g.program.gm
    found = [n.name for n in gm.graph.nodes
             if predicate(n, gm.get_submodule(n.target) if n.op == "call_module" else None)]
    assert len(found) == 1, found
    return found[0]


def module_node(g, kind: type) -> str:
    return node_where(g, lambda n, m: isinstance(m, kind))


def redraw_change(model: nn.Module, x: torch.Tensor, name: str, seed: int = 0) -> float:
    """Relative change of the float64 model's output (training semantics) when parameter
    ``name`` is replaced by a fresh random value."""
    m = copy.deepcopy(model).double().train()
    x = x.double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        y0 = m(x)
        params = dict(m.named_parameters())
        p = params[name]
        params[name] = 3.0 * torch.randn(p.shape, generator=g, dtype=p.dtype) + 1.0
        y1 = functional_call(m, params, (x,))
    return float((y1 - y0).norm() / y0.norm())


def numerically_no_effect(model: nn.Module, x: torch.Tensor) -> frozenset[str]:
    return frozenset(n for n, _ in model.named_parameters()
                     if redraw_change(model, x, n) < TOL_SAME)


def _inplace_node(g, target: str):
    nodes = [n for n in g.program.gm.graph.nodes if n.target == target]
    assert len(nodes) == 1
    return nodes[0]


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(F.relu(self.bn(self.conv(x))).mean((2, 3)))


class Net(nn.Module):
    """fc1's bias has no effect (BatchNorm), fc1's weight is scale-free, BN's affine joins
    fc2's bias in a joint group (LayerNorm), fc2 is scale-free, ``spare`` is never used."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 5)
        self.ln = nn.LayerNorm(5)
        self.head = nn.Linear(5, 2)
        self.spare = nn.Parameter(torch.randn(2))

    def forward(self, x):
        return self.head(self.ln(self.fc2(F.relu(self.bn(self.fc1(x))))))


def build_net():
    """The ``net`` fixture's value: ``Net``, its input, its claims and their (checked)
    confirmation."""
    torch.manual_seed(0)
    model, x = Net(), torch.randn(6, 4)
    _, found = analysed(model, x)
    claims = claims_stage.claims_for(
        symmetries_stage.solve(degrees_stage.propagate(found, STRICT)))
    setup = confirm_stage.Setup(dict(model.named_parameters()), (x,), CPU)
    checked = confirm_stage.confirm(claims, setup)
    assert checked.outcome == R.CHECKED and not checked.defects
    return model, x, claims, checked
