"""Parsing of registry and OCI layout references (ocimodel.oci.reference)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocimodel.errors import InvalidDigest, InvalidReference, UsageError
from ocimodel.oci.reference import (
    LayoutReference,
    RegistryReference,
    parse_reference,
    parse_registry_reference,
    validate_tag,
)

H256 = "sha256:" + "a" * 64
H256B = "sha256:" + "b" * 64
H512 = "sha512:" + "0123456789abcdef" * 8


# --- valid registry references -------------------------------------------------------------

VALID_REGISTRY = [
    # text, registry, repository, tag, digest
    ("alpine", "docker.io", "library/alpine", None, None),
    ("alpine:3.19", "docker.io", "library/alpine", "3.19", None),
    ("team/sentiment", "docker.io", "team/sentiment", None, None),
    ("team/sentiment:v1", "docker.io", "team/sentiment", "v1", None),
    ("docker.io/alpine", "docker.io", "library/alpine", None, None),
    ("docker.io/library/alpine:latest", "docker.io", "library/alpine", "latest", None),
    ("index.docker.io/alpine", "docker.io", "library/alpine", None, None),
    ("localhost/m", "localhost", "m", None, None),
    ("localhost:5000/team/m:1.0", "localhost:5000", "team/m", "1.0", None),
    (f"127.0.0.1:5000/a@{H256}", "127.0.0.1:5000", "a", None, H256),
    ("[::1]:5000/a:t", "[::1]:5000", "a", "t", None),
    ("[::1]/a", "[::1]", "a", None, None),
    ("ghcr.io/org/m:1", "ghcr.io", "org/m", "1", None),
    ("ghcr.io/org/sub/deep/m", "ghcr.io", "org/sub/deep/m", None, None),
    ("registry.example.com:443/a.b_c__d-e--f/m", "registry.example.com:443", "a.b_c__d-e--f/m",
     None, None),
    ("Registry.Example.COM/m", "Registry.Example.COM", "m", None, None),
    ("myhost:5000/m", "myhost:5000", "m", None, None),
    (f"ghcr.io/org/m:1.0@{H256}", "ghcr.io", "org/m", "1.0", H256),
    (f"ghcr.io/org/m@{H512}", "ghcr.io", "org/m", None, H512),
    (f"m:_x.Y-z@{H256}", "docker.io", "library/m", "_x.Y-z", H256),
    ("m:" + "t" * 128, "docker.io", "library/m", "t" * 128, None),
    ("ghcr.io/" + "/".join(["a" * 50] * 4) + "/" + "b" * 51, "ghcr.io",
     "/".join(["a" * 50] * 4) + "/" + "b" * 51, None, None),  # exactly 255
    # Docker's rule: one component with a port-like suffix is a repository and a tag.
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ("ghcr.io", "docker.io", "library/ghcr.io", None, None),
]


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest"), VALID_REGISTRY)
def test_parse_registry_reference(text, registry, repository, tag, digest):
    for parse in (parse_reference, parse_registry_reference):
        ref = parse(text)
        assert isinstance(ref, RegistryReference)
        assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
            registry,
            repository,
            tag,
            digest,
        )


# --- valid layout references ---------------------------------------------------------------

VALID_LAYOUT = [
    # text, path, tag, digest
    ("oci:./store", "./store", None, None),
    ("oci:store", "store", None, None),
    ("oci:/abs/path", "/abs/path", None, None),
    ("oci:./store:sentiment", "./store", "sentiment", None),
    ("oci:./store:sentiment:1.0", "./store", "sentiment:1.0", None),
    ("oci:store:org/model:v1.0+build@x", "store", "org/model:v1.0+build@x", None),
    ("oci:store:a--b", "store", "a--b", None),
    (f"oci:store@{H256}", "store", None, H256),
    (f"oci:/abs/store:v1@{H256}", "/abs/store", "v1", H256),
    (f"oci:store:name:1.0@{H512}", "store", "name:1.0", H512),
    ("oci:my models/store:v1", "my models/store", "v1", None),
    ("oci:dir@v2/store:tag", "dir@v2/store", "tag", None),
    ("oci:my@dir:tag", "my@dir", "tag", None),
    ("oci:.", ".", None, None),
]


@pytest.mark.parametrize(("text", "path", "tag", "digest"), VALID_LAYOUT)
def test_parse_layout_reference(text, path, tag, digest):
    ref = parse_reference(text)
    assert isinstance(ref, LayoutReference)
    assert ref.path == Path(path)
    assert isinstance(ref.path, Path)
    assert (ref.tag, ref.digest) == (tag, digest)


def test_layout_path_is_not_resolved():
    ref = parse_reference("oci:../models/store:v1")
    assert isinstance(ref, LayoutReference)
    assert str(ref.path) == "../models/store"
    assert not ref.path.is_absolute()


# --- invalid references --------------------------------------------------------------------

INVALID = [
    # text, a fragment the message must contain (the quoted bad part)
    ("", "empty reference"),
    ("   ", "empty reference"),
    (" alpine", '" alpine"'),
    ("alpine\n", '"alpine\\n"'),
    ("al pine", '" "'),
    ("al\tpine", '"\\t"'),
    ("a\x00b", '"\\u0000"'),
    ("a\x1bb:1", '"\\u001b"'),
    ("oci:store\x00:v1", '"\\u0000"'),
    ("oci:store\u202e:v1", '"\\u202e"'),
    ("a\u200bb", '"\\u200b"'),
    ("repo@", 'missing digest after "@"'),
    ("repo@sha256:" + "A" * 64, '"sha256:' + "A" * 64 + '"'),
    ("repo@sha256:" + "ABC" + "a" * 61, "lower-case"),
    ("repo@md5:d41d8cd98f00b204e9800998ecf8427e", '"md5"'),
    ("repo@md5:d41d8cd98f00b204e9800998ecf8427e", '"md5:d41d8cd98f00b204e9800998ecf8427e"'),
    ("repo@sha256:abc", '"sha256:abc"'),
    ("repo@sha256:" + "a" * 65, "64 hex digits, got 65"),
    ("repo@sha512:" + "a" * 64, "128 hex digits, got 64"),
    ("repo@" + "a" * 64, '"' + "a" * 64 + '"'),
    (f"repo@{H256}@{H256B}", 'extra "@"'),
    ("repo@@" + H256[0:], 'extra "@"'),
    ("repo:", 'empty tag after ":"'),
    (f"repo:@{H256}", 'empty tag after ":"'),
    ("localhost:5000/a:v1$", '"v1$"'),
    ("a:.v1", '".v1"'),
    ("a:-v1", '"-v1"'),
    ("a:" + "t" * 129, '"' + "t" * 129 + '"'),
    ("host:99999/x", 'invalid registry port "99999"'),
    ("host:0/x", 'invalid registry port "0"'),
    ("host:/x", 'invalid registry port ""'),
    ("host:50a/x", 'invalid registry port "50a"'),
    ("[::1]:70000/x", 'invalid registry port "70000"'),
    ("host:" + "9" * 5000 + "/x", "invalid registry port"),  # past int()'s digit limit: still our error
    ("host:" + "0" * 5000 + "80000/x", "invalid registry port"),
    ("::1:5000/x", "brackets"),
    ("[::g]:5000/x", '"[::g]:5000"'),
    ("[::1/x", "bracketed IPv6"),
    ("[::1]x/y", '"x"'),
    ("-bad.example.com/x", '"-bad.example.com"'),
    ("bad_host.com/x", '"bad_host.com"'),
    ("/a", 'leading "/"'),
    ("/", 'leading "/"'),
    ("a/", 'trailing "/"'),
    ("ghcr.io/", 'trailing "/"'),
    ("localhost:5000/", 'trailing "/"'),
    ("a//b", '"//"'),
    ("ghcr.io//b", '"//"'),
    ("a/../b", '".."'),
    ("a/./b", '"."'),
    ("ghcr.io/org/-m", '"-m"'),
    ("ghcr.io/org/m-", '"m-"'),
    ("ghcr.io/org/a___b", '"a___b"'),
    ("ghcr.io/org/a..b", '"a..b"'),
    ("Team/x", 'repository name must be lowercase: "Team/x"'),
    ("ghcr.io/Org/Model:1", 'repository name must be lowercase: "Org/Model"'),
    ("Alpine", 'repository name must be lowercase: "Alpine"'),
    ("docker.io/Alpine", 'repository name must be lowercase: "Alpine"'),
    ("LOCALHOST/x", 'repository name must be lowercase: "LOCALHOST/x"'),
    ("ghcr.io/caf\u00e9", '"caf\u00e9"'),
    (":tag", "missing repository"),
    (f"@{H256}", "missing repository"),
    ("ghcr.io/" + "a" * 256, "the limit is 255"),
    ("ghcr.io/" + "/".join(["a" * 50] * 4) + "/" + "b" * 52, "is 256 characters long"),
    ("a" * 250, "the limit is 255"),  # "library/" makes it 258
    ("https://ghcr.io/org/m", '"https://"'),
    ("oci:", "missing layout path"),
    ("oci::v1", "missing layout path"),
    (f"oci:@{H256}", "missing layout path"),
    ("oci:store:", 'empty tag after ":"'),
    ("oci:store@", 'missing digest after "@"'),
    ("oci:store@sha256:" + "A" * 64, '"sha256:' + "A" * 64 + '"'),
    ("oci:store@sha256:xyz", '"sha256:xyz"'),
    ("oci:store@md5:d41d8cd98f00b204e9800998ecf8427e", '"md5"'),
    (f"oci:store@{H256}@{H256B}", 'extra "@"'),
    ("oci:store:bad tag", '"bad tag"'),
    ("oci:store:-x", '"-x"'),
    ("oci:store:a/", '"a/"'),
    ("oci:store:a$b", '"a$b"'),
]


@pytest.mark.parametrize(("text", "fragment"), INVALID)
def test_invalid_reference(text, fragment):
    with pytest.raises(InvalidReference) as info:
        parse_reference(text)
    assert fragment in str(info.value)
    assert info.value.message == str(info.value)
    assert "\n" not in str(info.value)
    assert not isinstance(info.value, InvalidDigest)


def test_invalid_tag_message_matches_the_documented_form():
    with pytest.raises(InvalidReference) as info:
        parse_reference("localhost:5000/a:v1$")
    assert str(info.value) == (
        'invalid tag "v1$" in "localhost:5000/a:v1$": '
        "tags are letters, digits, _ . - (max 128, not starting with . or -)"
    )


def test_invalid_reference_is_a_usage_error():
    with pytest.raises(InvalidReference) as info:
        parse_reference("a:b:c")
    assert isinstance(info.value, UsageError)  # the CLI's exit 2


def test_long_input_is_truncated_in_the_message():
    with pytest.raises(InvalidReference) as info:
        parse_reference("x/" + "Y" * 10_000)
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize("value", [None, 42, b"alpine"])
def test_non_string_is_refused(value):
    with pytest.raises(InvalidReference):
        parse_reference(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text", ["oci:store", "oci:./store:v1", f"oci:/abs@{H256}"]
)
def test_parse_registry_reference_refuses_layouts(text):
    with pytest.raises(InvalidReference) as info:
        parse_registry_reference(text)
    assert f'"{text}"' in str(info.value)


# --- validate_tag --------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["latest", "1.0", "v1.0-rc.1", "_x", "A_b-C.d", "t" * 128])
def test_validate_tag_accepts(tag):
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    "tag", ["", ".x", "-x", "v1$", "a:b", "a/b", "a b", "t" * 129, "caf\u00e9", "a@b"]
)
def test_validate_tag_refuses(tag):
    with pytest.raises(InvalidReference) as info:
        validate_tag(tag)
    if tag:
        assert f'"{tag}"' in str(info.value)


# --- is_loopback ---------------------------------------------------------------------------

LOOPBACK = [
    ("localhost/a", True),
    ("localhost:5000/a", True),
    ("127.0.0.1/a", True),
    ("127.0.0.5:5000/a", True),
    ("127.255.255.254:1/a", True),
    ("[::1]/a", True),
    ("[::1]:5000/a", True),
    ("[0:0:0:0:0:0:0:1]:5000/a", True),
    ("[::ffff:127.0.0.1]:5000/a", True),
    ("example.com/a", False),
    ("example.com:5000/a", False),
    ("localhost.example.com/a", False),
    ("10.0.0.1:5000/a", False),
    ("128.0.0.1/a", False),
    ("[::2]:5000/a", False),
    ("[fe80::1]/a", False),
    ("docker.io/a", False),
    ("a", False),
]


@pytest.mark.parametrize(("text", "expected"), LOOPBACK)
def test_is_loopback(text, expected):
    ref = parse_registry_reference(text)
    assert ref.is_loopback is expected


def test_host_and_port():
    ref = parse_registry_reference("[::1]:5000/a")
    assert (ref.host, ref.port) == ("::1", 5000)
    ref = parse_registry_reference("ghcr.io/a")
    assert (ref.host, ref.port) == ("ghcr.io", None)
    ref = parse_registry_reference("host:" + "0" * 5000 + "80/a")  # leading zeros past int()'s digit limit
    assert (ref.host, ref.port) == ("host", 80)


# --- reference, with_tag, with_digest ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", None),
        ("a:v1", "v1"),
        (f"a@{H256}", H256),
        (f"a:v1@{H256}", H256),
        ("oci:store", None),
        ("oci:store:name:1.0", "name:1.0"),
        (f"oci:store:v1@{H256}", H256),
    ],
)
def test_reference_property(text, expected):
    assert parse_reference(text).reference == expected


def test_with_tag_and_with_digest_registry():
    ref = parse_registry_reference("ghcr.io/org/m:1")
    tagged = ref.with_tag("2")
    assert tagged == RegistryReference("ghcr.io", "org/m", "2")
    assert ref.tag == "1"  # the original is unchanged
    pinned = tagged.with_digest(H256)
    assert (pinned.tag, pinned.digest, pinned.reference) == ("2", H256, H256)
    assert pinned.with_digest(None).reference == "2"
    assert pinned.with_tag(None) == RegistryReference("ghcr.io", "org/m", digest=H256)
    with pytest.raises(InvalidReference, match='"bad tag"'):
        ref.with_tag("bad tag")
    with pytest.raises(InvalidReference, match='"name:1.0"'):
        ref.with_tag("name:1.0")  # a layout ref.name, not a registry tag
    with pytest.raises(InvalidReference, match='"sha256:abc"'):
        ref.with_digest("sha256:abc")


def test_with_tag_and_with_digest_layout():
    ref = parse_reference("oci:./store")
    assert isinstance(ref, LayoutReference)
    tagged = ref.with_tag("sentiment:1.0")
    assert tagged == LayoutReference(Path("store"), "sentiment:1.0")
    assert tagged.with_digest(H256).reference == H256
    with pytest.raises(InvalidReference, match='"-x"'):
        ref.with_tag("-x")
    with pytest.raises(InvalidReference, match='"md5"'):
        ref.with_digest("md5:d41d8cd98f00b204e9800998ecf8427e")


def test_constructors_validate_and_normalise():
    assert RegistryReference("docker.io", "alpine") == parse_reference("alpine")
    assert RegistryReference("index.docker.io", "library/alpine") == parse_reference("alpine")
    from_str = LayoutReference("store", "v1")  # type: ignore[arg-type]
    assert from_str == LayoutReference(Path("store"), "v1")
    assert isinstance(from_str.path, Path)
    with pytest.raises(InvalidReference):
        RegistryReference("ghcr.io", "Org/m")
    with pytest.raises(InvalidReference):
        RegistryReference("ghcr.io:99999", "org/m")
    with pytest.raises(InvalidReference):
        RegistryReference("ghcr.io", "")
    with pytest.raises(InvalidReference):
        LayoutReference("")  # type: ignore[arg-type]


def test_references_are_hashable_and_frozen():
    ref = parse_reference("ghcr.io/org/m:1")
    assert {ref, parse_reference("ghcr.io/org/m:1")} == {ref}
    with pytest.raises(AttributeError):
        ref.tag = "2"  # type: ignore[misc]


# --- str() and round trip ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("alpine", "docker.io/library/alpine"),
        ("team/m:1", "docker.io/team/m:1"),
        ("localhost:5000/team/m:1.0", "localhost:5000/team/m:1.0"),
        (f"[::1]:5000/a:t@{H256}", f"[::1]:5000/a:t@{H256}"),
        ("oci:./store:sentiment:1.0", "oci:store:sentiment:1.0"),
        (f"oci:/abs/path@{H256}", f"oci:/abs/path@{H256}"),
    ],
)
def test_str_is_canonical(text, canonical):
    assert str(parse_reference(text)) == canonical


ROUND_TRIP = (
    [row[0] for row in VALID_REGISTRY]
    + [row[0] for row in VALID_LAYOUT]
    + ["oci:../models/store:v1"]
)


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(text):
    ref = parse_reference(text)
    assert parse_reference(str(ref)) == ref
    assert str(parse_reference(str(ref))) == str(ref)
