"""Concurrent clients doing membership changes through the real gRPC API, every call recorded.

Rules that keep the history checkable and the cluster able to make progress:

* ops name only IDs learned from replies and lists (the latest one seen is ``view``);
* every peer URL is new: an add of a member that starts gets a fresh host (netns) or proxy port;
  an update of a running member gets a variant of its URL (``?v=N``) that still reaches it; a
  member that never starts gets a URL nobody serves;
* an added member that starts is started by the runner once its add is acknowledged (fresh data
  dir, ``--initial-cluster-state existing``, the initial cluster built from the add's reply, as
  etcdctl prints it), and learners are promoted later;
* voters are removed only while more than ``--nodes`` of them exist (add before removing); at most
  one learner exists (the node's ``max learners`` is 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.client import ClientError, ClusterClient, Member, Status
from tests.fault.cluster import Cluster
from tests.fault.cluster import Member as Proc
from tests.fault.history import History, Kind, Members, MemberView, Op, Outcome, members_of

#: Client deadline per call: longer than the node's own ReqTimeout (5 s + 2 × 1 s election), so
#: the node's timeout answers come back instead of our deadline where possible.
CALL_TIMEOUT_S = 9.0
#: How long an added member may take to join and serve clients.
JOIN_BOUND_S = 20.0


def views(members: Sequence[Member]) -> Members:
    return members_of(MemberView(m.id, m.peer_urls, m.is_learner) for m in members)


def initial_cluster_line(members: Sequence[Member], new_id: int, new_name: str) -> str:
    """``ETCD_INITIAL_CLUSTER`` as etcdctl builds it from a MemberAdd reply (spec §5.3)."""
    parts = []
    for m in members:
        name = new_name if m.id == new_id else m.name
        parts += [f"{name}={url}" for url in m.peer_urls]
    return ",".join(parts)


@dataclass
class Stats:
    ops: Counter[tuple[str, str]] = field(default_factory=Counter)
    errors: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Completion times of acknowledged mutations (for recovery times).
    mutation_oks: list[float] = field(default_factory=list)


class Workload:
    def __init__(
        self,
        cluster: Cluster,
        history: History,
        rng: random.Random,
        nodes: int,
        workers: int = 3,
    ) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = rng
        self.nodes = nodes
        self.workers = workers
        self.stats = Stats()
        self.view: Members = ()
        self.serial = 0
        self.stopping = False
        self.clients: dict[str, ClusterClient] = {}
        self.tasks: list[asyncio.Task[None]] = []
        #: Members added so that they never start (the nemesis asks for them).
        self.unstarted: set[int] = set()
        #: Added members still starting: mutations wait (see `add_started`).
        self.joining = 0

    # ---- plumbing ---------------------------------------------------------------------------

    def client(self, endpoint: str) -> ClusterClient:
        if endpoint not in self.clients:
            self.clients[endpoint] = ClusterClient([endpoint], timeout=CALL_TIMEOUT_S)
        return self.clients[endpoint]

    def endpoints(self, voters_only: bool = True) -> list[str]:
        """Endpoints of running members that (as far as we know) serve Cluster RPCs."""
        learners = {m.id for m in self.view if m.is_learner}
        return [
            p.endpoint
            for p in self.cluster.members.values()
            if p.running
            and p.serving
            and not p.removed
            and not (voters_only and p.member_id in learners)
        ]

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    async def call(
        self,
        process: str,
        kind: Kind,
        run: Callable[[ClusterClient], Awaitable[Any]],
        endpoint: str | None = None,
        **args: Any,
    ) -> tuple[Op, Any]:
        """Run one recorded call; classify its outcome; learn from its reply."""
        endpoints = self.endpoints()
        endpoint = endpoint or (self.rng.choice(endpoints) if endpoints else "")
        op = self.history.invoke(process, kind, endpoint=endpoint, **args)
        if not endpoint:
            done = self.history.complete(op, Outcome.FAIL, error="no endpoint")
            self.stats.ops[(str(kind), "fail")] += 1
            return done, None
        try:
            reply = await run(self.client(endpoint))
        except ClientError as exc:
            outcome = (
                Outcome.FAIL if exc.definitely_failed or kind is Kind.LIST else Outcome.AMBIGUOUS
            )
            done = self.history.complete(op, outcome, error=exc.message or type(exc).__name__)
            self._count(done)
            return done, None
        except (OSError, TimeoutError) as exc:
            outcome = Outcome.FAIL if kind is Kind.LIST else Outcome.AMBIGUOUS
            done = self.history.complete(op, outcome, error=f"{type(exc).__name__}: {exc}")
            self._count(done)
            return done, None
        members = reply.members if hasattr(reply, "members") else reply
        result: dict[str, Any] = {"members": views(members)}
        if kind is Kind.ADD:
            result["member_id"] = reply.member.id
        done = self.history.complete(op, Outcome.OK, **result)
        self._count(done)
        if kind is not Kind.LIST:
            self.stats.mutation_oks.append(done.complete or 0.0)
        self.learn(done)
        return done, reply

    def _count(self, op: Op) -> None:
        self.stats.ops[(str(op.kind), str(op.outcome))] += 1
        if op.error:
            self.stats.errors[(str(op.kind), op.error)] += 1

    def learn(self, op: Op) -> None:
        """Take the reply's members as the current view (a serializable list may be stale: ops
        built on it can fail, which is fine); an authoritative list also tells which of our
        processes were removed (they exit by themselves)."""
        if op.members is None:
            return
        self.view = op.members
        if op.kind is not Kind.LIST or op.linearizable:
            present = {m.id for m in op.members}
            for proc in self.cluster.members.values():
                if proc.member_id and proc.member_id not in present:
                    proc.removed = True

    # ---- the ops ----------------------------------------------------------------------------

    async def member_list(
        self, process: str, linearizable: bool, endpoint: str | None = None
    ) -> Op:
        op, _ = await self.call(
            process,
            Kind.LIST,
            lambda c: c.member_list(linearizable),
            endpoint=endpoint,
            linearizable=linearizable,
        )
        return op

    async def add_started(self, process: str, learner: bool) -> Op:
        """Add a member on a fresh host, and start it once the add is acknowledged."""
        proc = await self.cluster.new_member()
        urls = (proc.placement.advertised_peer_url,)
        op, reply = await self.call(
            process,
            Kind.ADD,
            lambda c: c.member_add(urls, learner=learner),
            peer_urls=urls,
            learner=learner,
        )
        if op.outcome is Outcome.OK:
            self.cluster.bind(proc, reply.member.id)
            line = initial_cluster_line(reply.members, reply.member.id, proc.name)
            # A joiner refuses to start if the membership changed since its add (spec §5.3, as
            # etcd): other workers only list until it serves.
            self.joining += 1
            try:
                self.cluster.start(proc, line, "existing")
                if not await self.cluster.wait_serving(proc, JOIN_BOUND_S):
                    proc.join_failed = True
                    self.unstarted.add(reply.member.id)
            finally:
                self.joining -= 1
        return op

    async def add_unstarted(self, process: str, learner: bool = True) -> Op:
        """Add a member whose peer URL nobody serves (a member that never starts)."""
        urls = (self.cluster.network.unserved_peer_url(self.next_serial()),)
        op, reply = await self.call(
            process,
            Kind.ADD,
            lambda c: c.member_add(urls, learner=learner),
            peer_urls=urls,
            learner=learner,
        )
        if op.outcome is Outcome.OK:
            self.unstarted.add(reply.member.id)
        return op

    async def remove(self, process: str, member_id: int) -> Op:
        op, _ = await self.call(
            process, Kind.REMOVE, lambda c: c.member_remove(member_id), member_id=member_id
        )
        if op.outcome is Outcome.OK:
            proc = self.cluster.by_id(member_id)
            if proc is not None:
                proc.removed = True
        return op

    async def update(self, process: str, member_id: int) -> Op:
        proc = self.cluster.by_id(member_id)
        serial = self.next_serial()
        if proc is not None:
            url = self.cluster.network.peer_url_variant(proc.name, serial)
        else:
            url = self.cluster.network.unserved_peer_url(serial)
        urls = (url,)
        op, _ = await self.call(
            process,
            Kind.UPDATE,
            lambda c: c.member_update(member_id, urls),
            member_id=member_id,
            peer_urls=urls,
        )
        return op

    async def promote(self, process: str, member_id: int) -> Op:
        op, _ = await self.call(
            process, Kind.PROMOTE, lambda c: c.member_promote(member_id), member_id=member_id
        )
        return op

    async def statuses(self, per_call: float = 2.0) -> dict[str, Status]:
        """Maintenance.Status of every running, unpaused member (unanswered ones left out)."""
        live = [p.endpoint for p in self.cluster.live() if not p.removed]

        async def one(endpoint: str) -> Status | None:
            try:
                return await self.client(endpoint).status(endpoint, timeout=per_call)
            except (ClientError, OSError, TimeoutError):
                return None

        answers = await asyncio.gather(*(one(e) for e in live))
        return {e: s for e, s in zip(live, answers, strict=True) if s is not None}

    async def leader(self) -> Proc | None:
        """The member that most live members name as leader (None if nobody names one)."""
        named = Counter(s.leader for s in (await self.statuses()).values() if s.leader)
        if not named:
            return None
        return self.cluster.by_id(named.most_common(1)[0][0])

    # ---- choosing ---------------------------------------------------------------------------

    def voters(self) -> list[MemberView]:
        return [m for m in self.view if not m.is_learner]

    def started_learners(self) -> list[MemberView]:
        return [m for m in self.view if m.is_learner and self.cluster.by_id(m.id) is not None]

    def removable(self) -> list[int]:
        """Unstarted members and learners always; voters while more than --nodes remain."""
        ids = [m.id for m in self.view if m.is_learner or m.id in self.unstarted]
        voters = [m for m in self.voters() if m.id not in self.unstarted]
        if len(voters) > self.nodes:
            ids += [m.id for m in voters]
        return ids

    async def step(self, process: str) -> None:
        choices: list[tuple[int, Callable[[], Awaitable[Op]]]] = [
            (3, lambda: self.member_list(process, False)),
            (2, lambda: self.member_list(process, True)),
        ]
        learners = [m for m in self.view if m.is_learner]
        voters = self.voters()
        if self.joining:
            choices = choices[:2]
        elif not learners and len(self.view) < self.nodes + 2:
            choices.append((1, lambda: self.add_started(process, learner=True)))
        if len(voters) <= self.nodes and not learners and not self.joining:
            choices.append((1, lambda: self.add_started(process, learner=False)))
        if self.started_learners() and not self.joining:
            target = self.rng.choice(self.started_learners()).id
            choices.append((3, lambda: self.promote(process, target)))
        removable = self.removable()
        if removable and not self.joining:
            victim = self.rng.choice(removable)
            choices.append((2, lambda: self.remove(process, victim)))
        if self.view and not self.joining:
            updated = self.rng.choice(self.view).id
            choices.append((1, lambda: self.update(process, updated)))
        weights = [w for w, _ in choices]
        _, action = self.rng.choices(choices, weights)[0]
        await action()

    async def run_worker(self, process: str) -> None:
        while not self.stopping:
            await self.step(process)
            await asyncio.sleep(self.rng.uniform(0.05, 0.3))

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.run_worker(f"w{i}")) for i in range(self.workers)]

    async def stop(self) -> None:
        """Let in-flight calls finish (bounded by their deadline), then stop the workers."""
        self.stopping = True
        done, pending = await asyncio.wait(self.tasks, timeout=CALL_TIMEOUT_S + 3)
        for task in pending:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        for client in self.clients.values():
            client.close()
        self.clients.clear()
