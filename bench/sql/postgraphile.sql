-- The bench schema: helper functions the PostGraphile peer serves next to the app schema, for
-- the benchmark queries the app schema alone cannot answer in one GraphQL field.
--
-- Run by the superuser after the migrations (idempotent):
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f bench/sql/postgraphile.sql
--
-- The functions are plain SQL, STABLE and SECURITY INVOKER: they run as rg_app, under the same
-- row-level security as every table read, and Postgres inlines them into PostGraphile's query.

CREATE SCHEMA IF NOT EXISTS bench AUTHORIZATION rg_owner;
GRANT USAGE ON SCHEMA bench TO rg_app;

SET ROLE rg_owner;

-- Q4: usage per model over a range of UTC days (inclusive), aggregated from the raw events, the
-- way a PostGraphile user serves it without a rollup table. The same totals as research-graph's
-- usage { stats(from, to, groupBy: [MODEL]) }, which reads the rollups in app.usage_daily.
CREATE OR REPLACE FUNCTION bench.usage_by_model(p_from date, p_to date)
RETURNS TABLE (model text, events bigint, input_tokens bigint, output_tokens bigint,
               billed_cost numeric)
    LANGUAGE sql STABLE
    AS $$
        SELECT e.model, count(*), sum(e.input_tokens)::bigint, sum(e.output_tokens)::bigint,
               sum(e.billed_cost_micros) / 1000000.0
        FROM app.usage_events e
        WHERE e.occurred_at >= p_from::timestamp AT TIME ZONE 'UTC'
          AND e.occurred_at < (p_to + 1)::timestamp AT TIME ZONE 'UTC'
        GROUP BY e.model
        ORDER BY e.model
    $$;

RESET ROLE;

REVOKE EXECUTE ON FUNCTION bench.usage_by_model(date, date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bench.usage_by_model(date, date) TO rg_app;
