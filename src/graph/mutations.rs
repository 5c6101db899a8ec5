//! Hand edits of the graph: create and update entities and relations, review relations, merge
//! duplicate entities. Owners and members may write; row-level security refuses viewers.

use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result, ID};
use uuid::Uuid;

use super::{GraphEdge, GraphNode, NodeType, RelationType, ReviewStatus};
use crate::db::TenantSession;
use crate::graphql::loaders::Row;
use crate::graphql::relay::{row_id, Kind};
use crate::graphql::{db_error, error, session, written, ErrorCode, MemberGuard};
use crate::pipeline::resolve::entity_key;

/// The normalised key of an entity name, the one the pipeline resolves entities by
/// ([`entity_key`]: case, punctuation, Unicode forms, a final plural). One node exists per key
/// and type in a tenant.
pub fn node_key(name: &str) -> String {
    entity_key(name)
}

fn check_text(value: &str, what: &str, max: usize) -> Result<()> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(error(
            ErrorCode::BadUserInput,
            format!("{what} has 1 to {max} characters"),
        ));
    }
    Ok(())
}

fn check_confidence(value: f64, what: &str) -> Result<()> {
    if !(0.0..=1.0).contains(&value) {
        return Err(error(
            ErrorCode::BadUserInput,
            format!("{what} is between 0 and 1"),
        ));
    }
    Ok(())
}

/// A new entity.
#[derive(InputObject)]
pub struct CreateNodeInput {
    /// Its type.
    pub node_type: NodeType,
    /// Its name (1 to 500 characters).
    pub name: String,
    /// Other names.
    #[graphql(default)]
    pub aliases: Vec<String>,
    /// A description.
    pub description: Option<String>,
}

/// Changes to an entity; absent fields stay.
#[derive(InputObject)]
pub struct UpdateNodeInput {
    /// New name (the key follows it).
    pub name: Option<String>,
    /// New type.
    pub node_type: Option<NodeType>,
    /// New aliases (replacing the old ones).
    pub aliases: Option<Vec<String>>,
    /// New description (null clears it).
    pub description: MaybeUndefined<String>,
}

/// A new relation.
#[derive(InputObject)]
pub struct CreateEdgeInput {
    /// Where it starts.
    pub source: ID,
    /// Where it ends.
    pub target: ID,
    /// Its type.
    pub relation_type: RelationType,
    /// A description.
    pub description: Option<String>,
    /// Confidence, 0 to 1 (1 for a hand-made relation by default).
    pub confidence: Option<f64>,
    /// Review status (approved by default for a hand-made relation).
    pub review_status: Option<ReviewStatus>,
}

/// Changes to a relation; absent fields stay.
#[derive(InputObject)]
pub struct UpdateEdgeInput {
    /// New type.
    pub relation_type: Option<RelationType>,
    /// New description (null clears it).
    pub description: MaybeUndefined<String>,
    /// New confidence.
    pub confidence: Option<f64>,
    /// New weight.
    pub weight: Option<f64>,
}

/// Graph mutations.
#[derive(Default)]
pub struct GraphMutation;

fn node_sql(head: &'static str, tail: &'static str) -> String {
    format!("{head} RETURNING {}{tail}", GraphNode::COLUMNS)
}

fn edge_sql(head: &'static str) -> String {
    format!("{head} RETURNING {}", GraphEdge::COLUMNS)
}

#[Object]
impl GraphMutation {
    /// Creates an entity.
    #[graphql(guard = "MemberGuard")]
    async fn create_node(&self, ctx: &Context<'_>, input: CreateNodeInput) -> Result<GraphNode> {
        check_text(&input.name, "name", 500)?;
        let key = node_key(&input.name);
        if key.is_empty() {
            return Err(error(
                ErrorCode::BadUserInput,
                "name needs letters or digits",
            ));
        }
        let row = session(ctx)?
            .query_one(
                &node_sql(
                    "INSERT INTO app.nodes AS n (tenant_id, node_type, name, key, aliases, description) \
                     VALUES (app.tenant_id(), $1, $2, $3, $4, $5)",
                    "",
                ),
                &[
                    &input.node_type.as_str(),
                    &input.name.trim(),
                    &key,
                    &input.aliases,
                    &input.description,
                ],
            )
            .await
            .map_err(|e| conflict(e, "an entity with this name and type exists"))?;
        Ok(GraphNode::from_row(&row, 0))
    }

