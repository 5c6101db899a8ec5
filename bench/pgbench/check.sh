#!/usr/bin/env bash
# Checks the pgbench scripts of this directory against each other, once each, with a fixed tenant
# and node through psql:
#   - each RLS-overhead pair returns the same rows: the script as rg_app under row-level security,
#     and its *_owner.sql twin as the superuser with an explicit tenant predicate
#     (q1, q2, q3, q4_bare);
#   - q4.sql (the daily rollups) and q4_bare.sql (the raw events) return the same totals;
#   - q5_bare.sql (the recursive CTE) returns the rows of app.neighborhood(node, 3, -, -, 200).
# Every compared output must also be non-empty, so that a check cannot pass on two empty answers.
#
#   . bench/lib/pg.sh; bench_pg_up DIR PORT       # PGHOST, PGPORT, PGDATABASE
#   bench/pgbench/check.sh [TENANT [NODE [HUB]]]  # defaults: 0 1 0 (numbers as in bench/src/ids.rs)
#
# The scripts are run by psql: pgbench's random \set lines and pipeline marks are dropped, \if on
# an expression becomes a \gset of the expression then \if, pgbench's array variables (*_ids,
# bound parameters there) become quoted psql variables, and each \gset query is also printed.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
t="${1:-0}"
n="${2:-1}"
hub="${3:-0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# pgbench script -> psql script
to_psql() {
    sed -E \
        -e '/^\\set [a-z_]+ random\(/d' \
        -e '/^\\(start|end)pipeline/d' \
        -e 's/^\\if (.*)$/SELECT (\1) AS check_cond \\gset\n\\if :check_cond/' \
        -e "s/:([a-z0-9_]+_ids)/:'\1'/g" \
        -e 's/\\gset$/\\g\n\\gset/' \
        "$1"
}

# run SCRIPT USER NODE: the rows it prints, sorted (loader statements have no ORDER BY)
run() {
    to_psql "$here/$1" > "$work/$1.psql"
    psql -X -q -tA -v ON_ERROR_STOP=1 -U "$2" -v t="$t" -v n="$3" -f "$work/$1.psql" | sort
}

fail=0
compare() { # NAME FILE_A FILE_B
    local rows
    rows=$(wc -l < "$2")
    if [ "$rows" -le 2 ]; then
        echo "FAIL $1: no rows to compare"
        fail=1
    elif cmp -s "$2" "$3"; then
        echo "ok   $1 ($rows lines)"
    else
        echo "FAIL $1:"
        diff "$2" "$3" | head -20
        fail=1
    fi
}

for q in q1 q3 q2 q4_bare; do
    node="$n"
    [ "$q" = q2 ] && node="$hub"
    run "$q.sql" rg_app "$node" > "$work/$q.rls"
    run "${q}_owner.sql" postgres "$node" > "$work/$q.owner"
    compare "$q.sql = ${q}_owner.sql (tenant $t, node $node)" "$work/$q.rls" "$work/$q.owner"
done

run q4.sql rg_app "$n" > "$work/q4.rls"
compare "q4.sql = q4_bare.sql (tenant $t)" "$work/q4.rls" "$work/q4_bare.rls"

run q5_bare.sql rg_app "$n" > "$work/q5_bare.rls"
psql -X -q -tA -v ON_ERROR_STOP=1 -U rg_app > "$work/q5_fn" <<SQL
BEGIN;
SELECT set_config('app.tenant_id', md5('tenant:' || $t)::uuid::text, true),
       set_config('app.user_id', md5('user:' || $t)::uuid::text, true);
SELECT kind, id, depth
FROM app.neighborhood(md5('node:' || $t || ':' || $n)::uuid, 3, NULL, NULL, 200)
WHERE kind <> 'truncated';
COMMIT;
SQL
# only the walk's rows: the context rows of the two differ
grep -E '^(node|edge)\|' "$work/q5_fn" | sort > "$work/q5_fn.rows"
grep -E '^(node|edge)\|' "$work/q5_bare.rls" > "$work/q5_bare.rows"
compare "q5_bare.sql = app.neighborhood (tenant $t, node $n)" "$work/q5_bare.rows" "$work/q5_fn.rows"

exit "$fail"
