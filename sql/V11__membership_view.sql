-- The membership check of every policy becomes one index probe planned with the statement.
--
-- Until now each policy called app.member_role(), a SECURITY DEFINER SQL function with a pinned
-- search_path: Postgres cannot inline such a function, so every statement touching a tenant
-- table parsed and planned its body again and switched search_path twice, about 100 µs of
-- server time per statement (ten times the cost of a primary-key read). The same check is now a
-- security-barrier view owned by rg_definer, which the planner expands into the statement and
-- keeps in prepared plans: an InitPlan reading one row of tenant_users by its primary key.
--
-- app.current_membership shows the caller's own membership in the current tenant (the row of
-- tenant_users for app.tenant_id() and app.user_id()), or nothing: exactly what
-- app.member_role() told, and nothing more. It is the one view of schema app that runs with its
-- owner's rights (the others are security_invoker); its owner, rg_definer, reads tenant_users
-- through the definer_read policy, as the definer functions do, so the policies on tenant_users
-- can use it without recursing into themselves.
--
-- Policies keep their meaning:
--   tenant_id = (SELECT app.tenant_id()) AND (SELECT app.member_role()) IS NOT NULL
-- becomes
--   tenant_id = (SELECT m.tenant_id FROM app.current_membership m)
-- (the membership's tenant is app.tenant_id() when the caller is a member, and NULL, which
-- matches no row, when not), and (SELECT app.member_role()) becomes
-- (SELECT m.role FROM app.current_membership m).

SET LOCAL ROLE rg_definer;

CREATE VIEW app.current_membership WITH (security_barrier = true) AS
    SELECT tu.tenant_id, tu.role
    FROM app.tenant_users tu
    -- Sub-selects, so the settings are read once and the primary key is probed with them
    -- (called per row, they would cost more than the probe whenever the planner scans).
    WHERE tu.tenant_id = (SELECT app.tenant_id()) AND tu.user_id = (SELECT app.user_id());

RESET ROLE;

REVOKE ALL ON app.current_membership FROM PUBLIC;
GRANT SELECT ON app.current_membership TO rg_app;

-- app.member_role() stays, for callers that want the role as a value, as a plain function over
-- the view: it no longer needs to be SECURITY DEFINER.
SET LOCAL ROLE rg_definer;
CREATE OR REPLACE FUNCTION app.member_role() RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT m.role FROM app.current_membership m $$;
RESET ROLE;

-- Rewrites every policy of rg_app from its stored expression, so that names, commands, roles,
-- permissive or restrictive, and the writers of each table stay exactly as they were.
DO $$
DECLARE
    p record;
    old_isolation text := '(%s = ( SELECT app.tenant_id() AS tenant_id)) AND (( SELECT app.member_role() AS member_role) IS NOT NULL)';
    old_role text := '( SELECT app.member_role() AS member_role)';
    new_role text := '( SELECT m.role FROM app.current_membership m)';
    col text;
    qual text;
    check_expr text;
    clauses text;
BEGIN
    FOR p IN
        SELECT pol.polname, pol.polrelid::regclass::text AS tbl,
               pg_get_expr(pol.polqual, pol.polrelid) AS qual,
               pg_get_expr(pol.polwithcheck, pol.polrelid) AS check_expr
        FROM pg_policy pol
        WHERE pol.polrelid::regclass::text LIKE 'app.%'
    LOOP
        qual := p.qual;
        check_expr := p.check_expr;
        -- The tenant column is tenant_id, or id on app.tenants.
        FOREACH col IN ARRAY ARRAY['tenant_id', 'id'] LOOP
            qual := replace(qual, format(old_isolation, col),
                format('%s = ( SELECT m.tenant_id FROM app.current_membership m)', col));
            check_expr := replace(check_expr, format(old_isolation, col),
                format('%s = ( SELECT m.tenant_id FROM app.current_membership m)', col));
        END LOOP;
        qual := replace(qual, old_role, new_role);
        check_expr := replace(check_expr, old_role, new_role);
        IF qual IS DISTINCT FROM p.qual OR check_expr IS DISTINCT FROM p.check_expr THEN
            clauses := '';
            IF qual IS NOT NULL THEN
                clauses := clauses || format(' USING (%s)', qual);
            END IF;
            IF check_expr IS NOT NULL THEN
                clauses := clauses || format(' WITH CHECK (%s)', check_expr);
            END IF;
            EXECUTE format('ALTER POLICY %I ON %s', p.polname, p.tbl) || clauses;
        END IF;
    END LOOP;

    -- Nothing may still call the function, or see a tenant without the membership check.
    IF EXISTS (
        SELECT 1 FROM pg_policy pol
        WHERE pg_get_expr(pol.polqual, pol.polrelid) LIKE '%member_role%'
           OR pg_get_expr(pol.polwithcheck, pol.polrelid) LIKE '%member_role%'
           OR pg_get_expr(pol.polqual, pol.polrelid) LIKE '%app.tenant_id()%'
           OR pg_get_expr(pol.polwithcheck, pol.polrelid) LIKE '%app.tenant_id()%'
    ) THEN
        RAISE EXCEPTION 'a policy was not rewritten';
    END IF;
END
$$;
