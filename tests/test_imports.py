"""The import structure of src/ocimodel, read from the source (ast), not by importing it.

Three rules, each held by a ratchet: the lists below are what the code base does today;
anything new fails, and an entry that no longer occurs fails too, so a fix must shrink the
list in the same change (the lists only ever get shorter, down to empty).

- No import cycle among ocimodel's modules. Every import counts: at module level, inside
  functions (they hide a cycle, they do not remove it), under ``if TYPE_CHECKING:``, and
  the lazy ones (``lazy_import("ocimodel.x")``, ``importlib.import_module("ocimodel.x")``).
  ``from pkg import name`` depends on ``pkg.name`` when that is a module, else on ``pkg``.
  Importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``; those implicit edges
  are not counted (every module would otherwise depend on ``ocimodel/__init__``).
- No private name (``_x``) of one module used by another: neither imported
  (``from ocimodel.api import _options``) nor read off an imported module
  (``api._options`` after ``from ocimodel import api``). Dunder names are not private.
- The layers under the API (transport, oci, packaging, targets) import none of the layers
  above them: the API (``ocimodel`` itself, ``api/``, lineage included), the CLI, trust.

The analyser is tested on a small made-up package first, so a broken analyser cannot make
the ratchets pass by finding nothing.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "ocimodel"

# -- the ratchets: today's state (issue 13 removes these; remove each entry with its fix) ----

# Each entry: the modules of one cycle (a strongly connected component of the import graph).
KNOWN_CYCLES: list[tuple[str, ...]] = []

# Each entry: (the module that uses the name, "the module it belongs to.the name").
KNOWN_PRIVATE_IMPORTS: list[tuple[str, str]] = []

# Each entry: (a module of a lower layer, the upper-layer module it imports).
KNOWN_LAYER_VIOLATIONS: list[tuple[str, str]] = []

LOWER_LAYERS = ("transport", "oci", "packaging", "targets")
UPPER_LAYERS = ("api", "cli", "trust")  # and the root package, the public API


# -- the analyser --------------------------------------------------------------------------


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    where: str  # "path:line (how)", for the messages


@dataclass
class Analysis:
    modules: set[str]
    edges: list[Edge]
    private: dict[tuple[str, str], str]  # (user, "module.name") -> first "path:line"

    def graph(self) -> dict[str, set[str]]:
        graph: dict[str, set[str]] = {m: set() for m in self.modules}
        for edge in self.edges:
            graph[edge.importer].add(edge.imported)
        return graph

    def where(self, importer: str, imported: str) -> str:
        return next(e.where for e in self.edges if (e.importer, e.imported) == (importer, imported))


def _module_names(src: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the package."""
    names: dict[str, Path] = {}
    for path in sorted((src / package).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


_LAZY_IMPORTERS = {"lazy_import", "import_module", "__import__"}


def _name_of(node: ast.expr) -> str:
    """``x`` of ``x`` or of ``a.x``, else ""."""
    if isinstance(node, ast.Name):
        return node.id
    return node.attr if isinstance(node, ast.Attribute) else ""


class _Visitor(ast.NodeVisitor):
    """Collects the imports of one module, and the names it reads off imported modules."""

    def __init__(self, module: str, path: Path, src: Path, analysis: Analysis) -> None:
        self.module = module
        self.package = module.split(".")[0]
        self.is_package = path.name == "__init__.py"
        self.relpath = path.relative_to(src.parent)
        self.modules = analysis.modules
        self.analysis = analysis
        self.context: list[str] = []  # "in a function", "type checking"
        self.aliases: dict[str, str] = {}  # local name -> ocimodel module it is bound to
        self.attribute_uses: list[tuple[str, str, int]] = []  # (local name, attr, line)

    # where and how an import happens
    def _where(self, node: ast.AST, how: str | None = None) -> str:
        kind = how or (self.context[-1] if self.context else "module level")
        return f"{self.relpath}:{node.lineno} ({kind})"

    def _edge(self, imported: str, node: ast.AST, how: str | None = None) -> None:
        if imported != self.module:  # `from . import x` inside package x's own __init__
            self.analysis.edges.append(Edge(self.module, imported, self._where(node, how)))

    def _private(self, owner: str, name: str, node: ast.AST) -> None:
        if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
            key = (self.module, f"{owner}.{name}")
            self.analysis.private.setdefault(key, f"{self.relpath}:{node.lineno}")

    def _resolve(self, node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = self.module.split(".")
        if not self.is_package:
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        return ".".join(base + ([node.module] if node.module else []))

    # scopes
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.context.append("in a function")
        self.generic_visit(node)
        self.context.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        name = _name_of(node.test)
        if name != "TYPE_CHECKING":
            self.generic_visit(node)
            return
        self.visit(node.test)
        self.context.append("type checking")
        for child in node.body:
            self.visit(child)
        self.context.pop()
        for child in node.orelse:
            self.visit(child)

    # imports
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] != self.package:
                continue
            target = alias.name
            while target and target not in self.modules:
                target = target.rpartition(".")[0]
            if target:
                self._edge(target, node)
                if alias.asname:
                    self.aliases[alias.asname] = target

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = self._resolve(node)
        if source not in self.modules:
            return
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in self.modules:
                self._edge(submodule, node)
                self.aliases[alias.asname or alias.name] = submodule
            else:
                self._edge(source, node)
            self._private(source, alias.name, node)

    def visit_Call(self, node: ast.Call) -> None:
        name = _name_of(node.func)
        if (
            name in _LAZY_IMPORTERS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in self.modules
        ):
            self._edge(node.args[0].value, node, "lazy")
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        # `api = lazy_import("ocimodel.api")` binds a module like an import does
        value = node.value
        if (
            isinstance(value, ast.Call)
            and value.args
            and isinstance(value.args[0], ast.Constant)
            and value.args[0].value in self.modules
        ):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    self.aliases[target.id] = value.args[0].value
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.value, ast.Name):
            self.attribute_uses.append((node.value.id, node.attr, node.lineno))
        self.generic_visit(node)


