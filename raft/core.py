"""The Raft state machine: roles, elections, replication, conf changes, ReadIndex, transfer.

No I/O and no clock. Inputs are ``tick()`` and ``step(message)``; outputs accumulate in
``msgs``, ``read_states`` and ``rejected`` plus the log's unstable tail, and ``RawNode`` hands
them out as a Ready. The role-specific behaviour is a bound method swapped on every role change
(``self._step = self._step_leader``), so each role's rules read as one function.

Departures from the textbook, all from etcd-io/raft's experience:
* PreVote and CheckQuorum (with the follower lease) keep a partitioned or removed node from
  disrupting a healthy cluster with ever higher terms.
* Conf changes are single-server and take effect when *applied*; a leader accepts one only when
  the previous one is applied and it has committed an entry of its own term.
* Unlike etcd, a second pending conf change is refused with an explicit error (a local
  exception, or a PROP_REJECT message back to the follower that forwarded it), never silently
  replaced by an empty entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from raft import confchange
from raft.config import Config
from raft.errors import CompactedError, ConfChangeInProgress, ProposalDropped
from raft.log import RaftLog
from raft.quorum import VoteResult
from raft.readonly import ReadOnly, ReadRequest
from raft.storage import Storage
from raft.tracker import ProgressState, ProgressTracker
from raft.types import (
    CAMPAIGN_TRANSFER,
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Index,
    Message,
    MessageType,
    NodeId,
    ReadState,
    RejectedProposal,
    Role,
    Snapshot,
    SoftState,
    Term,
)

log = logging.getLogger(__name__)

MT = MessageType

#: Ticks a progress may sit in SNAPSHOT state before the leader assumes the snapshot was lost.
SNAPSHOT_RETRY_ELECTIONS = 2

_ZERO_INDEX = Index(0)
_ZERO_TERM = Term(0)


class Raft:
    def __init__(self, config: Config, storage: Storage) -> None:
        self.id = config.id
        self.cfg = config
        self.log = RaftLog(storage, config.max_committed_size_per_ready)
        hard_state, conf_state = storage.initial_state()
        self.tracker = ProgressTracker(config.max_inflight_msgs)
        self.tracker.set_conf(conf_state, Index(self.log.last_index() + 1))
        self.is_learner = self.id in conf_state.learners

        self.term = hard_state.term
        self.vote = hard_state.vote
        if hard_state.commit:
            self.log.commit_to(hard_state.commit)
        if config.applied:
            self.log.applied_to(config.applied)

        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.rejected: list[RejectedProposal] = []
        self.read_only = ReadOnly()
        #: ReadIndex requests that arrived before this leader committed an entry of its term.
        self.pending_reads: list[Message] = []

        self.lead = NONE
        self.role = Role.FOLLOWER
        self.append_pending = False
        #: A TimeoutNow that arrived while a committed conf change was still unapplied (e.g. the
        #: removal of the leader that sent it): honoured once the application has applied it.
        self.deferred_timeout_now: Term | None = None
        #: Set while stepping a request of the local application (see step_local).
        self._local = False
        self.lead_transferee = NONE
        self.pending_conf_index = Index(0)
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = config.election_tick
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election
        self.become_follower(self.term, NONE)

    # ------------------------------------------------------------------ state views

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, role=self.role)

    def promotable(self) -> bool:
        """Only a voter with a known place in the log may campaign."""
        return self.id in self.tracker.voters

    def committed_in_term(self) -> bool:
        return self.log.term_or_zero(self.log.committed) == self.term

    # ------------------------------------------------------------------ sending

    def _send(self, m: Message) -> None:
        self.msgs.append(m)

    def _reply(
        self,
        to: NodeId,
        kind: MessageType,
        *,
        index: Index = _ZERO_INDEX,
        log_term: Term = _ZERO_TERM,
        entries: tuple[Entry, ...] = (),
        commit: Index = _ZERO_INDEX,
        snapshot: Snapshot | None = None,
        reject: bool = False,
        reject_hint: Index = _ZERO_INDEX,
        context: bytes = b"",
    ) -> None:
        """Send a message of this node's current term."""
        self._send(
            Message(
                type=kind,
                to=to,
                frm=self.id,
                term=self.term,
                log_term=log_term,
                index=index,
                entries=entries,
                commit=commit,
                snapshot=snapshot,
                reject=reject,
                reject_hint=reject_hint,
                context=context,
            )
        )

    def _send_append(self, to: NodeId, send_if_empty: bool = True) -> bool:
        """Send what ``to`` lacks (entries or a snapshot), within flow control."""
        pr = self.tracker.progress[to]
        if pr.is_paused():
            return False
        prev_index = Index(pr.next - 1)
        try:
            prev_term = self.log.term(prev_index)
            entries = self.log.entries_from(pr.next, self.cfg.max_size_per_msg)
        except CompactedError:
            return self._send_snapshot(to)
        if not entries and not send_if_empty:
            return False
        self._reply(
            to,
            MT.APP,
            index=prev_index,
            log_term=prev_term,
            entries=tuple(entries),
            commit=self.log.committed,
        )
        pr.sent_entries(Index(prev_index + len(entries)), len(entries))
        return True

    def _send_snapshot(self, to: NodeId) -> bool:
        pr = self.tracker.progress[to]
        if not pr.recent_active:
            return False  # it may be down; don't ship a snapshot into the void
        snapshot = self.log.snapshot()
        if snapshot.is_empty():
            raise AssertionError("need a snapshot but the storage has none")
        pr.become_snapshot(snapshot.metadata.index)
        self._reply(to, MT.SNAP, snapshot=snapshot)
        return True

    def _bcast_append(self) -> None:
        for node, _ in self.tracker.items():
            if node != self.id:
                self._send_append(node)

    def _bcast_heartbeat(self, ctx: bytes = b"") -> None:
        for node, pr in self.tracker.items():
            if node != self.id:
                commit = Index(min(pr.match, self.log.committed))
                self._reply(node, MT.HEARTBEAT, commit=commit, context=ctx)

    # ------------------------------------------------------------------ role changes

    def _reset(self, term: Term) -> None:
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.deferred_timeout_now = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        jitter = self.cfg.rng.randrange(self.cfg.election_tick)
        self.randomized_election_timeout = self.cfg.election_tick + jitter
        self.lead_transferee = NONE
        self.tracker.reset_votes()
        self.tracker.reset_progress(Index(self.log.last_index() + 1))
        own = self.tracker.progress.get(self.id)
        if own is not None:
            own.match = self.log.last_index()
        self.pending_conf_index = Index(0)
        self.read_only.reset()
        self.pending_reads = []

    def become_follower(self, term: Term, lead: NodeId) -> None:
        self._step = self._step_follower
        self._tick = self._tick_election
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        # Neither term nor vote change: a pre-election that fails leaves no trace.
        self._step = self._step_candidate
        self._tick = self._tick_election
        self.tracker.reset_votes()
        self.lead = NONE
        self.role = Role.PRE_CANDIDATE

    def _become_candidate(self) -> None:
        self._step = self._step_candidate
        self._tick = self._tick_election
        self._reset(Term(self.term + 1))
        self.vote = self.id
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        self._step = self._step_leader
        self._tick = self._tick_heartbeat
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        self.tracker.progress[self.id].become_replicate()
        # The empty entry commits the log of earlier terms (§5.4.2). Until it is applied, no
        # conf change is accepted (the 2015 single-server-change fix).
        self._append_entries([Entry(Term(0), Index(0))])
        self.pending_conf_index = self.log.last_index()
        log.debug("%x became leader at term %d", self.id, self.term)

    # ------------------------------------------------------------------ ticking

    def tick(self) -> None:
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(type=MT.HUP, frm=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                self.step(Message(type=MT.CHECK_QUORUM, frm=self.id))
            if self.role is Role.LEADER and self.lead_transferee != NONE:
                self._abort_leader_transfer()  # the transferee did not take over in time
                if self.id not in self.tracker.voters:
                    log.info("%x steps down: the handover after its removal timed out", self.id)
                    self.become_follower(self.term, NONE)
        if self.role is not Role.LEADER:
            return
        for _, pr in self.tracker.items():
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_ticks += 1
                if pr.snapshot_ticks > SNAPSHOT_RETRY_ELECTIONS * self.cfg.election_tick:
                    pr.become_probe()  # assume the snapshot was lost; probe and resend
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self.step(Message(type=MT.BEAT, frm=self.id))

    # ------------------------------------------------------------------ stepping

    def step_local(self, m: Message) -> None:
        """Step a request of this node's own application: a refusal raises to the caller. A
        message from a peer never raises, even one that started here and was forwarded back."""
        self._local = True
        try:
            self.step(m)
        finally:
            self._local = False

    def step(self, m: Message) -> None:
        if m.type in (MT.VOTE_RESP, MT.PRE_VOTE_RESP):
            self._learn_commit(m)  # timeless knowledge: safe even from a stale response
        if not self._check_term(m):
            return
        if m.type is MT.HUP:
            self._hup(transfer=False)
        elif m.type in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        elif m.type is MT.PROP_REJECT:
            self.rejected.extend(
                RejectedProposal(e.type, e.data, e.change, m.context.decode(errors="replace"))
                for e in m.entries
            )
        else:
            self._step(m)

    def _check_term(self, m: Message) -> bool:
        """The term rules common to all roles; False when the message is to be dropped."""
        if m.term == 0 or m.term == self.term:
            return True
        if m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                transfer = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.cfg.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.cfg.election_tick
                )
                if in_lease and not transfer:
                    return False  # we heard from a live leader recently: don't be disrupted
            if m.type is MT.PRE_VOTE or (m.type is MT.PRE_VOTE_RESP and not m.reject):
                return True  # pre-votes never change terms; a granted one carries term + 1
            leader = m.frm if m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP) else NONE
            self.become_follower(m.term, leader)
            return True
        # A lower term. With CheckQuorum or PreVote, a node whose term ran ahead during a
        # partition may never get a vote through; answering a stale leader makes it step
        # down, and answering a stale pre-candidate lets it learn the term.
        if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
            self._reply(m.frm, MT.APP_RESP)
        elif m.type in (MT.PRE_VOTE, MT.VOTE):
            # Figure 2: reply false with our term. A candidate that never learns the term it
            # lags behind keeps campaigning in terms that are already decided.
            kind = MT.PRE_VOTE_RESP if m.type is MT.PRE_VOTE else MT.VOTE_RESP
            self._reply(m.frm, kind, reject=True)
        return False

    def _learn_commit(self, m: Message) -> None:
        """Vote responses carry the responder's commit index and the term of that entry. Where
        our log holds the same entry, log matching makes our prefix identical and committed.

        Without this, removing the leader of a two-voter cluster can wedge: the remaining
        voter may never hear that the removal committed, so it still needs the removed node's
        vote, which the removed node, holding a longer log, refuses forever."""
        if m.commit > self.log.committed and self.log.match_term(m.commit, m.log_term):
            self.log.commit_to(m.commit)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (
            self.vote == m.frm
            or (self.vote == NONE and self.lead == NONE)
            or (m.type is MT.PRE_VOTE and m.term > self.term)
        )
        response = MT.VOTE_RESP if m.type is MT.VOTE else MT.PRE_VOTE_RESP
        grant = can_vote and self.log.is_up_to_date(m.index, m.log_term)
        commit = self.log.committed
        self._send(
            Message(
                type=response,
                to=m.frm,
                frm=self.id,
                # A granted response carries the candidate's term, so a pre-candidate counts it.
                term=m.term if grant else self.term,
                reject=not grant,
                commit=commit,
                log_term=self.log.term_or_zero(commit),
            )
        )
        if grant and m.type is MT.VOTE:
            self.election_elapsed = 0
            self.vote = m.frm

    # ------------------------------------------------------------------ elections

    def resume_deferred_transfer(self) -> None:
        """Called after the application applied entries: run a deferred TimeoutNow."""
        if self.deferred_timeout_now is None or self._has_unapplied_conf_change():
            return
        term, self.deferred_timeout_now = self.deferred_timeout_now, None
        if term == self.term and self.role is Role.FOLLOWER:
            self._hup(transfer=True)

    def _has_unapplied_conf_change(self) -> bool:
        lo = Index(max(self.log.applied + 1, self.log.first_index()))
        hi = Index(self.log.committed + 1)
        return any(e.type is EntryType.CONF_CHANGE for e in self.log.slice(lo, hi))

    def _hup(self, transfer: bool) -> None:
        if self.role is Role.LEADER or not self.promotable():
            return
        if self._has_unapplied_conf_change():
            log.debug("%x cannot campaign: a committed conf change is not applied", self.id)
            return
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            kind, term = MT.PRE_VOTE, Term(self.term + 1)
        else:
            self._become_candidate()
            kind, term = MT.VOTE, self.term
        self.tracker.record_vote(self.id, True)
        if self.tracker.vote_result() is VoteResult.WON:
            self._won_election(pre)
            return
        context = CAMPAIGN_TRANSFER if transfer else b""
        for node in sorted(self.tracker.voters):
            if node != self.id:
                self._send(
                    Message(
                        type=kind,
                        to=node,
                        frm=self.id,
                        term=term,
                        index=self.log.last_index(),
                        log_term=self.log.last_term(),
                        context=context,
                    )
                )

    def _won_election(self, pre: bool) -> None:
        if pre:
            self._campaign(pre=False, transfer=False)
        else:
            self._become_leader()
            self._bcast_append()

    # ------------------------------------------------------------------ proposals

    def _append_entries(self, entries: Sequence[Entry]) -> None:
        last = self.log.last_index()
        stamped = [
            Entry(self.term, Index(last + i + 1), e.type, e.data, e.change)
            for i, e in enumerate(entries)
        ]
        self.log.append(stamped)
        self.tracker.progress[self.id].maybe_update(self.log.last_index())
        self._maybe_commit()

    def _refuse_proposal(self, m: Message, error: ProposalDropped) -> None:
        """A local proposal raises; a forwarded one goes back to its sender as PROP_REJECT."""
        if self._local:
            raise error
        if m.frm == self.id:  # our own proposal, forwarded back to us: no message to self
            self.rejected.extend(
                RejectedProposal(e.type, e.data, e.change, str(error)) for e in m.entries
            )
            return
        self._send(
            Message(
                type=MT.PROP_REJECT,
                to=m.frm,
                frm=self.id,
                entries=m.entries,
                context=str(error).encode(),
            )
        )

    def _leader_propose(self, m: Message) -> None:
        if self.id not in self.tracker.progress:
            self._refuse_proposal(m, ProposalDropped("this node was removed from the cluster"))
            return
        if self.lead_transferee != NONE:
            self._refuse_proposal(m, ProposalDropped("leadership transfer in progress"))
            return
        changes = [i for i, e in enumerate(m.entries) if e.type is EntryType.CONF_CHANGE]
        if changes:
            if len(changes) > 1:
                self._refuse_proposal(m, ConfChangeInProgress("one conf change at a time"))
                return
            if self.pending_conf_index > self.log.applied:
                self._refuse_proposal(
                    m,
                    ConfChangeInProgress(
                        "a conf change is already pending (proposed but not yet applied)"
                    ),
                )
                return
            self.pending_conf_index = Index(self.log.last_index() + changes[0] + 1)
        self._append_entries(m.entries)
        # Replicate when the Ready is collected, so proposals drained from one inbox batch
        # travel to each follower as one append instead of one message each.
        self.append_pending = True

    def flush_appends(self) -> None:
        if self.append_pending:
            self.append_pending = False
            if self.role is Role.LEADER:
                self._bcast_append()

    # ------------------------------------------------------------------ role step functions

    def _step_leader(self, m: Message) -> None:
        handler = self._leader_handlers.get(m.type)
        if handler is not None:
            handler(self, m)
            return
        pr = self.tracker.progress.get(m.frm)
        if pr is None:
            return  # a response from a node no longer (or not yet) in the configuration
        pr.recent_active = True
        if m.type is MT.APP_RESP:
            self._leader_append_response(m)
        elif m.type is MT.HEARTBEAT_RESP:
            self._leader_heartbeat_response(m)

    def _leader_beat(self, m: Message) -> None:
        self._bcast_heartbeat(self.read_only.last_pending_ctx())

    def _leader_check_quorum(self, m: Message) -> None:
        own = self.tracker.progress.get(self.id)
        if own is not None:
            own.recent_active = True
        if not self.tracker.quorum_active():
            log.info("%x stepped down: no quorum heard from in an election timeout", self.id)
            self.become_follower(self.term, NONE)
            return
        for node, pr in self.tracker.items():
            pr.recent_active = node == self.id

    def _leader_read_index(self, m: Message) -> None:
        if self.tracker.voters == {self.id}:
            self._answer_read(ReadRequest(m.context, self.log.committed, m.frm))
            return
        if not self.committed_in_term():
            self.pending_reads.append(m)  # answered once our first entry commits
            return
        if self.read_only.add(m.context, self.log.committed, m.frm, self.id):
            self._bcast_heartbeat(m.context)

    def _answer_read(self, request: ReadRequest) -> None:
        if request.requester in (self.id, NONE):
            self.read_states.append(ReadState(request.index, request.ctx))
        else:
            self._reply(
                request.requester, MT.READ_INDEX_RESP, index=request.index, context=request.ctx
            )

    def _leader_transfer(self, m: Message) -> None:
        transferee = m.frm
        if transferee not in self.tracker.voters:
            return  # learners and strangers are never transferees
        if transferee == self.id or transferee == self.lead_transferee:
            return
        self._abort_leader_transfer()
        self.election_elapsed = 0  # the transfer must finish within one election timeout
        self.lead_transferee = transferee
        if self.tracker.progress[transferee].match == self.log.last_index():
            self._send_timeout_now(transferee)
        else:
            self._send_append(transferee)

    def _send_timeout_now(self, transferee: NodeId) -> None:
        self._reply(transferee, MT.TIMEOUT_NOW)
        if self.id not in self.tracker.voters:
            # A removed leader's job ends here: the transferee campaigns among the remaining
            # voters, who will never tell us about the new term.
            self.become_follower(self.term, NONE)

    def _abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    def _leader_append_response(self, m: Message) -> None:
        pr = self.tracker.progress[m.frm]
        if m.reject:
            hint = m.reject_hint
            if m.log_term > 0:
                hint, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, hint):
                if pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.frm)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT:
            if pr.match + 1 >= self.log.first_index():
                pr.become_probe()
                pr.become_replicate()
        else:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._bcast_append()
        elif was_paused:
            self._send_append(m.frm)
        while self._send_append(m.frm, send_if_empty=False):
            pass
        if m.frm == self.lead_transferee and pr.match == self.log.last_index():
            self._send_timeout_now(m.frm)

    def _leader_heartbeat_response(self, m: Message) -> None:
        pr = self.tracker.progress[m.frm]
        pr.probe_sent = False
        if pr.state is ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.match < self.log.last_index():
            self._send_append(m.frm)
        if m.context:
            for request in self.read_only.ack(m.context, m.frm, self.tracker.voters):
                self._answer_read(request)

    def _maybe_commit(self) -> bool:
        had_commit_in_term = self.committed_in_term()
        if not self.log.maybe_commit(self.tracker.committed(), self.term):
            return False
        if not had_commit_in_term and self.pending_reads:
            pending, self.pending_reads = self.pending_reads, []
            for m in pending:
                self._leader_read_index(m)
        return True

    _leader_handlers: dict[MessageType, Callable[[Raft, Message], None]] = {
        MT.BEAT: _leader_beat,
        MT.CHECK_QUORUM: _leader_check_quorum,
        MT.PROP: _leader_propose,
        MT.READ_INDEX: _leader_read_index,
        MT.TRANSFER_LEADER: _leader_transfer,
    }

    def _step_candidate(self, m: Message) -> None:
        if m.type is MT.PROP:
            self._refuse_proposal(m, ProposalDropped("no leader (election in progress)"))
        elif m.type is MT.READ_INDEX and self._local:
            raise ProposalDropped("no leader (election in progress)")
        elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.become_follower(m.term, m.frm)  # a leader of our term exists
            self._step_follower(m)
        elif m.type in (MT.VOTE_RESP, MT.PRE_VOTE_RESP):
            expected = MT.PRE_VOTE_RESP if self.role is Role.PRE_CANDIDATE else MT.VOTE_RESP
            if m.type is not expected:
                return
            self.tracker.record_vote(m.frm, not m.reject)
            result = self.tracker.vote_result()
            if result is VoteResult.WON:
                self._won_election(pre=self.role is Role.PRE_CANDIDATE)
            elif result is VoteResult.LOST:
                self.become_follower(self.term, NONE)

    def _step_follower(self, m: Message) -> None:
        if m.type is MT.PROP:
            if self.lead == NONE:
                self._refuse_proposal(m, ProposalDropped("no leader"))
            else:
                self._send(Message(type=MT.PROP, to=self.lead, frm=m.frm, entries=m.entries))
        elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.election_elapsed = 0
            self.lead = m.frm
            if m.type is MT.APP:
                self._handle_append(m)
            elif m.type is MT.HEARTBEAT:
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif m.type is MT.TRANSFER_LEADER:
            if self.lead != NONE:
                self._send(Message(type=m.type, to=self.lead, frm=m.frm, term=self.term))
        elif m.type is MT.TIMEOUT_NOW:
            if self._has_unapplied_conf_change():
                self.deferred_timeout_now = self.term
            else:
                self._hup(transfer=True)
        elif m.type is MT.READ_INDEX:
            if self.lead == NONE:
                if self._local:
                    raise ProposalDropped("no leader to serve a ReadIndex")
                return
            self._send(Message(type=MT.READ_INDEX, to=self.lead, frm=m.frm, context=m.context))
        elif m.type is MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    # ------------------------------------------------------------------ follower handlers

    def _handle_append(self, m: Message) -> None:
        if m.index < self.log.committed:
            self._reply(m.frm, MT.APP_RESP, index=self.log.committed)
            return
        last = self.log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last is not None:
            self._reply(m.frm, MT.APP_RESP, index=last)
            return
        # Tell the leader where our log could plausibly match, skipping whole terms (§5.3).
        hint_index = Index(min(m.index, self.log.last_index()))
        hint_index, hint_term = self.log.find_conflict_by_term(hint_index, m.log_term)
        self._reply(
            m.frm,
            MT.APP_RESP,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._reply(m.frm, MT.HEARTBEAT_RESP, context=m.context)

    def _handle_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        if self.restore(m.snapshot):
            self._reply(m.frm, MT.APP_RESP, index=self.log.last_index())
        else:
            self._reply(m.frm, MT.APP_RESP, index=self.log.committed)

    def restore(self, snapshot: Snapshot) -> bool:
        """Install a leader's snapshot; False if it brings nothing new."""
        meta = snapshot.metadata
        if meta.index <= self.log.committed:
            return False
        if self.log.match_term(meta.index, meta.term):
            # We already hold this prefix: just learn that it is committed.
            self.log.commit_to(meta.index)
            return False
        self.log.restore(snapshot)
        self._switch_to_config(meta.conf_state)
        self.tracker.reset_progress(Index(self.log.last_index() + 1))
        return True

    # ------------------------------------------------------------------ configuration

    def apply_conf_change(self, change: ConfChange) -> ConfState:
        """Apply a committed conf change (raises ConfChangeError, changing nothing)."""
        new = confchange.apply_conf_change(self.tracker.conf_state(), change)
        self._switch_to_config(new)
        return new

    def _switch_to_config(self, conf: ConfState) -> None:
        self.tracker.set_conf(conf, Index(self.log.last_index() + 1))
        self.is_learner = self.id in conf.learners
        if self.role in (Role.CANDIDATE, Role.PRE_CANDIDATE) and not self.promotable():
            self.become_follower(self.term, NONE)  # a campaign for a seat we no longer hold
            return
        if self.role is not Role.LEADER:
            return
        if self.lead_transferee != NONE and self.lead_transferee not in conf.voters:
            self._abort_leader_transfer()
        # A smaller quorum may commit more; new members need the log.
        if self._maybe_commit():
            self._bcast_append()
        else:
            for node, pr in self.tracker.items():
                if node != self.id and pr.match == 0:
                    self._send_append(node)
        if self.id not in conf.voters:
            self._hand_over()

    def _hand_over(self) -> None:
        """This leader was removed (or demoted): it no longer counts toward commit, takes no
        proposals, and hands leadership to the most up-to-date voter with TimeoutNow, so the
        cluster is not leaderless for an election timeout (spec §6, D7). If the handover does
        not happen within an election timeout, it steps down anyway."""
        best = max(self.tracker.voters, key=lambda v: (self.tracker.progress[v].match, -v))
        log.info("%x is no longer a voter: handing leadership to %x", self.id, best)
        self._leader_transfer(Message(type=MT.TRANSFER_LEADER, frm=best))
