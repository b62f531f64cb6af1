"""INT8 calibration data for TensorRT: frames recorded from the robot or the sim -> fixed-size batches.

The batching is plain numpy (`CalibrationBatcher`) so it is tested without a GPU; the TensorRT
calibrator class (`make_entropy_calibrator`) is built on demand around it, because subclassing
`tensorrt.IInt8EntropyCalibrator2` needs `tensorrt` imported.

Calibration sources:
- an MCAP recording of the robot (`vlm-agent record`): the colour topic's frames (Image or
  CompressedImage), evenly subsampled to at most `max_frames` across the whole recording;
- .npz/.npy with uint8 (N, H, W, 3) RGB frames: a `vlm-agent dataset` shard ("rgb"), a
  `vlm-agent collect` sim shard ("frames"), or any array named "images" or stored alone;
- .npz/.npy with float32 (N, 3, S, S) `pixel_values`, already preprocessed.
RGB frames are resized to the encoder's S x S (Pillow bilinear, as the image processor does) and
normalised with the encoder's mean/std.
Use a few hundred frames that cover the deployment (lighting, rooms, objects): INT8 ranges come
only from what the calibrator sees.
"""
from __future__ import annotations

import hashlib
import logging
import os

import numpy as np

from .tower import TowerInfo

log = logging.getLogger(__name__)
_NPZ_KEYS = ("frames", "rgb", "images", "pixel_values")
DEFAULT_COLOR_TOPIC = "/camera/color/image_raw"


