"""The command line's advice: --steps and --compare (issue 9).  Expectations come from the
Python API on the same fixture, never from a previous run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import wdaudit
from wdaudit.frontend.cli import main
from wdaudit.frontend.load import load, parse_target

ROOT = Path(__file__).resolve().parents[1]
TARGET = "fixtures/cnn_batchnorm.py"


@pytest.fixture(autouse=True)
def at_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _api_report(steps):
    loaded = load(parse_target(TARGET), None)
    return wdaudit.audit(loaded.model, loaded.example_inputs, optimizer=loaded.optimizer,
                         total_steps=steps)


def test_steps_and_compare_in_the_text_report():
    report = _api_report(10 ** 6)
    result = run(TARGET, "--steps", 10 ** 6, "--compare")
    assert result.exit_code == 1, result.output
    out = result.stdout
    eqs = [g.equilibrium for g in report.groups if g.kind != "no-effect"]
    assert eqs and all(e.reaches_equilibrium for e in eqs)
    assert f"angular update {eqs[0].angular_update:.3g} rad/step" in out
    assert f"--steps {10 ** 6}: reached" in out
    assert "Rules of thumb against the proof" in out
    for rule, f in report.folklore.items():
        line = next(x for x in out.splitlines() if x.startswith(rule + " "))
        assert line.split()[1] == str(len(f.decayed))


def test_without_compare_no_table_and_json_always_has_folklore():
    plain = run(TARGET)
    assert "Rules of thumb" not in plain.stdout and "Equilibrium" in plain.stdout
    doc = json.loads(run(TARGET, "--format", "json", "--steps", 10).stdout)
    assert set(doc["folklore"]) >= {"ndim", "timm", "huggingface", "torchvision"}
    decayed_groups = [g for g in doc["groups"] if g["kind"] != "no-effect"]
    assert all(g["equilibrium"]["total_steps"] == 10 for g in decayed_groups)
    assert all(g["equilibrium"]["reaches_equilibrium"] is False for g in decayed_groups)


def test_steps_must_be_positive():
    result = run(TARGET, "--steps", 0)
    assert result.exit_code == 2 and "--steps" in result.output
