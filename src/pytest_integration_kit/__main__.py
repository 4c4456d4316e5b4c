"""Command line: ``python -m pytest_integration_kit doctor``, ``kept list|remove [NAME]``
and ``warm remove``.

``doctor`` says what a run started here would use for each service and why, without
starting anything. Servers kept with ``integration_reuse`` outlive every run on
purpose; ``kept`` is how a user sees and removes them (all of them: the registry in the
cache dir, and any container on this host labelled for reuse).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_integration_kit.errors import ConfigError
from pytest_integration_kit.settings import resolve_settings

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pytest_integration_kit.lifecycle.kept import KeptServers
    from pytest_integration_kit.lifecycle.records import ServerRecord

__all__ = ["main"]


def _cache_dir(raw: str | None) -> Path:
    settings = resolve_settings(cli={"cache_dir": raw}, ini={})
    path: Path = settings["cache_dir"]
    return path


def _cache_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir``, as every command on kept servers or warm data takes it."""
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="the integration_cache_dir the runs used (default: INTEGRATION_CACHE_DIR, "
        "else the per-user cache dir)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_integration_kit",
        description="Explain what a test run would use; manage servers kept between runs.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    doctor = commands.add_parser(
        "doctor",
        help="for each service: the backend a run from here would use and why, images, "
        "binaries, drivers, the Docker engine, and the resolved settings",
    )
    doctor.add_argument(
        "--rootdir",
        type=Path,
        default=None,
        help="where the run would start (default: the current directory); its pytest "
        "configuration file is found from there upwards, as pytest does",
    )
    kept = commands.add_parser("kept", help="servers kept for reuse")
    actions = kept.add_subparsers(dest="action", required=True)
    for name, text in (
        ("list", "show kept servers"),
        ("remove", "stop and remove them: all, or those NAME matches"),
    ):
        action = actions.add_parser(name, help=text)
        _cache_dir_argument(action)
        if name == "remove":
            action.add_argument(
                "names",
                nargs="*",
                metavar="NAME",
                help="a service (postgres), an address (127.0.0.1:5432) or a container id "
                "prefix, as `kept list` shows them; none: remove them all",
            )
    warm = commands.add_parser("warm", help="initialised data directories cached for warm starts")
    warm_actions = warm.add_subparsers(dest="action", required=True)
    remove = warm_actions.add_parser(
        "remove",
        help="remove the local copies in the cache dir and the warm docker images (those "
        "no container uses); the next start of each server is cold again",
    )
    _cache_dir_argument(remove)
    return parser


def _warm_remove(raw_cache_dir: str | None) -> int:
    """Remove every warm data directory: local copies, and images labelled warm."""
    from pytest_integration_kit.lifecycle.warm import WarmDataDirs  # noqa: PLC0415

    try:
        cache_dir = _cache_dir(raw_cache_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    WarmDataDirs(cache_dir).clear()
    removed, kept = 0, 0
    try:
        import docker  # noqa: PLC0415 - the docker extra is optional

        from pytest_integration_kit.backends.warm_images import WARM_LABEL  # noqa: PLC0415

        client = docker.from_env(timeout=30)
        images = client.images.list(filters={"label": WARM_LABEL})
    except Exception:  # no docker-py, no engine: no warm images to remove
        images = []
    for image in images:
        try:
            for tag in image.tags or [image.id]:
                client.images.remove(tag)
            removed += 1
        except Exception:  # a container still uses it
            kept += 1
    in_use = f", {kept} in use kept" if kept else ""
    print(f"removed {cache_dir / 'warm'} and {removed} warm image(s){in_use}")
    return 0


def _doctor(rootdir: Path | None) -> int:
    from pytest_integration_kit.reporting.doctor import doctor_lines  # noqa: PLC0415

    try:
        lines = doctor_lines((rootdir or Path.cwd()).resolve())
    except ConfigError as exc:
        print(f"error: bad setting\n{exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in ("doctor", "warm"):
        return _doctor(args.rootdir) if args.command == "doctor" else _warm_remove(args.cache_dir)
    # Imported here: the lifecycle pulls in the backends, which `--help` does not need.
    from pytest_integration_kit.lifecycle.attached import attach  # noqa: PLC0415
    from pytest_integration_kit.lifecycle.kept import KeptServers, age  # noqa: PLC0415
    from pytest_integration_kit.lifecycle.reaper import (  # noqa: PLC0415
        kept_containers,
        remove_container,
    )

    try:
        cache_dir = _cache_dir(args.cache_dir)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    registry = KeptServers(cache_dir)
    records = registry.all()
    known = {str(r.handle.get("container_id")) for r in records}
    strays = [c for c in kept_containers() if c["id"] not in known]
    if args.action == "list":
        if not records and not strays:
            print(f"no kept servers (cache dir {cache_dir})")
            return 0
        for record in records:
            server = attach(record) if record.endpoint is not None else None
            alive = getattr(server, "is_alive", lambda: True)()
            where = server.endpoint.address if server is not None else "-"
            print(
                f"{record.service:<9} {record.backend:<7} {where:<22} "
                f"kept {age(record)} ago, config {record.config_hash}, "
                f"{'running' if alive else 'dead'}"
            )
        for container in strays:
            print(
                f"{container['service']:<9} docker  {container['id'][:12]:<22} "
                f"not in the registry, config {container['config_hash']}, {container['status']}"
            )
        return 0
    if not args.names:
        removed = registry.remove_all()
        for container in strays:
            remove_container(container["id"])
        print(f"removed {len(removed) + len(strays)} kept server(s) (cache dir {cache_dir})")
        return 0
    return _remove_named(registry, records, strays, args.names)


def _matches(name: str, service: str, address: str, container_id: str) -> bool:
    return name in (service, address) or (len(name) >= 4 and container_id.startswith(name))


def _remove_named(
    registry: KeptServers,
    records: list[ServerRecord],
    strays: list[dict[str, str]],
    names: list[str],
) -> int:
    """Remove the kept servers each NAME matches; an unmatched NAME is an error (exit 1)."""
    from pytest_integration_kit.lifecycle.attached import attach  # noqa: PLC0415
    from pytest_integration_kit.lifecycle.reaper import remove_container  # noqa: PLC0415

    unmatched = list(names)
    removed = 0
    for record in records:
        endpoint = record.endpoint or {}
        address = f"{endpoint.get('host', '')}:{endpoint.get('port', '')}"
        container_id = str(record.handle.get("container_id") or "")
        hits = [n for n in names if _matches(n, record.service, address, container_id)]
        if not hits:
            continue
        unmatched = [n for n in unmatched if n not in hits]
        with registry.lock(record.key, timeout=120):
            if record.endpoint is not None:
                attach(record).stop()
            registry.forget(record.key)
        removed += 1
        print(f"removed {record.service} {record.backend} {address}")
    for container in strays:
        hits = [n for n in names if _matches(n, container["service"], "", container["id"])]
        if hits:
            unmatched = [n for n in unmatched if n not in hits]
            remove_container(container["id"])
            removed += 1
            print(f"removed {container['service']} docker {container['id'][:12]}")
    for name in unmatched:
        print(f"error: no kept server matches {name!r} (see: kept list)", file=sys.stderr)
    return 1 if unmatched else 0


if __name__ == "__main__":
    raise SystemExit(main())
