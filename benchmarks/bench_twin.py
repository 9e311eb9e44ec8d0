"""A LLaMA-3-70B-sized model confirmed on a twin: time and peak memory of the whole audit.

    python benchmarks/bench_twin.py [--layers 80] [--threads N] [--json]

The model is built on the meta device (its 70 billion parameters take no memory), audited
statically, and its claims confirmed on a twin with reduced widths (``confirm_on="twin"``).
Printed: the wall time of the audit and of each of its stages, the process's peak resident
memory (getrusage's lifetime maximum, so it includes importing torch and transformers and
building the meta model), whether the claims were confirmed, the twin's widths, and whether
the twin's claims are the model's static claims one to one (checked here again from the
twin's and the model's static audits, ``confirm=False``).  Issue 27's target: under 60 s and 4 GB.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import warnings

LLAMA_3_70B = dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                   num_attention_heads=64, num_key_value_heads=8, vocab_size=128256)


def build(layers: int):
    import torch
    import transformers

    config = transformers.LlamaConfig(**dict(LLAMA_3_70B, num_hidden_layers=layers))
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    model.train()
    ids = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    return model, ids


def claimed(report) -> set:
    """The claims as sets of names: each group's members, each no-effect parameter."""
    return {(g.kind, frozenset(g.names)) for g in report.groups}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=LLAMA_3_70B["num_hidden_layers"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="one JSON line instead of text")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import wdaudit

    model, ids = build(args.layers)
    start = time.perf_counter()
    report = wdaudit.audit(model, ids, confirm_on="twin")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes
    # independently of the audit's own comparison: the twin's static claims, the model's
    from wdaudit.twin import build as twin_of

    twin = twin_of(model, (ids,))
    twin_static = wdaudit.audit(twin.model, twin.inputs, confirm=False)
    static = wdaudit.audit(model, ids, confirm=False)
    conf = report.confirmation
    row = {
        "model": f"LLaMA-3-70B-sized LlamaForCausalLM, {args.layers} layers, meta device",
        "parameters": sum(p.numel() for p in model.parameters()),
        "tensors": len(report.parameters),
        "ineffective": len(report.ineffective),
        "seconds": round(seconds, 2),
        "peak_rss_gib": round(peak / 2**30, 2),
        "confirmed": conf.performed and conf.on == "twin"
        and all(g.confirmed for g in report.groups),
        "twin": {k: small for k, (_, small) in conf.twin.items()},
        "twin_claims_equal_static": claimed(twin_static) == claimed(static)
        and twin_static.ineffective == static.ineffective,
        "reason": conf.reason,
        "timings": {k: round(v, 2) for k, v in report.timings.items()},
        "threads": torch.get_num_threads(),
    }
    if args.json:
        print(json.dumps(row))
        return
    for key, value in row.items():
        print(f"{key:>26}: {value}")
    sys.exit(0 if row["confirmed"] and row["twin_claims_equal_static"] else 1)


if __name__ == "__main__":
    main()
