-- Q1, one research-graph request: papers(first: 20) { totalCount nodes { id title year venue
-- authors createdAt } }. As rg_app (row-level security), in research-graph's transaction.
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D tenants=100 -U rg_app -f q1.sql
\set t random(0, :tenants - 1)
-- The page size asked for plus one (hasNextPage), a bound parameter as in the server.
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
-- The page, newest first, then totalCount: two statements, one after the other.
SELECT p.id, p.title, p.authors, p.abstract, p.doi, p.arxiv_id, p.year, p.venue, p.source_kind, p.created_at, p.updated_at, (p.created_at)::text FROM app.papers p WHERE true ORDER BY p.created_at DESC, p.id DESC LIMIT :page;
SELECT count(*) FROM app.papers p WHERE true;
COMMIT;
