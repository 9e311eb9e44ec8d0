"""The schedule as training runs it (issue 25): read from the file (``build_scheduler``, Lightning's
``configure_optimizers`` dict), named on the command line (``--schedule``), taken from the Trainer
and Lightning callbacks.  Expectations come from the Python API with the same objects (the lr
path wdaudit reads is checked against stepping the real scheduler in
test_schedule_equilibrium.py); nothing here is a number typed in."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import wdaudit
from wdaudit.advice import SCHEDULES
from wdaudit.advice.schedule import KINDS, Schedule
from wdaudit.frontend.cli import main
from wdaudit.frontend.load import load, parse_target

STEPS = 1000
MODEL = """
import math
import torch
from torch import nn

def build_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.LayerNorm(16), nn.ReLU(), nn.Linear(16, 3))

def example_inputs():
    return torch.randn(4, 6)

def build_optimizer(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1)
"""
COSINE = """
def build_scheduler(optimizer):
    warmup, total = 100, 1000
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: t / warmup if t < warmup
        else 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup))))
"""


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _file(tmp_path, text):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(text))
    return path


def _trajectories(report_json):
    return [g["equilibrium"] for g in report_json["groups"]
            if g["equilibrium"] and g["kind"] != "no-effect"
            and g["equilibrium"].get("trajectory")]


def test_the_names_on_the_command_line_are_the_schedules_known():
    assert tuple(SCHEDULES) == tuple(KINDS)


def test_build_scheduler_in_the_file_is_followed(tmp_path):
    path = _file(tmp_path, MODEL + COSINE)
    result = run(path, "--steps", STEPS, "--format", "json")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    # the same as the API with the file's own objects
    loaded = load(parse_target(str(path)), None)
    assert loaded.origin["scheduler"] == "build_scheduler(optimizer)"
    direct = wdaudit.audit(loaded.model, loaded.example_inputs, optimizer=loaded.optimizer,
                           scheduler=loaded.scheduler, total_steps=STEPS).to_dict()
    got, want = _trajectories(out), _trajectories(direct)
    assert got and got == want
    for eq in got:
        assert len(eq["trajectory"]) >= 20 and eq["schedule"] == "LambdaLR"
        lrs = [p["lr"] for p in eq["trajectory"]]
        assert lrs[0] == 0 and max(lrs) == pytest.approx(1e-3, rel=1e-3)
    text = run(path, "--steps", STEPS)
    assert "along the schedule" in text.stdout and "LambdaLR" in text.stdout


def test_the_schedule_by_name_wins_over_the_files(tmp_path):
    path = _file(tmp_path, MODEL + COSINE)
    result = run(path, "--steps", STEPS, "--schedule", "wsd", "--warmup", 50, "--format", "json")
    assert result.exit_code == 1, result.output
    got = _trajectories(json.loads(result.stdout))
    loaded = load(parse_target(str(path)), None)
    direct = wdaudit.audit(loaded.model, loaded.example_inputs, optimizer=loaded.optimizer,
                           scheduler=Schedule("wsd", warmup=50), total_steps=STEPS).to_dict()
    assert got and got == _trajectories(direct)
    assert all(eq["schedule"] == "wsd, warmup 50" for eq in got)


def test_a_lightning_dict_from_configure_optimizers_is_read(tmp_path):
    path = _file(tmp_path, MODEL.replace("def build_optimizer(model):\n    return ", """
def configure_optimizers(model):
    opt = """) + """
    return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1e-3, total_steps=1000), "interval": "step"}}
""")
    loaded = load(parse_target(str(path)), None)
    assert loaded.origin["scheduler"] == "configure_optimizers(model)"
    result = run(path, "--format", "json")  # OneCycleLR states its length: no --steps needed
    assert result.exit_code == 1, result.output
    got = _trajectories(json.loads(result.stdout))
    assert got and all(eq["schedule"] == "OneCycleLR" and eq["trajectory"][-1]["step"] == 999
                       for eq in got)


@pytest.mark.parametrize("args, message", [
    (("--schedule", "cosine"), "--schedule needs --steps"),
    (("--steps", 10, "--warmup", 5), "--warmup is the warmup of --schedule"),
    (("--steps", 10, "--schedule", "linear", "--warmup", 10), "leaves no training"),
    (("--steps", 10, "--schedule", "exponential"), "exponential"),
])
def test_schedule_flags_that_do_not_fit_are_usage_errors(tmp_path, args, message):
    result = run(_file(tmp_path, MODEL), *args)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


def test_a_build_scheduler_that_returns_no_scheduler_is_a_clear_error(tmp_path):
    path = _file(tmp_path, MODEL + "\ndef build_scheduler(optimizer):\n    return 3\n")
    result = run(path, "--steps", 10)
    assert result.exit_code == 2
    assert "build_scheduler(optimizer)" in result.output and "not an LR scheduler" in result.output
    assert "Traceback" not in result.output


# --- the training loops' own schedulers --------------------------------------------------------


def test_the_trainer_callback_follows_the_trainers_schedule(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    from wdaudit.integrations.transformers import WDAuditCallback

    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2)
    model = transformers.BertForSequenceClassification(config)
    rows = [{"input_ids": torch.randint(0, 64, (6,)), "attention_mask": torch.ones(6, dtype=int),
             "labels": torch.tensor(i % 2)} for i in range(8)]
    callback = WDAuditCallback(confirm=False)
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=4,
                             weight_decay=0.01, learning_rate=1e-3, warmup_steps=1,
                             lr_scheduler_type="cosine", report_to=[], use_cpu=True,
                             save_strategy="no", logging_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback])
    trainer.train()
    eqs = [g.equilibrium for g in callback.report.groups
           if g.equilibrium is not None and g.equilibrium.trajectory]
    assert eqs and all(e.schedule == "LambdaLR" and e.total_steps == 3 for e in eqs)
    # the lr it followed is the Trainer's: 0 at the first step, the peak after the warmup
    assert all(e.trajectory[0].lr == 0 and max(p.lr for p in e.trajectory) == 1e-3
               for e in eqs)


def test_the_lightning_callback_turns_per_epoch_schedulers_into_steps():
    L = pytest.importorskip("lightning")
    from wdaudit.integrations.lightning import WDAuditCallback

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(5, 8), nn.LayerNorm(8), nn.Linear(8, 3))
            self.example_input_array = torch.randn(4, 5)

        def forward(self, x):
            return self.body(x)

        def training_step(self, batch, index):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
            # per epoch (Lightning's default interval): halve the lr every epoch
            return {"optimizer": opt,
                    "lr_scheduler": torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5)}

        def train_dataloader(self):
            data = torch.utils.data.TensorDataset(torch.randn(16, 5), torch.randint(0, 3, (16,)))
            return torch.utils.data.DataLoader(data, batch_size=4)  # 4 steps an epoch

    callback = WDAuditCallback(confirm=False)
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, callbacks=[callback],
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(Net())
    eqs = [g.equilibrium for g in callback.report.groups
           if g.equilibrium is not None and g.equilibrium.trajectory]
    assert eqs and all(e.total_steps == 12 for e in eqs)
    for e in eqs:
        lr = {p.step: p.lr for p in e.trajectory}
        # the epoch's 4 steps at one lr, halved at each epoch's end
        assert all(math.isclose(v, 0.1 * 0.5 ** (step // 4)) for step, v in lr.items())
