"""Breadth sweep: audit every architecture of timm's registry and every transformers model
type that has a base model, each built small from its config with random weights (nothing is
downloaded), in worker processes under a per-model time limit so that one hang stops nothing.

A worker imports torch, timm and transformers once (about 20 s on 2 cores, ten times the audit
of most models) and then audits model after model; a worker whose model runs past the limit,
or dies, is killed and replaced, and every worker is replaced after ``RECYCLE`` models so that
one model's leftovers (memory, global state) reach few others.

    python tools/sweep/sweep.py                          # the full registries (hours)
    python tools/sweep/sweep.py --sample 40 --seed 0     # a seeded sample of each library
    python tools/sweep/sweep.py --library timm --only fastvit_t8,resnet18
    python tools/sweep/sweep.py --jobs 2 --threads 1 --json rows.json --resume   # picks up

With ``--json`` the rows are written after every model, so an interrupted run loses nothing;
``--resume`` keeps the rows already in that file and audits only the models missing from it.
Models are audited in a seeded random order, so that an interrupted run holds a uniform sample.

One line per model: library, name, status, seconds, parameters left unknown, refuted claims,
unknown ops; then a summary per library.  Statuses:

* ``clean``: audited, no unknown op, no parameter left unknown, no refuted claim;
* ``unknown-op`` / ``unknown-param`` / ``refuted``: audited, with that defect (worst first:
  refuted > unknown-op > unknown-param);
* ``opaque``: audited, but neither tracer follows the model's own forward: it is one opaque op
  and only the submodules it calls were audited (each on its own);
* ``untraceable``: the audit raised a TraceError;
* ``timeout`` / ``crash``: the audit ran past the limit, or raised;
* ``not-built``: the small model could not be built or run (a config the shrinking breaks,
  a missing optional dependency): counted apart, not as the audit's failure.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
import warnings

# the builders live beside this script (imported from its folder, run or loaded by path)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from small_timm import build_timm, timm_names  # noqa: E402
from small_transformers import build_transformers, transformers_types  # noqa: E402


# --- auditing one model (the child process) ----------------------------------------------------


def audit_one(spec: str) -> dict:
    import torch

    import wdaudit

    library, name = spec.split(":", 1)
    if library == "selftest":  # the tests' way to make a worker hang or die
        if name == "hang":
            time.sleep(3600)
        os._exit(3)
    # the worker's previous model may have changed these
    torch.set_default_dtype(torch.float32)
    torch.set_grad_enabled(True)
    torch.manual_seed(0)
    start = time.perf_counter()
    try:
        model, x = (build_timm if library == "timm" else build_transformers)(name)
    except BaseException as exc:  # noqa: BLE001 - any failure to build is reported, not raised
        return {"status": "not-built", "error": _one_line(exc)}
    start = time.perf_counter()
    try:
        report = wdaudit.audit(model, x, strict=False)  # unknown ops are counted, not raised
    except wdaudit.TraceError as exc:
        return {"status": "untraceable", "error": _one_line(exc),
                "seconds": time.perf_counter() - start}
    except BaseException as exc:  # noqa: BLE001
        return {"status": "crash", "error": _one_line(exc), "seconds": time.perf_counter() - start}
    row = _summarise(report, time.perf_counter() - start)
    if getattr(model, "sweep_fewer_blocks", None):
        row["fewer_blocks"] = model.sweep_fewer_blocks  # built smaller than its registry entry
    row["input"] = [list(t.shape) for t in (x if isinstance(x, tuple) else (x,))
                    if isinstance(t, torch.Tensor)]
    return row


def _summarise(report, seconds: float) -> dict:
    ops = sorted({u.op for u in report.coverage.unknown_ops})
    checked = report.confirmation.performed
    # a group whose check could not run (a part with integer outputs, memory) is unknown, not
    # refuted: only a check that ran and failed points at the analysis
    refuted = [g.names[0] for g in report.groups
               if checked and not g.confirmed and not g.note.startswith("cannot confirm")]
    unknown = sorted(report.unknown)
    status = "refuted" if refuted else "opaque" if report.coverage.method == "opaque" else \
        "unknown-op" if ops else "unknown-param" if unknown else "clean"
    return {"status": status, "seconds": seconds, "parameters": len(report.parameters),
            "unknown_params": len(unknown), "refuted": len(refuted), "unknown_ops": ops,
            "refuted_examples": refuted[:3], "confirmation": report.confirmation.outcome,
            "trace": report.coverage.method,
            "reason": report.confirmation.reason,
            "timings": {k: round(v, 2) for k, v in report.timings.items()}}


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()
    return text[0][:200] if text else type(exc).__name__


# --- workers ------------------------------------------------------------------------------------

MARK = "@@wdaudit-sweep@@ "  # marks the worker's answers among whatever the models print
RECYCLE = 25  # models per worker
STARTUP = 600.0  # seconds a worker may take to import everything
_GONE = object()  # what the reader hands on when the worker's stdout closes


def serve() -> int:
    """The worker: import once, then audit one spec per line of stdin, answering on stdout."""
    warnings.filterwarnings("ignore")
    import torch  # noqa: F401

    import wdaudit  # noqa: F401
    for optional in ("timm", "transformers"):
        try:
            __import__(optional)
        except ImportError:
            pass
    print(MARK + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip():
            row = audit_one(line.strip())
            gc.collect()
            print(MARK + json.dumps(row), flush=True)
    return 0


class Worker:
    def __init__(self, threads: int = 0):
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1"}
        if threads:  # so that parallel workers do not fight over the cores (timings stay honest)
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                     env=env)
        self.answers: queue.Queue = queue.Queue()
        self.served = 0
        threading.Thread(target=self._read, daemon=True).start()
        self.ready = self._answer(STARTUP) not in (None, _GONE)

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.startswith(MARK):
                self.answers.put(json.loads(line[len(MARK):]))
        self.answers.put(_GONE)  # the worker is gone (it may not be reaped yet)

    def _answer(self, timeout: float):
        try:
            return self.answers.get(timeout=timeout)
        except queue.Empty:
            return None

    def audit(self, spec: str, timeout: float) -> dict:
        start = time.perf_counter()
        try:
            self.proc.stdin.write(spec + "\n")
            self.proc.stdin.flush()
        except OSError:
            return {"status": "crash", "error": self._last_words(), "seconds": 0.0}
        self.served += 1
        row = self._answer(timeout)
        if row is None:
            self.close()
            return {"status": "timeout", "seconds": time.perf_counter() - start}
        if row is _GONE:
            return {"status": "crash", "error": self._last_words(),
                    "seconds": time.perf_counter() - start}
        return row

    def _last_words(self) -> str:
        code = self.proc.wait()
        self.stderr.seek(0)
        tail = (self.stderr.read().strip().splitlines() or [""])[-1][:160]
        return f"worker died (exit {code}) {tail}".strip()

    @property
    def usable(self) -> bool:
        return self.proc.poll() is None and self.served < RECYCLE

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _lane(todo: list[str], lock: threading.Lock, timeout: float, threads: int, finish) -> None:
    """One worker at a time, auditing specs off the shared list until it is empty."""
    worker = None
    while True:
        with lock:
            if not todo:
                break
            spec = todo.pop(0)
        if worker is None or not worker.usable:
            if worker is not None:
                worker.close()
            worker = Worker(threads)
        row = worker.audit(spec, timeout) if worker.ready else \
            {"status": "crash", "error": "the worker did not start", "seconds": 0.0}
        finish(spec, row)
    if worker is not None:
        worker.close()


def pick(names: list[str], sample: int | None, seed: int) -> list[str]:
    if sample is None or sample >= len(names):
        return names
    return sorted(random.Random(seed).sample(names, sample))


def sweep(specs: list[str], timeout: float, out=sys.stdout, jobs: int = 1, threads: int = 0,
          sink=None) -> list[dict]:
    """Audit each spec in a worker, ``jobs`` workers at a time; rows come back in spec order.
    ``sink(rows)`` is called after every model with the rows finished so far."""
    done: dict[str, dict] = {}
    lock = threading.Lock()

    def finish(spec: str, row: dict) -> None:
        with lock:
            done[spec] = {"model": spec, **row}
            print(format_row(done[spec]), file=out, flush=True)
            if sink is not None:
                sink([done[s] for s in specs if s in done])

    todo = list(specs)
    lanes = [threading.Thread(target=_lane, args=(todo, lock, timeout, threads, finish))
             for _ in range(max(1, min(jobs, len(specs))))]
    for lane in lanes:
        lane.start()
    for lane in lanes:
        lane.join()
    return [done[s] for s in specs]


def format_row(row: dict) -> str:
    detail = ", ".join(row.get("unknown_ops", [])) or row.get("error", "") or \
        ", ".join(row.get("refuted_examples", [])) or row.get("reason", "")
    return (f"{row['model']:<58} {row['status']:<13} {row.get('seconds', 0):7.1f}s "
            f"unknown={row.get('unknown_params', '-'):<4} refuted={row.get('refuted', '-'):<3} "
            f"{detail}")


def summary(rows: list[dict]) -> list[str]:
    lines = []
    for library in sorted({r["model"].split(":")[0] for r in rows}):
        mine = [r for r in rows if r["model"].startswith(library + ":")]
        built = [r for r in mine if r["status"] != "not-built"]
        audited = [r for r in built if r["status"] not in ("untraceable", "timeout", "crash")]
        clean = [r for r in audited if r["status"] == "clean"]
        slow = [r for r in audited if r.get("seconds", 0) > 60]
        lines.append(f"{library}: {len(mine)} sampled, {len(built)} built, "
                     f"{len(audited)} audited ({_pct(audited, built)}), {len(clean)} clean "
                     f"({_pct(clean, built)}), {sum(r.get('refuted', 0) for r in mine)} refuted "
                     f"claims, {len(slow)} over 60 s")
    return lines


def _pct(part: list, whole: list) -> str:
    return f"{100.0 * len(part) / len(whole):.0f} %" if whole else "-"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", choices=("timm", "transformers", "all"), default="all")
    ap.add_argument("--sample", type=int, default=None, help="models per library (seeded)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per model")
    ap.add_argument("--only", default="", help="comma-separated names (skips the registry)")
    ap.add_argument("--json", default="", help="write the rows here as well, after each model")
    ap.add_argument("--resume", action="store_true",
                    help="keep the rows already in --json and audit only the missing models")
    ap.add_argument("--jobs", type=int, default=1, help="models audited at once")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per model (0: default)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.serve:
        return serve()
    specs: list[str] = []
    for library, names in (("timm", timm_names), ("transformers", transformers_types)):
        if args.library in (library, "all"):
            chosen = args.only.split(",") if args.only else pick(names(), args.sample, args.seed)
            specs += [f"{library}:{n}" for n in chosen if n]
    kept = _resumed(args.json, specs) if args.resume else []
    have = {r["model"] for r in kept}
    todo = [s for s in specs if s not in have]
    # audited in a seeded random order: what an interrupted run holds is a uniform sample
    random.Random(args.seed).shuffle(todo)
    order = {spec: i for i, spec in enumerate(specs)}
    sink = (lambda rows: _write(args.json, sorted(kept + rows, key=lambda r: order[r["model"]]))
            ) if args.json else None
    rows = kept + sweep(todo, args.timeout, jobs=args.jobs, threads=args.threads, sink=sink)
    rows.sort(key=lambda r: order[r["model"]])
    for line in summary(rows):
        print(line)
    if args.json:
        _write(args.json, rows)
    return 0


def _resumed(path: str, specs: list[str]) -> list[dict]:
    if not path or not os.path.exists(path):
        return []
    with open(path) as fh:
        return [r for r in json.load(fh) if r["model"] in specs]


def _write(path: str, rows: list[dict]) -> None:
    tmp = path + ".tmp"  # replaced whole, so a run killed mid-write leaves the last good file
    with open(tmp, "w") as fh:
        json.dump(rows, fh, indent=1)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
