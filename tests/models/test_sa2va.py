"""Sa2VA specifics: [SEG] -> SAM 2 prompt path, SAM 2 built from its config and loaded strictly,
freezing, losses and a training step, the processor, mask post-processing, and tracking state.
(The family also runs the ModelTester suite in test_embodied_vlm.py.)"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vlm_agent.models.sa2va.configuration_sa2va import SAM2_VARIANTS, Sa2VAConfig
from vlm_agent.models.sa2va.modeling_sa2va import Sa2VAModel, build_sam2_model, dice_loss, sigmoid_bce_loss
from vlm_agent.models.sa2va.processing_sa2va import (
    largest_component, mask_bbox, mask_score, postprocess_mask, resize_mask_logits, threshold_mask, validate_query,
)
from vlm_agent.models.sa2va.tracking_sa2va import Sa2VATracker, TrackerConfig

from .conftest import tiny_model_and_processor


@pytest.fixture(scope="module")
def pair():
    return tiny_model_and_processor("sa2va", seed=3)


def _frame(seed=0, h=48, w=64):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _ids(processor, query="the red ball"):
    return torch.tensor([processor.prompt_ids(query) + [processor.token_id("[SEG]")]])


# -- the [SEG] -> prompt path --------------------------------------------------------------------
def test_seg_prompt_is_the_projected_last_hidden_state_at_seg(pair):
    model, proc = pair
    ids = _ids(proc)
    pv = proc.pixel_values(_frame())
    with torch.no_grad():
        out = model(input_ids=ids, pixel_values=pv, output_hidden_states=True)
        prompts, rows = model.seg_prompts(out.hidden_states[-1], ids)
        expected = model.seg_projector(out.hidden_states[-1][0, -1])
    assert prompts.shape == (1, model.sam2.hidden_dim) and rows.tolist() == [0]
    torch.testing.assert_close(prompts[0], expected)
    # The [SEG] position is the last one; the hidden state depends on the image and on the query.
    with torch.no_grad():
        other_img = model.seg_prompts(model(input_ids=ids, pixel_values=proc.pixel_values(_frame(1)), output_hidden_states=True).hidden_states[-1], ids)[0]
        ids2 = _ids(proc, "the blue cube")
        other_q = model.seg_prompts(model(input_ids=ids2, pixel_values=pv, output_hidden_states=True).hidden_states[-1], ids2)[0]
    assert not torch.allclose(prompts, other_img) and not torch.allclose(prompts, other_q)


def test_the_prompt_is_a_sparse_token_of_the_sam2_decoder(pair):
    """The mask decoder's output changes with the [SEG] prompt and only through it (same image)."""
    model, proc = pair
    feats = model.sam_features(proc.sam_pixel_values(_frame()))
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, model.sam2.hidden_dim, generator=g), torch.randn(1, model.sam2.hidden_dim, generator=g)
    with torch.no_grad():
        pa, pa2, pb = model.decode_masks(feats, a), model.decode_masks(feats, a.clone()), model.decode_masks(feats, b)
    assert pa.low_res_logits.shape == (1, 1, model.config.sam2_mask_size, model.config.sam2_mask_size)
    assert pa.high_res_logits.shape == (1, 1, model.config.sam2_image_size, model.config.sam2_image_size)
    torch.testing.assert_close(pa.low_res_logits, pa2.low_res_logits)
    assert not torch.allclose(pa.low_res_logits, pb.low_res_logits)
    assert pa.iou.shape == (1,) and pa.object_score_logits.shape == (1, 1) and pa.obj_ptr.shape == (1, model.sam2.hidden_dim)
    with pytest.raises(ValueError, match="prompts for features of"):
        model.decode_masks(feats, torch.cat([a, b]))


