"""The model's graph collapsed by module, for pictures (``--format html`` and ``dot``).

The traced graph has one node per op (thousands for a transformer); a reader wants modules.
Every op and parameter is mapped to its owning module path cut to a depth, the deepest that
keeps at most :data:`MAX_NODES` boxes (ResNet-50: its 16 blocks; a 12-layer GPT-2: each block's
attention, MLP and norms).  A box without parameters of its own whose path is the prefix of
another box (a block's residual additions) is folded into the edges, so edges join modules.
This is presentation only: no verdict depends on it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import networkx as nx
from torch import nn

from ..report import Location, ModuleBox, Overview
from ..engine.analysis.graph import ModelGraph

MAX_NODES = 60
OUTPUT = "(output)"


def overview_of(graph: ModelGraph, model: nn.Module,
                locate: Callable[[Sequence[str]], Location] | None = None) -> Overview:
    """The module-level picture of ``graph``; ``locate`` gives each parameter's source line."""
    program = graph.program
    owner = _owners(graph)
    parameters = tuple(program.parameters) or tuple(graph.param_nodes)
    places = set(owner.values()) | {_module_of(p) for p in parameters}
    depth = _depth(places, parameters)
    key = {node: _cut(path, depth) for node, path in owner.items()}
    holds: dict[str, list[str]] = {}
    for p in parameters:
        holds.setdefault(_cut(_module_of(p), depth), []).append(p)
    keys = set(key.values()) | set(holds)
    folded = {k for k in keys if k not in holds and any(_under(o, k) for o in keys)}
    dag = _collapsed(graph, {n: k for n, k in key.items() if k not in folded})
    if nx.is_directed_acyclic_graph(dag):
        # an edge already implied by a longer path (the input's shape read by every attention
        # mask, a block's residual) only hides the chain a reader follows
        dag = nx.transitive_reduction(dag)
    first = {}
    for node in graph.order:
        first.setdefault(key.get(node, node), len(first))
    order = sorted((k for k in dag.nodes), key=lambda k: first.get(k, len(first)))
    for k in holds:  # parameters that reach nothing still get a box
        if k not in dag:
            order.append(k)
    modules = dict(model.named_modules())
    boxes = tuple(_box(k, program.inputs, modules, holds) for k in order)
    edges = tuple((a, b) for a, b in dag.edges if a != b)
    where = {}
    if locate is not None:
        where = {p: locate((p,)) for p in parameters}
    return Overview(boxes, edges, depth, where)


def _owners(graph: ModelGraph) -> dict[str, str]:
    """Every op node → its owning module path; user inputs and the output as themselves."""
    program = graph.program
    owner = {}
    for node in program.gm.graph.nodes:
        if node.op == "placeholder" and node.name in program.inputs:
            owner[node.name] = node.name
        elif node.op == "output":
            owner[node.name] = OUTPUT
        elif node.op in ("call_function", "call_method", "call_module"):
            owner[node.name] = program.module_paths.get(node.name, "") or ""
    return owner


def _module_of(parameter: str) -> str:
    return parameter.rpartition(".")[0]


def _cut(path: str, depth: int) -> str:
    if path == OUTPUT or not path:
        return path
    return ".".join(path.split(".")[:depth])


def _under(path: str, prefix: str) -> bool:
    return path != prefix and path not in (OUTPUT,) and (
        prefix == "" or path.startswith(prefix + "."))


def _depth(places: set[str], parameters: Sequence[str]) -> int:
    """The deepest cut that keeps at most MAX_NODES boxes (at least 1)."""
    deepest = max((len(p.split(".")) for p in places if p and p != OUTPUT), default=1)
    for depth in range(deepest, 0, -1):
        cut = {_cut(p, depth) for p in places}
        with_params = {_cut(_module_of(p), depth) for p in parameters}
        kept = {k for k in cut if k in with_params or not any(_under(o, k) for o in cut)}
        if len(kept) <= MAX_NODES:
            return depth
    return 1


def _collapsed(graph: ModelGraph, key: dict[str, str]) -> nx.DiGraph:
    """Boxes joined where data flows between them; an op in no box (folded glue) passes on
    what reaches it, op by op, so glue at the start and the end of a model makes no cycle."""
    dag = nx.DiGraph()
    reaching: dict[str, frozenset[str]] = {}
    for node in graph.order:
        sources: set[str] = set()
        for pred in graph.dag.predecessors(node):
            sources |= {key[pred]} if pred in key else reaching.get(pred, frozenset())
        if node in key:
            dag.add_node(key[node])
            dag.add_edges_from((s, key[node]) for s in sources if s != key[node])
        else:
            reaching[node] = frozenset(sources)
    return dag


def _box(key: str, inputs: Sequence[str], modules: dict, holds: dict) -> ModuleBox:
    if key == OUTPUT:
        return ModuleBox(key, "output", "", ())
    if key in inputs:
        return ModuleBox(key, "input", "", ())
    module = modules.get(key)
    kind = type(module).__name__ if module is not None else ""
    return ModuleBox(key, "module", kind, tuple(holds.get(key, ())))
