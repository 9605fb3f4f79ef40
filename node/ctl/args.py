"""etcdctl's command line, as Go's pflag and etcdctl 3.4 read it.

Flags may come anywhere after the command words (``member list -w table`` and ``-w table member
list`` are the same); ``--flag=value``, ``--flag value``, ``-w table`` and ``-wtable`` all work; a
boolean flag alone means true; ``--`` ends the flags. A global flag not given is read from its
``ETCDCTL_<FLAG>`` environment variable, as etcdctl does. Argument checks give etcdctl's exact
messages (spec §10.4) through `UsageError`, which the commands turn into exit code 128.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "Args",
    "UsageError",
    "check_peer_urls",
    "parse_args",
    "parse_duration",
    "parse_member_id",
]

DEFAULT_ENDPOINTS = ("127.0.0.1:2379",)
DEFAULT_COMMAND_TIMEOUT_S = 5.0
#: --write-out values etcdctl knows; a command that cannot print one says so (exit 4).
OUTPUT_FORMATS = ("simple", "table", "json", "fields", "protobuf")


class UsageError(Exception):
    """A bad command line: etcdctl prints ``Error: <message>`` and exits with ``code``."""

    def __init__(self, message: str, code: int = 128) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class _Flag:
    name: str
    is_bool: bool = False
    short: str | None = None


GLOBAL_FLAGS = (
    _Flag("endpoints"),
    _Flag("write-out", short="w"),
    _Flag("command-timeout"),
    _Flag("dial-timeout"),
    _Flag("hex", is_bool=True),
)

#: Flags of each command, by its words.
COMMAND_FLAGS: Mapping[tuple[str, str], tuple[_Flag, ...]] = {
    ("member", "list"): (),
    ("member", "add"): (_Flag("peer-urls"), _Flag("learner", is_bool=True)),
    ("member", "remove"): (),
    ("member", "update"): (_Flag("peer-urls"),),
    ("member", "promote"): (),
    ("endpoint", "status"): (_Flag("cluster", is_bool=True),),
    ("endpoint", "health"): (_Flag("cluster", is_bool=True),),
}


@dataclass
class Args:
    """One parsed command line."""

    command: tuple[str, str]
    positional: list[str]
    endpoints: tuple[str, ...] = DEFAULT_ENDPOINTS
    write_out: str = "simple"
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT_S
    flags: dict[str, str] = field(default_factory=dict)

    def flag(self, name: str) -> str | None:
        return self.flags.get(name)

    def is_set(self, name: str) -> bool:
        value = self.flags.get(name)
        return value is not None and _go_bool(name, value)


def parse_args(group: str, argv: Sequence[str], environ: Mapping[str, str]) -> Args:
    """``argv`` after the group word (``member``/``endpoint``): the subcommand, its positional
    arguments, and the flags. Before the subcommand only global flags are known."""
    command: tuple[str, str] | None = None
    known = {f.name: f for f in GLOBAL_FLAGS}
    positional: list[str] = []
    flags: dict[str, str] = {}
    rest = list(argv)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            positional += rest
            break
        if arg.startswith("-") and len(arg) > 1:
            name, value, rest = _one_flag(arg, rest, known)
            flags[name] = value
        elif command is None:
            command = (group, arg)
            if command not in COMMAND_FLAGS:
                raise UsageError(f'unknown command "{arg}" for "{group}"', code=1)
            known.update((f.name, f) for f in COMMAND_FLAGS[command])
        else:
            positional.append(arg)
    if command is None:
        raise UsageError(f"{group}: a subcommand is needed (see raftnode --help)", code=1)
    args = Args(command=command, positional=positional, flags=flags)
    _apply_globals(args, environ)
    return args


def _one_flag(arg: str, rest: list[str], known: Mapping[str, _Flag]) -> tuple[str, str, list[str]]:
    shorts = {f.short: f for f in known.values() if f.short}
    if arg.startswith("--"):
        name, equals, value = arg[2:].partition("=")
        has_value = bool(equals)
        flag = known.get(name)
        if flag is None:
            raise UsageError(f"unknown flag: --{name}", code=1)
    else:
        short, value = arg[1], arg[2:]
        has_value = bool(value)
        if value.startswith("="):
            value = value[1:]
        flag = shorts.get(short)
        if flag is None:
            raise UsageError(f"unknown shorthand flag: '{short}' in {arg}", code=1)
    if not has_value:
        if flag.is_bool:
            value = "true"
        elif rest:
            value = rest.pop(0)
        else:
            raise UsageError(f"flag needs an argument: --{flag.name}", code=1)
    return flag.name, value, rest


def _apply_globals(args: Args, environ: Mapping[str, str]) -> None:
    def given(name: str) -> str | None:
        if name in args.flags:
            return args.flags[name]
        return environ.get("ETCDCTL_" + name.upper().replace("-", "_")) or None

    endpoints = given("endpoints")
    if endpoints is not None:
        args.endpoints = tuple(e for e in endpoints.split(",") if e)
        if not args.endpoints:
            raise UsageError("no endpoints given", code=1)
    write_out = given("write-out")
    if write_out is not None:
        if write_out not in OUTPUT_FORMATS:
            raise UsageError("unsupported output format", code=4)
        args.write_out = write_out
    timeout = given("command-timeout")
    if timeout is not None:
        args.command_timeout = parse_duration("command-timeout", timeout)
    dial = given("dial-timeout")
    if dial is not None:
        parse_duration("dial-timeout", dial)  # accepted for compatibility; see commands


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)")


def parse_duration(flag: str, text: str) -> float:
    """Go's ``time.ParseDuration`` (``5s``, ``500ms``, ``1m30s``) in seconds, positive."""
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text or total <= 0:
        raise UsageError(f'invalid argument "{text}" for "--{flag}" flag: invalid duration', 1)
    return total


def _go_bool(name: str, value: str) -> bool:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise UsageError(f'invalid argument "{value}" for "--{name}" flag', code=1)


def parse_member_id(text: str) -> int:
    """Go's ``strconv.ParseUint(text, 16, 64)`` with etcdctl's message around its error."""
    if not re.fullmatch(r"[0-9a-fA-F]+", text):
        reason = "invalid syntax"
    elif int(text, 16) >= 2**64:
        reason = "value out of range"
    else:
        return int(text, 16)
    raise UsageError(
        f'bad member ID arg (strconv.ParseUint: parsing "{text}": {reason}), expecting ID in Hex'
    )


def check_peer_urls(urls: Sequence[str]) -> None:
    """etcdctl 3.4's own URL check before it sends anything (``types.NewURLs``); its failures
    exit 1, not 128 (transcript 07)."""
    for raw in urls:
        url = raw.strip()
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https", "unix", "unixs"):
            raise UsageError(f"URL scheme must be http, https, unix, or unixs: {url}", code=1)
        host, colon, port = parts.netloc.rpartition("@")[2].rpartition(":")
        if not colon or "]" in port or (host.startswith("[") != host.endswith("]")):
            raise UsageError(f'URL address does not have the form "host:port": {url}', code=1)
        if parts.path:
            raise UsageError(f"URL must not contain a path: {url}", code=1)
