-- Tenants, their members and their settings; the membership check every policy relies on.

SET LOCAL ROLE rg_owner;

CREATE TABLE app.tenants (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Global routing name for /t/{slug}/graphql: 3 to 63 lowercase letters, digits and dashes,
    -- starting and ending with a letter or digit.
    slug        text NOT NULL UNIQUE
                CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE app.tenant_users (
    tenant_id   uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    role        text NOT NULL CHECK (role IN ('owner', 'member', 'viewer')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, user_id)
);
-- "Which tenants is this user in" (default tenant, myTenants) without a scan.
CREATE INDEX tenant_users_user_idx ON app.tenant_users (user_id, tenant_id);

CREATE TABLE app.tenant_settings (
    tenant_id                  uuid PRIMARY KEY REFERENCES app.tenants (id) ON DELETE CASCADE,
    -- Model per pipeline stage; NULL means the operator's configured default.
    extraction_model           text,
    resolution_model           text,
    reasoning_model            text,
    gleaning_enabled           boolean NOT NULL DEFAULT false,
    execution_mode             text NOT NULL DEFAULT 'hosted'
                               CHECK (execution_mode IN ('hosted', 'byo_key')),
    -- Bring-your-own key: version || key id || nonce || AES-256-GCM-SIV ciphertext, with the
    -- tenant id as associated data. Never returned by the API.
    api_key_provider           text,
    api_key_ciphertext         bytea,
    api_key_last4              text CHECK (length(api_key_last4) <= 4),
    -- Edges below this confidence are kept as 'pending', at or above it as 'proposed'.
    confidence_threshold       double precision NOT NULL DEFAULT 0.6
                               CHECK (confidence_threshold BETWEEN 0 AND 1),
    -- Entity pairs at least this similar become merge candidates.
    similarity_threshold       double precision NOT NULL DEFAULT 0.85
                               CHECK (similarity_threshold BETWEEN 0 AND 1),
    reasoning_max_depth        integer NOT NULL DEFAULT 2 CHECK (reasoning_max_depth BETWEEN 1 AND 6),
    daily_cost_limit_micros    bigint CHECK (daily_cost_limit_micros >= 0),
    monthly_cost_limit_micros  bigint CHECK (monthly_cost_limit_micros >= 0),
    daily_token_limit          bigint CHECK (daily_token_limit >= 0),
    monthly_token_limit        bigint CHECK (monthly_token_limit >= 0),
    limit_mode                 text NOT NULL DEFAULT 'soft' CHECK (limit_mode IN ('soft', 'hard')),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    updated_by                 uuid,
    CHECK ((api_key_ciphertext IS NULL) = (api_key_provider IS NULL))
);

-- The default tenant, for single-tenant deployments.
INSERT INTO app.tenants (id, slug, name)
VALUES ('00000000-0000-0000-0000-000000000000', 'default', 'Default');
INSERT INTO app.tenant_settings (tenant_id) VALUES ('00000000-0000-0000-0000-000000000000');

RESET ROLE;
SET LOCAL ROLE rg_definer;

-- The caller's role in the current tenant, or NULL when the caller is not a member (or no
-- tenant or user is set). Runs as rg_definer so that policies on tenant_users can call it
-- without recursing into themselves.
CREATE FUNCTION app.member_role() RETURNS text
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = ''
    AS $$
        SELECT tu.role
        FROM app.tenant_users tu
        WHERE tu.tenant_id = app.tenant_id() AND tu.user_id = app.user_id()
    $$;

-- Creates a tenant with the calling user (app.user_id()) as its owner and default settings.
-- No tenant context exists yet, so this cannot go through the tenant policies.
CREATE FUNCTION app.create_tenant(p_name text, p_slug text) RETURNS uuid
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
        RETURN v_id;
    END
    $$;

RESET ROLE;

REVOKE EXECUTE ON FUNCTION app.member_role(), app.create_tenant(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.member_role(), app.create_tenant(text, text) TO rg_app;
GRANT SELECT, INSERT ON app.tenants, app.tenant_users, app.tenant_settings TO rg_definer;
