"""What the command line audits: a model, its example inputs and (when given) its optimizer,
loaded from ``file.py``, ``file.py:factory`` or ``package.module:factory``.

Everything here runs the user's code, so every failure becomes a :class:`LoadError` whose
message names the problem and the fix; the original exception is kept as ``__cause__`` for
``--debug``.  Module and parameter construction sites are recorded while the user's code runs
(``locations.recording``), so that findings can point at the user's lines.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from .factories import LoadError, call as _call, find_optimizer as _optimizer, \
    find_scheduler as _scheduler, \
    OptimizerNeedsArguments
from .locations import display_path, recording
from .user_errors import kind_of, one_line, user_site

MODEL_NAMES = ("build_model", "get_model", "model")
FACTORY_KEYS = ("model", "example_inputs", "optimizer", "scheduler")


# --- the target ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    source: str  # a path to a .py file, or a dotted module name
    factory: str | None  # attribute path inside it, e.g. "build" or "Net.tiny"
    is_file: bool

    def __str__(self) -> str:
        return self.source + (f":{self.factory}" if self.factory else "")


def parse_target(text: str) -> Target:
    """Split ``TARGET`` on its last colon, unless what follows is not a name (``C:\\m.py``)."""
    head, colon, tail = text.rpartition(":")
    if colon and head and all(part.isidentifier() for part in tail.split(".")):
        source, factory = head, tail
    else:
        source, factory = text, None
    is_file = (source.endswith(".py") or "/" in source or os.sep in source
               or os.path.exists(source) or not _is_dotted_name(source))
    return Target(source, factory, is_file)


def _is_dotted_name(text: str) -> bool:
    return bool(text) and all(part.isidentifier() for part in text.split("."))


# --- example inputs from the command line --------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """``--input-shape`` (one per positional input), ``--input-dtype``, ``--input-range``."""

    shapes: tuple[tuple[int, ...], ...]
    dtype: torch.dtype = torch.float32
    range: tuple[float, float] | None = None

    def make(self) -> Any:
        generator = torch.Generator().manual_seed(0)
        tensors = tuple(self._one(shape, generator) for shape in self.shapes)
        return tensors[0] if len(tensors) == 1 else tensors

    def _one(self, shape, generator) -> torch.Tensor:
        if self.dtype.is_floating_point:
            if self.range is None:
                return torch.randn(shape, generator=generator, dtype=self.dtype)
            low, high = self.range
            return low + (high - low) * torch.rand(shape, generator=generator, dtype=self.dtype)
        if self.dtype == torch.bool:
            return torch.randint(0, 2, shape, generator=generator).bool()
        low, high = self.range or (0, 2)
        return torch.randint(int(low), int(high), shape, generator=generator, dtype=self.dtype)


def parse_shape(text: str) -> tuple[int, ...]:
    """``2,3,224,224`` (also ``2x3x224x224`` or ``(2, 3, 224, 224)``) → a tuple of sizes."""
    body = text.strip().strip("()[]").strip()
    parts = [p.strip() for p in re.split(r"[,x×]", body)] if body else []
    if not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"'{text}' is not a shape: give the sizes of one input as positive "
                         "integers separated by commas, batch first, e.g. --input-shape "
                         "2,3,224,224 (repeat the option for a model that takes several inputs)")
    return tuple(int(p) for p in parts)


_DTYPE_NAMES = {"float": torch.float32, "float32": torch.float32, "double": torch.float64,
                "float64": torch.float64, "half": torch.float16, "float16": torch.float16,
                "bfloat16": torch.bfloat16, "long": torch.int64, "int64": torch.int64,
                "int": torch.int32, "int32": torch.int32, "int16": torch.int16,
                "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool}


def parse_dtype(text: str) -> torch.dtype:
    key = text.strip().lower().removeprefix("torch.")
    if key not in _DTYPE_NAMES:
        raise ValueError(f"'{text}' is not a dtype wdaudit can make inputs of: use one of "
                         f"{', '.join(sorted(_DTYPE_NAMES))} (token ids: --input-dtype long "
                         "--input-range 0,VOCAB)")
    return _DTYPE_NAMES[key]


def parse_range(text: str) -> tuple[float, float]:
    parts = [p.strip() for p in text.split(",")]
    try:
        low, high = (float(p) for p in parts)
    except ValueError:
        low = high = float("nan")
    if not low < high:
        raise ValueError(f"'{text}' is not a range: give LOW,HIGH with LOW < HIGH, e.g. "
                         "--input-range 0,1000 (integers are drawn from LOW to HIGH-1)")
    return low, high


# --- loading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    model: nn.Module
    example_inputs: Any
    optimizer: Any  # None, one optimizer, or a tuple of several
    path: str | None  # the file the target was loaded from
    origin: dict[str, str] = field(default_factory=dict)  # what came from where, for the report
    scheduler: Any = None  # the LR scheduler(s) training steps, in whatever shape was given


def load(target: Target, inputs: InputSpec | None = None) -> Loaded:
    """Import the target, build the model and find its example inputs and optimizer."""
    with recording():
        module = _import(target)
        where = target.source if target.is_file else f"module {target.source}"
        obj, name = _find(module, target, where)
        produced = _call(obj, name, where, ())
        extra: dict[str, Any] = {}
        if isinstance(produced, dict):
            produced, extra = _unpack(produced, name, where)
        if not isinstance(produced, nn.Module):
            raise LoadError(
                f"{name} in {where} gave {kind_of(produced)}, not a torch.nn.Module. Return the "
                "model itself, or a dict with the keys 'model', 'example_inputs' and (optionally) "
                "'optimizer'.")
        model = produced
        example, inputs_from = _example_inputs(inputs, extra, module, model, name, where)
        try:
            optimizer, optimizer_from, returned = _optimizer(extra, module, model, name, where)
        except OptimizerNeedsArguments as exc:  # the CLI decides: --assume-decay, or stop
            optimizer, optimizer_from, returned, missing = None, None, None, str(exc)
        else:
            missing = ""
        scheduler, scheduler_from = (None, None) if missing else _scheduler(
            extra, module, optimizer, returned=returned, origin=optimizer_from, name=name,
            where=where)
    origin = {"model": name, "inputs": inputs_from}
    if optimizer_from:
        origin["optimizer"] = optimizer_from
    if scheduler_from:
        origin["scheduler"] = scheduler_from
    if missing:
        origin["optimizer_missing"] = missing
    return Loaded(model, example, optimizer, getattr(module, "__file__", None), origin,
                  scheduler)


def _import(target: Target) -> ModuleType:
    return _import_file(target.source) if target.is_file else _import_module(target.source)


def _import_file(source: str) -> ModuleType:
    path = Path(source).expanduser()
    if not path.exists():
        raise LoadError(f"{source}: no such file (looked in {Path.cwd()}). Check the path; to "
                        "audit a module of an installed package, write package.module:factory.")
    if path.is_dir():
        raise LoadError(f"{source} is a directory: give the Python file that builds the model, "
                        f"e.g. wdaudit {os.path.join(source, 'model.py')}.")
    path = path.resolve()
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)  # its sibling modules import as they do under `python file.py`
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"{source} cannot be imported as Python source: give a .py file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before it runs: dataclasses and pickling look it up there
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _import_failure(exc, source) from exc
    return module


def _module_name(path: Path) -> str:
    """The file's stem, as ``python -m`` would name it, unless another module has that name."""
    stem = path.stem
    existing = sys.modules.get(stem)
    same = existing is not None and getattr(existing, "__file__", None) == str(path)
    if stem.isidentifier() and (existing is None or same):
        return stem
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return "wdaudit_target_" + re.sub(r"\W", "_", stem) + "_" + digest


