"""A small Prometheus registry: counters, gauges and histograms, rendered as text format 0.0.4.

Why not a library: the node needs three metric kinds, labels and one renderer, and several nodes
share a process in the tests, so every registry must be its own object (no global state). This
module is pure (no I/O, no clock): values come in through ``inc``/``set``/``observe``, or are read
at scrape time by collect hooks (``Registry.on_collect``) from counters the node keeps anyway.

The metric names the node registers follow etcd's (``etcd_server_has_leader``,
``etcd_disk_wal_fsync_duration_seconds``, ``grpc_server_handled_total``, ...), so dashboards
and alerts written for etcd read them unchanged; see ``node.observability``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "Family",
    "Gauge",
    "Histogram",
    "Registry",
    "exponential_buckets",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram"]


class Counter:
    """A value that only goes up (reset only by a restart)."""

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError("a counter cannot decrease")
        self.value += amount

    def set_total(self, total: float) -> None:
        """For a collect hook that mirrors a count kept elsewhere (it must never go down)."""
        if total < self.value:
            raise ValueError("a counter cannot decrease")
        self.value = total

    def samples(self, name: str) -> Iterator[tuple[str, tuple[tuple[str, str], ...], float]]:
        yield name, (), self.value


class Gauge:
    """A value that goes up and down."""

    def __init__(self) -> None:
        self.value = 0.0

    def set(self, value: float) -> None:
        self.value = float(value)

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        self.value -= amount

    def samples(self, name: str) -> Iterator[tuple[str, tuple[tuple[str, str], ...], float]]:
        yield name, (), self.value


class Histogram:
    """Observations counted into cumulative ``le`` buckets, with their sum and count."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break
        self.sum += value
        self.count += 1

    def samples(self, name: str) -> Iterator[tuple[str, tuple[tuple[str, str], ...], float]]:
        cumulative = 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            cumulative += n
            yield f"{name}_bucket", (("le", _number(bound)),), cumulative
        yield f"{name}_bucket", (("le", "+Inf"),), self.count
        yield f"{name}_sum", (), self.sum
        yield f"{name}_count", (), self.count


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """``count`` upper bounds: start, start*factor, ... (Prometheus' ExponentialBuckets)."""
    if start <= 0 or factor <= 1 or count < 1:
        raise ValueError("need start > 0, factor > 1 and count >= 1")
    return tuple(start * factor**i for i in range(count))


M = TypeVar("M", Counter, Gauge, Histogram)


@dataclass
class Family(Generic[M]):
    """One metric name: its help, its kind, and one child per combination of label values."""

    name: str
    help: str
    kind: Kind
    label_names: tuple[str, ...]
    make: Callable[[], M]
    children: dict[tuple[str, ...], M] = field(default_factory=dict)

    def labels(self, *values: str) -> M:
        """The child for these label values (created at zero on first use)."""
        if len(values) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {values}")
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.make()
        return child

    @property
    def only(self) -> M:
        """The single child of a family without labels."""
        return self.labels()

    def render(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        for values in sorted(self.children):
            base = tuple(sorted(zip(self.label_names, values, strict=True)))  # as Go sorts
            for sample_name, extra, value in self.children[values].samples(self.name):
                yield f"{sample_name}{_labels(base + extra)} {_number(value)}"


class Registry:
    """The metrics of one node. ``render()`` runs the collect hooks, then prints every family."""

    def __init__(self) -> None:
        self._families: dict[str, Family[Counter] | Family[Gauge] | Family[Histogram]] = {}
        self._hooks: list[Callable[[], None]] = []

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Family[Counter]:
        family = Family(name, help, "counter", tuple(labels), Counter)
        self._add(family)
        return family

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Family[Gauge]:
        family = Family(name, help, "gauge", tuple(labels), Gauge)
        self._add(family)
        return family

    def histogram(
        self, name: str, help: str, buckets: Sequence[float], labels: Iterable[str] = ()
    ) -> Family[Histogram]:
        bounds = tuple(buckets)
        if list(bounds) != sorted(set(bounds)) or not all(math.isfinite(b) for b in bounds):
            raise ValueError("buckets must be finite and strictly increasing")
        family = Family(name, help, "histogram", tuple(labels), lambda: Histogram(bounds))
        self._add(family)
        return family

    def on_collect(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` before each render, to copy values kept elsewhere into metrics."""
        self._hooks.append(hook)

    def render(self) -> str:
        for hook in self._hooks:
            hook()
        lines = [line for name in sorted(self._families) for line in self._families[name].render()]
        return "\n".join(lines) + "\n"

    def _add(self, family: Family[Counter] | Family[Gauge] | Family[Histogram]) -> None:
        if family.name in self._families:
            raise ValueError(f"metric {family.name} is already registered")
        if not _valid_name(family.name) or not all(map(_valid_name, family.label_names)):
            raise ValueError(f"invalid metric or label name in {family.name}")
        self._families[family.name] = family


def _valid_name(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and all(c.isalnum() or c in "_:" for c in name)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_value(v)}"' for k, v in pairs) + "}"


def _escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    """Prometheus' float text: integers without a fraction, infinities as +Inf/-Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
