"""Small models for the breadth sweep (benchmarks/sweep.py): every timm architecture and every
transformers model type with a base model, built from its config with random weights (nothing
is downloaded), with the inputs it is audited on.  timm models keep their own widths at 64 px
(past 150 M parameters, with fewer blocks: ``timm_fewer_blocks``);
transformers configs are shrunk as a whole (32 wide, 2 layers: the first of each layer type,
lists and tied sizes kept consistent) and rebuilt through ``from_dict`` so that the config's own
checks apply, and get the inputs their forward's leading positional parameters ask for."""

from __future__ import annotations

import functools
import re


IMAGE = 64  # px: the smallest many timm architectures accept (patch 16, 4 stages of /2)
TOKENS = 16
VOCAB = 128
WIDTH = 32  # hidden size of the small transformers configs
PIXELS = 32  # image side of the small transformers vision configs


# --- the registries --------------------------------------------------------------------------


def timm_names() -> list[str]:
    import timm

    return sorted(timm.list_models())


def transformers_types() -> list[str]:
    """Model types that map to a base model class (AutoModel)."""
    from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

    return sorted(MODEL_MAPPING_NAMES)


# --- building one small model ----------------------------------------------------------------


def build_timm(name: str):
    import torch

    fewer = timm_fewer_blocks(name)
    built = _timm_at_image(name, fewer)
    if built is None and KEEP in fewer:  # dropping blocks broke it (a block picked by index)
        fewer = {}
        built = _timm_at_image(name, fewer)
    if built is None:
        # a fixed input size (crossvit's two patch grids): the model as its config makes it,
        # at its own size; one built for IMAGE px but refusing them would refuse that size too
        fewer = {k: v for k, v in fewer.items() if k != KEEP}
        model = _timm_at(name, fewer, {})
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        size = int((cfg.get("input_size") or (3, 224, 224))[-1])
        built = model, torch.randn(2, _chans(model), size, size)
    built[0].sweep_fewer_blocks = fewer  # what the row reports: the model as built
    return built


def _timm_at_image(name: str, fewer: dict):
    """The model and an input of IMAGE px, or None where it refuses them."""
    import torch

    for size in ({"img_size": IMAGE}, {}):
        model = _timm_at(name, fewer, size)
        if model is not None and _accepts(model, IMAGE, _chans(model)):
            return model, torch.randn(2, _chans(model), IMAGE, IMAGE)
    return None


def _timm_at(name: str, fewer: dict, size: dict):
    """The model built with ``fewer`` blocks; None where the entry point refuses ``size``."""
    import timm

    args = {k: v for k, v in fewer.items() if k != KEEP}
    try:
        model = timm.create_model(name, pretrained=False, num_classes=10, **args, **size)
    except TypeError:
        if size:
            return None
        raise
    if KEEP in fewer:
        _keep_blocks(model, fewer[KEEP])
    return model


def _chans(model) -> int:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return int((cfg.get("input_size") or (3,))[0])


LARGE = 150_000_000  # parameters past which a timm model is built with fewer blocks


@functools.lru_cache(maxsize=None)
def timm_fewer_blocks(name: str) -> dict:
    """The keyword arguments that build a timm architecture of more than ``LARGE`` parameters
    with fewer blocks of the same kinds (2 per tower, 1 per stage), or {} where it is small or
    its entry point takes no such argument.  Its giants (vit_7b: 6.7 B) would otherwise cost a
    2-core machine minutes and tens of GiB of float64 for what two blocks already show: every
    block of a stage is the same module with other weights.  Counted on the meta device."""
    import torch

    full = _meta(name)
    if full is None or _count(full) <= LARGE:
        return {}
    stages = 4  # ResNet-like: layer1..layer4
    for attr in ("stages", "layers", "levels"):
        if isinstance(getattr(full, attr, None), (torch.nn.ModuleList, torch.nn.Sequential)):
            stages = len(getattr(full, attr))
            break
    for kwargs in ({"depth": 2}, {"depths": (1,) * stages}, {"layers": (1,) * stages}):
        smaller = _meta(name, **kwargs)
        if smaller is not None and _count(smaller) < _count(full):
            return kwargs
    # an entry point that fixes its depths itself (focalnet: a second `depths` is a TypeError):
    # the blocks are dropped after building, where that leaves a model that still runs
    before = _count(full)
    _keep_blocks(full, 2)
    return {KEEP: 2} if _count(full) < before else {}


KEEP = "keep_blocks"  # not an argument of timm's: blocks kept of every run of same-kind blocks


