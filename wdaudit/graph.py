"""Stage 2: the traced program as a dependency graph.

Nodes are fx node names; a parameter node carries the canonical parameter name.  The stage
answers the structural questions: execution order, which nodes can reach a user output (only
those matter), and which parameters are used at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import networkx as nx
import torch
from torch import fx

from .program import Program


@dataclass(frozen=True)
class ModelGraph:
    dag: nx.DiGraph
    order: tuple[str, ...]  # execution order of every node
    outputs: tuple[str, ...]  # nodes whose values are the user's outputs
    relevant: frozenset[str]  # nodes with a path to some user output
    param_nodes: Mapping[str, tuple[str, ...]]  # canonical parameter -> nodes that read it
    used_params: frozenset[str]  # parameters with a path to some user output
    mutations: Mapping[str, frozenset[str]] = field(default_factory=dict)  # in-place op -> aliases


def build(program: Program) -> ModelGraph:
    dag = nx.DiGraph()
    order = []
    output_node = None
    for node in program.gm.graph.nodes:
        order.append(node.name)
        dag.add_node(node.name, op=node.op, param=program.params.get(node.name))
        for src in node.all_input_nodes:
            dag.add_edge(src.name, node.name)
        if node.op == "output":
            output_node = node
    mutations = _mutations(program)
    position = {name: i for i, name in enumerate(order)}
    for name, aliases in mutations.items():
        # whoever reads the mutated storage afterwards depends on the in-place op
        for alias in aliases:
            for user in list(dag.successors(alias)):
                if position[user] > position[name]:
                    dag.add_edge(name, user)
    outputs = tuple(_user_outputs(program, output_node))
    relevant = set(outputs)
    for name in outputs:
        relevant |= nx.ancestors(dag, name)
    param_nodes: dict[str, list[str]] = {}
    for name, canon in program.params.items():
        param_nodes.setdefault(canon, []).append(name)
    for name, leaf in program.leaves.items():  # a leaf module's own parameters
        for canon in leaf.params.values():
            param_nodes.setdefault(canon, []).append(name)
    used = frozenset(c for c, names in param_nodes.items() if any(n in relevant for n in names))
    return ModelGraph(dag, tuple(order), outputs, frozenset(relevant),
                      {k: tuple(v) for k, v in param_nodes.items()}, used, mutations)


_VIEWS = {"view", "reshape", "view_as", "reshape_as", "transpose", "permute", "t", "expand",
          "expand_as", "unsqueeze", "squeeze", "flatten", "unflatten", "narrow", "select",
          "slice", "detach", "as_strided", "diagonal", "movedim", "swapaxes", "unfold",
          "split", "chunk", "unbind", "getitem", "__getitem__", "alias", "contiguous", "data",
          "T", "mT"}


def _mutations(program: Program) -> dict[str, frozenset[str]]:
    """In-place ops (``x.mul_(g)``, ``x[i] = v``, ``F.relu(x, inplace=True)``) and the nodes
    that may share the mutated storage: the target and everything linked to it by views."""
    from . import optable

    out = {}
    for node in program.gm.graph.nodes:
        if node.op not in ("call_function", "call_method", "call_module") or not node.args:
            continue
        module = program.gm.get_submodule(node.target) if node.op == "call_module" else None
        entry = optable.entry_for(node, module)
        inplace = bool(getattr(entry, "inplace", False)) or node.kwargs.get("inplace") is True \
            or bool(getattr(module, "inplace", False))
        target = node.args[0]
        if inplace and isinstance(target, fx.Node):
            out[node.name] = frozenset(n.name for n in _alias_set(target))
    return out


def _alias_set(start: fx.Node) -> set[fx.Node]:
    """The node and everything that may share its storage: views of it, what it is a view of."""
    seen, todo = {start}, [start]
    while todo:
        n = todo.pop()
        linked = [u for u in n.users if _is_view(u) and u.args and u.args[0] is n]
        if _is_view(n) and n.args and isinstance(n.args[0], fx.Node):
            linked.append(n.args[0])
        for m in linked:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def _is_view(n: fx.Node) -> bool:
    if n.op == "call_method":
        return n.target in _VIEWS
    if n.op == "call_function":
        name = getattr(n.target, "__name__", "") or ""
        if isinstance(n.target, torch._ops.OpOverload):
            name = n.target.overloadpacket.__name__
        return name in _VIEWS
    return False


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
        return type(program.gm.get_submodule(node.target)).__name__
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
