"""A structural copy of the user's model that the audit may configure freely.

The copy shares every parameter tensor with the user's model (no memory cost) but owns its
module objects and its buffers, so train/eval flags, epsilons and attributes can be set on it
without touching the user's modules.  Every run through it swaps in our own tensors with
``torch.func.functional_call``; the shared parameters are only ever read.  Buffers are cloned
because a forward may write to them outside any run we control: ``symbolic_trace`` executes
``self.calls += 1`` on the real buffer while it traces.

``deepcopy`` copies a function as itself, so a lambda, nested function or hook that closes over
the model (x-transformers' ``self.to_logits = lambda t: t @ self.emb.weight.t()``, a forward
hook reading ``model.shift``) would keep computing with the user's modules, not the copy's:
the copy would be another function.  Such functions are rebuilt over the copy's objects
(:func:`_rebind`); what cannot be redirected (a global, an object outside the model) is caught
where the copy runs (:func:`reads_of`) and the claims it touches are not confirmed.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import types
from typing import Any, Iterator, Mapping

import torch
from torch import nn


def structural_copy(model: nn.Module) -> nn.Module:
    """Deep-copy the module tree sharing the parameter tensors; buffers are cloned."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = p
    with torch.no_grad():
        for b in model.buffers():
            memo[id(b)] = b.clone()
        for m in model.modules():
            held = [t for _, memos in _memos(m) for d in memos for v in d.values()
                    for t in _tensors_of(v)]
            for t in held + list(vars(m).values()):
                # a tensor computed by a hook (the old weight_norm's ``weight``), or memoised in
                # a cache by a forward run with autograd on, refuses deepcopy; the hook
                # recomputes it on every forward and caches are emptied: a clone will do
                if isinstance(t, torch.Tensor) and t.grad_fn is not None:
                    memo[id(t)] = t.detach().clone()
    try:
        twin = copy.deepcopy(model, memo)
    except Exception as exc:  # noqa: BLE001 - any failure means we cannot copy safely
        raise CopyError(
            f"could not make a working copy of {type(model).__name__} ({exc}); the audit needs "
            "one so that it never changes the model's own train/eval flags"
        ) from exc
    _rebind(twin, memo)
    return twin


_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_TREE = ("_modules", "_parameters", "_buffers")


def _rebind(twin: nn.Module, memo: dict[int, Any]) -> None:
    """Functions held by the copy's modules (attributes, containers of them, hooks) that close
    over objects the deepcopy copied are rebuilt over the copies."""
    done: dict[int, Any] = {}
    for m in twin.modules():
        for key, value in list(vars(m).items()):
            if key in _TREE:
                continue
            if key in _HOOKS and isinstance(value, dict):
                for k, hook in list(value.items()):
                    value[k] = _mapped(hook, memo, done)
                continue
            new = _mapped(value, memo, done)
            if new is not value:
                object.__setattr__(m, key, new)  # nn.Module.__setattr__ would re-register


def _mapped(value: Any, memo: dict[int, Any], done: dict[int, Any], depth: int = 0) -> Any:
    """``value`` with every function in it rebound (a list, tuple or dict of them one level
    deep: ``self.fns = [lambda ...]``)."""
    if isinstance(value, types.FunctionType):
        return _rebound(value, memo, done, depth)
    if depth == 0 and isinstance(value, (list, tuple)) and not isinstance(value, torch.Size):
        items = [_mapped(v, memo, done, 1) for v in value]
        if all(a is b for a, b in zip(items, value)):
            return value
        try:
            return type(value)(items)
        except TypeError:  # a named tuple's constructor takes fields
            return value
    if depth == 0 and type(value) is dict:
        items = {k: _mapped(v, memo, done, 1) for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        value.update(items)  # the deepcopy's own dict: changing it changes only the copy
        return value
    return value


def _rebound(fn: types.FunctionType, memo: dict[int, Any], done: dict[int, Any],
             depth: int) -> types.FunctionType:
    """``fn`` over the copy: each closure cell and default that holds an object the deepcopy
    copied now holds its copy (a nested function, rebound in turn)."""
    if id(fn) in done:
        return done[id(fn)]
    done[id(fn)] = fn  # a function that closes over itself

    def swap(v):
        if isinstance(v, types.FunctionType) and depth < 4:
            return _rebound(v, memo, done, depth + 1)
        copied = memo.get(id(v), v)
        return v if copied is memo.get(id(memo)) else copied

    cells = []
    for cell in fn.__closure__ or ():
        try:
            held = cell.cell_contents
        except ValueError:  # a cell not yet filled
            cells.append(cell)
            continue
        new = swap(held)
        cells.append(cell if new is held else types.CellType(new))
    defaults = tuple(swap(v) for v in fn.__defaults__ or ())
    closure_same = all(a is b for a, b in zip(cells, fn.__closure__ or ()))
    defaults_same = all(a is b for a, b in zip(defaults, fn.__defaults__ or ()))
    if closure_same and defaults_same:
        return fn
    new = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__,
                             defaults if fn.__defaults__ else None, tuple(cells) or None)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__, new.__module__ = fn.__qualname__, fn.__module__
    new.__dict__.update(fn.__dict__)
    done[id(fn)] = new
    return new


