-- Papers, sections, the graph, provenance, insights, usage and jobs.
--
-- Every table leads its primary key with tenant_id, every foreign key includes tenant_id (so no
-- row can point into another tenant, even through a bug) and every unique constraint includes
-- tenant_id (so the same DOI or entity key can exist in two tenants and no constraint error
-- reveals another tenant's data). The same shape distributes on Citus by tenant_id.

SET LOCAL ROLE rg_owner;

CREATE TABLE app.papers (
    tenant_id     uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    title         text NOT NULL CHECK (length(title) BETWEEN 1 AND 1000),
    authors       text[] NOT NULL DEFAULT '{}',
    abstract      text,
    doi           text,
    arxiv_id      text,
    year          integer CHECK (year BETWEEN 1000 AND 3000),
    venue         text,
    source_kind   text NOT NULL DEFAULT 'manual'
                  CHECK (source_kind IN ('manual', 'text', 'markdown', 'pdf', 'arxiv')),
    -- SHA-256 of the normalised source: re-ingesting the same paper is a no-op.
    content_hash  text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    search        tsvector GENERATED ALWAYS AS (
                      setweight(to_tsvector('english'::regconfig, coalesce(title, '')), 'A') ||
                      setweight(to_tsvector('english'::regconfig, coalesce(abstract, '')), 'B')
                  ) STORED,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, doi),
    UNIQUE (tenant_id, arxiv_id),
    UNIQUE (tenant_id, content_hash)
);
CREATE INDEX papers_created_idx ON app.papers (tenant_id, created_at, id);
CREATE INDEX papers_search_idx ON app.papers USING gin (tenant_id, search);

CREATE TABLE app.paper_sections (
    tenant_id     uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    paper_id      uuid NOT NULL,
    ordinal       integer NOT NULL CHECK (ordinal >= 0),
    kind          text NOT NULL DEFAULT 'other'
                  CHECK (kind IN ('abstract', 'introduction', 'background', 'methods', 'results',
                                  'discussion', 'conclusion', 'references', 'other')),
    heading       text,
    content       text NOT NULL,
    content_hash  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    search        tsvector GENERATED ALWAYS AS (
                      setweight(to_tsvector('english'::regconfig, coalesce(heading, '')), 'A') ||
                      setweight(to_tsvector('english'::regconfig, content), 'B')
                  ) STORED,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, paper_id, ordinal),
    FOREIGN KEY (tenant_id, paper_id) REFERENCES app.papers (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX paper_sections_search_idx ON app.paper_sections USING gin (tenant_id, search);

CREATE TABLE app.nodes (
    tenant_id     uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    node_type     text NOT NULL
                  CHECK (node_type IN ('Task', 'Method', 'Dataset', 'Metric', 'Material',
                                       'OtherScientificTerm')),
    name          text NOT NULL CHECK (length(name) BETWEEN 1 AND 500),
    -- Normalised name (case, punctuation, plural, acronym expansion): one node per key and type.
    key           text NOT NULL CHECK (length(key) BETWEEN 1 AND 500),
    aliases       text[] NOT NULL DEFAULT '{}',
    description   text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, node_type, key)
);
CREATE INDEX nodes_type_name_idx ON app.nodes (tenant_id, node_type, name, id);
CREATE INDEX nodes_created_idx ON app.nodes (tenant_id, created_at, id);
CREATE INDEX nodes_name_trgm_idx ON app.nodes USING gin (tenant_id, name gin_trgm_ops);

CREATE TABLE app.edges (
    tenant_id      uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    source_id      uuid NOT NULL,
    target_id      uuid NOT NULL,
    relation_type  text NOT NULL
                   CHECK (relation_type IN ('USED-FOR', 'EVALUATE-FOR', 'FEATURE-OF', 'PART-OF',
                                            'HYPONYM-OF', 'COMPARE', 'CONJUNCTION')),
    description    text,
    confidence     double precision NOT NULL DEFAULT 1 CHECK (confidence BETWEEN 0 AND 1),
    -- Grows with independent evidence.
    weight         double precision NOT NULL DEFAULT 1 CHECK (weight >= 0),
    review_status  text NOT NULL DEFAULT 'proposed'
                   CHECK (review_status IN ('pending', 'proposed', 'approved', 'rejected')),
    reviewed_by    uuid,
    reviewed_at    timestamptz,
    review_note    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, source_id, target_id, relation_type),
    FOREIGN KEY (tenant_id, source_id) REFERENCES app.nodes (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, target_id) REFERENCES app.nodes (tenant_id, id) ON DELETE CASCADE,
    CHECK (source_id <> target_id)
);
-- Explorers page a node's edges in creation order: these serve "first N" from the index alone.
CREATE INDEX edges_source_idx ON app.edges (tenant_id, source_id, created_at, id);
CREATE INDEX edges_target_idx ON app.edges (tenant_id, target_id, created_at, id);
CREATE INDEX edges_created_idx ON app.edges (tenant_id, created_at, id);

