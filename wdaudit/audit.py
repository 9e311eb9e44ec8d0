"""The driver: ``audit()`` runs the stages of DESIGN.md §2 in order, each a function of the
previous stage's frozen output, and assembles the :class:`~wdaudit.report.Report`."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, replace
import os
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from .engine.analysis import claims as claims_stage
from .engine.confirmation import confirm as confirm_stage
from .engine.analysis import degrees as degrees_stage
from .engine.analysis import findings as findings_stage
from .engine.analysis import graph as graph_stage
from .engine.analysis import influence as influence_stage
from .engine.analysis.names import ranking
from .engine.analysis import symmetries as symmetries_stage
from . import parts as opaque_parts
from . import twin as twins
from .engine.analysis.training import Training, training as read_training
from .engine.analysis import verdicts as verdicts_stage
from .engine.diagnostics import DEFECT, NOTE, Diagnostics
from .engine.rng import untouched
from .engine.tracing.trace import TraceError, trace
from .messages import one_line
from .report import CHECKED, SKIPPED, Confirmation, Coverage, Location, Report


class AnalysisDefect(RuntimeError):
    """A static claim failed its numerical check: a bug in the analysis (raised in strict mode)."""


class DeviceError(ValueError):
    """The device asked for is not a device."""


class CudaUnavailable(DeviceError):
    """A CUDA device was asked for where CUDA is not available."""


@dataclass(frozen=True)
class _Setup:
    confirm: confirm_stage.Setup
    locate: Callable | None  # None: no overview (a part audited on its own needs none)
    training: Training = Training()  # what the run updates
    overview: Callable | None = None  # the front end's overview_of
    twin: Callable | None = None  # claims -> Confirmation: confirmed on a twin instead


@dataclass(frozen=True)
class _Run:
    """The stages' outputs for one model (or one part of it), trace to verdicts."""

    program: Any
    claims: Any
    graph: Any
    influence: Any
    degrees: Any
    symmetries: Any
    confirmation: Any
    verdicts: Any
    overview: Any


def _run(model: nn.Module, inputs: tuple, setup, strict: bool, step, clock) -> _Run:
    step("trace")
    program = trace(model, inputs)
    if strict and program.method == "opaque":  # strict: no part of the model set aside
        raise TraceError(program.notes[-1].rpartition(" The model is audited as one")[0])
    clock.lap("trace")
    step("analysis")
    graph = graph_stage.build(program)
    overview = setup.overview(graph, model, setup.locate) if setup.locate else None
    influence = influence_stage.analyse(graph, strict)
    degrees = degrees_stage.propagate(influence, strict)
    symmetries = symmetries_stage.solve(degrees, setup.training.fixed(model))
    claims = claims_stage.claims_for(symmetries)
    clock.lap("analysis")
    if claims.claims and setup.confirm.enabled:
        step("confirm")
    confirmation = confirm_stage.confirm(claims, setup.confirm) if setup.twin is None \
        else setup.twin(claims)
    if claims.claims and confirmation.outcome != SKIPPED:
        # the generic point (drawing it, moving the program and inputs) is its own entry
        point = confirmation.timings.get("generic point", 0.0)
        clock.laps["generic point"] = clock.laps.get("generic point", 0.0) + point
        clock.lap("confirm", minus=point)
    verdicts = verdicts_stage.decide(claims, confirmation)
    return _Run(program, claims, graph, influence, degrees, symmetries, confirmation, verdicts,
                overview)


