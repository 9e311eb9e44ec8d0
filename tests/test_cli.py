"""The command line: every format, exit status and bad input, run through click's CliRunner.

Expectations are derived from the models (their module structure, their optimizer's groups)
or from the Python API on the same model, never pasted from a previous run.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import wdaudit
import wdaudit.api  # noqa: F401 - the engine imported before `isolated` notes what is loaded
from wdaudit.frontend import cli
from wdaudit.frontend.cli import main
from wdaudit.frontend.load import load, parse_target
from wdaudit.frontend.locations import Locator
from wdaudit.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = {p.stem: p for p in sorted((ROOT / "fixtures").glob("*.py"))}
SARIF_SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-schema-2.1.0.json").read_text())


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """Each test starts in the repository root; files imported by a test are forgotten."""
    monkeypatch.chdir(ROOT)
    path, modules = list(sys.path), set(sys.modules)
    yield
    sys.path[:] = path
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if "site-packages" not in file and not file.startswith(str(Path(torch.__file__).parent)):
            del sys.modules[name]


def run(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


@lru_cache(maxsize=None)
def fixture_run(name: str, *flags: str):
    """Each fixture is audited once per set of flags (from the repository root)."""
    return run(f"fixtures/{name}.py", *flags)


def fixture_json(name: str) -> dict:
    result = fixture_run(name, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


@lru_cache(maxsize=None)
def fixture_loaded(name: str):
    return load(parse_target(f"fixtures/{name}.py"))


def codes_by_parameter(doc: dict) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for f in doc["findings"]:
        for p in f["parameters"]:
            found.setdefault(p, set()).add(f["code"])
    return found


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    return path


# A linear layer with a bias feeding BatchNorm: its weight is scale-free (WD001), its bias has
# no effect (WD003).  Everything after the BatchNorm is effective.
TINY = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.bn = nn.BatchNorm1d(8)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.stem(x))))


def build_model():
    return Tiny()


example_inputs = torch.randn(6, 4)
'''


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return write(tmp_path, "tiny.py", TINY)


# --- startup ---------------------------------------------------------------------------------


_NO_TORCH = """
import runpy, sys
sys.argv = ["wdaudit", *sys.argv[1:]]
try:
    runpy.run_module("wdaudit", run_name="__main__")
except SystemExit as exc:
    assert exc.code in (0, None), exc.code
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("torch imported:", loaded[:3], file=sys.stderr)
sys.exit(3 if loaded else 0)
"""


@pytest.mark.parametrize("flag", ["--version", "--help", "--list-rules"])
def test_the_answers_that_need_no_model_import_no_torch(flag):
    """`python -m wdaudit --version` (and --help, --list-rules) answer without importing torch,
    which takes seconds; checked on what was imported, not on a clock."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, flag], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_the_public_names_are_there_on_first_use():
    """The package imports its API lazily; every public name still resolves, and
    ``wdaudit.audit`` is the function even after the driver module of that name is loaded."""
    import wdaudit.audit as driver_or_function  # noqa: F401 - binds the submodule on the package

    for name in wdaudit.__all__:
        assert getattr(wdaudit, name) is not None, name
    assert callable(wdaudit.audit) and wdaudit.audit.__module__ == "wdaudit.api"
    assert sys.modules["wdaudit.audit"].Options is wdaudit.Options


# --- the fixtures, end to end ----------------------------------------------------------------


