# Shell functions of the benchmark: a PostgreSQL cluster of its own, on a TCP port of 127.0.0.1
# with trust authentication (disposable benchmark data, nothing else listens there), tuned for a
# read-heavy benchmark on a small machine, with the research-graph schema migrated into it.
#
#   . bench/lib/pg.sh
#   bench_pg_up DIR PORT          # initdb (once), start, create the database, migrate
#   bench_pg_down DIR
#
# After bench_pg_up: ADMIN_URL (the bootstrap superuser, "postgres") and APP_URL (rg_app, the
# role every benchmarked server connects as) are exported, and PGHOST/PGPORT/PGDATABASE are set
# for psql and pgbench.

bench_pg_bindir() {
    if command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/postgres" ]; then
        pg_config --bindir
        return
    fi
    local dir
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$dir" ] || { echo "no PostgreSQL server binaries found" >&2; return 1; }
    echo "$dir"
}

# Postgres refuses to run as root: as root, the cluster belongs to the "postgres" account.
bench_pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

bench_pg_up() {
    local dir="$1" port="$2" bindir
    bindir="$(bench_pg_bindir)" || return 1
    export PATH="$bindir:$PATH"
    if [ ! -f "$dir/PG_VERSION" ]; then
        mkdir -p "$dir"
        [ "$(id -u)" = 0 ] && chown postgres: "$dir" && chmod 700 "$dir"
        bench_pg_as_owner initdb -D "$dir" -U postgres -E UTF8 --locale=C --auth=trust >/dev/null || return 1
        bench_pg_as_owner tee -a "$dir/postgresql.conf" >/dev/null <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = '1GB'
effective_cache_size = '4GB'
work_mem = '16MB'
maintenance_work_mem = '512MB'
max_wal_size = '8GB'
checkpoint_timeout = '30min'
# Disposable data: nothing here needs to survive a crash, and generation is faster without.
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
log_min_messages = warning
CONF
    fi
    bench_pg_as_owner pg_ctl -D "$dir" -l "$dir/server.log" -w start >/dev/null || return 1
    export PGHOST=127.0.0.1 PGPORT="$port" PGDATABASE=research_graph
    export ADMIN_URL="postgres://postgres@127.0.0.1:$port/research_graph"
    export APP_URL="postgres://rg_app@127.0.0.1:$port/research_graph"
    if ! psql -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'research_graph'" | grep -q 1; then
        createdb -U postgres research_graph || return 1
    fi
    "${RG_BIN:-target/release/research-graph}" migrate \
        --database-url "$APP_URL" --admin-database-url "$ADMIN_URL" >/dev/null 2>"$dir/migrate.log" \
        || { cat "$dir/migrate.log" >&2; return 1; }
}

bench_pg_down() {
    local dir="$1" bindir
    bindir="$(bench_pg_bindir)" || return 1
    bench_pg_as_owner "$bindir/pg_ctl" -D "$dir" -m fast -w stop >/dev/null 2>&1 || true
}
