"""THE error table (P5): each domain error -> gRPC status, etcd's exact message, HTTP status.

Clients (clientv3, and so etcdctl) recognise errors by their exact message text, so the strings
here are byte-exact copies of spec §8.1 and live nowhere else. Handlers and the gateway never hold
error strings: they raise domain errors (`node.domain_errors`) and turn whatever escapes into a
reply with `to_grpc_error` (gRPC) or `describe` (the gateway's status, code and message).

Special cases, as the spec wants them:
- NotEnoughStarted is sent as UNKNOWN (code 2) and so 500 in the gateway (§8.2);
- etcd's two unmapped errors (leader transfer timeout, request cancelled) are UNKNOWN too;
- the caller's own deadline or cancellation is DEADLINE_EXCEEDED ``context deadline exceeded`` /
  CANCELLED ``context canceled`` (§8.3);
- anything unexpected is UNKNOWN with a short fixed text and a logged traceback: Python exception
  text never reaches a client (§8.1). That includes `raft`'s own errors, which the driver is
  expected to translate before they get here.

The HTTP column is derived from the gRPC code by the gateway's mapping (§9.4), so it cannot
disagree with the code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from grpclib.const import Status
from grpclib.exceptions import GRPCError

from node.domain_errors import (
    AuthNotEnabled,
    BadLeaderTransferee,
    ContextCanceled,
    ContextDeadlineExceeded,
    EmptyKey,
    EtcdError,
    FutureRevision,
    InvalidPeerURLs,
    LeaderChanged,
    LeaderTransferTimeout,
    LearnerNotReady,
    MemberExists,
    MemberNotFound,
    MemberNotLearner,
    NoLeader,
    NotEnoughStarted,
    NotLeader,
    NotSupportedForLearner,
    PeerURLExists,
    RequestCancelled,
    RequestTimeout,
    RequestTooLarge,
    Stopped,
    TimeoutDueToConnectionLost,
    TimeoutDueToLeaderFail,
    TimeoutWaitAppliedIndex,
    TooManyLearners,
    Unhealthy,
)

__all__ = [
    "ERRORS",
    "HTTP_STATUS_BY_CODE",
    "INTERNAL_ERROR",
    "ErrorRow",
    "describe",
    "http_status_for",
    "to_grpc_error",
]

log = logging.getLogger(__name__)

#: grpc-gateway's ``HTTPStatusFromCode`` as upstream etcd ships it (spec §9.4): FAILED_PRECONDITION
#: is 400 (Debian's 3.4.23 answers 412; §12.2 chooses upstream).
HTTP_STATUS_BY_CODE: Mapping[Status, int] = MappingProxyType(
    {
        Status.OK: 200,
        Status.CANCELLED: 408,
        Status.UNKNOWN: 500,
        Status.INVALID_ARGUMENT: 400,
        Status.DEADLINE_EXCEEDED: 504,
        Status.NOT_FOUND: 404,
        Status.ALREADY_EXISTS: 409,
        Status.PERMISSION_DENIED: 403,
        Status.RESOURCE_EXHAUSTED: 429,
        Status.FAILED_PRECONDITION: 400,
        Status.ABORTED: 409,
        Status.OUT_OF_RANGE: 400,
        Status.UNIMPLEMENTED: 501,
        Status.INTERNAL: 500,
        Status.UNAVAILABLE: 503,
        Status.DATA_LOSS: 500,
        Status.UNAUTHENTICATED: 401,
    }
)


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """How one error is answered: gRPC status and message; the gateway's HTTP status."""

    status: Status
    message: str

    @property
    def http_status(self) -> int:
        return HTTP_STATUS_BY_CODE[self.status]

    @property
    def code(self) -> int:
        """The numeric gRPC code, as the gateway's JSON body carries it (``"code": 14``)."""
        return int(self.status.value)


def _row(status: Status, message: str) -> ErrorRow:
    return ErrorRow(status, message)


_S = Status

