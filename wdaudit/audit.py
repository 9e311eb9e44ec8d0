"""The pipeline: trace → graph → influence → degrees → symmetries → confirm → verdicts →
findings → Report.  Each stage is a pure function of the previous stages' frozen outputs."""

from __future__ import annotations

import contextlib
import fnmatch
from dataclasses import replace
import os
import time
from typing import Any, Callable, Sequence

import torch
from torch import nn

from . import confirm as confirm_stage
from . import degrees as degrees_stage
from . import findings as findings_stage
from . import graph as graph_stage
from . import influence as influence_stage
from . import symmetries as symmetries_stage
from . import verdicts as verdicts_stage
from .locations import locator
from .report import ConfirmationSummary, Coverage, Report, UnknownOpInfo
from .trace import trace
from .workcopy import tensors_to


def audit(model: nn.Module, example_inputs: Any, *, optimizer: torch.optim.Optimizer | None = None,
          device: str | torch.device | None = None, confirm: bool = True,
          assume_decay: str = "all", strict: bool | None = None, seed: int = 0,
          locate: Callable | None = None, ignore_parameters: Sequence[str] = (),
          progress: Callable[[str], None] | None = None) -> Report:
    """Audit ``model``: which weight-decay terms cannot regularise anything.

    ``example_inputs`` is a tensor or a tuple of positional arguments.  With an ``optimizer``,
    verdicts carry each parameter's actual ``weight_decay``; without one, ``assume_decay``
    (``"all"``, ``"matrices"`` or ``"none"``) says which parameters count as decayed.
    ``strict`` (default: the ``WDAUDIT_STRICT`` environment variable) makes an unknown op an
    error instead of a conservatively-handled, counted event.  ``ignore_parameters`` are glob
    patterns of parameter names never named in findings (their verdicts are still reported).
    ``progress`` is called with ``"trace"``, ``"analysis"`` and ``"confirm"`` as each starts.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"audit() needs an nn.Module, got {type(model).__name__}")
    many = isinstance(example_inputs, (tuple, list))
    inputs = tuple(example_inputs) if many else (example_inputs,)
    if strict is None:
        strict = os.environ.get("WDAUDIT_STRICT", "") not in ("", "0")
    timings: dict[str, float] = {}
    step = progress or (lambda stage: None)
    skip = _matcher(ignore_parameters)
    target = _device(model, device)
    with _untouched_rng(target), _timer(timings, "trace"):
        step("trace")
        params = dict(model.named_parameters())
        decay = findings_stage.decay_settings(params, optimizer, assume_decay)
        program = trace(model, inputs)
    with _untouched_rng(target):
        report = _analyse(model, program, params, decay, inputs, target, confirm, strict, seed,
                          locate or locator(model), timings, step, skip)
    return report


def _matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    patterns = tuple(patterns)
    return lambda name: any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _analyse(model, program, params, decay, inputs, target, confirm, strict, seed, locate,
             timings, step, skip) -> Report:
    names = tuple(params)
    step("analysis")
    with _timer(timings, "analysis"):
        graph = graph_stage.build(program)
        influence = influence_stage.analyse(program, graph, names)
        degrees = degrees_stage.propagate(program, graph, names, influence.no_effect, strict,
                                          influence.dead_summands)
        candidates = [n for n in names if n in graph.used_params and n not in influence.no_effect]
        symmetries = symmetries_stage.solve(degrees, candidates)
        claims = verdicts_stage.claims_for(influence, symmetries)
    if claims.claims and confirm:
        step("confirm")
    summary, checks, cannot = _confirm(program, claims, degrees, model, inputs, target, confirm,
                                       seed, strict, timings)
    parameters, groups, rescalings = verdicts_stage.decide(
        params, program, graph, degrees, influence, symmetries, claims, checks, cannot)
    if decay.assumed is None:
        parameters = {n: _with_decay(p, decay.weight_decay.get(n)) for n, p in parameters.items()}
    found = findings_stage.find(parameters, groups, decay, locate, skip)
    coverage = Coverage(program.method, len(graph.order),
                        tuple(UnknownOpInfo(u.node, u.op, u.module) for u in degrees.unknown_ops),
                        symmetries.rows, program.notes)
    return Report(type(model).__name__, parameters, groups, rescalings, found, coverage, summary,
                  decay.assumed, timings)


def _confirm(program, claims, degrees, model, inputs, target, confirm, seed, strict, timings):
    if not claims.claims:
        return ConfirmationSummary(True, str(target), 0), (), ""
    if not confirm:
        return ConfirmationSummary(False, str(target), 0, "confirmation switched off"), None, ""
    if target.type == "meta" or any(p.is_meta for p in model.parameters()):
        return (ConfirmationSummary(False, "meta", 0, "parameters are on the meta device: "
                                    "static analysis only, claims are not confirmed"), None, "")
    with _timer(timings, "confirm"):
        tensors_to(program.root, target)
        buffers = dict(program.root.named_buffers())
        result = confirm_stage.confirm(program, claims.claims, degrees.eps_sites,
                                       dict(model.named_parameters()), buffers, inputs, target,
                                       seed)
    summary = ConfirmationSummary(result.performed, result.device, result.passes, result.reason,
                                  result.defects)
    if strict and result.defects:
        raise AnalysisDefect("; ".join(result.defects))
    cannot = result.reason if not result.performed else ""
    return summary, result.checks, cannot


class AnalysisDefect(RuntimeError):
    """A static claim failed its numerical check: a bug in the analysis (raised in strict mode)."""


def _device(model: nn.Module, device) -> torch.device:
    if device is not None:
        d = torch.device(device)
        if d.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' was requested but CUDA is not available")
        return d
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


def _with_decay(p, wd):
    return replace(p, weight_decay=wd)


@contextlib.contextmanager
def _timer(timings: dict, key: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - start


@contextlib.contextmanager
def _untouched_rng(target: torch.device):
    """The global RNG state is as we found it: the CPU generator, every started CUDA device and
    the one we are about to use, and the seeds that ``torch.manual_seed`` queues for backends
    not yet started (each would reseed its device when the user first starts it)."""
    devices = set(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else set()
    if target.type == "cuda":
        devices.add(target.index if target.index is not None else torch.cuda.current_device())
    queued = _queued_seeds()
    try:
        with torch.random.fork_rng(devices=sorted(devices)):
            yield
    finally:
        for tracker, state in queued:
            tracker.__dict__.update(state)


_LAZY_BACKENDS = ("cuda", "xpu", "mtia")


def _queued_seeds() -> list[tuple[Any, dict]]:
    saved = []
    for name in _LAZY_BACKENDS:
        tracker = getattr(getattr(torch, name, None), "_lazy_seed_tracker", None)
        if tracker is not None and hasattr(tracker, "__dict__"):
            saved.append((tracker, {k: (list(v) if isinstance(v, list) else v)
                                    for k, v in vars(tracker).items()}))
    return saved