@contextlib.contextmanager
def reads_of(tensors: Mapping[str, torch.Tensor]) -> Iterator[set[str]]:
    """Collects the names of ``tensors`` (the user's own) that any torch call inside reads,
    by identity or storage: a run of the copy that reads one computes another function than
    the one whose tensors were swapped in."""
    ids = {id(t): n for n, t in tensors.items()}
    storages = {}
    for n, t in tensors.items():
        try:
            if not t.is_meta:
                storages[t.untyped_storage().data_ptr()] = n
        except (RuntimeError, NotImplementedError):
            pass
    storages.pop(0, None)  # empty tensors share the null pointer
    seen: set[str] = set()
    with _Reads(ids, storages, seen):
        yield seen


class _Reads(torch.overrides.TorchFunctionMode):
    def __init__(self, ids, storages, seen):
        super().__init__()
        self.ids, self.storages, self.seen = ids, storages, seen

    def __torch_function__(self, func, types_, args=(), kwargs=None):
        kwargs = kwargs or {}
        for t in torch.utils._pytree.tree_leaves((args, kwargs)):
            if isinstance(t, torch.Tensor):
                name = self.ids.get(id(t))
                if name is None and self.storages:
                    try:
                        name = self.storages.get(t.untyped_storage().data_ptr())
                    except (RuntimeError, NotImplementedError, TypeError):
                        name = None
                if name is not None:
                    self.seen.add(name)
        return func(*args, **kwargs)


class CopyError(RuntimeError):
    pass


def is_batchnorm(m: nn.Module) -> bool:
    """Batch-statistics normalisation layers recognised by what they hold, not their name."""
    return isinstance(m, nn.modules.batchnorm._NormBase) and not isinstance(
        m, nn.modules.instancenorm._InstanceNorm
    )


def set_training_semantics(model: nn.Module) -> None:
    """BatchNorm on batch statistics, every other module in eval (dropout and drop-path off).

    This is the function weight decay acts on during training, minus its randomness.
    """
    for m in model.modules():
        m.training = is_batchnorm(m)


def forget_caches(model: nn.Module) -> None:
    """Empty every memo of tensors a module keeps under a name that says cache: a dict (timm's
    ``attention_bias_cache``, filled from a parameter in eval mode) or an object holding one
    (OmDet-Turbo's LRU caches of text embeddings, keyed by prompt).  Under training semantics
    a memo is only a copy of what its parameters compute now; kept across runs it would hold
    the user's weights when the audit swaps in its own (a program traced through the parameter
    would then disagree with the model, and an export would bake the stale copy in), or make
    the parameters it was computed from look unused (OmDet-Turbo's whole text encoder).  An
    object is replaced by a copy with the memo emptied and its count of entries at 0 (an LRU
    evicts by that count), never changed in place: it may be the user's.  The count is an int
    equal to the number of entries that the object's constructor does not take (a full LRU's
    capacity, equal too, is configuration)."""
    for m in model.modules():
        for attr, memos in list(_memos(m)):
            value = getattr(m, attr)
            if value is memos[0]:  # the dict itself
                setattr(m, attr, {})
                continue
            emptied = copy.copy(value)
            given = inspect.signature(type(value).__init__).parameters
            for memo in memos:
                key = next(k for k, v in vars(value).items() if v is memo)
                setattr(emptied, key, type(memo)())
                for name, held in vars(value).items():
                    if type(held) is int and held == len(memo) and name not in given:
                        setattr(emptied, name, 0)
            setattr(m, attr, emptied)


