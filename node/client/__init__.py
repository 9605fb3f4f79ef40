"""An asyncio client for raftnode's (and etcd's) Cluster and Maintenance APIs, over grpclib.

No grpcio and no protobuf runtime: it speaks the wire through the betterproto messages of
``proto.etcdserverpb``, and hands back plain frozen values and typed errors::

    async with ClusterClient(["127.0.0.1:2379", "127.0.0.1:22379"], timeout=5.0) as client:
        added = await client.member_add(["http://127.0.0.1:42380"], learner=True)
        ...  # start the new member
        await client.wait_promotable(added.member.id, timeout=30)

Failover follows clientv3 (`node.client.rpc`); errors are chosen by etcd's exact messages
(`node.client.errors`).
"""

from node.client.client import ClusterClient, RawCalls
from node.client.errors import (
    BadLeaderTransferee,
    BadPeerURLs,
    Cancelled,
    ClientError,
    FailedPrecondition,
    InvalidArgument,
    LeaderChanged,
    LearnerNotReady,
    MemberExists,
    MemberNotFound,
    MemberNotLearner,
    NoLeader,
    NotEnoughStarted,
    NotLeader,
    NotLearner,
    NotSupportedForLearner,
    PeerURLExists,
    Stopped,
    Timeout,
    TooManyLearners,
    Unavailable,
    Unhealthy,
    Unimplemented,
)
from node.client.types import Member, MemberAddResult, Status

__all__ = [
    "BadLeaderTransferee",
    "BadPeerURLs",
    "Cancelled",
    "ClientError",
    "ClusterClient",
    "FailedPrecondition",
    "InvalidArgument",
    "LeaderChanged",
    "LearnerNotReady",
    "Member",
    "MemberAddResult",
    "MemberExists",
    "MemberNotFound",
    "MemberNotLearner",
    "NoLeader",
    "NotEnoughStarted",
    "NotLeader",
    "NotLearner",
    "NotSupportedForLearner",
    "PeerURLExists",
    "RawCalls",
    "Status",
    "Stopped",
    "Timeout",
    "TooManyLearners",
    "Unavailable",
    "Unhealthy",
    "Unimplemented",
]
