"""WorldSpec -> MuJoCo MJCF (robot from `sim/mujoco/robot.xml`), with a compile cache.

Objects and the robot base are mocap bodies: the simulator places them kinematically (the base is a
kinematic diff-drive, grasped objects follow the gripper), so one compiled model serves a whole
episode and every episode that shares its scene. Contacts are disabled: collisions are analytic
(`vlm_agent.sim.geometry`), which keeps stepping warning-free and fast; the arm and gripper are
position servos stepped by MuJoCo.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import os
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import vlm_agent.sim  # noqa: F401  (sets MUJOCO_GL before mujoco is imported)
import mujoco

from vlm_agent.sim.world import COLOURS, OBJECT_SIZE, WorldSpec

MAX_IMAGE_SIZE = (1280, 960)  # offscreen framebuffer (width, height)


def asset_path(*parts: str) -> Path:
    """Path of a file under the package's `sim/` asset folder (source tree, then installed share/)."""
    candidates = [Path(__file__).resolve().parents[2] / "sim", Path(sys.prefix) / "share" / "vlm_agent" / "sim"]
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "vlm_agent" / "sim")
    for root in candidates:
        path = root.joinpath(*parts)
        if path.exists():
            return path
    raise FileNotFoundError(f"sim asset {'/'.join(parts)} not found in {[str(c) for c in candidates]}")


@functools.lru_cache(maxsize=1)
def _robot_parts() -> dict[str, list[ET.Element]]:
    root = ET.parse(asset_path("mujoco", "robot.xml")).getroot()
    return {tag: list(root.find(tag)) if root.find(tag) is not None else [] for tag in ("default", "asset", "worldbody", "actuator")}


def _f(values) -> str:
    return " ".join(f"{float(v):.5g}" for v in values)


