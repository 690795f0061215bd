"""Where a model card comes from, and how the sources are merged.

Three layers, the later winning: **detected** (git ``code``, Python ``environment``) <
**file** (``ocimodel.yaml`` / ``ocimodel.yml`` / ``ocimodel.json`` next to the model) <
**flags** (push options, given as strings the way a command line gives them).

Merge rules: scalars and lists are replaced whole by a higher layer (``--tag x`` replaces
the file's tags, it does not add to them); ``metrics`` and ``hyperparameters`` are merged
name by name (``--metric acc=0.95`` replaces the file's ``acc`` and keeps its ``f1``);
``code`` and ``environment`` are merged field by field (a file giving ``code.repository``
keeps the detected ``commit`` and ``dirty``), ``environment.packages`` name by name. A value
of ``None`` in a layer means "not given".

Flag grammar (each flag may be given as ``--flag VALUE`` or ``--flag=VALUE``)::

    --name NAME                 --version VERSION           --description TEXT
    --author AUTHOR   (repeat)  --license SPDX-EXPR (repeat) --tag TAG          (repeat)
    --framework WORD            --format WORD               --task WORD
    --created TIME|now          (RFC 3339 / ISO 8601; no zone means UTC)
    --source URL                (code.repository)   --revision REV  (code.commit)
    --metric NAME=NUMBER[@DATASET[:SPLIT]]                                      (repeat)
        acc=0.93   f1=0.9@squad   f1=0.9@squad:validation   loss=0.1@hf://ds/x:test
        The split is the text after the last ':' of the dataset part when it is a plain
        word ([A-Za-z0-9_.-]+), so a URI like s3://b/x or https://h:8080/x stays whole;
        end the dataset with ':' to keep a final ':word' in its name (``@host:8080:``).
    --param NAME=VALUE                                                          (repeat)
        VALUE is read as a JSON scalar when it is one (3e-4, 32, true, null, "quoted"),
        else kept as a string (adamw, [1,2]).
    --dataset URI[@sha256:HEX]                                                  (repeat)
    --base REF[@sha256:HEX]                                                     (repeat)
    --base-relation fine-tune|quantize|distill|merge|adapter
        given once: applies to every --base; given once per --base: pairs up in order;
        never given: fine-tune.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ocimodel.chunks import FileTooLarge, NotARegularFile, read_capped
from ocimodel.errors import InvalidManifest, UsageError
from ocimodel.metadata.card import (
    RELATIONS,
    Code,
    Environment,
    ModelCard,
    split_digest,
    validate_card,
)
from ocimodel.oci.models import loads_strict

__all__ = [
    "CARD_FILENAMES",
    "GIT_TIMEOUT",
    "KEY_PACKAGES",
    "MAX_CARD_FILE_BYTES",
    "MetadataFlags",
    "collect_card",
    "detect_code",
    "detect_environment",
    "find_card_file",
    "load_card_file",
    "merge_cards",
    "parse_flag_args",
    "parse_flags",
    "parse_metric",
    "parse_param",
    "redact_url",
]

CARD_FILENAMES = ("ocimodel.yaml", "ocimodel.yml", "ocimodel.json")
MAX_CARD_FILE_BYTES = 256 * 1024
KEY_PACKAGES = ("torch", "transformers", "safetensors", "numpy", "scikit-learn", "onnx", "tensorflow", "jax")
GIT_TIMEOUT = 5.0

# ---------------------------------------------------------------------------------------
# The card file


def find_card_file(model_path: str | os.PathLike[str]) -> Path | None:
    """The card file of a model: ``ocimodel.yaml|yml|json`` in the model directory (or, for
    a single-file model, in the directory holding it). Two of them at once is an error."""
    path = Path(model_path)
    directory = path if path.is_dir() else path.parent
    found = [directory / name for name in CARD_FILENAMES if (directory / name).is_file()]
    if len(found) > 1:
        raise UsageError(
            f"metadata: both {found[0].name} and {found[1].name} are in {directory}",
            hint="keep one card file",
        )
    return found[0] if found else None


def load_card_file(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate a card file: YAML (``.yaml`` / ``.yml``) or JSON (``.json``).

    YAML is read safely with the YAML 1.2 core rules (``yes`` / ``no`` / ``on`` stay strings,
    ``3e-4`` is a number, ``1:20`` is not 80, dates stay strings), and duplicate keys and
    aliases are refused; JSON duplicate keys are refused too. At most
    :data:`MAX_CARD_FILE_BYTES` are read."""
    path = Path(path)
    data = _read_capped(path)
    if path.suffix.lower() == ".json":
        try:
            document = loads_strict(data, path.name)
        except InvalidManifest as exc:
            raise UsageError(f"metadata: {exc.message}", hint=f"in {path}") from None
    else:
        document = _load_yaml(data, path)
    if document is None:  # an empty file (or only comments)
        document = {}
    return validate_card(document, source=str(path))


