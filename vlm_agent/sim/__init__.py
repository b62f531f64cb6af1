"""Embedded MuJoCo simulator (Python side): worlds, episodes, oracles, metrics (no ROS).

MuJoCo needs a GL backend chosen *before* it is imported; headless EGL (Mesa llvmpipe on a CPU
machine, the GPU driver elsewhere) works everywhere this project runs, so the package sets it
unless the user already chose one (`MUJOCO_GL=osmesa|glfw` still wins).
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"] if os.environ["MUJOCO_GL"] != "glfw" else "")
if not os.environ.get("PYOPENGL_PLATFORM"):
    os.environ.pop("PYOPENGL_PLATFORM", None)
