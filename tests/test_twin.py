"""Confirmation on a twin (``confirm_on="twin"``, wdaudit/twin.py): a Hugging Face model's
claims checked on the same class rebuilt with reduced widths.  The twin's claims must be the
model's static claims one to one by name; where they are, the model's claims are confirmed by
the twin's checks; where they are not (a width that changes the graph), nothing is confirmed
and the first difference is the reason; a model without a Hugging Face configuration gets a
clear error."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import wdaudit
from wdaudit import twin as twins
from wdaudit.frontend.cli import main
from wdaudit.report import FAILED, INEFFECTIVE, UNKNOWN

tf = pytest.importorskip("transformers")

VOCAB = 128


def _llama_config(**changes):
    fields = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                  tie_word_embeddings=False)
    return tf.LlamaConfig(**{**fields, **changes})


def _meta_llama(**changes):
    with torch.device("meta"):
        model = tf.LlamaForCausalLM(_llama_config(**changes))
    return model.train()


def _ids(vocab=VOCAB, batch=2, length=16):
    return torch.randint(0, vocab, (batch, length), generator=torch.Generator().manual_seed(0))


def _claimed(report) -> set:
    """The claims as sets of names: each group's members (no-effect claims included)."""
    return {(g.kind, frozenset(g.names)) for g in report.groups}


def test_a_meta_llama_is_confirmed_on_a_twin_whose_claims_are_its_own():
    model, ids = _meta_llama(), _ids()
    static = wdaudit.audit(model, ids)  # on meta: static only, nothing confirmed
    assert not static.confirmation.performed and static.ineffective
    twin = twins.build(model, (ids,))
    widths = dict(twin.widths)
    assert widths["hidden_size"][1] < widths["hidden_size"][0]
    assert widths["intermediate_size"][1] < widths["intermediate_size"][0]
    assert all(p.dtype == torch.float64 and p.device.type == "cpu"
               for p in twin.model.parameters())
    # the same depth and topology: the same parameter names, so claims compare by name
    assert [n for n, _ in twin.model.named_parameters()] == \
        [n for n, _ in model.named_parameters()]
    twin_report = wdaudit.audit(twin.model, twin.inputs)
    assert twin_report.confirmation.performed
    assert _claimed(twin_report) == _claimed(static)
    assert twin_report.ineffective == static.ineffective

    report = wdaudit.audit(model, ids, confirm_on="twin")
    conf = report.confirmation
    assert conf.performed and conf.on == "twin" and conf.twin == widths
    assert conf.passes > 0 and all(t.startswith("twin ") for t in conf.trail)
    assert report.groups and all(g.confirmed for g in report.groups)
    assert report.ineffective == static.ineffective
    for name in report.ineffective:
        assert "not confirmed" not in report.parameters[name].reason
    assert report.summary()["confirmed"]
    # each model claim carries the check of the twin's identical claim
    by_names = {(g.kind, frozenset(g.names)): g for g in twin_report.groups}
    for g in report.groups:
        assert g.max_relative_change == by_names[(g.kind, frozenset(g.names))].max_relative_change


def test_the_report_says_the_claims_were_confirmed_on_a_twin_and_its_widths():
    report = wdaudit.audit(_meta_llama(), _ids(), confirm_on="twin")
    doc = json.loads(json.dumps(report.to_dict()))["confirmation"]
    assert doc["performed"] and doc["on"] == "twin"
    assert doc["twin"]["widths"] == {k: v[1] for k, v in report.confirmation.twin.items()}
    assert doc["twin"]["model_widths"]["hidden_size"] == 64
    plain = wdaudit.audit(_meta_llama(), _ids(), confirm=False).to_dict()["confirmation"]
    assert plain["on"] == "model" and plain["twin"] is None  # added fields, the old ones kept
    assert set(plain) <= set(doc)


def test_gqa_stays_gqa_and_the_head_dimension_stays_consistent():
    model = _meta_llama(hidden_size=128, num_attention_heads=16, num_key_value_heads=4)
    twin = twins.build(model, (_ids(),))
    config = twin.model.config
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    assert kv < 4 and heads // kv > 1 and heads % kv == 0
    assert config.hidden_size == heads * config.head_dim


class _WidthConfig(tf.PretrainedConfig):
    model_type = "wdaudit-test-width-branch"

    def __init__(self, hidden_size=64, num_attention_heads=4, vocab_size=VOCAB, **kwargs):
        self.hidden_size, self.num_attention_heads = hidden_size, num_attention_heads
        self.vocab_size = vocab_size
        super().__init__(**kwargs)


class _WidthBranch(tf.PreTrainedModel):
    """Normalises only when it is wide: its twin computes another graph with the same names."""

    config_class = _WidthConfig

    def __init__(self, config):
        super().__init__(config)
        width = config.hidden_size
        self.embed = nn.Embedding(config.vocab_size, width)
        self.hidden = nn.Linear(width, width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 3)

    def forward(self, ids):
        h = self.hidden(self.embed(ids))
        if self.config.hidden_size > 32:  # a branch on a width: the twin takes the other one
            h = self.norm(h)
        return self.head(h)


