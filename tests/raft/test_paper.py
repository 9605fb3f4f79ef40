"""Layer (c): one test per rule of the Raft paper (Ongaro & Ousterhout, "In Search of an
Understandable Consensus Algorithm", Figure 2), plus the Figure 3 properties, Figure 7
(a new leader brings every kind of divergent follower in line) and Figure 8 (why a leader must
not commit an entry of an earlier term by counting replicas).

A single node is driven message by message through ``RawNode.step`` / ``tick`` / ``ready``
(``Solo``), where a rule is about how one server reacts; the in-memory ``Cluster`` is used where a
rule is about what several servers do together. Time is ticks only.

Unless a test says otherwise, ``Solo`` runs the paper's algorithm: PreVote and CheckQuorum off.
Where those extensions change what a rule looks like on the wire (lower-term messages, the
follower's election timeout), both variants are tested and the docstring says what the
implementation does instead of the paper.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from raft import (
    NONE,
    Config,
    ConfState,
    Entry,
    HardState,
    Index,
    MemoryStorage,
    Message,
    MessageType,
    NodeId,
    ProgressState,
    ProposalDropped,
    RawNode,
    Ready,
    Role,
    Snapshot,
    SnapshotMetadata,
    Term,
)
from tests.raft.harness import Cluster, SimNode

MT = MessageType
ELECTION_TICK = 10


def ents(first: int, *terms: int, data: bytes = b"") -> tuple[Entry, ...]:
    return tuple(Entry(Term(t), Index(first + i), data=data) for i, t in enumerate(terms))


class Solo:
    """One RawNode over a MemoryStorage that starts from the bootstrap snapshot (index 1, term 1)
    followed by entries 2, 3, ... of the given ``terms``."""

    def __init__(
        self,
        node_id: int = 1,
        voters: Iterable[int] = (1, 2, 3),
        learners: Iterable[int] = (),
        *,
        terms: Sequence[int] = (),
        term: int = 0,
        vote: int = 0,
        commit: int = 0,
        pre_vote: bool = False,
        check_quorum: bool = False,
        heartbeat_tick: int = 1,
        seed: int = 0,
        storage: MemoryStorage | None = None,
    ) -> None:
        self.id = NodeId(node_id)
        if storage is None:
            storage = MemoryStorage()
            conf = ConfState(
                voters=frozenset(NodeId(v) for v in voters),
                learners=frozenset(NodeId(v) for v in learners),
            )
            storage.apply_snapshot(Snapshot(SnapshotMetadata(Index(1), Term(1), conf)))
            storage.append(ents(2, *terms))
            storage.set_hard_state(HardState(Term(term), NodeId(vote), Index(commit)))
        self.storage = storage
        self.config = Config(
            id=self.id,
            election_tick=ELECTION_TICK,
            heartbeat_tick=heartbeat_tick,
            rng=random.Random(seed),
            pre_vote=pre_vote,
            check_quorum=check_quorum,
        )
        self.node = RawNode(self.config, storage)

    @property
    def raft(self) -> Any:
        return self.node.raft

    def role(self) -> Role:
        # A method, not a property: mypy would narrow a property across steps.
        return self.node.raft.role

    @property
    def term(self) -> int:
        return self.node.raft.term

    def step(self, kind: MessageType, frm: int, **fields: Any) -> None:
        self.node.step(Message(type=kind, to=self.id, frm=NodeId(frm), **fields))

    def tick(self, ticks: int = 1) -> None:
        for _ in range(ticks):
            self.node.tick()

    def flush(self) -> Ready:
        """Handle one Ready the way the driver does: persist, (send), apply, advance."""
        rd = self.node.ready()
        if rd.snapshot is not None:
            self.storage.apply_snapshot(rd.snapshot)
        self.storage.append(rd.entries)
        if rd.hard_state is not None:
            self.storage.set_hard_state(rd.hard_state)
        self.node.advance(rd)
        return rd

    def sent(self) -> list[Message]:
        return list(self.flush().messages)

    def log_terms(self) -> list[int]:
        """Terms of entries 2..last (entry 1 is the bootstrap snapshot)."""
        log = self.node.raft.log
        return [log.term(Index(i)) for i in range(2, log.last_index() + 1)]

    def timeout(self) -> int:
        return int(self.node.raft.randomized_election_timeout)


def make_leader(voters: Iterable[int] = (1, 2, 3), learners: Iterable[int] = (), **kw: Any) -> Solo:
    """Node 1 elected by the fewest votes it needs; its first Ready already handled."""
    voters = tuple(voters)
    s = Solo(1, voters, learners, **kw)
    s.node.campaign()
    for v in sorted(voters):
        if s.role() is Role.LEADER:
            break
        if v != 1:
            s.step(MT.VOTE_RESP, v, term=s.term)
    assert s.role() is Role.LEADER
    s.flush()
    return s


def of_type(msgs: Iterable[Message], kind: MessageType) -> list[Message]:
    return [m for m in msgs if m.type is kind]


# =============================================================================================
# Figure 2, "Rules for Servers / All Servers"
# =============================================================================================


def test_all_servers_apply_committed_entries_in_log_order():
    """If commitIndex > lastApplied: increment lastApplied, apply log[lastApplied]. The core
    hands committed entries out in order, each exactly once, and ``advance`` moves applied."""
    s = Solo(terms=(1,), term=1)
    s.step(MT.APP, 2, term=1, index=2, log_term=1, entries=ents(3, 1, 1, data=b"x"), commit=3)
    rd = s.flush()
    assert [e.index for e in rd.committed_entries] == [2, 3]
    assert s.raft.log.applied == 3
    s.step(MT.APP, 2, term=1, index=4, log_term=1, entries=(), commit=4)
    rd = s.flush()
    assert [e.index for e in rd.committed_entries] == [4]
    assert s.raft.log.applied == 4
    assert s.flush().committed_entries == ()  # nothing is handed out twice


def node_in_role(role: Role) -> Solo:
    if role is Role.LEADER:
        s = make_leader()
    else:
        s = Solo(term=1, pre_vote=role is Role.PRE_CANDIDATE)
        if role is not Role.FOLLOWER:
            s.node.campaign()
        s.flush()
    assert s.role() is role
    return s


HIGHER_TERM_MESSAGES: list[tuple[MessageType, dict[str, Any], bool]] = [
    # (type, fields, whether the sender becomes the known leader)
    (MT.APP, {"index": 1, "log_term": 1}, True),
    (MT.HEARTBEAT, {}, True),
    (MT.SNAP, {"snapshot": Snapshot(SnapshotMetadata(Index(1), Term(1)))}, True),
    (MT.VOTE, {"index": 1, "log_term": 1}, False),
    (MT.APP_RESP, {"index": 1}, False),
    (MT.HEARTBEAT_RESP, {}, False),
    (MT.VOTE_RESP, {"reject": True}, False),
]


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize(
    ("kind", "fields", "sender_leads"),
    HIGHER_TERM_MESSAGES,
    ids=[m[0].value for m in HIGHER_TERM_MESSAGES],
)
def test_all_servers_higher_term_converts_to_follower(role, kind, fields, sender_leads):
    """If RPC request or response contains term T > currentTerm: set currentTerm = T, convert
    to follower. A message that can only come from a leader also tells who leads."""
    s = node_in_role(role)
    s.step(kind, 2, term=5, **fields)
    assert s.role() is Role.FOLLOWER
    assert s.term == 5
    assert s.raft.lead == (2 if sender_leads else NONE)
    hard = s.flush().hard_state
    assert hard is not None and hard.term == 5  # the new term is persisted


def test_pre_vote_messages_do_not_change_terms():
    """PreVote extension (not in the paper): a pre-vote request carries term + 1 but is only a
    question; answering it must leave the receiver's term alone, or PreVote would be useless."""
    s = Solo(term=1, pre_vote=True)
    s.step(MT.PRE_VOTE, 2, term=5, index=1, log_term=1)
    assert (s.role(), s.term) == (Role.FOLLOWER, 1)
    (resp,) = s.sent()
    assert (resp.type, resp.reject, resp.term) == (MT.PRE_VOTE_RESP, False, 5)
    assert s.raft.vote == NONE


