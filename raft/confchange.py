"""Pure configuration changes: one server at a time, and the invariants they must keep.

``apply_conf_change`` is all of Raft's membership logic; it is a function so a table test can
cover every case. It refuses (``ConfChangeError``) instead of half-applying: a refused change
leaves the configuration exactly as it was, on every node alike, because every node applies the
same entries to the same configuration.
"""

from __future__ import annotations

from collections.abc import Callable

from raft.errors import ConfChangeError
from raft.types import ConfChange, ConfChangeType, ConfState, NodeId


def check_invariants(conf: ConfState) -> None:
    """Voters and learners are disjoint, ids are positive, and at least one voter exists."""
    if conf.voters & conf.learners:
        raise ConfChangeError(f"voters and learners overlap: {sorted(conf.voters & conf.learners)}")
    if any(node <= 0 for node in conf.members()):
        raise ConfChangeError("node ids must be positive")
    if not conf.voters:
        raise ConfChangeError("a configuration needs at least one voter")


def _add_voter(conf: ConfState, node: NodeId) -> ConfState:
    if node in conf.members():
        raise ConfChangeError(f"node {node:x} is already a member")
    return ConfState(voters=conf.voters | {node}, learners=conf.learners)


def _add_learner(conf: ConfState, node: NodeId) -> ConfState:
    if node in conf.members():
        raise ConfChangeError(f"node {node:x} is already a member")
    return ConfState(voters=conf.voters, learners=conf.learners | {node})


def _remove(conf: ConfState, node: NodeId) -> ConfState:
    if node not in conf.members():
        raise ConfChangeError(f"node {node:x} is not a member")
    if conf.voters == {node}:
        raise ConfChangeError(f"removing node {node:x} would leave no voter")
    return ConfState(voters=conf.voters - {node}, learners=conf.learners - {node})


def _update(conf: ConfState, node: NodeId) -> ConfState:
    if node not in conf.members():
        raise ConfChangeError(f"node {node:x} is not a member")
    return conf


def _promote(conf: ConfState, node: NodeId) -> ConfState:
    if node not in conf.learners:
        raise ConfChangeError(f"node {node:x} is not a learner")
    return ConfState(voters=conf.voters | {node}, learners=conf.learners - {node})


_CHANGES: dict[ConfChangeType, Callable[[ConfState, NodeId], ConfState]] = {
    ConfChangeType.ADD_VOTER: _add_voter,
    ConfChangeType.ADD_LEARNER: _add_learner,
    ConfChangeType.REMOVE: _remove,
    ConfChangeType.UPDATE: _update,
    ConfChangeType.PROMOTE: _promote,
}


def apply_conf_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The configuration after ``change``, or ConfChangeError with ``conf`` untouched."""
    new = _CHANGES[change.type](conf, change.node_id)
    check_invariants(new)
    return new
