"""What making export's unobserved writes out of place saves in the trace stage.

For each model: ``engine.trace.trace`` with ``outplace`` as shipped and with it switched off
(every write functionalised by ``run_decompositions``, as before), alternating in one process
so that the machine's load hits both alike; prints the medians and their ratio.

    python benchmarks/bench_trace.py                      # tf_efficientnet_b0, mvitv2_tiny, resnet18
    python benchmarks/bench_trace.py --timm resnet50 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from small_timm import build_timm  # noqa: E402

from wdaudit.engine.tracing import trace as trace_stage  # noqa: E402

DEFAULT = ("tf_efficientnet_b0", "mvitv2_tiny", "resnet18")


def _timed(model, inputs, outplace: bool) -> tuple[float, str]:
    original = trace_stage.outplaced
    if not outplace:
        trace_stage.outplaced = lambda ep: 0
    try:
        start = time.perf_counter()
        program = trace_stage.trace(model, inputs)
        return time.perf_counter() - start, program.method
    finally:
        trace_stage.outplaced = original


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timm", nargs="*", default=list(DEFAULT))
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<22} {'method':<8} {'decomposed':>11} {'out of place':>13} {'ratio':>6}")
    for name in args.timm:
        model, x = build_timm(name)
        inputs = x if isinstance(x, tuple) else (x,)
        before, after, method = [], [], ""
        for _ in range(args.repeats):
            seconds, _ = _timed(model, inputs, outplace=False)
            before.append(seconds)
            seconds, method = _timed(model, inputs, outplace=True)
            after.append(seconds)
        b, a = statistics.median(before), statistics.median(after)
        print(f"{name:<22} {method:<8} {b:10.2f}s {a:12.2f}s {b / a:5.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
