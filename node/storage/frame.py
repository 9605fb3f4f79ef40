"""Record framing for WAL segments and snapshot files: length, sequence number and two CRCs.

A frame is a 20-byte header and a payload::

    u32 payload length | u64 sequence number | u32 crc32(payload) | u32 crc32(header[0:16])

Why each part:

* **Length** lets a reader walk the file without parsing the payload, and tells where a record
  whose payload is damaged would have ended.
* **Payload CRC** catches torn writes and bit rot in the record itself; msgpack alone would happily
  decode many damaged payloads into different, wrong values.
* **Header CRC** makes "is there a valid frame at this offset?" a cheap and reliable question even
  when the length is the damaged field. Recovery needs that question: a bad frame followed by a
  valid one is corruption of acknowledged data and must be refused, while a bad frame with nothing
  valid after it is the torn tail of the last, unacknowledged write and may be cut off. An all-zero
  header never checks out (the length must be positive), so zero-filled preallocated space reads
  as "no frame here".
* **Sequence number** (consecutive across all segments) turns a lost record or a lost segment
  into a detectable gap instead of a silently shorter log.
"""

from __future__ import annotations

import struct
import zlib
from typing import Final, NamedTuple

_HEAD: Final = struct.Struct("<IQI")
_HEAD_CRC: Final = struct.Struct("<I")
HEADER_SIZE: Final = _HEAD.size + _HEAD_CRC.size
_FULL: Final = struct.Struct("<IQII")


def encode_frame(seq: int, payload: bytes) -> bytes:
    """The header and payload of one frame, ready to be written."""
    if not payload:
        raise ValueError("a frame needs a non-empty payload")
    head = _HEAD.pack(len(payload), seq, zlib.crc32(payload))
    return head + _HEAD_CRC.pack(zlib.crc32(head)) + payload


class Frame(NamedTuple):
    # A NamedTuple rather than a dataclass: replay makes one per record, and this is cheaper.
    offset: int
    seq: int
    payload: memoryview

    @property
    def end(self) -> int:
        return self.offset + HEADER_SIZE + len(self.payload)


def read_frame(buf: bytes, offset: int) -> Frame | None:
    """The valid frame starting at ``offset``, or None if there is none."""
    frames, _ = scan(buf, offset, limit=1)
    return frames[0] if frames else None


def scan(buf: bytes, offset: int = 0, limit: int | None = None) -> tuple[list[Frame], int]:
    """The valid frames from ``offset`` on (at most ``limit``), up to the first position holding
    none, and that position. The caller decides what the bytes after it mean (zeros, a torn
    tail, corruption). This loop is the hot path of replay, hence the local names."""
    frames: list[Frame] = []
    if offset < 0:
        return frames, offset
    view, size, crc32, unpack = memoryview(buf), len(buf), zlib.crc32, _FULL.unpack_from
    head_size = _HEAD.size
    while offset + HEADER_SIZE <= size and (limit is None or len(frames) < limit):
        length, seq, payload_crc, head_crc = unpack(buf, offset)
        start = offset + HEADER_SIZE
        end = start + length
        if length == 0 or end > size or crc32(view[offset : offset + head_size]) != head_crc:
            break
        payload = view[start:end]
        if crc32(payload) != payload_crc:
            break
        frames.append(Frame(offset, seq, payload))
        offset = end
    return frames, offset


def next_frame_after(buf: bytes, offset: int) -> Frame | None:
    """The first valid frame starting after ``offset``, searching byte by byte.

    Only called on the recovery path, from a damaged spot; the search stops at the last non-zero
    byte, so a torn tail in a mostly empty preallocated segment costs only its own length.
    """
    limit = len(buf.rstrip(b"\0"))
    for candidate in range(offset + 1, limit):
        frame = read_frame(buf, candidate)
        if frame is not None:
            return frame
    return None


def is_zero(buf: bytes, offset: int) -> bool:
    """Whether everything from ``offset`` to the end is zero bytes (unused preallocated space)."""
    return buf.count(0, offset) == len(buf) - offset
