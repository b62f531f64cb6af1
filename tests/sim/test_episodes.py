"""Episodes: deterministic by seed, disjoint splits, held-out pairs and phrasings."""
import pytest

from vlm_agent.sim.episodes import HELD_OUT_PAIRS, HELD_OUT_TEMPLATES, Episode, make_episodes


@pytest.mark.parametrize("suite", ["nav", "manip", "seg"])
def test_deterministic_and_prefix_stable(suite):
    a = make_episodes(suite, "val", 6, seed=3)
    b = make_episodes(suite, "val", 3, seed=3)
    assert [e.to_dict() for e in a[:3]] == [e.to_dict() for e in b]
    c = make_episodes(suite, "val", 6, seed=4)
    assert [e.instruction for e in a] != [e.instruction for e in c]
    for e in a:
        assert Episode.from_dict(e.to_dict()) == e
        assert e.instruction and e.goal_objects and e.suite == suite


def test_train_never_contains_held_out_pairs_or_phrasings():
    held_templates = [t.split("{")[0] for ts in HELD_OUT_TEMPLATES.values() for t in ts]
    for suite in ("nav", "manip", "seg"):
        for e in make_episodes(suite, "train", 25, seed=1):
            world = e.world()
            assert not {(o.colour, o.shape) for o in world.objects} & HELD_OUT_PAIRS, e.episode_id
            assert not e.held_out and not e.held_out_phrasing


def test_val_has_held_out_targets_and_disjoint_scenes():
    val = make_episodes("nav", "val", 30, seed=0)
    train = make_episodes("nav", "train", 30, seed=0)
    assert {e.scene_seed for e in val}.isdisjoint({e.scene_seed for e in train})
    held = [e for e in val if e.held_out]
    assert 5 <= len(held) <= 25
    for e in held:
        goal = e.world().object(e.goal_objects[0])
        assert (goal.colour, goal.shape) in HELD_OUT_PAIRS
    assert any(e.held_out_phrasing for e in val)
    assert {e.task for e in val} >= {"goto", "sequence", "relation"}


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        make_episodes("fly", "val", 1)
    with pytest.raises(ValueError):
        make_episodes("nav", "dev", 1)


def test_seg_look_alikes_both_adds_one_of_the_targets_colour_and_leaves_the_default_alone():
    """look_alikes="both" (training data): a seg_simple target stands between one of its shape in
    another colour and one of its colour in another shape; the default builds the very episodes
    val and test are measured on, and an unknown value is refused."""
    import math

    from vlm_agent.sim.episodes import make_episode

    simple = 0
    for i in range(30):
        default = make_episode("seg", "train", 5, i)
        assert make_episode("seg", "train", 5, i, look_alikes="shape") == default
        both = make_episode("seg", "train", 5, i, look_alikes="both")
        assert both.instruction == default.instruction and both.task == default.task
        if both.task != "seg_simple":
            assert both == default  # relational episodes are untouched
            continue
        simple += 1
        world = both.world()
        target = next(o for o in world.objects if o.name == both.goal_objects[0])
        near = [o for o in world.objects if o is not target and math.dist(o.pos[:2], target.pos[:2]) < 0.8]
        assert any(o.shape == target.shape and o.colour != target.colour for o in near), both.episode_id
        assert any(o.colour == target.colour and o.shape != target.shape for o in near), both.episode_id
        assert not {(o.colour, o.shape) for o in world.objects} & HELD_OUT_PAIRS
    assert simple >= 8
    with pytest.raises(ValueError, match="look_alikes"):
        make_episode("seg", "train", 5, 0, look_alikes="colour")