def validate_sarif(doc: dict) -> None:
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(doc)
    (run_,) = doc["runs"]
    rules = run_["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    for r in rules:
        assert r["help"]["text"] and r["help"]["markdown"] and r["shortDescription"]["text"]
    base = Path(run_["originalUriBaseIds"]["%SRCROOT%"]["uri"].removeprefix("file://"))
    for result in run_["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        (loc,) = result["locations"]
        art = loc["physicalLocation"]["artifactLocation"]
        assert art["uriBaseId"] == "%SRCROOT%" and (base / art["uri"]).is_file()
        assert loc["physicalLocation"]["region"]["startLine"] >= 1
        assert len(result["partialFingerprints"]["wdaudit/v1"]) == 32
    prints = [r["partialFingerprints"]["wdaudit/v1"] for r in run_["results"]]
    assert len(set(prints)) == len(prints)


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_every_fixture_runs_and_its_sarif_validates(name):
    result = fixture_run(name, "--format", "sarif")
    doc = json.loads(result.stdout)
    validate_sarif(doc)
    results = doc["runs"][0]["results"]
    failing = [r for r in results if r["level"] in ("warning", "error")]
    assert result.exit_code == (1 if failing else 0), result.output
    assert result.stderr == ""  # no terminal: no progress, and torch's noise is kept away

    # the CLI reports exactly what the Python API finds on the same model
    loaded = fixture_loaded(name)
    report = wdaudit.audit(loaded.model, loaded.example_inputs, optimizer=loaded.optimizer,
                           locate=Locator(loaded.model))
    assert sorted((r["ruleId"], tuple(r["properties"]["parameters"])) for r in results) == \
        sorted((f.code, f.parameters) for f in report.findings)


def test_cnn_fixture_conv_weights_are_scale_free_and_conv_biases_have_no_effect():
    loaded = fixture_loaded("cnn_batchnorm")
    convs = {n: m for n, m in loaded.model.named_modules() if isinstance(m, nn.Conv2d)}
    found = codes_by_parameter(fixture_json("cnn_batchnorm"))
    for name, conv in convs.items():
        assert "WD001" in found[f"{name}.weight"]  # every conv is followed by BatchNorm
        if conv.bias is not None:
            assert found[f"{name}.bias"] == {"WD003"}
    head = [n for n, m in loaded.model.named_modules() if isinstance(m, nn.Linear)]
    assert not any(p.startswith(head[-1] + ".") for p in found)  # the classifier regularises
    doc = fixture_json("cnn_batchnorm")
    sgd_decay = loaded.optimizer.param_groups[0]["weight_decay"]
    assert doc["summary"]["assumed_decay"] is None
    assert {p["weight_decay"] for p in doc["parameters"]} == {sgd_decay}


def test_cnn_fixture_findings_point_at_the_lines_that_build_the_modules():
    for f in fixture_json("cnn_batchnorm")["findings"]:
        owner = f["parameters"][0].rpartition(".")[0]
        line = Path(f["location"]["path"]).read_text().splitlines()[f["location"]["line"] - 1]
        assert f"self.{owner} = " in line


def test_postnorm_fixture_assumes_decay_and_flags_each_blocks_bias_not_its_weight():
    doc = fixture_json("postnorm_mlp")
    assert doc["summary"]["assumed_decay"] == "all"
    found = codes_by_parameter(doc)
    model = fixture_loaded("postnorm_mlp").model
    blocks = [n for n, m in model.named_modules() if type(m).__name__ == "PostNormBlock"]
    assert blocks
    for b in blocks:  # LN(h + f(h)): f's bias scales with the norm before it; f's weight acts
        assert found.get(f"{b}.fc.bias") == {"WD001"}
        assert f"{b}.fc.weight" not in found
    assert all("--assume-decay all" in f["message"] for f in doc["findings"])


def test_transformer_fixture_residual_stream_is_one_group_partly_decayed():
    doc = fixture_json("preln_transformer")
    loaded = fixture_loaded("preln_transformer")
    model, optimizer = loaded.model, loaded.optimizer
    embeddings = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    projections = {n for n, _ in model.named_parameters() if ".c_proj." in n}
    (wd001,) = [f for f in doc["findings"] if f["code"] == "WD001"]
    decayed = {n for n, p in model.named_parameters()
               for g in optimizer.param_groups if g["weight_decay"] > 0
               for q in g["params"] if q is p}
    assert set(wd001["parameters"]) == (embeddings | projections) & decayed
    (wd004,) = [f for f in doc["findings"] if f["code"] == "WD004"]
    assert set(wd004["parameters"]) == embeddings | projections
    assert projections - decayed  # the c_proj biases are the undecayed members


def test_clean_fixture_exits_zero_with_nothing_to_say():
    result = fixture_run("clean_mlp")
    assert result.exit_code == 0, result.output
    assert "No findings." in result.stdout
    assert fixture_json("clean_mlp")["findings"] == []


# --- formats ---------------------------------------------------------------------------------


def test_json_is_the_reports_to_dict():
    doc = fixture_json("cnn_batchnorm")
    loaded = fixture_loaded("cnn_batchnorm")
    report = wdaudit.audit(loaded.model, loaded.example_inputs, optimizer=loaded.optimizer,
                           locate=Locator(loaded.model))
    expected = report.to_dict(timings=False)
    assert doc.pop("timings").keys() == report.timings.keys()
    assert _without_norms(doc) == _without_norms(expected)


def _without_norms(doc: dict) -> dict:
    """The fixture's weights are not seeded, so two loads differ in the norms the
    equilibrium reports (and only there)."""
    for g in doc["groups"]:
        for key in ("norm", "norm_ratio", "current_angular_update", "steps_to_equilibrium"):
            assert key in (g["equilibrium"] or {key: None})
            (g["equilibrium"] or {}).pop(key, None)
    return doc


def test_text_groups_findings_by_rule_with_locations_and_counts():
    result = fixture_run("cnn_batchnorm")
    doc = fixture_json("cnn_batchnorm")
    out = result.stdout
    assert "\x1b[" not in out  # piped: plain
    for f in doc["findings"]:
        where = f"fixtures/cnn_batchnorm.py:{f['location']['line']}"
        assert any(where in line and f["message"][:40] in line for line in out.splitlines())
    headers = [line.split()[0] for line in out.splitlines() if re.match(r"WD\d{3} ", line)]
    assert headers == sorted({f["code"] for f in doc["findings"]})
    assert f"Found {len(doc['findings'])} findings" in out


def test_text_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.setattr(cli, "_is_terminal", lambda stream: True)
    coloured = run("fixtures/cnn_batchnorm.py", "--quiet")
    assert "\x1b[" in coloured.stdout
    plain = run("fixtures/cnn_batchnorm.py", "--quiet", env={"NO_COLOR": "1"})
    assert "\x1b[" not in plain.stdout and "WD001" in plain.stdout


def test_progress_on_stderr_only_on_a_terminal_and_not_with_quiet(tiny, monkeypatch):
    assert run(tiny).stderr == ""
    monkeypatch.setattr(cli, "_is_terminal", lambda stream: True)
    assert "Tiny" in run(tiny).stderr
    assert run(tiny, "--quiet").stderr == ""


def test_github_annotations_one_per_finding():
    result = fixture_run("cnn_batchnorm", "--format", "github")
    doc = fixture_json("cnn_batchnorm")
    lines = result.stdout.splitlines()
    assert len(lines) == len(doc["findings"])
    for line, f in zip(lines, doc["findings"]):
        m = re.fullmatch(r"::(\w+) file=([^,]+),line=(\d+),title=(WD\d{3}) [a-z0-9-]+::(.*)", line)
        assert m, line
        assert m[1] == {"warning": "warning", "error": "error", "info": "notice"}[f["severity"]]
        assert (m[2], int(m[3]), m[4]) == ("fixtures/cnn_batchnorm.py", f["location"]["line"],
                                           f["code"])


def test_github_escaping():
    from wdaudit.frontend.formats import Context, github
    from wdaudit.report import CHECKED, Confirmation, Coverage, Finding, Location, Report

    finding = Finding("WD001", "warning", "50% of it\r\nis: scale, free", ("a",),
                      Location("odd:dir,name/m.py", 3))
    report = Report("M", {}, (), (), (finding,), Coverage("symbolic_trace", 0, (), 0),
                    Confirmation(CHECKED, "cpu", 0))
    (line,) = github.render(report, Context("m.py")).splitlines()
    props, message = line[len("::warning "):].split("::", 1)
    assert message == "50%25 of it%0D%0Ais: scale, free"
    assert props.split(",")[0] == "file=odd%3Adir%2Cname/m.py"
    assert github.escape_property("100%") == "100%25"


def test_sarif_fingerprints_are_stable_across_runs():
    first = json.loads(fixture_run("cnn_batchnorm", "--format", "sarif").stdout)
    second = json.loads(run("fixtures/cnn_batchnorm.py", "--format", "sarif").stdout)
    prints = [[r["partialFingerprints"] for r in d["runs"][0]["results"]] for d in (first, second)]
    assert prints[0] == prints[1]


def test_sarif_for_files_outside_the_checkout_and_modules_built_out_of_sight(tmp_path):
    write(tmp_path, "hidden.py", "import copy\nimport torch\nfrom torch import nn\n\n"
          "# deepcopy does not call __init__: no construction site is recorded\n"
          "model = copy.deepcopy(nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8)))\n"
          "example_inputs = torch.randn(6, 4)\n")
    result = run(tmp_path / "hidden.py", "--format", "sarif")  # run from the repository root
    doc = json.loads(result.stdout)
    jsonschema.Draft4Validator(SARIF_SCHEMA).validate(doc)
    results = doc["runs"][0]["results"]
    assert results
    for r in results:  # no construction site was seen: the result points at the target file
        location = r["locations"][0]["physicalLocation"]
        assert location["artifactLocation"] == {"uri": (tmp_path / "hidden.py").as_uri()}
        assert location["region"]["startLine"] == 1


def test_parameters_built_by_the_standard_library_point_at_the_users_line():
    from wdaudit.frontend.locations import recording

    class Raw(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, 3))

    with recording():
        model = copy.deepcopy(Raw()); line = sys._getframe().f_lineno  # noqa: E702
    assert Locator(model)(["w"]) == wdaudit.Location(__file__, line)


def test_output_file(tiny):
    result = run(tiny, "--format", "sarif", "-o", "out.sarif")
    assert result.exit_code == 1 and result.stdout == ""
    validate_sarif(json.loads(Path("out.sarif").read_text()))


def test_list_rules_documents_every_rule():
    result = run("--list-rules")
    assert result.exit_code == 0
    blocks = result.stdout.split("\n\n")
    assert len(blocks) == len(RULES)
    for block, rule in zip(blocks, RULES.values()):
        assert block.startswith(f"{rule.code} {rule.name} ({rule.severity})")
        assert all(f"  {label}:" in block for label in ("What", "Why", "Example"))
    assert "angular step size" in blocks[0] and "remove" not in blocks[0]


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and wdaudit.__version__ in result.stdout


# --- exit status ---------------------------------------------------------------------------


def test_exit_status_follows_fail_on_and_exit_zero():
    assert fixture_run("cnn_batchnorm").exit_code == 1
    assert fixture_run("cnn_batchnorm", "--exit-zero").exit_code == 0
    assert fixture_run("cnn_batchnorm", "--fail-on", "error").exit_code == 0  # warnings only
    assert fixture_run("clean_mlp", "--fail-on", "info").exit_code == 0
    info_only = ("--select", "WD004")
    assert fixture_run("preln_transformer", *info_only).exit_code == 0
    assert fixture_run("preln_transformer", *info_only, "--fail-on", "info").exit_code == 1


def test_exit_zero_leaves_errors_alone(tmp_path):
    result = run(tmp_path / "missing.py", "--exit-zero")
    assert result.exit_code == 2


# --- loading -------------------------------------------------------------------------------


def test_target_splits_on_the_last_colon_when_a_name_follows():
    assert parse_target("m.py").factory is None and parse_target("m.py").is_file
    assert (parse_target("m.py:build").source, parse_target("m.py:build").factory) == \
        ("m.py", "build")
    win = parse_target(r"C:\work\m.py")
    assert (win.source, win.factory, win.is_file) == (r"C:\work\m.py", None, True)
    win = parse_target(r"C:\work\m.py:Net.tiny")
    assert (win.source, win.factory) == (r"C:\work\m.py", "Net.tiny")
    mod = parse_target("pkg.models:build")
    assert (mod.source, mod.factory, mod.is_file) == ("pkg.models", "build", False)


def test_package_module_factory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/models.py", TINY.replace("def build_model", "def tiny_factory"))
    result = run("pkg.models:tiny_factory", "--format", "json")
    assert result.exit_code == 1, result.output
    assert codes_by_parameter(json.loads(result.stdout))["stem.bias"] == {"WD003"}
    missing = run("pkg.nothing:build")
    assert missing.exit_code == 2 and "no such module" in missing.stderr


def test_factory_dict_with_inputs_and_a_coupled_adam(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "d.py", TINY + '''

def audit_me():
    model = Tiny()
    return {"model": model, "example_inputs": (torch.randn(5, 4),),
            "optimizer": torch.optim.Adam(model.parameters(), weight_decay=1e-2)}
''')
    result = run("d.py:audit_me", "--format", "json")
    doc = json.loads(result.stdout)
    (wd002,) = [f for f in doc["findings"] if f["code"] == "WD002"]
    assert set(wd002["parameters"]) == {p["name"] for p in doc["parameters"]}


def test_lightning_style_module_with_scheduler_dict(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    source = TINY.replace("example_inputs = torch.randn(6, 4)", "")
    source = source.replace("def build_model", "def _not_the_model")
    write(tmp_path, "lit.py", source + '''

class Lit(Tiny):
    def __init__(self):
        super().__init__()
        self.example_input_array = torch.randn(6, 4)

    def configure_optimizers(self):
        opt = torch.optim.SGD([{"params": self.stem.parameters(), "weight_decay": 0.0},
                               {"params": list(self.bn.parameters()) + list(self.head.parameters()),
                                "weight_decay": 1e-4}], lr=0.1)
        return {"optimizer": opt, "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1)}

model = Lit()
''')
    result = run("lit.py", "--format", "json")
    assert result.exit_code == 0, result.output  # the stem is not decayed: nothing to report
    doc = json.loads(result.stdout)
    assert {p["name"]: p["weight_decay"] for p in doc["parameters"]}["stem.weight"] == 0.0


def test_input_shape_dtype_and_range_for_a_token_model(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "tok.py", '''
from dataclasses import dataclass
import torch
from torch import nn


@dataclass
class Settings:  # dataclasses need the module in sys.modules while it executes
    vocab: int = 20
    width: int = 8


class Tok(nn.Module):
    def __init__(self, s: Settings = Settings()):
        super().__init__()
        self.emb = nn.Embedding(s.vocab, s.width)
        self.norm = nn.LayerNorm(s.width)
        self.head = nn.Linear(s.width, s.vocab)

    def forward(self, idx):
        print("forward ran")  # must not end up in the JSON on stdout
        return self.head(self.norm(self.emb(idx)))


print("imported")
model = Tok()
''')
    result = run("tok.py", "--input-shape", "2,5", "--input-dtype", "long", "--input-range",
                 "0,20", "--format", "json")
    doc = json.loads(result.stdout)  # user prints went to stderr
    assert "imported" in result.stderr
    assert codes_by_parameter(doc)["emb.weight"] == {"WD001"}  # the embedding feeds a norm
    too_wide = run("tok.py", "--input-shape", "2,5", "--input-dtype", "long",
                   "--input-range", "0,1000")
    assert too_wide.exit_code == 2 and "IndexError" in too_wide.stderr


# --- suppression and configuration -----------------------------------------------------------


@pytest.mark.parametrize("comment, silenced", [("  # noqa: WD003", True),
                                               ("  # noqa:WD001,WD003", True),
                                               ("  # noqa", False), ("  # noqa: E501", False)])
def test_noqa_on_the_reported_line(tiny, comment, silenced):
    source = tiny.read_text().replace("nn.Linear(4, 8)", "nn.Linear(4, 8)" + comment)
    tiny.write_text(source)
    result = run(tiny, "--format", "json")
    found = codes_by_parameter(json.loads(result.stdout))
    assert ("stem.bias" not in found) == silenced
    assert ("WD001" in found.get("stem.weight", set())) == ("WD001" not in comment)


def test_noqa_count_in_text(tiny):
    tiny.write_text(tiny.read_text().replace("nn.Linear(4, 8)", "nn.Linear(4, 8)  # noqa: WD003"))
    assert "1 silenced by # noqa" in run(tiny).stdout


@pytest.mark.parametrize("table, check", [
    ('select = ["WD003"]', lambda f: set().union(*f.values()) == {"WD003"}),
    ('ignore = ["WD001"]', lambda f: "WD001" not in set().union(*f.values())),
    ('ignore-parameters = ["stem.b*"]', lambda f: "stem.bias" not in f and "stem.weight" in f),
    ('assume-decay = "none"', lambda f: f == {}),
])
def test_config_table(tiny, table, check):
    write(tiny.parent, "pyproject.toml", f"[tool.wdaudit]\n{table}\n")
    result = run(tiny, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    assert check(codes_by_parameter(json.loads(result.stdout)))


def test_config_format_and_fail_on_and_flags_win(tiny):
    write(tiny.parent, "pyproject.toml",
          '[tool.wdaudit]\nformat = "json"\nfail-on = "error"\nselect = ["WD003"]\n'
          'device = "cpu"\n')
    from_config = run(tiny)
    assert from_config.exit_code == 0 and json.loads(from_config.stdout)["findings"]
    flags = run(tiny, "--format", "text", "--fail-on", "warning", "--select", "WD001")
    assert flags.exit_code == 1 and "WD001" in flags.stdout and "WD003" not in flags.stdout


def test_ignore_parameters_flag_rewords_the_findings(tiny):
    doc = json.loads(run(tiny, "--ignore-parameters", "*.bias", "--format", "json").stdout)
    assert codes_by_parameter(doc) == {"stem.weight": {"WD001"}}
    assert all("bias" not in f["message"] for f in doc["findings"])


def test_nearest_pyproject_above_the_target_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "pyproject.toml", '[tool.wdaudit]\nselect = ["WD003"]\n')
    model = write(tmp_path, "sub/tiny.py", TINY)
    assert "WD001" not in run(model).stdout
    write(tmp_path, "sub/pyproject.toml", "[project]\nname = 'x'\n")  # nearer, no table
    assert "WD001" in run(model).stdout


def test_assume_decay_matrices_only_reports_matrices(tiny):
    doc = json.loads(run(tiny, "--assume-decay", "matrices", "--format", "json").stdout)
    shapes = {p["name"]: p["shape"] for p in doc["parameters"]}
    assert doc["findings"] and doc["summary"]["assumed_decay"] == "matrices"
    assert all(len(shapes[p]) >= 2 for f in doc["findings"] for p in f["parameters"])


# --- bad input: exit 2 and one paragraph naming the problem and the fix ------------------------


def assert_error(result, *needles):
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    message = result.stderr.strip()
    assert "Traceback" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_missing_file_and_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_error(run("nope.py"), "nope.py: no such file")
    (tmp_path / "models").mkdir()
    assert_error(run("models"), "is a directory")


def test_missing_target_is_a_usage_error():
    assert_error(run(), "missing TARGET")


@pytest.mark.parametrize("source, needles", [
    ("def build_model(:\n    pass\n", ("syntax error", "bad.py:1")),
    ("import no_such_package_xyz\n", ("could not be imported", "no_such_package_xyz")),
    ("raise RuntimeError('boom at import')\n", ("boom at import", "bad.py:1")),
    ("import sys\nsys.exit(3)\n", ("sys.exit(3)", "__main__")),
    ("import torch\nclass Net(torch.nn.Module):\n    pass\n",
     ("no model found", "build_model, get_model and model", "Net")),
    ("def build_model():\n    raise ValueError('no weights here')\n",
     ("build_model() in bad.py raised ValueError: no weights here", "bad.py:2")),
    ("def build_model(width):\n    pass\n", ("needs arguments (width)",)),
    ("import torch\ndef build_model():\n    return torch.zeros(3)\n",
     ("a Tensor, not a torch.nn.Module",)),
    ("import torch\ndef build_model():\n    return {'model': torch.nn.Linear(2, 2), 'inputs': 1}\n",
     ("unknown keys inputs",)),
    ("import torch\nmodel = torch.nn.Linear(2, 2)\n", ("no example inputs", "--input-shape")),
    ("import torch\nmodel = torch.nn.Linear(2, 2)\nexample_inputs = {'x': torch.zeros(2)}\n",
     ("are a dict",)),
    ("import torch\nmodel = torch.nn.Linear(2, 2)\nexample_inputs = torch.zeros(1, 2)\n"
     "def build_optimizer(model):\n"
     "    return torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=1)\n",
     ("holds none of the model's parameters",)),
])
def test_bad_user_files(tmp_path, monkeypatch, source, needles):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "bad.py", source)
    assert_error(run("bad.py"), *needles)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "bad.py", "def build_model():\n    raise ValueError('no weights here')\n")
    result = run("bad.py", "--debug")
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and 'bad.py", line 2' in result.stderr