def analyse(src: Path, package: str) -> Analysis:
    files = _module_names(src, package)
    analysis = Analysis(modules=set(files), edges=[], private={})
    for module, path in files.items():
        visitor = _Visitor(module, path, src, analysis)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for local, attr, line in visitor.attribute_uses:
            owner = visitor.aliases.get(local)
            if owner is not None and owner != module:
                visitor._private(owner, attr, ast.Pass(lineno=line))
    return analysis


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each
    sorted, in sorted order. (A module's import of itself is not recorded: see _edge.)"""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(found)


def example_cycle(
    analysis: Analysis, component: tuple[str, ...], known: frozenset[str] = frozenset()
) -> str:
    """One shortest cycle through the component, with where each import is: through its
    first module not in ``known`` (the modules of known cycles), to show what is new."""
    graph = analysis.graph()
    members = set(component)
    start = next((m for m in component if m not in known), component[0])
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                path.reverse()
                path.append(start)
                return "\n".join(
                    f"      {a} -> {b}   [{analysis.where(a, b)}]" for a, b in pairwise(path)
                )
            if w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start} in {component}")  # pragma: no cover


def _in_layer(module: str, layer: str) -> bool:
    name = f"{PACKAGE}.{layer}"
    return module == name or module.startswith(name + ".")


def _upper(module: str) -> bool:
    if module == PACKAGE:
        return True
    rest = module.removeprefix(PACKAGE + ".")
    return any(rest == u or rest.startswith((u + "_", u + ".")) for u in UPPER_LAYERS)


def layer_violations(analysis: Analysis) -> dict[tuple[str, str], str]:
    return {
        (e.importer, e.imported): e.where
        for e in reversed(analysis.edges)  # the first occurrence wins
        if any(_in_layer(e.importer, layer) for layer in LOWER_LAYERS) and _upper(e.imported)
    }


