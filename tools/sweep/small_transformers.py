"""Small transformers models for the breadth sweep (tools/sweep/sweep.py): every model type with
a base model, its config shrunk as a whole (32 wide, 2 layers: the first of each layer type,
lists and tied sizes kept consistent) and rebuilt through ``from_dict`` so that the config's own
checks apply; fed the inputs its forward's leading positional parameters ask for
(``small_inputs``).  Random weights, nothing downloaded."""

from __future__ import annotations

import re

from small_inputs import candidate_inputs
from small_makers import PIXELS, TOKENS, VOCAB, WIDTH
from small_per_type import CALLED, PART, PER_TYPE
from small_timm import KEEP, timm_fewer_blocks


def transformers_types() -> list[str]:
    """Model types that map to a base model class (AutoModel)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    return sorted(MODEL_MAPPING_NAMES)


# config entries shrunk wherever they occur: in the config, its sub-configs (text, vision,
# audio, encoder, ...) and its per-layer overrides
_SMALL = {
    # widths
    "hidden_size": WIDTH, "d_model": WIDTH, "n_embd": WIDTH, "dim": WIDTH, "embed_dim": WIDTH,
    "embedding_size": WIDTH, "projection_dim": WIDTH, "projection_size": WIDTH,
    "text_hidden_size": WIDTH, "audio_hidden_size": WIDTH, "out_hidden_size": WIDTH,
    "cross_hidden_size": WIDTH, "backbone_hidden_size": WIDTH, "encoder_hidden_dim": WIDTH,
    "pooler_output_size": WIDTH, "condition_dim": WIDTH, "conv_channels": WIDTH,
    "adapter_in_dim": WIDTH, "adapter_input_size": WIDTH, "adapter_out_dim": WIDTH,
    "downsample_hidden_size": WIDTH, "mit_hidden_size": WIDTH, "hidden_size_global": WIDTH,
    "projector_hidden_size": WIDTH, "entity_emb_size": WIDTH,
    "hidden_size_per_layer_input": 8,
    # feed-forward and expert widths
    "intermediate_size": 2 * WIDTH, "ffn_dim": 2 * WIDTH, "ffn_hidden_size": 2 * WIDTH,
    "d_ff": 2 * WIDTH, "n_inner": 2 * WIDTH, "hidden_dim": 2 * WIDTH,
    "encoder_ffn_dim": 2 * WIDTH, "decoder_ffn_dim": 2 * WIDTH, "moe_intermediate_size": WIDTH,
    "moe_hidden_size": WIDTH, "shared_expert_intermediate_size": WIDTH,
    "shared_experts_intermediate_size": WIDTH, "moe_shared_expert_intermediate_size": WIDTH,
    "num_local_experts": 4, "num_experts": 4, "n_routed_experts": 4,
    # depth
    "num_hidden_layers": 2, "num_layers": 2, "n_layer": 2, "n_layers": 2,
    "encoder_layers": 2, "decoder_layers": 2, "num_decoder_layers": 2,
    "depth": 2,  # of the vision towers of multimodal models
    # attention heads
    "num_attention_heads": 2, "n_head": 2, "n_heads": 2, "num_heads": 2,
    "encoder_attention_heads": 2, "decoder_attention_heads": 2, "num_key_value_heads": 1,
    "head_dim": WIDTH // 2, "d_kv": WIDTH // 2, "d_head": WIDTH // 2, "kv_lora_rank": 8,
    "q_lora_rank": 8,
    "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "qk_head_dim": 16, "v_head_dim": 8,
    "index_n_heads": 2, "index_head_dim": 16,
    "linear_num_heads": 2, "linear_head_dim": WIDTH // 2,  # linear (delta-rule) attention
    # state-space mixers: mamba_n_heads * mamba_d_head == mamba_d_ssm == expand (2) * width
    "mamba_n_heads": 2, "mamba_d_head": WIDTH, "mamba_d_ssm": 2 * WIDTH, "mamba_d_state": 16,
    "mamba_num_heads": 2, "mamba_head_dim": WIDTH, "ssm_state_size": 16,
    # HiFi-GAN vocoders halve their channels at each of 4 upsamplings
    "upsample_initial_channel": WIDTH,
    # audio codecs double their channels at each of ~4 downsamplings
    "num_filters": 4, "encoder_hidden_size": 4, "decoder_hidden_size": WIDTH,
    # vocabularies, positions, images
    "vocab_size": VOCAB, "text_vocab_size": VOCAB, "vocab_size_per_layer_input": VOCAB,
    "entity_vocab_size": VOCAB, "max_position_embeddings": 64, "n_positions": 64,
    "max_source_positions": TOKENS, "max_target_positions": 64, "image_size": PIXELS,
    "use_cache": False, "tie_word_embeddings": False,
}
# list-valued entries, element by element (the element, the list's largest): per-stage sizes of
# CNN-like and hierarchical configs, the widest stage 64 and the others in proportion
_SMALL_LISTS = {
    "depths": lambda v, top: 1, "block_sizes": lambda v, top: 1,
    "hidden_sizes": lambda v, top: max(8, 8 * round(v * 8 / top)),
    "embed_dims": lambda v, top: max(8, 8 * round(v * 8 / top)),
    "conv_dim": lambda v, top: max(8, 8 * round(v * 8 / top)),
    "neck_hidden_sizes": lambda v, top: max(8, 8 * round(v * 8 / top)),
    "encoder_in_channels": lambda v, top: max(8, 8 * round(v * 8 / top)),  # = backbone's
    "decoder_in_channels": lambda v, top: WIDTH,  # = the encoder's hidden dim
    "vision_feature_layer": lambda v, top: min(v, 1),  # a layer of the two kept
    "num_heads": lambda v, top: min(v, 2),
    "num_attention_heads": lambda v, top: min(v, 2),
    "image_size": lambda v, top: PIXELS,
    "patch_size": lambda v, top: min(v, 8),
}
# shrunk to at most this: a stride-4 stem stays 4, group norms divide the shrunk widths
_CAPPED = {"patch_size": 8, "window_size": 4, "num_groups": 2, "rotary_dim": 8, "n_group": 2,
           "topk_group": 1, "max_length": 2 * TOKENS, "num_kv_shared_layers": 0, "n_groups": 2,
           "num_windows": 4, "num_expert_group": 2, "num_queries": 8, "num_frames": 2,
           "num_blocks": 2, "num_experts_per_tok": 2, "num_experts_per_token": 2,
           "context_size": TOKENS}
# None in some defaults where the model needs a size (MoE configs leave the expert counts to
# the checkpoint): the small size, or these where none is set above
_FILLED = {key: _SMALL[key] for key in ("vocab_size", "head_dim", "num_key_value_heads",
                                        "num_experts", "n_routed_experts", "moe_intermediate_size")}
_FILLED.update(num_experts_per_tok=2, top_k_experts=2, n_shared_experts=1)
_DEPTHS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")  # the layer count
# (a, b): a stays equal to b after shrinking where the full-size config has them equal; some
# validators and layers require it (multi-head attention, MLA's rotary head dim, a quantizer
# without projections)
_TIED = (("num_key_value_heads", "num_attention_heads"), ("head_dim", "qk_rope_head_dim"),
         ("codebook_dim", "hidden_size"), ("upsample_groups", "hidden_size"),
         ("embedding_dim", "hidden_size"))
# multimodal RoPE families whose modeling code defaults the section list ([8, 12, 12],
# [16, 24, 24]: 2:3:3 of half the full-size rotary dim) where the config states none
_MROPE_DEFAULT = ("glm", "qwen2_vl", "qwen2_5_vl", "qwen2_5_omni", "paddleocr", "hunyuan_vl")


def build_transformers(model_type: str):
    import torch
    import transformers as tf

    base = tf.AutoConfig.for_model(model_type)
    small = _merge(_shrink(base.to_dict(), _TokenIds()), PER_TYPE.get(model_type, {}))
    cls, cfg = _for_model(type(base).from_dict(small), tf.AutoModel)
    torch.manual_seed(0)
    model = cls._from_config(cfg).eval()
    if model_type in CALLED:  # (an instance attribute: the parameters keep their names)
        model.forward = CALLED[model_type](model, cfg)
    for name in PART[model_type].split(".") if model_type in PART else ():
        model = getattr(model, name)
        cfg = getattr(model, "config", cfg)  # (the part's own, where it has one)
    errors = []
    for inputs in candidate_inputs(model, cfg):
        try:
            with torch.no_grad():
                model(*inputs)  # a model none of the candidates runs is not built here
            return model.train(), inputs[0] if len(inputs) == 1 else inputs
        except Exception as exc:  # noqa: BLE001 - the next candidate may fit
            errors.append(exc)
    raise _telling(errors)


def _for_model(cfg, auto):
    """The base model's class and the config it takes: ``cfg``, or the sub-config of the class
    it asks for where the registry maps a composite config to one part's model (musicgen's
    decoder)."""
    cls = _registered(cfg, auto)
    if isinstance(cls, tuple):  # funnel's two: the one its architectures name
        cls = next((c for c in cls if c.__name__ in (cfg.architectures or ())), cls[0])
    inner = [v for v in vars(cfg).values() if type(v) is cls.config_class]
    return cls, inner[0] if type(cfg) is not cls.config_class and len(inner) == 1 else cfg


def _registered(cfg, auto):
    """The class the registry maps ``cfg`` to; where its package does not export it
    (voxtral_realtime_text), the class of that name in the package's modeling module."""
    import importlib

    try:
        return auto._model_mapping[type(cfg)]
    except ValueError:
        name = auto._model_mapping._model_mapping[cfg.model_type]
        module = type(cfg).__module__.replace(".configuration_", ".modeling_")
        return getattr(importlib.import_module(module), name)


