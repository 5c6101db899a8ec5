-- Q4, one research-graph request: usage { stats(from: $from, to: $to, groupBy: [MODEL]) { model
-- totals { events inputTokens outputTokens billedCost } } } over the last 30 UTC days (today
-- included). As rg_app (row-level security), in research-graph's transaction: one statement over
-- the daily rollups (app.usage_daily). The server binds the two dates; here they are computed.
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D tenants=100 -U rg_app -f q4.sql
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
SELECT NULL::date, NULL::text, model, NULL::text, NULL::text, coalesce(sum(events), 0)::bigint, coalesce(sum(errors), 0)::bigint, coalesce(sum(input_tokens), 0)::bigint, coalesce(sum(cached_tokens), 0)::bigint, coalesce(sum(output_tokens), 0)::bigint, coalesce(sum(thinking_tokens), 0)::bigint, coalesce(sum(base_cost_micros), 0)::bigint, coalesce(sum(billed_cost_micros), 0)::bigint FROM app.usage_daily WHERE day >= (now() AT TIME ZONE 'UTC')::date - 29 AND day <= (now() AT TIME ZONE 'UTC')::date GROUP BY model ORDER BY 1, 2, 3, 4, 5;
COMMIT;
