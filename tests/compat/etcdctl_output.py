"""A model of what etcdctl 3.4 prints, checked against the recorded transcripts.

Member IDs, names and ports differ between our runs and the transcripts, so the compatibility
tests cannot compare text byte for byte. Instead, each printer below renders a reply (etcdctl's
own ``-w json`` output) the way etcdctl does, and is first checked to reproduce the transcript
**exactly** from the transcript's own JSON (`test_the_model_reproduces_the_transcripts`). The tests
then require our etcdctl output to equal the model's rendering of our own reply: same columns,
alignment, separators, key names, hex formatting and line order as the transcripts.

The transcript excerpts here are copied verbatim from ``spec/transcripts/`` (file named at each).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

Reply = Mapping[str, Any]

# ---- printers ------------------------------------------------------------------------------------


def member_row(m: Mapping[str, Any]) -> list[str]:
    name = m.get("name", "")
    return [
        f"{m['ID']:x}",
        "started" if name else "unstarted",
        name,
        ",".join(m.get("peerURLs", [])),
        ",".join(m.get("clientURLs", [])),
        "true" if m.get("isLearner", False) else "false",
    ]


MEMBER_HEADER = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]


def simple_list(reply: Reply) -> str:
    """``member list``: one comma-separated line per member, in reply order."""
    return "".join(", ".join(member_row(m)) + "\n" for m in reply["members"])


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """olekukonko/tablewriter as etcdctl configures it: centred header, right-aligned cells."""
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
    border = "+" + "+".join("-" * (w + 2) for w in widths) + "+\n"

    def centre(text: str, width: int) -> str:
        gap = width - len(text)
        return " " * (gap // 2) + text + " " * (gap - gap // 2)

    head = "|" + "|".join(f" {centre(h, w)} " for h, w in zip(header, widths, strict=True)) + "|\n"
    body = "".join(
        "|" + "|".join(f" {c.rjust(w)} " for c, w in zip(row, widths, strict=True)) + "|\n"
        for row in rows
    )
    return border + head + border + body + border


def table_list(reply: Reply) -> str:
    """``member list -w table``."""
    return table(MEMBER_HEADER, [member_row(m) for m in reply["members"]])


def fields_list(reply: Reply) -> str:
    """``member list -w fields``: the header, then each member and a blank line."""
    header = reply["header"]
    out = [
        f'"ClusterID" : {header.get("cluster_id", 0)}',
        f'"MemberID" : {header.get("member_id", 0)}',
        f'"Revision" : {header.get("revision", 0)}',
        f'"RaftTerm" : {header.get("raft_term", 0)}',
    ]
    for m in reply["members"]:
        out.append(f'"ID" : {m["ID"]}')
        out.append(f'"Name" : {json.dumps(m.get("name", ""))}')
        out += [f'"PeerURL" : {json.dumps(u)}' for u in m.get("peerURLs", [])]
        out += [f'"ClientURL" : {json.dumps(u)}' for u in m.get("clientURLs", [])]
        out.append(f'"IsLearner" : {"true" if m.get("isLearner", False) else "false"}')
        out.append("")
    return "\n".join(out) + "\n"


def changed(verb: str, member_id: int, cluster_id: int) -> str:
    """The first line of add/remove/update/promote: both IDs as Go's ``%16x`` (space-padded)."""
    return f"Member {member_id:16x} {verb} cluster {cluster_id:16x}\n"


def member_added(reply: Reply, name: str, typed_peer_urls: str) -> str:
    """``member add`` (simple output): the first line and the ETCD_* lines (spec §5.3)."""
    new_id = reply["member"]["ID"]
    pieces = []
    for m in reply["members"]:
        member_name = name if m["ID"] == new_id else m.get("name", "")
        pieces += [f"{member_name}={u}" for u in m.get("peerURLs", [])]
    return (
        changed("added to", new_id, reply["header"]["cluster_id"])
        + "\n"
        + f'ETCD_NAME="{name}"\n'
        + f'ETCD_INITIAL_CLUSTER="{",".join(pieces)}"\n'
        + f'ETCD_INITIAL_ADVERTISE_PEER_URLS="{typed_peer_urls}"\n'
        + 'ETCD_INITIAL_CLUSTER_STATE="existing"\n'
    )


def etcd_env(added_output: str) -> dict[str, str]:
    """The ETCD_* variables of ``member add`` output, as a shell would set them."""
    env = {}
    for line in added_output.splitlines():
        if line.startswith("ETCD_"):
            key, _, value = line.partition("=")
            env[key] = json.loads(value)
    return env


STATUS_HEADER = [
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
]


