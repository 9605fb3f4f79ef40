"""Layer (d) on disk: the seeded simulator, with every member persisting into DurableStorage.

Issue 3, item 5: "the simulator from the core issue can restart nodes from this storage".
``DurableSimulation`` is ``tests.raft.sim.Simulation`` with its storage paths replaced; the
schedule, the per-step safety invariants and the end-of-run liveness check are the simulator's own.

What changes, and why:

* Each member has its own ``CrashingFileSystem`` (its machine's disk) and a ``DurableStorage`` on
  it, with a small segment size so segments rotate and checkpoints release them.
* A Ready is handled as ``node.driver`` handles it: ``save_sync`` (one WAL record, one fdatasync,
  none when ``must_sync`` is False), *then* the messages go in flight, then apply, then advance.
  Compaction goes through ``create_snapshot_sync``: the schedule's random compactions and, as in
  the driver, whenever ``should_snapshot`` says ``snapshot_count`` entries were applied since the
  last snapshot.
* A crash reboots the member's file system: whatever was not synced is lost (with torn sectors and
  a random prefix of the unsynced directory operations). A restart re-opens ``DurableStorage`` from
  that file system (replay, torn-tail repair, release of leftovers) and builds a new ``RawNode``.
* Disk faults the in-memory simulator cannot have, drawn from their own rng: a crash right after a
  save but before its messages leave, a crash at a write/fsync inside a save or a compaction, and
  a crash inside the recovery itself (then a second reboot and reopen).

Two checks beyond the simulator's, against a model per member (a ``MemoryStorage`` replaying
exactly the writes whose ``save_sync``/``create_snapshot_sync`` returned, what a node relies on):

* persist before send: every message a node sends is covered by its model (the message's term, a
  granted vote, an acknowledged append index, the entries a leader sends in its current term);
* nothing acknowledged is lost: at each restart the recovered storage equals the model, or the
  model plus the one write a crash interrupted (that write may or may not have reached the disk);
  only the commit index may be older, as of a commit-only record written without fdatasync.

With every disk-only fault off (``EXACT``) a seed runs the very schedule of ``tests.raft.sim`` and
must end identically: the durable storage is observably the MemoryStorage it replaces.

    python -m tests.node.durable_sim --seed 12 --verbose
    python -m tests.node.durable_sim --seeds 2000 --jobs 2    # a sweep; prints failing seeds
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

from node.storage import CrashingFileSystem, DurableStorage, Identity, SimulatedCrash
from node.storage.datadir import wal_dir
from node.storage.wal import list_segments
from raft import (
    ConfState,
    Entry,
    HardState,
    Index,
    MemoryStorage,
    Message,
    MessageType,
    NodeId,
    Ready,
    Role,
    Snapshot,
)
from tests.node.storage_workload import summary
from tests.raft.harness import SimNode, decode_state, encode_state
from tests.raft.sim import InvariantViolation, Simulation, Stats

DATA_DIR = "/var/lib/raftnode/member"
CLUSTER_ID = 0x5EED
#: Small enough that a run rotates segments many times (a Ready's record is ~50-500 bytes).
SEGMENT_SIZE = 1024
#: Fewer steps than the in-memory simulator's 1,500: a durable step costs several times more.
STEPS = 3000
REPLAY = "python -m tests.node.durable_sim"

_PRE_VOTE_TYPES = frozenset({MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP})

ReadyPredicate = Callable[[Ready], bool]


@dataclass(frozen=True)
class DiskPolicy:
    #: Per Ready: crash after the save returned, before the messages leave.
    crash_after_save: float = 0.003
    #: Per Ready: crash at write/fsync number k (k < 16) of its save, if the save makes that many.
    crash_in_save: float = 0.03
    #: Per compaction: crash at write/fsync number k (k < 16) of create_snapshot_sync.
    crash_in_snapshot: float = 0.15
    #: Per reopen: crash at write/fsync number k (k < 4) of the recovery itself (zeroing a torn
    #: tail, deleting leftovers), then reboot and reopen again.
    crash_in_recovery: float = 0.3
    #: Save a Ready whose ``must_sync`` is False (only the commit index changed) without
    #: fdatasync, as node.driver does.
    honour_must_sync: bool = True
    #: Reboot with torn sectors and a random prefix of the unsynced directory operations.
    torn_reboot: bool = True
    #: --snapshot-count; None: only the schedule's random compactions.
    snapshot_count: int | None = 10


#: No disk-only fault, no snapshot-count compaction: exactly the in-memory simulator's schedule.
EXACT = DiskPolicy(
    crash_after_save=0.0,
    crash_in_save=0.0,
    crash_in_snapshot=0.0,
    crash_in_recovery=0.0,
    honour_must_sync=False,  # a lost commit-index update would change the schedule
    snapshot_count=None,
)


@dataclass
class DiskStats:
    crashes_after_save: int = 0
    crashes_in_save: int = 0
    crashes_in_snapshot: int = 0
    crashes_in_recovery: int = 0
    unsynced_saves: int = 0
    #: Recoveries that lost unsynced commit-index updates (allowed: Raft relearns the commit).
    commits_lost: int = 0
    #: Interrupted writes found complete on disk after the reboot (the others were absent).
    interrupted_landed: int = 0
    reopens: int = 0
    auto_snapshots: int = 0
    installed_snapshots: int = 0


class Disk:
    """One member's machine: a file system that outlives crashes, and the storage open on it."""

    def __init__(self, node_id: NodeId, segment_size: int, snapshot_count: int | None) -> None:
        self.node_id = node_id
        self.fs = CrashingFileSystem()
        self.identity = Identity(CLUSTER_ID, int(node_id), "sim")
        self.segment_size = segment_size
        self.snapshot_count = snapshot_count or 1 << 62
        #: What the writes that returned made durable.
        self.model = MemoryStorage()
        #: The model plus the write a crash interrupted, until the reopen tells which one holds.
        self.interrupted: MemoryStorage | None = None
        #: Hard states the disk may show instead of the model's: the one before each commit-only
        #: record written without fdatasync since the last synced write (a crash may lose any
        #: suffix of those records).
        self.lossable: list[HardState] = []
        self.storage: DurableStorage | None = None
        self.open()

    def open(self) -> DurableStorage:
        self.storage = DurableStorage.open(
            DATA_DIR,
            self.identity,
            fs=self.fs,
            segment_size=self.segment_size,
            snapshot_count=self.snapshot_count,
        )
        return self.storage

    @property
    def live(self) -> DurableStorage:
        assert self.storage is not None, f"node {self.node_id} is down"
        return self.storage

    def crash(self, rng: random.Random | None) -> None:
        self.storage = None  # a dead process closes nothing
        self.fs.reboot(rng)

    def highest_segment(self) -> int:
        return list_segments(self.fs, wal_dir(DATA_DIR))[-1]