_MISSING = re.compile(r"required positional argument|You (have to|must) specify|cannot be `?None")


def _telling(errors: list[Exception]) -> Exception:
    """The failure to report: the first one with every required input given (the candidates
    after it only add inputs or change layouts)."""
    for exc in errors:
        if not _MISSING.search(str(exc)):
            return exc
    return errors[-1] if errors else TypeError("no input this sweep knows how to make")


def _merge(d: dict, extra: dict) -> dict:
    for key, value in extra.items():
        d[key] = _merge(d.get(key) or {}, value) if isinstance(value, dict) else value
    return d


class _TokenIds:
    """Special token ids moved into the shrunk vocabulary, each to its own id above those the
    random token ids are drawn from (an image token drawn at random would ask for an image)."""

    def __init__(self):
        self.taken: dict[int, int] = {}

    def __call__(self, key: str, value: int) -> int:
        if key in ("pad_token_id", "bos_token_id", "eos_token_id"):
            return min(value, 2) if value >= 0 else value
        return self.taken.setdefault(value, VOCAB - 1 - len(self.taken))


def _shrink(d: dict, ids: _TokenIds) -> dict:
    layers = next((d[k] for k in _DEPTHS if isinstance(d.get(k), int)), None)
    if layers is None and isinstance(d.get("layers_block_type"), list):
        layers = len(d["layers_block_type"])  # a hybrid whose depth is its block list's
    kept = _kept_layers(d, layers)
    tied = [(a, b) for a, b in _TIED if d.get(a) is not None and d.get(a) == d.get(b)]
    for key, value in list(d.items()):
        if isinstance(value, dict):
            d[key] = _shrink(value, ids)
        elif key in _FILLED and value is None:
            d[key] = _FILLED[key]
        elif isinstance(_SMALL.get(key), bool):
            d[key] = _SMALL[key]
        elif isinstance(value, int) and not isinstance(value, bool) and \
                not (key in _DEPTHS and "depths" in d):  # there, the count of stages
            d[key] = _small_int(key, value, ids)
        elif isinstance(value, list) and key in _SMALL_LISTS:
            d[key] = _small_list(key, value)
        elif isinstance(value, list) and kept and len(value) == layers:
            value = [value[i] for i in kept]  # one entry per layer: layer types, MoE layers...
            d[key] = [_small_int(key, v, ids) if type(v) is int else v for v in value]
    if kept and isinstance(d.get("per_layer_config"), dict):
        d["per_layer_config"] = {str(new): d["per_layer_config"][k] for k in d["per_layer_config"]
                                 for new, old in enumerate(kept) if int(k) == old}
    if kept:
        _keep_outputs(d, kept)
    if d.get("model_type") == "timm_wrapper" and d.get("model_args") is None:
        fewer = timm_fewer_blocks(d.get("architecture"))  # pe_video's 300 M tower: 2 blocks
        d["model_args"] = None if not fewer or KEEP in fewer else dict(fewer)
    if d.get("model_type") == "timm_backbone" and str(d.get("backbone")).startswith("resnet"):
        d["backbone"] = "test_resnet"  # timm's smallest resnet: same four stages, 0.1 M weights
    for a, b in tied:
        d[a] = d[b]
    _fit_rope_sections(d)
    return d


