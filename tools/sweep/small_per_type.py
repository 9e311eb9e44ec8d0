"""What the breadth sweep's generic shrinking (small_transformers) cannot know, per model type:
sizes that must agree across sub-configs, attributes the modeling code reads that a default
config lacks or leaves to the checkpoint, and families whose widths live in keys of their own.
Merged over the shrunk config, so an entry here wins.  Also the types audited through one of
their parts (PART) or called otherwise than through their forward (CALLED)."""

from __future__ import annotations

from small_makers import PIXELS, VOCAB, WIDTH

_QSA = {"indexer_n_heads": 2, "indexer_kv_heads": 1, "indexer_head_dim": WIDTH // 2,
        "indexer_budget": 8, "indexer_compress_ratio": 4}
_PER_LAYER_ROPE = {"rope_parameters": {"full_attention": {"rope_type": "default",
                                                           "rope_theta": 10000.0}}}
_VQ = {"base_channels": 32, "latent_channels": 32, "num_res_blocks": 1}  # (group norms of 32)
_HIERA = {"hidden_size": 8, "embed_dim_per_stage": [8, 16, 32, 64], "blocks_per_stage": [1] * 4,
          "num_attention_heads_per_stage": [1] * 4, "window_size_per_stage": [8, 4, 4, 2],
          "global_attention_blocks": [0], "image_size": [PIXELS, PIXELS]}  # (not a stage start)
_SAM2_VISION = {"backbone_config": _HIERA, "backbone_channel_list": [64, 32, 16, 8],
                "backbone_feature_sizes": [[8, 8], [4, 4], [2, 2]], "fpn_hidden_size": WIDTH}
_EDGETAM_VISION = {**_SAM2_VISION, "backbone_config": {"architecture": "repvit_m1"},
                   "backbone_channel_list": [384, 192, 96, 48]}
# HGNetV2 sizes its stages by these lists, not hidden_sizes: shrunk together, the detector's
# encoder reading the last three
_HGNET = {"stem_channels": [3, 16, 16], "stage_in_channels": [16, 16, 32, 48],
          "stage_mid_channels": [8, 16, 24, 32], "stage_out_channels": [16, 32, 48, 64],
          "stage_num_blocks": [1] * 4, "stage_numb_of_layers": [2] * 4,
          "hidden_sizes": [16, 32, 48, 64]}  # (the channels the backbone reports)
_PE_TOWER = {"model_args": {"img_size": PIXELS, "embed_dim": 64, "num_heads": 2}}  # (not 336 px)
_SEAMLESS = {"unit_embed_dim": WIDTH, "lang_embed_dim": 8, "spkr_embed_dim": 8,
             "unit_hifi_gan_vocab_size": 64, "t2u_vocab_size": 64, "char_vocab_size": 64,
             "t2u_encoder_layers": 2, "t2u_decoder_layers": 2, "t2u_encoder_ffn_dim": 2 * WIDTH,
             "t2u_decoder_ffn_dim": 2 * WIDTH, "t2u_encoder_attention_heads": 2,
             "t2u_decoder_attention_heads": 2, "t2u_variance_predictor_embed_dim": WIDTH,
             "t2u_variance_predictor_hidden_dim": WIDTH, "speech_encoder_layers": 2,
             "speech_encoder_intermediate_size": 2 * WIDTH, "speech_encoder_attention_heads": 2}
_EFFICIENTNET = {"width_coefficient": 0.25, "depth_coefficient": 0.25, "hidden_dim": 320}
# PP-LCNetV4 (a recogniser's backbone by default: no width downsampling, one output) as a
# detector's: four stages at strides 4-32 (each neck level upsamples the next by 2), all four
# reported to the neck, their widths the neck's inputs
_LCNET_DET = {"stem_channels": [3, 8, 16], "stage_out_channels": [16, 16, 32, 64],
              "block_configs": [[[3, 16, 16, 1, True]], [[3, 16, 16, 2, False]],
                                [[3, 16, 32, 2, False], [3, 32, 32, 1, True]],
                                [[3, 32, 64, 2, False]]],  # (kernel, in, out, stride, SE)
              "out_features": ["stage1", "stage2", "stage3", "stage4"], "out_indices": [1, 2, 3, 4]}
