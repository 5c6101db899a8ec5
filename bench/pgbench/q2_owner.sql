-- Q2 without row-level security, the other half of the RLS-overhead pair of q2.sql: the same
-- transaction and statements, run by the superuser (who bypasses the policies), each table read
-- with the tenant as an explicit predicate instead of the policy.
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D tenants=100 -D nodes=2000 -U postgres -f q2_owner.sql
\set t random(0, :tenants - 1)
\set n random(0, :nodes / 10 - 1)
\set page 11
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
-- 1. The node loader: the hub.
SELECT n.id, n.node_type, n.name, n.key, n.aliases, n.description, n.created_at, n.updated_at FROM app.nodes n WHERE n.tenant_id = md5('tenant:' || :t)::uuid AND n.id = ANY(ARRAY[md5('node:' || :t || ':' || :n)::uuid]);
-- 2. The outgoing-page loader for the hub (first 10 plus one, creation order). The server's
--    statement is the inner one, verbatim; the wrapper folds its rows into one (\gset) with the
--    distinct targets of the first 10 relations of each parent, which the server loads next.
--    count(r) reads whole rows, so that the planner keeps every column the server fetches
--    (unused subquery outputs would otherwise be dropped, and the scans become index-only).
SELECT coalesce(array_agg(DISTINCT r.target_id) FILTER (WHERE r.rn <= 10), '{}') AS hop1_ids,
       count(DISTINCT r.target_id) FILTER (WHERE r.rn <= 10) AS hop1_n,
       count(r) AS server_rows
FROM (SELECT q.*, row_number() OVER (PARTITION BY q.parent ORDER BY q.created_at, q.id) AS rn
      FROM (
SELECT k.parent, x.* FROM unnest(ARRAY[md5('node:' || :t || ':' || :n)::uuid]) AS k (parent) CROSS JOIN LATERAL (SELECT e.id, e.source_id, e.target_id, e.relation_type, e.description, e.confidence, e.weight, e.review_status, e.reviewed_by, e.reviewed_at, e.review_note, e.created_at, e.updated_at, (e.created_at)::text FROM app.edges e WHERE e.tenant_id = md5('tenant:' || :t)::uuid AND e.source_id = k.parent ORDER BY e.created_at ASC, e.id ASC LIMIT :page) x
      ) q (parent, id, source_id, target_id, relation_type, description, confidence, weight,
           review_status, reviewed_by, reviewed_at, review_note, created_at, updated_at,
           created_at_text)
     ) r \gset
-- The server loads nothing more when the hub has no outgoing relation.
\if :hop1_n > 0
-- 3. The node loader: the targets of the first hop.
SELECT n.id, n.node_type, n.name, n.key, n.aliases, n.description, n.created_at, n.updated_at FROM app.nodes n WHERE n.tenant_id = md5('tenant:' || :t)::uuid AND n.id = ANY(:hop1_ids);
-- 4. The outgoing-page loader for those targets, batched in one statement (folded as in 2).
SELECT coalesce(array_agg(DISTINCT r.target_id) FILTER (WHERE r.rn <= 10), '{}') AS hop2_ids,
       count(DISTINCT r.target_id) FILTER (WHERE r.rn <= 10) AS hop2_n,
       count(r) AS server_rows
FROM (SELECT q.*, row_number() OVER (PARTITION BY q.parent ORDER BY q.created_at, q.id) AS rn
      FROM (
SELECT k.parent, x.* FROM unnest(:hop1_ids::uuid[]) AS k (parent) CROSS JOIN LATERAL (SELECT e.id, e.source_id, e.target_id, e.relation_type, e.description, e.confidence, e.weight, e.review_status, e.reviewed_by, e.reviewed_at, e.review_note, e.created_at, e.updated_at, (e.created_at)::text FROM app.edges e WHERE e.tenant_id = md5('tenant:' || :t)::uuid AND e.source_id = k.parent ORDER BY e.created_at ASC, e.id ASC LIMIT :page) x
      ) q (parent, id, source_id, target_id, relation_type, description, confidence, weight,
           review_status, reviewed_by, reviewed_at, review_note, created_at, updated_at,
           created_at_text)
     ) r \gset
\if :hop2_n > 0
-- 5. The node loader: the targets of the second hop.
SELECT n.id, n.node_type, n.name, n.key, n.aliases, n.description, n.created_at, n.updated_at FROM app.nodes n WHERE n.tenant_id = md5('tenant:' || :t)::uuid AND n.id = ANY(:hop2_ids);
\endif
\endif
COMMIT;