def _with_parts(run: _Run, setup, depth: int):
    """Verdicts with what the submodules inside opaque ops show when audited on their own
    (``engine.parts``), the confirmation with their passes, and what they had to say (their
    notes and defects, under their paths)."""
    found, notes = opaque_parts.find(run.program, setup.confirm.inputs)
    said = Diagnostics.of(NOTE, notes)
    parameters, groups = dict(run.verdicts.parameters), run.verdicts.groups
    confirmation = run.confirmation
    for part in found:
        bound = opaque_parts.Bound(part)
        sub = _Setup(replace(setup.confirm, params=dict(bound.named_parameters()),
                             inputs=part.inputs), None, setup.training)
        try:
            inner = _run(bound, part.inputs, sub, False, lambda stage: None, _Clock())
            if depth < opaque_parts.MAX_DEPTH and (inner.program.method == "opaque"
                                                   or inner.degrees.unknown_ops):
                verdicts, conf, nested = _with_parts(inner, sub, depth + 1)
                said += Diagnostics.of(NOTE, [opaque_parts.renamed(n, part.path)
                                              for n in nested.coverage])
                said += Diagnostics.of(DEFECT, [f"in '{part.path}' (audited on its own): {d}"
                                                for d in nested.defects])
            else:
                verdicts, conf = inner.verdicts, inner.confirmation
        except Exception as exc:  # noqa: BLE001 - a part that fails leaves its verdicts unknown
            said += Diagnostics.of(NOTE, [f"submodule '{part.path}' could not be audited on its "
                                          f"own: {one_line(exc)}"[:300]])
            continue
        done = opaque_parts.Audited(part, verdicts.parameters, verdicts.groups, conf,
                                    inner.program.method)
        parameters, groups, changed = opaque_parts.merge(parameters, groups, done)
        confirmation = replace(confirmation, passes=confirmation.passes + conf.passes)
        said += Diagnostics.of(DEFECT, [f"in '{part.path}' (audited on its own): {d}"
                                        for d in conf.defects])
        said += Diagnostics.of(NOTE, [
            f"submodule '{part.path}' audited on its own ({done.method}): {changed} of its "
            f"{len(part.eligible)} parameters that act only through it found ineffective"])
    verdicts = replace(run.verdicts, parameters=parameters, groups=groups)
    return verdicts, confirmation, said


@dataclass(frozen=True)
class Options:
    """Everything an audit is told besides the model and its inputs: one record that the API
    and the command line fill alike (``wdaudit.audit``'s keyword arguments, documented there).
    ``locate`` says where a finding points and ``overview`` collapses the graph for pictures:
    both come from the front end, above the driver."""

    optimizer: Any = None
    device: str | torch.device | None = None
    confirm: bool = True
    assume_decay: str = "all"
    strict: bool | None = None
    seed: int = 0
    locate: Callable | None = None
    ignore_parameters: Sequence[str] = ()
    progress: Callable[[str], None] | None = None
    total_steps: int | None = None
    memory_budget: int | None = None
    overview: Callable | None = None  # (graph, model, locate) -> Overview
    scheduler: Any = None  # for the advice layer's trajectories; the driver never reads it
    confirm_on: str = "model"  # "twin": the claims are checked on a reduced-width twin


