"""oras-py as a command, so the benchmark measures it the same way as the other tools.

    python benchmarks/oras_driver.py push HOST REPO:TAG DIR     # every file under DIR
    python benchmarks/oras_driver.py pull HOST REPO:TAG OUTDIR

Uses oras-py's defaults (monolithic POST + PUT uploads, which read each file into memory;
4 KiB hashing reads), as a user calling ``OrasClient.push`` / ``.pull`` would get them.
Prints one JSON line: {"bytes": <blob bytes uploaded or downloaded>, "files": N}.

oras-py names a layer after the file's basename, so nested folders come back flat on pull,
and it does not verify the digests of what it downloads.
"""

from __future__ import annotations

import json
import os
import sys

import oras.client
import oras.provider

_moved = {"bytes": 0}


def _count_uploads() -> None:
    registry = oras.provider.Registry
    put_upload, chunked_upload, download_blob = (
        registry.put_upload, registry.chunked_upload, registry.download_blob,
    )

    def counted_put(self, blob, container, layer, *a, **kw):
        response = put_upload(self, blob, container, layer, *a, **kw)
        _moved["bytes"] += int(layer["size"])
        return response

    def counted_chunked(self, blob, container, layer, *a, **kw):
        response = chunked_upload(self, blob, container, layer, *a, **kw)
        _moved["bytes"] += int(layer["size"])
        return response

    def counted_download(self, container, digest, outfile):
        result = download_blob(self, container, digest, outfile)
        if result != os.devnull:
            _moved["bytes"] += os.path.getsize(result)
        return result

    registry.put_upload = counted_put
    registry.chunked_upload = counted_chunked
    registry.download_blob = counted_download


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] not in ("push", "pull"):
        print(__doc__, file=sys.stderr)
        return 2
    verb, host, target, path = argv
    _count_uploads()
    client = oras.client.OrasClient(hostname=host, insecure=True)
    ref = f"{host}/{target}"
    if verb == "push":
        os.chdir(path)  # oras-py wants blob paths under the working directory
        files = sorted(
            os.path.relpath(os.path.join(root, name), ".")
            for root, _dirs, names in os.walk(".")
            for name in names
        )
        client.push(target=ref, files=files, quiet=True)
        count = len(files)
    else:
        count = len(client.pull(target=ref, outdir=path))
    print(json.dumps({"bytes": _moved["bytes"], "files": count}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
