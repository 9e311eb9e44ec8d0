"""``wdaudit TARGET``: the command line and CI lint step.

Exit status: 0 when nothing is found at or above ``--fail-on``, 1 when something is, 2 when
the audit could not be made (usage, loading, tracing, configuration, internal error) — a crash
in the user's code is 2, never 1.  ``--exit-zero`` turns 1 into 0 and leaves 2 alone.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import shutil
import sys
import textwrap
import traceback
from dataclasses import dataclass, replace
from typing import Any, Iterable

import click

# Only what is free of torch is imported here: --version, --help and --list-rules answer in a
# fraction of a second, and the first progress message appears before torch is imported (it
# takes seconds).  The engine and the loaders are imported where an audit starts (_run).
from .. import __version__
from ..advice import SCHEDULES
from ..report import Location, Report
from ..rules import ASSUME_CHOICES, RULES, SEVERITIES, UnknownRuleError, at_least, enabled, \
    expand
from . import config as config_mod
from .config import ConfigError, Config, unknown_rule_message
from .formats import FORMATS, Context, render
from .noqa import suppress
from .progress import Progress as _Progress, is_terminal as _is_terminal, \
    user_output_to_stderr as _user_output_to_stderr

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2


class Failure(Exception):
    """The audit could not be made: exit status 2 with this one-paragraph message."""


# --- option parsing ------------------------------------------------------------------------


def _split(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(part.strip() for v in values for part in v.split(",") if part.strip())


def _rule_codes(ctx, param, values) -> tuple[str, ...] | None:
    if not values:
        return None
    selectors = _split(values)
    try:
        expand(selectors)
    except UnknownRuleError as exc:
        raise click.BadParameter(unknown_rule_message(exc.selector, f"--{param.name}")) from exc
    return selectors


def _patterns(ctx, param, values) -> tuple[str, ...] | None:
    return _split(values) or None


def _converted(module: str, name: str):
    """A callback that parses with ``module.name``, imported when the option is given (the
    parsers make tensors' dtypes, so they live with torch)."""
    def callback(ctx, param, value):
        if value is None or value == ():
            return None
        parse = getattr(importlib.import_module(f".{module}", __package__), name)
        try:
            return tuple(parse(v) for v in value) if isinstance(value, tuple) else parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
    return callback


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("target", required=False)
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="Output format (default: text, or `format` from [tool.wdaudit]).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the report to this file instead of standard output.")
@click.option("--fail-on", type=click.Choice(SEVERITIES),
              help="Lowest severity that makes the exit status 1 (default: warning).")
@click.option("--exit-zero", is_flag=True,
              help="Exit 0 even when there are findings (errors still exit 2).")
@click.option("--select", multiple=True, callback=_rule_codes, metavar="CODES",
              help="Report only these rules: codes or prefixes, comma-separated (default: all).")
@click.option("--ignore", multiple=True, callback=_rule_codes, metavar="CODES",
              help="Do not report these rules.")
@click.option("--ignore-parameters", multiple=True, callback=_patterns, metavar="GLOBS",
              help="Do not report these parameters (glob patterns on names, e.g. '*.bn*.*').")
@click.option("--assume-decay", type=click.Choice(ASSUME_CHOICES),
              help="Without an optimizer: which parameters count as decayed (default: all).")
@click.option("--device", help="Device for the numerical confirmation: cpu (default) or cuda.")
@click.option("--input-shape", multiple=True, callback=_converted("load", "parse_shape"), metavar="SHAPE",
              help="Make example inputs of this shape, e.g. 2,3,224,224 (repeat for several "
                   "inputs); overrides the file's example_inputs.")
@click.option("--input-dtype", callback=_converted("load", "parse_dtype"), metavar="DTYPE",
              help="dtype of the --input-shape inputs (default float32; long for token ids).")
@click.option("--input-range", callback=_converted("load", "parse_range"), metavar="LOW,HIGH",
              help="Draw --input-shape inputs from [LOW, HIGH), e.g. 0,1000 for token ids.")
@click.option("--set", "sets", multiple=True, callback=_converted("architectures", "parse_set"), metavar="KEY=VALUE",
              help="For timm:NAME, torchvision:NAME, hf:TYPE: a constructor argument or config "
                   "field, e.g. --set num_hidden_layers=2 (repeatable).")
