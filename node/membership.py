"""The applied membership of a cluster and every rule that changes it (spec §3.3–§3.5, §5.1).

All of it is pure: values in, values (or a domain error) out, so one table test covers the rules
(P11) and every node, applying the same committed changes to the same membership, reaches the
same result.

- `Member`, `Membership`: frozen values. The membership is what MemberList answers (sorted by ID,
  learners and unstarted members included) plus the set of removed IDs, which is never shrunk so
  that a removed ID can never come back (spec §3.3).
- `next_membership`: applies one *committed* change with etcd's apply-time checks, in the order of
  spec §3.5 step 4. A rejected change raises and leaves the membership untouched; the driver then
  leaves raft's configuration untouched too. It is at least as strict as
  `raft.apply_conf_change`, so the two can never disagree.
- `apply_publish`: a member announcing its name and client URLs (spec §5.1).
- `check_add`, `check_remove`, `check_promote_started`: the strict reconfiguration checks (§3.4),
  run pre-raft on the receiving node's own view. The caller measures connectivity and passes it
  in, so the rules stay free of clocks and transports.
- `learner_ready`: the 90 % replication rule for promotion (§3.10).
- `build_initial_membership`: the founding membership from ``--initial-cluster``.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from node.domain_errors import (
    MemberExists,
    MemberNotFound,
    MemberNotLearner,
    NotEnoughStarted,
    PeerURLExists,
    TooManyLearners,
    Unhealthy,
)
from node.ids import bootstrap_member_id, check_id, cluster_id
from node.urls import normalize_urls
from raft import ConfChange, ConfChangeType, ConfState, NodeId

__all__ = [
    "LEARNER_READY_RATIO",
    "RAFT_CHANGE_TYPES",
    "ChangeKind",
    "InvariantViolation",
    "Member",
    "Membership",
    "MembershipChange",
    "apply_publish",
    "build_initial_membership",
    "check_add",
    "check_invariants",
    "check_promote_started",
    "check_remove",
    "learner_ready",
    "next_membership",
]

log = logging.getLogger(__name__)

#: A learner may be promoted once its Match is at least this share of the leader's (§3.10).
LEARNER_READY_RATIO = 0.9


class InvariantViolation(Exception):
    """A membership broke one of its invariants: always a bug, never a client's mistake."""


# ---- Values ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Member:
    """One member as MemberList shows it. ``name == ""`` means it has not published yet."""

    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    def __post_init__(self) -> None:
        check_id(self.id)
        for field_name in ("peer_urls", "client_urls"):
            value = getattr(self, field_name)
            if not isinstance(value, tuple) or not all(isinstance(u, str) for u in value):
                raise TypeError(f"Member.{field_name} must be a tuple of str, got {value!r}")

    @property
    def started(self) -> bool:
        """Published a name (spec §3.4). A published member that later stopped still counts."""
        return self.name != ""


