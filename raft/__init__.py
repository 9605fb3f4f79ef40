"""A pure, synchronous, deterministic Raft with learners and single-server conf changes.

No I/O, no clock, no threads: see ``RawNode`` for the API and ``Ready`` for the contract with
the application (persist, then send, then apply, then advance).
"""

from raft.confchange import apply_conf_change, check_invariants
from raft.config import Config
from raft.errors import (
    CompactedError,
    ConfChangeError,
    ConfChangeInProgress,
    LeaderTransferRefused,
    NotLeader,
    ProposalDropped,
    RaftError,
    SnapshotOutOfDateError,
    StorageError,
    UnavailableError,
)
from raft.rawnode import ProgressView, RawNode, Status
from raft.ready import Ready
from raft.storage import MemoryStorage, Storage
from raft.tracker import ProgressState
from raft.types import (
    NONE,
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
    ReadState,
    RejectedProposal,
    Role,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    Term,
)

__all__ = [
    "NONE",
    "CompactedError",
    "Config",
    "ConfChange",
    "ConfChangeError",
    "ConfChangeInProgress",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Index",
    "LeaderTransferRefused",
    "MemoryStorage",
    "Message",
    "MessageType",
    "NodeId",
    "NotLeader",
    "ProgressState",
    "ProgressView",
    "ProposalDropped",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "RejectedProposal",
    "Role",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotOutOfDateError",
    "SoftState",
    "Status",
    "Storage",
    "StorageError",
    "Term",
    "UnavailableError",
    "apply_conf_change",
    "bootstrap_snapshot",
    "check_invariants",
]


def bootstrap_snapshot(voters: frozenset[NodeId], data: bytes = b"") -> Snapshot:
    """The common starting point of a new cluster: index 1, term 1, ``voters`` only.

    Every founding member installs the same snapshot, so they agree on the initial configuration
    without any log entries; a member that joins later receives a snapshot from the leader.
    """
    meta = SnapshotMetadata(index=Index(1), term=Term(1), conf_state=ConfState(voters=voters))
    return Snapshot(metadata=meta, data=data)
