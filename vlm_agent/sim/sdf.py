"""WorldSpec -> Gazebo (gz sim) SDF, and the robot's SDF model, equivalent to the MuJoCo scene.

`python -m vlm_agent.sim.sdf` regenerates `sim/gazebo/worlds/default.sdf` (the world of the
`mujoco_sim` node's default episode: nav/val/seed 0/index 0) and `sim/gazebo/models/vlm_agent_robot/`.
A test checks the committed files equal this generator's output, so the two simulators cannot drift.

Differences from the MuJoCo sim, by design of each simulator: Gazebo drives the base with its
DiffDrive system (wheel joints, contacts) rather than the kinematic base; grasping uses real contacts
(no attach approximation); the gripper joint takes the /gripper/command value as a position target
clamped by its limits (0 = open, >= 0.045 = closed); there are no episode services.
Gazebo is not installable on the development machine: these files are checked statically only.
"""
from __future__ import annotations

import argparse
import math
import xml.etree.ElementTree as ET
from pathlib import Path

from vlm_agent.sim.world import OBJECT_SIZE, WorldSpec, COLOURS

ROBOT_MODEL = "vlm_agent_robot"
SDF_VERSION = "1.9"
WHEEL_RADIUS = 0.06
WHEEL_SEPARATION = 0.38


def _f(values) -> str:
    return " ".join(f"{float(v):.5g}" for v in values)


def _material(parent, rgb, alpha=1.0):
    mat = ET.SubElement(parent, "material")
    ET.SubElement(mat, "ambient").text = _f((*rgb, alpha))
    ET.SubElement(mat, "diffuse").text = _f((*rgb, alpha))
    ET.SubElement(mat, "specular").text = "0.1 0.1 0.1 1"


def _shape(parent, kind, size):
    geom = ET.SubElement(parent, "geometry")
    if kind == "box":
        ET.SubElement(ET.SubElement(geom, "box"), "size").text = _f(size)
    elif kind == "sphere":
        ET.SubElement(ET.SubElement(geom, "sphere"), "radius").text = _f(size)
    else:
        cyl = ET.SubElement(geom, "cylinder")
        ET.SubElement(cyl, "radius").text = _f(size[:1])
        ET.SubElement(cyl, "length").text = _f(size[1:2])


def _link_with(parent_model, name, kind, size, rgb, pose=(0, 0, 0, 0, 0, 0), collide=True):
    link = ET.SubElement(parent_model, "link", name=name)
    ET.SubElement(link, "pose").text = _f(pose)
    vis = ET.SubElement(link, "visual", name=f"{name}_visual")
    _shape(vis, kind, size)
    _material(vis, rgb)
    if collide:
        col = ET.SubElement(link, "collision", name=f"{name}_collision")
        _shape(col, kind, size)
    return link


