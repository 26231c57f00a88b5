# Start a throwaway PostgreSQL on 127.0.0.1 for the tests (sourced by .ci/run).
# Installs Debian's postgresql package when it is missing. Exports ACTIVELABEL_TEST_POSTGRES_URL.

PG_PORT=${ACTIVELABEL_TEST_PG_PORT:-15432}

start_postgres() {
    local root=$1
    if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    fi
    PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    PG_ROOT=$root
    rm -rf "$PG_ROOT"
    mkdir -p "$PG_ROOT/sock"
    chown -R postgres:postgres "$PG_ROOT"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_ROOT/data" -U postgres --auth=trust \
        --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null  # throwaway: no fsync
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_ROOT/data" -l "$PG_ROOT/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_ROOT/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null
    runuser -u postgres -- psql -q -h "$PG_ROOT/sock" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE al_user LOGIN PASSWORD 'al_pass';" -c "CREATE DATABASE al_test OWNER al_user;" >/dev/null
    export ACTIVELABEL_TEST_POSTGRES_URL="postgresql+psycopg://al_user:al_pass@127.0.0.1:$PG_PORT/al_test"
    echo "PostgreSQL up on 127.0.0.1:$PG_PORT"
}

stop_postgres() {
    if [ -n "${PG_BIN:-}" ] && [ -d "${PG_ROOT:-}/data" ]; then
        runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_ROOT/data" -m fast stop >/dev/null 2>&1 || true
    fi
}
