-- Q5, one research-graph request: neighborhood(nodeId: $nodeId, depth: 3, limit: 200) { … }. As
-- rg_app (row-level security), in research-graph's transaction: app.neighborhood, then the nodes
-- and the relations it found through the loaders, which run concurrently and so go out pipelined
-- (src/graph/neighborhood.rs; whatever the selection, the resolver loads both).
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D tenants=100 -D nodes=2000 -U rg_app -f q5.sql
\set t random(0, :tenants - 1)
\set n random(0, :nodes - 1)
\set depth 3
\set lim 200
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
-- 1. The walk. The server's statement is the inner one, verbatim (its relation-type and
--    review-status filters are NULL); the wrapper folds its rows into one (\gset) with the ids
--    the server loads next.
SELECT coalesce(array_agg(r.id) FILTER (WHERE r.kind = 'node'), '{}') AS node_ids,
       count(*) FILTER (WHERE r.kind = 'node') AS node_n,
       coalesce(array_agg(r.id) FILTER (WHERE r.kind = 'edge'), '{}') AS edge_ids,
       count(*) FILTER (WHERE r.kind = 'edge') AS edge_n
FROM (
SELECT kind, id, depth FROM app.neighborhood(md5('node:' || :t || ':' || :n)::uuid, :depth, NULL, NULL, :lim)
     ) r \gset
-- No rows: the node is not in this tenant, and the server answers null with nothing loaded.
\if :node_n > 0
-- 2. The node loader and the edge loader, in one round trip (a loader with no ids runs nothing).
\startpipeline
SELECT n.id, n.node_type, n.name, n.key, n.aliases, n.description, n.created_at, n.updated_at FROM app.nodes n WHERE n.id = ANY(:node_ids);
\if :edge_n > 0
SELECT e.id, e.source_id, e.target_id, e.relation_type, e.description, e.confidence, e.weight, e.review_status, e.reviewed_by, e.reviewed_at, e.review_note, e.created_at, e.updated_at FROM app.edges e WHERE e.id = ANY(:edge_ids);
\endif
\endpipeline
\endif
COMMIT;
