"""The training run as the user wrote it (issue 23): the function checked is the one trained
(closures, hooks, globals), every optimizer is read (Muon beside AdamW, a tensor held twice),
a model that refuses float64 is confirmed in float32 or says it was not, the callbacks survive
wrapped models, and nanoGPT's ``configure_optimizers`` signature does not stop the CLI.

Each test here failed on the engine before: the closure and hook cases reported false claims
as confirmed, two optimizers raised, the float32-only model passed silently."""

from __future__ import annotations

import json
import logging
import textwrap

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import wdaudit
from tests.support.differential import differential
from wdaudit.engine.confirmation import confirm as confirm_stage
from wdaudit.engine.analysis.training import SetupError
from wdaudit.frontend.cli import main


# --- the function checked is the function trained ---------------------------------------------


class TiedHead(nn.Module):
    """x-transformers' tied head: a lambda closing over the model, and a shape-dependent branch
    (so that torch.export, not symbolic_trace, traces it)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(16, 8)
        self.ln = nn.LayerNorm(8)
        self.f = nn.Linear(8, 8)
        self.to_logits = lambda t: t @ self.emb.weight.t()

    def forward(self, x):
        h = self.emb(x)
        if h.shape[1] > 2:
            h = h + self.f(h)
        return self.to_logits(self.ln(h))


def test_a_lambda_closing_over_the_model_computes_with_the_copys_tensors():
    torch.manual_seed(0)
    model = TiedHead()
    report, truth = differential(model, torch.randint(0, 16, (2, 5)), int_high=16)
    # the tied head reads emb.weight: doubling it changes the logits, so no claim on it
    assert "emb.weight" not in report.ineffective
    assert "emb.weight" not in truth.ineffective


class Hooked(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)
        self.shift = nn.Parameter(torch.randn(8))
        self.head = nn.Linear(8, 2)
        model = self
        self.bn.register_forward_hook(lambda mod, inp, out: out * model.shift.abs() + model.shift)

    def forward(self, x):
        return self.head(self.bn(self.lin(x)))


def test_a_hook_closing_over_the_model_is_part_of_the_function():
    torch.manual_seed(0)
    model = Hooked()
    report, _ = differential(model, torch.randn(6, 8))
    assert report.parameters["shift"].verdict == "effective"  # was WD003 "never uses it"
    assert not [f for f in report.findings if "shift" in f.parameters]
    assert report.ineffective >= {"lin.weight", "lin.bias"}


_USER_MODEL = None


def _global_hook(module, inputs, output):
    return output * _USER_MODEL.shift.abs() + _USER_MODEL.shift


class GlobalHooked(Hooked):
    def __init__(self):
        nn.Module.__init__(self)
        self.lin = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)
        self.shift = nn.Parameter(torch.randn(8))
        self.head = nn.Linear(8, 2)
        self.bn.register_forward_hook(_global_hook)


def test_a_global_the_copy_cannot_redirect_leaves_the_claims_unknown_with_a_finding():
    global _USER_MODEL
    torch.manual_seed(0)
    _USER_MODEL = model = GlobalHooked()
    try:
        report = wdaudit.audit(model, torch.randn(6, 8), strict=False)
    finally:
        _USER_MODEL = None
    assert report.ineffective == frozenset()  # nothing stands unchecked
    assert "shift" in report.confirmation.reason and "another function" in \
        report.confirmation.reason
    (wd005,) = [f for f in report.findings if f.code == "WD005"]
    assert {"lin.weight", "lin.bias"} <= set(wd005.parameters)


def test_the_models_own_change_under_the_scaling_is_a_check(monkeypatch):
    """Beyond what its program with the model's eps explains, the real model's change fails
    the claim (it was only an eps-limited flag)."""
    model = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Linear(8, 3))
    x = torch.randn(4, 6)
    assert wdaudit.audit(model, x).ineffective >= {"0.weight", "0.bias"}
    real_run = confirm_stage._Context._real_run

    def drifting(self, params):  # a model whose output moves whenever its weights do
        out = real_run(self, params)
        if params.changes:
            return [y * 1.01 for y in out]
        return out

    monkeypatch.setattr(confirm_stage._Context, "_real_run", drifting)
    report = wdaudit.audit(model, x, strict=False)
    assert report.ineffective == frozenset()
    assert any("more than its traced program" in g.note for g in report.groups)
    assert report.confirmation.defects


# --- several optimizers -------------------------------------------------------------------------


def _normed():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 4)), \
        torch.randn(4, 8)


def _muon_adamw(model):
    matrices = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() != 2]
    return [torch.optim.Muon(matrices, lr=0.02, weight_decay=0.1),
            torch.optim.AdamW(rest, lr=1e-3, weight_decay=0.01)]


@pytest.mark.parametrize("shape", [list, tuple, lambda opts: dict(muon=opts[0], adamw=opts[1])],
                         ids=["list", "tuple", "dict"])
def test_muon_beside_adamw_each_tensor_from_its_optimizer(shape):
    model, x = _normed()
    report = wdaudit.audit(model, x, optimizer=shape(_muon_adamw(model)))
    params = report.parameters
    assert params["0.weight"].weight_decay == 0.1 and params["3.weight"].weight_decay == 0.1
    assert params["0.bias"].weight_decay == 0.01 and params["1.weight"].weight_decay == 0.01
    assert report.frozen == frozenset()  # every tensor is held by one of them
    wd001 = [f for f in report.findings if f.code == "WD001"]
    assert wd001 and set(wd001[0].parameters) == {"0.weight", "0.bias"}


def test_a_tensor_no_optimizer_holds_is_held_fixed():
    model, x = _normed()
    only = torch.optim.AdamW([p for n, p in model.named_parameters() if not n.startswith("0.")])
    report = wdaudit.audit(model, x, optimizer=only)
    assert report.frozen == {"0.weight", "0.bias"}
    assert all("held by none of the optimizers" in report.parameters[n].reason
               for n in report.frozen)
    assert report.held_fixed() == {"held by no optimizer": 2}


def test_a_tensor_held_by_two_optimizers_is_a_named_setup_error(tmp_path):
    model, x = _normed()
    both = [torch.optim.AdamW(model.parameters()), torch.optim.SGD(model[3].parameters(), lr=0.1)]
    with pytest.raises(SetupError, match=r"'3\.weight' is held by two optimizers"):
        wdaudit.audit(model, x, optimizer=both)
    file = tmp_path / "twice.py"
    file.write_text(textwrap.dedent("""
        import torch
        from torch import nn
        model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 4))
        example_inputs = torch.randn(4, 8)
        def build_optimizer(model):
            return {"a": torch.optim.AdamW(model.parameters()),
                    "b": torch.optim.SGD(model[0].parameters(), lr=0.1)}
    """))
    result = CliRunner().invoke(main, [str(file)])
    assert result.exit_code == 2, result.output
    assert "'0.weight' is held by two optimizers" in result.output
    assert "Traceback" not in result.output


def test_the_cli_reads_a_factory_returning_two_optimizers(tmp_path):
    file = tmp_path / "muon.py"
    file.write_text(textwrap.dedent("""
        import torch
        from torch import nn
        model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 4))
        example_inputs = torch.randn(4, 8)
        def build_optimizer(model):
            matrices = [p for p in model.parameters() if p.dim() == 2]
            rest = [p for p in model.parameters() if p.dim() != 2]
            return [torch.optim.Muon(matrices, lr=0.02, weight_decay=0.1),
                    torch.optim.AdamW(rest, weight_decay=0.01)]
    """))
    result = CliRunner().invoke(main, [str(file), "--format", "json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.output)
    decay = {p["name"]: p["weight_decay"] for p in doc["parameters"]}
    assert decay["0.weight"] == 0.1 and decay["0.bias"] == 0.01
    text = CliRunner().invoke(main, [str(file)]).output
    assert "(Muon + AdamW)" in text.splitlines()[0]


# --- a model that refuses float64 ---------------------------------------------------------------


class Float32Only(nn.Module):
    """nanochat's check: rotary tables must stay in one dtype."""

    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.lin = nn.Linear(8, 8)
        self.ln = nn.LayerNorm(8)
        self.head = nn.Linear(8, 3)
        self.want = dtype
        self.register_buffer("cos", torch.linspace(0.5, 1.5, 8).to(dtype))

    def forward(self, x):
        assert self.cos.dtype == self.want, "rotary tables must be " + str(self.want)
        return self.head(self.ln(self.lin(x)) * self.cos)


