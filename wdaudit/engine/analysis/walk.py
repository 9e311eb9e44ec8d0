"""The one traversal skeleton that every graph analysis uses (in the spirit of torch.fx's
``Interpreter``): visit the nodes that reach an output in execution order, dispatch on
``node.op``, bind each op's arguments through the op table, and name the node in any error
that escapes.

An analysis subclasses :class:`GraphWalk` and says what a leaf (placeholder, parameter,
constant), a tuple element, a known op and an unknown op mean to it.  Nothing is swallowed:
in strict mode an error raises :class:`AnalysisError` naming the node; otherwise the node is
treated as an unknown op and the failure is kept, with its reason, for the report's coverage.
"""

from __future__ import annotations

import operator
from typing import Any

from torch import fx, nn

from ...ops.lookup import bound_arguments
from ...messages import one_line
from ...ops.record import Op
from .graph import ModelGraph, describe


class UnsupportedOpError(RuntimeError):
    """Strict mode: an op the table does not know would have been treated conservatively."""


class AnalysisError(RuntimeError):
    """Strict mode: an analysis failed at a node (the message names the node and the op)."""


class GraphWalk:
    stage = "analysis"  # the analysis's name, for messages

    def __init__(self, graph: ModelGraph, strict: bool):
        self.graph = graph
        self.program = graph.program
        self.strict = strict
        self.env: dict[str, Any] = {}
        self.failures: list[str] = []

    def run(self) -> None:
        for node in self.program.gm.graph.nodes:
            if node.name not in self.graph.relevant or node.op == "output":
                continue
            self.env[node.name] = self._visit(node)
            self.after(node)

    def _visit(self, node: fx.Node) -> Any:
        try:
            if node.op in ("placeholder", "get_attr"):
                return self.leaf(node)
            if node.op == "call_function" and node.target is operator.getitem:
                return self.getitem(node)
            op = self.graph.ops.get(node.name)
            if op is None:
                return self.unknown(node, "")
            module = self.module(node)
            args, where = bound_arguments(op, node, module)
            return self.apply(node, op, args, where)
        except UnsupportedOpError:
            raise
        except Exception as exc:  # noqa: BLE001 - named below, and never silent
            where = f"{self.stage} at node '{node.name}' ({describe(node, self.program)})"
            reason = one_line(exc, 200)
            if self.strict:
                raise AnalysisError(f"{where} failed: {reason}") from exc
            self.failures.append(f"{where} failed ({reason}); treated as an unknown op")
            return self.unknown(node, reason)

    def module(self, node: fx.Node) -> nn.Module | None:
        return self.program.gm.get_submodule(node.target) if node.op == "call_module" else None

    # -- what an analysis defines ---------------------------------------------------------------
    def leaf(self, node: fx.Node) -> Any:
        raise NotImplementedError

    def getitem(self, node: fx.Node) -> Any:
        raise NotImplementedError

    def apply(self, node: fx.Node, op: Op, args: dict[str, Any], where: dict[str, tuple]) -> Any:
        raise NotImplementedError

    def unknown(self, node: fx.Node, reason: str) -> Any:
        raise NotImplementedError

    def after(self, node: fx.Node) -> None:
        """Called once a node's value is in ``env`` (in-place ops update their aliases)."""
