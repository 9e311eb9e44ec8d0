"""wdaudit: which weight-decay terms of a PyTorch model cannot regularise anything."""

from .audit import AnalysisDefect, audit
from .degrees import UnsupportedOpError
from .locations import recording
from .report import Finding, Group, Location, ParameterReport, Report
from .trace import InputError, TraceError

__all__ = ["audit", "Report", "ParameterReport", "Group", "Finding", "Location", "TraceError",
           "InputError", "UnsupportedOpError", "AnalysisDefect", "recording"]
__version__ = "0.1.0"
