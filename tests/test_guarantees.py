"""Nothing lost: after ``wdaudit.audit`` returns or raises, the user's model, its example
inputs and torch's global state are exactly as before (DESIGN.md §4), and confirmation holds
one float64 copy of the parameters.

``fingerprint(model)`` records everything the audit could disturb; ``changes(a, b)`` lists
what differs, so a failure names the damage instead of printing two blobs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import wdaudit
from tests.support.untraceable import beyond_make_fx

_BACKENDS = ("cuda", "xpu", "mtia")  # torch.manual_seed queues a lazy seed on each of these


@dataclass(frozen=True)
class Fingerprint:
    tensors: dict[str, tuple]  # "param:name" / "buffer:name" / "attr:path.name" -> state
    modules: dict[str, tuple]  # path -> (type, id, training, plain attributes, hooks, slots)
    rng: tuple
    globals: tuple


def fingerprint(model: nn.Module) -> Fingerprint:
    tensors: dict[str, tuple] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        tensors["param:" + name] = _tensor_state(p) + (_grad_state(p.grad),)
    for name, b in model.named_buffers(remove_duplicate=False):
        tensors["buffer:" + name] = _tensor_state(b)
    modules = {}
    for path, m in model.named_modules(remove_duplicate=False):
        plain = {}
        for k, v in vars(m).items():
            if isinstance(v, torch.Tensor):
                tensors[f"attr:{path}.{k}"] = _tensor_state(v)
            elif _is_plain(v):
                plain[k] = v
        hooks = tuple(len(getattr(m, h)) for h in ("_forward_hooks", "_forward_pre_hooks",
                                                    "_backward_hooks", "_state_dict_hooks"))
        slots = (tuple(m._parameters), tuple(m._buffers), tuple(m._modules),
                 tuple(sorted(m._non_persistent_buffers_set)))
        modules[path] = (type(m), id(m), m.training, tuple(sorted(plain.items())), hooks, slots)
    return Fingerprint(tensors, modules, _rng_state(), _global_state())


def changes(before: Fingerprint, after: Fingerprint) -> list[str]:
    """Human-readable differences, empty when nothing changed."""
    out = []
    for field in ("tensors", "modules"):
        a, b = getattr(before, field), getattr(after, field)
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{field}: {key!r} {'appeared' if key not in a else 'disappeared'}")
            elif a[key] != b[key]:
                out.append(f"{field}: {key!r} changed: {_first_difference(a[key], b[key])}")
    for i, (a, b) in enumerate(zip(before.rng, after.rng)):
        if a != b:
            out.append(f"RNG state changed: {_rng_label(a, i)}")
    if before.globals != after.globals:
        out.append(f"torch global state changed: {before.globals} -> {after.globals}")
    return out


def _tensor_state(t: torch.Tensor) -> tuple:
    """Identity, metadata, version counter (any in-place write bumps it) and the exact bits."""
    meta = (id(t), t.dtype, str(t.device), tuple(t.shape), t.requires_grad, t._version,
            type(t).__name__)
    if t.is_meta:
        return meta + (None,)
    return meta + (_bits(t),)


def _grad_state(g: torch.Tensor | None) -> tuple | None:
    return None if g is None else _tensor_state(g)


def _bits(t: torch.Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def _is_plain(v: Any) -> bool:
    if isinstance(v, (bool, int, float, str, type(None), torch.dtype, torch.device)):
        return True
    return isinstance(v, tuple) and all(_is_plain(x) for x in v)


def _rng_state() -> tuple:
    state: list[Any] = [_bits(torch.get_rng_state())]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state += [_bits(s) for s in torch.cuda.get_rng_state_all()]
    for backend in _BACKENDS:
        mod = getattr(torch, backend, None)
        tracker = getattr(mod, "_lazy_seed_tracker", None)
        if tracker is not None:  # a queued seed would reseed the device when it first starts
            state.append((backend, tuple(id(c) for c in tracker.get_calls())))
    return tuple(state)


def _rng_label(entry: Any, i: int) -> str:
    if isinstance(entry, tuple):
        return f"a seed is queued for {entry[0]} (applied when it starts)"
    return "CPU generator" if i == 0 else f"cuda:{i - 1} generator"


def _global_state() -> tuple:
    return (torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
            torch.get_default_dtype(), torch.are_deterministic_algorithms_enabled(),
            len(nn.modules.module._global_forward_hooks),
            len(nn.modules.module._global_forward_pre_hooks))


def _first_difference(a: tuple, b: tuple) -> str:
    labels = ("id", "dtype", "device", "shape", "requires_grad", "version", "type", "bits",
              "grad")
    if len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                label = labels[i] if i < len(labels) else str(i)
                return label if label in ("bits", "grad") else f"{label}: {x!r} -> {y!r}"
    return f"{a!r:.120} -> {b!r:.120}"


# --- the fingerprint itself must see every kind of damage ----------------------------------


class Tiny(nn.Module):
    """A bit of everything the audit could disturb: BatchNorm statistics, dropout, a frozen
    head, a weight_norm parametrization, a submodule left in eval mode by its owner."""

    def __init__(self, d: int = 6):
        super().__init__()
        self.fc1 = nn.Linear(4, d)
        self.bn = nn.BatchNorm1d(d)
        self.fc2 = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)
        self.drop = nn.Dropout(0.5)
        self.wn = nn.utils.parametrizations.weight_norm(nn.Linear(d, d))
        self.head = nn.Linear(d, 2)

    def forward(self, x):
        h = torch.relu(self.bn(self.fc1(x)))
        h = self.drop(self.ln(self.fc2(h)))
        return self.head(torch.relu(self.wn(h)))


def tiny(dtype=torch.float32) -> tuple[nn.Module, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Tiny().to(dtype)
    model.fc1.weight.grad = torch.randn(model.fc1.weight.shape, generator=gen).to(dtype)
    model.head.requires_grad_(False)
    model.ln.eval()
    with torch.no_grad():  # running statistics that are not the defaults
        model.bn.running_mean.add_(0.25)
        model.bn.num_batches_tracked.fill_(7)
    return model, torch.randn(5, 4, generator=gen).to(dtype)


_DAMAGE = {
    "parameter bits": lambda m: m.fc2.weight.data.view(-1)[0:1].add_(1e-3),
    "parameter rewritten in place with the same value": lambda m: _no_grad(m.fc2.bias.mul_, 1.0),
    "BatchNorm running mean": lambda m: m.bn.running_mean.add_(1.0),
    "num_batches_tracked": lambda m: m.bn.num_batches_tracked.add_(1),
    "requires_grad": lambda m: m.head.weight.requires_grad_(True),
    "a new .grad": lambda m: setattr(m.fc2.weight, "grad", torch.zeros_like(m.fc2.weight)),
    "an existing .grad": lambda m: m.fc1.weight.grad.data.view(-1)[0:1].add_(1.0),
    "train flag": lambda m: m.ln.train(),
    "eps": lambda m: setattr(m.ln, "eps", 0.0),
    "a parameter object replaced": lambda m: setattr(m.fc2, "weight",
                                                      nn.Parameter(m.fc2.weight.detach().clone())),
    "dtype": lambda m: m.head.double(),
    "global RNG": lambda m: torch.rand(1),
    "a CUDA seed (queued, or applied once CUDA runs)": lambda m: _reseed_cuda(),
    "grad mode": lambda m: torch.set_grad_enabled(False),
}


def _cuda_started() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_initialized()


def _reseed_cuda() -> None:
    """Before CUDA starts, ``manual_seed_all`` only queues a seed; once it runs, the seed is
    applied at once, and reseeding with the seed a generator already has may leave its state
    as it was — so take one it cannot have."""
    if _cuda_started():
        torch.cuda.manual_seed_all(torch.cuda.initial_seed() + 1)
    else:
        torch.cuda.manual_seed_all(0)


@pytest.mark.parametrize("damage", list(_DAMAGE))
def test_fingerprint_sees_every_kind_of_damage(damage):
    model, _ = tiny()
    before = fingerprint(model)
    cuda = list(range(torch.cuda.device_count())) if _cuda_started() else []
    with torch.random.fork_rng(devices=cuda):
        cuda_queue = _queued_seed_states()
        grad_mode = torch.is_grad_enabled()
        try:
            _DAMAGE[damage](model)
            found = changes(before, fingerprint(model))
        finally:
            torch.set_grad_enabled(grad_mode)
            _restore_queued_seed_states(cuda_queue)
    assert found, f"the fingerprint missed: {damage}"
    assert not changes(before, before)


def _no_grad(fn, *args):
    with torch.no_grad():
        fn(*args)


def _queued_seed_states() -> list:
    trackers = [getattr(getattr(torch, b, None), "_lazy_seed_tracker", None) for b in _BACKENDS]
    return [(t, dict(vars(t))) for t in trackers if t is not None]


def _restore_queued_seed_states(saved: list) -> None:
    for tracker, state in saved:
        tracker.__dict__.update(state)


# --- on success ------------------------------------------------------------------------------


class Branchy(Tiny):
    """A shape-dependent branch: symbolic_trace fails, so the torch.export path runs."""

    def forward(self, x):
        if x.shape[0] > 1:
            x = x * 2.0
        return super().forward(x)


class Counting(Tiny):
    """Mutates its own state in forward: a call counter buffer and a plain attribute."""

    def __init__(self):
        super().__init__()
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))
        self.seen = 0

    def forward(self, x):
        self.calls += 1
        self.seen += 1
        return super().forward(x)


class Noisy(Tiny):
    """Draws from the global RNG inside forward."""

    def forward(self, x):
        return super().forward(x + 0.01 * torch.randn_like(x))


@pytest.mark.parametrize("cls", [Tiny, Branchy, Counting, Noisy], ids=lambda c: c.__name__)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_audit_leaves_model_and_torch_untouched(cls, dtype):
    model, x = tiny(dtype)
    model.__class__ = cls
    if cls is Counting:
        model.register_buffer("calls", torch.zeros((), dtype=torch.long))
        model.seen = 0
    before = fingerprint(model)
    report = wdaudit.audit(model, x)
    assert changes(before, fingerprint(model)) == []
    assert report.confirmation.performed and report.ineffective


# --- on every failure path -------------------------------------------------------------------


class Flaky(Tiny):
    """Raises ``Flaky.error`` on the ``Flaky.fail_at``-th call of its forward, counted across
    every copy the audit makes (the counter lives on the class, which copies share)."""

    calls = 0
    fail_at = 0
    error: type[BaseException] = RuntimeError

    def forward(self, x):
        type(self).calls += 1
        if type(self).calls == type(self).fail_at:
            raise type(self).error("injected failure")
        return super().forward(x)


@pytest.fixture
def flaky(monkeypatch):
    model, x = tiny()
    model.__class__ = Flaky
    monkeypatch.setattr(Flaky, "calls", 0)
    monkeypatch.setattr(Flaky, "fail_at", 0)
    return model, x


def _forward_calls(model, x) -> tuple[int, int]:
    """How many forward calls a successful audit makes, and how many precede confirmation."""
    before_confirm = []
    Flaky.calls = 0
    wdaudit.audit(model, x,
                  progress=lambda s: s == "confirm" and before_confirm.append(Flaky.calls))
    return Flaky.calls, before_confirm[0]


def test_model_raising_on_any_call_leaves_it_untouched(flaky):
    model, x = flaky
    total, before_confirm = _forward_calls(model, x)
    assert total > before_confirm > 0  # the failure below lands in every stage
    for n in range(1, total + 1):
        Flaky.calls, Flaky.fail_at = 0, n
        before = fingerprint(model)
        if n <= before_confirm:  # while tracing: an error, or the other tracer took over
            try:
                wdaudit.audit(model, x)
            except (wdaudit.InputError, wdaudit.TraceError) as exc:
                assert "injected failure" in str(exc) + str(exc.__cause__), exc
        else:  # while confirming: a report that says so; a claim survives only where every
            # check ran again, in float32, and passed (the report saying why float32)
            report = wdaudit.audit(model, x)
            conf = report.confirmation
            if conf.performed:
                assert conf.precision == "float32" and "injected failure" in conf.fallback
            else:
                assert "injected failure" in conf.reason
                assert not report.ineffective and report.unknown
        assert changes(before, fingerprint(model)) == [], f"failure at forward call {n}"


def test_interrupt_during_confirmation_leaves_model_untouched(flaky):
    model, x = flaky
    total, before_confirm = _forward_calls(model, x)
    Flaky.calls, Flaky.fail_at, Flaky.error = 0, before_confirm + 1, KeyboardInterrupt
    before = fingerprint(model)
    with pytest.raises(KeyboardInterrupt):
        wdaudit.audit(model, x)
    assert changes(before, fingerprint(model)) == []


class _FailAfter(TorchDispatchMode):
    """Raises at the n-th float64 op: the confirmation's arithmetic, forward and backward."""

    def __init__(self, n: int):
        super().__init__()
        self.n, self.count = n, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(isinstance(a, torch.Tensor) and a.dtype == torch.float64
               for a in tree_leaves((args, kwargs))):
            self.count += 1
            if self.count == self.n:
                raise RuntimeError(f"injected failure in {func}")
        return func(*args, **(kwargs or {}))


