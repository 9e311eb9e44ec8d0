"""``[tool.wdaudit]`` in the nearest ``pyproject.toml`` above the target.

    [tool.wdaudit]
    select = ["WD001", "WD003"]        # rule codes or prefixes; default: all
    ignore = ["WD004"]
    ignore-parameters = ["*.norm.*"]   # glob patterns on parameter names
    format = "text"                    # text | json | sarif | github
    fail-on = "warning"                # info | warning | error
    device = "cpu"
    assume-decay = "all"               # all | matrices | none (when there is no optimizer)

Command-line flags win, key by key.
"""

from __future__ import annotations

import difflib
import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..rules import ASSUME_CHOICES, RULES, SEVERITIES, UnknownRuleError, expand
from .formats import FORMATS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

class ConfigError(Exception):
    """The configuration cannot be used; the message names the file, the key and the fix."""


@dataclass(frozen=True)
class Config:
    path: str | None = None
    select: tuple[str, ...] | None = None  # None: not set (all rules, unless set elsewhere)
    ignore: tuple[str, ...] | None = None
    ignore_parameters: tuple[str, ...] | None = None
    format: str | None = None
    fail_on: str | None = None
    device: str | None = None
    assume_decay: str | None = None


def nearest_pyproject(start: str | Path) -> Path | None:
    """The first ``pyproject.toml`` in ``start`` (a file's folder, or a folder) or above it."""
    here = Path(start).resolve()
    if not here.is_dir():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load(start: str | Path) -> Config:
    path = nearest_pyproject(start)
    return Config() if path is None else read(path)


def read(path: Path) -> Config:
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}). Fix its syntax: wdaudit reads its "
                          "settings from the [tool.wdaudit] table there.") from exc
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc}).") from exc
    tool = document.get("tool", {})
    table = tool.get("wdaudit", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: tool.wdaudit must be a table ([tool.wdaudit]), not "
                          f"{type(table).__name__}.")
    return _parse(table, str(path))


_KEYS = ("select", "ignore", "ignore-parameters", "format", "fail-on", "device", "assume-decay")


def _parse(table: dict[str, Any], path: str) -> Config:
    for key in table:
        if key not in _KEYS:
            close = difflib.get_close_matches(key, _KEYS, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"{path}: unknown key '{key}' in [tool.wdaudit].{hint} The keys "
                              f"wdaudit reads are: {', '.join(_KEYS)}.")
    select = _strings(table, "select", path)
    ignore = _strings(table, "ignore", path)
    for key, selectors in (("select", select or ()), ("ignore", ignore or ())):
        try:
            expand(selectors)
        except UnknownRuleError as exc:
            raise ConfigError(unknown_rule_message(exc.selector, f"{key} in {path}")) from exc
    return Config(path=path, select=select, ignore=ignore,
                  ignore_parameters=_strings(table, "ignore-parameters", path),
                  format=_choice(table, "format", FORMATS, path),
                  fail_on=_choice(table, "fail-on", SEVERITIES, path),
                  device=_string(table, "device", path),
                  assume_decay=_choice(table, "assume-decay", ASSUME_CHOICES, path))


def merged(flags: Config, found: Config) -> Config:
    """``found`` (from pyproject.toml) with every setting the command line gives on top."""
    given = {f.name: getattr(flags, f.name) for f in fields(Config) if f.name != "path"}
    return replace(found, **{k: v for k, v in given.items() if v is not None})


def unknown_rule_message(selector: str, where: str) -> str:
    return (f"unknown rule code '{selector}' ({where}). The rules are "
            f"{', '.join(RULES)}; `wdaudit --list-rules` describes them. Use a code, a prefix "
            "such as WD00, or ALL.")


def _strings(table: dict, key: str, path: str) -> tuple[str, ...] | None:
    if key not in table:
        return None
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: {key} in [tool.wdaudit] must be a list of strings, e.g. "
                          f"{key} = [\"{'*.bias' if key == 'ignore-parameters' else 'WD004'}\"], "
                          f"not {value!r}.")
    return tuple(value)


def _string(table: dict, key: str, path: str) -> str | None:
    value = table.get(key)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"{path}: {key} in [tool.wdaudit] must be a string, not {value!r}.")
    return value


def _choice(table: dict, key: str, choices: tuple[str, ...], path: str) -> str | None:
    value = _string(table, key, path)
    if value is not None and value not in choices:
        raise ConfigError(f"{path}: {key} = {value!r} in [tool.wdaudit] is not one of "
                          f"{', '.join(choices)}.")
    return value
