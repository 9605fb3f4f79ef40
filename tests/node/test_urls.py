"""node.urls against spec §3.2 (transcripts 07 and 21) and Go's url.Parse strictness."""

from __future__ import annotations

import pytest

from node.domain_errors import InvalidPeerURLs
from node.urls import URLError, normalize_peer_urls, normalize_url, normalize_urls, parse_url_list

# ---- The table of spec §3.2, row by row ----------------------------------------------------

ACCEPTED_LISTS = [
    # (input list, stored list)
    (
        ["http://127.0.0.1:47202", "http://127.0.0.1:47201"],
        ("http://127.0.0.1:47201", "http://127.0.0.1:47202"),
    ),
    ([" http://127.0.0.1:47203 "], ("http://127.0.0.1:47203",)),
    (["HTTP://127.0.0.1:47204"], ("http://127.0.0.1:47204",)),
    (["https://127.0.0.1:47205"], ("https://127.0.0.1:47205",)),
    (["unix://127.0.0.1:47206"], ("unix://127.0.0.1:47206",)),
    (["http://[::1]:47207"], ("http://[::1]:47207",)),
    (["http://localhost:47208"], ("http://localhost:47208",)),
    (["http://127.0.0.1:47210?x=1"], ("http://127.0.0.1:47210?x=1",)),
    (["http://user:pw@127.0.0.1:47211"], ("http://user:pw@127.0.0.1:47211",)),
    (["http://127.0.0.1:47212#frag"], ("http://127.0.0.1:47212#frag",)),
    (["http://127.0.0.1:0"], ("http://127.0.0.1:0",)),
    (["http://127.0.0.1:99999"], ("http://127.0.0.1:99999",)),
    (["http://:47213"], ("http://:47213",)),
    # Duplicates inside one request stay (transcript 07).
    (
        ["http://127.0.0.1:62380", "http://127.0.0.1:62380"],
        ("http://127.0.0.1:62380", "http://127.0.0.1:62380"),
    ),
    # Sorted by the normalised strings, so a lower-cased scheme sorts with its peers.
    (
        ["https://b:1", "HTTP://z:1", "http://a:1"],
        ("http://a:1", "http://z:1", "https://b:1"),
    ),
]

REJECTED_LISTS = [
    ["http://127.0.0.1:47209/"],
    ["http://127.0.0.1:abc"],
    ["http://127.0.0.1"],
    ["foo"],
    ["ftp://127.0.0.1:1"],
    [],
    [""],
    ["http://%zz:1"],
    # One bad URL spoils the list.
    ["http://127.0.0.1:1", "http://127.0.0.1:1/path"],
]


@pytest.mark.parametrize(("given", "stored"), ACCEPTED_LISTS)
def test_accepted_lists_are_normalised_and_sorted(given, stored):
    assert normalize_peer_urls(given) == stored
    assert normalize_urls(given) == stored


@pytest.mark.parametrize("given", REJECTED_LISTS, ids=repr)
def test_rejected_lists_are_invalid_peer_urls(given):
    with pytest.raises(InvalidPeerURLs):
        normalize_peer_urls(given)


def test_a_tuple_or_generator_is_accepted_too():
    assert normalize_peer_urls(iter(("http://b:1", "http://a:1"))) == ("http://a:1", "http://b:1")


# ---- Single URLs: Go's url.Parse and etcd's checks, with the reason ----------------------

ACCEPTED = [
    # (input, normalised)
    ("http://127.0.0.1:2380", "http://127.0.0.1:2380"),
    ("HtTpS://Host.Example:1", "https://Host.Example:1"),  # only the scheme is lower-cased
    ("\t http://127.0.0.1:1 \n", "http://127.0.0.1:1"),  # Go's TrimSpace set
    ("\u00a0http://127.0.0.1:1\u3000", "http://127.0.0.1:1"),
    ("http://127.0.0.1:", "http://127.0.0.1:"),  # empty port: Go's parser and SplitHostPort agree
    ("http://[::ffff:1.2.3.4]:1", "http://[::ffff:1.2.3.4]:1"),
    ("http://[fe80::1%25en0]:1", "http://[fe80::1%25en0]:1"),
    ("http://h:1?", "http://h:1?"),
    ("http://h:1?%zz", "http://h:1?%zz"),  # Parse never validates the query
    ("http://h:1?a/b", "http://h:1?a/b"),  # a slash in the query is not a path
    ("http://a%25b:1", "http://a%25b:1"),  # %25 is the one ASCII escape a host may use
    ("http://%C3%A9:1", "http://%C3%A9:1"),  # non-ASCII escapes are fine in a host
    ("http://h\u00e9:1", "http://h\u00e9:1"),  # and so are non-ASCII characters
    ("http://u%41:p%42@h:1", "http://u%41:p%42@h:1"),
    ("http://@h:1", "http://@h:1"),
    ("http://h:1#a%20b", "http://h:1#a%20b"),
    ("unix:///tmp/etcd.sock", "unix:///tmp/etcd.sock"),  # unix gets no host:port or path check
    ("unixs://host/path", "unixs://host/path"),
    ("unix:relative", "unix:relative"),  # opaque
    ("UNIX://x", "unix://x"),
]

