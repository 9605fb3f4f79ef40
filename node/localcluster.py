"""A local multi-member cluster on loopback, for machines without Docker (the README's run command).

    python -m node.localcluster                 # 3 members under ./raftnode-cluster, Ctrl-C stops
    python -m node.localcluster --nodes 5 --dir /tmp/c --base-port 42379

Each member is a real ``python -m node`` process with its own data dir under ``--dir``; member i
listens for clients on base+2*(i-1) and for peers on base+2*(i-1)+1. It prints the endpoints and
the ``etcdctl`` line to use, and stops every member it started (by PID) on Ctrl-C or SIGTERM.
Re-running it on the same ``--dir`` restarts the same members on their data.

``LocalCluster`` is also what benchmarks and process tests use to start clusters.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def client_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"


@dataclass
class LocalCluster:
    root: Path
    nodes: int = 3
    base_port: int = 32379
    token: str = "raftnode-local"
    heartbeat_ms: int = 100
    election_ms: int = 1000
    extra_args: Sequence[str] = ()
    members: list[Member] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i in range(self.nodes):
            name = f"node{i + 1}"
            port = self.base_port + 2 * i
            self.members.append(
                Member(
                    name=name,
                    client_port=port,
                    peer_port=port + 1,
                    data_dir=self.root / name,
                    log_path=self.root / f"{name}.log",
                )
            )

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members)

    def command(self, member: Member) -> list[str]:
        return [
            sys.executable,
            "-m",
            "node",
            "--name",
            member.name,
            "--data-dir",
            str(member.data_dir),
            "--listen-client-urls",
            member.client_url,
            "--advertise-client-urls",
            member.client_url,
            "--listen-peer-urls",
            member.peer_url,
            "--initial-advertise-peer-urls",
            member.peer_url,
            "--initial-cluster",
            self.initial_cluster,
            "--initial-cluster-token",
            self.token,
            "--heartbeat-interval",
            str(self.heartbeat_ms),
            "--election-timeout",
            str(self.election_ms),
            *self.extra_args,
        ]

    def start(self, timeout: float = 30.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for member in self.members:
            self.start_member(member)
        self.wait_ready(timeout)

    def start_member(self, member: Member) -> None:
        log = member.log_path.open("ab")
        member.process = subprocess.Popen(
            self.command(member), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def wait_ready(self, timeout: float, members: Sequence[Member] | None = None) -> None:
        """Wait (bounded polling) until every member's client port accepts connections: a
        member opens it only after its publish has been applied (spec §5.1)."""
        deadline = time.monotonic() + timeout
        for member in members if members is not None else self.members:
            while not _port_open(member.client_port):
                if member.process is not None and member.process.poll() is not None:
                    raise RuntimeError(
                        f"{member.name} exited with {member.process.returncode}; "
                        f"see {member.log_path}"
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{member.name} did not come up; see {member.log_path}")
                time.sleep(0.05)

    def stop_member(self, member: Member, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        process = member.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for member in self.members:
            self.stop_member(member)


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run a local raftnode cluster on loopback.")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--dir", default="raftnode-cluster", help="parent of the data dirs")
    parser.add_argument("--base-port", type=int, default=32379)
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 9:
        parser.error("--nodes must be between 1 and 9")
    cluster = LocalCluster(Path(args.dir).resolve(), args.nodes, args.base_port)
    stop = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        cluster.start()
        print(f"raftnode cluster of {args.nodes} is up; data and logs under {cluster.root}")
        for member in cluster.members:
            print(f"  {member.name}: client {member.client_url}  peer {member.peer_url}")
        print(f"\n  ETCDCTL_API=3 etcdctl --endpoints={cluster.endpoints} member list -w table\n")
        print("Ctrl-C stops every member.", flush=True)
        while not stop:
            for member in cluster.members:
                if member.process is not None and member.process.poll() is not None:
                    print(f"{member.name} exited ({member.process.returncode})", file=sys.stderr)
                    member.process = None
            if all(member.process is None for member in cluster.members):
                print("raftnode-cluster: every member has exited", file=sys.stderr)
                return 1
            time.sleep(0.2)
    except (RuntimeError, TimeoutError) as exc:
        print(f"raftnode-cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
