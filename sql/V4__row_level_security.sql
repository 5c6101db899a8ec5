-- Row-level security: the only thing that keeps tenants apart.
--
-- Every policy wraps its function calls in a sub-select, so Postgres evaluates them once per
-- query (an InitPlan), not once per row. Without a tenant and a member user set, every policy
-- is false: zero rows, never an error page of data.

SET LOCAL ROLE rg_owner;

DO $$
DECLARE
    t record;
    isolation text := '(tenant_id = (SELECT app.tenant_id()) AND (SELECT app.member_role()) IS NOT NULL)';
BEGIN
    -- writers: the roles that may insert, update and delete rows of the table.
    FOR t IN
        SELECT * FROM (VALUES
            ('tenant_users',      '{owner}'),
            ('tenant_settings',   '{owner}'),
            ('papers',            '{owner,member}'),
            ('paper_sections',    '{owner,member}'),
            ('nodes',             '{owner,member}'),
            ('edges',             '{owner,member}'),
            ('jobs',              '{owner,member}'),
            ('entity_mentions',   '{owner,member}'),
            ('inferred_insights', '{owner,member}'),
            ('insight_nodes',     '{owner,member}'),
            ('insight_edges',     '{owner,member}'),
            ('usage_events',      '{owner,member}')
        ) AS v (tbl, writers)
    LOOP
        EXECUTE format('ALTER TABLE app.%I ENABLE ROW LEVEL SECURITY', t.tbl);
        EXECUTE format('ALTER TABLE app.%I FORCE ROW LEVEL SECURITY', t.tbl);
        EXECUTE format('CREATE POLICY tenant_isolation ON app.%I AS PERMISSIVE FOR ALL TO rg_app '
                       'USING %s WITH CHECK %s', t.tbl, isolation, isolation);
        EXECUTE format('CREATE POLICY writers_insert ON app.%I AS RESTRICTIVE FOR INSERT TO rg_app '
                       'WITH CHECK ((SELECT app.member_role()) = ANY (%L::text[]))',
                       t.tbl, t.writers);
        EXECUTE format('CREATE POLICY writers_update ON app.%I AS RESTRICTIVE FOR UPDATE TO rg_app '
                       'USING ((SELECT app.member_role()) = ANY (%L::text[])) '
                       'WITH CHECK ((SELECT app.member_role()) = ANY (%L::text[]))',
                       t.tbl, t.writers, t.writers);
        EXECUTE format('CREATE POLICY writers_delete ON app.%I AS RESTRICTIVE FOR DELETE TO rg_app '
                       'USING ((SELECT app.member_role()) = ANY (%L::text[]))', t.tbl, t.writers);
    END LOOP;
END
$$;

-- tenants is keyed by id rather than tenant_id; rows are created only through
-- app.create_tenant(), renamed or deleted only by owners.
ALTER TABLE app.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.tenants AS PERMISSIVE FOR ALL TO rg_app
    USING (id = (SELECT app.tenant_id()) AND (SELECT app.member_role()) IS NOT NULL)
    WITH CHECK (id = (SELECT app.tenant_id()) AND (SELECT app.member_role()) IS NOT NULL);
CREATE POLICY writers_update ON app.tenants AS RESTRICTIVE FOR UPDATE TO rg_app
    USING ((SELECT app.member_role()) = 'owner')
    WITH CHECK ((SELECT app.member_role()) = 'owner');
CREATE POLICY writers_delete ON app.tenants AS RESTRICTIVE FOR DELETE TO rg_app
    USING ((SELECT app.member_role()) = 'owner');

-- What the SECURITY DEFINER functions (owned by rg_definer) may read and write.
CREATE POLICY definer_read ON app.tenants FOR SELECT TO rg_definer USING (true);
CREATE POLICY definer_insert ON app.tenants FOR INSERT TO rg_definer WITH CHECK (true);
CREATE POLICY definer_read ON app.tenant_users FOR SELECT TO rg_definer USING (true);
CREATE POLICY definer_insert ON app.tenant_users FOR INSERT TO rg_definer WITH CHECK (true);
CREATE POLICY definer_read ON app.tenant_settings FOR SELECT TO rg_definer USING (true);
CREATE POLICY definer_insert ON app.tenant_settings FOR INSERT TO rg_definer WITH CHECK (true);

RESET ROLE;

GRANT SELECT, UPDATE, DELETE ON app.tenants TO rg_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON app.tenant_users TO rg_app;
GRANT SELECT, UPDATE ON app.tenant_settings TO rg_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    app.papers, app.paper_sections, app.nodes, app.edges, app.jobs, app.entity_mentions,
    app.inferred_insights, app.insight_nodes, app.insight_edges
    TO rg_app;
-- Usage events are an append-only ledger for the application.
GRANT SELECT, INSERT ON app.usage_events TO rg_app;
