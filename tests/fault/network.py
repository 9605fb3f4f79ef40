"""Where members live and how their links fail: the `Network` protocol and its two implementations.

* `NetnsNetwork` (root): each member in its own network namespace on a bridge (`tests.netns.Lan`).
  A partition adds ``ip route add blackhole <peer ip>/32`` on both sides of every cut link, so
  packets vanish as on a real network; a slow member gets a ``tbf`` qdisc on its ``eth0``.
* `ProxyNetwork` (anyone): members on loopback, each advertising one inbound TCP proxy as its peer
  URL. The proxy reads raftnode's peer handshake (``MAGIC | cluster id | sender id | receiver
  id``, `node.transport`) to learn which directed link a connection carries, so it can blackhole
  (read and discard) or delay that link alone. Client ports are not proxied: the runner talks to
  every member directly, and an isolated member simply cannot reach its peers.

A member's links are named by member *name*; the proxy needs the raft ID of each name
(`bind_id`), which the runner learns from the first member list and from add replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from node.transport import _HELLO, MAGIC
from tests import netns
from tests.procs import free_port

#: Proxy mode: the delay added to every chunk on a slow link.
PROXY_SLOW_DELAY_S = 0.15
#: Netns mode: the token bucket of a slow member's egress.
TBF_ARGS = ("rate", "64kbit", "burst", "4kb", "latency", "400ms")
#: Netns mode: the ports members listen on inside their namespaces.
NETNS_CLIENT_PORT = 2379
NETNS_PEER_PORT = 2380


@dataclass(frozen=True)
class Placement:
    """Where one member listens and what it advertises."""

    client_url: str  # listened on and advertised; the runner connects here
    listen_peer_url: str
    advertised_peer_url: str

    @property
    def endpoint(self) -> str:
        return self.client_url.removeprefix("http://")


class Network(Protocol):
    mode: str

    async def place(self, name: str) -> Placement:
        """Provision a host (or ports and a proxy) for a new member ``name``."""

    def peer_url_variant(self, name: str, serial: int) -> str:
        """Another, never used, peer URL that still reaches ``name`` (for MemberUpdate)."""

    def unserved_peer_url(self, serial: int) -> str:
        """A peer URL nobody serves (a member that never starts)."""

    def popen(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], **kw: Any
    ) -> subprocess.Popen[bytes]:
        """Start a member process where ``name`` lives."""

    def bind_id(self, name: str, member_id: int) -> None: ...

    async def partition(self, groups: Sequence[Iterable[str]]) -> None:
        """Cut every link between members of different groups (both directions)."""

    async def isolate(self, name: str) -> None: ...

    async def slow(self, name: str) -> None: ...

    async def heal(self) -> None:
        """Undo every partition and slow link."""

    async def close(self) -> None: ...


def cut_links(names: Iterable[str], groups: Sequence[Iterable[str]]) -> set[tuple[str, str]]:
    """The directed links ``(a, b)`` a partition into ``groups`` cuts; names in no group form one
    more group of their own."""
    side: dict[str, int] = {}
    for number, group in enumerate(groups):
        for name in group:
            side[name] = number
    everyone = set(names) | set(side)
    rest = len(groups)
    return {
        (a, b)
        for a, b in itertools.permutations(sorted(everyone), 2)
        if side.get(a, rest) != side.get(b, rest)
    }


# ---- proxies ------------------------------------------------------------------------------


class _LinkProxy:
    """The inbound proxy of one member: every peer connection to it passes through here."""

    def __init__(self, network: ProxyNetwork, name: str, backend_port: int) -> None:
        self.network = network
        self.name = name
        self.backend_port = backend_port
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", port)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        try:
            hello = await reader.readexactly(_HELLO.size)
            magic, _, sender, _ = _HELLO.unpack(hello)
            source = self.network.name_of(sender) if magic == MAGIC else None
            link = (source, self.name)
            while self.network.blocked(link):  # a blackhole: the dialler hears nothing
                if not await reader.read(65536):
                    return
            up_reader, upstream = await asyncio.open_connection("127.0.0.1", self.backend_port)
            upstream.write(hello)
            back = (self.name, source)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pipe(reader, upstream, link))
                group.create_task(self._pipe(up_reader, writer, back))
        except (OSError, asyncio.IncompleteReadError, ExceptionGroup):
            pass
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        link: tuple[str | None, str | None],
    ) -> None:
        while data := await reader.read(65536):
            if self.network.blocked(link):
                continue  # dropped on the floor, as a blackhole route would
            if self.network.slowed(link):
                await asyncio.sleep(PROXY_SLOW_DELAY_S)
            writer.write(data)
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


class ProxyNetwork:
    """Members on loopback behind per-member inbound proxies (see the module docstring)."""

    mode = "proxy"

    def __init__(self) -> None:
        self.proxies: dict[str, _LinkProxy] = {}
        self.proxy_ports: dict[str, int] = {}
        self.ids: dict[int, str] = {}
        self.cut: set[tuple[str, str]] = set()
        self.slow_members: set[str] = set()

    async def place(self, name: str) -> Placement:
        client, peer, proxy_port = free_port(), free_port(), free_port()
        proxy = _LinkProxy(self, name, peer)
        await proxy.start(proxy_port)
        self.proxies[name] = proxy
        self.proxy_ports[name] = proxy_port
        return Placement(
            client_url=f"http://127.0.0.1:{client}",
            listen_peer_url=f"http://127.0.0.1:{peer}",
            advertised_peer_url=f"http://127.0.0.1:{proxy_port}",
        )

    def peer_url_variant(self, name: str, serial: int) -> str:
        return f"http://127.0.0.1:{self.proxy_ports[name]}?v={serial}"

    def unserved_peer_url(self, serial: int) -> str:
        return f"http://127.0.0.1:{free_port()}?never={serial}"

    def popen(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], **kw: Any
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(argv), env=dict(env), **kw)

    def bind_id(self, name: str, member_id: int) -> None:
        self.ids[member_id] = name

    def name_of(self, member_id: int) -> str | None:
        return self.ids.get(member_id)

    def blocked(self, link: tuple[str | None, str | None]) -> bool:
        return link in self.cut

    def slowed(self, link: tuple[str | None, str | None]) -> bool:
        return bool(self.slow_members.intersection(link))

    async def partition(self, groups: Sequence[Iterable[str]]) -> None:
        self.cut |= cut_links(self.proxies, groups)

    async def isolate(self, name: str) -> None:
        await self.partition([[name]])

    async def slow(self, name: str) -> None:
        self.slow_members.add(name)

    async def heal(self) -> None:
        self.cut.clear()
        self.slow_members.clear()

    async def close(self) -> None:
        for proxy in self.proxies.values():
            await proxy.close()


# ---- namespaces ---------------------------------------------------------------------------


class NetnsNetwork:
    """Members in network namespaces (`tests.netns.Lan`); blackhole routes and tbf."""

    mode = "netns"

    def __init__(self, lan: netns.Lan) -> None:
        self.lan = lan
        self.routes: set[tuple[str, str]] = set()
        self.slowed: set[str] = set()

    async def place(self, name: str) -> Placement:
        if name not in self.lan.names:
            await asyncio.to_thread(self.lan.add_member, name)
        ip = self.lan.ip(name)
        peer = f"http://{ip}:{NETNS_PEER_PORT}"
        return Placement(f"http://{ip}:{NETNS_CLIENT_PORT}", peer, peer)

    def peer_url_variant(self, name: str, serial: int) -> str:
        return f"http://{self.lan.ip(name)}:{NETNS_PEER_PORT}?v={serial}"

    def unserved_peer_url(self, serial: int) -> str:
        return f"http://{self.lan.host_ip}:{NETNS_PEER_PORT}?never={serial}"

    def popen(
        self, name: str, argv: Sequence[str], env: Mapping[str, str], **kw: Any
    ) -> subprocess.Popen[bytes]:
        return self.lan.popen(name, argv, env=env, **kw)

    def bind_id(self, name: str, member_id: int) -> None:
        """Routes are by IP; IDs are not needed."""

    async def _ip(self, name: str, *args: str) -> None:
        argv = self.lan.exec_argv(name, ["ip", *args])
        done = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, timeout=10, check=False
        )
        if done.returncode != 0 and "File exists" not in done.stderr:
            raise netns.NetnsError(f"{' '.join(argv)}: {done.stderr.strip()}")

    async def partition(self, groups: Sequence[Iterable[str]]) -> None:
        for a, b in sorted(cut_links(self.lan.names, groups) - self.routes):
            await self._ip(a, "route", "add", "blackhole", f"{self.lan.ip(b)}/32")
            self.routes.add((a, b))

    async def isolate(self, name: str) -> None:
        await self.partition([[name]])

    async def slow(self, name: str) -> None:
        argv = self.lan.exec_argv(name, ["tc", "qdisc", "replace", "dev", "eth0", "root", "tbf"])
        await asyncio.to_thread(
            subprocess.run, [*argv, *TBF_ARGS], capture_output=True, timeout=10, check=True
        )
        self.slowed.add(name)

    async def heal(self) -> None:
        for a, b in sorted(self.routes):
            with contextlib.suppress(netns.NetnsError):
                await self._ip(a, "route", "del", "blackhole", f"{self.lan.ip(b)}/32")
        self.routes.clear()
        for name in sorted(self.slowed):
            argv = self.lan.exec_argv(name, ["tc", "qdisc", "del", "dev", "eth0", "root"])
            await asyncio.to_thread(subprocess.run, argv, capture_output=True, timeout=10)
        self.slowed.clear()

    async def close(self) -> None:
        """The Lan itself is closed by its owner (`with Lan(...)`)."""
