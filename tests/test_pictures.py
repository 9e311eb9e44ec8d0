"""The pictures: ``Report.overview`` (the graph collapsed by module), ``--format dot``, and
``--format html`` opened in a real headless Chromium and judged on what it renders."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import wdaudit
from wdaudit.engine.analysis import graph as graph_stage
from wdaudit.frontend.overview import MAX_NODES, OUTPUT, overview_of
from wdaudit.engine.tracing.trace import trace
from wdaudit.frontend.cli import main
from wdaudit.frontend.formats import Context, render
from wdaudit.frontend.formats.picture import group_colours

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _overview(model, inputs):
    program = trace(model, inputs)
    return overview_of(graph_stage.build(program), model)


def _check_structure(overview, model):
    ids = [b.id for b in overview.boxes]
    assert len(ids) == len(set(ids)) and len(ids) <= MAX_NODES + 2  # + input, output
    held = [p for b in overview.boxes for p in b.parameters]
    assert sorted(held) == sorted(dict(model.named_parameters()))  # each in exactly one box
    assert all(a in ids and b in ids for a, b in overview.edges)
    assert {b.kind for b in overview.boxes} == {"input", "module", "output"}
    assert OUTPUT in ids


def test_resnet50_collapses_to_its_blocks():
    import torchvision

    model = torchvision.models.resnet50()
    overview = _overview(model, (torch.randn(2, 3, 32, 32),))
    _check_structure(overview, model)
    blocks = [b.id for b in overview.boxes if b.type == "Bottleneck"]
    assert blocks == [f"layer{i}.{j}" for i, n in enumerate((3, 4, 6, 3), 1) for j in range(n)]
    # a chain: every block feeds the next one
    edges = set(overview.edges)
    assert all((a, b) in edges for a, b in zip(blocks, blocks[1:]))


def test_a_twelve_layer_gpt2_keeps_its_blocks_parts_apart():
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=12, n_embd=8, n_head=2, n_positions=8,
                                     vocab_size=32, tie_word_embeddings=False)
    model = transformers.GPT2LMHeadModel(config)
    overview = _overview(model, (torch.randint(0, 32, (2, 4)),))
    _check_structure(overview, model)
    ids = {b.id for b in overview.boxes}
    assert {f"transformer.h.{i}.{part}" for i in range(12)
            for part in ("ln_1", "attn", "ln_2", "mlp")} <= ids
    assert len(overview.edges) < 2 * len(overview.boxes)  # glue folded, implied edges dropped


def _report_and_text(fmt: str, tmp_path):
    out = tmp_path / f"report.{fmt}"
    result = CliRunner().invoke(main, ["fixtures/cnn_batchnorm.py", "--format", fmt, "-o",
                                       str(out)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    return out.read_text()


@pytest.fixture(scope="module")
def cnn_report():
    sys.path.insert(0, str(ROOT / "fixtures"))
    try:
        import cnn_batchnorm as fixture
    finally:
        sys.path.remove(str(ROOT / "fixtures"))
    model = fixture.build_model()
    return wdaudit.audit(model, fixture.example_inputs,
                         optimizer=fixture.build_optimizer(model))


def test_dot_has_every_box_edge_and_group_colour(cnn_report):
    text = render("dot", cnn_report, Context("fixtures/cnn_batchnorm.py"))
    assert text.count("{") == text.count("}") and text.rstrip().endswith("}")
    assert len(re.findall(r"^  n\d+ \[label=<", text, re.M)) == len(cnn_report.overview.boxes)
    assert len(re.findall(r"^  n\d+ -> n\d+;", text, re.M)) == len(cnn_report.overview.edges)
    for colour in group_colours(cnn_report).values():
        assert colour in text
    dot = shutil.which("dot")
    if dot:  # Graphviz itself, where it is installed
        subprocess.run([dot, "-Tsvg"], input=text, text=True, check=True, capture_output=True)


def _browser():
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no Chromium here (apt-get install chromium; .ci/run tries): the HTML "
                "report's browser test cannot run")


def test_html_renders_every_group_in_a_headless_browser(tmp_path, cnn_report, monkeypatch):
    monkeypatch.chdir(ROOT)
    page = tmp_path / "report.html"
    page.write_text(_report_and_text("html", tmp_path))
    text = page.read_text()
    # self-contained: nothing is fetched (the only URL is the SVG namespace)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    done = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu",
                           "--virtual-time-budget=3000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=180)
    dom = done.stdout
    assert "<svg" in dom, done.stderr[-2000:]
    groups = len(cnn_report.groups)
    assert groups > 0
    # the page's script measured each group's rows as drawn boxes of non-zero size
    assert f'data-groups-visible="{groups}"' in dom and f'data-groups-total="{groups}"' in dom
    assert dom.count('class="visible"') == groups and 'class="missing"' not in dom
    # hover text: verdict, reason, group and source line of a grouped parameter
    name = cnn_report.groups[0].names[0]
    hover = re.search(rf'data-param="{re.escape(name)}"[^>]*><title>([^<]*)</title>', dom)
    assert hover, name
    tip = hover.group(1)
    assert f"verdict: {cnn_report.parameters[name].verdict}" in tip
    assert f"#{cnn_report.groups[0].id}" in tip and "reason: " in tip
    assert "defined at: fixtures/cnn_batchnorm.py:" in tip
    for finding in cnn_report.findings:  # the findings beside the graph
        assert finding.code in dom
