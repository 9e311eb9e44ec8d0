"""wdaudit: which weight-decay terms of a PyTorch model cannot regularise anything.

The package has three layers (ARCHITECTURE.md): ``wdaudit.engine`` runs the pipeline of
stages, ``wdaudit.ops`` is the op table those stages read, ``wdaudit.frontend`` is the command
line and everything around it.  ``audit()`` is the driver; ``Report`` is what it returns.
"""

from .advice.param_groups import param_groups
from .audit import AnalysisDefect, DeviceError, audit
from .engine.trace import InputError, TraceError
from .engine.training import SetupError
from .engine.walk import AnalysisError, UnsupportedOpError
from .frontend.locations import recording
from .report import Finding, Group, Location, ParameterReport, Report

__all__ = ["audit", "param_groups", "Report", "ParameterReport", "Group", "Finding", "Location", "TraceError",
           "InputError", "UnsupportedOpError", "AnalysisError", "AnalysisDefect", "DeviceError",
           "SetupError", "recording"]
__version__ = "0.1.0"
