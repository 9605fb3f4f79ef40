"""The gateway's JSON codec (spec §9.2, §9.3): request bodies into betterproto messages, replies
into etcd's JSON.

Requests take one spelling per field, the proto name (``peerURLs``, ``isLearner``, ``ID``,
``linearizable``, ``targetID``); unknown keys are ignored and ``null`` means absent. A 64-bit
integer comes as a string or a number; anything that is not a decimal integer in [0, 2^64) is
refused (negatives, ``0x…``, ``1e3``, ``1.0``), as are booleans that are not JSON booleans and
repeated fields that are not arrays. Go's decoder texts are not reproducible: `BadRequest` carries
our own.

Replies use an explicit name map **per message type** (``raft_term`` in the header, ``raftTerm`` in
Status), int64/uint64 as decimal strings, zero values left out, ``null`` never written, and fields
in proto order as Go writes them. betterproto's ``to_dict``/``to_json`` are not used: they rename
fields (spec §11, pitfall 4). A sub-message is written when it would be on the gRPC wire
(``betterproto.serialized_on_wire``): MoveLeader's reply has no header, so it is ``{}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import betterproto

from proto import etcdserverpb as pb

__all__ = [
    "REQUEST_FIELDS",
    "RESPONSE_ENCODERS",
    "BadRequest",
    "FieldKind",
    "RequestField",
    "decode_request",
    "dump_json",
    "encode_response",
    "header_json",
    "member_json",
]

JSONObject = dict[str, object]
Req = TypeVar("Req", bound=betterproto.Message)
Resp = TypeVar("Resp", bound=betterproto.Message)


# ---- Requests: JSON -> betterproto --------------------------------------------------------------


class BadRequest(ValueError):
    """A body that cannot become the RPC's request message: 400 with code 3 (spec §9.2)."""


class FieldKind(Enum):
    UINT64 = "an unsigned 64-bit integer (decimal, as a string or a number)"
    BOOL = "a boolean"
    STRING = "a string"
    STRINGS = "an array of strings"


@dataclass(frozen=True, slots=True)
class RequestField:
    json_name: str
    attr: str
    """betterproto's name for it (``peerURLs`` is ``peer_ur_ls``, spec §11 pitfall 4)."""
    kind: FieldKind


def _f(json_name: str, attr: str, kind: FieldKind) -> RequestField:
    return RequestField(json_name, attr, kind)


_K = FieldKind
#: Every request field the gateway reads, per message (spec §2); any other key is ignored.
REQUEST_FIELDS: Mapping[type[betterproto.Message], tuple[RequestField, ...]] = {
    pb.MemberAddRequest: (
        _f("peerURLs", "peer_ur_ls", _K.STRINGS),
        _f("isLearner", "is_learner", _K.BOOL),
    ),
    pb.MemberRemoveRequest: (_f("ID", "id", _K.UINT64),),
    pb.MemberUpdateRequest: (_f("ID", "id", _K.UINT64), _f("peerURLs", "peer_ur_ls", _K.STRINGS)),
    pb.MemberListRequest: (_f("linearizable", "linearizable", _K.BOOL),),
    pb.MemberPromoteRequest: (_f("ID", "id", _K.UINT64),),
    pb.StatusRequest: (),
    pb.MoveLeaderRequest: (_f("targetID", "target_id", _K.UINT64),),
    pb.AuthenticateRequest: (_f("name", "name", _K.STRING), _f("password", "password", _K.STRING)),
}


class _JsonNumber(str):
    """A JSON number kept as its literal text, so ``-0``, ``1.0`` and ``1e3`` stay tellable from
    ``0`` and ``1000``, and a 5,000-digit literal is refused without being converted."""


_UINT64_TEXT = re.compile(r"(?:0|[1-9][0-9]{0,19})")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_SPACE = " \t\r\n"


def _refuse_constant(name: str) -> object:
    raise BadRequest(f"invalid JSON value {name}")


def _parse_json(body: bytes) -> object:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8") from None
    if not text.strip(_JSON_SPACE):
        return None  # an empty body is {} (spec §9.2)
    try:
        return json.loads(
            text,
            parse_int=_JsonNumber,
            parse_float=_JsonNumber,
            parse_constant=_refuse_constant,
        )
    except json.JSONDecodeError as exc:
        raise BadRequest(f"invalid JSON at offset {exc.pos}") from None
    except RecursionError:
        raise BadRequest("the JSON value is nested too deeply") from None


def _uint64(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, str):
        return None  # a _JsonNumber or a JSON string, both str; never a bool
    if not _UINT64_TEXT.fullmatch(value):
        return None
    number = int(value)
    return number if number < 1 << 64 else None


def _string(value: object) -> str | None:
    if type(value) is not str:  # not a _JsonNumber
        return None
    # Go's decoder turns a lone surrogate escape into U+FFFD; a str holding one could not be
    # encoded again (protobuf, msgpack, the reply).
    return _LONE_SURROGATE.sub("\ufffd", value)


def _decode_uint64(value: object) -> object:
    return _uint64(value)


def _decode_bool(value: object) -> object:
    return value if isinstance(value, bool) else None


def _decode_strings(value: object) -> object:
    if not isinstance(value, list):
        return None
    strings = [_string(item) for item in value]
    return None if any(s is None for s in strings) else strings


