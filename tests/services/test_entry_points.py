"""The services entry point group is found as importlib.metadata finds it, only cheaper."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from pytest_integration_kit.services.entry_points import _standard_scan, declared_entry_points
from pytest_integration_kit.services.registry import ENTRY_POINT_GROUP

if TYPE_CHECKING:
    from pathlib import Path

GROUP = "pik_test.entry_point_scan"


def _found(group: str) -> list[tuple[str, str, str]]:
    return [(ep.name, ep.value, dist) for ep, dist in declared_entry_points(group)]


def _standard(group: str) -> list[tuple[str, str, str]]:
    return [(ep.name, ep.value, dist) for ep, dist in _standard_scan(group)]


@pytest.mark.parametrize("group", [ENTRY_POINT_GROUP, "pytest11", "console_scripts"])
def test_the_installed_groups_are_found_as_importlib_finds_them(group: str) -> None:
    assert _found(group) == _standard(group)


def _dist(where: Path, directory: str, name: str, entry_points: str | None) -> None:
    path = where / directory
    path.mkdir(parents=True)
    (path / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1\n")
    if entry_points is not None:
        (path / "entry_points.txt").write_text(entry_points)


def test_the_first_distribution_of_a_name_on_the_path_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As importlib.metadata: a second copy further on the path is shadowed, whatever it
    declares; files that do not name the group are not parsed, and declare nothing."""
    first, second = tmp_path / "first", tmp_path / "second"
    _dist(first, "pik_shadow-1.0.dist-info", "pik-shadow", f"[{GROUP}]\nold = shadow.old:Spec\n")
    _dist(first, "pik_plain-1.0.dist-info", "pik-plain", "[console_scripts]\nx = plain:main\n")
    _dist(first, "pik_bare-1.0.dist-info", "pik-bare", None)
    _dist(second, "PIK.Shadow-2.0.dist-info", "PIK.Shadow", f"[{GROUP}]\nnew = shadow.new:Spec\n")
    _dist(second, "pik_other-1.0.egg-info", "pik-other", f"[{GROUP}]\nother = other:Spec\n")
    # The name is the metadata's, as written there, not the directory's.
    _dist(second, "pik_odd_name-1.0.dist-info", "PIK.Odd-Name", f"[{GROUP}]\nodd = odd:Spec\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    found = _found(GROUP)
    assert sorted(found) == [
        ("odd", "odd:Spec", "PIK.Odd-Name"),
        ("old", "shadow.old:Spec", "pik-shadow"),
        ("other", "other:Spec", "pik-other"),
    ]
    assert sorted(found) == sorted(_standard(GROUP))


def test_the_declaring_name_is_read_without_the_email_parser() -> None:
    """Reading a distribution's name through ``email`` cost every run its import and a
    parse (issue #11): the scan reads the ``Name:`` line itself (a fresh interpreter)."""
    code = (
        "import sys; import pytest_integration_kit.services.entry_points as e; "
        "found = e.declared_entry_points('pytest_integration_kit.services'); "
        "assert any(name == 'pytest-integration-kit' for _, name in found), found; "
        "print('email.parser' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