#: Domain error class -> how it is answered. Messages are byte-exact copies of spec §8.1.
ERRORS: Mapping[type[EtcdError], ErrorRow] = MappingProxyType(
    {
        InvalidPeerURLs: _row(_S.INVALID_ARGUMENT, "etcdserver: given member URLs are invalid"),
        MemberNotFound: _row(_S.NOT_FOUND, "etcdserver: member not found"),
        MemberExists: _row(_S.FAILED_PRECONDITION, "etcdserver: member ID already exist"),
        PeerURLExists: _row(_S.FAILED_PRECONDITION, "etcdserver: Peer URLs already exists"),
        TooManyLearners: _row(
            _S.FAILED_PRECONDITION, "etcdserver: too many learner members in cluster"
        ),
        MemberNotLearner: _row(
            _S.FAILED_PRECONDITION, "etcdserver: can only promote a learner member"
        ),
        LearnerNotReady: _row(
            _S.FAILED_PRECONDITION,
            "etcdserver: can only promote a learner member which is in sync with leader",
        ),
        # §8.2: etcd turns this one into a client-side error value with no gRPC status.
        NotEnoughStarted: _row(
            _S.UNKNOWN, "etcdserver: re-configuration failed due to not enough started members"
        ),
        Unhealthy: _row(_S.UNAVAILABLE, "etcdserver: unhealthy cluster"),
        NotSupportedForLearner: _row(_S.UNAVAILABLE, "etcdserver: rpc not supported for learner"),
        NoLeader: _row(_S.UNAVAILABLE, "etcdserver: no leader"),
        NotLeader: _row(_S.FAILED_PRECONDITION, "etcdserver: not leader"),
        BadLeaderTransferee: _row(_S.FAILED_PRECONDITION, "etcdserver: bad leader transferee"),
        LeaderChanged: _row(_S.UNAVAILABLE, "etcdserver: leader changed"),
        RequestTimeout: _row(_S.UNAVAILABLE, "etcdserver: request timed out"),
        TimeoutDueToLeaderFail: _row(
            _S.UNAVAILABLE,
            "etcdserver: request timed out, possibly due to previous leader failure",
        ),
        TimeoutDueToConnectionLost: _row(
            _S.UNAVAILABLE, "etcdserver: request timed out, possibly due to connection lost"
        ),
        TimeoutWaitAppliedIndex: _row(
            _S.UNAVAILABLE,
            "etcdserver: request timed out, waiting for the applied index took too long",
        ),
        Stopped: _row(_S.UNAVAILABLE, "etcdserver: server stopped"),
        LeaderTransferTimeout: _row(
            _S.UNKNOWN, "etcdserver: request timed out, leader transfer took too long"
        ),
        RequestCancelled: _row(_S.UNKNOWN, "etcdserver: request cancelled"),
        AuthNotEnabled: _row(_S.FAILED_PRECONDITION, "etcdserver: authentication is not enabled"),
        RequestTooLarge: _row(_S.INVALID_ARGUMENT, "etcdserver: request is too large"),
        # KV.Range's own checks (etcd's rpctypes; beyond the spec's §8.1, which covers Cluster).
        EmptyKey: _row(_S.INVALID_ARGUMENT, "etcdserver: key is not provided"),
        FutureRevision: _row(
            _S.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"
        ),
        ContextDeadlineExceeded: _row(_S.DEADLINE_EXCEEDED, "context deadline exceeded"),
        ContextCanceled: _row(_S.CANCELLED, "context canceled"),
    }
)

#: The answer to anything that is not a domain error: a fault inside raftnode.
INTERNAL_ERROR = ErrorRow(Status.UNKNOWN, "raftnode: internal error")


def describe(exc: BaseException) -> ErrorRow:
    """How `exc` is answered. An unexpected exception is logged with its traceback here.

    A GRPCError (e.g. one grpclib raised) is answered as it is. A domain error subclass that has
    no row of its own takes its nearest mapped base class's row.
    """
    if isinstance(exc, GRPCError):
        return ErrorRow(exc.status, exc.message or "")
    for cls in type(exc).__mro__:
        row = ERRORS.get(cls)
        if row is not None:
            return row
    log.error("unexpected error, answered as %s", INTERNAL_ERROR.status.name, exc_info=exc)
    return INTERNAL_ERROR


def to_grpc_error(exc: BaseException) -> GRPCError:
    """The GRPCError a handler raises for `exc` (call once per failure: it may log)."""
    row = describe(exc)
    return GRPCError(row.status, row.message)


def http_status_for(error: BaseException | Status) -> int:
    """The gateway's HTTP status for an exception (via `describe`) or a gRPC status."""
    status = error if isinstance(error, Status) else describe(error).status
    return HTTP_STATUS_BY_CODE[status]
