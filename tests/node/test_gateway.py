"""The JSON gateway in memory (layer e): the codec as tables, the routes through
`Gateway.respond`, and HTTP/1.1 through a connection driven over a fake transport.

Bodies and status codes are compared with transcripts 03 and 15 where the spec says etcd is
right; where raftnode answers differently on purpose (§12.2: FAILED_PRECONDITION is 400, not
412; D4b: a bounded wait) the test says so. No test waits on the clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import betterproto
import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.testing import ChannelFor

from node.domain_errors import (
    EtcdError,
    InvalidPeerURLs,
    LearnerNotReady,
    MemberNotFound,
    MemberNotLearner,
    NotEnoughStarted,
    PeerURLExists,
    TooManyLearners,
    Unhealthy,
)
from node.errors import ERRORS, HTTP_STATUS_BY_CODE, INTERNAL_ERROR, to_grpc_error
from node.gateway import BadRequest, Gateway, decode_request, dump_json, encode_response
from node.gateway.codec import REQUEST_FIELDS, RESPONSE_ENCODERS
from node.gateway.http11 import Http11Server, Limits, Reply, plausible_request_start
from node.services import etcd_services
from node.services.maintenance import VERSION
from proto import etcdserverpb as pb
from tests.node.gateway_wire import (
    CLUSTER_ID,
    INFRA1,
    INFRA3,
    LEARNER,
    T03_MEMBER_LIST,
    T03_STATUS,
    T15_LEARNER_ADD,
    Blocker,
    FakeCluster,
    FakeTransport,
    Response,
    Script,
    Wire,
    expect_request,
    founding_members,
    header,
    learner,
    make_gateway,
    request_bytes,
    transcript_status,
)

# ---- The codec: requests ------------------------------------------------------------------------

U64_MAX = 2**64 - 1


@pytest.mark.parametrize(
    ("message_type", "body", "expected"),
    [
        # An empty body, whitespace and null all mean {} (spec §9.2).
        (pb.MemberListRequest, b"", {"linearizable": False}),
        (pb.MemberListRequest, b" \r\n\t", {"linearizable": False}),
        (pb.MemberListRequest, b"null", {"linearizable": False}),
        (pb.MemberListRequest, b"{}", {"linearizable": False}),
        (pb.MemberListRequest, b'{"linearizable":true}', {"linearizable": True}),
        (pb.MemberListRequest, b'{"linearizable":null}', {"linearizable": False}),
        # IDs as a string or a number (transcript 15), up to 2^64-1.
        (pb.MemberPromoteRequest, b'{"ID":"10370959452141089457"}', {"id": LEARNER}),
        (pb.MemberPromoteRequest, b'{"ID":10370959452141089457}', {"id": LEARNER}),
        (pb.MemberRemoveRequest, b'{"ID":"4660"}', {"id": 4660}),
        (pb.MemberRemoveRequest, b'{"ID":4660}', {"id": 4660}),
        (pb.MemberRemoveRequest, b'{"ID":"0"}', {"id": 0}),
        (pb.MemberRemoveRequest, f'{{"ID":"{U64_MAX}"}}'.encode(), {"id": U64_MAX}),
        (pb.MemberRemoveRequest, f'{{"ID":{U64_MAX}}}'.encode(), {"id": U64_MAX}),
        (pb.MemberRemoveRequest, b'{"ID":null}', {"id": 0}),
        # Unknown keys are ignored: peer_urls is not peerURLs (transcript 15).
        (
            pb.MemberAddRequest,
            b'{"peer_urls":["http://127.0.0.1:52380"],"id":5}',
            {"peer_ur_ls": [], "is_learner": False},
        ),
        (
            pb.MemberAddRequest,
            b'{"peerURLs":["http://127.0.0.1:42380"],"isLearner":true}',
            {"peer_ur_ls": ["http://127.0.0.1:42380"], "is_learner": True},
        ),
        (pb.MemberAddRequest, b'{"peerURLs":[]}', {"peer_ur_ls": []}),
        (pb.MemberAddRequest, b'{"peerURLs":null}', {"peer_ur_ls": []}),
        (
            pb.MemberUpdateRequest,
            b'{"ID":"4660","peerURLs":["http://127.0.0.1:62380"]}',
            {"id": 4660, "peer_ur_ls": ["http://127.0.0.1:62380"]},
        ),
        (pb.MoveLeaderRequest, b'{"targetID":"18249187646912138824"}', {"target_id": INFRA3}),
        (pb.StatusRequest, b'{"anything":[1,{"x":null}]}', {}),
        (
            pb.AuthenticateRequest,
            b'{"name":"root","password":"pw"}',
            {"name": "root", "password": "pw"},
        ),
        # Duplicate keys: the last one wins, as in Go.
        (pb.MemberRemoveRequest, b'{"ID":"1","ID":"2"}', {"id": 2}),
        # Go turns a lone surrogate escape into U+FFFD.
        (pb.AuthenticateRequest, b'{"name":"a\\ud800b"}', {"name": "a\ufffdb"}),
        (pb.AuthenticateRequest, b'{"name":"\\ud83d\\ude00"}', {"name": "\U0001f600"}),
    ],
)
def test_requests_decode(
    message_type: type[betterproto.Message], body: bytes, expected: dict[str, Any]
) -> None:
    message = decode_request(message_type, body)
    assert isinstance(message, message_type)
    for attr, value in expected.items():
        assert getattr(message, attr) == value


@pytest.mark.parametrize(
    ("message_type", "body"),
    [
        # Transcript 15's refusals.
        (pb.MemberAddRequest, b'{"peerURLs":"http://127.0.0.1:52380"}'),
        (pb.MemberAddRequest, b"not json"),
        (pb.MemberRemoveRequest, b'{"ID":"0x1234"}'),
        (pb.MemberRemoveRequest, b'{"ID":-1}'),
        # Spec §9.2: negatives, hex, >= 2^64, non-integers.
        (pb.MemberRemoveRequest, b'{"ID":"-1"}'),
        (pb.MemberRemoveRequest, b'{"ID":-0}'),
        (pb.MemberRemoveRequest, b'{"ID":"-0"}'),
        (pb.MemberRemoveRequest, f'{{"ID":{2**64}}}'.encode()),
        (pb.MemberRemoveRequest, f'{{"ID":"{2**64}"}}'.encode()),
        (pb.MemberRemoveRequest, b'{"ID":"1" }x'),
        (pb.MemberRemoveRequest, b'{"ID":1.0}'),
        (pb.MemberRemoveRequest, b'{"ID":1e3}'),
        (pb.MemberRemoveRequest, b'{"ID":"1e3"}'),
        (pb.MemberRemoveRequest, b'{"ID":"01"}'),
        (pb.MemberRemoveRequest, b'{"ID":" 1"}'),
        (pb.MemberRemoveRequest, b'{"ID":""}'),
        (pb.MemberRemoveRequest, b'{"ID":"\xd9\xa1"}'),  # an Arabic-Indic digit one
        (pb.MemberRemoveRequest, b'{"ID":true}'),
        (pb.MemberRemoveRequest, b'{"ID":[1]}'),
        (pb.MemberRemoveRequest, b'{"ID":{"value":1}}'),
        (pb.MemberRemoveRequest, b'{"ID":' + b"9" * 5000 + b"}"),
        (pb.MemberRemoveRequest, b'{"ID":NaN}'),
        (pb.MemberRemoveRequest, b'{"ID":Infinity}'),
        # Booleans must be booleans; repeated fields arrays of strings.
        (pb.MemberListRequest, b'{"linearizable":"true"}'),
        (pb.MemberListRequest, b'{"linearizable":1}'),
        (pb.MemberAddRequest, b'{"isLearner":0}'),
        (pb.MemberAddRequest, b'{"peerURLs":[1]}'),
        (pb.MemberAddRequest, b'{"peerURLs":[null]}'),
        (pb.MemberAddRequest, b'{"peerURLs":{"0":"http://a:1"}}'),
        (pb.AuthenticateRequest, b'{"name":1}'),
        # Not one JSON object.
        (pb.MemberListRequest, b"[]"),
        (pb.MemberListRequest, b'"{}"'),
        (pb.MemberListRequest, b"1"),
        (pb.MemberListRequest, b"{}{}"),
        (pb.MemberListRequest, b"{"),
        (pb.MemberListRequest, b"\xef\xbb\xbf{}"),  # a UTF-8 byte order mark
        (pb.MemberListRequest, b'{"x":"\xff"}'),  # not UTF-8
        (pb.MemberListRequest, b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ],
)
def test_malformed_requests_are_refused(
    message_type: type[betterproto.Message], body: bytes
) -> None:
    with pytest.raises(BadRequest):
        decode_request(message_type, body)


def test_every_request_field_names_a_field_of_its_message() -> None:
    for message_type, fields in REQUEST_FIELDS.items():
        names = {f.name for f in dataclasses.fields(message_type)}  # type: ignore[arg-type]
        assert {f.attr for f in fields} <= names, message_type.__name__
        assert len({f.json_name for f in fields}) == len(fields)


# ---- The codec: replies -------------------------------------------------------------------------


def test_member_list_reply_is_transcript_03_byte_for_byte() -> None:
    reply = pb.MemberListResponse(header=header(), members=founding_members())
    assert encode_response(reply) == T03_MEMBER_LIST


def test_status_reply_is_transcript_03_byte_for_byte() -> None:
    assert encode_response(transcript_status()) == T03_STATUS


def test_learner_add_reply_is_transcript_15_byte_for_byte() -> None:
    added = learner()
    reply = pb.MemberAddResponse(
        header=header(), member=added, members=[added, *founding_members()]
    )
    assert encode_response(reply) == T15_LEARNER_ADD


def test_move_leader_reply_without_header_is_an_empty_object() -> None:
    assert encode_response(pb.MoveLeaderResponse()) == b"{}"


def test_zero_values_are_left_out_and_null_never_written() -> None:
    status = pb.StatusResponse(
        header=pb.ResponseHeader(member_id=1), errors=["etcdserver: no leader"]
    )
    document = json.loads(encode_response(status))
    assert document == {"header": {"member_id": "1"}, "errors": ["etcdserver: no leader"]}
    empty_member = pb.MemberListResponse(header=header(), members=[pb.Member(id=5)])
    assert json.loads(encode_response(empty_member))["members"] == [{"ID": "5"}]
    assert b"null" not in encode_response(pb.MemberListResponse(members=[pb.Member()]))
    assert encode_response(pb.MemberListResponse(members=[pb.Member()])) == b'{"members":[{}]}'


def test_status_names_differ_from_the_header_names() -> None:
    reply = pb.StatusResponse(
        header=pb.ResponseHeader(raft_term=3),
        raft_term=3,
        db_size=-1,  # int64: negative values stay decimal strings
        is_learner=True,
    )
    assert encode_response(reply) == (
        b'{"header":{"raft_term":"3"},"dbSize":"-1","raftTerm":"3","isLearner":true}'
    )


def test_strings_are_escaped_as_go_escapes_them() -> None:
    reply = pb.MemberListResponse(members=[pb.Member(name='<a&b> "é" \u2028')])
    assert encode_response(reply) == (
        b'{"members":[{"name":"\\u003ca\\u0026b\\u003e \\"\xc3\xa9\\" \\u2028"}]}'
    )
    assert dump_json({"x": "\ud800"}) == b'{"x":"?"}'  # never a crash on a lone surrogate


def test_every_routed_reply_has_a_name_map_and_subclasses_use_their_base() -> None:
    class CachedList(pb.MemberListResponse):
        pass

    cached = CachedList(header=header(), members=founding_members())
    assert encode_response(cached) == T03_MEMBER_LIST
    assert len(RESPONSE_ENCODERS) == 8
    with pytest.raises(TypeError):
        encode_response(pb.AlarmResponse())


# ---- Routing through Gateway.respond ------------------------------------------------------------

ROUTES = [
    ("cluster/member/add", "member_add", pb.MemberAddRequest),
    ("cluster/member/remove", "member_remove", pb.MemberRemoveRequest),
    ("cluster/member/update", "member_update", pb.MemberUpdateRequest),
    ("cluster/member/list", "member_list", pb.MemberListRequest),
    ("cluster/member/promote", "member_promote", pb.MemberPromoteRequest),
    ("maintenance/status", "status", pb.StatusRequest),
    ("maintenance/transfer-leadership", "move_leader", pb.MoveLeaderRequest),
]


def body_json(reply: Any) -> Any:
    return json.loads(reply.body)


@pytest.mark.asyncio
@pytest.mark.parametrize("prefix", ["/v3/", "/v3beta/"])
@pytest.mark.parametrize(("route", "method", "request_type"), ROUTES)
async def test_each_route_calls_its_handler(
    prefix: str, route: str, method: str, request_type: type[betterproto.Message]
) -> None:
    gateway, script = make_gateway()
    reply = await gateway.respond("POST", prefix + route, b"{}")
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert ("Grpc-Metadata-Content-Type", "application/grpc") in reply.headers
    assert [name for name, _ in script.calls] == [method]
    assert isinstance(script.calls[0][1], request_type)


@pytest.mark.asyncio
async def test_replies_match_transcript_03() -> None:
    gateway, _ = make_gateway()
    listed = await gateway.respond("POST", "/v3/cluster/member/list", b"")
    assert (listed.status, listed.body) == (200, T03_MEMBER_LIST)
    beta = await gateway.respond("POST", "/v3beta/cluster/member/list", b"{}")
    assert (beta.status, beta.body) == (200, T03_MEMBER_LIST)
    status = await gateway.respond("POST", "/v3/maintenance/status", b"{}")
    assert (status.status, status.body) == (200, T03_STATUS)
    moved = await gateway.respond(
        "POST", "/v3/maintenance/transfer-leadership", b'{"targetID":"1"}'
    )
    assert (moved.status, moved.body) == (200, b"{}")


@pytest.mark.asyncio
async def test_request_fields_reach_the_handler() -> None:
    gateway, script = make_gateway()
    await gateway.respond("POST", "/v3/cluster/member/promote", b'{"ID":10370959452141089457}')
    await gateway.respond("POST", "/v3/cluster/member/list", b'{"linearizable":true}')
    await gateway.respond("POST", "/v3/maintenance/transfer-leadership", b'{"targetID":"7"}')
    await gateway.respond(
        "POST", "/v3/cluster/member/add", b'{"peerURLs":["http://a:1"],"isLearner":true}'
    )
    promote, listing, move, add = (request for _, request in script.calls)
    assert promote.id == LEARNER
    assert listing.linearizable is True
    assert move.target_id == 7
    assert (add.peer_ur_ls, add.is_learner) == (["http://a:1"], True)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "target", "status", "body"),
    [
        # Transcript 03: GET on an RPC route, /v3alpha/.
        ("GET", "/v3/cluster/member/list", 405, b"Method Not Allowed\n"),
        ("PUT", "/v3beta/maintenance/status", 405, b"Method Not Allowed\n"),
        ("POST", "/v3alpha/cluster/member/list", 404, b"404 page not found\n"),
        # Transcript 15: an unknown route under /v3/ is grpc-gateway's own 404.
        ("POST", "/v3/cluster/member/nope", 404, b"Not Found\n"),
        ("GET", "/v3/kv/range", 404, b"Not Found\n"),
        ("POST", "/", 404, b"404 page not found\n"),
        ("GET", "/v3", 404, b"404 page not found\n"),
        ("POST", "/version", 405, b"Method Not Allowed\n"),
        ("HEAD", "/health", 405, b"Method Not Allowed\n"),
    ],
)
async def test_refused_routes_answer_as_go_does(
    method: str, target: str, status: int, body: bytes
) -> None:
    gateway, script = make_gateway()
    reply = await gateway.respond(method, target, b"")
    assert (reply.status, reply.body) == (status, body)
    assert reply.content_type == "text/plain; charset=utf-8"
    assert ("X-Content-Type-Options", "nosniff") in reply.headers
    assert script.calls == []


@pytest.mark.asyncio
async def test_targets_are_decoded_and_queries_ignored() -> None:
    gateway, script = make_gateway()
    for target in (
        "/v3/cluster/member/list?linearizable=true",
        "/v3/cluster/member/%6cist",
        "http://127.0.0.1:2379/v3/cluster/member/list",
    ):
        assert (await gateway.respond("POST", target, b"")).status == 200
    assert [request.linearizable for _, request in script.calls] == [False, False, False]


@pytest.mark.asyncio
async def test_metrics_are_served_as_prometheus_text_when_the_node_has_them() -> None:
    gateway, _ = make_gateway()
    assert (await gateway.respond("GET", "/metrics", b"")).status == 404
    cluster = FakeCluster(Script({}))
    gateway = Gateway(
        cluster=cluster,
        maintenance=pb.MaintenanceBase(),
        has_leader=lambda: True,
        request_timeout=5,
        metrics=lambda: "up 1\n",
    )
    reply = await gateway.respond("GET", "/metrics", b"")
    assert (reply.status, reply.body) == (200, b"up 1\n")
    assert reply.content_type == "text/plain; version=0.0.4; charset=utf-8"
    assert (await gateway.respond("POST", "/metrics", b"")).status == 405


@pytest.mark.asyncio
async def test_version_and_health() -> None:
    leader = [True]
    gateway, _ = make_gateway(has_leader=lambda: leader[0])
    version = await gateway.respond("GET", "/version", b"")
    assert (version.status, version.body) == (200, b'{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}')
    assert VERSION == "3.5.0"
    healthy = await gateway.respond("GET", "/health", b"")
    assert (healthy.status, healthy.body) == (200, b'{"health":"true"}')
    assert healthy.content_type == "text/plain; charset=utf-8"  # as transcript 03 shows
    leader[0] = False
    sick = await gateway.respond("GET", "/health", b"")
    assert (sick.status, sick.body) == (503, b'{"health":"false"}')


@pytest.mark.asyncio
async def test_health_check_may_wait_and_fail_within_the_bound() -> None:
    async def slow() -> bool:
        await asyncio.Event().wait()
        return True

    async def ready() -> bool:
        return True

    def broken() -> bool:
        raise RuntimeError("boom")

    for check, status in ((ready, 200), (slow, 503), (broken, 503)):
        gateway, _ = make_gateway(has_leader=check, request_timeout=0)
        assert (await gateway.respond("GET", "/health", b"")).status == status


@pytest.mark.asyncio
async def test_options_is_the_cors_preflight() -> None:
    gateway, script = make_gateway()
    reply = await gateway.respond("OPTIONS", "/v3/cluster/member/add", b"")
    assert (reply.status, reply.body, reply.content_type) == (200, b"", None)
    assert script.calls == []


# ---- Errors: the one table (spec §9.4) ----------------------------------------------------------

# Transcript 15's error replies. Debian's 3.4.23 says 412 for code 9; upstream and raftnode 400.
TRANSCRIPT_15_ERRORS = [
    ("member_promote", LearnerNotReady(), 400, 9),
    ("member_promote", MemberNotLearner(), 400, 9),
    ("member_promote", MemberNotFound(), 404, 5),
    ("member_update", PeerURLExists(), 400, 9),
    ("member_update", MemberNotFound(), 404, 5),
    ("member_remove", MemberNotFound(), 404, 5),
    ("member_add", TooManyLearners(), 400, 9),
    ("member_add", PeerURLExists(), 400, 9),
    ("member_add", InvalidPeerURLs(), 400, 3),
    # Transcripts 12 and 13.
    ("member_add", Unhealthy(), 503, 14),
    ("member_add", NotEnoughStarted(), 500, 2),
]
PATH_OF = {method: route for route, method, _ in ROUTES}


@pytest.mark.asyncio
@pytest.mark.parametrize(("method", "error", "http", "code"), TRANSCRIPT_15_ERRORS)
async def test_handler_errors_answer_through_the_table(
    method: str, error: EtcdError, http: int, code: int
) -> None:
    gateway, _ = make_gateway(Script({method: to_grpc_error(error)}))
    reply = await gateway.respond("POST", "/v3/" + PATH_OF[method], b'{"ID":"4660"}')
    message = ERRORS[type(error)].message
    assert reply.status == http
    assert reply.content_type == "application/json"
    assert body_json(reply) == {"error": message, "code": code, "message": message}
    assert reply.body.startswith(b'{"error":')


def test_the_http_column_is_the_spec_mapping() -> None:
    expected = {3: 400, 9: 400, 11: 400, 5: 404, 2: 500, 13: 500, 15: 500, 14: 503, 4: 504}
    expected |= {1: 408, 7: 403, 16: 401, 8: 429, 12: 501}
    for code, http in expected.items():
        assert HTTP_STATUS_BY_CODE[Status(code)] == http


@pytest.mark.asyncio
async def test_authenticate_is_refused_as_etcd_without_auth() -> None:
    gateway, _ = make_gateway()
    reply = await gateway.respond("POST", "/v3/auth/authenticate", b'{"name":"root"}')
    message = "etcdserver: authentication is not enabled"
    assert reply.status == 400
    assert body_json(reply) == {"error": message, "code": 9, "message": message}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "body", [b"not json", b'{"ID":"0x1234"}', b'{"ID":-1}', b"[]", b'{"ID":' + b"1" * 30 + b"}"]
)
async def test_malformed_bodies_answer_400_code_3_without_a_call(body: bytes) -> None:
    gateway, script = make_gateway()
    reply = await gateway.respond("POST", "/v3/cluster/member/remove", body)
    assert reply.status == 400
    document = body_json(reply)
    assert document["code"] == 3
    assert document["error"] == document["message"] != ""
    assert script.calls == []


@pytest.mark.asyncio
async def test_a_peer_urls_string_is_refused_before_the_handler() -> None:
    # Transcript 15: {"peerURLs":"…"} is a decoding error (no Grpc trailer: it never reached gRPC).
    gateway, script = make_gateway()
    reply = await gateway.respond(
        "POST", "/v3/cluster/member/add", b'{"peerURLs":"http://127.0.0.1:52380"}'
    )
    assert (reply.status, body_json(reply)["code"]) == (400, 3)
    assert script.calls == []


@pytest.mark.asyncio
async def test_a_fault_in_a_handler_is_unknown_with_a_fixed_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway, _ = make_gateway(Script({"member_list": KeyError("secret detail")}))
    reply = await gateway.respond("POST", "/v3/cluster/member/list", b"")
    assert reply.status == 500
    assert body_json(reply) == {
        "error": INTERNAL_ERROR.message,
        "code": 2,
        "message": INTERNAL_ERROR.message,
    }
    assert b"secret" not in reply.body
    assert "secret detail" in caplog.text  # logged with its traceback


@pytest.mark.asyncio
async def test_a_call_is_bounded_by_req_timeout() -> None:
    # D4b: etcd's gateway would hang here. request_timeout=0 expires at the next loop turn.
    blocker = Blocker(None)
    gateway, _ = make_gateway(Script({"member_add": blocker}), request_timeout=0)
    reply = await gateway.respond("POST", "/v3/cluster/member/add", b'{"peerURLs":["http://a:1"]}')
    message = "etcdserver: request timed out"
    assert reply.status == 503
    assert body_json(reply) == {"error": message, "code": 14, "message": message}
    assert blocker.cancelled


@pytest.mark.asyncio
async def test_gateway_and_grpc_answer_alike_from_the_same_handlers() -> None:
    """The gateway calls the very handler grpclib calls: same success, same error."""
    script = Script({"member_promote": to_grpc_error(MemberNotFound())})
    cluster = FakeCluster(script)
    gateway = Gateway(
        cluster=cluster,
        maintenance=pb.MaintenanceBase(),
        has_leader=lambda: True,
        request_timeout=5,
    )
    async with ChannelFor(etcd_services(cluster=cluster)) as channel:
        stub = pb.ClusterStub(channel)
        listed = await stub.member_list(pb.MemberListRequest())
        with pytest.raises(GRPCError) as caught:
            await stub.member_promote(pb.MemberPromoteRequest(id=4660))
        unimplemented = pb.MaintenanceStub(channel)
        with pytest.raises(GRPCError) as unserved:
            await unimplemented.status(pb.StatusRequest())
    assert (
        encode_response(listed)
        == (await gateway.respond("POST", "/v3/cluster/member/list", b"")).body
    )
    promoted = await gateway.respond("POST", "/v3/cluster/member/promote", b'{"ID":4660}')
    assert promoted.status == 404
    assert body_json(promoted)["message"] == caught.value.message
    assert body_json(promoted)["code"] == caught.value.status.value
    status = await gateway.respond("POST", "/v3/maintenance/status", b"")
    assert (status.status, body_json(status)["code"]) == (501, unserved.value.status.value)


# ---- HTTP/1.1 in memory -------------------------------------------------------------------------


def assert_json_ok(response: Response) -> None:
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    assert response.header("content-length") == str(len(response.body))
    assert response.header("date") is not None


@pytest.mark.asyncio
async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    gateway, script = make_gateway()
    wire = Wire(gateway)
    first = await wire.request("POST", "/v3/cluster/member/list")
    second = await wire.request("POST", "/v3/maintenance/status", b"{}")
    third = await wire.request("GET", "/health")
    assert_json_ok(first)
    assert first.body == T03_MEMBER_LIST
    assert second.body == T03_STATUS
    assert third.body == b'{"health":"true"}'
    assert all(r.header("connection") is None for r in (first, second, third))
    assert not wire.transport.closed
    assert len(script.calls) == 2
    wire.eof()
    assert await wire.rest() == b""


@pytest.mark.asyncio
async def test_headers_are_etcds() -> None:
    gateway, _ = make_gateway()
    wire = Wire(gateway)
    ok = await wire.request("POST", "/v3/cluster/member/list")
    assert ok.header_names == [
        "access-control-allow-headers",
        "access-control-allow-methods",
        "access-control-allow-origin",
        "content-type",
        "grpc-metadata-content-type",
        "date",
        "content-length",
    ]
    refused = await wire.request("GET", "/v3/cluster/member/list")
    assert refused.status == 405
    assert refused.header("x-content-type-options") == "nosniff"
    raw = wire.transport.written.decode()
    assert "HTTP/1.1 200 OK\r\nAccess-Control-Allow-Headers: accept, content-type, " in raw
    assert "HTTP/1.1 405 Method Not Allowed\r\n" in raw


@pytest.mark.asyncio
async def test_pipelined_requests_are_answered_in_order() -> None:
    gateway, script = make_gateway()
    wire = Wire(gateway)
    data = request_bytes(wire.client, "POST", "/v3/cluster/member/list")
    # h11's client does not pipeline, so the second request is written by hand.
    second = b"POST /v3/maintenance/status HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
    wire.send(data + second)
    first = await wire.response()
    assert first.body == T03_MEMBER_LIST
    expect_request(wire.client)
    assert (await wire.response()).body == T03_STATUS
    assert [name for name, _ in script.calls] == ["member_list", "status"]


@pytest.mark.asyncio
async def test_connection_close_and_http_1_0_close_after_the_reply() -> None:
    gateway, _ = make_gateway()
    wire = Wire(gateway)
    reply = await wire.request(
        "POST",
        "/v3/cluster/member/list",
        headers=[("Connection", "close"), ("Content-Length", "0")],
    )
    assert reply.header("connection") == "close"
    await wire.transport.wait_closed()

    old = Wire(gateway)
    old.send(b"POST /v3/cluster/member/list HTTP/1.0\r\nContent-Length: 0\r\n\r\n")
    raw = await old.rest()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(T03_MEMBER_LIST)


@pytest.mark.asyncio
async def test_a_chunked_body_and_100_continue() -> None:
    gateway, script = make_gateway()
    wire = Wire(gateway)
    reply = await wire.request(
        "POST",
        "/v3/cluster/member/promote",
        b'{"ID":"4660"}',
        headers=[("Transfer-Encoding", "chunked"), ("Expect", "100-continue")],
    )
    assert reply.informational == [100]
    assert reply.status == 200
    assert script.calls[0][1].id == 4660


@pytest.mark.asyncio
async def test_a_body_over_the_cap_is_refused_unread_and_the_connection_closed() -> None:
    gateway, script = make_gateway(max_request_bytes=16)
    wire = Wire(gateway)
    wire.send(
        b"POST /v3/cluster/member/add HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
        b"Expect: 100-continue\r\n\r\n"
    )
    raw = await wire.rest()
    message = b"etcdserver: request is too large"
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"HTTP/1.1 100" not in raw
    assert b"Connection: close\r\n" in raw
    assert raw.endswith(b'{"error":"' + message + b'","code":3,"message":"' + message + b'"}')
    assert script.calls == []
    assert wire.transport.eof_written  # a lingering close: the client can read the answer


@pytest.mark.asyncio
async def test_a_lingering_close_is_bounded() -> None:
    async def respond(method: str, target: str, body: bytes) -> Reply:
        raise AssertionError("never called")

    too_large = Reply(400, b"too large", close=True)
    server = Http11Server(respond, Limits(too_large, 4, 1024, idle_timeout=5, linger=0))
    transport = FakeTransport()
    transport.peer_answers_eof = False  # a client that keeps its side open
    protocol = server.protocol_factory()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    await server.wait_closed()
    protocol.data_received(b"more body, discarded")
    assert transport.closed and transport.eof_written
    assert bytes(transport.written).endswith(b"\r\n\r\ntoo large")


@pytest.mark.asyncio
async def test_a_chunked_body_over_the_cap_is_refused() -> None:
    gateway, script = make_gateway(max_request_bytes=16)
    wire = Wire(gateway)
    wire.send(
        b"POST /v3/cluster/member/add HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    wire.send(b"10\r\n" + b"x" * 16 + b"\r\n")
    wire.send(b"1\r\nx\r\n")
    raw = await wire.rest()
    assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"request is too large" in raw
    assert script.calls == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("garbage", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS client hello
        (b"\xff\xfe\xfd\xfc", 400),  # binary, no line end: refused at once
        (b"\x00", 400),
        (b"A" * 40, 400),  # no method is that long
        (b"GET\x00 / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505),
        (b"\r\n\r\n", 400),
    ],
)
async def test_garbage_gets_400_and_a_close(garbage: bytes, status: int) -> None:
    gateway, script = make_gateway()
    wire = Wire(gateway)
    wire.send(garbage)
    raw = await wire.rest()
    phrase = {400: b"Bad Request", 505: b"HTTP Version Not Supported"}[status]
    head = b"HTTP/1.1 %d %s\r\n" % (status, phrase)
    assert raw.startswith(head), raw
    assert raw.endswith(b"\r\n\r\n%d %s" % (status, phrase))
    assert b"Connection: close\r\n" in raw
    assert script.calls == []


@pytest.mark.asyncio
async def test_oversized_headers_get_431() -> None:
    gateway, _ = make_gateway(max_header_bytes=1024)
    wire = Wire(gateway)
    wire.send(b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 2000)
    raw = await wire.rest()
    assert raw.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")


def test_plausible_request_starts() -> None:
    assert plausible_request_start(b"")
    assert plausible_request_start(b"PO")
    assert plausible_request_start(b"POST /v3/")
    assert plausible_request_start(b"M-SEARCH * HTTP/1.1")
    assert not plausible_request_start(b"\x16\x03")
    assert not plausible_request_start(b"POST\t/")
    assert not plausible_request_start(b"x" * 33)
    assert not plausible_request_start(b" GET /")


@pytest.mark.asyncio
async def test_eof_and_half_close() -> None:
    gateway, _ = make_gateway()
    idle = Wire(gateway)
    idle.eof()
    assert await idle.rest() == b""

    partial = Wire(gateway)
    partial.send(
        b"POST /v3/cluster/member/list HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{}"
    )
    partial.eof()
    raw = await partial.rest()
    assert raw == b"" or raw.startswith(b"HTTP/1.1 400")

    # A client that half-closes after its request still gets the answer.
    half = Wire(gateway)
    half.send(request_bytes(half.client, "POST", "/v3/cluster/member/list"))
    half.eof()
    raw = await half.rest()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert raw.endswith(T03_MEMBER_LIST)


@pytest.mark.asyncio
async def test_head_gets_no_body() -> None:
    gateway, _ = make_gateway()
    wire = Wire(gateway)
    reply = await wire.request("HEAD", "/version", headers=[])
    assert reply.status == 405
    assert reply.body == b""
    assert reply.header("content-length") == "19"
    assert not wire.transport.closed


@pytest.mark.asyncio
async def test_a_lost_connection_cancels_its_request() -> None:
    blocker = Blocker(pb.MemberListResponse())
    gateway, _ = make_gateway(Script({"member_list": blocker}))
    wire = Wire(gateway)
    wire.send(request_bytes(wire.client, "POST", "/v3/cluster/member/list"))
    await blocker.started.wait()
    wire.protocol.connection_lost(ConnectionResetError())
    await gateway.wait_closed()
    assert blocker.cancelled
    assert wire.transport.written == b""


@pytest.mark.asyncio
async def test_an_idle_client_is_closed_without_a_word() -> None:
    gateway, _ = make_gateway(idle_timeout=0)
    wire = Wire(gateway)
    wire.send(b"POST /v3/cluster/member/list HTTP/1.1\r\n")  # and never the rest
    assert await wire.rest() == b""


@pytest.mark.asyncio
async def test_a_pipelining_flood_is_paused_until_the_answer_is_sent() -> None:
    blocker = Blocker(pb.MemberListResponse())
    gateway, _ = make_gateway(Script({"member_list": blocker}), max_header_bytes=1024)
    wire = Wire(gateway)
    wire.send(request_bytes(wire.client, "POST", "/v3/cluster/member/list"))
    await blocker.started.wait()
    flood = 30  # about 2 KiB, over the 1 KiB that may wait unread
    for _ in range(flood):
        wire.send(b"POST /v3/cluster/member/list HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    assert wire.transport.reading_paused
    blocker.release.set()
    await wire.response()
    for _ in range(flood):
        expect_request(wire.client)
        assert (await wire.response()).status == 200
    assert not wire.transport.reading_paused


@pytest.mark.asyncio
async def test_no_request_is_read_while_writing_is_paused() -> None:
    gateway, script = make_gateway()
    wire = Wire(gateway)
    wire.protocol.pause_writing()
    wire.send(request_bytes(wire.client, "POST", "/v3/cluster/member/list"))
    for _ in range(5):
        await asyncio.sleep(0)  # let the connection's task run (no time passes)
    assert script.calls == []
    wire.protocol.resume_writing()
    assert (await wire.response()).status == 200


# ---- Lifecycle ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_close_drains_a_request_in_progress_and_closes_idle_connections() -> None:
    blocker = Blocker(pb.MemberListResponse(header=header()))
    gateway, _ = make_gateway(Script({"member_list": blocker}))
    idle = Wire(gateway)
    busy = Wire(gateway)
    busy.send(request_bytes(busy.client, "POST", "/v3/cluster/member/list"))
    await blocker.started.wait()
    gateway.close()
    assert await idle.rest() == b""
    assert not busy.transport.closed
    late = Wire(gateway)  # a connection handed over after close is closed at once
    assert await late.rest() == b""
    blocker.release.set()
    await gateway.wait_closed()
    raw = await busy.rest()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in raw
    assert raw.endswith(
        b'{"header":{"cluster_id":"%d","member_id":"%d","raft_term":"2"}}' % (CLUSTER_ID, INFRA1)
    )


@pytest.mark.asyncio
async def test_abandoning_wait_closed_aborts_requests_in_progress() -> None:
    blocker = Blocker(pb.MemberListResponse())
    gateway, _ = make_gateway(Script({"member_list": blocker}))
    wire = Wire(gateway)
    wire.send(request_bytes(wire.client, "POST", "/v3/cluster/member/list"))
    await blocker.started.wait()
    gateway.close()
    waiting = asyncio.ensure_future(gateway.wait_closed())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await gateway.wait_closed()
    assert blocker.cancelled
    assert wire.transport.closed