def _keep_blocks(model, keep: int) -> None:
    """Keeps the first ``keep`` of every list of blocks that repeat one block of the model's
    own: one class (not a torch layer's) and, after the first, one set of parameter shapes
    (a list of stages changes width along it, and is kept whole)."""
    import torch

    def shapes(block):
        return tuple((n, tuple(p.shape)) for n, p in block.named_parameters())

    for module in list(model.modules()):
        if isinstance(module, (torch.nn.Sequential, torch.nn.ModuleList)) and len(module) > keep:
            kinds = {type(m) for m in module}
            kind = next(iter(kinds))
            if len(kinds) == 1 and not kind.__module__.startswith("torch.") and \
                    len({shapes(m) for m in list(module)[1:]}) == 1:
                del module[keep:]


def _meta(name: str, **kwargs):
    import timm
    import torch

    try:
        with torch.device("meta"):
            return timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    except Exception:  # noqa: BLE001 - an entry point that refuses the argument
        return None


def _count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _accepts(model, size: int, chans: int = 3) -> bool:
    import torch

    try:
        with torch.no_grad():
            model.eval()(torch.randn(1, chans, size, size))
        return True
    except Exception:
        return False
    finally:
        model.train()


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
    "downsample_hidden_size": WIDTH, "projector_hidden_size": WIDTH, "entity_emb_size": WIDTH,
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
    "head_dim": WIDTH // 2, "d_kv": WIDTH // 2, "kv_lora_rank": 8, "q_lora_rank": 8,
    "qk_rope_head_dim": 8, "qk_nope_head_dim": 8, "qk_head_dim": 16, "v_head_dim": 8,
    "index_n_heads": 2, "index_head_dim": 16,
    # state-space mixers: mamba_n_heads * mamba_d_head == mamba_d_ssm == expand (2) * width
    "mamba_n_heads": 2, "mamba_d_head": WIDTH, "mamba_d_ssm": 2 * WIDTH, "mamba_d_state": 16,
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
           "num_windows": 4, "num_queries": 8, "num_frames": 2,
           "num_blocks": 2, "num_experts_per_tok": 2}
# None in some defaults where the model needs a size
_FILLED = ("vocab_size", "head_dim", "num_key_value_heads")
_DEPTHS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers")  # the layer count
# (a, b): a stays equal to b after shrinking where the full-size config has them equal; some
# validators and layers require it (multi-head attention, MLA's rotary head dim, a quantizer
# without projections)
_TIED = (("num_key_value_heads", "num_attention_heads"), ("head_dim", "qk_rope_head_dim"),
         ("codebook_dim", "hidden_size"), ("upsample_groups", "hidden_size"),
         ("embedding_dim", "hidden_size"))
