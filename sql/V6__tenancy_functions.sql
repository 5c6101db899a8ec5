-- Tenant resolution and management: the user's default tenant, the narrow cross-tenant
-- functions the server calls before a tenant is known, and the rule that a tenant always keeps
-- an owner.

SET LOCAL ROLE rg_owner;

-- Per-user preferences that belong to no tenant. Only the definer functions below read or write
-- it, so rg_app gets no privileges on it at all.
CREATE TABLE app.user_settings (
    user_id            uuid PRIMARY KEY,
    default_tenant_id  uuid REFERENCES app.tenants (id) ON DELETE SET NULL,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE app.user_settings ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.user_settings FORCE ROW LEVEL SECURITY;
CREATE POLICY definer_read ON app.user_settings FOR SELECT TO rg_definer USING (true);
CREATE POLICY definer_insert ON app.user_settings FOR INSERT TO rg_definer WITH CHECK (true);
CREATE POLICY definer_update ON app.user_settings FOR UPDATE TO rg_definer
    USING (true) WITH CHECK (true);

RESET ROLE;
GRANT SELECT, INSERT, UPDATE ON app.user_settings TO rg_definer;
SET LOCAL ROLE rg_definer;

-- The id of the tenant with this slug, only if the calling user is a member of it.
CREATE FUNCTION app.tenant_for_slug(p_slug text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
    AS $$
        SELECT t.id
        FROM app.tenants t
        JOIN app.tenant_users tu ON tu.tenant_id = t.id AND tu.user_id = app.user_id()
        WHERE t.slug = p_slug
    $$;

-- The calling user's default tenant, only while the user is still a member of it.
CREATE FUNCTION app.default_tenant() RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
    AS $$
        SELECT us.default_tenant_id
        FROM app.user_settings us
        JOIN app.tenant_users tu
          ON tu.tenant_id = us.default_tenant_id AND tu.user_id = us.user_id
        WHERE us.user_id = app.user_id()
    $$;

-- The calling user's tenants: the least a tenant switcher needs.
CREATE FUNCTION app.my_tenants()
    RETURNS TABLE (tenant_id uuid, slug text, name text, role text, is_default boolean)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
    AS $$
        SELECT t.id, t.slug, t.name, tu.role,
               coalesce(us.default_tenant_id = t.id, false)
        FROM app.tenant_users tu
        JOIN app.tenants t ON t.id = tu.tenant_id
        LEFT JOIN app.user_settings us ON us.user_id = tu.user_id
        WHERE tu.user_id = app.user_id()
        ORDER BY t.name, t.id
    $$;

-- Makes p_tenant the calling user's default tenant; false when the user is not a member.
CREATE FUNCTION app.set_default_tenant(p_tenant uuid) RETURNS boolean
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = ''
    AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM app.tenant_users
                       WHERE tenant_id = p_tenant AND user_id = app.user_id()) THEN
            RETURN false;
        END IF;
        INSERT INTO app.user_settings (user_id, default_tenant_id)
        VALUES (app.user_id(), p_tenant)
        ON CONFLICT (user_id) DO UPDATE
            SET default_tenant_id = EXCLUDED.default_tenant_id, updated_at = now();
        RETURN true;
    END
    $$;

-- Single-tenant deployments: an authenticated user who is not yet a member of the default
-- tenant joins it with a configured role (never owner).
CREATE FUNCTION app.join_default_tenant(p_role text) RETURNS void
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = ''
    AS $$
    BEGIN
        IF app.user_id() IS NULL OR p_role NOT IN ('member', 'viewer') THEN
            RAISE EXCEPTION 'joining the default tenant needs a user and the role member or viewer'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        INSERT INTO app.tenant_users (tenant_id, user_id, role)
        VALUES ('00000000-0000-0000-0000-000000000000', app.user_id(), p_role)
        ON CONFLICT (tenant_id, user_id) DO NOTHING;
    END
    $$;

-- Refuses to remove or demote a tenant's last owner (SQLSTATE RG001). Serialised per tenant
-- with an advisory lock, so two owners demoting each other at once cannot both succeed. A
-- tenant being deleted (its row already gone) may lose all its members.
CREATE FUNCTION app.keep_an_owner() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = ''
    AS $$
    BEGIN
        IF OLD.role <> 'owner' OR (TG_OP = 'UPDATE' AND NEW.role = 'owner'
                                   AND NEW.tenant_id = OLD.tenant_id) THEN
            RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
        END IF;
        PERFORM pg_advisory_xact_lock(hashtextextended(OLD.tenant_id::text, 7283));
        IF EXISTS (SELECT 1 FROM app.tenants WHERE id = OLD.tenant_id)
           AND NOT EXISTS (SELECT 1 FROM app.tenant_users
                           WHERE tenant_id = OLD.tenant_id AND role = 'owner'
                             AND user_id <> OLD.user_id) THEN
            RAISE EXCEPTION 'a tenant must keep at least one owner' USING ERRCODE = 'RG001';
        END IF;
        RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    END
    $$;

-- create_tenant also makes the new tenant the creator's default when they have none.
CREATE OR REPLACE FUNCTION app.create_tenant(p_name text, p_slug text) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = ''
    AS $$
    DECLARE
        v_user uuid := app.user_id();
        v_id   uuid := gen_random_uuid();
    BEGIN
        IF v_user IS NULL THEN
            RAISE EXCEPTION 'creating a tenant needs an authenticated user'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        INSERT INTO app.tenants (id, slug, name) VALUES (v_id, p_slug, p_name);
        INSERT INTO app.tenant_users (tenant_id, user_id, role) VALUES (v_id, v_user, 'owner');
        INSERT INTO app.tenant_settings (tenant_id) VALUES (v_id);
        INSERT INTO app.user_settings AS us (user_id, default_tenant_id) VALUES (v_user, v_id)
        ON CONFLICT (user_id) DO UPDATE
            SET default_tenant_id = coalesce(us.default_tenant_id, EXCLUDED.default_tenant_id);
        RETURN v_id;
    END
    $$;

RESET ROLE;

CREATE TRIGGER keep_an_owner BEFORE UPDATE OR DELETE ON app.tenant_users
    FOR EACH ROW EXECUTE FUNCTION app.keep_an_owner();

REVOKE EXECUTE ON FUNCTION
    app.tenant_for_slug(text), app.default_tenant(), app.my_tenants(),
    app.set_default_tenant(uuid), app.join_default_tenant(text), app.keep_an_owner()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    app.tenant_for_slug(text), app.default_tenant(), app.my_tenants(),
    app.set_default_tenant(uuid), app.join_default_tenant(text)
    TO rg_app;
