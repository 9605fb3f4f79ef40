"""Real raftnode member processes on loopback, for the slow test layer (CONVENTIONS P8 f).

`Procs` starts members as ``python -m node`` child processes with free loopback ports and data
dirs under a pytest ``tmp_path``, and always kills what it started, **by PID**, when it closes:
use it as a context manager (or call `close` from a fixture finalizer). Nothing here sleeps for a
fixed time: every wait is a bounded poll (`wait_for`) that fails with the member's log tail.

Timers are short so the layer stays fast: 50 ms heartbeats, a 500 ms election timeout (so the
node's ReqTimeout is 5 s + 2 × 0.5 s = 6 s), and the test-only ``--health-interval`` of 0.2 s (how
long a peer must be connected before the strict reconfiguration checks count it, spec §3.4).

`etcdctl` runs Debian's etcdctl 3.4 (``ETCDCTL_API=3``) with a bounded wall-clock timeout;
`require_etcdctl` skips, with the reason printed by ``-ra``, where it is not installed. CI
installs it (``.ci/run``), so there the compatibility tests always run.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import pytest

from node import localcluster

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Fast timers for every member this module starts (see the module docstring).
HEARTBEAT_MS = 50
ELECTION_MS = 500
HEALTH_INTERVAL_S = 0.2
#: The node's own bound on a conf change (spec §3.5): 5 s + 2 × the election timeout.
REQUEST_TIMEOUT_S = 5.0 + 2 * ELECTION_MS / 1000

#: Upper bounds for polls. They are only reached when something is broken.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_S = 0.02

DEFAULT_TOKEN = "raftnode-procs"

T = TypeVar("T")


# ---- bounded polling ---------------------------------------------------------------------------


def wait_for(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    on_timeout: Callable[[], str] = lambda: "",
) -> T:
    """Call ``probe`` until it returns something other than None/False, at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    delay = POLL_S
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            detail = on_timeout()
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}\n{detail}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


# ---- ports ---------------------------------------------------------------------------------------

#: Ports are drawn below Linux's ephemeral range (32768+), so an outgoing connection made by a
#: node or etcdctl cannot take a port between our check and the node binding it.
_PORT_RANGE = (20000, 32000)
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that nothing is bound to now and that this process never handed out."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*_PORT_RANGE)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


# ---- etcdctl ------------------------------------------------------------------------------------


def require_etcdctl() -> str:
    """The etcdctl path, or skip the test with a printed reason."""
    path = shutil.which("etcdctl")
    if path is None:
        pytest.skip(
            "etcdctl not found on PATH: install Debian's etcd-client (etcdctl 3.4; .ci/run does)"
        )
    return path


@dataclass(frozen=True)
class Result:
    """One finished command: its exit code and what it printed."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def error(self) -> str:
        """The last line etcdctl printed to stderr (``Error: ...``), or ""."""
        lines = self.stderr.strip().splitlines()
        return lines[-1] if lines else ""

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n[exit {self.code}]\n--- stdout\n{self.stdout}"
            f"--- stderr\n{self.stderr}"
        )


def run(
    args: Sequence[str],
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    text: bool = True,
) -> Result:
    """Run a short-lived command to completion, bounded by ``timeout`` (it is killed then)."""
    full_env = {**_clean_env(), **(env or {})}
    completed = subprocess.run(
        list(args), capture_output=True, timeout=timeout, env=full_env, check=False
    )
    out = completed.stdout.decode(errors="replace") if text else completed.stdout.hex()
    return Result(tuple(args), completed.returncode, out, completed.stderr.decode(errors="replace"))


def etcdctl_raw(endpoints: Iterable[str], *args: str, timeout: float = 30.0) -> bytes:
    """etcdctl's stdout as bytes (for ``-w protobuf``); raises on a non-zero exit."""
    cmd = [require_etcdctl(), f"--endpoints={','.join(endpoints)}", "--dial-timeout=2s", *args]
    completed = subprocess.run(
        cmd, capture_output=True, timeout=timeout, env={**_clean_env(), "ETCDCTL_API": "3"}
    )
    assert completed.returncode == 0, completed.stderr.decode(errors="replace")
    return completed.stdout


