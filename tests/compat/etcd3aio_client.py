"""Run one Cluster call with the ``etcd3aio`` client and print the outcome as one JSON line.

etcd3aio is built on grpcio with its own protobuf copy of ``etcdserverpb``, which must not share a
process with another generated copy (spec §11, pitfall 10), so the tests run this script as a
child process::

    python -m tests.compat.etcd3aio_client ENDPOINT list
    python -m tests.compat.etcd3aio_client ENDPOINT add-learner PEER_URL...
    python -m tests.compat.etcd3aio_client ENDPOINT promote ID [--until-ready SECONDS]
    python -m tests.compat.etcd3aio_client ENDPOINT remove ID
    python -m tests.compat.etcd3aio_client ENDPOINT update ID PEER_URL...

The line is ``{"ok": true, "resp": {...}}`` or ``{"ok": false, "code": "NOT_FOUND", "message":
"..."}``; 64-bit IDs stay JSON integers. ``promote --until-ready`` retries while the answer is
"not in sync with leader", the way tools poll (spec §3.10). The exit status is 0 either way: a
refused call is an outcome, not a failure of the script. Exit 2 means etcd3aio is missing.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

try:
    import grpc  # type: ignore[import-untyped, unused-ignore]
    from etcd3aio import Etcd3Client
except ImportError as exc:  # pragma: no cover - reported to the test, which skips with it
    print(json.dumps({"missing": str(exc)}))
    sys.exit(2)

NOT_READY = "can only promote a learner member which is in sync with leader"
TIMEOUT_S = 10.0


def member_dict(member: Any) -> dict[str, Any]:
    return {
        "ID": int(member.ID),
        "name": member.name,
        "peerURLs": list(member.peerURLs),
        "clientURLs": list(member.clientURLs),
        "isLearner": bool(member.isLearner),
    }


def reply_dict(reply: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "header": {
            "cluster_id": int(reply.header.cluster_id),
            "member_id": int(reply.header.member_id),
            "raft_term": int(reply.header.raft_term),
        },
        "members": [member_dict(m) for m in reply.members],
    }
    if any(field.name == "member" for field in reply.DESCRIPTOR.fields):  # MemberAddResponse
        out["member"] = member_dict(reply.member)
    return out


def rpc_error(exc: BaseException) -> grpc.aio.AioRpcError | None:
    """The grpc status error behind an etcd3aio exception (it wraps transient ones)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, grpc.aio.AioRpcError):
            return seen
        seen = seen.__cause__
    return None


async def call(endpoint: str, command: str, args: list[str]) -> dict[str, Any]:
    async with Etcd3Client([endpoint], rpc_max_attempts=1) as client:
        cluster = client.cluster
        assert cluster is not None
        if command == "list":
            reply = await cluster.member_list(timeout=TIMEOUT_S)
        elif command == "add-learner":
            reply = await cluster.member_add(args, is_learner=True, timeout=TIMEOUT_S)
        elif command == "remove":
            reply = await cluster.member_remove(int(args[0]), timeout=TIMEOUT_S)
        elif command == "update":
            reply = await cluster.member_update(int(args[0]), args[1:], timeout=TIMEOUT_S)
        elif command == "promote":
            until = time.monotonic() + (float(args[2]) if args[1:2] == ["--until-ready"] else 0)
            while True:
                try:
                    reply = await cluster.member_promote(int(args[0]), timeout=TIMEOUT_S)
                    break
                except grpc.aio.AioRpcError as exc:
                    if NOT_READY not in (exc.details() or "") or time.monotonic() > until:
                        raise
                    await asyncio.sleep(0.05)
        else:
            raise SystemExit(f"unknown command {command!r}")
        return {"ok": True, "resp": reply_dict(reply)}


def main(argv: list[str]) -> int:
    endpoint, command, *args = argv
    try:
        outcome = asyncio.run(call(endpoint, command, args))
    except Exception as exc:
        error = rpc_error(exc)
        if error is None:
            raise
        outcome = {"ok": False, "code": error.code().name, "message": error.details()}
    print(json.dumps(outcome))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