REJECTED = [
    # (input, a fragment of the reason)
    ("", "empty URL"),
    ("   ", "empty URL"),
    ("foo", "URL scheme must be http, https, unix, or unixs: foo"),
    ("ftp://127.0.0.1:1", "URL scheme must be"),
    # Go reads no scheme when it starts with a digit, and then the colon is in a path segment.
    ("127.0.0.1:2380", "first path segment in URL cannot contain colon"),
    ("localhost:2380", "URL scheme must be"),  # scheme "localhost"
    ("//127.0.0.1:1", "URL scheme must be"),
    ("://127.0.0.1:1", "missing protocol scheme"),
    ("1a:b/x", "first path segment in URL cannot contain colon"),
    ("http://127.0.0.1", 'URL address does not have the form "host:port"'),
    ("http://", 'URL address does not have the form "host:port"'),
    ("http:127.0.0.1:1", 'URL address does not have the form "host:port"'),  # opaque, no host
    ("http:/127.0.0.1:1", 'URL address does not have the form "host:port"'),
    ("http:///x", 'URL address does not have the form "host:port"'),
    ("http://[::1]", 'URL address does not have the form "host:port"'),
    ("http://::1:80", 'invalid port "::1:80" after host'),  # the first colon starts the port
    ("http://a:1:2", 'invalid port ":1:2" after host'),
    ("http://127.0.0.1:1/", "URL must not contain a path"),
    ("http://127.0.0.1:1/path", "URL must not contain a path"),
    ("http://127.0.0.1:abc", 'invalid port ":abc" after host'),
    ("http://127.0.0.1:+1", 'invalid port ":+1" after host'),
    ("http://127.0.0.1:\u0661", "invalid port"),  # only ASCII digits
    ("http://[::1]:x", 'invalid port ":x" after host'),
    ("http://%zz:1", 'invalid URL escape "%zz"'),
    ("http://%4:1", 'invalid URL escape "%4:"'),
    ("http://%41:1", 'invalid URL escape "%41"'),  # an ASCII escape in a host
    ("http://a b:1", 'invalid character " " in host name'),
    ("http://a{b}:1", 'invalid character "{" in host name'),
    ("http://a|b:1", 'invalid character "|" in host name'),
    ("http://127.0.0.1:1/%zz", 'invalid URL escape "%zz"'),
    ("unix://x/%zz", 'invalid URL escape "%zz"'),
    ("http://127.0.0.1:1#%zz", 'invalid URL escape "%zz"'),
    ("http://u%zz@h:1", 'invalid URL escape "%zz"'),
    ("http://u:p%z@h:1", 'invalid URL escape "%z"'),
    ("http://u^@h:1", "net/url: invalid userinfo"),
    ("http://\u00fc@h:1", "net/url: invalid userinfo"),
    ("http://[::1:1", "missing ']' in host"),
    ("http://[1.2.3.4]:1", "invalid IP-literal"),
    ("http://[v1.x]:1", "invalid host"),
    ("http://[fe80::1%25]:1", "zone must be a non-empty string"),
    ("http://[fe80::1%en0]:1", 'invalid URL escape "%en"'),
    ("http://a[::1]:1", "invalid IP-literal"),
    ("http://a]:1", 'URL address does not have the form "host:port"'),
    ("http://127.0.0.1:1\x00", "invalid control character"),
    ("http://127.0.0.1:1\x7f", "invalid control character"),
    ("http://127.0.0.1:1\x1c", "invalid control character"),  # Python would strip it, Go does not
]


@pytest.mark.parametrize(("given", "normalised"), ACCEPTED)
def test_accepted_url(given, normalised):
    assert normalize_url(given) == normalised


@pytest.mark.parametrize(("given", "reason"), REJECTED)
def test_rejected_url_says_why(given, reason):
    with pytest.raises(URLError) as caught:
        normalize_url(given)
    assert reason in str(caught.value)
    assert caught.value.url == given.strip(" ")


def test_an_empty_list_has_its_own_reason():
    with pytest.raises(URLError, match="no valid URLs given"):
        normalize_urls([])


def test_invalid_peer_urls_keeps_the_reason_as_its_detail():
    with pytest.raises(InvalidPeerURLs, match='does not have the form "host:port"'):
        normalize_peer_urls(["http://127.0.0.1"])


# ---- Uniqueness is decided on the normalised strings (spec §3.2) --------------------------


@pytest.mark.parametrize(
    ("given", "collides"),
    [
        ("HTTP://127.0.0.1:2380", True),
        (" http://127.0.0.1:2380", True),
        ("http://localhost:2380", False),
    ],
)
def test_normalised_forms_collide_exactly(given, collides):
    assert (normalize_url(given) == "http://127.0.0.1:2380") is collides


# ---- Comma-separated flag values -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("http://b:2379", ("http://b:2379",)),
        ("http://b:2379, http://a:2379", ("http://a:2379", "http://b:2379")),
        ("unix://sock", ("unix://sock",)),
    ],
)
def test_parse_url_list(value, expected):
    assert parse_url_list(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "empty URL"),
        ("http://a:1,", "empty URL"),
        ("http://a:1,http://b", 'URL address does not have the form "host:port": http://b'),
    ],
)
def test_parse_url_list_names_the_bad_url(value, reason):
    with pytest.raises(URLError, match=reason):
        parse_url_list(value)