def test_each_seg_token_segments_its_own_image(pair):
    model, proc = pair
    ids = torch.cat([_ids(proc), _ids(proc)])
    frames = [_frame(0), _frame(1)]
    with torch.no_grad():
        both = model.forward_segmentation(ids, proc.sam_pixel_values(frames), pixel_values=proc.pixel_values(frames))
        one = model.forward_segmentation(ids[1:], proc.sam_pixel_values(frames[1]), pixel_values=proc.pixel_values(frames[1]))
        swapped = model.forward_segmentation(ids, proc.sam_pixel_values(frames), pixel_values=proc.pixel_values(frames), seg_image_index=torch.tensor([1, 0]))
    assert both.mask_logits.shape[0] == 2
    torch.testing.assert_close(both.mask_logits[1], one.mask_logits[0], atol=1e-5, rtol=0)
    assert not torch.allclose(both.mask_logits[0], swapped.mask_logits[0])
    with pytest.raises(ValueError, match="no \\[SEG\\]"):
        model.forward_segmentation(ids[:, :-1], proc.sam_pixel_values(frames), pixel_values=proc.pixel_values(frames))


# -- SAM 2 from its config, strict weights -------------------------------------------------------
def test_sam2_is_sam2_build_sam_from_the_variant_config(pair):
    """Same modules, keys and shapes as SAM 2's own builder with the same overrides."""
    from sam2.build_sam import build_sam2

    model, _ = pair
    cfg = model.config
    theirs = build_sam2(cfg.sam2_config_file, ckpt_path=None, device="cpu", hydra_overrides_extra=cfg.sam2_hydra_overrides(), apply_postprocessing=False)
    ours = model.sam2.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert type(model.sam2) is type(theirs) and model.sam2.image_size == cfg.sam2_image_size == 64


def test_released_hiera_tiny_at_a_reduced_image_size():
    """sam2.1_hiera_tiny's own config at 256 px: the published parameter count (38.9M) and a
    stride-16 grid of 16 x 16."""
    from vlm_agent.models.registry import make_config

    cfg = make_config("sa2va", vocab_size=512, image_size=16, patch_size=2, vision_hidden=32, text_hidden=32,
                      sam2_variant="sam2.1_hiera_tiny", sam2_image_size=256)
    sam = build_sam2_model(cfg)
    n = sum(p.numel() for p in sam.parameters())
    assert 38.5e6 < n < 39.5e6 and sam.image_size == 256 and sam.sam_image_embedding_size == 16
    assert cfg.sam2_checkpoint_name == "sam2.1_hiera_tiny.pt"


