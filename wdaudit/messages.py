"""How an exception is told in one line: its type and the first line of its message.  Every
layer reports errors it caught this way (coverage notes, confirmation reasons, log lines, the
command line's one-paragraph errors), so it lives below all of them."""

from __future__ import annotations


def first_line(exc: BaseException, limit: int | None = None) -> str:
    """The first non-empty line of the message ('' for none), cut to ``limit`` characters."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return text[:limit] if limit is not None else text


def one_line(exc: BaseException, limit: int | None = None) -> str:
    """``Type: first line of the message`` (just ``Type`` when there is no message)."""
    text = first_line(exc, limit)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
