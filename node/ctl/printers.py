"""etcdctl 3.4's text renderings (spec §10): simple lines, tables, ``fields``, and helpers for
Go's number and duration formats. Pure functions from replies to text, each ending in a newline.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from proto import etcdserverpb as pb

__all__ = [
    "MEMBER_HEADER",
    "STATUS_HEADER",
    "changed",
    "fields_members",
    "fields_status",
    "go_duration",
    "member_added",
    "member_row",
    "si_bytes",
    "simple_rows",
    "status_row",
    "table",
]

MEMBER_HEADER = ("ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER")
STATUS_HEADER = (
    "ENDPOINT",
    "ID",
    "VERSION",
    "DB SIZE",
    "IS LEADER",
    "IS LEARNER",
    "RAFT TERM",
    "RAFT INDEX",
    "RAFT APPLIED INDEX",
    "ERRORS",
)
HEALTH_HEADER = ("ENDPOINT", "HEALTH", "TOOK", "ERROR")


def _bool(value: bool) -> str:
    return "true" if value else "false"


def member_row(m: pb.Member) -> list[str]:
    return [
        f"{m.id:x}",
        "started" if m.name else "unstarted",
        m.name,
        ",".join(m.peer_ur_ls),
        ",".join(m.client_ur_ls),
        _bool(m.is_learner),
    ]


def status_row(endpoint: str, s: pb.StatusResponse) -> list[str]:
    return [
        endpoint,
        f"{s.header.member_id:x}",
        s.version,
        si_bytes(s.db_size),
        _bool(s.header.member_id == s.leader),
        _bool(s.is_learner),
        str(s.raft_term),
        str(s.raft_index),
        str(s.raft_applied_index),
        ", ".join(s.errors),
    ]


def simple_rows(rows: Sequence[Sequence[str]]) -> str:
    return "".join(", ".join(row) + "\n" for row in rows)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The tablewriter layout etcdctl uses: centred header, right-aligned cells, +---+ borders."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"

    def centred(text: str, width: int) -> str:
        left = (width - len(text)) // 2
        return " " * left + text + " " * (width - len(text) - left)

    head = "|" + "|".join(f" {centred(h, w)} " for h, w in zip(header, widths, strict=True))
    body = "".join(
        "|" + "|".join(f" {cell.rjust(w)} " for cell, w in zip(row, widths, strict=True)) + "|\n"
        for row in rows
    )
    return border + head + "|\n" + border + body + border


def _header_fields(h: pb.ResponseHeader) -> list[str]:
    return [
        f'"ClusterID" : {h.cluster_id}',
        f'"MemberID" : {h.member_id}',
        f'"Revision" : {h.revision}',
        f'"RaftTerm" : {h.raft_term}',
    ]


def fields_members(reply: pb.MemberListResponse) -> str:
    """``member list -w fields``: the header, then each member followed by a blank line."""
    lines = _header_fields(reply.header)
    for m in reply.members:
        lines += [f'"ID" : {m.id}', f'"Name" : {go_quote(m.name)}']
        lines += [f'"PeerURL" : {go_quote(u)}' for u in m.peer_ur_ls]
        lines += [f'"ClientURL" : {go_quote(u)}' for u in m.client_ur_ls]
        lines += [f'"IsLearner" : {_bool(m.is_learner)}', ""]
    return "\n".join(lines) + "\n"


def fields_status(endpoint: str, s: pb.StatusResponse) -> str:
    """One endpoint of ``endpoint status -w fields`` (transcript 02), blank line included."""
    lines = _header_fields(s.header) + [
        f'"Version" : {go_quote(s.version)}',
        f'"DBSize" : {s.db_size}',
        f'"Leader" : {s.leader}',
        f'"IsLearner" : {_bool(s.is_learner)}',
        f'"RaftIndex" : {s.raft_index}',
        f'"RaftTerm" : {s.raft_term}',
        f'"RaftAppliedIndex" : {s.raft_applied_index}',
        f'"Errors" : [{" ".join(s.errors)}]',
        f'"Endpoint" : {go_quote(endpoint)}',
        "",
    ]
    return "\n".join(lines) + "\n"


def changed(verb: str, member_id: int, cluster_id: int) -> str:
    """``Member <id> removed from cluster <id>``: Go's ``%16x`` pads with spaces (spec §10.2)."""
    return f"Member {member_id:16x} {verb} cluster {cluster_id:16x}\n"


def member_added(reply: pb.MemberAddResponse, name: str, typed_peer_urls: str) -> str:
    """``member add``'s simple output with the ETCD_* lines a new member starts from (§5.3):
    every member's peer URLs in reply order, the new one under the given name, any other
    unstarted member with an empty name."""
    new_id = reply.member.id
    initial = ",".join(
        f"{name if m.id == new_id else m.name}={url}" for m in reply.members for url in m.peer_ur_ls
    )
    return (
        changed("added to", new_id, reply.header.cluster_id)
        + "\n"
        + f"ETCD_NAME={go_quote(name)}\n"
        + f"ETCD_INITIAL_CLUSTER={go_quote(initial)}\n"
        + f"ETCD_INITIAL_ADVERTISE_PEER_URLS={go_quote(typed_peer_urls)}\n"
        + 'ETCD_INITIAL_CLUSTER_STATE="existing"\n'
    )


def go_quote(text: str) -> str:
    """Go's ``%q`` for the printable text etcd deals in (a JSON string literal)."""
    return json.dumps(text, ensure_ascii=False)


def si_bytes(size: int) -> str:
    """go-humanize's ``Bytes``: SI units, 3 significant digits at most (``20 kB``, ``1.5 MB``)."""
    if size < 10:
        return f"{size} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    value, unit = float(size), 0
    while value >= 1000 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    text = f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    return f"{text} {units[unit]}"


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String`` (``4.42037ms``, ``1.5s``, ``2m3.5s``)."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    minutes, rem = divmod(ns, 60 * 1_000_000_000)
    hours, minutes = divmod(minutes, 60)
    text = _decimal(rem, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}." + f"{frac:0{digits}d}".rstrip("0")