def _kept_layers(d: dict, layers) -> list[int]:
    """The two layers of a deep config that stay: the first of each layer type (so that the
    small model has both kinds of a hybrid), then the first layers.  Empty if not deep."""
    if not isinstance(layers, int) or layers <= 2 or "depths" in d:
        return []  # (with per-stage depths, the layer count is the stage count)
    types = d.get("layer_types")
    if not any(isinstance(d.get(k), int) for k in _DEPTHS):
        types = d.get("layers_block_type", types)  # the block list is the depth (nemotron_h)
    kinds = types if isinstance(types, list) and len(types) == layers else [0] * layers
    names = [repr(kind) for kind in kinds]
    firsts = [names.index(name) for name in dict.fromkeys(names)]  # layer 0 comes first
    return sorted(list(dict.fromkeys(firsts[:2] + [1]))[:2])


def _keep_outputs(d: dict, kept: list[int]) -> None:
    """Backbone outputs name layers of the full-size model ("stage12"): name the kept ones."""
    if isinstance(d.get("out_indices"), list):
        d["out_indices"] = sorted({min(i, len(kept)) for i in d["out_indices"]})
    if isinstance(d.get("out_features"), list):
        stages = {f"stage{min(int(f[5:]), len(kept))}" if f[5:].isdigit() else f
                  for f in d["out_features"]}
        d["out_features"] = sorted(stages)


