"""Cluster bench: ``python -m bench.cluster [--rounds N]``.

Membership-change latency and MemberList throughput of a local 3-member raftnode cluster, printed
beside the same figures for a reference etcd cluster started in the same run (when ``etcd`` is
installed; ``/work/shared/tools/etcd-reference.sh install`` or Debian's ``etcd-server``), as
ratios raftnode/etcd.

What is measured, identically for both, with one client library (grpclib and the generated
``proto.etcdserverpb`` stubs, one HTTP/2 channel to the leader's client port):

* ``--rounds`` times: MemberAdd(isLearner=true, a unique peer URL), then MemberRemove of the ID it
  returned; each call's latency. The learner never starts (nothing listens on its peer URL), so
  the add is a pure conf-change round trip: propose, replicate to a quorum, fsync, apply, reply.
  The learner limit is 1, hence remove before the next add.
* MemberList calls per second: sequential on the one channel for ``--list-seconds``, then with
  ``--concurrency`` callers sharing it. These figures include the Python client's own cost (it
  shares the machine's cores with the servers), the same for both clusters.

Before measuring, adds are retried while the cluster answers ``etcdserver: unhealthy cluster``
(etcd's strict reconfig check refuses adds until a quorum has been connected for 5 s; raftnode has
the same rule), and ``--warmup`` add/remove rounds are run and discarded.

Both clusters run at once, with the same timers (heartbeat 100 ms, election 1000 ms), and the
latency rounds are interleaved (round i on each cluster before round i + 1, the order
alternating): fsync latency on a shared virtual disk drifts from 0.1 ms to 4 ms within minutes,
and other work on the machine comes and goes, so only figures taken side by side compare. The
MemberList figures are then taken one cluster at a time. The server CPU rows (all members, from
/proc, less the idle cluster's heartbeat CPU) depend much less on a busy machine than latency.
The last lines print the disk's fdatasync p50 and the load average, to judge a run by.

Ports: raftnode uses ``--base-port`` and up, etcd ``--etcd-base-port`` and up (client base, peer
base + 1, step 10 per member); both are checked to be free first. Data goes to a temporary
directory that is removed afterwards; every process started is stopped in ``finally``.

Target (issue 4, item 8): raftnode's add and remove p50 at most half of etcd's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from node.localcluster import LocalCluster
from proto import etcdserverpb as pb

#: The shared tools folder sits beside the repository (as in CI's fresh clone).
ETCD_REFERENCE = Path(
    os.environ.get(
        "ETCD_REFERENCE_SCRIPT",
        Path(__file__).resolve().parents[2] / "shared" / "tools" / "etcd-reference.sh",
    )
)
UNHEALTHY = "etcdserver: unhealthy cluster"
#: How long to keep retrying adds refused as unhealthy (etcd needs 5 s of connected peers).
HEALTHY_WITHIN = 30.0
#: Per-call deadline: etcd's own request timeout is 5 s + 2 x election timeout.
CALL_TIMEOUT = 10.0
#: Where the learners' peer URLs point: an address no cluster listens on, one port per round.
LEARNER_HOST = "127.0.99.1"
LEARNER_PORT_BASE = 20000
#: How long each idle cluster's CPU use is sampled, to subtract it from the per-call figures.
IDLE_SECONDS = 2.0
#: Failed rounds tolerated per cluster before the bench gives up.
MAX_RETRIES = 5


@dataclass
class Figures:
    """One cluster's results; latencies in seconds."""

    add: list[float] = field(default_factory=list)
    remove: list[float] = field(default_factory=list)
    list_sequential: float = 0.0  # calls/s
    list_concurrent: float = 0.0  # calls/s
    waited_for_health: float = 0.0  # s until the first add was accepted
    #: Server CPU (all members, user + system) per add+remove round, in seconds, less what the
    #: idle cluster burns meanwhile (heartbeats); None when the members' PIDs or /proc are
    #: unavailable. Less sensitive to a busy machine than latency.
    cpu_per_round: float | None = None
    #: CPU seconds per second the idle cluster uses (all members), subtracted above.
    cpu_idle_rate: float = 0.0
    #: Server CPU per sequential MemberList call, in seconds (same caveats).
    cpu_per_list: float | None = None
    #: Rounds that failed and were run again (see ``Rounds``).
    failures: list[str] = field(default_factory=list)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: with 50 samples p99 is the maximum)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil(n * fraction), at least 1
    return ordered[min(len(ordered), int(rank)) - 1]