def etcdctl(endpoints: Iterable[str], *args: str, timeout: float = 30.0) -> Result:
    """``etcdctl --endpoints=... args`` with API v3; never raises on a non-zero exit."""
    cmd = [require_etcdctl(), f"--endpoints={','.join(endpoints)}", "--dial-timeout=2s", *args]
    return run(cmd, timeout=timeout, env={"ETCDCTL_API": "3"})


def _clean_env() -> dict[str, str]:
    """The test's environment without ETCD_*/ETCDCTL_* variables, which would leak into
    members and etcdctl runs."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "ETCDCTL_"))}


# ---- members ------------------------------------------------------------------------------------


@dataclass
class Member(localcluster.Member):
    """One member's ports, paths and (while it runs) process; the URLs come from the launcher's
    member, plus what a test needs to restart and reap it."""

    #: The command line and extra environment of the last start, for `Procs.restart`.
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    #: Every process started for this member, so `Procs.close` can reap them all.
    history: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        tail = "\n".join(self.log().splitlines()[-lines:])
        return f"--- last lines of {self.name}'s log ({self.log_path})\n{tail}"

    def ctl(self, *args: str, timeout: float = 30.0) -> Result:
        """etcdctl against this member's client endpoint."""
        return etcdctl([self.endpoint], *args, timeout=timeout)


def initial_cluster(members: Iterable[Member]) -> str:
    return ",".join(f"{m.name}={m.peer_url}" for m in members)


