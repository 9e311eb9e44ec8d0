"""Stage 2: the traced program as a dependency graph.

Nodes are fx node names; a parameter node carries the canonical parameter name.  The stage
answers the structural questions: execution order, which nodes can reach a user output (only
those matter), which parameters are used at all, and which op of the table each node applies
(looked up once, here, for every analysis).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Mapping

import networkx as nx
import torch
from torch import fx

from ...ops.lookup import lookup, writes_in_place
from ...ops.record import Op
from ..tracing.program import Program


@dataclass(frozen=True)
class ModelGraph:
    program: Program
    dag: nx.DiGraph
    order: tuple[str, ...]  # execution order of every node
    outputs: tuple[str, ...]  # nodes whose values are the user's outputs
    relevant: frozenset[str]  # nodes with a path to some user output
    param_nodes: Mapping[str, tuple[str, ...]]  # canonical parameter -> nodes that read it
    used_params: frozenset[str]  # parameters with a path to some user output
    mutations: Mapping[str, frozenset[str]] = field(default_factory=dict)  # in-place op -> aliases
    ops: Mapping[str, Op | None] = field(default_factory=dict)  # call node -> its op (None: unknown)
    # values the model's Python read in a specialised program's run (its branches): none may
    # change under a claimed scaling, and whatever reaches them has an effect, as outputs do
    read: tuple[str, ...] = ()


def build(program: Program) -> ModelGraph:
    dag = nx.DiGraph()
    order = []
    output_node = None
    ops = _ops(program)
    for node in program.gm.graph.nodes:
        order.append(node.name)
        dag.add_node(node.name, op=node.op, param=program.params.get(node.name))
        for src in node.all_input_nodes:
            dag.add_edge(src.name, node.name)
        if node.op == "output":
            output_node = node
    mutations = _mutations(program, ops)
    position = {name: i for i, name in enumerate(order)}
    for name, aliases in mutations.items():
        # whoever reads the mutated storage afterwards depends on the in-place op
        for alias in aliases:
            for user in list(dag.successors(alias)):
                if position[user] > position[name]:
                    dag.add_edge(name, user)
    outputs = tuple(_user_outputs(program, output_node))
    read = tuple(_read_by_python(program, mutations))
    # a returned tensor is read at the very end: an in-place write into it (or into a view
    # of it) after it was made reaches the output as surely as its own value does
    seeds = set(outputs + read)
    seeds |= {m for m, aliases in mutations.items() if aliases & seeds}
    relevant = set(seeds)
    for name in seeds:
        relevant |= nx.ancestors(dag, name)
    param_nodes: dict[str, list[str]] = {}
    for name, canon in program.params.items():
        param_nodes.setdefault(canon, []).append(name)
    for name, leaf in program.leaves.items():  # a leaf module's own parameters
        for canon in leaf.params.values():
            param_nodes.setdefault(canon, []).append(name)
    used = frozenset(c for c, names in param_nodes.items() if any(n in relevant for n in names))
    return ModelGraph(program, dag, tuple(order), outputs, frozenset(relevant),
                      {k: tuple(v) for k, v in param_nodes.items()}, used, mutations, ops, read)


def _read_by_python(program: Program, mutations) -> list[str]:
    """A specialised program's ops whose results nothing in it uses: a branch condition's
    ``item``, the ``resolve_neg`` a ``.tolist()`` of split sizes leaves.  make_fx records the op
    and bakes in what Python did with its value, so each is taken as read (a computation the
    model discards, pinned too, can only cost a claim).  In-place ops and unused pieces of a
    split are not reads."""
    if program.method != "specialised":
        return []
    return [n.name for n in program.gm.graph.nodes
            if n.op == "call_function" and not n.users and n.target is not operator.getitem
            and n.name not in mutations]


def _ops(program: Program) -> dict[str, Op | None]:
    out = {}
    for node in program.gm.graph.nodes:
        if node.op in ("call_function", "call_method", "call_module"):
            module = program.gm.get_submodule(node.target) if node.op == "call_module" else None
            out[node.name] = lookup(node, module)
    return out


def _mutations(program: Program, ops: Mapping[str, Op | None]) -> dict[str, frozenset[str]]:
    """In-place ops (``x.mul_(g)``, ``x[i] = v``, ``F.relu(x, inplace=True)``) and the nodes
    that may share the mutated storage: the target and everything linked to it by views."""
    out = {}
    for node in program.gm.graph.nodes:
        if node.op not in ("call_function", "call_method", "call_module") or not node.args:
            continue
        module = program.gm.get_submodule(node.target) if node.op == "call_module" else None
        op = ops[node.name]
        target = node.args[0]
        if writes_in_place(op, node, module) and isinstance(target, fx.Node):
            out[node.name] = frozenset(n.name for n in _alias_set(target, ops))
    return out


def _alias_set(start: fx.Node, ops: Mapping[str, Op | None]) -> set[fx.Node]:
    """The node and everything that may share its storage: views of it, what it is a view of."""

    def is_view(n: fx.Node) -> bool:
        op = ops.get(n.name)
        return op is not None and op.view and n.op != "call_module"

    seen, todo = {start}, [start]
    while todo:
        n = todo.pop()
        linked = [u for u in n.users if is_view(u) and u.args and u.args[0] is n]
        if is_view(n) and n.args and isinstance(n.args[0], fx.Node):
            linked.append(n.args[0])
        for m in linked:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _user_outputs(program: Program, output_node: fx.Node | None) -> list[str]:
    if output_node is None:
        return []
    results = output_node.args[0]
    results = list(results) if isinstance(results, (tuple, list)) else [results]
    if program.output_index is not None:
        results = [results[i] for i in program.output_index if i < len(results)]
    names: list[str] = []
    for r in results:
        fx.node.map_arg(r, lambda n: names.append(n.name))
    return names


def describe(node: fx.Node, program: Program) -> str:
    """A short, stable name for the op a node applies (for reports and errors)."""
    if node.op == "call_module":
        module = program.gm.get_submodule(node.target)
        if module is program.root:  # the whole model, opaque: name it, not our wrapper
            return f"{type(program.root.model).__name__}.forward"
        return type(module).__name__
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", repr(target))
    if module in ("_operator", "operator", "builtins"):
        return f"operator.{name}" if module != "builtins" else name
    return f"{module}.{name}" if module else name
