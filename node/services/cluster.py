"""etcd's Cluster service as thin adapters over ``node.cluster.ClusterManager`` (P5).

Each handler decodes the request, runs the gates, calls one domain method and encodes the
reply; every error goes through the one table in ``node.errors``. No Raft logic, no strings.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TypeVar

from node.cluster import ClusterManager, Header
from node.errors import to_grpc_error
from node.membership import Member, Membership
from node.services.context import requires_leader
from proto import etcdserverpb as pb

T = TypeVar("T")


def member_to_proto(member: Member) -> pb.Member:
    return pb.Member(
        id=member.id,
        name=member.name,
        peer_ur_ls=list(member.peer_urls),
        client_ur_ls=list(member.client_urls),
        is_learner=member.is_learner,
    )


@functools.lru_cache(maxsize=64)
def _members(membership: Membership) -> tuple[pb.Member, ...]:
    return tuple(member_to_proto(m) for m in membership.members)


def members_to_proto(membership: Membership) -> list[pb.Member]:
    """Built once per (immutable, hashable) membership: betterproto objects are costly to make
    (bench/cluster.py: ~0.2-0.4 ms for three members). Callers must not mutate them."""
    return list(_members(membership))


def header_to_proto(header: Header) -> pb.ResponseHeader:
    return pb.ResponseHeader(
        cluster_id=header.cluster_id, member_id=header.member_id, raft_term=header.raft_term
    )


async def answer(
    manager: ClusterManager,
    work: Callable[[], Awaitable[T]],
    *,
    served_on_learners: bool = False,
) -> T:
    """Run the §3.1 gates and ``work``; any failure leaves as etcd's status and message."""
    try:
        manager.check_gates(requires_leader(), served_on_learners=served_on_learners)
        return await work()
    except Exception as exc:
        raise to_grpc_error(exc) from None


class ClusterService(pb.ClusterBase):
    def __init__(self, manager: ClusterManager) -> None:
        self.manager = manager

    def _header(self) -> pb.ResponseHeader:
        return header_to_proto(self.manager.header())

    async def member_add(self, member_add_request: pb.MemberAddRequest) -> pb.MemberAddResponse:
        req = member_add_request
        member, after = await answer(
            self.manager, lambda: self.manager.member_add(req.peer_ur_ls, req.is_learner)
        )
        added = member_to_proto(member)
        added.name, added.client_ur_ls = "", []  # etcd's reply carries neither (spec §3.6)
        return pb.MemberAddResponse(
            header=self._header(), member=added, members=members_to_proto(after)
        )

    async def member_remove(
        self, member_remove_request: pb.MemberRemoveRequest
    ) -> pb.MemberRemoveResponse:
        target = member_remove_request.id
        after = await answer(self.manager, lambda: self.manager.member_remove(target))
        return pb.MemberRemoveResponse(header=self._header(), members=members_to_proto(after))

    async def member_update(
        self, member_update_request: pb.MemberUpdateRequest
    ) -> pb.MemberUpdateResponse:
        req = member_update_request
        after = await answer(
            self.manager, lambda: self.manager.member_update(req.id, req.peer_ur_ls)
        )
        return pb.MemberUpdateResponse(header=self._header(), members=members_to_proto(after))

    async def member_list(self, member_list_request: pb.MemberListRequest) -> pb.MemberListResponse:
        linearizable = member_list_request.linearizable
        after = await answer(self.manager, lambda: self.manager.member_list(linearizable))
        return pb.MemberListResponse(header=self._header(), members=members_to_proto(after))

    async def member_promote(
        self, member_promote_request: pb.MemberPromoteRequest
    ) -> pb.MemberPromoteResponse:
        target = member_promote_request.id
        after = await answer(self.manager, lambda: self.manager.member_promote(target))
        return pb.MemberPromoteResponse(header=self._header(), members=members_to_proto(after))