class Procs:
    """Starts and stops member processes; `close` kills, by PID, every process still running."""

    def __init__(self, root: Path, token: str = DEFAULT_TOKEN) -> None:
        self.root = root
        self.token = token
        self.members: dict[str, Member] = {}

    def __enter__(self) -> Procs:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- creating and starting --

    def member(self, name: str) -> Member:
        """A new member with fresh ports and an (unused) data dir path under ``root``."""
        assert name not in self.members, f"member {name} exists"
        member = Member(
            name=name,
            client_port=free_port(),
            peer_port=free_port(),
            data_dir=self.root / f"{name}.etcd",
            log_path=self.root / f"{name}.log",
        )
        self.members[name] = member
        return member

    def args(
        self,
        member: Member,
        cluster: str | None,
        state: str | None = "new",
        token: str | None = None,
    ) -> list[str]:
        """The command line that starts ``member``; ``cluster``/``state`` None leave the flag out
        (so the ETCD_* environment variables etcdctl printed can supply it)."""
        args = [
            sys.executable,
            "-m",
            "node",
            "--data-dir",
            str(member.data_dir),
            "--listen-client-urls",
            member.client_url,
            "--advertise-client-urls",
            member.client_url,
            "--listen-peer-urls",
            member.peer_url,
            "--initial-cluster-token",
            token or self.token,
            "--heartbeat-interval",
            str(HEARTBEAT_MS),
            "--election-timeout",
            str(ELECTION_MS),
            "--health-interval",
            str(HEALTH_INTERVAL_S),
        ]
        if cluster is not None:
            args += ["--name", member.name, "--initial-advertise-peer-urls", member.peer_url]
            args += ["--initial-cluster", cluster]
        if state is not None:
            args += ["--initial-cluster-state", state]
        return args

    def spawn(self, member: Member, args: Sequence[str], env: Mapping[str, str] = {}) -> None:
        """Start ``member`` with ``args``; its stdout and stderr go to its log file."""
        assert not member.running, f"{member.name} is already running"
        with member.log_path.open("ab") as log:
            log.write(f"=== {' '.join(args)}\n".encode())
            log.flush()
            process = subprocess.Popen(
                list(args),
                cwd=REPO_ROOT,
                env={**_clean_env(), "PYTHONUNBUFFERED": "1", **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal does not reach it first
            )
        member.process = process
        member.args, member.env = list(args), dict(env)
        member.history.append(process)

    def start(
        self,
        member: Member,
        cluster: str | None,
        state: str | None = "new",
        token: str | None = None,
        env: Mapping[str, str] = {},
        wait: bool = True,
    ) -> Member:
        self.spawn(member, self.args(member, cluster, state, token), env)
        if wait:
            self.wait_ready(member)
        return member

    def start_cluster(self, *names: str) -> list[Member]:
        """Bootstrap a new cluster of ``names`` and wait until every member serves clients."""
        members = [self.member(name) for name in names]
        cluster = initial_cluster(members)
        for member in members:
            self.start(member, cluster, wait=False)
        for member in members:
            self.wait_ready(member)
        return members

    def restart(self, member: Member, wait: bool = True) -> Member:
        """Start ``member`` again, on its data dir, exactly as it was last started."""
        assert member.args, f"{member.name} was never started"
        self.spawn(member, member.args, member.env)
        if wait:
            self.wait_ready(member)
        return member

    # -- waiting --

    def wait_ready(self, member: Member, timeout: float = START_TIMEOUT_S) -> None:
        """Until the client port accepts connections: it opens only after the member's publish
        was applied (spec §5.1). Fails at once, with the log, if the process exits."""

        def probe() -> bool:
            if not member.running:
                raise AssertionError(
                    f"{member.name} exited with {self.returncode(member)} before serving\n"
                    + member.log_tail()
                )
            return port_open(member.client_port)

        wait_for(probe, timeout, f"{member.name} to serve clients", member.log_tail)

    def wait_exit(self, member: Member, timeout: float = STOP_TIMEOUT_S) -> int:
        """Until ``member`` exits by itself; returns its exit code."""
        process = member.process
        assert process is not None, f"{member.name} was never started"
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{member.name} still runs after {timeout}s\n{member.log_tail()}"
            ) from None

    def returncode(self, member: Member) -> int | None:
        return member.process.poll() if member.process is not None else None

    # -- stopping --

    def stop(self, member: Member, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (a graceful drain), bounded; SIGKILL if it does not exit in time."""
        return self._signal_and_wait(member, signal.SIGTERM, timeout)

    def kill(self, member: Member) -> int:
        """SIGKILL: no drain, no final fsync, as a crash."""
        return self._signal_and_wait(member, signal.SIGKILL, STOP_TIMEOUT_S)

    def _signal_and_wait(self, member: Member, sig: signal.Signals, timeout: float) -> int:
        process = member.process
        assert process is not None, f"{member.name} was never started"
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT_S)
            raise AssertionError(
                f"{member.name} did not stop within {timeout}s of {sig.name}\n{member.log_tail()}"
            ) from None

    def close(self) -> None:
        """Kill every process this object started that still runs (by PID) and reap it."""
        for member in self.members.values():
            for process in member.history:
                if process.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(STOP_TIMEOUT_S)

    # -- looking at the cluster --

    def member_list(self, member: Member) -> dict[str, Any]:
        """``etcdctl member list -w json`` from ``member`` (its local, serializable view)."""
        result = member.ctl("member", "list", "-w", "json")
        assert result.code == 0, str(result)
        reply: dict[str, Any] = result.json()
        return reply

    def leader_id(self, members: Iterable[Member], not_id: int = 0) -> int | None:
        """The leader every given member agrees on (and that is not ``not_id``), or None."""
        leaders: set[int] = set()
        for member in members:
            result = member.ctl("endpoint", "status", "-w", "json", "--command-timeout=2s")
            if result.code != 0:
                return None
            leaders.add(result.json()[0]["Status"].get("leader", 0))
        if len(leaders) != 1 or leaders & {0, not_id}:
            return None
        return leaders.pop()

    def wait_leader(
        self, members: Sequence[Member], not_id: int = 0, timeout: float = START_TIMEOUT_S
    ) -> int:
        """Until ``members`` agree on a leader other than ``not_id`` (a member just stopped:
        a proposal forwarded to it before the others notice is lost, as in etcd)."""
        return wait_for(
            lambda: self.leader_id(members, not_id),
            timeout,
            "one leader that every member sees",
            lambda: "\n".join(m.log_tail(15) for m in members),
        )


def members_by_name(reply: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {m.get("name", ""): m for m in reply["members"]}


def retry_ctl(
    member: Member,
    *args: str,
    retry_on: Sequence[str] = ("unhealthy cluster",),
    timeout: float = 15.0,
) -> Result:
    """Run an etcdctl command until its error is none of ``retry_on`` (bounded): the strict
    checks refuse adds until peers have been connected for the health interval (spec §3.4)."""

    def probe() -> Result | None:
        result = member.ctl(*args)
        if result.code != 0 and any(text in result.stderr for text in retry_on):
            return None
        return result

    return wait_for(probe, timeout, f"etcdctl {' '.join(args)}", member.log_tail)
