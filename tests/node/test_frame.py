"""node.storage.frame: what counts as a valid frame, and the scans recovery builds on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.storage.frame import (
    HEADER_SIZE,
    encode_frame,
    is_zero,
    next_frame_after,
    read_frame,
    scan,
)
from tests.node.strategies import NO_TIMING


def _frames(*payloads: bytes) -> bytes:
    return b"".join(encode_frame(seq, p) for seq, p in enumerate(payloads, start=1))


def test_scan_reads_consecutive_frames_and_stops_at_zeros() -> None:
    buf = _frames(b"one", b"two", b"three") + bytes(100)
    frames, end = scan(buf)
    assert [bytes(f.payload) for f in frames] == [b"one", b"two", b"three"]
    assert [f.seq for f in frames] == [1, 2, 3]
    assert end == 3 * HEADER_SIZE + 11
    assert is_zero(buf, end)
    assert not is_zero(buf, end - 1)


def test_an_empty_payload_cannot_be_framed() -> None:
    with pytest.raises(ValueError):
        encode_frame(1, b"")


@pytest.mark.parametrize(
    "buf",
    [
        b"",
        bytes(HEADER_SIZE + 10),  # zero-filled preallocated space
        encode_frame(1, b"payload")[:-1],  # cut short
        encode_frame(1, b"payload")[: HEADER_SIZE - 1],  # header cut short
    ],
)
def test_no_frame(buf: bytes) -> None:
    assert read_frame(buf, 0) is None


@NO_TIMING
@given(st.binary(min_size=1, max_size=40), st.data())
def test_any_flipped_bit_invalidates_the_frame(payload: bytes, data: st.DataObject) -> None:
    raw = bytearray(encode_frame(7, payload))
    bit = data.draw(st.integers(min_value=0, max_value=len(raw) * 8 - 1))
    raw[bit // 8] ^= 1 << (bit % 8)
    frame = read_frame(bytes(raw), 0)
    assert frame is None


def test_next_frame_after_finds_the_frame_behind_a_damaged_one() -> None:
    buf = bytearray(_frames(b"first", b"second") + bytes(64))
    buf[3] ^= 0x40  # the first frame's length: where it ends is unknown now
    frames, end = scan(bytes(buf))
    assert (frames, end) == ([], 0)
    found = next_frame_after(bytes(buf), 0)
    assert found is not None
    assert bytes(found.payload) == b"second"
    assert found.offset == HEADER_SIZE + 5


def test_next_frame_after_a_torn_tail_is_none() -> None:
    buf = _frames(b"first") + encode_frame(2, b"second" * 20)[:50] + bytes(300)
    frames, end = scan(buf)
    assert len(frames) == 1
    assert next_frame_after(buf, end) is None
