"""Member and cluster IDs, derived exactly as etcd derives them (spec §3.3).

An ID is a Python int with 0 < id < 2**64: 0 is raft's "none", and betterproto does no uint64 range
check (spec §11, pitfall 5), so every edge that takes an ID from outside (gateway, CLI, peers)
goes through `check_id` or `parse_id`.

- member ID: the first 8 bytes, big-endian, of SHA-1 over the sorted normalised peer URLs, then
  the cluster name, then (at runtime only) the Unix time in seconds, all concatenated as UTF-8;
- cluster ID: the same over the sorted bootstrap member IDs as 8-byte big-endian values.

A bootstrap ID hashes the ``--initial-cluster-token`` and no time, so every founding member
computes the same IDs. A runtime MemberAdd hashes the empty cluster name and the current second,
so the same URLs added twice within one second collide (spec §3.3 keeps that on purpose).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = [
    "MAX_ID",
    "bootstrap_member_id",
    "check_id",
    "cluster_id",
    "format_id",
    "member_id",
    "parse_id",
    "runtime_member_id",
]

#: The largest valid ID (uint64).
MAX_ID = 2**64 - 1

_HEX_ID = re.compile(r"[0-9a-fA-F]+")


def _first_8_bytes(data: bytes) -> int:
    return int.from_bytes(hashlib.sha1(data).digest()[:8], "big")


def member_id(peer_urls: Iterable[str], cluster_name: str, unix_seconds: int | None = None) -> int:
    """etcd's ``NewMember`` ID: SHA-1 over sorted URLs + cluster name (+ decimal seconds).

    `peer_urls` must already be normalised (`node.urls`); they are sorted here, as etcd does.
    """
    parts = [*sorted(peer_urls), cluster_name]
    if unix_seconds is not None:
        if unix_seconds < 0:
            raise ValueError(f"unix time must not be negative, got {unix_seconds}")
        parts.append(str(unix_seconds))
    return check_id(_first_8_bytes("".join(parts).encode("utf-8")))


def bootstrap_member_id(peer_urls: Iterable[str], token: str) -> int:
    """The ID of a founding member: deterministic, from ``--initial-cluster-token``."""
    return member_id(peer_urls, token)


def runtime_member_id(peer_urls: Iterable[str], unix_seconds: int) -> int:
    """The ID MemberAdd gives: empty cluster name and the receiving node's current second."""
    return member_id(peer_urls, "", unix_seconds)


def cluster_id(bootstrap_member_ids: Iterable[int]) -> int:
    """The cluster ID: SHA-1 over the founding member IDs, sorted, as 8-byte big-endian values.

    Computed once at bootstrap and stored; it never changes with the membership.
    """
    ids = sorted(check_id(i) for i in bootstrap_member_ids)
    if not ids:
        raise ValueError("a cluster ID needs at least one member ID")
    return check_id(_first_8_bytes(b"".join(i.to_bytes(8, "big") for i in ids)))


def check_id(value: object) -> int:
    """`value` if it is a valid ID (an int with 0 < id < 2**64), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"an ID must be an integer, got {type(value).__name__}")
    if not 0 < value <= MAX_ID:
        raise ValueError(f"an ID must be in 1..2**64-1, got {value}")
    return value


def format_id(value: int) -> str:
    """Lowercase hex without padding, as etcd logs and etcdctl prints IDs (``59a05384c9b79ee``)."""
    return format(check_id(value), "x")


def parse_id(text: str) -> int:
    """An ID written in hex, as etcdctl takes it (``strconv.ParseUint(s, 16, 64)``).

    No ``0x`` prefix, sign, underscores or surrounding spaces; upper or lower case; the value must
    be a valid ID (0 is refused).
    """
    if not _HEX_ID.fullmatch(text):
        raise ValueError(f"bad member ID {text!r}, expecting an ID in hex")
    return check_id(int(text, 16))
