#!/usr/bin/env bash
# Entrypoint of pytest-integration-kit/postgres:15.
#
# Follows the contract of the official postgres image (docker-library/postgres):
#   POSTGRES_USER (postgres), POSTGRES_PASSWORD (required unless
#   POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (= user), PGDATA,
#   POSTGRES_INITDB_ARGS, POSTGRES_INITDB_WALDIR, POSTGRES_HOST_AUTH_METHOD,
#   *_FILE variants of the first three, /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz}.
# And its behaviour: on first start initdb, then a TEMPORARY server on the unix socket
# only (listen_addresses='') for the set-up, stopped, then the real server on '*'.
# "database system is ready to accept connections" is therefore logged twice, and
# clients must wait for the second one (or for a TCP round trip).
set -Eeo pipefail

# file_env VAR [DEFAULT]: VAR from $VAR or from the file named by $VAR_FILE.
file_env() {
    local var="$1" file_var="${1}_FILE" def="${2:-}" val
    if [ "${!var:-}" ] && [ "${!file_var:-}" ]; then
        echo >&2 "error: both $var and $file_var are set (but are exclusive)"
        exit 1
    fi
    val="$def"
    if [ "${!var:-}" ]; then
        val="${!var}"
    elif [ "${!file_var:-}" ]; then
        val="$(< "${!file_var}")"
    fi
    export "$var"="$val"
    unset "$file_var"
}

setup_env() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    : "${PGDATA:=/var/lib/postgresql/data}"
    export PGDATA
}

want_help() {
    local arg
    for arg; do
        case "$arg" in
            -'?'|--help|--describe-config|-V|--version) return 0 ;;
        esac
    done
    return 1
}

verify_minimum_env() {
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
        cat >&2 <<-'EOE'
		Error: Database is uninitialized and superuser password is not specified.
		       You must specify POSTGRES_PASSWORD to a non-empty value for the
		       superuser. For example, "-e POSTGRES_PASSWORD=password" on "docker run".

		       You may also use "POSTGRES_HOST_AUTH_METHOD=trust" to allow all
		       connections without a password. This is *not* recommended.
		EOE
        exit 1
    fi
    if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
        echo 'WARNING: POSTGRES_HOST_AUTH_METHOD has been set to "trust": every connection is accepted without a password.' >&2
    fi
}

# psql on the unix socket as the superuser, into POSTGRES_DB unless it is empty.
process_sql() {
    local runner=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
    if [ -n "$POSTGRES_DB" ]; then
        runner+=(--dbname "$POSTGRES_DB")
    fi
    PGHOST='' PGHOSTADDR='' "${runner[@]}" "$@"
}

init_database_dir() {
    if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
        set -- --waldir "$POSTGRES_INITDB_WALDIR" "$@"
    fi
    # --pwfile refuses an empty file, hence the "\n" (as in the official image).
    eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"' "$@"'
    # The official image patches the sample config to listen on every address.
    printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
}

setup_hba_conf() {
    if [ "$1" = postgres ]; then shift; fi
    # Default: the method matching how passwords are stored (scram-sha-256 unless the
    # command line says otherwise), as in the official image.
    : "${POSTGRES_HOST_AUTH_METHOD:=$(postgres -C password_encryption "$@")}"
    {
        printf '\n'
        if [ "$POSTGRES_HOST_AUTH_METHOD" = trust ]; then
            printf '# warning trust is enabled for all connections\n'
        fi
        printf 'host all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD"
    } >> "$PGDATA/pg_hba.conf"
}

temp_server_start() {
    if [ "$1" = postgres ]; then shift; fi
    # Unix socket only: nobody outside can connect before the set-up is complete.
    set -- "$@" -c listen_addresses='' -p "${PGPORT:-5432}"
    PGUSER="${PGUSER:-$POSTGRES_USER}" pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@")" -w start
}

temp_server_stop() {
    PGUSER="${PGUSER:-postgres}" pg_ctl -D "$PGDATA" -m fast -w stop
}

# POSTGRES_DB='' only for process_sql (no --dbname of its own); :'db' is the real one.
# shellcheck disable=SC2097,SC2098
setup_db() {
    local exists
    exists="$(POSTGRES_DB='' process_sql --dbname postgres --set db="$POSTGRES_DB" --tuples-only <<-'EOSQL'
		SELECT 1 FROM pg_database WHERE datname = :'db' ;
	EOSQL
    )"
    if [ -z "$exists" ]; then
        POSTGRES_DB='' process_sql --dbname postgres --set db="$POSTGRES_DB" <<-'EOSQL'
			CREATE DATABASE :"db" ;
		EOSQL
        printf '\n'
    fi
}

process_init_files() {
    local f
    printf '\n'
    for f; do
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then
                    printf '%s: running %s\n' "$0" "$f"
                    "$f"
                else
                    printf '%s: sourcing %s\n' "$0" "$f"
                    # shellcheck disable=SC1090
                    . "$f"
                fi
                ;;
            *.sql)    printf '%s: running %s\n' "$0" "$f"; process_sql -f "$f"; printf '\n' ;;
            *.sql.gz) printf '%s: running %s\n' "$0" "$f"; gunzip -c "$f" | process_sql; printf '\n' ;;
            *)        printf '%s: ignoring %s\n' "$0" "$f" ;;
        esac
        printf '\n'
    done
}

main() {
    # `docker run IMAGE -c fsync=off` means `postgres -c fsync=off`.
    if [ "${1:0:1}" = '-' ]; then
        set -- postgres "$@"
    fi

    if [ "$1" = postgres ] && ! want_help "$@"; then
        setup_env
        if [ "$(id -u)" = 0 ]; then
            # Started as root: own the data directory, then run again as postgres.
            mkdir -p "$PGDATA" /var/run/postgresql
            find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
            chmod 00700 "$PGDATA" || :
            chown postgres:postgres /var/run/postgresql
            chmod 03777 /var/run/postgresql
            if [ -n "${POSTGRES_INITDB_WALDIR:-}" ]; then
                mkdir -p "$POSTGRES_INITDB_WALDIR"
                find "$POSTGRES_INITDB_WALDIR" \! -user postgres -exec chown postgres:postgres '{}' +
                chmod 700 "$POSTGRES_INITDB_WALDIR"
            fi
            export HOME=/var/lib/postgresql
            exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
        fi

        if [ ! -s "$PGDATA/PG_VERSION" ]; then
            verify_minimum_env
            # Fail early (as the official image does) when the directory is unreadable.
            ls /docker-entrypoint-initdb.d/ > /dev/null
            init_database_dir
            setup_hba_conf "$@"
            export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
            temp_server_start "$@"
            setup_db
            process_init_files /docker-entrypoint-initdb.d/*
            temp_server_stop
            unset PGPASSWORD
            printf '\nPostgreSQL init process complete; ready for start up.\n\n'
        else
            printf '\nPostgreSQL Database directory appears to contain a database; Skipping initialization\n\n'
        fi
    fi

    exec "$@"
}

main "$@"