@pytest.mark.parametrize("kind", [MT.APP, MT.HEARTBEAT])
@pytest.mark.parametrize(("pre_vote", "check_quorum"), [(True, True), (True, False), (False, True)])
def test_lower_term_append_is_answered_with_the_current_term(kind, pre_vote, check_quorum):
    """AppendEntries receiver rule 1, "reply false if term < currentTerm", as implemented with
    PreVote or CheckQuorum on: the stale append is not applied, and the answer is an APP_RESP
    carrying our higher term (not a reject flag). A stale leader that may never get a vote
    through (PreVote, the lease) learns the term from it and steps down."""
    s = Solo(terms=(2,), term=3, pre_vote=pre_vote, check_quorum=check_quorum)
    s.step(kind, 2, term=2, index=2, log_term=2, entries=ents(3, 2), commit=3)
    (resp,) = s.sent()
    assert resp.type is MT.APP_RESP and resp.to == 2
    assert resp.term == 3
    assert s.log_terms() == [2]  # nothing appended
    assert s.raft.log.committed == 1
    assert (s.role(), s.term, s.raft.lead) == (Role.FOLLOWER, 3, NONE)


def test_lower_term_append_is_dropped_in_the_plain_paper_configuration():
    """With PreVote and CheckQuorum both off the stale append is dropped without an answer; the
    stale leader learns the new term from the next vote request instead (as etcd does)."""
    s = Solo(terms=(2,), term=3)
    s.step(MT.APP, 2, term=2, index=2, log_term=2, entries=ents(3, 2), commit=3)
    assert s.sent() == []
    assert s.log_terms() == [2]


def test_stale_leader_steps_down_on_the_answer_to_its_append():
    """The other half of the lower-term rule: the stale leader gets the higher term back."""
    s = make_leader()
    s.step(MT.APP_RESP, 2, term=7, index=0)
    assert (s.role(), s.term) == (Role.FOLLOWER, 7)


@pytest.mark.parametrize("kind", [MT.VOTE, MT.PRE_VOTE])
def test_lower_term_vote_request_is_refused_with_the_current_term(kind):
    """RequestVote receiver rule 1: reply false if term < currentTerm. Both a stale VOTE and a
    stale PRE_VOTE get an explicit rejection carrying our term, so the candidate learns the
    term it lags behind; our term and vote are untouched."""
    s = Solo(term=3, pre_vote=kind is MT.PRE_VOTE)
    s.step(kind, 2, term=2, index=5, log_term=2)
    (resp,) = s.sent()
    expected = MT.VOTE_RESP if kind is MT.VOTE else MT.PRE_VOTE_RESP
    assert (resp.type, resp.to, resp.term, resp.reject) == (expected, 2, 3, True)
    assert (s.role(), s.term, s.raft.vote) == (Role.FOLLOWER, 3, NONE)


# =============================================================================================
# Figure 2, "Followers"
# =============================================================================================


def test_follower_election_timeout_becomes_candidate_without_pre_vote():
    """If election timeout elapses without receiving AppendEntries from the current leader or
    granting a vote: convert to candidate (pre_vote=False: straight to a real election)."""
    s = Solo()
    s.tick(s.timeout() - 1)
    assert s.role() is Role.FOLLOWER
    assert s.sent() == []
    s.tick()
    assert s.role() is Role.CANDIDATE
    assert (s.term, s.raft.vote) == (1, 1)
    votes = of_type(s.sent(), MT.VOTE)
    assert sorted(m.to for m in votes) == [2, 3]


def test_follower_election_timeout_becomes_pre_candidate_with_pre_vote():
    """PreVote extension: the timeout starts a pre-election first. Term and vote stay as they
    were (nothing to persist), and the PRE_VOTE requests carry term + 1."""
    s = Solo(term=4, pre_vote=True)
    s.tick(s.timeout())
    assert s.role() is Role.PRE_CANDIDATE
    assert (s.term, s.raft.vote) == (4, NONE)
    rd = s.flush()
    assert rd.hard_state is None
    pre_votes = of_type(rd.messages, MT.PRE_VOTE)
    assert sorted(m.to for m in pre_votes) == [2, 3]
    assert {m.term for m in pre_votes} == {5}


def test_follower_timer_is_reset_by_the_leader():
    """... without receiving AppendEntries (here a heartbeat) from the current leader."""
    s = Solo(term=1)
    timeout = s.timeout()
    for kind in (MT.HEARTBEAT, MT.APP):
        s.tick(timeout - 1)
        s.step(kind, 2, term=1, index=1, log_term=1)
        s.flush()
    s.tick(timeout - 1)
    assert s.role() is Role.FOLLOWER
    s.tick()
    assert s.role() is Role.CANDIDATE  # the same timeout, counted from the last message


def test_follower_timer_is_reset_by_granting_a_vote():
    """... or granting a vote to a candidate."""
    s = Solo(term=2)
    timeout = s.timeout()
    s.tick(timeout - 1)
    s.step(MT.VOTE, 2, term=2, index=1, log_term=1)
    (resp,) = s.sent()
    assert resp.type is MT.VOTE_RESP and not resp.reject
    s.tick(timeout - 1)
    assert s.role() is Role.FOLLOWER
    s.tick()
    assert (s.role(), s.term) == (Role.CANDIDATE, 3)


