-- Q3 without row-level security, the other half of the RLS-overhead pair of q3.sql: the same
-- transaction and statement, run by the superuser (who bypasses the policies), with the tenant as
-- an explicit predicate instead of the policy.
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D tenants=100 -D nodes=2000 -U postgres -f q3_owner.sql
\set t random(0, :tenants - 1)
\set n random(0, :nodes - 1)
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
SELECT n.id, n.node_type, n.name, n.key, n.aliases, n.description, n.created_at, n.updated_at FROM app.nodes n WHERE n.tenant_id = md5('tenant:' || :t)::uuid AND n.id = ANY(ARRAY[md5('node:' || :t || ':' || :n)::uuid]);
COMMIT;
