"""The training runs people actually launch: adapters over a frozen base (PEFT's LoRA, DoRA,
IA3 and others), linear probes, partial fine-tuning, frozen embeddings and a frozen positional
table.  What training does not move is a constant: verdict "frozen", in no group, never a
partner in a rescaling.

Before that rule every case here was a false claim: the engine rescaled the frozen base
together with the adapter (LoRA's B on v_proj/o_proj/down_proj "ineffective" jointly with the
frozen embed_tokens and up_proj), called a frozen BatchNorm backbone scale-free, and claimed
GPT-2's c_proj and ViT's patch embedding rescalable with embeddings that never move.  Each
test is differential (tests/support/differential.py: every verdict against the numerical
oracle, report.frozen exactly the untrained tensors) plus the claim that used to be wrong.

Models are real (transformers, timm, peft), built from tiny configs with random weights;
attention runs "eager" because the oracle's jacrev through CPU flash attention falls back to
a per-output loop (six times slower)."""

from __future__ import annotations

import pytest
import torch

from tests.support.differential import differential

pytestmark = pytest.mark.zoo

VOCAB = 64
IMG = (4, 3, 32, 32)  # batch 4: no BatchNorm normalises over two values at 1x1


def _ids(batch=2, length=5):
    return torch.randint(0, VOCAB, (batch, length))


def _adamw(model):
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                             lr=1e-3, weight_decay=0.01)


def _llama():
    tf = pytest.importorskip("transformers")
    cfg = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=16, tie_word_embeddings=False,
                         attn_implementation="eager")
    return tf.LlamaForCausalLM(cfg)


def _gpt2():
    tf = pytest.importorskip("transformers")
    cfg = tf.GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=16, vocab_size=VOCAB,
                        tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
                        attn_implementation="eager")
    return tf.GPT2LMHeadModel(cfg)


def _resnet():
    """timm's resnet10t (deep tiered stem, avg-pool downsampling), narrowed."""
    timm = pytest.importorskip("timm")
    return timm.create_model("resnet10t", pretrained=False, stem_width=8,
                             channels=(8, 16, 16, 32), num_classes=4)


def _vit():
    timm = pytest.importorskip("timm")
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             embed_dim=16, depth=1, num_heads=2, num_classes=4)


def _peft(model, config):
    peft = pytest.importorskip("peft")
    return peft.get_peft_model(model, config)


def _untrained(model):
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def _assert_frozen(report, names):
    assert names and names <= report.frozen
    assert all(report.parameters[n].verdict == "frozen" for n in names)
    assert not names & report.ineffective


# --- adapters over a frozen transformer ---------------------------------------------------------


def test_lora_on_llama_claims_nothing_through_the_frozen_base():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    model = _peft(_llama(), peft.LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0,
                                            target_modules=["q_proj", "v_proj", "o_proj",
                                                            "down_proj"]))
    report, truth = differential(model, _ids(), int_high=VOCAB, optimizer=_adamw(model))
    lora = {n for n in report.parameters if ".lora_" in n}
    assert len(lora) == 8 and lora == set(truth.names)
    # the old claim: B and A on v_proj/o_proj/down_proj rescalable with the frozen
    # embed_tokens, v/o/down base_layer and up_proj (the residual stream's scale)
    for proj in ("self_attn.v_proj", "self_attn.o_proj", "mlp.down_proj"):
        for ab in ("lora_A", "lora_B"):
            name = f"base_model.model.model.layers.0.{proj}.{ab}.default.weight"
            assert report.parameters[name].verdict == "effective", name
    base = set(report.parameters) - lora
    _assert_frozen(report, base)
    assert "base_model.model.model.embed_tokens.weight" in report.frozen
    assert report.groups == () and report.ineffective == frozenset()


def test_dora_on_llama_magnitudes_and_directions_are_effective():
    """DoRA: m · (W + s·BA) / ‖W + s·BA‖ per output row, W frozen.  With W trained the
    direction is invariant to scaling W and BA together; with W a constant it is not."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    model = _peft(_llama(), peft.LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, use_dora=True,
                                            target_modules=["q_proj", "v_proj", "o_proj",
                                                            "down_proj"]))
    report, truth = differential(model, _ids(), int_high=VOCAB, optimizer=_adamw(model))
    magnitudes = {n for n in report.parameters if "lora_magnitude_vector" in n}
    adapters = {n for n in report.parameters if ".lora_" in n}
    assert len(magnitudes) == 4 and len(adapters) == 12
    # the old engine claimed {embed_tokens, v_proj base, lora_A, magnitude, up_proj} and
    # failed its own confirmation (an AnalysisDefect in strict mode)
    assert all(report.parameters[n].verdict == "effective" for n in adapters)
    _assert_frozen(report, set(report.parameters) - adapters)
    assert report.confirmation.performed and not report.confirmation.defects


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_ia3_scaling_vectors_are_not_scale_free_with_the_stream(arch):
    """IA3 rescales keys, values and feed-forward inputs by learned vectors: on GPT-2 the fused
    c_attn output (Conv1D) and mlp.c_proj's input, on Llama k_proj, v_proj and down_proj."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    if arch == "gpt2":
        base, targets, ff = _gpt2(), ["c_attn", "mlp.c_proj"], ["mlp.c_proj"]
    else:
        base, targets, ff = _llama(), ["k_proj", "v_proj", "down_proj"], ["down_proj"]
    model = _peft(base, peft.IA3Config(target_modules=targets, feedforward_modules=ff))
    report, truth = differential(model, _ids(), int_high=VOCAB, optimizer=_adamw(model))
    vectors = {n for n in report.parameters if ".ia3_l." in n}
    assert vectors and vectors == set(truth.names)
    # the old claim: the value and feed-forward vectors rescalable with the frozen embeddings
    # and the frozen output projections after them
    feed_forward = {n for n in vectors if any(f"{f}.ia3_l" in n for f in ff)}
    assert feed_forward and not feed_forward & report.ineffective
    assert all(report.parameters[n].verdict == "effective" for n in vectors)
    _assert_frozen(report, set(report.parameters) - vectors)