# multimodal RoPE families whose modeling code defaults the section list ([8, 12, 12],
# [16, 24, 24]: 2:3:3 of half the full-size rotary dim) where the config states none
_MROPE_DEFAULT = ("glm", "qwen2_vl", "qwen2_5_vl", "paddleocr")
_EFFICIENTNET = {"width_coefficient": 0.25, "depth_coefficient": 0.25, "hidden_dim": 320}
# what the generic shrinking cannot know, per model type
_PER_TYPE = {
    # the top conv's width, hidden_dim, must be round_filters(1280) of the width coefficient
    "efficientnet": _EFFICIENTNET,
    "align": {"vision_config": _EFFICIENTNET, "projection_dim": 80},  # = the last block's width
    "qwen2_5_vl_vision": {"window_size": 32},  # in pixels: patch 8 x merge 2 x 2 tokens
    # five stride-2 stages, then a 2x2 unfold
    "mobilevitv2": {"image_size": 64, "width_multiplier": 0.25},
    "mamba2": {"head_dim": 2 * WIDTH // 2},  # num_heads * head_dim == expand * hidden_size
    "gpt_neo": {"attention_types": [[["global", "local"], 1]]},  # expands to per-layer types
    # shifted windows: every stage's side must stay at least the window (4 stages of /2)
    **dict.fromkeys(("swin", "swinv2", "donut-swin", "maskformer-swin"),
                    {"patch_size": 2, "window_size": 2, "embed_dim": 8}),
}


def build_transformers(model_type: str):
    import torch
    import transformers as tf

    base = tf.AutoConfig.for_model(model_type)
    small = _merge(_shrink(base.to_dict(), _TokenIds()), _PER_TYPE.get(model_type, {}))
    cfg = type(base).from_dict(small)
    torch.manual_seed(0)
    model = tf.AutoModel.from_config(cfg).eval()
    errors = []
    for inputs in _candidate_inputs(model, cfg):
        try:
            with torch.no_grad():
                model(*inputs)  # a model none of the candidates runs is not built here
            return model.train(), inputs[0] if len(inputs) == 1 else inputs
        except Exception as exc:  # noqa: BLE001 - the next candidate may fit
            errors.append(exc)
    raise _telling(errors)


_MISSING = re.compile(r"required positional argument|You have to specify|cannot be `?None")


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
    kept = _kept_layers(d, layers)
    tied = [(a, b) for a, b in _TIED if d.get(a) is not None and d.get(a) == d.get(b)]
    for key, value in list(d.items()):
        if isinstance(value, dict):
            d[key] = _shrink(value, ids)
        elif isinstance(_SMALL.get(key), bool) or (key in _FILLED and value is None):
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


def _candidate_inputs(model, cfg):
    """Positional inputs to try, shortest first: the forward's leading parameters up to the main
    input, then one more at a time, each made from its name (None where no maker fits)."""
    import inspect

    names = [p.name for p in inspect.signature(model.forward).parameters.values()
             if p.kind is p.POSITIONAL_OR_KEYWORD]
    main = getattr(model, "main_input_name", "input_ids")
    first = names.index(main) + 1 if main in names else 1
    for count in range(first, min(len(names), first + 3) + 1):
        if _MAKERS.get(names[count - 1]) is None and count > first:
            continue
        inputs = tuple(_make(name, cfg, names) for name in names[:count])
        yield inputs
        for at, name in enumerate(names[:count]):
            if name in _LAYOUTS and inputs[at] is not None:
                yield inputs[:at] + (_LAYOUTS[name](inputs[at]),) + inputs[at + 1:]


def _make(name: str, cfg, names: list[str]):
    if name in ("pixel_values", "hidden_states") and {"grid_thw", "image_grid_thw"} & set(names):
        return _patches(cfg)
    maker = _MAKERS.get(name)
    return maker(cfg) if maker else None


def _patches(cfg):
    """Flattened patches of one image, for the vision towers that take them with their grid."""
    import torch

    vision = _sub(cfg, "vision_config")
    chans = getattr(vision, "in_channels", None) or getattr(vision, "num_channels", None) or 3
    frames = getattr(vision, "temporal_patch_size", None) or 1
    return torch.randn(_GRID[1] * _GRID[2], chans * frames * vision.patch_size ** 2)


def _grid(cfg):
    import torch

    return torch.tensor([_GRID])


def _sub(cfg, *names):
    """The first sub-config of ``cfg`` among ``names`` (``cfg`` itself if none)."""
    for name in names:
        inner = getattr(cfg, name, None)
        if inner is not None and hasattr(inner, "to_dict"):
            return inner
    return cfg


def _token_ids(cfg):
    import torch

    vocab = getattr(_sub(cfg, "text_config", "decoder"), "vocab_size", None) or VOCAB
    return torch.randint(3, max(4, min(VOCAB - 8, vocab)), (2, TOKENS))


def _pixels(cfg):
    import torch

    vision = _sub(cfg, "vision_config", "backbone_config")
    chans, side = getattr(vision, "num_channels", 3), getattr(vision, "image_size", PIXELS)
    side = side if isinstance(side, int) else PIXELS
    return torch.randn(2, chans if isinstance(chans, int) else 3, side, side)


def _waveform(cfg):
    import torch

    chans = getattr(cfg, "audio_channels", None)  # codecs take (batch, channels, time)
    bins = getattr(cfg, "num_mel_bins", None)  # spectrogram transformers take (batch, time, bins)
    shape = (2, 4000) if chans is None else (2, chans, 4000)  # 0.25 s at 16 kHz: past the
    if bins and getattr(cfg, "max_length", None):  # receptive field of the conv stems
        shape = (2, cfg.max_length, bins)
    return torch.randn(*shape)


def _features(cfg):
    import torch

    audio = _sub(cfg, "audio_config", "encoder")
    bins = getattr(audio, "num_mel_bins", None) or getattr(audio, "feature_size", 80)
    frames = 2 * (getattr(audio, "max_source_positions", None) or TOKENS)
    return torch.randn(2, bins, frames)


def _mask(cfg):
    import torch

    return torch.ones(2, TOKENS, dtype=torch.long)


# the other layout an input may have: one-channel waveforms of codecs, (batch, time, bins)
# features of conformer encoders, two-frame videos
_LAYOUTS = {"input_values": lambda x: x[:, None], "input_features": lambda x: x.transpose(1, 2),
            "pixel_values": lambda x: x[:, None].repeat(1, 2, 1, 1, 1)}
_GRID = (1, 4, 4)  # frames, rows, columns of patches: merges 2x2 into 2x2 tokens
_MAKERS = {
    "grid_thw": _grid, "image_grid_thw": _grid,
    "input_ids": _token_ids, "decoder_input_ids": _token_ids, "attention_mask": _mask,
    "pixel_values": _pixels, "input_values": _waveform, "input_features": _features,
}
