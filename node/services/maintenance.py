"""etcd's Maintenance.Status and MoveLeader (spec §7) as thin adapters; the other Maintenance
methods stay UNIMPLEMENTED through the generated base class."""

from __future__ import annotations

from collections.abc import Callable

from node.cluster import KV_REVISION, ClusterManager
from node.domain_errors import NoLeader
from node.errors import ERRORS, to_grpc_error
from node.services.cluster import answer, header_to_proto
from node.services.context import requires_leader
from proto import etcdserverpb as pb

#: The etcd API level raftnode emulates; also what GET /version reports (spec §7.1).
VERSION = "3.5.0"
#: The KV revision of an empty etcd: raftnode keeps no keys (spec §7.1).
REVISION = KV_REVISION
#: Status reports a missing leader in ``errors`` with etcd's text, taken from the one table (P5).
NO_LEADER = ERRORS[NoLeader].message


class MaintenanceService(pb.MaintenanceBase):
    def __init__(
        self,
        manager: ClusterManager,
        db_size: Callable[[], int],
        db_size_in_use: Callable[[], int] | None = None,
    ) -> None:
        """``db_size``: bytes on disk; ``db_size_in_use``: the part holding data (WAL segments
        are preallocated), ``db_size`` itself when not given."""
        self.manager = manager
        self._db_size = db_size
        self._db_size_in_use = db_size_in_use if db_size_in_use is not None else db_size

    async def status(self, status_request: pb.StatusRequest) -> pb.StatusResponse:
        """Always served: on learners, without a leader, without quorum (only the caller's
        ``hasleader: true`` can turn it down, spec §3.1)."""
        try:
            self.manager.check_gates(requires_leader(), served_on_learners=True)
            st = self.manager.driver.status
            header = header_to_proto(self.manager.header())
            header.revision = REVISION
            return pb.StatusResponse(
                header=header,
                version=VERSION,
                db_size=self._db_size(),
                db_size_in_use=self._db_size_in_use(),
                leader=int(st.lead),
                raft_index=int(st.commit),
                raft_term=int(st.applied_term),
                raft_applied_index=int(st.applied),
                errors=[] if st.lead else [NO_LEADER],
                is_learner=self.manager.is_learner(),
            )
        except Exception as exc:
            raise to_grpc_error(exc) from None

    async def move_leader(self, move_leader_request: pb.MoveLeaderRequest) -> pb.MoveLeaderResponse:
        target = move_leader_request.target_id
        await answer(self.manager, lambda: self.manager.move_leader(target))
        return pb.MoveLeaderResponse()  # etcd leaves the header out (spec §7.2)
