"""etcd's KV service, reduced to what raftnode can honestly serve: ``Range`` over its key space,
which is always empty (raftnode stores no keys) at revision 1.

``etcdctl endpoint health`` proves an endpoint healthy with a linearizable ``Range`` of the key
``health``, so this read is real (spec §10.3): unless ``serializable`` is set it goes through a
ReadIndex round, so the answer says whether the member can still reach a quorum. Learners serve
only serializable reads (spec §4). Put, DeleteRange, Txn and Compact stay UNIMPLEMENTED through
the generated base class.
"""

from __future__ import annotations

from node.cluster import KV_REVISION, ClusterManager
from node.services.cluster import answer, header_to_proto
from proto import etcdserverpb as pb

__all__ = ["KvService"]


class KvService(pb.KvBase):
    def __init__(self, manager: ClusterManager) -> None:
        self.manager = manager

    async def range(self, range_request: pb.RangeRequest) -> pb.RangeResponse:
        req = range_request
        header = await answer(
            self.manager,
            lambda: self.manager.kv_range(req.key, req.revision, req.serializable),
            served_on_learners=req.serializable,
        )
        reply_header = header_to_proto(header)
        reply_header.revision = KV_REVISION
        return pb.RangeResponse(header=reply_header)  # no kvs, count 0, more false
