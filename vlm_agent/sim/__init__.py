"""Embedded MuJoCo simulator (Python side): worlds, episodes, oracles, metrics (no ROS).

MuJoCo needs a GL backend chosen *before* it is imported; headless EGL (Mesa llvmpipe on a CPU
machine, the GPU driver elsewhere) works everywhere this project runs, so the package sets it
unless the user already chose one (`MUJOCO_GL=osmesa|glfw` still wins). PyOpenGL must agree with
MuJoCo for the headless backends.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