def test_a_model_that_refuses_float64_is_confirmed_in_float32_and_says_so():
    torch.manual_seed(0)
    report = wdaudit.audit(Float32Only(), torch.randn(4, 8))
    conf = report.confirmation
    assert conf.performed and conf.precision == "float32"
    assert "AssertionError" in conf.fallback
    assert conf.tolerances["exact"] >= 1e-4  # float32's round-off, not float64's
    assert report.ineffective >= {"lin.weight", "lin.bias"}
    doc = report.to_dict()
    assert doc["confirmation"]["precision"] == "float32" and doc["confirmation"]["tolerances"]


def test_a_model_that_refuses_both_precisions_fails_the_lint_step(tmp_path):
    file = tmp_path / "refuses.py"
    file.write_text(textwrap.dedent("""
        import torch
        from tests.test_training_setup import Float32Only
        model = Float32Only(torch.bfloat16)
        example_inputs = torch.randn(4, 8)
        def build_optimizer(model):
            return torch.optim.AdamW(model.parameters(), weight_decay=0.1)
    """))
    result = CliRunner().invoke(main, [str(file)], catch_exceptions=False)
    assert result.exit_code == 1, result.output  # not the silent 0 it was
    assert "WD005" in result.output and "AssertionError" in result.output
    header = result.output.splitlines()[0]
    assert "0 of them scale-free" in header and "claimed but not confirmed" in header
    assert "Equilibrium" not in result.output  # no numbers for groups that do not stand


