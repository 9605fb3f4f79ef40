"""The errors our domain raises, one class per etcd error a client can see (spec §8.1).

These are plain Python exceptions with no wire knowledge: the membership rules, the strict
reconfiguration checks and the driver raise them, and `node.errors` (the one table, P5) turns each
class into a gRPC status, etcd's byte-exact message and an HTTP status for the gateway. Keeping the
strings out of this module means there is exactly one place to get them right.

A class may be raised with a free-form detail (``MemberNotFound(f"{id:x} was removed")``) for logs;
the detail never reaches a client.

They live apart from `node.membership` because most of them (timeouts, no leader, stopped) have
nothing to do with membership, and `node.urls` needs `InvalidPeerURLs` without importing the
membership rules that import it.
"""

from __future__ import annotations

__all__ = [
    "AuthNotEnabled",
    "BadLeaderTransferee",
    "ContextCanceled",
    "ContextDeadlineExceeded",
    "EmptyKey",
    "EtcdError",
    "FutureRevision",
    "InvalidPeerURLs",
    "LeaderChanged",
    "LeaderTransferTimeout",
    "LearnerNotReady",
    "MemberExists",
    "MemberNotFound",
    "MemberNotLearner",
    "NoLeader",
    "NotEnoughStarted",
    "NotLeader",
    "NotSupportedForLearner",
    "PeerURLExists",
    "RequestCancelled",
    "RequestTimeout",
    "RequestTooLarge",
    "Stopped",
    "TimeoutDueToConnectionLost",
    "TimeoutDueToLeaderFail",
    "TimeoutWaitAppliedIndex",
    "TooManyLearners",
    "Unhealthy",
]


class EtcdError(Exception):
    """Base of every error that is answered to a client with an etcd status and message."""


# ---- Membership (apply time, or pre-raft on the leader for promote) ----------------------------


class MemberNotFound(EtcdError):
    """ErrGRPCMemberNotFound: the ID is unknown, 0, or was removed (removed IDs never come back)."""


class MemberExists(EtcdError):
    """ErrGRPCMemberExist: an add names an ID that is already a member (same-second re-add)."""


class PeerURLExists(EtcdError):
    """ErrGRPCPeerURLExist: a new peer URL equals a URL of another member."""


class TooManyLearners(EtcdError):
    """ErrGRPCTooManyLearners: the learner add would exceed max learners."""


class MemberNotLearner(EtcdError):
    """ErrGRPCMemberNotLearner: promote of a member that is already a voter."""


class LearnerNotReady(EtcdError):
    """ErrGRPCLearnerNotReady: the learner's Match is below 90 % of the leader's."""


# ---- Strict reconfiguration checks and request validation (pre-raft) ---------------------------


class NotEnoughStarted(EtcdError):
    """ErrGRPCMemberNotEnoughStarted: the change would leave too few started voters.

    Sent as UNKNOWN on the wire (spec §8.2), as etcd does."""


class Unhealthy(EtcdError):
    """ErrGRPCUnhealthy: too few voters connected for the change to keep an active quorum."""


class InvalidPeerURLs(EtcdError):
    """ErrGRPCMemberBadURLs: the peer URL list is empty or an entry fails spec §3.2."""


class RequestTooLarge(EtcdError):
    """ErrGRPCRequestTooLarge: a request over the size cap."""


# ---- KV.Range over raftnode's empty key space (served for `etcdctl endpoint health`) ----------


class EmptyKey(EtcdError):
    """ErrGRPCEmptyKey: a Range without a key (etcd's request check, before any read)."""


class FutureRevision(EtcdError):
    """ErrGRPCFutureRev: a Range at a revision above the current one (always 1 here)."""


# ---- Gates, leadership ----------------------------------------------------------------------


class NotSupportedForLearner(EtcdError):
    """ErrGRPCNotSupportedForLearner: this node is a learner and serves only Status."""


class NoLeader(EtcdError):
    """ErrGRPCNoLeader: no leader is known (``hasleader`` gate, promote forwarding)."""


class NotLeader(EtcdError):
    """ErrGRPCNotLeader: MoveLeader sent to a node that does not lead.

    Not `raft.NotLeader`: that one is the core's refusal, which the driver translates."""


class BadLeaderTransferee(EtcdError):
    """ErrGRPCBadLeaderTransferee: the MoveLeader target is not a voter of the cluster."""


class LeaderChanged(EtcdError):
    """ErrGRPCLeaderChanged: the leader changed during a linearizable read."""


class AuthNotEnabled(EtcdError):
    """ErrGRPCAuthNotEnabled: raftnode has no auth; Authenticate always answers this."""


# ---- Waiting: our own bounds, the node stopping, the caller giving up --------------------------


class RequestTimeout(EtcdError):
    """ErrGRPCTimeout: ReqTimeout passed with no better explanation."""


class TimeoutDueToLeaderFail(EtcdError):
    """ErrGRPCTimeoutDueToLeaderFail: ReqTimeout passed; the leader was lost when it started."""


class TimeoutDueToConnectionLost(EtcdError):
    """ErrGRPCTimeoutDueToConnectionLost: ReqTimeout passed; leader or quorum contact was lost."""


class TimeoutWaitAppliedIndex(EtcdError):
    """ErrGRPCTimeoutWaitAppliedIndex: the leader could not apply up to its commit within 1 s."""


class Stopped(EtcdError):
    """ErrGRPCStopped: the node stopped while the request was in flight."""


class LeaderTransferTimeout(EtcdError):
    """etcd's unmapped ErrTimeoutLeaderTransfer (UNKNOWN on the wire)."""


class RequestCancelled(EtcdError):
    """etcd's unmapped ErrCanceled (UNKNOWN on the wire): promote forwarding was cancelled."""


class ContextDeadlineExceeded(EtcdError):
    """The caller's own deadline passed while its request waited (spec §8.3)."""


class ContextCanceled(EtcdError):
    """The caller cancelled while its request waited (spec §8.3)."""
