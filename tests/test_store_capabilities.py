"""The store abilities of targets/base.py: which store has which, that the engines ask for
them by name (never by probing an object for an attribute), and that trust/ writes its
referrers through the store layer. No registry: runs in about a second."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest

import ocimodel
from ocimodel.oci import mediatypes as mt
from ocimodel.oci.models import Descriptor
from ocimodel.packaging.package import PackagedModel
from ocimodel.packaging.unpack import DirectoryWriter
from ocimodel.targets import base
from ocimodel.targets import referrers as rf
from ocimodel.targets.copy import copy_graph
from ocimodel.targets.layout import OciLayout
from ocimodel.targets.remote import RemoteRepository
from ocimodel.transport.client import RegistryClient
from tests.test_imports import PACKAGE, SRC, analyse

# -- which store has which ability -------------------------------------------------------

EVERY_ABILITY = {
    name: value for name, value in vars(base).items()
    if isinstance(value, type) and getattr(value, "_is_protocol", False) and value.__module__ == base.__name__
}
# What each store is, by the composition and the optional abilities it has (the table in
# targets/base.py's docstring).
HAS = {
    "OciLayout": {"Target", "ReferrerReader", "ReferrerSource", "ReferrerWriter", "ReferrerEditor", "UnhashedPusher",
                  "BlobRangeReader"},
    "RemoteRepository": {"Target", "ReferrerReader", "ReferrerSource", "ReferrerWriter", "ReferrerEditor", "UnhashedPusher", "Mounter",
                         "BlobRangeReader", "PartFetcher"},
    "PackagedModel": {"ReadableTarget"},
    "DirectoryWriter": {"WritableTarget", "FileReceiver"},
}


def _members(protocol: type) -> dict[str, object]:
    """The methods and attributes a protocol asks for, its bases' included."""
    members: dict[str, object] = {}
    for klass in reversed(protocol.__mro__):
        if not getattr(klass, "_is_protocol", False) or klass.__module__ == "typing":
            continue
        members.update({n: v for n, v in vars(klass).items() if inspect.isfunction(v) and not n.startswith("_")})
        members.update({n: "attribute" for n in vars(klass).get("__annotations__", {})})
    return members


def _abilities(names: set[str]) -> set[str]:
    """The names and every protocol they are built from."""
    found = set()
    for name in names:
        found |= {k.__name__ for k in EVERY_ABILITY[name].__mro__ if k.__name__ in EVERY_ABILITY}
    return found


def _check(store: object, protocol: type) -> list[str]:
    """What ``store`` lacks of ``protocol``: a member, or a parameter (by name and kind; an
    extra parameter of the store's must have a default)."""
    problems = []
    for name, wanted in _members(protocol).items():
        if not hasattr(store, name):
            problems.append(f"no {name}")
            continue
        if wanted == "attribute":
            continue
        asked = list(inspect.signature(wanted).parameters.values())[1:]  # without self
        given = inspect.signature(getattr(store, name)).parameters
        for parameter in asked:
            mine = given.get(parameter.name)
            if mine is None or mine.kind != parameter.kind:
                problems.append(f"{name}: parameter {parameter.name} missing or of another kind")
            elif parameter.default is not inspect.Parameter.empty and mine.default is inspect.Parameter.empty:
                problems.append(f"{name}: parameter {parameter.name} needs a default")
        for extra in set(given) - {p.name for p in asked}:
            if given[extra].default is inspect.Parameter.empty:
                problems.append(f"{name}: extra parameter {extra} without a default")
    return problems


@pytest.fixture
def stores(tmp_path: Path):
    layout = OciLayout(tmp_path / "store", create=True)
    packaged = PackagedModel(tmp_path, [], b"{}", b"{}")
    with RegistryClient("127.0.0.1:9") as client, DirectoryWriter(tmp_path / "out", []) as writer:
        yield {
            "OciLayout": layout,
            "RemoteRepository": RemoteRepository(client, "team/model"),
            "PackagedModel": packaged,
            "DirectoryWriter": writer,
        }


@pytest.mark.parametrize("store_name", sorted(HAS))
def test_each_store_has_exactly_the_abilities_it_is_documented_with(stores, store_name):
    store = stores[store_name]
    expected = _abilities(HAS[store_name])
    for name, protocol in EVERY_ABILITY.items():
        assert isinstance(store, protocol) == (name in expected), f"{store_name} {'lacks' if name in expected else 'has'} {name}"
        if name in expected:
            assert _check(store, protocol) == [], f"{store_name} as a {name}"


