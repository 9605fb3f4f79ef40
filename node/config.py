"""`NodeConfig`: everything a node is started with, validated once, with etcd's defaults.

The field names follow etcd's flags (``--listen-client-urls`` is `listen_client_urls`), so the
``ETCD_*`` lines etcdctl prints after ``member add`` (spec §5.3) configure a node as they are. The
command line is turned into a `NodeConfig` by `node.cli`; this module knows nothing of flags
beyond naming them in its error messages.

Validation happens on construction (P6) and raises `ConfigError`, whose text says what is wrong
and, where etcd has one, uses etcd's own message. URL fields are normalised (spec §3.2) and the
two defaults etcd derives are filled in here: ``data_dir`` ("" means ``<name>.etcd``) and
``initial_cluster`` (empty means ``<name>=<each initial advertise peer URL>``). They are derived
at construction, so `dataclasses.replace` on a built config does not re-derive them.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

from node.urls import URLError, normalize_urls

__all__ = [
    "DEFAULT_CLIENT_URL",
    "DEFAULT_NAME",
    "DEFAULT_PEER_URL",
    "LOG_LEVELS",
    "MAX_ELECTION_TIMEOUT_MS",
    "ClusterState",
    "ConfigError",
    "InitialCluster",
    "NodeConfig",
    "format_initial_cluster",
    "parse_initial_cluster",
]

DEFAULT_NAME = "default"
DEFAULT_CLIENT_URL = "http://localhost:2379"
DEFAULT_PEER_URL = "http://localhost:2380"
#: etcd's ``maxElectionMs``.
MAX_ELECTION_TIMEOUT_MS = 50_000
#: The levels etcd's ``--log-level`` accepts.
LOG_LEVELS = ("debug", "info", "warn", "error", "panic", "fatal")

#: ``--initial-cluster`` parsed: (name, its normalised sorted peer URLs), in first-seen order.
InitialCluster = tuple[tuple[str, tuple[str, ...]], ...]


class ConfigError(ValueError):
    """The configuration cannot be used; the text is shown to the operator as is."""


class ClusterState(enum.Enum):
    """``--initial-cluster-state``: found a new cluster, or join an existing one (spec §5.3)."""

    NEW = "new"
    EXISTING = "existing"


def parse_initial_cluster(value: str) -> list[tuple[str, tuple[str, ...]]]:
    """Parse ``name=url,name=url,...`` the way etcd's ``types.NewURLsMap`` does.

    Empty pieces are skipped; a name given several times collects all its URLs (that is how a
    member gets several peer URLs); a piece with no ``=`` has an empty URL and fails; an empty
    name is kept (etcdctl prints ``=url`` for unstarted members). Each member's URLs are
    validated, normalised and sorted. Raises ConfigError.
    """
    grouped: dict[str, list[str]] = {}
    for piece in value.split(","):
        if not piece:
            continue
        name, _, url = piece.partition("=")
        grouped.setdefault(name, []).append(url)
    parsed: list[tuple[str, tuple[str, ...]]] = []
    for name, urls in grouped.items():
        try:
            parsed.append((name, normalize_urls(urls)))
        except URLError as err:
            raise ConfigError(f"member {name!r}: {err}") from None
    return parsed


def format_initial_cluster(entries: InitialCluster) -> str:
    """``name=url,...``, one piece per URL: the inverse of `parse_initial_cluster`."""
    return ",".join(f"{name}={url}" for name, urls in entries for url in urls)


#: NodeConfig URL fields -> the flag named in error messages.
_URL_FIELDS = {
    "listen_client_urls": "--listen-client-urls",
    "advertise_client_urls": "--advertise-client-urls",
    "listen_peer_urls": "--listen-peer-urls",
    "initial_advertise_peer_urls": "--initial-advertise-peer-urls",
}


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A validated node configuration (see the module docstring for derived defaults)."""

    name: str = DEFAULT_NAME
    data_dir: str = ""
    listen_client_urls: tuple[str, ...] = (DEFAULT_CLIENT_URL,)
    advertise_client_urls: tuple[str, ...] = (DEFAULT_CLIENT_URL,)
    listen_peer_urls: tuple[str, ...] = (DEFAULT_PEER_URL,)
    initial_advertise_peer_urls: tuple[str, ...] = (DEFAULT_PEER_URL,)
    initial_cluster: InitialCluster = ()
    initial_cluster_state: ClusterState = ClusterState.NEW
    initial_cluster_token: str = "etcd-cluster"
    heartbeat_interval_ms: int = 100
    election_timeout_ms: int = 1000
    snapshot_count: int = 100_000
    strict_reconfig_check: bool = True
    max_learners: int = 1
    #: The leader promotes each learner once it passes the readiness rule (spec §3.10), as one
    #: more conf change (issue 5, item 7). Not an etcd flag; off by default.
    auto_promote_learners: bool = False
    log_level: str = "info"
    #: How long a peer must have been connected to count for the strict checks (spec §3.4).
    #: Not an etcd flag; tests shorten it.
    health_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("--name must not be empty")
        if not self.data_dir:
            object.__setattr__(self, "data_dir", f"{self.name}.etcd")
        for field_name, flag in _URL_FIELDS.items():
            object.__setattr__(self, field_name, _urls(getattr(self, field_name), flag))
        cluster = self.initial_cluster or ((self.name, self.initial_advertise_peer_urls),)
        object.__setattr__(self, "initial_cluster", _check_initial_cluster(cluster))
        self._check_own_entry()
        self._check_timing()
        self._check_numbers()

    def _check_own_entry(self) -> None:
        own = dict(self.initial_cluster).get(self.name)
        if own is None:
            raise ConfigError(
                f"couldn't find local name {self.name!r} in the initial cluster configuration"
                f" (--initial-cluster={format_initial_cluster(self.initial_cluster)})"
            )
        if self.initial_cluster_state is not ClusterState.NEW:
            return
        if any(not name for name, _ in self.initial_cluster):
            raise ConfigError(
                "--initial-cluster has a member without a name; "
                "a new cluster needs every founding member named"
            )
        advertised = set(self.initial_advertise_peer_urls)
        missing = sorted(set(own) - advertised)
        if missing:
            raise ConfigError(
                f"--initial-cluster has {','.join(f'{self.name}={u}' for u in missing)} but "
                f"missing from --initial-advertise-peer-urls="
                f"{','.join(self.initial_advertise_peer_urls)}"
            )
        extra = sorted(advertised - set(own))
        if extra:
            raise ConfigError(
                f"--initial-advertise-peer-urls has {','.join(extra)} but missing from "
                f"--initial-cluster="
                f"{format_initial_cluster(((self.name, self.initial_advertise_peer_urls),))}"
            )

    def _check_timing(self) -> None:
        heartbeat, election = self.heartbeat_interval_ms, self.election_timeout_ms
        if heartbeat <= 0:
            raise ConfigError(f"--heartbeat-interval[{heartbeat}ms] must be greater than 0")
        if 5 * heartbeat > election:
            raise ConfigError(
                f"--election-timeout[{election}ms] should be at least as 5 times as "
                f"--heartbeat-interval[{heartbeat}ms]"
            )
        if election > MAX_ELECTION_TIMEOUT_MS:
            raise ConfigError(
                f"--election-timeout[{election}ms] is too long, and should be set less than "
                f"{MAX_ELECTION_TIMEOUT_MS}ms"
            )
        if not (math.isfinite(self.health_interval_s) and self.health_interval_s > 0):
            raise ConfigError(
                f"--health-interval must be a positive number of seconds, "
                f"got {self.health_interval_s}"
            )

    def _check_numbers(self) -> None:
        if self.snapshot_count <= 0:
            raise ConfigError(f"--snapshot-count must be greater than 0, got {self.snapshot_count}")
        if self.max_learners < 1:
            raise ConfigError(f"--max-learners must be at least 1, got {self.max_learners}")
        if self.log_level not in LOG_LEVELS:
            raise ConfigError(
                f"--log-level: unknown level {self.log_level!r} "
                f"(valid levels are {', '.join(LOG_LEVELS)})"
            )

    # ---- Derived values ----------------------------------------------------------------------

    @property
    def is_new_cluster(self) -> bool:
        return self.initial_cluster_state is ClusterState.NEW

    @property
    def heartbeat_ticks(self) -> int:
        """One tick is one heartbeat interval, so the leader beats every tick."""
        return 1

    @property
    def election_ticks(self) -> int:
        """The election timeout in ticks (at least 5, by validation)."""
        return self.election_timeout_ms // self.heartbeat_interval_ms

    @property
    def tick_interval_s(self) -> float:
        return self.heartbeat_interval_ms / 1000

    @property
    def request_timeout_s(self) -> float:
        """ReqTimeout: 5 s + 2 x the election timeout (7 s with the defaults)."""
        return 5.0 + 2 * self.election_timeout_ms / 1000


def _urls(value: Sequence[str], flag: str) -> tuple[str, ...]:
    if isinstance(value, str):  # a bare string would be taken one character at a time
        raise ConfigError(f"{flag}: expected a list of URLs, got the string {value!r}")
    try:
        return normalize_urls(value)
    except URLError as err:
        raise ConfigError(f"{flag}: {err}") from None


def _check_initial_cluster(entries: InitialCluster) -> InitialCluster:
    """Normalise every member's URLs; refuse repeated names and URLs used twice."""
    checked: list[tuple[str, tuple[str, ...]]] = []
    seen_urls: set[str] = set()
    for name, urls in entries:
        if any(name == other for other, _ in checked):
            raise ConfigError(f"--initial-cluster names member {name!r} twice")
        normalised = _urls(urls, f"--initial-cluster: member {name!r}")
        for url in normalised:
            if url in seen_urls:
                raise ConfigError(f"--initial-cluster has duplicate URL {url}")
            seen_urls.add(url)
        checked.append((name, normalised))
    return tuple(checked)