    /// Changes an entity.
    #[graphql(guard = "MemberGuard")]
    async fn update_node(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateNodeInput,
    ) -> Result<GraphNode> {
        let id = row_id(&id, Kind::GraphNode, "id")?;
        if let Some(name) = &input.name {
            check_text(name, "name", 500)?;
        }
        let key = input.name.as_deref().map(node_key);
        let (set_description, description) = match input.description {
            MaybeUndefined::Undefined => (false, None),
            MaybeUndefined::Null => (true, None),
            MaybeUndefined::Value(d) => (true, Some(d)),
        };
        let s = session(ctx)?;
        let row = s
            .query_opt(
                &node_sql(
                    "UPDATE app.nodes n SET name = coalesce($2, n.name), key = coalesce($3, n.key), \
                     node_type = coalesce($4, n.node_type), aliases = coalesce($5, n.aliases), \
                     description = CASE WHEN $6 THEN $7 ELSE n.description END, updated_at = now() \
                     WHERE n.id = $1",
                    "",
                ),
                &[
                    &id,
                    &input.name.as_deref().map(str::trim),
                    &key,
                    &input.node_type.map(NodeType::as_str),
                    &input.aliases,
                    &set_description,
                    &description,
                ],
            )
            .await
            .map_err(|e| conflict(e, "an entity with this name and type exists"))?;
        written(s, row.map(|r| GraphNode::from_row(&r, 0)), "entity")
    }

    /// Creates a relation between two entities.
    #[graphql(guard = "MemberGuard")]
    async fn create_edge(&self, ctx: &Context<'_>, input: CreateEdgeInput) -> Result<GraphEdge> {
        let source = row_id(&input.source, Kind::GraphNode, "source")?;
        let target = row_id(&input.target, Kind::GraphNode, "target")?;
        if source == target {
            return Err(error(
                ErrorCode::BadUserInput,
                "a relation joins two different entities",
            ));
        }
        let confidence = input.confidence.unwrap_or(1.0);
        check_confidence(confidence, "confidence")?;
        let status = input.review_status.unwrap_or(ReviewStatus::Approved);
        let row = session(ctx)?
            .query_one(
                &edge_sql(
                    "INSERT INTO app.edges AS e (tenant_id, source_id, target_id, relation_type, \
                     description, confidence, review_status) \
                     VALUES (app.tenant_id(), $1, $2, $3, $4, $5, $6)",
                ),
                &[
                    &source,
                    &target,
                    &input.relation_type.as_str(),
                    &input.description,
                    &confidence,
                    &status.as_str(),
                ],
            )
            .await
            .map_err(|e| {
                if e.sql_state().map(|c| c.code()) == Some("23503") {
                    return error(ErrorCode::NotFound, "source or target does not exist");
                }
                conflict(e, "this relation exists already")
            })?;
        Ok(GraphEdge::from_row(&row, 0))
    }

    /// Changes a relation.
    #[graphql(guard = "MemberGuard")]
    async fn update_edge(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateEdgeInput,
    ) -> Result<GraphEdge> {
        let id = row_id(&id, Kind::GraphEdge, "id")?;
        if let Some(c) = input.confidence {
            check_confidence(c, "confidence")?;
        }
        if input.weight.is_some_and(|w| !(w >= 0.0 && w.is_finite())) {
            return Err(error(ErrorCode::BadUserInput, "weight is zero or more"));
        }
        let (set_description, description) = match input.description {
            MaybeUndefined::Undefined => (false, None),
            MaybeUndefined::Null => (true, None),
            MaybeUndefined::Value(d) => (true, Some(d)),
        };
        let s = session(ctx)?;
        let row = s
            .query_opt(
                &edge_sql(
                    "UPDATE app.edges e SET relation_type = coalesce($2, e.relation_type), \
                     description = CASE WHEN $3 THEN $4 ELSE e.description END, \
                     confidence = coalesce($5, e.confidence), weight = coalesce($6, e.weight), \
                     updated_at = now() WHERE e.id = $1",
                ),
                &[
                    &id,
                    &input.relation_type.map(RelationType::as_str),
                    &set_description,
                    &description,
                    &input.confidence,
                    &input.weight,
                ],
            )
            .await
            .map_err(|e| conflict(e, "this relation exists already"))?;
        written(s, row.map(|r| GraphEdge::from_row(&r, 0)), "relation")
    }

