-- Q5 bare: the depth-3 neighbourhood (at most 200 nodes) of a node, and the relations among its
-- nodes, as one recursive CTE under row-level security: what app.neighborhood computes level by
-- level in PL/pgSQL (sql/V7__graph_api.sql), written as the plain SQL statement, without the
-- loader statements that follow it in a research-graph request. The same rows as the function
-- (kind, id, depth): every node at its smallest depth, the first 200 by (depth, id) (the function
-- keeps the first ids of the level that overflows), then the relations among them. Unlike the
-- function, the walk cannot skip nodes seen at an earlier level (a recursive CTE sees only the
-- previous level), so a hub reached at two depths is expanded twice, and the walk does not stop
-- early at the limit.
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D tenants=100 -D nodes=2000 -U rg_app -f q5_bare.sql
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
WITH RECURSIVE walk (id, depth) AS (
    SELECT n.id, 0 FROM app.nodes n WHERE n.id = md5('node:' || :t || ':' || :n)::uuid
  UNION
    SELECT x.other, w.depth + 1
    FROM walk w
    CROSS JOIN LATERAL (
        SELECT e.target_id AS other FROM app.edges e WHERE e.source_id = w.id
        UNION ALL
        SELECT e.source_id FROM app.edges e WHERE e.target_id = w.id
    ) x
    WHERE w.depth < :depth
),
nearest AS (
    SELECT w.id, min(w.depth) AS depth FROM walk w GROUP BY w.id ORDER BY 2, 1 LIMIT :lim
)
SELECT 'node' AS kind, v.id, v.depth FROM nearest v
UNION ALL
SELECT 'edge', e.id, NULL
FROM app.edges e
JOIN nearest s ON e.source_id = s.id
JOIN nearest d ON e.target_id = d.id;
COMMIT;
