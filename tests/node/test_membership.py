"""node.membership: next_membership as one table (spec §3.5 step 4), publish, bootstrap, values."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.domain_errors import (
    EtcdError,
    MemberExists,
    MemberNotFound,
    MemberNotLearner,
    NotEnoughStarted,
    PeerURLExists,
    TooManyLearners,
)
from node.membership import (
    RAFT_CHANGE_TYPES,
    ChangeKind,
    InvariantViolation,
    Member,
    Membership,
    MembershipChange,
    apply_publish,
    build_initial_membership,
    check_invariants,
    next_membership,
)
from raft import ConfChangeError, ConfChangeType, ConfState, NodeId, apply_conf_change

CLUSTER = 0x59A05384C9B79EE
A, B, L, NEW, GONE = 0xA, 0xB, 0x1E, 0x4E, 0x60
URL_A, URL_B, URL_L = "http://127.0.0.1:2380", "http://127.0.0.1:22380", "http://127.0.0.1:42380"
URL_NEW = "http://127.0.0.1:52380"

VOTER_A = Member(A, "infra1", (URL_A,), ("http://127.0.0.1:2379",))
VOTER_B = Member(B, "infra2", (URL_B,), ("http://127.0.0.1:22379",))
LEARNER = Member(L, "", (URL_L,), is_learner=True)  # added, not started yet

#: Two started voters, one ID removed before.
TWO_VOTERS = Membership(CLUSTER, (VOTER_A, VOTER_B), removed=frozenset({GONE}))
#: The same plus an unstarted learner (max learners 1, so the cap is reached).
WITH_LEARNER = TWO_VOTERS.with_member(LEARNER)
ONE_VOTER = Membership(CLUSTER, (VOTER_A,))

add_voter = ChangeKind.ADD_VOTER
add_learner = ChangeKind.ADD_LEARNER


def change(kind: ChangeKind, member_id: int, *urls: str) -> MembershipChange:
    return MembershipChange(kind, member_id, tuple(urls))


@dataclass(frozen=True)
class Case:
    name: str
    before: Membership
    change: MembershipChange
    #: The resulting membership, or the error class.
    after: Membership | type[EtcdError]


CASES = [
    # -- any change: the target ID was removed before -> MemberNotFound, checked first --------
    Case("add voter of a removed ID", TWO_VOTERS, change(add_voter, GONE, URL_NEW), MemberNotFound),
    Case(
        "add learner of a removed ID",
        TWO_VOTERS,
        change(add_learner, GONE, URL_NEW),
        MemberNotFound,
    ),
    Case(
        "removed ID wins over a URL clash (same-second re-add, transcript 11)",
        TWO_VOTERS,
        change(add_voter, GONE, URL_A),
        MemberNotFound,
    ),
    Case("promote of a removed ID", TWO_VOTERS, change(ChangeKind.PROMOTE, GONE), MemberNotFound),
    Case("remove of a removed ID", TWO_VOTERS, change(ChangeKind.REMOVE, GONE), MemberNotFound),
    Case(
        "update of a removed ID",
        TWO_VOTERS,
        change(ChangeKind.UPDATE, GONE, URL_NEW),
        MemberNotFound,
    ),
    # -- add: already a member / URL equals any member's URL ----------------------------------
    Case(
        "add voter",
        TWO_VOTERS,
        change(add_voter, NEW, URL_NEW),
        TWO_VOTERS.with_member(Member(NEW, peer_urls=(URL_NEW,))),
    ),
    Case(
        "add voter with a URL listed twice",
        TWO_VOTERS,
        change(add_voter, NEW, URL_NEW, URL_NEW),
        TWO_VOTERS.with_member(Member(NEW, peer_urls=(URL_NEW, URL_NEW))),
    ),
    Case(
        "add voter while a learner exists (the cap is for learners)",
        WITH_LEARNER,
        change(add_voter, NEW, URL_NEW),
        WITH_LEARNER.with_member(Member(NEW, peer_urls=(URL_NEW,))),
    ),
    Case("add an existing voter's ID", TWO_VOTERS, change(add_voter, A, URL_NEW), MemberExists),
    Case(
        "add an existing learner's ID",
        WITH_LEARNER,
        change(add_learner, L, URL_NEW),
        MemberExists,
    ),
    Case(
        "existing ID wins over a URL clash",
        TWO_VOTERS,
        change(add_voter, A, URL_B),
        MemberExists,
    ),
    Case("add with a voter's URL", TWO_VOTERS, change(add_voter, NEW, URL_A), PeerURLExists),
    Case(
        "add with a learner's URL",
        WITH_LEARNER,
        change(add_voter, NEW, URL_L),
        PeerURLExists,
    ),
    Case(
        "add with one new URL and one taken",
        TWO_VOTERS,
        change(add_voter, NEW, URL_NEW, URL_B),
        PeerURLExists,
    ),
    Case(
        "add learner with a voter's URL",
        TWO_VOTERS,
        change(add_learner, NEW, URL_B),
        PeerURLExists,
    ),
    # -- add learner: learners + 1 > max learners ---------------------------------------------
    Case(
        "add learner",
        TWO_VOTERS,
        change(add_learner, NEW, URL_NEW),
        TWO_VOTERS.with_member(Member(NEW, peer_urls=(URL_NEW,), is_learner=True)),
    ),
    Case(
        "add a second learner (max 1; unstarted learners count)",
        WITH_LEARNER,
        change(add_learner, NEW, URL_NEW),
        TooManyLearners,
    ),
    Case(
        "URL clash wins over too many learners",
        WITH_LEARNER,
        change(add_learner, NEW, URL_A),
        PeerURLExists,
    ),
    Case(
        "add a second learner with max learners 2",
        replace(WITH_LEARNER, max_learners=2),
        change(add_learner, NEW, URL_NEW),
        replace(WITH_LEARNER, max_learners=2).with_member(
            Member(NEW, peer_urls=(URL_NEW,), is_learner=True)
        ),
    ),
    # -- promote: unknown / not a learner -----------------------------------------------------
    Case(
        "promote a learner",
        replace(WITH_LEARNER, members=(VOTER_A, VOTER_B, replace(LEARNER, name="l5"))),
        change(ChangeKind.PROMOTE, L),
        replace(WITH_LEARNER, members=(VOTER_A, VOTER_B, replace(LEARNER, name="l5"))).with_member(
            Member(L, "l5", (URL_L,))
        ),
    ),
    Case("promote an unknown ID", WITH_LEARNER, change(ChangeKind.PROMOTE, NEW), MemberNotFound),
    Case("promote ID 0", WITH_LEARNER, change(ChangeKind.PROMOTE, 0), MemberNotFound),
    Case("promote a voter", WITH_LEARNER, change(ChangeKind.PROMOTE, A), MemberNotLearner),
    # -- remove: unknown (ID 0 included) ------------------------------------------------------
    Case(
        "remove a voter",
        WITH_LEARNER,
        change(ChangeKind.REMOVE, B),
        Membership(CLUSTER, (VOTER_A, LEARNER), removed=frozenset({GONE, B})),
    ),
    Case(
        "remove a learner",
        WITH_LEARNER,
        change(ChangeKind.REMOVE, L),
        replace(TWO_VOTERS, removed=frozenset({GONE, L})),
    ),
    Case("remove an unknown ID", TWO_VOTERS, change(ChangeKind.REMOVE, NEW), MemberNotFound),
    Case("remove ID 0", TWO_VOTERS, change(ChangeKind.REMOVE, 0), MemberNotFound),
    Case(
        "remove the last voter (raft refuses it too)",
        ONE_VOTER.with_member(LEARNER),
        change(ChangeKind.REMOVE, A),
        NotEnoughStarted,
    ),
    # -- update: unknown / URL equals another member's URL -------------------------------------
    Case(
        "update a voter's URLs: name and client URLs stay",
        TWO_VOTERS,
        change(ChangeKind.UPDATE, B, URL_NEW),
        TWO_VOTERS.with_member(replace(VOTER_B, peer_urls=(URL_NEW,))),
    ),
    Case(
        "update a learner: it stays a learner (D2)",
        WITH_LEARNER,
        change(ChangeKind.UPDATE, L, URL_NEW),
        WITH_LEARNER.with_member(replace(LEARNER, peer_urls=(URL_NEW,))),
    ),
    Case(
        "update to the member's own URL plus a new one",
        TWO_VOTERS,
        change(ChangeKind.UPDATE, B, URL_B, URL_NEW),
        TWO_VOTERS.with_member(replace(VOTER_B, peer_urls=(URL_B, URL_NEW))),
    ),
    Case(
        "update an unknown ID",
        TWO_VOTERS,
        change(ChangeKind.UPDATE, NEW, URL_NEW),
        MemberNotFound,
    ),
    Case("update ID 0", TWO_VOTERS, change(ChangeKind.UPDATE, 0, URL_NEW), MemberNotFound),
    Case(
        "unknown ID wins over a URL clash",
        TWO_VOTERS,
        change(ChangeKind.UPDATE, NEW, URL_A),
        MemberNotFound,
    ),
    Case(
        "update to another voter's URL (transcript 07)",
        TWO_VOTERS,
        change(ChangeKind.UPDATE, B, URL_A),
        PeerURLExists,
    ),
    Case(
        "update to a learner's URL",
        WITH_LEARNER,
        change(ChangeKind.UPDATE, A, URL_L),
        PeerURLExists,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_next_membership(case: Case) -> None:
    check_invariants(case.before)
    before = replace(case.before)  # an equal copy, to show the input is untouched
    if isinstance(case.after, Membership):
        after = next_membership(case.before, case.change)
        assert after == case.after
        check_invariants(after)
        assert after.removed >= case.before.removed  # removed IDs are never reused
    else:
        with pytest.raises(case.after):
            next_membership(case.before, case.change)
    assert case.before == before


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_next_membership_agrees_with_raft(case: Case) -> None:
    """Whenever raft would refuse a change, the membership refuses it too; when both accept,
    raft's configuration is the membership's (the driver applies them one after the other)."""
    if case.change.member_id == 0:
        return  # raft's ConfChange cannot carry ID 0; the membership refuses it (rows above)
    conf = case.before.conf_state()
    try:
        raft_after = apply_conf_change(conf, case.change.to_conf_change())
    except ConfChangeError:
        raft_after = None
    if raft_after is None:
        assert not isinstance(case.after, Membership)
    elif isinstance(case.after, Membership):
        assert case.after.conf_state() == raft_after


def test_every_rule_row_is_in_the_table():
    errors = {c.after for c in CASES if not isinstance(c.after, Membership)}
    assert errors >= {
        MemberNotFound,
        MemberExists,
        PeerURLExists,
        TooManyLearners,
        MemberNotLearner,
        NotEnoughStarted,
    }
    assert {c.change.kind for c in CASES if isinstance(c.after, Membership)} == set(ChangeKind)


# ---- A random walk: invariants hold after every change, errors change nothing ---------------

_IDS = st.sampled_from([0, A, B, L, NEW, GONE, 0x77])
_URLS = st.lists(st.sampled_from([URL_A, URL_B, URL_L, URL_NEW, "http://h:1"]), min_size=1)


@st.composite
def _changes(draw: st.DrawFn) -> MembershipChange:
    kind = draw(st.sampled_from(ChangeKind))
    ids = _IDS.filter(bool) if kind in (add_voter, add_learner) else _IDS
    urls = tuple(draw(_URLS)) if kind in (add_voter, add_learner, ChangeKind.UPDATE) else ()
    return MembershipChange(kind, draw(ids), urls)


@given(st.lists(_changes(), max_size=12))
def test_random_changes_keep_the_invariants(changes: list[MembershipChange]) -> None:
    current = WITH_LEARNER
    for step in changes:
        try:
            after = next_membership(current, step)
        except EtcdError:
            continue
        check_invariants(after)
        assert after.removed >= current.removed
        assert not (set(after.ids()) & after.removed)
        current = after


# ---- MembershipChange and its raft mapping -------------------------------------------------


def test_every_kind_maps_to_its_raft_type():
    assert set(RAFT_CHANGE_TYPES) == set(ChangeKind)
    assert RAFT_CHANGE_TYPES[ChangeKind.PROMOTE] is ConfChangeType.PROMOTE
    assert change(add_learner, NEW, URL_NEW).raft_type is ConfChangeType.ADD_LEARNER


def test_to_conf_change():
    cc = change(ChangeKind.REMOVE, B).to_conf_change(b"ctx")
    assert (cc.type, cc.node_id, cc.context) == (ConfChangeType.REMOVE, B, b"ctx")


@pytest.mark.parametrize(
    ("kind", "member_id", "urls"),
    [
        (add_voter, 0, (URL_NEW,)),  # an add needs an ID
        (add_voter, NEW, ()),  # and URLs
        (add_learner, NEW, ()),
        (ChangeKind.UPDATE, B, ()),  # an update needs URLs
        (ChangeKind.REMOVE, B, (URL_NEW,)),  # remove and promote take none
        (ChangeKind.PROMOTE, L, (URL_NEW,)),
        (ChangeKind.REMOVE, -1, ()),
        (ChangeKind.REMOVE, 2**64, ()),
    ],
)
def test_malformed_changes_are_refused_on_construction(kind, member_id, urls):
    with pytest.raises(ValueError):
        MembershipChange(kind, member_id, urls)


def test_peer_urls_must_be_a_tuple():
    with pytest.raises(TypeError):
        MembershipChange(add_voter, NEW, [URL_NEW])  # type: ignore[arg-type]


# ---- Publish (spec §5.1) ----------------------------------------------------------------------


def test_publish_sets_name_and_client_urls_only():
    after = apply_publish(WITH_LEARNER, L, "l5", ["http://127.0.0.1:42379"])
    assert after.get(L) == Member(L, "l5", (URL_L,), ("http://127.0.0.1:42379",), is_learner=True)
    assert after.started(L) and not WITH_LEARNER.started(L)
    check_invariants(after)


def test_publish_again_replaces_the_previous_values():
    after = apply_publish(TWO_VOTERS, A, "renamed", ["http://127.0.0.1:3379"])
    assert after.get(A) == replace(VOTER_A, name="renamed", client_urls=("http://127.0.0.1:3379",))


@pytest.mark.parametrize("member_id", [GONE, NEW], ids=["removed", "unknown"])
def test_publish_for_a_removed_or_unknown_id_is_ignored(member_id):
    assert apply_publish(TWO_VOTERS, member_id, "ghost", ["http://x:1"]) is TWO_VOTERS


def test_a_publish_that_changes_nothing_returns_the_same_membership():
    assert apply_publish(TWO_VOTERS, A, VOTER_A.name, VOTER_A.client_urls) is TWO_VOTERS


# ---- Values and invariants ---------------------------------------------------------------------


def test_members_are_sorted_by_id_and_views_follow():
    m = Membership(CLUSTER, (LEARNER, VOTER_B, VOTER_A))
    assert m.ids() == (A, B, L)
    assert m.voters() == (VOTER_A, VOTER_B)
    assert m.learners() == (LEARNER,)
    assert m.voter_ids() == {A, B} and m.learner_ids() == {L}
    assert m == Membership(CLUSTER, (VOTER_A, VOTER_B, LEARNER))
    assert hash(m) == hash(Membership(CLUSTER, (VOTER_A, VOTER_B, LEARNER)))


def test_conf_state():
    assert WITH_LEARNER.conf_state() == ConfState(
        voters=frozenset({NodeId(A), NodeId(B)}), learners=frozenset({NodeId(L)})
    )


def test_lookups():
    assert WITH_LEARNER.get(B) == VOTER_B and WITH_LEARNER.get(NEW) is None
    assert WITH_LEARNER.started(A) and not WITH_LEARNER.started(L)
    assert not WITH_LEARNER.started(NEW)
    assert WITH_LEARNER.is_removed(GONE) and not WITH_LEARNER.is_removed(A)
    assert WITH_LEARNER.peer_urls_in_use() == {URL_A, URL_B, URL_L}
    assert WITH_LEARNER.peer_urls_in_use(excluding=B) == {URL_A, URL_L}
    assert WITH_LEARNER.find_by_peer_urls([URL_L]) == LEARNER
    assert WITH_LEARNER.find_by_peer_urls([URL_L, URL_A]) is None


def test_without_member_records_the_removal():
    after = TWO_VOTERS.without_member(B)
    assert after.ids() == (A,) and after.removed == {GONE, B}


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"id": 0}, ValueError),
        ({"id": 2**64}, ValueError),
        ({"id": 1, "peer_urls": [URL_A]}, TypeError),
        ({"id": 1, "client_urls": "http://a:1"}, TypeError),
    ],
)
def test_member_validation(kwargs, error):
    with pytest.raises(error):
        Member(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"cluster_id": 0}, ValueError),
        ({"cluster_id": CLUSTER, "members": [VOTER_A]}, TypeError),
        ({"cluster_id": CLUSTER, "removed": {GONE}}, TypeError),
        ({"cluster_id": CLUSTER, "max_learners": -1}, ValueError),
    ],
)
def test_membership_validation(kwargs, error):
    with pytest.raises(error):
        Membership(**kwargs)


@pytest.mark.parametrize(
    ("membership", "reason"),
    [
        (Membership(CLUSTER, (VOTER_A, VOTER_A)), "duplicate member IDs"),
        (Membership(CLUSTER, (VOTER_A,), removed=frozenset({A})), "still members"),
        (Membership(CLUSTER, (VOTER_A,), removed=frozenset({0})), "bad removed ID"),
        (Membership(CLUSTER, (LEARNER,)), "at least one voter"),
        (Membership(CLUSTER), "at least one voter"),
        (Membership(CLUSTER, (Member(A),)), "no peer URL"),
        (Membership(CLUSTER, (VOTER_A, replace(VOTER_B, peer_urls=(URL_A,)))), "share"),
    ],
)
def test_check_invariants_catches(membership, reason):
    with pytest.raises(InvariantViolation, match=reason):
        check_invariants(membership)


def test_check_invariants_catches_unsorted_members():
    m = Membership(CLUSTER, (VOTER_A, VOTER_B))
    object.__setattr__(m, "members", (VOTER_B, VOTER_A))  # bypass the constructor's sorting
    with pytest.raises(InvariantViolation, match="sorted"):
        check_invariants(m)


# ---- Bootstrap ----------------------------------------------------------------------------------


def test_build_initial_membership_of_the_reference_cluster():
    m = build_initial_membership(
        [
            ("infra1", ["http://127.0.0.1:2380"]),
            ("infra2", ["http://127.0.0.1:22380"]),
            ("infra3", ["http://127.0.0.1:32380"]),
        ],
        "etcd-cluster-1",
    )
    assert f"{m.cluster_id:x}" == "59a05384c9b79ee"
    assert [(f"{x.id:x}", x.name) for x in m.members] == [
        ("91bc3c398fb3c146", "infra2"),
        ("bf9071f4639c75cc", "infra1"),
        ("fd422379fda50e48", "infra3"),
    ]
    assert all(x.started and not x.is_learner and not x.client_urls for x in m.members)
    assert m.removed == frozenset() and m.max_learners == 1
    check_invariants(m)


def test_build_initial_membership_normalises_urls_and_keeps_max_learners():
    m = build_initial_membership([("s1", [" HTTP://127.0.0.1:12380"])], "scratch", max_learners=3)
    assert m.members == (Member(0x1ED8169A819AC9E8, "s1", ("http://127.0.0.1:12380",)),)
    assert f"{m.cluster_id:x}" == "f7efca0e398d161f" and m.max_learners == 3


@pytest.mark.parametrize(
    ("initial_cluster", "reason"),
    [
        ([], "no members"),
        ([("a", ["http://a:1"]), ("a", ["http://b:1"])], "twice"),
        ([("a", ["http://a:1"]), ("b", ["http://a:1"])], "share the ID"),
        ([("a", ["http://a:1"]), ("b", ["http://a:1", "http://b:1"])], "share the peer URL"),
        ([("a", ["http://a"])], "host:port"),
    ],
)
def test_build_initial_membership_refuses(initial_cluster, reason):
    with pytest.raises(ValueError, match=reason):
        build_initial_membership(initial_cluster, "t")
