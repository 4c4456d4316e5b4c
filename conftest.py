"""Every code block in README.md and docs/*.md runs as a test, collected by Sybil.

How a page's blocks become a user's project (the conventions authors follow):

- A fenced block whose first line is ``# <path>`` (``# conftest.py``, ``# pytest.ini``,
  ``# myapp/models.py``) is that file; a python block may hold several files, each
  starting with such a line. ``<!-- doc-file: <path>`` … ``-->`` is a file the reader
  need not see (the app a page's tests import). Files accumulate through the page.
- An ``ini`` block with ``[pytest]`` is the page's ``pytest.ini``; a ``toml`` block with
  ``[tool.pytest`` is its ``pyproject.toml``.
- A python block with tests (unnamed ones become ``test_<page>_<line>.py``) runs with
  the page's files so far, in a fresh directory, through ``pytest`` in a subprocess on
  the local backend in strict mode: everything must pass, nothing may be skipped.
  A python block without tests must run on its own (``exec``), imports included.
- Each line of a ``sh`` block is a command, checked for what it is: ``pytest …`` runs
  with ``--help`` in the page's project (its options parse and its settings validate),
  ``python -m pytest_integration_kit …`` runs, ``pip install …`` names extras that
  exist, ``./dev X`` and ``nox -s X`` name commands and sessions that exist. An unknown
  command fails: teach this file about it rather than leave it unchecked.
- ``yaml`` blocks (CI recipes) must parse. ``text`` blocks are output, not run.
- ``<!-- doc-wrap:`` + lines of code + ``-->`` before a snippet that is not a test
  makes the snippet the body of the wrapper's last line (``def test_x(postgres_server):``),
  so a "from a script" example runs against a real server; the wrapper may set up
  names the snippet uses.
- ``<!-- skip: next -->`` right before a block skips it; say why in the prose. (This
  file reads it, not Sybil's SkipParser, whose state follows run order: pytest-randomly
  shuffles a page's examples.)
- A block of ``--8<-- "path"`` lines only (pymdownx.snippets, docs/tutorial.md) shows a
  file of the example project as it is: the file must exist (it runs in its own suite).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import tomllib
from sybil import Region, Sybil
from sybil.parsers.markdown.lexers import DirectiveInHTMLCommentLexer, FencedCodeBlockLexer

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pytest
    from sybil import Document, Example

ROOT = Path(__file__).resolve().parent
FILE_LINE = re.compile(r"^# ([\w./-]+\.(?:py|ini|toml|cfg|sql|txt|json|ya?ml))[ \t]*$", re.M)
TEST_DEF = re.compile(r"^(?:async )?def test_", re.M)
RUN_ENV = {"INTEGRATION_BACKEND": "local", "INTEGRATION_MISSING": "fail"}
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
NOX_SESSION = re.compile(r"@nox\.session\(([^)]*)\)\s*(?:@[^\n]*\n\s*)*def (\w+)")
DEV_COMMANDS = set(re.findall(r"^    (\w+)\)$", (ROOT / "dev").read_text(), re.M))
SKIP_NEXT = re.compile(r"<!--\s*skip:\s*next\s*-->$")
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$')
#: Where mkdocs.yml's pymdownx.snippets looks for included files.
SNIPPET_BASE = ROOT / "examples" / "storefront"


def _files_of(source: str, default: str | None) -> dict[str, str]:
    """Split a block into the files it names; an unnamed block is ``default``."""
    parts = FILE_LINE.split(source)
    files: dict[str, str] = {}
    if parts[0].strip() and default is not None:
        files[default] = parts[0]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        files[name] = files.get(name, "") + body.lstrip("\n")
    return files


def _add_python(files: dict[str, str], source: str) -> None:
    """A page adds to its modules as a reader would; test files stay with their block."""
    for name, body in _files_of(source, None).items():
        if not Path(name).name.startswith("test_"):
            files[name] = files.get(name, "") + body if name.endswith(".py") else body


def _add_config(files: dict[str, str], source: str, language: str) -> None:
    named = _files_of(source, None)
    if named:
        files.update(named)
    elif language == "ini" and "[pytest]" in source:
        files["pytest.ini"] = source
    elif language == "toml" and "[tool.pytest" in source:
        files["pyproject.toml"] = source


def _before(example: Example) -> tuple[dict[str, str], str | None]:
    """The page's project as a reader has it on reaching ``example``, and the doc-wrap
    right before it. Rebuilt from the page itself, so examples run in any order
    (pytest-randomly shuffles them) and on any xdist worker."""
    files: dict[str, str] = {}
    wrap: str | None = None
    for region in sorted(BlockParser()(example.document), key=lambda r: r.start):
        if region.start >= example.region.start:
            break
        source = str(region.parsed)
        if region.evaluator is _wrap_next:
            wrap = source
            continue
        if region.evaluator is _hidden_file:
            files[source] = str(region.lexemes["source"])
        elif region.evaluator is _evaluate_python:
            _add_python(files, source)
        elif region.evaluator is _evaluate_config:
            _add_config(files, source, str(region.lexemes["language"]))
        wrap = None
    return files, wrap


def _write(directory: Path, files: dict[str, str]) -> None:
    for name, body in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)


def _run(args: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    import os  # noqa: PLC0415 - only the subprocesses need the environment

    # The page's project first, then the caller's path (a worktree's src/ before the
    # installed copy, so a helper's docs run against its own code).
    path = os.pathsep.join(p for p in (str(cwd), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **RUN_ENV, "PYTHONPATH": path}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _evaluate_python(example: Example) -> None:
    source = str(example.parsed)
    line = example.line
    stem = Path(example.path).stem.lower().replace("-", "_")
    blocks = _files_of(source, None if not TEST_DEF.search(source) else f"test_{stem}_{line}.py")
    tests = {n: b for n, b in blocks.items() if Path(n).name.startswith("test_")}
    project, wrapper = _before(example)
    _add_python(project, source)
    if not blocks and wrapper is not None:  # a snippet that runs inside a test
        last = wrapper.rstrip().splitlines()[-1]
        opens = 4 if last.rstrip().endswith(":") else 0
        indent = " " * (len(last) - len(last.lstrip()) + opens)
        body = "\n".join(indent + text if text else text for text in source.splitlines())
        blocks = tests = {f"test_{stem}_{line}.py": f"{wrapper.rstrip()}\n{body}\n"}
    elif not blocks:  # a snippet: it runs on its own
        exec(compile(source, f"{example.path}:{line}", "exec"), {"__name__": "snippet"})  # noqa: S102
        return
    if not tests:
        return
    tmp: pytest.Pytester = example.namespace["pytester"]
    _write(tmp.path, {**project, **tests})
    result = _run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "-rA",
            *tests,
        ],
        tmp.path,
    )
    summary = re.findall(r"(\d+) (passed|failed|errors?|skipped|xfailed)", result.stdout)
    counts = {word: int(number) for number, word in summary}
    wanted = sum(len(TEST_DEF.findall(body)) for body in tests.values())
    ok = (
        result.returncode == 0
        and counts.get("passed", 0) >= wanted
        and not {"failed", "error", "errors", "skipped"} & counts.keys()
    )
    assert ok, f"the example at {example.path}:{line} failed:\n{result.stdout}\n{result.stderr}"


def _evaluate_config(example: Example) -> None:
    source = str(example.parsed)
    if example.region.lexemes["language"] == "toml":
        tomllib.loads(FILE_LINE.sub("", source))


def _evaluate_yaml(example: Example) -> None:
    import yaml  # noqa: PLC0415 - only pages with CI recipes need it

    list(yaml.safe_load_all(str(example.parsed)))


def _check_command(words: list[str], example: Example) -> None:
    where = f"{example.path}:{example.line}: {shlex.join(words)}"
    program, args = words[0], words[1:]
    if program in {"pytest", "py.test"} or words[:3] == ["python", "-m", "pytest"]:
        args = words[3:] if program == "python" else args
        tmp: pytest.Pytester = example.namespace["pytester"]
        _write(tmp.path, _before(example)[0])
        result = _run([sys.executable, "-m", "pytest", *args, "--help"], tmp.path, timeout=120)
        assert result.returncode == 0, f"{where}\n{result.stdout[-2000:]}\n{result.stderr}"
    elif words[:3] == ["python", "-m", "pytest_integration_kit"]:
        rest = words[3:]
        if any(w.isupper() for w in rest):  # a placeholder such as NAME
            rest = [w for w in rest if not w.isupper()] + ["--help"]
        result = _run([sys.executable, "-m", "pytest_integration_kit", *rest], ROOT, timeout=120)
        assert result.returncode == 0, f"{where}\n{result.stdout}\n{result.stderr}"
    elif program == "pip" and args[:1] == ["install"]:
        for requirement in args[1:]:
            extras = re.fullmatch(r"pytest-integration-kit(?:\[([\w,-]+)\])?", requirement)
            if extras is None:
                continue  # another project's package
            unknown = set((extras.group(1) or "").split(",")) - EXTRAS - {""}
            assert not unknown, f"{where}: no such extra {sorted(unknown)}"
    elif program == "./dev":
        assert args[:1], f"{where}: ./dev needs a command"
        assert args[0] in DEV_COMMANDS, f"{where}: ./dev has {sorted(DEV_COMMANDS)}"
    elif program == "nox":
        # Read from noxfile.py: nox itself is not installed where the tests run.
        noxfile = (ROOT / "noxfile.py").read_text()
        sessions = set()
        for decorator, function in NOX_SESSION.findall(noxfile):
            named = re.search(r'name="([\w-]+)"', decorator)
            sessions.add(named.group(1) if named else function)
        named = [args[i + 1] for i, a in enumerate(args[:-1]) if a in {"-s", "--session"}]
        assert named, f"{where}: name the session with -s"
        assert set(named) <= sessions, f"{where}: nox has {sorted(sessions)}"
    else:
        raise AssertionError(f"{where}: unknown command; teach conftest.py how to check it")


def _evaluate_shell(example: Example) -> None:
    for raw in str(example.parsed).splitlines():
        line = raw.split("  #", 1)[0].strip().removeprefix("$ ")
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
            words = words[1:]  # VAR=value before a command
        if words:
            _check_command(words, example)


EVALUATORS = {
    "python": _evaluate_python,
    "ini": _evaluate_config,
    "toml": _evaluate_config,
    "sh": _evaluate_shell,
    "bash": _evaluate_shell,
    "yaml": _evaluate_yaml,
}


class BlockParser:
    """Fenced blocks by language, and hidden ``doc-file`` comments, in page order."""

    def __call__(self, document: Document) -> Iterable[Region]:
        for region in FencedCodeBlockLexer(language=r"[\w-]+")(document):
            if SKIP_NEXT.search(document.text[: region.start].rstrip()[-80:]):
                continue  # shown, not run: the prose says why
            evaluator = EVALUATORS.get(region.lexemes["language"])
            if _is_include(str(region.lexemes["source"])):
                evaluator = _evaluate_include
            if evaluator is not None:
                region.parsed = region.lexemes["source"]
                region.evaluator = evaluator
                yield region
        for region in DirectiveInHTMLCommentLexer(directive="doc-file", arguments=r"\S+")(document):
            region.parsed = region.lexemes["arguments"]
            region.evaluator = _hidden_file
            yield region
        for region in DirectiveInHTMLCommentLexer(directive="doc-wrap")(document):
            region.parsed = region.lexemes["source"]
            region.evaluator = _wrap_next
            yield region


def _evaluate_include(example: Example) -> None:
    """A block that includes files (see the module's docstring): they must exist."""
    for line in str(example.parsed).splitlines():
        name = INCLUDE.match(line.strip())
        if name is not None:
            path = SNIPPET_BASE / name.group(1)
            assert path.is_file(), f"{example.path}:{example.line}: no file {path}"


def _is_include(source: str) -> bool:
    lines = [line.strip() for line in source.splitlines() if line.strip()]
    return bool(lines) and all(INCLUDE.match(line) for line in lines)


def _hidden_file(example: Example) -> None:
    """A file of the page's project: used by the examples after it (see _before)."""


def _wrap_next(example: Example) -> None:
    """Wraps the snippet right after it (see _before)."""


pytest_collect_file = Sybil(
    parsers=[BlockParser()],
    patterns=["README.md", "docs/*.md"],
    fixtures=["pytester"],
).pytest()