def test_the_checker_sees_a_wrong_signature():
    class Wrong:
        name = "wrong"

        def resolve(self, ref: str) -> Descriptor: ...  # not "reference"

        def fetch_manifest(self, descriptor: Descriptor, extra: int) -> bytes: ...

    assert sorted(_check(Wrong(), base.ReadableTarget)) == [
        "fetch_manifest: extra parameter extra without a default",
        "no open_blob",
        "resolve: extra parameter ref without a default",
        "resolve: parameter reference missing or of another kind",
    ]


# -- optional abilities are named, not probed ----------------------------------------------


# The protocols of targets/base.py, and the compositions of them made where they are used.
STORE_TYPES = set(EVERY_ABILITY) | {"BundleReader", "OciLayout", "RemoteRepository"}


def _store_parameters(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """The parameters of ``function`` annotated with a store type."""
    names = set()
    for argument in function.args.args + function.args.kwonlyargs + function.args.posonlyargs:
        annotation = ast.unparse(argument.annotation) if argument.annotation else ""
        if STORE_TYPES & set(re.findall(r"\w+", annotation)):
            names.add(argument.arg)
    return names


def test_no_store_is_probed_for_an_attribute():
    """A store typed with a protocol is never asked ``hasattr(store, ...)`` or
    ``getattr(store, ..., default)``: an optional ability is a protocol of its own, checked
    with isinstance (see base.Mounter)."""
    probes = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            typed = _store_parameters(function)
            for node in ast.walk(function):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in ("hasattr", "getattr")
                    and node.args
                    and isinstance(node.args[0], ast.Name)
                    and node.args[0].id in typed
                ):
                    probes.append(f"{path.relative_to(SRC)}:{node.lineno} {ast.unparse(node)}")
    assert probes == []


def test_the_copy_engine_mounts_through_a_mounter_and_copies_otherwise(tmp_path, model_dir):
    ocimodel.push(model_dir, f"oci:{tmp_path / 'source'}:1")
    source = OciLayout(tmp_path / "source")
    root = source.resolve("1")
    asked: list[str] = []

    class MountingLayout(OciLayout):
        def mount_from(self, descriptor: Descriptor, source: base.ReadableTarget) -> bool:
            asked.append(descriptor.digest)
            # Stands in for a registry's link: the bytes arrive without being streamed.
            with source.open_blob(descriptor) as chunks:
                self.push_blob(descriptor, chunks)
            return True

    mounting = MountingLayout(tmp_path / "mounting", create=True)
    mounted = copy_graph(source, mounting, root, tag="1")
    copied = copy_graph(source, OciLayout(tmp_path / "plain", create=True), root, tag="1")

    assert sorted(asked) == sorted(d.digest for d in mounted.mounted) and asked
    assert mounted.copied == [] and sorted(d.digest for d in copied.copied) == sorted(asked)


# -- writing a referrer is a store operation ------------------------------------------------


def test_push_referrer_writes_a_findable_referrer_into_any_writable_store(tmp_path, model_dir):
    ocimodel.push(model_dir, f"oci:{tmp_path / 'store'}:1")
    layout = OciLayout(tmp_path / "store")
    subject = layout.resolve("1")
    layer = rf.push_bytes(layout, "application/vnd.example.record+json", b'{"ok": true}')
    descriptor, data = rf.push_referrer(layout, subject, "application/vnd.example.record+json", [layer], {"k": "v"})

    manifest = json.loads(data)
    assert manifest["subject"]["digest"] == subject.digest
    assert manifest["config"]["digest"] == mt.EMPTY_DIGEST and layout.has_blob(Descriptor.model_validate(manifest["config"]))
    assert manifest["layers"] == [layer.model_dump(by_alias=True, exclude_none=True)]
    assert manifest["annotations"]["k"] == "v" and mt.ANNOTATION_CREATED in manifest["annotations"]
    assert [d.digest for d in layout.referrers(subject.digest)] == [descriptor.digest]
    assert layout.listed_by(subject.digest) == "layout index"


def test_trust_uses_the_store_layer_never_the_api():
    analysis = analyse(SRC, PACKAGE)
    above = ("ocimodel.api", "ocimodel.cli", "ocimodel.lineage")
    wrong = sorted(
        f"{e.importer} -> {e.imported} at {e.where}" for e in analysis.edges
        if e.importer.startswith("ocimodel.trust")
        and (e.imported == PACKAGE or e.imported.startswith(above))
    )
    assert wrong == []
