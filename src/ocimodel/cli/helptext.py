"""How ``--help`` lays out text: prose is wrapped to the terminal, examples never are.

click wraps every paragraph of a docstring to the terminal width (at most 78 columns) and
breaks words at hyphens, so an example such as ``ocimodel attach REF FILE --artifact-type
TYPE`` came out as ``--artifact-`` on one line and ``type`` on the next: copied, it was a
broken command. Here a paragraph indented in the docstring (an example, by the convention
of every command's docstring) is written as it is, one line per command, however narrow the
terminal; and prose never breaks inside a word, so a flag such as ``--certificate-identity``
stays whole in the option table too."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Iterator
from typing import Any


def paragraphs(text: str) -> Iterator[tuple[bool, list[str]]]:
    """(literal, lines) for each paragraph of ``text`` (separated by blank lines). A
    paragraph is literal when its first line is indented, or starts with click's ``\\b``
    marker (which is dropped), or when every line is an ``ocimodel`` command: help texts
    are dedented before they get here (typer cleans a group's help, a docstring whose
    examples sit at the prose's indentation loses it), and an example must stay whole."""
    block: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            block.append(line)
            continue
        if block:
            if block[0].strip() == "\b":
                yield True, block[1:]
            else:
                yield block[0][:1].isspace() or all(_is_example(line) for line in block), block
            block = []


def _is_example(line: str) -> bool:
    return line.strip().startswith("ocimodel ")


def wrap(text: str, width: int, indent: str = "") -> str:
    """``text`` laid out for a terminal of ``width`` columns: prose paragraphs filled
    (never breaking a word, at a hyphen or anywhere else), literal ones kept line by line."""
    out: list[str] = []
    for literal, lines in paragraphs(text):
        if literal:
            out.append("\n".join(indent + line.rstrip() for line in lines))
        else:
            out.append(
                textwrap.fill(
                    " ".join(line.strip() for line in lines),
                    width=max(width, len(indent) + 10),
                    initial_indent=indent,
                    subsequent_indent=indent,
                    break_on_hyphens=False,
                    break_long_words=False,
                )
            )
    return "\n\n".join(out)


def _write_dl(self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
    """click's layout of a definition list (a column of terms, the text beside it), with
    :func:`wrap` for the text."""
    rows = [(str(first), str(second)) for first, second in rows]
    first_width = max((len(first) for first, _ in rows), default=0)
    first_col = min(first_width, col_max) + col_spacing
    for first, second in rows:
        self.write(f"{'':>{self.current_indent}}{first}")
        if not second:
            self.write("\n")
            continue
        if len(first) <= first_col - col_spacing:
            self.write(" " * (first_col - len(first)))
        else:
            self.write("\n")
            self.write(" " * (first_col + self.current_indent))
        lines = wrap(second, max(self.width - first_col - 2, 10)).splitlines() or [""]
        self.write(f"{lines[0]}\n")
        for line in lines[1:]:
            self.write(f"{'':>{first_col + self.current_indent}}{line}\n" if line else "\n")


def _write_text(self, text: str) -> None:
    self.write(wrap(text, self.width, " " * self.current_indent))
    self.write("\n")


def install(command: Any) -> Any:
    """Make ``command`` and every subcommand lay out their help with :func:`wrap`.

    click makes each command's context from that command's ``context_class``, and the
    context makes the formatter from its ``formatter_class``: both are subclassed from the
    classes the command already has, because typer ships its own copy of click (recent
    versions) or uses click itself (older ones), and a class from the wrong one would not
    be caught by the other's exception handling."""
    base = command.context_class
    if getattr(base, "_ocimodel_help", False):
        return command
    formatter = type("HelpFormatter", (base.formatter_class,), {"write_text": _write_text, "write_dl": _write_dl})
    context = type("Context", (base,), {"formatter_class": formatter, "_ocimodel_help": True})
    _set(command, context)
    return command


def _set(command: Any, context: type) -> None:
    command.context_class = context
    for sub in getattr(command, "commands", {}).values():
        _set(sub, context)
