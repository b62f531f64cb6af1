"""skills/object_memory.py: the furniture map (from YAML and from the simulator's world) and the
sightings memory shared by the segmenter perception providers."""
import pytest

from vlm_agent.skills.api import SkillError
from vlm_agent.skills.object_memory import (
    FurnitureMap, FurniturePiece, ObjectMemory, load_furniture_map, phrase_key, write_furniture_map,
)
from vlm_agent.skills.perception import Detection

MAP = """\
furniture:
  - {name: table_0, kind: table, centre: [2.0, 1.5], size: [1.2, 0.8], top_z: 0.45}
  - {name: cabinet_0, kind: cabinet, centre: [-1.0, 0.0], size: [0.5, 0.4], top_z: 0.9}
"""


def test_a_yaml_map_answers_furniture_phrases_and_only_those(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text(MAP)
    fmap = load_furniture_map(str(path))
    assert len(fmap) == 2
    det = fmap.locate("the table")
    assert det == Detection("table", (2.0, 1.5, 0.45), "odom", "table_0")
    assert fmap.locate("Table_0.").name == "table_0" and fmap.locate("the cupboard").name == "cabinet_0"  # a synonym
    piece = fmap.piece("table_0")
    assert piece.xy_min == pytest.approx((1.4, 1.1)) and piece.xy_max == pytest.approx((2.6, 1.9))
    assert fmap.locate("the red cube") is None and not fmap.names_furniture("red cube") and fmap.piece(None) is None
    with pytest.raises(SkillError, match="no object matches"):
        fmap.locate("the sofa")  # furniture, but not in this map
    assert FurnitureMap().locate("red cube") is None


@pytest.mark.parametrize("text, reason", [
    ("furniture: 3", "needs a 'furniture' list"),
    ("[1, 2", "not YAML"),
    ("furniture:\n  - {name: t, kind: table, centre: [0, 0], top_z: 0.4}", r"needs name, kind, centre \[x, y\], size"),
    ("furniture:\n  - {name: t, kind: bed, centre: [0, 0], size: [1, 1], top_z: 0.4}", "kind 'bed' is not one of"),
    ("furniture:\n  - {name: t, kind: table, centre: [0, .nan], size: [1, 1], top_z: 0.4}", "finite"),
    ("furniture:\n  - {name: t, kind: table, centre: [0, 0], size: [0, 1], top_z: 0.4}", "size positive"),
    ("furniture:\n  - {name: t, kind: table, centre: [0, 0], size: [1, 1], top_z: 0.4}\n"
     "  - {name: t, kind: sofa, centre: [3, 0], size: [1, 1], top_z: 0.4}", "used twice"),
])
def test_a_bad_map_file_is_a_clear_error(tmp_path, text, reason):
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=reason):
        load_furniture_map(str(path))
    with pytest.raises(ValueError, match="cannot read"):
        load_furniture_map(str(tmp_path / "missing.yaml"))


def test_the_simulators_furniture_makes_the_same_map():
    import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
    from vlm_agent.sim.env import NavEnv, SimConfig
    from vlm_agent.sim.episodes import make_episodes

    env = NavEnv(SimConfig(width=16, height=16, render_depth=False))
    try:
        env.reset(next(e for e in make_episodes("manip", "val", 20, seed=0) if e.task == "place"))
        world = env.world
    finally:
        env.close()
    assert world.furniture
    fmap = FurnitureMap(world.furniture)
    for box in world.furniture:
        det = fmap.locate(box.name)
        assert det.name == box.name and det.position == pytest.approx((box.centre[0], box.centre[1], box.top_z))
        assert fmap.piece(box.name).xy_min == pytest.approx(box.xy_min)


def test_a_written_map_reads_back_the_same(tmp_path):
    pieces = [FurniturePiece("table_0", "table", (1.4, 1.1), (2.6, 1.9), 0.45), FurniturePiece("sofa_1", "sofa", (-2.0, 0.5), (-1.0, 1.3), 0.4)]
    path = tmp_path / "map.yaml"
    write_furniture_map(str(path), pieces)
    back = load_furniture_map(str(path)).pieces
    assert [(p.name, p.kind) for p in back] == [("table_0", "table"), ("sofa_1", "sofa")]
    for a, b in zip(back, pieces):
        assert a.xy_min == pytest.approx(b.xy_min) and a.xy_max == pytest.approx(b.xy_max) and a.top_z == b.top_z
    write_furniture_map(str(path), [])
    assert len(load_furniture_map(str(path))) == 0 and sorted(p.name for p in tmp_path.iterdir()) == ["map.yaml"]  # no temp files left


def test_memory_forgets_what_was_held_and_released():
    mem = ObjectMemory()
    cube = Detection("red cube", (1.0, 2.0, 0.08))
    mem.remember("The red cube.", cube)
    mem.remember("the cube", Detection("cube", (1.01, 2.0, 0.08)))  # the same object by another phrase
    mem.remember("green ball", Detection("green ball", (3.0, 0.0, 0.08)))
    assert mem.recall("red cube") == cube and phrase_key("The red cube.") == "red cube"
    mem.released()  # nothing held: nothing forgotten
    assert mem.recall("red cube") == cube
    mem.grasped("red cube")
    assert mem.holds("the red cube") and not mem.holds("green ball")
    mem.released()
    assert mem.recall("red cube") is None and mem.recall("the cube") is None and mem.recall("green ball") is not None
    assert mem.held is None
    named = ObjectMemory()  # scene ids (the simulator's provider): forgotten by id, wherever it was seen
    named.remember("red cube", Detection("red cube", (1.0, 2.0, 0.08), "odom", "obj_1"))
    named.remember("cube", Detection("cube", (1.5, 2.0, 0.08), "odom", "obj_1"))
    named.grasped("red cube")
    named.released()
    assert named.sightings == {}
    named.remember("red cube", Detection("red cube", (1.0, 2.0, 0.08), "odom", "obj_1"))
    named.grasped("the red cube")
    put = Detection("red cube", (3.0, 1.0, 0.53))
    named.released(at=put)  # where it was let go replaces where it was seen
    assert named.recall("red cube") == put and named.held is None


def test_forget_drops_a_sighting_under_every_phrase_of_that_object():
    """After a grasp that closed on nothing: the phrase's sighting and the same object's under other
    phrases go (same scene id, or within same_object_m without one); other objects stay."""
    from vlm_agent.skills.object_memory import ObjectMemory
    from vlm_agent.skills.perception import Detection

    mem = ObjectMemory()
    cyl = Detection("cyan cylinder", (1.0, 2.0, 0.21), "odom", None)
    mem.remember("the cyan cylinder", cyl)
    mem.remember("cylinder", Detection("cyan cylinder", (1.02, 2.0, 0.21), "odom", None))
    mem.remember("red cube", Detection("red cube", (3.0, 0.0, 0.08), "odom", None))
    assert mem.forget("Cyan  Cylinder") is True
    assert mem.recall("cyan cylinder") is None and mem.recall("cylinder") is None
    assert mem.recall("red cube") is not None
    assert mem.forget("cyan cylinder") is False  # nothing left to forget
    named = ObjectMemory()
    named.remember("a", Detection("x", (0.0, 0.0, 0.0), "odom", "obj_1"))
    named.remember("b", Detection("x", (0.5, 0.0, 0.0), "odom", "obj_1"))
    named.remember("c", Detection("y", (0.0, 0.0, 0.0), "odom", "obj_2"))
    assert named.forget("a") and named.recall("b") is None and named.recall("c") is not None
