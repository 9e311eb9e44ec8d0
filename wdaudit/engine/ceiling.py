"""A ceiling on this process's resident memory while confirmation runs a specialised program
and its model at points the trace never saw.

A forward whose sizes its weights decide (a text-to-speech model's predicted durations) can
allocate far more at confirmation's generic point than on the example inputs: the memory bill
(``budget``) is computed from the sizes the trace recorded and cannot see it.  Inside
:func:`watching`, every op the runner dispatches (``program._WriteGuard``) checks the resident
set now and then, and raises ``MemoryError`` past the ceiling, before the kernel's OOM killer
ends the user's process.  Linux only (``/proc/self/statm``); elsewhere nothing is watched.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("wdaudit_rss_limit",
                                                                    default=None)
_EVERY = 32  # ops between two reads of the resident set (a read costs a few microseconds)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_count = 0


def resident() -> int | None:
    """Bytes this process holds in memory now; None where /proc is not there."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def watching(headroom: int | None):
    """Raise ``MemoryError`` from any op once the process holds ``headroom`` bytes more than
    it does now (no ceiling when either is unknown)."""
    now = resident()
    token = _LIMIT.set(now + headroom if now is not None and headroom is not None else None)
    try:
        yield
    finally:
        _LIMIT.reset(token)


def check() -> None:
    global _count
    limit = _LIMIT.get()
    if limit is None:
        return
    _count += 1
    if _count % _EVERY == 0 and (resident() or 0) > limit:
        raise MemoryError("its tensors at this point outgrow the memory that was free (its "
                          "sizes depend on its weights), so it was stopped")
