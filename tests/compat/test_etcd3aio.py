"""The ``etcd3aio`` Python client (grpcio) against a live raftnode cluster (issue 4, item 7).

etcd3aio brings its own generated ``etcdserverpb``, so it runs out of process through
``tests/compat/etcd3aio_client.py`` (spec §11, pitfall 10). It sends MemberList with
``linearizable=true`` (the 3.5 field), so that path is exercised as well.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.procs import REQUEST_TIMEOUT_S, Member, Procs, run, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Any) -> Iterator[tuple[Procs, list[Member]]]:
    with Procs(tmp_path) as procs:
        members = procs.start_cluster("a1", "a2", "a3")
        yield procs, members


def client(member: Member, *args: str) -> dict[str, Any]:
    """One etcd3aio call in a child process; its JSON outcome."""
    result = run(
        [sys.executable, "-m", "tests.compat.etcd3aio_client", member.endpoint, *args],
        timeout=60,
    )
    if result.code == 2:
        pytest.skip(f"etcd3aio is not installed (pip install -e '.[test]'): {result.stdout}")
    assert result.code == 0, str(result)
    outcome: dict[str, Any] = json.loads(result.stdout)
    return outcome


def ok(outcome: dict[str, Any]) -> dict[str, Any]:
    assert outcome["ok"], outcome
    reply: dict[str, Any] = outcome["resp"]
    return reply


def test_list_add_learner_promote_remove(cluster: tuple[Procs, list[Member]]) -> None:
    procs, members = cluster
    a1, a2, _ = members
    listed = ok(client(a1, "list"))
    assert [m["name"] for m in listed["members"]] and all(
        m["name"] and m["clientURLs"] and not m["isLearner"] for m in listed["members"]
    )
    assert [m["ID"] for m in listed["members"]] == sorted(m["ID"] for m in listed["members"])
    cluster_id = listed["header"]["cluster_id"]

    # Add a learner; wait_for retries while the strict check still finds the peers too fresh.
    learner = procs.member("a4")
    added = wait_for(
        lambda: (o := client(a1, "add-learner", learner.peer_url))["ok"] and o,
        REQUEST_TIMEOUT_S,
        "the learner add to pass the strict checks",
    )["resp"]
    new_id = added["member"]["ID"]
    assert added["member"] == {
        "ID": new_id,
        "name": "",
        "peerURLs": [learner.peer_url],
        "clientURLs": [],
        "isLearner": True,
    }
    assert added["header"]["cluster_id"] == cluster_id
    assert new_id in [m["ID"] for m in added["members"]]

    # Refusals arrive with etcd's codes and texts.
    refused = client(a2, "promote", str(new_id))
    assert (refused["ok"], refused["code"]) == (False, "FAILED_PRECONDITION"), refused
    assert refused["message"] == (
        "etcdserver: can only promote a learner member which is in sync with leader"
    )
    bad = client(a1, "update", str(new_id), "foo")
    assert (bad["code"], bad["message"]) == (
        "INVALID_ARGUMENT",
        "etcdserver: given member URLs are invalid",
    )  # D1: validated before Raft (etcdctl 3.4 refuses such URLs itself)
    missing = client(a1, "remove", "4660")
    assert (missing["code"], missing["message"]) == ("NOT_FOUND", "etcdserver: member not found")

    # Start the learner, promote it once it has caught up, then remove it.
    cluster_flag = ",".join(
        [f"{m['name']}={m['peerURLs'][0]}" for m in listed["members"]] + [f"a4={learner.peer_url}"]
    )
    procs.start(learner, cluster_flag, state="existing")
    promoted = ok(client(a2, "promote", str(new_id), "--until-ready", str(REQUEST_TIMEOUT_S)))
    entry = next(m for m in promoted["members"] if m["ID"] == new_id)
    assert (entry["name"], entry["isLearner"]) == ("a4", False)
    assert ok(client(learner, "list"))["header"]["member_id"] == new_id

    remaining = ok(client(a1, "remove", str(new_id)))
    assert new_id not in [m["ID"] for m in remaining["members"]]
    assert len(remaining["members"]) == 3
    procs.wait_exit(learner)
    again = client(a2, "promote", str(new_id))
    assert (again["code"], again["message"]) == ("NOT_FOUND", "etcdserver: member not found")
