"""Argument binding: every spelling of an op (``F.layer_norm``, ``aten.layer_norm.default``,
``x.view(...)``, ``operator.add``) binds its arguments to the same names (``input``, ``weight``,
``other`` …), so that a rule never cares which spelling the tracer produced.  Signatures come
from ATen schemas where there is one, from Python signatures otherwise, and from the
op table's rows (their ``signatures``) where neither can be introspected."""

from __future__ import annotations

import inspect
from typing import Any

import torch

aten = torch.ops.aten

def method_signature(name: str) -> tuple[str, ...]:
    """``x.name(*args)`` binds like ``aten.name(self, *args)``; ``x.__op__(y)`` like a binary op."""
    if name.startswith("__"):
        return ("input", "other")
    packet = getattr(aten, name, None)
    sig = aten_signature(packet) if packet is not None else None
    return sig or ("input", "*args")


def aten_signature(packet) -> tuple[str, ...] | None:
    try:
        first = getattr(packet, packet.overloads()[0])
    except (IndexError, AttributeError):
        return None
    return tuple(rename(a.name) for a in first._schema.arguments)


def rename(name: str) -> str:
    # torch.split(tensor, ...) names its operand ``tensor``: unbound as ``input``, the rule saw
    # no operand and the split pieces lost their degree (timm's ParallelScalingBlock)
    return "input" if name in ("self", "a", "tensor") else name


def bind(signature: tuple[str, ...] | None, args: tuple, kwargs: dict
         ) -> tuple[dict[str, Any], dict[str, tuple]]:
    """Bind positional and keyword arguments to names.

    Returns the bound values and, per name, where the value came from (``("arg", i)`` or
    ``("kwarg", key)``) so that confirmation can substitute an epsilon in place.
    """
    sig = signature or ()
    bound: dict[str, Any] = {}
    where: dict[str, tuple] = {}
    rest: list[Any] = []
    star = next((n[1:] for n in sig if n.startswith("*")), None)
    plain = [n for n in sig if not n.startswith("*")]
    for i, value in enumerate(args):
        if star is not None and i >= sig.index("*" + star):
            rest.append(value)
            continue
        if i < len(plain):
            bound[plain[i]] = value
            where[plain[i]] = ("arg", i)
        else:
            bound[f"_arg{i}"] = value
            where[f"_arg{i}"] = ("arg", i)
    if star is not None:
        bound[star] = rest[0] if len(rest) == 1 and isinstance(rest[0], (list, tuple)) else rest
    for key, value in kwargs.items():
        name = rename(key)
        bound[name] = value
        where[name] = ("kwarg", key)
    for name in sig:
        if name not in where and not name.startswith("*"):
            where[name] = ("kwarg", name)
    if kwargs.get("inplace") is True:
        where["_inplace"] = ("kwarg", "inplace")
    return bound, where


def python_signature(fn) -> tuple[str, ...] | None:
    packet = getattr(aten, getattr(fn, "__name__", "") or "", None)
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return aten_signature(packet) if packet is not None else None
    if all(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        # boolean_dispatch wrappers (F.max_pool1d & co.) hide their signature behind *args
        return aten_signature(packet) if packet is not None else None
    names = []
    for p in params:
        names.append(("*" + p.name) if p.kind is p.VAR_POSITIONAL else rename(p.name))
    return tuple(names)


def overload_signature(target: torch._ops.OpOverload) -> tuple[str, ...]:
    """The names of one ATen overload's arguments (``self`` read as ``input``)."""
    return tuple(rename(a.name) for a in target._schema.arguments)
