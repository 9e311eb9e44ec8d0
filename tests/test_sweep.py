"""The breadth sweep (tools/sweep/sweep.py) on a seeded sample of quick models: each model runs
in its own subprocess under a time limit, and the sample audits clean.  The full registries run
from the command line (docs/architectures.md)."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

SWEEP = Path(__file__).resolve().parents[1] / "tools" / "sweep" / "sweep.py"
QUICK = {"timm": sorted(["test_resnet", "test_vit", "test_efficientnet", "test_convnext"]),
         "transformers": ["fnet", "gpt2", "llama"]}


def _sample(library: str, seed: int = 0) -> list[str]:
    import random

    return sorted(random.Random(seed).sample(QUICK[library], 2))


@pytest.mark.slow  # subprocesses importing timm and transformers
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


@pytest.mark.slow  # subprocesses importing timm and transformers
def test_a_hung_or_dead_worker_is_replaced_and_the_sweep_goes_on():
    sys.path.insert(0, str(SWEEP.parent))
    try:
        import sweep
    finally:
        sys.path.remove(str(SWEEP.parent))
    out = io.StringIO()
    rows = sweep.sweep(["selftest:hang", "selftest:die", "transformers:gpt2"], timeout=30,
                       out=out)
    assert [r["status"] for r in rows] == ["timeout", "crash", "clean"], rows
    assert rows[0]["seconds"] >= 30
    assert "exit 3" in rows[1]["error"]
    assert out.getvalue().count("\n") == 3


@pytest.mark.slow  # subprocesses importing timm and transformers
def test_resume_audits_only_the_models_missing_from_the_file(tmp_path):
    rows_file = tmp_path / "rows.json"
    command = [sys.executable, str(SWEEP), "--library", "transformers", "--timeout", "120",
               "--json", str(rows_file)]
    first = subprocess.run(command + ["--only", "gpt2"], capture_output=True, text=True,
                           timeout=400)
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(command + ["--only", "gpt2,llama", "--resume"], capture_output=True,
                           text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-2000:]
    audited = [line.split()[0] for line in again.stdout.splitlines() if line.strip()]
    assert "transformers:llama" in audited and "transformers:gpt2" not in audited
    rows = json.loads(rows_file.read_text())
    assert [r["model"] for r in rows] == ["transformers:gpt2", "transformers:llama"]
    assert "transformers: 2 sampled, 2 built, 2 audited (100 %), 2 clean" in again.stdout
