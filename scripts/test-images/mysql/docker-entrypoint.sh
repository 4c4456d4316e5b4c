#!/usr/bin/env bash
# Entrypoint of pytest-integration-kit/mysql:10.11 (MariaDB 10.11 from Debian).
#
# Follows the contract of the official mariadb / mysql images:
#   MARIADB_ROOT_PASSWORD | MYSQL_ROOT_PASSWORD, MARIADB_ALLOW_EMPTY_ROOT_PASSWORD |
#   MYSQL_ALLOW_EMPTY_PASSWORD, MARIADB_RANDOM_ROOT_PASSWORD | MYSQL_RANDOM_ROOT_PASSWORD,
#   MARIADB_ROOT_HOST | MYSQL_ROOT_HOST (default %), MARIADB_DATABASE | MYSQL_DATABASE,
#   MARIADB_USER | MYSQL_USER, MARIADB_PASSWORD | MYSQL_PASSWORD,
#   MARIADB_INITDB_SKIP_TZINFO | MYSQL_INITDB_SKIP_TZINFO, a *_FILE variant of each,
#   /docker-entrypoint-initdb.d/*.{sh,sql,sql.gz}; extra arguments go to mariadbd.
# And its behaviour: on first start mariadb-install-db, then a TEMPORARY server with
# --skip-networking for the set-up, stopped, then the real server on 0.0.0.0:3306 as
# user mysql. "ready for connections" is therefore logged twice.
set -Eeo pipefail

mysql_log() {
    local type="$1"; shift
    printf '%s [%s] [Entrypoint]: %s\n' "$(date --rfc-3339=seconds)" "$type" "$*"
}
mysql_note() { mysql_log Note "$@"; }
mysql_warn() { mysql_log Warn "$@" >&2; }
mysql_error() { mysql_log ERROR "$@" >&2; exit 1; }

# file_env VAR: VAR from $VAR or from the file named by $VAR_FILE.
file_env() {
    local var="$1" file_var="${1}_FILE" val=""
    if [ "${!var:-}" ] && [ "${!file_var:-}" ]; then
        mysql_error "Both $var and $file_var are set (but are exclusive)"
    fi
    if [ "${!var:-}" ]; then
        val="${!var}"
    elif [ "${!file_var:-}" ]; then
        val="$(< "${!file_var}")"
    fi
    export "$var"="$val"
    unset "$file_var"
}

# env_alias NAME [MYSQL_NAME]: MARIADB_NAME, else the MYSQL_ spelling of it.
env_alias() {
    local maria="MARIADB_$1" my="MYSQL_${2:-$1}"
    file_env "$maria"
    file_env "$my"
    export "$maria"="${!maria:-${!my:-}}"
}

setup_env() {
    env_alias ROOT_PASSWORD
    env_alias ALLOW_EMPTY_ROOT_PASSWORD ALLOW_EMPTY_PASSWORD
    env_alias RANDOM_ROOT_PASSWORD
    env_alias ROOT_HOST
    env_alias DATABASE
    env_alias USER
    env_alias PASSWORD
    env_alias INITDB_SKIP_TZINFO
    : "${MARIADB_ROOT_HOST:=%}"

    # Where the server keeps its data and socket, after every config file and argument.
    local help
    help="$("$@" --verbose --help 2>/dev/null)"
    DATADIR="$(awk '$1 == "datadir" && /^[^ \t]/ { print $2; exit }' <<< "$help")"
    SOCKET="$(awk '$1 == "socket" && /^[^ \t]/ { print $2; exit }' <<< "$help")"
    : "${DATADIR:=/var/lib/mysql/}" "${SOCKET:=/run/mysqld/mysqld.sock}"
}

want_help() {
    local arg
    for arg; do
        case "$arg" in
            -'?'|--help|--print-defaults|-V|--version) return 0 ;;
        esac
    done
    return 1
}

