"""gRPC call counts for ``/metrics``: grpc_server_started_total and grpc_server_handled_total.

grpclib has no interceptors, but it dispatches events: ``RecvRequest`` when a call starts and
``SendTrailingMetadata`` with the final status when it ends. Both run in the call's own task, so a
context variable carries the call's labels from the first event to the second. A call whose client
goes away before the trailers are sent (a cancelled stream) is started but never handled, as in
go-grpc-prometheus.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextvars import ContextVar

from grpclib.const import Cardinality
from grpclib.events import RecvRequest, SendTrailingMetadata, listen
from grpclib.server import Server

from node.metrics import Counter, Family

__all__ = ["instrument_server"]

_TYPES: Mapping[Cardinality, str] = {
    Cardinality.UNARY_UNARY: "unary",
    Cardinality.UNARY_STREAM: "server_stream",
    Cardinality.STREAM_UNARY: "client_stream",
    Cardinality.STREAM_STREAM: "bidi_stream",
}

_call_labels: ContextVar[tuple[str, str, str] | None] = ContextVar("grpc_call_labels", default=None)


def instrument_server(
    server: Server,
    services: Iterable[object],
    started: Family[Counter],
    handled: Family[Counter],
) -> None:
    """Count ``server``'s calls into ``started`` (type, service, method) and ``handled``
    (type, service, method, code). ``services`` are the ones the server was built with."""
    types = {
        path: _TYPES[handler.cardinality]
        for service in services
        for path, handler in service.__mapping__().items()  # type: ignore[attr-defined]
    }

    async def on_request(event: RecvRequest) -> None:
        service, _, method = event.method_name.lstrip("/").partition("/")
        labels = (types.get(event.method_name, "unary"), service, method)
        _call_labels.set(labels)
        started.labels(*labels).inc()

    async def on_trailers(event: SendTrailingMetadata) -> None:
        labels = _call_labels.get()
        if labels is not None:
            handled.labels(*labels, _code_name(event.status.name)).inc()

    listen(server, RecvRequest, on_request)
    listen(server, SendTrailingMetadata, on_trailers)


def _code_name(name: str) -> str:
    """grpc-go's spelling of a status code (``DEADLINE_EXCEEDED`` -> ``DeadlineExceeded``)."""
    return "OK" if name == "OK" else "".join(part.capitalize() for part in name.split("_"))
