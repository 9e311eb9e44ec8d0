"""What an audit has to say besides its verdicts, collected in one place (as mypy's Errors).

Each stage keeps what it could not do in its own frozen output: the trace's notes, the walks'
failures (nodes followed conservatively in non-strict mode), confirmation's defects (claims
that failed their numerical check: bugs in wdaudit).  The driver collects them here once —
for the model and for every submodule audited on its own — and the report reads them from
here: ``Coverage.notes`` (notes and failures, in the order they arose) and the defects, which
strict mode raises and ``Confirmation.defects`` lists."""

from __future__ import annotations

from dataclasses import dataclass

NOTE, FAILURE, DEFECT = "note", "failure", "defect"


@dataclass(frozen=True)
class Diagnostics:
    entries: tuple[tuple[str, str], ...] = ()  # (kind, text), in the order they arose

    @classmethod
    def of_run(cls, program, influence, degrees, confirmation) -> Diagnostics:
        """What one traced-and-confirmed run has to say."""
        return (cls.of(NOTE, program.notes) + cls.of(FAILURE, influence.failures)
                + cls.of(FAILURE, degrees.failures) + cls.of(DEFECT, confirmation.defects))

    @classmethod
    def of(cls, kind: str, texts) -> Diagnostics:
        assert kind in (NOTE, FAILURE, DEFECT), kind
        return cls(tuple((kind, t) for t in texts))

    def __add__(self, other: Diagnostics) -> Diagnostics:
        return Diagnostics(self.entries + other.entries)

    def _texts(self, *kinds: str) -> tuple[str, ...]:
        return tuple(t for k, t in self.entries if k in kinds)

    @property
    def defects(self) -> tuple[str, ...]:
        return self._texts(DEFECT)

    @property
    def coverage(self) -> tuple[str, ...]:
        """What the report's coverage notes say: the notes and failures, in order."""
        return self._texts(NOTE, FAILURE)
