"""MCAP recordings with ROS 2 encoding: writer and reader (no rclpy).

Files follow the `ros2` MCAP profile that rosbag2's MCAP storage plugin and Foxglove read:
schema encoding `ros2msg` (the `.msg` text with dependencies, see `vlm_agent.sensors.ros2msg`),
schema name `pkg/msg/Name`, message encoding `cdr` (the bytes rclpy's `serialize_message` or a raw
subscription gives), chunked with zstd (or lz4/none), log times in nanoseconds. A `vlm_agent`
metadata record stores what was recorded and why.

The writer takes already-serialised CDR bytes, so the recorder node never deserialises a message;
the reader decodes with mcap-ros2-support into attribute objects (`msg.header.stamp.sec`,
`msg.data` bytes) that the converters in `vlm_agent.sensors` accept.
"""
from __future__ import annotations

import os
import struct
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

from vlm_agent.sensors.ros2msg import normalize_type, ros2msg_schema

COMPRESSIONS = ("zstd", "lz4", "none")
PROFILE = "ros2"


def canonical_type(type_name: str) -> str:
    """'sensor_msgs/Image' or 'sensor_msgs/msg/Image' -> 'sensor_msgs/msg/Image' (rosbag2's schema name)."""
    package, name = normalize_type(type_name)
    return f"{package}/msg/{name}"


class McapRecordingWriter:
    """Append CDR-serialised ROS 2 messages to an MCAP file. Thread-safe; `close()` writes the summary.

    Args:
        path: output `.mcap` file (its folder is created).
        compression: "zstd" (default), "lz4" or "none".
        chunk_size: bytes per chunk before compression (bigger = better ratio, more memory).
        metadata: str -> str pairs stored in a `vlm_agent` metadata record.
    """

    def __init__(self, path: str, compression: str = "zstd", chunk_size: int = 4 * 1024 * 1024, metadata: dict[str, str] | None = None):
        from mcap.writer import CompressionType, Writer

        if compression not in COMPRESSIONS:
            raise ValueError(f"compression: '{compression}' is not one of {COMPRESSIONS}")
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        self.path = path
        self._file = open(path, "wb")
        kind = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}[compression]
        self._writer = Writer(self._file, chunk_size=chunk_size, compression=kind)
        self._writer.start(profile=PROFILE, library="vlm_agent")
        if metadata:
            self._writer.add_metadata("vlm_agent", {str(k): str(v) for k, v in metadata.items()})
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, tuple[int, str]] = {}
        self._sequence: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.bytes_written = 0
        self.closed = False

    def add_channel(self, topic: str, type_name: str, schema_text: str | None = None) -> int:
        """Register `topic` with its type (schema text looked up when not given); idempotent."""
        type_name = canonical_type(type_name)
        with self._lock:
            if topic in self._channels:
                channel_id, known = self._channels[topic]
                if known != type_name:
                    raise ValueError(f"topic {topic}: already recorded as {known}, not {type_name}")
                return channel_id
            if type_name not in self._schemas:
                text = schema_text if schema_text is not None else ros2msg_schema(type_name)
                self._schemas[type_name] = self._writer.register_schema(type_name, "ros2msg", text.encode("utf-8"))
            channel_id = self._writer.register_channel(topic, "cdr", self._schemas[type_name])
            self._channels[topic] = (channel_id, type_name)
            return channel_id

    def write(self, topic: str, data: bytes, log_time_ns: int, publish_time_ns: int | None = None) -> None:
        """Write one CDR message on a registered topic."""
        with self._lock:
            if self.closed:
                raise RuntimeError(f"{self.path} is closed")
            channel_id, _ = self._channels[topic]
            self._sequence[topic] += 1
            self._writer.add_message(
                channel_id, log_time=int(log_time_ns), data=bytes(data),
                publish_time=int(log_time_ns if publish_time_ns is None else publish_time_ns), sequence=self._sequence[topic],
            )
            self.bytes_written += len(data)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._sequence)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self._writer.finish()
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


