"""Layer (a): single-server membership changes (raft/confchange.py) as one table.

Every ConfChangeType meets every situation that matters for it (a new id, an existing voter, an
existing learner, the last voter). A row gives either the resulting configuration or the
refusal; the input configuration must come out untouched either way (P11), and every result must
pass ``check_invariants``.
"""

from __future__ import annotations

import copy

import pytest

from raft import (
    ConfChange,
    ConfChangeError,
    ConfChangeType,
    Config,
    ConfState,
    MemoryStorage,
    NodeId,
    RawNode,
    apply_conf_change,
    bootstrap_snapshot,
    check_invariants,
)

ADD_VOTER = ConfChangeType.ADD_VOTER
ADD_LEARNER = ConfChangeType.ADD_LEARNER
REMOVE = ConfChangeType.REMOVE
UPDATE = ConfChangeType.UPDATE
PROMOTE = ConfChangeType.PROMOTE


def conf(voters: tuple[int, ...], learners: tuple[int, ...] = ()) -> ConfState:
    return ConfState(
        voters=frozenset(NodeId(v) for v in voters),
        learners=frozenset(NodeId(v) for v in learners),
    )


#: Voters 1, 2, 3 and learner 4; 9 is a stranger.
BASE = conf((1, 2, 3), (4,))
#: The smallest legal configuration, plus a learner.
SOLO = conf((1,), (4,))

#: (id, start, change type, node, expected result or the refusal's message fragment)
TABLE: list[tuple[str, ConfState, ConfChangeType, int, ConfState | str]] = [
    # ADD_VOTER
    ("add-voter/new", BASE, ADD_VOTER, 9, conf((1, 2, 3, 9), (4,))),
    ("add-voter/existing-voter", BASE, ADD_VOTER, 2, "already a member"),
    ("add-voter/existing-learner", BASE, ADD_VOTER, 4, "already a member"),
    ("add-voter/to-solo", SOLO, ADD_VOTER, 9, conf((1, 9), (4,))),
    # ADD_LEARNER
    ("add-learner/new", BASE, ADD_LEARNER, 9, conf((1, 2, 3), (4, 9))),
    ("add-learner/existing-learner", BASE, ADD_LEARNER, 4, "already a member"),
    ("add-learner/existing-voter", BASE, ADD_LEARNER, 2, "already a member"),
    ("add-learner/last-voter", SOLO, ADD_LEARNER, 1, "already a member"),
    # REMOVE
    ("remove/voter", BASE, REMOVE, 2, conf((1, 3), (4,))),
    ("remove/learner", BASE, REMOVE, 4, conf((1, 2, 3))),
    ("remove/unknown", BASE, REMOVE, 9, "not a member"),
    ("remove/last-voter", SOLO, REMOVE, 1, "no voter"),
    ("remove/last-voter-alone", conf((1,)), REMOVE, 1, "no voter"),
    ("remove/learner-beside-last-voter", SOLO, REMOVE, 4, conf((1,))),
    ("remove/down-to-one-voter", conf((1, 2)), REMOVE, 1, conf((2,))),
    # UPDATE: data only, the sets stay
    ("update/voter", BASE, UPDATE, 2, BASE),
    ("update/learner", BASE, UPDATE, 4, BASE),
    ("update/last-voter", SOLO, UPDATE, 1, SOLO),
    ("update/unknown", BASE, UPDATE, 9, "not a member"),
    # PROMOTE
    ("promote/learner", BASE, PROMOTE, 4, conf((1, 2, 3, 4))),
    ("promote/learner-to-solo", SOLO, PROMOTE, 4, conf((1, 4))),
    ("promote/voter", BASE, PROMOTE, 2, "not a learner"),
    ("promote/unknown", BASE, PROMOTE, 9, "not a learner"),
]


def test_table_covers_every_change_type():
    assert {row[2] for row in TABLE} == set(ConfChangeType)


@pytest.mark.parametrize(
    ("start", "kind", "node", "expected"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_apply_conf_change(start, kind, node, expected):
    before = copy.deepcopy(start)
    change = ConfChange(kind, NodeId(node), context=b"member record")
    if isinstance(expected, str):
        with pytest.raises(ConfChangeError, match=expected):
            apply_conf_change(start, change)
    else:
        result = apply_conf_change(start, change)
        assert result == expected
        check_invariants(result)
        assert not (result.voters & result.learners)
    assert start == before  # untouched, whatever happened


@pytest.mark.parametrize(
    ("state", "message"),
    [
        (conf((1,)), None),
        (conf((1, 2, 3), (4, 5)), None),
        (conf((), (4,)), "at least one voter"),
        (conf(()), "at least one voter"),
        (conf((0, 1)), "positive"),
        (conf((1,), (-3,)), "positive"),
    ],
)
def test_check_invariants(state, message):
    if message is None:
        check_invariants(state)
    else:
        with pytest.raises(ConfChangeError, match=message):
            check_invariants(state)


def test_check_invariants_catches_overlap_even_past_the_constructor():
    """ConfState refuses overlap when built; check_invariants must not rely on that alone."""
    with pytest.raises(ValueError, match="overlap"):
        conf((1, 2), (2,))
    smuggled = conf((1, 2))
    object.__setattr__(smuggled, "learners", frozenset({NodeId(2)}))
    with pytest.raises(ConfChangeError, match="overlap"):
        check_invariants(smuggled)


def test_conf_change_refuses_non_positive_ids():
    with pytest.raises(ValueError, match="positive"):
        ConfChange(ADD_VOTER, NodeId(0))


def test_raw_node_leaves_its_configuration_untouched_on_a_refused_change():
    """The core's apply path (what the driver calls on commit) inherits the all-or-nothing rule."""
    storage = MemoryStorage()
    storage.apply_snapshot(bootstrap_snapshot(frozenset({NodeId(1), NodeId(2)})))
    node = RawNode(Config(id=NodeId(1)), storage)
    before = node.status().conf_state
    progress_before = dict(node.raft.tracker.progress)
    with pytest.raises(ConfChangeError):
        node.apply_conf_change(ConfChange(PROMOTE, NodeId(2)))
    with pytest.raises(ConfChangeError):
        node.apply_conf_change(ConfChange(REMOVE, NodeId(9)))
    assert node.status().conf_state == before
    assert node.raft.tracker.progress == progress_before
    after = node.apply_conf_change(ConfChange(ADD_LEARNER, NodeId(3)))
    assert after == conf((1, 2), (3,))
    assert node.status().conf_state == after
