"""msgpack <-> values: the one place that knows the bytes of a log record or a peer message.

It encodes ``raft.types`` (entries, hard state, snapshots, messages), the WAL's ``LogRecord``, and
the application's payloads: the ``ChangeRequest`` in a conf change's context, the
``PublishRequest`` in a normal entry's data, and the ``Membership`` that is the snapshot blob.

Why one module (CONVENTIONS P7): the WAL, the snapshot files and the peer transport all carry the
same values, and a format that is written in one place and read in another drifts. Here every value
has exactly one encoder and one decoder, side by side, and a round-trip property test pins them.

The format:

* Every top-level value is ``[VERSION, tag, body]``. The version lets a future format be refused
  with a clear message instead of being misread; the tag says which type the body is, so a WAL
  record can never be decoded as a peer message by mistake.
* Bodies are positional arrays, not maps: no field names repeated in every record (the WAL holds
  one record per Ready and replay decodes 100,000 of them at startup).
* ``bytes`` stay ``bytes`` (``use_bin_type=True`` / ``raw=False``), so opaque application data never
  goes through a text codec. Enums travel as their ``value``.

Decoding is strict: anything that is not exactly what the encoder writes (wrong arity, a bool where
an int belongs, an unknown enum value, a negative index, a value ``__post_init__`` refuses) raises
``CodecError``, and nothing else, so callers need one ``except`` to tell "corrupt" from "a bug".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import msgpack  # type: ignore[import-untyped]  # msgpack ships no type information

from node.entries import ChangeRequest, PublishRequest
from node.membership import ChangeKind, Member, Membership, MembershipChange
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

#: Bumped whenever an encoding changes; decoders refuse versions they do not know.
VERSION: Final = 1

_U64_MAX: Final = 2**64 - 1


class CodecError(ValueError):
    """The bytes are not a value this codec writes (corrupt, truncated, foreign or too new)."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One WAL record: what one Ready (or one local snapshot) asks to persist, in apply order.

    When ``snapshot`` is set the record is a *checkpoint*: replay resets the log to that snapshot
    before appending ``entries``, so a checkpoint alone determines the log and every older record
    can be released. ``hard_state`` None means "unchanged".
    """

    snapshot: SnapshotMetadata | None = None
    entries: tuple[Entry, ...] = ()
    hard_state: HardState | None = None


Encodable = (
    Entry
    | ConfChange
    | HardState
    | ConfState
    | SnapshotMetadata
    | Snapshot
    | Message
    | LogRecord
    | Member
    | Membership
    | MembershipChange
    | ChangeRequest
    | PublishRequest
)
T = TypeVar("T")

# ---- encoding: value -> positional tree ----------------------------------------------------------


def _enc_change(c: ConfChange) -> list[object]:
    return [c.type.value, c.node_id, c.context]


def _enc_entry(e: Entry) -> list[object]:
    change = None if e.change is None else _enc_change(e.change)
    return [e.term, e.index, e.type.value, e.data, change]


def _enc_hard_state(h: HardState) -> list[object]:
    return [h.term, h.vote, h.commit]


def _enc_conf_state(c: ConfState) -> list[object]:
    # Sorted so that equal values always give equal bytes.
    return [sorted(c.voters), sorted(c.learners)]


def _enc_metadata(m: SnapshotMetadata) -> list[object]:
    return [m.index, m.term, _enc_conf_state(m.conf_state)]


def _enc_snapshot(s: Snapshot) -> list[object]:
    return [_enc_metadata(s.metadata), s.data]


def _enc_message(m: Message) -> list[object]:
    return [
        m.type.value,
        m.to,
        m.frm,
        m.term,
        m.log_term,
        m.index,
        [_enc_entry(e) for e in m.entries],
        m.commit,
        None if m.snapshot is None else _enc_snapshot(m.snapshot),
        m.reject,
        m.reject_hint,
        m.context,
    ]


def _enc_record(r: LogRecord) -> list[object]:
    return [
        None if r.snapshot is None else _enc_metadata(r.snapshot),
        [_enc_entry(e) for e in r.entries],
        None if r.hard_state is None else _enc_hard_state(r.hard_state),
    ]


# The application's payloads: entry data, conf-change contexts and the snapshot blob.


def _enc_member(m: Member) -> list[object]:
    return [m.id, m.name, list(m.peer_urls), list(m.client_urls), m.is_learner]


def _enc_membership(m: Membership) -> list[object]:
    return [m.cluster_id, [_enc_member(x) for x in m.members], sorted(m.removed), m.max_learners]


def _enc_membership_change(c: MembershipChange) -> list[object]:
    return [c.kind.value, c.member_id, list(c.peer_urls)]


def _enc_change_request(r: ChangeRequest) -> list[object]:
    return [r.request_id, _enc_membership_change(r.change)]


def _enc_publish_request(p: PublishRequest) -> list[object]:
    return [p.request_id, p.member_id, p.name, list(p.client_urls)]


# ---- decoding: positional tree -> value, checking every shape ------------------------------------


def _fail(what: str, value: object) -> CodecError:
    return CodecError(f"{what}: unexpected {type(value).__name__} {value!r:.60}")


def _array(value: object, length: int, what: str) -> list[Any]:
    if type(value) is not list or len(value) != length:
        raise _fail(f"{what} must be an array of {length}", value)
    return value


def _uint(value: object, what: str) -> int:
    # `type(...) is int` on purpose: bool is an int subclass and must not pass for one.
    if type(value) is not int or not 0 <= value <= _U64_MAX:
        raise _fail(f"{what} must be an unsigned 64-bit integer", value)
    return value


def _bytes(value: object, what: str) -> bytes:
    if type(value) is not bytes:
        raise _fail(f"{what} must be bytes", value)
    return value


def _str(value: object, what: str) -> str:
    if type(value) is not str:
        raise _fail(f"{what} must be a string", value)
    return value


def _strs(value: object, what: str) -> tuple[str, ...]:
    if type(value) is not list:
        raise _fail(f"{what} must be an array", value)
    return tuple(_str(v, what) for v in value)


def _uint_set(value: object, what: str) -> frozenset[int]:
    if type(value) is not list:
        raise _fail(f"{what} must be an array", value)
    found = frozenset(_uint(v, what) for v in value)
    if len(found) != len(value):
        raise _fail(f"{what} has duplicates", value)
    return found


def _bool(value: object, what: str) -> bool:
    if type(value) is not bool:
        raise _fail(f"{what} must be a bool", value)
    return value


_ENTRY_TYPES: Final = {t.value: t for t in EntryType}
_CHANGE_TYPES: Final = {t.value: t for t in ConfChangeType}
_MESSAGE_TYPES: Final = {t.value: t for t in MessageType}


def _dec_change(value: object) -> ConfChange:
    kind, node_id, context = _array(value, 3, "conf change")
    if type(kind) is not int or kind not in _CHANGE_TYPES:
        raise _fail("conf change type", kind)
    return ConfChange(
        _CHANGE_TYPES[kind], NodeId(_uint(node_id, "node id")), _bytes(context, "context")
    )


def _dec_entry(value: object) -> Entry:
    # Replay's hot path (one call per entry): the checks are inlined, and the values go to Entry
    # without NewType calls, which are identities at run time.
    if type(value) is not list or len(value) != 5:
        raise _fail("entry must be an array of 5", value)
    term, index, kind, data, change = value
    for number in (term, index):  # checked through a loop name, so `term` stays Any for mypy
        if type(number) is not int or not 0 <= number <= _U64_MAX:
            raise _fail("entry term and index must be unsigned 64-bit integers", number)
    entry_type = _ENTRY_TYPES.get(kind) if type(kind) is int else None
    if entry_type is None:
        raise _fail("entry type", kind)
    if type(data) is not bytes:
        raise _fail("entry data must be bytes", data)
    return Entry(term, index, entry_type, data, None if change is None else _dec_change(change))


def _dec_entries(value: object) -> tuple[Entry, ...]:
    if type(value) is not list:
        raise _fail("entries must be an array", value)
    if len(value) == 1:  # one entry per Ready is the common case; tuple(map()) costs 2x here
        return (_dec_entry(value[0]),)
    return tuple(map(_dec_entry, value))


def _dec_hard_state(value: object) -> HardState:
    # Also one per replayed record: inlined like _dec_entry.
    if type(value) is not list or len(value) != 3:
        raise _fail("hard state must be an array of 3", value)
    term, vote, commit = value
    if not (
        type(term) is int
        and type(vote) is int
        and type(commit) is int
        and 0 <= term <= _U64_MAX
        and 0 <= vote <= _U64_MAX
        and 0 <= commit <= _U64_MAX
    ):
        raise _fail("hard state term, vote and commit must be unsigned 64-bit integers", value)
    return HardState(*value)


def _dec_conf_state(value: object) -> ConfState:
    voters, learners = _array(value, 2, "conf state")
    return ConfState(
        cast(frozenset[NodeId], _uint_set(voters, "voters")),
        cast(frozenset[NodeId], _uint_set(learners, "learners")),
    )


def _dec_metadata(value: object) -> SnapshotMetadata:
    index, term, conf_state = _array(value, 3, "snapshot metadata")
    return SnapshotMetadata(
        Index(_uint(index, "snapshot index")),
        Term(_uint(term, "snapshot term")),
        _dec_conf_state(conf_state),
    )


def _dec_snapshot(value: object) -> Snapshot:
    metadata, data = _array(value, 2, "snapshot")
    return Snapshot(_dec_metadata(metadata), _bytes(data, "snapshot data"))


def _dec_message(value: object) -> Message:
    (kind, to, frm, term, log_term, index, entries, commit, snapshot, reject, hint, context) = (
        _array(value, 12, "message")
    )
    if type(kind) is not str or kind not in _MESSAGE_TYPES:
        raise _fail("message type", kind)
    return Message(
        type=_MESSAGE_TYPES[kind],
        to=NodeId(_uint(to, "to")),
        frm=NodeId(_uint(frm, "from")),
        term=Term(_uint(term, "term")),
        log_term=Term(_uint(log_term, "log term")),
        index=Index(_uint(index, "index")),
        entries=_dec_entries(entries),
        commit=Index(_uint(commit, "commit")),
        snapshot=None if snapshot is None else _dec_snapshot(snapshot),
        reject=_bool(reject, "reject"),
        reject_hint=Index(_uint(hint, "reject hint")),
        context=_bytes(context, "context"),
    )


def _dec_record(value: object) -> LogRecord:
    snapshot, entries, hard_state = _array(value, 3, "log record")
    return LogRecord(
        None if snapshot is None else _dec_metadata(snapshot),
        _dec_entries(entries),
        None if hard_state is None else _dec_hard_state(hard_state),
    )


_CHANGE_KINDS: Final = {k.value: k for k in ChangeKind}


def _dec_member(value: object) -> Member:
    member_id, name, peer_urls, client_urls, is_learner = _array(value, 5, "member")
    return Member(
        id=_uint(member_id, "member id"),
        name=_str(name, "member name"),
        peer_urls=_strs(peer_urls, "peer URLs"),
        client_urls=_strs(client_urls, "client URLs"),
        is_learner=_bool(is_learner, "is learner"),
    )


def _dec_membership(value: object) -> Membership:
    cluster_id, members, removed, max_learners = _array(value, 4, "membership")
    if type(members) is not list:
        raise _fail("members must be an array", members)
    return Membership(
        cluster_id=_uint(cluster_id, "cluster id"),
        members=tuple(map(_dec_member, members)),
        removed=_uint_set(removed, "removed ids"),
        max_learners=_uint(max_learners, "max learners"),
    )


def _dec_membership_change(value: object) -> MembershipChange:
    kind, member_id, peer_urls = _array(value, 3, "membership change")
    if type(kind) is not str or kind not in _CHANGE_KINDS:
        raise _fail("membership change kind", kind)
    return MembershipChange(
        _CHANGE_KINDS[kind], _uint(member_id, "member id"), _strs(peer_urls, "peer URLs")
    )


def _dec_change_request(value: object) -> ChangeRequest:
    request_id, change = _array(value, 2, "change request")
    return ChangeRequest(_uint(request_id, "request id"), _dec_membership_change(change))


def _dec_publish_request(value: object) -> PublishRequest:
    request_id, member_id, name, client_urls = _array(value, 4, "publish request")
    return PublishRequest(
        request_id=_uint(request_id, "request id"),
        member_id=_uint(member_id, "member id"),
        name=_str(name, "name"),
        client_urls=_strs(client_urls, "client URLs"),
    )


# ---- the table and the two public functions ------------------------------------------------------

# type -> (tag, encoder, decoder). Tags are part of the format: never renumber, only add.
_CODECS: Final[dict[type, tuple[int, Callable[[Any], object], Callable[[object], object]]]] = {
    Entry: (1, _enc_entry, _dec_entry),
    ConfChange: (2, _enc_change, _dec_change),
    HardState: (3, _enc_hard_state, _dec_hard_state),
    ConfState: (4, _enc_conf_state, _dec_conf_state),
    SnapshotMetadata: (5, _enc_metadata, _dec_metadata),
    Snapshot: (6, _enc_snapshot, _dec_snapshot),
    Message: (7, _enc_message, _dec_message),
    LogRecord: (8, _enc_record, _dec_record),
    Member: (9, _enc_member, _dec_member),
    Membership: (10, _enc_membership, _dec_membership),
    MembershipChange: (11, _enc_membership_change, _dec_membership_change),
    ChangeRequest: (12, _enc_change_request, _dec_change_request),
    PublishRequest: (13, _enc_publish_request, _dec_publish_request),
}
_TAG_NAMES: Final = {tag: cls.__name__ for cls, (tag, _, _) in _CODECS.items()}


def encode(value: Encodable) -> bytes:
    """The versioned, tagged bytes of ``value``."""
    try:
        tag, encoder, _ = _CODECS[type(value)]
    except KeyError:
        raise TypeError(f"the codec does not handle {type(value).__name__}") from None
    try:
        return cast(bytes, msgpack.packb([VERSION, tag, encoder(value)], use_bin_type=True))
    except (OverflowError, ValueError, TypeError) as exc:  # e.g. an id beyond 64 bits
        raise CodecError(f"cannot encode {type(value).__name__}: {exc}") from exc


def decode(data: bytes | bytearray | memoryview, kind: type[T]) -> T:
    """The ``kind`` value encoded in ``data``; ``CodecError`` for anything else."""
    try:
        tag, _, decoder = _CODECS[kind]
    except KeyError:
        raise TypeError(f"the codec does not handle {kind.__name__}") from None
    try:
        tree = msgpack.unpackb(data, raw=False)  # lists for arrays, str for str, bytes for bin
    except Exception as exc:  # msgpack raises many kinds; all of them mean "not our bytes"
        raise CodecError(f"not valid msgpack: {exc}") from exc
    version, found_tag, body = _array(tree, 3, "envelope")
    if type(version) is not int or version != VERSION:
        raise CodecError(f"unsupported codec version {version!r:.20} (this build reads {VERSION})")
    if type(found_tag) is not int or found_tag != tag:
        found = _TAG_NAMES.get(found_tag) if type(found_tag) is int else None
        raise CodecError(f"expected a {kind.__name__}, found {found or repr(found_tag)[:20]}")
    try:
        return cast(T, decoder(body))
    except CodecError:
        raise
    except (ValueError, TypeError) as exc:  # a value refused by its __post_init__
        raise CodecError(f"invalid {kind.__name__}: {exc}") from exc
