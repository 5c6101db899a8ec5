-- The pipeline: per-section extraction records, edge evidence, merge candidates, and the job
-- queue's claim function and progress notifications.

SET LOCAL ROLE rg_owner;

-- One row per section, extractor (model and prompt version): the stage's idempotency record and
-- the cache of its validated output. A section is persisted in the same transaction that writes
-- this row, so a crash leaves a section either wholly persisted or untouched.
CREATE TABLE app.section_extractions (
    tenant_id       uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    section_id      uuid NOT NULL,
    -- The section's content hash when it was extracted (a changed section is extracted again).
    content_hash    text NOT NULL,
    agent           text NOT NULL,
    model           text NOT NULL,
    prompt_version  text NOT NULL,
    status          text NOT NULL CHECK (status IN ('done', 'failed')),
    -- Why the section failed (schema still invalid after the repair retry, a provider error).
    reason          text,
    entities        integer NOT NULL DEFAULT 0,
    relations       integer NOT NULL DEFAULT 0,
    mentions        integer NOT NULL DEFAULT 0,
    -- Items dropped by validation, by reason: {"quote_not_found": 2, "bad_type": 1, …}.
    dropped         jsonb NOT NULL DEFAULT '{}',
    -- The validated output, so that a re-run persists again without calling the model.
    output          jsonb,
    job_id          uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, section_id, model, prompt_version),
    FOREIGN KEY (tenant_id, section_id) REFERENCES app.paper_sections (tenant_id, id)
        ON DELETE CASCADE
);

-- The quotes a relation rests on: one row per edge and quote. The edge's weight counts the
-- distinct papers among them (independent evidence).
CREATE TABLE app.edge_evidence (
    tenant_id       uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    edge_id         uuid NOT NULL,
    section_id      uuid NOT NULL,
    quote           text NOT NULL,
    start_offset    integer NOT NULL CHECK (start_offset >= 0),
    end_offset      integer NOT NULL,
    confidence      double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    agent           text NOT NULL,
    model           text NOT NULL,
    prompt_version  text NOT NULL,
    job_id          uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, edge_id, section_id, start_offset, end_offset),
    FOREIGN KEY (tenant_id, edge_id) REFERENCES app.edges (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, section_id) REFERENCES app.paper_sections (tenant_id, id)
        ON DELETE CASCADE,
    CHECK (end_offset >= start_offset)
);
CREATE INDEX edge_evidence_section_idx ON app.edge_evidence (tenant_id, section_id);

-- A mention is one quote of one node in one section: a re-run finds it instead of adding it.
CREATE UNIQUE INDEX entity_mentions_quote_key
    ON app.entity_mentions (tenant_id, node_id, section_id, start_offset, end_offset);

-- Near-duplicate nodes found by entity resolution, for a person to merge or dismiss. Pairs are
-- stored once (node_a < node_b) and never merged automatically.
CREATE TABLE app.merge_candidates (
    tenant_id    uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL DEFAULT gen_random_uuid(),
    node_a       uuid NOT NULL,
    node_b       uuid NOT NULL,
    score        double precision NOT NULL CHECK (score BETWEEN 0 AND 1),
    reason       text NOT NULL,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'merged', 'dismissed')),
    job_id       uuid,
    reviewed_by  uuid,
    reviewed_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, node_a, node_b),
    FOREIGN KEY (tenant_id, node_a) REFERENCES app.nodes (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, node_b) REFERENCES app.nodes (tenant_id, id) ON DELETE CASCADE,
    CHECK (node_a < node_b)
);
CREATE INDEX merge_candidates_created_idx ON app.merge_candidates (tenant_id, created_at, id);

-- A reasoning run proposes an insight once: its fingerprint (type and supporting ids) is unique.
ALTER TABLE app.inferred_insights ADD COLUMN fingerprint text;
CREATE UNIQUE INDEX inferred_insights_fingerprint_key
    ON app.inferred_insights (tenant_id, fingerprint);

-- Jobs: who may see and cancel them is RLS as usual; a running job's lease is what workers
-- reclaim when it expires.
CREATE INDEX jobs_lease_idx ON app.jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_status_idx ON app.jobs (tenant_id, status, created_at, id);
-- At most one queued or running job per paper and kind.
CREATE UNIQUE INDEX jobs_active_paper_key ON app.jobs (tenant_id, paper_id, kind)
    WHERE status IN ('queued', 'running') AND paper_id IS NOT NULL;

DO $$
DECLARE
    t record;
    isolation text := '(tenant_id = (SELECT app.tenant_id()) AND (SELECT app.member_role()) IS NOT NULL)';