# --- nanoGPT's configure_optimizers --------------------------------------------------------------


NANOGPT = """
import torch
from torch import nn

class GPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.l, self.ln, self.h = nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 2)

    def forward(self, x):
        return self.h(self.ln(self.l(x)))

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        return torch.optim.AdamW(self.parameters(), lr=learning_rate, betas=betas,
                                 weight_decay=weight_decay)

model = GPT()
example_inputs = torch.randn(3, 8)
"""


def test_nanogpts_signature_needs_no_optimizer_with_assume_decay(tmp_path):
    file = tmp_path / "nanogpt.py"
    file.write_text(NANOGPT)
    refused = CliRunner().invoke(main, [str(file)])
    assert refused.exit_code == 2
    assert "build_optimizer(model)" in refused.output and "--assume-decay" in refused.output
    assumed = CliRunner().invoke(main, [str(file), "--assume-decay", "matrices"])
    assert assumed.exit_code == 1, assumed.output
    assert "WD001" in assumed.output and "'l.weight'" in assumed.output
    file.write_text(NANOGPT + "\ndef build_optimizer(model):\n"
                    "    return model.configure_optimizers(0.1, 6e-4, (0.9, 0.95), 'cpu')\n")
    built = CliRunner().invoke(main, [str(file), "--format", "json"])
    assert built.exit_code == 1, built.output
    decay = {p["name"]: p["weight_decay"] for p in json.loads(built.output)["parameters"]}
    assert decay["l.weight"] == 0.1


# --- the callbacks on wrapped models ------------------------------------------------------------


def _peft_llama():
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=1, num_attention_heads=2,
                                      num_key_value_heads=2, max_position_embeddings=16)
    base = transformers.LlamaForCausalLM(config)
    lora = peft.LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0,
                           target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
    return peft.get_peft_model(base, lora)


class _Tokens(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        ids = torch.randint(0, 32, (5,), generator=g)
        return {"input_ids": ids, "attention_mask": torch.ones(5, dtype=torch.long),
                "labels": ids.clone()}


def _trainer(model, callback, tmp_path):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                             weight_decay=0.01, learning_rate=1e-3, report_to=[], use_cpu=True,
                             save_strategy="no", logging_strategy="no", disable_tqdm=True)
    return Trainer(model=model, args=args, train_dataset=_Tokens(), callbacks=[callback])


def test_the_trainer_callback_audits_a_peft_model(tmp_path):
    pytest.importorskip("accelerate")
    from wdaudit.integrations.transformers import WDAuditCallback

    model = _peft_llama()
    callback = WDAuditCallback(confirm=False)
    trainer = _trainer(model, callback, tmp_path)
    trainer.train()
    assert trainer.state.global_step == 1
    report = callback.report
    assert report is not None  # it raised inside Trainer.train() before
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert report.frozen == frozen
    lora = {n for n in report.parameters if "lora_" in n}
    # the false claim was "rescaled together with" the frozen base_layer / embed_tokens
    assert lora and not lora & report.ineffective


def test_a_callback_whose_audit_fails_logs_it_and_training_goes_on(tmp_path, caplog):
    pytest.importorskip("accelerate")
    from wdaudit.integrations.transformers import WDAuditCallback

    callback = WDAuditCallback(device="no-such-device")
    trainer = _trainer(_peft_llama(), callback, tmp_path)
    with caplog.at_level(logging.ERROR, logger="wdaudit"):
        trainer.train()
    assert trainer.state.global_step == 1 and callback.report is None
    assert any("training goes on" in r.getMessage() for r in caplog.records)


def test_a_compiled_module_is_audited_through_its_original():
    from wdaudit.integrations import positional_inputs, run_audit, trained_module

    model, x = _normed()
    compiled = torch.compile(model)  # compiles lazily: nothing is compiled here
    assert trained_module(compiled) is model
    optimizer = torch.optim.AdamW(compiled.parameters(), weight_decay=0.1)
    report = run_audit(compiled, (x, None), optimizer, {"confirm": False})
    assert report is not None and set(report.parameters) == {n for n, _ in
                                                              model.named_parameters()}
    assert report.parameters["0.weight"].weight_decay == 0.1
    assert positional_inputs(model, torch.randn(12, 8))[0].shape[0] == 8  # never 2
