"""The referrers proxy (tests/support/referrersproxy.py) against the real test registry.

Distribution 2.8.2 has no referrers API; the proxy adds the distribution-spec v1.1 one.
These tests pin what the proxy promises, with raw httpx: ``OCI-Subject`` on pushes with a
subject, the listing and its ``artifactType`` filter, ``Link`` pagination, deletes, access
checks through to an htpasswd registry, and the misbehaving modes the client's tests use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from tests.support.htpasswd import write_htpasswd
from tests.support.referrersproxy import OCI_INDEX, ReferrersProxy
from tests.support.registry import LocalRegistry

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY = {
    "mediaType": "application/vnd.oci.empty.v1+json",
    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
    "size": 2,
}
SUBJECT = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": EMPTY, "layers": [EMPTY]}
SIGNATURE = "application/vnd.example.signature.v1"
SBOM_CONFIG = "application/vnd.example.sbom.config.v1+json"
UNKNOWN = "sha256:" + "0" * 64


# -- raw registry calls --------------------------------------------------------------------


def _bytes(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _push_blob(client: httpx.Client, name: str, data: bytes) -> None:
    started = client.post(f"/v2/{name}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    # httpx `params=` would replace the upload state in Location's query: append instead.
    sep = "&" if "?" in location else "?"
    done = client.put(f"{location}{sep}digest={_digest(data)}", content=data,
                      headers={"Content-Type": "application/octet-stream"})
    assert done.status_code == 201, done.text


def _put_manifest(client: httpx.Client, name: str, doc: dict,
                  reference: str | None = None) -> tuple[httpx.Response, str]:
    data = _bytes(doc)
    digest = _digest(data)
    response = client.put(f"/v2/{name}/manifests/{reference or digest}", content=data,
                          headers={"Content-Type": OCI_MANIFEST})
    assert response.status_code == 201, response.text
    return response, digest


def _referrer(subject: str, *, artifact_type: str | None = None,
              config_type: str | None = None, note: str = "referrer") -> dict:
    doc: dict = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type is not None:
        doc["artifactType"] = artifact_type
    doc["config"] = {**EMPTY, "mediaType": config_type} if config_type else EMPTY
    doc["layers"] = [EMPTY]
    doc["subject"] = {"mediaType": OCI_MANIFEST, "digest": subject, "size": len(_bytes(SUBJECT))}
    doc["annotations"] = {"org.example.note": note}
    return doc


def _list(client: httpx.Client, url: str, artifact_type: str | None = None) -> httpx.Response:
    """GET a listing (adding a filter, if any) and check it is a well-formed index."""
    if artifact_type is not None:
        url += ("&" if "?" in url else "?") + urlencode({"artifactType": artifact_type})
    response = client.get(url)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == OCI_INDEX
    index = response.json()
    assert index["schemaVersion"] == 2 and index["mediaType"] == OCI_INDEX
    return response


def _digests(response: httpx.Response) -> set[str]:
    return {d["digest"] for d in response.json()["manifests"]}


# -- a repository with referrers -----------------------------------------------------------


@dataclass
class Seeded:
    name: str
    subject: str
    signatures: list[str]
    sbom: str
    sbom_size: int

    @property
    def url(self) -> str:
        """The subject's referrers listing."""
        return f"/v2/{self.name}/referrers/{self.subject}"


def _seed(client: httpx.Client, name: str, *, signatures: int = 1) -> Seeded:
    """The empty blob, a tagged subject, ``signatures`` signature referrers (artifactType)
    and one SBOM referrer (no artifactType: its config media type stands for it)."""
    _push_blob(client, name, b"{}")
    response, subject = _put_manifest(client, name, SUBJECT, "v1")
    assert "OCI-Subject" not in response.headers  # no subject, no header
    sigs = []
    for i in range(signatures):
        doc = _referrer(subject, artifact_type=SIGNATURE, note=f"sig{i}")
        response, digest = _put_manifest(client, name, doc)
        assert response.headers["OCI-Subject"] == subject
        sigs.append(digest)
    sbom_doc = _referrer(subject, config_type=SBOM_CONFIG, note="sbom")
    response, sbom = _put_manifest(client, name, sbom_doc)
    assert response.headers["OCI-Subject"] == subject
    return Seeded(name, subject, sigs, sbom, len(_bytes(sbom_doc)))


@pytest.fixture
def proxy(registry: LocalRegistry) -> Iterator[ReferrersProxy]:
    with ReferrersProxy(registry.host) as p:
        yield p


def _client(proxy: ReferrersProxy, auth: tuple[str, str] | None = None) -> httpx.Client:
    return httpx.Client(base_url=f"http://{proxy.host}", timeout=10.0, auth=auth)


@pytest.fixture
def client(proxy: ReferrersProxy) -> Iterator[httpx.Client]:
    with _client(proxy) as c:
        yield c


# -- the tests -----------------------------------------------------------------------------


