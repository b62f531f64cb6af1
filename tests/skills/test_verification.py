"""The attribute verifier as a second look at a segmenter's mask (`skills/verification.py`): verdicts
of a model whose heads are forced to one colour and one shape, `VerifiedSegmenter` around a fixed
inner segmenter (accepted masks kept, rejected ones emptied, empty ones untouched), and
`SegmenterPerceptionFactory(verifier=...)` wrapping its segmenter so that a rejected mask counts as
not found."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
from vlm_agent.models.attribute_verifier import AttributeVerifierConfig, AttributeVerifierModel, AttributeVerifierProcessor
from vlm_agent.skills.segmentation import SegResult
from vlm_agent.skills.verification import AttributeVerifier, Verdict, VerifiedSegmenter

COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "cyan", "white")
SHAPES = ("cube", "ball", "cylinder", "plate", "other")


def forced_model(colour: str, shape: str, margin: float = 20.0) -> AttributeVerifierModel:
    """A tiny verifier that reads every crop as a `colour` `shape`: its heads' weights zero, the
    biases favouring those words by `margin` (softmax ~1 - 1e-8)."""
    torch.manual_seed(0)
    model = AttributeVerifierModel(AttributeVerifierConfig(colours=COLOURS, shapes=SHAPES, crop_size=16, channels=(4, 8)))
    with torch.no_grad():
        for head, words, word in ((model.colour_head, COLOURS, colour), (model.shape_head, SHAPES, shape)):
            head.weight.zero_()
            head.bias.zero_()
            head.bias[words.index(word)] = margin
    return model.eval()


def _frame_and_mask(h=32, w=40):
    frame = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[10:16, 20:27] = True
    return frame, mask


@pytest.fixture(scope="module")
def red_cube():
    return AttributeVerifier(model=forced_model("red", "cube"), min_match=0.5)


def test_a_query_naming_what_the_model_sees_is_accepted(red_cube):
    frame, mask = _frame_and_mask()
    v = red_cube.check(frame, mask, "the red cube")
    assert isinstance(v, Verdict) and v.checked and v.accepted
    assert (v.colour, v.shape, v.predicted_colour, v.predicted_shape) == ("red", "cube", "red", "cube")
    assert v.p_colour > 0.99 and v.p_shape > 0.99 and v.match == pytest.approx(v.p_colour * v.p_shape)
    assert red_cube.check(frame, mask, "put the RED CUBE on the blue plate").accepted  # the subject's words, any case


def test_a_query_naming_another_shape_or_colour_is_rejected(red_cube):
    frame, mask = _frame_and_mask()
    v = red_cube.check(frame, mask, "the red ball")
    assert v.checked and not v.accepted and v.p_shape < 0.01 and v.p_colour > 0.99 and v.match < 0.5
    assert (v.predicted_colour, v.predicted_shape) == ("red", "cube")
    assert v.reason() == f"the mask shows a red cube, not a red ball (match {v.match:.2f})"
    assert not red_cube.check(frame, mask, "the blue cube").accepted
    assert not red_cube.check(frame, mask, "the ball").accepted  # only the shape named: only the shape checked
    only_colour = red_cube.check(frame, mask, "the red thing")
    assert only_colour.accepted and only_colour.shape is None and only_colour.p_shape == 1.0
    d = v.to_dict()
    assert d["accepted"] is False and d["colour"] == "red" and d["shape"] == "ball" and d["match"] == round(v.match, 4)


def test_min_match_is_the_threshold():
    frame, mask = _frame_and_mask()
    # a model unsure between cube and ball: P(cube) = P(ball) ~ 0.5
    model = forced_model("red", "cube")
    with torch.no_grad():
        model.shape_head.bias[SHAPES.index("ball")] = 20.0
    assert AttributeVerifier(model=model, min_match=0.4).check(frame, mask, "the red ball").accepted
    assert not AttributeVerifier(model=model, min_match=0.6).check(frame, mask, "the red ball").accepted
    assert AttributeVerifier(model=model, min_match=0.0).check(frame, mask, "the red plate").accepted  # 0 accepts everything
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="min_match"):
            AttributeVerifier(model=model, min_match=bad)


def test_a_query_without_vocabulary_words_is_not_checked(red_cube):
    frame, mask = _frame_and_mask()
    for query in ("the table", "the other one", "something left of the sofa"):
        v = red_cube.check(frame, mask, query)
        assert v.accepted and not v.checked and (v.colour, v.shape) == (None, None) and v.p_colour == v.p_shape == v.match == 1.0


def test_bad_inputs_are_refused(red_cube):
    frame, mask = _frame_and_mask()
    with pytest.raises(ValueError, match="empty mask"):
        red_cube.check(frame, np.zeros_like(mask), "the red cube")
    with pytest.raises(ValueError, match="do not match"):
        red_cube.check(frame, mask[:, :-1], "the red cube")
    with pytest.raises(ValueError, match="must be a string"):
        red_cube.check(frame, mask, None)


def test_a_verifier_loads_from_a_model_directory(tmp_path):
    model = forced_model("blue", "plate")
    model.save_pretrained(str(tmp_path))
    AttributeVerifierProcessor(model.config).save_pretrained(str(tmp_path))
    verifier = AttributeVerifier(str(tmp_path), min_match=0.3)
    assert verifier.min_match == 0.3 and not verifier.model.training
    frame, mask = _frame_and_mask()
    assert verifier.check(frame, mask, "the blue plate").accepted and not verifier.check(frame, mask, "the blue cube").accepted
    with pytest.raises(FileNotFoundError):
        AttributeVerifier(str(tmp_path / "nowhere"))


# -- VerifiedSegmenter ---------------------------------------------------------------------------
class FixedSegmenter:
    """Returns the same SegResult (with `mask`) every step; records its queries."""

    label = "fixed"

    def __init__(self, mask):
        self.mask = mask
        self.queries = []
        self.due_for_detection = True
        self.closed = False

    def reset(self, query):
        self.queries.append(query)
        self.query = query

    def step(self, rgb):
        area = int(np.asarray(self.mask).sum()) if self.mask is not None else 0
        return SegResult(self.mask, 0.9, "detected", self.query, frame_index=3, bbox=(20, 10, 27, 16) if area else None, area=area,
                         latency_s=0.01, answer="[SEG]", extra={"inner": 1})

    def close(self):
        self.closed = True


def test_accepted_masks_pass_through_with_the_verdict(red_cube):
    frame, mask = _frame_and_mask()
    inner = FixedSegmenter(mask)
    seg = VerifiedSegmenter(inner, red_cube)
    assert seg.label == "fixed+verifier"
    seg.reset("the red cube")
    assert inner.queries == ["the red cube"]
    r = seg.step(frame)
    assert r.source == "detected" and r.score == 0.9 and np.array_equal(r.mask, mask) and r.area == int(mask.sum())
    assert r.bbox == (20, 10, 27, 16) and r.frame_index == 3 and r.answer == "[SEG]"
    assert r.extra["inner"] == 1 and r.extra["verifier"]["accepted"] is True and r.extra["verifier"]["shape"] == "cube"
    assert r.extra["verifier_ms"] >= 0 and "rejected" not in r.extra


def test_rejected_masks_are_emptied(red_cube):
    frame, mask = _frame_and_mask()
    seg = VerifiedSegmenter(FixedSegmenter(mask), red_cube)
    seg.reset("the red ball")
    r = seg.step(frame)
    assert isinstance(r, SegResult)
    assert r.mask.shape == mask.shape and r.mask.dtype == bool and not r.mask.any()
    assert r.score == 0.0 and r.source == "rejected" and r.bbox is None and r.area == 0
    assert r.query == "the red ball" and r.frame_index == 3 and r.latency_s == 0.01 and r.answer == "[SEG]"
    assert r.extra["rejected_area"] == int(mask.sum()) and r.extra["inner"] == 1
    assert r.extra["rejected"] == "the mask shows a red cube, not a red ball (match 0.00)"
    assert r.extra["verifier"]["accepted"] is False and r.extra["verifier"]["predicted_shape"] == "cube"
    assert not r.tracked
    # the next query is checked on its own
    seg.reset("the red cube")
    assert seg.step(frame).source == "detected"


def test_empty_masks_and_unchecked_queries_pass_through_untouched(red_cube):
    frame, mask = _frame_and_mask()
    for empty in (np.zeros_like(mask), None):
        seg = VerifiedSegmenter(FixedSegmenter(empty), red_cube)
        seg.reset("the red ball")
        r = seg.step(frame)
        assert r.source == "detected" and r.score == 0.9 and r.extra == {"inner": 1}
        assert (r.mask is None) if empty is None else not r.mask.any()
    seg = VerifiedSegmenter(FixedSegmenter(mask), red_cube)
    seg.reset("the table")  # no vocabulary word: accepted, unchecked
    r = seg.step(frame)
    assert r.source == "detected" and r.mask.any() and r.extra["verifier"]["checked"] is False
    # no query yet (step before reset): nothing to check against
    inner = FixedSegmenter(mask)
    inner.query = "whatever"
    r = VerifiedSegmenter(inner, red_cube).step(frame)
    assert r.source == "detected" and "verifier" not in r.extra


def test_unknown_attributes_come_from_the_inner_segmenter(red_cube):
    inner = FixedSegmenter(None)
    seg = VerifiedSegmenter(inner, red_cube)
    assert seg.due_for_detection is True and seg.mask is None
    inner.due_for_detection = False
    assert seg.due_for_detection is False
    seg.close()
    assert inner.closed
    assert seg.inner is inner and seg.verifier is red_cube
    with pytest.raises(AttributeError):
        seg.no_such_attribute
    from vlm_agent.skills.segmentation import Segmenter

    assert isinstance(seg, Segmenter)


# -- SegmenterPerceptionFactory(verifier=...) -----------------------------------------------------
@pytest.fixture(scope="module")
def env():
    from vlm_agent.sim.env import NavEnv, SimConfig

    e = NavEnv(SimConfig(width=32, height=32, render_depth=False))
    yield e
    e.close()


def _saved(model, path) -> str:
    model.save_pretrained(str(path))
    AttributeVerifierProcessor(model.config).save_pretrained(str(path))
    return str(path)


def test_the_perception_factory_wraps_its_segmenter_and_a_rejected_mask_is_not_found(env, tmp_path):
    from vlm_agent.sim.episodes import make_episodes
    from vlm_agent.skills.api import SkillError
    from vlm_agent.skills.segmenter_perception import GroundTruthMaskSegmenter, SegmenterPerceptionConfig, SegmenterPerceptionFactory

    ep = make_episodes("manip", "val", 3, seed=0)[2]
    env.reset(ep)
    target = env.world.object(ep.goal_objects[0])
    other_shape = next(s for s in SHAPES[:-1] if s != target.shape)
    right = _saved(forced_model(target.colour, target.shape), tmp_path / "right")
    wrong = _saved(forced_model(target.colour, other_shape), tmp_path / "wrong")

    def face():
        x, y, _ = env.pose
        env.set_pose(x, y, math.atan2(target.pos[1] - y, target.pos[0] - x))

    plain = SegmenterPerceptionFactory(GroundTruthMaskSegmenter, SegmenterPerceptionConfig(verifier=""))
    plain(env)
    assert isinstance(plain.segmenter, GroundTruthMaskSegmenter)
    plain.close()
    default = SegmenterPerceptionFactory(GroundTruthMaskSegmenter)  # the shipped verifier is on by default
    default(env)
    assert isinstance(default.segmenter, VerifiedSegmenter) and default.segmenter.verifier.min_match == SegmenterPerceptionConfig().verifier_min_match
    default.close()

    factory = SegmenterPerceptionFactory(GroundTruthMaskSegmenter, SegmenterPerceptionConfig(verifier=right, verifier_min_match=0.3))
    try:
        face()
        p = factory(env)
        seg = factory.segmenter
        assert isinstance(seg, VerifiedSegmenter) and isinstance(seg.inner, GroundTruthMaskSegmenter)
        assert seg.verifier.min_match == 0.3 and p.segmenter is seg and seg.label.endswith("+verifier")
        assert factory(env).segmenter is seg  # made once, on the first episode
        det = p.locate(f"the {target.label}")
        assert det.name == target.name and p.records[-1].outcome == "view"
    finally:
        factory.close()

    factory = SegmenterPerceptionFactory(GroundTruthMaskSegmenter, SegmenterPerceptionConfig(verifier=wrong, turn_stops=4))
    try:
        face()
        p = factory(env)
        with pytest.raises(SkillError, match=f"found no 'the {target.label}'"):
            p.locate(f"the {target.label}")
        assert p.records[-1].outcome == "not_found"
    finally:
        factory.close()


def test_the_shipped_verifier_accepts_the_named_object_and_rejects_its_look_alikes():
    """`checkpoints/attribute_verifier` at its default min match on fresh val views (not its
    validation set: val seed 3) of objects of >= 40 px: the object's own name passes, the names of
    its look-alikes (its colour with another shape, its shape with another colour) do not."""
    from vlm_agent.models.registry import default_checkpoint_dir
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episode
    from vlm_agent.skills.segmenter_perception import SegmenterPerceptionConfig
    from vlm_agent.skills.sim_skills import SimCameraView
    from vlm_agent.training.verifier_data import render_verifier_views

    model_dir = default_checkpoint_dir("attribute_verifier")
    verifier = AttributeVerifier(model_dir, min_match=SegmenterPerceptionConfig().verifier_min_match)
    colours, shapes = verifier.model.config.colours, [s for s in verifier.model.config.shapes if s != "other"]
    env = NavEnv(SimConfig(width=64, height=64, render_depth=False))
    view = SimCameraView(env, 128, 128)
    right = wrong = total = false_accepts = 0
    try:
        for i in range(6):
            frames, maps, rows = render_verifier_views(env, view, make_episode("manip", "val", 3, i), 2, np.random.default_rng(i))
            first = {}
            for k, row in enumerate(rows):
                first.setdefault(row["view"], k)
                if row["colour"] < 0 or row["pixels"] < 40:
                    continue
                mask = maps[row["view"]] == k - first[row["view"]]
                colour, shape = colours[row["colour"]], shapes[row["shape"]]
                total += 1
                right += verifier.check(frames[row["view"]], mask, f"the {colour} {shape}").accepted
                for other in shapes:
                    if other != shape:
                        wrong += 1
                        false_accepts += verifier.check(frames[row["view"]], mask, f"the {colour} {other}").accepted
    finally:
        view.close()
        env.close()
    assert total >= 15
    assert right / total >= 0.9, f"the named object passed {right} of {total} times"
    assert false_accepts / wrong <= 0.05, f"a look-alike name passed {false_accepts} of {wrong} times"
