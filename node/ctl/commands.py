"""``raftnode member ...`` and ``raftnode endpoint ...``: etcdctl 3.4's member and endpoint
commands on top of `node.client`, printing what etcdctl prints (spec §10).

Exit codes are etcdctl's: 0 success, 1 a server or transport error, 4 an output format the command
cannot print, 128 bad arguments. A failed call prints ``Error: <message>`` to stderr: etcd's own
text for the errors clientv3 knows, ``rpc error: code = <Code> desc = <message>`` otherwise. The
JSON ``warn`` line etcdctl's retry interceptor logs before it (with a timestamp and a random
client ID) is not imitated.

``--dial-timeout`` is accepted and ignored: the command timeout bounds the whole call, connecting
included, and an endpoint that refuses connections is skipped at once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TextIO

from grpclib.const import Status

from node.client import ClientError, ClusterClient
from node.client.errors import BY_MESSAGE
from node.ctl import gojson, printers
from node.ctl.args import Args, UsageError, check_peer_urls, parse_args, parse_member_id
from proto import etcdserverpb as pb

__all__ = ["EXIT_BAD_ARGS", "EXIT_BAD_FEATURE", "EXIT_ERROR", "run"]

EXIT_ERROR = 1
EXIT_BAD_FEATURE = 4
EXIT_BAD_ARGS = 128

_GLOBAL_USAGE = """\
global flags (also ETCDCTL_<FLAG>):
  --endpoints=127.0.0.1:2379   comma-separated gRPC endpoints (host:port or http://host:port)
  -w, --write-out=simple       simple, table, json, fields (list and status), protobuf (list)
  --command-timeout=5s         bound on the whole command, connecting and failover included
"""

USAGE = {
    "member": """\
usage: raftnode member <command> [flags]
  list                                      list all members
  add <name> --peer-urls=URL[,URL] [--learner]
                                            add a member; prints the ETCD_* lines to start it
  remove <hexID>                            remove a member
  update <hexID> --peer-urls=URL[,URL]      change a member's peer URLs
  promote <hexID>                           promote a learner that is in sync
"""
    + _GLOBAL_USAGE,
    "endpoint": """\
usage: raftnode endpoint <command> [--cluster] [flags]
  status    Maintenance.Status of each endpoint
  health    a linearizable read on each endpoint (printed to stderr unless -w table|json)
  --cluster checks every member's client URLs instead of --endpoints
"""
    + _GLOBAL_USAGE,
}

#: etcd errors clientv3 does not turn into plain messages (spec §8.1, "unmapped").
_UNMAPPED = frozenset(
    {
        "etcdserver: request timed out, leader transfer took too long",
        "etcdserver: request cancelled",
        "context deadline exceeded",
        "context canceled",
    }
)


class _Out:
    """Where a command writes: stdout and stderr."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr

    def print(self, text: str) -> None:
        self.stdout.write(text)

    def error(self, message: str) -> None:
        self.stderr.write(f"Error: {message}\n")


def run(
    group: str,
    argv: Sequence[str],
    environ: Mapping[str, str],
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run ``raftnode <group> <argv...>``; returns the exit code."""
    out = _Out(stdout or sys.stdout, stderr or sys.stderr)
    if not argv or any(a in ("-h", "--help") for a in argv):
        out.print(USAGE[group])
        return 0
    try:
        args = parse_args(group, argv, environ)
    except UsageError as err:
        out.error(err.message)
        return err.code
    handler = _COMMANDS[args.command]
    try:
        return asyncio.run(_with_client(handler, args, out))
    except UsageError as err:
        out.error(err.message)
        return err.code
    except ValueError as err:  # a malformed --endpoints value
        out.error(str(err))
        return EXIT_ERROR


async def _with_client(handler: _Handler, args: Args, out: _Out) -> int:
    async with ClusterClient(args.endpoints, timeout=args.command_timeout) as client:
        try:
            return await handler(client, args, out)
        except ClientError as err:
            out.error(error_text(err))
            return EXIT_ERROR


def error_text(err: ClientError) -> str:
    """What etcdctl prints after ``Error: `` for a failed call."""
    if err.code is None:
        return err.message
    if err.message in BY_MESSAGE and err.message not in _UNMAPPED:
        return err.message
    if err.code in (Status.DEADLINE_EXCEEDED, Status.CANCELLED) and err.message in _UNMAPPED:
        return err.message
    return f"rpc error: code = {go_code_name(err.code)} desc = {err.message}"


def go_code_name(code: Status) -> str:
    """grpc-go's name of a status code (``FailedPrecondition``)."""
    if code is Status.OK:
        return "OK"
    return "".join(word.capitalize() for word in code.name.split("_"))


def _unsupported(out: _Out, args: Args) -> int:
    out.error(f"{args.write_out} not supported as output format")
    return EXIT_BAD_FEATURE


# ---- member -------------------------------------------------------------------------------------


async def member_list(client: ClusterClient, args: Args, out: _Out) -> int:
    reply = await client.raw.member_list()
    fmt = args.write_out
    if fmt == "json":
        out.print(gojson.dumps(gojson.members_reply(reply)) + "\n")
    elif fmt == "table":
        rows = [printers.member_row(m) for m in reply.members]
        out.print(printers.table(printers.MEMBER_HEADER, rows))
    elif fmt == "fields":
        out.print(printers.fields_members(reply))
    elif fmt == "protobuf":
        out.stdout.flush()
        out.stdout.buffer.write(bytes(reply))
        out.stdout.buffer.flush()
    else:
        out.print(printers.simple_rows([printers.member_row(m) for m in reply.members]))
    return 0


async def member_add(client: ClusterClient, args: Args, out: _Out) -> int:
    if not args.positional:
        raise UsageError("member name not provided")
    if len(args.positional) > 1:
        hints = [s for s in args.positional if s.lower().startswith("http")]
        raise UsageError(
            "too many arguments" + "".join(f", did you mean --peer-urls={s}" for s in hints)
        )
    name = args.positional[0]
    typed = args.flag("peer-urls") or ""
    if not typed:
        raise UsageError("member peer urls not provided")
    urls = typed.split(",")
    check_peer_urls(urls)
    reply = await client.raw.member_add(urls, learner=args.is_set("learner"))
    if args.write_out == "json":
        out.print(gojson.dumps(gojson.members_reply(reply)) + "\n")
    elif args.write_out == "simple":
        out.print(printers.member_added(reply, name, typed))
    else:
        return _unsupported(out, args)
    return 0


def _one_id(args: Args) -> int:
    if len(args.positional) != 1:
        raise UsageError("member ID is not provided")
    return parse_member_id(args.positional[0])


async def _changed(verb: str, call: Awaitable[Any], member_id: int, args: Args, out: _Out) -> int:
    """Remove, update and promote print the same line with their own verb (spec §10.2)."""
    reply = await call
    if args.write_out == "json":
        out.print(gojson.dumps(gojson.members_reply(reply)) + "\n")
    elif args.write_out == "simple":
        out.print(printers.changed(verb, member_id, reply.header.cluster_id))
    else:
        return _unsupported(out, args)
    return 0


async def member_remove(client: ClusterClient, args: Args, out: _Out) -> int:
    member_id = _one_id(args)
    return await _changed("removed from", client.raw.member_remove(member_id), member_id, args, out)


async def member_update(client: ClusterClient, args: Args, out: _Out) -> int:
    member_id = _one_id(args)
    typed = args.flag("peer-urls") or ""
    if not typed:
        raise UsageError("member peer urls not provided")
    urls = typed.split(",")
    check_peer_urls(urls)
    call = client.raw.member_update(member_id, urls)
    return await _changed("updated in", call, member_id, args, out)


async def member_promote(client: ClusterClient, args: Args, out: _Out) -> int:
    member_id = _one_id(args)
    call = client.raw.member_promote(member_id)
    return await _changed("promoted in", call, member_id, args, out)


# ---- endpoint -----------------------------------------------------------------------------------


async def _target_endpoints(client: ClusterClient, args: Args) -> list[str]:
    """The endpoints to check: ``--endpoints``, or with ``--cluster`` every member's client
    URLs from MemberList (as etcdctl, in member order)."""
    if not args.is_set("cluster"):
        return list(client.endpoints)
    reply = await client.raw.member_list()
    return [url for m in reply.members for url in m.client_ur_ls]


async def endpoint_status(client: ClusterClient, args: Args, out: _Out) -> int:
    endpoints = await _target_endpoints(client, args)
    found: list[tuple[str, pb.StatusResponse]] = []
    failed = False
    for endpoint in endpoints:
        try:
            found.append((endpoint, await client.raw.status(endpoint)))
        except ClientError as err:
            out.stderr.write(
                f"Failed to get the status of endpoint {endpoint} ({error_text(err)})\n"
            )
            failed = True
    fmt = args.write_out
    if fmt == "json":
        entries = [{"Endpoint": e, "Status": gojson.status(s)} for e, s in found]
        out.print(gojson.dumps(entries) + "\n")
    elif fmt == "table":
        rows = [printers.status_row(e, s) for e, s in found]
        out.print(printers.table(printers.STATUS_HEADER, rows))
    elif fmt == "fields":
        out.print("".join(printers.fields_status(e, s) for e, s in found))
    elif fmt == "simple":
        out.print(printers.simple_rows([printers.status_row(e, s) for e, s in found]))
    else:
        return _unsupported(out, args)
    return EXIT_ERROR if failed else 0


async def endpoint_health(client: ClusterClient, args: Args, out: _Out) -> int:
    endpoints = await _target_endpoints(client, args)

    async def check(endpoint: str) -> tuple[str, float, str | None]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            took = await client.health(endpoint)
        except ClientError as err:
            return endpoint, loop.time() - started, error_text(err)
        return endpoint, took, None

    results = await asyncio.gather(*(check(e) for e in endpoints))
    fmt = args.write_out
    if fmt == "json":
        entries = [
            {"endpoint": e, "health": error is None, "took": printers.go_duration(took)}
            | ({"error": error} if error is not None else {})
            for e, took, error in results
        ]
        out.print(gojson.dumps(entries) + "\n")
    elif fmt == "table":
        rows = [
            [e, "true" if error is None else "false", printers.go_duration(took), error or ""]
            for e, took, error in results
        ]
        out.print(printers.table(printers.HEALTH_HEADER, rows))
    elif fmt == "simple":
        for e, took, error in results:
            if error is None:
                took_text = printers.go_duration(took)
                out.stderr.write(
                    f"{e} is healthy: successfully committed proposal: took = {took_text}\n"
                )
            else:
                out.stderr.write(f"{e} is unhealthy: failed to commit proposal: {error}\n")
    else:
        return _unsupported(out, args)
    if any(error is not None for _, _, error in results):
        out.error("unhealthy cluster")
        return EXIT_ERROR
    return 0


_Handler = Callable[[ClusterClient, Args, _Out], Awaitable[int]]

_COMMANDS: Mapping[tuple[str, str], _Handler] = {
    ("member", "list"): member_list,
    ("member", "add"): member_add,
    ("member", "remove"): member_remove,
    ("member", "update"): member_update,
    ("member", "promote"): member_promote,
    ("endpoint", "status"): endpoint_status,
    ("endpoint", "health"): endpoint_health,
}
