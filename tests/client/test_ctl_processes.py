"""``raftnode member|endpoint`` against a live cluster, side by side with Debian's etcdctl 3.4
(layer f). Reads are compared byte for byte with etcdctl's output for the same cluster state;
mutations (which cannot be run twice) with the transcript-checked model of
``tests.compat.etcdctl_output`` rendering the state etcdctl then reads. Errors: the same last
stderr line (``Error: ...``) and the same exit code as etcdctl.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.compat import etcdctl_output as model
from tests.procs import (
    Member,
    Procs,
    Result,
    etcdctl,
    etcdctl_raw,
    free_port,
    require_etcdctl,
    run,
    wait_for,
)

pytestmark = pytest.mark.slow

Cluster = tuple[Procs, list[Member]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_etcdctl()
    with Procs(tmp_path_factory.mktemp("ctl")) as procs:
        members = procs.start_cluster("infra1", "infra2", "infra3")
        procs.wait_leader(members)
        yield procs, members


def raftnode(endpoints: list[str], *args: str) -> Result:
    return run([sys.executable, "-m", "node", *args, f"--endpoints={','.join(endpoints)}"])


def both(endpoints: list[str], *args: str) -> tuple[Result, Result]:
    return raftnode(endpoints, *args), etcdctl(endpoints, *args)


def same_output(endpoints: list[str], *args: str) -> tuple[Result, Result] | None:
    """Both tools' results when they printed the same, else None (the state moved: retry)."""
    ours, theirs = both(endpoints, *args)
    assert ours.code == theirs.code == 0, f"{ours}\n{theirs}"
    return (ours, theirs) if (ours.stdout, ours.stderr) == (theirs.stdout, theirs.stderr) else None


def assert_same_everywhere(endpoints: list[str], *args: str) -> None:
    wait_for(lambda: same_output(endpoints, *args), 10, f"identical output of {args}")


def member_list(member: Member) -> dict[str, Any]:
    result = member.ctl("member", "list", "-w", "json")
    assert result.code == 0, str(result)
    reply: dict[str, Any] = result.json()
    return reply


# ---- reads, byte for byte ----------------------------------------------------------------------


@pytest.mark.parametrize("write_out", ["simple", "table", "json", "fields"])
def test_member_list_prints_what_etcdctl_prints(cluster: Cluster, write_out: str) -> None:
    _, members = cluster
    for m in members:
        assert_same_everywhere([m.endpoint], "member", "list", "-w", write_out)


def test_member_list_protobuf_is_the_reply_itself(cluster: Cluster) -> None:
    _, members = cluster
    ours = run(
        [sys.executable, "-m", "node", "member", "list", "-w", "protobuf",
         f"--endpoints={members[0].endpoint}"],
        text=False,
    )  # fmt: skip
    assert ours.code == 0
    assert bytes.fromhex(ours.stdout) == etcdctl_raw(
        [members[0].endpoint], "member", "list", "-w", "protobuf"
    )


@pytest.mark.parametrize("write_out", ["simple", "table", "json", "fields"])
def test_endpoint_status_prints_what_etcdctl_prints(cluster: Cluster, write_out: str) -> None:
    _, members = cluster
    assert_same_everywhere([m.endpoint for m in members], "endpoint", "status", "-w", write_out)
    assert_same_everywhere([members[1].endpoint], "endpoint", "status", "--cluster")


def _without_durations(text: str) -> str:
    return re.sub(r"[0-9.]+(ns|µs|ms|s)\b", "<took>", text)


@pytest.mark.parametrize("write_out", ["simple", "table", "json"])
def test_endpoint_health_prints_what_etcdctl_prints(cluster: Cluster, write_out: str) -> None:
    _, members = cluster
    endpoints = [members[0].endpoint]  # one endpoint: etcdctl prints in completion order
    ours, theirs = both(endpoints, "endpoint", "health", "-w", write_out)
    assert ours.code == theirs.code == 0, f"{ours}\n{theirs}"
    if write_out == "table":  # the TOOK column's width follows the duration's length
        ours_text, theirs_text = (re.sub(r"[ -]+", " ", r.stdout) for r in (ours, theirs))
    else:
        ours_text, theirs_text = ours.stdout, theirs.stdout
    assert _without_durations(ours_text) == _without_durations(theirs_text)
    assert _without_durations(ours.stderr) == _without_durations(theirs.stderr)


def test_a_member_that_is_down(cluster: Cluster) -> None:
    procs, members = cluster
    down = f"127.0.0.1:{free_port()}"
    ours = raftnode([down, members[0].endpoint], "endpoint", "health")
    assert ours.code == 1
    assert f"{members[0].endpoint} is healthy: successfully committed proposal" in ours.stderr
    assert f"{down} is unhealthy: failed to commit proposal: " in ours.stderr
    assert ours.error == "Error: unhealthy cluster"
    status = raftnode([down, members[0].endpoint], "endpoint", "status")
    assert status.code == 1 and f"Failed to get the status of endpoint {down} (" in status.stderr
    assert status.stdout.startswith(f"{members[0].endpoint}, ")
    # MemberList moves on to the next endpoint.
    listed = raftnode([down, members[0].endpoint], "member", "list", "-w", "json")
    assert listed.code == 0 and listed.json() == member_list(members[0])