def _import_module(source: str) -> ModuleType:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: the current project imports
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as exc:
        if exc.name and (source == exc.name or source.startswith(exc.name + ".")):
            raise LoadError(
                f"{source}: no such module (and no file of that name). Give a path to a .py "
                "file, or the dotted name of a module that imports from the current directory "
                "or the active environment.") from exc
        raise _import_failure(exc, source) from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _import_failure(exc, source) from exc


def _import_failure(exc: BaseException, source: str) -> LoadError:
    if isinstance(exc, SyntaxError):
        where = f"{display_path(exc.filename or source)}:{exc.lineno}" if exc.lineno else source
        return LoadError(f"{where}: syntax error: {exc.msg}. wdaudit imports {source} to build "
                         "the model: fix the syntax error and rerun.")
    if isinstance(exc, ImportError):
        missing = f" (no module '{exc.name}' in this environment)" \
            if isinstance(exc, ModuleNotFoundError) and exc.name else ""
        return LoadError(f"{source} could not be imported: {one_line(exc)}{missing}"
                         f"{user_site(exc)}. Install what it imports into the environment wdaudit "
                         "runs in (the same virtualenv), or fix the import.")
    if isinstance(exc, SystemExit):
        return LoadError(f"{source} called sys.exit({exc.code!r}) while being imported"
                         f"{user_site(exc)}. Put the script part of the file under "
                         "`if __name__ == \"__main__\":` so that importing it only defines things.")
    return LoadError(f"{source} raised {one_line(exc)} while being imported{user_site(exc)}. Fix "
                     "the error (run with --debug for the traceback); if that code trains or "
                     "downloads something, put it under `if __name__ == \"__main__\":`.")


