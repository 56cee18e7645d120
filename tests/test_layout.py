"""The package layout follows the pipeline: no import cycles, imports only downwards, short files, self-contained docs.

The import graph is read from the source with ``ast`` (every ``import`` and ``from ... import``,
also those inside functions), so a lazy import that closes a cycle is caught as well.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cvqa_bench"

# The pipeline, bottom to top: a module may import from its own folder or from a lower layer.
LAYERS = [
    {"<package>", "errors", "io", "registry", "config", "rundir"},  # shared by every step
    {"data"},
    {"models"},
    {"methods"},
    {"scoring", "scorers"},
    {"metrics"},
    {"report"},
    {"run"},
    {"bench"},
    {"cli", "cli_common", "cli_tools", "cli_help", "api"},
]
# config/ checks method and scorer names at load time against the two registries, which are
# name tables with lazy entries (no torch import); that is the only upward reference.
ALLOWED_UPWARD = {("cvqa_bench.config.run", "cvqa_bench.methods"), ("cvqa_bench.config.sequence", "cvqa_bench.scoring"),
                  # the Python API's two names, loaded on first use: `cvqa_bench.load_run`, `cvqa_bench.run(config)`
                  ("cvqa_bench", "cvqa_bench.api"), ("cvqa_bench.run", "cvqa_bench.api")}
MAX_LINES = 300


def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package (``__init__`` names its package)."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def import_graph(modules: Mapping[str, Path], prefix: str = "cvqa_bench") -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (``from a import b`` resolves to ``a.b`` when that is a module)."""
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == prefix:
                for alias in node.names:
                    target = f"{node.module}.{alias.name}"
                    graph[name].add(target if target in modules else node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name.split(".")[0] == prefix)
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{path}: relative import; use absolute cvqa_bench imports")
    return graph


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def layer_of(module: str) -> int:
    """The pipeline layer of a dotted module name, from its first folder (or file) under the package."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "<package>"
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    raise AssertionError(f"{module}: {top!r} is in no layer of the pipeline; add it to LAYERS")


def test_the_cycle_finder_finds_a_lazy_cycle_and_passes_a_tree(tmp_path: Path) -> None:
    pkg = tmp_path / "cvqa_bench"
    (pkg / "run").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "run" / "__init__.py").write_text("")
    (pkg / "run" / "loop.py").write_text("from cvqa_bench.run import stage\n")
    (pkg / "run" / "stage.py").write_text("def f():\n    from cvqa_bench.run.loop import g\n")
    (pkg / "io.py").write_text("import os\n")
    graph = import_graph(package_modules(pkg))
    assert graph["cvqa_bench.run.loop"] == {"cvqa_bench.run.stage"}
    assert find_cycles(graph) == [["cvqa_bench.run.loop", "cvqa_bench.run.stage"]]
    (pkg / "run" / "stage.py").write_text("from cvqa_bench import io\n")
    assert find_cycles(import_graph(package_modules(pkg))) == []


def test_no_import_cycle_inside_the_package() -> None:
    graph = import_graph(package_modules())
    assert len(graph) > 40  # the walk found the package
    assert find_cycles(graph) == []


def test_modules_import_only_from_their_folder_or_lower_layers() -> None:
    upward = sorted(
        (name, target)
        for name, targets in import_graph(package_modules()).items()
        for target in targets
        if layer_of(target) > layer_of(name) and (name, target) not in ALLOWED_UPWARD
    )
    assert upward == []


@pytest.mark.parametrize("module", sorted(package_modules()), ids=str)
def test_no_module_is_over_300_lines(module: str) -> None:
    path = package_modules()[module]
    assert len(path.read_text().splitlines()) <= MAX_LINES, f"{path} is over {MAX_LINES} lines; split it by concept"


def tracked_files() -> list[Path]:
    """The files git tracks (the repository as a fresh clone has it)."""
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / line for line in out.splitlines()]


def test_nothing_in_the_repository_points_outside_it() -> None:
    outside = re.compile(r"\.\./shared|shared/(?:reference)|\bDESIGN\.md|(?<![\w/])reference/\w+\.md")
    offenders = [
        str(path.relative_to(ROOT))
        for path in tracked_files()
        if path.suffix in {".py", ".md", ".yaml", ".toml", ".sh", ".txt", ""} and path.is_file()
        and outside.search(path.read_text(errors="replace"))
    ]
    assert offenders == []


def test_the_design_document_names_every_module_of_the_package() -> None:
    design = (ROOT / "docs" / "design.md").read_text()
    missing = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if path.name != "__init__.py" and path.relative_to(PACKAGE).as_posix() not in design
    ]
    assert missing == []
