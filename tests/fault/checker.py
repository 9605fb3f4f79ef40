"""Is a recorded membership history linearizable? A pure check over `history.Op` records.

The model is the member set keyed by ID: peer URLs and the learner flag (names and client URLs are
published by the members themselves, so they are ignored). One op is one atomic step on it:

| op | applies when (else it must have failed) | effect |
|---|---|---|
| add(id, urls, learner) | id absent; URLs unused; learners < ``max_learners`` | member added |
| remove(id) | id present | member removed |
| update(id, urls) | id present; no URL used by another member | its URLs replaced |
| promote(id) | id present and a learner | it becomes a voter |
| linearizable list | the model equals the listed members | none |

An acknowledged mutation's reply carries the post-apply member list; it must equal the model right
after the op. Definitely failed ops never took effect and are left out (the `check_changes` pass
makes sure nothing they asked for ever shows up). Ambiguous ops may take effect at any point after
their invoke, or never. Serializable lists are a member's local, possibly stale view: they are not
points of the linearization, but they feed the ID resolution below and `check_changes`.

**The ID of an ambiguous add** is not in any reply. The workload never reuses peer URLs, so a list
that shows a member with exactly the add's URLs names its ID. An ambiguous add whose URLs never
show up is treated as never having happened: nobody could learn its ID to remove or update it, so
if it had taken effect the final linearizable list would show it.

The search is Wing & Gong's with Lowe's memoisation: a depth-first search over "which op takes
effect next" where an op may go next only if it was invoked before the earliest completion among
the acknowledged ops not yet placed, pruning every (placed set, model state) pair seen before.
"""

from __future__ import annotations

import enum
import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.fault.history import History, Kind, Members, MemberView, Op, Outcome, members_of

#: Search states explored before the verdict becomes UNKNOWN.
DEFAULT_BUDGET = 2_000_000


class Verdict(enum.StrEnum):
    LINEARIZABLE = "linearizable"
    VIOLATION = "violation"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Result:
    verdict: Verdict
    explored: int
    #: Why it is not linearizable: the op that could not be placed and the model at that point.
    explanation: str = ""
    #: History indices of the ops around the failure (for the report's excerpt).
    excerpt: tuple[int, ...] = ()
    resolved_adds: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Step:
    op: Op
    invoke: float
    complete: float  # inf for an ambiguous op
    must: bool
    member_id: int


def resolve_add_ids(ops: Sequence[Op]) -> tuple[dict[int, int], list[str]]:
    """For each ambiguous add (by history index), the ID a list showed for its peer URLs; plus
    problems: the same URLs listed under two different IDs (URLs are never reused)."""
    seen: dict[tuple[str, ...], set[int]] = {}
    for op in ops:
        for member in op.members or ():
            seen.setdefault(member.peer_urls, set()).add(member.id)
    for op in ops:
        if op.kind is Kind.ADD and op.outcome is Outcome.OK and op.member_id is not None:
            seen.setdefault(tuple(sorted(op.peer_urls)), set()).add(op.member_id)
    problems = [
        f"peer URLs {','.join(urls)} listed under several IDs: "
        + ", ".join(f"{i:x}" for i in sorted(ids))
        for urls, ids in seen.items()
        if len(ids) > 1
    ]
    resolved: dict[int, int] = {}
    for op in ops:
        if op.kind is Kind.ADD and op.outcome is Outcome.AMBIGUOUS:
            ids = seen.get(tuple(sorted(op.peer_urls)), set())
            if len(ids) == 1:
                resolved[op.index] = next(iter(ids))
    return resolved, problems


def _steps(ops: Sequence[Op], resolved: dict[int, int]) -> list[_Step]:
    steps: list[_Step] = []
    for op in ops:
        if op.outcome is Outcome.FAIL:
            continue
        if op.kind is Kind.LIST and not (op.linearizable and op.outcome is Outcome.OK):
            continue
        if op.kind is Kind.ADD and op.outcome is Outcome.AMBIGUOUS:
            if op.index not in resolved:
                continue
            member_id = resolved[op.index]
        else:
            member_id = op.member_id or 0
        must = op.outcome is Outcome.OK
        complete = op.complete if must and op.complete is not None else math.inf
        steps.append(_Step(op, op.invoke, complete, must, member_id))
    steps.sort(key=lambda s: (s.invoke, s.op.index))
    return steps


def apply(step: _Step, state: Members, max_learners: int) -> Members | None:
    """The model after ``step``, or None if the step cannot take effect (or its result does not
    match) in ``state``."""
    op = step.op
    by_id = {m.id: m for m in state}
    new: Members
    if op.kind is Kind.LIST:
        return state if op.members == state else None
    if op.kind is Kind.ADD:
        if step.member_id in by_id or _urls_taken(state, op.peer_urls, None):
            return None
        if op.learner and sum(m.is_learner for m in state) >= max_learners:
            return None
        new = members_of((*state, MemberView(step.member_id, op.peer_urls, op.learner)))
    elif op.kind is Kind.REMOVE:
        if step.member_id not in by_id:
            return None
        new = tuple(m for m in state if m.id != step.member_id)
    elif op.kind is Kind.UPDATE:
        old = by_id.get(step.member_id)
        if old is None or _urls_taken(state, op.peer_urls, step.member_id):
            return None
        by_id[old.id] = MemberView(old.id, op.peer_urls, old.is_learner)
        new = members_of(by_id.values())
    else:
        old = by_id.get(step.member_id)
        if old is None or not old.is_learner:
            return None
        by_id[old.id] = MemberView(old.id, old.peer_urls, False)
        new = members_of(by_id.values())
    if step.must and op.members is not None and op.members != new:
        return None
    return new