@click.option("--no-confirm", is_flag=True,
              help="Skip the numerical confirmation of each claim (faster, static only).")
@click.option("--confirm-on", type=click.Choice(("model", "twin")), default="model",
              help="Confirm the claims on the model itself (default), or on a twin: the same "
                   "Hugging Face model with every width reduced (hf: targets are then built on "
                   "the meta device: any size audits).")
@click.option("--steps", type=click.IntRange(min=1), metavar="N",
              help="Planned training steps: says whether each decayed scale-free group reaches "
                   "its equilibrium in that time (and, with a schedule, how long training is).")
@click.option("--schedule", type=click.Choice(SCHEDULES), metavar="|".join(SCHEDULES),
              help="The lr schedule to follow (with --steps): linear warmup, then cosine or "
                   "linear decay to 0, constant, or wsd (constant, then the last fifth linear "
                   "to 0). Overrides the file's build_scheduler(optimizer).")
@click.option("--warmup", type=click.IntRange(min=0), default=0, metavar="N",
              help="Warmup steps of --schedule (default 0).")
@click.option("--compare", is_flag=True,
              help="Show the usual rules of thumb (ndim, timm, Hugging Face, torchvision) "
                   "against the proof (the JSON report always has them).")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages on standard error.")
@click.option("--debug", is_flag=True, help="Show the traceback when something fails.")
@click.option("--list-rules", is_flag=True, help="Describe every rule (what, why, example), exit.")
@click.version_option(__version__, prog_name="wdaudit")
@click.pass_context
def main(ctx: click.Context, target: str | None, fmt, output, fail_on, exit_zero, select,
         ignore, ignore_parameters, assume_decay, device, input_shape, input_dtype, input_range,
         sets, no_confirm, confirm_on, steps, schedule, warmup, compare, quiet, debug,
         list_rules) -> None:
    """Find the weight-decay terms of a PyTorch model that cannot regularise anything.

    TARGET is path/to/file.py, path/to/file.py:factory or package.module:factory, or an
    architecture by name: timm:NAME, torchvision:NAME, hf:TYPE[:HEAD].  Without
    :factory, wdaudit looks for build_model, get_model or model in the file; example inputs
    come from example_inputs (or --input-shape), the optimizer from build_optimizer(model) or
    configure_optimizers(model).  Settings are read from [tool.wdaudit] in the nearest
    pyproject.toml; flags win.
    """
    if list_rules:
        click.echo(rules_text(), nl=False)
        ctx.exit(EXIT_CLEAN)
    if target is None:
        raise click.UsageError("missing TARGET: give the Python file that builds the model "
                               "(or package.module:factory), e.g. wdaudit model.py")
    if (input_dtype is not None or input_range is not None) and not input_shape:
        raise click.UsageError("--input-dtype and --input-range describe the inputs that "
                               "--input-shape makes: give --input-shape too")
    if schedule is not None and steps is None:
        raise click.UsageError("--schedule needs --steps N: a schedule is defined over the "
                               "length of training")
    if warmup and schedule is None:
        raise click.UsageError("--warmup is the warmup of --schedule: give --schedule too")
    if schedule is not None and steps is not None and warmup >= steps:
        raise click.UsageError(f"--warmup {warmup} leaves no training after it (--steps {steps})")
    spec = _input_spec(input_shape, input_dtype, input_range)
    flags = Config(select=select, ignore=ignore, ignore_parameters=ignore_parameters,
                   format=fmt, fail_on=fail_on, device=device, assume_decay=assume_decay)
    request = Request(target, spec, flags, output, no_confirm, sets=sets or (), steps=steps,
                      compare=compare, schedule=(schedule, warmup) if schedule else None,
                      confirm_on=confirm_on)
    progress = _Progress(enabled=not quiet and _is_terminal(sys.stderr))
    engine_noise = io.StringIO()
    try:
        status = _run(request, progress, engine_noise)
    except Failure as exc:
        if debug:
            _echo_noise(engine_noise)
            click.echo("".join(traceback.format_exception(exc)), err=True, nl=False)
        click.echo(f"wdaudit: error: {exc}", err=True)
        ctx.exit(EXIT_ERROR)
    if debug:
        _echo_noise(engine_noise)
    ctx.exit(EXIT_CLEAN if exit_zero else status)


