"""`sensor_msgs/Image` and `sensor_msgs/CompressedImage` <-> numpy.

Incoming images are zero-copy views of `msg.data` where byte order allows (`np.frombuffer` on the
message's `array('B')`, <1 us); outgoing data is written with `ndarray.tobytes()` (~0.03 ms per
640x480 frame; assigning an ndarray element-wise costs ~44 ms). Every inconsistency between
height, width, step, encoding and data length raises `ValueError` naming the field, so a node can
log the reason and drop the frame instead of crashing.

Array layout: (H, W) for single-channel encodings, (H, W, C) otherwise; row 0 is the top of the image.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EncodingSpec:
    dtype: np.dtype
    channels: int


ENCODINGS: dict[str, EncodingSpec] = {
    "rgb8": EncodingSpec(np.dtype(np.uint8), 3),
    "bgr8": EncodingSpec(np.dtype(np.uint8), 3),
    "rgba8": EncodingSpec(np.dtype(np.uint8), 4),
    "bgra8": EncodingSpec(np.dtype(np.uint8), 4),
    "mono8": EncodingSpec(np.dtype(np.uint8), 1),
    "8UC1": EncodingSpec(np.dtype(np.uint8), 1),
    "mono16": EncodingSpec(np.dtype(np.uint16), 1),
    "16UC1": EncodingSpec(np.dtype(np.uint16), 1),
    "32FC1": EncodingSpec(np.dtype(np.float32), 1),
}
COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
# Largest image we accept (a 8K rgba frame); protects against hostile height/width fields.
MAX_PIXELS = 8192 * 8192

_HOST_BIG_ENDIAN = sys.byteorder == "big"


def encoding_spec(encoding: str) -> EncodingSpec:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        raise ValueError(f"encoding: unsupported '{encoding}' (supported: {', '.join(ENCODINGS)})") from None


def _check_size(height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise ValueError(f"height/width: image must be non-empty, got {height}x{width}")
    if height * width > MAX_PIXELS:
        raise ValueError(f"height/width: {height}x{width} exceeds the {MAX_PIXELS}-pixel limit")


def image_to_numpy(msg) -> np.ndarray:
    """`sensor_msgs/Image` -> array, a read-only zero-copy view where possible.

    Returns (H, W) for single-channel encodings, (H, W, C) otherwise, in the encoding's dtype.
    Padded rows (step > width * pixel size) are handled with a strided view.
    Raises ValueError for an unsupported encoding or inconsistent height/width/step/data.
    """
    spec = encoding_spec(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    _check_size(height, width)
    row_bytes = width * spec.channels * spec.dtype.itemsize
    if step < row_bytes:
        raise ValueError(f"step: {step} bytes is less than width*channels*itemsize = {row_bytes} for {msg.encoding}")
    if step % spec.dtype.itemsize:
        raise ValueError(f"step: {step} is not a multiple of the {spec.dtype.itemsize}-byte element size")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size != step * height:
        raise ValueError(f"data: {buffer.size} bytes, expected step*height = {step}*{height} = {step * height}")
    dtype = spec.dtype.newbyteorder(">" if msg.is_bigendian else "<") if spec.dtype.itemsize > 1 else spec.dtype
    rows = buffer.reshape(height, step)[:, :row_bytes]
    array = rows.view(dtype) if rows.flags.c_contiguous else np.ascontiguousarray(rows).view(dtype)
    array = array.reshape((height, width) if spec.channels == 1 else (height, width, spec.channels))
    if spec.dtype.itemsize > 1 and bool(msg.is_bigendian) != _HOST_BIG_ENDIAN:
        array = array.astype(spec.dtype.newbyteorder("="))  # one copy, only for foreign byte order
    return array


def numpy_to_image(array: np.ndarray, encoding: str, header=None):
    """Array -> `sensor_msgs/Image` in host byte order, step = width * pixel size.

    `array` is (H, W) or (H, W, 1) for single-channel encodings, (H, W, C) otherwise, and must
    already have the encoding's dtype (no silent casts: a float depth image sent as 16UC1 would
    be a units bug).
    """
    from sensor_msgs.msg import Image

    spec = encoding_spec(encoding)
    array = np.asarray(array)
    if array.ndim == 3 and spec.channels == 1 and array.shape[2] == 1:
        array = array[:, :, 0]
    expected_ndim = 2 if spec.channels == 1 else 3
    if array.ndim != expected_ndim or (spec.channels > 1 and array.shape[2] != spec.channels):
        raise ValueError(
            f"encoding: '{encoding}' needs shape (H, W{'' if spec.channels == 1 else f', {spec.channels}'}), "
            f"got {array.shape}"
        )
    if array.dtype != spec.dtype:
        raise ValueError(f"encoding: '{encoding}' needs dtype {spec.dtype}, got {array.dtype}")
    _check_size(array.shape[0], array.shape[1])
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = int(_HOST_BIG_ENDIAN)
    msg.step = msg.width * spec.channels * spec.dtype.itemsize
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """Any colour encoding as (H, W, 3) uint8 RGB (the planners' input format)."""
    if encoding == "rgb8":
        return array
    if encoding == "bgr8":
        return array[:, :, ::-1]
    if encoding == "rgba8":
        return array[:, :, :3]
    if encoding == "bgra8":
        return array[:, :, 2::-1]
    if encoding in ("mono8", "8UC1"):
        return np.repeat(array[:, :, None], 3, axis=2)
    raise ValueError(f"encoding: '{encoding}' is not a colour encoding ({', '.join(COLOR_ENCODINGS)})")


def image_to_rgb8(msg) -> np.ndarray:
    """`sensor_msgs/Image` in any colour encoding -> (H, W, 3) uint8 RGB."""
    return to_rgb8(image_to_numpy(msg), msg.encoding)


def depth_to_metres(msg) -> np.ndarray:
    """Depth `sensor_msgs/Image` -> (H, W) float32 metres; 16UC1 is millimetres (REP-118), 0 = no return.

    Invalid returns (0, NaN, inf) become NaN so obstacle checks cannot mistake them for contact.
    """
    array = image_to_numpy(msg)
    if msg.encoding in ("16UC1", "mono16"):
        depth = array.astype(np.float32) * 1e-3
        depth[array == 0] = np.nan
    elif msg.encoding == "32FC1":
        depth = np.array(array, dtype=np.float32)
        depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    else:
        raise ValueError(f"encoding: depth must be 16UC1/mono16 (mm) or 32FC1 (m), got '{msg.encoding}'")
    return depth


def compressed_to_numpy(msg, encoding: str = "rgb8") -> np.ndarray:
    """`sensor_msgs/CompressedImage` (JPEG or PNG) -> array in `encoding` (rgb8, bgr8 or mono8).

    The `format` field may be plain ("jpeg", "png") or image_transport's "rgb8; jpeg compressed bgr8".
    """
    import cv2

    fmt = (msg.format or "").lower()
    if not any(tag in fmt for tag in ("jpeg", "jpg", "png")):
        raise ValueError(f"format: unsupported compressed format '{msg.format}' (jpeg or png)")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    if buffer.size == 0:
        raise ValueError("data: empty compressed image")
    flag = cv2.IMREAD_GRAYSCALE if encoding == "mono8" else cv2.IMREAD_COLOR
    decoded = cv2.imdecode(buffer, flag)
    if decoded is None:
        raise ValueError(f"data: {buffer.size} bytes could not be decoded as {msg.format}")
    if encoding == "bgr8" or encoding == "mono8":
        return decoded
    if encoding == "rgb8":
        return decoded[:, :, ::-1].copy()
    raise ValueError(f"encoding: compressed images decode to rgb8, bgr8 or mono8, not '{encoding}'")


def numpy_to_compressed(array: np.ndarray, encoding: str = "rgb8", fmt: str = "jpeg", quality: int = 90, header=None):
    """rgb8/bgr8/mono8 array -> `sensor_msgs/CompressedImage` with format `fmt` ("jpeg" or "png")."""
    import cv2
    from sensor_msgs.msg import CompressedImage

    if fmt not in ("jpeg", "png"):
        raise ValueError(f"format: '{fmt}' (jpeg or png)")
    array = np.asarray(array)
    if encoding == "rgb8":
        bgr = array[:, :, ::-1]
    elif encoding in ("bgr8", "mono8"):
        bgr = array
    else:
        raise ValueError(f"encoding: can compress rgb8, bgr8 or mono8, not '{encoding}'")
    if array.dtype != np.uint8:
        raise ValueError(f"encoding: '{encoding}' needs dtype uint8, got {array.dtype}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, data = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", np.ascontiguousarray(bgr), params)
    if not ok:
        raise ValueError("data: encoding failed")
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = fmt
    msg.data = data.tobytes()
    return msg
