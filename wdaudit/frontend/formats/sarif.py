"""``--format sarif``: SARIF 2.1.0 as GitHub code scanning accepts it.

Paths below the current directory (the checkout, in CI) are written relative to
``%SRCROOT%``; others as absolute ``file://`` URIs.  Each result has a fingerprint that depends
on the rule, the file and the parameters only, so it survives edits that move lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from pathlib import Path

from ... import __version__
from ...rules import RULES
from ..locations import display_path

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"error": "error", "warning": "warning", "info": "note"}


def render(report, context) -> str:
    codes = list(RULES)
    run = {
        "tool": {"driver": {
            "name": "wdaudit",
            "version": __version__,
            "semanticVersion": __version__,
            "rules": [_rule(RULES[c]) for c in codes],
        }},
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri() + "/"}},
        "results": [_result(f, codes.index(f.code), context) for f in report.findings],
        "invocations": [{"executionSuccessful": True}],
        "properties": {"model": report.model, "target": context.target,
                       "summary": report.summary()},
    }
    doc = {"$schema": SCHEMA, "version": "2.1.0", "runs": [run]}
    return json.dumps(doc, indent=2) + "\n"


def _rule(rule) -> dict:
    text = f"{rule.summary}\n\n{rule.why}\n\nExample: {rule.example}"
    markdown = f"**{rule.summary}**\n\n{rule.why}\n\n*Example:* {rule.example}"
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": rule.why},
        "help": {"text": text, "markdown": markdown},
        "defaultConfiguration": {"level": _LEVEL[rule.severity]},
        "properties": {"tags": ["weight-decay", "pytorch"], "precision": "very-high"},
    }


def _result(finding, index: int, context) -> dict:
    path, line = finding.location.path, finding.location.line
    result = {
        "ruleId": finding.code,
        "ruleIndex": index,
        "level": _LEVEL[finding.severity],
        "message": {"text": finding.message},
        "partialFingerprints": {"wdaudit/v1": fingerprint(finding, path)},
        "properties": {"parameters": list(finding.parameters)},
    }
    if path is not None:
        result["locations"] = [{"physicalLocation": {
            "artifactLocation": _artifact(path),
            "region": {"startLine": line or 1},
        }}]
    related = [r for r in finding.related if r.path is not None]
    if related:  # where the library built what it names: the user's line stays the location
        result["relatedLocations"] = [
            {"id": i, "physicalLocation": {"artifactLocation": _artifact(r.path),
                                           "region": {"startLine": r.line or 1}},
             "message": {"text": "built here, inside the library"}}
            for i, r in enumerate(related)]
    return result


def _artifact(path: str) -> dict:
    shown = display_path(path)
    if os.path.isabs(shown):
        return {"uri": Path(shown).as_uri()}
    return {"uri": urllib.parse.quote(Path(shown).as_posix()), "uriBaseId": "%SRCROOT%"}


def fingerprint(finding, path: str | None) -> str:
    """Stable across runs and line moves: rule, file and parameters only."""
    shown = Path(display_path(path)).as_posix() if path else ""
    key = "\0".join([finding.code, shown, *sorted(finding.parameters)])
    return hashlib.sha256(key.encode()).hexdigest()[:32]