def si_bytes(size: int) -> str:
    """go-humanize's ``Bytes`` (SI units), as etcdctl prints DB SIZE."""
    if size < 10:
        return f"{size} B"
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    value, unit = float(size), 0
    while value >= 1000 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    text = f"{value:.0f}" if value >= 10 else f"{value:.1f}"
    return f"{text} {units[unit]}"


def status_row(entry: Mapping[str, Any]) -> list[str]:
    status = entry["Status"]
    header = status["header"]
    return [
        entry["Endpoint"],
        f"{header['member_id']:x}",
        status["version"],
        si_bytes(status.get("dbSize", 0)),
        "true" if header["member_id"] == status.get("leader", 0) else "false",
        "true" if status.get("isLearner", False) else "false",
        str(status.get("raftTerm", 0)),
        str(status.get("raftIndex", 0)),
        str(status.get("raftAppliedIndex", 0)),
        ", ".join(status.get("errors", [])),
    ]


def table_status(entries: Sequence[Mapping[str, Any]]) -> str:
    """``endpoint status -w table``."""
    return table(STATUS_HEADER, [status_row(e) for e in entries])


def skeleton(value: Any) -> Any:
    """The shape of a JSON value: key names in order, value types, list element shapes."""
    if isinstance(value, dict):
        return [(k, skeleton(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [skeleton(v) for v in value]
    return type(value).__name__


def hexdump_bytes(xxd: str) -> bytes:
    """The bytes of an ``xxd`` dump."""
    out = bytearray()
    for line in xxd.strip().splitlines():
        hex_part = line.split(":", 1)[1][:40]
        out += bytes.fromhex(hex_part.replace(" ", ""))
    return bytes(out)


# ---- transcript excerpts (verbatim) --------------------------------------------------------------

#: 01-member-list.txt
T01_SIMPLE = """\
91bc3c398fb3c146, started, infra2, http://127.0.0.1:22380, http://127.0.0.1:22379, false
bf9071f4639c75cc, started, infra1, http://127.0.0.1:2380, http://127.0.0.1:2379, false
fd422379fda50e48, started, infra3, http://127.0.0.1:32380, http://127.0.0.1:32379, false
"""

T01_TABLE = """\
+------------------+---------+--------+------------------------+------------------------+------------+
|        ID        | STATUS  |  NAME  |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |
+------------------+---------+--------+------------------------+------------------------+------------+
| 91bc3c398fb3c146 | started | infra2 | http://127.0.0.1:22380 | http://127.0.0.1:22379 |      false |
| bf9071f4639c75cc | started | infra1 |  http://127.0.0.1:2380 |  http://127.0.0.1:2379 |      false |
| fd422379fda50e48 | started | infra3 | http://127.0.0.1:32380 | http://127.0.0.1:32379 |      false |
+------------------+---------+--------+------------------------+------------------------+------------+
"""  # noqa: E501

T01_JSON = (
    '{"header":{"cluster_id":403640855964645870,"member_id":13803658152347727308,"raft_term":2},'
    '"members":[{"ID":10501334649042878790,"name":"infra2","peerURLs":["http://127.0.0.1:22380"],'
    '"clientURLs":["http://127.0.0.1:22379"]},{"ID":13803658152347727308,"name":"infra1",'
    '"peerURLs":["http://127.0.0.1:2380"],"clientURLs":["http://127.0.0.1:2379"]},'
    '{"ID":18249187646912138824,"name":"infra3","peerURLs":["http://127.0.0.1:32380"],'
    '"clientURLs":["http://127.0.0.1:32379"]}]}\n'
)

T01_FIELDS = """\
"ClusterID" : 403640855964645870
"MemberID" : 13803658152347727308
"Revision" : 0
"RaftTerm" : 2
"ID" : 10501334649042878790
"Name" : "infra2"
"PeerURL" : "http://127.0.0.1:22380"
"ClientURL" : "http://127.0.0.1:22379"
"IsLearner" : false

"ID" : 13803658152347727308
"Name" : "infra1"
"PeerURL" : "http://127.0.0.1:2380"
"ClientURL" : "http://127.0.0.1:2379"
"IsLearner" : false

"ID" : 18249187646912138824
"Name" : "infra3"
"PeerURL" : "http://127.0.0.1:32380"
"ClientURL" : "http://127.0.0.1:32379"
"IsLearner" : false

"""

T01_PROTOBUF_XXD = """\
00000000: 0a17 08ee f3ed e484 a781 cd05 10cc ebf1  ................
00000010: 9cc6 be9c c8bf 0120 0212 4308 c682 cffd  ....... ..C.....
00000020: 9887 8fde 9101 1206 696e 6672 6132 1a16  ........infra2..
00000030: 6874 7470 3a2f 2f31 3237 2e30 2e30 2e31  http://127.0.0.1
00000040: 3a32 3233 3830 2216 6874 7470 3a2f 2f31  :22380".http://1
00000050: 3237 2e30 2e30 2e31 3a32 3233 3739 1241  27.0.0.1:22379.A
00000060: 08cc ebf1 9cc6 be9c c8bf 0112 0669 6e66  .............inf
00000070: 7261 311a 1568 7474 703a 2f2f 3132 372e  ra1..http://127.
00000080: 302e 302e 313a 3233 3830 2215 6874 7470  0.0.1:2380".http
00000090: 3a2f 2f31 3237 2e30 2e30 2e31 3a32 3337  ://127.0.0.1:237
000000a0: 3912 4308 c89c 94ed 9fef 88a1 fd01 1206  9.C.............
000000b0: 696e 6672 6133 1a16 6874 7470 3a2f 2f31  infra3..http://1
000000c0: 3237 2e30 2e30 2e31 3a33 3233 3830 2216  27.0.0.1:32380".
000000d0: 6874 7470 3a2f 2f31 3237 2e30 2e30 2e31  http://127.0.0.1
000000e0: 3a33 3233 3739                           :32379
"""

#: 04-add-learner.txt
T04_ADDED = """\
Member 6d1915374d342841 added to cluster  59a05384c9b79ee

ETCD_NAME="infra4"
ETCD_INITIAL_CLUSTER="infra4=http://127.0.0.1:42380,infra2=http://127.0.0.1:22380,\
infra1=http://127.0.0.1:2380,infra3=http://127.0.0.1:32380"
ETCD_INITIAL_ADVERTISE_PEER_URLS="http://127.0.0.1:42380"
ETCD_INITIAL_CLUSTER_STATE="existing"
"""

T04_SIMPLE = """\
6d1915374d342841, unstarted, , http://127.0.0.1:42380, , true
91bc3c398fb3c146, started, infra2, http://127.0.0.1:22380, http://127.0.0.1:22379, false
bf9071f4639c75cc, started, infra1, http://127.0.0.1:2380, http://127.0.0.1:2379, false
fd422379fda50e48, started, infra3, http://127.0.0.1:32380, http://127.0.0.1:32379, false
"""

T04_TABLE = """\
+------------------+-----------+--------+------------------------+------------------------+------------+
|        ID        |  STATUS   |  NAME  |       PEER ADDRS       |      CLIENT ADDRS      | IS LEARNER |
+------------------+-----------+--------+------------------------+------------------------+------------+
| 6d1915374d342841 | unstarted |        | http://127.0.0.1:42380 |                        |       true |
| 91bc3c398fb3c146 |   started | infra2 | http://127.0.0.1:22380 | http://127.0.0.1:22379 |      false |
| bf9071f4639c75cc |   started | infra1 |  http://127.0.0.1:2380 |  http://127.0.0.1:2379 |      false |
| fd422379fda50e48 |   started | infra3 | http://127.0.0.1:32380 | http://127.0.0.1:32379 |      false |
+------------------+-----------+--------+------------------------+------------------------+------------+
"""  # noqa: E501

T04_JSON = (
    '{"header":{"cluster_id":403640855964645870,"member_id":13803658152347727308,"raft_term":2},'
    '"members":[{"ID":7861337951814559809,"peerURLs":["http://127.0.0.1:42380"],"isLearner":true},'
    '{"ID":10501334649042878790,"name":"infra2","peerURLs":["http://127.0.0.1:22380"],'
    '"clientURLs":["http://127.0.0.1:22379"]},{"ID":13803658152347727308,"name":"infra1",'
    '"peerURLs":["http://127.0.0.1:2380"],"clientURLs":["http://127.0.0.1:2379"]},'
    '{"ID":18249187646912138824,"name":"infra3","peerURLs":["http://127.0.0.1:32380"],'
    '"clientURLs":["http://127.0.0.1:32379"]}]}\n'
)

T04_FIELDS = """\
"ClusterID" : 403640855964645870
"MemberID" : 13803658152347727308
"Revision" : 0
"RaftTerm" : 2
"ID" : 7861337951814559809
"Name" : ""
"PeerURL" : "http://127.0.0.1:42380"
"IsLearner" : true

"ID" : 10501334649042878790
"Name" : "infra2"
"PeerURL" : "http://127.0.0.1:22380"
"ClientURL" : "http://127.0.0.1:22379"
"IsLearner" : false

"ID" : 13803658152347727308
"Name" : "infra1"
"PeerURL" : "http://127.0.0.1:2380"
"ClientURL" : "http://127.0.0.1:2379"
"IsLearner" : false

"ID" : 18249187646912138824
"Name" : "infra3"
"PeerURL" : "http://127.0.0.1:32380"
"ClientURL" : "http://127.0.0.1:32379"
"IsLearner" : false

"""

#: 20-voter-add-and-unstarted-in-initial-cluster.txt: an add while a learner is unstarted names
#: it "=url" in ETCD_INITIAL_CLUSTER (reply reconstructed from the list that follows it).
T20_ADDED = """\
Member 36e81d12992e6633 added to cluster  59a05384c9b79ee

ETCD_NAME="v6"
ETCD_INITIAL_CLUSTER="v6=http://127.0.0.1:62380,infra2=http://127.0.0.1:22380,\
=http://127.0.0.1:52380,infra1=http://127.0.0.1:2380,infra3=http://127.0.0.1:32380"
ETCD_INITIAL_ADVERTISE_PEER_URLS="http://127.0.0.1:62380"
ETCD_INITIAL_CLUSTER_STATE="existing"
"""

T20_REPLY = {
    "header": {"cluster_id": 0x59A05384C9B79EE, "member_id": 0xBF9071F4639C75CC, "raft_term": 2},
    "member": {"ID": 0x36E81D12992E6633, "peerURLs": ["http://127.0.0.1:62380"]},
    "members": [
        {"ID": 0x36E81D12992E6633, "peerURLs": ["http://127.0.0.1:62380"]},
        {"ID": 0x91BC3C398FB3C146, "name": "infra2", "peerURLs": ["http://127.0.0.1:22380"]},
        {"ID": 0xA22EAAFD3863F6BD, "peerURLs": ["http://127.0.0.1:52380"], "isLearner": True},
        {"ID": 0xBF9071F4639C75CC, "name": "infra1", "peerURLs": ["http://127.0.0.1:2380"]},
        {"ID": 0xFD422379FDA50E48, "name": "infra3", "peerURLs": ["http://127.0.0.1:32380"]},
    ],
}

#: 10-update-ok.txt and 11-remove-and-removed-id.txt
T10_UPDATED = "Member 3e6a519c54fd7afc updated in cluster  59a05384c9b79ee\n"
T11_REMOVED = "Member 3e6a519c54fd7afc removed from cluster  59a05384c9b79ee\n"
#: 22-etcdctl-promote-success.txt
T22_PROMOTED = "Member 4b5695f5adc559f2 promoted in cluster  59a05384c9b79ee\n"

#: 02-endpoint.txt
T02_STATUS_JSON = (
    '[{"Endpoint":"127.0.0.1:2379","Status":{"header":{"cluster_id":403640855964645870,'
    '"member_id":13803658152347727308,"revision":1,"raft_term":2},"version":"3.4.23",'
    '"dbSize":20480,"leader":18249187646912138824,"raftIndex":11,"raftTerm":2,'
    '"raftAppliedIndex":11,"dbSizeInUse":16384}},{"Endpoint":"127.0.0.1:22379","Status":'
    '{"header":{"cluster_id":403640855964645870,"member_id":10501334649042878790,"revision":1,'
    '"raft_term":2},"version":"3.4.23","dbSize":20480,"leader":18249187646912138824,'
    '"raftIndex":11,"raftTerm":2,"raftAppliedIndex":11,"dbSizeInUse":16384}},'
    '{"Endpoint":"127.0.0.1:32379","Status":{"header":{"cluster_id":403640855964645870,'
    '"member_id":18249187646912138824,"revision":1,"raft_term":2},"version":"3.4.23",'
    '"dbSize":20480,"leader":18249187646912138824,"raftIndex":11,"raftTerm":2,'
    '"raftAppliedIndex":11,"dbSizeInUse":16384}}]\n'
)
T02_STATUS_TABLE = """\
+-----------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
|    ENDPOINT     |        ID        | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |
+-----------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
|  127.0.0.1:2379 | bf9071f4639c75cc |  3.4.23 |   20 kB |     false |      false |         2 |         11 |                 11 |        |
| 127.0.0.1:22379 | 91bc3c398fb3c146 |  3.4.23 |   20 kB |     false |      false |         2 |         11 |                 11 |        |
| 127.0.0.1:32379 | fd422379fda50e48 |  3.4.23 |   20 kB |      true |      false |         2 |         11 |                 11 |        |
+-----------------+------------------+---------+---------+-----------+------------+-----------+------------+--------------------+--------+
"""  # noqa: E501
