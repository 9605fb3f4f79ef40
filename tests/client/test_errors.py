"""The client's error table against the server's (layer a): every message raftnode can send maps
to its own typed error, keeps code and text, and says whether the change certainly failed."""

from __future__ import annotations

import pytest
from grpclib.const import Status
from grpclib.exceptions import StreamTerminatedError

from node import client
from node.client.errors import BY_MESSAGE, ClientError, from_status
from node.client.rpc import refused_stream
from node.domain_errors import EtcdError
from node.errors import ERRORS

#: Server errors -> (client class, definitely_failed). Rejections before proposing or at apply
#: leave the membership untouched; timeouts and a stopping server leave the outcome unknown.
EXPECTED: dict[str, tuple[type[ClientError], bool]] = {
    "InvalidPeerURLs": (client.BadPeerURLs, True),
    "MemberNotFound": (client.MemberNotFound, True),
    "MemberExists": (client.MemberExists, True),
    "PeerURLExists": (client.PeerURLExists, True),
    "TooManyLearners": (client.TooManyLearners, True),
    "MemberNotLearner": (client.NotLearner, True),
    "LearnerNotReady": (client.LearnerNotReady, True),
    "NotEnoughStarted": (client.NotEnoughStarted, True),
    "Unhealthy": (client.Unhealthy, True),
    "NotSupportedForLearner": (client.NotSupportedForLearner, True),
    "NoLeader": (client.NoLeader, True),
    "NotLeader": (client.NotLeader, True),
    "BadLeaderTransferee": (client.BadLeaderTransferee, True),
    "LeaderChanged": (client.LeaderChanged, True),
    "RequestTimeout": (client.Timeout, False),
    "TimeoutDueToLeaderFail": (client.Timeout, False),
    "TimeoutDueToConnectionLost": (client.Timeout, False),
    "TimeoutWaitAppliedIndex": (client.Timeout, True),
    "Stopped": (client.Stopped, False),
    "LeaderTransferTimeout": (client.Timeout, False),
    "RequestCancelled": (client.Cancelled, False),
    "AuthNotEnabled": (client.FailedPrecondition, True),
    "RequestTooLarge": (client.InvalidArgument, True),
    "EmptyKey": (client.InvalidArgument, True),
    "FutureRevision": (ClientError, False),
    "ContextDeadlineExceeded": (client.Timeout, False),
    "ContextCanceled": (client.Cancelled, False),
}


def test_every_server_error_is_covered() -> None:
    assert {cls.__name__ for cls in ERRORS} == set(EXPECTED)


@pytest.mark.parametrize("server_error", list(ERRORS), ids=lambda c: c.__name__)
def test_server_error_maps_to_its_client_error(server_error: type[EtcdError]) -> None:
    row = ERRORS[server_error]
    expected_class, definite = EXPECTED[server_error.__name__]
    error = from_status(row.status, row.message, "127.0.0.1:2379")
    assert type(error) is expected_class or (
        expected_class is client.Timeout and isinstance(error, client.Timeout)
    )
    assert (error.code, error.message, str(error)) == (row.status, row.message, row.message)
    assert error.definitely_failed is definite
    assert error.endpoint == "127.0.0.1:2379"


def test_the_message_decides_not_the_code() -> None:
    # etcd sends "not enough started members" as UNKNOWN (spec §8.2); clientv3 goes by the text.
    text = "etcdserver: re-configuration failed due to not enough started members"
    assert type(from_status(Status.UNKNOWN, text)) is client.NotEnoughStarted
    assert text in BY_MESSAGE


@pytest.mark.parametrize(
    ("code", "expected", "definite"),
    [
        (Status.UNAVAILABLE, client.Unavailable, False),
        (Status.DEADLINE_EXCEEDED, client.Timeout, False),
        (Status.CANCELLED, client.Cancelled, False),
        (Status.FAILED_PRECONDITION, client.FailedPrecondition, True),
        (Status.INVALID_ARGUMENT, client.InvalidArgument, True),
        (Status.UNIMPLEMENTED, client.Unimplemented, True),
        (Status.UNKNOWN, ClientError, False),
        (Status.INTERNAL, ClientError, False),
    ],
)
def test_unknown_messages_fall_back_on_the_code(
    code: Status, expected: type[ClientError], definite: bool
) -> None:
    error = from_status(code, "something new")
    assert type(error) is expected
    assert error.definitely_failed is definite
    assert error.message == "something new"


def test_an_instance_may_override_definitely_failed() -> None:
    never_sent = client.Unavailable(None, "refused", definitely_failed=True)
    assert never_sent.definitely_failed and never_sent.code is None
    assert not client.Unavailable(None, "reset").definitely_failed
    assert client.MemberNotLearner is client.NotLearner
    assert repr(never_sent) == "Unavailable(code=None, message='refused')"


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (StreamTerminatedError("Stream reset by remote party, error_code: 7"), True),
        (StreamTerminatedError("reset, error_code: ErrorCodes.REFUSED_STREAM"), True),
        (StreamTerminatedError("Stream reset by remote party, error_code: 2"), False),
        (StreamTerminatedError("Connection lost"), False),
        (ConnectionResetError("error_code: 7"), False),
    ],
)  # fmt: skip
def test_only_refused_stream_counts_as_unprocessed(error: Exception, refused: bool) -> None:
    assert refused_stream(error) is refused