@dataclass
class RecordedMessage:
    """One message from a recording: topic, `pkg/msg/Name` type, times in ns, CDR bytes, decoded object."""

    topic: str
    type_name: str
    log_time_ns: int
    publish_time_ns: int
    data: bytes
    message: Any = None


class RecordingReader:
    """Read an MCAP recording written by `McapRecordingWriter`, `ros2 bag record -s mcap` or Foxglove."""

    def __init__(self, path: str):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"recording {path} does not exist")
        self.path = path
        self.truncated = False

    def _reader(self, f, decode: bool):
        from mcap.reader import make_reader

        if decode:
            from mcap_ros2.decoder import DecoderFactory

            return make_reader(f, decoder_factories=[DecoderFactory()])
        return make_reader(f)

    def topics(self) -> dict[str, dict[str, Any]]:
        """{topic: {"type": "pkg/msg/Name", "count": n}} from the file's summary (or a scan without one)."""
        from mcap.exceptions import McapError

        with open(self.path, "rb") as f:
            reader = self._reader(f, decode=False)
            try:
                summary = reader.get_summary()
            except (McapError, ValueError, struct.error):
                summary = None  # no footer: the writer did not finish; count by scanning
            if summary is not None and summary.statistics is not None:
                out = {}
                for cid, channel in summary.channels.items():
                    schema = summary.schemas.get(channel.schema_id)
                    out[channel.topic] = {
                        "type": schema.name if schema else "",
                        "count": summary.statistics.channel_message_counts.get(cid, 0),
                    }
                return out
        out: dict[str, dict[str, Any]] = {}
        for msg in self.messages(decode=False):
            entry = out.setdefault(msg.topic, {"type": msg.type_name, "count": 0})
            entry["count"] += 1
        return out

    def metadata(self) -> dict[str, dict[str, str]]:
        with open(self.path, "rb") as f:
            return {m.name: dict(m.metadata) for m in self._reader(f, decode=False).iter_metadata()}

    def messages(self, topics: list[str] | None = None, decode: bool = True) -> Iterator[RecordedMessage]:
        """Messages in log-time order; `decode=False` skips CDR decoding (bytes only).

        A file without a summary (the recorder was killed) is read sequentially in file order up to
        its last complete chunk; `self.truncated` is then True.
        """
        from mcap.exceptions import McapError

        self.truncated = False
        with open(self.path, "rb") as f:
            reader = self._reader(f, decode)
            try:
                summary = reader.get_summary()
            except (McapError, ValueError, struct.error):
                summary = None
            if summary is None:
                yield from self._messages_sequential(f, topics, decode)
                return
            yield from self._iter(reader, topics, decode, log_time_order=True)

    def _iter(self, reader, topics, decode, log_time_order):
        if decode:
            for schema, channel, message, decoded in reader.iter_decoded_messages(topics=topics, log_time_order=log_time_order):
                yield RecordedMessage(channel.topic, schema.name if schema else "", message.log_time, message.publish_time, message.data, decoded)
        else:
            for schema, channel, message in reader.iter_messages(topics=topics, log_time_order=log_time_order):
                yield RecordedMessage(channel.topic, schema.name if schema else "", message.log_time, message.publish_time, message.data)

    def _messages_sequential(self, f, topics, decode):
        from mcap.exceptions import McapError
        from mcap.reader import NonSeekingReader

        f.seek(0)
        factories = []
        if decode:
            from mcap_ros2.decoder import DecoderFactory

            factories = [DecoderFactory()]
        reader = NonSeekingReader(f, decoder_factories=factories)
        try:
            if decode:
                for schema, channel, message, decoded in reader.iter_decoded_messages(topics=topics, log_time_order=False):
                    yield RecordedMessage(channel.topic, schema.name if schema else "", message.log_time, message.publish_time, message.data, decoded)
            else:
                for schema, channel, message in reader.iter_messages(topics=topics, log_time_order=False):
                    yield RecordedMessage(channel.topic, schema.name if schema else "", message.log_time, message.publish_time, message.data)
        except (McapError, ValueError, struct.error, EOFError):
            self.truncated = True  # the incomplete tail of a file whose writer did not finish
