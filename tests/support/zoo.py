"""Real architectures nobody here wrote, built from tiny configs with random weights (nothing
is downloaded).  Each builder returns (model, example_inputs, int_high) where int_high bounds
token ids for the oracle's extra input draws (None for float inputs)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

IMG = (4, 3, 32, 32)  # batch 4: no BatchNorm normalises over two values at 1x1


def _img(shape=IMG):
    return torch.randn(*shape)


# --- torchvision ---------------------------------------------------------------------------


def tv_resnet():
    from torchvision.models import resnet18

    return resnet18(num_classes=10), _img(), None


def tv_vgg_bn():
    from torchvision.models.vgg import VGG, make_layers

    features = make_layers([8, "M", 16, "M", 16, 16, "M"], batch_norm=True)
    model = VGG(features, num_classes=10, init_weights=True)
    # same classifier structure (Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear), narrower
    model.classifier = nn.Sequential(nn.Linear(16 * 7 * 7, 32), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(32, 32), nn.ReLU(True), nn.Dropout(),
                                     nn.Linear(32, 10))
    return model, _img(), None


def tv_mobilenet_v2():
    from torchvision.models import mobilenet_v2

    return mobilenet_v2(width_mult=0.25, num_classes=10), _img(), None


def tv_mobilenet_v3():
    from torchvision.models import mobilenet_v3_small

    return mobilenet_v3_small(width_mult=0.25, num_classes=10), _img(), None


def tv_efficientnet():
    from torchvision.models.efficientnet import EfficientNet, MBConvConfig, FusedMBConvConfig

    settings = [MBConvConfig(1, 3, 1, 8, 8, 1), MBConvConfig(4, 3, 2, 8, 16, 2),
                MBConvConfig(4, 5, 2, 16, 16, 1)]
    del FusedMBConvConfig
    return EfficientNet(settings, dropout=0.2, stochastic_depth_prob=0.2, num_classes=10,
                        last_channel=32), _img(), None


def tv_densenet():
    from torchvision.models import DenseNet

    return DenseNet(growth_rate=8, block_config=(2, 2), num_init_features=16, bn_size=2,
                    num_classes=10), _img(), None


def tv_regnet():
    from torchvision.models.regnet import BlockParams, RegNet

    params = BlockParams.from_init_params(depth=4, w_0=8, w_a=8.0, w_m=2.0, group_width=8,
                                          se_ratio=0.25)
    return RegNet(params, num_classes=10), _img(), None


def tv_convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    cfg = [CNBlockConfig(8, 16, 1), CNBlockConfig(16, None, 1)]
    return ConvNeXt(cfg, stochastic_depth_prob=0.1, num_classes=10), _img(), None


def tv_vit():
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                             hidden_dim=16, mlp_dim=32, num_classes=10), _img(), None


def tv_swin():
    from torchvision.models.swin_transformer import SwinTransformer

    return SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 1], num_heads=[2, 2],
                           window_size=[4, 4], stochastic_depth_prob=0.1,
                           num_classes=10), _img(), None


# --- timm ----------------------------------------------------------------------------------


def timm_resnet():
    import timm

    return timm.create_model("resnet18d", pretrained=False, num_classes=10), _img(), None


def timm_vit():
    import timm

    return timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8,
                             embed_dim=16, depth=2, num_heads=2, num_classes=10), _img(), None


def timm_convnext():
    import timm

    return timm.create_model("convnext_atto", pretrained=False, depths=(1, 1, 1, 1),
                             dims=(8, 16, 16, 16), num_classes=10), _img(), None


def timm_nfnet():
    from timm.models.nfnet import NfCfg, NormFreeNet

    # NF-ResNet style: weight-standardised convs (ScaledStdConv2d), no normalisation layers
    cfg = NfCfg(depths=(1, 1, 1, 1), channels=(8, 16, 16, 16), stem_chs=8, stem_type="3x3",
                group_size=8, bottle_ratio=0.5, extra_conv=True, attn_layer="se",
                attn_kwargs=dict(rd_ratio=0.5), act_layer="gelu", num_features=32)
    return NormFreeNet(cfg, num_classes=10), _img(), None


def timm_swinv2():
    import timm

    return timm.create_model("swinv2_cr_tiny_ns_224", pretrained=False, img_size=32,
                             embed_dim=8, depths=(1, 1), num_heads=(2, 2), window_size=4,
                             num_classes=10), _img(), None


def timm_efficientnet():
    import timm

    return timm.create_model("tinynet_e", pretrained=False, num_classes=10), _img(), None


def timm_mixer():
    from timm.models.mlp_mixer import MlpMixer

    return MlpMixer(num_classes=10, img_size=32, patch_size=8, num_blocks=2,
                    embed_dim=16), _img(), None


def timm_cait():
    import timm

    return timm.create_model("cait_xxs24_224", pretrained=False, img_size=32, patch_size=8,
                             embed_dim=16, depth=2, num_heads=2, num_classes=10), _img(), None


# --- Hugging Face transformers ----------------------------------------------------------------

VOCAB = 64


def _ids(batch=2, length=6):
    return torch.randint(0, VOCAB, (batch, length))


def hf_gpt2(tied=False):
    import transformers as tf

    cfg = tf.GPT2Config(n_layer=2, n_embd=16, n_head=2, n_positions=16, vocab_size=VOCAB,
                        tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0)
    return tf.GPT2LMHeadModel(cfg), _ids(), VOCAB


def hf_bert():
    import transformers as tf

    cfg = tf.BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=16)
    return tf.BertModel(cfg), _ids(), VOCAB


def hf_llama():
    import transformers as tf

    cfg = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=16, tie_word_embeddings=False)
    return tf.LlamaForCausalLM(cfg), _ids(), VOCAB


def hf_t5_encoder():
    import transformers as tf

    cfg = tf.T5Config(vocab_size=VOCAB, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16)
    return tf.T5EncoderModel(cfg), _ids(), VOCAB


def hf_distilbert():
    import transformers as tf

    cfg = tf.DistilBertConfig(vocab_size=VOCAB, dim=16, n_layers=2, n_heads=2, hidden_dim=32,
                              max_position_embeddings=16)
    return tf.DistilBertModel(cfg), _ids(), VOCAB


ZOO: dict[str, Callable] = {
    "tv_resnet18": tv_resnet, "tv_vgg_bn": tv_vgg_bn, "tv_mobilenet_v2": tv_mobilenet_v2,
    "tv_mobilenet_v3": tv_mobilenet_v3, "tv_efficientnet": tv_efficientnet,
    "tv_densenet": tv_densenet, "tv_regnet": tv_regnet, "tv_convnext": tv_convnext,
    "tv_vit": tv_vit, "tv_swin": tv_swin,
    "timm_resnet18d": timm_resnet, "timm_vit": timm_vit, "timm_convnext": timm_convnext,
    "timm_nfnet": timm_nfnet, "timm_swinv2": timm_swinv2, "timm_efficientnet": timm_efficientnet,
    "timm_mixer": timm_mixer, "timm_cait": timm_cait,
    "hf_gpt2_untied": lambda: hf_gpt2(False), "hf_gpt2_tied": lambda: hf_gpt2(True),
    "hf_bert": hf_bert, "hf_llama": hf_llama, "hf_t5_encoder": hf_t5_encoder,
    "hf_distilbert": hf_distilbert,
}


# --- mixture-of-experts (tests/test_moe.py): one layer, 3 experts, top-2 -----------------------
# The experts run with transformers' "batched_mm" implementation: plain bmm and indexing, which
# run in float64 (the oracle and confirmation).  The default "grouped_mm" calls a kernel
# without a float64 implementation on CPU.

MOE_VOCAB = 32
_MOE = dict(vocab_size=MOE_VOCAB, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
            tie_word_embeddings=False, use_cache=False, num_experts_per_tok=2)


def _experts(model, implementation):
    model.config._experts_implementation = implementation
    return model, torch.randint(0, MOE_VOCAB, (2, 4)), MOE_VOCAB


def hf_mixtral(implementation="batched_mm"):
    import transformers as tf

    cfg = tf.MixtralConfig(**_MOE, num_local_experts=3)
    return _experts(tf.MixtralForCausalLM(cfg), implementation)


def hf_qwen2_moe(implementation="batched_mm"):  # routed experts plus a gated shared expert
    import transformers as tf

    cfg = tf.Qwen2MoeConfig(**_MOE, num_experts=3, moe_intermediate_size=8,
                            shared_expert_intermediate_size=8)
    return _experts(tf.Qwen2MoeForCausalLM(cfg), implementation)


def hf_gpt_oss(implementation="batched_mm"):  # expert biases, clamped SwiGLU, attention sinks
    import transformers as tf

    cfg = tf.GptOssConfig(**_MOE, head_dim=4, num_local_experts=3,
                          layer_types=["full_attention"])
    return _experts(tf.GptOssForCausalLM(cfg), implementation)


MOE: dict[str, Callable] = {"hf_mixtral": hf_mixtral, "hf_qwen2_moe": hf_qwen2_moe,
                            "hf_gpt_oss": hf_gpt_oss}
