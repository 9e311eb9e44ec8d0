"""The training-loop hooks, run inside the real loops: a tiny BERT classifier through
``transformers.Trainer`` for one step, and a Lightning module through ``lightning.Trainer``.
The callback's report must be the one ``audit()`` gives with the loop's own optimizer."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

import wdaudit
from wdaudit.integrations import FindingsFound, positional_inputs

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

VOCAB, LENGTH = 64, 6
EMBEDDINGS = {f"bert.embeddings.{n}.weight" for n in
              ("word_embeddings", "position_embeddings", "token_type_embeddings")}


def _bert():
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(config)


class _Rows(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return {"input_ids": torch.randint(0, VOCAB, (LENGTH,), generator=g),
                "attention_mask": torch.ones(LENGTH, dtype=torch.long),
                "labels": torch.tensor(i % 2)}


def _trainer(model, callback, tmp_path):
    from transformers import Trainer, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                             weight_decay=0.01, learning_rate=1e-3, report_to=[], use_cpu=True,
                             save_strategy="no", logging_strategy="no", disable_tqdm=True)
    return Trainer(model=model, args=args, train_dataset=_Rows(), callbacks=[callback])


def test_trainer_callback_reports_wd001_on_the_embeddings(tmp_path, caplog):
    from wdaudit.integrations.transformers import WDAuditCallback

    model = _bert()
    callback = WDAuditCallback()
    trainer = _trainer(model, callback, tmp_path)
    with caplog.at_level(logging.WARNING, logger="wdaudit"):
        trainer.train()
    assert trainer.state.global_step == 1  # the audit did not stop training
    report = callback.report
    wd001 = [f for f in report.findings if f.code == "WD001"]
    assert any(EMBEDDINGS <= set(f.parameters) for f in wd001), report.findings
    assert any("WD001" in r.getMessage() for r in caplog.records)
    # the Trainer's own decay groups were read: embeddings decayed, LayerNorm weights not
    params = report.parameters
    assert all(params[n].weight_decay == 0.01 for n in EMBEDDINGS)
    assert params["bert.embeddings.LayerNorm.weight"].weight_decay == 0.0
    # and the report is what audit() says on that batch with that optimizer
    batch = next(iter(trainer.get_train_dataloader()))
    direct = wdaudit.audit(model, positional_inputs(model, batch),
                           optimizer=trainer.optimizer.optimizer, confirm=False)
    assert _told(direct) == _told(report)


def _told(report):
    return sorted((f.code, f.parameters) for f in report.findings)


def test_trainer_callback_fail_on_stops_before_the_first_step(tmp_path):
    from wdaudit.integrations.transformers import WDAuditCallback

    trainer = _trainer(_bert(), WDAuditCallback(fail_on="warning", confirm=False), tmp_path)
    with pytest.raises(FindingsFound, match="WD001") as caught:
        trainer.train()
    assert trainer.state.global_step == 0
    assert caught.value.report.findings


def test_fail_on_is_checked_when_the_callback_is_made():
    from wdaudit.integrations.transformers import WDAuditCallback

    with pytest.raises(ValueError, match="fail_on"):
        WDAuditCallback(fail_on="loud")


def test_a_dict_batch_follows_forward_and_leaves_labels_out():
    model = _bert()
    batch = {"labels": torch.zeros(12), "attention_mask": torch.ones(12, 3),
             "input_ids": torch.zeros(12, 3, dtype=torch.long)}
    inputs = positional_inputs(model, batch)
    # cut to what confirmation checks at most (8), never to 2: BatchNorm would go blind
    assert [t.shape for t in inputs] == [(8, 3), (8, 3)]
    assert inputs[0].dtype == torch.long and inputs[1].dtype == torch.float32


# --- Lightning ---------------------------------------------------------------------------------


def _lightning_module(example: bool):
    L = pytest.importorskip("lightning")

    class Net(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.ReLU(),
                                      nn.Linear(8, 3))
            if example:
                self.example_input_array = torch.randn(4, 5)

        def forward(self, x):
            return self.body(x)

        def training_step(self, batch, index):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, weight_decay=1e-4)

        def train_dataloader(self):
            data = torch.utils.data.TensorDataset(torch.randn(8, 5), torch.randint(0, 3, (8,)))
            return torch.utils.data.DataLoader(data, batch_size=4)

    return L, Net()


@pytest.mark.parametrize("example", [True, False], ids=["example_input_array", "first_batch"])
def test_lightning_callback_audits_with_the_trainers_optimizer(example):
    from wdaudit.integrations.lightning import WDAuditCallback

    L, module = _lightning_module(example)
    callback = WDAuditCallback()
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, callbacks=[callback],
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module)
    assert trainer.global_step == 1
    report = callback.report
    direct = wdaudit.audit(module, torch.randn(4, 5), optimizer=trainer.optimizers[0],
                           confirm=False)
    assert _told(report) == _told(direct)
    assert {f.code for f in report.findings} == {"WD001", "WD003"}  # Linear → BatchNorm
    assert report.parameters["body.0.weight"].weight_decay == 1e-4


def test_lightning_callback_fail_on_stops_training():
    from wdaudit.integrations.lightning import WDAuditCallback

    L, module = _lightning_module(True)
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[WDAuditCallback(fail_on="warning", confirm=False)])
    with pytest.raises(FindingsFound):
        trainer.fit(module)
    assert trainer.global_step == 0


def test_the_first_batch_is_drawn_without_moving_the_global_rng():
    from torch.utils.data import DataLoader, TensorDataset

    from wdaudit.integrations import first_batch

    loader = DataLoader(TensorDataset(torch.arange(10.0)), batch_size=2, shuffle=True)
    before = torch.get_rng_state()
    next(iter(loader))  # a shuffling sampler seeds itself from torch's RNG ...
    assert not torch.equal(before, torch.get_rng_state())
    before = torch.get_rng_state()
    first_batch(loader)  # ... which the callbacks' draw leaves where it was
    assert torch.equal(before, torch.get_rng_state())
