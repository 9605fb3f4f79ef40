"""node.codec: every value survives a round trip, and anything else is a CodecError."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.codec import VERSION, CodecError, LogRecord, decode, encode
from node.entries import ChangeRequest, PublishRequest
from node.membership import Member, Membership, MembershipChange
from raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    Message,
    MessageType,
    NodeId,
    Snapshot,
    SnapshotMetadata,
    Term,
)
from tests.node import strategies as s

log_records = st.builds(
    LogRecord,
    snapshot=st.none() | s.snapshot_metadata,
    entries=st.lists(s.entries(), max_size=5).map(tuple),
    hard_state=st.none() | s.hard_states,
)
any_value = st.one_of(
    s.entries(),
    s.conf_changes,
    s.hard_states,
    s.conf_states(),
    s.snapshot_metadata,
    s.snapshots,
    s.messages(),
    log_records,
    s.members,
    s.memberships(),
    s.membership_changes(),
    s.change_requests,
    s.publish_requests,
)
KINDS: list[type[Any]] = [
    Entry,
    ConfChange,
    HardState,
    ConfState,
    SnapshotMetadata,
    Snapshot,
    Message,
    LogRecord,
    Member,
    Membership,
    MembershipChange,
    ChangeRequest,
    PublishRequest,
]


@s.NO_TIMING
@given(any_value)
def test_round_trip(value: Any) -> None:
    data = encode(value)
    assert isinstance(data, bytes)
    assert decode(data, type(value)) == value
    assert decode(bytearray(data), type(value)) == value
    assert decode(memoryview(data), type(value)) == value


@s.NO_TIMING
@given(any_value, st.sampled_from(KINDS))
def test_a_value_never_decodes_as_another_type(value: Any, kind: type[Any]) -> None:
    if kind is type(value):
        return
    with pytest.raises(CodecError, match="expected a"):
        decode(encode(value), kind)


def _outcome_is_clean(data: bytes, kind: type[Any]) -> None:
    """Decoding garbage raises CodecError, or (rarely) yields a well-formed value; nothing else."""
    try:
        value = decode(data, kind)
    except CodecError:
        return
    assert isinstance(value, kind)
    assert decode(encode(value), kind) == value


@s.NO_TIMING
@given(st.binary(max_size=200), st.sampled_from(KINDS))
def test_random_bytes(data: bytes, kind: type[Any]) -> None:
    _outcome_is_clean(data, kind)


@s.NO_TIMING
@given(any_value, st.data())
def test_damaged_encodings(value: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(value))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[position] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    _outcome_is_clean(bytes(raw[:cut]), type(value))


msgpack_trees = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=8)
    | st.text(max_size=8)
    | st.floats(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=20,
)


@s.NO_TIMING
@given(msgpack_trees, st.sampled_from(KINDS))
def test_well_formed_msgpack_of_the_wrong_shape(tree: object, kind: type[Any]) -> None:
    tag = KINDS.index(kind) + 1
    _outcome_is_clean(msgpack.packb([VERSION, tag, tree], use_bin_type=True), kind)


def _envelope(tag: int, body: object, version: object = VERSION) -> bytes:
    return bytes(msgpack.packb([version, tag, body], use_bin_type=True))


ENTRY, CHANGE, HARD, CONF, META, SNAP, MSG, RECORD = range(1, 9)
MEMBER, MEMBERSHIP, MCHANGE, CHANGE_REQUEST, PUBLISH = range(9, 14)


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (b"", Entry, "not valid msgpack"),
        (b"\xc1", Entry, "not valid msgpack"),
        (encode(HardState()) + b"\x00", HardState, "not valid msgpack"),  # trailing bytes
        (msgpack.packb({"a": 1}), HardState, "envelope"),
        (msgpack.packb([VERSION, HARD]), HardState, "envelope"),
        (_envelope(HARD, [1, 2, 3], version=2), HardState, "version 2"),
        (_envelope(HARD, [1, 2, 3], version=True), HardState, "version True"),
        (_envelope(HARD, [1, 2, 3], version="1"), HardState, "version"),
        (_envelope(99, [1, 2, 3]), HardState, "found 99"),
        (_envelope(ENTRY, [1, 2, 0, b"", None]), HardState, "found Entry"),
        (_envelope(HARD, [1, 2]), HardState, "array of 3"),
        (_envelope(HARD, [1, True, 3]), HardState, "vote"),
        (_envelope(HARD, [-1, 2, 3]), HardState, "term"),
        (_envelope(HARD, [1.0, 2, 3]), HardState, "term"),
        (_envelope(ENTRY, [1, 2, 7, b"", None]), Entry, "entry type"),
        (_envelope(ENTRY, [1, 2, 0, "text", None]), Entry, "entry data must be bytes"),
        (_envelope(ENTRY, [1, 2, 1, b"", None]), Entry, "conf change exactly when"),
        (_envelope(ENTRY, [1, 2, 0, b"", [0, 5, b""]]), Entry, "conf change exactly when"),
        (_envelope(CHANGE, [0, 0, b""]), ConfChange, "positive node id"),
        (_envelope(CHANGE, [9, 1, b""]), ConfChange, "conf change type"),
        (_envelope(CONF, [[1, 1], []]), ConfState, "duplicates"),
        (_envelope(CONF, [[1, 2], [2]]), ConfState, "overlap"),
        (_envelope(CONF, [[-1], []]), ConfState, "64-bit"),
        (_envelope(SNAP, [[1, 1, [[], []]], None]), Snapshot, "snapshot data"),
        (
            _envelope(MSG, ["snap", 1, 2, 3, 0, 0, [], 0, None, False, 0, b""]),
            Message,
            "SNAP message needs a snapshot",
        ),
        (
            _envelope(MSG, ["nope", 1, 2, 3, 0, 0, [], 0, None, False, 0, b""]),
            Message,
            "message type",
        ),
        (
            _envelope(MSG, ["app", 1, 2, 3, 0, 0, [], 0, None, 0, 0, b""]),
            Message,
            "reject must be a bool",
        ),
        (_envelope(RECORD, [None, "x", None]), LogRecord, "entries must be an array"),
        (_envelope(MEMBER, [0, "n", [], [], False]), Member, "ID must be in"),
        (_envelope(MEMBER, [1, b"n", [], [], False]), Member, "member name must be a string"),
        (_envelope(MEMBER, [1, "n", ["u", 5], [], False]), Member, "peer URLs must be a string"),
        (_envelope(MEMBER, [1, "n", "u", [], False]), Member, "peer URLs must be an array"),
        (_envelope(MEMBERSHIP, [1, [], [3, 3], 1]), Membership, "removed ids has duplicates"),
        (_envelope(MEMBERSHIP, [1, [], "x", 1]), Membership, "removed ids must be an array"),
        (_envelope(MEMBERSHIP, [1, {}, [], 1]), Membership, "members must be an array"),
        (_envelope(MCHANGE, ["grow", 1, []]), MembershipChange, "membership change kind"),
        (_envelope(MCHANGE, ["add-voter", 1, []]), MembershipChange, "needs peer URLs"),
        (_envelope(CHANGE_REQUEST, [1, None]), ChangeRequest, "membership change must be"),
        (_envelope(PUBLISH, [1, 2, "n", None]), PublishRequest, "client URLs must be"),
    ],
)
def test_refusals(data: bytes, kind: type[Any], message: str) -> None:
    with pytest.raises(CodecError, match=message):
        decode(data, kind)


def test_a_type_the_codec_does_not_handle_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        decode(encode(HardState()), int)
    with pytest.raises(TypeError):
        encode(3)  # type: ignore[arg-type]


def test_encode_refuses_values_beyond_64_bits() -> None:
    with pytest.raises(CodecError, match="cannot encode"):
        encode(HardState(term=Term(2**64)))


def test_bytes_stay_bytes_and_enums_travel_by_value() -> None:
    change = ConfChange(ConfChangeType.PROMOTE, NodeId(7), b"ctx")
    entry = Entry(Term(2), Index(3), EntryType.CONF_CHANGE, b"\x00\xff", change)
    assert msgpack.unpackb(encode(entry), raw=False) == [
        VERSION,
        ENTRY,
        [2, 3, 1, b"\x00\xff", [4, 7, b"ctx"]],
    ]
    heartbeat = Message(MessageType.HEARTBEAT, to=NodeId(1), frm=NodeId(2))
    assert msgpack.unpackb(encode(heartbeat), raw=False)[2][0] == "heartbeat"


def test_equal_conf_states_encode_equally() -> None:
    a = ConfState(frozenset(map(NodeId, [5, 1, 3])), frozenset(map(NodeId, [9, 7])))
    b = ConfState(frozenset(map(NodeId, [3, 5, 1])), frozenset(map(NodeId, [7, 9])))
    assert encode(a) == encode(b)
