"""The operator commands etcdctl users know, for machines without etcdctl:
``raftnode member list|add|remove|update|promote`` and ``raftnode endpoint status|health``,
with etcdctl 3.4's flags, output formats and exit codes (spec §10). Built on `node.client`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from node.ctl.commands import run

__all__ = ["endpoint_command", "member_command"]


def member_command(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``raftnode member <list|add|remove|update|promote> [flags]``."""
    return run("member", argv, environ)


def endpoint_command(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """``raftnode endpoint <status|health> [flags]``."""
    return run("endpoint", argv, environ)