def test_sam2_checkpoint_loads_strictly_and_independently_of_the_image_size(pair, tmp_path):
    model, _ = pair
    path = tmp_path / "sam2_nano.pt"
    torch.save({"model": model.sam2.state_dict()}, path)
    cfg = model.config.to_dict()
    cfg.pop("transformers_version", None)
    torch.manual_seed(99)
    other = Sa2VAModel(Sa2VAConfig(**{**cfg, "sam2_image_size": 96}))
    assert not torch.equal(other.sam2.sam_mask_decoder.iou_token.weight, model.sam2.sam_mask_decoder.iou_token.weight)
    other.load_sam2_checkpoint(path)
    for k, v in model.sam2.state_dict().items():
        assert torch.equal(other.sam2.state_dict()[k], v), k
    assert other.sam_features(torch.zeros(1, 3, 96, 96)).feat_sizes[-1] == (6, 6)
    sd = dict(model.sam2.state_dict())
    sd.pop("no_mem_embed")
    torch.save({"model": sd}, path)
    with pytest.raises(ValueError, match="missing"):
        other.load_sam2_checkpoint(path)
    torch.save({"model": {**model.sam2.state_dict(), "extra.weight": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="unexpected"):
        other.load_sam2_checkpoint(path)
    big = {**model.sam2.state_dict(), "no_mem_embed": torch.zeros(1, 1, 256)}
    torch.save({"model": big}, path)
    with pytest.raises(ValueError, match="another shape"):
        other.load_sam2_checkpoint(path)


def test_save_load_round_trip_keeps_the_masks(pair, tmp_path):
    from vlm_agent.models.registry import load_model_and_processor

    model, proc = pair
    model.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    again, proc2 = load_model_and_processor(tmp_path)
    assert proc2.sam2_image_size == 64 and proc2.image_processor.crop_to_square is False
    ids, frame = _ids(proc), _frame()
    with torch.no_grad():
        a = model.forward_segmentation(ids, proc.sam_pixel_values(frame), pixel_values=proc.pixel_values(frame)).mask_logits
        b = again.forward_segmentation(ids, proc2.sam_pixel_values(frame), pixel_values=proc2.pixel_values(frame)).mask_logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in again.sam2.parameters())  # freezing re-applied after loading
    # Tracked frames run SAM 2's memory attention, whose RoPE tables are plain tensors that loading
    # (built on the meta device) leaves empty unless they are recomputed.
    assert all(m.freqs_cis.device.type == "cpu" for m in again.sam2.modules() if hasattr(m, "freqs_cis"))
    tracker = Sa2VATracker(again, proc2, TrackerConfig(min_score=0.0))
    tracker.reset("the red ball")
    assert [tracker.step(_frame(i)).source for i in range(2)] == ["detected", "tracked"]


# -- query FiLM of SAM 2's image encoder ----------------------------------------------------------------
def test_query_film_starts_as_the_identity_and_then_conditions_the_encoder(pair, tmp_path):
    """`add_query_film` changes nothing until its layer trains; with weights, the features (and so the
    masks) depend on the condition; the condition is required by a FiLM model, refused by another;
    the layer saves and loads strictly with the model."""
    import copy

    from vlm_agent.models.registry import load_model_and_processor
    from vlm_agent.models.sa2va.modeling_sa2va import QueryFiLM

    model, proc = pair
    film = copy.deepcopy(model)
    film.add_query_film()
    trunk = film.sam2.image_encoder.trunk
    assert isinstance(film.query_film, QueryFiLM) and film.config.query_film and not model.config.query_film
    assert film.query_film.stage_dims == [trunk.blocks[i].dim_out for i in trunk.stage_ends]
    pixels, ids = proc.sam_pixel_values(_frame()), _ids(proc)
    d = model.config.text_config.hidden_size
    g = torch.Generator().manual_seed(0)
    cond_a, cond_b = torch.randn(1, d, generator=g), torch.randn(1, d, generator=g)
    with torch.no_grad():
        plain = model.sam_features(pixels)
        zero = film.sam_features(pixels, condition=cond_a)
        for a, b in zip(plain.vision_feats, zero.vision_feats):
            torch.testing.assert_close(a, b)
        before = model.forward_segmentation(ids, pixels, pixel_values=proc.pixel_values(_frame())).mask_logits
        torch.testing.assert_close(film.forward_segmentation(ids, pixels, pixel_values=proc.pixel_values(_frame())).mask_logits, before)
        film.query_film.linear.weight.normal_(0.0, 0.5, generator=g)
        fa, fa2, fb = (film.sam_features(pixels, condition=c) for c in (cond_a, cond_a.clone(), cond_b))
        after = film.forward_segmentation(ids, pixels, pixel_values=proc.pixel_values(_frame())).mask_logits
    torch.testing.assert_close(fa.vision_feats[-1], fa2.vision_feats[-1])
    assert all(not torch.allclose(a, b) for a, b in zip(fa.vision_feats, fb.vision_feats))  # every level reads the query
    assert not torch.allclose(after, before)
    with pytest.raises(ValueError, match="needs sam_features"):
        film.sam_features(pixels)
    with pytest.raises(ValueError, match="only for a query_film"):
        model.sam_features(pixels, condition=cond_a)
    with pytest.raises(ValueError, match="condition must be"):
        film.sam_features(pixels, condition=torch.cat([cond_a, cond_b]))
    with pytest.raises(RuntimeError, match="without a condition"):  # a caller bypassing sam_features
        film.sam2.forward_image(pixels)
    film.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    again, _ = load_model_and_processor(tmp_path)
    assert again.config.query_film
    torch.testing.assert_close(again.query_film.linear.weight, film.query_film.linear.weight)
    with torch.no_grad():
        torch.testing.assert_close(again.sam_features(pixels, condition=cond_b).vision_feats[-1], fb.vision_feats[-1])


def test_query_film_trains_even_with_sam2_frozen():
    from vlm_agent.training.sa2va import make_seg_batch, train_step

    model, proc = tiny_model_and_processor("sa2va", seed=5, sam2_trainable="none", query_film=True)
    assert all(p.requires_grad for p in model.query_film.parameters()) and float(model.query_film.linear.weight.detach().abs().sum()) == 0.0
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[16:40, 20:44] = (220, 30, 30)
    mask = np.zeros((64, 64), bool)
    mask[16:40, 20:44] = True
    encoder_before = {k: v.clone() for k, v in model.sam2.image_encoder.state_dict().items()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    train_step(model, make_seg_batch(proc, [(frame, "the red cube", mask)]), opt)
    assert float(model.query_film.linear.weight.detach().abs().sum()) > 0.0
    assert all(torch.equal(v, model.sam2.image_encoder.state_dict()[k]) for k, v in encoder_before.items())


def test_a_query_film_tracker_encodes_keyframes_with_their_seg_state(pair):
    """On a keyframe the encoder reads that frame's [SEG] hidden state; tracked frames keep it until
    the next keyframe; reset forgets it. The masks match a by-hand pass."""
    import copy

    from vlm_agent.models.sa2va.processing_sa2va import resize_mask_logits, threshold_mask

    model, proc = pair
    film = copy.deepcopy(model)
    film.add_query_film()
    with torch.no_grad():
        film.query_film.linear.weight.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(1))
    tracker = Sa2VATracker(film, proc, TrackerConfig(redetect_every=2, min_score=0.0))
    tracker.reset("the red ball")
    steps = [tracker.step(_frame(i)) for i in range(3)]
    assert [s.source for s in steps] == ["detected", "tracked", "detected"]
    ids = _ids(proc)
    with torch.no_grad():
        out = film(input_ids=ids, pixel_values=proc.pixel_values(_frame(2)), output_hidden_states=True)
        hidden, _ = film.seg_hidden(out.hidden_states[-1], ids)
        pred = film.decode_masks(film.sam_features(proc.sam_pixel_values(_frame(2)), condition=hidden), film.seg_projector(hidden), gate_absent=True)
    torch.testing.assert_close(tracker._condition, hidden)
    np.testing.assert_array_equal(steps[2].mask, threshold_mask(resize_mask_logits(pred.low_res_logits[0, 0], (48, 64))))
    tracker.reset("the blue cube")
    assert tracker._condition is None and tracker.step(_frame()).source == "detected"


# -- freezing and training ------------------------------------------------------------------------
@pytest.mark.parametrize("mode,trainable", [("none", set()), ("decoder", {"sam_mask_decoder"}), ("all", None)])
def test_what_trains(mode, trainable):
    model, _ = tiny_model_and_processor("sa2va", sam2_trainable=mode)
    top = {n.split(".")[0] for n, p in model.sam2.named_parameters() if p.requires_grad}
    if trainable is None:
        assert all(p.requires_grad for p in model.sam2.parameters())
    else:
        assert top == trainable
    assert all(p.requires_grad for p in model.seg_projector.parameters()) and all(p.requires_grad for p in model.language_model.parameters())
    model.train()
    assert model.language_model.training and model.seg_projector.training
    assert model.sam2.memory_attention.training is (mode == "all")
    assert model.sam2.sam_mask_decoder.training is (mode != "none")


def test_bce_and_dice_by_hand():
    logits = torch.tensor([[[0.0, 2.0], [-2.0, 0.0]]])
    target = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])
    p = 1 / (1 + math.exp(-2.0))
    bce = (math.log(2) * 2 - math.log(p) * 2) / 4  # -log(0.5) twice, -log(sigmoid(2)) twice
    assert sigmoid_bce_loss(logits, target).item() == pytest.approx(bce, rel=1e-5)
    inter, psum, gsum = 0.5 + p, 0.5 + p + (1 - p) + 0.5, 2.0
    assert dice_loss(logits, target).item() == pytest.approx(1 - (2 * inter + 1) / (psum + gsum + 1), rel=1e-5)
    assert dice_loss(torch.full((1, 4, 4), 30.0), torch.ones(1, 4, 4)).item() == pytest.approx(0.0, abs=1e-6)


