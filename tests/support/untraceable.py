"""Forwards that defeat all three tracers, for the tests of what happens then: opaque parts, the
model as one opaque op, TraceError in strict mode.

A branch on a tensor value defeats symbolic_trace and torch.export, but make_fx records the
branch one run takes (``engine/tracing/specialise.py``).  Few real forwards defeat make_fx too (nested
tensors do, and the oracle cannot differentiate those), so the tests of the fallbacks make it
fail: ``beyond_make_fx(monkeypatch)``, or the ``beyond_make_fx`` fixture.
"""

from wdaudit.engine.tracing import trace


def _refuses(*args, **kwargs):
    raise RuntimeError("make_fx cannot follow this forward (the test says so)")


def beyond_make_fx(monkeypatch) -> None:
    monkeypatch.setattr(trace, "specialise", _refuses)
