"""Peak memory of an audit, as a multiple of the model's size (its float32 parameter bytes).

    python benchmarks/bench_memory.py [--models resnet50 gpt2-small] [--threads N]

Each model is measured in a fresh subprocess, so one model's allocations cannot hide another's.
The child builds the model and its inputs, then measures resident memory above what it
already holds: the peak while tracing and analysing, and the peak while confirming (the
float64 check).  Peaks come from the kernel's high-water mark (VmHWM), reset at each stage
where Linux allows it (/proc/self/clear_refs); elsewhere from getrusage's lifetime maximum,
which can only be reported for the audit as a whole.

The promise being measured (docs/guarantees.md, Memory): confirmation holds one float64 copy
of the parameters (2x the float32 size) plus activations and one parameter's gradient.  The
last column is the bill confirmation estimated before running (``Report.confirmation.estimate``,
with its 1.25x headroom), which decides whether it runs at all.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import warnings

MODELS = ("resnet50", "gpt2-small")


def build(name: str):
    import torch

    torch.manual_seed(0)
    if name == "resnet50":
        from torchvision.models import resnet50

        return resnet50(), torch.randn(2, 3, 224, 224)
    if name == "gpt2-small":
        import transformers

        # untied head: the residual stream is scale-free, so there are claims to confirm
        cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=128,
                                      tie_word_embeddings=False)
        return transformers.GPT2LMHeadModel(cfg), torch.randint(0, cfg.vocab_size, (2, 128))
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Set the high-water mark to the current resident size (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure(name: str) -> dict:
    """Runs in the child process."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import torch

    import wdaudit

    model, x = build(name)
    param_bytes = sum(p.numel() * 4 for p in model.parameters())
    peaks: dict[str, float] = {}
    marks: dict[str, int] = {}

    def stage(s: str) -> None:
        if s == "confirm" and "start" in marks:
            peaks["trace+analysis"] = (_status_kb("VmHWM") - marks["start"]) * 1024
            marks["start"] = _status_kb("VmRSS")
            _reset_peak()

    resettable = _reset_peak()
    if resettable:
        marks["start"] = _status_kb("VmRSS")
    else:
        marks["lifetime"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = wdaudit.audit(model, x, progress=stage)
    if resettable:
        key = "confirm" if "trace+analysis" in peaks else "audit"
        peaks[key] = (_status_kb("VmHWM") - marks["start"]) * 1024
    else:  # a lifetime maximum: what the audit added on top of building the model
        peaks["audit"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                          - marks["lifetime"]) * 1024
    return {"model": name, "param_bytes": param_bytes, "peaks": peaks,
            "ineffective": len(report.ineffective), "parameters": len(report.parameters),
            "confirmed": report.confirmation.performed, "threads": torch.get_num_threads(),
            "estimate": report.confirmation.estimate,
            "seconds": dict(report.timings)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print(f"{'model':12s} {'params fp32':>12s} {'trace+analysis':>15s} {'confirm':>16s} "
          f"{'estimated':>16s}   ineffective")
    for name in args.models:
        cmd = [sys.executable, __file__, "--child", name]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        size = result["param_bytes"]
        cells = [_cell(result["peaks"].get(k), size) for k in ("trace+analysis", "confirm")]
        if "audit" in result["peaks"]:
            cells = ["", _cell(result["peaks"]["audit"], size) + " (whole audit)"]
        estimate = _cell(result["estimate"], size)
        print(f"{name:12s} {size / 2**20:9.0f} MiB {cells[0]:>15s} {cells[1]:>16s} "
              f"{estimate:>16s}   "
              f"{result['ineffective']}/{result['parameters']}"
              f"{'' if result['confirmed'] else ' (not confirmed)'}")


def _cell(peak: float | None, size: int) -> str:
    if peak is None:
        return "-"
    return f"{peak / 2**20:.0f} MiB {peak / size:.1f}x"


if __name__ == "__main__":
    main()
