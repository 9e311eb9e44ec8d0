"""The inputs of the breadth sweep's small transformers models: the forward's leading positional
parameters, each made from its name (small_makers), tried shortest first and in their other
forms (transposed features, one-channel waveforms, two-frame videos)."""

from __future__ import annotations

import itertools

from small_by_type import BY_TYPE
from small_makers import AFTER, MAIN_ONLY, MAKERS, patch_rows, patches, two_frames, video


def candidate_inputs(model, cfg):
    """Positional inputs to try, shortest first: the forward's leading parameters up to the main
    input, then one more at a time, each made from its name (None where no maker fits)."""
    import inspect

    params = [p for p in inspect.signature(model.forward).parameters.values()
              if p.kind is p.POSITIONAL_OR_KEYWORD]
    names = [p.name for p in params]
    required = {p.name for p in params if p.default is p.empty}
    main = getattr(model, "main_input_name", "input_ids")
    by_type = BY_TYPE.get(getattr(cfg, "model_type", None), {})
    known = MAKERS.keys() | AFTER.keys() | by_type.keys()
    if isinstance(main, str) and main in MAKERS and main not in names and names \
            and names[0] not in known and not _patched(names[0], names):
        names[0] = main  # the forward names its first parameter otherwise (vibevoice)
    first = names.index(main) + 1 if main in names else 1
    last = max([first + 5] + [names.index(name) + 1 for name in by_type if name in names])
    for count in range(first, min(len(names), last) + 1):  # (a type's own inputs may be later)
        if count > first and names[count - 1] not in known:
            continue
        made: dict = {}
        for name in names[:count]:
            made[name] = _make(name, cfg, names, name == main or name in required, made)
        for inputs in _varied(tuple(made.values()), names):
            yield _with_image_tokens(dict(zip(made, inputs)), cfg)
        for name in names[:count - 1]:  # a modality the main input is an alternative to, left
            if name in _MODALITIES and name != main and name not in required \
                    and made[name] is not None:  # out (seamless: text or speech, not both)
                yield _with_image_tokens({**made, name: None}, cfg)


_MODALITIES = ("input_features", "input_values", "pixel_values", "pixel_values_videos")


def _with_image_tokens(made: dict, cfg) -> tuple:
    """The inputs, and where an image (or a video) goes with token ids, the placeholders its
    features replace: as many image tokens as the config says an image becomes (BLIP-2's
    queries, Gemma-3's pooled tokens), per frame, at the start of each row."""
    ids, pixels = made.get("input_ids"), made.get("pixel_values")
    if ids is None or pixels is None:
        return tuple(made.values())
    for part in (cfg, getattr(cfg, "encoder", None)):
        count = getattr(part, "num_query_tokens", None) or getattr(part, "mm_tokens_per_image",
                                                                   None)
        token = next((getattr(part, key) for key in ("image_token_id", "image_token_index",
                                                     "video_token_id", "video_token_index")
                      if getattr(part, key, None) is not None), None)
        count = count and count * (pixels.shape[1] if pixels.dim() == 5 else 1)
        if count and token is not None and count < ids.shape[1]:
            made["input_ids"] = ids = ids.clone()
            ids[:, :count] = token
            break
    return tuple(made.values())


def _varied(inputs: tuple, names: list[str]):
    """``inputs``, then with each one input in its other forms, then with two at once (a codec
    that takes both a one-channel waveform and transposed features)."""
    forms = [[x, *(_VARIANTS[name](x) if name in _VARIANTS and x is not None else ())]
             for name, x in zip(names, inputs)]
    yield inputs
    for at, options in enumerate(forms):
        for other in options[1:]:
            yield inputs[:at] + (other,) + inputs[at + 1:]
    varied = [at for at, options in enumerate(forms) if len(options) > 1]
    for i, a in enumerate(varied):
        for b in varied[i + 1:]:
            for x, y in itertools.product(forms[a][1:], forms[b][1:]):
                yield tuple(x if at == a else y if at == b else v for at, v in enumerate(inputs))


def _patched(name: str, names: list[str]) -> bool:
    """Whether ``name`` is the flattened patches of a vision tower that takes them with their
    grid."""
    return name in ("pixel_values", "hidden_states") and bool(
        {"grid_thw", "image_grid_thw"} & set(names))


def _make(name: str, cfg, names: list[str], needed: bool, made: dict):
    """The input ``name``; ``needed``: the main input, or one the forward requires."""
    by_type = BY_TYPE.get(getattr(cfg, "model_type", None), {})
    if name in by_type:  # (first: the type's own layout wins over the one its names suggest)
        return by_type[name](cfg)
    if _patched(name, names):
        return patches(cfg)
    if name == "pixel_values" and {"pixel_position_ids", "spatial_shapes"} & set(names):
        return patch_rows(cfg)  # (the NaFlex layout: patches listed with their positions)
    if name == "pixel_values_videos" and needed:  # (elsewhere the video is optional, and the
        return video(cfg)  # side its vision tower wants may be known only to that tower)
    if name in MAIN_ONLY and not needed:
        return None  # (an alternative to the main input, not an addition to it)
    if name in AFTER:
        return AFTER[name](cfg, made)
    return MAKERS[name](cfg) if name in MAKERS else None


def _other_features(x):
    """(batch, time, bins) as conformer encoders take them; and the sizes feature extractors
    make where the config names none (80 tried first, 128 mel bins, 80 stacked two, four or
    seven frames deep: 160, 320, 560), both ways."""
    import torch

    yield x.transpose(1, 2)
    for bins in (128, 160, 320, 560):
        if bins != x.shape[1]:
            other = torch.randn(x.shape[0], bins, x.shape[2])
            yield from (other, other.transpose(1, 2))


# the other forms an input may take: one-channel waveforms of codecs, other lengths, other
# feature layouts and sizes, two-frame videos
_VARIANTS = {"input_values": lambda x: [x[:, None], x[..., :3840]],  # 3840: whole frames of
             "input_features": _other_features,  # 1920 samples (muse_spark_audio)
             "pixel_values": lambda x: [*_as_video(x), *_unflattened(x)]}


def _as_video(images):
    """Images as two-frame videos; none where they are already more than images (PI0's
    cameras)."""
    return [two_frames(images)] if images.dim() < 5 else []


def _unflattened(flat):
    """Flattened RGB patches (patches, 3 x side x side) as the images a patch embedding
    convolves (Kimi-K2.5)."""
    side = int((flat.shape[-1] // 3) ** 0.5) if flat.dim() == 2 else 0
    return [flat.reshape(-1, 3, side, side)] if side and side * side * 3 == flat.shape[-1] else []
