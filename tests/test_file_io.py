"""The shared file infrastructure: atomic writes (ocimodel.atomicwrite) and capped reads
(ocimodel.chunks.read_capped). What every caller relies on: a file appears whole or not
at all and leaves no temporary file; a small document read from disk never costs more
memory than its cap and never hangs on a fifo put in its place."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ocimodel.atomicwrite import atomic_file, atomic_write
from ocimodel.chunks import FileTooLarge, NotARegularFile, read_capped
from ocimodel.errors import StoreError, UsageError


def _names(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "index.json"
    target.write_bytes(b"old")

    def pieces():
        yield b"new, "
        raise RuntimeError("the source failed half way")

    with pytest.raises(RuntimeError):
        atomic_write(target, pieces())
    assert target.read_bytes() == b"old"
    assert _names(tmp_path) == ["index.json"]


def test_an_interrupt_leaves_nothing_either(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), atomic_file(tmp_path / "out") as file:
        file.write(b"part")
        raise KeyboardInterrupt
    assert _names(tmp_path) == []


def test_the_mode_is_not_cut_by_the_umask_and_defaults_to_private(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "shared", b"x", mode=0o644)
        atomic_write(tmp_path / "private", [b"a", b"b"])
    finally:
        os.umask(old)
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "private").read_bytes() == b"ab"


def test_a_name_learnt_from_the_bytes_and_a_refusing_place(tmp_path: Path) -> None:
    with atomic_file(tmp_path / "placeholder") as file:
        file.write(b"blob")
        file.path = tmp_path / "named-after-the-bytes"
    assert _names(tmp_path) == ["named-after-the-bytes"]

    def refuse(temp: Path, path: Path) -> None:
        raise FileExistsError(path)

    with pytest.raises(FileExistsError), atomic_file(tmp_path / "other", place=refuse) as file:
        file.write(b"x")
    assert _names(tmp_path) == ["named-after-the-bytes"]


def test_read_capped_reads_up_to_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "doc"
    path.write_bytes(b"x" * 10)
    assert read_capped(path, 10) == b"x" * 10
    with pytest.raises(FileTooLarge) as too_large:
        read_capped(path, 9)
    assert too_large.value.size == 10 and too_large.value.limit == 9
    with pytest.raises(FileNotFoundError):
        read_capped(tmp_path / "missing", 10)
    with pytest.raises(NotARegularFile):
        read_capped(tmp_path, 10)


def test_read_capped_can_refuse_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"data")
    os.symlink("real", tmp_path / "link")
    assert read_capped(tmp_path / "link", 10) == b"data"
    with pytest.raises(OSError):
        read_capped(tmp_path / "link", 10, follow_symlinks=False)


def _finishes(call, seconds: float = 10.0) -> BaseException | None:
    """Run ``call`` in a thread; the error it raised, failing the test if it hangs (a
    fifo nobody writes to blocks a plain open() for ever)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, "the read blocked on a fifo"
    return outcome[0]


def test_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    assert isinstance(_finishes(lambda: read_capped(tmp_path / "fifo", 10)), NotARegularFile)


def test_a_fifo_as_a_layouts_index_or_a_model_card_fails_at_once(tmp_path: Path) -> None:
    from ocimodel.metadata.sources import load_card_file
    from ocimodel.targets.layout import OciLayout

    layout = OciLayout(tmp_path / "store", create=True)
    os.unlink(tmp_path / "store" / "index.json")
    os.mkfifo(tmp_path / "store" / "index.json")
    error = _finishes(layout.list_tags)
    assert isinstance(error, StoreError) and "not a regular file" in error.message

    os.mkfifo(tmp_path / "ocimodel.yaml")
    error = _finishes(lambda: load_card_file(tmp_path / "ocimodel.yaml"))
    assert isinstance(error, UsageError) and "not a regular file" in error.message


def test_a_fifo_as_a_policy_a_predicate_or_a_key_fails_at_once(tmp_path: Path) -> None:
    """These were read by a size check on the path and then read_bytes(): a fifo has size
    0, so the read waited for a writer for ever."""
    from ocimodel.signing.errors import KeyLoadError
    from ocimodel.signing.keys import load_public_key
    from ocimodel.trust.attest import load_predicate
    from ocimodel.trust.policy import PolicyError, load_policy

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for call, kind in ((load_policy, PolicyError), (load_predicate, UsageError), (load_public_key, KeyLoadError)):
        error = _finishes(lambda call=call: call(fifo))
        assert isinstance(error, kind), (call, error)


def test_an_oversized_policy_or_card_is_refused_naming_its_size(tmp_path: Path) -> None:
    from ocimodel.metadata.sources import MAX_CARD_FILE_BYTES, load_card_file
    from ocimodel.trust.policy import MAX_POLICY_BYTES, PolicyError, load_policy

    policy = tmp_path / "policy.yaml"
    policy.write_bytes(b"#" * (MAX_POLICY_BYTES + 1))
    with pytest.raises(PolicyError, match=rf"policy {policy} is {MAX_POLICY_BYTES + 1} bytes, over the {MAX_POLICY_BYTES}-byte limit"):
        load_policy(policy)
    card = tmp_path / "ocimodel.yaml"
    card.write_bytes(b"#" * (MAX_CARD_FILE_BYTES + 1))
    with pytest.raises(UsageError, match=rf"metadata: {card} is {MAX_CARD_FILE_BYTES + 1} bytes, over the"):
        load_card_file(card)
