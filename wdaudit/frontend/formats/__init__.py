"""Output formats of the command line: each renders a :class:`~wdaudit.report.Report` (already
filtered by ``select``/``ignore``/``# noqa``) to one string."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

FORMATS = ("text", "json", "sarif", "github", "html", "dot")


@dataclass(frozen=True)
class Context:
    """What the report itself does not know: where it came from and what was left out."""

    target: str  # TARGET as typed
    path: str | None = None  # the file the target was loaded from
    origin: Mapping[str, str] = field(default_factory=dict)  # model / inputs / optimizer
    optimizer: str | None = None  # the optimizer's class name
    silenced: int = 0  # findings silenced by `# noqa`
    compare: bool = False  # --compare: show the rules of thumb beside the proof


def render(fmt: str, report, context: Context, *, color: bool = False,
           width: int | None = None) -> str:
    from . import dot, github, html, jsondoc, sarif, text

    if fmt == "text":
        return text.render(report, context, color=color, width=width)
    return {"json": jsondoc, "sarif": sarif, "github": github, "html": html,
            "dot": dot}[fmt].render(report, context)
