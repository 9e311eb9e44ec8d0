"""Finding a traced node's op in the table: every row's "namespace: names" lines are resolved
once, at import, into three dictionaries (functions, Tensor methods, ATen packets), each name
with its signature and its in-place variant."""

from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from . import table, table_layers
from .leaf_modules import module_op
from . import degrees_layers as L
from .signatures import (aten_signature, bind, method_signature, overload_signature,
                         python_signature)
from .record import Op, Row

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
    """The op table contradicts itself: a spelling listed twice (which row holds it would be an
    accident), a signature for a name its row lacks, one name's spellings with different view
    flags, or a mean-subtracting norm without its shifted form."""


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


# the degree rules of norms that subtract a mean (leaf modules compute through F, listed here)
_NORMS = (L.layer_norm, L.batch_norm)


def _check(row: Row, spellings: list[tuple[str, str]], views: dict[str, bool]) -> None:
    names = {name for ns, name in spellings if ns != "aten"}
    for name in row.signatures:
        if name not in names:
            raise TableError(f"the op table gives a signature for '{name}', which its row "
                             f"({row.names.split()[:3]}…) does not list")
    for ns, name in spellings:
        if f"{ns}: {name}" in table.HOMONYMS:
            continue
        if views.setdefault(name, row.view) != row.view:
            raise TableError(f"the op table gives '{name}' two view flags: one op, one flag")
    rule = getattr(row.degrees, "func", row.degrees)
    if rule in _NORMS and (row.shifted is None) == (row.unshifted is None):
        raise TableError(f"the op table's norm row {row.names.split()[:3]}… needs its shifted "
                         "form (eps -> 0 runs) or, in 'unshifted', why it has none")


def _op(name: str, row: Row) -> Op:
    return Op(name, row.degrees, row.offsets, inplace=row.inplace, view=row.view,
              keeps_split=row.keeps_split, shifted=row.shifted, stand_in=row.stand_in,
              replay=row.replay, dtype_check=row.dtype_check, metadata_only=row.metadata_only)


def _in_place(op: Op) -> Op:
    """The in-place variant (``x.mul_``, ``aten.add_``) derived from a listed spelling: it
    writes its result into its operand, which is not what a replay or a stand-in computes."""
    return replace(op, inplace=True, shifted=None, stand_in=None, replay=None)


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
    views: dict[str, bool] = {}
    for row in table.ROWS + table_layers.ROWS:
        spellings = list(_parse(row.names))
        _check(row, spellings, views)
        for ns, name in spellings:
            if (ns, name) in listed:
                raise TableError(f"the op table lists '{ns}: {name}' twice")
            listed.add((ns, name))
            if not _resolves(ns, name, namespaces):
                UNRESOLVED.append(f"{ns}: {name}")
                continue
            op = _op(name, row)
            explicit = row.signatures.get(name)
            if ns == "method":
                op = replace(op, signature=explicit or method_signature(name))
                methods[name] = op
                methods.setdefault(name + "_", _in_place(op))
            elif ns == "aten":
                packet = getattr(aten, name, None)
                if packet is not None:
                    packets[packet] = replace(op, signature=aten_signature(packet))
                inplace = getattr(aten, name + "_", None)
                if inplace is not None and inplace not in packets:
                    packets[inplace] = _in_place(replace(op, signature=aten_signature(inplace)))
            elif ns == "library":
                library[name] = op
            elif ns == "op":
                functions[getattr(operator, name)] = replace(
                    op, signature=explicit or ("input", "other"))
            else:
                fn = getattr(namespaces[ns], name, None)
                if fn is not None and fn not in functions:
                    functions[fn] = replace(op, signature=explicit or python_signature(fn))
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
    return function_op(node.target)


def function_op(target: Any) -> Op | None:
    """The table's op for a called function: an ATen overload (bound by its own schema), a
    library op, a torch, ``operator`` or builtin function; None when it is unknown."""
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


_STAND_INS = {packet: op.stand_in for packet, op in LOOKUP.packets.items()
              if op.stand_in is not None}


def stand_in(target: Any) -> Callable[..., Any] | None:
    """The float64 stand-in for a dispatched kernel (an overload or its packet), if it has one:
    read on every op a real-model run dispatches, so one dictionary look-up."""
    return _STAND_INS.get(getattr(target, "overloadpacket", target))


def writes_in_place(op: Op | None, node: fx.Node, module: nn.Module | None) -> bool:
    """Whether a node writes into its first operand: the op's own flag (``x.mul_``,
    ``operator.iadd``, ``x[i] = v``), an ``inplace=True`` keyword (``F.relu(x, inplace=True)``)
    or a leaf module built in place (``nn.ReLU(inplace=True)``)."""
    return bool(op is not None and op.inplace) or node.kwargs.get("inplace") is True \
        or bool(getattr(module, "inplace", False))


def bound_arguments(op: Op, node: fx.Node, module: nn.Module | None
                    ) -> tuple[dict[str, Any], dict[str, tuple]]:
    """The node's arguments bound by name, and where each came from (for eps substitution).
    A leaf module's own tensors appear as :class:`~wdaudit.ops.leaf_modules.OwnTensor`."""
    if op.adapter is not None:
        return dict(op.adapter(module, tuple(node.args), dict(node.kwargs))), {}
    return bind(op.signature, tuple(node.args), dict(node.kwargs))
