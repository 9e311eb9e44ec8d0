"""The breadth sweep (benchmarks/sweep.py) on a seeded sample of quick models: each model runs
in its own subprocess under a time limit, and the sample audits clean.  The full registries run
from the command line (README, "Tested on real architectures")."""

import json
import subprocess
import sys
from pathlib import Path

SWEEP = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep.py"
QUICK = {"timm": sorted(["test_resnet", "test_vit", "test_efficientnet", "test_convnext"]),
         "transformers": ["fnet", "gpt2", "llama"]}


def _sample(library: str, seed: int = 0) -> list[str]:
    import random

    return sorted(random.Random(seed).sample(QUICK[library], 2))


def test_a_seeded_sample_audits_clean(tmp_path):
    rows_file = tmp_path / "rows.json"
    only = {lib: ",".join(_sample(lib)) for lib in QUICK}
    for library, names in only.items():
        done = subprocess.run([sys.executable, str(SWEEP), "--library", library, "--only", names,
                               "--timeout", "120", "--json", str(rows_file)],
                              capture_output=True, text=True, timeout=400)
        assert done.returncode == 0, done.stderr[-2000:]
        rows = json.loads(rows_file.read_text())
        assert [r["model"] for r in rows] == [f"{library}:{n}" for n in names.split(",")]
        for row in rows:  # one line per model, and a summary naming the library
            assert row["model"] in done.stdout
            assert row["status"] == "clean", row
        assert f"{library}: 2 sampled, 2 built, 2 audited (100 %), 2 clean" in done.stdout
