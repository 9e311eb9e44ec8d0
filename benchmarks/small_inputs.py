"""The inputs of the breadth sweep's small transformers models: the forward's leading positional
parameters, each made from its name (token ids, decoder ids, 32x32 pixels, a waveform, audio
features, patches with their grid)."""

from __future__ import annotations

TOKENS = 16
VOCAB = 128
WIDTH = 32  # hidden size of the small transformers configs
PIXELS = 32  # image side of the small transformers vision configs


def candidate_inputs(model, cfg):
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
        inputs = tuple(_make(name, cfg, names, main) for name in names[:count])
        yield inputs
        for at, name in enumerate(names[:count]):
            if name in _VARIANTS and inputs[at] is not None:
                for other in _VARIANTS[name](inputs[at]):
                    yield inputs[:at] + (other,) + inputs[at + 1:]


def _make(name: str, cfg, names: list[str], main: str):
    if name in ("pixel_values", "hidden_states") and {"grid_thw", "image_grid_thw"} & set(names):
        return _patches(cfg)
    if name == "pixel_values_videos" and name == main:  # (elsewhere the video is optional, and
        return _video(cfg)  # the side its vision tower wants may be known only to that tower)
    maker = _MAKERS.get(name)
    return maker(cfg) if maker else None


def _patches(cfg):
    """Flattened patches of one image, for the vision towers that take them with their grid."""
    import torch

    vision = _sub(cfg, "vision_config")
    chans = getattr(vision, "in_channels", None) or getattr(vision, "num_channels", None) or 3
    frames = getattr(vision, "temporal_patch_size", None) or getattr(vision, "patch_temporal", 1)
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

    audio = _sub(cfg, "audio_config", "encoder_config", "encoder")
    bins = getattr(audio, "num_mel_bins", None) or getattr(audio, "feature_size", 80)
    frames = 2 * (getattr(audio, "max_source_positions", None) or TOKENS)
    return torch.randn(2, bins, frames)


def _mask(cfg):
    import torch

    return torch.ones(2, TOKENS, dtype=torch.long)


def _other_features(x):
    """(batch, time, bins) as conformer encoders take them; and the sizes feature extractors
    make where the config names none (80 tried first, 128 mel bins, 80 stacked two or four
    frames deep: 160, 320), both ways."""
    import torch

    yield x.transpose(1, 2)
    for bins in (128, 160, 320):
        if bins != x.shape[1]:
            other = torch.randn(x.shape[0], bins, x.shape[2])
            yield from (other, other.transpose(1, 2))


def _two_frames(images):
    return images[:, None].repeat(1, 2, 1, 1, 1)


def _video(cfg):
    return _two_frames(_pixels(cfg))


# the other forms an input may take: one-channel waveforms of codecs, other feature layouts and
# sizes, two-frame videos
_VARIANTS = {"input_values": lambda x: [x[:, None]], "input_features": _other_features,
             "pixel_values": lambda x: [_two_frames(x)]}
_GRID = (1, 4, 4)  # frames, rows, columns of patches: merges 2x2 into 2x2 tokens
_MAKERS = {
    "grid_thw": _grid, "image_grid_thw": _grid,
    "input_ids": _token_ids, "decoder_input_ids": _token_ids, "attention_mask": _mask,
    "pixel_values": _pixels, "input_values": _waveform, "input_features": _features,
}
