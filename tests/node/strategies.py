"""Hypothesis strategies for raft.types values, shared by the codec and storage tests."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from node.entries import ChangeRequest, PublishRequest
from node.membership import ChangeKind, Member, Membership, MembershipChange
from raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    Message,
    MessageType,
    NodeId,
    Snapshot,
    SnapshotMetadata,
    Term,
)

#: Hypothesis settings for these tests: no deadline and no "too slow" health check, because a
#: loaded CI machine must not turn into a failure (P8: no timing thresholds in tests).
NO_TIMING = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

U64 = 2**64 - 1
uints = st.integers(min_value=0, max_value=U64)
node_ids = st.integers(min_value=1, max_value=U64).map(NodeId)
terms = uints.map(Term)
indexes = uints.map(Index)
small_bytes = st.binary(max_size=64)

conf_changes = st.builds(
    ConfChange, type=st.sampled_from(ConfChangeType), node_id=node_ids, context=small_bytes
)


@st.composite
def entries(draw: st.DrawFn) -> Entry:
    change = draw(st.none() | conf_changes)
    kind = EntryType.NORMAL if change is None else EntryType.CONF_CHANGE
    return Entry(draw(terms), draw(indexes), kind, draw(small_bytes), change)


hard_states = st.builds(HardState, term=terms, vote=uints.map(NodeId), commit=indexes)


@st.composite
def conf_states(draw: st.DrawFn) -> ConfState:
    ids = draw(st.lists(node_ids, unique=True, max_size=8))
    split = draw(st.integers(min_value=0, max_value=len(ids)))
    return ConfState(frozenset(ids[:split]), frozenset(ids[split:]))


snapshot_metadata = st.builds(SnapshotMetadata, index=indexes, term=terms, conf_state=conf_states())
snapshots = st.builds(Snapshot, metadata=snapshot_metadata, data=small_bytes)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    kind = draw(st.sampled_from(MessageType))
    snapshot = draw(snapshots) if kind is MessageType.SNAP else draw(st.none() | snapshots)
    return Message(
        type=kind,
        to=draw(uints.map(NodeId)),
        frm=draw(uints.map(NodeId)),
        term=draw(terms),
        log_term=draw(terms),
        index=draw(indexes),
        entries=tuple(draw(st.lists(entries(), max_size=4))),
        commit=draw(indexes),
        snapshot=snapshot,
        reject=draw(st.booleans()),
        reject_hint=draw(indexes),
        context=draw(small_bytes),
    )


# ---- the application's payloads ----

names = st.text(max_size=12)
urls = st.lists(st.text(min_size=1, max_size=20), max_size=3).map(tuple)
members = st.builds(
    Member,
    id=node_ids,
    name=names,
    peer_urls=urls,
    client_urls=urls,
    is_learner=st.booleans(),
)


@st.composite
def memberships(draw: st.DrawFn) -> Membership:
    found = draw(st.lists(members, max_size=5, unique_by=lambda m: m.id))
    return Membership(
        cluster_id=draw(node_ids),
        members=tuple(found),
        removed=frozenset(draw(st.lists(uints, max_size=4))),
        max_learners=draw(st.integers(min_value=0, max_value=10)),
    )


@st.composite
def membership_changes(draw: st.DrawFn) -> MembershipChange:
    kind = draw(st.sampled_from(ChangeKind))
    with_urls = kind in (ChangeKind.ADD_VOTER, ChangeKind.ADD_LEARNER, ChangeKind.UPDATE)
    adds = kind in (ChangeKind.ADD_VOTER, ChangeKind.ADD_LEARNER)
    member_id = draw(node_ids if adds else uints)
    peer_urls = draw(st.lists(st.text(min_size=1), min_size=1, max_size=3)) if with_urls else []
    return MembershipChange(kind, member_id, tuple(peer_urls))


change_requests = st.builds(ChangeRequest, request_id=uints, change=membership_changes())
publish_requests = st.builds(
    PublishRequest, request_id=uints, member_id=uints, name=names, client_urls=urls
)
