"""Command-line entry point (`raftnode`, `python -m node`): etcd's flags -> NodeConfig -> server.

Flags are parsed the way Go's ``flag`` package (and so etcd) parses them: ``--flag value``,
``--flag=value``, one or two dashes, a boolean flag alone means true (``--flag=false`` turns it
off; ``--flag false`` does not), the last occurrence wins, and ``--`` ends the flags. Every flag
not given on the command line is taken from its ``ETCD_<FLAG>`` environment variable when that is
set and non-empty (``--initial-cluster`` <- ``ETCD_INITIAL_CLUSTER``), so the lines etcdctl prints
after ``member add`` work as they are (spec §5.3). The command line wins over the environment.

This module holds no logic beyond that: `NodeConfig` validates, `node.server.run` runs. A bad
configuration prints ``raftnode: error: <message>`` and exits 1, never with a traceback.

A first word that is not a flag selects a subcommand from `COMMANDS` (the future
``raftnode member ...`` / ``raftnode endpoint ...``, etcdctl's commands in `node.ctl`).
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.config import (
    DEFAULT_CLIENT_URL,
    DEFAULT_NAME,
    DEFAULT_PEER_URL,
    ClusterState,
    ConfigError,
    NodeConfig,
    parse_initial_cluster,
)
from node.urls import URLError, parse_url_list

__all__ = ["COMMANDS", "ENV_PREFIX", "FLAGS", "Flag", "main", "parse_config", "usage"]

ENV_PREFIX = "ETCD_"
PROG = "raftnode"


class _HelpRequested(Exception):
    """``-h`` / ``--help`` was given: print the usage and exit 0."""


# ---- Value parsers: str -> the NodeConfig field's type; ValueError says why -----------------


def _text(value: str) -> str:
    return value


def _unsigned(value: str) -> int:
    if not re.fullmatch(r"[0-9]+", value):
        raise ValueError("expected a non-negative decimal integer")
    return int(value)


def _go_bool(value: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError("expected a boolean (true or false)")


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError("expected a number of seconds") from None
    if not math.isfinite(seconds):
        raise ValueError("expected a finite number of seconds")
    return seconds


def _url_list(value: str) -> tuple[str, ...]:
    try:
        return parse_url_list(value)
    except URLError as err:
        raise ValueError(str(err)) from None


def _initial_cluster(value: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    parsed = parse_initial_cluster(value)
    if not parsed:
        raise ValueError("expected at least one name=URL entry")
    return tuple(parsed)


def _cluster_state(value: str) -> ClusterState:
    try:
        return ClusterState(value)
    except ValueError:
        raise ValueError('valid values are "new" and "existing"') from None


@dataclass(frozen=True, slots=True)
class Flag:
    """One command-line flag and the NodeConfig field it sets."""

    name: str
    field: str
    parse: Callable[[str], Any]
    help: str
    is_bool: bool = False

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper().replace("-", "_")


#: etcd's flags that raftnode takes, in the order ``--help`` lists them.
FLAGS: tuple[Flag, ...] = (
    Flag("name", "name", _text, f"human-readable name for this member (default {DEFAULT_NAME!r})"),
    Flag("data-dir", "data_dir", _text, "path to the data directory (default '<name>.etcd')"),
    Flag(
        "listen-client-urls",
        "listen_client_urls",
        _url_list,
        f"URLs to serve clients on, gRPC and the JSON gateway (default {DEFAULT_CLIENT_URL})",
    ),
    Flag(
        "advertise-client-urls",
        "advertise_client_urls",
        _url_list,
        f"client URLs published to the cluster (default {DEFAULT_CLIENT_URL})",
    ),
    Flag(
        "listen-peer-urls",
        "listen_peer_urls",
        _url_list,
        f"URLs to serve peer traffic on (default {DEFAULT_PEER_URL})",
    ),
    Flag(
        "initial-advertise-peer-urls",
        "initial_advertise_peer_urls",
        _url_list,
        f"this member's peer URLs, as the cluster knows them (default {DEFAULT_PEER_URL})",
    ),
    Flag(
        "initial-cluster",
        "initial_cluster",
        _initial_cluster,
        "the founding members, name=URL,... (default '<name>=<initial-advertise-peer-urls>')",
    ),
    Flag(
        "initial-cluster-state",
        "initial_cluster_state",
        _cluster_state,
        "'new' to found a cluster, 'existing' to join one (default 'new')",
    ),
    Flag(
        "initial-cluster-token",
        "initial_cluster_token",
        _text,
        "cluster token, hashed into the member and cluster IDs (default 'etcd-cluster')",
    ),
    Flag(
        "heartbeat-interval",
        "heartbeat_interval_ms",
        _unsigned,
        "time of one heartbeat interval, in ms (default 100)",
    ),
    Flag(
        "election-timeout",
        "election_timeout_ms",
        _unsigned,
        "election timeout, in ms (default 1000)",
    ),
    Flag(
        "snapshot-count",
        "snapshot_count",
        _unsigned,
        "applied entries between snapshots (default 100000)",
    ),
    Flag(
        "strict-reconfig-check",
        "strict_reconfig_check",
        _go_bool,
        "refuse membership changes that could break the quorum (default true)",
        is_bool=True,
    ),
    Flag("max-learners", "max_learners", _unsigned, "most learners a cluster may have (default 1)"),
    Flag(
        "auto-promote-learners",
        "auto_promote_learners",
        _go_bool,
        "the leader promotes a learner as soon as it is in sync (default false; not in etcd)",
        is_bool=True,
    ),
    Flag(
        "log-level",
        "log_level",
        _text,
        "debug, info, warn, error, panic or fatal (default 'info')",
    ),
    Flag(
        "health-interval",
        "health_interval_s",
        _seconds,
        "seconds a peer must be connected to count as healthy (default 5; for tests)",
    ),
)

_BY_NAME: Mapping[str, Flag] = {flag.name: flag for flag in FLAGS}

#: Subcommands by their first word; each takes the remaining arguments and the environment.
COMMANDS: Mapping[str, Callable[[Sequence[str], Mapping[str, str]], int]] = {
    "member": lambda argv, environ: _ctl().member_command(argv, environ),
    "endpoint": lambda argv, environ: _ctl().endpoint_command(argv, environ),
}


def _ctl() -> Any:
    """node.ctl, imported only when a subcommand runs (it pulls in grpclib and the protos)."""
    import node.ctl

    return node.ctl


def usage() -> str:
    lines = [
        f"usage: {PROG} [flags]",
        "",
        "Runs one member of an etcd-compatible cluster. Every flag may also be set through",
        f"its {ENV_PREFIX}<FLAG> environment variable (--initial-cluster: "
        f"{ENV_PREFIX}INITIAL_CLUSTER); a flag given on the command line wins.",
        "",
        "flags:",
    ]
    for flag in FLAGS:
        value = "" if flag.is_bool else " value"
        lines.append(f"  --{flag.name}{value}")
        lines.append(f"        {flag.help}")
    lines += [
        "",
        "operator commands (etcdctl 3.4's flags, output and exit codes):",
        f"  {PROG} member list|add|remove|update|promote [--endpoints=h:p,...] [-w FORMAT]",
        f"  {PROG} endpoint status|health [--cluster] [--endpoints=h:p,...] [-w ...]",
        "  --command-timeout 5s bounds each command; ETCDCTL_* variables work as in etcdctl",
    ]
    return "\n".join(lines)


# ---- Parsing ------------------------------------------------------------------------------


def parse_config(argv: Sequence[str], environ: Mapping[str, str]) -> NodeConfig:
    """The NodeConfig for these arguments and environment, or ConfigError saying what is wrong."""
    from_flags = _parse_flags(argv)
    values: dict[str, Any] = {}
    given: set[str] = set()
    for flag in FLAGS:
        if flag.name in from_flags:
            raw, source = from_flags[flag.name], f"flag --{flag.name}"
        elif environ.get(flag.env):
            raw, source = environ[flag.env], flag.env
        else:
            continue
        given.add(flag.name)
        try:
            values[flag.field] = flag.parse(raw)
        except ValueError as err:  # ConfigError included
            raise ConfigError(f"invalid value {raw!r} for {source}: {err}") from None
    if "listen-client-urls" in given and "advertise-client-urls" not in given:
        # etcd: the default advertised URL would not reach a node that listens elsewhere.
        raise ConfigError(
            "--advertise-client-urls is required when --listen-client-urls is set explicitly"
        )
    return NodeConfig(**values)


def _parse_flags(argv: Sequence[str]) -> dict[str, str]:
    """flag name -> raw value (the last occurrence wins), as Go's ``flag`` package parses."""
    found: dict[str, str] = {}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "--":
            break
        if len(arg) < 2 or not arg.startswith("-"):
            raise ConfigError(f"unexpected argument {arg!r} (flags start with --)")
        body = arg[2:] if arg.startswith("--") else arg[1:]
        if not body or body.startswith(("-", "=")):
            raise ConfigError(f"bad flag syntax: {arg}")
        name, has_value, value = body.partition("=")
        if name in ("h", "help"):
            raise _HelpRequested
        flag = _BY_NAME.get(name)
        if flag is None:
            raise ConfigError(f"unknown flag --{name} (see {PROG} --help)")
        if not has_value:
            if flag.is_bool:
                value = "true"
            elif args:
                value = args.pop(0)
            else:
                raise ConfigError(f"flag needs an argument: --{name}")
        found[name] = value
    if args:
        raise ConfigError(f"unexpected argument {args[0]!r}")
    return found


# ---- Entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the node with `argv` (default: the process arguments) and return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    environ: Mapping[str, str] = os.environ
    if args and not args[0].startswith("-"):
        command = COMMANDS.get(args[0])
        if command is None:
            return _fail(f"unknown command {args[0]!r} (see {PROG} --help)")
        return command(args[1:], environ)
    try:
        config = parse_config(args, environ)
    except _HelpRequested:
        print(usage())
        return 0
    except ConfigError as err:
        return _fail(str(err))
    # Imported here: the server pulls in asyncio, grpclib and the services, which a bad flag,
    # --help or a subcommand never needs.
    from node.server import run  # type: ignore[import-not-found, unused-ignore]

    status: int = run(config)
    return status


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1
