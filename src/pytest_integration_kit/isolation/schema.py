"""What defines a test database: a schema (MetaData, callable or alembic) plus seed data.

The :class:`SchemaSource` knows how to apply itself to a connection and how to name
itself with a fingerprint: a hash of everything that defines the result (the DDL the
MetaData compiles to, the source of a callable, the alembic scripts, the seed files).
The template database is keyed by that fingerprint, so an unchanged schema is reused
and a changed one is rebuilt without anyone asking.

Errors name the setting they come from. :meth:`SchemaSource.check` finds, before any
server starts, what needs none (a module or attribute missing, a file missing, alembic
not installed); what needs the server (a callable raising, failing SQL) fails once per
server as a :class:`SchemaBuildError`, and later builds fail fast pointing back to it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_integration_kit.errors import ConfigError, IntegrationKitError
from pytest_integration_kit.isolation.sql_script import split_sql

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from sqlalchemy.engine import Connection, Engine

__all__ = [
    "FINGERPRINT_VERSION",
    "SchemaBuildError",
    "SchemaSource",
    "load_attribute",
]

#: Bumped whenever what the kit adds to a template (tracking tables, triggers) changes.
FINGERPRINT_VERSION = "pik-isolation-3"


class SchemaBuildError(IntegrationKitError):
    """Building the template failed in the user's schema, migrations or seed data.

    The message names the setting, what ran and where it raised.
    """


def load_attribute(spec: str, setting: str = "integration_schema") -> Any:
    """Import ``module:attr.sub`` and return the attribute; errors name ``setting``."""
    module_name, _, attr = spec.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # a module raising anything on import is the user's to fix
        raise ConfigError(
            f"{setting}: cannot import {module_name!r} (from {spec!r}): "
            f"{type(exc).__name__}: {exc}{_where(exc)}"
        ) from None
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"{setting}: {module_name!r} has no attribute {attr!r} (from {spec!r})"
            ) from None
    return target


#: Frames from here down are libraries', not the user's: error locations skip them.
_LIBRARY_DIRS = tuple(
    {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    | {str(Path(__file__).resolve().parent.parent)}
)


def _where(exc: BaseException) -> str:
    """`` (at file:line in function)``: the innermost frame of the user's code, if any."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.startswith("<"):  # <frozen importlib._bootstrap>, <string>
            continue
        if not str(Path(frame.filename).resolve()).startswith(_LIBRARY_DIRS):
            return f" (at {frame.filename}:{frame.lineno} in {frame.name})"
    return ""


def _failure(setting: str, what: str, exc: BaseException) -> SchemaBuildError:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    return SchemaBuildError(
        f"{setting}: {what} raised {type(exc).__name__}: {first_line}{_where(exc)}"
    )


def _source_of(obj: Any) -> str:
    """The source text of a callable, or its qualified name when there is none."""
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', repr(obj))}"


