"""``--format github``: one GitHub Actions workflow command per finding,
``::warning file=…,line=…,title=…::message``, shown as annotations on the pull request."""

from __future__ import annotations

from ...rules import RULES
from ..locations import display_path

_COMMAND = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def render(report, context) -> str:
    lines = []
    for f in report.findings:
        path = display_path(f.location.path)
        props = []
        if path:
            props.append("file=" + escape_property(path.replace("\\", "/")))
            if f.location.line:
                props.append(f"line={f.location.line}")
        props.append(f"title={escape_property(f'{f.code} {RULES[f.code].name}')}")
        lines.append(f"::{_COMMAND[f.severity]} {','.join(props)}::{escape_data(f.message)}\n")
    return "".join(lines)
