"""Value types exchanged with the Raft core.

Everything here is immutable: a message or entry handed to the application can never be changed
behind its back, and the core can share one object between its log and a Ready without copying.
Validation happens on construction so a malformed value fails where it is made, not three calls
later inside the state machine.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NewType

NodeId = NewType("NodeId", int)
Term = NewType("Term", int)
Index = NewType("Index", int)

#: "No node": the leader is unknown, or no vote was cast.
NONE = NodeId(0)


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class EntryType(enum.Enum):
    NORMAL = 0
    CONF_CHANGE = 1


class ConfChangeType(enum.Enum):
    """The membership changes the core understands (one server at a time, never joint)."""

    ADD_VOTER = 0
    ADD_LEARNER = 1
    REMOVE = 2
    #: Carries application data only (new peer URLs); voters and learners stay as they are.
    UPDATE = 3
    PROMOTE = 4


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: NodeId
    #: Opaque to Raft; the application puts its member record and request id here.
    context: bytes = b""

    def __post_init__(self) -> None:
        if self.node_id <= 0:
            raise ValueError(f"conf change needs a positive node id, got {self.node_id}")


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: frozenset[NodeId] = frozenset()
    learners: frozenset[NodeId] = frozenset()

    def __post_init__(self) -> None:
        overlap = self.voters & self.learners
        if overlap:
            raise ValueError(f"voters and learners overlap: {sorted(overlap)}")

    def members(self) -> frozenset[NodeId]:
        return self.voters | self.learners


@dataclass(frozen=True, slots=True)
class Entry:
    term: Term
    index: Index
    type: EntryType = EntryType.NORMAL
    data: bytes = b""
    #: Set exactly when ``type`` is CONF_CHANGE, so the core never has to decode ``data``.
    change: ConfChange | None = None

    def __post_init__(self) -> None:
        if self.term < 0 or self.index < 0:
            raise ValueError("entry term and index must not be negative")
        if (self.type is EntryType.CONF_CHANGE) != (self.change is not None):
            raise ValueError("an entry carries a conf change exactly when its type says so")

    def size(self) -> int:
        """Approximate encoded size, used for flow control (max bytes per message)."""
        extra = len(self.change.context) if self.change is not None else 0
        return 16 + len(self.data) + extra


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before any message of the same Ready leaves the node."""

    term: Term = Term(0)
    vote: NodeId = NONE
    commit: Index = Index(0)

    def is_empty(self) -> bool:
        return self == EMPTY_HARD_STATE


EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state the application may want to observe; never persisted."""

    lead: NodeId
    role: Role


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    index: Index = Index(0)
    term: Term = Term(0)
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(frozen=True, slots=True)
class Snapshot:
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    #: The application's state at ``metadata.index``; opaque to Raft.
    data: bytes = b""

    def is_empty(self) -> bool:
        return self.metadata.index == 0


EMPTY_SNAPSHOT = Snapshot()


class MessageType(enum.Enum):
    # Local only: never travel between nodes.
    HUP = "hup"
    BEAT = "beat"
    CHECK_QUORUM = "check-quorum"
    # Between nodes.
    PROP = "prop"
    PROP_REJECT = "prop-reject"
    APP = "app"
    APP_RESP = "app-resp"
    VOTE = "vote"
    VOTE_RESP = "vote-resp"
    PRE_VOTE = "pre-vote"
    PRE_VOTE_RESP = "pre-vote-resp"
    SNAP = "snap"
    HEARTBEAT = "heartbeat"
    HEARTBEAT_RESP = "heartbeat-resp"
    TRANSFER_LEADER = "transfer-leader"
    TIMEOUT_NOW = "timeout-now"
    READ_INDEX = "read-index"
    READ_INDEX_RESP = "read-index-resp"


LOCAL_MESSAGES = frozenset({MessageType.HUP, MessageType.BEAT, MessageType.CHECK_QUORUM})
RESPONSE_MESSAGES = frozenset(
    {
        MessageType.APP_RESP,
        MessageType.VOTE_RESP,
        MessageType.PRE_VOTE_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.READ_INDEX_RESP,
        MessageType.PROP_REJECT,
    }
)

#: ``Message.context`` of a campaign started by leadership transfer: it may bypass the lease.
CAMPAIGN_TRANSFER = b"CampaignTransfer"


@dataclass(frozen=True, slots=True)
class Message:
    """One Raft message. Fields a type does not use keep their zero value."""

    type: MessageType
    to: NodeId = NONE
    frm: NodeId = NONE
    term: Term = Term(0)
    #: APP: term of the entry at ``index``; votes: term of the candidate's last entry;
    #: rejected APP_RESP: term of the follower's entry at ``reject_hint``.
    log_term: Term = Term(0)
    index: Index = Index(0)
    entries: tuple[Entry, ...] = ()
    commit: Index = Index(0)
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: Index = Index(0)
    context: bytes = b""

    def __post_init__(self) -> None:
        if self.term < 0 or self.index < 0 or self.commit < 0:
            raise ValueError("message term, index and commit must not be negative")
        if self.type is MessageType.SNAP and self.snapshot is None:
            raise ValueError("a SNAP message needs a snapshot")


@dataclass(frozen=True, slots=True)
class ReadState:
    """A ReadIndex answer: reads for ``request_ctx`` are linearizable once applied >= index."""

    index: Index
    request_ctx: bytes


@dataclass(frozen=True, slots=True)
class RejectedProposal:
    """A proposal forwarded to the leader that the leader refused (e.g. a conf change already
    pending). Surfaced in the Ready of the node that forwarded it, so its caller gets an
    explicit error instead of waiting for a commit that will never come."""

    entry_type: EntryType
    data: bytes
    change: ConfChange | None
    reason: str
