"""A report a person takes in at a glance (issue 26), on models nobody here wrote.

- one WD001 per set of tensors that scale together: the union of the claims that share a
  member, derived here from ``report.groups`` by merging overlapping member sets;
- its first names are the ones a user recognises (embeddings, then shallow modules), layers
  folded into ``blocks.*.attn.c_proj.{weight,bias}`` patterns;
- a library model's findings point at the user's construction line, with the library's own
  lines as related locations (text, JSON, SARIF);
- a model built on the meta device and ``to_empty``'d points at the lines that built its
  modules, not at the ``to_empty`` line;
- WD003 names the mechanism that removes the offset."""

from __future__ import annotations

import importlib.util
import inspect
import json

import pytest
import torch
from torch import nn

import wdaudit
from wdaudit import report as R
from tests.support.sets import merged
from wdaudit.frontend.locations import Locator, recording

META_GPT = '''import torch
from torch import nn
import torch.nn.functional as F


class CastedLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, self.weight.to(x.dtype))


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.fc = CastedLinear(d, 4 * d, bias=False)  # line 15
        self.proj = CastedLinear(4 * d, d, bias=False)  # line 16

    def forward(self, x):
        return x + self.proj(F.relu(self.fc(self.ln(x))))


class GPT(nn.Module):
    def __init__(self, vocab=32, d=16, n=2):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)  # line 25
        self.blocks = nn.ModuleList(Block(d) for _ in range(n))
        self.ln_f = nn.LayerNorm(d)
        self.head = CastedLinear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.wte(idx)
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln_f(x))


def build_model():
    with torch.device("meta"):
        model = GPT()
    model.to_empty(device="cpu")  # line 40
    for p in model.parameters():
        nn.init.normal_(p, std=0.1) if p.dim() > 1 else nn.init.ones_(p)
    return model


def build_optimizer(model):  # nanochat's split: Muon for the blocks' matrices, AdamW for the rest
    muon = [p for n, p in model.named_parameters() if n.startswith("blocks.") and p.dim() == 2]
    rest = [p for p in model.parameters() if all(p is not q for q in muon)]
    return [torch.optim.Muon(muon, lr=0.02, weight_decay=0.1),
            torch.optim.AdamW(rest, lr=1e-3, weight_decay=0.1)]


def example_inputs():
    return (torch.randint(0, 32, (1, 8)),)
'''


def _scale_together(report) -> list[set[str]]:
    """The decayed ineffective members of the scaling claims, merged wherever two claims
    share a member (by repeated merging, independent of the engine's graph search)."""
    sets = []
    for g in report.groups:
        if g.kind == "no-effect":
            continue
        named = {n for n in g.names if report.parameters[n].verdict == R.INEFFECTIVE
                 and g.id in report.parameters[n].groups and _decayed(report, n)}
        if named:
            sets.append((set(g.names), named))
    return [named for _, named in merged(sets)]


def _decayed(report, name: str) -> bool:
    wd = report.parameters[name].weight_decay
    return (wd or 0) > 0 if report.assumed_decay is None else report.assumed_decay == "all"


def _built_here(build, call: str):
    """The model ``build()`` returns, recorded, and the line of ``build`` that calls ``call``
    (the user's construction line, as far as the library is concerned)."""
    with recording():
        model = build()
    lines, start = inspect.getsourcelines(build)
    return model, start + next(i for i, text in enumerate(lines) if call in text)


def _quoted(message: str) -> list[str]:
    head = message.split(" cannot regularise")[0]
    return [part.split("'")[1] for part in head.split(", ") if "'" in part]


