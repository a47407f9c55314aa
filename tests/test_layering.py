"""Dependencies run one way: every module's imports (read with ast) against the layer rules.

Library packages, each allowed its own modules and the packages listed (nothing else of the
project):

    util        -> (nothing)
    data        -> util
    evaluation  -> util
    display     -> util
    synthetic   -> data, util
    models      -> data, evaluation, util
    options     -> models, data, evaluation, util
    inference   -> models, data, evaluation, display, util

Entry points are the top-level modules (``train.py``, ``test.py``, ``prepare_dataset.py``,
``save_ct_metadata.py``) and the programs in ``scripts/`` and ``benchmarks/`` (modules with an
``if __name__ == "__main__":`` block); the other modules there are helpers of their folder
(``benchmarks/machine.py``). Entry points and helpers may import any library package; an entry
point may import the helpers of its own folder, never another entry point. No library package
imports an entry point, ``scripts/``, ``benchmarks/`` or ``tests/``; ``tests/`` may import
anything and is not checked. Imports inside functions count like those at the top. A top-level
folder of Python files that is not in a layer is reported too, so a new package gets a place.

The test compares the violations with :data:`KNOWN_VIOLATIONS`, so a new one fails it and so
does one that was fixed but is still listed.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Library package -> the other packages of the project it may import.
ALLOWED: dict[str, frozenset[str]] = {
    "util": frozenset(),
    "data": frozenset({"util"}),
    "evaluation": frozenset({"util"}),
    "display": frozenset({"util"}),
    "synthetic": frozenset({"data", "util"}),
    "models": frozenset({"data", "evaluation", "util"}),
    "options": frozenset({"models", "data", "evaluation", "util"}),
    "inference": frozenset({"models", "data", "evaluation", "display", "util"}),
}
#: Folders of programs (entry points) and their helpers.
TOOL_FOLDERS = ("scripts", "benchmarks")
#: Folders that are not checked.
UNCHECKED = ("tests", "datasets", "docs", "checkpoints", "results")

#: Violations allowed for now: none.
KNOWN_VIOLATIONS: list[tuple[str, str]] = []


def _module_name(rel: Path) -> str:
    """``display/windows.py`` -> ``display.windows``; ``util/__init__.py`` -> ``util``."""
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_program(tree: ast.Module) -> bool:
    """True if the module has an ``if __name__ == "__main__":`` block."""
    return any(isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
               and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__"
               for node in tree.body)


def _python_files(root: Path) -> tuple[dict[str, Path], set[str], list[str]]:
    """(checked module name -> path relative to ``root``, the project's top-level names,
    unclassified top-level folders)."""
    modules = {path.stem: path.relative_to(root) for path in sorted(root.glob("*.py"))}
    tops, unclassified = set(modules), []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(folder.rglob("*.py"))
        if folder.name.startswith((".", "_")) or not files:
            continue
        tops.add(folder.name)
        if folder.name in UNCHECKED:
            continue
        if folder.name not in ALLOWED and folder.name not in TOOL_FOLDERS:
            unclassified.append(folder.name)
        for path in files:
            modules[_module_name(path.relative_to(root))] = path.relative_to(root)
    return modules, tops, unclassified


def _imported(tree: ast.Module, name: str, is_package: bool, known: set[str],
              tops: set[str]) -> set[str]:
    """Dotted names of the project's modules and packages imported anywhere in ``tree``."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join([*package, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                found.add(full if full in known else base)
    return {n for n in found if n.split(".")[0] in tops}


def _layer(name: str, programs: set[str]) -> str:
    """``entry`` (an entry point), ``helper:<folder>`` or the library package's name."""
    top = name.split(".")[0]
    if name in programs or ("." not in name and top not in ALLOWED):
        return "entry"
    return f"helper:{top}" if top in TOOL_FOLDERS else top


def _allowed(importer: str, target: str, programs: set[str]) -> bool:
    """May module ``importer`` import module or package ``target``?"""
    source, dest = _layer(importer, programs), _layer(target, programs)
    if target.split(".")[0] == "tests" or dest == "entry":
        return False
    if source in ALLOWED:
        return dest == source or dest in ALLOWED[source]
    if dest.startswith("helper:"):
        return source in ("entry", dest) and importer.split(".")[0] == dest.split(":")[1]
    return dest in ALLOWED


def layering_violations(root: Path = REPO) -> list[tuple[str, str]]:
    """Every (importing file relative to ``root``, imported module) against the rules, sorted;
    an unclassified top-level folder is reported as (folder, "not in a layer")."""
    modules, tops, unclassified = _python_files(root)
    trees = {name: ast.parse((root / path).read_text(encoding="utf-8"), str(path))
             for name, path in modules.items()}
    programs = {name for name, tree in trees.items()
                if name.split(".")[0] in TOOL_FOLDERS and _is_program(tree)}
    found = {(folder, "not in a layer") for folder in unclassified}
    for name, tree in trees.items():
        is_package = modules[name].name == "__init__.py"
        for target in _imported(tree, name, is_package, set(modules), tops):
            if not _allowed(name, target, programs):
                found.add((modules[name].as_posix(), target))
    return sorted(found)


def test_only_the_known_violations_remain() -> None:
    assert layering_violations() == sorted(KNOWN_VIOLATIONS)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_checker_finds_each_kind_of_violation(tmp_path: Path) -> None:
    main = 'if __name__ == "__main__":\n    pass\n'
    _write(tmp_path, {
        "util/__init__.py": "", "util/a.py": "def f():\n    import data.x\n",
        "data/__init__.py": "", "data/x.py": "from util import a\nfrom . import y\n",
        "data/y.py": "import numpy\n",
        "models/__init__.py": "from synthetic import z\n",
        "synthetic/__init__.py": "", "synthetic/z.py": "from data.x import f\n",
        "train.py": "import test\nfrom models import thing\n", "test.py": "import tests.t\n",
        "scripts/run.py": "from benchmarks.machine import cpu\n" + main,
        "benchmarks/machine.py": "from data import x\n",
        "benchmarks/bench.py": "from benchmarks.machine import cpu\n" + main,
        "benchmarks/other.py": "from benchmarks import bench\n" + main,
        "newpkg/m.py": "", "tests/t.py": "import train\n",
    })
    assert layering_violations(tmp_path) == [
        ("benchmarks/other.py", "benchmarks.bench"),
        ("models/__init__.py", "synthetic.z"),
        ("newpkg", "not in a layer"),
        ("scripts/run.py", "benchmarks.machine"),
        ("test.py", "tests.t"),
        ("train.py", "test"),
        ("util/a.py", "data.x"),
    ]