def _find(module: ModuleType, target: Target, where: str) -> tuple[Any, str]:
    if target.factory:
        obj: Any = module
        for part in target.factory.split("."):
            if not hasattr(obj, part):
                raise LoadError(f"{where} has no '{target.factory}'. {_candidates(module)}")
            obj = getattr(obj, part)
        return obj, target.factory
    for name in MODEL_NAMES:
        if hasattr(module, name):
            return getattr(module, name), name
    raise LoadError(f"no model found in {where}: looked for {', '.join(MODEL_NAMES[:-1])} and "
                    f"{MODEL_NAMES[-1]} (a function returning an nn.Module, or an nn.Module "
                    f"instance). Define one of them, or name the factory: wdaudit "
                    f"{target.source}:FACTORY. {_candidates(module)}")


def _candidates(module: ModuleType) -> str:
    """Names in the module that could be passed as ``:factory``."""
    found = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, nn.Module) or (
                inspect.isclass(value) and issubclass(value, nn.Module)
                and value.__module__ == module.__name__):
            found.append(name)
    if not found:
        return "It defines no nn.Module class or instance."
    return f"It defines: {', '.join(found[:8])}{' …' if len(found) > 8 else ''}."


def _unpack(produced: dict, name: str, where: str) -> tuple[Any, dict]:
    unknown = sorted(str(k) for k in produced if k not in FACTORY_KEYS)
    if unknown or "model" not in produced:
        problem = f"has unknown keys {', '.join(unknown)}" if unknown else "has no 'model' key"
        raise LoadError(f"the dict that {name}() in {where} returns {problem}. It may hold "
                        f"exactly: {', '.join(repr(k) for k in FACTORY_KEYS)} ('model' required).")
    rest = {k: v for k, v in produced.items() if k != "model"}
    return produced["model"], rest


def _example_inputs(spec: InputSpec | None, extra: dict, module: ModuleType, model: nn.Module,
                    name: str, where: str) -> tuple[Any, str]:
    if spec is not None:
        value, origin = spec.make(), "--input-shape"
    elif "example_inputs" in extra:
        value, origin = extra["example_inputs"], f"{name}()['example_inputs']"
    elif hasattr(module, "example_inputs"):
        value = module.example_inputs
        origin = "example_inputs"
        if callable(value) and not isinstance(value, torch.Tensor):
            value, origin = _call(value, "example_inputs", where, ()), "example_inputs()"
    elif getattr(model, "example_input_array", None) is not None:
        value, origin = model.example_input_array, f"{type(model).__name__}.example_input_array"
    else:
        raise LoadError(
            f"no example inputs for {type(model).__name__} from {where}: wdaudit runs the model "
            "once to trace it. Define example_inputs in the file (a tensor, a tuple of "
            "positional arguments, or a function returning one), set example_input_array on the "
            "model, or pass --input-shape 2,3,224,224 (with --input-dtype long --input-range "
            "0,VOCAB for token ids).")
    if isinstance(value, dict):
        raise LoadError(f"the example inputs ({origin}) are a dict: wdaudit passes example inputs "
                        "as positional arguments. Give a tensor or a tuple of them, in the order "
                        "forward() takes them.")
    if value is None:
        raise LoadError(f"the example inputs ({origin}) are None: give a tensor or a tuple of "
                        "positional arguments for forward().")
    return value, origin
