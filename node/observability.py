"""The node's Prometheus metrics under etcd's names (issue 5: ``GET /metrics``).

Each part of the node keeps the figures it owns in plain attributes or reports them through a
callback, and knows nothing of Prometheus; `NodeMetrics` turns them into metrics:

- the driver's published status (a status listener): has_leader, is_leader, is_learner,
  leader_changes_seen_total, proposals_committed_total (the commit index) and
  proposals_applied_total (the applied index), as etcd reports them;
- the driver's counters, read at scrape time: proposals_pending, proposals_failed_total;
- the cluster manager's promotion counts: learner_promote_successes / _failures{Reason} (the reason
  is the error's class name, e.g. ``LearnerNotReady``, where etcd puts its message);
- the storage's fsync callback: disk_wal_fsync_duration_seconds (etcd's buckets);
- the transport's probe callback: network_peer_round_trip_time_seconds{To} (etcd's buckets);
- the gRPC server's calls (``node.services.instrument``): grpc_server_started_total and
  grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}.
"""

from __future__ import annotations

from node.cluster import PromotionStats
from node.driver import DriverStatus, RaftDriver
from node.metrics import Counter, Family, Registry, exponential_buckets
from raft import NONE, NodeId, Role

__all__ = ["NodeMetrics"]


class NodeMetrics:
    """One node's registry and the metrics in it."""

    def __init__(self, member_id: int, version: str) -> None:
        r = self.registry = Registry()
        server = "etcd_server_"
        self.has_leader = r.gauge(
            server + "has_leader", "Whether or not a leader exists. 1 is existence, 0 is not."
        ).only
        self.is_leader = r.gauge(
            server + "is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise."
        ).only
        self.is_learner = r.gauge(
            server + "is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise."
        ).only
        self.leader_changes = r.counter(
            server + "leader_changes_seen_total", "The number of leader changes seen."
        ).only
        self.committed = r.gauge(
            server + "proposals_committed_total",
            "The total number of consensus proposals committed.",
        ).only
        self.applied = r.gauge(
            server + "proposals_applied_total", "The total number of consensus proposals applied."
        ).only
        self.pending = r.gauge(
            server + "proposals_pending", "The current number of pending proposals to commit."
        ).only
        self.failed = r.counter(
            server + "proposals_failed_total", "The total number of failed proposals seen."
        ).only
        self.promote_successes = r.counter(
            server + "learner_promote_successes",
            "The total number of successful learner promotions.",
        ).only
        self.promote_failures: Family[Counter] = r.counter(
            server + "learner_promote_failures",
            "The total number of failed learner promotions (likely learner not ready).",
            labels=("Reason",),
        )
        self.wal_fsync = r.histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            exponential_buckets(0.001, 2, 14),
        ).only
        self.peer_round_trip = r.histogram(
            "etcd_network_peer_round_trip_time_seconds",
            "Round-Trip-Time histogram between peers",
            exponential_buckets(0.0001, 2, 16),
            labels=("To",),
        )
        self.grpc_started = r.counter(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            labels=("grpc_type", "grpc_service", "grpc_method"),
        )
        self.grpc_handled = r.counter(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=("grpc_type", "grpc_service", "grpc_method", "grpc_code"),
        )
        r.gauge(
            server + "version",
            "Which version is running. 1 for 'server_version' label.",
            ("server_version",),
        ).labels(version).set(1)
        r.gauge(
            server + "id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label.",
            ("server_id",),
        ).labels(f"{member_id:x}").set(1)

    # ---- sources

    def watch_driver(self, driver: RaftDriver) -> None:
        self.on_status(None, driver.status)
        driver.add_status_listener(self.on_status)

        def copy_counts() -> None:
            self.pending.set(driver.pending_proposals)
            self.failed.set_total(driver.failed_proposals)

        self.registry.on_collect(copy_counts)

    def watch_promotions(self, stats: PromotionStats) -> None:
        def copy_counts() -> None:
            self.promote_successes.set_total(stats.successes)
            for reason, count in stats.failures.items():
                self.promote_failures.labels(reason).set_total(count)

        self.registry.on_collect(copy_counts)

    def on_status(self, old: DriverStatus | None, new: DriverStatus) -> None:
        self.has_leader.set(new.lead != NONE)
        self.is_leader.set(new.role is Role.LEADER)
        self.is_learner.set(new.id in new.conf_state.learners)
        if new.lead != NONE and (old is None or old.lead != new.lead):
            self.leader_changes.inc()
        self.committed.set(new.commit)
        self.applied.set(new.applied)

    def on_fsync(self, seconds: float) -> None:
        self.wal_fsync.observe(seconds)

    def on_round_trip(self, peer: NodeId, seconds: float) -> None:
        self.peer_round_trip.labels(f"{peer:x}").observe(seconds)

    def render(self) -> str:
        return self.registry.render()