def test_push_with_subject_is_listed(proxy: ReferrersProxy, client: httpx.Client,
                                     repo_name: str) -> None:
    seeded = _seed(client, repo_name)
    [sig] = seeded.signatures
    listing = _list(client, seeded.url)
    assert "OCI-Filters-Applied" not in listing.headers and "Link" not in listing.headers
    by_digest = {d["digest"]: d for d in listing.json()["manifests"]}
    assert set(by_digest) == {sig, seeded.sbom}
    assert by_digest[seeded.sbom] == {  # artifactType from config.mediaType, per spec
        "mediaType": OCI_MANIFEST, "digest": seeded.sbom, "size": seeded.sbom_size,
        "artifactType": SBOM_CONFIG, "annotations": {"org.example.note": "sbom"},
    }
    assert by_digest[sig]["artifactType"] == SIGNATURE
    # The referrers really are in the registry, reached through the proxy.
    pulled = client.get(f"/v2/{repo_name}/manifests/{sig}", headers={"Accept": OCI_MANIFEST})
    assert pulled.status_code == 200 and _digest(pulled.content) == sig
    assert ("GET", seeded.url) in proxy.requests


def test_empty_listing_and_invalid_digest(client: httpx.Client, repo_name: str) -> None:
    _seed(client, repo_name)
    assert _list(client, f"/v2/{repo_name}/referrers/{UNKNOWN}").json()["manifests"] == []
    assert _list(client, f"/v2/nobody/here/referrers/{UNKNOWN}").json()["manifests"] == []
    for bad in ("sha256:xyz", "sha256:" + "A" * 64, "nodigest", ""):
        assert client.get(f"/v2/{repo_name}/referrers/{bad}").status_code == 400, bad


def test_artifact_type_filter(client: httpx.Client, repo_name: str) -> None:
    seeded = _seed(client, repo_name)
    signatures = _list(client, seeded.url, SIGNATURE)
    assert signatures.headers["OCI-Filters-Applied"] == "artifactType"
    assert _digests(signatures) == set(seeded.signatures)
    assert _digests(_list(client, seeded.url, SBOM_CONFIG)) == {seeded.sbom}
    assert _digests(_list(client, seeded.url, "application/vnd.example.nothing")) == set()


def test_pagination(registry: LocalRegistry, repo_name: str) -> None:
    with ReferrersProxy(registry.host, page_size=1) as proxy, _client(proxy) as client:
        seeded = _seed(client, repo_name, signatures=2)
        url: str | None = seeded.url
        pages = []
        while url is not None:
            page = _list(client, url)
            pages.append(page.json()["manifests"])
            url = page.links.get("next", {}).get("url")
            assert url is None or url.startswith(seeded.url + "?")  # relative, same listing
        assert [len(p) for p in pages] == [1, 1, 1]
        assert {p[0]["digest"] for p in pages} == {*seeded.signatures, seeded.sbom}

        # The filter goes on in the Link: two signature pages, the SBOM never shows.
        first = _list(client, seeded.url, SIGNATURE)
        link = first.links["next"]["url"]
        assert "artifactType=" in link
        second = _list(client, link)
        assert second.headers["OCI-Filters-Applied"] == "artifactType"
        assert "Link" not in second.headers
        assert _digests(first) | _digests(second) == set(seeded.signatures)


def test_delete_removes_referrer(client: httpx.Client, repo_name: str) -> None:
    seeded = _seed(client, repo_name)
    [sig] = seeded.signatures
    deleted = client.delete(f"/v2/{repo_name}/manifests/{sig}")
    assert deleted.status_code == 202, deleted.text
    assert _digests(_list(client, seeded.url)) == {seeded.sbom}
    again = client.delete(f"/v2/{repo_name}/manifests/{sig}")
    assert again.status_code == 404  # the registry's answer, relayed


def test_referrers_404(registry: LocalRegistry, repo_name: str) -> None:
    with ReferrersProxy(registry.host, referrers_404=True) as proxy, _client(proxy) as client:
        _push_blob(client, repo_name, b"{}")
        _, subject = _put_manifest(client, repo_name, SUBJECT, "v1")
        response, _ = _put_manifest(client, repo_name, _referrer(subject, artifact_type=SIGNATURE))
        assert "OCI-Subject" not in response.headers  # the client must use the tag schema
        listing = client.get(f"/v2/{repo_name}/referrers/{subject}")
        assert listing.status_code == 404
        assert listing.headers["Content-Type"].startswith("text/plain")


def test_misbehaving_modes(registry: LocalRegistry, repo_name: str) -> None:
    bad = ReferrersProxy(registry.host, ignore_filter=True, extra_entries=5,
                         content_type="text/plain")
    with bad as proxy, _client(proxy) as client:
        seeded = _seed(client, repo_name)
        response = client.get(seeded.url, params={"artifactType": SIGNATURE})
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/plain"
        assert "OCI-Filters-Applied" not in response.headers  # the client must filter itself
        manifests = response.json()["manifests"]
        assert len(manifests) == 2 + 5
        assert {seeded.sbom, *seeded.signatures} <= {d["digest"] for d in manifests}


@pytest.mark.registry
def test_auth_is_forwarded(tmp_path: Path, repo_name: str) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", "alice", "s3cret")
    with LocalRegistry(htpasswd=htpasswd) as locked, ReferrersProxy(locked.host) as proxy:
        with _client(proxy) as anonymous:
            challenge = anonymous.get("/v2/")
            assert challenge.status_code == 401
            assert challenge.headers["WWW-Authenticate"].startswith("Basic ")
            denied = anonymous.get(f"/v2/{repo_name}/referrers/{UNKNOWN}")
            assert denied.status_code == 401
            assert denied.headers["WWW-Authenticate"] == challenge.headers["WWW-Authenticate"]
        with _client(proxy, auth=("alice", "s3cret")) as client:
            seeded = _seed(client, repo_name)
            assert len(_list(client, seeded.url).json()["manifests"]) == 2