@dataclass(frozen=True, slots=True)
class Membership:
    """The applied membership: members sorted by ID, and every ID ever removed.

    ``members`` is sorted on construction, so equal memberships compare (and hash) equal, which
    lets the services cache encoded replies keyed by the membership itself.
    """

    cluster_id: int
    members: tuple[Member, ...] = ()
    removed: frozenset[int] = frozenset()
    max_learners: int = 1

    def __post_init__(self) -> None:
        check_id(self.cluster_id)
        if not isinstance(self.members, tuple) or not isinstance(self.removed, frozenset):
            raise TypeError("Membership.members must be a tuple and removed a frozenset")
        if self.max_learners < 0:
            raise ValueError(f"max_learners must not be negative, got {self.max_learners}")
        object.__setattr__(self, "members", tuple(sorted(self.members, key=lambda m: m.id)))

    def get(self, member_id: int) -> Member | None:
        """The member with `member_id`, or None (unknown, 0, or removed)."""
        for member in self.members:
            if member.id == member_id:
                return member
        return None

    def ids(self) -> tuple[int, ...]:
        return tuple(m.id for m in self.members)

    def voters(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if not m.is_learner)

    def learners(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.is_learner)

    def voter_ids(self) -> frozenset[int]:
        return frozenset(m.id for m in self.members if not m.is_learner)

    def learner_ids(self) -> frozenset[int]:
        return frozenset(m.id for m in self.members if m.is_learner)

    def is_removed(self, member_id: int) -> bool:
        return member_id in self.removed

    def started(self, member_id: int) -> bool:
        """Whether `member_id` is a member that has published its name."""
        member = self.get(member_id)
        return member is not None and member.started

    def conf_state(self) -> ConfState:
        """Raft's view of this membership: who votes and who only learns."""
        return ConfState(
            voters=frozenset(NodeId(i) for i in self.voter_ids()),
            learners=frozenset(NodeId(i) for i in self.learner_ids()),
        )

    def peer_urls_in_use(self, *, excluding: int | None = None) -> frozenset[str]:
        """Every peer URL of every member (voters and learners), except those of `excluding`."""
        return frozenset(u for m in self.members if m.id != excluding for u in m.peer_urls)

    def find_by_peer_urls(self, peer_urls: Iterable[str]) -> Member | None:
        """The member whose sorted peer URLs equal `peer_urls` sorted (join flow, spec §5.3)."""
        wanted = tuple(sorted(peer_urls))
        for member in self.members:
            if tuple(sorted(member.peer_urls)) == wanted:
                return member
        return None

    def with_member(self, member: Member) -> Membership:
        """This membership with `member` added, or replacing the member of the same ID."""
        others = tuple(m for m in self.members if m.id != member.id)
        return replace(self, members=(*others, member))

    def without_member(self, member_id: int) -> Membership:
        """This membership with `member_id` gone for good: it joins the removed set."""
        others = tuple(m for m in self.members if m.id != member_id)
        return replace(self, members=others, removed=self.removed | {member_id})


def check_invariants(membership: Membership) -> None:
    """Raise InvariantViolation unless `membership` is well formed (P11).

    IDs are valid and unique, members sorted by ID, no member is also removed, at least one voter
    exists (voters and learners are disjoint by construction: one flag per member), every member
    has a peer URL, and no two members share one. The learner cap is not an invariant: it is
    checked when a learner is added, and may be lowered on a later restart.
    """
    ids = membership.ids()
    if len(set(ids)) != len(ids):
        raise InvariantViolation(f"duplicate member IDs in {sorted(ids)}")
    if list(ids) != sorted(ids):
        raise InvariantViolation("members are not sorted by ID")
    for removed_id in membership.removed:
        try:
            check_id(removed_id)
        except ValueError as err:
            raise InvariantViolation(f"bad removed ID: {err}") from None
    if set(ids) & membership.removed:
        clash = sorted(set(ids) & membership.removed)
        raise InvariantViolation(f"removed IDs are still members: {[f'{i:x}' for i in clash]}")
    if not membership.voters():
        raise InvariantViolation("a membership needs at least one voter")
    seen: dict[str, int] = {}
    for member in membership.members:
        if not member.peer_urls:
            raise InvariantViolation(f"member {member.id:x} has no peer URL")
        for url in set(member.peer_urls):
            if url in seen:
                raise InvariantViolation(
                    f"members {seen[url]:x} and {member.id:x} share the peer URL {url}"
                )
            seen[url] = member.id


# ---- Changes --------------------------------------------------------------------------------


class ChangeKind(enum.Enum):
    ADD_VOTER = "add-voter"
    ADD_LEARNER = "add-learner"
    REMOVE = "remove"
    UPDATE = "update"
    PROMOTE = "promote"


