"""The user's factories, called as wdaudit calls them: a model factory, the optimizer factories
of a file (``build_optimizer(model)``, ``configure_optimizers``) in every shape they return (one
optimizer, several, Lightning's shapes), and the LR scheduler (``build_scheduler(optimizer)``,
or the one Lightning's shapes carry).  Whatever they raise is a LoadError."""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

from torch import nn

from ..engine.analysis.training import SetupError, unwrap
from .user_errors import kind_of, one_line, user_site

OPTIMIZER_NAMES = ("build_optimizer", "configure_optimizers")


class LoadError(Exception):
    """The target cannot be loaded; the message says what is wrong and how to fix it."""


def call(obj: Any, name: str, where: str, args: tuple, arg_name: str = "model") -> Any:
    """Call a factory (or take an instance as it is); whatever it raises is a LoadError."""
    if isinstance(obj, nn.Module) or not callable(obj):
        return obj
    call = f"{name}({arg_name if args else ''})"
    missing = unfilled_parameters(obj, len(args))
    if missing:
        raise LoadError(f"{name} in {where} needs arguments ({', '.join(missing)}) and wdaudit "
                        f"calls it as {call}. Give them defaults, or write a factory that "
                        f"supplies them and name it: wdaudit FILE:FACTORY.")
    try:
        return obj(*args)
    except Exception as exc:  # noqa: BLE001 - whatever the user's factory raises
        raise LoadError(f"{call} in {where} raised {one_line(exc)}{user_site(exc)}. Fix it so "
                        f"that {call} runs on its own (--debug shows the traceback).") from exc


def unfilled_parameters(fn: Any, given: int) -> list[str]:
    """Required parameters of ``fn`` left without a value by ``given`` positional arguments."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    required = [p.name for p in signature.parameters.values()
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return required[given:]


def find_optimizer(extra: dict, module: ModuleType, model: nn.Module, name: str,
               where: str) -> tuple[Any, str | None, Any]:
    """The optimizer (or the tuple of several) the file builds, where it came from, and what
    the factory returned as it was (Lightning's shapes carry the scheduler too).  A factory
    that needs more than the model (nanoGPT's ``configure_optimizers(weight_decay,
    learning_rate, betas, device_type)``) raises :class:`OptimizerNeedsArguments`: the CLI
    goes on without one where ``--assume-decay`` says what is decayed."""
    if "optimizer" in extra:
        value, origin = extra["optimizer"], f"{name}()['optimizer']"
    else:
        for candidate in OPTIMIZER_NAMES:
            factory = getattr(module, candidate, None)
            if callable(factory):
                _callable_with(factory, candidate, where, 1, f"{candidate}(model)")
                value = call(factory, candidate, where, (model,))
                origin = f"{candidate}(model)"
                break
        else:
            method = getattr(model, "configure_optimizers", None)
            if not callable(method):
                return None, None, None
            origin = f"{type(model).__name__}.configure_optimizers()"
            _callable_with(method, origin[:-2], where, 0, origin)
            value = call(method, origin[:-2], where, ())
    found = _optimizers(value, origin)
    own = {id(p) for p in model.parameters()}
    for i, optimizer in enumerate(found):
        if not any(id(p) in own for g in optimizer.param_groups for p in g["params"]):
            which = f"optimizer #{i + 1} ({type(optimizer).__name__})" if len(found) > 1 \
                else "the optimizer"
            raise LoadError(f"{which} from {origin} holds none of the model's parameters "
                            "(was it built for another instance of the model?). Build it from "
                            "the model it is given.")
    if not found:
        return None, None, None
    return (found[0] if len(found) == 1 else found), origin, value


def find_scheduler(extra: dict, module: ModuleType, optimizer: Any, *, returned: Any,
                   origin: str | None, name: str, where: str) -> tuple[Any, str | None]:
    """The LR scheduler the file trains with, and where it came from: the model factory's
    ``'scheduler'``, ``build_scheduler(optimizer)`` (called with what the optimizer factory
    returned), or the schedulers in Lightning's shapes returned by the optimizer factory."""
    from ..advice.schedule import schedulers_of

    if "scheduler" in extra:
        return extra["scheduler"], f"{name}()['scheduler']"
    factory = getattr(module, "build_scheduler", None)
    if callable(factory):
        if optimizer is None:
            raise LoadError(f"build_scheduler in {where} needs the optimizer, and the file "
                            "gives none: define build_optimizer(model) beside it.")
        value = call(factory, "build_scheduler", where, (optimizer,), "optimizer")
        if not schedulers_of(value):
            raise LoadError(f"build_scheduler(optimizer) in {where} gave {kind_of(value)}, "
                            "not an LR scheduler: return a torch.optim.lr_scheduler object "
                            "(transformers' get_*_schedule_with_warmup give one), several, or "
                            "Lightning's scheduler dict.")
        return value, "build_scheduler(optimizer)"
    if returned is not None and schedulers_of(returned):
        return returned, origin
    return None, None


class OptimizerNeedsArguments(LoadError):
    """The file's optimizer factory cannot be called with the model alone."""


def _callable_with(fn: Any, name: str, where: str, given: int, call: str) -> None:
    missing = unfilled_parameters(fn, given)
    if missing:
        raise OptimizerNeedsArguments(
            f"{name} in {where} needs arguments ({', '.join(missing)}) and wdaudit calls it as "
            f"{call}. To audit the optimizer you train with, define build_optimizer(model) in "
            f"the file, returning it (for nanoGPT: def build_optimizer(model): return "
            f"model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), 'cpu')); or pass "
            f"--assume-decay all|matrices|none to audit without one.")


def _optimizers(value: Any, origin: str) -> tuple:
    """The optimizers in whatever shape a factory returns: one, a list, tuple or dict of them
    (Muon beside AdamW), or Lightning's ``configure_optimizers`` shapes (a dict with
    ``"optimizer"``, ``([optimizers], [schedulers])``, a list of such dicts)."""
    if value is None:
        return ()
    if hasattr(value, "param_groups"):
        try:
            return (unwrap(value),)
        except SetupError as exc:
            raise LoadError(f"{origin}: {exc}") from exc
    if isinstance(value, dict):
        if "optimizer" in value:
            return _optimizers(value["optimizer"], origin)
        return tuple(o for v in value.values() for o in _optimizers(v, origin))
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and all(isinstance(v, (list, tuple)) for v in value):
            value = value[0]  # ([optimizers], [schedulers])
        return tuple(o for v in value for o in _optimizers(v, origin))
    raise LoadError(f"{origin} gave {kind_of(value)}, not a torch.optim.Optimizer. Return the "
                    "optimizer, or a list or dict of them (Lightning's return shapes are "
                    "understood too).")
