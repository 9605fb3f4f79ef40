"""node.ids: every verification vector of spec §3.3, and the ID edge checks (pitfall 5)."""

from __future__ import annotations

import pytest

from node.ids import (
    MAX_ID,
    bootstrap_member_id,
    check_id,
    cluster_id,
    format_id,
    member_id,
    parse_id,
    runtime_member_id,
)

INFRA1 = 0xBF9071F4639C75CC
INFRA2 = 0x91BC3C398FB3C146
INFRA3 = 0xFD422379FDA50E48


@pytest.mark.parametrize(
    ("peer_urls", "token", "hex_id", "decimal_id"),
    [
        (["http://127.0.0.1:2380"], "etcd-cluster-1", "bf9071f4639c75cc", 13803658152347727308),
        (["http://127.0.0.1:22380"], "etcd-cluster-1", "91bc3c398fb3c146", 10501334649042878790),
        (["http://127.0.0.1:32380"], "etcd-cluster-1", "fd422379fda50e48", 18249187646912138824),
    ],
)
def test_bootstrap_member_ids_of_the_reference_cluster(peer_urls, token, hex_id, decimal_id):
    got = bootstrap_member_id(peer_urls, token)
    assert got == decimal_id
    assert format_id(got) == hex_id


def test_cluster_id_of_the_reference_cluster():
    got = cluster_id([INFRA1, INFRA2, INFRA3])
    assert got == 403640855964645870
    assert format_id(got) == "59a05384c9b79ee"


def test_cluster_id_does_not_depend_on_the_order_of_its_members():
    assert cluster_id([INFRA3, INFRA1, INFRA2]) == cluster_id([INFRA1, INFRA2, INFRA3])


@pytest.mark.parametrize(
    ("peer_url", "token", "member_hex", "cluster_hex"),
    [
        # etcd's single-node defaults.
        ("http://localhost:2380", "etcd-cluster", "8e9e05c52164694d", "cdf818194e3a8c32"),
        # The scratch cluster of transcripts 13 and 14.
        ("http://127.0.0.1:12380", "scratch", "1ed8169a819ac9e8", "f7efca0e398d161f"),
    ],
)
def test_single_member_clusters(peer_url, token, member_hex, cluster_hex):
    member = bootstrap_member_id([peer_url], token)
    assert format_id(member) == member_hex
    assert format_id(cluster_id([member])) == cluster_hex


def test_runtime_member_id_hashes_empty_name_and_the_second():
    got = runtime_member_id(["http://127.0.0.1:42380"], 1795478781)
    assert format_id(got) == "3e6a519c54fd7afc"
    assert got == member_id(["http://127.0.0.1:42380"], "", 1795478781)


def test_same_urls_in_the_same_second_collide_and_the_next_second_does_not():
    urls = ["http://127.0.0.1:42380"]
    assert runtime_member_id(urls, 1795478781) == runtime_member_id(urls, 1795478781)
    assert runtime_member_id(urls, 1795478781) != runtime_member_id(urls, 1795478782)


def test_peer_urls_are_sorted_before_hashing():
    a, b = "http://127.0.0.1:1", "http://127.0.0.1:2"
    assert bootstrap_member_id([b, a], "t") == bootstrap_member_id([a, b], "t")
    assert bootstrap_member_id([a, b], "t") == member_id([], a + b + "t")


def test_negative_time_is_refused():
    with pytest.raises(ValueError, match="negative"):
        member_id(["http://a:1"], "", -1)


def test_a_cluster_needs_a_member():
    with pytest.raises(ValueError, match="at least one"):
        cluster_id([])


# ---- Range checks and text forms -------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 0xBF9071F4639C75CC, MAX_ID])
def test_check_id_accepts_the_uint64_range_without_zero(value):
    assert check_id(value) == value


@pytest.mark.parametrize("value", [0, -1, 2**64, True, 1.0, "1", None])
def test_check_id_refuses_everything_else(value):
    with pytest.raises(ValueError):
        check_id(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [(1, "1"), (0x59A05384C9B79EE, "59a05384c9b79ee"), (MAX_ID, "ffffffffffffffff")],
)
def test_format_id_is_lowercase_unpadded_hex(value, text):
    assert format_id(value) == text


def test_format_id_refuses_an_invalid_id():
    with pytest.raises(ValueError):
        format_id(0)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("bf9071f4639c75cc", INFRA1),
        ("BF9071F4639C75CC", INFRA1),
        ("59a05384c9b79ee", 0x59A05384C9B79EE),
        ("0059a05384c9b79ee", 0x59A05384C9B79EE),  # ParseUint takes leading zeros
        ("ffffffffffffffff", MAX_ID),
    ],
)
def test_parse_id(text, value):
    assert parse_id(text) == value


@pytest.mark.parametrize(
    "text",
    ["", "zz", "0", "0x1f", "+1f", "-1", " 1f", "1f ", "1_f", "10000000000000000", "１"],
)
def test_parse_id_refuses(text):
    with pytest.raises(ValueError):
        parse_id(text)


@pytest.mark.parametrize("value", [1, 0xFF, INFRA1, MAX_ID])
def test_format_and_parse_round_trip(value):
    assert parse_id(format_id(value)) == value
