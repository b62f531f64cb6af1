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