def test_follower_timer_is_not_reset_by_refusing_a_vote():
    s = Solo(terms=(2,), term=2)
    timeout = s.timeout()
    s.tick(timeout - 1)
    s.step(MT.VOTE, 3, term=2, index=1, log_term=1)  # our log is more up to date: refused
    (resp,) = s.sent()
    assert resp.reject
    s.tick()
    assert s.role() is Role.CANDIDATE


def test_learner_never_campaigns():
    """Only voters take part in elections (learners are not in the paper; see §6 / etcd)."""
    s = Solo(node_id=4, voters=(1, 2, 3), learners=(4,), pre_vote=False)
    s.tick(20 * ELECTION_TICK)
    assert s.role() is Role.FOLLOWER
    assert s.sent() == []
    s.node.campaign()
    assert s.role() is Role.FOLLOWER


# =============================================================================================
# Figure 2, "Candidates"
# =============================================================================================


def test_candidate_increments_term_votes_for_itself_and_asks_every_other_voter():
    """On conversion to candidate: increment currentTerm, vote for self, reset the election
    timer, send RequestVote to all other servers: here every other *voter*, never a learner.
    Term and vote are in the same Ready as the requests (persisted before they are sent)."""
    s = Solo(voters=(1, 2, 3, 5), learners=(4,), terms=(1, 3), term=3)
    s.tick(5)
    s.node.campaign()
    assert s.role() is Role.CANDIDATE
    assert s.raft.election_elapsed == 0
    rd = s.flush()
    assert rd.hard_state == HardState(Term(4), NodeId(1), Index(1))
    assert sorted(m.to for m in rd.messages) == [2, 3, 5]
    for m in rd.messages:
        assert (m.type, m.term, m.frm) == (MT.VOTE, 4, 1)
        assert (m.index, m.log_term) == (3, 3)  # our last entry, for the §5.4.1 check


def test_pre_candidate_asks_every_other_voter_at_the_next_term():
    s = Solo(voters=(1, 2, 3), learners=(4,), terms=(2,), term=2, pre_vote=True)
    s.node.campaign()
    assert (s.role(), s.term) == (Role.PRE_CANDIDATE, 2)
    msgs = s.sent()
    assert sorted(m.to for m in msgs) == [2, 3]
    for m in msgs:
        assert (m.type, m.term, m.index, m.log_term) == (MT.PRE_VOTE, 3, 2, 2)


@pytest.mark.parametrize(
    ("size", "grants", "rejects", "role"),
    [
        (1, [], [], Role.LEADER),
        (3, [2], [], Role.LEADER),
        (3, [], [2], Role.CANDIDATE),
        (3, [], [2, 3], Role.FOLLOWER),
        (4, [2], [], Role.CANDIDATE),  # even size: 3 of 4 needed
        (4, [2, 3], [], Role.LEADER),
        (4, [2], [3, 4], Role.FOLLOWER),
        (5, [2], [], Role.CANDIDATE),
        (5, [2, 2], [], Role.CANDIDATE),  # a duplicate answer is one vote
        (5, [2, 3], [], Role.LEADER),
        (5, [2], [3, 4], Role.CANDIDATE),
        (5, [], [2, 3, 4], Role.FOLLOWER),
    ],
)
def test_candidate_wins_with_votes_from_a_majority(size, grants, rejects, role):
    """If votes received from a majority of servers: become leader. A candidate that can no
    longer reach a majority gives up and waits as a follower."""
    s = Solo(voters=range(1, size + 1))
    s.node.campaign()
    for v in grants:
        s.step(MT.VOTE_RESP, v, term=1)
    for v in rejects:
        s.step(MT.VOTE_RESP, v, term=1, reject=True)
    assert s.role() is role
    assert s.term == 1


def test_candidate_ignores_votes_of_learners_and_of_earlier_terms():
    s = Solo(voters=(1, 2, 3), learners=(4,), term=1)
    s.node.campaign()
    s.step(MT.VOTE_RESP, 4, term=2)  # a learner's vote does not count
    s.step(MT.VOTE_RESP, 2, term=1)  # an answer to an earlier campaign does not count
    assert s.role() is Role.CANDIDATE
    s.step(MT.VOTE_RESP, 3, term=2)
    assert s.role() is Role.LEADER


def test_pre_candidate_wins_pre_vote_then_runs_the_real_election():
    s = Solo(term=1, pre_vote=True)
    s.node.campaign()
    s.flush()
    s.step(MT.VOTE_RESP, 2, term=1)  # a late answer of our term, not a pre-vote: ignored
    assert (s.role(), s.term) == (Role.PRE_CANDIDATE, 1)
    s.step(MT.PRE_VOTE_RESP, 2, term=2)  # granted pre-votes carry the term we asked for
    assert (s.role(), s.term, s.raft.vote) == (Role.CANDIDATE, 2, 1)
    assert sorted(m.to for m in of_type(s.sent(), MT.VOTE)) == [2, 3]
    s.step(MT.VOTE_RESP, 3, term=2)
    assert s.role() is Role.LEADER


def test_candidate_winning_sends_append_with_an_empty_entry_to_every_peer():
    """Leaders, upon election: send initial empty AppendEntries to each server. As in etcd
    the leader appends an empty entry of its term (it also commits earlier terms' entries,
    §5.4.2) and sends it to every member, learners included."""
    s = Solo(voters=(1, 2, 3), learners=(4,), terms=(1,), term=1)
    s.node.campaign()
    s.flush()
    s.step(MT.VOTE_RESP, 2, term=2)
    assert s.role() is Role.LEADER
    rd = s.flush()
    assert rd.entries == (Entry(Term(2), Index(3)),)
    apps = of_type(rd.messages, MT.APP)
    assert sorted(m.to for m in apps) == [2, 3, 4]
    for m in apps:
        assert (m.term, m.index, m.log_term, m.commit) == (2, 2, 1, 1)
        assert m.entries == (Entry(Term(2), Index(3)),)


@pytest.mark.parametrize("pre_vote", [False, True])
@pytest.mark.parametrize("kind", [MT.APP, MT.HEARTBEAT])
def test_candidate_becomes_follower_on_append_from_the_leader_of_its_term(pre_vote, kind):
    """If AppendEntries RPC received from new leader: convert to follower."""
    s = Solo(term=1, pre_vote=pre_vote)
    s.node.campaign()
    assert s.role() is (Role.PRE_CANDIDATE if pre_vote else Role.CANDIDATE)
    term = s.term
    s.step(kind, 3, term=term, index=1, log_term=1)
    assert (s.role(), s.term, s.raft.lead) == (Role.FOLLOWER, term, 3)