def audit(model: nn.Module, example_inputs: Any, options: Options = Options()) -> Report:
    """The stages, in order, for ``model`` on ``example_inputs`` (see ``wdaudit.audit``); the
    report without the advice layer's numbers (``wdaudit.api`` adds them)."""
    clock = _Clock()
    if not isinstance(model, nn.Module):
        raise TypeError(f"audit() needs an nn.Module, got {type(model).__name__}")
    inputs = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) \
        else (example_inputs,)
    if options.confirm_on not in CONFIRM_ON:
        raise ValueError(f"confirm_on={options.confirm_on!r}: use one of {', '.join(CONFIRM_ON)}")
    strict = options.strict
    if strict is None:
        strict = os.environ.get("WDAUDIT_STRICT", "") not in ("", "0")
    where = resolve_device(options.device, model)
    step = options.progress or (lambda stage: None)
    params = dict(model.named_parameters())
    run_setup = read_training(params, options.optimizer)
    policy = findings_stage.Policy(
        findings_stage.decay_settings(params, run_setup, options.assume_decay),
        options.locate or (lambda names: Location()), _matcher(options.ignore_parameters),
        ranking(model), getattr(options.locate, "related", lambda names: ()))
    setup = _Setup(confirm_stage.Setup(params, inputs, where, options.seed, options.confirm,
                                       options.memory_budget),
                   policy.locate if options.overview else None, run_setup, options.overview)
    with untouched(where):
        if options.confirm_on == "twin" and options.confirm:
            twin = twins.build(model, inputs, options.seed, frozenset(run_setup.fixed(model)))
            setup = replace(setup, twin=lambda claims: _on_twin(claims, twin, options))
        clock.lap("setup")
        run = _run(model, inputs, setup, strict, step, clock)
        verdicts, confirmation, parts = run.verdicts, run.confirmation, Diagnostics()
        if run.program.method == "opaque" or run.degrees.unknown_ops:
            verdicts, confirmation, parts = _with_parts(run, setup, depth=0)
            clock.lap("parts")
    said = Diagnostics.of_run(run.program, run.influence, run.degrees, run.confirmation) + parts
    confirmation = replace(confirmation, defects=said.defects)
    if strict and said.defects:
        raise AnalysisDefect("; ".join(said.defects))
    found = findings_stage.find(verdicts, policy)
    program, degrees = run.program, run.degrees
    coverage = Coverage(program.method, len(run.graph.order), degrees.unknown_ops,
                        run.symmetries.rows, said.coverage)
    report = Report(type(model).__name__, found.parameters, verdicts.groups,
                    verdicts.rescalings, found.findings, coverage, confirmation,
                    policy.decay.assumed, {}, overview=run.overview)
    clock.lap("report")
    return replace(report, timings=dict(clock.laps))


CONFIRM_ON = ("model", "twin")


def _on_twin(claims, twin: twins.Twin, options: Options) -> Confirmation:
    """The model's claims confirmed by the twin's (``wdaudit.twin``): the whole pipeline on the
    twin, its claims compared with the model's, its checks mapped onto them by name."""
    if not claims.claims:  # nothing to confirm: no twin needs to run
        return Confirmation(CHECKED, "cpu", 0, on="twin", twin=dict(twin.widths))
    params = dict(twin.model.named_parameters())
    sub = _Setup(confirm_stage.Setup(params, twin.inputs, resolve_device(options.device,
                                                                         twin.model),
                                     options.seed, True, options.memory_budget), None)
    clock = _Clock()
    try:
        run = _run(twin.model, twin.inputs, sub, False, lambda stage: None, clock)
    except Exception as exc:  # noqa: BLE001 - a twin that cannot be audited confirms nothing
        return twins.failed(twin, f"the twin could not be audited: {one_line(exc)}"[:400])
    done = twins.confirmed(claims, run.claims, run.confirmation, twin)
    # where the twin's time went (the driver's own laps count it all as "confirm")
    return replace(done, timings={**done.timings,
                                  **{f"twin {k}": v for k, v in clock.laps.items()}})


def resolve_device(device: str | torch.device | None, model: nn.Module | None = None
                   ) -> torch.device:
    """The device to confirm on: the one asked for, else the model's own, else the CPU."""
    if device is not None:
        try:
            d = torch.device(device)
        except (RuntimeError, TypeError) as exc:
            raise DeviceError(f"'{device}' is not a device: use cpu, cuda or cuda:N") from exc
        if d.type == "cuda" and not torch.cuda.is_available():
            raise CudaUnavailable(f"device='{device}' was requested but CUDA is not available")
        return d
    for t in list(model.parameters()) + list(model.buffers()) if model is not None else ():
        return t.device
    return torch.device("cpu")


def _matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    patterns = tuple(patterns)
    return lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns)


class _Clock:
    """Laps that add up to the wall time of the call: each covers everything since the last."""

    def __init__(self):
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, key: str, minus: float = 0.0) -> None:
        now = time.perf_counter()
        self.laps[key] = self.laps.get(key, 0.0) + now - self._last - minus
        self._last = now
