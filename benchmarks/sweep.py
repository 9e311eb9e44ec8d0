"""Breadth sweep: audit every architecture of timm's registry and every transformers model
type that has a base model, each built small from its config with random weights (nothing is
downloaded), one subprocess per model under a time limit so that one hang stops nothing.

    python benchmarks/sweep.py                          # the full registries (hours)
    python benchmarks/sweep.py --sample 40 --seed 0     # a seeded sample of each library
    python benchmarks/sweep.py --library timm --only fastvit_t8,resnet18
    python benchmarks/sweep.py --jobs 2 --threads 1 --json rows.json --resume   # picks up

With ``--json`` the rows are written after every model, so an interrupted run loses nothing;
``--resume`` keeps the rows already in that file and audits only the models missing from it.

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
import concurrent.futures
import json
import os
import random
import subprocess
import sys
import time
import warnings

# the builders live beside this script (imported from its folder, run or loaded by path)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from small_models import (build_timm, build_transformers, timm_names,  # noqa: E402
                          transformers_types)


# --- auditing one model (the child process) ----------------------------------------------------


def audit_one(spec: str) -> dict:
    import torch

    import wdaudit

    library, name = spec.split(":", 1)
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
    return _summarise(report, time.perf_counter() - start)


def _summarise(report, seconds: float) -> dict:
    ops = sorted({u.op for u in report.coverage.unknown_ops})
    checked = report.confirmation.performed
    refuted = [g.names[0] for g in report.groups if checked and not g.confirmed]
    unknown = sorted(report.unknown)
    status = "refuted" if refuted else "opaque" if report.coverage.method == "opaque" else \
        "unknown-op" if ops else "unknown-param" if unknown else "clean"
    return {"status": status, "seconds": seconds, "parameters": len(report.parameters),
            "unknown_params": len(unknown), "refuted": len(refuted), "unknown_ops": ops,
            "refuted_examples": refuted[:3], "confirmation": report.confirmation.outcome,
            "trace": report.coverage.method,
            "reason": report.confirmation.reason}


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()
    return text[0][:200] if text else type(exc).__name__


# --- the parent: one subprocess per model ---------------------------------------------------------


def run_one(spec: str, timeout: float, threads: int = 0) -> dict:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false",
           "HF_HUB_OFFLINE": "1"}
    if threads:  # so that parallel children do not fight over the cores (timings stay honest)
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, __file__, "--one", spec], capture_output=True,
                              text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "seconds": time.perf_counter() - start}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": "crash", "error": tail[:200], "seconds": time.perf_counter() - start}


def pick(names: list[str], sample: int | None, seed: int) -> list[str]:
    if sample is None or sample >= len(names):
        return names
    return sorted(random.Random(seed).sample(names, sample))


def sweep(specs: list[str], timeout: float, out=sys.stdout, jobs: int = 1, threads: int = 0,
          sink=None) -> list[dict]:
    """Audit each spec in a child process, ``jobs`` at a time; rows come back in spec order.
    ``sink(rows)`` is called after every model with the rows finished so far."""
    done: dict[str, dict] = {}
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
        futures = {pool.submit(run_one, spec, timeout, threads): spec for spec in specs}
        for future in concurrent.futures.as_completed(futures):
            spec = futures[future]
            done[spec] = {"model": spec, **future.result()}
            print(format_row(done[spec]), file=out, flush=True)
            if sink is not None:
                sink([done[s] for s in specs if s in done])
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
    ap.add_argument("--one", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        warnings.filterwarnings("ignore")
        print(json.dumps(audit_one(args.one)), flush=True)
        return 0
    specs: list[str] = []
    for library, names in (("timm", timm_names), ("transformers", transformers_types)):
        if args.library in (library, "all"):
            chosen = args.only.split(",") if args.only else pick(names(), args.sample, args.seed)
            specs += [f"{library}:{n}" for n in chosen if n]
    kept = _resumed(args.json, specs) if args.resume else []
    todo = [s for s in specs if s not in {r["model"] for r in kept}]
    sink = (lambda rows: _write(args.json, kept + rows)) if args.json else None
    rows = kept + sweep(todo, args.timeout, jobs=args.jobs, threads=args.threads, sink=sink)
    rows.sort(key=lambda r: specs.index(r["model"]))
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
