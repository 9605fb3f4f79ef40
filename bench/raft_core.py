"""Commits per second of the pure Raft core: 3 voters + 1 learner, in memory, no I/O.

Run: ``python -m bench.raft_core``. Each round proposes a batch on the leader, then moves Readies
and messages until every node has applied it. The figure is what the core itself costs per
committed entry, the ceiling under any real storage or network.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import replace

from raft import (
    Config,
    ConfState,
    MemoryStorage,
    Message,
    NodeId,
    RawNode,
    Role,
    bootstrap_snapshot,
)

VOTERS = (NodeId(1), NodeId(2), NodeId(3))
LEARNER = NodeId(4)


class InMemoryCluster:
    def __init__(self) -> None:
        base = bootstrap_snapshot(frozenset(VOTERS))
        conf = ConfState(voters=frozenset(VOTERS), learners=frozenset({LEARNER}))
        base = replace(base, metadata=replace(base.metadata, conf_state=conf))
        self.storages: dict[NodeId, MemoryStorage] = {}
        self.nodes: dict[NodeId, RawNode] = {}
        self.applied: dict[NodeId, int] = {}
        for node_id in (*VOTERS, LEARNER):
            storage = MemoryStorage()
            storage.apply_snapshot(base)
            config = Config(id=node_id, rng=random.Random(node_id), applied=base.metadata.index)
            self.storages[node_id] = storage
            self.nodes[node_id] = RawNode(config, storage)
            self.applied[node_id] = 0

    def pump(self) -> None:
        """Persist, send, apply, advance on every node until nothing moves."""
        inbox: list[Message] = []
        while True:
            moved = False
            for node_id, node in self.nodes.items():
                if not node.has_ready():
                    continue
                moved = True
                rd = node.ready()
                storage = self.storages[node_id]
                storage.append(rd.entries)
                if rd.hard_state is not None:
                    storage.set_hard_state(rd.hard_state)
                inbox.extend(rd.messages)
                self.applied[node_id] += len(rd.committed_entries)
                node.advance(rd)
            if inbox:
                moved = True
                batch, inbox = inbox, []
                for m in batch:
                    self.nodes[m.to].step(m)
            if not moved:
                return


def run(batch: int, seconds: float) -> float:
    cluster = InMemoryCluster()
    leader = cluster.nodes[VOTERS[0]]
    leader.campaign()
    cluster.pump()
    assert leader.raft.role is Role.LEADER
    payload = b"x" * 64
    committed = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(batch):
            leader.propose(payload)
        cluster.pump()
        committed += batch
    elapsed = time.perf_counter() - start
    assert all(count >= committed for count in cluster.applied.values())
    return committed / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print("raft core, 3 voters + 1 learner, in memory (entries committed and applied everywhere)")
    for batch in (1, 64):
        rate = run(batch, args.seconds)
        print(f"  batch {batch:>3}: {rate:>10,.0f} commits/s")


if __name__ == "__main__":
    main()