def world_to_sdf(world: WorldSpec, start_pose=(0.0, 0.0, 0.0)) -> str:
    """An SDF world: physics, scene, sun, ground, walls, furniture, objects, and the robot included
    from `model://vlm_agent_robot` at `start_pose` (x, y, yaw)."""
    sdf = ET.Element("sdf", version=SDF_VERSION)
    w = ET.SubElement(sdf, "world", name=f"vlm_agent_world_{world.seed}")
    physics = ET.SubElement(w, "physics", name="1ms", type="ignored")
    ET.SubElement(physics, "max_step_size").text = "0.001"
    ET.SubElement(physics, "real_time_factor").text = "1.0"
    for plugin, name in (("gz-sim-physics-system", "gz::sim::systems::Physics"), ("gz-sim-user-commands-system", "gz::sim::systems::UserCommands"),
                         ("gz-sim-scene-broadcaster-system", "gz::sim::systems::SceneBroadcaster"), ("gz-sim-sensors-system", "gz::sim::systems::Sensors")):
        p = ET.SubElement(w, "plugin", filename=plugin, name=name)
        if plugin == "gz-sim-sensors-system":
            ET.SubElement(p, "render_engine").text = "ogre2"
    lt = world.lighting
    scene = ET.SubElement(w, "scene")
    ET.SubElement(scene, "ambient").text = _f([lt.ambient] * 3 + [1])
    ET.SubElement(scene, "background").text = "0.6 0.7 0.8 1"
    ET.SubElement(scene, "shadows").text = "false"
    sun = ET.SubElement(w, "light", type="directional", name="sun")
    ET.SubElement(sun, "pose").text = "0 0 10 0 0 0"
    ET.SubElement(sun, "diffuse").text = _f([lt.diffuse] * 3 + [1])
    ET.SubElement(sun, "specular").text = "0.1 0.1 0.1 1"
    ET.SubElement(sun, "direction").text = _f(lt.direction)
    ET.SubElement(sun, "cast_shadows").text = "false"

    ground = ET.SubElement(w, "model", name="ground_plane")
    ET.SubElement(ground, "static").text = "true"
    gl = ET.SubElement(ground, "link", name="link")
    for tag in ("collision", "visual"):
        el = ET.SubElement(gl, tag, name=tag)
        plane = ET.SubElement(ET.SubElement(el, "geometry"), "plane")
        ET.SubElement(plane, "normal").text = "0 0 1"
        ET.SubElement(plane, "size").text = "100 100"
        if tag == "visual":
            _material(el, lt.floor_rgb1)

    for box in world.walls:
        m = ET.SubElement(w, "model", name=box.name)
        ET.SubElement(m, "static").text = "true"
        ET.SubElement(m, "pose").text = _f((*box.centre, 0, 0, 0))
        _link_with(m, "link", "box", [2 * h for h in box.half], lt.wall_rgb)
    for box in world.furniture:
        m = ET.SubElement(w, "model", name=box.name)
        ET.SubElement(m, "static").text = "true"
        ET.SubElement(m, "pose").text = _f((box.centre[0], box.centre[1], 0, 0, 0, 0))
        rgb = box.rgba[:3]
        hx, hy, hz = box.half
        if box.kind == "table":
            _link_with(m, "top", "box", (2 * hx, 2 * hy, 0.05), rgb, (0, 0, 2 * hz - 0.025, 0, 0, 0))
            for k, (sx, sy) in enumerate(((1, 1), (1, -1), (-1, 1), (-1, -1))):
                _link_with(m, f"leg{k}", "box", (0.05, 0.05, 2 * hz - 0.05), rgb, (sx * (hx - 0.04), sy * (hy - 0.04), hz - 0.025, 0, 0, 0))
        else:
            _link_with(m, "body", "box", (2 * hx, 2 * hy, 2 * hz), rgb, (0, 0, hz, 0, 0, 0))
    for obj in world.objects:
        m = ET.SubElement(w, "model", name=obj.name)
        ET.SubElement(m, "pose").text = _f((*obj.pos, 0, 0, 0))
        s = OBJECT_SIZE[obj.shape]
        if obj.shape == "cube":
            link = _link_with(m, "link", "box", [2 * s[0]] * 3, COLOURS[obj.colour])
        elif obj.shape == "ball":
            link = _link_with(m, "link", "sphere", [s[0]], COLOURS[obj.colour])
        else:
            link = _link_with(m, "link", "cylinder", [s[0], 2 * s[1]], COLOURS[obj.colour])
        inertial = ET.SubElement(link, "inertial")
        ET.SubElement(inertial, "mass").text = "0.1" if obj.shape != "plate" else "0.2"
    inc = ET.SubElement(w, "include")
    ET.SubElement(inc, "uri").text = f"model://{ROBOT_MODEL}"
    ET.SubElement(inc, "name").text = ROBOT_MODEL
    ET.SubElement(inc, "pose").text = _f((start_pose[0], start_pose[1], 0.0, 0, 0, start_pose[2]))
    ET.indent(sdf)
    return '<?xml version="1.0"?>\n' + ET.tostring(sdf, encoding="unicode") + "\n"


def _joint(model, name, kind, parent, child, axis, lower, upper, pose=None):
    j = ET.SubElement(model, "joint", name=name, type=kind)
    ET.SubElement(j, "parent").text = parent
    ET.SubElement(j, "child").text = child
    if pose is not None:
        ET.SubElement(j, "pose").text = _f(pose)
    ax = ET.SubElement(j, "axis")
    ET.SubElement(ax, "xyz").text = _f(axis)
    if lower is not None:
        lim = ET.SubElement(ax, "limit")
        ET.SubElement(lim, "lower").text = f"{lower:g}"
        ET.SubElement(lim, "upper").text = f"{upper:g}"
    return j