#: How each membership change is told to raft.
RAFT_CHANGE_TYPES: Mapping[ChangeKind, ConfChangeType] = MappingProxyType(
    {
        ChangeKind.ADD_VOTER: ConfChangeType.ADD_VOTER,
        ChangeKind.ADD_LEARNER: ConfChangeType.ADD_LEARNER,
        ChangeKind.REMOVE: ConfChangeType.REMOVE,
        ChangeKind.UPDATE: ConfChangeType.UPDATE,
        ChangeKind.PROMOTE: ConfChangeType.PROMOTE,
    }
)

_ADDS = frozenset({ChangeKind.ADD_VOTER, ChangeKind.ADD_LEARNER})
_WITH_URLS = _ADDS | {ChangeKind.UPDATE}


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """One membership change as it travels through the log.

    `peer_urls` are normalised (`node.urls`) by whoever builds the change, pre-raft; adds and
    updates carry them, removes and promotes carry none. `member_id` may be 0 for a remove,
    update or promote (a client may ask; it fails at apply as MemberNotFound), never for an add.
    """

    kind: ChangeKind
    member_id: int
    peer_urls: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.member_id, bool) or not 0 <= self.member_id < 2**64:
            raise ValueError(f"member ID out of range: {self.member_id}")
        if self.kind in _ADDS and self.member_id == 0:
            raise ValueError("an added member needs a non-zero ID")
        if not isinstance(self.peer_urls, tuple):
            raise TypeError(f"peer_urls must be a tuple, got {self.peer_urls!r}")
        if (self.kind in _WITH_URLS) != bool(self.peer_urls):
            need = "needs" if self.kind in _WITH_URLS else "takes no"
            raise ValueError(f"a {self.kind.value} change {need} peer URLs")

    @property
    def raft_type(self) -> ConfChangeType:
        return RAFT_CHANGE_TYPES[self.kind]

    def to_conf_change(self, context: bytes = b"") -> ConfChange:
        """The raft ConfChange for this change (ValueError for ID 0, which raft cannot carry)."""
        return ConfChange(type=self.raft_type, node_id=NodeId(self.member_id), context=context)


def next_membership(current: Membership, change: MembershipChange) -> Membership:
    """The membership after applying the committed `change`, or a domain error.

    Checks run in the order of spec §3.5 step 4 (etcd's ``ValidateConfigurationChange``):

    ==========  =========================================================  ==================
    change      check                                                      error
    ==========  =========================================================  ==================
    any         the ID was removed before                                  MemberNotFound
    add         the ID is already a member                                 MemberExists
    add         a new URL equals any member's URL                          PeerURLExists
    add learner learners + 1 > max_learners                                TooManyLearners
    promote     the ID is unknown / not a learner                          MemberNotFound /
                                                                           MemberNotLearner
    remove      the ID is unknown (0 included)                             MemberNotFound
    remove      it is the last voter (raft would refuse; etcd would panic) NotEnoughStarted
    update      the ID is unknown / a URL equals another member's URL      MemberNotFound /
                                                                           PeerURLExists
    ==========  =========================================================  ==================

    An update changes only the peer URLs: name, client URLs and the learner flag stay (D2).
    """
    if change.member_id in current.removed:
        raise MemberNotFound(f"member {change.member_id:x} was removed")
    result = _APPLY[change.kind](current, change)
    check_invariants(result)
    return result


def _apply_add(current: Membership, change: MembershipChange) -> Membership:
    if current.get(change.member_id) is not None:
        raise MemberExists(f"member {change.member_id:x} already exists")
    clash = current.peer_urls_in_use() & set(change.peer_urls)
    if clash:
        raise PeerURLExists(f"peer URLs in use: {sorted(clash)}")
    is_learner = change.kind is ChangeKind.ADD_LEARNER
    if is_learner and len(current.learners()) + 1 > current.max_learners:
        raise TooManyLearners(f"max learners is {current.max_learners}")
    member = Member(id=change.member_id, peer_urls=change.peer_urls, is_learner=is_learner)
    return current.with_member(member)


