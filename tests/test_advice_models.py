"""Folklore and param_groups() on real models (issue 9).

The folklore re-statements are checked against the libraries' own functions where installed
(timm's param_groups_weight_decay, the Hugging Face Trainer's get_decay_parameter_names) and
against an independent walk of the modules for nanoGPT's and torchvision's rules.
param_groups(scale_free_decay=0) is checked against the brute-force oracle: decay stays on every
parameter the oracle calls effective and goes from every parameter it drops."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import wdaudit
from wdaudit.advice import folklore
from tests.support import oracle, zoo

MODELS = ["tv_vgg_bn", "timm_vit", "hf_bert"]


def _build(name):
    torch.manual_seed(0)
    return zoo.ZOO[name]()


def _names_of(model, tensors) -> set[str]:
    ids = {id(t) for t in tensors}
    return {n for n, p in model.named_parameters() if id(p) in ids}


@pytest.mark.zoo
@pytest.mark.parametrize("name", MODELS + ["tv_resnet18", "hf_gpt2_untied", "timm_convnext"])
def test_folklore_matches_each_rule_s_own_definition(name):
    model, _, _ = _build(name)
    table = folklore.compare(model, {})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(table["ndim"].decayed) == {n for n in trainable
                                          if dict(model.named_parameters())[n].dim() >= 2}
    norm_owned = {f"{m}.{p}" if m else p for m, mod in model.named_modules()
                  if isinstance(mod, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm,
                                      nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
                                      nn.LocalResponseNorm))
                  for p, _ in mod.named_parameters(recurse=False)}
    assert set(table["torchvision"].decayed) == trainable - norm_owned
    timm_optim = pytest.importorskip("timm.optim")
    nwd = getattr(model, "no_weight_decay", lambda: set())()
    groups = timm_optim.param_groups_weight_decay(model, 0.1, no_weight_decay_list=nwd)
    decayed = [p for g in groups if g["weight_decay"] for p in g["params"]]
    assert set(table["timm"].decayed) == _names_of(model, decayed)
    trainer = pytest.importorskip("transformers.trainer").Trainer
    hf = set(trainer.get_decay_parameter_names(None, model)) & trainable
    assert set(table["huggingface"].decayed) == hf
    for f in table.values():
        assert list(f.decayed) == sorted(f.decayed)


@pytest.mark.zoo
@pytest.mark.parametrize("name", MODELS)
def test_param_groups_against_the_oracle(name):
    model, inputs, int_high = _build(name)
    before = {n: p.detach().clone() for n, p in model.state_dict().items()}
    report = wdaudit.audit(model, inputs)
    groups = wdaudit.param_groups(model, inputs, 0.05, scale_free_decay=0.0, report=report,
                                  optimizer_kwargs=dict(lr=1e-3))
    truth = oracle.check(model, inputs, int_high=int_high)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    listed = [n for g in groups for n in g["names"]]
    assert sorted(listed) == sorted(trainable)  # every trainable parameter exactly once
    params = dict(model.named_parameters())
    decay = {}
    for g in groups:
        assert g["params"] == [params[n] for n in g["names"]]
        assert g["kind"] in ("effective", "scale-free", "no-effect", "unknown")
        decay.update({n: g["weight_decay"] for n in g["names"]})
    effective = set(truth.names) - truth.ineffective
    assert all(decay[n] == 0.05 for n in effective), "decay dropped on an effective parameter"
    dropped = {n for n, wd in decay.items() if wd == 0}
    assert dropped <= truth.ineffective
    assert dropped == truth.ineffective  # recall: wdaudit finds all of them on these models
    # the summary counts come from the kinds
    assert {g["kind"] for g in groups if g["weight_decay"] == 0} <= {"scale-free", "no-effect"}
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    out = model(inputs)
    loss = (out if isinstance(out, torch.Tensor) else out[0]).float().pow(2).mean()
    loss.backward()
    optimizer.step()
    changed = any(not torch.equal(before[n], p.detach()) for n, p in model.named_parameters())
    assert changed


def test_param_groups_defaults_keep_training_unchanged_and_attach_numbers():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 16),
                          nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 4))
    model[5].weight.requires_grad_(False)  # frozen: left out
    groups = wdaudit.param_groups(model, torch.randn(8, 8), 0.1,
                                  optimizer_kwargs=dict(lr=1e-3, betas=(0.9, 0.95)))
    names = [n for g in groups for n in g["names"]]
    assert "5.weight" not in names and len(names) == len(set(names))
    for g in groups:
        assert g["weight_decay"] == (0.0 if g["kind"] == "no-effect" else 0.1)
        if g["kind"] == "scale-free":
            assert g["equilibrium"]["angular_update"] == pytest.approx(
                (2 * 1e-3 * 0.1 * 0.1 / 1.9) ** 0.5, rel=1e-3)
    assert any(g["kind"] == "scale-free" for g in groups)
    torch.optim.AdamW(groups, lr=1e-3)


def test_folklore_in_every_report_and_its_disagreements():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 4))
    report = wdaudit.audit(model, torch.randn(4, 3, 8, 8))
    doc = report.to_dict()["folklore"]
    assert {"ndim", "timm", "huggingface", "torchvision"} <= set(doc)
    ndim = doc["ndim"]
    assert ndim["decayed"] == ["0.weight", "4.weight"]
    assert ndim["decays_ineffective"] == ["0.weight"]  # the conv weight feeds BatchNorm
    assert set(ndim["exempts_effective"]) == {"1.weight", "1.bias", "4.bias"}
    assert "0.bias" in doc["torchvision"]["decays_ineffective"]  # no effect before BN


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.block = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8))
        self.head = nn.Linear(8, 10, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.block(self.emb(ids)))


def test_param_groups_lists_tied_parameters_once():
    torch.manual_seed(0)
    model = _Tied()
    groups = wdaudit.param_groups(model, torch.randint(0, 10, (2, 5)), 0.1)
    names = [n for g in groups for n in g["names"]]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert "head.weight" not in names and names.count("emb.weight") == 1
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids))
    torch.optim.AdamW(groups, lr=1e-3)  # raises on a parameter in two groups
