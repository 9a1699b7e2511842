"""The package's import graph, read from the source with `ast` (issue 15: pure by construction).

Every import counts: at module level, inside functions, and under `if TYPE_CHECKING:` (a type-only
import still ties two modules together, and is one edit away from a run-time one). Importing
`a.b.c` also imports the packages `a` and `a.b`, so those are edges too (except a module's own
ancestors, which are imported before it anyway).

- no cycle anywhere in the package;
- `profilestream.domain` imports only the standard library and itself;
- every `profilestream.*` import names a module or package that exists (no `profilestream.io`,
  no top-level `flows`: it is installed as `profilestream.flows`);
- pyproject.toml lists every package of the tree (an unlisted one would be missing from the wheel);
- no test module imports another test module (what tests share lives in tests/support/).
"""

from __future__ import annotations

import ast
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "profilestream"
CORE = "profilestream.domain"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    where: str  # file:line
    kind: str  # "module", "function" or "type-checking"


def _setuptools() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]


def _package_dirs() -> dict[str, Path]:
    dirs = {PACKAGE: ROOT / PACKAGE}
    dirs.update({name: ROOT / path for name, path in _setuptools().get("package-dir", {}).items()})
    return dirs


@cache
def modules() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package) for the installed package, as package-dir maps it."""
    dirs = _package_dirs()
    found: dict[str, tuple[Path, bool]] = {}
    for name, base in dirs.items():
        others = [d for n, d in dirs.items() if n != name and base in d.parents]
        for path in sorted(base.rglob("*.py")):
            if "__pycache__" in path.parts or any(d in path.parents for d in others):
                continue
            parts = list(path.relative_to(base).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            found[".".join([name, *parts])] = (path, is_pkg)
    return found


def _imports(module: str, path: Path, is_pkg: bool):
    """(imported module name, line, kind) of every import in a file, relative ones resolved; for
    `from a import b` the name is `a.b` when that is a module of the package, else `a`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    known = modules()

    def walk(node: ast.AST, kind: str):
        for child in ast.iter_child_nodes(node):
            inner = kind
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                inner = "function" if kind == "module" else kind
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for stmt in child.body:
                    yield from walk_stmt(stmt, "type-checking")
                for stmt in child.orelse:
                    yield from walk_stmt(stmt, kind)
                continue
            yield from walk_stmt(child, inner)

    def walk_stmt(node: ast.AST, kind: str):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, kind
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_pkg else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = base + ("." + node.module if node.module else "")
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in known else target), node.lineno, kind
        else:
            yield from walk(node, kind)

    yield from walk(tree, "module")


@cache
def graph() -> tuple[tuple[Edge, ...], tuple[Edge, ...]]:
    """(edges inside the package, imports of anything else)."""
    known = modules()
    internal, external = [], []
    for module, (path, is_pkg) in known.items():
        own_ancestors = {module.rsplit(".", i)[0] for i in range(1, module.count(".") + 1)} | {module}
        for name, line, kind in _imports(module, path, is_pkg):
            where = f"{path.relative_to(ROOT)}:{line}"
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                parts = name.split(".")
                for i in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:i])
                    if prefix in own_ancestors and prefix != name:
                        continue
                    if prefix in known and prefix != module:
                        internal.append(Edge(module, prefix, where, kind))
                if name not in known:
                    internal.append(Edge(module, name, where, kind))  # unresolved: see the test below
            else:
                external.append(Edge(module, name, where, kind))
    return tuple(internal), tuple(external)


def _cycles(edges: list[Edge], limit: int = 200) -> list[list[Edge]]:
    """The elementary cycles: from each node, the paths back to it through larger nodes only."""
    adjacency: dict[str, dict[str, Edge]] = {}
    for e in edges:
        adjacency.setdefault(e.source, {}).setdefault(e.target, e)
    nodes = sorted(set(adjacency) | {e.target for e in edges})
    found: list[list[Edge]] = []

    def search(start: str, node: str, path: list[Edge], on_path: set[str]) -> None:
        for target, edge in sorted(adjacency.get(node, {}).items()):
            if len(found) >= limit or target < start:
                continue
            if target == start:
                found.append([*path, edge])
            elif target not in on_path:
                search(start, target, [*path, edge], on_path | {target})

    for start in nodes:
        search(start, start, [], {start})
    return found


def _show(cycle: list[Edge]) -> str:
    path = " -> ".join([cycle[0].source, *(e.target for e in cycle)])
    return path + "\n      " + "\n      ".join(f"{e.source} -> {e.target}: {e.where} ({e.kind})" for e in cycle)


def test_no_import_cycle():
    internal, _ = graph()
    cycles = _cycles([e for e in internal if e.target in modules()])
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(f"  {_show(c)}" for c in cycles)


def test_domain_imports_only_the_standard_library_and_itself():
    internal, external = graph()
    wrong = [
        e for e in external if e.source.startswith(CORE) and e.target.partition(".")[0] not in sys.stdlib_module_names
    ]
    wrong += [
        e
        for e in internal
        if e.source.startswith(CORE)
        and e.target != PACKAGE
        and not (e.target == CORE or e.target.startswith(CORE + "."))
    ]
    assert not wrong, "profilestream.domain imports outside the standard library and itself:\n" + "\n".join(
        f"  {e.source} -> {e.target}: {e.where} ({e.kind})" for e in sorted(wrong, key=lambda e: e.where)
    )


def test_every_internal_import_resolves():
    internal, external = graph()
    unresolved = [e for e in internal if e.target not in modules()]
    # a name imported `from profilestream.x import y` resolves to the module profilestream.x
    flows = [e for e in external if e.target == "flows" or e.target.startswith("flows.")]
    assert not unresolved + flows, "\n".join(f"  {e.source} -> {e.target}: {e.where}" for e in unresolved + flows)


def test_pyproject_lists_every_package():
    packages = {name for name, (_, is_pkg) in modules().items() if is_pkg}
    assert set(_setuptools()["packages"]) == packages


def test_no_test_imports_another_test_module():
    tests = ROOT / "tests"
    test_modules = {p.stem for p in tests.rglob("test_*.py")}
    found = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            found += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n in test_modules]
    assert not found, "move what they share into tests/support/:\n  " + "\n  ".join(found)
