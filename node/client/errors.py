"""Typed client errors, chosen by etcd's exact message text (spec §8.1), as clientv3 does.

etcd's clients recognise a server error by its message, not its gRPC code (``not enough started
members`` even arrives as UNKNOWN, spec §8.2), so `from_status` looks the message up first and
falls back to the code only for texts it does not know. Every error keeps the gRPC ``code`` and
the server's exact ``message``, so callers can print what etcdctl prints (``Error: <message>``).

``definitely_failed`` answers the question a caller asks after a failed *mutation*: could the
change still have happened? It is True only when etcd's answer proves nothing was applied
(rejected before proposing, or rejected while applying, which leaves the membership untouched),
and False when the outcome is unknown: timeouts, a stopped server, a broken connection after the
request was sent, or any message this table does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from grpclib.const import Status

__all__ = [
    "BadLeaderTransferee",
    "BadPeerURLs",
    "Cancelled",
    "ClientError",
    "FailedPrecondition",
    "InvalidArgument",
    "LeaderChanged",
    "LearnerNotReady",
    "MemberExists",
    "MemberNotFound",
    "MemberNotLearner",
    "NoLeader",
    "NotEnoughStarted",
    "NotLeader",
    "NotLearner",
    "NotSupportedForLearner",
    "PeerURLExists",
    "Stopped",
    "Timeout",
    "TooManyLearners",
    "Unavailable",
    "Unhealthy",
    "Unimplemented",
    "from_status",
]


class ClientError(Exception):
    """A failed call: ``code`` is the gRPC status (None when no status was received, e.g. the
    connection failed) and ``message`` the exact text, etcd's own when the server answered."""

    #: Whether the request certainly had no effect (see the module docstring).
    definitely_failed: bool = False

    def __init__(
        self,
        code: Status | None,
        message: str,
        *,
        endpoint: str | None = None,
        definitely_failed: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        #: The endpoint that answered (or failed), when one is known.
        self.endpoint = endpoint
        if definitely_failed is not None:
            self.definitely_failed = definitely_failed

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        code = self.code.name if self.code is not None else None
        return f"{type(self).__name__}(code={code}, message={self.message!r})"


# ---- Rejections that prove nothing changed -----------------------------------------------------


class _Rejected(ClientError):
    definitely_failed = True


class InvalidArgument(_Rejected):
    """INVALID_ARGUMENT: the request itself was refused."""


class BadPeerURLs(InvalidArgument):
    """``etcdserver: given member URLs are invalid``."""


class FailedPrecondition(_Rejected):
    """FAILED_PRECONDITION with a message this table does not know."""


class MemberNotFound(_Rejected):
    """``etcdserver: member not found`` (unknown, removed, or ID 0)."""


class MemberExists(FailedPrecondition):
    """``etcdserver: member ID already exist`` (a same-second re-add, spec §3.3)."""


class PeerURLExists(FailedPrecondition):
    """``etcdserver: Peer URLs already exists``."""


class TooManyLearners(FailedPrecondition):
    """``etcdserver: too many learner members in cluster``."""


class NotLearner(FailedPrecondition):
    """``etcdserver: can only promote a learner member`` (promote of a voter)."""


MemberNotLearner = NotLearner


class LearnerNotReady(FailedPrecondition):
    """``etcdserver: can only promote a learner member which is in sync with leader``."""


class NotLeader(FailedPrecondition):
    """``etcdserver: not leader`` (MoveLeader sent to a follower)."""


class BadLeaderTransferee(FailedPrecondition):
    """``etcdserver: bad leader transferee``."""


class NotEnoughStarted(_Rejected):
    """``etcdserver: re-configuration failed due to not enough started members`` (UNKNOWN)."""


class Unimplemented(_Rejected):
    """UNIMPLEMENTED: the method is not served."""


# ---- UNAVAILABLE: the endpoint could not serve the call -----------------------------------------


class Unavailable(ClientError):
    """UNAVAILABLE, or no endpoint could be reached. Ambiguous unless the request was never sent
    (then the instance carries ``definitely_failed=True``)."""


class Unhealthy(Unavailable):
    """``etcdserver: unhealthy cluster`` (the strict reconfiguration check)."""

    definitely_failed = True


class NotSupportedForLearner(Unavailable):
    """``etcdserver: rpc not supported for learner``: the endpoint is a learner."""

    definitely_failed = True


class NoLeader(Unavailable):
    """``etcdserver: no leader``; also raised client-side when no endpoint leads."""

    definitely_failed = True


class LeaderChanged(Unavailable):
    """``etcdserver: leader changed`` (a linearizable read was interrupted; nothing changed)."""

    definitely_failed = True


class Stopped(Unavailable):
    """``etcdserver: server stopped`` while the request was in flight."""


# ---- Deadlines -----------------------------------------------------------------------------------


class Timeout(ClientError):
    """The call's deadline passed (client or server side), or etcd's own ``request timed out``
    family: the request may still be applied."""


class _TimeoutBeforeProposing(Timeout):
    """``waiting for the applied index took too long``: promote gave up before proposing."""

    definitely_failed = True


class Cancelled(ClientError):
    """CANCELLED, or etcd's ``request cancelled``: the outcome is unknown."""


#: etcd's exact message -> the error raised for it (spec §8.1).
BY_MESSAGE: Mapping[str, type[ClientError]] = MappingProxyType(
    {
        "etcdserver: given member URLs are invalid": BadPeerURLs,
        "etcdserver: member not found": MemberNotFound,
        "etcdserver: member ID already exist": MemberExists,
        "etcdserver: Peer URLs already exists": PeerURLExists,
        "etcdserver: too many learner members in cluster": TooManyLearners,
        "etcdserver: can only promote a learner member": NotLearner,
        "etcdserver: can only promote a learner member which is in sync with leader": (
            LearnerNotReady
        ),
        "etcdserver: re-configuration failed due to not enough started members": (NotEnoughStarted),
        "etcdserver: unhealthy cluster": Unhealthy,
        "etcdserver: rpc not supported for learner": NotSupportedForLearner,
        "etcdserver: no leader": NoLeader,
        "etcdserver: not leader": NotLeader,
        "etcdserver: bad leader transferee": BadLeaderTransferee,
        "etcdserver: leader changed": LeaderChanged,
        "etcdserver: request timed out": Timeout,
        "etcdserver: request timed out, possibly due to previous leader failure": Timeout,
        "etcdserver: request timed out, possibly due to connection lost": Timeout,
        "etcdserver: request timed out, waiting for the applied index took too long": (
            _TimeoutBeforeProposing
        ),
        "etcdserver: request timed out, leader transfer took too long": Timeout,
        "etcdserver: server stopped": Stopped,
        "etcdserver: request cancelled": Cancelled,
        "etcdserver: authentication is not enabled": FailedPrecondition,
        "etcdserver: request is too large": InvalidArgument,
        "context deadline exceeded": Timeout,
        "context canceled": Cancelled,
    }
)

#: The fallback for a message not in `BY_MESSAGE`, by gRPC code.
BY_CODE: Mapping[Status, type[ClientError]] = MappingProxyType(
    {
        Status.INVALID_ARGUMENT: InvalidArgument,
        Status.NOT_FOUND: MemberNotFound,
        Status.FAILED_PRECONDITION: FailedPrecondition,
        Status.UNAVAILABLE: Unavailable,
        Status.DEADLINE_EXCEEDED: Timeout,
        Status.CANCELLED: Cancelled,
        Status.UNIMPLEMENTED: Unimplemented,
    }
)


def from_status(code: Status, message: str | None, endpoint: str | None = None) -> ClientError:
    """The typed error for a gRPC status received from ``endpoint``."""
    text = message or ""
    cls = BY_MESSAGE.get(text) or BY_CODE.get(code, ClientError)
    return cls(code, text, endpoint=endpoint)
