"""Output formats of the command line: each renders a :class:`~wdaudit.report.Report` (already
filtered by ``select``/``ignore``/``# noqa``) to one string."""

from __future__ import annotations

from .context import Context

FORMATS = ("text", "json", "sarif", "github", "html", "dot")


__all__ = ["FORMATS", "Context", "render"]


def render(fmt: str, report, context: Context, *, color: bool = False,
           width: int | None = None) -> str:
    from . import dot, github, html, jsondoc, sarif, text

    if fmt == "text":
        return text.render(report, context, color=color, width=width)
    return {"json": jsondoc, "sarif": sarif, "github": github, "html": html,
            "dot": dot}[fmt].render(report, context)
