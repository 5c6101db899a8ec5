-- Roles, the application schema and the tenant-context helpers.
--
-- Runs as the privileged migration login (a superuser, or a role with CREATEROLE that owns the
-- database). Roles are cluster-wide, so every statement here tolerates a second database in the
-- same cluster having created them already.

DO $$
BEGIN
    -- Owns every table, view and plain function. Nobody logs in as it.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rg_owner') THEN
        CREATE ROLE rg_owner NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
    -- Owns the few SECURITY DEFINER functions; may read only what RLS policies written for it
    -- allow. Never granted to rg_app.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rg_definer') THEN
        CREATE ROLE rg_definer NOLOGIN NOSUPERUSER NOBYPASSRLS;
    END IF;
    -- The role the server connects as: owns nothing, bypasses nothing.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rg_app') THEN
        CREATE ROLE rg_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
    END IF;
    -- A non-superuser migration login must be able to SET ROLE to the owners.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE format('GRANT rg_owner, rg_definer TO %I', current_user);
    END IF;
END
$$;

-- Trusted extensions: trigram similarity for entity names, and btree operator classes inside GIN
-- so that search indexes lead with tenant_id.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public;

CREATE SCHEMA app AUTHORIZATION rg_owner;
GRANT USAGE ON SCHEMA app TO rg_app, rg_definer;
-- ALTER FUNCTION ... OWNER TO rg_definer needs the new owner to have CREATE on the schema.
GRANT CREATE ON SCHEMA app TO rg_definer;

-- Functions of our roles are not executable by PUBLIC unless granted explicitly. (This has to be
-- the global form: a per-schema default can only add privileges, never remove PUBLIC's.)
ALTER DEFAULT PRIVILEGES FOR ROLE rg_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE rg_definer REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

SET LOCAL ROLE rg_owner;

-- The tenant of the current transaction, or NULL when none is set. A setting that was used in an
-- earlier transaction of the same connection reads back as '' (not NULL), hence the NULLIF.
CREATE FUNCTION app.tenant_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;

-- The user of the current transaction, or NULL.
CREATE FUNCTION app.user_id() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.user_id', true), '')::uuid $$;

GRANT EXECUTE ON FUNCTION app.tenant_id(), app.user_id() TO rg_app, rg_definer;

RESET ROLE;