# ---------------------------------------------------------------------------- measuring


async def find_leader(endpoints: Sequence[tuple[str, int]], within: float = 30.0) -> Channel:
    """A channel to the member whose Status says it is the leader (leader == header.member_id)."""
    deadline = time.monotonic() + within
    while True:
        for host, port in endpoints:
            channel = Channel(host, port)
            try:
                status = await pb.MaintenanceStub(channel).status(pb.StatusRequest(), timeout=2.0)
            except (GRPCError, OSError, TimeoutError):
                channel.close()
                continue
            if status.leader != 0 and status.leader == status.header.member_id:
                return channel
            channel.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no leader among {endpoints} within {within} s")
        await asyncio.sleep(0.1)


class Rounds:
    """Add-learner / remove rounds against one cluster's leader, with unique learner peer URLs.

    A round that fails (a leader change on a loaded machine, say) is not recorded: the leader is
    found again, a learner left behind is removed, and the round is run again, at most
    ``MAX_RETRIES`` times in all. The failures are counted and reported."""

    def __init__(self, endpoints: Sequence[tuple[str, int]]) -> None:
        self.endpoints = endpoints
        self.channel: Channel | None = None
        self.failures: list[str] = []
        self._next_port = LEARNER_PORT_BASE

    @property
    def stub(self) -> pb.ClusterStub:
        assert self.channel is not None
        return pb.ClusterStub(self.channel)

    async def connect(self) -> None:
        self.close()
        self.channel = await find_leader(self.endpoints)

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def _peer_url(self) -> str:
        port, self._next_port = self._next_port, self._next_port + 1
        return f"http://{LEARNER_HOST}:{port}"

    async def add(self) -> int:
        reply = await self.stub.member_add(
            pb.MemberAddRequest(peer_ur_ls=[self._peer_url()], is_learner=True),
            timeout=CALL_TIMEOUT,
        )
        return int(reply.member.id)

    async def remove(self, member_id: int) -> None:
        await self.stub.member_remove(pb.MemberRemoveRequest(id=member_id), timeout=CALL_TIMEOUT)

    async def wait_healthy(self) -> float:
        """Retry an add until the strict check lets it through; remove it. Returns the wait."""
        began = time.monotonic()
        while True:
            try:
                member_id = await self.add()
            except GRPCError as exc:
                if exc.message != UNHEALTHY or time.monotonic() - began > HEALTHY_WITHIN:
                    raise
                await asyncio.sleep(0.2)
                continue
            await self.remove(member_id)
            return time.monotonic() - began

    async def measure(self, rounds: int, figures: Figures) -> None:
        clock = time.perf_counter
        done = 0
        while done < rounds:
            member_id = None
            try:
                start = clock()
                member_id = await self.add()
                added = clock()
                await self.remove(member_id)
                removed = clock()
            except (GRPCError, OSError, TimeoutError) as exc:
                await self._recover(exc, member_id)
                continue
            figures.add.append(added - start)
            figures.remove.append(removed - added)
            done += 1

    async def _recover(self, exc: Exception, learner: int | None) -> None:
        self.failures.append(f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}")
        if len(self.failures) > MAX_RETRIES:
            raise RuntimeError(f"too many failed rounds: {self.failures}") from exc
        await self.connect()
        if learner is not None:  # the add went through; take the learner out again
            with contextlib.suppress(GRPCError):
                await self.remove(learner)


async def call_repeatedly(
    call: Callable[[], Awaitable[object]], seconds: float, concurrency: int
) -> tuple[int, float]:
    """Run ``concurrency`` callers, each calling ``call`` back to back, for ``seconds``.
    Returns the number of calls completed and the time taken."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return done, time.perf_counter() - start


@dataclass
class Target:
    """One cluster under test: its name and its members' client endpoints."""

    name: str
    endpoints: list[tuple[str, int]]
    figures: Figures = field(default_factory=Figures)
    pids: list[int] = field(default_factory=list)


def cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU time consumed so far by these processes (Linux /proc), or None."""
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    except (OSError, IndexError, ValueError):
        return None
    return total / os.sysconf("SC_CLK_TCK") if pids else None


async def run_workload(targets: Sequence[Target], args: argparse.Namespace) -> None:
    """Latency rounds interleaved across the targets (round i on each before round i + 1, the
    order alternating), so a slow spell of the shared disk or CPU hits every cluster alike; then
    each target's MemberList throughput, one target at a time."""
    rounds = [Rounds(t.endpoints) for t in targets]
    try:
        for r in rounds:
            await r.connect()
        waits = await asyncio.gather(*(r.wait_healthy() for r in rounds))
        for target, waited in zip(targets, waits, strict=True):
            target.figures.waited_for_health = waited
        pairs = list(zip(targets, rounds, strict=True))
        for r in rounds:
            await r.measure(args.warmup, Figures())
        idle_before = [cpu_seconds(t.pids) for t in targets]
        await asyncio.sleep(IDLE_SECONDS)
        for target, before in zip(targets, idle_before, strict=True):
            after = cpu_seconds(target.pids)
            if before is not None and after is not None:
                target.figures.cpu_idle_rate = (after - before) / IDLE_SECONDS
        cpu_before = [cpu_seconds(t.pids) for t in targets]
        started = time.perf_counter()
        for i in range(args.rounds):
            for target, r in pairs if i % 2 == 0 else reversed(pairs):
                await r.measure(1, target.figures)
        elapsed = time.perf_counter() - started
        for target, before in zip(targets, cpu_before, strict=True):
            after = cpu_seconds(target.pids)
            if before is not None and after is not None:
                busy = after - before - target.figures.cpu_idle_rate * elapsed
                target.figures.cpu_per_round = busy / args.rounds
        for target, r in pairs:
            target.figures.failures = r.failures
            stub = r.stub

            async def member_list(stub: pb.ClusterStub = stub) -> None:
                await stub.member_list(pb.MemberListRequest(), timeout=CALL_TIMEOUT)

            for _ in range(20):  # warm the path
                await member_list()
            figures = target.figures
            list_cpu_before = cpu_seconds(target.pids)
            calls, elapsed = await call_repeatedly(member_list, args.list_seconds, 1)
            list_cpu_after = cpu_seconds(target.pids)
            figures.list_sequential = calls / elapsed
            if list_cpu_before is not None and list_cpu_after is not None:
                busy = list_cpu_after - list_cpu_before - figures.cpu_idle_rate * elapsed
                figures.cpu_per_list = busy / calls
            calls, elapsed = await call_repeatedly(member_list, args.list_seconds, args.concurrency)
            figures.list_concurrent = calls / elapsed
    finally:
        for r in rounds:
            r.close()


def disk_sync_latency(directory: Path, count: int = 100) -> float:
    """Median fdatasync of a small write, in seconds: what one Raft persist costs right now.
    (On shared virtual disks it drifts between runs, and within one, hence the interleaving.)"""
    path = directory / "fsync-probe"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    timings = []
    try:
        os.posix_fallocate(fd, 0, count * 256)
        for i in range(count):
            os.pwrite(fd, b"x" * 200, i * 256)
            start = time.perf_counter()
            os.fdatasync(fd)
            timings.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(timings)


# ---------------------------------------------------------------------------- the clusters