def test_missing_factory_names_the_candidates(tiny):
    assert_error(run(f"{tiny}:nothing"), "has no 'nothing'", "Tiny")


@pytest.mark.parametrize("flags, needle", [
    (("--input-shape", "2,a"), "--input-shape"),
    (("--input-shape", "0,4"), "positive integers"),
    (("--input-shape", ""), "--input-shape"),
    (("--input-shape", "6,4", "--input-dtype", "complex"), "--input-dtype"),
    (("--input-shape", "6,4", "--input-range", "5,1"), "LOW < HIGH"),
    (("--input-dtype", "long"), "give --input-shape too"),
    (("--select", "WD999"), "unknown rule code 'WD999'"),
    (("--ignore", "WD001,XX1"), "unknown rule code 'XX1'"),
    (("--format", "xml"), "--format"),
])
def test_bad_flags(tiny, flags, needle):
    assert_error(run(tiny, *flags), needle)


def test_inputs_that_do_not_fit_show_the_models_own_error(tiny):
    message = assert_error(run(tiny, "--input-shape", "6,5"), "does not run on the example inputs")
    with pytest.raises(RuntimeError) as own:
        nn.Linear(4, 8)(torch.randn(6, 5))
    assert str(own.value).splitlines()[0] in message


BRANCHY = '''
import torch
from torch import nn


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.body = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))

    def forward(self, x):
        y = self.body(self.fc(x))
        if y.sum() > 0:  # data-dependent control flow defeats both tracers
            return y * 2
        return y


model = Branchy()
example_inputs = torch.randn(3, 4)
'''


