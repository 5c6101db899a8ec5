-- Q6, one research-graph request: search(query: $term, first: 10) { … }. As rg_app (row-level
-- security), in research-graph's transaction: the search statement, then the papers, sections and
-- entities it hit through the loaders, which run concurrently and so go out pipelined
-- (src/search.rs; whatever the selection, the resolver loads all three kinds). The term is one of
-- the load driver's search terms, bench.search_term(w) (bench/sql/pgbench.sql, run it once).
--   pgbench -n -M prepared -c 32 -j 2 -T 10 -D tenants=100 -U rg_app -f q6.sql
\set t random(0, :tenants - 1)
\set w random(1, 20)
-- The page size asked for plus one (hasNextPage), a bound parameter as in the server.
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
-- 1. The search. The server's statement is the inner one, verbatim but for its parameter $1 (the
--    term), which is bench.search_term(:w) here; the wrapper folds its rows into one (\gset) with
--    the ids the server loads next. count(h) reads whole rows, so that the planner keeps every
--    column the server fetches (the snippets, ts_headline, would otherwise be dropped).
SELECT coalesce(array_agg(h.id) FILTER (WHERE h.kind = 'paper'), '{}') AS paper_ids,
       count(*) FILTER (WHERE h.kind = 'paper') AS paper_n,
       coalesce(array_agg(h.id) FILTER (WHERE h.kind = 'section'), '{}') AS section_ids,
       count(*) FILTER (WHERE h.kind = 'section') AS section_n,
       coalesce(array_agg(h.id) FILTER (WHERE h.kind = 'node'), '{}') AS node_ids,
       count(*) FILTER (WHERE h.kind = 'node') AS node_n,
       count(h) AS server_rows
FROM (
SELECT h.kind, h.id, h.score, (h.score)::text, CASE h.kind WHEN 'paper' THEN ts_headline('english', coalesce(p.abstract, p.title), websearch_to_tsquery('english', bench.search_term(:w)), 'StartSel=<mark>, StopSel=</mark>, MaxFragments=2, MaxWords=25, MinWords=8') WHEN 'section' THEN ts_headline('english', s.content, websearch_to_tsquery('english', bench.search_term(:w)), 'StartSel=<mark>, StopSel=</mark>, MaxFragments=2, MaxWords=25, MinWords=8') ELSE n.name END FROM (SELECT * FROM (SELECT 'paper' AS kind, p.id, ts_rank_cd(p.search, websearch_to_tsquery('english', bench.search_term(:w)), 32)::float8 AS score FROM app.papers p WHERE p.search @@ websearch_to_tsquery('english', bench.search_term(:w)) UNION ALL SELECT 'section' AS kind, s.id, ts_rank_cd(s.search, websearch_to_tsquery('english', bench.search_term(:w)), 32)::float8 AS score FROM app.paper_sections s WHERE s.search @@ websearch_to_tsquery('english', bench.search_term(:w)) UNION ALL SELECT 'node' AS kind, n.id, similarity(n.name, bench.search_term(:w))::float8 AS score FROM app.nodes n WHERE n.name % bench.search_term(:w)) h WHERE true ORDER BY h.score DESC, h.id DESC LIMIT :page) h LEFT JOIN app.papers p ON h.kind = 'paper' AND p.id = h.id LEFT JOIN app.paper_sections s ON h.kind = 'section' AND s.id = h.id LEFT JOIN app.nodes n ON h.kind = 'node' AND n.id = h.id ORDER BY h.score DESC, h.id DESC
     ) h (kind, id, score, score_text, snippet) \gset
-- 2. The paper, section and node loaders, in one round trip (a loader with no ids runs nothing).
\if :server_rows > 0
\startpipeline
\if :paper_n > 0
SELECT p.id, p.title, p.authors, p.abstract, p.doi, p.arxiv_id, p.year, p.venue, p.source_kind, p.created_at, p.updated_at FROM app.papers p WHERE p.id = ANY(:paper_ids);
\endif
\if :section_n > 0
SELECT s.id, s.paper_id, s.ordinal, s.kind, s.heading, s.content, s.created_at FROM app.paper_sections s WHERE s.id = ANY(:section_ids);
\endif
\if :node_n > 0
SELECT n.id, n.node_type, n.name, n.key, n.aliases, n.description, n.created_at, n.updated_at FROM app.nodes n WHERE n.id = ANY(:node_ids);
\endif
\endpipeline
\endif
COMMIT;