def _tiny_unet():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    return diffusers.UNet2DModel(
        sample_size=16, in_channels=3, out_channels=3, layers_per_block=1,
        block_out_channels=(16, 32), norm_num_groups=8,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def _tiny_llama():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(cfg)


def _assert_one_wd001_per_set(report):
    sets = _scale_together(report)
    wd001 = [f for f in report.findings if f.code == "WD001"]
    assert sorted(map(sorted, (set(f.parameters) for f in wd001))) == sorted(map(sorted, sets))
    # each finding's basis: the claims behind it, which cover exactly its members
    for f in wd001:
        covered = {n for i in f.groups for n in report.groups[i].names}
        assert set(f.parameters) <= covered
    return wd001


def test_a_diffusers_unet_gives_one_finding_per_set_and_points_at_the_users_line():
    model, line = _built_here(_tiny_unet, "UNet2DModel(")
    inputs = (torch.randn(1, 3, 16, 16), torch.tensor([3]))
    report = wdaudit.audit(model, inputs, locate=Locator(model))
    wd001 = _assert_one_wd001_per_set(report)
    stream = max(wd001, key=lambda f: len(f.parameters))
    assert len(stream.groups) > 1  # several claims, one residual stream, one finding
    for f in report.findings:
        assert f.location == wdaudit.Location(__file__, line), f.message
        assert f.related and all("diffusers" in r.path for r in f.related), f.message
        assert len(set(f.related)) == len(f.related)
    # the stream's related lines are distinct places in the library, not one per tensor
    assert 1 < len(stream.related) < len(stream.parameters)
    doc = report.to_dict()
    (entry,) = [f for f in doc["findings"] if f["parameters"] == list(stream.parameters)]
    assert entry["groups"] == list(stream.groups)
    assert entry["related_locations"][0]["path"] == stream.related[0].path


def test_wd003_names_the_mechanism_that_removes_the_offset():
    report = wdaudit.audit(_tiny_unet(), (torch.randn(1, 3, 16, 16), torch.tensor([3])))
    wd003 = [f for f in report.findings if f.code == "WD003"]
    assert wd003 and all(f.parameters[0].endswith("to_k.bias") for f in wd003)
    for f in wd003:
        assert "attention softmax" in f.message and "mean subtraction" not in f.message
    # a conv bias before BatchNorm: removed by the normalisation, and the report says so
    from tests.test_cli import fixture_loaded
    loaded = fixture_loaded("cnn_batchnorm")
    found = wdaudit.audit(loaded.model, loaded.example_inputs, optimizer=loaded.optimizer)
    biases = [f for f in found.findings if f.code == "WD003"]
    assert biases and all("normalises, which the normalisation removes" in f.message
                          for f in biases)


def test_a_llama_stream_is_one_finding_led_by_its_embedding():
    model, line = _built_here(_tiny_llama, "LlamaForCausalLM(")
    report = wdaudit.audit(model, (torch.randint(0, 64, (1, 8)),), locate=Locator(model))
    wd001 = _assert_one_wd001_per_set(report)
    (stream,) = wd001
    assert len(stream.groups) > 1
    assert stream.parameters[0] == "model.embed_tokens.weight"
    assert _quoted(stream.message)[0] == "model.embed_tokens.weight"
    assert f"({len(stream.parameters)} tensors)" in stream.message
    assert stream.location == wdaudit.Location(__file__, line)
    assert any("transformers" in r.path for r in stream.related)


def test_a_pre_ln_gpt_names_its_embeddings_first_and_folds_its_layers():
    from tests.test_cli import fixture_loaded
    loaded = fixture_loaded("preln_transformer")
    report = wdaudit.audit(loaded.model, loaded.example_inputs, optimizer=loaded.optimizer)
    (stream,) = _assert_one_wd001_per_set(report)
    embeddings = {n for n, m in loaded.model.named_modules() if isinstance(m, nn.Embedding)}
    assert {n.rpartition(".")[0] for n in _quoted(stream.message)[:2]} == embeddings
    layers = len(loaded.model.blocks)
    assert f"'blocks.*.attn.c_proj.weight' ({layers})" in stream.message
    assert f"({len(stream.parameters)} tensors)" in stream.message


def test_a_meta_built_model_points_at_the_lines_that_built_its_modules(tmp_path):
    source = META_GPT
    (tmp_path / "meta_gpt.py").write_text(source)
    lines = source.splitlines()
    built = {tag: i + 1 for i, text in enumerate(lines) for tag in ("fc", "proj", "wte")
             if f"self.{tag} = " in text}
    to_empty = next(i + 1 for i, text in enumerate(lines) if "to_empty" in text)
    spec = importlib.util.spec_from_file_location("meta_gpt", tmp_path / "meta_gpt.py")
    meta_gpt = importlib.util.module_from_spec(spec)  # kept out of sys.modules
    spec.loader.exec_module(meta_gpt)
    with recording():
        model = meta_gpt.build_model()
    locate = Locator(model)
    path = str(tmp_path / "meta_gpt.py")
    for name, _ in model.named_parameters():
        tag = name.split(".")[-2]
        if tag in built:
            assert locate([name]) == wdaudit.Location(path, built[tag]), name
        assert locate([name]).line != to_empty, name
    report = wdaudit.audit(model, meta_gpt.example_inputs(), locate=locate)
    assert report.findings
    for f in report.findings:
        assert f.location.line != to_empty
        tag = f.parameters[0].split(".")[-2]
        assert f.location.line == built[tag]


def test_the_header_counts_what_the_equilibrium_lines_describe(tmp_path, monkeypatch):
    """nanochat's setup (meta-built, Muon + AdamW): the header's count of scale-free tensors and
    the equilibrium lines below it come from the same verdicts."""
    from tests.test_cli import run
    (tmp_path / "meta_gpt.py").write_text(META_GPT)
    monkeypatch.chdir(tmp_path)
    text = run("meta_gpt.py").output
    doc = json.loads(run("meta_gpt.py", "--format", "json").stdout)
    ineffective = {p["name"] for p in doc["parameters"] if p["verdict"] == R.INEFFECTIVE}
    with_numbers = [g for g in doc["groups"] if g.get("equilibrium")]
    assert with_numbers and "Equilibrium of the decayed scale-free groups" in text
    for g in with_numbers:  # a group with numbers stands: its members are ineffective
        assert {m["name"] for m in g["members"]} & ineffective
    assert f"{len(ineffective)} of them scale-free or without effect" in text.splitlines()[0]
    assert "Muon" in text and "AdamW" in text


def test_the_unets_sarif_carries_the_library_lines_as_related_locations(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    from tests.test_cli import run, validate_sarif
    (tmp_path / "unet.py").write_text(
        "import torch\nfrom diffusers import UNet2DModel\n\n\ndef build_model():\n"
        "    return UNet2DModel(sample_size=16, in_channels=3, out_channels=3,\n"
        "                       layers_per_block=1, block_out_channels=(16, 32),\n"
        "                       norm_num_groups=8,\n"
        "                       down_block_types=('DownBlock2D', 'AttnDownBlock2D'),\n"
        "                       up_block_types=('AttnUpBlock2D', 'UpBlock2D'))\n\n\n"
        "def example_inputs():\n"
        "    return (torch.randn(1, 3, 16, 16), torch.tensor([3]))\n")
    monkeypatch.chdir(tmp_path)
    result = run("unet.py", "--format", "sarif")
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    validate_sarif(doc)
    results = doc["runs"][0]["results"]
    assert results
    for r in results:
        (loc,) = r["locations"]
        assert loc["physicalLocation"]["artifactLocation"]["uri"] == "unet.py"
        assert loc["physicalLocation"]["region"]["startLine"] == 6
        related = r["relatedLocations"]
        assert related and all("diffusers" in x["physicalLocation"]["artifactLocation"]["uri"]
                               for x in related)
    text = run("unet.py")
    assert "built in the library at diffusers/" in text.output
    # one glob in [tool.wdaudit] silences one finding of the library model
    (tmp_path / "pyproject.toml").write_text(
        '[tool.wdaudit]\nignore-parameters = ["mid_block.attentions.0.to_k.bias"]\n')
    quiet = json.loads(run("unet.py", "--format", "json").stdout)
    loud = {tuple(r["properties"]["parameters"]) for r in results}  # before the config
    assert ("mid_block.attentions.0.to_k.bias",) in loud
    assert {tuple(f["parameters"]) for f in quiet["findings"]} == \
        loud - {("mid_block.attentions.0.to_k.bias",)}


def test_name_patterns_cover_every_name_once_and_star_only_what_differs():
    from wdaudit.engine.analysis.names import patterns, short
    names = ([f"h.{i}.mlp.c_proj.{leaf}" for i in range(3) for leaf in ("weight", "bias")]
             + ["h.0.attn.c_attn.weight", "wte.weight", "lm_head.weight"])
    folded = patterns(names)
    assert sum(k for _, k in folded) == len(names)
    assert folded[0] == ("wte.weight", 1)  # an embedding leads
    assert ("h.*.mlp.c_proj.{bias,weight}", 6) in folded
    assert ("h.0.attn.c_attn.weight", 1) in folded  # one layer stays spelt out
    # leaves are braced only over the same layers: a count never hides which layers
    uneven = patterns(["b.0.w", "b.1.w", "b.0.v"])
    assert sorted(uneven) == [("b.*.w", 2), ("b.0.v", 1)]
    assert short(names, limit=2).endswith(f"and {len(folded) - 2} more ({len(names)} tensors)")
