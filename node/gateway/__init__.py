"""etcd's JSON gateway (spec §9): ``POST /v3/<rpc>`` with a JSON body, ``GET /version`` and
``GET /health``, served on the client port it shares with gRPC (``node.listener`` sniffs each
connection and hands HTTP/1.1 ones here).

One job per module (P12):
- `node.gateway.codec`: JSON bodies into betterproto requests; replies into etcd's JSON, with one
  name map per message type;
- `node.gateway.routes`: `Gateway`, which routes a request to the gRPC handler method, bounds the
  call by ReqTimeout and answers errors through node.errors' table;
- `node.gateway.http11`: HTTP/1.1 over h11 (keep-alive, limits, lifecycle), with no etcd knowledge.

The composition root builds one `Gateway` per client port, from the same service objects it gives
grpclib::

    gateway = Gateway(cluster=cluster, maintenance=maintenance, has_leader=..., request_timeout=...)
"""

from __future__ import annotations

from node.gateway.codec import BadRequest, decode_request, dump_json, encode_response
from node.gateway.http11 import Http11Server, Limits, Reply
from node.gateway.routes import (
    IDLE_TIMEOUT,
    MAX_HEADER_BYTES,
    MAX_REQUEST_BYTES,
    Gateway,
    HealthCheck,
    error_reply,
)

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_HEADER_BYTES",
    "MAX_REQUEST_BYTES",
    "BadRequest",
    "Gateway",
    "HealthCheck",
    "Http11Server",
    "Limits",
    "Reply",
    "decode_request",
    "dump_json",
    "encode_response",
    "error_reply",
]
