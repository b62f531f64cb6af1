"""Image/CompressedImage <-> numpy: round trips over random shapes and encodings, and clear errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vlm_agent.sensors.image_conversion import (
    ENCODINGS,
    compressed_to_numpy,
    depth_to_metres,
    image_to_numpy,
    image_to_rgb8,
    numpy_to_compressed,
    numpy_to_image,
)

sensor_msgs = pytest.importorskip("sensor_msgs.msg")


def random_array(rng: np.random.Generator, encoding: str, height: int, width: int) -> np.ndarray:
    spec = ENCODINGS[encoding]
    shape = (height, width) if spec.channels == 1 else (height, width, spec.channels)
    if spec.dtype == np.float32:
        return rng.normal(size=shape).astype(np.float32)
    return rng.integers(0, np.iinfo(spec.dtype).max, size=shape, dtype=spec.dtype, endpoint=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    encoding=st.sampled_from(sorted(ENCODINGS)),
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_every_encoding(encoding, height, width, seed):
    array = random_array(np.random.default_rng(seed), encoding, height, width)
    msg = numpy_to_image(array, encoding)
    assert msg.step == width * ENCODINGS[encoding].channels * ENCODINGS[encoding].dtype.itemsize
    assert len(msg.data) == msg.step * msg.height
    back = image_to_numpy(msg)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


@settings(max_examples=40, deadline=None)
@given(
    encoding=st.sampled_from(["rgb8", "mono16", "32FC1", "bgra8"]),
    height=st.integers(1, 16),
    width=st.integers(1, 16),
    pad=st.integers(1, 3),
)
def test_padded_rows_are_read_correctly(encoding, height, width, pad):
    spec = ENCODINGS[encoding]
    array = random_array(np.random.default_rng(height * 31 + width), encoding, height, width)
    row = array.reshape(height, -1).view(np.uint8)
    padded = np.concatenate([row, np.full((height, pad * spec.dtype.itemsize), 0xAB, np.uint8)], axis=1)
    msg = sensor_msgs.Image(height=height, width=width, encoding=encoding, step=padded.shape[1], is_bigendian=0)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(image_to_numpy(msg), array)


def test_incoming_image_is_zero_copy():
    array = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    msg = numpy_to_image(array, "rgb8")
    view = image_to_numpy(msg)
    assert np.shares_memory(view, np.frombuffer(msg.data, np.uint8))


def test_big_endian_mono16_is_swapped():
    values = np.array([[1, 256], [4660, 65535]], dtype=np.uint16)
    msg = sensor_msgs.Image(height=2, width=2, encoding="mono16", step=4, is_bigendian=1)
    msg.data = values.astype(">u2").tobytes()
    out = image_to_numpy(msg)
    np.testing.assert_array_equal(out, values)
    assert out.dtype.isnative


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(encoding="yuv422"), "encoding"),
        (dict(height=0), "height/width"),
        (dict(width=-1), "height/width"),
        (dict(step=5), "step"),
        (dict(data=b"\x00" * 10), "data"),
        (dict(height=100000, width=100000, step=300000), "height/width"),
    ],
)
def test_inconsistent_fields_raise_value_error_naming_the_field(fields, match):
    msg = numpy_to_image(np.zeros((4, 4, 3), np.uint8), "rgb8")
    for key, value in fields.items():
        setattr(msg, key, value) if key != "data" else setattr(msg, "data", value)
    with pytest.raises(ValueError, match=match):
        image_to_numpy(msg)


@pytest.mark.parametrize(
    "array, encoding, match",
    [
        (np.zeros((4, 4), np.uint8), "rgb8", "shape"),
        (np.zeros((4, 4, 3), np.float32), "rgb8", "dtype"),
        (np.zeros((4, 4), np.float64), "32FC1", "dtype"),
        (np.zeros((0, 4, 3), np.uint8), "rgb8", "height/width"),
        (np.zeros((4, 4), np.uint8), "nv12", "encoding"),
    ],
)
def test_outgoing_mismatch_raises(array, encoding, match):
    with pytest.raises(ValueError, match=match):
        numpy_to_image(array, encoding)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_to_rgb8_colour_order(encoding):
    rgb = np.array([[[10, 20, 30]]], np.uint8)
    source = {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, [[[255]]]], axis=2).astype(np.uint8),
        "bgra8": np.concatenate([rgb[:, :, ::-1], [[[255]]]], axis=2).astype(np.uint8),
        "mono8": np.array([[10]], np.uint8),
    }[encoding]
    out = image_to_rgb8(numpy_to_image(source, encoding))
    expected = np.array([[[10, 10, 10]]]) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(out, expected)


def test_depth_units_and_invalid_returns():
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    metres = depth_to_metres(numpy_to_image(mm, "16UC1"))
    assert np.isnan(metres[0, 0])
    np.testing.assert_allclose(metres[0, 1:], [1.0])
    np.testing.assert_allclose(metres[1], [2.5, 65.535], rtol=1e-6)
    f = np.array([[np.nan, np.inf], [-1.0, 0.75]], np.float32)
    out = depth_to_metres(numpy_to_image(f, "32FC1"))
    assert np.isnan(out[0]).all() and np.isnan(out[1, 0]) and out[1, 1] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="encoding"):
        depth_to_metres(numpy_to_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))


@settings(max_examples=15, deadline=None)
@given(height=st.integers(8, 48), width=st.integers(8, 48), seed=st.integers(0, 1000))
def test_png_round_trip_is_lossless(height, width, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    msg = numpy_to_compressed(rgb, "rgb8", fmt="png")
    np.testing.assert_array_equal(compressed_to_numpy(msg, "rgb8"), rgb)
    np.testing.assert_array_equal(compressed_to_numpy(msg, "bgr8"), rgb[:, :, ::-1])


def test_jpeg_round_trip_is_close_and_accepts_image_transport_format():
    yy, xx = np.mgrid[0:64, 0:64]
    rgb = np.stack([xx * 4, yy * 4, (xx + yy) * 2], axis=-1).astype(np.uint8)
    msg = numpy_to_compressed(rgb, "rgb8", fmt="jpeg", quality=95)
    msg.format = "rgb8; jpeg compressed bgr8"
    out = compressed_to_numpy(msg, "rgb8")
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb.astype(int)).mean() < 3.0


@pytest.mark.parametrize(
    "fmt, data, match",
    [("tiff", b"\x00\x01", "format"), ("jpeg", b"", "data"), ("png", b"not a png at all", "data")],
)
def test_bad_compressed_input_raises(fmt, data, match):
    msg = sensor_msgs.CompressedImage(format=fmt)
    msg.data = data
    with pytest.raises(ValueError, match=match):
        compressed_to_numpy(msg)