def test_candidate_election_timeout_starts_a_new_election():
    """If election timeout elapses: start new election (a split vote resolves this way)."""
    s = Solo()
    s.node.campaign()
    s.step(MT.VOTE_RESP, 2, term=1, reject=True)
    s.flush()
    s.tick(s.timeout())
    assert (s.role(), s.term, s.raft.vote) == (Role.CANDIDATE, 2, 1)
    votes = of_type(s.sent(), MT.VOTE)
    assert sorted(m.to for m in votes) == [2, 3]
    assert {m.term for m in votes} == {2}


def test_candidate_election_timeout_with_pre_vote_runs_a_pre_election_again():
    """PreVote extension: a candidate whose election timed out first asks again whether it
    could win, so its term only moves if a majority would vote for it."""
    s = Solo(pre_vote=True)
    s.node.campaign()
    s.step(MT.PRE_VOTE_RESP, 2, term=1)
    assert (s.role(), s.term) == (Role.CANDIDATE, 1)
    s.flush()
    s.tick(s.timeout())
    assert (s.role(), s.term) == (Role.PRE_CANDIDATE, 1)
    assert {m.type for m in s.sent()} == {MT.PRE_VOTE}


@pytest.mark.parametrize("seed", range(8))
def test_randomized_election_timeouts_elect_a_leader(seed):
    """§5.2: randomized timeouts make split votes rare and short-lived: a fresh five-node
    cluster in a healthy network elects exactly one leader within a few timeouts."""
    cluster = Cluster([1, 2, 3, 4, 5], seed=seed, election_tick=ELECTION_TICK)
    for _ in range(10 * ELECTION_TICK):
        cluster.tick()
        if cluster.leader() is not None:
            break
    leaders = [sim for sim in cluster.nodes.values() if sim.role is Role.LEADER]
    assert len(leaders) == 1
    assert all(s.raft.lead == leaders[0].id for s in cluster.nodes.values())


def test_randomized_election_timeout_range():
    """Election timeouts are drawn from [election_tick, 2 * election_tick): observed as the tick
    at which a fresh follower campaigns, over many seeds."""
    observed = []
    for seed in range(300):
        s = Solo(seed=seed)
        ticks = 0
        while s.role() is Role.FOLLOWER:
            s.tick()
            ticks += 1
        observed.append(ticks)
    assert min(observed) >= ELECTION_TICK
    assert max(observed) < 2 * ELECTION_TICK
    assert set(observed) == set(range(ELECTION_TICK, 2 * ELECTION_TICK))  # the whole range


def test_randomized_election_timeout_is_redrawn_and_reproducible():
    """The jitter comes from the injected rng: redrawn on each term change, and the same seed
    replays the same sequence (CONVENTIONS P1)."""

    def timeouts(seed: int) -> list[int]:
        s = Solo(seed=seed)
        drawn = []
        for term in range(1, 40):
            s.step(MT.HEARTBEAT, 2, term=term)
            drawn.append(s.timeout())
        return drawn

    first = timeouts(7)
    assert first == timeouts(7)
    assert len(set(first)) > 1
    assert first != timeouts(8)


# =============================================================================================
# Figure 2, "RequestVote RPC / Receiver implementation"
# =============================================================================================


@pytest.mark.parametrize(
    ("voted_for", "candidate", "granted"),
    [
        (0, 2, True),
        (0, 3, True),
        (2, 2, True),  # a retransmitted request from the same candidate
        (3, 3, True),
        (2, 3, False),  # already voted for someone else in this term
        (3, 2, False),
    ],
)
def test_vote_granted_only_if_not_voted_for_another_in_this_term(voted_for, candidate, granted):
    """If votedFor is null or candidateId (and the log is up to date), grant the vote."""
    s = Solo(term=1, vote=voted_for)
    s.step(MT.VOTE, candidate, term=1, index=1, log_term=1)
    rd = s.flush()
    (resp,) = rd.messages
    assert (resp.type, resp.to, resp.term) == (MT.VOTE_RESP, candidate, 1)
    assert resp.reject is not granted
    assert s.raft.vote == (candidate if granted else voted_for)


def test_vote_first_come_first_served_and_persisted_before_the_answer():
    """At most one vote per term, first come first served; the vote is in the Ready that
    carries the answer (persisted before it is sent), and a restart does not forget it."""
    s = Solo(term=1)
    s.step(MT.VOTE, 2, term=1, index=1, log_term=1)
    rd = s.flush()
    assert rd.hard_state == HardState(Term(1), NodeId(2), Index(1))
    assert not rd.messages[0].reject
    s.step(MT.VOTE, 3, term=1, index=1, log_term=1)
    assert s.sent()[0].reject

    restarted = Solo(storage=s.storage)
    assert (restarted.term, restarted.raft.vote) == (1, 2)
    restarted.step(MT.VOTE, 3, term=1, index=1, log_term=1)
    assert restarted.sent()[0].reject
    restarted.step(MT.VOTE, 2, term=1, index=1, log_term=1)
    assert not restarted.sent()[0].reject


@pytest.mark.parametrize("kind", [MT.VOTE, MT.PRE_VOTE])
@pytest.mark.parametrize(
    ("last_term", "last_index", "granted"),
    [
        # ours: last index 3, last term 2
        (2, 3, True),  # identical
        (2, 4, True),  # same last term, longer
        (2, 2, False),  # same last term, shorter
        (3, 1, True),  # later last term wins however short
        (1, 10, False),  # earlier last term loses however long
        (1, 3, False),
    ],
)
def test_vote_only_for_a_log_at_least_as_up_to_date(kind, last_term, last_index, granted):
    """§5.4.1: compare last terms first, then last indexes. Pre-votes use the same check."""
    s = Solo(terms=(1, 2), term=2, pre_vote=kind is MT.PRE_VOTE)
    s.step(kind, 2, term=3, index=last_index, log_term=last_term)
    (resp,) = s.sent()
    assert resp.type is (MT.VOTE_RESP if kind is MT.VOTE else MT.PRE_VOTE_RESP)
    assert resp.reject is not granted
    if kind is MT.VOTE:
        assert s.term == 3  # the higher term is taken either way
        assert s.raft.vote == (2 if granted else NONE)
    else:
        assert s.term == 2
        assert s.raft.vote == NONE


# =============================================================================================
# Figure 2, "AppendEntries RPC / Receiver implementation"
# =============================================================================================


