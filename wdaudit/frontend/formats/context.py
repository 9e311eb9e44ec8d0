"""What a rendered report needs beyond the report itself (its own module: every format reads
it, and the package's ``render`` imports every format)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class Context:
    """What the report itself does not know: where it came from and what was left out."""

    target: str  # TARGET as typed
    path: str | None = None  # the file the target was loaded from
    origin: Mapping[str, str] = field(default_factory=dict)  # model / inputs / optimizer
    optimizer: str | None = None  # the optimizer's class name
    silenced: int = 0  # findings silenced by `# noqa`
    compare: bool = False  # --compare: show the rules of thumb beside the proof
