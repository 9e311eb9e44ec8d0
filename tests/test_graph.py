"""Direct tests of engine/analysis/graph.py, the dependency graph built from a traced program: in-place
writes (through a view, in each spelling, into a returned tensor) are recorded as mutations of
the right aliases and keep their readers connected, ``relevant`` is exactly what reaches an
output, and ``used_params`` covers every parameter whose redraw changes the real model's
output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.support.probes import TOL_SAME, _inplace_node, node_where, redraw_change
from wdaudit.engine.analysis import graph as graph_stage
from wdaudit.engine.tracing.trace import trace


class ViewMutation(nn.Module):
    """``v.mul_(g)`` writes into ``h`` through a view; only later readers of ``h`` see it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.g = nn.Parameter(torch.randn(4))
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.fc(x)
        kept = h.clone()  # a copy, not an alias: the write must not reach it
        v = h.view(-1, 2, 4)
        v.mul_(self.g)
        return self.head(h) + kept.sum(-1, keepdim=True)


def test_in_place_op_on_a_view_aliases_the_view_and_its_base():
    model, x = ViewMutation(), torch.randn(6, 4)
    g = graph_stage.build(trace(model, (x,)))
    mul = _inplace_node(g, "mul_")
    view = mul.args[0]
    base = view.args[0]
    clone = _inplace_node(g, "clone")
    assert view.target == "view" and base.name == clone.args[0].name
    assert g.mutations[mul.name] == {view.name, base.name}
    assert clone.name not in g.mutations[mul.name]
    # the readers of h after the write depend on it, so the write (and g) reach the output
    head = node_where(g, lambda n, m: m is not None and n.target.endswith(".head"))
    assert g.dag.has_edge(mul.name, head)
    gain = mul.args[1]
    assert g.program.params[gain.name] == "g"
    assert {mul.name, gain.name} <= g.relevant
    # derived: every parameter whose value changes the output is used
    assert redraw_change(model, x, "g") > 1e-3
    assert {n for n, _ in model.named_parameters() if redraw_change(model, x, n) > TOL_SAME} \
        <= g.used_params


@pytest.mark.parametrize("spelling", ["method", "functional", "module"])
def test_every_in_place_spelling_is_a_mutation(spelling):
    class InPlaceRelu(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.act = nn.ReLU(inplace=True)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            h = self.fc(x)
            if spelling == "method":
                h.relu_()
            elif spelling == "functional":
                F.relu(h, inplace=True)
            else:
                self.act(h)
            return self.head(h)

    g = graph_stage.build(trace(InPlaceRelu(), (torch.randn(5, 4),)))
    fc = next(n for n in g.program.gm.graph.nodes if n.op == "call_module"
              and n.target.endswith(".fc"))
    writers = [name for name, aliases in g.mutations.items() if fc.name in aliases]
    assert len(writers) == 1, g.mutations
    assert writers[0] in g.relevant  # the head reads h after the write


class DeadBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.side = nn.Linear(4, 3)
        self.never = nn.Parameter(torch.randn(2))

    def forward(self, x):
        wasted = torch.tanh(self.side(x)) * 2.0  # noqa: F841 - computed, never returned
        return self.fc(x)


def test_relevant_is_exactly_what_reaches_an_output():
    model, x = DeadBranch(), torch.randn(5, 4)
    g = graph_stage.build(trace(model, (x,)))
    gm = g.program.gm
    # without in-place ops, "reaches an output" is the backward closure from the output node
    out = next(n for n in gm.graph.nodes if n.op == "output")
    closure, todo = set(), list(out.all_input_nodes)
    while todo:
        n = todo.pop()
        if n.name not in closure:
            closure.add(n.name)
            todo.extend(n.all_input_nodes)
    assert not g.mutations
    assert g.relevant == closure
    side = {n for n, path in g.program.module_paths.items() if path == "side"}
    assert side and not side & g.relevant
    dead = {n.name for n in gm.graph.nodes if n.op != "output"} - closure
    assert dead >= side | {n.name for n in gm.graph.nodes if n.target in (torch.tanh,)}
    # used_params: what reaches an output; the side layer and the never-read tensor do not
    changing = {n for n, _ in model.named_parameters() if redraw_change(model, x, n) > TOL_SAME}
    assert g.used_params == changing == {"fc.weight", "fc.bias"}
    assert "never" not in g.param_nodes or not set(g.param_nodes["never"]) & g.relevant


class ReturnsMutated(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.g = nn.Parameter(torch.randn(4))

    def forward(self, x):
        h = self.fc(x)
        h.mul_(self.g)
        return h  # the returned tensor itself was written in place


def test_in_place_write_into_a_returned_tensor_reaches_the_output():
    model, x = ReturnsMutated(), torch.randn(3, 4)
    assert redraw_change(model, x, "g") > 1e-3  # g does change the output
    g = graph_stage.build(trace(model, (x,)))
    assert _inplace_node(g, "mul_").name in g.relevant
    assert "g" in g.used_params