def test_untraceable_model(tmp_path, monkeypatch, beyond_make_fx):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "branchy.py", BRANCHY)
    result = run("branchy.py")  # strict (the suite's default): the whole forward is refused
    assert_error(result, "Branchy cannot be audited", "control flow")
    assert "def forward" not in result.stderr  # torch.export's partial graph stays out


def test_untraceable_model_without_strict_audits_its_parts(tmp_path, monkeypatch, beyond_make_fx):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "branchy.py", BRANCHY)
    result = run("branchy.py", env={"WDAUDIT_STRICT": "0"})
    assert result.exit_code == 1, result.output  # a finding, from the part
    assert "Branchy.forward could not be traced" in result.output
    assert "'body.0.{weight,bias}'" in result.output


def test_unknown_op_in_strict_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "odd.py", "import torch\nfrom torch import nn\n\n"
          "class Odd(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
          "        self.fc = nn.Linear(4, 4)\n\n    def forward(self, x):\n"
          "        return torch.special.bessel_j0(self.fc(x))\n\n"
          "model = Odd()\nexample_inputs = torch.randn(3, 4)\n")
    assert_error(run("odd.py"), "unknown op", "WDAUDIT_STRICT")
    lenient = run("odd.py", env={"WDAUDIT_STRICT": "0"})  # counted, handled conservatively
    assert lenient.exit_code == 0 and "bessel_j0" in lenient.stdout


