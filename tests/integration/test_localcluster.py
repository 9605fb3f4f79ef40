"""The README's run command, ``raftnode-cluster`` (issue 6, item 2): it starts N members on loopback
under one folder, prints the endpoints and the etcdctl line, serves, and stops every member on
Ctrl-C. Waits are bounded polls."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.procs import port_open, run, wait_for

pytestmark = pytest.mark.slow


def free_base() -> int:
    """A base port whose six ports (3 members x client, peer) are free."""
    for base in range(24000, 31000, 100):
        if not any(port_open(p) for p in range(base, base + 6)):
            return base
    raise RuntimeError("no free port range")


def test_the_run_command_prints_serves_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    base = free_base()
    command = [sys.executable, "-m", "node.localcluster", "--dir", str(tmp_path / "c")]
    process = subprocess.Popen(
        [*command, "--nodes", "3", "--base-port", str(base)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:  # bounded by the member start timeout inside the command
            lines.append(line)
            if line.startswith("Ctrl-C stops every member."):
                break
        text = "".join(lines)
        clients = re.findall(r"client (http://127\.0\.0\.1:\d+)", text)
        assert clients == [f"http://127.0.0.1:{base + 2 * i}" for i in range(3)], text
        assert all((tmp_path / "c" / f"node{i}").is_dir() for i in (1, 2, 3))
        etcdctl_line = next(line.strip() for line in lines if "etcdctl --endpoints=" in line)
        endpoints = re.search(r"--endpoints=(\S+)", etcdctl_line)
        assert endpoints is not None
        listed = run(
            [sys.executable, "-m", "node", "member", "list", f"--endpoints={endpoints.group(1)}"]
        )
        assert listed.code == 0, str(listed)
        assert sorted(row.split(", ")[2] for row in listed.stdout.splitlines()) == [
            "node1",
            "node2",
            "node3",
        ]

        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 0
        ports = range(base, base + 6)
        wait_for(lambda: not any(port_open(p) for p in ports) or None, 10, "members to stop")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