@pytest.mark.parametrize(
    ("prev_index", "prev_term", "accepted", "index", "hint", "hint_term"),
    [
        # our log: 1 (t1, snapshot), 2 (t1), 3 (t2); committed 1
        (1, 1, True, 1, 0, 0),
        (2, 1, True, 2, 0, 0),
        (3, 2, True, 3, 0, 0),
        (3, 1, False, 3, 2, 1),  # term mismatch at 3: hint skips our term-2 entries
        (2, 2, False, 2, 2, 1),
        (4, 2, False, 4, 3, 2),  # we lack 4: hint at our last entry
        (5, 3, False, 5, 3, 2),
        (0, 0, True, 1, 0, 0),  # below our commit: answered with our commit index
    ],
)
def test_append_rejected_unless_log_matches_at_prev(
    prev_index, prev_term, accepted, index, hint, hint_term
):
    """Rule 2: reply false if the log does not contain an entry at prevLogIndex whose term
    matches prevLogTerm. A rejection carries a hint (the last index whose term is at most
    prevLogTerm, and that term) so the leader can skip whole terms (§5.3, end)."""
    s = Solo(terms=(1, 2), term=2)
    s.step(MT.APP, 2, term=2, index=prev_index, log_term=prev_term, entries=(), commit=1)
    (resp,) = s.sent()
    assert resp.type is MT.APP_RESP and resp.term == 2
    assert resp.reject is not accepted
    assert resp.index == index
    assert (resp.reject_hint, resp.log_term) == (hint, hint_term)
    assert s.log_terms() == [1, 2]


@pytest.mark.parametrize(
    ("prev_index", "prev_term", "entries", "terms", "last_new", "persist"),
    [
        # our log: 2 (t1), 3 (t2)
        (3, 2, ents(4, 3), [1, 2, 3], 4, [4]),  # rule 4: append
        (2, 1, ents(3, 3, 3), [1, 3, 3], 4, [3, 4]),  # rule 3: 3 conflicts, replaced
        (1, 1, ents(2, 3), [3], 2, [2]),  # rule 3: 2 conflicts: 2 and all after go
        (1, 1, ents(2, 1), [1, 2], 2, []),  # no conflict: 3 must NOT be dropped
        (1, 1, ents(2, 1, 2, 3), [1, 2, 3], 4, [4]),  # only the new part is written
        (3, 2, (), [1, 2], 3, []),
    ],
)
def test_append_deletes_conflicting_suffix_and_appends_new_entries(
    prev_index, prev_term, entries, terms, last_new, persist
):
    """Rules 3 and 4: if an existing entry conflicts with a new one (same index, different
    terms), delete it and all that follow; append any new entries not already in the log.
    The Ready carrying the answer holds exactly the entries to persist."""
    s = Solo(terms=(1, 2), term=2)
    s.step(MT.APP, 2, term=3, index=prev_index, log_term=prev_term, entries=entries, commit=1)
    rd = s.flush()
    assert s.log_terms() == terms
    assert [e.index for e in rd.entries] == persist
    (resp,) = rd.messages
    assert (resp.type, resp.reject, resp.index) == (MT.APP_RESP, False, last_new)
    assert [s.storage.term(Index(i)) for i in range(2, s.storage.last_index() + 1)] == terms


@pytest.mark.parametrize(
    ("commit", "prev_index", "prev_term", "entries", "leader_commit", "expected"),
    [
        # our log: 2 (t1), 3 (t2)
        (1, 3, 2, ents(4, 2), 3, 3),
        (1, 3, 2, ents(4, 2), 10, 4),  # bounded by the last new entry
        (1, 1, 1, ents(2, 1), 3, 2),  # the last *new* entry is 2, though we also hold 3
        (1, 2, 1, (), 3, 2),
        (1, 3, 2, (), 3, 3),
        (3, 3, 2, (), 2, 3),  # commitIndex never goes back
        (1, 3, 2, (), 0, 1),
    ],
)
def test_append_sets_commit_to_min_of_leader_commit_and_last_new_entry(
    commit, prev_index, prev_term, entries, leader_commit, expected
):
    """Rule 5: if leaderCommit > commitIndex, set commitIndex = min(leaderCommit, index of
    last new entry). Newly committed entries are handed to the application in the same Ready."""
    s = Solo(terms=(1, 2), term=2, commit=commit)
    s.flush()  # a restart hands out what was committed before it
    s.step(
        MT.APP,
        2,
        term=2,
        index=prev_index,
        log_term=prev_term,
        entries=entries,
        commit=leader_commit,
    )
    rd = s.flush()
    assert s.raft.log.committed == expected
    assert [e.index for e in rd.committed_entries] == list(range(commit + 1, expected + 1))


def test_heartbeat_carries_the_leader_commit_too():
    """etcd's heartbeat is an empty AppendEntries whose commit the leader caps at the
    follower's match, so a follower can always apply it directly."""
    s = Solo(terms=(1, 2), term=2)
    s.step(MT.HEARTBEAT, 2, term=2, commit=3)
    rd = s.flush()
    assert s.raft.log.committed == 3
    assert [e.index for e in rd.committed_entries] == [2, 3]
    assert [m.type for m in rd.messages] == [MT.HEARTBEAT_RESP]


# =============================================================================================
# Figure 2, "Leaders"
# =============================================================================================


def test_leader_initializes_next_index_after_its_last_entry():
    """Volatile state on leaders: nextIndex = leader last log index + 1, matchIndex = 0."""
    s = Solo(voters=(1, 2, 3), learners=(4,), terms=(1, 1), term=1)
    s.node.campaign()
    s.step(MT.VOTE_RESP, 2, term=2)
    progress = s.node.status().progress
    for node in (2, 3, 4):
        pr = progress[NodeId(node)]
        assert (pr.match, pr.next, pr.state) == (0, 4, ProgressState.PROBE)
    assert progress[NodeId(1)].match == 4  # the leader itself holds its empty entry
    assert progress[NodeId(4)].is_learner


def test_leader_sends_heartbeats_during_idle_periods():
    """Repeat empty AppendEntries (heartbeats) during idle periods, every heartbeat_tick."""
    s = make_leader(voters=(1, 2, 3), learners=(4,), heartbeat_tick=2)
    s.tick()
    assert s.sent() == []
    s.tick()
    beats = of_type(s.sent(), MT.HEARTBEAT)
    assert sorted(m.to for m in beats) == [2, 3, 4]
    assert all(m.commit == 0 for m in beats)  # capped at what each follower is known to hold


def test_idle_cluster_keeps_its_leader():
    """... to prevent election timeouts: with heartbeats flowing, nobody ever campaigns."""
    cluster = Cluster([1, 2, 3], election_tick=ELECTION_TICK)
    leader = cluster.elect(1)
    term = leader.term
    cluster.delivered.clear()
    cluster.tick(20 * ELECTION_TICK)
    assert cluster.leader() is leader and leader.term == term
    assert not [m for m in cluster.delivered if m.type in (MT.VOTE, MT.PRE_VOTE)]
    assert of_type(cluster.delivered, MT.HEARTBEAT)


