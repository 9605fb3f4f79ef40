"""`node.client.ClusterClient` against real members on loopback (layer f): failover when an
endpoint is down, ambiguous vs definite failures, deadlines, learner rejections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from grpclib.const import Status

from node.client import (
    ClusterClient,
    LearnerNotReady,
    MemberNotFound,
    Timeout,
    Unavailable,
    Unhealthy,
)
from tests.procs import Member, Procs, free_port

pytestmark = [pytest.mark.slow, pytest.mark.asyncio]

Cluster = tuple[Procs, list[Member]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Procs(tmp_path_factory.mktemp("client")) as procs:
        members = procs.start_cluster("c1", "c2", "c3")
        procs.wait_leader(members)
        yield procs, members


@pytest_asyncio.fixture
async def silent_endpoint() -> AsyncIterator[str]:
    """A TCP endpoint that accepts connections and never answers (a hung member)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client goes away
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


def down_endpoint() -> str:
    """An endpoint nothing listens on: connecting is refused before any request is sent."""
    return f"127.0.0.1:{free_port()}"


async def test_reads_and_mutations_move_past_an_endpoint_that_is_down(cluster: Cluster) -> None:
    _, members = cluster
    endpoints = [down_endpoint(), *(f"http://{m.endpoint}" for m in members)]
    async with ClusterClient(endpoints, timeout=10) as client:
        listed = await client.member_list()
        assert sorted(m.name for m in listed) == ["c1", "c2", "c3"]
        # Nothing was sent to the dead endpoint, so the mutation may move on too.
        with pytest.raises(MemberNotFound) as not_found:
            await client.member_remove(0x1234)
        assert not_found.value.endpoint == endpoints[1]
        assert not_found.value.definitely_failed
        # Status is asked of one named endpoint: no failover, the refusal is reported.
        with pytest.raises(Unavailable) as refused:
            await client.statuses()
        assert refused.value.endpoint == endpoints[0] and refused.value.code is None
        assert (await client.status(endpoints[1])).member_id in {m.id for m in listed}


async def test_a_killed_member_is_skipped(cluster: Cluster) -> None:
    procs, members = cluster
    victim = members[2]
    procs.kill(victim)
    try:
        async with ClusterClient([victim.endpoint, members[0].endpoint], timeout=10) as client:
            assert len(await client.member_list(linearizable=True)) == 3
            statuses = [await client.status(m.endpoint) for m in members[:2]]
            assert {s.leader for s in statuses} != {0}
    finally:
        procs.restart(victim)
        procs.wait_leader(members)


async def test_no_reachable_endpoint_is_a_definite_unavailable() -> None:
    async with ClusterClient([down_endpoint(), down_endpoint()], timeout=5) as client:
        with pytest.raises(Unavailable) as caught:
            await client.member_add(["http://127.0.0.1:9"])
    assert caught.value.code is None
    assert caught.value.definitely_failed
    assert caught.value.message.startswith("no endpoint could be reached: ")
    assert caught.value.message.count("127.0.0.1:") == 2


async def test_a_deadline_is_a_timeout_and_ambiguous_once_sent(silent_endpoint: str) -> None:
    async with ClusterClient([silent_endpoint], timeout=0.5) as client:
        with pytest.raises(Timeout) as caught:
            await client.member_remove(0x1234)
        assert (caught.value.code, caught.value.message) == (
            Status.DEADLINE_EXCEEDED,
            "context deadline exceeded",
        )
        assert not caught.value.definitely_failed
        # A per-call override bounds that call alone.
        with pytest.raises(Timeout):
            await client.member_list(timeout=0.2)


async def test_an_unstarted_learner_cannot_be_promoted(cluster: Cluster) -> None:
    procs, members = cluster
    async with ClusterClient([m.endpoint for m in members], timeout=10) as client:
        added = await _add_learner_when_healthy(client, f"http://127.0.0.1:{free_port()}")
        try:
            with pytest.raises(LearnerNotReady) as refused:
                await client.member_promote(added)
            assert refused.value.code is Status.FAILED_PRECONDITION
            with pytest.raises(LearnerNotReady):
                await client.wait_promotable(added, timeout=0.5)
        finally:
            await client.member_remove(added)


async def _add_learner_when_healthy(client: ClusterClient, peer_url: str) -> int:
    """MemberAdd, retried while the strict check says the peers are not connected long enough."""
    for _ in range(100):
        try:
            return (await client.member_add([peer_url], learner=True)).member.id
        except Unhealthy:
            await asyncio.sleep(0.1)
    raise AssertionError("the cluster stayed unhealthy")