def _read_capped(path: Path) -> bytes:
    try:
        return read_capped(path, MAX_CARD_FILE_BYTES)
    except NotARegularFile:
        raise UsageError(f"metadata: {path} is not a regular file") from None
    except FileTooLarge as exc:
        raise UsageError(f"metadata: {exc}") from None
    except OSError as exc:
        raise UsageError(f"metadata: cannot read {path}: {exc.strerror or exc}") from None


def _load_yaml(data: bytes, path: Path) -> Any:
    from ocimodel.strict_yaml import StrictYamlError, loads_yaml_strict

    try:
        return loads_yaml_strict(data, max_bytes=MAX_CARD_FILE_BYTES)
    except ImportError:
        raise UsageError(
            f"metadata: reading {path.name} needs PyYAML, which is not installed",
            hint="pip install PyYAML, or write the card as ocimodel.json",
        ) from None
    except StrictYamlError as exc:
        raise UsageError(f"metadata: {path.name} is not valid YAML: {exc}", hint=f"in {path}") from None


# ---------------------------------------------------------------------------------------
# Flags


@dataclass(frozen=True)
class MetadataFlags:
    """Push options about the model, as the strings a command line gives (see the module
    docstring for the grammar). Empty / None means "not given"."""

    name: str | None = None
    version: str | None = None
    description: str | None = None
    authors: Sequence[str] = ()
    licenses: Sequence[str] = ()
    framework: str | None = None
    format: str | None = None
    task: str | None = None
    tags: Sequence[str] = ()
    metrics: Sequence[str] = ()
    params: Sequence[str] = ()
    datasets: Sequence[str] = ()
    bases: Sequence[str] = ()
    base_relations: Sequence[str] = ()
    created: str | datetime | None = None
    source: str | None = None  # code.repository
    revision: str | None = None  # code.commit


# flag name -> (MetadataFlags field, repeatable)
FLAG_NAMES: dict[str, tuple[str, bool]] = {
    "--name": ("name", False),
    "--version": ("version", False),
    "--description": ("description", False),
    "--author": ("authors", True),
    "--license": ("licenses", True),
    "--framework": ("framework", False),
    "--format": ("format", False),
    "--task": ("task", False),
    "--tag": ("tags", True),
    "--metric": ("metrics", True),
    "--param": ("params", True),
    "--dataset": ("datasets", True),
    "--base": ("bases", True),
    "--base-relation": ("base_relations", True),
    "--created": ("created", False),
    "--source": ("source", False),
    "--revision": ("revision", False),
}
# card field -> the flag that sets it (named in error hints)
_FLAG_OF_FIELD = {
    "name": "--name", "version": "--version", "description": "--description", "authors": "--author",
    "licenses": "--license", "framework": "--framework", "format": "--format", "task": "--task",
    "tags": "--tag", "metrics": "--metric", "hyperparameters": "--param", "datasets": "--dataset",
    "base_models": "--base", "created": "--created", "code": "--source / --revision",
}


