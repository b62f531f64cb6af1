"""Attribute verifier (`models/attribute_verifier`): the config's checks, mask boxes, crops centred
on the mask, the attribute words of a query, the processor's input checks, and the model saved and
loaded strictly."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from vlm_agent.models.attribute_verifier import AttributeVerifierConfig, AttributeVerifierModel, AttributeVerifierProcessor
from vlm_agent.models.attribute_verifier.processing_attribute_verifier import crop_batch, mask_boxes

TINY = dict(crop_size=16, channels=(8, 16))


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return AttributeVerifierModel(AttributeVerifierConfig(**{**TINY, **kw})).eval()


# -- config ----------------------------------------------------------------------------------------
def test_config_defaults_and_validation():
    cfg = AttributeVerifierConfig()
    assert cfg.model_type == "attribute_verifier" and cfg.shapes[-1] == "other" and "red" in cfg.colours
    assert cfg.crop_size == 32 and cfg.context == 1.6 and cfg.min_crop_px == 12
    for bad, match in (({"colours": ("red", "red")}, "unique"), ({"shapes": ("cube", "ball", "cube")}, "unique"),
                       ({"crop_size": 7}, "crop_size >= 8"), ({"context": 0.9}, "context >= 1"), ({"min_crop_px": 0}, "min_crop_px"),
                       ({"colours": ()}, "must not be empty"), ({"shapes": ()}, "must not be empty"), ({"channels": ()}, "must not be empty")):
        with pytest.raises(ValueError, match=match):
            AttributeVerifierConfig(**bad)
    AttributeVerifierConfig(crop_size=8)  # the smallest allowed


def test_config_round_trips_through_json(tmp_path):
    cfg = AttributeVerifierConfig(colours=("red", "blue"), shapes=("cube", "other"), crop_size=24, context=2.0, min_crop_px=5, channels=(4, 8))
    path = tmp_path / "config.json"
    cfg.to_json_file(str(path))
    back = AttributeVerifierConfig.from_json_file(str(path))
    assert (back.colours, back.shapes, back.crop_size, back.context, back.min_crop_px, back.channels) == (
        ["red", "blue"], ["cube", "other"], 24, 2.0, 5, [4, 8])


# -- boxes and crops ------------------------------------------------------------------------------
def test_mask_boxes_on_hand_made_masks():
    h, w = 10, 14  # not square: x and y must not be swapped
    masks = torch.zeros(4, h, w, dtype=torch.bool)
    masks[0, 2, 3] = True
    masks[0, 5, 7] = True  # two pixels: the box spans both
    masks[1, 0, 0] = True  # a single pixel at the corner
    masks[2, 4:9, 10:14] = True  # touching the right edge
    boxes = mask_boxes(masks)  # masks[3] empty
    assert boxes.dtype == torch.float32 and boxes.shape == (4, 4)
    assert boxes[0].tolist() == [3.0, 2.0, 8.0, 6.0]
    assert boxes[1].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert boxes[2].tolist() == [10.0, 4.0, 14.0, 9.0]
    assert boxes[3].tolist() == [0.0, 0.0, float(w), float(h)]  # an empty mask: the whole frame


def _square_frame(h=48, w=64, box=(40, 10, 46, 16), colour=(200, 30, 20)):
    """A grey frame with a coloured square at box (x0, y0, x1, y1) and that square's mask."""
    rng = np.random.default_rng(0)
    frame = rng.integers(90, 110, (h, w, 3), dtype=np.uint8)  # textured grey
    x0, y0, x1, y1 = box
    frame[max(0, y0 - 1):y1 + 1, max(0, x0 - 1):x1 + 1] = colour  # a pixel past the mask: bilinear samples at its edge stay inside
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return frame, mask