def world_to_mjcf(world: WorldSpec, object_positions: bool = True) -> str:  # noqa: C901 (one flat builder reads best)
    """The MJCF XML string of `world` with the robot included; objects at their spec positions (or at
    the origin with `object_positions=False`: the simulator places them through mocap anyway)."""
    lt = world.lighting
    x_min, y_min, x_max, y_max = world.bounds
    cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
    root = ET.Element("mujoco", model=f"vlm_agent_world_{world.seed}")
    ET.SubElement(root, "compiler", angle="radian", autolimits="true")
    opt = ET.SubElement(root, "option", timestep="0.005", integrator="implicitfast")
    ET.SubElement(opt, "flag", contact="disable")
    ET.SubElement(root, "statistic", extent="10", center=_f((cx, cy, 0.5)))
    visual = ET.SubElement(root, "visual")
    ET.SubElement(visual, "global", offwidth=str(MAX_IMAGE_SIZE[0]), offheight=str(MAX_IMAGE_SIZE[1]))
    ET.SubElement(visual, "map", znear="0.003", zfar="5")
    ET.SubElement(visual, "quality", shadowsize="2048")
    ET.SubElement(visual, "headlight", ambient=_f([lt.ambient] * 3), diffuse=_f([0.15] * 3), specular="0 0 0")
    default = ET.SubElement(root, "default")
    for el in _robot_parts()["default"]:
        default.append(el)
    asset = ET.SubElement(root, "asset")
    for el in _robot_parts()["asset"]:
        asset.append(el)
    ET.SubElement(asset, "texture", name="sky", type="skybox", builtin="gradient", rgb1=".6 .7 .8", rgb2=".2 .25 .3", width="64", height="64")
    ET.SubElement(
        asset, "texture", name="floor_tex", type="2d", builtin=lt.floor_builtin, rgb1=_f(lt.floor_rgb1), rgb2=_f(lt.floor_rgb2),
        width="128", height="128", mark="edge", markrgb=_f([v * 0.7 for v in lt.floor_rgb2]),
    )
    ET.SubElement(asset, "material", name="floor_mat", texture="floor_tex", texrepeat=_f([lt.floor_repeat] * 2), texuniform="true", reflectance="0.1")
    ET.SubElement(asset, "material", name="wall_mat", rgba=_f((*lt.wall_rgb, 1)))
    for colour, rgb in COLOURS.items():
        ET.SubElement(asset, "material", name=f"obj_{colour}", rgba=_f((*rgb, 1)), specular="0.3")

    wb = ET.SubElement(root, "worldbody")
    ET.SubElement(wb, "light", name="sun", directional="true", pos=_f((cx, cy, 5)), dir=_f(lt.direction), diffuse=_f([lt.diffuse] * 3), castshadow="true")
    ET.SubElement(wb, "geom", name="floor", type="plane", pos=_f((cx, cy, 0)), size=_f(((x_max - x_min) / 2 + 1, (y_max - y_min) / 2 + 1, 0.1)), material="floor_mat", contype="0", conaffinity="0")
    for box in world.walls:
        ET.SubElement(wb, "geom", name=box.name, type="box", pos=_f(box.centre), size=_f(box.half), material="wall_mat", contype="0", conaffinity="0")
    for box in world.furniture:
        body = ET.SubElement(wb, "body", name=box.name, pos=_f(box.centre))
        hx, hy, hz = box.half
        rgba = _f(box.rgba)
        if box.kind == "table":
            top = 0.025
            ET.SubElement(body, "geom", name=f"{box.name}_top", type="box", pos=_f((0, 0, hz - top)), size=_f((hx, hy, top)), rgba=rgba, contype="0", conaffinity="0")
            for k, (sx, sy) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
                ET.SubElement(body, "geom", name=f"{box.name}_leg{k}", type="box", pos=_f((sx * (hx - 0.04), sy * (hy - 0.04), -top)), size=_f((0.025, 0.025, hz - top)), rgba=rgba, contype="0", conaffinity="0")
        elif box.kind == "sofa":
            ET.SubElement(body, "geom", name=f"{box.name}_seat", type="box", size=_f(box.half), rgba=rgba, contype="0", conaffinity="0")
            back_axis = 0 if hx < hy else 1
            back_half = (0.08, hy, 0.2) if back_axis == 0 else (hx, 0.08, 0.2)
            back_pos = (hx - 0.08, 0, hz + 0.2) if back_axis == 0 else (0, hy - 0.08, hz + 0.2)
            ET.SubElement(body, "geom", name=f"{box.name}_back", type="box", pos=_f(back_pos), size=_f(back_half), rgba=rgba, contype="0", conaffinity="0")
        else:
            ET.SubElement(body, "geom", name=f"{box.name}_body", type="box", size=_f(box.half), rgba=rgba, contype="0", conaffinity="0")
    for el in _robot_parts()["worldbody"]:
        wb.append(el)
    for obj in world.objects:
        body = ET.SubElement(wb, "body", name=obj.name, mocap="true", pos=_f(obj.pos if object_positions else (0, 0, 0)))
        s = OBJECT_SIZE[obj.shape]
        kw = dict(name=obj.name, material=f"obj_{obj.colour}", contype="0", conaffinity="0")
        if obj.shape == "cube":
            ET.SubElement(body, "geom", type="box", size=_f((s[0], s[0], s[0])), **kw)
        elif obj.shape == "ball":
            ET.SubElement(body, "geom", type="sphere", size=_f((s[0],)), **kw)
        else:  # cylinder, plate
            ET.SubElement(body, "geom", type="cylinder", size=_f(s), **kw)
    actuator = ET.SubElement(root, "actuator")
    for el in _robot_parts()["actuator"]:
        actuator.append(el)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


class ModelCache:
    """LRU cache of compiled models keyed by the scene's structure (seed + object identities).

    Compiling a 3-room scene takes a few ms; episodes that share a scene share the model."""

    def __init__(self, capacity: int = 32):
        self.capacity = capacity
        self._models: collections.OrderedDict = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(xml: str) -> str:
        # The XML itself is the key: two worlds share a model only if they are the same scene (object
        # positions differ per episode but are set through mocap, so they are normalised out).
        return hashlib.sha1(xml.encode()).hexdigest()

    def get(self, world: WorldSpec) -> mujoco.MjModel:
        xml = world_to_mjcf(world, object_positions=False)
        key = self.key(xml)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                self.hits += 1
                return self._models[key]
        model = mujoco.MjModel.from_xml_string(xml)
        with self._lock:
            self.misses += 1
            self._models[key] = model
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
        return model


MODEL_CACHE = ModelCache()


def default_scene_xml() -> str:
    """The MJCF of the `mujoco_sim` node's default episode (nav/val/seed 0/index 0), robot included."""
    from vlm_agent.sim.episodes import make_episode

    return world_to_mjcf(make_episode("nav", "val", 0, 0).world())


if __name__ == "__main__":
    # python -m vlm_agent.sim.mjcf: refresh sim/mujoco/scene_default.xml (open it in MuJoCo's viewer)
    out = Path(__file__).resolve().parents[2] / "sim" / "mujoco" / "scene_default.xml"
    out.write_text(default_scene_xml())
    print(f"wrote {out}")
