"""Dependencies run one way: the core never imports the web app or the worker, not even in a
function, and its folders import each other only down the table below."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "clipseek"
ADAPTERS = ("webapp", "worker")
# Only the command line (with the launcher of `clipseek up`) starts the web app and the workers.
MAY_IMPORT_ADAPTERS = (CORE / "cli",)


def adapter_imports(source: str) -> list[str]:
    """The adapter modules that Python source imports, wherever the import statement stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")):
            names = [node.args[0].value]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in ADAPTERS]
    return found


def _core_imports() -> dict[Path, list[str]]:
    return {path: adapter_imports(path.read_text()) for path in sorted(CORE.rglob("*.py"))}


def _may_import_adapters(path: Path) -> bool:
    return any(path == allowed or allowed in path.parents for allowed in MAY_IMPORT_ADAPTERS)


def test_no_core_module_imports_the_web_app_or_the_worker() -> None:
    scanned = _core_imports()
    assert len(scanned) >= 30 and CORE / "search" / "run.py" in scanned
    offending = {str(path.relative_to(CORE)): names for path, names in scanned.items()
                 if names and not _may_import_adapters(path)}
    assert offending == {}


def test_the_scan_sees_the_imports_that_are_allowed() -> None:
    # Both stand inside functions: a scan that missed them would pass for the wrong reason.
    scanned = _core_imports()
    assert scanned[CORE / "cli" / "launcher.py"] == ["webapp"]
    assert scanned[CORE / "cli" / "run.py"] == ["worker.app"]


def test_a_planted_import_is_caught_wherever_it_stands() -> None:
    planted = '''
import webapp
import os, worker.tasks as tasks

def later():
    from webapp.api import bp
    from worker import app
    importlib.import_module("worker.app")

class Deep:
    def method(self):
        __import__("webapp")
'''
    assert sorted(adapter_imports(planted)) == ["webapp", "webapp", "webapp.api", "worker", "worker.app",
                                                "worker.tasks"]
    innocent = ("from clipseek.indexing.heartbeats import Heartbeat\nimport workers_extra\n"
                "from . import worker\n")
    assert adapter_imports(innocent) == []


# Who may import whom inside the core: each folder (or module at the root) and the folders
# below it. Settings and errors are the ground everything stands on; the command line is
# the top and may use anything. Read down the table: a folder never imports one above it.
FOUNDATION = {"settings", "errors"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "settings": {"errors"},
    "util": set(),
    "photo": {"util"},
    "store": {"util"},
    "clip": {"util", "photo"},
    "indexing": {"util", "photo", "store", "clip"},
    "switching": {"util", "store", "clip", "indexing"},
    "accounts": {"util", "store"},
    # The composition root: builds the database, the encoders and the queue's client.
    "context": {"store", "clip", "indexing", "switching"},
    "library": {"util", "photo", "store", "clip", "indexing", "switching"},
    "search": {"util", "photo", "store", "clip", "library"},
    "upkeep": {"util", "photo", "store", "clip", "indexing", "switching", "library", "search",
               "context"},
    "api": {"context", "search"},
    "cli": {"util", "photo", "store", "clip", "indexing", "switching", "accounts", "context",
            "library", "search", "upkeep", "api"},
    "__main__": {"cli"},
}


def unit_of(module: str) -> str | None:
    """The folder (or root module) of the core that a dotted module name belongs to."""
    parts = module.split(".")
    if parts[0] != "clipseek" or len(parts) < 2:
        return None
    return parts[1]


def core_imports(source: str, package: str) -> list[str]:
    """The core modules that Python source imports, wherever the import statement stands."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "clipseek":
                found += [f"clipseek.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:  # relative: within its package
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            found += ([f"{base}.{node.module}"] if node.module
                      else [f"{base}.{alias.name}" for alias in node.names])
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name.startswith("clipseek.")]


def wrong_imports(source: str, unit: str, package: str) -> list[str]:
    """The imports in `source` (of a module in `unit`) that the table does not allow."""
    allowed = ALLOWED[unit] | FOUNDATION | {unit}
    return [name for name in core_imports(source, package)
            if (found := unit_of(name)) is not None and found not in allowed]


def _core_modules() -> dict[Path, tuple[str, str]]:
    modules = {}
    for path in sorted(CORE.rglob("*.py")):
        relative = path.relative_to(CORE.parent).with_suffix("")
        package = ".".join(relative.parts[:-1])
        unit = relative.parts[1]
        modules[path] = (unit, package)
    return modules


def test_every_core_folder_and_root_module_has_a_row_in_the_table() -> None:
    units = {unit for unit, _ in _core_modules().values()} - {"__init__"}
    assert units == set(ALLOWED)
    folders = {p.name for p in CORE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {"util", "photo", "store", "clip", "indexing", "switching", "library", "search",
            "upkeep", "cli"} == folders


def test_folders_import_only_down_the_table() -> None:
    offending = {str(path.relative_to(CORE)): wrong
                 for path, (unit, package) in _core_modules().items()
                 if unit != "__init__" and (wrong := wrong_imports(path.read_text(), unit, package))}
    assert offending == {}


def test_the_table_has_no_circle() -> None:
    placed: list[str] = []
    remaining = dict(ALLOWED)
    while remaining:
        ready = [unit for unit, needs in remaining.items() if needs <= set(placed)]
        assert ready, f"a circle among {sorted(remaining)}"
        for unit in ready:
            placed.append(unit)
            del remaining[unit]


def test_no_two_core_modules_import_each_other_even_by_way_of_others() -> None:
    modules = {".".join(path.relative_to(CORE.parent).with_suffix("").parts).removesuffix(".__init__"):
               (path, package) for path, (_, package) in _core_modules().items()}
    graph: dict[str, set[str]] = {}
    for name, (path, package) in modules.items():
        graph[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
                # `from clipseek.clip import onnx_int8` needs the module, not the package's face.
                graph[name] |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules
                                else node.module for a in node.names}
            elif isinstance(node, ast.Import | ast.ImportFrom):
                graph[name] |= {m for m in core_imports(ast.unparse(node), package) if m in modules}
        graph[name].discard(name)
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        assert name not in visiting, "an import circle: " + " -> ".join((*trail, name))
        if name in done:
            return
        visiting.add(name)
        for dependency in sorted(graph[name]):
            visit(dependency, (*trail, name))
        visiting.discard(name)
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def test_a_planted_import_up_the_table_is_caught_wherever_it_stands() -> None:
    planted = """
from clipseek.store.tables import Image
def later():
    from clipseek.search.run import run_search
    from clipseek import upkeep
"""
    assert wrong_imports(planted, "store", "clipseek.store") == ["clipseek.search.run", "clipseek.upkeep"]
    assert wrong_imports(planted, "cli", "clipseek.cli") == []
    assert wrong_imports("from .. import context\n", "store", "clipseek.store") == ["clipseek.context"]