def test_a_twin_whose_graph_differs_confirms_nothing_and_names_the_first_difference():
    model, ids = _WidthBranch(_WidthConfig()).train(), _ids()
    own = wdaudit.audit(model, ids)
    assert own.confirmation.performed and own.ineffective  # normalised: scale-free claims
    report = wdaudit.audit(model, ids, confirm_on="twin")
    conf = report.confirmation
    assert conf.outcome == FAILED and conf.on == "twin" and not conf.performed
    assert "not the model's one to one" in conf.reason and "hidden_size 64→" in conf.reason
    first = own.groups[0]  # the model's first claim is the first the twin lacks
    assert f"the model claims a {first.kind} group of {len(first.names)} tensors " \
        f"({', '.join(first.names)})" in conf.reason
    claimed = {m for g in report.groups for m in g.names}
    assert claimed == own.ineffective
    assert report.ineffective == frozenset()
    for name in claimed:
        assert report.parameters[name].verdict == UNKNOWN
        assert "cannot confirm on a twin" in report.parameters[name].reason
    assert report.effective == own.effective  # static "effective" verdicts stand


def test_a_model_without_a_hugging_face_config_gets_a_clear_error():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.LayerNorm(8), nn.Linear(8, 2))
    with pytest.raises(wdaudit.NoTwin) as caught:
        wdaudit.audit(model, torch.randn(5, 4), confirm_on="twin")
    message = str(caught.value)
    assert "a twin cannot be built for Sequential" in message
    assert "PretrainedConfig" in message and "confirm_on='model'" in message
    assert "\n" not in message  # one paragraph
    with pytest.raises(ValueError, match="confirm_on='nearby'"):
        wdaudit.audit(model, torch.randn(5, 4), confirm_on="nearby")


def test_a_bill_that_does_not_fit_offers_the_twin_and_the_twin_pays_it():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = tf.LlamaForCausalLM(_llama_config(vocab_size=1000, hidden_size=128,
                                                  intermediate_size=256)).train()
    ids = _ids(vocab=1000)
    full = wdaudit.audit(model, ids)
    on_twin = wdaudit.audit(model, ids, confirm_on="twin")
    assert full.confirmation.performed and on_twin.confirmation.performed
    assert on_twin.confirmation.estimate < full.confirmation.estimate
    budget = full.confirmation.estimate // 3  # below float32's half bill too
    assert budget > on_twin.confirmation.estimate
    short = wdaudit.audit(model, ids, memory_budget=budget)
    assert not short.confirmation.performed
    assert "not enough memory" in short.confirmation.reason
    assert "--confirm-on twin" in short.confirmation.reason
    paid = wdaudit.audit(model, ids, memory_budget=budget, confirm_on="twin")
    assert paid.confirmation.performed and paid.confirmation.on == "twin"
    assert paid.ineffective == full.ineffective


def test_training_state_is_mirrored_on_the_twin():
    model = _meta_llama()
    model.model.layers[0].mlp.requires_grad_(False)
    twin = twins.build(model, (_ids(),), fixed=frozenset(
        n for n, p in model.named_parameters() if not p.requires_grad))
    assert {n for n, p in twin.model.named_parameters() if not p.requires_grad} == \
        {n for n, p in model.named_parameters() if not p.requires_grad}
    assert twin.model.training
    report = wdaudit.audit(model, _ids(), confirm_on="twin")
    assert report.confirmation.performed
    assert all(report.parameters[n].verdict == "frozen"
               for n, p in model.named_parameters() if not p.requires_grad)
    assert all(report.parameters[n].verdict == INEFFECTIVE for n in report.ineffective)


def test_command_line_confirm_on_twin(tmp_path):
    runner = CliRunner()
    sets = ["--set", "hidden_size=64", "--set", "intermediate_size=128", "--set",
            "num_hidden_layers=2", "--set", "num_attention_heads=4", "--set",
            "num_key_value_heads=2", "--set", "head_dim=16", "--set", "vocab_size=500"]
    out = runner.invoke(main, ["hf:llama:CausalLM", *sets, "--confirm-on", "twin",
                               "--format", "json", "-q"])
    assert out.exit_code == 1, out.output  # findings
    doc = json.loads(out.stdout)
    assert doc["confirmation"]["performed"] and doc["confirmation"]["on"] == "twin"
    assert doc["confirmation"]["twin"]["model_widths"]["vocab_size"] == 500
    text = runner.invoke(main, ["hf:llama:CausalLM", *sets, "--confirm-on", "twin", "-q"])
    assert "claims confirmed on a twin" in text.stdout
    fixture = tmp_path / "mlp.py"
    fixture.write_text("import torch\nfrom torch import nn\n"
                       "model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))\n"
                       "example_inputs = torch.randn(5, 4)\n")
    bad = runner.invoke(main, [str(fixture), "--confirm-on", "twin", "-q"])
    assert bad.exit_code == 2
    assert "a twin cannot be built" in bad.stderr and "--confirm-on model" in bad.stderr


def test_a_mixture_of_experts_twin_has_fewer_experts_and_the_same_claims():
    config = tf.MixtralConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=96,
                              num_attention_heads=4, num_key_value_heads=2, vocab_size=256,
                              num_local_experts=8, num_experts_per_tok=2)
    with torch.device("meta"):
        model = tf.MixtralForCausalLM(config).train()
    ids = _ids(vocab=256)
    twin = twins.build(model, (ids,))
    assert twin.widths["num_local_experts"] == (8, 4)  # the experts are one tensor: same names
    static = wdaudit.audit(model, ids)
    assert _claimed(wdaudit.audit(twin.model, twin.inputs, confirm=False)) == _claimed(static)
    report = wdaudit.audit(model, ids, confirm_on="twin")
    assert report.confirmation.performed and all(g.confirmed for g in report.groups)
    assert report.ineffective == static.ineffective
