"""The project's chaos and fuzz suite (``nox -s chaos``).

Not part of the test run: these scripts generate user projects (``pytest.ini``, a
conftest, test modules), run them with real pytest subprocesses against real servers
and judge what happened — rows and tables leaked into the next test, hangs, and what
is left behind after ``kill -9`` and concurrent sessions. ``python -m chaos --help``.
"""
