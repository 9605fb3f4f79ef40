"""What the client returns: frozen, plain values (IDs as ints, URLs as tuples), never betterproto.

Callers compare and hash these freely; the conversion from the wire messages lives here too, so
the rest of the client never touches betterproto field names (``peer_ur_ls``, spec §11 item 4).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from proto import etcdserverpb as pb

__all__ = ["Member", "MemberAddResult", "Status", "member_from_pb", "members_from_pb"]


@dataclass(frozen=True, slots=True)
class Member:
    """One member as the answering node knows it. An unstarted member has no name yet."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool

    @property
    def started(self) -> bool:
        """etcdctl's STATUS column: a member is started once it published its name (spec §5.2)."""
        return bool(self.name)


@dataclass(frozen=True, slots=True)
class MemberAddResult:
    """MemberAdd's answer: the new member (no name or client URLs yet) and the whole list."""

    member: Member
    members: tuple[Member, ...]


@dataclass(frozen=True, slots=True)
class Status:
    """Maintenance.Status of one endpoint (spec §7.1); ``leader`` is 0 when it knows none."""

    endpoint: str
    member_id: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    is_learner: bool
    version: str
    db_size: int
    db_size_in_use: int
    errors: tuple[str, ...]

    @property
    def is_leader(self) -> bool:
        return self.leader != 0 and self.leader == self.member_id


def member_from_pb(m: pb.Member) -> Member:
    return Member(
        id=m.id,
        name=m.name,
        peer_urls=tuple(m.peer_ur_ls),
        client_urls=tuple(m.client_ur_ls),
        is_learner=m.is_learner,
    )


def members_from_pb(members: Iterable[pb.Member]) -> tuple[Member, ...]:
    return tuple(member_from_pb(m) for m in members)


def status_from_pb(endpoint: str, reply: pb.StatusResponse) -> Status:
    return Status(
        endpoint=endpoint,
        member_id=reply.header.member_id,
        leader=reply.leader,
        raft_index=reply.raft_index,
        raft_term=reply.raft_term,
        raft_applied_index=reply.raft_applied_index,
        is_learner=reply.is_learner,
        version=reply.version,
        db_size=reply.db_size,
        db_size_in_use=reply.db_size_in_use,
        errors=tuple(reply.errors),
    )
