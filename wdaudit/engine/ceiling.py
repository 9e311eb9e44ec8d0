"""A ceiling on this process's resident memory while confirmation runs a specialised program
and its model at points the trace never saw.

A forward whose sizes its weights decide (a text-to-speech model's predicted durations) can
allocate far more at confirmation's generic point than on the example inputs: the memory bill
(``budget``) is computed from the sizes the trace recorded and cannot see it.  Inside
:func:`watching`, every op the runner dispatches (``program._WriteGuard``) checks the resident
set, and raises ``MemoryError`` past the ceiling, before the kernel's OOM killer
ends the user's process; the address space is capped as well, against one op larger than the
ceiling by itself.  Linux only (``/proc/self/statm``); elsewhere nothing is watched.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

_LIMIT: contextvars.ContextVar[int | None] = contextvars.ContextVar("wdaudit_rss_limit",
                                                                    default=None)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident() -> int | None:
    """Bytes this process holds in memory now; None where /proc is not there."""
    return _statm(1)


def _virtual() -> int | None:
    """Bytes of address space this process has mapped now."""
    return _statm(0)


def _statm(field: int) -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[field]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def watching(headroom: int | None):
    """Raise ``MemoryError`` from any op once the process holds ``headroom`` bytes more than
    it does now (no ceiling when either is unknown).  One op can allocate more than that by
    itself (fastspeech2's length regulation: 15 GB, and the OOM killer came before the next
    op), so the address space is capped too, at ``max(headroom, FLOOR)`` more than now: such
    an allocation then fails as it is asked for."""
    now = resident()
    token = _LIMIT.set(now + headroom if now is not None and headroom is not None else None)
    with _address_space(headroom):
        try:
            yield
        finally:
            _LIMIT.reset(token)


FLOOR = 2 * 2**30  # the address space always has this much room: threads reserve arenas


@contextlib.contextmanager
def _address_space(headroom: int | None):
    try:
        import resource
    except ImportError:  # not a Unix
        resource = None
    vm = _virtual()
    if resource is None or vm is None or headroom is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + max(headroom, FLOOR)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        yield  # the user's own cap is tighter already
        return
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def check() -> None:
    """After every op: one op can hold as much as all before it (fastspeech2's 15 GB length
    regulation, then the next op's copy of it), and a read costs a few microseconds."""
    limit = _LIMIT.get()
    if limit is not None and (resident() or 0) > limit:
        raise MemoryError("its tensors at this point outgrow the memory that was free (its "
                          "sizes depend on its weights), so it was stopped")
