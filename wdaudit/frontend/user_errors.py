"""Errors raised in the user's code, told in one line: the exception, its first line, and
where in the user's own files it was raised (library frames skipped)."""

from __future__ import annotations

import os
import traceback
from typing import Any

import torch

from .locations import display_path
from ..messages import one_line  # noqa: F401 - told here to the front end, as before


def user_site(exc: BaseException) -> str:
    """`` at file:line`` of the innermost frame in the user's code, when there is one."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_user_file(f.filename)]
    if isinstance(exc, SyntaxError) or not frames:
        return ""
    frame = frames[-1]
    return f" (at {display_path(frame.filename)}:{frame.lineno})"


_LIBRARY = tuple({os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__)),
                  os.path.dirname(os.__file__)})


def _is_user_file(path: str) -> bool:
    return not path.startswith("<") and not path.startswith(_LIBRARY) and \
        "site-packages" not in path


def kind_of(value: Any) -> str:
    if value is None:
        return "None"
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"
