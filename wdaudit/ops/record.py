"""The op table's records: :class:`Op`, everything every stage needs to know about one op,
and :class:`Row`, one or more spellings of an op with those facts, as the table lists them
(:mod:`wdaudit.ops.lookup` turns rows into ops, one per spelling).  An op's fields:

* ``degrees``: how the op maps the scaling degrees of its operands (DESIGN.md §3);
* ``offsets``: how additive terms travel through it (:mod:`wdaudit.ops.offsets`);
* ``view``: whether its result may share its input's storage (in-place ops reach it);
* ``keeps_split``: whether it accepts a concatenation whose parts scale apart;
* ``inplace``: whether it writes into its first operand (``x.mul_``, ``operator.iadd``);
* ``signature``: the names its arguments bind to (:mod:`wdaudit.ops.signatures`);
* and what confirmation's runner needs (DESIGN.md §4): ``shifted``, a mean-subtracting
  norm's form on shifted data for eps -> 0 runs (:mod:`wdaudit.ops.shifted`); ``stand_in``,
  a float64 stand-in for a kernel without one, and ``replay``, how the runner computes the op
  instead of its kernel (:mod:`wdaudit.ops.kernels`); ``dtype_check``, an assertion of the
  traced dtype that a run at another precision skips; ``metadata_only``, an in-place form that
  changes no values (``detach_``), so that export need not functionalise for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from torch import nn

from . import offsets as O
from .op_call import Call


@dataclass(frozen=True)
class Op:
    name: str
    degrees: Callable[[Call], Any]
    offsets: Callable[[O.OffsetCall], Any] = O.mixes
    signature: tuple[str, ...] | None = None
    inplace: bool = False
    view: bool = False
    keeps_split: bool = False
    # leaf modules only: module(args, kwargs) -> named arguments; the attribute holding eps;
    # (attribute, value) pairs set while confirmation's runner calls the module
    adapter: Callable[[nn.Module, tuple, dict], dict[str, Any]] | None = None
    eps_attr: str | None = None
    run_attrs: tuple[tuple[str, Any], ...] = ()  # pairs, not a dict: an Op stays hashable
    # confirmation's runner: see the module docstring
    shifted: Callable[..., Any] | None = None
    stand_in: Callable[..., Any] | None = None
    replay: Callable[..., Any] | None = None
    dtype_check: bool = False
    metadata_only: bool = False

    @property
    def overwrites(self) -> bool:
        """It reads none of its operand's values (``fill_``, ``zero_``, ``new_ones``): in place,
        it overwrites its target rather than updating it."""
        return self.offsets is O.value_free


@dataclass(frozen=True)
class Row:
    """One or more spellings of one op and everything about it.  ``signatures`` gives the
    argument names of a spelling whose signature cannot be introspected (by its bare name: the
    non-ATen spellings of that name in the row; ATen spellings bind by their schema).  A
    mean-subtracting norm's row names its ``shifted`` form, or says why it needs none
    (``unshifted``): the lookup refuses a norm row with neither."""

    degrees: Callable[[Call], Any]
    offsets: Callable[[O.OffsetCall], Any]
    names: str  # "namespace: names" lines
    view: bool = False
    keeps_split: bool = False
    inplace: bool = False
    signatures: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    shifted: Callable[..., Any] | None = None
    unshifted: str | None = None
    stand_in: Callable[..., Any] | None = None
    replay: Callable[..., Any] | None = None
    dtype_check: bool = False
    metadata_only: bool = False
