"""Off-screen RGB / depth / segmentation rendering with one GL context shared across models.

`mujoco.Renderer` makes a GL context per instance (~100-300 ms with EGL on llvmpipe); a simulator
that compiles a model per scene would pay that per episode. Here one context lives as long as the
renderer, and switching to a new model only uploads its assets (`MjrContext`, a few ms).
Shadows and reflections are off by default: they cost ~10x in software rendering.
"""
from __future__ import annotations

import vlm_agent.sim  # noqa: F401  (MUJOCO_GL before mujoco)
import mujoco
import numpy as np
from mujoco.rendering.classic import gl_context


class SceneRenderer:
    """Renders a named camera of `model` at (height, width): `rgb()` (H,W,3) uint8,
    `depth()` (H,W) float32 metres along the optical axis, `segmentation()` (H,W) int32 geom ids (-1 = none)."""

    def __init__(self, height: int, width: int, shadows: bool = False, reflections: bool = False, multisamples: int = 4):
        self.height, self.width = int(height), int(width)
        self.shadows, self.reflections = shadows, reflections
        self.multisamples = int(multisamples)
        self._gl = gl_context.GLContext(self.width, self.height)
        self._gl.make_current()
        self._model = None
        self._ctx = None
        self._scene = None
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._rect = mujoco.MjrRect(0, 0, self.width, self.height)

    def set_model(self, model: mujoco.MjModel) -> None:
        if model is self._model:
            return
        from vlm_agent.sim.mjcf import MAX_IMAGE_SIZE

        if self.width > MAX_IMAGE_SIZE[0] or self.height > MAX_IMAGE_SIZE[1]:
            raise ValueError(f"image {self.width}x{self.height} exceeds the offscreen buffer {MAX_IMAGE_SIZE}")
        self._gl.make_current()
        if self._ctx is not None:
            self._ctx.free()
        self._model = model
        # The context allocates its offscreen buffer and shadow map from these model fields: size them
        # for this renderer (a 1280x960 4x-multisampled buffer and a 2048^2 shadow map cost ~20 ms each
        # to create in software GL).
        model.vis.global_.offwidth, model.vis.global_.offheight = self.width, self.height
        model.vis.quality.offsamples = self.multisamples
        model.vis.quality.shadowsize = 2048 if self.shadows else 1
        self._ctx = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50.value)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN.value, self._ctx)
        self._ctx.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
        self._scene = mujoco.MjvScene(model, maxgeom=max(200, 2 * model.ngeom))
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.shadows
        self._scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = self.reflections
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = True
        # Only geom groups 0-2 are visible by default; sites (frames) are hidden.
        self._option.sitegroup[:] = 0

    def update(self, data: mujoco.MjData, camera_id: int) -> None:
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = camera_id
        mujoco.mjv_updateScene(self._model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL.value, self._scene)

    def rgb(self) -> np.ndarray:
        self._gl.make_current()
        buf = np.empty((self.height, self.width, 3), np.uint8)
        mujoco.mjr_render(self._rect, self._scene, self._ctx)
        mujoco.mjr_readPixels(buf, None, self._rect, self._ctx)
        return np.ascontiguousarray(buf[::-1])

    def rgbd(self) -> tuple[np.ndarray, np.ndarray]:
        """RGB and depth from one render pass and one read-back (read-back dominates in software GL)."""
        self._gl.make_current()
        rgb = np.empty((self.height, self.width, 3), np.uint8)
        buf = np.empty((self.height, self.width), np.float32)
        mujoco.mjr_render(self._rect, self._scene, self._ctx)
        mujoco.mjr_readPixels(rgb, buf, self._rect, self._ctx)
        return np.ascontiguousarray(rgb[::-1]), self._linear_depth(buf)

    def _linear_depth(self, buf: np.ndarray) -> np.ndarray:
        extent = self._model.stat.extent
        near, far = self._model.vis.map.znear * extent, self._model.vis.map.zfar * extent
        # OpenGL's non-linear depth buffer value -> metric z (same formula as mujoco.Renderer).
        c = -(far + near) / (far - near)
        d = -(2.0 * far * near) / (far - near)
        c, d = -0.5 * c - 0.5, -0.5 * d
        z = d / (buf.astype(np.float64) + c)
        return np.ascontiguousarray(z[::-1].astype(np.float32))

    def depth(self) -> np.ndarray:
        self._gl.make_current()
        buf = np.empty((self.height, self.width), np.float32)
        flags = self._scene.flags.copy()
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = True  # cheaper pass; depth is the same
        try:
            mujoco.mjr_render(self._rect, self._scene, self._ctx)
            mujoco.mjr_readPixels(None, buf, self._rect, self._ctx)
        finally:
            np.copyto(self._scene.flags, flags)
        return self._linear_depth(buf)

    def segmentation(self) -> np.ndarray:
        """(H, W) int32 geom id per pixel, -1 for background (skybox)."""
        self._gl.make_current()
        flags = self._scene.flags.copy()
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = True
        self._scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = True
        rgb = np.empty((self.height, self.width, 3), np.uint8)
        try:
            mujoco.mjr_render(self._rect, self._scene, self._ctx)
            mujoco.mjr_readPixels(rgb, None, self._rect, self._ctx)
        finally:
            np.copyto(self._scene.flags, flags)
        seg = rgb[..., 0].astype(np.int32) + (rgb[..., 1].astype(np.int32) << 8) + (rgb[..., 2].astype(np.int32) << 16)
        n = self._scene.ngeom
        lut = np.full(n + 1, -1, np.int32)
        for g in self._scene.geoms[:n]:
            if g.segid != -1 and g.objtype == mujoco.mjtObj.mjOBJ_GEOM:
                lut[g.segid + 1] = g.objid
        seg = np.clip(seg, 0, n)
        return np.ascontiguousarray(lut[seg][::-1])

    def close(self) -> None:
        if self._ctx is not None:
            self._gl.make_current()
            self._ctx.free()
            self._ctx = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: GL may already be gone
            pass