CREATE TABLE app.jobs (
    tenant_id         uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    kind              text NOT NULL CHECK (kind IN ('process_paper', 'reasoning')),
    paper_id          uuid,
    payload           jsonb NOT NULL DEFAULT '{}',
    status            text NOT NULL DEFAULT 'queued'
                      CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'dead',
                                        'cancelled')),
    stage             text,
    attempts          integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts      integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_after         timestamptz NOT NULL DEFAULT now(),
    lease_owner       text,
    lease_expires_at  timestamptz,
    last_error        text,
    progress          jsonb NOT NULL DEFAULT '{}',
    created_by        uuid,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, paper_id) REFERENCES app.papers (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX jobs_created_idx ON app.jobs (tenant_id, created_at, id);
-- Workers claim across tenants (through a SECURITY DEFINER function) in run_after order.
CREATE INDEX jobs_runnable_idx ON app.jobs (run_after) WHERE status = 'queued';

CREATE TABLE app.entity_mentions (
    tenant_id       uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    node_id         uuid NOT NULL,
    section_id      uuid NOT NULL,
    -- The evidence: an exact quote of the section, at these character offsets.
    quote           text NOT NULL,
    start_offset    integer NOT NULL CHECK (start_offset >= 0),
    end_offset      integer NOT NULL,
    agent           text NOT NULL,
    model           text NOT NULL,
    prompt_version  text NOT NULL,
    job_id          uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, node_id) REFERENCES app.nodes (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, section_id) REFERENCES app.paper_sections (tenant_id, id)
        ON DELETE CASCADE,
    CHECK (end_offset >= start_offset)
);
CREATE INDEX entity_mentions_node_idx ON app.entity_mentions (tenant_id, node_id, created_at, id);
CREATE INDEX entity_mentions_section_idx ON app.entity_mentions (tenant_id, section_id);

CREATE TABLE app.inferred_insights (
    tenant_id       uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    insight_type    text NOT NULL CHECK (insight_type IN ('conflict', 'gap', 'transitive', 'other')),
    statement       text NOT NULL,
    rationale       text,
    confidence      double precision NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    status          text NOT NULL DEFAULT 'proposed'
                    CHECK (status IN ('proposed', 'accepted', 'rejected')),
    model           text,
    prompt_version  text,
    job_id          uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX inferred_insights_created_idx ON app.inferred_insights (tenant_id, created_at, id);

-- The nodes and edges an insight rests on (arrays of ids could not carry foreign keys).
CREATE TABLE app.insight_nodes (
    tenant_id   uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    insight_id  uuid NOT NULL,
    node_id     uuid NOT NULL,
    PRIMARY KEY (tenant_id, insight_id, node_id),
    FOREIGN KEY (tenant_id, insight_id) REFERENCES app.inferred_insights (tenant_id, id)
        ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, node_id) REFERENCES app.nodes (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX insight_nodes_node_idx ON app.insight_nodes (tenant_id, node_id);

CREATE TABLE app.insight_edges (
    tenant_id   uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    insight_id  uuid NOT NULL,
    edge_id     uuid NOT NULL,
    PRIMARY KEY (tenant_id, insight_id, edge_id),
    FOREIGN KEY (tenant_id, insight_id) REFERENCES app.inferred_insights (tenant_id, id)
        ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, edge_id) REFERENCES app.edges (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX insight_edges_edge_idx ON app.insight_edges (tenant_id, edge_id);

-- One row per LLM call. Append-only for rg_app; job_id carries no foreign key on purpose, so
-- that purging old jobs never rewrites the usage record.
CREATE TABLE app.usage_events (
    tenant_id           uuid NOT NULL REFERENCES app.tenants (id) ON DELETE CASCADE,
    id                  uuid NOT NULL DEFAULT gen_random_uuid(),
    occurred_at         timestamptz NOT NULL DEFAULT now(),
    job_id              uuid,
    stage               text NOT NULL,
    agent               text NOT NULL,
    provider            text NOT NULL,
    model               text NOT NULL,
    input_tokens        bigint NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    cached_tokens       bigint NOT NULL DEFAULT 0 CHECK (cached_tokens >= 0),
    output_tokens       bigint NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    thinking_tokens     bigint NOT NULL DEFAULT 0 CHECK (thinking_tokens >= 0),
    base_cost_micros    bigint NOT NULL DEFAULT 0 CHECK (base_cost_micros >= 0),
    billed_cost_micros  bigint NOT NULL DEFAULT 0 CHECK (billed_cost_micros >= 0),
    execution_mode      text NOT NULL CHECK (execution_mode IN ('hosted', 'byo_key')),
    latency_ms          integer CHECK (latency_ms >= 0),
    outcome             text NOT NULL DEFAULT 'ok' CHECK (outcome IN ('ok', 'error', 'blocked')),
    error_kind          text,
    idempotency_key     text NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX usage_events_time_idx ON app.usage_events (tenant_id, occurred_at, id);

RESET ROLE;