def test_leader_appends_client_entry_and_hands_it_out_only_once_committed():
    """If command received from client: append entry to local log, respond after the entry is
    applied to the state machine. The core's part: the entry is in the Ready to persist at
    once, but in ``committed_entries`` (what the driver applies, then answers) only after a
    majority holds it."""
    s = make_leader()
    s.node.propose(b"cmd")
    rd = s.flush()
    assert rd.entries == (Entry(Term(1), Index(3), data=b"cmd"),)
    assert rd.committed_entries == ()
    s.step(MT.APP_RESP, 2, term=1, index=2)  # follower 2 holds the empty entry only
    rd = s.flush()
    assert [e.index for e in rd.committed_entries] == [2]
    (app,) = of_type(rd.messages, MT.APP)
    assert (app.to, app.index, app.entries) == (2, 2, (Entry(Term(1), Index(3), data=b"cmd"),))
    s.step(MT.APP_RESP, 2, term=1, index=3)
    rd = s.flush()
    assert [(e.index, e.data) for e in rd.committed_entries] == [(3, b"cmd")]


def test_client_command_applied_everywhere_only_after_replication():
    cluster = Cluster([1, 2, 3], election_tick=ELECTION_TICK)
    cluster.elect(1)
    cluster.isolate(2)
    cluster.isolate(3)
    cluster.propose(1, b"cmd")
    assert all(s.applied == [] for s in cluster.nodes.values())
    cluster.heal()
    cluster.tick(2)
    assert all(s.applied == [b"cmd"] for s in cluster.nodes.values())


def test_follower_forwards_client_commands_and_a_leaderless_node_refuses():
    """Clients talk to the leader; a follower forwards, and a node with no leader refuses
    rather than silently losing the command."""
    cluster = Cluster([1, 2, 3], election_tick=ELECTION_TICK)
    cluster.elect(1)
    cluster.propose(2, b"via follower")
    assert all(s.applied == [b"via follower"] for s in cluster.nodes.values())
    with pytest.raises(ProposalDropped):
        Solo().node.propose(b"nobody leads")


@pytest.mark.parametrize(
    ("voters", "learners", "acks", "committed"),
    [
        ((1,), (), (), True),
        ((1, 2, 3), (), (), False),
        ((1, 2, 3), (), (2,), True),
        ((1, 2, 3), (), (2, 3), True),
        ((1, 2, 3, 4), (), (2,), False),
        ((1, 2, 3, 4), (), (2, 4), True),
        ((1, 2, 3, 4, 5), (), (2,), False),
        ((1, 2, 3, 4, 5), (), (2, 3), True),
        ((1, 2, 3), (4, 5), (4, 5), False),  # learners' acks do not count
        ((1, 2, 3), (4, 5), (3, 4), True),
    ],
)
def test_leader_commits_once_a_majority_of_voters_hold_the_entry(voters, learners, acks, committed):
    """If there exists an N > commitIndex such that a majority of matchIndex[i] >= N and
    log[N].term == currentTerm: set commitIndex = N."""
    s = make_leader(voters, learners)
    s.node.propose(b"cmd")
    for node in acks:
        s.step(MT.APP_RESP, node, term=s.term, index=3)
    assert (s.raft.log.committed == 3) is committed
    assert (3 in [e.index for e in s.flush().committed_entries]) is committed


def test_leader_updates_next_and_match_on_success_and_pipelines():
    """If successful: update nextIndex and matchIndex for the follower; further entries are
    then sent from nextIndex without waiting (REPLICATE)."""
    s = make_leader()
    s.step(MT.APP_RESP, 2, term=1, index=2)
    pr = s.node.status().progress[NodeId(2)]
    assert (pr.match, pr.next, pr.state) == (2, 3, ProgressState.REPLICATE)
    s.flush()
    apps = []
    for data in (b"a", b"b"):  # two Readies: the second append does not wait for an ack
        s.node.propose(data)
        apps += [m for m in s.sent() if m.type is MT.APP and m.to == 2]
    assert [(m.index, [e.index for e in m.entries]) for m in apps] == [(2, [3]), (3, [4])]
    assert s.node.status().progress[NodeId(2)].next == 5


@pytest.mark.parametrize(
    ("hint", "hint_term", "next_prev"),
    [
        (4, 0, 4),  # no term in the answer: the paper's plain "decrement nextIndex"
        (2, 0, 2),  # the follower's log ends at 2: jump straight there
        (3, 1, 3),  # follower has term 1 up to 3: our 3 is term 1 too, retry after it
        (3, 2, 3),  # follower's 3 is term 2; the last of ours with term <= 2 is 3
        (1, 1, 1),
    ],
)
def test_leader_decrements_next_index_on_rejection_and_retries(hint, hint_term, next_prev):
    """If AppendEntries fails because of log inconsistency: decrement nextIndex and retry,
    skipping whole terms with the follower's hint (the optimisation at the end of §5.3)."""
    s = Solo(terms=(1, 1, 2, 2), term=2)  # 2 (t1), 3 (t1), 4 (t2), 5 (t2)
    s.node.campaign()
    s.flush()
    s.step(MT.VOTE_RESP, 2, term=3)
    first = [m for m in s.sent() if m.to == 2]
    assert [(m.type, m.index, m.log_term) for m in first] == [(MT.APP, 5, 2)]
    s.step(MT.APP_RESP, 2, term=3, index=5, reject=True, reject_hint=hint, log_term=hint_term)
    (retry,) = s.sent()
    assert (retry.type, retry.to, retry.index) == (MT.APP, 2, next_prev)
    assert retry.log_term == s.raft.log.term(Index(next_prev))
    assert [e.index for e in retry.entries] == list(range(next_prev + 1, 7))


def test_leader_ignores_stale_rejections():
    s = make_leader(terms=(1, 1, 1), term=1)  # leader log 2..4 (t1), 5 (t2)
    s.step(MT.APP_RESP, 2, term=2, index=3, reject=True, reject_hint=2)  # not our probe (4)
    assert s.sent() == []
    assert s.node.status().progress[NodeId(2)].next == 5
    s.step(MT.APP_RESP, 2, term=2, index=5)  # the real answer
    s.flush()
    s.step(MT.APP_RESP, 2, term=2, index=4, reject=True, reject_hint=1)  # late, below match
    assert s.node.status().progress[NodeId(2)].match == 5
    assert [m.type for m in s.sent()] == []


@pytest.mark.parametrize("check_quorum", [False, True])
def test_leader_never_overwrites_or_deletes_its_own_entries(check_quorum):
    """Figure 3, Leader Append-Only, at the level of one leader: an append from an older
    leader carrying conflicting entries leaves the current leader's log and role alone."""
    s = make_leader(terms=(1, 1), term=1, check_quorum=check_quorum)
    s.node.propose(b"mine")
    s.flush()
    before = s.log_terms()
    assert before == [1, 1, 2, 2]
    s.step(MT.APP, 3, term=1, index=2, log_term=1, entries=ents(3, 1, 1, 1), commit=4)
    assert s.log_terms() == before
    assert (s.role(), s.term, s.raft.log.committed) == (Role.LEADER, 2, 1)


