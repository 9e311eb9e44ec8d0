"""The breadth sweep's builders (tools/sweep/small_transformers.py, small_timm.py).  The
transformers one set integer attributes on the live config and fed every model token ids, so
whole families ended
``not-built``: a read-only property (falcon's ``head_dim``) or a per-layer attribute of a
heterogeneous config (embedding_gemma2) raised, vision models want ``pixel_values``,
encoder-decoders want decoder ids, and multimodal-RoPE section lists no longer summed to the
shrunk head dim.  Each is built small and run once here, with the inputs it is audited on."""

import importlib
import sys
import types
from pathlib import Path

import pytest
import torch

from wdaudit.engine.confirmation.generic_point import draw

SWEEP_DIR = str(Path(__file__).resolve().parents[1] / "tools" / "sweep")


@pytest.fixture(scope="module")
def sweep():
    pytest.importorskip("transformers")
    sys.path.insert(0, SWEEP_DIR)  # the builders import each other as the sweep runs them
    try:
        return importlib.import_module("small_transformers")
    finally:
        sys.path.remove(SWEEP_DIR)


@pytest.fixture(scope="module")
def small_timm():
    pytest.importorskip("timm")
    sys.path.insert(0, SWEEP_DIR)
    try:
        return importlib.import_module("small_timm")
    finally:
        sys.path.remove(SWEEP_DIR)


@pytest.mark.parametrize("model_type, first_input", [
    ("falcon", "ids"), ("embedding_gemma2", "ids"), ("glm_ocr_text", "ids"),
    ("convnext", "pixels"), ("t5", "ids"),
    # expert counts left to the checkpoint (None); 128 mel bins that only the feature
    # extractor states, under the config's encoder_config
    ("dots1", "ids"), ("lasr_ctc", "features"),
    # a dict that counts blocks (two per layer); a time series with its padding and frequency;
    # layout boxes
    ("dory", "ids"), ("timesfm", "series"), ("bros", "ids"),
    # a trajectory (states, actions, rewards, returns, time steps); detected regions
    ("decision_transformer", "series"), ("lxmert", "ids"),
    # widths the generic shrinking once missed (each kept the model over 60 s): linear-attention
    # heads, a hybrid whose depth is its block list, a HiFi-GAN vocoder's channels
    ("glm5_next_text", "ids"), ("nemo_speechlm", "ids"), ("vits", "ids"),
    # an MoE's expert width and identity experts under keys of its own (68 M parameters)
    ("longcat_flash", "ids"),
    # main inputs already embedded (a perceiver's, a drafting head's noise beside the target
    # layers it reads) and a codec decoder's latents
    ("perceiver", "embeds"), ("muse_glimmer_assistant", "embeds"), ("mimi_decoder", "latents"),
    # sizes that must agree across sub-configs: SAM's prompt grid and neck, a Hiera backbone
    # and its FPN, HGNetV2's stage lists and the detector's encoder, LeViT's fixed-stride stem;
    # a forecaster's context, lags and time features
    ("sam", "pixels"), ("sam2", "pixels"), ("d_fine", "pixels"), ("levit", "pixels"),
    ("time_series_transformer", "series"),
    # per-layer head counts; a projector the default leaves empty; a Q-Former on what it
    # cross-attends to; a timm tower at the sweep's side instead of 336 px
    ("sapiens2", "pixels"), ("lw_detr", "pixels"), ("blip_2_qformer", "embeds"),
    ("pe_video_encoder", "video"),
    # a base model without pre-nets (hidden states in); one 100-frame chunk; a text token and a
    # code per codebook per step; audio added to the text position by position
    ("speecht5", "embeds"), ("qwen3_asr_encoder", "features"), ("kyutai_speech_to_text", "ids"),
    ("voxtral_realtime", "ids"),
    # flattened patches unflattened into the images a patch embedding convolves
    ("kimi_k25_vision", "patches"),
    # a codec quantizing its acoustic and semantic features side by side
    ("xcodec", "wave"),
])
def test_the_small_model_builds_and_runs(sweep, model_type, first_input):
    model, inputs = sweep.build_transformers(model_type)
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    assert inputs[0].dtype == (torch.long if first_input == "ids" else torch.float32)
    assert all(x is None or torch.is_tensor(x) for x in inputs)
    if first_input == "pixels":
        assert inputs[0].shape == (2, 3, sweep.PIXELS, sweep.PIXELS)
    assert sum(p.numel() for p in model.parameters()) < 500_000  # small: the audit stays cheap
    assert model.training
    with torch.no_grad():
        model.eval()(*inputs)


