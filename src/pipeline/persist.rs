//! Persistence with provenance: one section's validated extraction becomes nodes, edges,
//! mentions and edge evidence, in the caller's transaction, together with the section's
//! extraction record. Everything is an upsert on a natural key, so persisting the same
//! extraction twice changes nothing:
//!
//! - nodes on (tenant, type, key): a new alias or a missing description is added; a name that
//!   looks like an abbreviation and has no node of its own resolves to the node that has it as
//!   an alias (defined in another paper);
//! - mentions on (node, section, offsets);
//! - edges on (source, target, type): confidence keeps the highest seen; a `pending` edge becomes
//!   `proposed` when new evidence clears the threshold; a reviewed (approved, rejected) edge
//!   keeps its review;
//! - evidence on (edge, section, offsets); an edge's weight is the number of distinct papers
//!   with evidence for it (independent evidence), at least 1.

use serde_json::json;
use uuid::Uuid;

use super::model::{Provenance, SectionExtraction};
use crate::db::{DbError, TenantSession};

/// A section to persist into.
#[derive(Clone, Debug)]
pub struct SectionRef {
    /// The section.
    pub id: Uuid,
    /// Its content hash (recorded with the extraction).
    pub content_hash: String,
}

/// What persisting one section did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    /// The nodes the section's entities resolved to (in entity order).
    pub nodes: Vec<Uuid>,
    /// The edges its relations resolved to.
    pub edges: Vec<Uuid>,
}

const UPSERT_NODES: &str = "\
INSERT INTO app.nodes AS n (tenant_id, node_type, name, key, aliases, description)
SELECT app.tenant_id(), t, nm, k,
       CASE WHEN a = '' THEN '{}'::text[] ELSE string_to_array(a, E'\\x1f') END, d
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS u (t, nm, k, a, d)
ON CONFLICT (tenant_id, node_type, key) DO UPDATE SET
    aliases = ARRAY(SELECT DISTINCT x FROM unnest(n.aliases || EXCLUDED.aliases
                    || CASE WHEN EXCLUDED.name <> n.name THEN ARRAY[EXCLUDED.name]
                            ELSE '{}'::text[] END) AS x ORDER BY x),
    description = coalesce(n.description, EXCLUDED.description),
    updated_at = now()
RETURNING n.id, n.node_type, n.key";

const INSERT_MENTIONS: &str = "\
INSERT INTO app.entity_mentions (tenant_id, node_id, section_id, quote, start_offset, end_offset,
    agent, model, prompt_version, job_id)
SELECT app.tenant_id(), node, $2, q, s, e, $6, $7, $8, $9
FROM unnest($1::uuid[], $3::text[], $4::int[], $5::int[]) AS u (node, q, s, e)
ON CONFLICT (tenant_id, node_id, section_id, start_offset, end_offset) DO NOTHING";

const UPSERT_EDGES: &str = "\
INSERT INTO app.edges AS g (tenant_id, source_id, target_id, relation_type, description,
    confidence, review_status)
SELECT app.tenant_id(), src, dst, rt, d, c, st
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::float8[], $6::text[])
    AS u (src, dst, rt, d, c, st)
ON CONFLICT (tenant_id, source_id, target_id, relation_type) DO UPDATE SET
    confidence = greatest(g.confidence, EXCLUDED.confidence),
    description = coalesce(g.description, EXCLUDED.description),
    review_status = CASE WHEN g.review_status = 'pending' AND EXCLUDED.review_status = 'proposed'
                         THEN 'proposed' ELSE g.review_status END,
    updated_at = now()
RETURNING g.id, g.source_id, g.target_id, g.relation_type";

const INSERT_EVIDENCE: &str = "\
INSERT INTO app.edge_evidence (tenant_id, edge_id, section_id, quote, start_offset, end_offset,
    confidence, agent, model, prompt_version, job_id)
SELECT app.tenant_id(), edge, $2, q, s, e, c, $7, $8, $9, $10
FROM unnest($1::uuid[], $3::text[], $4::int[], $5::int[], $6::float8[]) AS u (edge, q, s, e, c)
ON CONFLICT (tenant_id, edge_id, section_id, start_offset, end_offset) DO NOTHING";