def model_save(
    model: MemoryStorage,
    hard_state: HardState | None,
    entries: tuple[Entry, ...],
    snap: Snapshot | None,
) -> None:
    """The persist step of tests.raft.harness.Cluster.handle_ready."""
    if snap is not None:
        model.apply_snapshot(snap)
    model.append(entries)
    if hard_state is not None:
        model.set_hard_state(hard_state)


def model_compact(model: MemoryStorage, index: Index, conf: ConfState, data: bytes) -> None:
    """tests.raft.harness.Cluster.snapshot_and_compact."""
    model.create_snapshot(index, conf, data)
    model.compact(index)


def _but_commit(view: tuple[object, ...]) -> tuple[object, ...]:
    """A storage summary (tests.node.storage_workload.summary) without the commit index."""
    state = view[0]
    assert isinstance(state, tuple)
    hard_state, conf = state
    assert isinstance(hard_state, HardState)
    return (hard_state.term, hard_state.vote, conf, *view[1:])


def brief(storage: MemoryStorage | DurableStorage) -> str:
    hard_state, conf = storage.initial_state()
    meta = storage.snapshot().metadata
    return (
        f"hs(t{hard_state.term} v{hard_state.vote} c{hard_state.commit}) snap {meta.index}@"
        f"{meta.term} log {storage.first_index()}..{storage.last_index()} "
        f"conf {sorted(conf.voters)}"
    )