def test_a_codecs_semantic_features_have_a_frame_per_hop_of_its_waveform(sweep):
    # its acoustic and semantic features are concatenated frame by frame
    for model_type in ("xcodec2", "neucodec"):
        model, (wave, feats) = sweep.build_transformers(model_type)
        hop = getattr(model.config, "encoder_hop_length", None) or model.config.hop_length
        assert wave.shape == (2, 1, 4000) and feats.shape == (2, 4000 // hop, 160)
        assert model.config.quantization_dim == 2 * sweep.WIDTH  # both features' width


def test_a_composite_config_mapped_to_one_parts_model_builds_that_part(sweep):
    model, inputs = sweep.build_transformers("musicgen")  # the registry maps it to the decoder
    assert type(model.config).__name__ == "MusicgenDecoderConfig"
    assert inputs.shape == (2, sweep.TOKENS)  # (batch x codebooks, tokens): 2 codebooks


def test_a_type_the_sweep_cannot_run_whole_is_audited_through_a_part(sweep):
    model, ids = sweep.build_transformers("bark")  # BarkModel only generates
    assert type(model).__name__ == "BarkSemanticModel" and ids.shape == (2, sweep.TOKENS)
    model, pixels = sweep.build_transformers("llama4")  # its composite's forward fails
    assert type(model).__name__ == "Llama4VisionModel"
    assert pixels.shape == (2, 3, sweep.PIXELS, sweep.PIXELS)
    assert model.config.intermediate_size == 4 * model.config.hidden_size  # pixel-shuffled


def test_a_model_without_a_runnable_forward_is_called_as_its_owner_calls_it(sweep):
    model, latents = sweep.build_transformers("glm_image_vqmodel")  # no forward: its encode
    assert latents.shape == (2, model.config.latent_channels, 4, 4)
    assert model.forward.__name__ == "encode"
    # a text model whose layers need the full model's time conditioning, bound by keyword; the
    # registry names the class, which its package does not export
    model, ids = sweep.build_transformers("voxtral_realtime_text")
    assert type(model).__name__ == "VoxtralRealtimeTextModel" and ids.dtype == torch.long
    assert model.forward.keywords["t_cond"].shape == (1, model.config.hidden_size)


def test_a_type_the_registry_maps_to_two_classes_gets_the_one_its_config_names(sweep):
    model, _ = sweep.build_transformers("funnel")  # FunnelModel or FunnelBaseModel
    assert type(model).__name__ == "FunnelModel"


def test_inputs_made_from_the_main_one_match_it(sweep):
    _, (mel, mask) = sweep.build_transformers("gemma3n_audio")  # (batch, frames, bins), mask
    assert mask.dtype == torch.bool and mask.shape == mel.shape[:2] and not mask.any()
    _, (values, padding, freq) = sweep.build_transformers("timesfm")
    assert padding.shape == values.shape and not padding.any() and freq.dtype == torch.long


def test_a_first_parameter_named_otherwise_gets_the_main_input(sweep):
    # its forward calls the waveform hidden_states; main_input_name says input_values
    _, wave = sweep.build_transformers("vibevoice_acoustic_tokenizer_encoder")
    assert wave.dtype == torch.float32 and wave.shape[:2] == (2, 1)


def test_a_decoder_named_after_its_encoders_input_gets_latents(sweep):
    # main_input_name says input_values (a waveform), but the decoder convolves latent frames
    model, latents = sweep.build_transformers("vibevoice_acoustic_tokenizer_decoder")
    assert latents.shape == (2, model.config.hidden_size, sweep.TOKENS)


def test_an_embedded_alternative_to_the_main_input_is_left_out(sweep):
    small_inputs = sys.modules["small_inputs"]

    class Forward:
        main_input_name = "input_ids"

        def forward(self, input_ids, attention_mask=None, inputs_embeds=None, pixel_values=None):
            pass

    config = types.SimpleNamespace()  # no sizes: the makers' defaults
    tried = [tuple(x is not None for x in c)
             for c in small_inputs.candidate_inputs(Forward(), config)]
    assert (True, True, False, True) in tried  # ids, mask, no embeddings, pixels
    assert not any(len(c) > 2 and c[2] for c in tried)


def test_an_image_goes_with_as_many_placeholders_as_it_becomes_tokens(sweep):
    model, (pixels, ids) = sweep.build_transformers("blip-2")  # one per Q-Former query
    queries = model.config.num_query_tokens
    assert (ids == model.config.image_token_id).sum(1).tolist() == [queries] * 2
    model, inputs = sweep.build_transformers("instructblipvideo")  # per frame of the video
    video, ids = inputs[0], inputs[3]  # (then the Q-Former's ids and mask)
    frames = video.shape[1]
    assert video.dim() == 5 and (ids == model.config.video_token_id).sum(1).tolist() == \
        [frames * model.config.num_query_tokens] * 2


def test_listed_patches_come_with_their_mask_and_grid(sweep):
    _, (patches, mask, grid) = sweep.build_transformers("siglip2_vision_model")
    assert patches.shape[:2] == mask.shape and mask.all()
    assert (grid.prod(-1) == patches.shape[1]).all()  # the grid covers the listed patches


def test_image_query_positions_match_the_queries(sweep):
    model, (_, ids, positions) = sweep.build_transformers("kosmos-2")
    assert positions.shape == ids.shape
    assert positions.sum(1).tolist() == [model.config.latent_query_num] * 2


def test_a_modality_the_main_input_is_an_alternative_to_is_left_out(sweep):
    _, inputs = sweep.build_transformers("seamless_m4t")  # text or speech, not both
    ids, speech, mask, decoder_ids = inputs
    assert speech is None and ids.shape == mask.shape == decoder_ids.shape


def test_a_text_line_recogniser_reads_a_line(sweep):
    _, line = sweep.build_transformers("pp_ocrv5_server_rec")  # 48 px high: its last pooling
    assert line.shape == (2, 3, 48, 128)


def test_layout_boxes_are_boxes(sweep):
    _, (ids, boxes) = sweep.build_transformers("bros")  # 8 coordinates: two corners
    assert boxes.shape == (*ids.shape, 8)
    assert (boxes[..., :4] <= boxes[..., 4:]).all() and boxes.min() >= 0


def test_two_inputs_in_their_other_forms_at_once_are_tried(sweep):
    small_inputs = sys.modules["small_inputs"]
    wave, feats = torch.zeros(2, 4000), torch.zeros(2, 80, 32)
    tried = [tuple(x.shape for x in c)
             for c in small_inputs._varied((wave, feats), ["input_values", "input_features"])]
    assert tried[0] == ((2, 4000), (2, 80, 32))
    assert ((2, 1, 4000), (2, 32, 160)) in tried  # a codec's one-channel wave, stacked features
    assert len(tried) == len(set(tried))


def test_an_encoder_decoder_gets_its_decoder_ids_positionally(sweep):
    _, inputs = sweep.build_transformers("t5")  # t5 does not derive them from input_ids
    assert isinstance(inputs, tuple) and len(inputs) == 3  # input_ids, attention_mask, decoder ids


def test_a_timm_giant_is_built_with_fewer_blocks_of_the_same_kinds(small_timm):
    # vit_7b (6.7 B parameters) was killed while being built; the giants timed out at 120 s
    import timm

    assert small_timm.timm_fewer_blocks("resnet18") == {}  # small: as registered
    assert small_timm.timm_fewer_blocks("vit_giant_patch14_224") == {"depth": 2}
    # focalnet's entry point fixes its depths (a second `depths` is a TypeError): blocks are
    # dropped after building, each stage keeping two, the list of stages (widths) kept whole
    assert small_timm.timm_fewer_blocks("focalnet_huge_fl4") == {small_timm.KEEP: 2}
    with torch.device("meta"):
        full = timm.create_model("focalnet_huge_fl4", pretrained=False, num_classes=10)
        kept = timm.create_model("focalnet_huge_fl4", pretrained=False, num_classes=10)
    small_timm._keep_blocks(kept, 2)
    assert [len(s.blocks) for s in full.layers] == [2, 2, 18, 2]
    assert [len(s.blocks) for s in kept.layers] == [2, 2, 2, 2]
    kinds = {type(m) for m in full.modules()}
    assert {type(m) for m in kept.modules()} == kinds


def test_blocks_of_two_kinds_keep_both_kinds(small_timm):
    # sapiens2: full attention in the first and last 8 blocks, grouped-query between; the 5 B
    # model (56 blocks) was built whole and timed out
    import timm

    with torch.device("meta"):
        kept = timm.create_model("vit_5b_patch16_sapiens2", pretrained=False, num_classes=10)
    full_kinds = {tuple(p.shape for p in b.parameters()) for b in kept.blocks}
    small_timm._keep_blocks(kept, 2)
    assert len(full_kinds) == 2 and len(kept.blocks) == 4
    assert {tuple(p.shape for p in b.parameters()) for b in kept.blocks} == full_kinds
    assert small_timm.timm_fewer_blocks("vit_5b_patch16_sapiens2") == {small_timm.KEEP: 2}


def test_a_timm_model_refusing_64_px_gets_the_nearest_side_it_accepts(small_timm):
    # deepseek_vit (patch 14) and gemma4_vit (48 px pooling) used to fall back to their own
    # 546 and 768 px: 74-120 s of confirmation for what a small image shows
    model, x = small_timm.build_timm("inception_v3")  # needs 75 px
    assert not small_timm._accepts(model, 64)
    assert x.shape == (2, 3, 96, 96) and x.shape[-1] in small_timm.SIDES
    with torch.no_grad():
        model.eval()(x)


def test_a_stage_that_runs_its_children_in_turn_keeps_two_blocks(small_timm):
    # regnet's RegStage holds its blocks as named children b1..bN, run by iterating
    # self.children(): regnety_2560 (1.3 B parameters) was built whole and took 60-66 s
    import timm

    with torch.device("meta"):
        full = timm.create_model("regnety_1280", pretrained=False, num_classes=10)
        kept = timm.create_model("regnety_1280", pretrained=False, num_classes=10)
    small_timm._keep_blocks(kept, 2)
    stages = ("s1", "s2", "s3", "s4")
    before = [len(list(getattr(full, s).children())) for s in stages]
    after = [len(list(getattr(kept, s).children())) for s in stages]
    assert max(before) > 3 and after == [min(n, 3) for n in before]  # the first, then 2
    assert small_timm.timm_fewer_blocks("regnety_1280") == {small_timm.KEEP: 2}


def test_a_matcher_keeps_its_sizes_whatever_its_weights(sweep):
    # LightGlue's keypoint count, pruning and early stop follow its weights by default: sizes
    # that confirmation, which runs it at other weights, cannot follow
    model, pairs = sweep.build_transformers("lightglue")
    model.eval()
    calls = [0] * len(model.transformer_layers)
    for i, layer in enumerate(model.transformer_layers):
        layer.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    for seed in (0, 1):  # at the generic points confirmation draws
        point = draw(dict(model.named_parameters()), device=torch.device("cpu"),
                     dtype=torch.float32, seed=seed)
        model.load_state_dict(point, strict=False)
        with torch.no_grad():
            out = model(pairs)
        assert out.keypoints.shape[-2] == model.config.keypoint_detector_config.max_keypoints
    assert calls == [2] * len(calls)  # every layer, once per draw, on every keypoint


@pytest.mark.parametrize("model_type", ["pp_ocrv6_small_det", "pp_ocrv6_medium_det", "uvdoc"])
def test_a_neck_gets_every_backbone_stage_it_fuses(sweep, model_type):
    # their defaults report only the last stage (uvdoc's head takes all six, the detectors'
    # necks four at strides 4-32, upsampling each by 2 onto the one before)
    model, pixels = sweep.build_transformers(model_type)
    with torch.no_grad():
        maps = model.eval().backbone(pixels).feature_maps
    assert len(maps) == (6 if model_type == "uvdoc" else 4)
    if model_type != "uvdoc":
        assert [m.shape[-1] for m in maps] == [pixels.shape[-1] // s for s in (4, 8, 16, 32)]
    else:  # stride 16 to the bridge: 4x4, as its 5x5 reflect-padded output conv needs
        assert pixels.shape == (2, 3, 64, 64) and maps[-1].shape[-2:] == (4, 4)


def test_a_packed_tower_gets_its_images_in_one_row_with_their_grids(sweep):
    # MiniCPM's towers take every image's patches side by side (batch 1) and each image's grid;
    # positions are looked up per image and concatenated
    model, (pixels, grids) = sweep.build_transformers("minicpm_ocr_vision")
    side = model.config.patch_size
    assert pixels.shape[:3] == (1, 3, side)
    assert pixels.shape[-1] // side == int(grids.prod(-1).sum()) and grids.shape == (2, 2)
    assert model.config.insert_layer_id == 0  # its merger runs within the two layers kept


def test_pixels_grouped_per_language_token_match_a_grid_counted_in_tokens(sweep):
    # inkling2's tower takes one (merge x patch)^2 block of channel-last pixels per LM token,
    # its grid in tokens: the type's own layout, not the flattened patches its names suggest
    model, (pixels, grid) = sweep.build_transformers("inkling2_vision")
    cfg = model.config
    side = cfg.spatial_merge_size * cfg.patch_size
    assert pixels.shape == (int(grid.prod()), side, side, cfg.num_channels)


@pytest.mark.parametrize("model_type", ["sam2_video", "sam3_tracker_video", "edgetam_video"])
def test_a_tracker_driven_by_an_inference_session_is_built_as_its_memory_encoder(sweep, model_type):
    # the video model's forward takes a session object under inference_mode: nothing to trace
    model, (features, masks) = sweep.build_transformers(model_type)
    assert type(model).__name__.endswith("VideoMemoryEncoder")
    stride = model.mask_downsampler.final_conv.in_channels ** 0.5  # channels x4 per stride 2
    assert features.shape == (2, model.feature_projection.in_channels, 4, 4)
    assert masks.shape == (2, 1, 4 * stride, 4 * stride)


def test_sam3_video_is_built_as_its_detector(sweep):
    model, (pixels, _, ids) = sweep.build_transformers("sam3_video")
    assert type(model).__name__ == "Sam3Model" and model.config.model_type == "sam3"
    assert pixels.shape == (2, 3, sweep.PIXELS, sweep.PIXELS) and ids.shape == (2, sweep.TOKENS)


def test_inputs_a_type_lays_out_its_own_way(sweep):
    # a Swin over a spectrogram folded into a square image: (batch, 1, frames, bins), as many
    # frames as the fold holds
    model, (_, mel) = sweep.build_transformers("clap")
    audio = model.config.audio_config
    assert mel.shape == (2, 1, audio.spec_size ** 2 // audio.num_mel_bins, audio.num_mel_bins)
    # a batch of one: its column position embeddings are viewed with the batch size first
    model, (ids, frames) = sweep.build_transformers("tvp")
    side = model.config.max_img_size
    assert ids.shape == (1, sweep.TOKENS) and frames.shape == (1, 2, 3, side, side)
    # a video beside the audio, which the embedder needs both of
    _, (wave, video) = sweep.build_transformers("pe_audio_video_encoder")
    assert wave.shape[:2] == (2, 1) and video.shape == (2, 2, 3, sweep.PIXELS, sweep.PIXELS)


def test_a_robot_policy_gets_its_action_chunk_cameras_and_image_placeholders(sweep):
    # pi0: its own maker of the camera mask wins over the one made from the main input, and its
    # 5-D images are not also tried as two-frame videos (that raised and ended the candidates)
    model, (actions, ids, images, mask, cameras) = sweep.build_transformers("pi0")
    cfg = model.config
    assert actions.shape == (2, 1 + cfg.chunk_size, cfg.dit_config.hidden_size)
    assert images.shape == (2, 1, 3, sweep.PIXELS // 2, sweep.PIXELS // 2)
    assert cameras.dtype == torch.bool and cameras.shape == (2, 1) and cameras.all()
    placeholders = (ids == cfg.vlm_config.image_token_id).sum(1).tolist()
    assert placeholders == [4, 4] and mask.shape == ids.shape  # 4 of 16: text too


def test_a_types_own_inputs_are_tried_however_late_they_come(sweep):
    # idefics: images and their mask are its 6th and 9th parameters
    model, inputs = sweep.build_transformers("idefics")
    assert len(inputs) == 9
    images, seen = inputs[5], inputs[8]
    assert images.shape == (2, 1, 3, sweep.PIXELS, sweep.PIXELS)
    assert seen.shape == (2, sweep.TOKENS, 1) and seen.all()
    gates = [p for name, p in model.named_parameters() if "alpha" in name]
    assert gates and all((p == 1).all() for p in gates)  # the images have an effect


def test_sizes_a_config_derives_or_a_layer_requires_are_kept_consistent(sweep):
    # efficientloftr: the per-block lists its config derives from out_features come with the
    # full-size dict; the last width is the hidden size; an image pair
    model, pair = sweep.build_transformers("efficientloftr")
    cfg = model.config
    assert cfg.out_features[-1] == cfg.hidden_size == cfg.stage_block_out_channels[-1][-1]
    assert cfg.stage_block_in_channels[1:] == [[w] for w in cfg.out_features[:-1]]
    assert pair.shape == (2, 2, 3, sweep.PIXELS, sweep.PIXELS)
    # clvp: heads of at least 32 for its encoders' rotary embedding; fixing codes the speech
    # encoder can embed
    model, _ = sweep.build_transformers("clvp")
    cfg = model.config
    for encoder in (cfg.text_config, cfg.speech_config):
        assert encoder.hidden_size // encoder.num_attention_heads >= 32
    assert max(cfg.decoder_config.decoder_fixing_codes) < cfg.speech_config.vocab_size


def test_an_open_vocabulary_detector_gets_class_and_task_prompts(sweep):
    # omdet-turbo: class prompts flattened over the batch with a count per image, a task prompt
    # per image; its task prompts' width (the text's) differs from its decoder's
    model, (image, classes, class_mask, task, task_mask, counts) = \
        sweep.build_transformers("omdet-turbo")
    assert image.shape == (2, 3, sweep.PIXELS, sweep.PIXELS)
    assert classes.shape == class_mask.shape and classes.shape[0] == counts.sum()
    assert task.shape == task_mask.shape and counts.tolist() == [2, 2]
    cfg = model.config
    assert cfg.class_embed_dim == cfg.text_config.hidden_size != cfg.decoder_hidden_dim


def test_a_recurrent_stacks_depth_is_shrunk_like_a_layer_count(sweep):
    # hrm_text runs its two stacks H_cycles x (L_cycles + 1) times; their depth is a key of its
    # own, kept at 16 layers each once the config is built (69 s, loaded, to audit)
    model, _ = sweep.build_transformers("hrm_text")
    assert len(model.L_module.layers) == len(model.H_module.layers) == 1
    assert (model.config.H_cycles, model.config.L_cycles) == (2, 3)  # the recurrence as it is
