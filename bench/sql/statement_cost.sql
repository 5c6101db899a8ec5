-- The cost of one primary-key read of a node, per statement, in microseconds: 20,000 reads in a
-- PL/pgSQL loop, three times. Run on a database filled by bench-generate, once as rg_app (under
-- row-level security: each statement runs the policies' membership check) and once as the
-- superuser (no policies, the tenant as an explicit predicate); the difference is what the
-- policies cost a one-row statement (docs/BENCHMARKS.md, "What made it faster").
--
--   psql -U rg_app    -f bench/sql/statement_cost.sql
--   psql -U postgres  -f bench/sql/statement_cost.sql

BEGIN;
SELECT set_config('app.tenant_id', md5('tenant:3')::uuid::text, true),
       set_config('app.user_id', md5('user:3')::uuid::text, true);
DO $$
DECLARE
    t0 timestamptz;
    r record;
BEGIN
    FOR k IN 1..3 LOOP
        t0 := clock_timestamp();
        FOR i IN 1..20000 LOOP
            SELECT n.id, n.name INTO r FROM app.nodes n
            WHERE n.tenant_id = md5('tenant:3')::uuid AND n.id = md5('node:3:' || (i % 2000))::uuid;
        END LOOP;
        RAISE NOTICE '% µs per statement',
            round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / 20000, 2);
    END LOOP;
END
$$;
COMMIT;
