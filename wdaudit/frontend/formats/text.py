"""``--format text``: findings grouped by rule, one line each, counts at the end.

Colour through rich when the CLI says so (stdout is a terminal and ``NO_COLOR`` is unset);
plain and unwrapped otherwise, so that it greps and diffs well.
"""

from __future__ import annotations

import io
from itertools import groupby

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ...report import UNKNOWN
from ...rules import RULES, SEVERITIES
from ..locations import display_path, library_path
from . import advice

_STYLE = {"error": "bold red", "warning": "yellow", "info": "blue"}


def render(report, context, *, color: bool = False, width: int | None = None) -> str:
    out = io.StringIO()
    console = Console(file=out, force_terminal=color, no_color=not color,
                      color_system="auto" if color else None, width=width or 100,
                      highlight=False, markup=False, emoji=False, soft_wrap=not color)
    console.print(_header(report, context))
    ordered = sorted(report.findings, key=lambda f: (f.code, _where(f), f.parameters))
    for code, group in groupby(ordered, key=lambda f: f.code):
        group = list(group)
        rule = RULES[code]
        console.print()
        console.print(Text.assemble((code, "bold"), " ", (rule.severity, _STYLE[rule.severity]),
                                    "  ", rule.name, ("  ×" + str(len(group)), "dim")))
        console.print(_findings(group, wrapped=color))
    for section in advice.sections(report, context):
        console.print()
        console.print(section)
    console.print()
    for note in _notes(report, context):
        console.print(Text(note, style="dim"))
    console.print(_counts(report, context))
    return out.getvalue()


def _findings(group, wrapped: bool):
    """One line per finding; on a terminal, long messages wrap under themselves."""
    if not wrapped:
        return Text("\n").join(
            Text.assemble("  ", (_where(f), "cyan"), "  ", f.message,
                          *((("\n    " + _built(f)), "dim"),) if f.related else ())
            for f in group)
    grid = Table.grid(padding=(0, 2), pad_edge=True)
    grid.add_column(no_wrap=True)
    grid.add_column()
    for f in group:
        grid.add_row(Text(_where(f), style="cyan"), f.message)
        if f.related:
            grid.add_row("", Text(_built(f), style="dim"))
    return grid


def _built(finding, limit: int = 3) -> str:
    """Where the library built what the finding names (its related locations)."""
    sites = [f"{library_path(r.path)}:{r.line}" for r in finding.related]
    more = f" and {len(sites) - limit} more" if len(sites) > limit else ""
    return "built in the library at " + ", ".join(sites[:limit]) + more


def _header(report, context) -> Text:
    n = len(report.parameters)
    ineffective = len(report.ineffective)
    decay = (f"weight decay from {context.origin.get('optimizer', 'the optimizer')} "
             f"({context.optimizer})" if context.optimizer else
             f"no optimizer, decay assumed: --assume-decay {report.assumed_decay}")
    fixed = report.held_fixed()
    held = (f" ({sum(fixed.values())} held fixed in training: "
            + ", ".join(f"{v} {k}" for k, v in fixed.items()) + ")") if fixed else ""
    unconfirmed = sum(1 for p in report.parameters.values()
                      if p.verdict == UNKNOWN and p.groups)
    doubt = f" ({unconfirmed} more claimed but not confirmed)" if unconfirmed else ""
    return Text.assemble((context.target, "bold"), f": {report.model}, {n} parameter tensors"
                         f"{held}, {ineffective} of them scale-free or without effect{doubt}; "
                         f"{decay}")


def _where(finding) -> str:
    path = display_path(finding.location.path)
    if path is None:
        return "<unknown location>"
    return f"{path}:{finding.location.line}" if finding.location.line else path


def _notes(report, context) -> list[str]:
    notes = []
    if report.coverage.method == "opaque":
        parts = [n for n in report.coverage.notes if n.startswith("submodule '")
                 and "audited on its own" in n]
        notes.append(f"{report.model}.forward could not be traced (data-dependent control flow); "
                     f"{len(parts)} submodule(s) it calls were audited on their own, and only "
                     "their parameters can be found ineffective (JSON: coverage.notes)")
    unknown = report.coverage.unknown_ops
    if unknown:
        ops = sorted({u.op for u in unknown})
        notes.append(f"{len(unknown)} op(s) unknown to wdaudit were treated conservatively "
                     f"(their inputs held to degree 0): {', '.join(ops[:5])}"
                     f"{' …' if len(ops) > 5 else ''}")
    if not report.confirmation.performed and report.confirmation.reason:
        notes.append(f"not confirmed numerically: {report.confirmation.reason}")
    conf = report.confirmation
    if conf.performed and conf.on == "twin":
        widths = ", ".join(f"{k} {full}→{small}" for k, (full, small) in conf.twin.items())
        notes.append(f"claims confirmed on a twin: the same depth and topology with reduced "
                     f"widths ({widths}), in {conf.precision}; its claims are the model's one to "
                     "one by parameter name (JSON: confirmation.twin)")
    if conf.performed and conf.precision != "float64" and conf.tolerances:
        why = f" ({conf.fallback})" if conf.fallback else ""
        notes.append(f"confirmed in {conf.precision}{why}, with {conf.precision} tolerances: "
                     f"exact {conf.tolerances['exact']:.1e}, Euler {conf.tolerances['euler']:.1e} "
                     "(relative)")
    if any(g.eps_limited for g in report.groups):
        notes.append("some invariances are eps-limited (normalisation eps breaks them slightly)")
    return notes


def _counts(report, context) -> Text:
    by = {s: 0 for s in SEVERITIES}
    for f in report.findings:
        by[f.severity] += 1
    total = len(report.findings)
    silenced = f" {context.silenced} silenced by # noqa." if context.silenced else ""
    if not total:
        return Text.assemble(("No findings.", "bold green"), silenced)
    parts = [Text(f"{by[s]} {s}{'s' if by[s] != 1 and s != 'info' else ''}", style=_STYLE[s])
             for s in reversed(SEVERITIES) if by[s]]
    counts = Text(", ").join(parts)
    return Text.assemble((f"Found {total} finding{'s' if total != 1 else ''}", "bold"), " (",
                         counts, ").", silenced,
                         " `wdaudit --list-rules` explains each rule.")