def test_train_step_lowers_the_loss_and_leaves_frozen_sam2_alone():
    from vlm_agent.training.sa2va import make_seg_batch, train_step

    model, proc = tiny_model_and_processor("sa2va", seed=5, sam2_trainable="decoder")
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[16:40, 20:44] = (220, 30, 30)
    mask = np.zeros((64, 64), bool)
    mask[16:40, 20:44] = True
    batch = make_seg_batch(proc, [(frame, "the red cube", mask)])
    assert batch["labels"][0, -2].item() == proc.token_id("[SEG]") and (batch["labels"][0, :-2] == -100).all()
    encoder_before = {k: v.clone() for k, v in model.sam2.image_encoder.state_dict().items()}
    decoder_before = model.sam2.sam_mask_decoder.output_upscaling[0].weight.clone()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = [train_step(model, batch, opt) for _ in range(12)]
    assert losses[-1]["loss"] < 0.7 * losses[0]["loss"]
    assert losses[-1]["mask_bce"] < losses[0]["mask_bce"]
    assert all(torch.equal(v, model.sam2.image_encoder.state_dict()[k]) for k, v in encoder_before.items())
    assert not torch.equal(decoder_before, model.sam2.sam_mask_decoder.output_upscaling[0].weight)


# -- config and processor --------------------------------------------------------------------------
@pytest.mark.parametrize("bad,match", [
    ({"sam2_variant": "hiera_xxl"}, "sam2_variant"),
    ({"sam2_image_size": 100}, "multiple of 32"),
    ({"sam2_overrides": ["image_size=3"]}, "hydra override"),
    ({"sam2_trainable": "encoder"}, "sam2_trainable"),
    ({"mask_bce_weight": -1.0}, "mask_bce_weight"),
])
def test_config_validation(pair, bad, match):
    good = pair[0].config.to_dict()
    good.pop("transformers_version", None)
    with pytest.raises(ValueError, match=match):
        Sa2VAConfig(**{**good, **bad})


