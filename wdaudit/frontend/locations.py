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

_TORCH = os.path.dirname(torch.__file__)
_WDAUDIT = os.path.dirname(os.path.dirname(__file__))
_INSTALLED = tuple({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})
# library code is never "the user's code": torch, wdaudit itself, installed packages (timm …),
# the standard library (copy.deepcopy builds parameters too)
_SKIP = tuple({_TORCH, _WDAUDIT, *_INSTALLED,
               *(sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib"))})
Site = tuple[str, int]
_sites: dict[int, tuple[weakref.ref, Site | None, Site | None]] = {}


def _frames(obj):
    """Frames that built ``obj``, innermost first, without its own ``__init__``."""
    frame = sys._getframe(3)
    while frame is not None:
        if frame.f_locals.get("self") is not obj and not frame.f_code.co_filename.startswith("<"):
            yield frame
        frame = frame.f_back


def _sites_of(obj) -> tuple[Site | None, Site | None]:
    """The innermost frame of the user's own code, and the innermost one of an installed
    library other than torch (diffusers' ``self.conv1 = nn.Conv2d(...)``) when there is one
    inside the user's."""
    library = None
    for frame in _frames(obj):
        path = frame.f_code.co_filename
        if not path.startswith(_SKIP):
            return (os.path.abspath(path), frame.f_lineno), library
        if library is None and path.startswith(_INSTALLED) and not path.startswith(_TORCH):
            library = (os.path.abspath(path), frame.f_lineno)
    return None, library


def _store(obj, user: Site | None, library: Site | None) -> None:
    if user is not None or library is not None:
        key = id(obj)
        _sites[key] = (weakref.ref(obj, lambda _r, k=key: _sites.pop(k, None)), user, library)


def _entry(obj):
    entry = _sites.get(id(obj))
    return entry if entry is not None and entry[0]() is obj else None


def site_of(obj) -> Site | None:
    """Where the user's code built ``obj``."""
    entry = _entry(obj)
    return entry[1] if entry is not None else None


def library_site_of(obj) -> Site | None:
    """Where an installed library's code built ``obj``, inside the user's call."""
    entry = _entry(obj)
    return entry[2] if entry is not None else None


# nn.Module._apply (to_empty, .to(), .double()) replaces each parameter with a new one built
# inside torch: the new one inherits the old one's sites, or a meta-built model's parameters
# would all point at its to_empty line
_APPLY = nn.Module._apply.__code__


@contextlib.contextmanager
def recording():
    """Record construction sites of modules and parameters created inside the block."""
    orig_init = nn.Module.__init__
    orig_new = nn.Parameter.__new__

    def init(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        if _entry(self) is None:
            _store(self, *_sites_of(self))

    def new(cls, data=None, requires_grad=True):
        p = orig_new(cls, data, requires_grad)
        caller = sys._getframe(1)
        if caller.f_code is _APPLY:
            old = _entry(caller.f_locals.get("param"))
            if old is not None:
                _store(p, old[1], old[2])
        elif not (caller.f_code.co_filename.startswith(_TORCH)
                  and isinstance(caller.f_locals.get("self"), nn.Module)):
            # one a torch module builds for itself (nn.Linear's weight, a user subclass's too)
            # is located by the module: the line that built the module, not super().__init__
            _store(p, *_sites_of(p))
        return p

    nn.Module.__init__ = init
    nn.Parameter.__new__ = new
    try:
        yield
    finally:
        nn.Module.__init__ = orig_init
        nn.Parameter.__new__ = orig_new


class Locator:
    """Parameter names to the best location we know for them: ``Locator(model)(names)`` is
    where the user's code built the first of them; ``.related(names)`` where an installed
    library's code built each of them, inside that call (one entry per distinct line)."""

    def __init__(self, model: nn.Module):
        self.modules = dict(model.named_modules())
        self.params = dict(model.named_parameters())

    def __call__(self, names: Sequence[str]) -> Location:
        if not names:
            return Location()
        site = self._site(names[0], site_of)
        return Location(*site) if site is not None else _class_definition(names[0], self.modules)

    def related(self, names: Sequence[str]) -> tuple[Location, ...]:
        sites = (self._site(n, library_site_of) for n in names)
        return tuple(Location(*s) for s in dict.fromkeys(s for s in sites if s is not None))

    def _site(self, name: str, site) -> Site | None:
        """The parameter's own site, else the nearest enclosing module's."""
        p = self.params.get(name)
        if p is not None and site(p) is not None \
                and not _inside_torch_module(name, self.modules):
            return site(p)
        path = name.rpartition(".")[0]
        while True:
            m = self.modules.get(path)
            if m is not None and site(m) is not None:
                return site(m)
            if not path:
                return None
            path = path.rpartition(".")[0]


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


def library_path(path: str | None) -> str | None:
    """An installed library's file as its import path shows it (``diffusers/models/resnet.py``),
    else as :func:`display_path` shows it."""
    if path is not None:
        for root in _INSTALLED:
            if path.startswith(root + os.sep):
                return os.path.relpath(path, root)
    return display_path(path)
