"""node.errors: one row per domain error, byte-exact against spec §8.1, HTTP per §9.4."""

from __future__ import annotations

import inspect
import logging

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError

import node.domain_errors as domain
from node.errors import (
    ERRORS,
    HTTP_STATUS_BY_CODE,
    INTERNAL_ERROR,
    describe,
    http_status_for,
    to_grpc_error,
)
from raft import ConfChangeInProgress

# Copied from spec §8.1 (code, exact message); the class is ours. Do not "fix" the spelling:
# clients match these strings byte for byte ("already exist", "Peer URLs", "cancelled"/"canceled").
SPEC_8_1 = [
    (domain.InvalidPeerURLs, 3, "etcdserver: given member URLs are invalid"),
    (domain.MemberNotFound, 5, "etcdserver: member not found"),
    (domain.MemberExists, 9, "etcdserver: member ID already exist"),
    (domain.PeerURLExists, 9, "etcdserver: Peer URLs already exists"),
    (domain.TooManyLearners, 9, "etcdserver: too many learner members in cluster"),
    (domain.MemberNotLearner, 9, "etcdserver: can only promote a learner member"),
    (
        domain.LearnerNotReady,
        9,
        "etcdserver: can only promote a learner member which is in sync with leader",
    ),
    (
        domain.NotEnoughStarted,
        2,
        "etcdserver: re-configuration failed due to not enough started members",
    ),
    (domain.Unhealthy, 14, "etcdserver: unhealthy cluster"),
    (domain.NotSupportedForLearner, 14, "etcdserver: rpc not supported for learner"),
    (domain.NoLeader, 14, "etcdserver: no leader"),
    (domain.NotLeader, 9, "etcdserver: not leader"),
    (domain.BadLeaderTransferee, 9, "etcdserver: bad leader transferee"),
    (domain.LeaderChanged, 14, "etcdserver: leader changed"),
    (domain.RequestTimeout, 14, "etcdserver: request timed out"),
    (
        domain.TimeoutDueToLeaderFail,
        14,
        "etcdserver: request timed out, possibly due to previous leader failure",
    ),
    (
        domain.TimeoutDueToConnectionLost,
        14,
        "etcdserver: request timed out, possibly due to connection lost",
    ),
    (
        domain.TimeoutWaitAppliedIndex,
        14,
        "etcdserver: request timed out, waiting for the applied index took too long",
    ),
    (domain.Stopped, 14, "etcdserver: server stopped"),
    (
        domain.LeaderTransferTimeout,
        2,
        "etcdserver: request timed out, leader transfer took too long",
    ),
    (domain.RequestCancelled, 2, "etcdserver: request cancelled"),
    (domain.AuthNotEnabled, 9, "etcdserver: authentication is not enabled"),
    (domain.RequestTooLarge, 3, "etcdserver: request is too large"),
    (domain.ContextDeadlineExceeded, 4, "context deadline exceeded"),
    (domain.ContextCanceled, 1, "context canceled"),
    # Beyond §8.1: KV.Range's own request checks, as etcd's rpctypes spell them.
    (domain.EmptyKey, 3, "etcdserver: key is not provided"),
    (domain.FutureRevision, 11, "etcdserver: mvcc: required revision is a future revision"),
]

# Spec §9.4: gRPC code -> HTTP status of the gateway.
SPEC_9_4 = {
    3: 400,
    9: 400,
    11: 400,
    5: 404,
    2: 500,
    13: 500,
    15: 500,
    14: 503,
    4: 504,
    1: 408,
    7: 403,
    16: 401,
    8: 429,
    12: 501,
}


def _domain_classes() -> set[type[domain.EtcdError]]:
    return {
        cls
        for _, cls in inspect.getmembers(domain, inspect.isclass)
        if issubclass(cls, domain.EtcdError) and cls is not domain.EtcdError
    }


def test_every_domain_error_has_exactly_one_row():
    assert set(ERRORS) == _domain_classes()
    assert {c.__name__ for c in _domain_classes()} == set(domain.__all__) - {"EtcdError"}


def test_the_spec_table_covers_every_row_once():
    classes = [cls for cls, _, _ in SPEC_8_1]
    assert len(classes) == len(set(classes))
    assert set(classes) == set(ERRORS)


@pytest.mark.parametrize(
    ("cls", "code", "message"), SPEC_8_1, ids=[c.__name__ for c, _, _ in SPEC_8_1]
)
def test_row_matches_the_spec(cls, code, message):
    row = ERRORS[cls]
    assert row.status.value == code and row.code == code
    assert row.message == message
    assert row.http_status == SPEC_9_4[code]


@pytest.mark.parametrize(
    ("cls", "code", "message"), SPEC_8_1, ids=[c.__name__ for c, _, _ in SPEC_8_1]
)
def test_to_grpc_error(cls, code, message):
    err = to_grpc_error(cls("a detail that never reaches the client"))
    assert isinstance(err, GRPCError)
    assert (err.status.value, err.message) == (code, message)


def test_every_message_is_distinct():
    messages = [row.message for row in ERRORS.values()]
    assert len(messages) == len(set(messages))


@pytest.mark.parametrize(("code", "http"), sorted(SPEC_9_4.items()))
def test_http_status_by_code(code, http):
    assert HTTP_STATUS_BY_CODE[Status(code)] == http
    assert http_status_for(Status(code)) == http


def test_every_grpc_status_has_an_http_status():
    assert set(HTTP_STATUS_BY_CODE) == set(Status)


# ---- The special cases ----------------------------------------------------------------------


def test_not_enough_started_is_unknown_and_500():
    row = describe(domain.NotEnoughStarted())
    assert row.status is Status.UNKNOWN
    assert http_status_for(domain.NotEnoughStarted()) == 500


def test_failed_precondition_is_400_not_debian_412():
    assert http_status_for(domain.PeerURLExists()) == 400


def test_learner_gate_is_unavailable_and_503():
    assert describe(domain.NotSupportedForLearner()).status is Status.UNAVAILABLE
    assert http_status_for(domain.NotSupportedForLearner()) == 503


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError("secret internal detail"),
        KeyError("member"),
        ConfChangeInProgress("raft's own error, untranslated"),
        domain.EtcdError("the base class has no row"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_unexpected_errors_are_unknown_with_a_fixed_text(exc, caplog):
    with caplog.at_level(logging.ERROR, logger="node.errors"):
        err = to_grpc_error(exc)
    assert err.status is Status.UNKNOWN
    assert err.message == INTERNAL_ERROR.message == "raftnode: internal error"
    assert str(exc) not in err.message
    assert http_status_for(Status.UNKNOWN) == 500
    assert caplog.records and caplog.records[0].exc_info is not None  # traceback logged


def test_a_grpc_error_is_answered_as_it_is():
    row = describe(GRPCError(Status.UNIMPLEMENTED, "Method not found"))
    assert (row.status, row.message, row.http_status) == (
        Status.UNIMPLEMENTED,
        "Method not found",
        501,
    )
    assert describe(GRPCError(Status.UNIMPLEMENTED)).message == ""


def test_a_subclass_takes_its_base_class_row():
    class StoppedWhileApplying(domain.Stopped):
        pass

    assert describe(StoppedWhileApplying()) == ERRORS[domain.Stopped]
