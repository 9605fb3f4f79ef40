"""Small helpers shared by the feature and scenario tests (election, replication, membership,
transfer/ReadIndex, snapshots) on top of ``tests.raft.harness``.

Everything is driven by ticks and explicit message delivery; nothing reads a clock. The helpers
only observe the harness (``Cluster.delivered``, storage contents) or add drop rules to it; they
never reach into the core to change its state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TypeVar

from raft import Entry, Index, Message, MessageType, NodeId, Role
from raft.errors import CompactedError
from tests.raft.harness import Cluster, DropRule, SimNode


def node(cluster: Cluster, node_id: int) -> SimNode:
    return cluster.nodes[NodeId(node_id)]


def role(sim: SimNode) -> Role:
    """The node's current role (a call, so type checkers don't keep a stale narrowing)."""
    return sim.role


def mark(cluster: Cluster) -> int:
    """A position in ``cluster.delivered``; pass it to ``delivered_since``."""
    return len(cluster.delivered)


def delivered_since(
    cluster: Cluster,
    since: int,
    kind: MessageType | None = None,
    *,
    to: int | None = None,
    frm: int | None = None,
) -> list[Message]:
    """Messages delivered after ``since``, filtered by type and endpoints."""
    return [
        m
        for m in cluster.delivered[since:]
        if (kind is None or m.type is kind)
        and (to is None or m.to == to)
        and (frm is None or m.frm == frm)
    ]


class Dropper:
    """A drop rule (``Cluster.drop_rules``) that records what it dropped.

    It drops messages matching ``kind`` (any type if None), ``to`` and ``frm`` (a node id or a
    collection of ids; None for any), and ``where`` (an extra predicate), at most ``limit`` of them
    if a limit is given. Unlike ``Cluster.isolate``/``cut_link``, it sees the messages it drops, so
    a test can count what a node *tried* to send while cut off.
    """

    def __init__(
        self,
        kind: MessageType | Collection[MessageType] | None = None,
        *,
        to: int | Collection[int] | None = None,
        frm: int | Collection[int] | None = None,
        where: Callable[[Message], bool] | None = None,
        limit: int | None = None,
    ) -> None:
        self.kinds = _as_set(kind)
        self.to = _as_set(to)
        self.frm = _as_set(frm)
        self.where = where
        self.limit = limit
        self.dropped: list[Message] = []

    def matches(self, m: Message) -> bool:
        return (
            (self.kinds is None or m.type in self.kinds)
            and (self.to is None or m.to in self.to)
            and (self.frm is None or m.frm in self.frm)
            and (self.where is None or self.where(m))
        )

    def __call__(self, m: Message) -> bool:
        if self.limit is not None and len(self.dropped) >= self.limit:
            return False
        if self.matches(m):
            self.dropped.append(m)
            return True
        return False

    def of(self, kind: MessageType) -> list[Message]:
        return [m for m in self.dropped if m.type is kind]


def _as_set(value: object) -> frozenset[object] | None:
    if value is None:
        return None
    if isinstance(value, (int, MessageType)):
        return frozenset({value})
    assert isinstance(value, Collection)
    return frozenset(value)


RuleT = TypeVar("RuleT", bound=DropRule)


def add_rule(cluster: Cluster, rule: RuleT) -> RuleT:
    cluster.drop_rules.append(rule)
    return rule


def remove_rule(cluster: Cluster, rule: DropRule) -> None:
    cluster.drop_rules.remove(rule)


def cut_between(cluster: Cluster, a: int, b: int) -> Dropper:
    """Cut the link between ``a`` and ``b`` both ways with a recording drop rule."""
    rule = Dropper(where=lambda m: {m.to, m.frm} == {a, b})
    cluster.drop_rules.append(rule)
    return rule


def cut_off(cluster: Cluster, node_id: int) -> Dropper:
    """Isolate ``node_id`` with a recording drop rule (undo with ``remove_rule``)."""
    rule = Dropper(where=lambda m: node_id in (m.to, m.frm))
    cluster.drop_rules.append(rule)
    return rule


def tick_until(
    cluster: Cluster,
    done: Callable[[], bool],
    *,
    max_ticks: int,
    nodes: Iterable[int] | None = None,
) -> int:
    """Tick (and stabilize) until ``done()``; returns the ticks taken, fails after ``max_ticks``."""
    chosen = list(nodes) if nodes is not None else None
    for ticks in range(max_ticks + 1):
        if done():
            return ticks
        cluster.tick(1, nodes=chosen)
    raise AssertionError(f"condition not reached within {max_ticks} ticks")


def leader_among(cluster: Cluster, ids: Iterable[int]) -> SimNode | None:
    """The live leader of the highest term among ``ids``, if any."""
    leaders = [
        node(cluster, i)
        for i in ids
        if node(cluster, i).alive and node(cluster, i).role is Role.LEADER
    ]
    return max(leaders, key=lambda s: s.term) if leaders else None


def stored_entries(sim: SimNode) -> list[Entry]:
    """Every entry the node's durable storage holds (after its snapshot)."""
    first, last = sim.storage.first_index(), sim.storage.last_index()
    if last < first:
        return []
    return sim.storage.entries(first, Index(last + 1))


def log_terms(sim: SimNode) -> list[tuple[int, int]]:
    """(index, term) of every entry in the node's raft log (storage plus unstable tail)."""
    log = sim.raft.log
    out: list[tuple[int, int]] = []
    for index in range(log.first_index(), log.last_index() + 1):
        try:
            out.append((index, log.term(Index(index))))
        except CompactedError:  # pragma: no cover - first_index is never compacted
            continue
    return out


def data_entries(sim: SimNode) -> list[bytes]:
    """Data of the normal, non-empty entries in the node's raft log, in order."""
    log = sim.raft.log
    return [
        e.data
        for e in log.slice(log.first_index(), Index(log.last_index() + 1))
        if e.change is None and e.data
    ]
