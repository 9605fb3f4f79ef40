"""``MembershipMachine``, the state machine the driver applies committed entries to."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from node.codec import encode
from node.domain_errors import MemberExists
from node.entries import ChangeRequest, PublishRequest
from node.membership import (
    ChangeKind,
    Membership,
    MembershipChange,
    build_initial_membership,
)
from node.state import ConfigurationMismatch, MembershipMachine
from raft import (
    ConfChange,
    ConfChangeError,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Index,
    NodeId,
    Term,
    apply_conf_change,
)

NEW_PEER = "http://127.0.0.1:42380"
NEW_ID = 0x3E6A519C54FD7AFC


def founding() -> Membership:
    return build_initial_membership(
        [("infra1", ["http://127.0.0.1:2380"]), ("infra2", ["http://127.0.0.1:22380"])],
        "etcd-cluster-1",
    )


class Raft:
    """Raft's side of a conf change: records what the machine asked it to apply."""

    def __init__(self, conf: ConfState, refuse: bool = False) -> None:
        self.conf = conf
        self.refuse = refuse
        self.applied: list[ConfChange] = []

    def __call__(self, change: ConfChange) -> ConfState:
        if self.refuse:
            raise ConfChangeError("refused")
        self.conf = apply_conf_change(self.conf, change)
        self.applied.append(change)
        return self.conf


def conf_entry(request_id: int, change: MembershipChange) -> Entry:
    cc = change.to_conf_change(encode(ChangeRequest(request_id, change)))
    return Entry(Term(2), Index(5), EntryType.CONF_CHANGE, b"", cc)


def recording(machine: MembershipMachine) -> list[tuple[Membership, Membership]]:
    seen: list[tuple[Membership, Membership]] = []
    machine.add_listener(lambda old, new: seen.append((old, new)))
    return seen


def test_an_accepted_change_reaches_raft_and_answers_the_new_membership() -> None:
    start = founding()
    machine = MembershipMachine(start)
    seen = recording(machine)
    raft = Raft(start.conf_state())
    change = MembershipChange(ChangeKind.ADD_LEARNER, NEW_ID, (NEW_PEER,))
    applied = machine.apply(conf_entry(7, change), raft)
    assert applied.request_id == 7 and applied.result == machine.membership
    assert NEW_ID in machine.membership.learner_ids()
    assert raft.conf.learners == {NEW_ID} and len(raft.applied) == 1
    assert seen == [(start, machine.membership)]


def test_a_change_the_membership_refuses_leaves_raft_untouched() -> None:
    start = founding()
    machine = MembershipMachine(start)
    seen = recording(machine)
    raft = Raft(start.conf_state())
    existing = start.members[0]
    change = MembershipChange(ChangeKind.ADD_VOTER, existing.id, (NEW_PEER,))
    applied = machine.apply(conf_entry(8, change), raft)
    assert applied.request_id == 8 and isinstance(applied.result, MemberExists)
    assert machine.membership == start and raft.applied == [] and seen == []


def test_a_change_raft_refuses_leaves_the_membership_untouched() -> None:
    start = founding()
    machine = MembershipMachine(start)
    change = MembershipChange(ChangeKind.ADD_LEARNER, NEW_ID, (NEW_PEER,))
    applied = machine.apply(conf_entry(9, change), Raft(start.conf_state(), refuse=True))
    assert applied.request_id == 9 and isinstance(applied.result, ConfigurationMismatch)
    assert machine.membership == start


def test_undecodable_entries_are_skipped() -> None:
    start = founding()
    machine = MembershipMachine(start)
    raft = Raft(start.conf_state())
    garbage = ConfChange(ConfChangeType.REMOVE, NodeId(5), context=b"\x01")
    bad_change = Entry(Term(2), Index(5), EntryType.CONF_CHANGE, b"", garbage)
    applied = machine.apply(bad_change, raft)
    assert applied.request_id is None and isinstance(applied.result, ConfigurationMismatch)
    applied = machine.apply(Entry(Term(2), Index(6), EntryType.NORMAL, b"\x01"), raft)
    assert applied.request_id is None and applied.result is None
    empty = machine.apply(Entry(Term(2), Index(7), EntryType.NORMAL, b""), raft)
    assert empty.request_id is None and empty.result is None
    assert machine.membership == start and raft.applied == []


def test_a_publish_sets_name_and_client_urls() -> None:
    start = founding()
    machine = MembershipMachine(start)
    seen = recording(machine)
    member = start.members[0]
    publish = PublishRequest(11, member.id, "renamed", ("http://127.0.0.1:2379",))
    apply: Callable[[ConfChange], ConfState] = Raft(start.conf_state())
    applied = machine.apply(Entry(Term(2), Index(5), EntryType.NORMAL, encode(publish)), apply)
    assert applied.request_id == 11 and applied.result == machine.membership
    published = machine.membership.get(member.id)
    assert published is not None and published.name == "renamed"
    assert published.client_urls == ("http://127.0.0.1:2379",)
    assert len(seen) == 1
    machine.apply(Entry(Term(2), Index(6), EntryType.NORMAL, encode(publish)), apply)
    assert len(seen) == 1  # nothing changed: no listener call


@pytest.mark.parametrize(
    ("data", "change", "expected"),
    [
        (encode(PublishRequest(3, 1, "n", ())), None, 3),
        (
            b"",
            MembershipChange(ChangeKind.REMOVE, 5).to_conf_change(
                encode(ChangeRequest(4, MembershipChange(ChangeKind.REMOVE, 5)))
            ),
            4,
        ),
        (b"\x01", None, None),
    ],
)
def test_request_ids_are_read_back_from_proposals(
    data: bytes, change: ConfChange | None, expected: int | None
) -> None:
    assert MembershipMachine(founding()).request_id(data, change) == expected


def test_snapshot_and_restore_round_trip() -> None:
    source = MembershipMachine(founding())
    source.apply(
        conf_entry(1, MembershipChange(ChangeKind.ADD_LEARNER, NEW_ID, (NEW_PEER,))),
        Raft(founding().conf_state()),
    )
    target = MembershipMachine(founding())
    seen = recording(target)
    target.restore(source.snapshot())
    assert target.membership == source.membership
    assert seen == [(founding(), source.membership)]
