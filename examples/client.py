"""One Client, several operations: the connection settings are given once.

    python examples/client.py [STORE_REF]

STORE_REF defaults to an OCI layout in a temporary directory (no server needed); pass e.g.
``localhost:5000/team/example`` to use a registry instead. For a registry that wants a
login, give the Client ``credentials=(user, token)`` (and ``tls=ocimodel.TlsOptions(
ca_file="ca.pem")`` for a private CA): every call below then uses them.
"""

import sys
import tempfile
from pathlib import Path

import ocimodel

sys.path.insert(0, str(Path(__file__).parent))
from make_example_model import write_model  # noqa: E402


def run(work: Path, store: str) -> None:
    model = work / "model"
    write_model(model)

    client = ocimodel.Client(concurrency=8, retry=ocimodel.RetryPolicy(attempts=3))

    v1 = client.push(model, f"{store}:1.0", name="example", version="1.0", licenses=["Apache-2.0"])
    print(f"pushed {v1.reference} {v1.digest}")
    (model / "README.md").write_text("# example\n\nVersion 1.1: a better README.\n")
    v2 = client.push(model, f"{store}:1.1", name="example", version="1.1", licenses=["Apache-2.0"])
    print(f"pushed {v2.reference}: {len(v2.uploaded)} new blobs, {v2.bytes_skipped} bytes already there")

    changed = client.diff(f"{store}:1.0", f"{store}:1.1")
    print("changed files:", [f.path for f in changed.files_changed])

    client.promote(f"{store}:1.1", "production", reason="better README")
    listed = client.versions(store)
    print("versions:", [(v.tag, v.aliases) for v in listed.versions])

    pulled = client.pull(f"{store}:production", work / "pulled")
    assert pulled.digest == v2.digest
    print(f"pulled production ({pulled.digest[:19]}): {len(pulled.files)} files")

    # The module-level functions are the same operations, with a Client per call.
    assert ocimodel.inspect(f"{store}:1.1").digest == client.inspect(f"{store}:1.1").digest


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), sys.argv[1] if len(sys.argv) > 1 else f"oci:{tmp}/store")
