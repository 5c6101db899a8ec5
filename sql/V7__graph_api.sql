-- Indexes for the orders the GraphQL connections offer, and the neighbourhood walk.
--
-- Every connection is ordered by (column, id) under the tenant prefix, so "first N" reads N index
-- entries rather than sorting a tenant's rows.

SET LOCAL ROLE rg_owner;

CREATE INDEX papers_title_idx ON app.papers (tenant_id, title, id);
CREATE INDEX paper_sections_order_idx ON app.paper_sections (tenant_id, paper_id, ordinal, id);
CREATE INDEX nodes_name_idx ON app.nodes (tenant_id, name, id);
-- Strongest relations first, per node and over the tenant.
CREATE INDEX edges_source_weight_idx ON app.edges (tenant_id, source_id, weight, id);
CREATE INDEX edges_target_weight_idx ON app.edges (tenant_id, target_id, weight, id);
CREATE INDEX edges_confidence_idx ON app.edges (tenant_id, confidence, id);
CREATE INDEX inferred_insights_confidence_idx ON app.inferred_insights (tenant_id, confidence, id);
CREATE INDEX entity_mentions_section_order_idx
    ON app.entity_mentions (tenant_id, section_id, created_at, id);
DROP INDEX app.entity_mentions_section_idx;

-- The nodes within p_depth hops of p_root (either edge direction), breadth first, each once at
-- its smallest depth, at most p_limit of them; and the edges among them. Runs as the caller
-- (SECURITY INVOKER), so row-level security applies to every row it reads. Each level is one
-- pair of index scans over the frontier (edges by source and by target), and nodes already seen
-- are removed with an anti-join, so hubs reached twice are expanded once.
CREATE FUNCTION app.neighborhood(
    p_root uuid,
    p_depth integer,
    p_relation_types text[],
    p_review_statuses text[],
    p_limit integer
) RETURNS TABLE (kind text, id uuid, depth integer)
    LANGUAGE plpgsql STABLE
    AS $$
    DECLARE
        visited   uuid[];
        frontier  uuid[];
        fresh     uuid[];
        room      integer;
        level     integer := 0;
        truncated boolean := false;
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM app.nodes n WHERE n.id = p_root) THEN
            RETURN;
        END IF;
        visited := ARRAY[p_root];
        frontier := ARRAY[p_root];
        kind := 'node'; id := p_root; depth := 0;
        RETURN NEXT;
        WHILE level < p_depth AND cardinality(frontier) > 0 AND NOT truncated LOOP
            level := level + 1;
            room := p_limit - cardinality(visited);
            SELECT coalesce(array_agg(x.other ORDER BY x.other), '{}') INTO fresh
            FROM (
                SELECT DISTINCT other FROM (
                    SELECT e.target_id AS other FROM app.edges e
                    WHERE e.source_id = ANY (frontier)
                      AND (p_relation_types IS NULL OR e.relation_type = ANY (p_relation_types))
                      AND (p_review_statuses IS NULL OR e.review_status = ANY (p_review_statuses))
                    UNION ALL
                    SELECT e.source_id FROM app.edges e
                    WHERE e.target_id = ANY (frontier)
                      AND (p_relation_types IS NULL OR e.relation_type = ANY (p_relation_types))
                      AND (p_review_statuses IS NULL OR e.review_status = ANY (p_review_statuses))
                ) reached
                WHERE NOT EXISTS (SELECT 1 FROM unnest(visited) v (id) WHERE v.id = reached.other)
            ) x;
            IF cardinality(fresh) > room THEN
                fresh := fresh[1:room];
                truncated := true;
            END IF;
            visited := visited || fresh;
            frontier := fresh;
            FOR id IN SELECT unnest(fresh) LOOP
                kind := 'node'; depth := level;
                RETURN NEXT;
            END LOOP;
        END LOOP;
        RETURN QUERY
            SELECT 'edge'::text, e.id, NULL::integer
            FROM app.edges e
            JOIN unnest(visited) s (id) ON e.source_id = s.id
            JOIN unnest(visited) t (id) ON e.target_id = t.id
            WHERE (p_relation_types IS NULL OR e.relation_type = ANY (p_relation_types))
              AND (p_review_statuses IS NULL OR e.review_status = ANY (p_review_statuses));
        IF truncated THEN
            kind := 'truncated'; id := NULL; depth := NULL;
            RETURN NEXT;
        END IF;
    END
    $$;

RESET ROLE;
GRANT EXECUTE ON FUNCTION app.neighborhood(uuid, integer, text[], text[], integer) TO rg_app;