def test_every_variant_names_a_config_shipped_with_sam2():
    import os

    import sam2

    root = os.path.dirname(sam2.__file__)
    for name, (cfg_file, _, _) in SAM2_VARIANTS.items():
        assert os.path.isfile(os.path.join(root, cfg_file)), name


def test_processor_layout_and_sam_image(pair):
    model, proc = pair
    ids = proc.prompt_ids("the red ball")
    c = model.config
    assert ids[0] == c.bos_token_id and ids.count(c.image_token_id) == c.grid_size ** 2 and ids[-1] == c.image_token_id
    x, y = proc.training_example("the red ball")
    assert x[:-2] == ids and x[-2:] == [c.seg_token_id, c.eos_token_id] and y[-2:] == x[-2:] and set(y[:-2]) == {-100}
    white = np.full((48, 64, 3), 255, np.uint8)
    spv = proc.sam_pixel_values(white)
    assert spv.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(spv[0, :, 0, 0].numpy(), (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]), rtol=1e-5)
    with pytest.raises(ValueError, match="RGB frame"):
        proc.sam_pixel_values(np.zeros((8, 8), np.uint8))
    cfg = c.to_dict()
    cfg.pop("transformers_version", None)
    with pytest.raises(ValueError, match="sam2_image_size"):
        proc.check_config(Sa2VAConfig(**{**cfg, "sam2_image_size": 128}))


@pytest.mark.parametrize("query,match", [("", "empty"), ("   ", "empty"), ("x" * 301, "characters"), ("red\x1b[31m ball", "control"),
                                         ("red\u202eball", "control"), (None, "text"), (42, "text")])
def test_bad_queries_are_refused_with_a_reason(query, match):
    with pytest.raises(ValueError, match=match):
        validate_query(query)
    assert validate_query("  the   red\tball ") == "the red ball"


# -- mask post-processing --------------------------------------------------------------------------
def test_resize_mask_logits():
    const = np.full((4, 4), 3.0, np.float32)
    np.testing.assert_allclose(resize_mask_logits(const, (6, 10)), 3.0)
    step = np.array([[-1.0, 1.0]], np.float32)  # half-pixel centres: x=0.25 -> -1, 0.75 -> +1
    out = resize_mask_logits(step, (1, 4))
    np.testing.assert_allclose(out[0], [-1.0, -0.5, 0.5, 1.0])
    assert resize_mask_logits(torch.ones(2, 2), (2, 2)).dtype == np.float32
    with pytest.raises(ValueError):
        resize_mask_logits(np.zeros((1, 2, 2)), (4, 4))


