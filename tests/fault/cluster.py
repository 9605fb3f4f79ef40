"""Member processes of a fault run: start, SIGKILL and restart, SIGSTOP and SIGCONT, spares.

`node.localcluster.LocalCluster` and `tests.procs.Procs` own loopback members and wait by blocking
the thread; a fault run keeps its proxies and clients on one asyncio loop, and in netns mode its
members listen on namespace addresses, so this module keeps its own small process table and waits
with ``await``. It reuses their conventions: ``python -m node`` with etcd flags, one log file per
member, new sessions, and every process killed by PID when the run ends.

A member removed by the workload exits by itself and its data dir then refuses to start: that is
expected (``removed``), not a fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.fault.network import Network, Placement
from tests.procs import REPO_ROOT

HEARTBEAT_MS = 100
ELECTION_MS = 1000
#: How long a peer must be connected before the strict checks count it (spec §3.4; etcd: 5 s).
HEALTH_INTERVAL_S = 1.0
START_TIMEOUT_S = 30.0
TOKEN = "raftnode-fault"


@dataclass
class Member:
    name: str
    placement: Placement
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    member_id: int = 0
    paused: bool = False
    killed: bool = False
    #: The workload removed it: its exit is expected and it is never restarted.
    removed: bool = False
    #: It was added but refused to join (the membership changed before it started): it stays an
    #: unstarted member, and restarting it would only be refused again.
    join_failed: bool = False
    #: Its client port has been seen open (clients are sent only to members that served once).
    serving: bool = False
    history: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return self.placement.endpoint

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Cluster:
    def __init__(self, root: Path, network: Network) -> None:
        self.root = root
        self.network = network
        self.members: dict[str, Member] = {}
        self._serial = 0

    async def new_member(self, name: str | None = None) -> Member:
        """A member slot with its own host/ports (not started)."""
        self._serial += 1
        name = name or f"n{self._serial}"
        placement = await self.network.place(name)
        member = Member(
            name=name,
            placement=placement,
            data_dir=self.root / f"{name}.etcd",
            log_path=self.root / f"{name}.log",
        )
        self.members[name] = member
        return member

    def by_id(self, member_id: int) -> Member | None:
        return next((m for m in self.members.values() if m.member_id == member_id), None)

    def bind(self, member: Member, member_id: int) -> None:
        member.member_id = member_id
        self.network.bind_id(member.name, member_id)

    def live(self) -> list[Member]:
        """Members whose process runs and is not stopped."""
        return [m for m in self.members.values() if m.running and not m.paused]

    def argv(self, member: Member, initial_cluster: str, state: str) -> list[str]:
        p = member.placement
        return [
            sys.executable,
            "-m",
            "node",
            "--name",
            member.name,
            "--data-dir",
            str(member.data_dir),
            "--listen-client-urls",
            p.client_url,
            "--advertise-client-urls",
            p.client_url,
            "--listen-peer-urls",
            p.listen_peer_url,
            "--initial-advertise-peer-urls",
            p.advertised_peer_url,
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            TOKEN,
            "--heartbeat-interval",
            str(HEARTBEAT_MS),
            "--election-timeout",
            str(ELECTION_MS),
            "--health-interval",
            str(HEALTH_INTERVAL_S),
        ]

    def start(self, member: Member, initial_cluster: str, state: str) -> None:
        self._spawn(member, self.argv(member, initial_cluster, state))

    def _spawn(self, member: Member, argv: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}
        env["PYTHONUNBUFFERED"] = "1"
        with member.log_path.open("ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} {' '.join(argv)}\n".encode())
            log.flush()
            process = self.network.popen(
                member.name,
                argv,
                env,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        member.process, member.argv = process, argv
        member.history.append(process)
        member.killed = member.paused = False

    def bootstrap(self, members: Sequence[Member]) -> None:
        cluster = ",".join(f"{m.name}={m.placement.advertised_peer_url}" for m in members)
        for member in members:
            self.start(member, cluster, "new")

    async def wait_serving(self, member: Member, bound: float = START_TIMEOUT_S) -> bool:
        """Until the client port accepts connections (opened after publish, spec §5.1)."""
        host, port = member.endpoint.rsplit(":", 1)
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if not member.running:
                return False
            with contextlib.suppress(OSError, TimeoutError):
                _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 1)
                writer.close()
                member.serving = True
                return True
            await asyncio.sleep(0.1)
        return False

    def kill(self, member: Member) -> None:
        self._signal(member, signal.SIGKILL)
        if member.process is not None:
            member.process.wait(10)
        member.killed, member.paused = True, False

    def restart(self, member: Member) -> None:
        if member.running or member.removed or member.join_failed:
            return
        self._spawn(member, member.argv)

    def pause(self, member: Member) -> None:
        self._signal(member, signal.SIGSTOP)
        member.paused = True

    def resume(self, member: Member) -> None:
        """SIGCONT whether or not we think it is paused: continuing a running process does
        nothing, and a process left stopped by a lost race would look like a hung member."""
        self._signal(member, signal.SIGCONT)
        member.paused = False

    def _signal(self, member: Member, sig: signal.Signals) -> None:
        if member.process is not None and member.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.process.pid, sig)

    def close(self) -> None:
        """Kill, by PID, every process this cluster started that still runs."""
        for member in self.members.values():
            for process in member.history:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGCONT)
                        os.kill(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)
