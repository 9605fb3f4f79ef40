"""node.ctl's printers and argument checks against the transcripts (layer a). The printers are
written independently of ``tests.compat.etcdctl_output``; both must reproduce the recorded
etcdctl output from the recorded replies."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from grpclib.const import Status

from node.client import ClientError, NotEnoughStarted, Timeout, Unavailable
from node.ctl import gojson, printers
from node.ctl.args import UsageError, check_peer_urls, parse_args, parse_duration, parse_member_id
from node.ctl.commands import error_text, run
from proto import etcdserverpb as pb
from tests.compat import etcdctl_output as model


def as_pb_list(reply: dict[str, Any]) -> pb.MemberListResponse:
    header = pb.ResponseHeader(**reply["header"])
    members = [
        pb.Member(
            id=m["ID"],
            name=m.get("name", ""),
            peer_ur_ls=m.get("peerURLs", []),
            client_ur_ls=m.get("clientURLs", []),
            is_learner=m.get("isLearner", False),
        )
        for m in reply["members"]
    ]
    return pb.MemberListResponse(header=header, members=members)


@pytest.mark.parametrize(
    ("reply_json", "simple", "table", "fields"),
    [
        (model.T01_JSON, model.T01_SIMPLE, model.T01_TABLE, model.T01_FIELDS),
        (model.T04_JSON, model.T04_SIMPLE, model.T04_TABLE, model.T04_FIELDS),
    ],
)
def test_member_list_renderings_reproduce_the_transcripts(
    reply_json: str, simple: str, table: str, fields: str
) -> None:
    reply = as_pb_list(json.loads(reply_json))
    rows = [printers.member_row(m) for m in reply.members]
    assert printers.simple_rows(rows) == simple
    assert printers.table(printers.MEMBER_HEADER, rows) == table
    assert printers.fields_members(reply) == fields
    assert gojson.dumps(gojson.members_reply(reply)) + "\n" == reply_json


def test_member_add_lines_reproduce_the_transcripts() -> None:
    t04 = as_pb_list(json.loads(model.T04_JSON))
    added = pb.MemberAddResponse(header=t04.header, member=t04.members[0], members=t04.members)
    assert printers.member_added(added, "infra4", "http://127.0.0.1:42380") == model.T04_ADDED
    t20 = as_pb_list(model.T20_REPLY)
    added = pb.MemberAddResponse(header=t20.header, member=t20.members[0], members=t20.members)
    assert printers.member_added(added, "v6", "http://127.0.0.1:62380") == model.T20_ADDED
    cluster = 0x59A05384C9B79EE
    assert printers.changed("updated in", 0x3E6A519C54FD7AFC, cluster) == model.T10_UPDATED
    assert printers.changed("removed from", 0x3E6A519C54FD7AFC, cluster) == model.T11_REMOVED


def test_endpoint_status_reproduces_the_transcript() -> None:
    entries = json.loads(model.T02_STATUS_JSON)
    replies = []
    for entry in entries:
        s = entry["Status"]
        replies.append(
            (
                entry["Endpoint"],
                pb.StatusResponse(
                    header=pb.ResponseHeader(**s["header"]),
                    version=s["version"],
                    db_size=s["dbSize"],
                    leader=s["leader"],
                    raft_index=s["raftIndex"],
                    raft_term=s["raftTerm"],
                    raft_applied_index=s["raftAppliedIndex"],
                    db_size_in_use=s["dbSizeInUse"],
                ),
            )
        )
    rows = [printers.status_row(e, s) for e, s in replies]
    assert printers.table(printers.STATUS_HEADER, rows) == model.T02_STATUS_TABLE
    as_json = [{"Endpoint": e, "Status": gojson.status(s)} for e, s in replies]
    assert gojson.dumps(as_json) + "\n" == model.T02_STATUS_JSON


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.005573953, "5.573953ms"),
        (0.00442037, "4.42037ms"),
        (0.000012, "12µs"),
        (1.5, "1.5s"),
        (61, "1m1s"),
        (3600, "1h0m0s"),
        (0, "0s"),
    ],
)
def test_go_durations(seconds: float, text: str) -> None:
    assert printers.go_duration(seconds) == text


@pytest.mark.parametrize(
    ("size", "text"), [(5, "5 B"), (20480, "20 kB"), (25000, "25 kB"), (1_500_000, "1.5 MB")]
)
def test_si_bytes(size: int, text: str) -> None:
    assert printers.si_bytes(size) == text


def test_go_json_escapes_like_go() -> None:
    assert gojson.dumps({"name": "a<b>&c"}) == '{"name":"a\\u003cb\\u003e\\u0026c"}'


def test_member_ids_parse_like_strconv() -> None:
    assert parse_member_id("6D1915374d342841") == 0x6D1915374D342841
    for text, reason in (("0x12", "invalid syntax"), ("", "invalid syntax"), ("1" * 17, "range")):
        with pytest.raises(UsageError, match=reason) as caught:
            parse_member_id(text)
        assert caught.value.code == 128


def test_durations_parse_like_go() -> None:
    assert parse_duration("command-timeout", "1m30s") == 90
    assert parse_duration("command-timeout", "500ms") == 0.5
    with pytest.raises(UsageError):
        parse_duration("command-timeout", "5")


def test_flags_anywhere_and_from_the_environment() -> None:
    args = parse_args(
        "member",
        ["-wtable", "add", "n", "--learner", "--peer-urls", "http://h:1"],
        {"ETCDCTL_ENDPOINTS": "a:1,b:2", "ETCDCTL_WRITE_OUT": "json"},
    )
    assert args.command == ("member", "add") and args.positional == ["n"]
    assert args.write_out == "table" and args.endpoints == ("a:1", "b:2")
    assert args.is_set("learner") and args.flag("peer-urls") == "http://h:1"
    with pytest.raises(UsageError, match="unknown flag: --learner"):
        parse_args("member", ["list", "--learner"], {})
    with pytest.raises(UsageError, match="unsupported output format") as bad:
        parse_args("member", ["list", "-w", "yaml"], {})
    assert bad.value.code == 4


def test_peer_urls_are_checked_as_etcdctl_34_does() -> None:
    check_peer_urls(["http://127.0.0.1:1", " unix://h:2", "HTTPS://[::1]:3"])
    for url, message in (
        ("foo", "URL scheme must be"),
        ("http://127.0.0.1", 'does not have the form "host:port"'),
        ("http://127.0.0.1:1/", "must not contain a path"),
    ):
        with pytest.raises(UsageError, match=message) as caught:
            check_peer_urls([url])
        assert caught.value.code == 1


@pytest.mark.parametrize(
    ("error", "printed"),
    [
        (NotEnoughStarted(Status.UNKNOWN, "etcdserver: re-configuration failed due to not "
                          "enough started members"),
         "etcdserver: re-configuration failed due to not enough started members"),
        (Timeout(Status.DEADLINE_EXCEEDED, "context deadline exceeded"),
         "context deadline exceeded"),
        (ClientError(Status.UNKNOWN, "context deadline exceeded"),
         "rpc error: code = Unknown desc = context deadline exceeded"),
        (Timeout(Status.UNKNOWN, "etcdserver: request timed out, leader transfer took too long"),
         "rpc error: code = Unknown desc = etcdserver: request timed out, leader transfer took "
         "too long"),
        (ClientError(Status.FAILED_PRECONDITION, "something new"),
         "rpc error: code = FailedPrecondition desc = something new"),
        (Unavailable(None, "no endpoint could be reached: x"), "no endpoint could be reached: x"),
    ],
)  # fmt: skip
def test_error_lines_follow_clientv3(error: ClientError, printed: str) -> None:
    # Transcript 14 shows the UNKNOWN "context deadline exceeded" form.
    assert error_text(error) == printed


@pytest.mark.parametrize("argv", [[], ["--help"], ["list", "-h"]])
def test_help_is_printed_with_exit_0(argv: list[str]) -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    assert run("member", argv, {}, stdout, stderr) == 0
    assert stdout.getvalue().startswith("usage: raftnode member") and stderr.getvalue() == ""


def test_argument_errors_exit_before_any_connection() -> None:
    stdout, stderr = io.StringIO(), io.StringIO()
    assert run("member", ["remove", "zz", "--endpoints=127.0.0.1:1"], {}, stdout, stderr) == 128
    assert stderr.getvalue() == (
        'Error: bad member ID arg (strconv.ParseUint: parsing "zz": invalid syntax), '
        "expecting ID in Hex\n"
    )
    stderr = io.StringIO()
    assert run("endpoint", ["status", "--endpoints=https://h:1"], {}, stdout, stderr) == 1
    assert stderr.getvalue() == "Error: TLS endpoints are not supported: https://h:1\n"
    assert stdout.getvalue() == ""