def _ratchet(kind: str, found: dict, known: list, fix: str) -> None:
    """Fails on anything found that is not known, and on anything known that is not found."""
    new = [k for k in found if k not in known]
    gone = [k for k in known if k not in found]
    message = []
    if new:
        message.append(f"new {kind} (not allowed; {fix}):")
        message += [f"  {k}\n{found[k]}" for k in sorted(new)]
    if gone:
        message.append(
            f"{kind} listed in tests/test_imports.py that no longer occur as listed (fixed: "
            "remove them from the list, so they cannot come back; or grown, see above):"
        )
        message += [f"  {k}" for k in gone]
    if message:
        pytest.fail("\n".join(message), pytrace=False)


# -- the analyser, on a made-up package ----------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_analyser_sees_every_kind_of_import(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg import b  # hidden in a function\n",
        "pkg/b.py": "from .c import _secret\n",
        "pkg/c.py": (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n"
        ),
        "pkg/d.py": "import pkg.e as e\nx = e._hidden\n",
        "pkg/e.py": "from pkg.sub import leaf, name\n",
        "pkg/sub/__init__.py": "name = 1\n",
        "pkg/sub/leaf.py": "from .. import e\n",
        "pkg/lazy.py": "m = lazy_import('pkg.d')\nm._x\nm.__doc__\n",
    })
    analysis = analyse(tmp_path, "pkg")
    graph = analysis.graph()
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.b"] == {"pkg.c"}
    assert graph["pkg.c"] == {"pkg.a"}
    assert graph["pkg.e"] == {"pkg.sub.leaf", "pkg.sub"}
    assert graph["pkg.sub.leaf"] == {"pkg.e"}
    assert graph["pkg.lazy"] == {"pkg.d"}
    assert cycles(graph) == [
        ("pkg.a", "pkg.b", "pkg.c"),
        ("pkg.e", "pkg.sub.leaf"),
    ]
    assert set(analysis.private) == {
        ("pkg.b", "pkg.c._secret"), ("pkg.d", "pkg.e._hidden"), ("pkg.lazy", "pkg.d._x"),
    }
    assert "pkg/a.py:2 (in a function)" in example_cycle(analysis, ("pkg.a", "pkg.b", "pkg.c"))
    assert "pkg/c.py:3 (type checking)" in example_cycle(analysis, ("pkg.a", "pkg.b", "pkg.c"))


def test_the_ratchet_fails_both_ways() -> None:
    expected = r"new cycles[\s\S]*no longer occur[\s\S]*'old'"
    with pytest.raises(pytest.fail.Exception, match=expected):
        _ratchet("cycles", {("new",): "where"}, [("old",)], "break it")
    _ratchet("cycles", {("same",): "where"}, [("same",)], "break it")


# -- the rules, on src/ocimodel -----------------------------------------------------------


@pytest.fixture(scope="module")
def ocimodel_imports() -> Analysis:
    analysis = analyse(SRC, PACKAGE)
    assert len(analysis.modules) > 50 and len(analysis.edges) > 200  # it did read the tree
    return analysis


def test_no_new_import_cycle(ocimodel_imports: Analysis) -> None:
    known = frozenset(m for cycle in KNOWN_CYCLES for m in cycle)
    found = {c: example_cycle(ocimodel_imports, c, known) for c in cycles(ocimodel_imports.graph())}
    _ratchet(
        "import cycles", found, KNOWN_CYCLES,
        "move what both sides need into a module below them; an import inside a function "
        "hides a cycle but does not remove it",
    )


def test_no_new_private_import(ocimodel_imports: Analysis) -> None:
    found = {k: f"      at {where}" for k, where in ocimodel_imports.private.items()}
    _ratchet(
        "private names used across modules", found, KNOWN_PRIVATE_IMPORTS,
        "make the name public in the module that owns it, or move it where both can use it",
    )


def test_lower_layers_do_not_import_upper_layers(ocimodel_imports: Analysis) -> None:
    found = {k: f"      at {where}" for k, where in layer_violations(ocimodel_imports).items()}
    _ratchet(
        "imports of an upper layer from transport/oci/packaging/targets", found,
        KNOWN_LAYER_VIOLATIONS,
        "the lower layers may not depend on the API, the CLI, trust or lineage: pass what "
        "they need in, or move it down",
    )
