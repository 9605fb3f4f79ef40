"""raftnode's etcd gRPC services: thin adapters from etcd's API to the node (CONVENTIONS P5).

A server must register **one instance of every etcd service**, so that each of etcd's method paths
is routed and the ones raftnode does not serve answer a proper UNIMPLEMENTED (spec section 11,
pitfall 1). `etcd_services()` builds that list; the composition root wires it up:

    patch_grpclib()                                    # once per process, before serving
    server = grpclib.server.Server(etcd_services(kv=..., cluster=..., maintenance=...))
    install_request_context(server)                    # metadata/deadline/peer for handlers
    await server.start(host, port)

Cluster and Maintenance are the services raftnode implements (node.services.cluster and
node.services.maintenance), plus KV's Range (node.services.kv, over an always-empty key space, for
`etcdctl endpoint health`); they subclass the generated `ClusterBase`, `MaintenanceBase` and
`KvBase`, so the methods they do not override (Alarm, Defragment, Hash, HashKV, Snapshot,
Downgrade; Put, DeleteRange, Txn, Compact) stay UNIMPLEMENTED. Left out, each is replaced by an
all-UNIMPLEMENTED placeholder.
"""

from __future__ import annotations

from node.services.context import (
    RequestContext,
    current_deadline,
    current_metadata,
    current_peer,
    current_request,
    install_request_context,
    requires_leader,
)
from node.services.grpc_patches import grpclib_is_patched, patch_grpclib
from node.services.kv import KvService
from node.services.others import (
    AuthService,
    EtcdService,
    LeaseService,
    UnimplementedCluster,
    UnimplementedKv,
    UnimplementedMaintenance,
    WatchService,
    etcd_services,
)

__all__ = [
    "AuthService",
    "EtcdService",
    "KvService",
    "LeaseService",
    "RequestContext",
    "UnimplementedCluster",
    "UnimplementedKv",
    "UnimplementedMaintenance",
    "WatchService",
    "current_deadline",
    "current_metadata",
    "current_peer",
    "current_request",
    "etcd_services",
    "grpclib_is_patched",
    "install_request_context",
    "patch_grpclib",
    "requires_leader",
]
