"""Keras ``.keras`` files: a zip holding ``config.json`` (the model's architecture),
``metadata.json`` and ``model.weights.h5``. The config is what a load deserialises, and
two things in it can run code:

- a ``Lambda`` layer whose function is marshalled Python bytecode (base64 in the config):
  Keras runs it when the model is loaded with ``safe_mode=False`` (and always in Keras 2
  and tf.keras before safe_mode existed), then on every call: critical, since the code is
  whatever the author chose;
- a ``module`` (with ``class_name``) naming a module outside Keras: a load imports that
  module and looks the name up in it. A known-dangerous module (``os``, ``subprocess``,
  ``builtins``...) is critical (Keras has had safe_mode bypasses through exactly this); any
  other module is medium (a custom object to review).

The same rules apply to the ``model_config`` of a legacy ``.h5`` file (see h5.py)."""

from __future__ import annotations

import json
import lzma
import re
import zipfile
import zlib

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source
from ocimodel.scanning.formats.randomaccess import seekable

__all__ = ["SCANNERS", "KerasScanner", "config_findings", "is_keras_zip"]

_KERAS_MODULES = ("keras", "tf_keras", "keras_hub", "keras_nlp", "keras_cv", "tensorflow")
_DANGEROUS_MODULES = {
    "os", "posix", "nt", "subprocess", "builtins", "__builtin__", "sys", "importlib", "shutil",
    "socket", "pty", "runpy", "pickle", "marshal", "code", "codeop", "ctypes", "pathlib", "io",
    "webbrowser", "multiprocessing", "asyncio", "urllib", "requests", "http", "ftplib", "types",
    "operator", "functools", "inspect", "commands", "platform", "tempfile", "glob",
}  # fmt: skip
# Function references (class_name "function") whose name says they touch files or run
# Python: tf.io.write_file, tf.py_function, tf.numpy_function, gfile...
_FILE_OR_PYTHON = re.compile(r"(^|\.)(io|gfile|script_ops|py_func\w*|numpy_function|\w*_file|system|popen)(\.|$)")
MAX_CONFIG = 64 << 20  # bytes of config.json read at most
_CONFIG_MEMBERS = {"config.json", "metadata.json", "model.weights.h5"}


def _first_member(head: bytes) -> str | None:
    if head[:4] != b"PK\x03\x04" or len(head) < 30:
        return None
    n = int.from_bytes(head[26:28], "little")
    return head[30 : 30 + n].decode("utf-8", "replace")


def is_keras_zip(head: bytes) -> bool:
    """Keras writes metadata.json first, then config.json and the weights."""
    return _first_member(head) in _CONFIG_MEMBERS


def config_findings(config: object) -> list[tuple[Severity, str, str]]:
    """(severity, rule, detail) for each construct of a Keras config that can run code."""
    found: list[tuple[Severity, str, str]] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{path}[{i}]")
            return
        if not isinstance(node, dict):
            return
        class_name = node.get("class_name")
        config = node.get("config")
        where = node.get("name") or (config.get("name") if isinstance(config, dict) else None) or path
        if class_name == "Lambda" and isinstance(config, dict):
            function = config.get("function")
            marshalled = (
                (isinstance(function, dict) and function.get("class_name") == "__lambda__")
                or config.get("function_type") == "lambda"  # Keras 2: [code, defaults, closure]
            )
            if marshalled:
                found.append((Severity.CRITICAL, "keras.lambda.bytecode",
                              f"Lambda layer {where!r} holds marshalled Python bytecode, run on load without safe_mode and on every call"))  # fmt: skip
            elif config.get("function_type") == "raw" or isinstance(function, str):
                found.append((Severity.MEDIUM, "keras.lambda.named",
                              f"Lambda layer {where!r} calls the named function {function!r}"))  # fmt: skip
        module = node.get("module")
        if isinstance(module, str) and module and class_name is not None:
            root = module.split(".")[0]
            target = f"{module}.{config if class_name == 'function' else class_name}"
            if root in _DANGEROUS_MODULES or (class_name == "function" and _FILE_OR_PYTHON.search(target)):
                found.append((Severity.CRITICAL, "keras.module.dangerous",
                              f"{path}: a load imports {module!r} and looks up {target!r}"))  # fmt: skip
            elif root not in _KERAS_MODULES or (class_name == "function" and root == "tensorflow"):
                # A function of TensorFlow's is a function the model calls, not a layer: review it.
                found.append((Severity.MEDIUM, "keras.module.custom",
                              f"{path}: a load imports {module!r} for {target!r} (a custom object: review it)"))  # fmt: skip
        for key, value in node.items():
            walk(value, f"{path}.{key}")

    try:
        walk(config, "$")
    except RecursionError:  # no real config nests this deep; what it hides was not walked
        found.append((Severity.HIGH, "keras.config.too-deep", "the config nests deeper than the scanner walks"))
    return found


class KerasScanner:
    name = "keras"

    def detect(self, head: bytes, size: int) -> bool:
        return is_keras_zip(head)

    def scan(self, source: Source) -> list[Finding]:
        def finding(severity: Severity, rule: str, detail: str) -> Finding:
            return Finding(file=source.name, format=self.name, severity=severity, rule=rule, detail=detail,
                           member="config.json")  # fmt: skip

        try:
            with zipfile.ZipFile(seekable(source)) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > MAX_CONFIG:
                    return [finding(Severity.HIGH, "keras.config.too-large", f"config.json of {info.file_size} bytes")]
                with archive.open(info) as member:
                    raw = member.read(MAX_CONFIG + 1)
        except KeyError:
            return [finding(Severity.INFO, "keras.config.missing", "no config.json: nothing says what a load builds")]
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError, NotImplementedError,
                RuntimeError) as exc:  # zipfile: unknown methods, encrypted members
            return [finding(Severity.HIGH, "keras.zip.malformed", f"not a readable zip: {exc}")]
        try:
            config = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return [finding(Severity.HIGH, "keras.config.invalid-json", f"config.json is not JSON: {exc}")]
        return [finding(severity, rule, detail) for severity, rule, detail in config_findings(config)]


SCANNERS = [KerasScanner()]
