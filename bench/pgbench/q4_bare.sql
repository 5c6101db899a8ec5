-- Q4 bare: what Q4 costs without the rollups. The same totals per model over the same 30 UTC days
-- (today included), aggregated from the raw events (app.usage_events) under row-level security,
-- with the same output columns as q4.sql's statement, in research-graph's transaction.
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D tenants=100 -U rg_app -f q4_bare.sql
\set t random(0, :tenants - 1)
-- research-graph's session start (src/db/session.rs): BEGIN, the context statement and the
-- member role, pipelined in one round trip.
\startpipeline
BEGIN;
WITH previous AS MATERIALIZED (
    SELECT current_setting('app.tenant_id', true) AS tenant_id,
           current_setting('app.user_id', true) AS user_id
)
SELECT previous.tenant_id, previous.user_id,
       set_config('app.tenant_id', md5('tenant:' || :t)::uuid::text, true),
       set_config('app.user_id', md5('user:' || :t)::uuid::text, true)
FROM previous;
SELECT app.member_role();
\endpipeline
SELECT NULL::date, NULL::text, model, NULL::text, NULL::text, count(*)::bigint, (count(*) FILTER (WHERE outcome <> 'ok'))::bigint, coalesce(sum(input_tokens), 0)::bigint, coalesce(sum(cached_tokens), 0)::bigint, coalesce(sum(output_tokens), 0)::bigint, coalesce(sum(thinking_tokens), 0)::bigint, coalesce(sum(base_cost_micros), 0)::bigint, coalesce(sum(billed_cost_micros), 0)::bigint FROM app.usage_events WHERE occurred_at >= ((now() AT TIME ZONE 'UTC')::date - 29)::timestamp AT TIME ZONE 'UTC' AND occurred_at < ((now() AT TIME ZONE 'UTC')::date + 1)::timestamp AT TIME ZONE 'UTC' GROUP BY model ORDER BY 1, 2, 3, 4, 5;
COMMIT;
