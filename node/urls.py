"""Peer-URL validation and normalisation, exactly as etcd's ``types.NewURLs`` (spec §3.2).

etcd trims each entry, parses it with Go's ``net/url.Parse``, checks the scheme and, for
http/https, that the authority is ``host:port`` with no path. Python's ``urllib.parse`` is far
laxer (it reads the port only on demand and never rejects a bad escape), so this module carries a
small port of the parts of Go's parser that decide *whether* a URL parses: control characters, the
scheme, ``%`` escapes, the host charset, the port digits, IP literals and userinfo. It never builds
a URL object; the normalised form is the input with its scheme lower-cased (spec §3.2 rule 5), so
Go's re-escaping in ``URL.String()`` (it only differs for non-ASCII hosts or escaped userinfo) is
deliberately not reproduced.

Where Go versions disagree we follow the newest (the etcd patch releases the spec targets): a
bracketed host must be an IPv6 address (the fix for CVE-2025-47912), and a host outside brackets
may hold one colon only.

Two entry points:
- `normalize_peer_urls` for the Cluster RPCs: any failure is `InvalidPeerURLs` (the client only
  ever sees "given member URLs are invalid"), with the precise reason kept as the detail for logs;
- `normalize_urls` / `parse_url_list` for the command line, raising `URLError` whose text names
  the URL and the reason, in etcd's own words.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable

from node.domain_errors import InvalidPeerURLs

__all__ = [
    "URLError",
    "normalize_peer_urls",
    "normalize_url",
    "normalize_urls",
    "parse_url_list",
]

#: Schemes a member URL may use (spec §3.2 rule 3).
SCHEMES = frozenset({"http", "https", "unix", "unixs"})
_HOST_PORT_SCHEMES = frozenset({"http", "https"})

#: Go's ``unicode.IsSpace``, which ``strings.TrimSpace`` strips. Python's ``str.strip()`` also
#: strips U+001C..U+001F, control characters Go would then reject, so the set is spelled out.
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680"
    "\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)

_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_ALNUM = _ALPHA | _DIGITS
#: ASCII characters Go lets stand unescaped in a host (``shouldEscape(c, encodeHost)`` is false).
_HOST_CHARS = _ALNUM | frozenset("!$&'()*+,;=:[]<>\"-_.~")
#: Characters ``validUserinfo`` accepts.
_USERINFO_CHARS = _ALNUM | frozenset("-._:~!$&'()*+,;=%@")


class URLError(ValueError):
    """One URL that fails spec §3.2. ``str()`` names the URL and says why."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(reason)
        self.url = url
        self.reason = reason


class _ParseError(ValueError):
    """Go's ``url.Parse`` refused the string; the text is Go's reason."""


class _Mode(enum.Enum):
    """The ``encoding`` argument of Go's ``unescape``: which escapes and characters are legal."""

    HOST = enum.auto()
    ZONE = enum.auto()
    USER_PASSWORD = enum.auto()
    PATH = enum.auto()
    FRAGMENT = enum.auto()


# ---- Public API -------------------------------------------------------------------------------


def normalize_url(raw: str) -> str:
    """One URL, validated and normalised (trimmed, scheme lower-cased), or `URLError`."""
    text = raw.strip(_GO_SPACE)
    if not text:
        raise URLError(text, "empty URL")
    try:
        scheme, host, path = _go_parse(text)
    except _ParseError as err:
        raise URLError(text, f'parse "{text}": {err}') from None  # Go's url.Error wording
    if scheme not in SCHEMES:
        raise URLError(text, f"URL scheme must be http, https, unix, or unixs: {text}")
    if scheme in _HOST_PORT_SCHEMES:
        if not _is_host_port(host):
            raise URLError(text, f'URL address does not have the form "host:port": {text}')
        if path:
            raise URLError(text, f"URL must not contain a path: {text}")
    return scheme + text[len(scheme) :]


def normalize_urls(raws: Iterable[str]) -> tuple[str, ...]:
    """A non-empty list of URLs, each normalised, sorted by the normalised strings.

    Duplicates are kept (etcd keeps them). Raises `URLError` for the first bad entry, or for an
    empty list.
    """
    normalised = [normalize_url(raw) for raw in raws]
    if not normalised:
        raise URLError("", "no valid URLs given")
    return tuple(sorted(normalised))


def normalize_peer_urls(raws: Iterable[str]) -> tuple[str, ...]:
    """`normalize_urls` for MemberAdd and MemberUpdate: failures are `InvalidPeerURLs`."""
    try:
        return normalize_urls(raws)
    except URLError as err:
        raise InvalidPeerURLs(str(err)) from None


def parse_url_list(value: str) -> tuple[str, ...]:
    """A comma-separated flag value (``--listen-client-urls`` and friends), as etcd splits it."""
    return normalize_urls(value.split(","))


# ---- A port of the deciding parts of Go's net/url.Parse --------------------------------------


def _go_parse(raw: str) -> tuple[str, str, str]:
    """(lower-cased scheme, unescaped host or "", raw path or "") of `raw`, or `_ParseError`."""
    without_fragment, _, fragment = raw.partition("#")
    parsed = _parse(without_fragment)
    if fragment:
        _unescape(fragment, _Mode.FRAGMENT)
    return parsed


