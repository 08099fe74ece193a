"""The layers of docs/ARCHITECTURE.md and the sizes of the code, checked rather than drawn.

The import contracts are in pyproject.toml (``[tool.importlinter]``); ``lint-imports``
checks them over every import, also those inside a function and those made through
other modules. ARCHITECTURE.md's layer table names every module of the package, and
only those. The sizes keep each function, class and module small enough to read
whole: a function of at most 80 lines, a class of at most 400, a module of at most 600.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "rlcapture"
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"

MAX_FUNCTION = 80
MAX_CLASS = 400
MAX_MODULE = 600


def test_the_import_contracts_hold() -> None:
    """``lint-imports`` from the repository root; its report is the failure message."""
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
         "sys.exit(lint_imports_command())", "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"lint-imports failed:\n{proc.stdout}\n{proc.stderr}"


def layer_table_modules(markdown: str) -> set[str]:
    """The modules the "Layers" table of ARCHITECTURE.md names, as paths under ``rlcapture/``.

    In its second column, `` `x/` `` is the package ``x`` (its ``__init__.py``) and
    `` `x/` (`a.py`, `b.py`) `` also names ``x/a.py`` and ``x/b.py``.
    """
    section = markdown.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    named: set[str] = set()
    for row in section.splitlines():
        cells = row.split("|")
        if len(cells) < 4 or set(cells[2].strip()) <= set("-: "):
            continue
        folder, inside = "", False
        for token in re.finditer(r"`([^`]+)`|\(|\)", cells[2]):
            if token.group(0) == "(":
                inside = True
            elif token.group(0) == ")":
                inside, folder = False, ""
            elif inside:
                named.add(folder + token.group(1))
            else:
                named.add(token.group(1))
                folder = token.group(1) if token.group(1).endswith("/") else ""
    return named


def package_modules(package: Path) -> set[str]:
    """Every module under ``package``, named as the table names it (a package by ``x/``)."""
    names = set()
    for path in package.rglob("*.py"):
        name = path.relative_to(package).as_posix()
        if path.name == "__init__.py" and path.parent != package:
            name = name[: -len("__init__.py")]
        names.add(name)
    return names


def test_the_layer_table_reads_folders_and_their_modules() -> None:
    table = (
        "intro\n\n## Layers\n\n| layer | modules | what |\n|---|---|---|\n"
        "| a | `x.py`, `p/` (`a.py`, `b.py`), `q/` | (`not.py` here) |\n\n## Next\n| b | `later.py` | |\n"
    )
    assert layer_table_modules(table) == {"x.py", "p/", "p/a.py", "p/b.py", "q/"}


def test_architecture_names_every_module_in_its_layer_table() -> None:
    """ARCHITECTURE.md's layer table stays true: every module is in it, and nothing else."""
    named = layer_table_modules(ARCHITECTURE.read_text(encoding="utf-8"))
    modules = package_modules(PACKAGE)
    assert not modules - named, f"modules missing from ARCHITECTURE.md's layer table: {sorted(modules - named)}"
    assert not named - modules, f"ARCHITECTURE.md's layer table names what is not there: {sorted(named - modules)}"


def oversized(package: Path) -> list[str]:
    """Every function, class and module under ``package`` over its limit, with its size."""
    found: list[str] = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        name = path.relative_to(package.parent).as_posix()
        lines = len(source.splitlines())
        if lines > MAX_MODULE:
            found.append(f"module {name}: {lines} lines (max {MAX_MODULE})")
        for node in ast.walk(ast.parse(source, filename=str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                kind, limit = "function", MAX_FUNCTION
            elif isinstance(node, ast.ClassDef):
                kind, limit = "class", MAX_CLASS
            else:
                continue
            size = node.end_lineno - node.lineno + 1  # from "def"/"class" to its last line
            if size > limit:
                found.append(f"{kind} {name}:{node.lineno} {node.name}: {size} lines (max {limit})")
    return found


def test_the_size_check_sees_functions_classes_and_modules(tmp_path: Path) -> None:
    """The check itself: what is just over a limit is reported, what is at it is not."""
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(["    x = 1"] * (MAX_FUNCTION - 1))
    (package / "ok.py").write_text(f"def at_limit():\n{body}\n")
    (package / "long.py").write_text(f"def over():\n{body}\n    x = 2\n")
    attributes = "\n".join(f"    a{i} = {i}" for i in range(MAX_CLASS))  # with its line: 401
    (package / "big.py").write_text(f"class Big:\n{attributes}\n" + "\n" * (MAX_MODULE - MAX_CLASS))
    found = oversized(package)
    assert len(found) == 3, found
    assert found[0] == f"module pkg/big.py: {MAX_MODULE + 1} lines (max {MAX_MODULE})"
    assert found[1] == f"class pkg/big.py:1 Big: {MAX_CLASS + 1} lines (max {MAX_CLASS})"
    assert found[2] == f"function pkg/long.py:1 over: {MAX_FUNCTION + 1} lines (max {MAX_FUNCTION})"


def test_nothing_outside_the_ray_driver_is_too_long() -> None:
    """Every module but ``cluster/driver.py`` (split on its own branch) keeps to the limits."""
    found = [line for line in oversized(PACKAGE) if "rlcapture/cluster/driver.py" not in line]
    assert not found, "over the size limits:\n" + "\n".join(found)


def test_no_function_class_or_module_is_too_long() -> None:
    found = oversized(PACKAGE)
    assert not found, "over the size limits:\n" + "\n".join(found)
