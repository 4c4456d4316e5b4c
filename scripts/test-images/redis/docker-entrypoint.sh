#!/usr/bin/env bash
# Entrypoint of pytest-integration-kit/redis:7 (Redis 7.0 from Debian).
#
# Like the official redis image: a command that starts with "-" or is a *.conf file
# is given to redis-server; redis-server runs as user redis in /data. The official
# image is built with protected mode off and binds every interface; Debian's
# redis-server is not, so "--bind 0.0.0.0 --protected-mode no" are put first, where
# the caller's own arguments (or a config file that sets them) still override them:
#   docker run IMAGE redis-server --requirepass x --save ''
#   docker run IMAGE --appendonly yes
#   docker run IMAGE /etc/redis/my.conf --port 6380
set -Eeo pipefail

# `docker run IMAGE --foo` / `docker run IMAGE my.conf` mean `redis-server …`.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = redis-server ]; then
    if [ "$(id -u)" = 0 ]; then
        # Started as root: own the working directory, then run again as redis.
        find . \! -user redis -exec chown redis '{}' +
        export HOME=/var/lib/redis
        exec setpriv --reuid=redis --regid=redis --init-groups "${BASH_SOURCE[0]}" "$@"
    fi

    shift
    case "${1:-}" in
        -v|--version|-h|--help|--test-memory|--check-system)
            # Must stay redis-server's first argument.
            exec redis-server "$@" ;;
    esac
    conf=()
    if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
        # A config file (or "-" for stdin) must be redis-server's first argument.
        conf=("$1")
        shift
    fi
    defaults=()
    if [ ${#conf[@]} = 0 ] || [ ! -f "${conf[0]}" ] \
        || ! grep -Eqi '^[[:space:]]*bind[[:space:]]' "${conf[0]}"; then
        defaults+=(--bind 0.0.0.0)
    fi
    if [ ${#conf[@]} = 0 ] || [ ! -f "${conf[0]}" ] \
        || ! grep -Eqi '^[[:space:]]*protected-mode[[:space:]]' "${conf[0]}"; then
        defaults+=(--protected-mode no)
    fi
    set -- redis-server "${conf[@]}" "${defaults[@]}" "$@"
fi

exec "$@"