def test_unavailable_device(tiny):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert_error(run(tiny, "--device", "cuda"), "CUDA is not available")
    assert_error(run(tiny, "--device", "toaster"), "not a device")


@pytest.mark.parametrize("pyproject, needles", [
    ("[tool.wdaudit\nselect = 1\n", ("is not valid TOML",)),
    ("[tool.wdaudit]\nselct = ['WD001']\n", ("unknown key 'selct'", "Did you mean 'select'")),
    ("[tool.wdaudit]\nselect = 'WD001'\n", ("must be a list of strings",)),
    ("[tool.wdaudit]\nignore = ['WD042']\n", ("unknown rule code 'WD042'", "pyproject.toml")),
    ("[tool.wdaudit]\nfail-on = 'sometimes'\n", ("fail-on", "info, warning, error")),
    ("[tool]\nwdaudit = 3\n", ("must be a table",)),
])
def test_bad_configuration(tiny, pyproject, needles):
    write(tiny.parent, "pyproject.toml", pyproject)
    assert_error(run(tiny), *needles)


def test_pre_commit_hook_runs_wdaudit():
    yaml = pytest.importorskip("yaml")
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert {h["language"] for h in hooks} == {"python", "system"}
    for hook in hooks:  # one TARGET, given in args: no file names appended
        assert hook["entry"] == "wdaudit" and hook["pass_filenames"] is False
