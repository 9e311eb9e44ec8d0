"""The report: frozen dataclasses that every front end (API, CLI, formats) reads.

``Report.to_dict()`` is the JSON contract of DESIGN.md §5 (``schema_version`` 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Mapping

SCHEMA_VERSION = 1

INEFFECTIVE, EFFECTIVE, UNKNOWN = "ineffective", "effective", "unknown"
FROZEN = "frozen"  # training does not update it (DESIGN.md §1): a constant, never ineffective
VERDICTS = (INEFFECTIVE, EFFECTIVE, UNKNOWN, FROZEN)


@dataclass(frozen=True)
class Location:
    path: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class ParameterReport:
    name: str
    shape: tuple[int, ...]
    verdict: str
    reason: str
    groups: tuple[int, ...] = ()
    weight_decay: float | None = None
    requires_grad: bool = True
    module: str = ""


@dataclass(frozen=True)
class Member:
    name: str
    exponent: Fraction


@dataclass(frozen=True)
class Group:
    id: int
    kind: str  # "no-effect" | "scale-free" | "joint"
    members: tuple[Member, ...]
    confirmed: bool
    max_relative_change: float
    exact_relative_change: float
    euler_residual: float
    eps_limited: bool
    normalising_nodes: tuple[str, ...]
    note: str = ""
    equilibrium: Any = None  # advice.equilibrium.Equilibrium: with an optimizer that decays it

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)


@dataclass(frozen=True)
class Rescaling:
    """A mixed-sign symmetry: decay acts on it (it balances norms); information only."""

    members: tuple[Member, ...]


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # "error" | "warning" | "info"
    message: str
    parameters: tuple[str, ...]
    location: Location = field(default_factory=Location)
    groups: tuple[int, ...] = ()  # the claims behind it (ids into Report.groups): its basis
    related: tuple[Location, ...] = ()  # inside a library: where what it names was built


@dataclass(frozen=True)
class UnknownOp:
    """An op the table does not know, met on the way to an output (treated conservatively)."""

    node: str
    op: str
    module: str


@dataclass(frozen=True)
class Coverage:
    method: str  # "symbolic_trace" | "export"
    nodes: int
    unknown_ops: tuple[UnknownOp, ...]
    constraints: int
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Check:
    """The numerical check of one static claim (DESIGN.md §4)."""

    confirmed: bool
    max_relative_change: float  # the real model, eps as is
    exact_relative_change: float  # the traced program, eps -> 0
    euler_residual: float
    eps_limited: bool
    note: str = ""


CHECKED, SKIPPED, FAILED = "checked", "skipped", "failed"


@dataclass(frozen=True)
class Confirmation:
    """What confirmation did: ``checked`` every claim (``checks``, one per claim), ``skipped``
    it (switched off, meta tensors: the static claims stand, marked unconfirmed), or
    ``failed`` to measure (the model raised, NaN outputs: the claims become unknown)."""

    outcome: str
    device: str
    passes: int
    reason: str = ""
    defects: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    # what the checks adapted to this model (docs/guarantees.md): the precision, the examples
    # per input, the saturating point's spread, and the memory bill estimated beforehand
    precision: str = "float64"
    batch: int | None = None
    spread: float | None = None
    estimate: int | None = None  # bytes
    timings: Mapping[str, float] = field(default_factory=dict)
    # where a specialised program was recorded again, its branches being another run's there
    recorded_again: tuple[str, ...] = ()
    # the relative tolerances the checks were judged by (float32's are round-off's), and why
    # float32 was used where it was (the model raised in float64)
    tolerances: Mapping[str, float] = field(default_factory=dict)
    fallback: str = ""
    trail: tuple[str, ...] = ()  # every pass, named ("check point: model", ...), in order
    # where the checks ran: on the model itself, or on a twin with reduced widths whose claims
    # are the model's one to one (wdaudit.twin); then each reduced config field's
    # (model's value, twin's value)
    on: str = "model"
    twin: Mapping[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def performed(self) -> bool:
        return self.outcome == CHECKED


@dataclass(frozen=True)
class ModuleBox:
    """One box of the collapsed picture: a module (cut to the overview's depth), an input or
    the output, with the parameters it holds."""

    id: str  # module path ("" is the model itself), an input's name, or "(output)"
    kind: str  # "module" | "input" | "output"
    type: str  # the module's class name
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True)
class Overview:
    """The model's graph collapsed by module (``engine.overview``), for pictures only."""

    boxes: tuple[ModuleBox, ...]  # in execution order of their first op
    edges: tuple[tuple[str, str], ...]  # data flow between boxes
    depth: int  # module path components kept
    locations: Mapping[str, Location] = field(default_factory=dict)  # parameter -> source


@dataclass(frozen=True)
class Report:
    model: str
    parameters: Mapping[str, ParameterReport]
    groups: tuple[Group, ...]
    rescalings: tuple[Rescaling, ...]
    findings: tuple[Finding, ...]
    coverage: Coverage
    confirmation: Confirmation
    assumed_decay: str | None = None  # set when no optimizer was given
    timings: Mapping[str, float] = field(default_factory=dict)
    folklore: Mapping[str, Any] = field(default_factory=dict)  # rule → advice.folklore.Folklore
    overview: Overview | None = None  # the collapsed graph, for --format html / dot
    corrections: Mapping[str, Any] = field(default_factory=dict)  # rule → folklore.Correction

    @property
    def ineffective(self) -> frozenset[str]:
        return frozenset(n for n, p in self.parameters.items() if p.verdict == INEFFECTIVE)

    @property
    def effective(self) -> frozenset[str]:
        return frozenset(n for n, p in self.parameters.items() if p.verdict == EFFECTIVE)

    @property
    def unknown(self) -> frozenset[str]:
        return frozenset(n for n, p in self.parameters.items() if p.verdict == UNKNOWN)

    @property
    def frozen(self) -> frozenset[str]:
        """Parameters the training run holds fixed (``requires_grad=False``, or held by none
        of the optimizers given): constants of the question, never rescaled or claimed."""
        return frozenset(n for n, p in self.parameters.items() if p.verdict == FROZEN)

    def held_fixed(self) -> dict[str, int]:
        """How many parameters training holds fixed, by why: ``requires_grad=False``, or
        trainable but held by none of the optimizers given."""
        out = {"requires_grad=False": 0, "held by no optimizer": 0}
        for p in self.parameters.values():
            if p.verdict == FROZEN:
                out["requires_grad=False" if not p.requires_grad else "held by no optimizer"] += 1
        return {k: v for k, v in out.items() if v}

    def summary(self) -> dict[str, Any]:
        counts = {v: 0 for v in VERDICTS}
        for p in self.parameters.values():
            counts[p.verdict] += 1
        by_severity = {s: 0 for s in ("error", "warning", "info")}
        for f in self.findings:
            by_severity[f.severity] += 1
        return {
            "parameters": len(self.parameters),
            **counts,
            "groups": len(self.groups),
            "rescalings": len(self.rescalings),
            "unknown_ops": len(self.coverage.unknown_ops),
            "findings": by_severity,
            "trace": self.coverage.method,
            "confirmed": self.confirmation.performed,
            "assumed_decay": self.assumed_decay,
        }

    def to_dict(self, *, timings: bool = True) -> dict[str, Any]:
        out = {
            "schema_version": SCHEMA_VERSION,
            "model": self.model,
            "parameters": [_param(p) for p in self.parameters.values()],
            "groups": [_group(g) for g in self.groups],
            "rescalings": [{"members": [_member(m) for m in r.members]} for r in self.rescalings],
            "findings": [_finding(f) for f in self.findings],
            "coverage": {
                "trace": self.coverage.method,
                "nodes": self.coverage.nodes,
                "constraints": self.coverage.constraints,
                "unknown_ops": [vars(u).copy() for u in self.coverage.unknown_ops],
                "notes": list(self.coverage.notes),
            },
            "confirmation": {
                "performed": self.confirmation.performed,
                "device": self.confirmation.device,
                "passes": self.confirmation.passes,
                "reason": self.confirmation.reason,
                "defects": list(self.confirmation.defects),
                "precision": self.confirmation.precision,
                "batch": self.confirmation.batch,
                "saturating_spread": self.confirmation.spread,
                "memory_estimate": self.confirmation.estimate,
                "recorded_again": list(self.confirmation.recorded_again),
                "tolerances": dict(self.confirmation.tolerances),
                "fallback": self.confirmation.fallback,
                "trail": list(self.confirmation.trail),
                "on": self.confirmation.on,
                "twin": _twin(self.confirmation.twin) if self.confirmation.on == "twin" else None,
            },
            "summary": self.summary(),
            "folklore": {rule: f.to_dict() for rule, f in self.folklore.items()},
            "corrections": {rule: c.to_dict() for rule, c in self.corrections.items()},
        }
        if timings:
            out["timings"] = {k: round(v, 4) for k, v in self.timings.items()}
        return out


ROUNDOFF = 1e-12


def _num(x: float) -> float | None:
    """A measurement as the JSON reports it: below ROUNDOFF it is float64 round-off (0.0),
    otherwise three significant digits.  Round-off is not bitwise reproducible (MKL's float64
    kernels depend on memory alignment); the report must be."""
    if x is None or not math.isfinite(x):
        return None
    if abs(x) < ROUNDOFF:
        return 0.0
    return float(f"{x:.3g}")


def _exponent(e: Fraction) -> int | float | str:
    return int(e) if e.denominator == 1 else str(e)


def _member(m: Member) -> dict[str, Any]:
    return {"name": m.name, "exponent": _exponent(m.exponent)}


def _param(p: ParameterReport) -> dict[str, Any]:
    return {"name": p.name, "shape": list(p.shape), "verdict": p.verdict, "reason": p.reason,
            "groups": list(p.groups), "weight_decay": p.weight_decay,
            "requires_grad": p.requires_grad, "module": p.module}


def _group(g: Group) -> dict[str, Any]:
    return {"id": g.id, "kind": g.kind, "members": [_member(m) for m in g.members],
            "confirmed": g.confirmed, "max_relative_change": _num(g.max_relative_change),
            "exact_relative_change": _num(g.exact_relative_change),
            "euler_residual": _num(g.euler_residual), "eps_limited": g.eps_limited,
            "normalising_nodes": list(g.normalising_nodes), "note": g.note,
            "equilibrium": g.equilibrium.to_dict() if g.equilibrium is not None else None}


def _twin(widths: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    return {"widths": {k: small for k, (_, small) in widths.items()},
            "model_widths": {k: full for k, (full, _) in widths.items()}}


def _finding(f: Finding) -> dict[str, Any]:
    return {"code": f.code, "severity": f.severity, "message": f.message,
            "parameters": list(f.parameters),
            "location": {"path": f.location.path, "line": f.location.line},
            "groups": list(f.groups),
            "related_locations": [{"path": r.path, "line": r.line} for r in f.related]}
