"""The replicated state machine of raftnode: the cluster membership, fed by committed entries.

It is the ``StateMachine`` the driver applies entries to. Conf-change entries go through
``next_membership`` first (etcd's apply-time checks) and, only if the membership accepts them,
through Raft's ``apply_conf_change``; so a refused change leaves both the membership and Raft's
voter/learner sets untouched, on every node alike. Publish entries set a member's name and client
URLs. Every apply answers the request that proposed it with the new membership or the error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from node.codec import CodecError, decode, encode
from node.domain_errors import EtcdError
from node.driver import Applied
from node.entries import ChangeRequest, PublishRequest
from node.membership import Membership, apply_publish, next_membership
from raft import ConfChange, ConfChangeError, ConfState, Entry, EntryType

log = logging.getLogger(__name__)

MembershipListener = Callable[[Membership, Membership], None]


class ConfigurationMismatch(Exception):
    """Raft refused a change the membership accepted: the two views disagree (a bug)."""


class MembershipMachine:
    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        self._listeners: list[MembershipListener] = []

    def add_listener(self, listener: MembershipListener) -> None:
        """Called with (old, new) after every change that took effect."""
        self._listeners.append(listener)

    def _set(self, new: Membership) -> None:
        old, self.membership = self.membership, new
        if new != old:
            for listener in self._listeners:
                listener(old, new)

    # -- the driver's StateMachine protocol --

    def apply(self, entry: Entry, apply_conf_change: Callable[[ConfChange], ConfState]) -> Applied:
        if entry.type is EntryType.CONF_CHANGE:
            assert entry.change is not None
            return self._apply_change(entry.change, apply_conf_change)
        if not entry.data:
            return Applied(None, None)  # a leader's empty entry
        try:
            publish = decode(entry.data, PublishRequest)
        except CodecError as exc:
            log.error("skipping an undecodable entry at %d: %s", entry.index, exc)
            return Applied(None, None)
        self._set(
            apply_publish(self.membership, publish.member_id, publish.name, publish.client_urls)
        )
        return Applied(publish.request_id, self.membership)

    def _apply_change(
        self, change: ConfChange, apply_conf_change: Callable[[ConfChange], ConfState]
    ) -> Applied:
        try:
            request = decode(change.context, ChangeRequest)
        except CodecError as exc:
            log.error("skipping an undecodable conf change: %s", exc)
            return Applied(None, ConfigurationMismatch(str(exc)))
        try:
            new = next_membership(self.membership, request.change)
        except EtcdError as exc:
            return Applied(request.request_id, exc)
        try:
            apply_conf_change(change)
        except ConfChangeError as exc:
            log.error("raft refused a change the membership accepted: %s", exc)
            return Applied(request.request_id, ConfigurationMismatch(str(exc)))
        self._set(new)
        return Applied(request.request_id, new)

    def request_id(self, data: bytes, change: ConfChange | None) -> int | None:
        try:
            if change is not None:
                return decode(change.context, ChangeRequest).request_id
            return decode(data, PublishRequest).request_id
        except CodecError:
            return None

    def snapshot(self) -> bytes:
        return encode(self.membership)

    def restore(self, data: bytes) -> None:
        self._set(decode(data, Membership))