def _prompt_tuning(peft):
    return _llama(), peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2)


def _vera(peft):
    return _llama(), peft.VeraConfig(r=4, target_modules=["v_proj", "o_proj"])


def _ln_tuning(peft):
    return _llama(), peft.LNTuningConfig(task_type="CAUSAL_LM")


def _lokr(peft):  # its Kronecker factors reach the weight through aten.kron
    return _llama(), peft.LoKrConfig(r=2, target_modules=["v_proj", "o_proj"])


def _saved_embeddings(peft):
    return _llama(), peft.LoraConfig(r=2, lora_dropout=0.0, target_modules=["v_proj"],
                                     modules_to_save=["lm_head", "embed_tokens"])


# the tensors each adapter trains that the old engine claimed rescalable with the frozen base
_OTHER_ADAPTERS = {
    "prompt_tuning": (_prompt_tuning, ("prompt_encoder.default.embedding.weight",)),
    "vera": (_vera, ("base_model.model.model.layers.0.self_attn.v_proj.vera_lambda_b.default",
                     "base_model.model.model.layers.0.self_attn.o_proj.vera_lambda_d.default")),
    "ln_tuning": (_ln_tuning, ()),
    "lokr": (_lokr, ()),
    "modules_to_save": (_saved_embeddings,
                        ("base_model.model.model.embed_tokens.modules_to_save.default.weight",
                         "base_model.model.model.layers.0.self_attn.v_proj.lora_B.default.weight")),
}


