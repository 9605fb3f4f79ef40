"""Errors raised by the Raft core to its caller.

These are the caller's mistakes or refusals of a local request (a proposal with no leader to take
it, a second conf change while one is pending). A misbehaving *peer* never raises: its messages
are dropped or answered inside the protocol.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base class for everything the core raises."""


class ProposalDropped(RaftError):
    """The proposal was not appended: no leader is known, or the leader is handing over."""


class ConfChangeInProgress(ProposalDropped):
    """A conf change is already pending (proposed but not yet applied), or this leader has not
    yet applied an entry of its own term. Only one membership change may be in flight."""


class NotLeader(RaftError):
    """The operation needs the leader (e.g. leadership transfer from a follower without one)."""


class LeaderTransferRefused(RaftError):
    """The transferee is not a voter of the current configuration (a learner or a stranger)."""


class ConfChangeError(RaftError):
    """A conf change that would break the configuration's invariants; nothing was changed."""


class StorageError(RaftError):
    """Base class for errors of the read-side storage."""


class CompactedError(StorageError):
    """The requested index is older than the first index still held (it was compacted)."""


class UnavailableError(StorageError):
    """The requested index is newer than the last index held."""


class SnapshotOutOfDateError(StorageError):
    """A snapshot older than the one already held was offered."""
