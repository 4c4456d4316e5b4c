"""The examples in docs/mocks.md and docs/faults.md run, as a user's tests, and pass."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
FILE_MARK = re.compile(r"^# (\w+\.py)\n", re.MULTILINE)


def runnable_files(page: str) -> dict[str, str]:
    """Test files from the page's python blocks that define tests (``# name.py`` splits)."""
    files: dict[str, str] = {}
    stem = page.removesuffix(".md")
    for index, block in enumerate(BLOCK.findall((DOCS / page).read_text())):
        if "def test_" not in block:
            continue
        parts = FILE_MARK.split(block)
        if len(parts) == 1:
            files[f"test_{stem}_example_{index}.py"] = block
            continue
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            key = name if name == "conftest.py" else f"test_{stem}_{index}_{name}"
            files[key] = files.get(key, "") + body
    return files


@pytest.mark.parametrize("page", ["mocks.md", "faults.md"])
def test_examples_pass(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, page: str
) -> None:
    monkeypatch.setenv("INTEGRATION_BACKEND", "local")
    monkeypatch.setenv("INTEGRATION_MISSING", "fail")
    files = runnable_files(page)
    assert files, f"no runnable examples found in {page}"
    tests = sum(body.count("\ndef test_") + body.startswith("def test_") for body in files.values())
    pytester.makeini("[pytest]\naddopts = -p no:randomly -p no:cacheprovider\n")
    for name, body in files.items():
        pytester.path.joinpath(name).write_text(body)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=tests)
