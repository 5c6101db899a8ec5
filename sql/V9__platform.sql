-- The platform operators' role (hosted part): reads usage of every tenant, and the names of the
-- tenants to label it, and nothing else. A login of its own, never granted to rg_app.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rg_platform') THEN
        CREATE ROLE rg_platform LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
END
$$;

GRANT USAGE ON SCHEMA app TO rg_platform;
GRANT SELECT ON app.usage_daily, app.usage_events TO rg_platform;
GRANT SELECT (id, slug, name) ON app.tenants TO rg_platform;

SET LOCAL ROLE rg_owner;
CREATE POLICY platform_read ON app.usage_daily FOR SELECT TO rg_platform USING (true);
CREATE POLICY platform_read ON app.usage_events FOR SELECT TO rg_platform USING (true);
CREATE POLICY platform_read ON app.tenants FOR SELECT TO rg_platform USING (true);
RESET ROLE;