def test_threshold_largest_component_bbox_and_score():
    logits = np.array([[0.5, -0.5, np.nan], [0.0, 2.0, -3.0]], np.float32)
    assert threshold_mask(logits).tolist() == [[True, False, False], [False, True, False]]
    assert threshold_mask(logits, 1.0).tolist() == [[False, False, False], [False, True, False]]
    m = np.zeros((6, 8), bool)
    m[0:2, 0:2] = True          # 4 px
    m[3:6, 4:8] = True          # 12 px
    m[2, 2] = True              # touches the first blob only diagonally
    big = largest_component(m)
    assert big.sum() == 12 and big[3:6, 4:8].all()
    assert largest_component(m, connectivity=8)[2, 2] == False  # noqa: E712 (5-px blob still smaller)
    diag = np.eye(3, dtype=bool)
    assert largest_component(diag, 8).sum() == 3 and largest_component(diag, 4).sum() == 1
    assert not largest_component(np.zeros((3, 3), bool)).any()
    assert mask_bbox(big) == (4, 3, 8, 6)
    assert mask_bbox(np.zeros((3, 3), bool)) is None
    assert mask_score(0.8) == pytest.approx(0.8)
    assert mask_score(1.7, 0.0) == pytest.approx(0.5)
    assert mask_score(0.9, float("inf")) == pytest.approx(0.9) and mask_score(0.9, -float("inf")) == pytest.approx(0.0)
    assert mask_score(float("nan"), 3.0) == 0.0 and mask_score(0.5, float("nan")) == 0.0
    low = np.full((6, 6), -5.0, np.float32)
    low[1:3, 1:3] = 5.0
    low[5, 5] = 5.0
    full = postprocess_mask(low, (12, 12))
    assert full.shape == (12, 12) and full[3:5, 3:5].all() and full[11, 11] and not full[0, 0]
    largest = postprocess_mask(low, (12, 12), keep_largest=True)
    assert not largest[11, 11] and largest[3:5, 3:5].all()


# -- tracking state ------------------------------------------------------------------------------
def test_tracker_schedule_and_bounded_memory(pair):
    model, proc = pair
    tracker = Sa2VATracker(model, proc, TrackerConfig(redetect_every=3, min_score=0.0, max_memory_frames=2, max_cond_frames=2))
    with pytest.raises(RuntimeError, match="reset"):
        tracker.step(_frame())
    with pytest.raises(ValueError, match="empty"):
        tracker.reset(" ")
    tracker.reset("the red ball")
    steps = [tracker.step(_frame(i)) for i in range(8)]
    assert [s.source for s in steps] == ["detected", "tracked", "tracked", "detected", "tracked", "tracked", "detected", "tracked"]
    assert [s.frame_index for s in steps] == list(range(8))
    assert all(s.mask.shape == (48, 64) and s.mask.dtype == bool and 0.0 <= s.score <= 1.0 for s in steps)
    assert all(s.vlm_s > 0 for s in steps if s.source == "detected") and all(s.vlm_s == 0 for s in steps if s.source == "tracked")
    keyframes, tracked = tracker.memory_frames
    assert keyframes == [3, 6] and tracked == [7]  # newest 2 keyframes, tracked frames of the last 2 steps
    tracker.reset("the blue cube")
    assert tracker.memory_frames == ([], []) and tracker.frame_index == 0
    assert tracker.step(_frame()).source == "detected"


def test_low_scores_trigger_redetection_with_a_gap(pair):
    model, proc = pair
    tracker = Sa2VATracker(model, proc, TrackerConfig(redetect_every=100, min_score=1.0, min_redetect_gap=2))
    tracker.reset("the red ball")
    sources = [tracker.step(_frame(i)).source for i in range(6)]
    assert sources == ["detected", "re-detected", "tracked", "re-detected", "tracked", "re-detected"]
    assert tracker.memory_frames[1] == [2, 4]  # re-detected frames are keyframes, not tracked memory


