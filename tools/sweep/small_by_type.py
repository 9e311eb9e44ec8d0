"""Per-model-type inputs for the breadth sweep (BY_TYPE): where a model type's input differs
from what its parameter name makes elsewhere (``small_makers``), the maker for that type, each
with why.  Consulted first, before the layout an input's names suggest (``small_inputs``)."""

from __future__ import annotations

from small_makers import (SAMPLES, TOKENS, VOCAB, _GRID, _embeddings, _latents, _mask,
                          _patch_grid, _pixels, _sub, _token_ids, video)


def _codebook_ids(cfg):
    """A text token and a code of each codebook per step, each in its own range (Kyutai)."""
    import torch

    codes = min(cfg.vocab_size, cfg.codebook_vocab_size)
    return torch.randint(1, codes, (2, TOKENS, 1 + cfg.num_codebooks))


def _image(height: int, width: int | None = None):
    """An image of that size (square without a width), for models whose padding or pooling
    needs another than 32 px: a recogniser's text line (its last pooling needs the height)."""
    import torch

    return lambda cfg: torch.randn(2, 3, height, width or height)


def _hop_features(cfg):
    """A codec's semantic features, (batch, frames, stacked bins): a frame per hop of the
    waveform, as its acoustic encoder strides it (the two are concatenated frame by frame)."""
    import torch

    hop = getattr(cfg, "encoder_hop_length", None) or cfg.hop_length
    bins = cfg.semantic_model_config.feature_projection_input_dim
    return torch.randn(2, SAMPLES // hop, bins)


def _folded_mel(cfg):
    """A log-mel spectrogram as CLAP's audio tower takes it, (batch, 1, frames, bins): as many
    frames as it folds into its square spectrogram image (spec_size x spec_size / bins)."""
    import torch

    audio = cfg.audio_config
    frames = audio.spec_size * (audio.spec_size // audio.num_mel_bins)
    return torch.randn(2, 1, frames, audio.num_mel_bins)


def _robot_prefix_ids(cfg):
    """PI0's prompt: an image's placeholders first, one per patch of its VLM's vision tower
    (whose features replace them), then text."""
    vision = cfg.vlm_config.vision_config
    ids = _token_ids(cfg)
    ids[:, :(vision.image_size // vision.patch_size) ** 2] = cfg.vlm_config.image_token_id
    return ids


def _action_embeds(cfg):
    """PI0's embedded robot state and action chunk, which its action expert reads: one state
    token, then the chunk."""
    import torch

    return torch.randn(2, 1 + cfg.chunk_size, cfg.dit_config.hidden_size)


def _one_video(cfg):
    """TVP's frames, (1, frames, 3, side, side) at the side its frame-pad prompt is made for:
    one video, since it views its column position embeddings with the batch size first (only
    a batch of one fits)."""
    import torch

    return torch.randn(1, cfg.num_frames, 3, cfg.max_img_size, cfg.max_img_size)


def _one_image_each(cfg):
    """Idefics' images, (batch, images, 3, side, side): one per example."""
    return _pixels(cfg)[:, None]


def _text_sees_images(cfg):
    """Which images each token attends to, (batch, tokens, images): every token its one."""
    return _mask(cfg)[..., None]


def _class_names(cfg):
    """OmDet-Turbo's class prompts, flattened over the batch: two of 8 tokens per image."""
    import torch

    return torch.randint(3, VOCAB - 8, (4, TOKENS // 2))


def _classes_per_image(cfg):
    import torch

    return torch.tensor([2, 2])


def _latent_grid(cfg):
    """An image's latents, (batch, channels, rows, columns), for a VQ model to quantize."""
    import torch

    return torch.randn(2, cfg.latent_channels, 4, 4)


def _packed_patches(cfg):
    """Two images' 4 x 4 patches side by side in one row, (1, channels, patch, patches x patch):
    the packed layout of NaViT-style towers that take each image's grid beside it."""
    import torch

    side = _sub(cfg, "vision_config").patch_size
    return torch.randn(1, 3, side, 2 * _GRID[1] * _GRID[2] * side)


def _token_patches(cfg):
    """One image's pixels grouped per language-model token, (tokens, merge x patch, merge x
    patch, channels) channel-last: the grid's 4 x 4 tokens, each 2 x 2 merged patches."""
    import torch

    side = cfg.spatial_merge_size * cfg.patch_size
    return torch.randn(_GRID[1] * _GRID[2], side, side, cfg.num_channels)


def _frame_features(cfg):
    """A frame's image features as a video tracker's memory encoder takes them, (batch, the
    encoder's width, 4, 4)."""
    import torch

    return torch.randn(2, cfg.memory_encoder_hidden_size, 4, 4)


def _frame_masks(cfg):
    """The predicted mask fused with them, as many times finer as its downsampler's stride."""
    import torch

    side = 4 * cfg.mask_downsampler_total_stride
    return torch.randn(2, 1, side, side)


# per model type, where its input differs from what the name makes elsewhere
BY_TYPE = {
    "kyutai_speech_to_text": {"input_ids": _codebook_ids},
    # a base model without pre-nets: its "values", encoder's and decoder's, are hidden states
    "speecht5": {"input_values": _embeddings, "decoder_input_values": _embeddings},
    **dict.fromkeys(("pp_ocrv5_server_rec", "pp_ocrv6_small_rec", "pp_ocrv6_tiny_rec"),
                    {"pixel_values": _image(48, 128)}),
    "pp_ocrv5_mobile_rec": {"pixel_values": _image(96, 128)},
    **dict.fromkeys(("xcodec2", "neucodec"), {"input_features": _hop_features}),
    # (called through encode) a vision encoder's latent grid, which it quantizes
    "glm_image_vqmodel": {"hidden_states": _latent_grid},
    # main_input_name says a waveform (the encoder's), but the decoder takes latent frames
    "vibevoice_acoustic_tokenizer_decoder": {"input_values": _latents},
    **dict.fromkeys(("sam2_video", "sam3_tracker_video", "edgetam_video"),
                    {"vision_features": _frame_features, "masks": _frame_masks}),
    "inkling2_vision": {"pixel_values": _token_patches},  # (its grid counts tokens)
    **dict.fromkeys(("minicpm_ocr_vision", "minicpmv4_7_vision"),
                    {"pixel_values": _packed_patches, "target_sizes": _patch_grid}),
    # stride 16 to its bridge, whose 5x5 reflect-padded output conv needs 3 px or more
    "uvdoc": {"pixel_values": _image(64)},
    "clap": {"input_features": _folded_mel},
    # audio and its video side by side: the encoder's embedder needs both
    "pe_audio_video_encoder": {"pixel_values_videos": video},
    "tvp": {"input_ids": lambda cfg: _token_ids(cfg)[:1], "pixel_values": _one_video},
    # an open-vocabulary detector: its class prompts (two per image, with how many each image
    # has) and a task prompt per image
    "omdet-turbo": {"classes_input_ids": _class_names,
                    "classes_attention_mask": lambda cfg: _mask(cfg)[:, :TOKENS // 2].repeat(2, 1),
                    "tasks_input_ids": _token_ids, "tasks_attention_mask": _mask,
                    "classes_structure": _classes_per_image},
    # its cross-attended images come after the alternatives to them (the 9th parameter, their
    # mask, says which each token sees)
    "idefics": {"pixel_values": _one_image_each, "image_attention_mask": _text_sees_images},
    # one camera's image per example, and which cameras are there
    "pi0": {"action_embeds": _action_embeds, "input_ids": _robot_prefix_ids,
            "pixel_values": lambda cfg: _pixels(cfg.vlm_config)[:, None],
            "pixel_attention_mask": lambda cfg: _mask(cfg)[:, :1].bool()},
}
