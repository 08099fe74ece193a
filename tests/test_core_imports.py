"""The engine core (``rlcapture/_backend/``) imports no front, tool or integration, anywhere.

Read from the source (every ``import`` statement, at any depth: inside a
function too), so an import that only runs in a child process or on an
error path cannot hide. The uploader reaches the tracker adapters by name
through its registry, not by an import statement.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "rlcapture"
CORE = ROOT / "_backend"

#: Modules and packages directly under ``rlcapture`` that sit above the core.
ABOVE = {
    # integrations
    "sb3",
    "trackers",
    "cluster",
    # fronts
    "recorder",
    "vector",
    "vector_options",
    "wrapper",
    "batch",
    "envs",
    # runners
    "evaluate",
    "replay",
    # tools
    "cli",
    "bench",
    "results",
    "policies",
}


def package_of(path: Path) -> str:
    """The package that relative imports in ``path`` start from."""
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1])


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``source``, at any depth.

    ``package`` is the package relative imports start from. ``from . import x``
    counts as importing ``package.x`` too (it may be a module); a literal passed
    to ``importlib.import_module`` or ``__import__`` counts as an import.
    """
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def above_the_core(module: str) -> bool:
    parts = module.split(".")
    return len(parts) > 1 and parts[0] == "rlcapture" and parts[1] in ABOVE


def test_the_scan_sees_imports_inside_functions() -> None:
    """The scan itself: function-level, relative and by-literal imports are all found."""
    source = (
        "import os\n"
        "from .spec import parse_tracker\n"
        "def f():\n"
        "    from ...trackers.base import RunInfo\n"
        "    from ... import sb3\n"
        "    import importlib\n"
        "    importlib.import_module('rlcapture.cluster.driver')\n"
    )
    found = [m for _, m in imported_modules(source, "rlcapture._backend.uploads")]
    assert "rlcapture._backend.uploads.spec" in found
    assert [m for m in found if above_the_core(m)] == [
        "rlcapture.trackers.base",
        "rlcapture.trackers.base.RunInfo",
        "rlcapture.sb3",
        "rlcapture.cluster.driver",
    ]


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_the_core_imports_nothing_above_it(path: Path) -> None:
    found = imported_modules(path.read_text(), package_of(path))
    bad = [f"line {line}: {module}" for line, module in found if above_the_core(module)]
    assert not bad, f"{path.relative_to(ROOT.parent)} imports above the core: {bad}"


def test_no_core_module_names_the_trackers_in_an_import() -> None:
    """What grep would say: the trackers' package appears in no import line of the core."""
    lines = [
        f"{path.relative_to(ROOT.parent)}:{n}"
        for path in CORE.rglob("*.py")
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if line.lstrip().startswith(("import ", "from "))
        and ("trackers" in line.split(" import ")[0])
    ]
    assert not lines, lines
