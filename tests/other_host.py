"""Another "host" on this machine: a process in its own UTS and PID namespaces.

It has another host name and its own process ids (it is pid 1 there), exactly what a CI
job on another machine looks like to a shared server: its pid means nothing here. The
network is shared, so it reaches the same 127.0.0.1 servers. As root, or anyone where
unprivileged user namespaces are allowed.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Makes one thing through the library, prints what and as whom, then lives on.
HOLDER = textwrap.dedent(
    """
    import json, sys, time
    from pytest_integration_kit.isolation import IsolationWorkspace
    from pytest_integration_kit.isolation.ownership import host_identity
    from pytest_integration_kit.isolation.rabbitmq import RabbitVhost
    from pytest_integration_kit.services import spec_for

    service, url, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    endpoint = spec_for(service).endpoint_from_url(url)
    workspace = IsolationWorkspace(lease_seconds=lease)
    if service == "redis":
        keyspace = workspace.keyspace(endpoint)
        name = str(keyspace.claim())
        owner = keyspace.owner
    elif service == "rabbitmq":
        vhost = RabbitVhost(endpoint, lease_seconds=lease)
        vhost.create()
        workspace.hold(vhost)
        name, owner = vhost.name, vhost.owner
    else:
        name = workspace.databases(endpoint).worker_database()
        owner = workspace.owner
    print(json.dumps({"name": name, "owner": owner, "host": host_identity()}), flush=True)
    time.sleep(3600)
    """
)


@contextmanager
def holder_elsewhere(
    service: str, url: str, lease_seconds: float
) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """Run :data:`HOLDER` as host ``ci-runner-b``; yields the process and what it made.

    Killing the process (``os.killpg(process.pid, SIGKILL)``) is a CI job cancelled
    mid-run; on leaving, it is killed if still alive.
    """
    unshare = shutil.which("unshare")
    assert unshare is not None, "util-linux's unshare is needed to simulate a second host"
    script = f'hostname ci-runner-b && exec {sys.executable} -c "$0" "$@"'
    namespaces = ["--uts", "--pid", "--fork", "--mount-proc", "--kill-child"]
    if os.geteuid() != 0:  # a user namespace lets anyone make the others
        namespaces = ["--user", "--map-root-user", *namespaces]
    arguments = [HOLDER, service, url, str(lease_seconds)]
    process = subprocess.Popen(
        [unshare, *namespaces, "sh", "-c", script, *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        line = process.stdout.readline() if ready else ""
        if not line:
            kill(process)
            _, err = process.communicate(timeout=30)
            raise AssertionError(f"the other host's holder failed: {err}")
        yield process, json.loads(line)
    finally:
        kill(process)


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL the holder and everything in its namespace; waits for it."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)  # reads and closes the pipes too