def _urls_taken(state: Members, urls: Iterable[str], except_id: int | None) -> bool:
    wanted = set(urls)
    return any(m.id != except_id and wanted & set(m.peer_urls) for m in state)


def check_linearizable(
    ops: Sequence[Op],
    initial: Members,
    max_learners: int = 1,
    budget: int = DEFAULT_BUDGET,
) -> Result:
    """Search for a linearization of ``ops`` starting from the membership ``initial``."""
    resolved, problems = resolve_add_ids(ops)
    if problems:
        return Result(Verdict.VIOLATION, 0, "; ".join(problems), (), resolved)
    steps = _steps(ops, resolved)
    musts = sum(s.must for s in steps)
    start = (tuple(range(len(steps))), members_of(initial), 0, 0)
    stack = [start]
    seen: set[tuple[int, Members]] = {(0, start[1])}
    best = (-1, start)
    explored = 0
    while stack:
        pending, state, mask, placed = stack.pop()
        explored += 1
        if placed == musts:
            return Result(Verdict.LINEARIZABLE, explored, resolved_adds=resolved)
        if explored > budget:
            return Result(Verdict.UNKNOWN, explored, f"gave up after {budget} states", (), resolved)
        if placed > best[0]:
            best = (placed, (pending, state, mask, placed))
        horizon = min(steps[i].complete for i in pending if steps[i].must)
        children = []
        for position, i in enumerate(pending):
            step = steps[i]
            if step.invoke > horizon:
                break
            after = apply(step, state, max_learners)
            if after is None:
                continue
            child_mask = mask | (1 << i)
            if (child_mask, after) in seen:
                continue
            seen.add((child_mask, after))
            rest = pending[:position] + pending[position + 1 :]
            children.append(
                (not step.must, step.complete, (rest, after, child_mask, placed + step.must))
            )
        # Depth first, acknowledged ops in completion order before optional ones.
        children.sort(key=lambda c: (c[0], c[1]), reverse=True)
        stack.extend(child for _, _, child in children)
    pending, state, _, _ = best[1]
    return Result(
        Verdict.VIOLATION,
        explored,
        _explain(steps, pending, state),
        _excerpt(steps, pending),
        resolved,
    )


def _explain(steps: Sequence[_Step], pending: tuple[int, ...], state: Members) -> str:
    blocked = min((steps[i] for i in pending if steps[i].must), key=lambda s: s.complete)
    model = ", ".join(
        f"{m.id:x}{'(L)' if m.is_learner else ''}={','.join(m.peer_urls)}" for m in state
    )
    return (
        f"no linearization places {blocked.op.describe()}\n"
        f"  model at the furthest point reached: [{model}]"
    )


def _excerpt(steps: Sequence[_Step], pending: tuple[int, ...]) -> tuple[int, ...]:
    blocked = min((steps[i] for i in pending if steps[i].must), key=lambda s: s.complete)
    window = [
        s.op.index
        for s in steps
        if s.invoke <= blocked.complete and (s.complete >= blocked.invoke or not s.must)
    ]
    return tuple(sorted(window)[-30:])


def check_changes(ops: Sequence[Op], final: Members) -> list[str]:
    """The durability rules, stated directly (the linearizability check implies them when the
    final list is in the history, but these name the lost change): acknowledged adds, removes and
    promotions are visible in ``final``; nothing a failed add or update asked for ever appears."""
    problems: list[str] = []
    final_ids = {m.id: m for m in final}
    removed = {
        op.member_id
        for op in ops
        if op.kind is Kind.REMOVE and op.outcome in (Outcome.OK, Outcome.AMBIGUOUS)
    }
    listed_urls = {url for op in ops for m in op.members or () for url in m.peer_urls}
    for op in ops:
        if op.outcome is Outcome.OK:
            if op.kind is Kind.ADD and op.member_id not in removed:
                if op.member_id not in final_ids:
                    problems.append(f"acknowledged add lost: {op.describe()}")
            elif op.kind is Kind.REMOVE and op.member_id in final_ids:
                problems.append(f"acknowledged remove undone: {op.describe()}")
            elif op.kind is Kind.PROMOTE and op.member_id in final_ids:
                if final_ids[op.member_id].is_learner:
                    problems.append(f"acknowledged promote undone: {op.describe()}")
        elif op.outcome is Outcome.FAIL and op.kind in (Kind.ADD, Kind.UPDATE):
            leaked = set(op.peer_urls) & listed_urls
            if leaked:
                problems.append(
                    f"failed {op.kind} took effect ({','.join(leaked)}): {op.describe()}"
                )
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """Check a history written by a run: ``python -m tests.fault.checker history.json``."""
    args = list(sys.argv[1:] if argv is None else argv)
    history = History.read(Path(args[0]))
    first = next(op for op in history if op.kind is Kind.LIST and op.members is not None)
    result = check_linearizable(history.ops[first.index + 1 :], first.members or ())
    print(result.verdict, f"({result.explored} states)")
    if result.explanation:
        print(result.explanation)
    return 0 if result.verdict is Verdict.LINEARIZABLE else 1


if __name__ == "__main__":
    raise SystemExit(main())
