"""ReadIndex bookkeeping on the leader (Raft dissertation §6.4).

A read request records the commit index at the time it arrived; it becomes safe to answer once a
quorum of voters has acknowledged a heartbeat sent *after* it, proving this node was still the
leader. Requests complete in arrival order: a quorum for a later request also confirms every
earlier one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raft import quorum
from raft.types import Index, NodeId


@dataclass(slots=True)
class ReadRequest:
    ctx: bytes
    index: Index
    #: Who asked: this node itself, or a follower that forwarded the request.
    requester: NodeId
    acks: set[NodeId] = field(default_factory=set)


class ReadOnly:
    def __init__(self) -> None:
        self._pending: dict[bytes, ReadRequest] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, ctx: bytes, index: Index, requester: NodeId, leader: NodeId) -> bool:
        """Start tracking a request; False if one with the same context is already pending."""
        if ctx in self._pending:
            return False
        self._pending[ctx] = ReadRequest(ctx, index, requester, {leader})
        return True

    def ack(self, ctx: bytes, node: NodeId, voters: frozenset[NodeId]) -> list[ReadRequest]:
        """Record ``node``'s heartbeat ack for ``ctx``; return the requests now safe to answer."""
        request = self._pending.get(ctx)
        if request is None:
            return []
        request.acks.add(node)
        if not quorum.has_quorum(voters, request.acks):
            return []
        done: list[ReadRequest] = []
        for key in list(self._pending):
            done.append(self._pending.pop(key))
            if key == ctx:
                break
        return done

    def last_pending_ctx(self) -> bytes:
        """Context of the newest pending request: a quorum of acks for it confirms them all,
        so every heartbeat carries it and a lost round is simply retried by the next."""
        return next(reversed(self._pending), b"")

    def reset(self) -> None:
        self._pending.clear()
