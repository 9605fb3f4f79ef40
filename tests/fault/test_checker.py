"""The linearizability checker on hand-made histories, linearizable and not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fault.checker import (
    Verdict,
    check_changes,
    check_linearizable,
    main,
    resolve_add_ids,
)
from tests.fault.history import History, Kind, Members, MemberView, Op, Outcome, members_of

A = MemberView(0xA, ("http://a:1",), False)
B = MemberView(0xB, ("http://b:1",), False)
C = MemberView(0xC, ("http://c:1",), False)
INITIAL: Members = (A, B, C)
D_URLS = ("http://d:1",)
D = MemberView(0xD, D_URLS, False)
DL = MemberView(0xD, D_URLS, True)
E_URLS = ("http://e:1",)


class Script:
    """Builds a history with explicit times, so overlap is exactly what the test says."""

    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(
        self,
        kind: Kind,
        start: float,
        end: float | None,
        outcome: Outcome = Outcome.OK,
        **fields: Any,
    ) -> Op:
        op = Op(
            index=len(self.ops),
            process=f"p{len(self.ops)}",
            kind=kind,
            invoke=start,
            complete=end,
            outcome=outcome,
            **fields,
        )
        self.ops.append(op)
        return op

    def lin_list(self, start: float, end: float, *members: MemberView) -> Op:
        return self.op(Kind.LIST, start, end, linearizable=True, members=members_of(members))

    def verdict(self) -> Verdict:
        return check_linearizable(self.ops, INITIAL).verdict


def test_empty_history_is_linearizable():
    assert Script().verdict() is Verdict.LINEARIZABLE


def test_sequential_add_promote_remove():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS, learner=True)
    s.lin_list(2, 3, A, B, C, DL)
    s.op(Kind.PROMOTE, 4, 5, member_id=0xD)
    s.lin_list(6, 7, A, B, C, D)
    s.op(Kind.REMOVE, 8, 9, member_id=0xA)
    s.lin_list(10, 11, B, C, D)
    assert s.verdict() is Verdict.LINEARIZABLE


def test_stale_linearizable_list_after_acknowledged_add_is_a_violation():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS)
    s.lin_list(2, 3, A, B, C)
    result = check_linearizable(s.ops, INITIAL)
    assert result.verdict is Verdict.VIOLATION
    assert "#1" in result.explanation
    assert 1 in result.excerpt


def test_concurrent_list_may_see_either_side_of_an_add():
    for seen in ((A, B, C), (A, B, C, D)):
        s = Script()
        s.op(Kind.ADD, 0, 4, member_id=0xD, peer_urls=D_URLS)
        s.lin_list(1, 2, *seen)
        assert s.verdict() is Verdict.LINEARIZABLE, seen


def test_two_concurrent_lists_cannot_disagree_with_real_time_order():
    s = Script()
    s.op(Kind.ADD, 0, 10, member_id=0xD, peer_urls=D_URLS)
    s.lin_list(1, 2, A, B, C, D)
    s.lin_list(3, 4, A, B, C)  # after a list that saw D, D cannot vanish
    assert s.verdict() is Verdict.VIOLATION


def test_reply_member_list_must_be_the_state_right_after_the_op():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS, members=(A, B, C, D))
    assert s.verdict() is Verdict.LINEARIZABLE
    bad = Script()
    bad.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS, members=(A, B, D))
    assert bad.verdict() is Verdict.VIOLATION


def test_failed_ops_never_take_effect():
    s = Script()
    s.op(Kind.REMOVE, 0, 1, Outcome.FAIL, member_id=0xA, error="unhealthy cluster")
    s.lin_list(2, 3, B, C)
    assert s.verdict() is Verdict.VIOLATION


def test_remove_of_an_absent_member_cannot_succeed():
    s = Script()
    s.op(Kind.REMOVE, 0, 1, member_id=0xA)
    s.op(Kind.REMOVE, 2, 3, member_id=0xA)
    assert s.verdict() is Verdict.VIOLATION


def test_promote_of_a_voter_cannot_succeed():
    s = Script()
    s.op(Kind.PROMOTE, 0, 1, member_id=0xA)
    assert s.verdict() is Verdict.VIOLATION


def test_duplicate_peer_urls_cannot_be_added():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=A.peer_urls)
    assert s.verdict() is Verdict.VIOLATION


def test_max_learners_is_part_of_the_model():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS, learner=True)
    s.op(Kind.ADD, 2, 3, member_id=0xE, peer_urls=E_URLS, learner=True)
    assert s.verdict() is Verdict.VIOLATION
    assert check_linearizable(s.ops, INITIAL, max_learners=2).verdict is Verdict.LINEARIZABLE


def test_update_replaces_urls_and_keeps_the_learner_flag():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS, learner=True)
    s.op(Kind.UPDATE, 2, 3, member_id=0xD, peer_urls=E_URLS)
    s.lin_list(4, 5, A, B, C, MemberView(0xD, E_URLS, True))
    assert s.verdict() is Verdict.LINEARIZABLE


def test_ambiguous_remove_may_happen_late():
    s = Script()
    s.op(Kind.REMOVE, 0, None, Outcome.AMBIGUOUS, member_id=0xA)
    s.lin_list(5, 6, A, B, C)
    s.lin_list(7, 8, B, C)
    assert s.verdict() is Verdict.LINEARIZABLE


def test_ambiguous_remove_may_never_happen():
    s = Script()
    s.op(Kind.REMOVE, 0, None, Outcome.AMBIGUOUS, member_id=0xA)
    s.lin_list(5, 6, A, B, C)
    assert s.verdict() is Verdict.LINEARIZABLE


def test_ambiguous_remove_cannot_be_undone():
    s = Script()
    s.op(Kind.REMOVE, 0, None, Outcome.AMBIGUOUS, member_id=0xA)
    s.lin_list(5, 6, B, C)
    s.lin_list(7, 8, A, B, C)
    assert s.verdict() is Verdict.VIOLATION


def test_ambiguous_op_cannot_take_effect_before_its_invoke():
    s = Script()
    s.lin_list(0, 1, B, C)
    s.op(Kind.REMOVE, 2, None, Outcome.AMBIGUOUS, member_id=0xA)
    assert s.verdict() is Verdict.VIOLATION


def test_ambiguous_add_id_is_resolved_from_a_list_showing_its_urls():
    s = Script()
    add = s.op(Kind.ADD, 0, 5, Outcome.AMBIGUOUS, peer_urls=D_URLS, error="timed out")
    s.op(Kind.LIST, 6, 7, members=(A, B, C, D), endpoint="b")  # serializable: only names the ID
    s.op(Kind.REMOVE, 8, 9, member_id=0xD)
    s.lin_list(10, 11, A, B, C)
    resolved, problems = resolve_add_ids(s.ops)
    assert resolved == {add.index: 0xD}
    assert problems == []
    assert s.verdict() is Verdict.LINEARIZABLE


def test_unresolved_ambiguous_add_never_happened():
    s = Script()
    s.op(Kind.ADD, 0, None, Outcome.AMBIGUOUS, peer_urls=D_URLS)
    s.lin_list(1, 2, A, B, C)
    assert resolve_add_ids(s.ops)[0] == {}
    assert s.verdict() is Verdict.LINEARIZABLE


def test_resolved_ambiguous_add_must_have_happened_before_the_list_that_shows_it():
    s = Script()
    s.lin_list(0, 1, A, B, C, D)  # D shows up before its add was even invoked
    s.op(Kind.ADD, 2, None, Outcome.AMBIGUOUS, peer_urls=D_URLS)
    assert s.verdict() is Verdict.VIOLATION


def test_same_urls_under_two_ids_is_a_violation():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS)
    s.op(Kind.LIST, 2, 3, members=(A, B, C, MemberView(0xE, D_URLS, False)))
    result = check_linearizable(s.ops, INITIAL)
    assert result.verdict is Verdict.VIOLATION
    assert "several IDs" in result.explanation


def test_serializable_lists_may_be_stale():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS)
    s.op(Kind.LIST, 2, 3, members=(A, B, C), endpoint="c")
    assert s.verdict() is Verdict.LINEARIZABLE


def _many_concurrent_ambiguous_removes() -> Iterator[Op]:
    for i in range(12):
        yield Op(i, f"p{i}", Kind.REMOVE, float(i), None, Outcome.AMBIGUOUS, member_id=0x100 + i)


def test_memoisation_keeps_many_ambiguous_ops_tractable():
    initial = members_of(MemberView(0x100 + i, (f"http://m{i}:1",), False) for i in range(12))
    ops = list(_many_concurrent_ambiguous_removes())
    final = members_of(m for m in initial if m.id % 2 == 0)
    ops.append(Op(12, "final", Kind.LIST, 20.0, 21.0, linearizable=True, members=final))
    result = check_linearizable(ops, initial)
    assert result.verdict is Verdict.LINEARIZABLE


def test_budget_exhaustion_is_unknown_not_a_violation():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS)
    assert check_linearizable(s.ops, INITIAL, budget=0).verdict is Verdict.UNKNOWN


def test_check_changes_names_lost_and_leaked_changes():
    s = Script()
    s.op(Kind.ADD, 0, 1, member_id=0xD, peer_urls=D_URLS)
    s.op(Kind.REMOVE, 2, 3, member_id=0xA)
    s.op(Kind.ADD, 4, 5, Outcome.FAIL, peer_urls=E_URLS, error="unhealthy cluster")
    s.op(Kind.LIST, 6, 7, members=(B, C, D, MemberView(0xE, E_URLS, False)))
    problems = check_changes(s.ops, final=(A, B, C))
    assert any(p.startswith("acknowledged add lost") for p in problems)
    assert any(p.startswith("acknowledged remove undone") for p in problems)
    assert any(p.startswith("failed add took effect") for p in problems)
    assert check_changes(s.ops[:2], final=(B, C, D)) == []


def test_history_round_trips_through_json_and_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = Script()
    s.lin_list(0, 1, A, B, C)
    s.op(Kind.ADD, 2, 3, member_id=0xD, peer_urls=D_URLS, learner=True, members=(A, B, C, DL))
    s.op(Kind.REMOVE, 4, None, Outcome.AMBIGUOUS, member_id=0xD, error="deadline")
    path = tmp_path / "history.json"
    History(list(s.ops)).write(path)
    assert History.read(path).ops == s.ops
    assert main([str(path)]) == 0
    assert "linearizable" in capsys.readouterr().out
