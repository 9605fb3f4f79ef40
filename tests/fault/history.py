"""The recorded history of membership operations: one `Op` per client call, invoke to complete.

The checker (`checker.py`) reads nothing else, so a history written to JSON by a failing run can be
checked again offline (``python -m tests.fault.checker history.json``).

Times are the runner's monotonic clock in seconds. An op that has not completed when the run ends,
or that ended without a definite answer (a timeout, a lost connection, an error that does not say
the change did not happen), is `Outcome.AMBIGUOUS`: it may have taken effect at any point after
its invoke, or never.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


class Kind(enum.StrEnum):
    ADD = "add"
    REMOVE = "remove"
    UPDATE = "update"
    PROMOTE = "promote"
    LIST = "list"


class Outcome(enum.StrEnum):
    OK = "ok"
    FAIL = "fail"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True, order=True)
class MemberView:
    """What the checker compares of a member: names and client URLs are published by the members
    themselves (not by the ops under test), so they are left out."""

    id: int
    peer_urls: tuple[str, ...]
    is_learner: bool

    def __post_init__(self) -> None:
        object.__setattr__(self, "peer_urls", tuple(sorted(self.peer_urls)))


Members = tuple[MemberView, ...]


def members_of(views: Iterable[MemberView]) -> Members:
    """A membership in its canonical form: sorted by ID, as the node sends it."""
    return tuple(sorted(views))


@dataclass(frozen=True, slots=True)
class Op:
    """One call. ``member_id`` is the target (remove/update/promote) or, for an acknowledged add,
    the new member's ID; ``members`` is the membership the reply carried (a list's result, or a
    mutation's post-apply member list), None when the reply had none."""

    index: int
    process: str
    kind: Kind
    invoke: float
    complete: float | None = None
    outcome: Outcome = Outcome.AMBIGUOUS
    member_id: int | None = None
    peer_urls: tuple[str, ...] = ()
    learner: bool = False
    linearizable: bool = False
    endpoint: str = ""
    members: Members | None = None
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "process": self.process,
            "kind": str(self.kind),
            "invoke": self.invoke,
            "complete": self.complete,
            "outcome": str(self.outcome),
            "member_id": self.member_id,
            "peer_urls": list(self.peer_urls),
            "learner": self.learner,
            "linearizable": self.linearizable,
            "endpoint": self.endpoint,
            "members": None
            if self.members is None
            else [[m.id, list(m.peer_urls), m.is_learner] for m in self.members],
            "error": self.error,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Op:
        members = raw.get("members")
        return cls(
            index=raw["index"],
            process=raw["process"],
            kind=Kind(raw["kind"]),
            invoke=raw["invoke"],
            complete=raw.get("complete"),
            outcome=Outcome(raw["outcome"]),
            member_id=raw.get("member_id"),
            peer_urls=tuple(raw.get("peer_urls", ())),
            learner=raw.get("learner", False),
            linearizable=raw.get("linearizable", False),
            endpoint=raw.get("endpoint", ""),
            members=None
            if members is None
            else members_of(MemberView(m[0], tuple(m[1]), m[2]) for m in members),
            error=raw.get("error", ""),
        )

    def describe(self) -> str:
        target = f" {self.member_id:x}" if self.member_id else ""
        urls = f" {','.join(self.peer_urls)}" if self.peer_urls else ""
        flag = " learner" if self.learner and self.kind is Kind.ADD else ""
        lin = " linearizable" if self.linearizable else ""
        done = "…" if self.complete is None else f"{self.complete:.3f}"
        result = ""
        if self.members is not None:
            result = " -> [" + ", ".join(_short(m) for m in self.members) + "]"
        error = f" ({self.error})" if self.error else ""
        return (
            f"#{self.index} {self.process} {self.kind}{target}{urls}{flag}{lin} "
            f"[{self.invoke:.3f}, {done}] {self.outcome}{result}{error}"
        )


def _short(member: MemberView) -> str:
    return f"{member.id:x}{'(L)' if member.is_learner else ''}={','.join(member.peer_urls)}"


@dataclass
class History:
    """Append-only: `invoke` records the call, `complete` its answer."""

    ops: list[Op] = field(default_factory=list)
    clock: Any = time.monotonic

    def invoke(self, process: str, kind: Kind, **args: Any) -> Op:
        op = Op(index=len(self.ops), process=process, kind=kind, invoke=self.clock(), **args)
        self.ops.append(op)
        return op

    def complete(self, op: Op, outcome: Outcome, **result: Any) -> Op:
        done = replace(op, complete=self.clock(), outcome=outcome, **result)
        self.ops[op.index] = done
        return done

    def __iter__(self) -> Iterator[Op]:
        return iter(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps([op.to_json() for op in self.ops], indent=None) + "\n")

    @classmethod
    def read(cls, path: Path) -> History:
        return cls([Op.from_json(raw) for raw in json.loads(path.read_text())])


def completed(ops: Sequence[Op]) -> list[Op]:
    return [op for op in ops if op.complete is not None]
