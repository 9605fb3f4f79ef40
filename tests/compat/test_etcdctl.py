"""Debian's etcdctl 3.4 against a live 3-member raftnode cluster (spec §10; issue 4, item 7).

One cluster serves the whole module; each test leaves it as it found it (three started voters,
no learner), so the tests also pass one at a time. Output is compared with the transcripts through
the printers of `tests.compat.etcdctl_output`, which are first checked to reproduce the transcripts
exactly; IDs and ports differ from the recordings, layouts and wording must not.

Deliberate differences from the 3.4.23 oracle (spec §12.2) that show here: Status ``version`` is
``3.5.0``, and our 64-bit cluster ID prints with no padding space where the oracle's 15-digit one
had one (``%16x`` pads either way).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from proto import etcdserverpb as pb
from tests.compat import etcdctl_output as out
from tests.procs import (
    Member,
    Procs,
    Result,
    etcdctl,
    etcdctl_raw,
    members_by_name,
    require_etcdctl,
    retry_ctl,
    wait_for,
)

pytestmark = pytest.mark.slow

Cluster = tuple[Procs, list[Member]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_etcdctl()
    with Procs(tmp_path_factory.mktemp("etcdctl")) as procs:
        members = procs.start_cluster("infra1", "infra2", "infra3")
        procs.wait_leader(members)
        yield procs, members


@pytest.fixture(autouse=True)
def founders_only_afterwards(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a test that used the cluster, remove any member it added and left behind (a failed
    test), so one failure does not cascade into the next tests."""
    yield
    if "cluster" not in request.fixturenames:
        return
    procs, members = request.getfixturevalue("cluster")
    founders = {m.peer_url for m in members}
    for m in procs.member_list(members[0])["members"]:
        if not founders & set(m.get("peerURLs", [])):
            retry_ctl(members[0], "member", "remove", f"{m['ID']:x}")


def leader_and_follower(procs: Procs, members: list[Member]) -> tuple[Member, Member]:
    leader_id = procs.wait_leader(members)
    by_id = {m["ID"]: m["name"] for m in procs.member_list(members[0])["members"]}
    leader = next(m for m in members if by_id[leader_id] == m.name)
    follower = next(m for m in members if m is not leader)
    return leader, follower


def member_id(procs: Procs, via: Member, name: str) -> int:
    found: int = members_by_name(procs.member_list(via))[name]["ID"]
    return found


def assert_error(result: Result, grpc_code: str, message: str) -> None:
    """etcdctl's failure for a server error: one retry-interceptor warning naming the gRPC code,
    then ``Error: <message>``, exit 1 (transcripts 05, 06, 07)."""
    assert result.code == 1, str(result)
    assert result.error == f"Error: {message}", str(result)
    warnings = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert warnings, str(result)
    assert warnings[0]["error"] == f"rpc error: code = {grpc_code} desc = {message}", str(result)


def pb_reply_as_json(reply: pb.MemberListResponse) -> dict[str, Any]:
    """A decoded protobuf reply in etcdctl's ``-w json`` form (zero values left out)."""
    header = {
        k: v
        for k, v in (
            ("cluster_id", reply.header.cluster_id),
            ("member_id", reply.header.member_id),
            ("revision", reply.header.revision),
            ("raft_term", reply.header.raft_term),
        )
        if v
    }
    members = []
    for m in reply.members:
        entry: dict[str, Any] = {"ID": m.id}
        if m.name:
            entry["name"] = m.name
        if m.peer_ur_ls:
            entry["peerURLs"] = list(m.peer_ur_ls)
        if m.client_ur_ls:
            entry["clientURLs"] = list(m.client_ur_ls)
        if m.is_learner:
            entry["isLearner"] = True
        members.append(entry)
    return {"header": header, "members": members}


def member_skeletons(reply: dict[str, Any]) -> set[str]:
    return {repr(out.skeleton(m)) for m in reply["members"]}


# ---- the model itself ----------------------------------------------------------------------------