def load_calibration_frames(
    path: str | os.PathLike, info: TowerInfo, topic: str = DEFAULT_COLOR_TOPIC, max_frames: int = 512
) -> np.ndarray:
    """A calibration source -> float32 pixel_values (N, 3, S, S). ValueError on anything else.

    `topic` and `max_frames` apply to MCAP recordings (arrays are used whole).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"calibration file {path} does not exist")
    if path.endswith(".mcap"):
        return _preprocess_uint8(frames_from_recording(path, info.image_size, topic, max_frames), info)
    data = np.load(path, allow_pickle=False)
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = [k for k in _NPZ_KEYS if k in data.files] or (data.files if len(data.files) == 1 else [])
        if not keys:
            raise ValueError(f"{path}: expected an array named one of {_NPZ_KEYS} (found {data.files})")
        arr = data[keys[0]]
    else:
        arr = data
    s = info.image_size
    if arr.dtype == np.uint8 and arr.ndim == 4 and arr.shape[-1] == 3:
        return _preprocess_uint8(arr, info)
    if np.issubdtype(arr.dtype, np.floating) and arr.ndim == 4 and arr.shape[1:] == (3, s, s):
        return np.ascontiguousarray(arr, dtype=np.float32)
    raise ValueError(
        f"{path}: calibration frames must be uint8 (N, H, W, 3) RGB or float32 (N, 3, {s}, {s}) pixel_values, "
        f"got {arr.dtype} {arr.shape}"
    )


def frames_from_recording(path: str, size: int, topic: str = DEFAULT_COLOR_TOPIC, max_frames: int = 512) -> np.ndarray:
    """Evenly spaced colour frames of an MCAP recording, resized to size x size: uint8 (N, S, S, 3).

    Frames are resized as they are read, so a long recording never sits in memory at full size.
    """
    from PIL import Image

    from vlm_agent.sensors.frames import color_message_to_rgb
    from vlm_agent.sensors.recording import RecordingReader

    reader = RecordingReader(path)
    topics = reader.topics()
    if topic not in topics or not topics[topic]["count"]:
        raise ValueError(f"{path}: no messages on {topic} (topics: {sorted(topics)})")
    count = topics[topic]["count"]
    wanted = set(np.linspace(0, count - 1, min(count, max_frames)).round().astype(int).tolist())
    out = []
    for i, msg in enumerate(reader.messages([topic])):
        if i in wanted:
            rgb = color_message_to_rgb(msg.message)
            if rgb.shape[:2] != (size, size):
                rgb = np.asarray(Image.fromarray(rgb).resize((size, size), Image.BILINEAR))
            out.append(rgb)
    if not out:
        raise ValueError(f"{path}: could not read frames from {topic}")
    return np.stack(out)


def _preprocess_uint8(frames: np.ndarray, info: TowerInfo) -> np.ndarray:
    from PIL import Image

    s = info.image_size
    mean = np.asarray(info.image_mean, np.float32).reshape(1, 1, 3)
    std = np.asarray(info.image_std, np.float32).reshape(1, 1, 3)
    out = np.empty((len(frames), 3, s, s), np.float32)
    for i, f in enumerate(frames):
        if f.shape[:2] != (s, s):
            f = np.asarray(Image.fromarray(f).resize((s, s), Image.BILINEAR))
        out[i] = ((f.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
    return out


def frames_sha256(frames: np.ndarray) -> str:
    """Content hash of the calibration set: part of the INT8 engine cache key."""
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()


class CalibrationBatcher:
    """Cuts (N, 3, S, S) frames into full batches of `batch_size`, in order.

    TensorRT's calibrator has one fixed batch size, so a trailing partial batch is dropped (and
    logged) rather than padded: padding with repeated frames would skew the activation histograms.
    """

    def __init__(self, frames: np.ndarray, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"calibration batch size must be >= 1, got {batch_size}")
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"calibration frames must be (N, 3, S, S), got {frames.shape}")
        if len(frames) < batch_size:
            raise ValueError(f"{len(frames)} calibration frames are fewer than one batch of {batch_size}")
        self.frames = np.ascontiguousarray(frames, dtype=np.float32)
        self.batch_size = int(batch_size)
        self.num_batches = len(frames) // batch_size
        dropped = len(frames) - self.num_batches * batch_size
        if dropped:
            log.info("INT8 calibration: %d trailing frames dropped (batch size %d)", dropped, batch_size)
        self._next = 0

    def reset(self) -> None:
        self._next = 0

    def next_batch(self) -> np.ndarray | None:
        """The next (batch_size, 3, S, S) float32 batch, or None when all batches were served."""
        if self._next >= self.num_batches:
            return None
        b = self.batch_size
        batch = self.frames[self._next * b : (self._next + 1) * b]
        self._next += 1
        return batch

    def __iter__(self):
        self.reset()
        while (batch := self.next_batch()) is not None:
            yield batch


def make_entropy_calibrator(trt, batcher: CalibrationBatcher, cache_file: str, device: str = "cuda"):
    """A `trt.IInt8EntropyCalibrator2` feeding `batcher`'s batches through one preallocated buffer.

    `trt` is the imported tensorrt module (passed in so tests can give a stand-in). The calibration
    cache file lets a rebuild (new TensorRT tactic, same data) skip the calibration pass.
    """
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            trt.IInt8EntropyCalibrator2.__init__(self)
            shape = (batcher.batch_size, *batcher.frames.shape[1:])
            # One device buffer reused for every batch: TensorRT reads from the pointer we return.
            self.buffer = torch.empty(shape, dtype=torch.float32, device=device)
            self.batches_served = 0

        def get_batch_size(self):
            return batcher.batch_size

        def get_batch(self, names):
            batch = batcher.next_batch()
            if batch is None:
                return None
            self.buffer.copy_(torch.from_numpy(batch))
            self.batches_served += 1
            return [int(self.buffer.data_ptr())] * len(names)

        def read_calibration_cache(self):
            if cache_file and os.path.isfile(cache_file):
                with open(cache_file, "rb") as f:
                    return f.read()
            return None

        def write_calibration_cache(self, cache):
            if cache_file:
                os.makedirs(os.path.dirname(os.path.abspath(cache_file)), exist_ok=True)
                with open(cache_file, "wb") as f:
                    f.write(bytes(cache))

    return EntropyCalibrator()
