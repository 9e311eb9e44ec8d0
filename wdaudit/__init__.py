"""wdaudit: which weight-decay terms of a PyTorch model cannot regularise anything.

The package has three layers (ARCHITECTURE.md): ``wdaudit.engine`` runs the pipeline of
stages, ``wdaudit.ops`` is the op table those stages read, ``wdaudit.frontend`` is the command
line and everything around it.  ``audit()`` (``wdaudit.api``) composes the driver
(``wdaudit.audit``) with the layers above it; ``Report`` is what it returns.

The public names are imported on first use (PEP 562): most of them import torch, which takes
seconds, and ``wdaudit --version``, ``--help`` and ``--list-rules`` need none of them.
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# public name → the module that defines it
_PUBLIC = {
    "audit": "api", "param_groups": "api",
    "corrected_decay": "advice.corrected", "Schedule": "advice.schedule",
    "Options": "audit", "AnalysisDefect": "audit", "DeviceError": "audit",
    "TraceError": "engine.tracing.trace", "InputError": "engine.tracing.trace",
    "SetupError": "engine.analysis.training",
    "AnalysisError": "engine.analysis.walk", "UnsupportedOpError": "engine.analysis.walk",
    "recording": "frontend.locations",
    "Report": "report", "ParameterReport": "report", "Group": "report", "Finding": "report",
    "Location": "report", "NoTwin": "twin",
}
__all__ = ["audit", "param_groups", "corrected_decay", "Schedule", "Options", "Report", "ParameterReport", "Group", "Finding",
           "Location", "TraceError", "InputError", "UnsupportedOpError", "AnalysisError",
           "AnalysisDefect", "DeviceError", "SetupError", "NoTwin", "recording"]


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'wdaudit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once: later reads do not come back here
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``wdaudit.audit`` is the function, not the driver module of the same name.  Importing
    a submodule binds it on its package; eagerly that happened before ``audit`` was bound to
    the function, lazily the driver may be imported first (``from wdaudit.audit import
    Options``) and would shadow the function, so the name is a descriptor that ignores the
    binding (the driver stays ``sys.modules["wdaudit.audit"]``)."""

    @property
    def audit(self):
        return importlib.import_module(".api", __name__).audit

    @audit.setter
    def audit(self, value) -> None:
        if not isinstance(value, types.ModuleType):
            raise AttributeError("wdaudit.audit is the public function; it cannot be replaced")


sys.modules[__name__].__class__ = _Package
