"""Stage 2: the traced program as a dependency graph.

Nodes are fx node names; a parameter node carries the canonical parameter name.  The stage
answers the structural questions: execution order, which nodes can reach a user output (only
those matter), and which parameters are used at all.
"""

from __future__ import annotations

from dataclasses import dataclass
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
                      {k: tuple(v) for k, v in param_nodes.items()}, used)


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