BEGIN
    FOR t IN
        SELECT * FROM (VALUES
            ('section_extractions', '{owner,member}'),
            ('edge_evidence',       '{owner,member}'),
            ('merge_candidates',    '{owner,member}')
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

-- Workers claim across tenants through app.claim_job, which reads and updates jobs as
-- rg_definer: it may see every job's scheduling columns, and nothing else of any tenant.
CREATE POLICY definer_read ON app.jobs FOR SELECT TO rg_definer USING (true);
CREATE POLICY definer_update ON app.jobs FOR UPDATE TO rg_definer USING (true) WITH CHECK (true);

-- Every change of a job's state or progress is announced on channel rg_jobs with the tenant and
-- job ids and the job's state only (listeners read the job itself through a tenant session,
-- under RLS; workers wake only for queued jobs).
CREATE FUNCTION app.notify_job() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = ''
    AS $$
    BEGIN
        PERFORM pg_notify('rg_jobs',
            NEW.tenant_id::text || ' ' || NEW.id::text || ' ' || NEW.status);
        RETURN NULL;
    END
    $$;

CREATE TRIGGER notify_job AFTER INSERT OR UPDATE ON app.jobs
    FOR EACH ROW EXECUTE FUNCTION app.notify_job();

RESET ROLE;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    app.section_extractions, app.edge_evidence, app.merge_candidates TO rg_app;
GRANT SELECT (tenant_id, id, kind, status, attempts, max_attempts, run_after, lease_owner,
              lease_expires_at, created_by, last_error, finished_at, updated_at),
      UPDATE (status, attempts, run_after, lease_owner, lease_expires_at, last_error,
              finished_at, updated_at)
    ON app.jobs TO rg_definer;
GRANT EXECUTE ON FUNCTION app.notify_job() TO rg_app, rg_definer;

SET LOCAL ROLE rg_definer;

-- Claims the next runnable job for `worker` with a lease of `lease`: first, running jobs whose
-- lease expired go back to the queue (or to the dead letter once their attempts are used up),
-- then the oldest queued job due now is taken with FOR UPDATE SKIP LOCKED, so concurrent workers
-- never claim the same job. Returns the job, its tenant and the member it runs for.
CREATE FUNCTION app.claim_job(worker text, lease interval)
    RETURNS TABLE (tenant_id uuid, job_id uuid, user_id uuid, kind text, attempt integer)
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = ''
    AS $$
    BEGIN
        IF worker IS NULL OR length(worker) = 0 OR lease IS NULL OR lease <= interval '0' THEN
            RAISE EXCEPTION 'claim_job needs a worker name and a positive lease'
                USING ERRCODE = '22023';
        END IF;
        UPDATE app.jobs j
           SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
               last_error = 'the worker ' || coalesce(j.lease_owner, '?')
                            || ' stopped renewing its lease',
               finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
               lease_owner = NULL, lease_expires_at = NULL, run_after = now(), updated_at = now()
         WHERE j.status = 'running' AND j.lease_expires_at < now();
        RETURN QUERY
        WITH next AS (
            SELECT q.tenant_id, q.id FROM app.jobs q
             WHERE q.status = 'queued' AND q.run_after <= now()
             ORDER BY q.run_after
             LIMIT 1
             FOR UPDATE SKIP LOCKED
        )
        UPDATE app.jobs j
           SET status = 'running', attempts = j.attempts + 1, lease_owner = worker,
               lease_expires_at = now() + lease, updated_at = now()
          FROM next
         WHERE j.tenant_id = next.tenant_id AND j.id = next.id
        RETURNING j.tenant_id, j.id, j.created_by, j.kind, j.attempts;
    END
    $$;

-- Ends a claimed job as failed when the member it runs for may no longer write to the tenant
-- (removed, or made a viewer): the worker cannot record the end through that member's tenant
-- session, and the job would otherwise cycle through lease expiry to the dead letter. Only the
-- worker holding the lease can end it; nothing of the tenant is read or returned.
CREATE FUNCTION app.fail_orphaned_job(job uuid, worker text, message text)
    RETURNS boolean
    LANGUAGE sql SECURITY DEFINER
    SET search_path = ''
    AS $$
        WITH ended AS (
            UPDATE app.jobs j
               SET status = 'failed', last_error = message, finished_at = now(),
                   updated_at = now(), lease_owner = NULL, lease_expires_at = NULL
             WHERE j.id = job AND j.status = 'running' AND j.lease_owner = worker
            RETURNING 1)
        SELECT count(*) = 1 FROM ended
    $$;

RESET ROLE;
REVOKE EXECUTE ON FUNCTION app.claim_job(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.claim_job(text, interval) TO rg_app;
REVOKE EXECUTE ON FUNCTION app.fail_orphaned_job(uuid, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.fail_orphaned_job(uuid, text, text) TO rg_app;