def _apply_promote(current: Membership, change: MembershipChange) -> Membership:
    member = _known(current, change.member_id)
    if not member.is_learner:
        raise MemberNotLearner(f"member {member.id:x} is already a voter")
    return current.with_member(replace(member, is_learner=False))


def _apply_remove(current: Membership, change: MembershipChange) -> Membership:
    member = _known(current, change.member_id)
    if current.voter_ids() == {member.id}:
        raise NotEnoughStarted(f"member {member.id:x} is the last voter")
    return current.without_member(member.id)


def _apply_update(current: Membership, change: MembershipChange) -> Membership:
    member = _known(current, change.member_id)
    clash = current.peer_urls_in_use(excluding=member.id) & set(change.peer_urls)
    if clash:
        raise PeerURLExists(f"peer URLs in use by another member: {sorted(clash)}")
    return current.with_member(replace(member, peer_urls=change.peer_urls))


def _known(current: Membership, member_id: int) -> Member:
    member = current.get(member_id)
    if member is None:
        raise MemberNotFound(f"member {member_id:x} is not a member")
    return member


_APPLY: Mapping[ChangeKind, Callable[[Membership, MembershipChange], Membership]] = (
    MappingProxyType(
        {
            ChangeKind.ADD_VOTER: _apply_add,
            ChangeKind.ADD_LEARNER: _apply_add,
            ChangeKind.PROMOTE: _apply_promote,
            ChangeKind.REMOVE: _apply_remove,
            ChangeKind.UPDATE: _apply_update,
        }
    )
)


def apply_publish(
    current: Membership, member_id: int, name: str, client_urls: Sequence[str]
) -> Membership:
    """The membership after `member_id` published its name and client URLs (spec §5.1).

    Only these two fields change, and only through publish. A publish for a removed ID is
    ignored; for an unknown ID it is logged and ignored (etcd panics). Ignoring returns
    `current` itself.
    """
    if member_id in current.removed:
        log.info("ignoring a publish from removed member %x", member_id)
        return current
    member = current.get(member_id)
    if member is None:
        log.warning("ignoring a publish from unknown member %x", member_id)
        return current
    updated = replace(member, name=name, client_urls=tuple(client_urls))
    if updated == member:
        return current
    return current.with_member(updated)


# ---- Strict reconfiguration checks (spec §3.4), all pre-raft --------------------------------


def _quorum(n: int) -> int:
    return n // 2 + 1


def _connected_voters(membership: Membership, self_id: int, connected: Collection[int]) -> int:
    """Voters this node counts as connected: itself (if a voter) and the voters in `connected`.

    A learner never counts, whatever `connected` says."""
    return sum(1 for v in membership.voter_ids() if v == self_id or v in connected)


def check_add(
    membership: Membership, is_learner: bool, self_id: int, connected: Collection[int]
) -> None:
    """Refuse an add that could break the active quorum.

    `connected` holds the peers this node's transport has reached continuously for at least
    HealthInterval; this node always counts.

    - voter add, started: n = voters + 1, s = started voters; pass if s = 1 and n = 2 (growing a
      one-member cluster), else need s >= n//2 + 1, or NotEnoughStarted;
    - voter add, connectivity (etcd 3.5.30+): with one voter pass, else the connected voters must
      be a quorum of the voters *after* the add, the new member counting as down, or Unhealthy;
    - learner add, connectivity (D8): a learner never changes the quorum, so a quorum of the
      current voters is enough, or Unhealthy.
    """
    voters = membership.voters()
    connected_count = _connected_voters(membership, self_id, connected)
    if is_learner:
        if connected_count < _quorum(len(voters)):
            raise Unhealthy(f"{connected_count} of {len(voters)} voters connected")
        return
    n = len(voters) + 1
    started = sum(1 for v in voters if v.started)
    if not (started == 1 and n == 2) and started < _quorum(n):
        raise NotEnoughStarted(f"{started} of {n} voters would be started")
    if len(voters) > 1 and connected_count < _quorum(len(voters) + 1):
        raise Unhealthy(f"{connected_count} of {len(voters)} voters connected")


