"""``--format json``: the report's ``to_dict()`` (schema_version 1, findings included)."""

from __future__ import annotations

import json


def render(report, context) -> str:
    return json.dumps(report.to_dict(), indent=2) + "\n"
