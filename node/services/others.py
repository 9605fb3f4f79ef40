"""The etcd services raftnode does not serve, registered so they answer like etcd would.

Every method of etcd's KV (but Range, served by node.services.kv), Watch, Lease and Auth
services is registered through betterproto's generated `*Base` classes, whose default handlers
raise UNIMPLEMENTED through grpclib's normal reply path, which sends `content-type` (spec section
11, pitfall 1). A method that is simply not registered gets a reply that etcdctl cannot decode.
The one override is `Auth.Authenticate`: etcdctl calls it first whenever `--user` is given, and
etcd with auth off answers `ErrGRPCAuthNotEnabled` (FAILED_PRECONDITION `etcdserver:
authentication is not enabled`, from node.errors' table), after which the client goes on without
a token (pitfall 2).

`UnimplementedKv`, `UnimplementedCluster` and `UnimplementedMaintenance` stand in for
node.services.kv, node.services.cluster and node.services.maintenance where a test or a partial
server wants them; `etcd_services()` assembles one instance per etcd service, the list a grpclib
`Server` is built from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from grpclib.const import Handler

from node.domain_errors import AuthNotEnabled
from node.errors import to_grpc_error
from proto.etcdserverpb import (
    AuthBase,
    AuthenticateRequest,
    AuthenticateResponse,
    ClusterBase,
    KvBase,
    LeaseBase,
    MaintenanceBase,
    WatchBase,
)

__all__ = [
    "AuthService",
    "EtcdService",
    "LeaseService",
    "UnimplementedCluster",
    "UnimplementedKv",
    "UnimplementedMaintenance",
    "WatchService",
    "etcd_services",
]


class UnimplementedKv(KvBase):
    """Placeholder for node.services.kv: Range, Put, DeleteRange, Txn and Compact all answer
    UNIMPLEMENTED (node.services.kv serves Range; the writes stay UNIMPLEMENTED there too)."""


class WatchService(WatchBase):
    """etcd's Watch service: the Watch stream answers UNIMPLEMENTED."""


class LeaseService(LeaseBase):
    """etcd's Lease service: every method, the KeepAlive stream included, answers UNIMPLEMENTED."""


class AuthService(AuthBase):
    """etcd's Auth service with auth disabled: Authenticate refuses, the rest is UNIMPLEMENTED."""

    async def authenticate(self, authenticate_request: AuthenticateRequest) -> AuthenticateResponse:
        raise to_grpc_error(AuthNotEnabled())


class UnimplementedCluster(ClusterBase):
    """Placeholder for node.services.cluster: every Member* method answers UNIMPLEMENTED."""


class UnimplementedMaintenance(MaintenanceBase):
    """Placeholder for node.services.maintenance: every method answers UNIMPLEMENTED."""


class EtcdService(Protocol):
    """What grpclib's `Server` registers (its `IServable`); the generated `*Base` classes fit."""

    def __mapping__(self) -> Mapping[str, Handler]: ...


def etcd_services(
    *,
    kv: KvBase | None = None,
    cluster: ClusterBase | None = None,
    maintenance: MaintenanceBase | None = None,
) -> list[EtcdService]:
    """One instance of each etcd v3 service: KV, Watch, Lease, Cluster, Maintenance, Auth.

    `kv`, `cluster` and `maintenance` are raftnode's implementations; each one left out is
    replaced by its all-UNIMPLEMENTED placeholder.
    """
    return [
        kv if kv is not None else UnimplementedKv(),
        WatchService(),
        LeaseService(),
        cluster if cluster is not None else UnimplementedCluster(),
        maintenance if maintenance is not None else UnimplementedMaintenance(),
        AuthService(),
    ]