verify_minimum_env() {
    if [ -z "$MARIADB_ROOT_PASSWORD" ] && [ -z "$MARIADB_ALLOW_EMPTY_ROOT_PASSWORD" ] \
        && [ -z "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
        mysql_error $'Database is uninitialized and password option is not specified\n\tYou need to specify one of MARIADB_ROOT_PASSWORD (MYSQL_ROOT_PASSWORD), MARIADB_ALLOW_EMPTY_ROOT_PASSWORD (MYSQL_ALLOW_EMPTY_PASSWORD) and MARIADB_RANDOM_ROOT_PASSWORD (MYSQL_RANDOM_ROOT_PASSWORD)'
    fi
    if [ "$MARIADB_USER" = root ]; then
        mysql_error 'MARIADB_USER="root", MARIADB_USER and MARIADB_PASSWORD are for configuring a regular user and cannot be used for the root user
    Remove MARIADB_USER="root" and use one of the following to control the root user password:
    - MARIADB_ROOT_PASSWORD
    - MARIADB_ALLOW_EMPTY_ROOT_PASSWORD
    - MARIADB_RANDOM_ROOT_PASSWORD'
    fi
    if [ -n "$MARIADB_USER" ] && [ -z "$MARIADB_PASSWORD" ]; then
        mysql_warn "MARIADB_USER ($MARIADB_USER) specified, but missing MARIADB_PASSWORD; $MARIADB_USER will not be created"
    elif [ -z "$MARIADB_USER" ] && [ -n "$MARIADB_PASSWORD" ]; then
        mysql_warn "MARIADB_PASSWORD specified, but missing MARIADB_USER; MARIADB_PASSWORD will be ignored"
    fi
}

# SQL on the socket as root; the root password once it has been set.
# --dont-use-mysql-root-password as first argument: before it is set.
process_sql() {
    local pw="$MARIADB_ROOT_PASSWORD"
    if [ "${1:-}" = --dont-use-mysql-root-password ]; then
        shift
        pw=""
    fi
    local args=(--protocol=socket -uroot -hlocalhost --socket="$SOCKET")
    if [ -n "$MARIADB_DATABASE" ]; then
        args+=(--database="$MARIADB_DATABASE")
    fi
    MYSQL_PWD="$pw" mariadb "${args[@]}" "$@"
}

# 'a' -> \'a\' and friends, for string literals in SQL.
sql_escape_string_literal() {
    local newline=$'\n'
    local escaped=${1//\\/\\\\}
    escaped="${escaped//$newline/\\n}"
    echo "${escaped//\'/\\\'}"
}

init_database_dir() {
    mysql_note "Initializing database files"
    mariadb-install-db --datadir="$DATADIR" --rpm --auth-root-authentication-method=normal \
        "${@:2}" \
        --skip-test-db \
        --old-mode='UTF8_IS_UTF8MB3' \
        --default-time-zone=SYSTEM --enforce-storage-engine= \
        --skip-log-bin \
        --expire-logs-days=0 \
        --loose-innodb_buffer_pool_load_at_startup=0 \
        --loose-innodb_buffer_pool_dump_at_shutdown=0
    mysql_note "Database files initialized"
}

temp_server_start() {
    "$@" --skip-networking --default-time-zone=SYSTEM --socket="$SOCKET" --wsrep_on=OFF \
        --expire-logs-days=0 --skip-slave-start \
        --loose-innodb_buffer_pool_load_at_startup=0 &
    MARIADB_PID=$!
    mysql_note "Waiting for server startup"
    for _ in $(seq 300); do
        if process_sql --dont-use-mysql-root-password --database=mysql <<< 'SELECT 1' &> /dev/null; then
            return 0
        fi
        kill -0 "$MARIADB_PID" 2> /dev/null || mysql_error "Unable to start server."
        sleep 0.1
    done
    mysql_error "Unable to start server (no answer in 30 s)."
}

temp_server_stop() {
    kill "$MARIADB_PID"
    wait "$MARIADB_PID"
}

setup_db() {
    if [ -z "$MARIADB_INITDB_SKIP_TZINFO" ]; then
        # --skip-write-binlog also makes it LOCK TABLES, which is much faster.
        mariadb-tzinfo-to-sql --skip-write-binlog /usr/share/zoneinfo 2> /dev/null \
            | process_sql --dont-use-mysql-root-password --database=mysql
    fi

    if [ -n "$MARIADB_RANDOM_ROOT_PASSWORD" ]; then
        MARIADB_ROOT_PASSWORD="$(head -c 24 /dev/urandom | base64 | tr -d '/+=')"
        export MARIADB_ROOT_PASSWORD
        mysql_note "GENERATED ROOT PASSWORD: $MARIADB_ROOT_PASSWORD"
    fi

    local root_pw root_create="" create_database="" create_user="" user_grants=""
    root_pw="$(sql_escape_string_literal "$MARIADB_ROOT_PASSWORD")"
    if [ "$MARIADB_ROOT_HOST" != localhost ]; then
        root_create="CREATE USER 'root'@'${MARIADB_ROOT_HOST}' IDENTIFIED BY '${root_pw}' ;
GRANT ALL ON *.* TO 'root'@'${MARIADB_ROOT_HOST}' WITH GRANT OPTION ;
GRANT PROXY ON ''@'%' TO 'root'@'${MARIADB_ROOT_HOST}' WITH GRANT OPTION ;"
    fi
    if [ -n "$MARIADB_DATABASE" ]; then
        mysql_note "Creating database ${MARIADB_DATABASE}"
        create_database="CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE}\` ;"
    fi
    if [ -n "$MARIADB_USER" ] && [ -n "$MARIADB_PASSWORD" ]; then
        mysql_note "Creating user ${MARIADB_USER}"
        create_user="CREATE USER '$(sql_escape_string_literal "$MARIADB_USER")'@'%' IDENTIFIED BY '$(sql_escape_string_literal "$MARIADB_PASSWORD")' ;"
        if [ -n "$MARIADB_DATABASE" ]; then
            mysql_note "Giving user ${MARIADB_USER} access to schema ${MARIADB_DATABASE}"
            # _ is a wildcard in a GRANT's database name.
            user_grants="GRANT ALL ON \`${MARIADB_DATABASE//_/\\_}\`.* TO '$(sql_escape_string_literal "$MARIADB_USER")'@'%' ;"
        fi
    fi

    MARIADB_DATABASE='' process_sql --dont-use-mysql-root-password --database=mysql --binary-mode <<-EOSQL
		SET @orig_sql_log_bin= @@SESSION.SQL_LOG_BIN;
		SET @@SESSION.SQL_LOG_BIN=0;
		SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');
		DROP USER IF EXISTS root@'127.0.0.1', root@'::1';
		EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\'', @@hostname,'\'');
		SET PASSWORD FOR 'root'@'localhost'= PASSWORD('${root_pw}');
		${root_create}
		SET @@SESSION.SQL_LOG_BIN=@orig_sql_log_bin;
		${create_database}
		${create_user}
		${user_grants}
	EOSQL
}

process_init_files() {
    local f
    echo
    for f; do
        case "$f" in
            *.sh)
                if [ -x "$f" ]; then
                    mysql_note "$0: running $f"
                    "$f"
                else
                    mysql_note "$0: sourcing $f"
                    # shellcheck disable=SC1090
                    . "$f"
                fi
                ;;
            *.sql)    mysql_note "$0: running $f"; process_sql < "$f"; echo ;;
            *.sql.gz) mysql_note "$0: running $f"; gunzip -c "$f" | process_sql; echo ;;
            *)        mysql_warn "$0: ignoring $f" ;;
        esac
        echo
    done
}