def _input_spec(shapes, dtype, value_range):
    if not shapes:
        return None
    import torch

    from .load import InputSpec

    return InputSpec(shapes, dtype or torch.float32, value_range)


def _echo_noise(noise: io.StringIO) -> None:
    if noise.getvalue().strip():
        click.echo(noise.getvalue().rstrip("\n"), err=True)


@dataclass(frozen=True)
class Request:
    """What the command line asked for."""

    target: str  # TARGET as typed
    inputs: InputSpec | None  # --input-shape & co.
    flags: Config  # the settings given as flags (they win over [tool.wdaudit])
    output: str | None  # -o FILE
    no_confirm: bool
    sets: tuple = ()  # --set KEY=VALUE, parsed
    steps: int | None = None  # --steps N
    compare: bool = False  # --compare
    schedule: tuple[str, int] | None = None  # --schedule KIND --warmup N
    confirm_on: str = "model"  # --confirm-on


def _run(request: Request, progress: _Progress, engine_noise: io.StringIO) -> int:
    with _user_output_to_stderr():
        # the step is shown before torch is imported (str(parse_target(t)) is t)
        with progress.step(f"loading {request.target}"):
            from ..engine.tracing.quiet import torch_silenced
            from .load import parse_target

            loaded = _load(parse_target(request.target), request)
        settings = _settings(request.flags, loaded)
        if loaded.origin.get("optimizer_missing") and not settings.assume_decay:
            # the file's optimizer factory needs arguments; --assume-decay makes it unneeded
            raise Failure(loaded.origin["optimizer_missing"])
        with progress.step(f"auditing {type(loaded.model).__name__}"), \
                torch_silenced(engine_noise, level=logging.ERROR, stdout=True):
            report = _audit(loaded, settings, request, progress.stage)
    progress.done(report)
    kept, silenced = suppress(report.findings, enabled(settings.select, settings.ignore or ()))
    report = replace(report, findings=kept)
    output = request.output
    context = Context(request.target, loaded.path, loaded.origin,
                      optimizer_names(loaded.optimizer),
                      len(silenced), request.compare)
    fmt = settings.format or "text"
    if output:
        text = render(fmt, report, context)
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        stdout = sys.stdout
        terminal = _is_terminal(stdout)
        color = terminal and not os.environ.get("NO_COLOR")
        width = shutil.get_terminal_size().columns if terminal else None
        click.echo(render(fmt, report, context, color=color, width=width), nl=False, color=color)
    fail_on = settings.fail_on or "warning"
    failing = any(at_least(f.severity, fail_on) for f in report.findings)
    return EXIT_FINDINGS if failing else EXIT_CLEAN


def optimizer_names(optimizer) -> str | None:
    """'AdamW', or 'Muon + AdamW' for several (each unwrapped to the class that holds the
    tensors)."""
    from ..engine.analysis.training import optimizers_of

    found = optimizers_of(optimizer)
    return " + ".join(type(o).__name__ for o in found) if found else None


def _load(target, request: Request):
    from .architectures import is_named, load_named
    from .load import LoadError, load

    try:
        if is_named(request.target):
            # on a twin, the model's own weights are never read: a meta model of any size
            return load_named(request.target, request.sets, request.inputs,
                              meta=request.confirm_on == "twin")
        if request.sets:
            raise LoadError("--set configures an architecture given by name (timm:NAME, "
                            "torchvision:NAME, hf:TYPE); for a file, change the file.")
        return load(target, request.inputs)
    except LoadError as exc:
        raise Failure(str(exc)) from exc


def _settings(flags: Config, loaded) -> Config:
    """The nearest pyproject.toml's [tool.wdaudit] with the command line's flags on top."""
    try:
        found = config_mod.load(loaded.path or os.getcwd())
    except ConfigError as exc:
        raise Failure(str(exc)) from exc
    return config_mod.merged(flags, found)


def _scheduler(request: Request, loaded):
    """--schedule wins over the file's scheduler (build_scheduler, Lightning's shapes)."""
    if request.schedule is None:
        return loaded.scheduler
    from ..advice.schedule import Schedule

    kind, warmup = request.schedule
    return Schedule(kind, warmup=warmup)