def test_the_model_reproduces_the_transcripts() -> None:
    t01 = json.loads(out.T01_JSON)
    assert out.simple_list(t01) == out.T01_SIMPLE
    assert out.table_list(t01) == out.T01_TABLE
    assert out.fields_list(t01) == out.T01_FIELDS
    decoded = pb.MemberListResponse().parse(out.hexdump_bytes(out.T01_PROTOBUF_XXD))
    assert pb_reply_as_json(decoded) == t01
    t04 = json.loads(out.T04_JSON)
    assert out.simple_list(t04) == out.T04_SIMPLE
    assert out.table_list(t04) == out.T04_TABLE
    assert out.fields_list(t04) == out.T04_FIELDS
    added = {**t04, "member": t04["members"][0]}
    assert out.member_added(added, "infra4", "http://127.0.0.1:42380") == out.T04_ADDED
    assert out.member_added(out.T20_REPLY, "v6", "http://127.0.0.1:62380") == out.T20_ADDED
    cid = 0x59A05384C9B79EE
    assert out.changed("updated in", 0x3E6A519C54FD7AFC, cid) == out.T10_UPDATED
    assert out.changed("removed from", 0x3E6A519C54FD7AFC, cid) == out.T11_REMOVED
    assert out.changed("promoted in", 0x4B5695F5ADC559F2, cid) == out.T22_PROMOTED
    assert out.table_status(json.loads(out.T02_STATUS_JSON)) == out.T02_STATUS_TABLE
    env = out.etcd_env(out.T04_ADDED)
    assert env["ETCD_NAME"] == "infra4" and env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"


# ---- reads ---------------------------------------------------------------------------------------


def test_member_list_in_every_output_format(cluster: Cluster) -> None:
    procs, members = cluster
    n1 = members[0]
    reply = procs.member_list(n1)
    # JSON: the same keys, in the same order, with the same value types as transcript 01.
    t01 = json.loads(out.T01_JSON)
    assert out.skeleton(reply["header"]) == out.skeleton(t01["header"])
    assert member_skeletons(reply) == member_skeletons(t01)
    assert [m["ID"] for m in reply["members"]] == sorted(m["ID"] for m in reply["members"])
    assert {m["name"] for m in reply["members"]} == {"infra1", "infra2", "infra3"}
    assert reply["header"]["member_id"] == member_id(procs, n1, "infra1")
    # The other formats render that same reply the way etcdctl does (checked on the transcript).
    for m in members:
        assert m.ctl("member", "list").stdout == out.simple_list(reply)
    assert n1.ctl("member", "list", "-w", "table").stdout == out.table_list(reply)
    assert n1.ctl("member", "list", "-w", "fields").stdout == out.fields_list(reply)
    assert n1.ctl("member", "list", "--hex", "-w", "json").json() == reply  # no effect in 3.4
    raw = etcdctl_raw([n1.endpoint], "member", "list", "-w", "protobuf")
    assert raw[:1] == b"\x0a"  # field 1, the header, first (transcript 01's dump)
    assert pb_reply_as_json(pb.MemberListResponse().parse(raw)) == reply
    # Each member answers with its own ID in the header and the same members.
    for m in members[1:]:
        theirs = procs.member_list(m)
        assert theirs["members"] == reply["members"]
        assert theirs["header"]["member_id"] == member_id(procs, m, m.name)
        assert theirs["header"]["cluster_id"] == reply["header"]["cluster_id"]


def test_endpoint_status(cluster: Cluster) -> None:
    procs, members = cluster
    endpoints = [m.endpoint for m in members]
    leader = procs.wait_leader(members)

    def consistent() -> tuple[list[Any], Result] | None:
        statuses = etcdctl(endpoints, "endpoint", "status", "-w", "json")
        table = etcdctl(endpoints, "endpoint", "status", "-w", "table")
        assert statuses.code == 0 and table.code == 0, f"{statuses}\n{table}"
        again = etcdctl(endpoints, "endpoint", "status", "-w", "json").json()
        return (again, table) if again == statuses.json() else None

    statuses, table = wait_for(consistent, 10, "two identical endpoint status answers")
    t02 = json.loads(out.T02_STATUS_JSON)
    assert [out.skeleton(e) for e in statuses] == [out.skeleton(e) for e in t02]
    assert [e["Endpoint"] for e in statuses] == endpoints
    for entry in statuses:
        status = entry["Status"]
        assert status["version"] == "3.5.0"
        assert status["leader"] == leader
        assert status["header"]["revision"] == 1
        assert status["raftTerm"] == status["header"]["raft_term"]
        assert status["raftAppliedIndex"] <= status["raftIndex"]
    assert sum(e["Status"]["header"]["member_id"] == leader for e in statuses) == 1
    assert table.stdout == out.table_status(statuses)
    whole = etcdctl([members[0].endpoint], "endpoint", "status", "--cluster", "-w", "json")
    assert sorted(e["Endpoint"] for e in whole.json()) == sorted(m.client_url for m in members)


