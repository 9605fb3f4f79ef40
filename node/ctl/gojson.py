"""etcd's replies as etcdctl's ``-w json`` prints them: Go's ``encoding/json`` of the gogoproto
structs, so the proto field names per message (``cluster_id`` in the header, ``peerURLs`` in a
member, ``raftTerm`` in Status), 64-bit integers as JSON numbers, and zero values left out
(``omitempty``). Not the JSON gateway's encoding, which quotes 64-bit integers (spec §9.3).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from proto import etcdserverpb as pb

__all__ = ["dumps", "header", "member", "members_reply", "status"]

Json = dict[str, Any]


def _omit_empty(pairs: Sequence[tuple[str, Any]]) -> Json:
    return {k: v for k, v in pairs if v not in (0, "", False, None, [], {})}


def header(h: pb.ResponseHeader) -> Json:
    return _omit_empty(
        [
            ("cluster_id", h.cluster_id),
            ("member_id", h.member_id),
            ("revision", h.revision),
            ("raft_term", h.raft_term),
        ]
    )


def member(m: pb.Member) -> Json:
    return _omit_empty(
        [
            ("ID", m.id),
            ("name", m.name),
            ("peerURLs", list(m.peer_ur_ls)),
            ("clientURLs", list(m.client_ur_ls)),
            ("isLearner", m.is_learner),
        ]
    )


def members_reply(reply: Any) -> Json:
    """A MemberList/Add/Remove/Update/Promote reply (Add also has ``member``)."""
    pairs: list[tuple[str, Any]] = [("header", header(reply.header))]
    if isinstance(reply, pb.MemberAddResponse):
        pairs.append(("member", member(reply.member)))
    pairs.append(("members", [member(m) for m in reply.members]))
    return _omit_empty(pairs)


def status(reply: pb.StatusResponse) -> Json:
    return _omit_empty(
        [
            ("header", header(reply.header)),
            ("version", reply.version),
            ("dbSize", reply.db_size),
            ("leader", reply.leader),
            ("raftIndex", reply.raft_index),
            ("raftTerm", reply.raft_term),
            ("raftAppliedIndex", reply.raft_applied_index),
            ("errors", list(reply.errors)),
            ("dbSizeInUse", reply.db_size_in_use),
            ("isLearner", reply.is_learner),
        ]
    )


def dumps(value: Any) -> str:
    """Compact JSON with Go's escaping of ``<``, ``>``, ``&`` and the line separators."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        text = text.replace(char, escaped)
    return text
