"""scripts/compose-learner's decisions (add, rebuild, restart, refuse, retry) against scripted
``raftnode member`` answers; the real run is in tests/integration/test_compose_netns.py."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.compose_spec import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "compose-learner"
PEER = "http://node4:2380"
ENDPOINTS = "node1:2379,node2:2379,node3:2379"

VOTERS = """\
8e9e05c52164694d, started, node1, http://node1:2380, http://node1:2379, false
91bc3c398fb3c146, started, node2, http://node2:2380, http://node2:2379, false
fd422379fda50e48, started, node3, http://node3:2380, http://node3:2379, false
"""
UNSTARTED = "2ba8a6d8d0a6e14c, unstarted, , http://node4:2380, , true\n"
STARTED = "2ba8a6d8d0a6e14c, started, node4, http://node4:2380, http://node4:2379, true\n"
ADDED = """\
Member 2ba8a6d8d0a6e14c added to cluster cdf818194e3a8c32

ETCD_NAME="node4"
ETCD_INITIAL_CLUSTER="node1=http://node1:2380,node2=http://node2:2380,node3=http://node3:2380,node4=http://node4:2380"
ETCD_INITIAL_ADVERTISE_PEER_URLS="http://node4:2380"
ETCD_INITIAL_CLUSTER_STATE="existing"
"""


def load_script(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The script as a module (it has no .py suffix), registered while the test runs because
    dataclasses look their module up in sys.modules."""
    loader = importlib.machinery.SourceFileLoader("compose_learner", str(SCRIPT))
    spec = importlib.util.spec_from_loader("compose_learner", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "compose_learner", module)
    loader.exec_module(module)
    return module


class Ctl:
    """Scripted answers to ``raftnode member <command>``, taken in order per command."""

    def __init__(self, **answers: list[tuple[int, str]]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, endpoints: str, *args: str) -> subprocess.CompletedProcess[str]:
        assert endpoints == ENDPOINTS
        self.calls.append(args)
        code, out = self.answers[args[0]].pop(0)
        return subprocess.CompletedProcess(args, code, out if code == 0 else "", out)


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    module = load_script(monkeypatch)
    monkeypatch.setattr(module.time, "sleep", lambda _s: None)
    yield module


def test_a_fresh_member_is_added_as_a_learner_with_the_printed_variables(
    script: Any, tmp_path: Path
) -> None:
    ctl = Ctl(list=[(0, VOTERS)], add=[(0, ADDED)])
    script.ctl = ctl
    plan = script.prepare(ENDPOINTS, "node4", PEER, tmp_path)
    assert plan.member_id == "2ba8a6d8d0a6e14c"
    assert plan.needs_promotion
    assert plan.variables["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    assert plan.variables["ETCD_INITIAL_CLUSTER"].endswith(",node4=http://node4:2380")
    assert ctl.calls[1] == ("add", "node4", "--learner", f"--peer-urls={PEER}")


def test_an_id_shorter_than_16_hex_digits_is_read_despite_etcdctls_padding(
    script: Any, tmp_path: Path
) -> None:
    padded = ADDED.replace("Member 2ba8a6d8d0a6e14c", "Member  ba8a6d8d0a6e14c")  # %16x
    script.ctl = Ctl(list=[(0, VOTERS)], add=[(0, padded)])
    assert script.prepare(ENDPOINTS, "node4", PEER, tmp_path).member_id == "ba8a6d8d0a6e14c"


def test_a_data_dir_that_holds_a_member_is_just_started(script: Any, tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text("{}")
    script.ctl = Ctl(list=[(0, VOTERS + STARTED)])
    plan = script.prepare(ENDPOINTS, "node4", PEER, tmp_path)
    assert (plan.member_id, plan.variables, plan.needs_promotion) == ("2ba8a6d8d0a6e14c", {}, True)
    script.ctl = Ctl(list=[(0, VOTERS + STARTED.replace(", true", ", false"))])
    assert not script.prepare(ENDPOINTS, "node4", PEER, tmp_path).needs_promotion


def test_an_added_but_never_started_member_gets_the_variables_member_add_printed(
    script: Any, tmp_path: Path
) -> None:
    ctl = Ctl(list=[(0, VOTERS + UNSTARTED)])
    script.ctl = ctl
    plan = script.prepare(ENDPOINTS, "node4", PEER, tmp_path)
    printed = {
        line.split("=", 1)[0]: line.split("=", 1)[1].strip('"')
        for line in ADDED.splitlines()
        if line.startswith("ETCD_")
    }
    assert plan.variables == printed
    assert [call[0] for call in ctl.calls] == ["list"]  # no second add


def test_a_started_member_whose_data_is_gone_is_refused(script: Any, tmp_path: Path) -> None:
    script.ctl = Ctl(list=[(0, VOTERS + STARTED)])
    with pytest.raises(script.Refused, match="member remove 2ba8a6d8d0a6e14c"):
        script.prepare(ENDPOINTS, "node4", PEER, tmp_path)


def test_a_data_dir_of_a_member_the_cluster_does_not_know_is_refused(
    script: Any, tmp_path: Path
) -> None:
    (tmp_path / "meta.json").write_text("{}")
    script.ctl = Ctl(list=[(0, VOTERS)])
    with pytest.raises(script.Refused, match="no member has peer URL"):
        script.prepare(ENDPOINTS, "node4", PEER, tmp_path)


def test_join_retries_while_the_cluster_is_not_ready_and_finds_an_add_whose_answer_was_lost(
    script: Any, tmp_path: Path
) -> None:
    unhealthy = (1, "Error: etcdserver: unhealthy cluster")
    script.ctl = Ctl(
        list=[(0, VOTERS), (0, VOTERS), (0, VOTERS + UNSTARTED)],
        add=[unhealthy, (1, "Error: context deadline exceeded")],
    )
    plan = script.join(ENDPOINTS, "node4", PEER, tmp_path)
    assert plan.member_id == "2ba8a6d8d0a6e14c"
    assert plan.variables["ETCD_NAME"] == "node4"


def test_join_gives_up_with_the_last_answer(
    script: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAFTNODE_JOIN_TIMEOUT", "0")
    script.ctl = Ctl(list=[(1, "Error: context deadline exceeded")])
    with pytest.raises(script.Refused, match="within 0s: member list failed: .*deadline"):
        script.join(ENDPOINTS, "node4", PEER, tmp_path)


def test_unreadable_member_add_output_is_refused(script: Any, tmp_path: Path) -> None:
    script.ctl = Ctl(list=[(0, VOTERS)], add=[(0, "something else\n")])
    with pytest.raises(script.Refused, match="could not read"):
        script.prepare(ENDPOINTS, "node4", PEER, tmp_path)
