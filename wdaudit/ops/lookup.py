"""Finding a traced node's op in the table: every row's "namespace: names" lines are resolved
once, at import, into three dictionaries (functions, Tensor methods, ATen packets), each name
with its signature and its in-place variant."""

from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import table, table_layers
from .leaf_modules import module_op
from .signatures import (EXPLICIT, UNARY, aten_signature, bind, method_signature,
                         overload_signature, python_signature)
from .table import Op

aten = torch.ops.aten


@dataclass(frozen=True)
class Lookup:
    functions: dict[Any, Op]
    methods: dict[str, Op]
    packets: dict[Any, Op]
    library: dict[str, Op]  # custom ops by qualified name (registered when a library loads)


_NAMESPACES = ("torch", "F", "fft", "method", "aten", "op", "builtin", "library")


def _parse(spec: str):
    """Yield (namespace, name) from "ns: a b c" lines; indented lines continue the last ns."""
    ns = None
    for line in spec.strip().splitlines():
        head, sep, rest = line.partition(":")
        if sep and head.strip() in _NAMESPACES:
            ns, line = head.strip(), rest
        if ns is None:
            raise ValueError(f"op table line without a namespace: {line!r}")
        for name in line.split():
            yield ns, name


class TableError(ValueError):
    """The op table names one spelling twice: which row holds it would be an accident."""


def _resolves(ns: str, name: str, namespaces) -> bool:
    """Whether the running torch has this spelling (a method listed for its in-place variant
    only, as ``fill`` for ``fill_``, counts; library ops register when their library loads)."""
    if ns == "aten":
        return getattr(aten, name, None) is not None
    if ns == "method":
        return hasattr(torch.Tensor, name) or hasattr(torch.Tensor, name + "_")
    if ns == "op":
        return hasattr(operator, name)
    if ns == "library":
        return True
    return getattr(namespaces[ns], name, None) is not None


def _build() -> Lookup:
    """The three dictionaries, with one precedence rule: every spelling is listed once (a
    second listing raises ``TableError``), a listed spelling beats an in-place variant derived
    from another, and of two names for one function object the first listed wins."""
    functions: dict[Any, Op] = {}
    methods: dict[str, Op] = {}
    packets: dict[Any, Op] = {}
    library: dict[str, Op] = {}
    namespaces = {"torch": torch, "F": F, "builtin": builtins, "fft": torch.fft}
    listed: set[tuple[str, str]] = set()
    for row in table.ROWS + table_layers.ROWS:
        for ns, name in _parse(row.names):
            if (ns, name) in listed:
                raise TableError(f"the op table lists '{ns}: {name}' twice")
            listed.add((ns, name))
            if not _resolves(ns, name, namespaces):
                UNRESOLVED.append(f"{ns}: {name}")
                continue
            op = Op(name, row.degrees, row.offsets, view=row.view, keeps_split=row.keeps_split)
            if ns == "method":
                op = replace(op, signature=EXPLICIT.get(name) or method_signature(name))
                methods[name] = op
                methods.setdefault(name + "_", replace(op, inplace=True))
            elif ns == "aten":
                packet = getattr(aten, name, None)
                if packet is not None:
                    packets[packet] = replace(op, signature=aten_signature(packet))
                inplace = getattr(aten, name + "_", None)
                if inplace is not None and inplace not in packets:
                    packets[inplace] = replace(op, signature=aten_signature(inplace),
                                               inplace=True)
            elif ns == "library":
                library[name] = op
            elif ns == "op":
                unary = ("input",) if name in UNARY else ("input", "other")
                # operator.iadd & co. mutate a tensor in place
                functions[getattr(operator, name)] = replace(
                    op, signature=EXPLICIT.get(name) or unary, inplace=name.startswith("i"))
            else:
                fn = getattr(namespaces[ns], name, None)
                if fn is not None and fn not in functions:
                    functions[fn] = replace(op, signature=EXPLICIT.get(name)
                                            or python_signature(fn))
    functions.update(table.SPECIAL)
    return Lookup(functions, methods, packets, library)


UNRESOLVED: list[str] = []
"""Spellings the running torch does not have: a misspelling, or an op of another torch
version (tests/test_optable.py requires none under the pinned torch)."""
LOOKUP = _build()
_OVERLOADS: dict[Any, Op | None] = {}


def lookup(node: fx.Node, module: nn.Module | None = None) -> Op | None:
    """The table's op for a traced node, or None when the op is unknown."""
    if node.op == "call_module":
        return module_op(module)
    if node.op == "call_method":
        return LOOKUP.methods.get(node.target)
    if node.op != "call_function":
        return None
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        if target not in _OVERLOADS:
            packet = target.overloadpacket
            op = LOOKUP.packets.get(packet) or \
                LOOKUP.library.get(getattr(packet, "_qualified_op_name", ""))
            # bind by this overload's own schema (aten.mean.dim is not aten.mean.default)
            _OVERLOADS[target] = None if op is None else \
                replace(op, signature=overload_signature(target))
        return _OVERLOADS[target]
    try:
        op = LOOKUP.functions.get(target)
    except TypeError:  # unhashable target
        return None
    if op is not None:
        return op
    if getattr(target, "__module__", None) == "_operator":
        return None
    # torch.add and friends reach here as builtins with their own identity
    return LOOKUP.functions.get(getattr(torch, getattr(target, "__name__", ""), None))


def bound_arguments(op: Op, node: fx.Node, module: nn.Module | None
                    ) -> tuple[dict[str, Any], dict[str, tuple]]:
    """The node's arguments bound by name, and where each came from (for eps substitution).
    A leaf module's own tensors appear as :class:`~wdaudit.ops.leaf_modules.OwnTensor`."""
    if op.adapter is not None:
        return dict(op.adapter(module, tuple(node.args), dict(node.kwargs))), {}
    return bind(op.signature, tuple(node.args), dict(node.kwargs))
