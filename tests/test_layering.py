"""Dependencies run one way: the core never imports the web app or the worker, not even in a function."""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "clipseek"
ADAPTERS = ("webapp", "worker")
# Only the command line and the launcher of `clipseek up` start the web app and the workers.
MAY_IMPORT_ADAPTERS = (CORE / "cli", CORE / "launcher.py")


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
    assert len(scanned) >= 30 and CORE / "search.py" in scanned
    offending = {str(path.relative_to(CORE)): names for path, names in scanned.items()
                 if names and not _may_import_adapters(path)}
    assert offending == {}


def test_the_scan_sees_the_imports_that_are_allowed() -> None:
    # Both stand inside functions: a scan that missed them would pass for the wrong reason.
    scanned = _core_imports()
    assert scanned[CORE / "launcher.py"] == ["webapp"]
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
    innocent = "from clipseek.workers import Heartbeat\nimport workers_extra\nfrom . import worker\n"
    assert adapter_imports(innocent) == []
