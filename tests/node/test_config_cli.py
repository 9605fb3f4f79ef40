"""node.config (NodeConfig, --initial-cluster) and node.cli (flags, ETCD_* variables, main)."""

from __future__ import annotations

import sys
import types
from dataclasses import replace

import pytest

from node import cli
from node.cli import FLAGS, main, parse_config
from node.config import (
    ClusterState,
    ConfigError,
    NodeConfig,
    format_initial_cluster,
    parse_initial_cluster,
)

# ---- NodeConfig ---------------------------------------------------------------------------------


def test_defaults_are_etcds():
    c = NodeConfig()
    assert c.name == "default"
    assert c.data_dir == "default.etcd"
    assert c.listen_client_urls == c.advertise_client_urls == ("http://localhost:2379",)
    assert c.listen_peer_urls == c.initial_advertise_peer_urls == ("http://localhost:2380",)
    assert c.initial_cluster == (("default", ("http://localhost:2380",)),)
    assert format_initial_cluster(c.initial_cluster) == "default=http://localhost:2380"
    assert c.initial_cluster_state is ClusterState.NEW and c.is_new_cluster
    assert c.initial_cluster_token == "etcd-cluster"
    assert (c.heartbeat_interval_ms, c.election_timeout_ms) == (100, 1000)
    assert c.snapshot_count == 100_000
    assert c.strict_reconfig_check is True
    assert c.max_learners == 1
    assert c.auto_promote_learners is False  # not an etcd flag: off unless asked for
    assert c.log_level == "info"
    assert c.health_interval_s == 5.0


def test_derived_values():
    c = NodeConfig()
    assert (c.heartbeat_ticks, c.election_ticks) == (1, 10)
    assert c.tick_interval_s == 0.1
    assert c.request_timeout_s == 7.0
    slow = NodeConfig(heartbeat_interval_ms=50, election_timeout_ms=275)
    assert slow.election_ticks == 5 and slow.request_timeout_s == 5.55


def test_name_drives_the_data_dir_and_the_initial_cluster():
    c = NodeConfig(name="infra1", initial_advertise_peer_urls=("http://127.0.0.1:2380",))
    assert c.data_dir == "infra1.etcd"
    assert c.initial_cluster == (("infra1", ("http://127.0.0.1:2380",)),)
    assert NodeConfig(name="x", data_dir="/var/lib/x").data_dir == "/var/lib/x"


def test_urls_are_normalised():
    c = NodeConfig(
        listen_client_urls=(" HTTP://127.0.0.1:2379", "http://10.0.0.1:2379"),
        initial_advertise_peer_urls=("HTTP://127.0.0.1:2380",),
        initial_cluster=(("default", ("http://127.0.0.1:2380 ",)),),
    )
    assert c.listen_client_urls == ("http://10.0.0.1:2379", "http://127.0.0.1:2379")
    assert c.initial_cluster == (("default", ("http://127.0.0.1:2380",)),)


def test_existing_state_takes_etcdctls_unnamed_entries_and_any_advertised_urls():
    c = NodeConfig(
        name="v6",
        initial_cluster_state=ClusterState.EXISTING,
        initial_advertise_peer_urls=("http://127.0.0.1:62380",),
        initial_cluster=(
            ("v6", ("http://127.0.0.1:62380",)),
            ("", ("http://127.0.0.1:52380",)),
            ("infra1", ("http://127.0.0.1:2380",)),
        ),
    )
    assert not c.is_new_cluster