# ---- errors --------------------------------------------------------------------------------------


def test_error_answers_and_exit_codes(cluster: Cluster) -> None:
    procs, members = cluster
    leader, follower = leader_and_follower(procs, members)
    n2_id = member_id(procs, leader, "infra2")
    spare = procs.member("spare-urls").peer_url  # a URL nobody uses
    not_found = "etcdserver: member not found"
    for via in (leader, follower):  # transcript 06
        assert_error(via.ctl("member", "remove", "1234"), "NotFound", not_found)
        assert_error(via.ctl("member", "promote", "1234"), "NotFound", not_found)
        assert_error(
            via.ctl("member", "update", "1234", f"--peer-urls={spare}"), "NotFound", not_found
        )
        assert_error(
            via.ctl("member", "promote", f"{n2_id:x}"),
            "FailedPrecondition",
            "etcdserver: can only promote a learner member",
        )
    # Transcript 07: a peer URL in use, for a voter add, a learner add and an update.
    taken = members[0].peer_url
    for extra in ((), ("--learner",)):
        assert_error(
            retry_ctl(leader, "member", "add", "dup", f"--peer-urls={taken}", *extra),
            "FailedPrecondition",
            "etcdserver: Peer URLs already exists",
        )
    assert_error(
        follower.ctl("member", "update", f"{n2_id:x}", f"--peer-urls={taken}"),
        "FailedPrecondition",
        "etcdserver: Peer URLs already exists",
    )
    # etcdctl's own argument checks: exit 128, the server never sees them (06, 07).
    bad_args = {
        ("member", "remove", "zz"): "Error: bad member ID arg (strconv.ParseUint: parsing "
        '"zz": invalid syntax), expecting ID in Hex',
        ("member", "remove"): "Error: member ID is not provided",
        ("member", "promote"): "Error: member ID is not provided",
        ("member", "update", "1234"): "Error: member peer urls not provided",
        ("member", "add"): "Error: member name not provided",
        ("member", "add", "bad"): "Error: member peer urls not provided",
        ("member", "add", "bad", "--peer-urls="): "Error: member peer urls not provided",
        ("member", "add", "a", "b", "http://x"): "Error: too many arguments, did you mean "
        "--peer-urls=http://x",
    }
    for args, message in bad_args.items():
        result = leader.ctl(*args)
        assert (result.code, result.stderr) == (128, message + "\n"), str(result)
    # etcdctl's client-side URL checks (3.4 rules): exit 1 (07).
    bad_urls = {
        "foo": "Error: URL scheme must be http, https, unix, or unixs: foo",
        "ftp://127.0.0.1:1": "Error: URL scheme must be http, https, unix, or unixs: "
        "ftp://127.0.0.1:1",
        "http://127.0.0.1": 'Error: URL address does not have the form "host:port": '
        "http://127.0.0.1",
        "http://127.0.0.1:1/path": "Error: URL must not contain a path: http://127.0.0.1:1/path",
    }
    for url, message in bad_urls.items():
        for args in (("member", "add", "bad"), ("member", "update", f"{n2_id:x}")):
            result = leader.ctl(*args, f"--peer-urls={url}")
            assert (result.code, result.stderr) == (1, message + "\n"), str(result)
    # Nothing above changed the membership.
    assert [m["name"] for m in procs.member_list(leader)["members"]].count("") == 0
    assert len(procs.member_list(follower)["members"]) == 3


# ---- the learner path ----------------------------------------------------------------------------