@pytest.mark.parametrize("box", [(40, 10, 46, 16), (5, 30, 9, 34), (20, 20, 35, 27)])
def test_crop_batch_centres_the_mask(box):
    cfg = AttributeVerifierConfig(**TINY)
    colour = (200, 30, 20)
    frame, mask = _square_frame(box=box, colour=colour)
    rgb = torch.from_numpy(frame).permute(2, 0, 1).float().div(255.0)[None]
    crop = crop_batch(rgb, torch.from_numpy(mask)[None], cfg)
    s = cfg.crop_size
    assert crop.shape == (1, 4, s, s)
    m = crop[0, 3]
    # the mask channel is symmetric about the crop's centre (both axes, for a square mask)
    torch.testing.assert_close(m, m.flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(m, m.flip(-2), atol=1e-5, rtol=0)
    ys, xs = torch.meshgrid(torch.arange(s).float(), torch.arange(s).float(), indexing="ij")
    assert float((m * xs).sum() / m.sum()) == pytest.approx((s - 1) / 2, abs=1e-4)
    assert float((m * ys).sum() / m.sum()) == pytest.approx((s - 1) / 2, abs=1e-4)
    # the mask's share of the crop: its longer side over the crop's side (context, or min_crop_px for a small mask)
    side = max(box[2] - box[0], box[3] - box[1])
    crop_side = max(side * cfg.context, cfg.min_crop_px)
    assert float(m.sum()) == pytest.approx(s * s * (box[2] - box[0]) * (box[3] - box[1]) / crop_side**2, rel=0.05)
    # the centre pixels show the square's colour, the corners the grey around it
    c = s // 2
    for y, x in ((c - 1, c - 1), (c, c), (c - 1, c), (c, c - 1)):
        torch.testing.assert_close(crop[0, :3, y, x], torch.tensor(colour, dtype=torch.float32) / 255, atol=1e-5, rtol=0)
        assert float(m[y, x]) == pytest.approx(1.0)
    assert float(m[0, 0]) == 0.0 and float(crop[0, 0, 0, 0]) == pytest.approx(100 / 255, abs=0.05)


def test_crop_batch_pads_outside_the_frame_with_zeros_and_jitter_moves_the_box():
    cfg = AttributeVerifierConfig(**TINY)
    frame = np.full((32, 32, 3), 255, np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[0:4, 0:4] = True  # in the corner: half the crop lies outside the frame
    rgb = torch.from_numpy(frame).permute(2, 0, 1).float().div(255.0)[None]
    crop = crop_batch(rgb, torch.from_numpy(mask)[None], cfg)
    assert float(crop[0, :3, 0, 0].max()) == 0.0 and float(crop[0, :3, -1, -1].min()) == pytest.approx(1.0)
    # jitter: a shift right by a quarter crop moves the mask left in the crop; a log scale of 0 with no shift changes nothing
    mid = np.zeros((32, 32), bool)
    mid[12:20, 12:20] = True
    m = torch.from_numpy(mid)[None]
    plain = crop_batch(rgb, m, cfg)
    torch.testing.assert_close(crop_batch(rgb, m, cfg, torch.zeros(1, 3)), plain)
    shifted = crop_batch(rgb, m, cfg, torch.tensor([[0.25, 0.0, 0.0]]))[0, 3]
    xs = torch.arange(cfg.crop_size).float()
    assert float((shifted.sum(0) * xs).sum() / shifted.sum()) < (cfg.crop_size - 1) / 2 - 2
    bigger = crop_batch(rgb, m, cfg, torch.tensor([[0.0, 0.0, float(np.log(2.0))]]))[0, 3]
    assert float(bigger.sum()) == pytest.approx(float(plain[0, 3].sum()) / 4, rel=0.1)  # a crop twice the side: the mask a quarter


# -- processor -------------------------------------------------------------------------------------
def test_processor_reads_the_attribute_words_of_a_query():
    proc = AttributeVerifierProcessor(AttributeVerifierConfig())
    assert proc.attributes("the red cube") == ("red", "cube")
    assert proc.attributes("put the red cube on the blue plate") == ("red", "cube")  # the first of each: the subject
    assert proc.attributes("the plate next to the green ball") == ("green", "plate")
    assert proc.attributes("table") == (None, None)
    assert proc.attributes("") == (None, None)
    assert proc.attributes("THE Red CUBE!") == ("red", "cube")
    assert proc.attributes("the yellow one") == ("yellow", None) and proc.attributes("a ball") == (None, "ball")
    assert proc.attributes("reddish cubes") == (None, None)  # whole words only
    assert proc.attributes("red-cube") == ("red", "cube")
    assert proc.attributes("the other cube") == (None, "cube")
    assert proc.attributes("the other one") == (None, None)  # "other" is a label, never a shape a query names
    for bad in (None, 3, ["red", "cube"]):
        with pytest.raises(ValueError, match="must be a string"):
            proc.attributes(bad)
    # the vocabulary is the checkpoint's
    small = AttributeVerifierProcessor(AttributeVerifierConfig(colours=("red",), shapes=("cube", "other")))
    assert small.attributes("the blue ball") == (None, None) and small.attributes("the red ball") == ("red", None)


def test_processor_crops_checks_its_inputs():
    cfg = AttributeVerifierConfig(**TINY)
    proc = AttributeVerifierProcessor(cfg)
    frame, mask = _square_frame()
    one = proc(frame, mask)
    assert one.shape == (1, 4, 16, 16) and one.dtype == torch.float32
    assert float(one[:, :3].max()) <= 1.0 and float(one[:, :3].min()) >= 0.0
    two = proc(frame, np.stack([mask, np.roll(mask, 5, axis=1)]))
    assert two.shape == (2, 4, 16, 16)
    torch.testing.assert_close(two[0], one[0])
    rgb = torch.from_numpy(frame).permute(2, 0, 1).float().div(255.0)[None]
    torch.testing.assert_close(one, crop_batch(rgb, torch.from_numpy(mask)[None], cfg))
    with pytest.raises(ValueError, match="uint8"):
        proc(frame.astype(np.float32) / 255, mask)
    with pytest.raises(ValueError, match="uint8"):
        proc(frame[..., 0], mask)  # a grey frame
    with pytest.raises(ValueError, match="uint8"):
        proc(np.concatenate([frame, frame[..., :1]], axis=2), mask)  # RGBA
    with pytest.raises(ValueError, match="do not match"):
        proc(frame, mask[:-1])
    with pytest.raises(ValueError, match="do not match"):
        proc(frame, mask.T)


def test_processor_saves_and_loads_from_the_model_directory(tmp_path):
    model = _model(min_crop_px=7, context=2.5)
    model.save_pretrained(str(tmp_path))
    AttributeVerifierProcessor(model.config).save_pretrained(str(tmp_path))
    saved = json.loads((tmp_path / "processor_config.json").read_text())
    assert saved == {"processor_class": "AttributeVerifierProcessor", "crop_size": 16, "context": 2.5, "min_crop_px": 7}
    proc = AttributeVerifierProcessor.from_pretrained(str(tmp_path))
    assert (proc.config.crop_size, proc.config.context, proc.config.min_crop_px) == (16, 2.5, 7)
    assert proc.config.colours == model.config.colours and proc.config.shapes == model.config.shapes


# -- model -----------------------------------------------------------------------------------------
def test_model_outputs_one_logit_per_word_and_checks_its_input():
    model = _model(colours=("red", "green", "blue"), shapes=("cube", "ball", "other"))
    c, s = model(torch.rand(5, 4, 16, 16))
    assert c.shape == (5, 3) and s.shape == (5, 3) and torch.isfinite(c).all() and torch.isfinite(s).all()
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 0
    for bad in (torch.rand(5, 3, 16, 16), torch.rand(4, 16, 16)):
        with pytest.raises(ValueError, match=r"\(B, 4, S, S\)"):
            model(bad)


def test_model_round_trip_is_exact(tmp_path):
    model = _model(seed=1, colours=("red", "blue", "white"), shapes=("cube", "plate", "other"))
    model.save_pretrained(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    back = AttributeVerifierModel.from_pretrained(str(tmp_path))
    assert not back.training and back.config.colours == ["red", "blue", "white"] and back.config.shapes == ["cube", "plate", "other"]
    x = torch.rand(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(model(x), back(x)):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
    other = _model(seed=2, colours=("red", "blue", "white"), shapes=("cube", "plate", "other"))
    with torch.no_grad():
        assert not torch.equal(other(x)[0], back(x)[0])  # the weights came from the file, not the seed


def test_from_pretrained_is_strict(tmp_path):
    from safetensors.torch import load_file, save_file

    model = _model()
    good = tmp_path / "good"
    model.save_pretrained(str(good))
    weights = load_file(str(good / "model.safetensors"))

    def variant(name, tensors=None, config=None):
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(json.dumps(config) if config is not None else (good / "config.json").read_text())
        save_file(tensors if tensors is not None else weights, str(d / "model.safetensors"))
        return str(d)

    missing = dict(weights)
    del missing["shape_head.bias"]
    with pytest.raises(RuntimeError, match="Missing key"):
        AttributeVerifierModel.from_pretrained(variant("missing", missing))
    with pytest.raises(RuntimeError, match="Unexpected key"):
        AttributeVerifierModel.from_pretrained(variant("extra", {**weights, "extra_head.weight": torch.zeros(2, 2)}))
    cfg = json.loads((good / "config.json").read_text())
    with pytest.raises(ValueError, match="'sa2va' model"):
        AttributeVerifierModel.from_pretrained(variant("foreign", config={**cfg, "model_type": "sa2va"}))
    with pytest.raises(ValueError, match="'None' model"):
        AttributeVerifierModel.from_pretrained(variant("untyped", config={k: v for k, v in cfg.items() if k != "model_type"}))
    # a config with another vocabulary than the weights': the head sizes do not match
    with pytest.raises(RuntimeError, match="size mismatch"):
        AttributeVerifierModel.from_pretrained(variant("vocab", config={**cfg, "colours": ["red", "blue"]}))
    with pytest.raises(FileNotFoundError, match="attribute verifier directory"):
        AttributeVerifierModel.from_pretrained(str(tmp_path / "nowhere"))