def test_failure_inside_any_confirmation_op_leaves_model_untouched():
    model, x = tiny()
    with _FailAfter(0) as counter:
        wdaudit.audit(model, x)
    total = counter.count
    assert total > 100
    for n in sorted({1, 2, total // 2, total - 1, total, *range(3, total, max(1, total // 25))}):
        before = fingerprint(model)
        try:
            with _FailAfter(n):
                wdaudit.audit(model, x)
        except RuntimeError as exc:
            assert "injected failure" in str(exc) + str(exc.__cause__)
        assert changes(before, fingerprint(model)) == [], f"failure at float64 op {n}"


class Unsupported(Tiny):
    def forward(self, x):
        return torch.special.i0(super().forward(x))


class DataDependent(Tiny):
    def forward(self, x):
        h = super().forward(x)
        return h * 2 if h.sum() > 0 else h


def _defect(monkeypatch):
    monkeypatch.setattr(wdaudit.engine.confirmation.confirm, "TOL_EXACT", -1.0)  # every claim fails its check


_FAILURES = {
    "bad inputs": (Tiny, {}, lambda m, x: (x[:, :3],), wdaudit.InputError, None),
    "untraceable": (DataDependent, {}, lambda m, x: (x,), wdaudit.TraceError, beyond_make_fx),
    "unknown op, strict": (Unsupported, {"strict": True}, lambda m, x: (x,),
                           wdaudit.UnsupportedOpError, None),
    "claim refuted, strict": (Tiny, {"strict": True}, lambda m, x: (x,), wdaudit.AnalysisDefect,
                              _defect),
    "bad assume_decay": (Tiny, {"assume_decay": "some"}, lambda m, x: (x,), ValueError, None),
}


@pytest.mark.parametrize("case", list(_FAILURES))
def test_errors_leave_model_untouched(case, monkeypatch):
    cls, kwargs, inputs, error, setup = _FAILURES[case]
    model, x = tiny()
    model.__class__ = cls
    if setup:
        setup(monkeypatch)
    before = fingerprint(model)
    with pytest.raises(error):
        wdaudit.audit(model, inputs(model, x), **kwargs)
    assert changes(before, fingerprint(model)) == []


# --- memory: one float64 copy of the parameters during confirmation --------------------------


class _MallocPeak(TorchDispatchMode):
    """Peak bytes in use (glibc's count, which includes every CPU tensor) after each op,
    measured from ``reset()``."""

    def __init__(self, libc):
        super().__init__()
        self.libc = libc
        self.reset()

    def used(self) -> int:
        info = self.libc.mallinfo2()
        return info.uordblks + info.hblkhd

    def reset(self) -> None:
        self.base = self.peak = self.used()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.peak = max(self.peak, self.used())
        return out


def _glibc():
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = MallInfo2
    except (OSError, AttributeError):
        return None
    return libc


class TwoWide(nn.Module):
    """Parameters dominate: two 512x512 layers, each scale-free before a norm; activations of
    a batch of 4 are tiny beside them."""

    def __init__(self, d: int = 512):
        super().__init__()
        self.a = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d, elementwise_affine=False)
        self.b = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        return self.head(self.ln2(self.b(self.ln1(self.a(x)))))


def test_confirmation_holds_one_float64_copy_of_the_parameters():
    libc = _glibc()
    if libc is None:
        pytest.skip("needs glibc's mallinfo2 to count CPU allocations")
    torch.manual_seed(0)
    model, x = TwoWide(), torch.randn(4, 512)
    wdaudit.audit(model, x)  # first-call allocations (kernels, autograd engine) are not ours
    with _MallocPeak(libc) as meter:
        report = wdaudit.audit(model, x, progress=lambda s: s == "confirm" and meter.reset())
    assert report.confirmation.performed and {"a.weight", "b.weight"} <= report.ineffective
    numels = [p.numel() for p in model.parameters()]
    float64 = 8 * sum(numels)
    one_gradient = 8 * max(numels)  # the backward pass drops each gradient once folded
    activations = 0.1 * float64
    extra = meter.peak - meter.base
    assert extra <= float64 + one_gradient + activations, \
        f"peak {extra / float64:.2f} float64 copies of the parameters"


def test_a_memory_cap_below_the_bill_is_said_and_the_model_untouched(monkeypatch):
    """WDAUDIT_MEMORY_BUDGET caps confirmation like a small machine would: nothing confirmed,
    the reason names the memory, no claim made from it, and the model as before."""
    torch.manual_seed(0)
    model, x = TwoWide(), torch.randn(4, 512)
    float64 = 8 * sum(p.numel() for p in model.parameters())
    monkeypatch.setenv("WDAUDIT_MEMORY_BUDGET", str(float64 // 2))  # not even one copy fits
    before = fingerprint(model)
    report = wdaudit.audit(model, x)
    assert changes(before, fingerprint(model)) == []
    assert not report.confirmation.performed and report.confirmation.passes == 0
    assert "not enough memory" in report.confirmation.reason
    assert report.confirmation.estimate > float64
    assert report.ineffective == frozenset() and {"a.weight", "b.weight"} <= report.unknown
    monkeypatch.setenv("WDAUDIT_MEMORY_BUDGET", str(4 * float64))
    assert {"a.weight", "b.weight"} <= wdaudit.audit(model, x).ineffective


# --- forwards that write to what they are given ------------------------------------------------


class RenormEmbedding(nn.Module):
    """``nn.Embedding(max_norm=...)`` renormalises rows of its own weight in place."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4, max_norm=1.0)
        self.ln = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)
        with torch.no_grad():
            self.emb.weight.mul_(5.0)  # rows above max_norm: the forward would rewrite them

    def forward(self, ids):
        return self.head(self.ln(self.emb(ids)))


def test_forward_writing_its_own_parameters_leaves_them_untouched():
    torch.manual_seed(0)
    model, ids = RenormEmbedding(), torch.tensor([[1, 2, 3], [3, 4, 5]])
    before = fingerprint(model)
    report = wdaudit.audit(model, ids)
    assert changes(before, fingerprint(model)) == []
    assert report.confirmation.performed


def test_forward_writing_its_input_leaves_the_example_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(4, 4), nn.LayerNorm(4))
    x = torch.randn(3, 4)
    bits, version = _bits(x), x._version
    report = wdaudit.audit(model, x)
    assert (_bits(x), x._version) == (bits, version)
    assert report.ineffective == {"1.weight", "1.bias"}
