"""The strict reconfiguration checks of spec §3.4 (with its worked cases) and learner readiness."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from node.domain_errors import EtcdError, NotEnoughStarted, Unhealthy
from node.membership import (
    Member,
    Membership,
    check_add,
    check_promote_started,
    check_remove,
    learner_ready,
)

CLUSTER = 0x59A05384C9B79EE


@dataclass(frozen=True)
class Cluster:
    """A cluster drawn as letters, this node first.

    Voters: ``s`` started and connected for longer than HealthInterval, ``d`` started but down,
    ``u`` unstarted (never connected), ``n`` started and connected only recently (active, but
    not yet for HealthInterval). Learners: ``s`` started and connected, ``u`` unstarted.
    """

    voters: str
    learners: str = ""

    def ids(self, kind: str) -> list[int]:
        base = 0x100 if kind == "voter" else 0x200
        return [base + i for i in range(len(self.voters if kind == "voter" else self.learners))]

    @property
    def self_id(self) -> int:
        return self.ids("voter")[0]

    def membership(self) -> Membership:
        members = [
            Member(i, "" if c == "u" else f"v{n}", (f"http://127.0.0.1:{i}",))
            for n, (i, c) in enumerate(zip(self.ids("voter"), self.voters, strict=True))
        ]
        members += [
            Member(i, "" if c == "u" else f"l{n}", (f"http://127.0.0.1:{i}",), is_learner=True)
            for n, (i, c) in enumerate(zip(self.ids("learner"), self.learners, strict=True))
        ]
        return Membership(CLUSTER, tuple(members))

    def connected(self) -> set[int]:
        """Connected for at least HealthInterval; learners included, as a transport sees them."""
        voters = {i for i, c in zip(self.ids("voter"), self.voters, strict=True) if c == "s"}
        learners = {i for i, c in zip(self.ids("learner"), self.learners, strict=True) if c == "s"}
        return voters | learners

    def active(self, target: int) -> bool:
        """The transport has an active connection to `target`, however recent."""
        for i, c in zip(self.ids("voter"), self.voters, strict=True):
            if i == target:
                return c in "sn"
        for i, c in zip(self.ids("learner"), self.learners, strict=True):
            if i == target:
                return c == "s"
        return False


UNKNOWN = 0x999


def run(cluster: Cluster, op: str) -> None:
    """Run one check. ``op``: add-voter, add-learner, promote, remove-v<i>, remove-l<i>,
    remove-unknown."""
    m, self_id, connected = cluster.membership(), cluster.self_id, cluster.connected()
    if op == "add-voter":
        check_add(m, False, self_id, connected)
    elif op == "add-learner":
        check_add(m, True, self_id, connected)
    elif op == "promote":
        check_promote_started(m, cluster.ids("learner")[0])
    elif op.startswith("remove-"):
        which = op.removeprefix("remove-")
        if which == "unknown":
            target = UNKNOWN
        else:
            target = cluster.ids("voter" if which[0] == "v" else "learner")[int(which[1:])]
        check_remove(m, target, self_id, connected, cluster.active(target))
    else:
        raise AssertionError(op)


# (situation, cluster, operation, expected error or None). The first block is spec §3.4's
# worked-cases table, row by row, in raftnode's column.
WORKED_CASES = [
    ("3 voters, 1 down: add voter (c=2 < 3)", Cluster("ssd"), "add-voter", Unhealthy),
    ("3 voters, 1 down: add learner (c=2 >= 2, D8)", Cluster("ssd"), "add-learner", None),
    ("3 voters, 1 down: remove a live voter", Cluster("ssd"), "remove-v1", Unhealthy),
    ("3 voters, 1 down: remove the down one", Cluster("ssd"), "remove-v2", None),
    ("5 voters, 1 down: add voter (c=4 >= 4)", Cluster("ssssd"), "add-voter", None),
    ("5 voters, 1 down: add learner", Cluster("ssssd"), "add-learner", None),
    ("3 started + 1 unstarted voter: add learner", Cluster("sssu"), "add-learner", None),
    ("3 started + 1 unstarted voter: add voter", Cluster("sssu"), "add-voter", None),
    ("1 started + 1 unstarted: add voter", Cluster("su"), "add-voter", NotEnoughStarted),
    ("1 started + 1 unstarted: add learner", Cluster("su"), "add-learner", Unhealthy),
    ("1 started + 1 unstarted: remove the started", Cluster("su"), "remove-v0", NotEnoughStarted),
    ("1 started + 1 unstarted: remove the unstarted", Cluster("su"), "remove-v1", None),
    ("first 5 s after connecting: add voter", Cluster("snn"), "add-voter", Unhealthy),
    ("first 5 s after connecting: add learner", Cluster("snn"), "add-learner", Unhealthy),
]

RULE_CASES = [
    # add voter, started: pass if s = 1 and n = 2, else s >= n//2 + 1.
    ("one voter grows to two", Cluster("s"), "add-voter", None),
    ("one voter adds a learner", Cluster("s"), "add-learner", None),
    (
        "2 started + 1 unstarted: add voter (n=4, s=2 < 3)",
        Cluster("ssu"),
        "add-voter",
        NotEnoughStarted,
    ),
    (
        "2 started + 2 unstarted: add voter (n=5, s=2 < 3)",
        Cluster("ssuu"),
        "add-voter",
        NotEnoughStarted,
    ),
    ("started is checked before connectivity", Cluster("sud"), "add-voter", NotEnoughStarted),
    ("2 voters both up: add voter (c=2 >= 2)", Cluster("ss"), "add-voter", None),
    ("2 voters, 1 down: add learner (c=1 < 2)", Cluster("sd"), "add-learner", Unhealthy),
    ("4 voters, 1 down: add voter (c=3 >= 3)", Cluster("sssd"), "add-voter", None),
    ("4 voters, 2 down: add learner (c=2 < 3)", Cluster("ssdd"), "add-learner", Unhealthy),
    ("learners never count as connected", Cluster("sdd", "s"), "add-learner", Unhealthy),
    ("unstarted learners don't count as started", Cluster("s", "u"), "add-voter", None),
    # remove: a learner needs no check at all.
    ("remove a learner of a broken cluster", Cluster("sdu", "u"), "remove-l0", None),
    # remove voter X, started among the others.
    ("3 voters: remove one (others 2 of 2 started)", Cluster("sss"), "remove-v1", None),
    (
        "2 started + 1 unstarted: remove a started one",
        Cluster("ssu"),
        "remove-v1",
        NotEnoughStarted,
    ),
    ("3 started + 1 unstarted: remove a started one", Cluster("sssu"), "remove-v1", None),
    ("1 started + 2 unstarted: remove the started", Cluster("suu"), "remove-v0", NotEnoughStarted),
    # remove voter X, connectivity.
    ("remove this node, all up (a-1=2 >= 2)", Cluster("sss"), "remove-v0", None),
    ("remove this node, 1 down (a-1=1 < 2)", Cluster("ssd"), "remove-v0", Unhealthy),
    (
        "remove a recently connected voter (active, a-1=0 < 2)",
        Cluster("snn"),
        "remove-v1",
        Unhealthy,
    ),
    ("5 voters, 1 down: remove a live one (a-1=3 >= 3)", Cluster("ssssd"), "remove-v1", None),
    ("5 voters, 2 down: remove a live one (a-1=2 < 3)", Cluster("sssdd"), "remove-v1", Unhealthy),
    # remove an unknown ID: no voter is "X", so all voters count for started; never active.
    ("remove an unknown ID, healthy", Cluster("sss"), "remove-unknown", None),
    ("remove an unknown ID, 1 down", Cluster("ssd"), "remove-unknown", None),
    ("remove an unknown ID, 1 of 2 started", Cluster("su"), "remove-unknown", NotEnoughStarted),
    # promote: n = voters + 1, s = started voters + 1.
    ("promote with 1 started voter", Cluster("s", "s"), "promote", None),
    ("promote with 1 started + 1 unstarted (s=2 >= 2)", Cluster("su", "u"), "promote", None),
    (
        "promote with 1 started + 2 unstarted (s=2 < 3)",
        Cluster("suu", "s"),
        "promote",
        NotEnoughStarted,
    ),
    ("promote ignores connectivity", Cluster("sdd", "s"), "promote", None),
]


@pytest.mark.parametrize(
    ("situation", "cluster", "op", "error"),
    WORKED_CASES + RULE_CASES,
    ids=[c[0] for c in WORKED_CASES + RULE_CASES],
)
def test_strict_checks(
    situation: str, cluster: Cluster, op: str, error: type[EtcdError] | None
) -> None:
    if error is None:
        run(cluster, op)
    else:
        with pytest.raises(error):
            run(cluster, op)


def test_this_node_counts_whether_or_not_it_is_in_connected():
    m = Cluster("sss").membership()
    self_id, peer = Cluster("sss").self_id, Cluster("sss").ids("voter")[1]
    check_add(m, True, self_id, {peer})
    check_add(m, True, self_id, {self_id, peer})
    with pytest.raises(Unhealthy):
        check_add(m, True, self_id, set())


def test_ids_that_are_not_voters_in_connected_are_ignored():
    m = Cluster("sdd").membership()
    with pytest.raises(Unhealthy):
        check_add(m, True, Cluster("sdd").self_id, {0x777, 0x888})


# ---- Learner readiness (spec §3.10) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("learner_match", "leader_match", "ready"),
    [
        (0, 0, True),
        (0, 10, False),  # an unstarted learner has Match 0
        (9, 10, True),  # exactly 90 %
        (8, 10, False),
        (90, 100, True),
        (89, 100, False),
        (899, 1000, False),
        (900, 1000, True),
        (12, 11, True),  # ahead of the leader's own Match (the leader's tail not yet persisted)
        (2312, 2312, True),
    ],
)
def test_learner_ready(learner_match: int, leader_match: int, ready: bool) -> None:
    assert learner_ready(learner_match, leader_match) is ready