# ---- errors: the same message and exit code ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("member", "remove", "zz"),
        ("member", "remove", "10000000000000000"),
        ("member", "remove"),
        ("member", "promote"),
        ("member", "update", "1234"),
        ("member", "add"),
        ("member", "add", "bad"),
        ("member", "add", "a", "b", "http://x"),
        ("member", "add", "bad", "--peer-urls=foo"),
        ("member", "add", "bad", "--peer-urls=http://127.0.0.1"),
        ("member", "add", "bad", "--peer-urls=http://127.0.0.1:1/path"),
        ("member", "remove", "1234"),
        ("member", "promote", "1234"),
        ("member", "update", "1234", "--peer-urls=http://127.0.0.1:62380"),
        ("member", "list", "-w", "yaml"),
    ],
    ids=" ".join,
)
def test_errors_match_etcdctl(cluster: Cluster, args: tuple[str, ...]) -> None:
    _, members = cluster
    ours, theirs = both([members[0].endpoint], *args)
    assert (ours.code, ours.error) == (theirs.code, theirs.error), f"{ours}\n{theirs}"
    assert ours.stdout == ""


def test_server_rejections_match_etcdctl(cluster: Cluster) -> None:
    _, members = cluster
    reply = member_list(members[0])
    voter = f"{reply['members'][0]['ID']:x}"
    taken = members[1].peer_url
    # Another member than the one whose URL is taken (updating a member to its own URL is fine).
    other = next(m for m in reply["members"] if taken not in m.get("peerURLs", []))
    for args in (
        ("member", "promote", voter),
        ("member", "add", "dup", f"--peer-urls={taken}"),
        ("member", "add", "dup", f"--peer-urls={taken}", "--learner"),
        ("member", "update", f"{other['ID']:x}", f"--peer-urls={taken}"),
    ):
        ours, theirs = both([members[0].endpoint], *args)
        assert (ours.code, ours.error) == (theirs.code, theirs.error), f"{ours}\n{theirs}"
        assert ours.error.startswith("Error: etcdserver: ")


# ---- the learner lifecycle, as an operator runs it ----------------------------------------------


def test_add_start_promote_update_remove_a_learner(cluster: Cluster) -> None:
    procs, members = cluster
    n1 = members[0]
    endpoints = [m.endpoint for m in members]
    learner = procs.member("infra4")

    def add() -> Result | None:
        result = raftnode(endpoints, "member", "add", "infra4", f"--peer-urls={learner.peer_url}",
                          "--learner")  # fmt: skip
        return None if "unhealthy cluster" in result.stderr else result

    added = wait_for(add, 15, "the learner add")
    assert added.code == 0, str(added)
    after = member_list(n1)
    new = next(m for m in after["members"] if learner.peer_url in m.get("peerURLs", []))
    reply = {"header": after["header"], "member": new, "members": after["members"]}
    assert added.stdout == model.member_added(reply, "infra4", learner.peer_url)
    assert added.stderr == ""
    new_id = f"{new['ID']:x}"
    try:
        # The ETCD_* lines start the new member as they are (spec §5.3).
        procs.start(learner, cluster=None, state=None, env=model.etcd_env(added.stdout))

        def promote() -> Result | None:
            result = raftnode(endpoints, "member", "promote", new_id)
            return None if "in sync with leader" in result.stderr else result

        promoted = wait_for(promote, 30, "the learner to be promotable")
        cluster_id = after["header"]["cluster_id"]
        assert (promoted.code, promoted.stdout) == (
            0,
            model.changed("promoted in", new["ID"], cluster_id),
        )
        ours, theirs = both(endpoints, "member", "promote", new_id)
        assert (ours.code, ours.error) == (theirs.code, theirs.error)
        assert ours.error == "Error: etcdserver: can only promote a learner member"

        # -w fields cannot print an update: exit 4, after the update was made (transcript 10).
        new_peer = f"http://127.0.0.1:{free_port()}"
        updated = raftnode(endpoints, "member", "update", new_id, f"--peer-urls={new_peer}",
                           "-w", "fields")  # fmt: skip
        assert (updated.code, updated.error) == (4, "Error: fields not supported as output format")
        listed = next(m for m in member_list(n1)["members"] if m["ID"] == new["ID"])
        assert listed["peerURLs"] == [new_peer]
        back = raftnode(endpoints, "member", "update", new_id, f"--peer-urls={learner.peer_url}",
                        "-w", "json")  # fmt: skip
        assert back.code == 0 and back.json()["members"] == member_list(n1)["members"]
    finally:
        removed = raftnode(endpoints, "member", "remove", new_id)
        if learner.running:
            procs.wait_exit(learner)
    assert removed.code == 0, str(removed)
    assert removed.stdout == model.changed("removed from", new["ID"], after["header"]["cluster_id"])
