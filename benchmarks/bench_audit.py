"""How long an audit takes, as a multiple of one training step of the same model.

    python benchmarks/bench_audit.py [--repeat 3] [--threads N]

For torchvision ResNet-50 (224x224, batch 2) and a GPT-2-small-sized model (12 layers, 768
wide, 128 tokens, untied head), measures in the same process: one forward+backward pass
(float32, train mode, the baseline), then a full audit (trace, analysis, float64
confirmation), and prints the ratio with the audit's own stage timings.  Target: <= 10x.
Times are best-of-N to keep other load out of the numbers.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import torch


def resnet50():
    from torchvision.models import resnet50

    return resnet50(), torch.randn(2, 3, 224, 224)


def gpt2_small():
    import transformers

    cfg = transformers.GPT2Config(n_layer=12, n_embd=768, n_head=12, n_positions=128,
                                  tie_word_embeddings=False)
    return transformers.GPT2LMHeadModel(cfg), torch.randint(0, cfg.vocab_size, (1, 128))


def training_step(model, x) -> float:
    model.train()
    start = time.perf_counter()
    out = model(x)
    out = out.logits if hasattr(out, "logits") else out
    out.float().sum().backward()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    import wdaudit

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':12s} {'fwd+bwd':>9s} {'audit':>8s} {'ratio':>6s}   stages")
    for name, build in (("resnet50", resnet50), ("gpt2-small", gpt2_small)):
        torch.manual_seed(0)
        model, x = build()
        training_step(model, x)  # warm-up: allocator, kernels
        step = min(training_step(model, x) for _ in range(args.repeat))
        best, report = float("inf"), None
        for _ in range(args.repeat):
            start = time.perf_counter()
            report = wdaudit.audit(model, x)
            elapsed = time.perf_counter() - start
            if elapsed < best:
                best, stages = elapsed, dict(report.timings)
        detail = ", ".join(f"{k} {v:.2f}s" for k, v in stages.items())
        print(f"{name:12s} {step:8.2f}s {best:7.2f}s {best / step:5.1f}x   {detail}; "
              f"{len(report.ineffective)}/{len(report.parameters)} ineffective, "
              f"{report.confirmation.passes} passes, {report.coverage.method}")


if __name__ == "__main__":
    main()
