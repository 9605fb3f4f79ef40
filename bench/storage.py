"""Storage benchmark: ``python -m bench.storage``.

Prints appends per second with an fsync per save (batches of 1 and 64 entries, sync and through
``asyncio.to_thread``), the fdatasync latency (p50/p99) the WAL sees, and how long recovery takes
to replay a 100,000-entry WAL (target: under 1 s). Works in a temporary directory under /tmp that
it removes afterwards.

Why these figures: a Raft node's commit latency is bounded below by one fsync per Ready, so
appends per second at batch 1 is the ceiling for an unbatched workload, and batch 64 shows what
group commit buys. Replay time is how long a restarted member is unavailable before it can vote.
The replay runs with the files in the page cache (they were just written), so it measures the
decoding path, which is what the code controls.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from node.storage import DurableStorage, FileHandle, Identity, OsFileSystem
from raft.types import Entry, HardState, Index, NodeId, Term

IDENTITY = Identity(cluster_id=0xCDF818194E3A8C32, member_id=0x8E9E05C52164694D, cluster_token="b")
PAYLOAD = b"m" * 128  # about the size of a membership change with its member record


@dataclass
class _Timings:
    syncs: list[float] = field(default_factory=list)


class _TimedHandle:
    def __init__(self, inner: FileHandle, timings: _Timings, *, sync: bool) -> None:
        self._inner = inner
        self._timings = timings
        self._sync = sync

    def pwrite(self, data: bytes, offset: int) -> None:
        self._inner.pwrite(data, offset)

    def sync(self) -> None:
        if not self._sync:
            return
        start = time.perf_counter()
        self._inner.sync()
        self._timings.syncs.append(time.perf_counter() - start)

    def close(self) -> None:
        self._inner.close()


class _TimedFileSystem(OsFileSystem):
    """The real file system, timing every file fdatasync; ``sync=False`` skips them (only to
    build the replay input quickly: the bytes written are the same)."""

    def __init__(self, *, sync: bool = True) -> None:
        self.timings = _Timings()
        self._sync = sync

    def create(self, path: str, size: int) -> _TimedHandle:  # type: ignore[override]
        return _TimedHandle(super().create(path, size), self.timings, sync=self._sync)

    def open(self, path: str) -> _TimedHandle:  # type: ignore[override]
        return _TimedHandle(super().open(path), self.timings, sync=self._sync)


def _entries(start: int, count: int) -> list[Entry]:
    return [Entry(Term(1), Index(i), data=PAYLOAD) for i in range(start, start + count)]


def _hard_state(commit: int) -> HardState:
    return HardState(Term(1), NodeId(IDENTITY.member_id), Index(commit))


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_appends(root: str, batch: int, saves: int, *, use_async: bool) -> None:
    fs = _TimedFileSystem()
    storage = DurableStorage.open(f"{root}/appends-{batch}-{use_async}", IDENTITY, fs=fs)
    fs.timings.syncs.clear()  # only the saves' fsyncs, not the bootstrap's

    async def run_async() -> None:
        for k in range(saves):
            await storage.save(_hard_state(k * batch), _entries(k * batch + 1, batch))

    start = time.perf_counter()
    if use_async:
        asyncio.run(run_async())
    else:
        for k in range(saves):
            storage.save_sync(_hard_state(k * batch), _entries(k * batch + 1, batch))
    elapsed = time.perf_counter() - start
    storage.close()
    syncs = fs.timings.syncs
    how = "async (to_thread)" if use_async else "sync"
    print(
        f"batch {batch:>2}, {how:<17}: {saves / elapsed:8.0f} saves/s "
        f"{saves * batch / elapsed:9.0f} entries/s | fdatasync p50 "
        f"{statistics.median(syncs) * 1e3:6.3f} ms, p99 {_percentile(syncs, 0.99) * 1e3:6.3f} ms "
        f"({len(syncs)} fsyncs)"
    )


def bench_replay(root: str, total: int, batch: int) -> float:
    path = f"{root}/replay-{batch}"
    writer = DurableStorage.open(path, IDENTITY, fs=_TimedFileSystem(sync=False))
    for start in range(1, total + 1, batch):
        count = min(batch, total + 1 - start)
        writer.save_sync(_hard_state(start - 1), _entries(start, count))
    usage = writer.disk_usage()
    writer.close()

    timings = []
    for _ in range(5):
        began = time.perf_counter()
        storage = DurableStorage.open(path, IDENTITY)
        timings.append(time.perf_counter() - began)
        assert storage.last_index() == total
        storage.close()
    median = statistics.median(timings)
    print(
        f"replay of {total:,} entries in {(total + batch - 1) // batch:,} records "
        f"({usage / 2**20:.0f} MiB of segments): median {median:.3f} s, "
        f"min {min(timings):.3f} s, max {max(timings):.3f} s of {len(timings)} opens"
    )
    return median


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--saves", type=int, default=2000, help="saves per append run")
    parser.add_argument("--replay-entries", type=int, default=100_000)
    args = parser.parse_args(argv)
    root = tempfile.mkdtemp(prefix="raftnode-bench-", dir="/tmp")
    try:
        print(f"storage bench in {root}")
        for batch, use_async in ((1, False), (1, True), (64, False), (64, True)):
            saves = args.saves if batch == 1 else max(1, args.saves // 4)
            bench_appends(root, batch, saves, use_async=use_async)
        median = bench_replay(root, args.replay_entries, batch=1)
        bench_replay(root, args.replay_entries, batch=64)
        verdict = "meets" if median < 1.0 else "MISSES"
        print(f"one-entry-per-record replay {verdict} the 1 s target (median)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
