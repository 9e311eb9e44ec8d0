"""``--format dot``: the module overview as a Graphviz digraph, for people who render their
own (``dot -Tsvg``).  Each box lists its parameters, each row filled with its group's colour;
the row's tooltip says verdict, reason, group and source line, as in the HTML page."""

from __future__ import annotations

from html import escape

from ...report import FROZEN, INEFFECTIVE, Report
from .context import Context
from .picture import NO_GROUP, box_title, group_colours, parameter_info, row_label, tooltip


def render(report: Report, context: Context) -> str:
    colours = group_colours(report)
    info = parameter_info(report)
    lines = [f"// wdaudit: {report.model} ({context.target}); one colour per confirmed group",
             f"digraph {_quote(report.model)} {{",
             '  graph [rankdir=TB, fontname="Helvetica"];',
             '  node [shape=plaintext, fontname="Helvetica", fontsize=10];',
             '  edge [color="#999999"];']
    overview = report.overview
    boxes = overview.boxes if overview is not None else ()
    ids = {b.id: f"n{i}" for i, b in enumerate(boxes)}
    for box in boxes:
        lines.append(f"  {ids[box.id]} [label=<{_label(box, colours, info)}>];")
    for a, b in overview.edges if overview is not None else ():
        lines.append(f"  {ids[a]} -> {ids[b]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _label(box, colours: dict[int, str], info: dict) -> str:
    head = "#eef3ff" if box.kind != "module" else "#ffffff"
    rows = [f'<TR><TD COLSPAN="2" BGCOLOR="{head}"><B>{escape(box_title(box))}</B></TD></TR>']
    for name in box.parameters:
        item = info.get(name)
        if item is None:
            continue
        fill = next((colours[g] for g in item["groups"] if g in colours), NO_GROUP)
        groups = " ".join(f"#{g}" for g in item["groups"])
        text = escape(f"{row_label(box, name)}  {item['shape']}")
        if item["verdict"] == INEFFECTIVE:
            text = f"<B>{text}</B>"
        elif item["verdict"] == FROZEN:  # a constant of the run: shown, struck through
            text = f"<S>{text}</S>"
        rows.append(f'<TR><TD BGCOLOR="{fill}" TOOLTIP="{escape(tooltip(item))}">'
                    f'{escape(groups) or " "}</TD><TD ALIGN="LEFT">{text}</TD></TR>')
    return f'<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2">{"".join(rows)}</TABLE>'


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