def check_remove(
    membership: Membership,
    target_id: int,
    self_id: int,
    connected: Collection[int],
    target_active: bool,
) -> None:
    """Refuse a voter removal that could break the active quorum (etcd's ``mayRemoveMember``).

    - a learner: no check;
    - started: among the voters other than the target, s >= n//2 + 1, or NotEnoughStarted (an
      unknown target is "no voter", so all voters count);
    - connectivity: a target other than this node with no active connection (`target_active`
      False: down, or unknown) is not part of the active quorum, so pass; otherwise the connected
      voters minus the target must still be a quorum of the rest: a - 1 >= 1 + (|V| - 1)//2,
      or Unhealthy.
    """
    target = membership.get(target_id)
    if target is not None and target.is_learner:
        return
    others = [v for v in membership.voters() if v.id != target_id]
    started = sum(1 for v in others if v.started)
    if started < _quorum(len(others)):
        raise NotEnoughStarted(f"{started} of {len(others)} remaining voters started")
    if target_id != self_id and not target_active:
        return
    voter_count = len(membership.voters())
    active = _connected_voters(membership, self_id, connected)
    if active - 1 < 1 + (voter_count - 1) // 2:
        raise Unhealthy(f"{active} of {voter_count} voters connected")


def check_promote_started(membership: Membership, learner_id: int) -> None:
    """Refuse a promotion that leaves too few started voters (etcd's ``IsReadyToPromoteMember``).

    n = voters + 1 and s = started voters + 1 (the learner counts as started, having caught
    up); need s >= n//2 + 1, or NotEnoughStarted. Runs after `learner_ready` (spec §3.10).
    """
    del learner_id  # the rule counts the learner without looking at it, as etcd does
    voters = membership.voters()
    n = len(voters) + 1
    started = sum(1 for v in voters if v.started) + 1
    if started < _quorum(n):
        raise NotEnoughStarted(f"{started} of {n} voters would be started")


def learner_ready(learner_match: int, leader_match: int) -> bool:
    """Whether a learner's raft Match is at least 90 % of the leader's own (spec §3.10).

    Computed in floating point exactly as etcd does (``float64(m) < float64(l) * 0.9``), so the
    boundary falls where etcd's does.
    """
    return not float(learner_match) < float(leader_match) * LEARNER_READY_RATIO


# ---- Bootstrap ------------------------------------------------------------------------------


def build_initial_membership(
    initial_cluster: Sequence[tuple[str, Sequence[str]]], token: str, max_learners: int = 1
) -> Membership:
    """The founding membership of a new cluster from ``--initial-cluster`` (name, peer URLs).

    Every member is a voter with its bootstrap ID (`node.ids`) and its name, so a fresh cluster
    lists them as started at once; client URLs arrive with each member's publish. Raises
    ValueError for an empty cluster, a repeated name, two members with the same URLs (the same
    ID), or a peer URL shared by two members.
    """
    if not initial_cluster:
        raise ValueError("the initial cluster has no members")
    members: list[Member] = []
    names: set[str] = set()
    for name, raw_urls in initial_cluster:
        if name in names:
            raise ValueError(f"member name {name!r} appears twice in the initial cluster")
        names.add(name)
        peer_urls = normalize_urls(raw_urls)
        member_id = bootstrap_member_id(peer_urls, token)
        if any(m.id == member_id for m in members):
            raise ValueError(f"members share the ID {member_id:x} (same peer URLs)")
        members.append(Member(id=member_id, name=name, peer_urls=peer_urls))
    membership = Membership(
        cluster_id=cluster_id(m.id for m in members),
        members=tuple(members),
        max_learners=max_learners,
    )
    try:
        check_invariants(membership)
    except InvariantViolation as err:
        raise ValueError(str(err)) from None
    return membership
