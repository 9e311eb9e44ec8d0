"""Confirmation's memory bill, known before it is paid.

Confirmation holds one copy of the parameters at check precision, the activations one forward
pass keeps for the backward pass, and one parameter's gradient at a time (DESIGN.md §4).  All
three are known before anything is allocated: the parameter count, and the shape of every
value the traced program computes (recorded by the float32 run that checked the trace, or by
``torch.export``).  When the bill exceeds what the device has free, confirmation runs on fewer
examples (only where that keeps it meaningful) or not at all, and says so; it never lets the
kernel kill the process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ..tracing.batch import CAP_BATCH, batch_size, first
from ..tracing.program import Program, TensorMeta

MIN_BATCH = 4
"""The smallest batch a reduced confirmation runs on.  Not 2: BatchNorm over two samples maps
every channel to ±1, a function blind to everything upstream, so a false claim would pass."""

# CAP_BATCH (at most this many examples where the program allows it) is defined beside the
# Program: the trace's check is capped the same way

HEADROOM = 1.25  # the estimate leaves out allocator slack, kernels' workspaces, Python objects


@dataclass(frozen=True)
class Bill:
    """What confirmation at one batch size is expected to need, in bytes."""

    parameters: int  # one copy at check precision
    activations: int  # every value of one forward pass (kept for the backward pass)
    gradient: int  # the largest single gradient
    batch: int | None  # examples per input (None: the inputs have no common batch axis)

    @property
    def total(self) -> int:
        return int(HEADROOM * (self.parameters + self.activations + self.gradient))


def bill(program: Program, params: Mapping[str, torch.Tensor], inputs: tuple,
         itemsize: int = 8, batch: int | None = None) -> Bill:
    """The bill at ``batch`` examples (default: the inputs as given)."""
    floats = [p for p in params.values() if p.is_floating_point()]
    full = batch_size(inputs)
    recorded = program.recorded_batch or full  # the trace may have recorded fewer examples
    wanted = batch if batch is not None else full
    fraction = 1.0 if not wanted or not recorded else wanted / recorded
    held = set(program.params) | set(program.buffers) | set(program.constants)
    values = sum(_numel(meta) for node, meta in program.shapes.items() if node not in held)
    return Bill(parameters=itemsize * sum(p.numel() for p in floats),
                activations=int(itemsize * values * fraction),
                gradient=itemsize * max((p.numel() for p in floats), default=0),
                batch=batch if batch is not None else full)


def available(device: torch.device, override: int | None = None) -> int | None:
    """Free memory on ``device`` in bytes (None when unknown): the override if given, else
    ``WDAUDIT_MEMORY_BUDGET``, else what the CUDA driver or the kernel (and a cgroup limit)
    says is free."""
    if override is not None:
        return int(override)
    env = os.environ.get("WDAUDIT_MEMORY_BUDGET", "").strip()
    if env:
        return parse_bytes(env)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        return _cpu_available()
    return None


def parse_bytes(text: str) -> int:
    """'1.5G', '800M', '123456' → bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(float(text))


def _cpu_available() -> int | None:
    free = _meminfo("MemAvailable")
    limit = _cgroup_free()
    known = [v for v in (free, limit) if v is not None]
    return min(known) if known else None


def _meminfo(key: str) -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _cgroup_free() -> int | None:
    """cgroup v2: the limit minus what the group already uses (None without a limit)."""
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit == "max":
            return None
        with open("/sys/fs/cgroup/memory.current") as f:
            return int(limit) - int(f.read().strip())
    except (OSError, ValueError):
        return None


def _numel(meta: Any) -> int:
    """Floating-point values a recorded node holds (integer tensors are indices: negligible)."""
    if isinstance(meta, TensorMeta):
        return meta.numel if meta.dtype.is_floating_point else 0
    if isinstance(meta, tuple):
        return sum(_numel(m) for m in meta)
    return 0


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.0f} MiB"


def plan(program: Program, params: Mapping[str, torch.Tensor], inputs: tuple,
         device: torch.device, memory_budget: int | None, cap: bool = True, *,
         itemsize: int = 8):
    """The inputs to confirm on, their bill, and why it cannot be paid ("" if it can).

    At most ``CAP_BATCH`` examples (with ``cap``) and, when the bill does not fit, fewer still,
    never below ``MIN_BATCH``: invariance is structural, and a traced (not exported) program is
    not specialised to the batch size."""
    free = available(device, memory_budget)
    n = whole = batch_size(inputs)
    traced = program.method == "symbolic_trace"
    if cap and n and n > CAP_BATCH and traced:
        n = CAP_BATCH
    full = bill(program, params, inputs, itemsize, batch=n)
    if free is None or full.total <= free:
        return (first(inputs, n) if n != whole else inputs), full, ""
    if n and n > MIN_BATCH and traced:
        per_example = max(full.activations / n, 1.0)
        k = int((free / HEADROOM - full.parameters - full.gradient) / per_example)
        k = min(n - 1, max(MIN_BATCH, k))
        reduced = bill(program, params, inputs, itemsize, batch=k)
        if reduced.total <= free:
            return first(inputs, k), reduced, ""
    return inputs, full, (
        f"cannot confirm: not enough memory: confirmation needs about {gib(full.total)} "
        f"({'float64' if itemsize == 8 else 'float32'} parameters {gib(full.parameters)}, "
        f"activations {gib(full.activations)}, one "
        f"gradient {gib(full.gradient)}) and {gib(free)} is free on {device}; the claims are "
        f"static only [not confirmed numerically]{TWIN_OFFER}")


# a model too large to check in float64 can still be checked on its reduced-width twin
TWIN_OFFER = ("; a Hugging Face model can have them confirmed on a twin with reduced widths "
              "instead: --confirm-on twin (audit(..., confirm_on=\"twin\"))")


def precise_plan(program: Program, params: Mapping[str, torch.Tensor], inputs: tuple,
                 device: torch.device, memory_budget: int | None, cap: bool = True):
    """:func:`plan` with the check precision: float64 on as many examples as fit, else float32
    (half the bill; the same checks at float32's tolerances), else float64's reason."""
    chosen, full, short = plan(program, params, inputs, device, memory_budget, cap)
    if short:
        half = plan(program, params, inputs, device, memory_budget, cap, itemsize=4)
        if not half[2]:
            return (*half, torch.float32)
    return chosen, full, short, torch.float64