_DECODERS: Mapping[FieldKind, Callable[[object], object]] = {
    FieldKind.UINT64: _decode_uint64,
    FieldKind.BOOL: _decode_bool,
    FieldKind.STRING: _string,
    FieldKind.STRINGS: _decode_strings,
}


def decode_request(message_type: type[Req], body: bytes) -> Req:
    """The request message for a gateway body; raises `BadRequest` (spec §9.2)."""
    document = _parse_json(body)
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise BadRequest(f"the body must be a JSON object for {message_type.__name__}")
    values: dict[str, object] = {}
    for field in REQUEST_FIELDS[message_type]:
        raw = document.get(field.json_name)
        if raw is None:
            continue  # absent or null
        value = _DECODERS[field.kind](raw)
        if value is None:
            raise BadRequest(f"{field.json_name}: expected {field.kind.value}")
        values[field.attr] = value
    return message_type(**values)


# ---- Replies: betterproto -> JSON ---------------------------------------------------------------


def _int64(value: int) -> str | None:
    """int64 and uint64 are decimal strings in etcd's JSON; zero is left out."""
    return str(value) if value else None


def _text(value: str) -> str | None:
    return value or None


def _flag(value: bool) -> bool | None:
    return True if value else None


def _texts(values: list[str]) -> list[str] | None:
    return list(values) or None


def _object(*pairs: tuple[str, object]) -> JSONObject:
    return {name: value for name, value in pairs if value is not None}


def _message(value: Resp, encode: Callable[[Resp], JSONObject]) -> JSONObject | None:
    """A sub-message, written when it is on the gRPC wire (MoveLeader's header is not)."""
    return encode(value) if betterproto.serialized_on_wire(value) else None


def header_json(header: pb.ResponseHeader) -> JSONObject:
    return _object(
        ("cluster_id", _int64(header.cluster_id)),
        ("member_id", _int64(header.member_id)),
        ("revision", _int64(header.revision)),
        ("raft_term", _int64(header.raft_term)),
    )


def member_json(member: pb.Member) -> JSONObject:
    return _object(
        ("ID", _int64(member.id)),
        ("name", _text(member.name)),
        ("peerURLs", _texts(member.peer_ur_ls)),
        ("clientURLs", _texts(member.client_ur_ls)),
        ("isLearner", _flag(member.is_learner)),
    )


def _members(members: list[pb.Member]) -> list[JSONObject] | None:
    return [member_json(m) for m in members] or None


def _member_add_json(reply: pb.MemberAddResponse) -> JSONObject:
    return _object(
        ("header", _message(reply.header, header_json)),
        ("member", _message(reply.member, member_json)),
        ("members", _members(reply.members)),
    )


def _members_json(
    reply: pb.MemberRemoveResponse
    | pb.MemberUpdateResponse
    | pb.MemberListResponse
    | pb.MemberPromoteResponse,
) -> JSONObject:
    return _object(
        ("header", _message(reply.header, header_json)),
        ("members", _members(reply.members)),
    )


def _status_json(reply: pb.StatusResponse) -> JSONObject:
    return _object(
        ("header", _message(reply.header, header_json)),
        ("version", _text(reply.version)),
        ("dbSize", _int64(reply.db_size)),
        ("leader", _int64(reply.leader)),
        ("raftIndex", _int64(reply.raft_index)),
        ("raftTerm", _int64(reply.raft_term)),
        ("raftAppliedIndex", _int64(reply.raft_applied_index)),
        ("errors", _texts(reply.errors)),
        ("dbSizeInUse", _int64(reply.db_size_in_use)),
        ("isLearner", _flag(reply.is_learner)),
    )


def _move_leader_json(reply: pb.MoveLeaderResponse) -> JSONObject:
    return _object(("header", _message(reply.header, header_json)))


def _authenticate_json(reply: pb.AuthenticateResponse) -> JSONObject:
    return _object(("header", _message(reply.header, header_json)), ("token", _text(reply.token)))


#: The reply name map of each response type the gateway serves.
RESPONSE_ENCODERS: Mapping[type[betterproto.Message], Callable[[Any], JSONObject]] = {
    pb.MemberAddResponse: _member_add_json,
    pb.MemberRemoveResponse: _members_json,
    pb.MemberUpdateResponse: _members_json,
    pb.MemberListResponse: _members_json,
    pb.MemberPromoteResponse: _members_json,
    pb.StatusResponse: _status_json,
    pb.MoveLeaderResponse: _move_leader_json,
    pb.AuthenticateResponse: _authenticate_json,
}

# Go's encoder escapes these inside strings; nothing else changes between the two.
_GO_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}
_GO_ESCAPES |= {0x2028: "\\u2028", 0x2029: "\\u2029"}


def dump_json(value: object) -> bytes:
    """Compact JSON as Go's encoder writes it (UTF-8, HTML characters escaped)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.translate(_GO_ESCAPES).encode("utf-8", "replace")


def encode_response(reply: betterproto.Message) -> bytes:
    """The JSON body of a successful reply (spec §9.3).

    A subclass of a response type (a reply cache, spec §11 pitfall 6) uses its base's map.
    """
    for cls in type(reply).__mro__:
        encode = RESPONSE_ENCODERS.get(cls)
        if encode is not None:
            return dump_json(encode(reply))
    raise TypeError(f"the gateway has no JSON map for {type(reply).__name__}")