class DurableSimulation(Simulation):
    def __init__(
        self,
        seed: int,
        verbose: bool = False,
        *,
        policy: DiskPolicy | None = None,
        steps: int = STEPS,
        segment_size: int = SEGMENT_SIZE,
    ) -> None:
        # Set before Simulation.__init__, which starts the founding members.
        self.policy = policy if policy is not None else DiskPolicy()
        self.segment_size = segment_size
        self.disks: dict[NodeId, Disk] = {}
        self.disk_rng = random.Random(f"disk {seed}")
        self.disk_stats = DiskStats()
        self.faults_on = True
        #: Targeted faults for tests: crash right after the save of the next matching Ready...
        self.crash_after_save_if: dict[NodeId, ReadyPredicate] = {}
        #: ...or at write/fsync k inside it (k None: no crash, only record its count of writes).
        self.crash_in_save_if: dict[NodeId, tuple[ReadyPredicate, int | None]] = {}
        #: Writes and fsyncs of the save a crash_in_save_if predicate matched.
        self.matched_save_ops: dict[NodeId, int] = {}
        #: Messages of the Ready a crash kept from being sent.
        self.lost_messages: dict[NodeId, tuple[Message, ...]] = {}
        self._last_write_ops = 0
        super().__init__(seed, None, verbose)
        self.params.steps = steps

    def run(self) -> Stats:
        try:
            return super().run()
        except InvariantViolation as exc:
            raise InvariantViolation(str(exc).replace("python -m tests.raft.sim", REPLAY)) from exc

    # ------------------------------------------------------------------ processes and disks

    def _start(
        self, node_id: NodeId, storage: MemoryStorage, applied: Index, conf: ConfState
    ) -> SimNode:
        """Only Cluster.__init__ still calls this, for a founding member, with a MemoryStorage
        holding the bootstrap snapshot: the member writes that to its new disk first."""
        disk = self._new_disk(node_id)
        snap = storage.snapshot()
        hard_state = None if storage.hard_state.is_empty() else storage.hard_state
        live = disk.live
        self._write(
            disk,
            None,
            lambda: live.save_sync(hard_state, [], snap),
            lambda model: model_save(model, hard_state, (), snap),
            "bootstrap",
        )
        return self._launch(node_id, live, applied, conf)

    def _launch(
        self, node_id: NodeId, storage: DurableStorage, applied: Index, conf: ConfState
    ) -> SimNode:
        # SimNode types its storage as MemoryStorage. Every write path of the base classes is
        # overridden here, and what is left only reads through the raft Storage protocol, which
        # DurableStorage implements; a MemoryStorage-only write that slipped through would fail
        # loudly (AttributeError) instead of bypassing the disk.
        return super()._start(node_id, storage, applied, conf)  # type: ignore[arg-type]

    def _new_disk(self, node_id: NodeId) -> Disk:
        assert node_id not in self.disks, f"member IDs are never reused: {node_id}"
        disk = Disk(node_id, self.segment_size, self.policy.snapshot_count)
        self.disks[node_id] = disk
        return disk

    def add_empty_node(self, node_id: int) -> SimNode:
        disk = self._new_disk(NodeId(node_id))
        return self._launch(NodeId(node_id), disk.live, Index(0), ConfState())

    def crash(self, node_id: int) -> None:
        super().crash(node_id)
        self.disks[NodeId(node_id)].crash(self.disk_rng if self.policy.torn_reboot else None)

    def restart(self, node_id: int) -> SimNode:
        member = NodeId(node_id)
        if self.nodes[member].alive:
            self.crash(member)
        storage = self.recover(self.disks[member])
        snap = storage.snapshot()
        return self._launch(member, storage, snap.metadata.index, snap.metadata.conf_state)

    def recover(self, disk: Disk) -> DurableStorage:
        """Reopen after a reboot. The disk must hold what the model says, or that plus the write
        the crash interrupted: anything else lost an acknowledged write or invented one."""
        storage = None
        if self._random_fault(self.policy.crash_in_recovery):
            disk.fs.crash_at(self.disk_rng.randrange(4))
            try:
                storage = disk.open()
            except SimulatedCrash:
                self.disk_stats.crashes_in_recovery += 1
                self.log(f"crash {disk.node_id} inside its recovery")
                disk.crash(self.disk_rng if self.policy.torn_reboot else None)
            disk.fs.crash_at(None)
        if storage is None:
            storage = disk.open()
        self.disk_stats.reopens += 1
        got = summary(storage)
        commits = {hs.commit for hs in disk.lossable}
        candidates = [disk.model] if disk.interrupted is None else [disk.model, disk.interrupted]
        for candidate in candidates:
            expected = summary(candidate)
            if _but_commit(got) == _but_commit(expected) and (
                storage.hard_state == candidate.hard_state or storage.hard_state.commit in commits
            ):
                break
        else:
            extra = "" if disk.interrupted is None else f" (+1: [{brief(disk.interrupted)}])"
            raise InvariantViolation(
                f"node {disk.node_id} recovered [{brief(storage)}], but its returned writes "
                f"had made durable [{brief(disk.model)}]{extra}"
            )
        self.disk_stats.interrupted_landed += candidate is disk.interrupted
        self.disk_stats.commits_lost += storage.hard_state != candidate.hard_state
        candidate.set_hard_state(storage.hard_state)
        disk.model, disk.interrupted, disk.lossable = candidate, None, []
        return storage

    def crash_now(self, node_id: NodeId, why: str) -> None:
        self.log(f"crash {node_id} {why}")
        self.crash(node_id)
        self.stats.crashes += 1
        self.pending_restart.setdefault(node_id, self.step_no + self.disk_rng.randint(1, 40))

    def _random_fault(self, probability: float) -> bool:
        return (
            self.faults_on
            and probability > 0
            and self.disk_rng.random() < probability
            and len(self.alive_nodes()) > 1
        )

    def _write(
        self,
        disk: Disk,
        crash_op: int | None,
        write: Callable[[], object],
        update_model: Callable[[MemoryStorage], None],
        what: str,
        synced: bool | None = True,
    ) -> bool:
        """Run one durable write, crashing at its ``crash_op``-th write/fsync if it gets that
        far. False if it crashed: the node is down, and the model plus this write is kept aside
        for the reopen to compare with. ``synced``: whether the write ends with an fdatasync
        (None: it writes no record at all)."""
        before = disk.fs.ops
        disk.fs.crash_at(crash_op)
        try:
            write()
        except SimulatedCrash:
            landed = copy.deepcopy(disk.model)
            update_model(landed)
            disk.interrupted = landed
            self.crash_now(disk.node_id, f"inside {what}, at write/fsync {crash_op}")
            return False
        disk.fs.crash_at(None)
        self._last_write_ops = disk.fs.ops - before
        if synced:
            disk.lossable.clear()
        elif synced is not None:
            disk.lossable.append(disk.model.hard_state)
        update_model(disk.model)
        return True

    # ------------------------------------------------------------------ the Ready loop

    def handle_ready(self, sim: SimNode) -> Ready | None:
        """Persist, then send, then apply, then advance: Cluster.handle_ready, on disk."""
        if not sim.alive or not sim.node.has_ready():
            return None
        rd = sim.node.ready()
        disk = self.disks[sim.id]
        storage = disk.live
        sync = rd.must_sync or not self.policy.honour_must_sync
        # What DurableStorage does with sync=False: only a commit-only record skips fdatasync.
        synced: bool | None = sync or bool(rd.entries) or rd.snapshot is not None
        if rd.hard_state is None and not rd.entries and rd.snapshot is None:
            synced = None
        self.disk_stats.unsynced_saves += synced is False
        # 1. persist (and sometimes die in the middle of it)
        crash_op, targeted = None, self.crash_in_save_if.get(sim.id)
        if targeted is not None and targeted[0](rd):
            del self.crash_in_save_if[sim.id]
            crash_op = targeted[1]
        elif self._random_fault(self.policy.crash_in_save):
            crash_op = self.disk_rng.randrange(16)
        if not self._write(
            disk,
            crash_op,
            lambda: storage.save_sync(rd.hard_state, rd.entries, rd.snapshot, sync=sync),
            lambda model: model_save(model, rd.hard_state, rd.entries, rd.snapshot),
            "a save",
            synced,
        ):
            self.disk_stats.crashes_in_save += 1
            self.lost_messages[sim.id] = rd.messages
            return None
        if targeted is not None and targeted[0](rd):
            self.matched_save_ops[sim.id] = self._last_write_ops
        # ... or die between the save and the send
        predicate = self.crash_after_save_if.get(sim.id)
        if (predicate is not None and predicate(rd)) or self._random_fault(
            self.policy.crash_after_save
        ):
            self.crash_after_save_if.pop(sim.id, None)
            self.disk_stats.crashes_after_save += 1
            self.lost_messages[sim.id] = rd.messages
            self.crash_now(sim.id, "after a save, before sending")
            return None
        # 2. send
        self.check_covered(sim, disk.model, rd.messages)
        self.in_flight.extend(rd.messages)
        # 3. apply
        if rd.snapshot is not None:
            self.disk_stats.installed_snapshots += 1
            sim.applied = decode_state(rd.snapshot.data)
            sim.conf = rd.snapshot.metadata.conf_state
            sim.applied_index = rd.snapshot.metadata.index
        for entry in rd.committed_entries:
            self.apply_entry(sim, entry)
        sim.read_states.extend(rd.read_states)
        sim.rejected.extend(rd.rejected_proposals)
        # 4. advance; then, as node.driver does, the snapshot-count check
        sim.node.advance(rd)
        if self.policy.snapshot_count is not None and storage.should_snapshot(sim.applied_index):
            self.disk_stats.auto_snapshots += 1
            self.snapshot_and_compact(sim.id)
        return rd

    def snapshot_and_compact(self, node_id: int) -> Snapshot:
        sim = self.nodes[NodeId(node_id)]
        disk = self.disks[sim.id]
        index, data = sim.applied_index, encode_state(sim.applied)
        conf = sim.node.raft.tracker.conf_state()
        crash_op = None
        if self._random_fault(self.policy.crash_in_snapshot):
            crash_op = self.disk_rng.randrange(16)
        storage = disk.live
        if not self._write(
            disk,
            crash_op,
            lambda: storage.create_snapshot_sync(index, conf, data),
            lambda model: model_compact(model, index, conf, data),
            "a compaction",
        ):
            self.disk_stats.crashes_in_snapshot += 1
            assert disk.interrupted is not None
            return disk.interrupted.snapshot()
        return storage.snapshot()

    def check_liveness(self) -> None:
        self.faults_on = False  # liveness is judged on a healed cluster with working disks
        super().check_liveness()

    # ------------------------------------------------------------------ persist before send

    def check_covered(
        self, sim: SimNode, model: MemoryStorage, messages: tuple[Message, ...]
    ) -> None:
        """Every message may acknowledge only what the node's returned writes made durable.

        A Ready can hold messages of several terms (a vote granted in term 5, then an append
        from a leader of term 7). A durable term above a message's term covers it: the node can
        never act in that term again, and its durable state is a later state of the very run
        that sent the message. So the vote, append and entry checks apply in the durable term.
        """
        hard_state = model.hard_state
        for m in messages:
            problem = None
            if m.type not in _PRE_VOTE_TYPES and m.term > hard_state.term:
                problem = f"its durable term is {hard_state.term}"
            elif m.term != hard_state.term:
                pass
            elif m.type is MessageType.VOTE_RESP and not m.reject:
                if hard_state.vote != m.to:
                    problem = f"its durable vote is {hard_state.vote} in term {hard_state.term}"
            elif m.type is MessageType.APP_RESP and not m.reject:
                if m.index > model.last_index():
                    problem = f"its durable log ends at {model.last_index()}"
            elif m.entries and sim.role is Role.LEADER:
                # Within its own term a leader never truncates: what it sends is durable.
                for e in m.entries:
                    if e.index >= model.first_index() and (
                        e.index > model.last_index() or model.term(e.index) != e.term
                    ):
                        problem = f"entry {e.index}@{e.term} is not durable"
                        break
            if problem is not None:
                raise InvariantViolation(
                    f"persist before send: node {sim.id} sends {m.type.name} (term {m.term}, "
                    f"index {m.index}) to {m.to}, but {problem}"
                )

    # ------------------------------------------------------------------ reporting

    def totals(self) -> dict[str, int]:
        counts = asdict(self.disk_stats)
        counts["crashes"] = self.stats.crashes
        counts["leaders"] = self.stats.leaders
        counts["snapshots_sent"] = self.stats.snapshots_sent
        counts["conf_changes"] = len(self.conf_at)
        # Segment numbers only grow, so the highest one counts a disk's rotations.
        counts["rotations"] = sum(d.highest_segment() for d in self.disks.values())
        return counts


