"""Architectures by name (``timm:``, ``torchvision:``, ``hf:``), run through the command line:
built offline from the library's own configuration, inputs derived from it, ``--set`` and
``--input-shape`` on top, and unknown names answered with the closest ones.  Expected reports
come from ``audit()`` on the same architecture built directly with the library."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import wdaudit
from wdaudit.frontend.architectures import load_named, parse_set
from wdaudit.frontend.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_BERT = ("--set", "num_hidden_layers=2", "--set", "hidden_size=16", "--set",
             "num_attention_heads=2", "--set", "intermediate_size=32", "--set", "vocab_size=64")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _verdicts(report: dict) -> dict:
    return {p["name"]: p["verdict"] for p in report["parameters"]}


def test_torchvision_by_name_is_the_library_model_audited():
    result = run("torchvision:resnet18", "--input-shape", "2,3,32,32", "--format", "json")
    assert result.exit_code == 1, result.output
    got = json.loads(result.stdout)
    import torchvision

    model = torchvision.models.resnet18(weights=None)
    direct = wdaudit.audit(model, torch.randn(2, 3, 32, 32), confirm=False)
    assert _verdicts(got) == _verdicts(direct.to_dict())
    assert {f["code"] for f in got["findings"]} == {f.code for f in direct.findings}


def test_timm_by_name_with_set_and_inputs_from_its_config():
    loaded = load_named("timm:resnet18", (("layers", [1, 1, 1, 1]), ("num_classes", 5)))
    assert tuple(loaded.example_inputs.shape) == (2, 3, 224, 224)  # timm's pretrained_cfg
    assert loaded.model.fc.out_features == 5 and len(loaded.model.layer1) == 1
    assert "pretrained=False" in loaded.origin["model"]
    result = run("timm:resnet18", "--set", "layers=[1,1,1,1]", "--input-shape", "2,3,32,32",
                 "--format", "json")
    assert result.exit_code == 1, result.output
    assert any(f["code"] == "WD001" for f in json.loads(result.stdout)["findings"])


def test_hf_model_type_with_set_fields_and_token_inputs():
    result = run("hf:bert", *TINY_BERT, "--format", "json")
    assert result.exit_code == 1, result.output
    got = json.loads(result.stdout)
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2,
                                     intermediate_size=32, vocab_size=64)
    model = transformers.BertModel(config)
    loaded = load_named("hf:bert", tuple(parse_set(v) for v in TINY_BERT[1::2]))
    ids = loaded.example_inputs
    assert ids.dtype == torch.long and ids.shape == (2, 16) and int(ids.max()) < 64
    assert _verdicts(got) == _verdicts(wdaudit.audit(model, ids, confirm=False).to_dict())


def test_hf_encoder_decoder_gets_decoder_inputs_too():
    result = run("hf:t5", "--set", "num_layers=1", "--set", "d_model=16", "--set", "d_kv=8",
                 "--set", "d_ff=32", "--set", "num_heads=2", "--set", "vocab_size=64",
                 "--no-confirm", "--format", "json")  # the point: T5 runs on these inputs
    assert result.exit_code == 1, result.output
    assert any(f["code"] == "WD001" for f in json.loads(result.stdout)["findings"])


def test_hf_config_json_and_head(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=32, n_positions=8)
    config.save_pretrained(tmp_path)
    loaded = load_named(f"hf:{tmp_path}:CausalLM")
    assert type(loaded.model).__name__ == "GPT2LMHeadModel"
    assert loaded.example_inputs.shape == (2, 8)  # the sequence fits n_positions
    assert load_named(f"hf:{tmp_path / 'config.json'}").model.config.n_embd == 8


@pytest.mark.parametrize("target, close", [
    ("timm:no_such_model", None), ("timm:resnt18", "resnet18"),
    ("torchvision:resnet19", "resnet18"), ("hf:brt", "bert"),
])
def test_unknown_names_exit_2_with_the_closest(target, close):
    result = run(target)
    assert result.exit_code == 2
    message = result.output
    assert "has no architecture" in message and "Did you mean:" in message, message
    if close:
        assert close in message.split("Did you mean:")[1]
    assert "Traceback" not in message


@pytest.mark.parametrize("args, says", [
    (("hf:bert", "--set", "num_hiden_layers=2"), "num_hidden_layers"),
    (("torchvision:resnet18", "--set", "no_such_argument=1"), "no_such_argument"),
    (("fixtures/clean_mlp.py", "--set", "width=2"), "architecture given by name"),
    (("hf:bert", "--set", "2=3"), "key=value"),
    (("hf:bert:NoSuchHead",), "HEAD"),
])
def test_bad_set_and_head_exit_2(args, says):
    result = run(*args)
    assert result.exit_code == 2 and says in result.output, result.output
    assert "Traceback" not in result.output


def test_parse_set_reads_literals_else_strings():
    assert parse_set("a=2") == ("a", 2)
    assert parse_set("b=(32, 32)") == ("b", (32, 32))
    assert parse_set("c=gelu") == ("c", "gelu")
    assert parse_set("d=False") == ("d", False)


def test_python_dash_m_is_the_command():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "wdaudit", "timm:no_such_model"], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 2 and "Did you mean:" in done.stderr, done.stderr


def test_no_library_is_imported_before_its_prefix_is_used():
    """Only function bodies import timm, torchvision, transformers or lightning (the package's
    module-level imports are what ``import wdaudit`` and the command line pay for)."""
    libraries = {"timm", "torchvision", "transformers", "lightning", "pytorch_lightning"}
    for path in (ROOT / "wdaudit").rglob("*.py"):
        if path.parent.name == "integrations" and path.stem in libraries:
            continue  # imported by name by the user who has that library
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not {n.split(".")[0] for n in names} & libraries, (path, names)