# Figure 7: the leader's log and six followers' logs (index 1 = the bootstrap entry, term 1).
FIGURE_7_LEADER = (1, 1, 1, 4, 4, 5, 5, 6, 6, 6)
FIGURE_7_FOLLOWERS = {
    "a": ((1, 1, 1, 4, 4, 5, 5, 6, 6), 1),
    "b": ((1, 1, 1, 4), 1),
    "c": ((1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6), 0),
    "d": ((1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7), 0),
    "e": ((1, 1, 1, 4, 4, 4, 4), 1),
    "f": ((1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3), 1),
}


def seed_log(cluster: Cluster, node: int, terms: Sequence[int], term: int) -> None:
    """Give ``node`` a log of ``terms`` (from index 1, which is the bootstrap entry) and a
    current term, as persisted state, then restart it from there."""
    sim = cluster.nodes[NodeId(node)]
    assert terms[0] == 1
    sim.storage.append(ents(2, *terms[1:]))
    sim.storage.set_hard_state(HardState(Term(term), NONE, Index(1)))
    cluster.restart(node)


def log_of(cluster: Cluster, node: int) -> list[int]:
    log = cluster.nodes[NodeId(node)].raft.log
    return [log.term(Index(i)) for i in range(1, log.last_index() + 1)]


@pytest.mark.parametrize("case", sorted(FIGURE_7_FOLLOWERS))
def test_figure_7_leader_brings_any_follower_log_in_line(case):
    """Figure 7: when the leader of term 8 comes to power, any of the follower logs (a)-(f)
    may be in place: missing entries (a, b), extra uncommitted entries (c, d), or both (e, f).
    The leader forces its log on each, and backtracking by term (§5.3) needs at most one
    rejected append for every one of them."""
    follower_terms, rejections = FIGURE_7_FOLLOWERS[case]
    cluster = Cluster([1, 2, 3], election_tick=ELECTION_TICK)
    seed_log(cluster, 1, FIGURE_7_LEADER, 7)
    seed_log(cluster, 2, follower_terms, max(follower_terms))
    cluster.delivered.clear()
    leader = cluster.elect(1)
    assert leader.term == 8
    expected = [*FIGURE_7_LEADER, 8]
    assert log_of(cluster, 1) == log_of(cluster, 2) == log_of(cluster, 3) == expected
    assert all(s.raft.log.committed == 11 for s in cluster.nodes.values())
    rejected = [m for m in cluster.delivered if m.type is MT.APP_RESP and m.frm == 2 and m.reject]
    assert len(rejected) == rejections


def test_leader_does_not_commit_an_earlier_term_entry_by_counting_replicas():
    """§5.4.2: only entries of the leader's current term are committed by counting replicas;
    earlier ones are committed indirectly, with the first current-term entry above them."""
    s = Solo(terms=(1,), term=1)  # entry 2 is of term 1
    s.node.campaign()
    s.step(MT.VOTE_RESP, 2, term=2)  # leader of term 2; its empty entry is 3 (t2)
    s.flush()
    s.step(MT.APP_RESP, 2, term=2, index=2)  # entry 2 is now on a majority (1 and 2)
    assert s.raft.log.committed == 1
    assert s.flush().committed_entries == ()
    s.step(MT.APP_RESP, 2, term=2, index=3)
    assert s.raft.log.committed == 3
    assert [e.index for e in s.flush().committed_entries] == [2, 3]


def figure_8_up_to_c() -> Cluster:
    """Figure 8 (a)-(c) on five servers, one entry per message, indexes shifted by one (our
    index 2 is the first leader's empty entry, so the paper's index 2 is our index 3).

    (a) S1 leads, replicates its entry 3 to S2 only. (b) S1 crashes; S5 wins with votes of S3,
    S4 and itself, appends its own entry 3 and crashes before sending it. (c) S1 restarts, wins
    a later term and gets its old entry 3 onto a majority, but not its entry 4 of the new term.
    """
    cluster = Cluster(
        [1, 2, 3, 4, 5],
        election_tick=ELECTION_TICK,
        pre_vote=False,
        check_quorum=False,
        max_size_per_msg=1,
    )
    s1 = cluster.elect(1)
    term_a = s1.term
    assert all(s.raft.log.committed == 2 for s in cluster.nodes.values())
    # (a)
    cluster.drop_rules.append(lambda m: m.type is MT.APP and m.frm == 1 and m.to != 2)
    cluster.propose(1, b"from S1")
    assert log_of(cluster, 2) == [1, term_a, term_a]
    assert log_of(cluster, 3) == [1, term_a]
    cluster.heal()
    # (b)
    cluster.crash(1)
    cluster.drop_rules.append(lambda m: m.type is MT.APP and m.frm == 5)
    s5 = cluster.elect(5)
    term_b = s5.term
    assert log_of(cluster, 5) == [1, term_a, term_b]
    cluster.crash(5)
    cluster.heal()
    # (c): S1 needs two campaigns (S3 and S4 already voted in the term right after its own)
    cluster.restart(1)
    cluster.drop_rules.append(
        lambda m: (
            m.type is MT.APP
            and m.frm == 1
            and any(e.index >= 4 for e in m.entries)
            and cluster.nodes[m.to].raft.log.last_index() >= 3
        )
    )
    cluster.campaign(1)
    s1 = cluster.elect(1)
    term_c = s1.term
    assert term_a < term_b < term_c
    for node in (1, 2, 3, 4):
        assert log_of(cluster, node)[:3] == [1, term_a, term_a]
    assert log_of(cluster, 1) == [1, term_a, term_a, term_c]
    return cluster


def test_figure_8_old_entry_on_a_majority_is_not_committed_and_may_be_overwritten():
    """Figure 8 (c)-(d): S1's entry of an earlier term sits on a majority, yet S1 must not
    count it committed, because S5 can still be elected and overwrite it everywhere."""
    cluster = figure_8_up_to_c()
    s1 = cluster.nodes[NodeId(1)]
    assert s1.raft.log.committed == 2  # on a majority, but of an earlier term
    assert all(s.applied == [] for s in cluster.nodes.values())
    # (d)
    cluster.crash(1)
    cluster.heal()
    cluster.restart(5)
    cluster.campaign(5)  # refused: everyone already voted in S5's next term
    s5 = cluster.elect(5)  # S2, S3, S4 vote for S5: its last term is newer than theirs
    term_b = log_of(cluster, 5)[2]
    for node in (2, 3, 4, 5):
        assert log_of(cluster, node) == [1, log_of(cluster, 1)[1], term_b, s5.term]
        assert cluster.nodes[NodeId(node)].raft.log.committed == 4
    assert all(b"from S1" not in s.applied for s in cluster.nodes.values())