_IC = (("a", ("http://127.0.0.1:1",)), ("b", ("http://127.0.0.1:2",)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "--name must not be empty"),
        (
            {"heartbeat_interval_ms": 100, "election_timeout_ms": 499},
            "--election-timeout[499ms] should be at least as 5 times as "
            "--heartbeat-interval[100ms]",
        ),
        (
            {"heartbeat_interval_ms": 10_000, "election_timeout_ms": 50_001},
            "--election-timeout[50001ms] is too long, and should be set less than 50000ms",
        ),
        ({"heartbeat_interval_ms": 0}, "--heartbeat-interval[0ms] must be greater than 0"),
        ({"snapshot_count": 0}, "--snapshot-count must be greater than 0"),
        ({"max_learners": 0}, "--max-learners must be at least 1"),
        ({"log_level": "verbose"}, "--log-level: unknown level 'verbose'"),
        ({"health_interval_s": 0.0}, "--health-interval must be a positive number"),
        ({"health_interval_s": float("nan")}, "--health-interval must be a positive number"),
        (
            {"listen_client_urls": ("http://127.0.0.1",)},
            '--listen-client-urls: URL address does not have the form "host:port": '
            "http://127.0.0.1",
        ),
        ({"advertise_client_urls": ()}, "--advertise-client-urls: no valid URLs given"),
        ({"listen_peer_urls": ("ftp://a:1",)}, "--listen-peer-urls: URL scheme must be"),
        (
            {"initial_advertise_peer_urls": "http://a:1"},
            "--initial-advertise-peer-urls: expected a list of URLs",
        ),
        (
            {"name": "c", "initial_cluster": _IC},
            "couldn't find local name 'c' in the initial cluster configuration",
        ),
        (
            {"name": "a", "initial_cluster": _IC},  # advertises localhost:2380
            "--initial-cluster has a=http://127.0.0.1:1 but missing from "
            "--initial-advertise-peer-urls=http://localhost:2380",
        ),
        (
            {
                "name": "a",
                "initial_cluster": _IC,
                "initial_advertise_peer_urls": ("http://127.0.0.1:1", "http://127.0.0.1:9"),
            },
            "--initial-advertise-peer-urls has http://127.0.0.1:9 but missing from "
            "--initial-cluster=a=http://127.0.0.1:1,a=http://127.0.0.1:9",
        ),
        (
            {"initial_cluster": (("default", ("http://localhost:2380",)), ("", ("http://b:1",)))},
            "a new cluster needs every founding member named",
        ),
        (
            {"initial_cluster": (("default", ("http://localhost:2380",)), ("b", ("http://x",)))},
            "--initial-cluster: member 'b': URL address does not have the form",
        ),
        (
            {
                "initial_cluster": (
                    ("default", ("http://localhost:2380",)),
                    ("b", ("http://localhost:2380",)),
                )
            },
            "--initial-cluster has duplicate URL http://localhost:2380",
        ),
        (
            {
                "initial_cluster": (
                    ("default", ("http://localhost:2380",)),
                    ("default", ("http://b:1",)),
                )
            },
            "--initial-cluster names member 'default' twice",
        ),
    ],
)
def test_invalid_configs(kwargs, message):
    with pytest.raises(ConfigError) as caught:
        NodeConfig(**kwargs)
    assert message in str(caught.value)


def test_existing_state_still_needs_its_own_name():
    with pytest.raises(ConfigError, match="couldn't find local name 'c'"):
        NodeConfig(name="c", initial_cluster=_IC, initial_cluster_state=ClusterState.EXISTING)


def test_replace_keeps_validating():
    with pytest.raises(ConfigError):
        replace(NodeConfig(), election_timeout_ms=100)


# ---- --initial-cluster --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("default=http://localhost:2380", [("default", ("http://localhost:2380",))]),
        (
            # etcdctl's line after adding a voter next to an unstarted learner (transcript 20).
            "v6=http://127.0.0.1:62380,infra2=http://127.0.0.1:22380,=http://127.0.0.1:52380",
            [
                ("v6", ("http://127.0.0.1:62380",)),
                ("infra2", ("http://127.0.0.1:22380",)),
                ("", ("http://127.0.0.1:52380",)),
            ],
        ),
        (
            # A name given twice collects its URLs, sorted; empty pieces are skipped.
            "a=http://h:2,,b=http://h:3,a=HTTP://h:1,",
            [("a", ("http://h:1", "http://h:2")), ("b", ("http://h:3",))],
        ),
        ("", []),
        ("a=http://h:1?q=x", [("a", ("http://h:1?q=x",))]),  # only the first "=" splits
    ],
)
def test_parse_initial_cluster(value, parsed):
    assert parse_initial_cluster(value) == parsed


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("a", "member 'a': empty URL"),
        ("a=http://h:1,b", "member 'b': empty URL"),
        ("a=http://h", "member 'a': URL address does not have the form"),
    ],
)
def test_parse_initial_cluster_refuses(value, message):
    with pytest.raises(ConfigError, match=message):
        parse_initial_cluster(value)


# ---- Flags and ETCD_* variables -----------------------------------------------------------------

THREE_NODES = [
    "--name",
    "infra2",
    "--initial-advertise-peer-urls",
    "http://127.0.0.1:22380",
    "--listen-peer-urls=http://127.0.0.1:22380",
    "--listen-client-urls",
    "http://127.0.0.1:22379",
    "--advertise-client-urls=http://127.0.0.1:22379",
    "--initial-cluster",
    "infra1=http://127.0.0.1:2380,infra2=http://127.0.0.1:22380,infra3=http://127.0.0.1:32380",
    "--initial-cluster-token=etcd-cluster-1",
    "--initial-cluster-state",
    "new",
]


