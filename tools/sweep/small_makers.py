"""The breadth sweep's input makers (for small_inputs): each makes one forward parameter of a
small transformers model from the parameter's name and the model's config (token ids, pixels,
waveforms, features, boxes, series, trajectories, patches with their positions, ...)."""

from __future__ import annotations

TOKENS = 16
VOCAB = 128
WIDTH = 32  # hidden size of the small transformers configs
PIXELS = 32  # image side of the small transformers vision configs
SAMPLES = 4000  # waveform length: 0.25 s at 16 kHz, past the receptive field of the conv stems
_GRID = (1, 4, 4)  # frames, rows, columns of patches: merges 2x2 into 2x2 tokens


def patches(cfg):
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
    shape = (2, SAMPLES) if chans is None else (2, chans, SAMPLES)
    if bins and getattr(cfg, "max_length", None):
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


def two_frames(images):
    return images[:, None].repeat(1, 2, 1, 1, 1)


def video(cfg):
    return two_frames(_pixels(cfg))


def _boxes(cfg):
    """Layout boxes, (batch, tokens, 4) as x0, y0, x1, y1 on the 0-1000 grid of document models
    (or as many coordinates as the config asks, dim_bbox)."""
    import torch

    corners = getattr(cfg, "dim_bbox", 4)
    top = min(1000, (getattr(cfg, "max_2d_position_embeddings", None) or 1024) - 1) // 2
    low = torch.randint(0, top, (2, TOKENS, corners // 2))
    return torch.cat([low, low + torch.randint(0, top, low.shape)], dim=-1)


def _series(cfg):
    """A time series: (batch, context, channels) where the config names both, (batch, context
    + the longest lag) where it lags, else (batch, length) with the length a whole number of
    patches."""
    import torch

    context = getattr(cfg, "context_length", None)
    channels = getattr(cfg, "num_input_channels", None)
    if context and channels:
        return torch.randn(2, context, channels)
    if context and getattr(cfg, "lags_sequence", None):  # the context and its lags before it
        return torch.randn(2, context + max(cfg.lags_sequence))
    return torch.randn(2, 4 * (getattr(cfg, "patch_length", None) or 16))


def _time_mask(fill, dtype: str, over: str | None = None):
    """A mask over an input's time axis: ``over``'s where it was made, else the first input's
    (these models' main input comes first); (batch, time), the time axis the last of (batch,
    bins, time) features, the second of (batch, time, bins) mels and of series."""
    import torch

    def make(cfg, made):
        name = over if made.get(over) is not None else next(iter(made))
        main = made[name]
        time = main.shape[-1] if main.dim() == 3 and "features" in name else main.shape[1]
        return torch.full((main.shape[0], time), fill, dtype=getattr(torch, dtype))
    return make


def _mel(cfg):
    """(batch, frames, mel bins): the layout of audio towers that name their input audio_mel."""
    import torch

    return torch.randn(2, 4 * TOKENS, getattr(cfg, "input_feat_size", None) or 128)


def _task(cfg):
    """A task prompt's token ids, as long as the config's task sequence."""
    import torch

    return torch.randint(3, VOCAB - 8, (2, getattr(cfg, "task_seq_len", None) or TOKENS))


def _trajectory(size_key, dtype="float32"):
    """A decision transformer's trajectory part: (batch, steps, the config's size of it, or 1
    for rewards and returns)."""
    import torch

    def make(cfg):
        if dtype == "long":  # time steps
            return torch.arange(TOKENS).repeat(2, 1)
        return torch.randn(2, TOKENS, getattr(cfg, size_key) if size_key else 1)
    return make


def _regions(cfg):
    """Detected-region features, (batch, regions, the config's visual feature size)."""
    import torch

    return torch.randn(2, 4, getattr(cfg, "visual_feat_dim", None) or WIDTH)


def _frequency(cfg):
    import torch

    return torch.zeros(2, 1, dtype=torch.long)  # TimesFM's frequency class: high


def _merge_sizes(cfg):
    import torch

    return torch.tensor([2])  # one image, its 2x2 patches merged into a token


def _embeddings(cfg):
    """Embedded tokens, (batch, tokens, width), for models whose main input is already
    embedded (perceiver's inputs, a word-timestamp head's inputs_embeds, a drafting head's
    noise)."""
    import torch

    width = getattr(cfg, "d_model", None) or getattr(cfg, "hidden_size", None) or WIDTH
    return torch.randn(2, TOKENS, width)


def _latents(cfg):
    """A codec decoder's latent frames, (batch, channels, frames)."""
    import torch

    return torch.randn(2, getattr(cfg, "hidden_size", None) or WIDTH, TOKENS)


def _context(cfg):
    """A drafting head's context: the hidden states of the target layers it reads, side by
    side, (batch, tokens, layers x width)."""
    import torch

    layers = len(getattr(cfg, "target_layer_ids", None) or [0])
    return torch.randn(2, TOKENS, layers * (getattr(cfg, "hidden_size", None) or WIDTH))


def _encoded(cfg):
    """What a cross-attending model attends to, where its config names the encoder's width
    (BLIP-2's Q-Former: the image encoder's)."""
    import torch

    width = getattr(cfg, "encoder_hidden_size", None)
    return None if not width else torch.randn(2, TOKENS, width)


def patch_rows(cfg):
    """An image as a list of patches, (batch, 4 x 4 patches, channels x patch x patch)."""
    import torch

    vision = _sub(cfg, "vision_config")
    chans = getattr(vision, "num_channels", None) or 3
    return torch.randn(2, _GRID[1] * _GRID[2], chans * vision.patch_size ** 2)


def _patch_positions(cfg):
    """Each listed patch's (x, y) on the 4 x 4 grid."""
    import torch

    rows, cols = torch.meshgrid(torch.arange(_GRID[1]), torch.arange(_GRID[2]), indexing="ij")
    return torch.stack([cols.flatten(), rows.flatten()], dim=-1).repeat(2, 1, 1)


def _patch_grid(cfg):
    import torch

    return torch.tensor([_GRID[1:]] * 2)  # each image's rows and columns of patches


def _image_positions(cfg, made):
    """Which token positions an image's latent queries fill (Kosmos-2): the first ones after
    the start token, as many as its queries."""
    import torch

    ids = made.get("input_ids")
    mask = torch.zeros(ids.shape if ids is not None else (2, TOKENS), dtype=torch.bool)
    mask[:, 1:1 + (getattr(cfg, "latent_query_num", None) or 4)] = True
    return mask


def _time_features(cfg, made):
    """Time features for each step of the series: (batch, steps, the config's count)."""
    import torch

    series = next(iter(made.values()))
    return torch.randn(*series.shape[:2], getattr(cfg, "num_time_features", None) or 1)


# made by name
MAKERS = {
    # tokens, images, audio
    "input_ids": _token_ids, "decoder_input_ids": _token_ids, "attention_mask": _mask,
    "qformer_input_ids": _token_ids, "task_inputs": _task,
    "pixel_values": _pixels, "prompt_pixel_values": _pixels, "prompt_masks": _pixels,
    "grid_thw": _grid, "image_grid_thw": _grid, "merge_sizes": _merge_sizes,
    "pixel_position_ids": _patch_positions, "spatial_shapes": _patch_grid,
    "input_values": _waveform, "input_features": _features, "audio_mel": _mel,
    # already embedded, or what is attended to
    "inputs": _embeddings, "inputs_embeds": _embeddings, "noise_embeds": _embeddings,
    "query_embeds": _embeddings, "encoder_hidden_states": _encoded,
    "context_hidden_states": _context, "latents": _latents,
    # layouts, regions, series, trajectories
    "bbox": _boxes, "visual_feats": _regions,
    "visual_pos": lambda cfg: _boxes(cfg)[:, :4] / 1000.0,
    "past_values": _series, "freq": _frequency,
    "states": _trajectory("state_dim"), "actions": _trajectory("act_dim"),
    "rewards": _trajectory(None), "returns_to_go": _trajectory(None),
    "timesteps": _trajectory(None, "long"),
}
# made only where they are the main input: elsewhere they stand in for it
MAIN_ONLY = {"inputs_embeds", "inputs", "latents", "noise_embeds"}
# made after the main input, from it
AFTER = {"past_time_features": _time_features, "image_embeds_position_mask": _image_positions,
          "pixel_attention_mask": _time_mask(1, "long"),  # (over the listed patches)
          "past_observed_mask": _time_mask(1.0, "float32"),
          "input_features_mask": _time_mask(1, "long", over="input_features"),
          "past_values_padding": _time_mask(0.0, "float32"),
          "audio_mel_mask": _time_mask(False, "bool")}  # (True where padded)
