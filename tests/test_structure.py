"""The shape of the code base: modules small enough to hold one idea, layers that import
top-down without cycles, and a repository that cites only what it contains.

These read the source with :mod:`ast` (nothing is imported), so a failure names the file
and the line rather than an import error.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAB = ROOT / "lab"

# About one idea per module: past this a module is asked to split (the longest today,
# the HTTP/2 server's connection, sits well below it).
MAX_MODULE_LINES = 650


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(LAB.rglob("*.py"))}


def _imports(name: str, path: Path, known: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """Every ``lab`` module that ``path`` imports, with the line, at any depth of the file
    (imports under ``if TYPE_CHECKING:`` and inside functions count: a cycle is a cycle)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from lab.wire import sse` imports the module lab.wire.sse.
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py first: those are
            # imports too (the cycle through a package's __init__ is the usual one).
            # (A package's own submodule runs inside its __init__, so not for those.)
            parts = target.split(".")
            for depth in range(1, len(parts)):
                module = ".".join(parts[:depth])
                if module in known and not name.startswith(f"{module}."):
                    yield module, node.lineno
            if target in known and target != name:
                yield target, node.lineno


def _graph() -> dict[str, dict[str, int]]:
    known = _modules()
    graph: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges: dict[str, int] = {}
        for target, line in _imports(name, path, known):
            edges.setdefault(target, line)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_module_is_longer_than_the_limit() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in LAB.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_import_cycle() -> None:
    graph = _graph()
    described = [
        " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(c, [*c[1:], c[0]], strict=True))
        if all(b in graph[a] for a, b in zip(c, [*c[1:], c[0]], strict=True))
        else ", ".join(c)
        for c in _cycles(graph)
    ]
    assert not described, "import cycles:\n" + "\n".join(described)


# The layers, lowest first: a module imports only from its own package or a lower layer.
# Packages on one level do not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("lab.progress",),  # imports nothing of the lab: any layer may report progress
    ("lab.wire",),
    ("lab.capture",),
    ("lab.server", "lab.client"),
    ("lab.apps",),
    ("lab.attacks",),
    ("lab.peers",),  # other frameworks serving the lab's token stream, each in a process
    # any bytes through one codec of lab.wire, shown annotated; one request to any server,
    # shown live (lab probe); a recording relay in front of any server (lab tap)
    ("lab.decode", "lab.probe", "lab.tapcmd"),
    ("lab.bench", "lab.scenarios", "lab.proxy", "lab.fuzz"),
    ("lab.notebook", "lab.lessons", "lab.tour"),
    ("lab.cli",),
    ("lab.__main__",),
)


def _layer(module: str) -> tuple[int, str]:
    for level, packages in enumerate(LAYERS):
        for package in packages:
            if module == package or module.startswith(f"{package}."):
                return level, package
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def test_layers_import_top_down() -> None:
    wrong = [
        f"{a} (line {line}) imports {b}"
        for a, edges in _graph().items()
        if a != "lab"
        for b, line in edges.items()
        if ((la := _layer(a))[0] < (lb := _layer(b))[0] or (la[0] == lb[0] and la[1] != lb[1]))
    ]
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b": 1}, "b": {"c": 2}, "c": {"a": 3}, "d": {"a": 4}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _tracked_text_files() -> Iterator[Path]:
    listed = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in listed:
        path = ROOT / rel
        if path.suffix in {".py", ".md", ".toml", ".cfg", ".txt", ".ipynb"} and path.is_file():
            yield path


# A citation of a Markdown file by its name (capital letters, then the .md suffix).
_MD_CITATION = re.compile(r"\b([A-Za-z0-9_./-]*[A-Z][A-Za-z0-9_-]*\.md)\b")


def test_every_cited_markdown_file_is_in_the_repository() -> None:
    present = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    missing = [
        f"{path.relative_to(ROOT)}:{n}: {m.group(1)}"
        for path in _tracked_text_files()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        for m in _MD_CITATION.finditer(line)
        if Path(m.group(1)).name not in present
    ]
    assert not missing, "cited files that are not in the repository:\n" + "\n".join(missing)