def test_learner_add_update_start_promote_remove(cluster: Cluster) -> None:
    procs, members = cluster
    leader, follower = leader_and_follower(procs, members)
    n1 = members[0]
    learner = procs.member("infra4")
    typed = learner.peer_url

    # Add (transcript 04): the reply's members in the ETCD_* lines, etcdctl's own formatting.
    added = retry_ctl(n1, "member", "add", "infra4", f"--peer-urls={typed}", "--learner")
    assert added.code == 0, str(added)
    new_id = int(re.match(r"Member +([0-9a-f]+) added", added.stdout).group(1), 16)  # type: ignore[union-attr]
    after = procs.member_list(n1)
    reply = {**after, "member": {"ID": new_id, "peerURLs": [typed], "isLearner": True}}
    assert added.stdout == out.member_added(reply, "infra4", typed)
    entry = next(m for m in after["members"] if m["ID"] == new_id)
    assert entry == {"ID": new_id, "peerURLs": [typed], "isLearner": True}

    # The list with an unstarted learner, every format (transcript 04).
    t04 = json.loads(out.T04_JSON)
    assert member_skeletons(after) == member_skeletons(t04)
    assert n1.ctl("member", "list").stdout == out.simple_list(after)
    assert n1.ctl("member", "list", "-w", "table").stdout == out.table_list(after)
    assert n1.ctl("member", "list", "-w", "fields").stdout == out.fields_list(after)

    # A second learner: too many learners (05). Promoting the unstarted one: not ready (05, 16),
    # through the leader and through a follower (which forwards it).
    fresh = procs.member("l5").peer_url
    assert_error(
        retry_ctl(n1, "member", "add", "infra5", f"--peer-urls={fresh}", "--learner"),
        "FailedPrecondition",
        "etcdserver: too many learner members in cluster",
    )
    for via in (leader, follower):
        assert_error(
            via.ctl("member", "promote", f"{new_id:x}"),
            "FailedPrecondition",
            "etcdserver: can only promote a learner member which is in sync with leader",
        )

    # A voter add while the learner is unstarted names it "=url" (transcript 20), then remove it.
    voter = procs.member("v6")
    vadd = retry_ctl(n1, "member", "add", "v6", f"--peer-urls={voter.peer_url}")
    assert vadd.code == 0, str(vadd)
    vid = int(vadd.stdout.split()[1], 16)
    vreply = {**procs.member_list(n1), "member": {"ID": vid, "peerURLs": [voter.peer_url]}}
    assert vadd.stdout == out.member_added(vreply, "v6", voter.peer_url)
    assert re.search(f'[",]={re.escape(typed)}[",]', vadd.stdout), vadd.stdout
    cid = after["header"]["cluster_id"]
    removed = n1.ctl("member", "remove", f"{vid:x}")
    assert removed.stdout == out.changed("removed from", vid, cid), str(removed)

    # Update (transcript 10): simple output; -w json; -w fields refused with exit 4 after the
    # update was made. The learner flag survives (D2).
    two = sorted([procs.member("u1").peer_url, procs.member("u2").peer_url])
    updated = follower.ctl("member", "update", f"{new_id:x}", f"--peer-urls={','.join(two)}")
    assert updated.stdout == out.changed("updated in", new_id, cid), str(updated)
    listed = members_by_name(procs.member_list(n1))[""]
    assert (listed["peerURLs"], listed["isLearner"]) == (two, True)
    assert n1.ctl("member", "list").stdout == out.simple_list(procs.member_list(n1))
    as_json = n1.ctl("member", "update", f"{new_id:x}", f"--peer-urls={two[0]}", "-w", "json")
    assert as_json.code == 0, str(as_json)
    assert [k for k, _ in out.skeleton(as_json.json())] == ["header", "members"]
    assert as_json.json()["members"] == procs.member_list(n1)["members"]
    fields = n1.ctl("member", "update", f"{new_id:x}", f"--peer-urls={typed}", "-w", "fields")
    assert (fields.code, fields.stderr) == (4, "Error: fields not supported as output format\n")
    assert members_by_name(procs.member_list(n1))[""]["peerURLs"] == [typed]

    # Start it with the printed ETCD_* lines; it publishes and shows as started (16).
    procs.start(learner, cluster=None, state=None, env=out.etcd_env(added.stdout))
    wait_for(
        lambda: "infra4" in members_by_name(procs.member_list(n1)),
        10,
        "the learner to publish",
        learner.log_tail,
    )
    listing = procs.member_list(n1)
    started = members_by_name(listing)["infra4"]
    assert started == {
        "ID": new_id,
        "name": "infra4",
        "peerURLs": [typed],
        "clientURLs": [learner.client_url],
        "isLearner": True,
    }
    assert n1.ctl("member", "list", "-w", "table").stdout == out.table_list(listing)

    # The learner's endpoint (17): Cluster RPCs refused; Status served with isLearner.
    assert_error(
        learner.ctl("member", "add", "x", f"--peer-urls={procs.member('x').peer_url}"),
        "Unavailable",
        "etcdserver: rpc not supported for learner",
    )
    listed_on_learner = learner.ctl("member", "list", "--command-timeout=1s")
    warnings = [json.loads(x) for x in listed_on_learner.stderr.splitlines() if x.startswith("{")]
    # etcdctl retries MemberList (~100 times in 3.4); our short timeout ends it sooner, so the
    # attempt in flight then may report the deadline instead.
    refused = "rpc error: code = Unavailable desc = etcdserver: rpc not supported for learner"
    errors = [w["error"] for w in warnings]
    assert listed_on_learner.code == 1 and errors.count(refused) >= 2, str(listed_on_learner)
    assert set(errors[:-1]) == {refused}, str(listed_on_learner)
    status_result = learner.ctl("endpoint", "status", "-w", "json")
    assert status_result.code == 0 and status_result.json(), str(status_result)
    status = status_result.json()[0]["Status"]
    assert status["isLearner"] is True and status["header"]["member_id"] == new_id

    # Promote through a follower, polling as tools do (16, 22); then again: not a learner.
    promoted = retry_ctl(
        follower, "member", "promote", f"{new_id:x}", retry_on=("in sync with leader",)
    )
    assert promoted.stdout == out.changed("promoted in", new_id, cid), str(promoted)
    assert_error(
        n1.ctl("member", "promote", f"{new_id:x}"),
        "FailedPrecondition",
        "etcdserver: can only promote a learner member",
    )
    assert "isLearner" not in members_by_name(procs.member_list(learner))["infra4"]
    assert learner.ctl("member", "list").stdout == out.simple_list(procs.member_list(learner))

    # Remove (22): the member exits by itself; the removed ID is gone for good (11).
    gone = n1.ctl("member", "remove", f"{new_id:x}")
    assert gone.stdout == out.changed("removed from", new_id, cid), str(gone)
    procs.wait_exit(learner)
    assert "permanently removed" in learner.log()
    for via in (n1, follower):
        assert_error(
            via.ctl("member", "remove", f"{new_id:x}"), "NotFound", "etcdserver: member not found"
        )
        assert_error(
            via.ctl("member", "promote", f"{new_id:x}"), "NotFound", "etcdserver: member not found"
        )
        assert_error(
            via.ctl("member", "update", f"{new_id:x}", f"--peer-urls={typed}"),
            "NotFound",
            "etcdserver: member not found",
        )
    # A restart on its data dir is refused with a clear message (D5).
    procs.restart(learner, wait=False)
    assert procs.wait_exit(learner) != 0
    assert "was removed from the cluster" in learner.log().split("===")[-1]
    assert [m["name"] for m in procs.member_list(n1)["members"]] == [
        m["name"] for m in procs.member_list(follower)["members"]
    ]
    assert len(procs.member_list(n1)["members"]) == 3