    /// Records a review of a relation: approve, reject, or send it back.
    #[graphql(guard = "MemberGuard")]
    async fn review_edge(
        &self,
        ctx: &Context<'_>,
        id: ID,
        status: ReviewStatus,
        note: Option<String>,
    ) -> Result<GraphEdge> {
        let id = row_id(&id, Kind::GraphEdge, "id")?;
        let mut edges = review(ctx, vec![id], status, note).await?;
        let s = session(ctx)?;
        written(s, edges.pop(), "relation")
    }

    /// Reviews up to 500 relations at once; returns those that exist, in the order given.
    #[graphql(guard = "MemberGuard")]
    async fn review_edges(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
        status: ReviewStatus,
        note: Option<String>,
    ) -> Result<Vec<GraphEdge>> {
        if ids.len() > 500 {
            return Err(error(
                ErrorCode::LimitExceeded,
                "at most 500 relations at once",
            ));
        }
        let ids = ids
            .iter()
            .map(|id| row_id(id, Kind::GraphEdge, "ids"))
            .collect::<Result<Vec<Uuid>>>()?;
        let edges = review(ctx, ids.clone(), status, note).await?;
        if edges.is_empty() && !ids.is_empty() {
            let s = session(ctx)?;
            written::<GraphEdge>(s, None, "relation")?;
        }
        Ok(edges)
    }

    /// Merges entity `merge` into `keep`: its relations and mentions move to `keep` (relations
    /// that then duplicate one of `keep`'s add their weight to it), its names become aliases of
    /// `keep`, and `merge` is deleted. Returns `keep`.
    #[graphql(guard = "MemberGuard")]
    async fn merge_nodes(&self, ctx: &Context<'_>, keep: ID, merge: ID) -> Result<GraphNode> {
        let keep = row_id(&keep, Kind::GraphNode, "keep")?;
        let merge = row_id(&merge, Kind::GraphNode, "merge")?;
        if keep == merge {
            return Err(error(
                ErrorCode::BadUserInput,
                "keep and merge are the same entity",
            ));
        }
        let s = session(ctx)?;
        let merged = merge_into(s, keep, merge).await?;
        written(s, merged, "entity")
    }
}

/// Merges node `merge` into `keep` in the session's transaction (see `mergeNodes`); `None` when
/// either is not there to be changed (missing, or the session may not write).
pub async fn merge_into(s: &TenantSession, keep: Uuid, merge: Uuid) -> Result<Option<GraphNode>> {
    let locked = s
        .query(
            "SELECT id FROM app.nodes WHERE id = ANY($1) FOR UPDATE",
            &[&vec![keep, merge]],
        )
        .await
        .map_err(db_error)?;
    if locked.len() != 2 {
        return Ok(None);
    }
    for (sql, what) in MERGE_STEPS {
        s.execute(sql, &[&keep, &merge]).await.map_err(|e| {
            tracing::error!(step = what, error = %e, "merge failed");
            db_error(e)
        })?;
    }
    let row = s
        .query_one(
            &format!(
                "SELECT {} FROM app.nodes n WHERE n.id = $1",
                GraphNode::COLUMNS
            ),
            &[&keep],
        )
        .await
        .map_err(db_error)?;
    Ok(Some(GraphNode::from_row(&row, 0)))
}

