"""What raftnode writes into its Raft log, besides Raft's own empty entries.

* A conf-change entry's context carries a ``ChangeRequest``: the membership change and the id of
  the request waiting for it, so the proposing node can answer that request at apply time.
* A normal entry carries a ``PublishRequest``: a member announcing its name and client URLs
  (spec §5.1).

The bytes are ``node.codec``'s business; these are the values.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.membership import MembershipChange


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    request_id: int
    change: MembershipChange


@dataclass(frozen=True, slots=True)
class PublishRequest:
    request_id: int
    member_id: int
    name: str
    client_urls: tuple[str, ...]