def _small_int(key: str, value: int, ids: _TokenIds) -> int:
    if value == 0:
        return value  # a size of 0 turns a part off (no RoPE, no shared expert): it stays off
    if key in _SMALL and not isinstance(_SMALL[key], bool):
        return _SMALL[key]
    if key in _CAPPED:
        return min(value, _CAPPED[key])
    if str(key).endswith(("_token_id", "_token_index")) and value >= VOCAB - 8:
        return ids(key, value)
    return value


def _small_list(key: str, value: list) -> list:
    if value and all(isinstance(v, int) for v in value):
        return [_SMALL_LISTS[key](v, max(value) or 1) for v in value]
    return value


def _fit_rope_sections(d: dict) -> None:
    """Rotary section lists (multimodal RoPE) sum to half the rotary dim: rescale them to the
    shrunk one."""
    rope = d.get("rope_parameters") if isinstance(d.get("rope_parameters"), dict) else {}
    share = rope.get("partial_rotary_factor", d.get("partial_rotary_factor")) or 1.0
    half = int((d.get("head_dim") or WIDTH // 2) * share) // 2
    if str(d.get("model_type")).startswith(_MROPE_DEFAULT) and "mrope_section" not in rope:
        rope["mrope_section"] = [2, 3, 3]  # the modeling code's default, in proportion
    for rope in (d, d.get("rope_parameters"), d.get("rope_scaling")):
        if not isinstance(rope, dict):
            continue
        for key, value in rope.items():
            if "section" in str(key) and isinstance(value, list) and sum(value or [half]) != half:
                small = [max(1, v * half // sum(value)) for v in value]
                small[-1] += half - sum(small)
                rope[key] = small