main() {
    # `docker run IMAGE --innodb-flush-log-at-trx-commit=0` means `mariadbd --innodb-…`.
    if [ "${1:0:1}" = '-' ]; then
        set -- mariadbd "$@"
    fi

    if { [ "$1" = mariadbd ] || [ "$1" = mysqld ]; } && ! want_help "$@"; then
        mysql_note "Entrypoint script for MariaDB Server started."
        setup_env "$@"

        if [ "$(id -u)" = 0 ]; then
            # Started as root: own the data directory, then run again as mysql.
            mysql_note "Switching to dedicated user 'mysql'"
            mkdir -p "$DATADIR" "$(dirname "$SOCKET")"
            find "$DATADIR" "$(dirname "$SOCKET")" \! -user mysql -exec chown mysql:mysql '{}' +
            export HOME=/var/lib/mysql
            exec setpriv --reuid=mysql --regid=mysql --init-groups "${BASH_SOURCE[0]}" "$@"
        fi

        if [ ! -d "$DATADIR/mysql" ]; then
            verify_minimum_env
            # Fail early (as the official image does) when the directory is unreadable.
            ls /docker-entrypoint-initdb.d/ > /dev/null
            init_database_dir "$@"
            mysql_note "Starting temporary server"
            temp_server_start "$@"
            mysql_note "Temporary server started."
            setup_db
            process_init_files /docker-entrypoint-initdb.d/*
            mysql_note "Stopping temporary server"
            temp_server_stop
            mysql_note "Temporary server stopped"
            echo
            mysql_note "MariaDB init process done. Ready for start up."
            echo
        fi
    fi

    exec "$@"
}

main "$@"