# the large-kernel neck's intra-class block, which the default leaves to the checkpoint: each
# conv's (kernel, stride, padding), square and 7/5/3-long strips as in PP-OCR's LKPAN
_RATIOS = (("long", 7), ("mid", 5), ("short", 3))
_INTRACLASS = {"reduce_channel": [1, 1, 0], "return_channel": [1, 1, 0],
               **{f"symmetric_conv_long_{r}ratio": [k, 1, k // 2] for r, k in _RATIOS},
               **{f"vertical_long_to_small_conv_{r}ratio": [[k, 1], 1, [k // 2, 0]]
                  for r, k in _RATIOS},
               **{f"horizontal_small_to_long_conv_{r}ratio": [[1, k], 1, [0, k // 2]]
                  for r, k in _RATIOS}}
# UVDoc at a quarter of its widths: the head fuses every bridge stage (its connector takes six
# times the bridge width), which the default reports only the last of
_UVDOC_BACKBONE = {
    "resnet_head": [[3, 8], [8, 8]], "out_indices": [1, 2, 3, 4, 5, 6],
    "out_features": [f"stage{i}" for i in range(1, 7)],
    "resnet_configs": [[[8, 8, 1, False], [8, 8, 3, False]], [[8, 16, 1, True], [16, 16, 3, False]],
                       [[16, 32, 1, True], [32, 32, 3, False]]],  # (in, out, dilation, down)
    "stage_configs": [[[32, d] for d in ds] for ds in ((1,), (2,), (5,), (8, 3, 2), (12, 7, 4),
                                                        (18, 12, 6))]}  # (width, dilation)
# what the generic shrinking cannot know, per model type
PER_TYPE = {
    # the top conv's width, hidden_dim, must be round_filters(1280) of the width coefficient
    "efficientnet": _EFFICIENTNET,
    "align": {"vision_config": _EFFICIENTNET, "projection_dim": 80},  # = the last block's width
    **dict.fromkeys(("qwen2_5_vl_vision", "exaone4_5_vision"),  # in pixels: patch 8 x merge 2
                    {"window_size": 32}),  # x 2 tokens
    # five stride-2 stages, then a 2x2 unfold
    "mobilevitv2": {"image_size": 64, "width_multiplier": 0.25},
    "mamba2": {"head_dim": 2 * WIDTH // 2},  # num_heads * head_dim == expand * hidden_size
    "gpt_neo": {"attention_types": [[["global", "local"], 1]]},  # expands to per-layer types
    "zamba2": {"mamba_headdim": 8, "attention_head_dim": WIDTH // 2},  # 8 heads x 8 == 2 x 32
    # the three kinds must sum to the depth; its dict counts blocks, an attention and an MLP
    # block per layer
    "dory": {"num_hidden_layers": 6, "n_input_layers": 2, "n_recurrent_layers": 2,
             "n_output_layers": 2, "layer_types": ["sliding_attention", "mlp", "full_attention",
                                                   "mlp", "sliding_attention", "mlp"]},
    # its decoder takes (batch x codebooks, tokens) ids: two codebooks of a (2, 16) input
    **dict.fromkeys(("musicgen", "musicgen_melody"), {"decoder": {"num_codebooks": 2}}),
    "lilt": {"hidden_size": 48},  # six box embeddings of hidden_size // 6 each
    "layoutlmv3": {"coordinate_size": 4, "shape_size": 8},  # 4 + 2 of them: the width
    "reformer": {"axial_pos_embds_dim": [WIDTH // 2, WIDTH // 2], "axial_pos_shape": [4, 4]},
    "esm": {"pad_token_id": 1},  # its position ids count from the padding index
    "step3p7": {"text_config": {"sliding_window": 8}},  # its sliding layers need one
    "xmod": {"default_language": "en_XX"},  # its adapters are per language
    # per-layer kinds the default leaves to the checkpoint: one of each in the two layers
    "lfm2_moe": {"layer_types": ["conv", "full_attention"], "num_dense_layers": 1},
    "deepseek_ocr2": {"text_config": {"mlp_layer_types": ["dense", "sparse"]}},
    "fun_asr_nano": {"adaptor_config": {"intermediate_size": WIDTH // 4}},  # text width / 4
    # heads are width // 64 in its vision tower's attention
    "bridgetower": {"vision_config": {"hidden_size": 64}, "hidden_size": 64,
                    "text_config": {"hidden_size": 64}},
    "timm_backbone": {"backbone": "test_resnet"},  # the default names none
    # (audited through its vision tower, PART) the pixel-shuffled patches (0.5: 4 x the width)
    # feed its MLP's input and the projector's widths
    "llama4": {"vision_config": {"intermediate_size": 4 * WIDTH, "projector_input_dim": WIDTH,
                                 "projector_output_dim": WIDTH, "vision_output_dim": WIDTH}},
    # (called through encode, CALLED) its latents and codebook, as wide as the sweep's models
    "glm_image_vqmodel": {"latent_channels": WIDTH, "num_embeddings": 64},
    # its semantic stage's text and semantic-token vocabularies (audited through it, PART)
    "bark": {"semantic_config": {"input_vocab_size": VOCAB, "output_vocab_size": VOCAB}},
    # attributes the modeling code reads that the default config lacks
    "dbrx": {"attn_config": {"rope_theta": 10000.0, "clip_qkv": 8.0}},  # (clamp's bounds: None)
    "t5gemma2_encoder": {"text_config": {"dropout_rate": 0.0}},
    # the image's query outputs replace placeholder tokens, which the default leaves unnamed
    **dict.fromkeys(("blip-2", "instructblip", "instructblipvideo"), {
        "image_token_index": VOCAB - 1, "video_token_index": VOCAB - 1, "num_query_tokens": 4,
        "text_config": {"word_embed_proj_dim": WIDTH}}),  # (OPT's embeddings: its width)
    # its window-attention merger runs after this layer: the first of the two kept
    **dict.fromkeys(("minicpm_ocr_vision", "minicpmv4_7_vision"), {"insert_layer_id": 0}),
    "inkling2_vision": {"projection_hidden_dim": 2 * WIDTH},  # its merger's, 4096 by default
    "gemma4_vision": {"pooling_kernel_size": 2},  # its 4x4 patches pooled to 2x2 tokens
    # its modeling code's default sections, [22, 22, 20], in proportion: h and w alike
    # (and its text and vision experts: 64 of each, widths in a list of their own)
    "ernie4_5_vl_moe": {"text_config": {"rope_parameters": {"mrope_section": [3, 3, 2]},
                                        "moe_num_experts": 4, "moe_k": 2,
                                        "moe_intermediate_size": [WIDTH, WIDTH]}},
    # layers of the two kept, deepest first; its neck's widths in proportion
    "depth_pro": {"intermediate_hook_ids": [1, 0], "fusion_hidden_size": WIDTH,
                  "intermediate_feature_dims": [16, 16],
                  "scaled_images_feature_dims": [32, 32, 16]},
    "blt": {"encoder_hash_byte_group_vocab": 64},  # six hash tables of 500,002 rows
    "pe_video_encoder": {"vision_config": _PE_TOWER},
    "pe_video": {"video_config": {"vision_config": _PE_TOWER}},
    "pe_audio_video_encoder": {"video_config": {"vision_config": _PE_TOWER}},
    # key/value heads per layer, and which layers attend fully, within the two kept
    "sapiens2": {"num_key_value_heads_per_layer": [2, 2], "num_key_value_attention_heads": 2,
                 "num_first_full_attention_layers": 1, "num_last_full_attention_layers": 1},
    # its projector's levels, which the default leaves empty, and its heads
    "lw_detr": {"projector_scale_factors": [1.0], "num_feature_levels": 1,
                "projector_in_channels": [WIDTH], "projector_out_channels": WIDTH,
                "decoder_self_attention_heads": 2, "decoder_cross_attention_heads": 2,
                "group_detr": 1},
    # vision layers injected into language layers, within the two kept; its Q-Former
    # downsamplers take a head per 64 of the tower's width and a query/window side the default
    # leaves unset
    "granite4_vision": {"deepstack_layer_map": [[1, 0]], "spatial_target_layers": [1],
                        "vision_config": {"hidden_size": 64}, "downsample_rate": "1/2"},
    # its text-to-unit model and unit vocoder (built, not run on text), in proportion
    **dict.fromkeys(("seamless_m4t", "seamless_m4t_v2"), _SEAMLESS),
    "qwen3_asr_encoder": {"max_source_positions": 50},  # features of one 100-frame chunk
    "kyutai_speech_to_text": {"num_codebooks": 2, "codebook_vocab_size": 16},  # (32 of 2049)
    # its audio, downsampled 8-fold, is added to the text position by position: 128 frames
    "voxtral_realtime": {"audio_config": {"max_source_positions": 64}},
    # its decoder views queries by the key/value head count: equal counts
    "moonshine_streaming": {"num_key_value_heads": 2},
    "kosmos-2": {"latent_query_num": 4},  # image queries, each filling a token position
    # its image pools to 2x2 tokens (of the 4x4 patches of 32 px)
    "t5gemma2": {"encoder": {"text_config": {"dropout_rate": 0.0}, "mm_tokens_per_image": 4}},
    # rotary parameters per layer type, as its rotary embedding looks them up
    "cohere_compass": {"text_config": _PER_LAYER_ROPE},
    "cohere_compass_text": _PER_LAYER_ROPE,
    # its indexed-attention layers need the indexer sizes the default leaves unset
    **dict.fromkeys(("qwen4_exp", "qwen4_exp_text"), {"text_config": _QSA, **_QSA}),
    "seggpt": {"image_size": [2 * PIXELS, PIXELS]},  # (height, width): image over its prompt
    # its quantizer codes the acoustic and semantic features side by side (32 + 32 wide);
    # 2 of 16 codes per frame at its lowest bandwidth instead of 8 of 1024 (0.5 M weights)
    "xcodec": {"codebook_dim": 2 * WIDTH, "codebook_size": 16, "target_bandwidths": [0.5]},
    # its quantizer projects the semantic and acoustic features side by side (32 + 32 wide)
    **dict.fromkeys(("xcodec2", "neucodec"), {"quantization_dim": 2 * WIDTH}),
    # its layer count is per stack (set from num_hidden_layers once, then kept: 16 of each
    # stack, run H_cycles x (L_cycles + 1) = 8 times); one layer per stack, the cycles as they are
    "hrm_text": {"num_layers_per_stack": 1},
    # its expert widths and identity ("zero") experts live in keys of their own: 256 zero
    # experts beside 4 routed made the experts' weights 260 x 4096 x 32 per layer (34 M)
    "longcat_flash": {"expert_ffn_hidden_size": WIDTH, "zero_expert_num": 2, "moe_topk": 2},
    # its flows and duration predictor are as wide as its text encoder
    "vits": {"flow_size": WIDTH, "duration_predictor_filter_channels": WIDTH,
             "posterior_encoder_num_wavenet_layers": 2, "prior_encoder_num_wavenet_layers": 2},
    # the prompt encoder's grid is the image encoder's (32 px in patches of 8), its neck's
    # width the mask decoder's
    **dict.fromkeys(("sam", "sam_hq"), {
        "prompt_encoder_config": {"image_embedding_size": 4},
        "vision_config": {"output_channels": WIDTH, "num_pos_feats": WIDTH // 2,
                          "mlp_dim": 2 * WIDTH},
        "mask_decoder_config": {"mlp_dim": 2 * WIDTH}}),
    # a Hiera backbone: four stages of doubling width at strides 4-32, the FPN reading the
    # strides 4-16 at the mask decoder's width, the prompt grid the stride-16 one
    "sam2": {"vision_config": _SAM2_VISION, "prompt_encoder_config": {"patch_size": 16}},
    "sam2_vision_model": _SAM2_VISION, "sam2_hiera_det_model": _HIERA,
    # the same around a timm RepViT, which the default names under a misspelt key
    "edgetam": {"vision_config": _EDGETAM_VISION, "prompt_encoder_config": {"patch_size": 16}},
    "edgetam_vision_model": _EDGETAM_VISION,
    # a ViT's 4x4 patch grid scaled 4, 2 and 1 times
    "sam3_tracker": {"vision_config": {"fpn_hidden_size": WIDTH,
                                       "backbone_feature_sizes": [[16, 16], [8, 8], [4, 4]]}},
    # (the memory encoder audited) its mask downsampler's output is added to the features and
    # its fuser runs on them: one width; two stride-2 layers of the four
    **dict.fromkeys(("sam2_video", "sam3_tracker_video", "edgetam_video"), {
        "memory_encoder_hidden_size": WIDTH, "mask_downsampler_embed_dim": WIDTH,
        "memory_fuser_embed_dim": WIDTH, "memory_fuser_intermediate_dim": 2 * WIDTH,
        "mask_downsampler_total_stride": 4}),
    "sam3_video": {"detector_config": {"vision_config": {"fpn_hidden_size": WIDTH}}},  # as sam3
    # its FPN at the detector's width
    **dict.fromkeys(("sam3", "sam3_lite_text"), {"vision_config": {"fpn_hidden_size": WIDTH}}),
    **dict.fromkeys(("d_fine", "deimv2", "pp_doclayout_v3", "pp_doclayout_v4"),
                    {"backbone_config": _HGNET, "encoder_in_channels": [32, 48, 64],
                     "x4_feat_dim": 16}),  # (v3's mask branch reads the first stage too)
    "pp_ocrv5_server_rec": {"backbone_config": _HGNET},
    "pp_ocrv6_small_det": {"backbone_config": _LCNET_DET, "neck_out_channels": WIDTH,
                           "layer_list_out_channels": _LCNET_DET["stage_out_channels"]},
    # (and its neck's per-level upsampling back to stride 4, and its head's kernels)
    "pp_ocrv6_medium_det": {"backbone_config": _LCNET_DET, "neck_out_channels": WIDTH,
                            "intraclass_block_config": _INTRACLASS,
                            "scale_factor_list": [1, 2, 4, 8], "kernel_list": [3, 2, 2]},
    "uvdoc": {"backbone_config": _UVDOC_BACKBONE, "bridge_connector": [WIDTH, WIDTH],
              "out_point_positions2D": [[WIDTH, 8], [8, 2]]},
    # forecasters: a horizon and a context (the defaults leave both to the dataset), short lags
    **dict.fromkeys(("time_series_transformer", "informer", "autoformer"), {
        "prediction_length": 4, "context_length": 8, "lags_sequence": [1, 2, 3],
        "num_time_features": 1, "feature_size": 3 + 1 + 2}),  # lags, time, location and scale
    "levit": {"patch_size": 16},  # its stem is four stride-2 convs whatever the patch size
    "textnet": {"stem_out_channels": 8},  # = the first of its (shrunk) hidden sizes
    "perceiver": {"d_latents": 2 * WIDTH, "num_latents": 8, "num_self_attends_per_block": 2},
    "bros": {"dim_bbox_projection": WIDTH // 2},  # its box embedding is added per head
    # its projector reads the tower's width from model_args; the default tower (resnet50) has
    # none: a small perception-encoder ViT as in its checkpoints
    "perception_lm": {"vision_config": {"architecture": "vit_pe_core_tiny_patch16_384",
                                        "model_args": {"embed_dim": 64, "depth": 2,
                                                       "num_heads": 2, "img_size": PIXELS}}},
    # image tokens by name: text-only inputs need only the image placeholder's (and the
    # end-of-line token's) id
    "chameleon": {"vocabulary_map": {"<image>": VOCAB - 1}, "vq_config": _VQ},
    "emu3": {"vocabulary_map": {"<image>": VOCAB - 1, "<|extra_200|>": VOCAB - 2},
             "vq_config": _VQ},
    # image and audio codes are token ranges at these offsets: inside the small vocabulary
    "apertus1p5": {"image_token_offset": 64, "audio_token_offset": 80,
                   "vision_config": {"codebook_size": 16, **_VQ},
                   "audio_config": {"codebook_size": 16}},
    # its audio tower is a Swin over the spectrogram folded into a square image: 2-px patches
    # and windows so that every stage's side stays at least the window (as swin's), the last
    # stage's side (2 patches) at least the fold (spec_size // num_mel_bins: 2), the patch
    # embedding's width doubling three times to hidden_size
    "clap": {"audio_config": {"spec_size": PIXELS, "num_mel_bins": 16, "patch_size": 2,
                              "patch_stride": [2, 2], "window_size": 2,
                              "patch_embeds_hidden_size": WIDTH // 8}},
    # its encoders' rotary embedding is at least 32 wide: heads of 32; the decoder's fixing
    # codes (the last 248) are speech tokens the speech encoder embeds: inside the vocabulary
    "clvp": {"text_config": {"hidden_size": 2 * WIDTH},
             "speech_config": {"hidden_size": 2 * WIDTH},
             "decoder_config": {"decoder_fixing_codes": [83, 45, 45, VOCAB - 8]}},
    # widths in proportion, the last the hidden size; one block per stage: the per-block
    # lists its config derives from these come with the full-size dict and would win, so they
    # are given too; the rotary embedding spans half the width at 4x the head dim: 8 heads;
    # 2x2 aggregation leaves 2x2 tokens of the 4x4 coarse grid of a 32 px pair
    "efficientloftr": {
        "out_features": [8, 8, 16, WIDTH], "stage_num_blocks": [1] * 4,
        "stage_in_channels": [1, 8, 8, 16], "stage_block_stride": [[2], [1], [2], [2]],
        "stage_block_in_channels": [[1], [8], [8], [16]],
        "stage_block_out_channels": [[8], [8], [16], [WIDTH]], "fine_fusion_dims": [WIDTH, 16, 8],
        "num_attention_heads": 8, "num_key_value_heads": 8, "num_attention_layers": 2,
        "q_aggregation_kernel_size": 2, "q_aggregation_stride": 2,
        "kv_aggregation_kernel_size": 2, "kv_aggregation_stride": 2},
    # its gates on the images' cross-attention start at 0 (the images have no effect at all):
    # at 1 instead, as the config allows
    "idefics": {"alpha_initializer": "ones"},
    # its timm Swin (only its image side can be set: the widths stay the tiny model's, which
    # the layer norms after it take) at the sweep's side; its task prompts' width is the class
    # embedding's, which must differ from the decoder's (the projection between them exists only
    # then): text 64 wide, the decoder at the encoder's 32.  (It caches its text embeddings
    # per prompt, in objects the audit empties before every run: docs/limitations.md.)
    "omdet-turbo": {"backbone_config": {"img_size": PIXELS}, "encoder_in_channels": [192, 384, 768],
                    "text_config": {"hidden_size": 2 * WIDTH}, "class_embed_dim": 2 * WIDTH,
                    "text_projection_in_dim": 2 * WIDTH, "text_projection_out_dim": 2 * WIDTH,
                    "task_encoder_hidden_dim": 4 * WIDTH, "vision_features_channels": [WIDTH] * 3,
                    "decoder_hidden_dim": WIDTH, "decoder_num_heads": 2, "decoder_num_layers": 2,
                    "decoder_dim_feedforward": 2 * WIDTH, "encoder_dim_feedforward": 2 * WIDTH},
    # frames of 128 px, padded by a 32-px prompt: the backbone's stride 32, then a 2x2
    # pooling, leave a 2x2 grid
    "tvp": {"max_img_size": 4 * PIXELS, "visual_prompt_size": PIXELS},
    # its image is 4 placeholder tokens (16 px in patches of 8), leaving text in the prompt
    "pi0": {"vlm_config": {"vision_config": {"image_size": PIXELS // 2}}},
    # shifted windows: every stage's side must stay at least the window (4 stages of /2)
    **dict.fromkeys(("swin", "swinv2", "donut-swin", "maskformer-swin"),
                    {"patch_size": 2, "window_size": 2, "embed_dim": 8}),
    # keypoints, match pruning and early stopping follow the weights (sizes confirmation cannot
    # follow): the detector's 16 best pixels (no threshold, no suppression), every layer, no
    # pruning (-1 switches both off)
    "lightglue": {"depth_confidence": -1.0, "width_confidence": -1.0,
                  "keypoint_detector_config": {"keypoint_threshold": 0.0, "nms_radius": 0,
                                               "max_keypoints": 16}},
}
# types whose model the sweep cannot run, audited through a part (its attribute path) that
# has a tensor forward, with that part's own config
PART = {
    # BarkModel only generates (it has no forward): its first stage, the text-to-semantic GPT
    "bark": "semantic",
    # the composite's forward fails on both output paths in transformers 5.24 (its output
    # class reads image_outputs the language model's output lacks; return_dict=False trips
    # the output-capturing wrapper): its vision tower, which llama4_text does not audit
    "llama4": "vision_model",
    # video trackers whose forward takes an inference session (Python state, run under
    # inference_mode: no tensors to trace): the memory encoder (each frame's features fused
    # with its predicted mask into the memory the tracker attends to), which only the video
    # model has; SAM 3's, whose tracker is sam3_tracker_video's, its detector, the part it adds
    **dict.fromkeys(("sam2_video", "sam3_tracker_video", "edgetam_video"), "memory_encoder"),
    "sam3_video": "detector_model",
}


def _encode(model, cfg):
    return model.encode


def _time_conditioned(model, cfg):
    """Its decoder layers scale their MLP input by a time conditioning that only the full model
    makes (from the streaming delay, 6 tokens by default): the forward with that bound."""
    import functools

    import torch
    import transformers.models.voxtral_realtime.modeling_voxtral_realtime as voxtral

    delay = torch.full((1,), 6.0)
    t_cond = voxtral.VoxtralRealtimeTimeEmbedding(cfg.hidden_size)(delay)[None]  # (over batch)
    return functools.partial(model.forward, t_cond=t_cond)


# types whose model is called otherwise than through its forward, each with why
CALLED = {
    "glm_image_vqmodel": _encode,  # a VQ model without forward, which GLM-Image encodes with
    "voxtral_realtime_text": _time_conditioned,
}