/// The steps of a merge, each with `$1` = keep and `$2` = merge, in one transaction.
const MERGE_STEPS: [(&str, &str); 7] = [
    (
        "WITH pairs AS (
             SELECT d.id AS dup, k.id AS kept, d.weight, d.confidence
             FROM app.edges d JOIN app.edges k ON k.relation_type = d.relation_type AND (
                 (d.source_id = $2 AND k.source_id = $1 AND k.target_id = d.target_id) OR
                 (d.target_id = $2 AND k.target_id = $1 AND k.source_id = d.source_id))
         ), bump AS (
             UPDATE app.edges k SET weight = k.weight + p.weight,
                 confidence = greatest(k.confidence, p.confidence), updated_at = now()
             FROM pairs p WHERE k.id = p.kept
         ), support AS (
             INSERT INTO app.insight_edges (tenant_id, insight_id, edge_id)
             SELECT ie.tenant_id, ie.insight_id, p.kept
             FROM app.insight_edges ie JOIN pairs p ON ie.edge_id = p.dup
             ON CONFLICT DO NOTHING
         ), evidence AS (
             INSERT INTO app.edge_evidence (tenant_id, edge_id, section_id, quote, start_offset,
                 end_offset, confidence, agent, model, prompt_version, job_id, created_at)
             SELECT ev.tenant_id, p.kept, ev.section_id, ev.quote, ev.start_offset,
                    ev.end_offset, ev.confidence, ev.agent, ev.model, ev.prompt_version,
                    ev.job_id, ev.created_at
             FROM app.edge_evidence ev JOIN pairs p ON ev.edge_id = p.dup
             ON CONFLICT DO NOTHING
         )
         DELETE FROM app.edges WHERE id IN (SELECT dup FROM pairs)",
        "fold duplicate relations",
    ),
    (
        "DELETE FROM app.edges WHERE (source_id = $2 AND target_id = $1) \
         OR (source_id = $1 AND target_id = $2)",
        "drop relations between the two",
    ),
    (
        "UPDATE app.edges SET source_id = $1, updated_at = now() WHERE source_id = $2",
        "move outgoing relations",
    ),
    (
        "UPDATE app.edges SET target_id = $1, updated_at = now() WHERE target_id = $2",
        "move incoming relations",
    ),
    (
        "WITH same AS (
             DELETE FROM app.entity_mentions m WHERE m.node_id = $2 AND EXISTS (
                 SELECT 1 FROM app.entity_mentions k WHERE k.node_id = $1
                   AND k.section_id = m.section_id AND k.start_offset = m.start_offset
                   AND k.end_offset = m.end_offset))
         UPDATE app.entity_mentions SET node_id = $1 WHERE node_id = $2
           AND NOT EXISTS (SELECT 1 FROM app.entity_mentions k WHERE k.node_id = $1
               AND k.section_id = app.entity_mentions.section_id
               AND k.start_offset = app.entity_mentions.start_offset
               AND k.end_offset = app.entity_mentions.end_offset)",
        "move mentions (a quote both already have is kept once)",
    ),
    (
        "INSERT INTO app.insight_nodes (tenant_id, insight_id, node_id) \
         SELECT tenant_id, insight_id, $1 FROM app.insight_nodes WHERE node_id = $2 \
         ON CONFLICT DO NOTHING",
        "move insight support",
    ),
    (
        "WITH gone AS (DELETE FROM app.nodes WHERE id = $2 RETURNING name, aliases, description)
         UPDATE app.nodes n SET
             aliases = (SELECT coalesce(array_agg(DISTINCT a ORDER BY a), '{}')
                        FROM unnest(n.aliases || gone.name || gone.aliases) a WHERE a <> n.name),
             description = coalesce(n.description, gone.description), updated_at = now()
         FROM gone WHERE n.id = $1",
        "keep the names and delete the merged entity",
    ),
];

async fn review(
    ctx: &Context<'_>,
    ids: Vec<Uuid>,
    status: ReviewStatus,
    note: Option<String>,
) -> Result<Vec<GraphEdge>> {
    let s = session(ctx)?;
    let rows = s
        .query(
            &format!(
                "WITH reviewed AS (UPDATE app.edges e SET review_status = $2, review_note = $3, \
                 reviewed_by = app.user_id(), reviewed_at = now(), updated_at = now() \
                 WHERE e.id = ANY($1) RETURNING e.*) \
                 SELECT {} FROM reviewed e JOIN unnest($1::uuid[]) WITH ORDINALITY AS o (id, n) \
                 ON o.id = e.id ORDER BY o.n",
                GraphEdge::COLUMNS
            ),
            &[&ids, &status.as_str(), &note],
        )
        .await
        .map_err(db_error)?;
    Ok(rows.iter().map(|r| GraphEdge::from_row(r, 0)).collect())
}

/// A unique violation as a clear input error; anything else as usual.
fn conflict(err: crate::db::DbError, message: &str) -> async_graphql::Error {
    if err.sql_state().map(|c| c.code()) == Some("23505") {
        return error(ErrorCode::BadUserInput, message);
    }
    db_error(err)
}

#[cfg(test)]
mod tests {
    use super::node_key;

    #[test]
    fn keys_ignore_case_punctuation_and_spacing() {
        assert_eq!(
            node_key("  Convolutional   Neural-Network "),
            "convolutional neural network"
        );
        assert_eq!(node_key("BERT (base)"), "bert base");
        assert_eq!(node_key("F1-score"), node_key("f1 score"));
        assert_eq!(node_key("!!!"), "");
        assert_eq!(
            node_key("Convolutional Neural Networks"),
            node_key("convolutional neural network")
        );
    }
}
