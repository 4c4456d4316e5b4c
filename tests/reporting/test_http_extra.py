"""``http_mock`` / ``mock_server`` without the ``[http]`` extra: an error naming the extra,
not a ModuleNotFoundError from inside the kit."""

from __future__ import annotations

import pytest
from reporting_project import run

#: A user's conftest on a machine without httpx and respx: importing them fails.
WITHOUT_HTTP = """
import sys

HIDDEN = ("httpx", "respx", "trustme")


class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Hide())
for module in list(sys.modules):
    if module.split(".")[0] in HIDDEN or module.startswith(
        ("pytest_integration_kit.mocks", "pytest_integration_kit.faults.http")
    ):
        del sys.modules[module]
"""

TESTS = """
import pytest

def test_router(http_mock):
    pass

def test_server(mock_server):
    pass

@pytest.mark.http_mock(https=True)
def test_tls_server(mock_server):
    pass
"""


def test_a_missing_http_extra_is_an_error_naming_it(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(WITHOUT_HTTP)
    pytester.makepyfile(TESTS)
    result = run(pytester, "-p", "no:respx")
    result.assert_outcomes(errors=3)
    out = result.stdout.str()
    for fixture in ("http_mock", "mock_server"):
        extra = 'pip install "pytest-integration-kit[http]"'
        assert f"{fixture} needs the [http] extra (httpx is not installed): {extra}" in out
    assert "ModuleNotFoundError" not in out
    assert "Traceback" not in out
