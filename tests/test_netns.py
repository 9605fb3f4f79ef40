"""tests/netns.py: the plan without root, and a real LAN (slow, root only) that must resolve names,
carry traffic between namespaces and to the host, and leave nothing behind."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import netns
from tests.netns import Lan, namespaces_unavailable

# ---- the plan (no root) --------------------------------------------------------------------------


def test_addresses_follow_the_subnet_after_the_host() -> None:
    lan = Lan("rnx", ["node1", "node2"], subnet="10.88.3.0/24")
    assert lan.host_ip == "10.88.3.1"
    assert [lan.ip("node1"), lan.ip("node2")] == ["10.88.3.2", "10.88.3.3"]
    assert lan.netns("node2") == "rnx-node2"
    assert lan.host_veth("node2") == "rnxh1"


def test_interface_names_fit_the_kernel_limit_for_the_longest_prefix() -> None:
    lan = Lan("a" * netns.MAX_PREFIX_LEN, [f"member-with-a-long-name-{i}" for i in range(12)])
    assert len(lan.host_veth("member-with-a-long-name-11")) <= 15
    assert len(f"{'a' * netns.MAX_PREFIX_LEN}n{netns.MAX_MEMBERS}") <= 15


@pytest.mark.parametrize("prefix", ["", "Rn", "rn-x", "1rn", "r" * (netns.MAX_PREFIX_LEN + 1)])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        Lan(prefix, ["a"])


@pytest.mark.parametrize("name", ["", "Node1", "-a", "a b", "a_b"])
def test_bad_member_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="host name"):
        Lan("rnx", [name])


def test_duplicate_names_and_a_full_subnet_are_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        Lan("rnx", ["a", "a"])
    with pytest.raises(ValueError, match="no address left"):
        Lan("rnx", ["a", "b"], subnet="10.1.1.0/30")  # .1 is the host, .2 the only member


def test_hosts_file_maps_every_member() -> None:
    lan = Lan("rnx", ["a", "b"], subnet="10.9.0.0/24")
    lines = lan.hosts_text().splitlines()
    assert "127.0.0.1\tlocalhost" in lines
    assert lines[-2:] == ["10.9.0.2\ta", "10.9.0.3\tb"]


def test_exec_argv_enters_the_members_namespace() -> None:
    lan = Lan("rnx", ["a"])
    assert lan.exec_argv("a", ["python3", "-V"]) == [
        "ip",
        "netns",
        "exec",
        "rnx-a",
        "python3",
        "-V",
    ]
    with pytest.raises(KeyError):
        lan.exec_argv("nobody", ["true"])


def test_not_root_is_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "root" in (namespaces_unavailable() or "")


# ---- a real LAN (root) ---------------------------------------------------------------------------

PREFIX = "rntst"
SUBNET = "10.77.250.0/24"

#: Listens on the member's own address, says so on stdout, answers one connection with its
#: resolver's view of every name, then exits.
SERVER = """
import socket, sys
srv = socket.create_server((socket.gethostbyname(sys.argv[1]), 7000))
print("listening", flush=True)
conn, _ = srv.accept()
names = conn.recv(1000).decode().split()
conn.sendall(" ".join(socket.gethostbyname(n) for n in names).encode())
conn.close()
"""

CLIENT = """
import socket, sys
with socket.create_connection((sys.argv[1], 7000), timeout=10) as s:
    s.sendall(" ".join(sys.argv[2:]).encode())
    s.shutdown(socket.SHUT_WR)
    print(s.recv(1000).decode())
"""


@pytest.fixture
def need_namespaces() -> None:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)


def leftovers() -> list[str]:
    """Anything with the test prefix still on the host."""
    found = [ns for ns in _run("ip", "netns", "list").split() if ns.startswith(f"{PREFIX}-")]
    found += [
        word.rstrip(":").split("@")[0]
        for word in _run("ip", "-o", "link", "show").split()
        if word.startswith(PREFIX)
    ]
    found += [str(p) for p in Path("/etc/netns").glob(f"{PREFIX}-*")]
    return found


def _run(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True).stdout


@pytest.fixture
def lan(need_namespaces: None) -> Iterator[Lan]:
    with Lan(PREFIX, ["alpha", "beta"], subnet=SUBNET) as built:
        yield built
    assert leftovers() == []


def serve(lan: Lan, name: str) -> subprocess.Popen[bytes]:
    proc = lan.popen(name, [sys.executable, "-c", SERVER, name], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"listening\n"
    return proc


def ask(lan: Lan, client: str, server: str, *names: str) -> list[str]:
    argv = lan.exec_argv(client, [sys.executable, "-c", CLIENT, server, *names])
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()


@pytest.mark.slow
def test_members_reach_each_other_by_name(lan: Lan) -> None:
    server = serve(lan, "beta")
    answer = ask(lan, "alpha", "beta", "alpha", "beta")
    assert answer == [lan.ip("alpha"), lan.ip("beta")]
    assert server.wait(timeout=10) == 0


@pytest.mark.slow
def test_the_host_reaches_members_by_ip(lan: Lan) -> None:
    server = serve(lan, "alpha")
    with socket.create_connection((lan.ip("alpha"), 7000), timeout=10) as conn:
        conn.sendall(b"beta")
        conn.shutdown(socket.SHUT_WR)
        assert conn.recv(100) == lan.ip("beta").encode()
    assert server.wait(timeout=10) == 0


@pytest.mark.slow
def test_a_member_added_later_is_known_to_everyone(lan: Lan) -> None:
    server = serve(lan, "alpha")  # already running when gamma appears, yet resolves it
    lan.add_member("gamma")
    assert ask(lan, "gamma", "alpha", "gamma", "beta") == [lan.ip("gamma"), lan.ip("beta")]
    assert server.wait(timeout=10) == 0


@pytest.mark.slow
def test_exit_kills_processes_left_running(lan: Lan) -> None:
    proc = lan.popen("alpha", [sys.executable, "-c", "import time; time.sleep(3600)"])
    lan.__exit__(None, None, None)
    assert proc.poll() is not None
    assert leftovers() == []


@pytest.mark.slow
def test_a_failed_setup_removes_what_it_made(
    need_namespaces: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = Lan._add_namespace

    def fail_on_second(self: Lan, name: str) -> None:
        real(self, name)
        if name == "beta":
            raise netns.NetnsError("injected")

    monkeypatch.setattr(Lan, "_add_namespace", fail_on_second)
    with pytest.raises(netns.NetnsError, match="injected"), Lan(PREFIX, ["alpha", "beta"], SUBNET):
        pass
    assert leftovers() == []


@pytest.mark.slow
def test_leftovers_of_a_crashed_run_are_removed_first(need_namespaces: None) -> None:
    _run("ip", "netns", "add", f"{PREFIX}-stale")
    _run("ip", "link", "add", f"{PREFIX}br", "type", "bridge")
    _run("ip", "link", "add", f"{PREFIX}h7", "type", "veth", "peer", "name", f"{PREFIX}n7")
    try:
        with Lan(PREFIX, ["alpha"], SUBNET) as built:
            assert f"{PREFIX}-stale" not in _run("ip", "netns", "list")
            assert f"{PREFIX}h7" not in _run("ip", "-o", "link", "show")
            assert built.ip("alpha") == "10.77.250.2"
    finally:
        subprocess.run(["ip", "netns", "del", f"{PREFIX}-stale"], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", f"{PREFIX}h7"], capture_output=True, check=False)
    assert leftovers() == []