const REWEIGH: &str = "\
UPDATE app.edges g SET weight = greatest(1, (
    SELECT count(DISTINCT s.paper_id) FROM app.edge_evidence ev
    JOIN app.paper_sections s ON s.tenant_id = ev.tenant_id AND s.id = ev.section_id
    WHERE ev.tenant_id = g.tenant_id AND ev.edge_id = g.id))
WHERE g.id = ANY($1)";

const RECORD: &str = "\
INSERT INTO app.section_extractions AS x (tenant_id, section_id, content_hash, agent, model,
    prompt_version, status, reason, entities, relations, mentions, dropped, output, job_id)
VALUES (app.tenant_id(), $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (tenant_id, section_id, model, prompt_version) DO UPDATE SET
    content_hash = EXCLUDED.content_hash, agent = EXCLUDED.agent, status = EXCLUDED.status,
    reason = EXCLUDED.reason, entities = EXCLUDED.entities, relations = EXCLUDED.relations,
    mentions = EXCLUDED.mentions, dropped = EXCLUDED.dropped, output = EXCLUDED.output,
    job_id = EXCLUDED.job_id, updated_at = now()";

/// Finds, for names that look like abbreviations ("MAE", "SGT"), the node of the same type that
/// has the name as an alias, when no node has the name's own key: an abbreviation defined in one
/// paper is the same entity where another paper uses it without a definition.
const ALIAS_OWNERS: &str = "\
SELECT u.i::int, n.key, n.name
FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u (t, nm, k, i)
CROSS JOIN LATERAL (
    SELECT o.key, o.name FROM app.nodes o
    WHERE o.node_type = u.t AND u.nm = ANY(o.aliases)
      AND NOT EXISTS (SELECT 1 FROM app.nodes x WHERE x.node_type = u.t AND x.key = u.k)
    ORDER BY o.created_at, o.id LIMIT 1) n";

/// A name that looks like an abbreviation: one word, at most 12 characters, two capitals.
fn abbreviation_like(name: &str) -> bool {
    !name.contains(char::is_whitespace)
        && name.chars().count() <= 12
        && name.chars().filter(|c| c.is_uppercase()).count() >= 2
}

/// One node to upsert: the entities of the section that resolve to it.
struct NodeRow {
    entity_type: String,
    key: String,
    name: String,
    aliases: Vec<String>,
    description: Option<String>,
}

/// One edge to upsert.
struct EdgeRow {
    source: Uuid,
    target: Uuid,
    relation_type: String,
    description: Option<String>,
    confidence: f64,
    status: &'static str,
}

/// Persists `extraction` of `section` with `provenance` in the session's transaction, and
/// records the section as done.
pub async fn persist_section(
    session: &TenantSession,
    section: &SectionRef,
    extraction: &SectionExtraction,
    provenance: &Provenance,
    job: Option<Uuid>,
) -> Result<Persisted, DbError> {
    let entities = &extraction.entities;
    // Each entity's (type, key, name), abbreviations resolved to the node that owns them.
    let mut resolved: Vec<(String, String, String)> = entities
        .iter()
        .map(|e| (e.entity_type.clone(), e.key.clone(), e.name.clone()))
        .collect();
    let candidates: Vec<usize> = (0..entities.len())
        .filter(|&i| entities[i].aliases.is_empty() && abbreviation_like(&entities[i].name))
        .collect();
    if !candidates.is_empty() {
        let types: Vec<&str> = candidates
            .iter()
            .map(|&i| entities[i].entity_type.as_str())
            .collect();
        let names: Vec<&str> = candidates
            .iter()
            .map(|&i| entities[i].name.as_str())
            .collect();
        let keys: Vec<&str> = candidates
            .iter()
            .map(|&i| entities[i].key.as_str())
            .collect();
        for row in session
            .query(ALIAS_OWNERS, &[&types, &names, &keys])
            .await?
        {
            let i = candidates[row.get::<_, i32>(0) as usize - 1];
            resolved[i].1 = row.get(1);
            resolved[i].2 = row.get(2);
        }
    }

    // One row per (type, key), in a global order, so that two sections persisting at once
    // lock rows in the same order and cannot deadlock.
    let mut rows: Vec<NodeRow> = Vec::new();
    let mut slot_of: Vec<usize> = Vec::with_capacity(entities.len());
    for (e, (entity_type, key, name)) in entities.iter().zip(&resolved) {
        let slot = match rows
            .iter()
            .position(|r| &r.entity_type == entity_type && &r.key == key)
        {
            Some(slot) => slot,
            None => {
                rows.push(NodeRow {
                    entity_type: entity_type.clone(),
                    key: key.clone(),
                    name: name.clone(),
                    aliases: Vec::new(),
                    description: None,
                });
                rows.len() - 1
            }
        };
        let row = &mut rows[slot];
        for alias in e.aliases.iter().chain((&e.name != name).then_some(&e.name)) {
            if alias != &row.name && !alias.contains('\u{1f}') && !row.aliases.contains(alias) {
                row.aliases.push(alias.clone());
            }
        }
        if row.description.is_none() {
            row.description = e.description.clone();
        }
        slot_of.push(slot);
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| {
        (&rows[a].entity_type, &rows[a].key).cmp(&(&rows[b].entity_type, &rows[b].key))
    });
    let mut node_of_slot = vec![Uuid::nil(); rows.len()];
    if !rows.is_empty() {
        let types: Vec<&str> = order
            .iter()
            .map(|&i| rows[i].entity_type.as_str())
            .collect();
        let names: Vec<&str> = order.iter().map(|&i| rows[i].name.as_str()).collect();
        let keys: Vec<&str> = order.iter().map(|&i| rows[i].key.as_str()).collect();
        let aliases: Vec<String> = order
            .iter()
            .map(|&i| rows[i].aliases.join("\u{1f}"))
            .collect();
        let descriptions: Vec<Option<&str>> = order
            .iter()
            .map(|&i| rows[i].description.as_deref())
            .collect();
        let returned = session
            .query(
                UPSERT_NODES,
                &[&types, &names, &keys, &aliases, &descriptions],
            )
            .await?;
        // RETURNING order is not guaranteed: map back by (type, key).
        for (slot, row) in rows.iter().enumerate() {
            node_of_slot[slot] = returned
                .iter()
                .find(|r| r.get::<_, &str>(1) == row.entity_type && r.get::<_, &str>(2) == row.key)
                .map(|r| r.get(0))
                .unwrap_or_default();
        }
    }
    let node = |i: usize| slot_of.get(i).map(|&s| node_of_slot[s]).unwrap_or_default();
    let persisted_nodes: Vec<Uuid> = (0..entities.len()).map(node).collect();

    if !extraction.mentions.is_empty() {
        let nodes: Vec<Uuid> = extraction.mentions.iter().map(|m| node(m.entity)).collect();
        let quotes: Vec<&str> = extraction
            .mentions
            .iter()
            .map(|m| m.quote.text.as_str())
            .collect();
        let starts: Vec<i32> = extraction.mentions.iter().map(|m| m.quote.start).collect();
        let ends: Vec<i32> = extraction.mentions.iter().map(|m| m.quote.end).collect();
        session
            .execute(
                INSERT_MENTIONS,
                &[
                    &nodes,
                    &section.id,
                    &quotes,
                    &starts,
                    &ends,
                    &provenance.agent,
                    &provenance.model,
                    &provenance.prompt_version,
                    &job,
                ],
            )
            .await?;
    }

    // Relations between distinct nodes, one row per (source, target, type): the most confident,
    // proposed if any of them is.
    let relations: Vec<_> = extraction
        .relations
        .iter()
        .filter(|r| node(r.source) != node(r.target))
        .collect();
    let mut edges: Vec<EdgeRow> = Vec::new();
    for r in &relations {
        let (source, target) = (node(r.source), node(r.target));
        match edges.iter_mut().find(|e| {
            e.source == source && e.target == target && e.relation_type == r.relation_type
        }) {
            Some(e) => {
                e.confidence = e.confidence.max(r.confidence);
                if r.status.as_str() == "proposed" {
                    e.status = "proposed";
                }
                if e.description.is_none() {
                    e.description = r.description.clone();
                }
            }
            None => edges.push(EdgeRow {
                source,
                target,
                relation_type: r.relation_type.clone(),
                description: r.description.clone(),
                confidence: r.confidence,
                status: r.status.as_str(),
            }),
        }
    }
    edges.sort_by(|a, b| {
        (a.source, a.target, &a.relation_type).cmp(&(b.source, b.target, &b.relation_type))
    });
    let mut edge_ids = Vec::new();
    if !edges.is_empty() {
        let sources: Vec<Uuid> = edges.iter().map(|e| e.source).collect();
        let targets: Vec<Uuid> = edges.iter().map(|e| e.target).collect();
        let types: Vec<&str> = edges.iter().map(|e| e.relation_type.as_str()).collect();
        let descriptions: Vec<Option<&str>> =
            edges.iter().map(|e| e.description.as_deref()).collect();
        let confidences: Vec<f64> = edges.iter().map(|e| e.confidence).collect();
        let statuses: Vec<&str> = edges.iter().map(|e| e.status).collect();
        let returned = session
            .query(
                UPSERT_EDGES,
                &[
                    &sources,
                    &targets,
                    &types,
                    &descriptions,
                    &confidences,
                    &statuses,
                ],
            )
            .await?;
        let edge_of = |source: Uuid, target: Uuid, relation_type: &str| -> Uuid {
            returned
                .iter()
                .find(|row| {
                    row.get::<_, Uuid>(1) == source
                        && row.get::<_, Uuid>(2) == target
                        && row.get::<_, &str>(3) == relation_type
                })
                .map(|row| row.get(0))
                .unwrap_or_default()
        };
        edge_ids = edges
            .iter()
            .map(|e| edge_of(e.source, e.target, &e.relation_type))
            .collect();
        let evidence_edges: Vec<Uuid> = relations
            .iter()
            .map(|r| edge_of(node(r.source), node(r.target), &r.relation_type))
            .collect();
        let quotes: Vec<&str> = relations.iter().map(|r| r.evidence.text.as_str()).collect();
        let starts: Vec<i32> = relations.iter().map(|r| r.evidence.start).collect();
        let ends: Vec<i32> = relations.iter().map(|r| r.evidence.end).collect();
        let confidences: Vec<f64> = relations.iter().map(|r| r.confidence).collect();
        session
            .execute(
                INSERT_EVIDENCE,
                &[
                    &evidence_edges,
                    &section.id,
                    &quotes,
                    &starts,
                    &ends,
                    &confidences,
                    &provenance.agent,
                    &provenance.model,
                    &provenance.prompt_version,
                    &job,
                ],
            )
            .await?;
        session.execute(REWEIGH, &[&edge_ids]).await?;
    }

    let dropped = serde_json::to_value(&extraction.dropped).unwrap_or_else(|_| json!({}));
    let output = serde_json::to_value(extraction).unwrap_or(serde_json::Value::Null);
    session
        .execute(
            RECORD,
            &[
                &section.id,
                &section.content_hash,
                &provenance.agent,
                &provenance.model,
                &provenance.prompt_version,
                &"done",
                &None::<String>,
                &(entities.len() as i32),
                &(relations.len() as i32),
                &(extraction.mentions.len() as i32),
                &dropped,
                &output,
                &job,
            ],
        )
        .await?;
    Ok(Persisted {
        nodes: persisted_nodes,
        edges: edge_ids,
    })
}

/// Records that `section` failed for good with `reason` (a re-run of the job tries it again).
pub async fn record_failure(
    session: &TenantSession,
    section: &SectionRef,
    provenance: &Provenance,
    reason: &str,
    job: Option<Uuid>,
) -> Result<(), DbError> {
    session
        .execute(
            RECORD,
            &[
                &section.id,
                &section.content_hash,
                &provenance.agent,
                &provenance.model,
                &provenance.prompt_version,
                &"failed",
                &reason,
                &0i32,
                &0i32,
                &0i32,
                &json!({}),
                &None::<serde_json::Value>,
                &job,
            ],
        )
        .await?;
    Ok(())
}