def _memos(m: nn.Module):
    """``(attribute, [dicts])`` for each attribute of ``m`` whose name says cache: a non-empty
    dict of tensors itself, or an object holding such dicts."""
    for key, value in vars(m).items():
        if "cache" not in key.lower() or isinstance(value, (nn.Module, torch.Tensor)):
            continue
        if isinstance(value, dict):
            if _holds_tensors(value):
                yield key, [value]
        elif hasattr(value, "__dict__"):
            inner = [d for d in vars(value).values() if isinstance(d, dict) and _holds_tensors(d)]
            if inner:
                yield key, inner


def _holds_tensors(d: dict) -> bool:
    return bool(d) and all(_tensors_of(v) for v in d.values())


def _tensors_of(value) -> tuple:
    """A memo entry's tensors: the tensor, or those of a tuple of them (an embedding and its
    mask); () where it holds anything else."""
    parts = value if isinstance(value, (tuple, list)) else (value,)
    return tuple(parts) if all(isinstance(t, torch.Tensor) for t in parts) else ()


class Flattened(nn.Module):
    """Calls the model and returns every tensor it outputs as one flat tuple.

    Dicts, dataclasses (Hugging Face ``ModelOutput``), nested tuples and objects holding
    tensors all count: every tensor output counts.  A transformers KV cache does not: it is
    inference state, and the semantics are those of training.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.output_paths: list[str] = []

    def forward(self, *args):
        out = self.model(*args)
        paths: list[str] = []
        flat = flatten_outputs(out, "output", paths)
        self.output_paths = paths
        return tuple(flat)


def flatten_outputs(obj: Any, path: str, paths: list[str], depth: int = 0, seen=None) -> list:
    seen = set() if seen is None else seen
    if isinstance(obj, (torch.Tensor, torch.fx.Proxy)):
        paths.append(path)
        return [obj]
    if obj is None or isinstance(obj, (str, bytes, int, float, bool, torch.dtype, torch.device)):
        return []
    if _is_kv_cache(obj):
        # a transformers KV cache is inference state: under training semantics (DESIGN.md §1)
        # no loss reads it, so the values it holds are not outputs
        return []
    if depth > 8 or id(obj) in seen:
        return []
    seen.add(id(obj))
    out: list = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += flatten_outputs(v, f"{path}[{k!r}]", paths, depth + 1, seen)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += flatten_outputs(v, f"{path}[{i}]", paths, depth + 1, seen)
    elif dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            out += flatten_outputs(getattr(obj, f.name), f"{path}.{f.name}", paths, depth + 1, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, nn.Module):
        for k, v in vars(obj).items():
            out += flatten_outputs(v, f"{path}.{k}", paths, depth + 1, seen)
    return out


def _is_kv_cache(obj: Any) -> bool:
    """An instance of ``transformers.cache_utils.Cache`` (checked by name: no import)."""
    return any(c.__name__ == "Cache" and c.__module__ == "transformers.cache_utils"
               for c in type(obj).__mro__)


def once_per_slot(module: nn.Module, names) -> set[str]:
    """Of ``names`` (a module's tensors, duplicates included), one per (module object,
    attribute): see :func:`tensor_slots`."""
    seen, kept = set(), set()
    for name in names:
        owner, _, attr = name.rpartition(".")
        key = (id(module.get_submodule(owner)), attr)
        if key not in seen:
            seen.add(key)
            kept.add(name)
    return kept


def tensor_slots(root: nn.Module) -> dict[str, str]:
    """Every place a tensor of ours sits, once per module object: ``slot -> canonical name``.

    A tied weight sits in two modules and is swapped in both.  A module registered twice (timm
    CoaT's shared convolutional position encodings) is one object: ``functional_call`` with
    ``tie_weights`` swapped it under both names and restored it in the wrong order, leaving a
    plain tensor where the parameter was, which the trace then baked in as a constant."""
    canon = {id(t): n for n, t in list(root.named_parameters()) + list(root.named_buffers())}
    pairs = dict(list(root.named_parameters(remove_duplicate=False))
                 + list(root.named_buffers(remove_duplicate=False)))
    once = once_per_slot(root, pairs)
    return {n: canon[id(t)] for n, t in pairs.items() if n in once and id(t) in canon}
