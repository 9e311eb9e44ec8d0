"""wdaudit: which weight-decay terms of a PyTorch model cannot regularise anything.

The package has three layers (ARCHITECTURE.md): ``wdaudit.engine`` runs the pipeline of
stages, ``wdaudit.ops`` is the op table those stages read, ``wdaudit.frontend`` is the command
line and everything around it.  ``audit()`` (``wdaudit.api``) composes the driver
(``wdaudit.audit``) with the layers above it; ``Report`` is what it returns.
"""

from .audit import AnalysisDefect, DeviceError, Options
from .engine.tracing.trace import InputError, TraceError
from .engine.analysis.training import SetupError
from .engine.analysis.walk import AnalysisError, UnsupportedOpError
from .frontend.locations import recording
from .api import audit, param_groups  # last: ``wdaudit.audit`` is the function, not the driver
from .report import Finding, Group, Location, ParameterReport, Report

__all__ = ["audit", "param_groups", "Options", "Report", "ParameterReport", "Group", "Finding", "Location", "TraceError",
           "InputError", "UnsupportedOpError", "AnalysisError", "AnalysisDefect", "DeviceError",
           "SetupError", "recording"]
__version__ = "0.1.0"
