"""What the pictures (``--format html`` and ``dot``) share: a colour per group, the text told
about each parameter, and a layered layout of the report's module overview.

The layout is computed here so that the HTML needs no layout library: boxes in layers by the
longest path over forward edges (edges against execution order, from a module called twice,
do not count), layers stacked top to bottom and wrapped into columns so that a 50-box chain
fills a screen instead of one long strip.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from typing import Mapping

from ...report import Location, ModuleBox, Report
from ..locations import display_path

BOX_WIDTH, ROW, HEAD, GAP_X, GAP_Y, COLUMN_GAP, MARGIN = 280, 16, 26, 30, 34, 90, 20
COLUMN_HEIGHT = 1500
NO_GROUP = "#c8c8c8"


def colour(index: int) -> str:
    """The ``index``-th group's colour: hues a golden angle apart, two lightnesses alternating,
    so that neighbouring group ids never look alike."""
    hue = (index * 137.508) % 360 / 360
    light = (0.42, 0.58)[index % 2]
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.7)
    return "#{:02x}{:02x}{:02x}".format(round(r * 255), round(g * 255), round(b * 255))


def group_colours(report: Report) -> dict[int, str]:
    return {g.id: colour(i) for i, g in enumerate(report.groups)}


def shape_text(shape) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def location_text(where: Location | None) -> str:
    if where is None or where.path is None:
        return ""
    path = display_path(where.path)
    return f"{path}:{where.line}" if where.line is not None else path


def parameter_info(report: Report) -> dict[str, dict]:
    """Per parameter, what a reader asks on hover: verdict, reason, groups, decay, source."""
    kinds = {g.id: g.kind for g in report.groups}
    found: dict[str, list[str]] = {}
    for f in report.findings:
        for p in f.parameters:
            found.setdefault(p, []).append(f.code)
    locations = report.overview.locations if report.overview is not None else {}
    out = {}
    for name, p in report.parameters.items():
        out[name] = {
            "name": name, "shape": shape_text(p.shape), "verdict": p.verdict,
            "reason": p.reason, "groups": list(p.groups),
            "group_kinds": [kinds.get(g, "") for g in p.groups],
            "weight_decay": p.weight_decay, "findings": found.get(name, []),
            "location": location_text(locations.get(name)),
        }
    return out


def tooltip(info: Mapping) -> str:
    groups = ", ".join(f"#{g} ({k})" for g, k in zip(info["groups"], info["group_kinds"]))
    lines = [f"{info['name']}  {info['shape']}", f"verdict: {info['verdict']}",
             f"reason: {info['reason']}" if info["reason"] else "",
             f"group: {groups}" if groups else "",
             f"weight decay: {info['weight_decay']}" if info["weight_decay"] is not None else "",
             f"findings: {', '.join(info['findings'])}" if info["findings"] else "",
             f"defined at: {info['location']}" if info["location"] else ""]
    return "\n".join(line for line in lines if line)


def box_title(box: ModuleBox) -> str:
    if box.kind == "input":
        return f"input {box.id}"
    if box.kind == "output":
        return "output"
    name = box.id or "(model)"
    return f"{name}  {box.type}" if box.type else name


def row_label(box: ModuleBox, parameter: str) -> str:
    """A parameter's name inside its box, without the box's own path."""
    if box.id and parameter.startswith(box.id + "."):
        return parameter[len(box.id) + 1:]
    return parameter


@dataclass(frozen=True)
class Placed:
    box: ModuleBox
    x: float
    y: float
    width: float
    height: float


def layout(report: Report) -> tuple[dict[str, Placed], float, float]:
    """Each box's rectangle, and the picture's width and height."""
    overview = report.overview
    if overview is None or not overview.boxes:
        return {}, 0.0, 0.0
    position = {b.id: i for i, b in enumerate(overview.boxes)}
    layer = {b.id: 0 for b in overview.boxes}
    forward = sorted((e for e in overview.edges if position[e[0]] < position[e[1]]),
                     key=lambda e: position[e[1]])
    for a, b in forward:  # sorted by target: each target sees its sources' final layers
        layer[b] = max(layer[b], layer[a] + 1)
    layers: dict[int, list[ModuleBox]] = {}
    for b in overview.boxes:
        layers.setdefault(layer[b.id], []).append(b)
    heights = {b.id: HEAD + ROW * len(b.parameters) + (6 if b.parameters else 0)
               for b in overview.boxes}
    placed: dict[str, Placed] = {}
    column_x, y, widest, bottom = MARGIN, MARGIN, 0.0, 0.0
    for index in sorted(layers):
        row = layers[index]
        tallest = max(heights[b.id] for b in row)
        if y > MARGIN and y + tallest > COLUMN_HEIGHT:  # wrap into the next column
            column_x += widest + COLUMN_GAP
            y, widest = MARGIN, 0.0
        x = column_x
        for b in row:
            placed[b.id] = Placed(b, x, y, BOX_WIDTH, heights[b.id])
            x += BOX_WIDTH + GAP_X
        widest = max(widest, x - GAP_X - column_x)
        y += tallest + GAP_Y
        bottom = max(bottom, y)
    return placed, column_x + widest + MARGIN, bottom + MARGIN