def _inertial(link, mass):
    inertial = ET.SubElement(link, "inertial")
    ET.SubElement(inertial, "mass").text = f"{mass:g}"
    inertia = ET.SubElement(inertial, "inertia")
    for k in ("ixx", "iyy", "izz"):
        ET.SubElement(inertia, k).text = f"{mass * 0.01:g}"


def robot_sdf(width: int = 320, height: int = 240, vertical_fov_deg: float = 60.0) -> str:
    """The robot of `sim/mujoco/robot.xml` as an SDF model: diff-drive base on two wheels and a caster,
    RGB-D camera (gz topics /camera/image, /camera/depth_image, /camera/camera_info), 4-joint arm with a joint trajectory controller, parallel gripper,
    joint state publisher. Dimensions match the MuJoCo model."""
    sdf = ET.Element("sdf", version=SDF_VERSION)
    m = ET.SubElement(sdf, "model", name=ROBOT_MODEL)
    base = _link_with(m, "base_link", "cylinder", (0.2, 0.22), (0.82, 0.82, 0.85), (0, 0, 0.13, 0, 0, 0))
    _inertial(base, 8.0)
    mast = ET.SubElement(base, "visual", name="mast")
    ET.SubElement(mast, "pose").text = "-0.12 0 0.47 0 0 0"
    _shape(mast, "box", (0.04, 0.04, 0.72))
    for side, y in (("left", 0.19), ("right", -0.19)):
        wheel = _link_with(m, f"wheel_{side}", "cylinder", (WHEEL_RADIUS, 0.04), (0.15, 0.15, 0.17), (0, y, WHEEL_RADIUS, -math.pi / 2, 0, 0))
        _inertial(wheel, 0.5)
        _joint(m, f"wheel_{side}_joint", "revolute", "base_link", f"wheel_{side}", (0, 0, 1), None, None)
    caster = _link_with(m, "caster", "sphere", (0.03,), (0.15, 0.15, 0.17), (-0.15, 0, 0.03, 0, 0, 0))
    _inertial(caster, 0.1)
    _joint(m, "caster_joint", "ball", "base_link", "caster", (0, 0, 1), None, None)

    cam = ET.SubElement(m, "link", name="camera_link")
    ET.SubElement(cam, "pose").text = _f((-0.07, 0, 0.95, 0, math.radians(20), 0))
    _inertial(cam, 0.05)
    sensor = ET.SubElement(cam, "sensor", name="rgbd_camera", type="rgbd_camera")
    ET.SubElement(sensor, "topic").text = "/camera"
    ET.SubElement(sensor, "update_rate").text = "10"
    ET.SubElement(sensor, "always_on").text = "true"
    camera = ET.SubElement(sensor, "camera")
    aspect = width / height
    hfov = 2 * math.atan(math.tan(math.radians(vertical_fov_deg) / 2) * aspect)
    ET.SubElement(camera, "horizontal_fov").text = f"{hfov:.5f}"
    image = ET.SubElement(camera, "image")
    ET.SubElement(image, "width").text = str(width)
    ET.SubElement(image, "height").text = str(height)
    ET.SubElement(image, "format").text = "R8G8B8"
    clip = ET.SubElement(camera, "clip")
    ET.SubElement(clip, "near").text = "0.03"
    ET.SubElement(clip, "far").text = "10"
    ET.SubElement(camera, "optical_frame_id").text = "camera_color_optical_frame"
    _joint(m, "camera_joint", "fixed", "base_link", "camera_link", (0, 0, 1), None, None)

    # arm: shoulder 0.28 m above the floor, 0.10 m ahead of the base centre; links 0.35 m
    chain = [
        ("arm_base", (0.10, 0, 0.24), "base_link", "arm_yaw", (0, 0, 1), (-2.6, 2.6)),
        ("upper_arm", (0.10, 0, 0.28), "arm_base", "arm_shoulder", (0, -1, 0), (-0.5, 2.2)),
        ("forearm", (0.45, 0, 0.28), "upper_arm", "arm_elbow", (0, -1, 0), (-2.8, 0.5)),
        ("wrist", (0.80, 0, 0.28), "forearm", "arm_wrist", (0, -1, 0), (-2.6, 2.6)),
    ]
    for name, pos, parent, joint, axis, (lo, hi) in chain:
        size = (0.35, 0.05, 0.05) if name in ("upper_arm", "forearm") else (0.06, 0.1, 0.04)
        offset = (0.175, 0, 0) if name in ("upper_arm", "forearm") else (0.03, 0, 0)
        link = _link_with(m, name, "box", size, (0.95, 0.55, 0.1), (*pos, 0, 0, 0), collide=name == "wrist")
        link.find("visual").insert(0, _pose_el(offset))
        _inertial(link, 0.3)
        _joint(m, joint, "revolute", parent, name, axis, lo, hi)
    for side, sign in (("left", 1), ("right", -1)):
        finger = _link_with(m, f"finger_{side}", "box", (0.1, 0.016, 0.03), (0.15, 0.15, 0.17), (0.92, sign * 0.057, 0.28, 0, 0, 0))
        _inertial(finger, 0.05)
        # position 0 = open (fingers 0.09 m out), 0.045 = closed; /gripper/command 0..1 is clamped by the limit
        _joint(m, f"gripper_{side}", "prismatic", "wrist", f"finger_{side}", (0, -sign, 0), 0.0, 0.045)

    p = ET.SubElement(m, "plugin", filename="gz-sim-diff-drive-system", name="gz::sim::systems::DiffDrive")
    for tag, text in (("left_joint", "wheel_left_joint"), ("right_joint", "wheel_right_joint"), ("wheel_separation", f"{WHEEL_SEPARATION}"),
                      ("wheel_radius", f"{WHEEL_RADIUS}"), ("topic", "/cmd_vel"), ("odom_topic", "/odom"), ("frame_id", "odom"),
                      ("child_frame_id", "base_link"), ("odom_publish_frequency", "50"), ("max_linear_velocity", "1.0"),
                      ("max_angular_velocity", "2.0")):
        ET.SubElement(p, tag).text = text
    p = ET.SubElement(m, "plugin", filename="gz-sim-joint-state-publisher-system", name="gz::sim::systems::JointStatePublisher")
    ET.SubElement(p, "topic").text = "/joint_states"
    for j in ("arm_yaw", "arm_shoulder", "arm_elbow", "arm_wrist", "gripper_left", "gripper_right"):
        ET.SubElement(p, "joint_name").text = j
    p = ET.SubElement(m, "plugin", filename="gz-sim-joint-trajectory-controller-system", name="gz::sim::systems::JointTrajectoryController")
    ET.SubElement(p, "topic").text = "/arm_controller/joint_trajectory"
    for j in ("arm_yaw", "arm_shoulder", "arm_elbow", "arm_wrist"):
        ET.SubElement(p, "joint_name").text = j
        ET.SubElement(p, "position_p_gain").text = "40"
    for side in ("left", "right"):
        p = ET.SubElement(m, "plugin", filename="gz-sim-joint-position-controller-system", name="gz::sim::systems::JointPositionController")
        ET.SubElement(p, "joint_name").text = f"gripper_{side}"
        ET.SubElement(p, "topic").text = "/gripper/command"
        ET.SubElement(p, "p_gain").text = "200"
    ET.indent(sdf)
    return '<?xml version="1.0"?>\n' + ET.tostring(sdf, encoding="unicode") + "\n"


def _pose_el(pose):
    el = ET.Element("pose")
    el.text = _f((*pose, 0, 0, 0))
    return el


MODEL_CONFIG = f"""<?xml version="1.0"?>
<model>
  <name>{ROBOT_MODEL}</name>
  <version>1.0</version>
  <sdf version="{SDF_VERSION}">model.sdf</sdf>
  <description>vlm_agent mobile manipulator: diff-drive base, RGB-D camera, 4-DOF arm, parallel gripper (mirrors sim/mujoco/robot.xml).</description>
</model>
"""


def default_files() -> dict[str, str]:
    """{relative path under sim/gazebo: content} for the default scene and the robot model."""
    from vlm_agent.sim.episodes import make_episode

    ep = make_episode("nav", "val", 0, 0)
    return {
        "worlds/default.sdf": world_to_sdf(ep.world(), ep.start_pose),
        f"models/{ROBOT_MODEL}/model.sdf": robot_sdf(),
        f"models/{ROBOT_MODEL}/model.config": MODEL_CONFIG,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "sim" / "gazebo"))
    args = parser.parse_args(argv)
    for rel, text in default_files().items():
        path = Path(args.out) / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
