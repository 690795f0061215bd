"""Chat templates: the Jinja templates that inference servers render on every request,
found in GGUF metadata (gguf.py), in a tokenizer's ``tokenizer_config.json`` and in a
``chat_template.jinja`` file. A template that reaches Python internals (``__class__``,
``__globals__``, ``cycler``, ``os.popen``...) escapes a renderer that is not sandboxed
(server-side template injection): critical. This module holds the rules and the scanner
for the JSON and Jinja files; the formats are recognised by content, not by file name."""

from __future__ import annotations

import json
import re

from ocimodel.scanning.findings import Finding, Severity
from ocimodel.scanning.formats import Source

__all__ = ["SCANNERS", "ChatTemplateScanner", "template_findings"]

MAX_FILE = 32 << 20  # a tokenizer config or template larger than this is not read (info)
# Keys a tokenizer_config.json has near its start, and that nothing else has.
_TOKENIZER_MARKERS = (b'"chat_template"', b'"tokenizer_class"', b'"added_tokens_decoder"')

# Only names no chat template has a use for: "system", "open" or "import" are ordinary
# words in templates (``ns.system``), and a gadget chain needs one of these first anyway.
_GADGETS = {
    "cycler", "joiner", "lipsum", "url_for", "get_flashed_messages", "self", "request", "config",
    "os", "popen", "subprocess", "eval", "exec", "builtins", "globals", "getattr", "mro",
    "subclasses", "import_module", "func_globals",
}  # fmt: skip
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_STRING_LIT = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)
_DUNDER = re.compile(r"__\w*__|\\x5f\\x5f|\\u005f\\u005f")
_NAME = re.compile(r"[A-Za-z_]\w*")


def template_findings(template: str) -> list[tuple[Severity, str, str, int]]:
    """(severity, rule, detail, character offset) for each construct of concern."""
    found: list[tuple[Severity, str, str, int]] = []
    for tag in _TAG.finditer(template):
        text = tag.group()
        dunder = _DUNDER.search(text)
        if dunder:
            found.append((Severity.CRITICAL, "chat-template.python-internals",
                          f"Jinja tag reaches Python internals ({dunder.group()}): {text[:120]!r}", tag.start()))  # fmt: skip
            continue
        code = _STRING_LIT.sub("''", text)
        names = {n for n in _NAME.findall(code)} & _GADGETS
        if names:
            found.append((Severity.CRITICAL, "chat-template.gadget",
                          f"Jinja tag names {sorted(names)} (template-injection gadgets): {text[:120]!r}", tag.start()))  # fmt: skip
            continue
        if re.search(r"\|\s*attr\b", code):
            found.append((Severity.HIGH, "chat-template.attr",
                          f"Jinja tag reads an attribute by a computed name: {text[:120]!r}", tag.start()))  # fmt: skip
    return found


class ChatTemplateScanner:
    name = "chat-template"

    def detect(self, head: bytes, size: int) -> bool:
        if b"\x00" in head:
            return False
        text = head.lstrip()
        if text.startswith(b"{") and any(marker in head for marker in _TOKENIZER_MARKERS):
            return True  # a tokenizer config
        # A bare Jinja chat template: tags, and the messages every chat template iterates.
        jinja = text[:2] in (b"{{", b"{%") or not text.startswith(b"{")
        return jinja and (b"{%" in head or b"{{" in head) and b"messages" in head

    def scan(self, source: Source) -> list[Finding]:
        def finding(severity: Severity, rule: str, detail: str, offset: int | None = None) -> Finding:
            return Finding(file=source.name, format=self.name, severity=severity, rule=rule, detail=detail, offset=offset)

        if source.size > MAX_FILE:
            return [finding(Severity.INFO, "chat-template.unread", f"{source.size} bytes: over the {MAX_FILE}-byte budget, not read")]
        text = source.read_at(0, source.size).decode("utf-8", "replace")
        templates: list[tuple[str, str]] = []
        if text.lstrip().startswith("{"):
            try:
                config = json.loads(text)
            except (ValueError, RecursionError):
                config = None
            if isinstance(config, dict):
                value = config.get("chat_template")
                if isinstance(value, str):
                    templates.append(("chat_template", value))
                elif isinstance(value, list):  # named templates: [{"name": ..., "template": ...}]
                    for item in value:
                        if isinstance(item, dict) and isinstance(item.get("template"), str):
                            templates.append((f"chat_template {item.get('name')!r}", item["template"]))
            if config is not None:
                return [finding(s, rule, f"{where}: {detail}") for where, t in templates
                        for s, rule, detail, _ in template_findings(t)]  # fmt: skip
        return [finding(s, rule, detail, offset) for s, rule, detail, offset in template_findings(text)]


SCANNERS = [ChatTemplateScanner()]