def _audit(loaded, settings: Config, request: Request, stage=None) -> Report:
    from ..api import audit_with
    from ..audit import AnalysisDefect, Options
    from ..engine.analysis.training import SetupError
    from ..engine.analysis.walk import AnalysisError, UnsupportedOpError
    from ..engine.tracing.trace import InputError, TraceError
    from ..twin import NoTwin
    from .locations import Locator
    from .user_errors import one_line, user_site

    model, name = loaded.model, type(loaded.model).__name__
    device = _device(settings.device)
    locate = _locate_or_target(Locator(model), loaded.path)
    assume = settings.assume_decay or "all"
    try:
        options = Options(optimizer=loaded.optimizer, device=device,
                          confirm=not request.no_confirm, assume_decay=assume, locate=locate,
                          ignore_parameters=tuple(settings.ignore_parameters or ()),
                          progress=stage, total_steps=request.steps,
                          scheduler=_scheduler(request, loaded), confirm_on=request.confirm_on)
        return audit_with(model, loaded.example_inputs, options)
    except InputError as exc:
        own = exc.__cause__
        error = f"{one_line(own)}{user_site(own)}" if own is not None else str(exc)
        raise Failure(f"{name} does not run on the example inputs ({loaded.origin['inputs']}): "
                      f"it raised {error}. Give inputs that forward() accepts: fix "
                      "example_inputs, or pass --input-shape (with --input-dtype long "
                      "--input-range 0,VOCAB for token ids).") from exc
    except TraceError as exc:
        raise Failure(f"{name} cannot be audited: {exc}") from exc
    except NoTwin as exc:
        said = str(exc)
        for api, flag in (("confirm_on='twin'", "--confirm-on twin"),
                          ("confirm_on='model'", "--confirm-on model"),
                          ("confirm=False", "--no-confirm")):
            said = said.replace(api, flag)
        raise Failure(said) from exc
    except SetupError as exc:
        raise Failure(f"{name}'s training setup cannot be audited: {exc}") from exc
    except UnsupportedOpError as exc:
        raise Failure(f"{name} uses an op wdaudit does not know, and strict mode is on "
                      f"(WDAUDIT_STRICT): {exc}. Unset WDAUDIT_STRICT to treat it "
                      "conservatively, and please report the op.") from exc
    except AnalysisDefect as exc:
        raise Failure(f"internal error: a claim about {name} failed its numerical check "
                      f"({exc}). This is a bug in wdaudit: please report it with the model "
                      "(--debug shows the traceback).") from exc
    except AnalysisError as exc:
        raise Failure(f"internal error while analysing {name}, and strict mode is on "
                      f"(WDAUDIT_STRICT): {exc}. Unset WDAUDIT_STRICT to treat that node "
                      "conservatively, and please report it with the model.") from exc
    except Exception as exc:  # noqa: BLE001 - the user's forward() runs in here too
        raise Failure(f"auditing {name} failed with {type(exc).__name__}: {exc}. If the "
                      "traceback (--debug) ends in your code, fix it there; otherwise this is a "
                      "bug in wdaudit: please report it.") from exc


def _device(name: str | None) -> str | None:
    if name is None:
        return None
    from ..audit import CudaUnavailable, DeviceError, resolve_device

    try:
        resolve_device(name)
    except CudaUnavailable as exc:
        raise Failure(f"--device {name} was asked for, but CUDA is not available here: leave "
                      "the device out (CPU is the default) or run where a GPU is.") from exc
    except DeviceError as exc:
        raise Failure(f"{exc}.") from exc
    return name


def _locate_or_target(locate, path: str | None):
    """Findings with no construction site point at the target file (code scanning needs a
    file for every result)."""
    def wrapped(names) -> Location:
        where = locate(names)
        return where if where.path is not None or path is None else Location(path, None)
    wrapped.related = locate.related
    return wrapped


def rules_text() -> str:
    """``--list-rules``: every rule with what it flags, why, and an example."""
    blocks = []
    for rule in RULES.values():
        fields = [("What", rule.summary), ("Why", rule.why), ("Example", rule.example)]
        body = "".join(textwrap.fill(text, 96, initial_indent=f"  {label + ':':<9}",
                                     subsequent_indent=" " * 11) + "\n"
                       for label, text in fields)
        blocks.append(f"{rule.code} {rule.name} ({rule.severity})\n{body}")
    return "\n".join(blocks)