def test_every_flag_sets_its_field():
    c = parse_config(
        [
            *THREE_NODES,
            "--data-dir=/tmp/d",
            "--heartbeat-interval=50",
            "--election-timeout",
            "500",
            "--snapshot-count=10",
            "--strict-reconfig-check=false",
            "--max-learners=2",
            "--auto-promote-learners",
            "--log-level",
            "debug",
            "--health-interval=0.25",
        ],
        {},
    )
    assert c == NodeConfig(
        name="infra2",
        data_dir="/tmp/d",
        listen_client_urls=("http://127.0.0.1:22379",),
        advertise_client_urls=("http://127.0.0.1:22379",),
        listen_peer_urls=("http://127.0.0.1:22380",),
        initial_advertise_peer_urls=("http://127.0.0.1:22380",),
        initial_cluster=(
            ("infra1", ("http://127.0.0.1:2380",)),
            ("infra2", ("http://127.0.0.1:22380",)),
            ("infra3", ("http://127.0.0.1:32380",)),
        ),
        initial_cluster_state=ClusterState.NEW,
        initial_cluster_token="etcd-cluster-1",
        heartbeat_interval_ms=50,
        election_timeout_ms=500,
        snapshot_count=10,
        strict_reconfig_check=False,
        max_learners=2,
        auto_promote_learners=True,
        log_level="debug",
        health_interval_s=0.25,
    )


def test_no_arguments_give_the_defaults():
    assert parse_config([], {}) == NodeConfig()


def test_flags_table_covers_every_field_once():
    fields = [f.field for f in FLAGS]
    assert sorted(fields) == sorted(NodeConfig.__dataclass_fields__)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--strict-reconfig-check"], True),
        (["--strict-reconfig-check=false"], False),
        (["--strict-reconfig-check=0"], False),
        (["--strict-reconfig-check=F"], False),
        (["--strict-reconfig-check=TRUE"], True),
        (["-strict-reconfig-check=false"], False),  # Go takes one dash too
        (["--strict-reconfig-check=false", "--strict-reconfig-check"], True),  # last wins
    ],
)
def test_boolean_flag(argv, expected):
    assert parse_config(argv, {}).strict_reconfig_check is expected


def test_single_dash_and_last_occurrence_wins():
    c = parse_config(["-name", "a", "--name=b", "-data-dir=x"], {})
    assert (c.name, c.data_dir) == ("b", "x")


def test_a_value_may_start_with_a_dash():
    assert parse_config(["--data-dir", "-odd"], {}).data_dir == "-odd"


def test_double_dash_ends_the_flags():
    assert parse_config(["--name=a", "--"], {}).name == "a"
    with pytest.raises(ConfigError, match="unexpected argument 'x'"):
        parse_config(["--", "x"], {})


def test_environment_variables_set_unset_flags():
    # The four lines etcdctl prints after `member add` (transcript 20), used as they are.
    env = {
        "ETCD_NAME": "v6",
        "ETCD_INITIAL_CLUSTER": "v6=http://127.0.0.1:62380,infra2=http://127.0.0.1:22380,"
        "=http://127.0.0.1:52380,infra1=http://127.0.0.1:2380,infra3=http://127.0.0.1:32380",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": "http://127.0.0.1:62380",
        "ETCD_INITIAL_CLUSTER_STATE": "existing",
        "ETCD_STRICT_RECONFIG_CHECK": "false",
        "ETCD_HEARTBEAT_INTERVAL": "20",
        "ETCD_ELECTION_TIMEOUT": "200",
        "ETCD_HEALTH_INTERVAL": "1.5",
        "ETCD_AUTO_PROMOTE_LEARNERS": "true",
    }
    c = parse_config([], env)
    assert c.name == "v6" and c.data_dir == "v6.etcd"
    assert c.initial_cluster_state is ClusterState.EXISTING
    assert len(c.initial_cluster) == 5 and ("", ("http://127.0.0.1:52380",)) in c.initial_cluster
    assert c.initial_advertise_peer_urls == ("http://127.0.0.1:62380",)
    assert c.strict_reconfig_check is False
    assert c.auto_promote_learners is True
    assert (c.heartbeat_interval_ms, c.election_timeout_ms, c.health_interval_s) == (20, 200, 1.5)


def test_a_flag_wins_over_its_environment_variable():
    c = parse_config(["--name=flag"], {"ETCD_NAME": "env", "ETCD_DATA_DIR": "envdir"})
    assert (c.name, c.data_dir) == ("flag", "envdir")


def test_empty_environment_variables_and_unrelated_ones_are_ignored():
    c = parse_config([], {"ETCD_NAME": "", "ETCD_UNKNOWN": "x", "NAME": "y"})
    assert c.name == "default"