def port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now (SO_REUSEADDR, as raftnode and etcd bind,
    so connections of a previous run lingering in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base(start: int, ports_of: Callable[[int], Sequence[int]], tries: int = 50) -> int:
    """The first base at or after ``start`` (in steps of 100) whose ports are all free."""
    for base in range(start, start + 100 * tries, 100):
        ports = ports_of(base)
        if max(ports) <= 65535 and all(port_free(p) for p in ports):
            return base
    raise RuntimeError(f"no free port range found from {start}")


def raftnode_ports(base: int) -> list[int]:
    return list(range(base, base + 6))


def etcd_ports(base: int) -> list[int]:
    # etcd-reference.sh: node 1 on the bases, node i >= 2 on base + i * step (step 10 here).
    clients = [base, base + 20, base + 30]
    return clients + [p + 1 for p in clients]


def start_raftnode(root: Path, args: argparse.Namespace) -> tuple[LocalCluster, Target]:
    base = free_base(args.base_port, raftnode_ports)
    cluster = LocalCluster(root / "raftnode", nodes=3, base_port=base)
    print(f"raftnode: starting 3 members on 127.0.0.1:{base}-{base + 5}", flush=True)
    endpoints = [("127.0.0.1", m.client_port) for m in cluster.members]
    return cluster, Target("raftnode", endpoints)


def etcd_installed() -> bool:
    return shutil.which("etcd") is not None and ETCD_REFERENCE.exists()


class EtcdReference:
    """The reference cluster, through ``etcd-reference.sh`` with our own ports and state file."""

    def __init__(self, root: Path, base: int) -> None:
        self.base = base
        self.env = {
            **os.environ,
            "ETCD_REF_CLIENT_BASE": str(base),
            "ETCD_REF_PEER_BASE": str(base + 1),
            "ETCD_REF_PORT_STEP": "10",
            "ETCD_REF_STATE": str(root / "etcd-reference.state"),
            "TMPDIR": str(root),
        }
        self.target = Target("etcd", [("127.0.0.1", p) for p in etcd_ports(base)[:3]])

    def start(self) -> None:
        print(f"etcd: starting 3 members on 127.0.0.1:{self.base}-{self.base + 31}", flush=True)
        done = subprocess.run(
            [str(ETCD_REFERENCE), "start", "3"],
            env=self.env,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if done.returncode != 0:
            raise RuntimeError(f"etcd-reference.sh start failed: {done.stderr.decode()}")
        # The state file has one "NODE <name> <pid> <data dir> <client URL> <peer URL>" per member.
        with contextlib.suppress(OSError, ValueError, IndexError):
            state = Path(self.env["ETCD_REF_STATE"]).read_text().splitlines()
            self.target.pids = [int(line.split()[2]) for line in state if line.startswith("NODE ")]

    def stop(self) -> None:
        subprocess.run(
            [str(ETCD_REFERENCE), "stop"],
            env=self.env,
            check=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


# ---------------------------------------------------------------------------- report


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def rows(figures: Figures) -> list[tuple[str, float, bool]]:
    """(metric, value, lower_is_better); latencies in ms."""
    ms = 1e3
    return [
        ("MemberAdd(learner) p50 ms", percentile(figures.add, 0.50) * ms, True),
        ("MemberAdd(learner) p90 ms", percentile(figures.add, 0.90) * ms, True),
        ("MemberAdd(learner) p99 ms", percentile(figures.add, 0.99) * ms, True),
        ("MemberRemove p50 ms", percentile(figures.remove, 0.50) * ms, True),
        ("MemberRemove p90 ms", percentile(figures.remove, 0.90) * ms, True),
        ("MemberRemove p99 ms", percentile(figures.remove, 0.99) * ms, True),
        ("MemberList calls/s, sequential", figures.list_sequential, False),
        ("MemberList calls/s, concurrent", figures.list_concurrent, False),
        ("server CPU ms per add+remove", _or_nan(figures.cpu_per_round) * ms, True),
        ("server CPU ms per MemberList", _or_nan(figures.cpu_per_list) * ms, True),
    ]


def report(ours: Figures, etcd: Figures | None, args: argparse.Namespace) -> None:
    print()
    print(
        f"{args.rounds} rounds of add learner + remove (after {args.warmup} warm-up, interleaved "
        f"across the clusters); MemberList for {args.list_seconds:g} s sequential, then "
        f"{args.list_seconds:g} s with {args.concurrency} concurrent callers on one channel"
    )
    theirs = rows(etcd) if etcd is not None else None
    print(f"{'metric':<32} | {'raftnode':>9} | {'etcd':>9} | ratio (raftnode/etcd)")
    print(f"{'-' * 32}-|-{'-' * 9}-|-{'-' * 9}-|-{'-' * 21}")
    for i, (name, value, lower_is_better) in enumerate(rows(ours)):
        if theirs is None:
            print(f"{name:<32} | {value:>9.2f} | {'-':>9} | -")
            continue
        reference = theirs[i][1]
        ratio = value / reference if reference else float("nan")
        better = "lower is better" if lower_is_better else "higher is better"
        print(f"{name:<32} | {value:>9.2f} | {reference:>9.2f} | {ratio:>5.2f}  ({better})")
    waits = f"{ours.waited_for_health:.1f} s on raftnode"
    if etcd is not None:
        waits += f", {etcd.waited_for_health:.1f} s on etcd"
    print(f"(the strict check let the first add through after {waits})")
    idle = f"{ours.cpu_idle_rate * 1e3:.1f} ms/s for raftnode"
    if etcd is not None:
        idle += f", {etcd.cpu_idle_rate * 1e3:.1f} ms/s for etcd"
    print(f"(idle cluster CPU, subtracted from the CPU rows: {idle})")
    for name, figures in (("raftnode", ours), ("etcd", etcd)):
        if figures is not None and figures.failures:
            print(f"{name}: {len(figures.failures)} round(s) failed and were run again:")
            for failure in figures.failures:
                print(f"  {failure}")
    if etcd is None:
        print("no reference etcd: no verdict")
        return
    for label, mine, reference_values in (
        ("add", ours.add, etcd.add),
        ("remove", ours.remove, etcd.remove),
    ):
        ratio = percentile(mine, 0.5) / percentile(reference_values, 0.5)
        verdict = "meets" if ratio <= 0.5 else "MISSES"
        print(f"target: {label} p50 <= 0.5 x etcd's: {verdict} ({ratio:.2f} x)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=50, help="measured add+remove rounds")
    parser.add_argument("--warmup", type=int, default=5, help="discarded rounds first")
    parser.add_argument("--list-seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--base-port", type=int, default=42379, help="raftnode's first port")
    parser.add_argument("--etcd-base-port", type=int, default=45379, help="etcd's first port")
    parser.add_argument("--no-etcd", action="store_true", help="skip the reference cluster")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.concurrency < 1 or args.list_seconds <= 0 or args.warmup < 0:
        parser.error("--rounds and --concurrency must be >= 1, --list-seconds > 0")
    root = Path(tempfile.mkdtemp(prefix="raftnode-bench-cluster-", dir="/tmp"))
    cluster: LocalCluster | None = None
    etcd: EtcdReference | None = None
    try:
        cluster, ours = start_raftnode(root, args)
        targets = [ours]
        if args.no_etcd:
            print("etcd: skipped (--no-etcd)")
        elif not etcd_installed():
            print(f"etcd: not installed (or {ETCD_REFERENCE} missing): no reference run")
        else:
            etcd = EtcdReference(root, free_base(args.etcd_base_port, etcd_ports))
            targets.append(etcd.target)
        cluster.start()
        ours.pids = [m.process.pid for m in cluster.members if m.process is not None]
        if etcd is not None:
            etcd.start()
        disk_before, load_before = disk_sync_latency(root), os.getloadavg()[0]
        asyncio.run(run_workload(targets, args))
        disk_after, load_after = disk_sync_latency(root), os.getloadavg()[0]
        report(ours.figures, etcd.target.figures if etcd else None, args)
        print(
            f"machine: fdatasync p50 {disk_before * 1e3:.2f} ms before the rounds, "
            f"{disk_after * 1e3:.2f} ms after; 1-min load average {load_before:.1f} -> "
            f"{load_after:.1f} on {os.cpu_count()} CPUs"
        )
        if load_before > (os.cpu_count() or 1):
            print("note: the machine was busy before the rounds; latencies are inflated and noisy")
    except (RuntimeError, TimeoutError, GRPCError) as exc:
        print(f"bench.cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
        if etcd is not None:
            etcd.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
