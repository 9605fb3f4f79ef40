"""Enforce the import directions of CONVENTIONS.md section 4.

Every module under raft/, node/ and proto/ (except the generated proto packages) is parsed with
`ast`, and every import it makes, at module level or nested (in functions, under
`if TYPE_CHECKING:`), relative ones resolved to absolute names, is checked against IMPORT_RULES.
Modules that don't exist yet are simply not checked. A module that exists but matches no rule fails,
so each new module gets a deliberate place in the table.

The table is data: patterns of module names mapped to a Rule. Where section 4 leaves a reading open,
this is the one taken here:

- raft's stdlib allow-list also holds `__future__`, `bisect` and `heapq`.
- The I/O layer (node.storage, transport, driver, join) may import one another: the driver needs
  the storage and transport Protocols, the join flow the transport.
- The client edge (node.errors, services, gateway, listener) may import `raft` (the error table maps
  raft's errors) and one another (services raise through the error table; the listener hands
  HTTP/1.1 to the gateway). The HTTP library is whatever HTTP_LIBRARIES names.
- The `node` package itself and node.testing (the in-memory fakes) may import anything but the
  entry points.
- The entry points (node.server, node.cli, node.__main__) may import one another (`python -m node`
  calls cli.main, cli starts the server); nothing else may import them.
- msgpack is imported by node.codec alone (P7).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKED_PACKAGES = ("raft", "node", "proto")
GENERATED_DIRS = (Path("proto/etcdserverpb"), Path("proto/mvccpb"), Path("proto/authpb"))

STDLIB = "<stdlib>"
"""Allow-list token that admits any module of the standard library."""


def modules(*names: str) -> frozenset[str]:
    """Patterns matching each named module or package and everything below it."""
    return frozenset(pattern for name in names for pattern in (name, f"{name}.*"))


@dataclass(frozen=True)
class Rule:
    """What a module may import: `forbidden` wins; then `allowed`, where None admits anything."""

    allowed: frozenset[str] | None
    forbidden: frozenset[str] = frozenset()

    def violation(self, imported: str) -> str | None:
        """Why importing `imported` breaks this rule, or None if it is fine."""
        if _matches(imported, self.forbidden):
            return "forbidden"
        if self.allowed is not None and not _matches(imported, self.allowed):
            return "not in the allow-list"
        return None


def _matches(name: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if pattern == STDLIB:
            if name.partition(".")[0] in sys.stdlib_module_names:
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


RAFT_STDLIB = (
    "__future__",
    "dataclasses",
    "enum",
    "typing",
    "collections",
    "itertools",
    "functools",
    "random",
    "logging",
    "math",
    "bisect",
    "heapq",
)
# node.domain_errors: plain exception classes (no wire knowledge) that the pure modules raise and
# node.errors maps, so it sits with the pure modules.
PURE = (
    "node.urls",
    "node.ids",
    "node.membership",
    "node.config",
    "node.domain_errors",
    "node.entries",
    "node.metrics",  # the Prometheus registry: values in, text out
)
# node.state (the membership state machine) and node.cluster (the Cluster API's domain logic)
# run inside the driver's world: asyncio yes, wire formats no.
IO_LAYER = (
    "node.storage",
    "node.transport",
    "node.driver",
    "node.join",
    "node.state",
    "node.cluster",
    "node.observability",  # reads the driver's and the manager's figures into metrics
)
CLIENT_EDGE = ("node.errors", "node.services", "node.gateway", "node.listener")
ENTRY_POINTS = ("node.server", "node.cli", "node.__main__")
PROTO_STACK = ("proto", "grpclib", "betterproto")
# h11: the gateway's HTTP/1.1; h2: grpclib's HTTP/2, whose error codes the listener sends.
HTTP_LIBRARIES: tuple[str, ...] = ("h11", "h2")

# Everything outside the entry points is denied these, whatever its allow-list says.
_NEVER = modules(*ENTRY_POINTS, "msgpack")


def _rule(allowed: Iterable[str] | None, forbidden: Iterable[str] = ()) -> Rule:
    return Rule(
        allowed=None if allowed is None else frozenset(allowed),
        forbidden=_NEVER | frozenset(forbidden),
    )


_RAFT = _rule(modules("raft", *RAFT_STDLIB))
_PROTO = _rule({STDLIB} | modules(*PROTO_STACK))  # generated code also needs typing, dataclasses
_NODE_PURE = _rule(
    {STDLIB, "node"} | modules("raft", *PURE),
    forbidden=modules("asyncio", *PROTO_STACK),
)
# The codec also encodes the entry payloads and the membership snapshot (CONVENTIONS §3: "msgpack
# <-> raft.types and entry payloads"), so it may import the pure value modules that define them.
_NODE_CODEC = Rule(
    allowed=frozenset({STDLIB, "node"})
    | modules("raft", "msgpack", "node.codec", "node.entries", *PURE)
)
_NODE_IO = _rule(
    {STDLIB, "node"} | modules("raft", "node.codec", *PURE, *IO_LAYER),
    forbidden=modules(*PROTO_STACK),
)
_NODE_EDGE = _rule(
    {STDLIB, "node"}
    | modules(
        "raft", *PURE, "node.driver", "node.cluster", *CLIENT_EDGE, *PROTO_STACK, *HTTP_LIBRARIES
    )
)
# node.client is a library for other programs: the wire (proto, grpclib, betterproto) and the pure
# modules, never the node's own machinery (driver, cluster, server). node.ctl, the operator CLI, is
# built on node.client alone.
_NODE_CLIENT = _rule({STDLIB, "node"} | modules("node.client", *PURE, *PROTO_STACK))
_NODE_CTL = _rule({STDLIB, "node"} | modules("node.client", "node.ctl", *PURE, *PROTO_STACK))
_NODE_ANY = _rule(None)
_NODE_ENTRY = Rule(allowed=None, forbidden=modules("msgpack"))

IMPORT_RULES: dict[str, Rule] = {
    "raft": _RAFT,
    "raft.*": _RAFT,
    "proto": _PROTO,
    "proto.*": _PROTO,
    "node": _NODE_ANY,
    "node.testing": _NODE_ANY,
    **dict.fromkeys(PURE, _NODE_PURE),
    "node.codec": _NODE_CODEC,
    **dict.fromkeys(IO_LAYER, _NODE_IO),
    # node.storage is a package; its modules (wal, snap, datadir, frame, fs, fakefs, ...) are
    # the storage itself, split by job, under the same rule.
    "node.storage.*": _NODE_IO,
    **dict.fromkeys(CLIENT_EDGE, _NODE_EDGE),
    "node.services.*": _NODE_EDGE,
    # node.gateway is a package split by job (codec, routes, http11), under the same rule.
    "node.gateway.*": _NODE_EDGE,
    **dict.fromkeys(ENTRY_POINTS, _NODE_ENTRY),
    # The local-cluster launcher runs members as processes; it needs nothing of the node.
    "node.localcluster": _rule({STDLIB}),
    "node.client": _NODE_CLIENT,
    "node.client.*": _NODE_CLIENT,
    "node.ctl": _NODE_CTL,
    "node.ctl.*": _NODE_CTL,
}
"""Module-name pattern -> the rule for modules it matches. Each module must match exactly one."""


def rule_for(module: str) -> tuple[str, Rule]:
    """The single (pattern, rule) of IMPORT_RULES that covers `module`."""
    found = [(p, r) for p, r in IMPORT_RULES.items() if fnmatch.fnmatchcase(module, p)]
    if len(found) != 1:
        patterns = [p for p, _ in found] or "none"
        raise LookupError(f"{module} must match exactly one IMPORT_RULES pattern, got {patterns}")
    return found[0]


# ---- Finding modules and their imports ---------------------------------------------------------


def repo_modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every hand-written module under the checked packages."""
    for package in CHECKED_PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            if "__pycache__" in relative.parts:
                continue
            if any(relative.is_relative_to(generated) for generated in GENERATED_DIRS):
                continue
            yield module_name(relative), path