def test_tracked_frames_read_sam2_memory(pair):
    """The same later frame tracked after different keyframe prompts gives different SAM 2 outputs:
    the keyframe reaches it only through SAM 2's memory (no prompt on tracked frames)."""
    model, proc = pair
    outs = []
    for query in ("the red ball", "the green box"):
        tracker = Sa2VATracker(model, proc, TrackerConfig(redetect_every=10, min_score=0.0))
        tracker.reset(query)
        tracker.step(_frame(0))
        tracker.step(_frame(1))
        outs.append(tracker._memory["non_cond_frame_outputs"][1])
    assert not torch.allclose(outs[0]["obj_ptr"], outs[1]["obj_ptr"])
    assert not torch.allclose(outs[0]["maskmem_features"], outs[1]["maskmem_features"])


def test_generate_mode_segments_only_when_the_lm_says_seg(pair, monkeypatch):
    model, proc = pair
    tracker = Sa2VATracker(model, proc, TrackerConfig(seg_decoding="generate", min_score=0.0))
    tracker.reset("the red ball")
    seg, eos = model.config.seg_token_id, model.config.eos_token_id
    monkeypatch.setattr(model, "generate", lambda input_ids, **kw: torch.cat([input_ids, torch.tensor([[eos]])], 1))
    none = tracker.step(_frame())
    assert none.score == 0.0 and not none.mask.any() and none.source == "detected" and tracker.memory_frames == ([], [])
    monkeypatch.setattr(model, "generate", lambda input_ids, **kw: torch.cat([input_ids, torch.tensor([[seg, eos]])], 1))
    found = tracker.step(_frame())
    assert found.source == "detected" and found.answer.startswith("[SEG]") and tracker.memory_frames == ([1], [])
    assert tracker.step(_frame(2)).source == "tracked"


def test_assembled_from_real_checkpoints_and_a_sam2_checkpoint(tmp_path):
    """A Sa2VA model from a SigLIP directory, a Qwen2 directory (its own tokenizer gains [SEG]) and a
    SAM 2 checkpoint file, all loaded strictly; saved, it reloads as one directory with the same masks."""
    from vlm_agent.models.embodied_vlm.modeling_embodied_vlm import assemble_from_checkpoints
    from vlm_agent.models.registry import load_model_and_processor
    from vlm_agent.models.sa2va.processing_sa2va import Sa2VAProcessor

    from .test_real_checkpoints import _qwen_dir, _siglip_dir

    donor, _ = tiny_model_and_processor("sa2va", seed=11)
    torch.save({"model": donor.sam2.state_dict()}, tmp_path / "sam2_nano.pt")
    model, proc = assemble_from_checkpoints(Sa2VAModel, Sa2VAProcessor, _siglip_dir(tmp_path), _qwen_dir(tmp_path), sam2_variant="nano", sam2_image_size=64)
    model.load_sam2_checkpoint(tmp_path / "sam2_nano.pt")
    assert torch.equal(model.sam2.sam_mask_decoder.iou_token.weight, donor.sam2.sam_mask_decoder.iou_token.weight)
    assert proc.tokenizer.convert_ids_to_tokens(model.config.seg_token_id) == "[SEG]" and model.config.bos_token_id is None
    assert proc.image_tokens == model.config.grid_size ** 2 == 100 and proc.image_processor.crop_to_square is False
    model.save_pretrained(tmp_path / "assembled")
    proc.save_pretrained(tmp_path / "assembled")
    again, proc2 = load_model_and_processor(tmp_path / "assembled")
    ids, frame = torch.tensor([proc.prompt_ids("the red ball") + [model.config.seg_token_id]]), _frame()
    with torch.no_grad():
        a = model.forward_segmentation(ids, proc.sam_pixel_values(frame), pixel_values=proc.pixel_values(frame)).mask_logits
        b = again.forward_segmentation(ids, proc2.sam_pixel_values(frame), pixel_values=proc2.pixel_values(frame)).mask_logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(RuntimeError, match="layout"):
        Sa2VAProcessor(proc.image_processor, proc.tokenizer).prompt_ids("the red ball")
