-- Usage metering: daily rollups maintained as events arrive, and cost reservations for hard
-- limits.

SET LOCAL ROLE rg_owner;

-- Whether members (not only owners) may see the tenant's usage through the API.
ALTER TABLE app.tenant_settings
    ADD COLUMN usage_visible_to_members boolean NOT NULL DEFAULT false;

-- One row per tenant, UTC day and breakdown key: what usage summaries and limit checks read, so
-- they cost a few rows per day instead of a scan of every event. Written only by the trigger
-- below (rg_app may read it, never write it), in the same transaction as the event.
CREATE TABLE app.usage_daily (
    tenant_id           uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    day                 date NOT NULL,
    stage               text NOT NULL,
    model               text NOT NULL,
    agent               text NOT NULL,
    provider            text NOT NULL,
    execution_mode      text NOT NULL,
    events              bigint NOT NULL DEFAULT 0,
    errors              bigint NOT NULL DEFAULT 0,
    input_tokens        bigint NOT NULL DEFAULT 0,
    cached_tokens       bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    thinking_tokens     bigint NOT NULL DEFAULT 0,
    base_cost_micros    bigint NOT NULL DEFAULT 0,
    billed_cost_micros  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day, stage, model, agent, provider, execution_mode)
);

-- Estimated costs of model calls in flight under a hard limit: counted against the limit until
-- the call's usage event replaces them (or they expire, if a process died mid-call).
CREATE TABLE app.usage_reservations (
    tenant_id     uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    cost_micros   bigint NOT NULL CHECK (cost_micros >= 0),
    tokens        bigint NOT NULL CHECK (tokens >= 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX usage_reservations_expiry_idx ON app.usage_reservations (tenant_id, expires_at);

ALTER TABLE app.usage_daily ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.usage_daily FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.usage_daily AS PERMISSIVE FOR SELECT TO rg_app
    USING (tenant_id = (SELECT app.tenant_id()) AND (SELECT app.member_role()) IS NOT NULL);
CREATE POLICY definer_read ON app.usage_daily FOR SELECT TO rg_definer USING (true);
CREATE POLICY definer_insert ON app.usage_daily FOR INSERT TO rg_definer WITH CHECK (true);
CREATE POLICY definer_update ON app.usage_daily FOR UPDATE TO rg_definer
    USING (true) WITH CHECK (true);

ALTER TABLE app.usage_reservations ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.usage_reservations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON app.usage_reservations AS PERMISSIVE FOR ALL TO rg_app
    USING (tenant_id = (SELECT app.tenant_id()) AND (SELECT app.member_role()) IS NOT NULL)
    WITH CHECK (tenant_id = (SELECT app.tenant_id()) AND (SELECT app.member_role()) IS NOT NULL);
CREATE POLICY writers_insert ON app.usage_reservations AS RESTRICTIVE FOR INSERT TO rg_app
    WITH CHECK ((SELECT app.member_role()) = ANY ('{owner,member}'::text[]));
CREATE POLICY writers_update ON app.usage_reservations AS RESTRICTIVE FOR UPDATE TO rg_app
    USING ((SELECT app.member_role()) = ANY ('{owner,member}'::text[]))
    WITH CHECK ((SELECT app.member_role()) = ANY ('{owner,member}'::text[]));
CREATE POLICY writers_delete ON app.usage_reservations AS RESTRICTIVE FOR DELETE TO rg_app
    USING ((SELECT app.member_role()) = ANY ('{owner,member}'::text[]));

RESET ROLE;
GRANT SELECT ON app.usage_daily TO rg_app;
GRANT SELECT, INSERT, UPDATE ON app.usage_daily TO rg_definer;
GRANT SELECT, INSERT, UPDATE, DELETE ON app.usage_reservations TO rg_app;
SET LOCAL ROLE rg_definer;

-- Adds the events of each INSERT statement to their days' rollup rows: one upsert per rollup
-- key and statement (a transition table), not one per event, so a batch of events touching the
-- same key updates its row once. SECURITY DEFINER so that the application role, which may only
-- insert events, cannot write rollups directly.
CREATE FUNCTION app.roll_up_usage() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = ''
    AS $$
    BEGIN
        INSERT INTO app.usage_daily AS d (tenant_id, day, stage, model, agent, provider,
            execution_mode, events, errors, input_tokens, cached_tokens, output_tokens,
            thinking_tokens, base_cost_micros, billed_cost_micros)
        SELECT n.tenant_id, (n.occurred_at AT TIME ZONE 'UTC')::date, n.stage, n.model, n.agent,
               n.provider, n.execution_mode, count(*), count(*) FILTER (WHERE n.outcome <> 'ok'),
               sum(n.input_tokens), sum(n.cached_tokens), sum(n.output_tokens),
               sum(n.thinking_tokens), sum(n.base_cost_micros), sum(n.billed_cost_micros)
        FROM new_events n
        GROUP BY 1, 2, 3, 4, 5, 6, 7
        ON CONFLICT (tenant_id, day, stage, model, agent, provider, execution_mode) DO UPDATE SET
            events = d.events + EXCLUDED.events,
            errors = d.errors + EXCLUDED.errors,
            input_tokens = d.input_tokens + EXCLUDED.input_tokens,
            cached_tokens = d.cached_tokens + EXCLUDED.cached_tokens,
            output_tokens = d.output_tokens + EXCLUDED.output_tokens,
            thinking_tokens = d.thinking_tokens + EXCLUDED.thinking_tokens,
            base_cost_micros = d.base_cost_micros + EXCLUDED.base_cost_micros,
            billed_cost_micros = d.billed_cost_micros + EXCLUDED.billed_cost_micros;
        RETURN NULL;
    END
    $$;

RESET ROLE;
REVOKE EXECUTE ON FUNCTION app.roll_up_usage() FROM PUBLIC;

CREATE TRIGGER roll_up_usage AFTER INSERT ON app.usage_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION app.roll_up_usage();