def test_figure_8_old_entry_committed_along_with_a_current_term_entry_survives():
    """Figure 8 (e): once S1 replicates an entry of its own term to a majority, both entries
    are committed and S5 can no longer win an election."""
    cluster = figure_8_up_to_c()
    cluster.heal()
    cluster.tick(2, nodes=[1])  # heartbeats let S1 resend entry 4
    s1 = cluster.nodes[NodeId(1)]
    assert s1.raft.log.committed == 4
    assert s1.applied == [b"from S1"]
    cluster.crash(1)
    cluster.restart(5)
    for _ in range(3):
        cluster.campaign(5)
        assert cluster.nodes[NodeId(5)].role is not Role.LEADER
    cluster.elect(2)
    cluster.tick(2)
    for node in (2, 3, 4, 5):
        assert cluster.nodes[NodeId(node)].applied == [b"from S1"]


# =============================================================================================
# Figure 3: the properties Raft guarantees, checked after every step of a seeded run
# =============================================================================================


class Figure3Checker:
    """Election safety, leader append-only, log matching, leader completeness and state
    machine safety, checked against everything observable in a Cluster."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.leaders: dict[int, set[int]] = {}
        self.leader_logs: dict[tuple[int, int], list[int]] = {}
        #: index -> (term of the entry, highest term in the cluster when first seen committed)
        self.committed: dict[int, tuple[int, int]] = {}
        self.seen_delivered = 0

    def logs(self) -> dict[NodeId, list[int]]:
        """Terms of every live node's log, index 1 first (no compaction in these runs)."""
        out: dict[NodeId, list[int]] = {}
        for node_id, sim in self.cluster.nodes.items():
            if sim.alive:
                log = sim.raft.log
                assert log.first_index() == 2
                out[node_id] = [log.term(Index(i)) for i in range(1, log.last_index() + 1)]
        return out

    def check(self) -> None:
        live = [sim for sim in self.cluster.nodes.values() if sim.alive]
        logs = self.logs()
        self.election_safety(live)
        self.leader_append_only(live, logs)
        self.log_matching(logs)
        self.state_machine_safety(live)
        self.leader_completeness(live, logs)

    def election_safety(self, live: list[SimNode]) -> None:
        """At most one leader per term: by role, and by who sends leader-only messages."""
        for sim in live:
            if sim.role is Role.LEADER:
                self.leaders.setdefault(sim.term, set()).add(sim.id)
        for m in self.cluster.delivered[self.seen_delivered :]:
            if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.leaders.setdefault(m.term, set()).add(m.frm)
        self.seen_delivered = len(self.cluster.delivered)
        for term, leaders in self.leaders.items():
            assert len(leaders) <= 1, f"term {term} has leaders {sorted(leaders)}"

    def leader_append_only(self, live: list[SimNode], logs: dict[NodeId, list[int]]) -> None:
        """During its term, a leader never overwrites or deletes entries in its log."""
        for sim in live:
            if sim.role is Role.LEADER:
                key = (sim.id, sim.term)
                before = self.leader_logs.get(key, [])
                now = logs[sim.id]
                assert now[: len(before)] == before, f"leader {key} rewrote its log"
                self.leader_logs[key] = now

    def log_matching(self, logs: dict[NodeId, list[int]]) -> None:
        """Two logs with an entry of the same index and term are identical up to it."""
        ids = sorted(logs)
        for i, a in enumerate(ids):
            for b in ids[i + 1 :]:
                la, lb = logs[a], logs[b]
                common = min(len(la), len(lb))
                last_equal = max((k for k in range(common) if la[k] == lb[k]), default=-1)
                assert la[: last_equal + 1] == lb[: last_equal + 1], f"logs {a}, {b} diverge"

    def state_machine_safety(self, live: list[SimNode]) -> None:
        """No two servers commit (or apply) different entries at the same index."""
        max_term = max((sim.term for sim in live), default=0)
        for sim in live:
            log = sim.raft.log
            for index in range(2, log.committed + 1):
                term = log.term(Index(index))
                known = self.committed.setdefault(index, (term, max_term))
                assert known[0] == term, f"index {index} committed with terms {known[0]}, {term}"
        histories = [sim.applied for sim in self.cluster.nodes.values()]
        for h1 in histories:
            for h2 in histories:
                short = min(len(h1), len(h2))
                assert h1[:short] == h2[:short], "two nodes applied different commands"

    def leader_completeness(self, live: list[SimNode], logs: dict[NodeId, list[int]]) -> None:
        """An entry committed in some term is in the log of every leader of a later term."""
        for sim in live:
            if sim.role is Role.LEADER:
                terms = logs[sim.id]
                for index, (term, seen_at) in self.committed.items():
                    if sim.term > seen_at:
                        assert index <= len(terms) and terms[index - 1] == term, (
                            f"leader {sim.id} of term {sim.term} lacks committed entry {index}"
                        )


@pytest.mark.parametrize("seed", range(6))
def test_figure_3_properties_hold_under_partitions_and_crashes(seed):
    rng = random.Random(seed)
    cluster = Cluster([1, 2, 3, 4, 5], seed=seed, election_tick=ELECTION_TICK)
    checker = Figure3Checker(cluster)
    proposed = 0
    for _ in range(400):
        roll = rng.random()
        down = [n for n, s in cluster.nodes.items() if not s.alive]
        up = [n for n, s in cluster.nodes.items() if s.alive]
        if roll < 0.55:
            cluster.tick()
        elif roll < 0.75:
            leader = cluster.leader()
            if leader is not None:
                proposed += 1
                cluster.propose(leader.id, f"cmd-{proposed}".encode())
        elif roll < 0.83:
            if len(cluster.isolated) < 2:
                cluster.isolate(rng.choice(up))
        elif roll < 0.88:
            cluster.heal()
        elif roll < 0.94:
            if len(down) < 2:
                cluster.crash(rng.choice(up))
        elif down:
            cluster.restart(rng.choice(down))
        checker.check()
    # Everyone back and connected: the cluster converges on one history.
    cluster.heal()
    for node_id, sim in list(cluster.nodes.items()):
        if not sim.alive:
            cluster.restart(node_id)
    for _ in range(20 * ELECTION_TICK):
        cluster.tick()
        checker.check()
        if (
            cluster.leader() is not None
            and len({s.applied_index for s in cluster.nodes.values()}) == 1
        ):
            break
    leader = cluster.leader()
    assert leader is not None
    cluster.propose(leader.id, b"final")
    cluster.tick(2)
    checker.check()
    histories = {tuple(s.applied) for s in cluster.nodes.values()}
    assert len(histories) == 1
    (history,) = histories
    assert history[-1] == b"final"
    assert len(history) > 1 and proposed > 10  # the run actually exercised replication
    assert sum(len(v) for v in checker.leaders.values()) > 1  # and leadership changes
