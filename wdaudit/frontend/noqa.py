"""``# noqa: WD001`` comments: the findings a user silenced on the line they point to."""

from __future__ import annotations

import linecache
import re
from typing import Callable, Sequence

from ..report import Finding

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?",
                   re.IGNORECASE)


def noqa_codes(line: str) -> frozenset[str]:
    """The codes a ``# noqa: WD001, WD003`` comment on ``line`` names.  A bare ``# noqa``
    names none: it is meant for other linters and suppresses nothing here."""
    codes: set[str] = set()
    for m in _NOQA.finditer(line):
        if m.group("codes"):
            codes.update(c.upper() for c in re.split(r"[,\s]+", m.group("codes")))
    return frozenset(codes)


def source_line(path: str, line: int) -> str:
    linecache.checkcache(path)
    return linecache.getline(path, line)


def suppress(found: Sequence[Finding], codes: frozenset[str],
             read_line: Callable[[str, int], str] = source_line
             ) -> tuple[tuple[Finding, ...], tuple[Finding, ...]]:
    """The findings whose code is in ``codes``, split into (kept, silenced): silenced when the
    line a finding points to carries a ``# noqa`` naming its code."""
    kept, silenced = [], []
    for f in found:
        if f.code not in codes:
            continue
        where = f.location
        noqa = where.path is not None and where.line is not None and \
            f.code in noqa_codes(read_line(where.path, where.line))
        (silenced if noqa else kept).append(f)
    return tuple(kept), tuple(silenced)