def _parse(raw: str) -> tuple[str, str, str]:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in raw):
        raise _ParseError("net/url: invalid control character in URL")
    if raw == "*":
        return "", "", "*"
    scheme, rest = _get_scheme(raw)
    scheme = scheme.lower()
    if rest.endswith("?") and rest.count("?") == 1:
        rest = rest[:-1]
    else:
        rest = rest.partition("?")[0]  # the query is never validated by Parse
    if not rest.startswith("/"):
        if scheme:
            return scheme, "", ""  # a rootless URL like `unix:sock` is opaque: no host, no path
        if ":" in rest.partition("/")[0]:
            raise _ParseError("first path segment in URL cannot contain colon")
    host = ""
    if (scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, tail = rest[2:].partition("/")
        rest = slash + tail
        host = _parse_authority(authority)
    _unescape(rest, _Mode.PATH)
    return scheme, host, rest


def _get_scheme(raw: str) -> tuple[str, str]:
    for i, c in enumerate(raw):
        if c in _ALPHA:
            continue
        if c in _DIGITS or c in "+-.":
            if i == 0:
                return "", raw
            continue
        if c == ":":
            if i == 0:
                raise _ParseError("missing protocol scheme")
            return raw[:i], raw[i + 1 :]
        return "", raw
    return "", raw


def _parse_authority(authority: str) -> str:
    at = authority.rfind("@")
    host = _parse_host(authority[at + 1 :])
    if at >= 0:
        userinfo = authority[:at]
        if not all(c in _USERINFO_CHARS for c in userinfo):
            raise _ParseError("net/url: invalid userinfo")
        user, _, password = userinfo.partition(":")
        _unescape(user, _Mode.USER_PASSWORD)
        _unescape(password, _Mode.USER_PASSWORD)
    return host


def _parse_host(host: str) -> str:
    bracket = host.rfind("[")
    if bracket > 0:
        raise _ParseError("invalid IP-literal")
    if bracket == 0:
        close = host.rfind("]")
        if close < 0:
            raise _ParseError("missing ']' in host")
        colon_port = host[close + 1 :]
        if not _valid_optional_port(colon_port):
            raise _ParseError(f'invalid port "{colon_port}" after host')
        literal = host[1:close]
        zone = literal.find("%25")
        if zone >= 0:
            name = _unescape(literal[:zone], _Mode.HOST) + _unescape(literal[zone:], _Mode.ZONE)
        else:
            name = _unescape(literal, _Mode.HOST)
        _check_ipv6_literal(name)
        return f"[{name}]{colon_port}"
    colon = host.find(":")
    if colon >= 0:
        colon_port = host[colon:]
        if not _valid_optional_port(colon_port):
            raise _ParseError(f'invalid port "{colon_port}" after host')
    return _unescape(host, _Mode.HOST)


def _check_ipv6_literal(name: str) -> None:
    """Only an IPv6 address (with an optional non-empty zone) may stand in brackets."""
    address, percent, zone = name.partition("%")
    if percent and not zone:
        raise _ParseError(f'invalid host: ParseAddr("{name}"): zone must be a non-empty string')
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        pass
    else:
        return
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise _ParseError(f'invalid host: ParseAddr("{name}"): unable to parse IP') from None
    raise _ParseError("invalid IP-literal")  # Go: an IPv4 address may not stand in brackets


def _valid_optional_port(colon_port: str) -> bool:
    if not colon_port:
        return True
    return colon_port[0] == ":" and all(c in _DIGITS for c in colon_port[1:])


def _unescape(text: str, mode: _Mode) -> str:
    """Check `text` the way Go's ``unescape`` does; return it with ``%25`` decoded.

    Only the structure matters to the callers (colons and brackets, which an escape can never
    produce, since a host may escape only non-ASCII bytes and ``%``), so other escapes are left
    as they are.
    """
    i = 0
    while i < len(text):
        c = text[i]
        if c == "%":
            escape = text[i : i + 3]
            if len(escape) < 3 or escape[1] not in _HEX or escape[2] not in _HEX:
                raise _ParseError(f'invalid URL escape "{escape}"')
            value = int(escape[1:], 16)
            if mode is _Mode.HOST and value < 0x80 and escape != "%25":
                raise _ParseError(f'invalid URL escape "{escape}"')
            if mode is _Mode.ZONE and escape != "%25" and value != 0x20:
                if value < 0x80 and chr(value) not in _HOST_CHARS:
                    raise _ParseError(f'invalid URL escape "{escape}"')
            i += 3
            continue
        if mode in (_Mode.HOST, _Mode.ZONE) and ord(c) < 0x80 and c not in _HOST_CHARS:
            raise _ParseError(f'invalid character "{c}" in host name')
        i += 1
    return text.replace("%25", "%")


def _is_host_port(host: str) -> bool:
    """Go's ``net.SplitHostPort`` succeeds on `host` (it checks structure, not the port)."""
    last_colon = host.rfind(":")
    if last_colon < 0:
        return False
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or end + 1 != last_colon:
            return False
        inner_start, outer_end = 1, end + 1
    else:
        if ":" in host[:last_colon]:
            return False
        inner_start, outer_end = 0, 0
    return "[" not in host[inner_start:] and "]" not in host[outer_end:]