def test_flag_names_map_to_etcd_variable_names():
    envs = {f.name: f.env for f in FLAGS}
    assert envs["initial-advertise-peer-urls"] == "ETCD_INITIAL_ADVERTISE_PEER_URLS"
    assert envs["strict-reconfig-check"] == "ETCD_STRICT_RECONFIG_CHECK"


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--bogus=1"], {}, "unknown flag --bogus"),
        (["--name"], {}, "flag needs an argument: --name"),
        (["--name", "a", "stray"], {}, "unexpected argument 'stray'"),
        (["--strict-reconfig-check", "false"], {}, "unexpected argument 'false'"),
        (["---name=a"], {}, "bad flag syntax: ---name=a"),
        (["--=a"], {}, "bad flag syntax: --=a"),
        (["-"], {}, "unexpected argument '-'"),
        (
            ["--heartbeat-interval=abc"],
            {},
            "invalid value 'abc' for flag --heartbeat-interval: expected a non-negative decimal",
        ),
        (["--heartbeat-interval=-5"], {}, "invalid value '-5' for flag --heartbeat-interval"),
        (["--strict-reconfig-check=maybe"], {}, "expected a boolean"),
        (["--health-interval=soon"], {}, "expected a number of seconds"),
        (["--health-interval=inf"], {}, "expected a finite number of seconds"),
        (
            ["--initial-cluster-state=old"],
            {},
            "invalid value 'old' for flag --initial-cluster-state: valid values are",
        ),
        (
            [],
            {"ETCD_ELECTION_TIMEOUT": "1s"},
            "invalid value '1s' for ETCD_ELECTION_TIMEOUT: expected a non-negative decimal",
        ),
        (
            ["--listen-peer-urls=http://127.0.0.1:1,http://b"],
            {},
            "invalid value 'http://127.0.0.1:1,http://b' for flag --listen-peer-urls: "
            'URL address does not have the form "host:port": http://b',
        ),
        (["--initial-cluster="], {}, "expected at least one name=URL entry"),
        (["--initial-cluster=a"], {}, "--initial-cluster: member 'a': empty URL"),
        (
            ["--listen-client-urls=http://127.0.0.1:22379"],
            {},
            "--advertise-client-urls is required when --listen-client-urls is set explicitly",
        ),
        (
            [],
            {"ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:22379"},
            "--advertise-client-urls is required",
        ),
        (["--election-timeout=200"], {}, "should be at least as 5 times"),
    ],
)
def test_bad_input_is_a_config_error(argv, env, message):
    with pytest.raises(ConfigError) as caught:
        parse_config(argv, env)
    assert message in str(caught.value)


def test_advertise_from_the_environment_satisfies_an_explicit_listen_flag():
    c = parse_config(
        ["--listen-client-urls=http://127.0.0.1:22379"],
        {"ETCD_ADVERTISE_CLIENT_URLS": "http://127.0.0.1:22379"},
    )
    assert c.advertise_client_urls == ("http://127.0.0.1:22379",)


# ---- main() -----------------------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    for flag in FLAGS:
        monkeypatch.delenv(flag.env, raising=False)


@pytest.fixture
def fake_server(monkeypatch):
    """node.server replaced by a module whose run() records its config."""
    calls: list[NodeConfig] = []
    module = types.ModuleType("node.server")

    def run(config: NodeConfig) -> int:
        calls.append(config)
        return 7

    module.run = run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "node.server", module)
    return calls


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--election-timeout=100"], "should be at least as 5 times"),
        (["--bogus"], "unknown flag --bogus"),
        (["--listen-peer-urls=foo"], "URL scheme must be http, https, unix, or unixs: foo"),
        (["bogus", "list"], "unknown command 'bogus'"),
    ],
)
def test_main_reports_bad_input_in_one_line_and_exits_1(
    argv, message, capsys, clean_env, fake_server
):
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("raftnode: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert fake_server == []


def test_main_runs_the_server_with_the_config(clean_env, fake_server):
    assert main(["--name=default", "--election-timeout=2000"]) == 7
    assert fake_server == [NodeConfig(election_timeout_ms=2000)]


def test_main_reads_the_process_arguments_and_environment(monkeypatch, clean_env, fake_server):
    monkeypatch.setattr(sys, "argv", ["raftnode", "--data-dir=/srv/d"])
    monkeypatch.setenv("ETCD_SNAPSHOT_COUNT", "5")
    assert main() == 7
    assert (fake_server[0].data_dir, fake_server[0].snapshot_count) == ("/srv/d", 5)


@pytest.mark.parametrize("flag", ["--help", "-h", "-help"])
def test_help_prints_the_flags_and_exits_0(flag, capsys, clean_env, fake_server):
    assert main(["--name=x", flag]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: raftnode") and err == ""
    assert all(f"--{f.name}" in out for f in FLAGS)
    assert fake_server == []


def test_a_first_word_dispatches_to_a_subcommand(monkeypatch, clean_env):
    seen: list[list[str]] = []

    def member(args, environ):
        seen.append(list(args))
        return 3

    monkeypatch.setattr(cli, "COMMANDS", {"member": member})
    assert main(["member", "list", "--endpoints=x"]) == 3
    assert seen == [["list", "--endpoints=x"]]
