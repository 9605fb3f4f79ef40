"""The seeded fault schedule: one fault at a time, held for a while, then healed.

The seed fixes the sequence of fault kinds, their durations and the pauses between them; the
targets depend on the run (who leads when the fault starts), drawn from the same seeded RNG.
Each `Fault` records when it started and healed; the report derives the recovery time (healed ->
the next acknowledged mutation) from the workload's completions.

Faults: SIGKILL + restart, SIGSTOP/SIGCONT, isolating the leader, isolating a follower, a
majority/minority split (2/1 for three members), a slow member, removing the leader (a recorded
MemberRemove), and adding a member that never starts (a recorded learner MemberAdd whose URL
nobody serves; the workload removes it later).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

from tests.fault.cluster import Cluster
from tests.fault.cluster import Member as Proc
from tests.fault.workload import Workload

KINDS = (
    "kill",
    "pause",
    "isolate-leader",
    "isolate-follower",
    "split",
    "slow",
    "remove-leader",
    "add-unstarted",
)
MIN_HOLD_S, MAX_HOLD_S = 2.0, 6.0
MIN_QUIET_S, MAX_QUIET_S = 2.0, 5.0


@dataclass
class Fault:
    kind: str
    target: str
    start: float
    healed: float | None = None
    note: str = ""


class Nemesis:
    def __init__(self, cluster: Cluster, workload: Workload, rng: random.Random) -> None:
        self.cluster = cluster
        self.workload = workload
        self.rng = rng
        self.faults: list[Fault] = []
        self.current: Fault | None = None
        self.last_leader = ""

    def members(self) -> list[Proc]:
        """Running members that are still in the cluster (as last seen)."""
        present = {m.id for m in self.workload.view}
        return [p for p in self.cluster.live() if not p.removed and p.member_id in present]

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(MIN_QUIET_S, MAX_QUIET_S))
            if time.monotonic() >= until:
                break
            kind = self.rng.choice(KINDS)
            hold = self.rng.uniform(MIN_HOLD_S, MAX_HOLD_S)
            await self.inject(kind, min(hold, max(until - time.monotonic(), 0.5)))

    async def inject(self, kind: str, hold: float) -> None:
        leader = await self.workload.leader()
        self.last_leader = leader.name if leader else ""
        members = self.members()
        followers = [p for p in members if p is not leader]
        net = self.cluster.network
        fault = Fault(kind, "", time.monotonic())
        self.current = fault
        self.faults.append(fault)
        try:
            if kind == "kill" and members:
                target = self.rng.choice(members)
                fault.target = target.name
                self.cluster.kill(target)
                await asyncio.sleep(hold)
                self.cluster.restart(target)
            elif kind == "pause" and members:
                target = self.rng.choice(members)
                fault.target = target.name
                self.cluster.pause(target)
                await asyncio.sleep(hold)
                self.cluster.resume(target)
            elif kind == "isolate-leader" and leader is not None:
                fault.target = leader.name
                await net.isolate(leader.name)
                await asyncio.sleep(hold)
            elif kind == "isolate-follower" and followers:
                target = self.rng.choice(followers)
                fault.target = target.name
                await net.isolate(target.name)
                await asyncio.sleep(hold)
            elif kind == "split" and len(members) >= 2:
                shuffled = self.rng.sample(members, len(members))
                minority = shuffled[: (len(members) - 1) // 2 or 1]
                fault.target = "|".join(p.name for p in minority)
                await net.partition([[p.name for p in minority]])
                await asyncio.sleep(hold)
            elif kind == "slow" and members:
                target = self.rng.choice(members)
                fault.target = target.name
                await net.slow(target.name)
                await asyncio.sleep(hold)
            elif kind == "remove-leader" and leader is not None:
                fault.target = leader.name
                fault.note = await self.remove_leader(leader)
            elif kind == "add-unstarted":
                op = await self.workload.add_unstarted("nemesis")
                fault.target = f"#{op.index}"
                fault.note = str(op.outcome)
            else:
                fault.note = "skipped: no target"
        finally:
            await net.heal()
            fault.healed = time.monotonic()
            self.current = None

    async def remove_leader(self, leader: Proc) -> str:
        """Add a voter first when removing the leader would leave fewer than --nodes voters."""
        if len(self.workload.voters()) <= self.workload.nodes:
            added = await self.workload.add_started("nemesis", learner=False)
            if str(added.outcome) != "ok":
                return f"replacement add {added.outcome}: {added.error}"
            proc = self.cluster.by_id(added.member_id or 0)
            if proc is None or not await self.cluster.wait_serving(proc, 20):
                return "replacement did not start"
        op = await self.workload.remove("nemesis", leader.member_id)
        return f"remove {op.outcome} {op.error}".strip()
