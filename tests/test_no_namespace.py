"""Library code takes the run's typed settings, never the parsed command line.

The command line is an ``argparse.Namespace`` (``opt``) in ``options/`` and the entry points
alone; they turn it into :class:`models.settings.RunSettings` once
(:func:`options.base_options.run_settings`). In the other library packages (the layers of
:mod:`tests.test_layering` but ``options``) this test finds, in every module:

- the text ``argparse.Namespace`` (the issue's grep, docstrings included);
- a function parameter annotated with a ``Namespace`` or named ``opt``;
- a ``getattr(opt, ...)`` probe.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_layering import ALLOWED, REPO

#: The library packages checked: every layer but options/, where the command line is parsed.
CHECKED = tuple(sorted(set(ALLOWED) - {"options"}))


def _parameters(tree: ast.Module) -> list[ast.arg]:
    """Every parameter of every function and lambda in ``tree``."""
    found: list[ast.arg] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            a = node.args
            found += [*a.posonlyargs, *a.args, *a.kwonlyargs]
            found += [p for p in (a.vararg, a.kwarg) if p is not None]
    return found


def namespace_uses(path: Path, rel: str) -> list[str]:
    """``<rel>:<line>: <what>`` for each use of the parsed command line in the module."""
    text = path.read_text(encoding="utf-8")
    found = [f"{rel}:{n}: argparse.Namespace" for n, line in
             enumerate(text.splitlines(), start=1) if "argparse.Namespace" in line]
    tree = ast.parse(text, rel)
    for arg in _parameters(tree):
        annotation = ast.unparse(arg.annotation) if arg.annotation is not None else ""
        if "Namespace" in annotation or arg.arg == "opt":
            found.append(f"{rel}:{arg.lineno}: parameter {arg.arg}: {annotation or '?'}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "getattr" and node.args
                and isinstance(node.args[0], ast.Name) and node.args[0].id == "opt"):
            found.append(f"{rel}:{node.lineno}: getattr(opt, ...)")
    return found


def library_namespace_uses(root: Path = REPO) -> list[str]:
    """Every use in the checked packages under ``root``, sorted."""
    found = []
    for package in CHECKED:
        for path in sorted((root / package).rglob("*.py")):
            found += namespace_uses(path, path.relative_to(root).as_posix())
    return sorted(found)


def test_library_code_takes_no_namespace() -> None:
    assert library_namespace_uses() == []


def test_the_checker_finds_each_kind_of_use(tmp_path: Path) -> None:
    files = {
        "models/a.py": "import argparse\n\ndef f(opt: argparse.Namespace) -> None:\n"
                       "    return getattr(opt, 'x', 0)\n",
        "data/b.py": "from argparse import Namespace\n\ndef g(ns: Namespace) -> None: ...\n",
        "util/c.py": "h = lambda opt: opt\n",
        "options/d.py": "import argparse\n\ndef parse(opt: argparse.Namespace) -> None: ...\n",
        "inference/e.py": "def fine(settings: object, parser: object) -> None: ...\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    assert library_namespace_uses(tmp_path) == [
        "data/b.py:3: parameter ns: Namespace",
        "models/a.py:3: argparse.Namespace",
        "models/a.py:3: parameter opt: argparse.Namespace",
        "models/a.py:4: getattr(opt, ...)",
        "util/c.py:1: parameter opt: ?",
    ]
