"""The Python API in one page: push a model directory, inspect it, pull it back, copy it.

    python examples/python_api.py [STORE_REF]

STORE_REF defaults to an OCI layout in a temporary directory (no server needed); pass e.g.
``localhost:5000/team/example`` to use a registry instead.
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

    pushed = ocimodel.push(
        model, f"{store}:1.0",
        name="example", version="1.0", description="Example model", licenses=["Apache-2.0"],
    )
    print(f"pushed {pushed.reference} {pushed.digest}: {len(pushed.files)} files, {pushed.bytes_uploaded} bytes sent")

    again = ocimodel.push(model, f"{store}:1.0", name="example", version="1.0",
                          description="Example model", licenses=["Apache-2.0"])
    assert again.digest == pushed.digest and again.bytes_uploaded == 0  # reproducible, nothing re-sent

    info = ocimodel.inspect(f"{store}:1.0")
    print(f"format {info.config['config'].get('format')}, {info.total_size} bytes in {len(info.files)} files")

    ocimodel.tag(f"{store}:1.0", "latest")
    print("tags:", ocimodel.list_tags(store))

    pulled = ocimodel.pull(f"{store}@{pushed.digest}", work / "pulled")
    print(f"pulled {len(pulled.files)} files into {pulled.destination}")

    copied = ocimodel.copy(f"{store}:1.0", f"oci:{work / 'mirror'}:example-1.0")
    assert copied.digest == pushed.digest  # the digest survives the copy


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        run(Path(tmp), sys.argv[1] if len(sys.argv) > 1 else f"oci:{tmp}/store")