# ---------------------------------------------------------------------- sweep and replay


def _run_quietly(seed: int) -> tuple[int, str | None, dict[str, int]]:
    sim = DurableSimulation(seed)
    try:
        sim.run()
    except InvariantViolation as exc:
        return seed, str(exc), {}
    return seed, None, sim.totals()


def sweep(seeds: range, jobs: int) -> Iterator[tuple[int, str | None, dict[str, int]]]:
    if jobs <= 1:
        yield from map(_run_quietly, seeds)
        return
    with multiprocessing.Pool(jobs) as pool:
        yield from pool.imap_unordered(_run_quietly, seeds, chunksize=5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the simulator over DurableStorage")
    parser.add_argument("--seed", type=int, help="run one seed")
    parser.add_argument("--seeds", type=int, default=100, help="number of seeds to sweep")
    parser.add_argument("--start", type=int, default=0, help="first seed of the sweep")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument("--verbose", action="store_true", help="print every event")
    args = parser.parse_args(argv)
    if args.seed is not None:
        sim = DurableSimulation(args.seed, verbose=args.verbose)
        sim.run()
        print(f"seed {args.seed} ok: {sim.totals()}")
        return 0
    started = time.monotonic()
    failures = 0
    totals: dict[str, int] = {}
    for _seed, error, counts in sweep(range(args.start, args.start + args.seeds), args.jobs):
        if error is not None:
            failures += 1
            print(error, file=sys.stderr)
        for key, value in counts.items():
            totals[key] = totals.get(key, 0) + value
    elapsed = time.monotonic() - started
    print(f"{args.seeds} seeds from {args.start}: {failures} failures in {elapsed:.1f}s")
    print("totals: " + " ".join(f"{key}={value}" for key, value in sorted(totals.items())))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