def module_name(relative: Path) -> str:
    parts = relative.with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_repo_module(name: str) -> bool:
    path = REPO_ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(source: str, module: str, *, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in `source`, nested ones included.

    `from pkg import name` yields `pkg`, and also `pkg.name` when that is a module of this repo,
    so `from node import server` counts as importing node.server.
    """
    found: list[tuple[int, str]] = []
    for stmt in ast.walk(ast.parse(source)):
        if isinstance(stmt, ast.Import):
            found.extend((stmt.lineno, alias.name) for alias in stmt.names)
        elif isinstance(stmt, ast.ImportFrom):
            base = _absolute_base(stmt, module, is_package=is_package)
            found.append((stmt.lineno, base))
            for alias in stmt.names:
                if alias.name != "*" and _is_repo_module(f"{base}.{alias.name}"):
                    found.append((stmt.lineno, f"{base}.{alias.name}"))
    return found


def _absolute_base(stmt: ast.ImportFrom, module: str, *, is_package: bool) -> str:
    if stmt.level == 0:
        assert stmt.module is not None
        return stmt.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    if stmt.level > len(package):
        raise ImportError(f"{module}:{stmt.lineno}: relative import beyond top-level package")
    parts = package[: len(package) - (stmt.level - 1)]
    if stmt.module:
        parts.append(stmt.module)
    return ".".join(parts)


# ---- The tests ---------------------------------------------------------------------------------

REPO_MODULES = list(repo_modules())


@pytest.mark.parametrize(("module", "path"), REPO_MODULES, ids=[m for m, _ in REPO_MODULES])
def test_module_imports_follow_the_table(module: str, path: Path) -> None:
    pattern, rule = rule_for(module)
    source = path.read_text(encoding="utf-8")
    imports = imports_of(source, module, is_package=path.name == "__init__.py")
    problems = [
        f"{path.relative_to(REPO_ROOT)}:{line}: imports {name}: {why} for {pattern!r}"
        for line, name in imports
        if (why := rule.violation(name)) is not None
    ]
    assert not problems, (
        "import directions (CONVENTIONS.md section 4) broken:\n"
        + "\n".join(problems)
        + "\nIf a new direction is intended, change IMPORT_RULES in tests/test_imports.py "
        "and say why in CONVENTIONS.md."
    )


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("raft.core", "raft.quorum", True),
        ("raft.core", "collections.abc", True),
        ("raft.core", "__future__", True),
        ("raft.core", "asyncio", False),
        ("raft.core", "time", False),
        ("raft.core", "msgpack", False),
        ("raft.core", "node.codec", False),
        ("raft.core", "proto", False),
        ("node.urls", "urllib.parse", True),
        ("node.membership", "raft.types", True),
        ("node.membership", "node.ids", True),
        ("node.urls", "node.domain_errors", True),
        ("node.domain_errors", "grpclib.const", False),
        ("node.errors", "node.domain_errors", True),
        ("node.driver", "node.domain_errors", True),
        ("node.config", "asyncio", False),
        ("node.ids", "msgpack", False),
        ("node.membership", "proto.etcdserverpb", False),
        ("node.membership", "grpclib.const", False),
        ("node.membership", "node.driver", False),
        ("node.codec", "msgpack", True),
        ("node.codec", "raft.types", True),
        ("node.codec", "grpclib", False),
        ("node.codec", "node.driver", False),
        ("node.storage", "asyncio", True),
        ("node.storage", "node.codec", True),
        ("node.driver", "node.transport", True),
        ("node.driver", "node.membership", True),
        ("node.transport", "grpclib.client", False),
        ("node.driver", "betterproto", False),
        ("node.storage", "msgpack", False),
        ("node.join", "node.errors", False),
        ("node.errors", "grpclib.const", True),
        ("node.errors", "raft.errors", True),
        ("node.services.cluster", "proto.etcdserverpb", True),
        ("node.services.cluster", "node.driver", True),
        ("node.services.cluster", "node.storage", False),
        ("node.gateway", "msgpack", False),
        ("node.gateway", "h11", True),
        ("node.gateway.http11", "h11", True),
        ("node.gateway.codec", "betterproto", True),
        ("node.gateway.routes", "node.services.maintenance", True),
        ("node.gateway.routes", "node.errors", True),
        ("node.gateway.routes", "node.storage", False),
        ("node.gateway.codec", "msgpack", False),
        ("node.gateway.routes", "node.server", False),
        ("node.listener", "grpclib.server", True),
        ("node.listener", "node.gateway", True),
        ("node.listener", "h11", True),
        ("node.listener", "node.transport", False),
        ("node.listener", "node.server", False),
        ("node.driver", "h11", False),
        ("node.membership", "h11", False),
        ("raft.core", "h11", False),
        ("node.testing", "node.transport", True),
        ("node.testing", "node.server", False),
        ("node.services.cluster", "node.server", False),
        ("node.services", "betterproto.grpc.grpclib_server", True),
        ("node.services.others", "proto.etcdserverpb", True),
        ("node.services.others", "node.storage", False),
        ("node.services.context", "grpclib.events", True),
        ("node.services.context", "contextvars", True),
        ("node.services.grpc_patches", "grpclib.server", True),
        ("node.services.grpc_patches", "msgpack", False),
        ("node.__main__", "node.cli", True),
        ("node.cli", "node.server", True),
        ("node.server", "node.services.cluster", True),
        ("proto", "betterproto", True),
        ("proto.etcdserverpb", "typing", True),
        ("proto", "node", False),
    ],
)
def test_rules_table(importer: str, imported: str, allowed: bool) -> None:
    _, rule = rule_for(importer)
    assert (rule.violation(imported) is None) is allowed


def test_every_planned_module_has_a_rule() -> None:
    planned = [
        "raft",
        "raft.rawnode",
        "node",
        *PURE,
        "node.codec",
        *IO_LAYER,
        *CLIENT_EDGE,
        "node.services.cluster",
        "node.services.others",
        "node.services.context",
        "node.services.grpc_patches",
        "node.gateway.codec",
        "node.gateway.routes",
        "node.gateway.http11",
        "node.testing",
        *ENTRY_POINTS,
        "proto",
    ]
    for module in planned:
        rule_for(module)
    with pytest.raises(LookupError):
        rule_for("node.unplanned")


@pytest.mark.parametrize(
    ("module", "is_package", "source", "expected"),
    [
        ("raft.core", False, "import raft.quorum as q", ["raft.quorum"]),
        ("raft.core", False, "from . import not_a_module", ["raft"]),
        ("raft.core", False, "from .log import RaftLog", ["raft.log"]),
        ("raft", True, "from .types import Entry", ["raft.types"]),
        ("node.services.cluster", False, "from ..errors import E", ["node.errors"]),
        ("node.services.cluster", False, "from .. import cli", ["node", "node.cli"]),
        ("node.__main__", False, "from node import cli", ["node", "node.cli"]),
        ("node.urls", False, "import os, sys", ["os", "sys"]),
        (
            "node.urls",
            False,
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import asyncio\n",
            ["typing", "asyncio"],
        ),
        ("node.urls", False, "def f() -> None:\n    import msgpack\n", ["msgpack"]),
    ],
)
def test_imports_are_resolved(
    module: str, is_package: bool, source: str, expected: list[str]
) -> None:
    assert [name for _, name in imports_of(source, module, is_package=is_package)] == expected


def test_relative_import_beyond_the_top_is_an_error() -> None:
    with pytest.raises(ImportError):
        imports_of("from .. import x", "raft.core", is_package=False)


@pytest.mark.parametrize("package", CHECKED_PACKAGES)
def test_packages_are_imported_from_this_repository(package: str) -> None:
    # Top-level names like `proto` collide with installed distributions (proto-plus has one).
    if not (REPO_ROOT / package / "__init__.py").is_file():
        pytest.skip(f"{package}/__init__.py is not in this checkout yet")
    imported = importlib.import_module(package)
    assert imported.__file__ is not None
    location = Path(imported.__file__).resolve()
    assert location.is_relative_to(REPO_ROOT), f"{package} imported from {location}"
