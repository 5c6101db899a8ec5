-- Q1 without row-level security, the other half of the RLS-overhead pair of q1.sql: the same
-- transaction and statements, run by the superuser (who bypasses the policies), each statement
-- with the tenant as an explicit predicate instead of the policy.
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D tenants=100 -U postgres -f q1_owner.sql
\set t random(0, :tenants - 1)
\set page 21
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
SELECT p.id, p.title, p.authors, p.abstract, p.doi, p.arxiv_id, p.year, p.venue, p.source_kind, p.created_at, p.updated_at, (p.created_at)::text FROM app.papers p WHERE p.tenant_id = md5('tenant:' || :t)::uuid ORDER BY p.created_at DESC, p.id DESC LIMIT :page;
SELECT count(*) FROM app.papers p WHERE p.tenant_id = md5('tenant:' || :t)::uuid;
COMMIT;