def parse_flag_args(argv: Sequence[str]) -> MetadataFlags:
    """``["--metric", "acc=0.9", "--tag=nlp", ...]`` -> MetadataFlags. Every argument must be
    one of :data:`FLAG_NAMES` with its value (as a separate argument or after ``=``)."""
    values: dict[str, Any] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        flag, eq, value = arg.partition("=")
        if flag not in FLAG_NAMES:
            raise UsageError(f"metadata: unknown flag {arg[:80]!r}", hint=f"known: {', '.join(FLAG_NAMES)}")
        if not eq:
            index += 1
            if index >= len(argv):
                raise UsageError(f"metadata: {flag} needs a value")
            value = argv[index]
        target, repeatable = FLAG_NAMES[flag]
        if repeatable:
            values.setdefault(target, []).append(value)
        elif target in values:
            raise UsageError(f"metadata: {flag} given twice")
        else:
            values[target] = value
        index += 1
    return MetadataFlags(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


_NUMBER = re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$")
_INTEGER = re.compile(r"^[-+]?[0-9]+$")
_SPLIT = re.compile(r"^[A-Za-z0-9_.-]+$")


def _number(text: str, where: str) -> int | float:
    if _INTEGER.match(text):
        return int(text)
    if _NUMBER.match(text):
        value = float(text)
        if math.isfinite(value):
            return value
    raise UsageError(f"metadata: {where}: not a number: {text[:80]!r}", hint="from --metric")


def parse_metric(text: str) -> tuple[str, int | float | dict[str, Any]]:
    """``NAME=NUMBER[@DATASET[:SPLIT]]`` -> (name, number or {value, dataset, split})."""
    name, eq, rest = text.partition("=")
    if not eq or not name:
        raise UsageError(
            f"metadata: --metric {text[:80]!r}: expected NAME=NUMBER[@DATASET[:SPLIT]]", hint="e.g. --metric acc=0.93@squad:validation"
        )
    number, at, where = rest.partition("@")
    value = _number(number.strip(), f"metrics.{name}")
    if not at:
        return name, value
    if not where:
        raise UsageError(f"metadata: metrics.{name}: empty dataset after '@'", hint="from --metric")
    dataset, colon, split = where.rpartition(":")
    if colon and (split == "" or _SPLIT.match(split)) and dataset:
        detailed: dict[str, Any] = {"value": value, "dataset": dataset}
        if split:
            detailed["split"] = split
        return name, detailed
    return name, {"value": value, "dataset": where}


def _reject_constant(text: str) -> Any:
    raise ValueError(text)


def parse_param(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` -> (name, JSON scalar if VALUE is one, else the string VALUE)."""
    name, eq, raw = text.partition("=")
    if not eq or not name:
        raise UsageError(f"metadata: --param {text[:80]!r}: expected NAME=VALUE", hint="e.g. --param lr=3e-4")
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except ValueError:
        return name, raw
    if value is None or isinstance(value, (str, bool, int, float)):
        return name, value
    return name, raw


def parse_flags(flags: MetadataFlags) -> ModelCard:
    """The flag layer as a card. Errors name the field and the flag."""
    data: dict[str, Any] = {}
    for key in ("name", "version", "description", "framework", "format", "task"):
        value = getattr(flags, key)
        if value is not None:
            data[key] = value
    for key in ("authors", "licenses", "tags"):
        values = list(getattr(flags, key))
        if values:
            data[key] = values
    code = {k: v for k, v in (("repository", flags.source), ("commit", flags.revision)) if v is not None}
    if code:
        data["code"] = code
    if flags.created is not None:
        from ocimodel.packaging.package import parse_created

        data["created"] = parse_created(flags.created)
    metrics: dict[str, Any] = {}
    for text in flags.metrics:
        name, value = parse_metric(text)
        if name in metrics:
            raise UsageError(f"metadata: metrics.{name}: given twice", hint="from --metric")
        metrics[name] = value
    if metrics:
        data["metrics"] = metrics
    params: dict[str, Any] = {}
    for text in flags.params:
        name, value = parse_param(text)
        if name in params:
            raise UsageError(f"metadata: hyperparameters.{name}: given twice", hint="from --param")
        params[name] = value
    if params:
        data["hyperparameters"] = params
    if flags.datasets:
        data["datasets"] = [_with_digest("uri", text) for text in flags.datasets]
    relations = list(flags.base_relations)
    if relations and not flags.bases:
        raise UsageError("metadata: --base-relation without --base")
    if len(relations) > 1 and len(relations) != len(flags.bases):
        raise UsageError(
            f"metadata: {len(relations)} --base-relation for {len(flags.bases)} --base",
            hint="give --base-relation once (for every --base) or once per --base, in the same order",
        )
    if flags.bases:
        bases = []
        for index, text in enumerate(flags.bases):
            base = _with_digest("reference", text)
            if relations:
                relation = relations[0] if len(relations) == 1 else relations[index]
                if relation not in RELATIONS:
                    raise UsageError(
                        f"metadata: base_models[{index}].relation: {relation[:40]!r} is not one of {', '.join(RELATIONS)}",
                        hint="from --base-relation",
                    )
                base["relation"] = relation
            bases.append(base)
        data["base_models"] = bases
    return validate_card(data, field_sources=_FLAG_OF_FIELD)


def _with_digest(key: str, text: str) -> dict[str, Any]:
    ref, digest = split_digest(text)
    return {key: ref, "digest": digest} if digest is not None else {key: ref}


# ---------------------------------------------------------------------------------------
# Detection


def detect_environment(packages: Iterable[str] = KEY_PACKAGES) -> Environment:
    """The running Python's version and the installed versions of ``packages`` (read from
    their metadata; nothing is imported). Packages that are not installed are left out."""
    found: dict[str, str] = {}
    for name in packages:
        try:
            version = importlib.metadata.version(name)
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
        if version and not any(ch.isspace() for ch in version):
            found[name] = version
    return Environment(python=platform.python_version(), packages=found)


# Variables that would point git at another repository than the directory's own.
_GIT_ENV_DROP = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR", "GIT_PREFIX")


def _git(directory: Path, *args: str, timeout: float) -> str | None:
    """stdout of ``git -C directory args`` or None on any failure (missing git, not a
    repository, timeout). fsmonitor is off (a repository's config must not run commands)
    and no optional locks are taken (detection never writes to the repository)."""
    git = shutil.which("git")
    if git is None:
        return None
    env = {k: v for k, v in os.environ.items() if k not in _GIT_ENV_DROP}
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"})
    try:
        completed = subprocess.run(
            [git, "-c", "core.fsmonitor=false", "-C", str(directory), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    if completed.returncode != 0:
        return None
    return completed.stdout.decode("utf-8", "replace")


def redact_url(url: str) -> str | None:
    """A git remote URL fit to be recorded: user:password / token user parts removed (a
    user name is kept for ssh, where it is not a secret), query and fragment dropped.
    Local paths and ``file:`` URLs give None: they mean nothing on another machine."""
    url = url.strip()
    if not url or any(ch.isspace() or not ch.isprintable() for ch in url):
        return None
    if "://" in url:
        try:
            parts = urlsplit(url)
        except ValueError:
            return None
        scheme = parts.scheme.lower()
        if scheme == "file" or not parts.hostname:
            return None
        user, _, host = parts.netloc.rpartition("@")
        if user:
            name = user.split(":", 1)[0]
            keep = scheme in ("ssh", "git+ssh", "ssh+git", "sftp") and ":" not in user
            host = f"{name}@{host}" if keep and name else host
        return urlunsplit((parts.scheme, host, parts.path, "", ""))
    # scp-like [user@]host:path; anything else is a local path.
    match = re.match(r"^(?:(?P<user>[^@/]+)@)?(?P<host>[^:/@]+):(?P<path>.*)$", url)
    if match is None or "/" in match.group("host") or len(match.group("host")) < 2:
        return None
    user = match.group("user")
    if user and ":" in user:
        user = None
    return f"{user + '@' if user else ''}{match.group('host')}:{match.group('path')}"


def detect_code(
    directory: str | os.PathLike[str], *, model_dir: bool = True, timeout: float = GIT_TIMEOUT
) -> Code | None:
    """The git checkout ``directory`` belongs to: origin URL (credentials stripped), HEAD
    commit, and whether the model may differ from that commit (``dirty``).

    ``model_dir`` (the default): ``directory`` is the model itself. Its checkout is recorded
    only when the checkout tracks it (git lists files in it, or it is the checkout's root):
    an untracked model directory inside some other checkout (a build output under a
    project's tree, a download into a home directory kept in git) was not made from that
    commit, and recording it would be a false provenance. ``dirty`` is true when a tracked
    file anywhere in the checkout differs from the commit (the code that built the model
    changed) or when a file inside the model directory is untracked and not ignored (a new
    weight file the commit does not have). Untracked files elsewhere in the checkout, such
    as an OCI layout written next to the model, do not count: they are not part of the
    model, and counting them would change the pushed digest from one push to the next.

    ``model_dir=False``: ``directory`` is the checkout the model was built from, named by
    the user (``--source-dir``); its checkout is recorded as is, and ``dirty`` covers
    tracked files only.

    None when git is missing, the directory is not in a work tree (or, for a model
    directory, not tracked by it), git is too slow, or there is neither a commit nor a
    remote. Never raises."""
    path = Path(directory)
    if not path.is_dir():
        path = path.parent
    if not path.is_dir():
        return None
    if not _may_be_in_checkout(path):
        return None  # git would say so too; not asking spares a process on every push
    inside = _git(path, "rev-parse", "--is-inside-work-tree", timeout=timeout)
    if inside is None or inside.strip() != "true":
        return None
    if model_dir and not _tracked(path, timeout=timeout):
        return None
    head = _git(path, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", timeout=timeout)
    commit = head.strip() if head and re.fullmatch(r"[0-9a-f]{7,64}", head.strip()) else None
    remote = _git(path, "config", "--get", "remote.origin.url", timeout=timeout)
    repository = redact_url(remote) if remote else None
    if commit is None and repository is None:
        return None
    dirty = _dirty(path, model_dir=model_dir, timeout=timeout)
    try:
        return Code(repository=repository, commit=commit, dirty=dirty)
    except ValueError:  # a remote we could not make safe: record the rest
        return Code(commit=commit, dirty=dirty)


def _may_be_in_checkout(path: Path) -> bool:
    """False only when git cannot find a work tree for ``path``: no ``.git`` (a directory,
    or the file of a linked worktree or submodule) in it or any of its parents, looked up
    as written and with links resolved (git works from the resolved directory). ``GIT_DIR``
    and ``GIT_WORK_TREE`` are not passed to git (`_GIT_ENV_DROP`), so this is how git
    itself finds a checkout."""
    for start in {path.absolute(), path.resolve()}:
        if any(os.path.lexists(os.path.join(d, ".git")) for d in (start, *start.parents)):
            return True
    return False


def _tracked(path: Path, *, timeout: float) -> bool:
    """Whether the checkout holding ``path`` tracks it: it is the checkout's root (a fresh
    repository has nothing tracked yet and is still the model's own), or git's index lists
    a file under it."""
    prefix = _git(path, "rev-parse", "--show-prefix", timeout=timeout)
    if prefix is None:
        return False
    if not prefix.strip():
        return True
    listed = _git(path, "ls-files", "-z", "--cached", "--", ".", timeout=timeout)
    return bool(listed)


def _dirty(path: Path, *, model_dir: bool, timeout: float) -> bool | None:
    """Tracked changes anywhere in the checkout; for a model directory, also untracked
    (not ignored) files inside it. None when git could not tell."""
    status = _git(path, "status", "--porcelain", "--untracked-files=no", timeout=timeout)
    if status is None:
        return None
    if status.strip() or not model_dir:
        return bool(status.strip())
    untracked = _git(path, "ls-files", "-z", "--others", "--exclude-standard", "--", ".", timeout=timeout)
    return None if untracked is None else bool(untracked)


# ---------------------------------------------------------------------------------------
# Merge and collect

_MAP_FIELDS = ("metrics", "hyperparameters")
_SECTION_FIELDS = ("code", "environment")


def merge_cards(*layers: ModelCard | None) -> ModelCard:
    """Merge cards, each later one winning (see the module docstring for the rules)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is None:
            continue
        for key, value in layer.model_dump(exclude_unset=True).items():
            if value is None:
                continue
            if key in _MAP_FIELDS:
                merged[key] = {**merged.get(key, {}), **value}
            elif key in _SECTION_FIELDS:
                section = dict(merged.get(key, {}))
                for name, item in value.items():
                    if item is None:
                        continue
                    if name == "packages":
                        section[name] = {**section.get(name, {}), **item}
                    else:
                        section[name] = item
                merged[key] = section
            else:
                merged[key] = value
    return validate_card(merged)


def collect_card(
    model_path: str | os.PathLike[str],
    flags: MetadataFlags | ModelCard | Mapping[str, Any] | None = None,
    *,
    card_file: str | os.PathLike[str] | None = None,
    source_dir: str | os.PathLike[str] | None = None,
    detect_git: bool = True,
    detect_env: bool = True,
) -> ModelCard:
    """The card for a push of ``model_path``: detected < file < flags.

    ``flags``: MetadataFlags (CLI strings), or a ModelCard / mapping (Python API callers).
    ``card_file``: an explicit card file (else :func:`find_card_file` looks next to the
    model). ``source_dir``: the git checkout the model was built from, recorded as is (else
    the checkout that tracks the model's directory, if any: see :func:`detect_code`).
    Detection never fails a push; a bad file or flag raises UsageError naming the field."""
    if not detect_git:
        detected_code = None
    elif source_dir is not None:
        detected_code = detect_code(source_dir, model_dir=False)
    else:
        detected_code = detect_code(model_path)
    detected = ModelCard(code=detected_code, environment=detect_environment() if detect_env else None)
    path = Path(card_file) if card_file is not None else find_card_file(model_path)
    from_file = load_card_file(path) if path is not None else None
    if isinstance(flags, MetadataFlags):
        top = parse_flags(flags)
    elif flags is None:
        top = None
    else:
        top = validate_card(flags, source="the metadata argument")
    return merge_cards(detected, from_file, top)