@pytest.mark.parametrize("adapter", sorted(_OTHER_ADAPTERS))
def test_other_peft_adapters_over_a_frozen_llama(adapter):
    """Prompt tuning (virtual tokens prepended to frozen embeddings), VeRA (trained scaling
    vectors around frozen shared random matrices), LayerNorm tuning, and LoRA with trained
    copies of the embeddings and head (modules_to_save beside their frozen originals)."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    base, config = _OTHER_ADAPTERS[adapter][0](peft)
    model = _peft(base, config)
    frozen = _untrained(model)
    report, truth = differential(model, _ids(), int_high=VOCAB, optimizer=_adamw(model))
    _assert_frozen(report, frozen)
    for name in _OTHER_ADAPTERS[adapter][1]:
        assert report.parameters[name].verdict == "effective", name
    assert report.ineffective == frozenset() == truth.ineffective


# --- convolutional nets: LoRA, probes, partial fine-tuning ---------------------------------------


def test_lora_on_conv_layers_before_batch_norm():
    """Conv LoRA (lora_A a conv with the base's kernel, lora_B a 1x1) on every block conv, each
    followed by a frozen BatchNorm; the head trained as a modules_to_save copy.  With the base
    conv trained, conv + LoRA before a BatchNorm is scale-free; with it frozen the LoRA branch
    alone changes the normalised direction."""
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    model = _peft(_resnet(), peft.LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0,
                                             target_modules=r".*layer\d\.\d\.conv\d",
                                             modules_to_save=["fc"]))
    report, truth = differential(model, torch.randn(*IMG), optimizer=_adamw(model))
    lora = {n for n in report.parameters if ".lora_" in n}
    head = {"base_model.model.fc.modules_to_save.default.weight",
            "base_model.model.fc.modules_to_save.default.bias"}
    assert len(lora) == 16 and set(truth.names) == lora | head
    # the old claim: every LoRA A/B rescalable with its frozen base conv before the norm
    assert not lora & report.ineffective
    assert all(report.parameters[n].verdict == "effective" for n in lora | head)
    frozen = set(report.parameters) - lora - head
    _assert_frozen(report, frozen)
    assert {"base_model.model.layer1.0.conv1.base_layer.weight",
            "base_model.model.layer1.0.bn1.weight",
            "base_model.model.fc.original_module.weight"} <= report.frozen


@pytest.mark.parametrize("how", ["requires_grad", "optimizer"])
def test_linear_probe_backbone_is_frozen(how):
    """Only the head trains: the backbone frozen with requires_grad=False, or left with
    requires_grad=True but held by no optimizer.  Either way it is a constant."""
    torch.manual_seed(0)
    model = _resnet()
    if how == "requires_grad":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("fc."))
    optimizer = torch.optim.AdamW(model.fc.parameters(), weight_decay=0.01)
    report, truth = differential(model, torch.randn(*IMG), optimizer=optimizer)
    backbone = {n for n in report.parameters if not n.startswith("fc.")}
    _assert_frozen(report, backbone)
    assert report.frozen == backbone
    reason = "requires_grad=False" if how == "requires_grad" else "held by no optimizer"
    assert report.held_fixed() == {reason: len(backbone)}
    # the old claim: every conv before a BatchNorm (and the norms themselves) scale-free
    assert report.ineffective == frozenset() and report.groups == ()
    assert report.parameters["fc.weight"].verdict == "effective"


def test_partial_fine_tuning_keeps_the_true_claims_of_the_trained_stage():
    """layer4 and the head train, the rest is frozen.  Inside layer4 the convs before a
    BatchNorm stay scale-free (their own normalisation needs nothing outside the stage);
    nothing frozen joins a claim."""
    torch.manual_seed(0)
    model = _resnet()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(("layer4.", "fc.")))
    report, truth = differential(model, torch.randn(*IMG), optimizer=_adamw(model))
    frozen = {n for n in report.parameters if not n.startswith(("layer4.", "fc."))}
    _assert_frozen(report, frozen)
    assert {"layer4.0.conv1.weight", "layer4.0.conv2.weight",
            "layer4.0.downsample.1.weight"} <= report.ineffective
    assert report.ineffective <= {n for n in report.parameters if n.startswith("layer4.")}
    # layer3's convs (frozen, each before a BatchNorm) were claimed before
    assert "layer3.0.conv1.weight" not in report.ineffective


def test_partial_fine_tuning_with_the_batch_norms_frozen():
    """The same stage with its BatchNorm affines frozen (a common recipe): the batch
    statistics still normalise, so the convs before them stay scale-free, and the frozen
    affines join no group."""
    torch.manual_seed(0)
    model = _resnet()
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(("layer4.", "fc.")) and ".bn" not in name
                         and "downsample.2" not in name)
    report, truth = differential(model, torch.randn(*IMG), optimizer=_adamw(model))
    _assert_frozen(report, _untrained(model))
    assert report.ineffective == {"layer4.0.conv1.weight", "layer4.0.conv2.weight",
                                  "layer4.0.downsample.1.weight"}
    assert "layer4.0.bn1.weight" in report.frozen


# --- frozen embeddings ---------------------------------------------------------------------------


_C_PROJ = {f"transformer.h.{i}.{part}.c_proj.{w}" for i in (0, 1) for part in ("attn", "mlp")
           for w in ("weight", "bias")}


def test_gpt2_with_frozen_embeddings_has_no_stream_symmetry():
    """Pre-LN GPT-2: scaling wte, wpe and every c_proj together scales the residual stream,
    which ln_1/ln_2/ln_f normalise.  Trained, that is a true joint claim; with the embeddings
    frozen the stream's scale is pinned and every c_proj is effective."""
    torch.manual_seed(0)
    model = _gpt2()
    report, _ = differential(model, _ids(), int_high=VOCAB)
    (joint,) = report.groups
    assert set(joint.names) == _C_PROJ | {"transformer.wte.weight", "transformer.wpe.weight"}

    model.transformer.wte.requires_grad_(False)
    model.transformer.wpe.requires_grad_(False)
    report, truth = differential(model, _ids(), int_high=VOCAB, optimizer=_adamw(model))
    assert report.frozen == {"transformer.wte.weight", "transformer.wpe.weight"}
    # the old claim: every c_proj scale-free jointly with the frozen embeddings
    assert not _C_PROJ & report.ineffective
    assert all(report.parameters[n].verdict == "effective" for n in _C_PROJ)


def test_vit_with_a_frozen_positional_embedding():
    """DiT/MAE-style: the positional table is fixed.  Trained, {cls_token, pos_embed,
    patch_embed, attn.proj, mlp.fc2} scale the stream together before the final norm; with
    pos_embed frozen none of them is scale-free."""
    torch.manual_seed(0)
    model = _vit()
    stream = {"cls_token", "patch_embed.proj.weight", "patch_embed.proj.bias",
              "blocks.0.attn.proj.weight", "blocks.0.attn.proj.bias",
              "blocks.0.mlp.fc2.weight", "blocks.0.mlp.fc2.bias"}
    x = torch.randn(2, 3, 32, 32)
    report, _ = differential(model, x)
    (joint,) = report.groups
    assert set(joint.names) == stream | {"pos_embed"}

    model.pos_embed.requires_grad_(False)
    report, truth = differential(model, x, optimizer=_adamw(model))
    assert report.frozen == {"pos_embed"} and report.parameters["pos_embed"].verdict == "frozen"
    # the old claim: the stream's tensors scale-free with the frozen table
    assert not stream & report.ineffective
    assert report.ineffective == frozenset() and report.groups == ()
