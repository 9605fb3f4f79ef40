"""The Ready batch: everything the core wants done, handed out in one piece.

The driver handles a Ready in this fixed order, and the order is the safety argument:

1. **Persist** ``snapshot`` (if not empty), then ``entries`` and ``hard_state`` (if not None), and
   make them durable (fsync) as one group when ``must_sync``. A vote or an appended entry that is
   acknowledged to a peer must survive a crash, so nothing may leave the node before this step
   completes.
2. **Send** ``messages``. Only now, because they may acknowledge what step 1 wrote.
3. **Apply** ``committed_entries`` in order; for a conf-change entry call
   ``RawNode.apply_conf_change`` (or skip it when the application rejects the change; the core only
   needs ``advance`` to learn the entry was applied). Install ``snapshot`` into the state machine
   first if one is present.
4. **Advance**: ``RawNode.advance(ready)`` tells the core all of the above is done.

``soft_state``, ``read_states`` and ``rejected_proposals`` are notifications; they need no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from raft.types import (
    Entry,
    HardState,
    Message,
    ReadState,
    RejectedProposal,
    Snapshot,
    SoftState,
)


@dataclass(frozen=True, slots=True)
class Ready:
    #: Set when leader or role changed since the last Ready.
    soft_state: SoftState | None
    #: Set when term, vote or commit changed since the last Ready; persist before sending.
    hard_state: HardState | None
    #: Unstable entries to append to storage; persist before sending.
    entries: tuple[Entry, ...]
    #: A snapshot received from the leader, to persist and install.
    snapshot: Snapshot | None
    #: Entries known committed and not yet handed out; apply in order after persisting.
    committed_entries: tuple[Entry, ...]
    #: Outgoing messages; send only after the persist step.
    messages: tuple[Message, ...]
    #: Answers to read_index() requests.
    read_states: tuple[ReadState, ...]
    #: Proposals this node forwarded and the leader refused.
    rejected_proposals: tuple[RejectedProposal, ...]
    #: Whether step 1 needs an fsync: new entries, a snapshot, or a new term or vote. A change of
    #: the commit index alone may be written without one: it is volatile in the Raft paper and
    #: a restart learns it again from the leader (as in etcd).
    must_sync: bool = True

    def is_empty(self) -> bool:
        return not (
            self.soft_state
            or self.hard_state
            or self.entries
            or self.snapshot
            or self.committed_entries
            or self.messages
            or self.read_states
            or self.rejected_proposals
        )