def test_voter_add_start_and_remove(cluster: Cluster) -> None:
    procs, members = cluster
    n1 = members[0]
    voter = procs.member("infra5")
    added = retry_ctl(n1, "member", "add", "infra5", f"--peer-urls={voter.peer_url}")
    assert added.code == 0, str(added)
    new_id = int(added.stdout.split()[1], 16)
    after = procs.member_list(n1)
    reply = {**after, "member": {"ID": new_id, "peerURLs": [voter.peer_url]}}
    assert added.stdout == out.member_added(reply, "infra5", voter.peer_url)
    assert n1.ctl("member", "list").stdout == out.simple_list(after)
    assert f"{new_id:x}, unstarted, , {voter.peer_url}, , false\n" in out.simple_list(after)

    procs.start(voter, cluster=None, state=None, env=out.etcd_env(added.stdout))
    wait_for(
        lambda: "infra5" in members_by_name(procs.member_list(n1)),
        10,
        "the new voter to publish",
        voter.log_tail,
    )
    everyone = [*members, voter]
    assert procs.wait_leader(everyone)
    statuses = etcdctl([n1.endpoint], "endpoint", "status", "--cluster", "-w", "json").json()
    assert sorted(e["Status"]["header"]["member_id"] for e in statuses) == sorted(
        m["ID"] for m in procs.member_list(n1)["members"]
    )
    assert not any(e["Status"].get("isLearner") for e in statuses)

    gone = retry_ctl(n1, "member", "remove", f"{new_id:x}")
    assert gone.stdout == out.changed("removed from", new_id, after["header"]["cluster_id"])
    procs.wait_exit(voter)
    assert len(procs.member_list(n1)["members"]) == 3
