"""A small virtual LAN of Linux network namespaces, for tests that need real hosts by name.

Docker is not available on our machines, yet some tests want what a compose network gives: each
process on its own host with its own IP, reachable from the others by service name. `Lan` builds
that from plain iproute2: one bridge, and per name a namespace ``<prefix>-<name>`` joined to the
bridge by a veth pair, with ``/etc/netns/<ns>/hosts`` mapping every name to its IP (``ip netns
exec`` bind-mounts that file over ``/etc/hosts``, so names resolve inside). The host side of the
bridge takes the subnet's first address, so test code on the host reaches every member by IP.

Everything is created in ``__enter__`` and deleted in ``__exit__``, always, even when setup fails
halfway; leftovers of a crashed earlier run with the same prefix are removed before setup. A
prefix must therefore be unique among Lans that may exist at the same time, and so must the subnet
(two bridges on one subnet would make host routing ambiguous: setup refuses a subnet that is
already routed).

Interface names are derived from the prefix and a member's index (``<prefix>br``, ``<prefix>h3``;
``eth0`` inside each namespace), which keeps them under Linux's 15-character limit whatever the
member names are. Creating namespaces needs root; `namespaces_unavailable` says why a machine
cannot, so a test can skip with that reason.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

#: Where ``ip netns exec`` looks for per-namespace files that it mounts over ``/etc``.
NETNS_ETC = Path("/etc/netns")

#: Bound for one iproute2 command; they finish in milliseconds unless something is broken.
IP_TIMEOUT_S = 10.0

#: Linux's interface name limit is 15 characters; ``<prefix>h<index>`` must fit.
MAX_PREFIX_LEN = 8
MAX_MEMBERS = 999

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]*$")
_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


class NetnsError(RuntimeError):
    """An iproute2 command failed; the message carries the command and its stderr."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def namespaces_unavailable() -> str | None:
    """Why this machine cannot create network namespaces, or None when it can.

    The probe really creates (and removes) a namespace and a bridge, so a container that forbids
    either is reported rather than failing a test later.
    """
    if os.geteuid() != 0:
        return "network namespaces need root (this process is not euid 0)"
    if shutil.which("ip") is None:
        return "iproute2's `ip` command is not installed"
    probe_ns = f"rnprobe-{os.getpid()}"
    probe_br = f"rnpb{os.getpid() % 100_000_000}"
    try:
        _ip("netns", "add", probe_ns)
        _ip("link", "add", probe_br, "type", "bridge")
    except (NetnsError, OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot create a network namespace and a bridge here: {exc}"
    finally:
        _ip("link", "del", probe_br, check=False)
        _ip("netns", "del", probe_ns, check=False)
    return None


def hosts_file_text(addresses: Mapping[str, str]) -> str:
    """An /etc/hosts for a namespace: localhost plus every member name and its IP."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{ip}\t{name}" for name, ip in addresses.items()]
    return "\n".join(lines) + "\n"


class Lan:
    """A bridge plus one network namespace per name; see the module docstring.

    Construction only validates and plans (no root needed); ``with Lan(...) as lan`` builds it.
    """

    def __init__(self, prefix: str, names: Sequence[str], subnet: str = "10.77.0.0/24") -> None:
        if not _PREFIX_RE.match(prefix) or len(prefix) > MAX_PREFIX_LEN:
            raise ValueError(
                f"prefix {prefix!r}: 1-{MAX_PREFIX_LEN} characters, a lowercase letter first, "
                "then lowercase letters or digits (interface names derive from it)"
            )
        self._prefix = prefix
        self._network = ipaddress.IPv4Network(subnet)
        hosts = self._network.hosts()
        self._host_ip = str(next(hosts, ""))
        if not self._host_ip:
            raise ValueError(f"subnet {subnet} has no host addresses")
        self._free_ips = (str(ip) for ip in hosts)
        self._names: list[str] = []
        self._ips: dict[str, str] = {}
        for name in names:
            self._plan(name)
        self._bridge = f"{prefix}br"
        # What __enter__ really created, so __exit__ removes exactly that.
        self._created_ns: list[str] = []
        self._created_links: list[str] = []
        self._created_dirs: list[Path] = []
        self._procs: list[subprocess.Popen[bytes]] = []

    # ---- the plan: names, addresses, interface names (pure) -------------------------------------

    def _plan(self, name: str) -> None:
        if not _NAME_RE.match(name) or len(name) > 63:
            raise ValueError(f"member name {name!r} is not a valid host name")
        if name in self._ips:
            raise ValueError(f"member name {name!r} given twice")
        if len(self._names) >= MAX_MEMBERS:
            raise ValueError(f"at most {MAX_MEMBERS} members")
        ip = next(self._free_ips, None)
        if ip is None:
            raise ValueError(f"subnet {self._network} has no address left for {name!r}")
        self._names.append(name)
        self._ips[name] = ip

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def host_ip(self) -> str:
        """The host's address on the bridge: processes in a namespace reach the host here."""
        return self._host_ip

    def ip(self, name: str) -> str:
        return self._ips[name]

    def netns(self, name: str) -> str:
        if name not in self._ips:
            raise KeyError(name)
        return f"{self._prefix}-{name}"

    def host_veth(self, name: str) -> str:
        """The host-side veth of ``name`` (its peer is ``eth0`` inside the namespace)."""
        return f"{self._prefix}h{self._names.index(name)}"

    def hosts_text(self) -> str:
        return hosts_file_text(self._ips)

    def exec_argv(self, name: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``name``'s namespace (and so with its /etc/hosts)."""
        return ["ip", "netns", "exec", self.netns(name), *argv]

    def popen(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        **kw: Any,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``name``'s namespace.

        `__exit__` kills it if it still runs (by PID) and closes its pipes.
        """
        proc: subprocess.Popen[bytes] = subprocess.Popen(
            self.exec_argv(name, argv), env=None if env is None else dict(env), **kw
        )
        self._procs.append(proc)
        return proc

    # ---- building and removing ------------------------------------------------------------------

    def __enter__(self) -> Lan:
        try:
            self._remove_stale()
            self._check_subnet_free()
            self._created_links.append(self._bridge)
            _ip("link", "add", self._bridge, "type", "bridge")
            _ip("addr", "add", f"{self._host_ip}/{self._network.prefixlen}", "dev", self._bridge)
            _ip("link", "set", self._bridge, "up")
            for name in self._names:
                self._add_namespace(name)
            self._write_hosts_files()
        except BaseException:
            self._teardown()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._teardown()

    def add_member(self, name: str) -> None:
        """One more namespace on the running LAN; every member's hosts file learns the name."""
        self._plan(name)
        try:
            self._add_namespace(name)
        finally:
            self._write_hosts_files()

    def _add_namespace(self, name: str) -> None:
        ns = self.netns(name)
        host_end = self.host_veth(name)
        ns_end = f"{self._prefix}n{self._names.index(name)}"
        self._created_ns.append(ns)
        _ip("netns", "add", ns)
        self._created_links.append(host_end)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        _ip("link", "set", ns_end, "netns", ns)
        _ip("-n", ns, "link", "set", ns_end, "name", "eth0")
        _ip("-n", ns, "addr", "add", f"{self.ip(name)}/{self._network.prefixlen}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "set", host_end, "master", self._bridge, "up")

    def _write_hosts_files(self) -> None:
        """Rewrite every member's hosts file in place. In place matters: ``ip netns exec``
        bind-mounts the file's inode over /etc/hosts, so processes already running see a member
        added later only if the same inode changes (a rename would leave them the old file)."""
        text = self.hosts_text()
        for ns in self._created_ns:
            folder = NETNS_ETC / ns
            if folder not in self._created_dirs:
                self._created_dirs.append(folder)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text(text)

    def _check_subnet_free(self) -> None:
        routes = _ip("-o", "route", "show", "exact", str(self._network)).stdout.strip()
        if routes:
            raise NetnsError(f"subnet {self._network} is already in use on this host: {routes}")

    def _remove_stale(self) -> None:
        """Delete what a crashed earlier run with this prefix left behind."""
        listed = _ip("netns", "list", check=False).stdout.split("\n")
        stale_ns = [line.split()[0] for line in listed if line.startswith(f"{self._prefix}-")]
        links = _ip("-o", "link", "show", check=False).stdout.splitlines()
        link_re = re.compile(rf"^\d+: ({re.escape(self._prefix)}(?:br|h\d+))[@:]")
        stale_links = [m.group(1) for m in map(link_re.match, links) if m]
        stale_dirs = sorted(NETNS_ETC.glob(f"{self._prefix}-*")) if NETNS_ETC.is_dir() else []
        _delete(stale_ns, stale_links, stale_dirs)

    def _teardown(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=IP_TIMEOUT_S)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        self._procs.clear()
        _delete(self._created_ns, list(reversed(self._created_links)), self._created_dirs)
        self._created_ns.clear()
        self._created_links.clear()
        self._created_dirs.clear()


def _delete(namespaces: Sequence[str], links: Sequence[str], dirs: Sequence[Path]) -> None:
    """Best-effort removal: every step runs even if an earlier one fails.

    Processes still inside a namespace are killed first (by PID): they were started there by a
    Lan and would otherwise outlive the namespace's name, holding its address.
    """
    for ns in namespaces:
        pids = _ip("netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "del", ns, check=False)
    for link in links:
        _ip("link", "del", link, check=False)
    for folder in dirs:
        shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only when empty: other users' folders stay
