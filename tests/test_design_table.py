"""The worked facts of DESIGN.md §1, each checked against the numerical oracle and against
the expectation stated there (derived from the model's structure, not typed in)."""

import pytest
import torch
from torch import nn

from tests.support.differential import differential


def mlp_with_norms():
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.LayerNorm(16), nn.Linear(16, 16),
                         nn.ReLU(), nn.LayerNorm(16), nn.Linear(16, 4))


def test_linear_relu_layernorm_stack():
    torch.manual_seed(0)
    model = mlp_with_norms()
    report, _ = differential(model, torch.randn(6, 8))
    layers = list(model)
    norms = [i for i, m in enumerate(layers) if isinstance(m, nn.LayerNorm)]
    # a Linear with a norm after it (the hidden ones), and every norm but the last (its affine
    # feeds the next Linear, hence the next norm); the last norm and the head stay effective
    hidden = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear) and i < norms[-1]]
    expected = {f"{i}.{k}" for i in hidden + norms[:-1] for k in ("weight", "bias")}
    assert len(hidden) == 2 and len(norms) == 2
    assert report.ineffective == expected


class PostNorm(nn.Module):
    """LN(h + f(h)) after a previous LN: f's bias scales with that LN's affine."""

    def __init__(self, d=12):
        super().__init__()
        self.inp = nn.Linear(6, d)
        self.ln0 = nn.LayerNorm(d)
        self.f = nn.Linear(d, d)
        self.ln1 = nn.LayerNorm(d)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = self.ln0(self.inp(x))
        return self.head(self.ln1(h + self.f(h)))


def test_post_norm_residual():
    torch.manual_seed(0)
    report, _ = differential(PostNorm(), torch.randn(6, 6))
    joint = [g for g in report.groups if "f.bias" in g.names]
    assert joint and {"ln0.weight", "ln0.bias", "f.bias"} <= set(joint[0].names)
    assert report.parameters["f.weight"].verdict == "effective"


class BranchNorm(nn.Module):
    """h + LN(f(h)): the whole branch f is scale-free."""

    def __init__(self, d=12):
        super().__init__()
        self.inp = nn.Linear(6, d)
        self.f1 = nn.Linear(d, d)
        self.f2 = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d, elementwise_affine=False)
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = self.inp(x)
        return self.head(h + self.ln(self.f2(torch.relu(self.f1(h)))))


def test_branch_norm_residual():
    torch.manual_seed(0)
    report, _ = differential(BranchNorm(), torch.randn(6, 6))
    assert {"f1.weight", "f1.bias", "f2.weight", "f2.bias"} <= report.ineffective


class PreNorm(nn.Module):
    """h + f(LN(h)) without a final norm: nothing after the first norm is scale-free."""

    def __init__(self, d=12, layers=2):
        super().__init__()
        self.inp = nn.Linear(6, d)
        self.blocks = nn.ModuleList(
            nn.ModuleDict({"ln": nn.LayerNorm(d), "fc": nn.Linear(d, d)}) for _ in range(layers))
        self.head = nn.Linear(d, 3)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b["fc"](torch.relu(b["ln"](h)))
        return self.head(h)


def test_pre_norm_without_final_norm():
    torch.manual_seed(0)
    model = PreNorm()
    report, _ = differential(model, torch.randn(6, 6))
    after_first_norm = {n for n, _ in model.named_parameters() if not n.startswith("inp.")}
    assert not (report.ineffective & after_first_norm)


@pytest.mark.zoo
@pytest.mark.slow
def test_resnet50_train_mode():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet50(num_classes=10)
    report, _ = differential(model, torch.randn(4, 3, 32, 32))  # BN over >2 values at 1x1
    convs = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    assert convs <= report.ineffective
    stage4 = {n for n in report.parameters
              if n.startswith("layer4.") and (".bn3." in n or ".downsample.1." in n)}
    assert report.effective == stage4 | {"fc.weight", "fc.bias"}
    # every stage's residual stream but the last is closed by the next stage's entry BN
    stages = sorted({n.split(".")[0] for n in report.parameters if n.startswith("layer")})
    streams = [g for g in report.groups if g.kind == "joint"]
    assert sorted({g.names[0].split(".")[0] for g in streams}) == stages[:-1]
    assert report.ineffective == set(report.parameters) - report.effective
    assert not report.unknown


@pytest.mark.zoo
@pytest.mark.parametrize("tied", [False, True])
def test_gpt2_pre_ln_head(tied):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=16, vocab_size=64,
                                  tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 64, (2, 6))
    report, _ = differential(model, ids, int_high=64)
    if tied:
        assert report.ineffective == frozenset()
    else:
        stream = {n for n in report.parameters if ".c_proj." in n} | {
            "transformer.wte.weight", "transformer.wpe.weight"}
        assert report.ineffective == stream
        assert [set(g.names) for g in report.groups] == [stream]
