"""Where in the user's code each module and parameter was constructed.

``recording()`` watches ``nn.Module.__init__`` and ``nn.Parameter.__new__`` while the user's
factory runs and remembers, for each new object, the innermost stack frame outside torch and
wdaudit that is not the object's own ``__init__``.  Findings point there, so that a
``# noqa: WD001`` on that line suppresses them.  Without a recording (plain API use), a finding
points at the class definition of the nearest enclosing module written outside torch.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import sysconfig
import weakref
from typing import Sequence

import torch
from torch import nn

from ..report import Location

# library code is never "the user's code": torch, wdaudit itself, installed packages (timm …),
# the standard library (copy.deepcopy builds parameters too)
_SKIP = tuple({os.path.dirname(torch.__file__), os.path.dirname(os.path.dirname(__file__)),
               *(sysconfig.get_paths()[k]
                 for k in ("purelib", "platlib", "stdlib", "platstdlib"))})
_sites: dict[int, tuple[weakref.ref, str, int]] = {}


def _user_frame(obj) -> tuple[str, int] | None:
    frame = sys._getframe(2)
    while frame is not None:
        path = frame.f_code.co_filename
        mine = frame.f_locals.get("self") is obj
        if not mine and not path.startswith(_SKIP) and not path.startswith("<"):
            return os.path.abspath(path), frame.f_lineno
        frame = frame.f_back
    return None


def _remember(obj) -> None:
    site = _user_frame(obj)
    if site is not None:
        key = id(obj)
        _sites[key] = (weakref.ref(obj, lambda _r, k=key: _sites.pop(k, None)), *site)


def site_of(obj) -> tuple[str, int] | None:
    entry = _sites.get(id(obj))
    if entry is not None and entry[0]() is obj:
        return entry[1], entry[2]
    return None


@contextlib.contextmanager
def recording():
    """Record construction sites of modules and parameters created inside the block."""
    orig_init = nn.Module.__init__
    orig_new = nn.Parameter.__new__

    def init(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        if site_of(self) is None:
            _remember(self)

    def new(cls, data=None, requires_grad=True):
        p = orig_new(cls, data, requires_grad)
        _remember(p)
        return p

    nn.Module.__init__ = init
    nn.Parameter.__new__ = new
    try:
        yield
    finally:
        nn.Module.__init__ = orig_init
        nn.Parameter.__new__ = orig_new


def locator(model: nn.Module):
    """A function from parameter names to the best location we know for them."""
    modules = dict(model.named_modules())
    params = dict(model.named_parameters())

    def locate(names: Sequence[str]) -> Location:
        if not names:
            return Location()
        name = names[0]
        p = params.get(name)
        if p is not None and site_of(p) is not None and not _inside_torch_module(name, modules):
            return Location(*site_of(p))
        path = name.rpartition(".")[0]
        while True:
            m = modules.get(path)
            if m is not None and site_of(m) is not None:
                return Location(*site_of(m))
            if not path:
                break
            path = path.rpartition(".")[0]
        return _class_definition(name, modules)

    return locate


def _inside_torch_module(name: str, modules) -> bool:
    owner = modules.get(name.rpartition(".")[0])
    return owner is not None and type(owner).__module__.startswith("torch.")


def _class_definition(name: str, modules) -> Location:
    path = name.rpartition(".")[0]
    while True:
        m = modules.get(path)
        if m is not None and not type(m).__module__.startswith("torch."):
            found = _where_defined(type(m))
            if found is not None:
                return found
        if not path:
            return Location()
        path = path.rpartition(".")[0]


# getsourcelines reads and tokenises the whole file: once per class, not once per finding
_defined: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _where_defined(cls: type) -> Location | None:
    if cls not in _defined:
        try:
            file = inspect.getsourcefile(cls)
            line = inspect.getsourcelines(cls)[1]
            _defined[cls] = Location(os.path.abspath(file) if file else None, line)
        except (OSError, TypeError):
            _defined[cls] = None
    return _defined[cls]


def display_path(path: str | None) -> str | None:
    """``path`` relative to the current directory when it lies below it, else absolute."""
    if path is None:
        return None
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if rel.startswith("..") else rel
