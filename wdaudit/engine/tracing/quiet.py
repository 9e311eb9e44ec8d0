"""Keep torch's own chatter out of the user's terminal and reports.

``torch.export`` prints partial graphs to stderr and logs warnings while it tries a model;
what matters reaches the user through wdaudit's exceptions and notes, and the command line's
``--debug`` shows the rest.
"""

from __future__ import annotations

import contextlib
import io
import logging


@contextlib.contextmanager
def torch_silenced(sink: io.StringIO | None = None, *, level: int = logging.CRITICAL,
                   stdout: bool = False):
    """Torch's loggers raised to ``level`` and stderr (and ``stdout`` if asked) sent to ``sink``
    for the duration of the block; everything is restored after."""
    sink = io.StringIO() if sink is None else sink
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)
               if n == "torch" or n.startswith("torch.")]
    levels = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stderr(sink))
            if stdout:
                stack.enter_context(contextlib.redirect_stdout(sink))
            yield sink
    finally:
        for lg, lvl in levels:
            lg.setLevel(lvl)
