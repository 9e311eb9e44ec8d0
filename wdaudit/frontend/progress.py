"""The command line's dealings with the terminal: a progress spinner on stderr, and what the
user's code prints kept off stdout (where the JSON or SARIF goes)."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..report import Report


@contextlib.contextmanager
def user_output_to_stderr():
    """What the user's code prints must not end up inside the JSON or SARIF on stdout."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """A spinner with the current step on stderr, when stderr is a terminal and not --quiet."""

    def __init__(self, enabled: bool):
        self.console = None
        if enabled:
            from rich.console import Console

            self.console = Console(file=sys.stderr, highlight=False, markup=False)

    _STAGES = {"trace": "tracing", "analysis": "static analysis",
               "confirm": "numerical confirmation"}

    @contextlib.contextmanager
    def step(self, text: str):
        if self.console is None:
            yield
            return
        self._text = text
        with self.console.status(text + " …") as status:
            self._status = status
            try:
                yield
            finally:
                self._status = None

    def stage(self, name: str) -> None:
        """The engine's progress hook: which stage of the audit is running."""
        status = getattr(self, "_status", None)
        if status is not None:
            status.update(f"{self._text}: {self._STAGES.get(name, name)} …")

    def done(self, report: Report) -> None:
        if self.console is None:
            return
        times = ", ".join(f"{k} {v:.1f} s" for k, v in report.timings.items())
        self.console.print(f"audited {report.model} ({times})", style="dim")
