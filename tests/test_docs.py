"""The documentation holds: its relative links resolve and the commands it shows parse.

Pages: ``README.md``, ``docs/*.md`` and ``benchmarks/README.md``.

Links: every ``[text](target)`` and ``![alt](target)`` that is not a URL must name a file of
the repository, and a ``#anchor`` into a Markdown file must name one of its headings, slugged as
GitHub slugs them (lower case; characters other than letters, digits, ``_``, ``-`` and spaces
dropped; spaces become ``-``; a repeated heading gets ``-1``, ``-2`` ...).

Commands: every ``python <program> ...`` and ``torchrun ... <program> ...`` shown in a code
block or an inline code span, for ``train.py``, ``test.py``, ``prepare_dataset.py``,
``scripts/*.py`` and ``benchmarks/*.py``, is parsed by that program's own parser; nothing is
run and nothing is written (``bash <script>.sh`` is only checked to name a script that
exists). ``train.py`` and ``test.py`` go through
``BaseOptions.build_parser(argv)`` (the second pass adds the options of ``--model`` and
``--dataset_mode``) and ``parse_args``, not ``parse``, which would look for a run folder.
Placeholders are replaced before parsing: ``<training options>`` (any ``<...>`` naming options
or a command) by :data:`BASE_TRAIN_ARGS`, any other ``<...>`` by ``dummy``; ``[--opt X]``
becomes ``--opt X`` and ``...`` is dropped.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")),
         REPO / "benchmarks" / "README.md")

#: What ``<training options>`` and ``<the first training command>`` stand for: the options a
#: training command cannot do without.
BASE_TRAIN_ARGS = "--dataroot ./datasets/ct_phases_dataset"
#: Programs whose parser is built inside ``main()`` with the work it starts: only their
#: existence is checked.
PARSED_ONLY_IN_MAIN = frozenset({"benchmarks/bench_data.py", "benchmarks/bench_infer.py"})

_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Command:
    """A command shown on a page: ``page`` relative to the repository, ``line`` 1-based."""

    page: str
    line: int
    text: str


# ----------------------------------------------------------------------------- Markdown


def split_code(lines: list[str]) -> tuple[list[str], list[tuple[int, str]]]:
    """The lines outside code blocks (code lines blanked, so numbering is kept) and the code
    lines as ``(1-based line, text)``: fenced blocks and indented blocks (4 spaces or a tab
    after a blank line, continued while indented or blank)."""
    prose: list[str] = []
    code: list[tuple[int, str]] = []
    in_fence = in_indented = False
    previous_blank = True
    for number, line in enumerate(lines, start=1):
        is_code = False
        if _FENCE.match(line):
            in_fence, is_code = not in_fence, True
        elif in_fence:
            is_code = True
            code.append((number, line))
        else:
            indented = line.startswith(("    ", "\t"))
            if in_indented and not (indented or not line.strip()):
                in_indented = False
            if indented and (previous_blank or in_indented):
                in_indented = is_code = True
                code.append((number, line.strip()))
        prose.append("" if is_code else line)
        previous_blank = not line.strip()
    return prose, code


def github_slugs(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text."""
    prose, _ = split_code(text.splitlines())
    slugs: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose:
        match = _HEADING.match(line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(2).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


def link_problems(page: Path, root: Path) -> list[str]:
    """Every relative link of ``page`` that names no file under ``root``, or no heading there."""
    prose, _ = split_code(page.read_text(encoding="utf-8").splitlines())
    problems = []
    for number, line in enumerate(prose, start=1):
        for match in _LINK.finditer(line):
            target = match.group(1)
            if _SCHEME.match(target) or target.startswith("//"):
                continue
            where = f"{page.relative_to(root)}:{number}: ({target})"
            path_part, _, anchor = target.partition("#")
            path = (page.parent / path_part).resolve() if path_part else page
            if not path.is_relative_to(root.resolve()) or not path.exists():
                problems.append(f"{where}: no such file {path_part}")
            elif anchor and path.suffix == ".md" and anchor not in github_slugs(
                    path.read_text(encoding="utf-8")):
                problems.append(f"{where}: {path.relative_to(root.resolve())} has no heading "
                                f"#{anchor}")
    return problems


# ----------------------------------------------------------------------------- commands


def _starts_command(text: str) -> bool:
    """True for ``python``, ``torchrun`` and ``bash`` running a file (``.py``, ``.sh``), after
    any ``NAME=value`` prefixes: not for ``python -m pytest`` or the launcher's name alone."""
    words = text.split()
    while words and _ENV.match(words[0]):
        words = words[1:]
    return (bool(words) and words[0] in ("python", "python3", "torchrun", "bash")
            and any(w.endswith((".py", ".sh")) for w in words))


def shown_commands(page: Path, root: Path) -> Iterator[Command]:
    """The ``python``/``torchrun`` commands of a page: code lines (with ``\\`` continuations
    joined) and inline code spans."""
    rel = str(page.relative_to(root))
    prose, code = split_code(page.read_text(encoding="utf-8").splitlines())
    pending: tuple[int, str] | None = None
    for number, line in code:
        start, text = pending if pending else (number, "")
        text = f"{text} {line.rstrip()}".strip()
        if text.endswith("\\"):
            pending = (start, text[:-1])
            continue
        pending = None
        if _starts_command(text):
            yield Command(rel, start, text)
    joined = "\n".join(prose)
    for match in _INLINE_CODE.finditer(joined):
        text = " ".join(match.group(2).split())
        if _starts_command(text):
            yield Command(rel, joined.count("\n", 0, match.start()) + 1, text)


def command_words(text: str) -> list[str]:
    """The words of a shown command, placeholders replaced and environment prefixes dropped."""

    def placeholder(match: re.Match[str]) -> str:
        inner = match.group(1)
        return BASE_TRAIN_ARGS if re.search(r"option|command", inner) else "dummy"

    text = re.sub(r"<([^<>]*)>", placeholder, text)
    text = re.sub(r"\[(--[^\[\]]*)\]", r"\1", text)
    words = [w for w in shlex.split(text, comments=True) if w not in ("...", "…")]
    while words and _ENV.match(words[0]):
        words = words[1:]
    return words


def program_and_args(words: list[str]) -> tuple[str, list[str]]:
    """``(program, its arguments)``; ``torchrun``'s own options are parsed by torch's parser."""
    if words[0] != "torchrun":
        return (words[1], words[2:]) if len(words) > 1 else ("", [])
    from torch.distributed.run import get_args_parser

    launched = get_args_parser().parse_args(words[1:])
    return launched.training_script, list(launched.training_script_args)


def _options_parser(kind: str) -> Callable[[list[str]], object]:
    """``train.py``/``test.py``: both passes of the project's option parser, then parse_args."""
    from options.test_options import TestOptions
    from options.train_options import TrainOptions

    options = TrainOptions() if kind == "train.py" else TestOptions()
    return lambda args: options.build_parser(args).parse_args(args)


def _load_file(program: str) -> ModuleType:
    """A program of ``scripts/`` (not a package) loaded as a module of its own name."""
    name = "docs_check_" + re.sub(r"\W", "_", program)
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / program)
        if spec is None or spec.loader is None:
            raise ImportError(f"{program}: cannot be loaded as a module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _module_parser(module: ModuleType, program: str) -> Callable[[list[str]], object]:
    """The program's own parser: ``build_parser()``, or ``parse_args(argv)``, or
    ``parse_args()`` reading a patched ``sys.argv``."""
    if hasattr(module, "build_parser"):
        return lambda args: module.build_parser().parse_args(args)
    parse = module.parse_args
    if inspect.signature(parse).parameters:
        return lambda args: parse(args)

    def parse_argv(args: list[str]) -> object:
        with mock.patch.object(sys, "argv", [program, *args]):
            return parse()

    return parse_argv


def parser_of(program: str) -> Callable[[list[str]], object] | None:
    """How to parse ``program``'s arguments; None when it can only be checked to exist."""
    if program in ("train.py", "test.py"):
        return _options_parser(program)
    if program in PARSED_ONLY_IN_MAIN:
        return None
    if program == "prepare_dataset.py":
        return _module_parser(importlib.import_module("prepare_dataset"), program)
    if program.startswith("scripts/"):
        return _module_parser(_load_file(program), program)
    if program.startswith("benchmarks/"):
        module = importlib.import_module("benchmarks." + Path(program).stem)
        return _module_parser(module, program)
    raise ValueError(f"{program}: not one of the project's programs this test knows")


def command_problem(command: Command) -> str | None:
    """None if the command parses, else what went wrong, naming the page, line and command."""
    where = f"{command.page}:{command.line}: {command.text}"
    words = command_words(command.text)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            program, args = program_and_args(words)
            if not (REPO / program).is_file():
                return f"{where}\n  no such program: {program}"
            if program.endswith(".sh"):
                return None  # shell scripts take no options to check
            parse = parser_of(program)
            if parse is not None:
                parse(args)
    except SystemExit as exc:
        if exc.code == 0 and ("--help" in words or "-h" in words):
            return None
        message = err.getvalue().strip().splitlines()
        return f"{where}\n  exit {exc.code}: {message[-1] if message else ''}"
    except Exception as exc:
        return f"{where}\n  {type(exc).__name__}: {exc}"
    return None


COMMANDS = [c for page in PAGES if page.exists() for c in shown_commands(page, REPO)]


# ----------------------------------------------------------------------------- tests


def test_the_pages_exist_and_the_readme_stays_short() -> None:
    for page in PAGES:
        assert page.is_file(), page
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    problems = link_problems(page, REPO)
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_pages_show_the_commands_of_every_entry_point() -> None:
    programs = {w for c in COMMANDS for w in command_words(c.text) if w.endswith(".py")}
    for expected in ("train.py", "test.py", "prepare_dataset.py", "scripts/predict.py",
                     "scripts/evaluate.py", "scripts/make_synthetic_4dct.py"):
        assert expected in programs, expected
    assert any(c.text.startswith("torchrun") and "train.py" in c.text for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.page}:{c.line}")
def test_every_command_shown_parses(command: Command) -> None:
    problem = command_problem(command)
    assert problem is None, problem


def test_the_checks_fail_on_broken_links_and_commands(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# Title\n\n## Same\n\n## Same\n")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/a.md#same-1) [gone](docs/b.md) [bad](docs/a.md#nowhere)\n"
                    "![pic](docs/none.png) [web](https://example.org/x) [self](#top)\n\n"
                    "# Top\n\n    [in code](nowhere.md)\n")
    problems = link_problems(page, tmp_path)
    assert len(problems) == 3, problems
    assert "docs/b.md" in problems[0]
    assert "#nowhere" in problems[1]
    assert "docs/none.png" in problems[2]
    bad_option = Command("x.md", 1, "python train.py --dataroot d --netG no_such_net")
    assert "exit 2" in str(command_problem(bad_option))
    missing = Command("x.md", 2, "python test.py --name x")
    assert "--dataroot" in str(command_problem(missing))
    assert "no such program" in str(command_problem(Command("x.md", 3, "python nope.py")))
    assert "no such program" in str(command_problem(Command("x.md", 4, "bash scripts/no.sh")))


def test_commands_are_read_across_continuations_and_placeholders(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("Text `python train.py --help` and `ls -l`.\n\n"
                    "    python scripts/predict.py --name r \\\n"
                    "        --input <series folder> [--avg_series PATTERN] --output o  # note\n"
                    "    torchrun --standalone --nproc_per_node 2 train.py <training options>\n")
    commands = list(shown_commands(page, tmp_path))
    assert [c.line for c in commands] == [3, 5, 1]
    assert command_words(commands[0].text)[-4:] == ["--avg_series", "PATTERN", "--output", "o"]
    assert "dummy" in command_words(commands[0].text)
    assert program_and_args(command_words(commands[1].text)) == (
        "train.py", BASE_TRAIN_ARGS.split())
    for command in commands:
        assert command_problem(command) is None


def test_parsing_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for command in COMMANDS:
        command_problem(command)
    assert not any(tmp_path.iterdir())

