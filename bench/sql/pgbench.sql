-- A helper of the pgbench scripts (bench/pgbench/), which cannot draw a random word themselves
-- (pgbench variables are numbers): q6.sql searches for bench.search_term(random(1, 20)).
--
-- Run by the superuser after the migrations (idempotent):
--   psql "$ADMIN_URL" -v ON_ERROR_STOP=1 -f bench/sql/pgbench.sql

CREATE SCHEMA IF NOT EXISTS bench AUTHORIZATION rg_owner;
GRANT USAGE ON SCHEMA bench TO rg_app;

SET ROLE rg_owner;

-- The i-th (1-based) of the load driver's search terms (SEARCH_TERMS in bench/src/vocabulary.rs,
-- in that order). IMMUTABLE SQL: inlined and folded to a constant where the statement is planned,
-- like the bound parameter research-graph sends.
CREATE OR REPLACE FUNCTION bench.search_term(i integer) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$
        SELECT (ARRAY['graph', 'attention', 'molecular', 'contrastive', 'diffusion', 'protein',
                      'retrieval', 'benchmark', 'causal', 'spectral', 'clustering', 'equivariant',
                      'quantum', 'reaction', 'knowledge', 'temporal', 'hypergraph', 'expressivity',
                      'subgraph', 'augmentation'])[i]
    $$;

RESET ROLE;

REVOKE EXECUTE ON FUNCTION bench.search_term(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION bench.search_term(integer) TO rg_app;
