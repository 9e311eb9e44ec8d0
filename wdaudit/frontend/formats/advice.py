"""The text report's advice sections: the equilibrium numbers of the decayed scale-free groups
(one line per distinct setting, always) and the rules-of-thumb table (under ``--compare``)."""

from __future__ import annotations

from itertools import groupby

from rich.table import Table
from rich.text import Text


def sections(report, context) -> list:
    out = []
    lines = equilibrium_lines(report)
    if lines:
        followed = sorted({g.equilibrium.schedule for g in report.groups
                           if g.equilibrium is not None and g.equilibrium.trajectory})
        where = (f"at the schedule's peak lr, then along it ({', '.join(followed)})" if followed
                 else "at the optimizer's current lr; no schedule given")
        out.append(Text("\n").join([Text(f"Equilibrium of the decayed scale-free groups "
                                          f"({where}):", style="bold")]
                                    + [Text("  " + x) for x in lines]))
    if context.compare and report.folklore:
        out.append(folklore_table(report))
    return out


def _key(eq):
    return (eq.optimizer, eq.model, eq.lr, eq.weight_decay, eq.angular_update,
            eq.timescale_steps, eq.note if eq.angular_update is None else "", eq.schedule)


def equilibrium_lines(report) -> list[str]:
    eqs = [g.equilibrium for g in report.groups
           if g.equilibrium is not None and g.kind != "no-effect"]
    lines = []
    for key, same in groupby(sorted(eqs, key=lambda e: tuple(map(str, _key(e)))),
                             key=lambda e: tuple(map(str, _key(e)))):
        same = list(same)
        eq = same[0]
        count = f"{len(same)} group{'s' if len(same) != 1 else ''}"
        head = f"{eq.optimizer} lr={eq.lr:g} weight_decay={eq.weight_decay:g}, {count}: "
        if eq.angular_update is None:
            lines.append(head + eq.note)
            continue
        text = (f"angular update {eq.angular_update:.3g} rad/step ({eq.model}), timescale "
                f"{eq.timescale_steps:.3g} steps")
        ratios = [e.norm_ratio for e in same if e.norm_ratio is not None]
        if ratios:
            text += f"; norm {_span(ratios)}× its equilibrium"
        waits = [e.steps_to_equilibrium for e in same if e.steps_to_equilibrium is not None]
        if waits:
            text += f", {_span(waits)} steps to reach it"
        along = [e for e in same if e.trajectory]
        if along:
            lines.append(head + text + "; " + _along(along))
            continue
        reached = [e.reaches_equilibrium for e in same if e.reaches_equilibrium is not None]
        if reached:
            missing = reached.count(False)
            text += (f"; --steps {eq.total_steps}: "
                     + (f"{missing} of {len(reached)} not reached" if missing else "reached"))
        lines.append(head + text)
    return lines


def _along(eqs) -> str:
    """The schedule's effect: rotation at the end against the peak, the end-of-training rise of
    ‖g‖/‖w‖ (Defazio 2025), and when equilibrium is reached."""
    first = [e.first_at_equilibrium for e in eqs]
    never = first.count(None)
    text = (f"along the schedule: rotation {_span([e.rotation('peak') for e in eqs])} rad/step "
            f"at the peak lr, {_span([e.rotation('end') for e in eqs])} at the end; "
            f"‖g‖/‖w‖ ends {_span([e.grad_ratio_rise for e in eqs])}× its value at the peak lr; ")
    if never == len(eqs):
        return text + "never at equilibrium"
    reached = [f for f in first if f is not None]
    text += f"at equilibrium from step {_span(reached)}"
    return text + (f" ({never} of {len(eqs)} never)" if never else "")


def _span(values) -> str:
    low, high = min(values), max(values)
    return f"{low:.3g}" if f"{low:.3g}" == f"{high:.3g}" else f"{low:.3g}–{high:.3g}"


def folklore_table(report) -> Table:
    table = Table(title="Rules of thumb against the proof (--compare)", title_justify="left",
                  box=None, pad_edge=False, padding=(0, 2, 0, 0), title_style="bold")
    for column in ("rule", "decays", "still decays scale-free / no-effect",
                   "exempts effective"):
        table.add_column(column)
    for rule, f in report.folklore.items():
        table.add_row(rule, str(len(f.decayed)), _names(f.decays_ineffective),
                      _names(f.exempts_effective))
    return table


def _names(names, limit: int = 1) -> str:
    if not names:
        return "0"
    shown = ", ".join(names[:limit]) + (", …" if len(names) > limit else "")
    return f"{len(names)} ({shown})"