@dataclass(frozen=True)
class SchemaSource:
    """The schema and seed data of a test database, by reference.

    ``schema`` is ``module:attr`` naming a ``MetaData`` (or something with a
    ``.metadata``, like a declarative base) or a callable given a Connection;
    ``alembic_config`` a path to ``alembic.ini`` (upgraded to ``head`` instead);
    ``seed`` SQL file paths and/or ``module:attr`` callables given a Connection, run in
    order after the schema. Relative paths are taken from ``root``.
    """

    schema: str | None = None
    alembic_config: str | None = None
    seed: tuple[str, ...] = ()
    root: Path = field(default_factory=Path.cwd)
    #: ``integration_env`` for migrations: given the host, port and name of the database
    #: being built, the variables to run ``alembic upgrade`` under (in a child process).
    migration_env: Callable[[str | None, int | None, str], Mapping[str, str]] | None = field(
        default=None, compare=False, repr=False
    )
    #: The first build failure per server: later builds there fail fast with it.
    _failures: dict[tuple[str, str, int | None], SchemaBuildError] = field(
        default_factory=dict, compare=False, repr=False
    )

    # -- checking -------------------------------------------------------------------

    def check(self) -> None:
        """Check, without a server, what can be: modules, attributes, files, alembic.

        Raises one :class:`ConfigError` naming each setting at fault.
        """
        errors: list[str] = []
        steps = (
            ("integration_schema", self._schema_object),
            ("integration_alembic_config", self._alembic_scripts),
            ("integration_seed", self._seed_entries),
        )
        for setting, step in steps:
            try:
                step()
            except ConfigError as exc:
                errors.append(str(exc))
            except Exception as exc:  # whatever else went wrong is still the setting's
                errors.append(f"{setting}: checking it failed: {type(exc).__name__}: {exc}")
        if errors:
            raise ConfigError("\n".join(errors))

    def _alembic_scripts(self) -> None:
        alembic = self._alembic_path()
        if alembic is not None:
            self._alembic_files(alembic)

    # -- loading --------------------------------------------------------------------

    def _schema_object(self) -> Any:
        if self.schema is None:
            return None
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        target = load_attribute(self.schema, "integration_schema")
        from sqlalchemy import MetaData  # noqa: PLC0415 - optional dependency, imported when used

        if not isinstance(target, MetaData) and isinstance(
            getattr(target, "metadata", None), MetaData
        ):
            target = target.metadata
        if not isinstance(target, MetaData) and not callable(target):
            raise ConfigError(
                f"integration_schema: {self.schema!r} is a {type(target).__name__}; expected "
                "a SQLAlchemy MetaData (or a declarative base) or a callable given a Connection"
            )
        return target

    def _seed_entries(self) -> list[Path | Callable[[Connection], Any]]:
        entries: list[Path | Callable[[Connection], Any]] = []
        for item in self.seed:
            if item.lower().endswith(".sql"):
                path = Path(item)
                path = path if path.is_absolute() else self.root / path
                if not path.is_file():
                    raise ConfigError(f"integration_seed: no such SQL file {str(path)!r}")
                entries.append(path)
            else:
                if str(self.root) not in sys.path:
                    sys.path.insert(0, str(self.root))
                target = load_attribute(item, "integration_seed")
                if not callable(target):
                    raise ConfigError(f"integration_seed: {item!r} is not callable")
                entries.append(target)
        return entries

    def _alembic_path(self) -> Path | None:
        if self.alembic_config is None:
            return None
        path = Path(self.alembic_config)
        path = path if path.is_absolute() else self.root / path
        if not path.is_file():
            raise ConfigError(f"integration_alembic_config: no such file {str(path)!r}")
        try:
            found = importlib.util.find_spec("alembic") is not None
        except Exception:  # a broken or blocked installation is a missing one
            found = False
        if not found:
            raise ConfigError(
                f"integration_alembic_config: set to {self.alembic_config!r}, but alembic is "
                "not installed (pip install alembic)"
            )
        return path

    # -- fingerprint ----------------------------------------------------------------

    def fingerprint(self, engine: Engine) -> str:
        """A hex digest of everything that defines the database, for ``engine``'s dialect."""
        digest = hashlib.sha256()

        def add(label: str, text: str | bytes) -> None:
            digest.update(label.encode() + b"\0")
            digest.update(text if isinstance(text, bytes) else text.encode())
            digest.update(b"\0")

        add("version", FINGERPRINT_VERSION)
        add("dialect", engine.dialect.name)
        target = self._schema_object()
        if target is not None:
            from sqlalchemy import MetaData  # noqa: PLC0415 - optional dependency, imported when used
            from sqlalchemy.schema import CreateIndex, CreateTable  # noqa: PLC0415 - optional dependency, imported when used

            if isinstance(target, MetaData):
                for table in target.sorted_tables:
                    add("table", str(CreateTable(table).compile(dialect=engine.dialect)))
                    for index in sorted(table.indexes, key=lambda ix: str(ix.name)):
                        add("index", str(CreateIndex(index).compile(dialect=engine.dialect)))
            else:
                add("callable", _source_of(target))
        alembic = self._alembic_path()
        if alembic is not None:
            for path in self._alembic_files(alembic):
                add(f"alembic:{path.name}", path.read_bytes())
        for entry in self._seed_entries():
            if isinstance(entry, Path):
                add(f"seed:{entry.name}", entry.read_bytes())
            else:
                add("seed-callable", _source_of(entry))
        return digest.hexdigest()

    def _alembic_files(self, ini: Path) -> list[Path]:
        """alembic.ini, env.py and every migration script: what ``upgrade head`` runs."""
        try:
            from alembic.config import Config  # noqa: PLC0415 - optional dependency, imported when used
            from alembic.script import ScriptDirectory  # noqa: PLC0415 - optional dependency, imported when used

            script = ScriptDirectory.from_config(Config(str(ini)))
        except Exception as exc:  # alembic's CommandError, configparser's errors, OSError
            raise ConfigError(
                f"integration_alembic_config: {str(ini)!r} is not a usable alembic "
                f"configuration: {type(exc).__name__}: {exc}"
            ) from None
        directory = Path(script.dir)
        files = [ini, *sorted(directory.glob("env.py"))]
        for version_dir in script._version_locations:
            files += sorted(Path(version_dir).rglob("*.py"))
        # The heads themselves, so a branch merge without file changes still counts.
        return files

    # -- applying -------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        return self.schema is None and self.alembic_config is None and not self.seed

    def apply(self, engine: Engine) -> None:
        """Create the schema and load the seed data into ``engine``'s database.

        A failure of the user's code or SQL is a :class:`SchemaBuildError` naming the
        setting; it is remembered, and a later call for the same server raises at once
        instead of building again.
        """
        key = (engine.dialect.name, str(engine.url.host), engine.url.port)
        earlier = self._failures.get(key)
        if earlier is not None:
            raise SchemaBuildError(
                f"the test database could not be built earlier in this session and is not "
                f"retried: {earlier}"
            )
        try:
            self._apply(engine)
        except SchemaBuildError as exc:
            self._failures[key] = exc
            raise

    def _apply(self, engine: Engine) -> None:
        target = self._schema_object()
        alembic = self._alembic_path()
        if alembic is not None:
            environment = (
                self.migration_env(engine.url.host, engine.url.port, engine.url.database or "")
                if self.migration_env is not None
                else None
            )
            try:
                if environment:
                    from pytest_integration_kit.isolation.migrations import upgrade_in_subprocess  # noqa: PLC0415 - only with integration_env

                    url = engine.url.render_as_string(hide_password=False)
                    upgrade_in_subprocess(
                        alembic, url, environment, database=engine.url.database or ""
                    )
                else:
                    self._upgrade(alembic, engine)
            except Exception as exc:
                raise _failure(
                    "integration_alembic_config", f"'upgrade head' of {str(alembic)!r}", exc
                ) from exc
        if target is not None:
            from sqlalchemy import MetaData  # noqa: PLC0415 - optional dependency, imported when used

            try:
                with engine.begin() as conn:
                    if isinstance(target, MetaData):
                        target.create_all(conn)
                    else:
                        target(conn)
            except Exception as exc:
                raise _failure("integration_schema", repr(self.schema), exc) from exc
        seeds = self._seed_entries()
        if seeds:
            self._seed(engine, seeds)

    @staticmethod
    def _seed(engine: Engine, entries: Iterable[Path | Callable[[Connection], Any]]) -> None:
        with engine.begin() as conn:
            for entry in entries:
                if isinstance(entry, Path):
                    # Straight to the driver: no parameters, so a literal % stays one.
                    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
                    try:
                        for number, statement in enumerate(split_sql(entry.read_text()), 1):
                            try:
                                cursor.execute(statement)
                            except Exception as exc:
                                shown = " ".join(statement.split())[:200]
                                raise _failure(
                                    "integration_seed",
                                    f"{entry.name}, statement {number} ({shown!r}),",
                                    exc,
                                ) from exc
                    finally:
                        cursor.close()
                else:
                    name = getattr(entry, "__qualname__", repr(entry))
                    try:
                        entry(conn)
                    except Exception as exc:
                        raise _failure("integration_seed", f"the callable {name}", exc) from exc

    @staticmethod
    def _upgrade(ini: Path, engine: Engine) -> None:
        from alembic import command  # noqa: PLC0415 - optional dependency, imported when used
        from alembic.config import Config  # noqa: PLC0415 - optional dependency, imported when used

        config = Config(str(ini))
        url = engine.url.render_as_string(hide_password=False)
        # configparser interpolation: a % in a password must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        with engine.begin() as conn:
            # env.py files written for tests (the alembic cookbook) use this connection;
            # stock ones connect to sqlalchemy.url above.
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
