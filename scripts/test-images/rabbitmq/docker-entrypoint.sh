#!/usr/bin/env bash
# Entrypoint of pytest-integration-kit/rabbitmq:3 (RabbitMQ 3.10 from Debian).
#
# Like the official rabbitmq image: `rabbitmq-server` runs as user rabbitmq with
# /var/lib/rabbitmq as its home (data and Erlang cookie); RabbitMQ itself reads
# RABBITMQ_DEFAULT_USER, RABBITMQ_DEFAULT_PASS, RABBITMQ_DEFAULT_VHOST and
# RABBITMQ_ENABLED_PLUGINS. Any other command runs as given:
#   docker run -e RABBITMQ_DEFAULT_USER=u -e RABBITMQ_DEFAULT_PASS=p IMAGE
#   docker run IMAGE rabbitmq-diagnostics status
set -Eeo pipefail

if [ "${1:-}" = rabbitmq-server ] && [ "$(id -u)" = 0 ]; then
    # Started as root: own the data directory (a tmpfs or volume), then run again as
    # rabbitmq.
    find /var/lib/rabbitmq \! -user rabbitmq -exec chown rabbitmq:rabbitmq '{}' +
    exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups "${BASH_SOURCE[0]}" "$@"
fi

exec "$@"
