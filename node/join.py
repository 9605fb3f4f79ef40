"""Joining an existing cluster (spec §5.3): learn the membership from a peer, find ourselves.

A member started with ``--initial-cluster-state existing`` and an empty data dir does not know
its ID or the cluster's: it asks the peers named in ``--initial-cluster`` for the applied
membership, and finds its own member **by advertised peer URLs** (names may be empty, ``=url``).
Anything inconsistent is refused with etcd's words, before anything is written to disk.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from node.codec import CodecError, decode
from node.membership import Member, Membership
from node.transport import fetch_info

log = logging.getLogger(__name__)


class JoinError(Exception):
    """The member cannot join: the message says why, in etcd's words where etcd has them."""


async def fetch_membership(peer_urls: Sequence[str], attempt_s: float) -> Membership:
    """The applied membership of the first peer that answers within ``attempt_s``."""
    failures: list[str] = []
    for url in peer_urls:
        try:
            async with asyncio.timeout(attempt_s):
                return decode(await fetch_info(url), Membership)
        except (OSError, TimeoutError, ConnectionError, CodecError) as exc:
            failures.append(f"{url}: {exc or type(exc).__name__}")
    raise JoinError(
        "could not retrieve the cluster's members from any peer (" + "; ".join(failures) + ")"
    )


def find_self(
    membership: Membership,
    advertise_peer_urls: Sequence[str],
    initial_cluster: Sequence[tuple[str, Sequence[str]]],
) -> Member:
    """Our member in ``membership``, checked against ``--initial-cluster``."""
    listed = sorted(u for _, urls in initial_cluster for u in urls)
    known = sorted(u for m in membership.members for u in m.peer_urls)
    if len(listed) != len(known):
        raise JoinError(
            f"member count is unequal: --initial-cluster lists {len(listed)} peer URLs, "
            f"the cluster has {len(known)}"
        )
    if listed != known:
        raise JoinError(
            "--initial-cluster does not match the cluster's members: "
            f"{','.join(listed)} vs {','.join(known)}"
        )
    member = membership.find_by_peer_urls(advertise_peer_urls)
    if member is None:
        raise JoinError(
            f"PeerURLs: no match found for existing member ({','.join(advertise_peer_urls)})"
        )
    return member
