//! `neighborhood`: the subgraph within k hops of a node, in one call.
//!
//! One statement runs `app.neighborhood` (a SECURITY INVOKER function, so row-level security
//! applies): a breadth-first walk, one pair of index scans per level, each node once at its
//! smallest depth, capped at `limit` nodes. The nodes and edges found are then loaded through the
//! request's loaders (one statement each).

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use uuid::Uuid;

use super::{GraphEdge, GraphNode, RelationType, ReviewStatus};
use crate::graphql::loaders::{loader, Id};
use crate::graphql::pagination::sorted;
use crate::graphql::relay::{row_id, Kind};
use crate::graphql::{db_error, error, session, ErrorCode, MemberGuard};

/// Deepest walk allowed.
pub const MAX_DEPTH: i32 = 4;
/// Most nodes returned.
pub const MAX_NODES: i32 = 2000;

/// A node of a neighbourhood, with its distance from the start.
#[derive(Clone, SimpleObject)]
pub struct NeighborhoodNode {
    /// Hops from the start node (0 for the start itself).
    pub depth: i32,
    /// The node.
    pub node: GraphNode,
}

/// The nodes within k hops of a node, and the relations among them.
#[derive(Clone, SimpleObject)]
pub struct Neighborhood {
    /// The nodes, nearest first.
    pub nodes: Vec<NeighborhoodNode>,
    /// The relations between those nodes.
    pub edges: Vec<GraphEdge>,
    /// The node limit cut the walk short.
    pub truncated: bool,
}

/// The `neighborhood` root field.
#[derive(Default)]
pub struct NeighborhoodQuery;

#[Object]
impl NeighborhoodQuery {
    /// Nodes within `depth` hops of `nodeId` (following relations either way), at most `limit`
    /// of them, with the relations among them. Null when the node does not exist here.
    #[graphql(
        guard = "MemberGuard",
        complexity = "child_complexity.saturating_mul(limit.unwrap_or(200).max(1) as usize).min(1 << 32)"
    )]
    async fn neighborhood(
        &self,
        ctx: &Context<'_>,
        node_id: ID,
        #[graphql(default = 1)] depth: i32,
        relation_types: Option<Vec<RelationType>>,
        review_status: Option<Vec<ReviewStatus>>,
        limit: Option<i32>,
    ) -> Result<Option<Neighborhood>> {
        let root = row_id(&node_id, Kind::GraphNode, "nodeId")?;
        if !(0..=MAX_DEPTH).contains(&depth) {
            return Err(error(
                ErrorCode::BadUserInput,
                format!("depth must be between 0 and {MAX_DEPTH}"),
            ));
        }
        let limit = limit.unwrap_or(200);
        if !(1..=MAX_NODES).contains(&limit) {
            return Err(error(
                ErrorCode::BadUserInput,
                format!("limit must be between 1 and {MAX_NODES}"),
            ));
        }
        let types: Option<Vec<&'static str>> =
            sorted(relation_types).map(|t| t.iter().map(|t| t.as_str()).collect());
        let statuses: Option<Vec<&'static str>> =
            sorted(review_status).map(|s| s.iter().map(|s| s.as_str()).collect());
        let rows = session(ctx)?
            .query(
                "SELECT kind, id, depth FROM app.neighborhood($1, $2, $3, $4, $5)",
                &[&root, &depth, &types, &statuses, &limit],
            )
            .await
            .map_err(db_error)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut node_depths: Vec<(Uuid, i32)> = Vec::new();
        let mut edge_ids: Vec<Uuid> = Vec::new();
        let mut truncated = false;
        for row in &rows {
            match row.get::<_, &str>(0) {
                "node" => node_depths.push((row.get(1), row.get(2))),
                "edge" => edge_ids.push(row.get(1)),
                _ => truncated = true,
            }
        }
        let loader = loader(ctx)?;
        let (nodes, edges) = tokio::try_join!(
            loader.load_many(node_depths.iter().map(|(id, _)| Id::<GraphNode>::new(*id))),
            loader.load_many(edge_ids.iter().map(|id| Id::<GraphEdge>::new(*id))),
        )?;
        Ok(Some(Neighborhood {
            nodes: node_depths
                .iter()
                .filter_map(|(id, depth)| {
                    nodes.get(&Id::new(*id)).map(|node| NeighborhoodNode {
                        depth: *depth,
                        node: node.clone(),
                    })
                })
                .collect(),
            edges: edge_ids
                .iter()
                .filter_map(|id| edges.get(&Id::new(*id)).cloned())
                .collect(),
            truncated,
        }))
    }
}
