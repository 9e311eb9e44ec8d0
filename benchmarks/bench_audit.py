"""How long an audit takes, as a multiple of one training step of the same model.

    python benchmarks/bench_audit.py [--repeat 3] [--threads N]     # the CPU table
    python benchmarks/bench_audit.py --device cuda                  # the GPU rows
    python benchmarks/bench_audit.py --timm focalnet_huge_fl4 mixnet_xl   # large timm models

For torchvision ResNet-50 (224x224, batch 2) and a GPT-2-small-sized model (12 layers, 768
wide, 128 tokens, untied head), measures in the same process, alternating so that a change in
the machine's load hits both alike: one forward+backward pass (float32, train mode, the
baseline) and a full audit (trace, analysis, confirmation).  Prints the medians, their ratio,
and the audit's stage timings (``Report.timings``, which add up to the audit's wall time).
With ``--device cuda`` both are CUDA-synchronised and the peak GPU memory is shown; the GPU
rows add ResNet-50 at batch 32 and GPT-2 at 8x512.  ``--timm NAME ...`` audits timm models
at 64x64, batch 2, one at a time, with their stage timings.  Target: ratio <= 3x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch


def resnet50(batch: int = 2):
    from torchvision.models import resnet50

    return resnet50(), torch.randn(batch, 3, 224, 224)


def gpt2_small(batch: int = 1, tokens: int = 128):
    import transformers

    cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=tokens,
                                  tie_word_embeddings=False)
    return transformers.GPT2LMHeadModel(cfg), torch.randint(0, cfg.vocab_size, (batch, tokens))


def timm_model(name: str):
    import timm

    try:  # transformers with a fixed grid are built for the small image
        model = timm.create_model(name, pretrained=False, img_size=64)
    except TypeError:
        model = timm.create_model(name, pretrained=False)
    return model, torch.randn(2, 3, 64, 64)


CPU_ROWS = (("resnet50, 224², batch 2", lambda: resnet50(2)),
            ("gpt2-small untied, 1x128", lambda: gpt2_small(1, 128)),
            # a user's own batch: confirmation runs on budget.CAP_BATCH of its examples
            ("resnet50, 224², batch 32", lambda: resnet50(32)))
GPU_ROWS = CPU_ROWS + (("gpt2-small untied, 8x512", lambda: gpt2_small(8, 512)),)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(model, x, device: torch.device) -> float:
    model.train()
    _sync(device)
    start = time.perf_counter()
    out = model(x)
    out = out.logits if hasattr(out, "logits") else out
    out.float().sum().backward()
    _sync(device)
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def audit_once(model, x, device: torch.device):
    import wdaudit

    _sync(device)
    start = time.perf_counter()
    report = wdaudit.audit(model, x, device=device)
    _sync(device)
    return time.perf_counter() - start, report


def measure(label: str, build, device: torch.device, repeat: int) -> None:
    torch.manual_seed(0)
    model, x = build()
    model, x = model.to(device), x.to(device)
    training_step(model, x, device)  # warm-up: allocator, kernels
    audit_once(model, x, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    steps, audits = [], []
    for _ in range(repeat):  # alternate, so that load changes hit both alike
        steps.append(training_step(model, x, device))
        audits.append(audit_once(model, x, device))
    step = statistics.median(steps)
    audits.sort(key=lambda t: t[0])
    wall, report = audits[len(audits) // 2]
    stages = ", ".join(f"{k} {v:.2f}" for k, v in report.timings.items())
    c = report.confirmation
    extra = f"; peak {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" \
        if device.type == "cuda" else ""
    print(f"| {label} | {step:.3f} s | {wall:.2f} s | {wall / step:.1f}x | {stages} "
          f"(sum {sum(report.timings.values()):.2f}); {c.passes} passes, {c.precision}, "
          f"batch {c.batch}, {report.coverage.method}; "
          f"{len(report.ineffective)}/{len(report.parameters)} ineffective{extra} |", flush=True)


def measure_timm(name: str, device: torch.device) -> None:
    torch.manual_seed(0)
    try:
        model, x = timm_model(name)
    except Exception as exc:  # noqa: BLE001 - a model that does not build is a line, not a crash
        print(f"| {name} | does not build: {type(exc).__name__}: {exc} |")
        return
    model, x = model.to(device), x.to(device)
    wall, report = audit_once(model, x, device)
    stages = ", ".join(f"{k} {v:.1f}" for k, v in report.timings.items())
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"| {name} | {params:.0f}M | {wall:.1f} s | {stages} | "
          f"{report.summary()['unknown']} unknown, confirmed: {report.confirmation.performed} |",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--timm", nargs="*", default=None, metavar="NAME",
                        help="audit these timm models (64x64, batch 2) instead")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}"
    print(f"torch {torch.__version__}, {where}")
    if args.timm is not None:
        print("| model | parameters | audit | stages (s) | result |\n|---|---:|---:|---|---|")
        for name in args.timm:
            measure_timm(name, device)
        return
    print("| model | forward+backward | audit | ratio | stages (s) |\n|---|---:|---:|---:|---|")
    for label, build in (GPU_ROWS if device.type == "cuda" else CPU_ROWS):
        measure(label, build, device, args.repeat)


if __name__ == "__main__":
    main()
