"""Whether a registry has the referrers API is known per client, not per process.

Against the real registry, through the proxy that adds the API and can take it away again
(``proxy.referrers_404``), at one URL: the repositories of one client share one probe, and
a new client asks again, so an answer learnt by one client (or one test) never decides
for another."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import ocimodel
from ocimodel.errors import RegistryError
from ocimodel.oci import mediatypes as mt
from ocimodel.targets import referrers as rf
from ocimodel.targets.remote import RemoteRepository
from ocimodel.transport.client import RegistryClient
from tests.support.referrersproxy import ReferrersProxy

EVAL = "application/vnd.example.eval.v1+json"


@pytest.fixture
def proxy(registry) -> Iterator[ReferrersProxy]:
    with ReferrersProxy(registry.host) as started:
        yield started


def _probes(proxy: ReferrersProxy) -> int:
    return sum(1 for method, target in proxy.requests if method == "GET" and "/referrers/" in target)


def _attach(repository: RemoteRepository, subject_ref: str) -> str:
    """A referrer written through the store layer; its digest."""
    subject = repository.resolve(subject_ref)
    layer = rf.push_bytes(repository, EVAL, b'{"accuracy": 0.9}')
    descriptor, _ = rf.push_referrer(repository, subject, EVAL, [layer], {})
    return descriptor.digest


def test_one_probe_per_client_and_a_new_client_asks_again(proxy, model_dir, repo_name):
    proxy.referrers_404 = True  # a registry without the API
    model = ocimodel.push(model_dir, f"{proxy.host}/{repo_name}/a:1")
    ocimodel.push(model_dir, f"{proxy.host}/{repo_name}/b:1")
    with RegistryClient(proxy.host) as client:
        a, b = RemoteRepository(client, f"{repo_name}/a"), RemoteRepository(client, f"{repo_name}/b")
        attached = _attach(a, "1")
        assert [d.digest for d in a.referrers(model.digest)] == [attached]  # the fallback tag
        assert a.referrers(model.digest, EVAL) and b.referrers(model.digest) == []
        assert _probes(proxy) == 1  # two repositories, three listings: one probe
        assert a.listed_by(model.digest) == f"fallback tag {rf.fallback_tag(model.digest)}"

    proxy.referrers_404 = False  # the same URL now has the API (an upgrade, another test)
    with RegistryClient(proxy.host) as client:
        a = RemoteRepository(client, f"{repo_name}/a")
        # Asked again, and believed: the API's listing (the proxy knows only what was
        # pushed while it played the API: nothing), not the fallback tag's.
        assert a.referrers(model.digest) == []
        assert _probes(proxy) == 2
        assert a.listed_by(model.digest) == "referrers API"


def test_a_client_that_saw_the_api_does_not_decide_for_another(proxy, model_dir, repo_name):
    model = ocimodel.push(model_dir, f"{proxy.host}/{repo_name}:1")
    with RegistryClient(proxy.host) as first, RegistryClient(proxy.host) as second:
        one = RemoteRepository(first, repo_name)
        attached = _attach(one, "1")  # the registry indexed it (OCI-Subject): it has the API
        assert [d.digest for d in one.referrers(model.digest)] == [attached]
        assert one.listed_by(model.digest) == "referrers API"

        proxy.referrers_404 = True
        # The first client knows the registry has the API: a 404 now is a fault, never "no
        # referrers" (unchanged behaviour).
        with pytest.raises(RegistryError, match="answered 404"):
            one.referrers(model.digest)
        # The second one never asked: it probes, finds no API and reads the fallback tag
        # (there is none: the referrer was indexed by the API), instead of inheriting
        # "has the API" and failing.
        two = RemoteRepository(second, repo_name)
        assert two.referrers(model.digest) == []
        assert two.listed_by(model.digest) == f"fallback tag {rf.fallback_tag(model.digest)}"


def test_a_referrer_pushed_through_the_store_layer_is_a_bundle_the_trust_layer_reads(
    registry, model_dir, repo_name
):
    """trust/ writes and reads bundles through the store layer alone (no API import)."""
    from ocimodel.trust.store import StoredBundle, read_bundles, write_bundle

    model = ocimodel.push(model_dir, f"{registry.host}/{repo_name}:1")
    with RegistryClient(registry.host) as client:
        repository = RemoteRepository(client, repo_name)
        subject = repository.resolve("1")
        written = write_bundle(repository, subject, b'{"not": "checked here"}', "https://example.com/p")
        found = list(read_bundles(repository, model.digest))
    assert [b.referrer.digest for b in found if isinstance(b, StoredBundle)] == [written.digest]
    assert found[0].bundle == b'{"not": "checked here"}'
    assert found[0].referrer.artifact_type == mt.BUNDLE_MEDIA_TYPE
