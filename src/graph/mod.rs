//! The knowledge graph: entities (`GraphNode`), relations (`GraphEdge`) and their evidence
//! (`EntityMention`); listings, traversal for explorers, the k-hop neighbourhood, and mutations.

mod mutations;
mod neighborhood;

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::graphql::loaders::{child_connection, loader, root_connection, Id, Listing, Row};
use crate::graphql::pagination::{filter_text, sorted, Connection, Sort, Sql, Window};
use crate::graphql::relay::{global_id, row_id, Kind};
use crate::graphql::{error, max_page_size, ErrorCode, MemberGuard};
use crate::papers::{Paper, PaperFilter, PaperListing, PaperOrder, PaperSection, PaperVia};

pub use mutations::{merge_into, GraphMutation};
pub use neighborhood::{Neighborhood, NeighborhoodQuery};

/// Entity types (the scientific information-extraction vocabulary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum NodeType {
    /// A problem or research task.
    Task,
    /// A method, model or algorithm.
    Method,
    /// A dataset or benchmark.
    Dataset,
    /// An evaluation metric.
    Metric,
    /// A material or resource.
    Material,
    /// Any other scientific term.
    OtherScientificTerm,
}

impl NodeType {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeType::Task => "Task",
            NodeType::Method => "Method",
            NodeType::Dataset => "Dataset",
            NodeType::Metric => "Metric",
            NodeType::Material => "Material",
            NodeType::OtherScientificTerm => "OtherScientificTerm",
        }
    }

    fn parse(s: &str) -> NodeType {
        [
            NodeType::Task,
            NodeType::Method,
            NodeType::Dataset,
            NodeType::Metric,
            NodeType::Material,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .unwrap_or(NodeType::OtherScientificTerm)
    }
}

/// Relation types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum RelationType {
    /// A is used for B.
    UsedFor,
    /// A evaluates B.
    EvaluateFor,
    /// A is a feature of B.
    FeatureOf,
    /// A is part of B.
    PartOf,
    /// A is a kind of B.
    HyponymOf,
    /// A is compared with B.
    Compare,
    /// A and B are used together.
    Conjunction,
}

impl RelationType {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RelationType::UsedFor => "USED-FOR",
            RelationType::EvaluateFor => "EVALUATE-FOR",
            RelationType::FeatureOf => "FEATURE-OF",
            RelationType::PartOf => "PART-OF",
            RelationType::HyponymOf => "HYPONYM-OF",
            RelationType::Compare => "COMPARE",
            RelationType::Conjunction => "CONJUNCTION",
        }
    }

    fn parse(s: &str) -> RelationType {
        [
            RelationType::UsedFor,
            RelationType::EvaluateFor,
            RelationType::FeatureOf,
            RelationType::PartOf,
            RelationType::HyponymOf,
            RelationType::Compare,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
        .unwrap_or(RelationType::Conjunction)
    }
}

/// Where a relation stands in review.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum ReviewStatus {
    /// Extracted with low confidence: waiting for a look.
    Pending,
    /// Extracted with enough confidence: shown, not yet confirmed.
    Proposed,
    /// Confirmed by a reviewer.
    Approved,
    /// Rejected by a reviewer.
    Rejected,
}

impl ReviewStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewStatus::Pending => "pending",
            ReviewStatus::Proposed => "proposed",
            ReviewStatus::Approved => "approved",
            ReviewStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> ReviewStatus {
        match s {
            "pending" => ReviewStatus::Pending,
            "approved" => ReviewStatus::Approved,
            "rejected" => ReviewStatus::Rejected,
            _ => ReviewStatus::Proposed,
        }
    }
}

/// An entity of the graph.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex)]
pub struct GraphNode {
    /// The row id (UUID).
    pub row_id: Uuid,
    /// The entity type.
    pub node_type: NodeType,
    /// The name, as first seen.
    pub name: String,
    /// The normalised key (unique per type in a tenant).
    pub key: String,
    /// Other names seen for it.
    pub aliases: Vec<String>,
    /// A description.
    pub description: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl Row for GraphNode {
    const COLUMNS: &'static str =
        "n.id, n.node_type, n.name, n.key, n.aliases, n.description, n.created_at, n.updated_at";
    const FROM: &'static str = "FROM app.nodes n";
    const ID: &'static str = "n.id";

    fn from_row(r: &tokio_postgres::Row, o: usize) -> Self {
        GraphNode {
            row_id: r.get(o),
            node_type: NodeType::parse(r.get(o + 1)),
            name: r.get(o + 2),
            key: r.get(o + 3),
            aliases: r.get(o + 4),
            description: r.get(o + 5),
            created_at: r.get(o + 6),
            updated_at: r.get(o + 7),
        }
    }

    fn row_id(&self) -> Uuid {
        self.row_id
    }
}

/// Which way to follow relations from a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Enum)]
pub enum Direction {
    /// Relations where the node is the source.
    Outgoing,
    /// Relations where the node is the target.
    Incoming,
    /// Both.
    Both,
}

#[ComplexObject]
impl GraphNode {
    /// The global ID.
    pub async fn id(&self, _ctx: &Context<'_>) -> Result<ID> {
        Ok(global_id(Kind::GraphNode, self.row_id))
    }

    /// Relations from this node.
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn outgoing(
        &self,
        ctx: &Context<'_>,
        relation_types: Option<Vec<RelationType>>,
        review_status: Option<Vec<ReviewStatus>>,
        order_by: Option<EdgeOrder>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<GraphEdge>> {
        let direction = Some(Direction::Outgoing);
        self.relations(
            ctx,
            direction,
            relation_types,
            review_status,
            order_by,
            first,
            after,
            last,
            before,
        )
        .await
    }

    /// Relations to this node.
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn incoming(
        &self,
        ctx: &Context<'_>,
        relation_types: Option<Vec<RelationType>>,
        review_status: Option<Vec<ReviewStatus>>,
        order_by: Option<EdgeOrder>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<GraphEdge>> {
        let direction = Some(Direction::Incoming);
        self.relations(
            ctx,
            direction,
            relation_types,
            review_status,
            order_by,
            first,
            after,
            last,
            before,
        )
        .await
    }

    /// Relations in the given direction (both by default).
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn relations(
        &self,
        ctx: &Context<'_>,
        direction: Option<Direction>,
        relation_types: Option<Vec<RelationType>>,
        review_status: Option<Vec<ReviewStatus>>,
        order_by: Option<EdgeOrder>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<GraphEdge>> {
        let via = match direction.unwrap_or(Direction::Both) {
            Direction::Outgoing => EdgeVia::Outgoing,
            Direction::Incoming => EdgeVia::Incoming,
            Direction::Both => EdgeVia::Both,
        };
        let filter = EdgeFilter {
            relation_types,
            review_status,
            ..EdgeFilter::default()
        };
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        let listing = EdgeListing::new(via, Some(filter), order_by, window)?;
        child_connection(ctx, self.row_id, listing).await
    }

    /// Where this entity is mentioned, with the evidence.
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    async fn mentions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<EntityMention>> {
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        child_connection(ctx, self.row_id, MentionListing::by_node(window)).await
    }

    /// Papers that mention this entity.
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn papers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<PaperFilter>,
        order_by: Option<PaperOrder>,
    ) -> Result<Connection<Paper>> {
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        let listing = PaperListing::new(PaperVia::Node, filter, order_by, window)?;
        child_connection(ctx, self.row_id, listing).await
    }
}

/// A relation between two entities.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex)]
pub struct GraphEdge {
    /// The row id (UUID).
    pub row_id: Uuid,
    #[graphql(skip)]
    pub source_id: Uuid,
    #[graphql(skip)]
    pub target_id: Uuid,
    /// The relation type.
    pub relation_type: RelationType,
    /// A description.
    pub description: Option<String>,
    /// The extractor's confidence, 0 to 1.
    pub confidence: f64,
    /// Weight, growing with independent evidence.
    pub weight: f64,
    /// Review status.
    pub review_status: ReviewStatus,
    /// Who reviewed it.
    pub reviewed_by: Option<Uuid>,
    /// When it was reviewed.
    pub reviewed_at: Option<DateTime<Utc>>,
    /// The reviewer's note.
    pub review_note: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl Row for GraphEdge {
    const COLUMNS: &'static str =
        "e.id, e.source_id, e.target_id, e.relation_type, e.description, \
        e.confidence, e.weight, e.review_status, e.reviewed_by, e.reviewed_at, e.review_note, \
        e.created_at, e.updated_at";
    const FROM: &'static str = "FROM app.edges e";
    const ID: &'static str = "e.id";

    fn from_row(r: &tokio_postgres::Row, o: usize) -> Self {
        GraphEdge {
            row_id: r.get(o),
            source_id: r.get(o + 1),
            target_id: r.get(o + 2),
            relation_type: RelationType::parse(r.get(o + 3)),
            description: r.get(o + 4),
            confidence: r.get(o + 5),
            weight: r.get(o + 6),
            review_status: ReviewStatus::parse(r.get(o + 7)),
            reviewed_by: r.get(o + 8),
            reviewed_at: r.get(o + 9),
            review_note: r.get(o + 10),
            created_at: r.get(o + 11),
            updated_at: r.get(o + 12),
        }
    }

    fn row_id(&self) -> Uuid {
        self.row_id
    }
}

#[ComplexObject]
impl GraphEdge {
    /// The global ID.
    pub async fn id(&self, _ctx: &Context<'_>) -> Result<ID> {
        Ok(global_id(Kind::GraphEdge, self.row_id))
    }

    /// Where the relation starts.
    async fn source(&self, ctx: &Context<'_>) -> Result<GraphNode> {
        node(ctx, self.source_id).await
    }

    /// Where the relation ends.
    async fn target(&self, ctx: &Context<'_>) -> Result<GraphNode> {
        node(ctx, self.target_id).await
    }
}

async fn node(ctx: &Context<'_>, id: Uuid) -> Result<GraphNode> {
    loader(ctx)?
        .load_one(Id::<GraphNode>::new(id))
        .await?
        .ok_or_else(|| error(ErrorCode::NotFound, "node not found"))
}

/// An entity mentioned in a section, with the quote that shows it.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex)]
pub struct EntityMention {
    /// The row id (UUID).
    pub row_id: Uuid,
    #[graphql(skip)]
    pub node_id: Uuid,
    #[graphql(skip)]
    pub section_id: Uuid,
    /// The evidence: an exact quote of the section.
    pub quote: String,
    /// Where the quote starts in the section's text (characters).
    pub start_offset: i32,
    /// Where it ends.
    pub end_offset: i32,
    /// The agent that extracted it.
    pub agent: String,
    /// The model used.
    pub model: String,
    /// The prompt version used.
    pub prompt_version: String,
    /// The pipeline job that extracted it.
    pub job_id: Option<Uuid>,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl Row for EntityMention {
    const COLUMNS: &'static str = "m.id, m.node_id, m.section_id, m.quote, m.start_offset, \
        m.end_offset, m.agent, m.model, m.prompt_version, m.job_id, m.created_at";
    const FROM: &'static str = "FROM app.entity_mentions m";
    const ID: &'static str = "m.id";

    fn from_row(r: &tokio_postgres::Row, o: usize) -> Self {
        EntityMention {
            row_id: r.get(o),
            node_id: r.get(o + 1),
            section_id: r.get(o + 2),
            quote: r.get(o + 3),
            start_offset: r.get(o + 4),
            end_offset: r.get(o + 5),
            agent: r.get(o + 6),
            model: r.get(o + 7),
            prompt_version: r.get(o + 8),
            job_id: r.get(o + 9),
            created_at: r.get(o + 10),
        }
    }

    fn row_id(&self) -> Uuid {
        self.row_id
    }
}

#[ComplexObject]
impl EntityMention {
    /// The global ID.
    pub async fn id(&self, _ctx: &Context<'_>) -> Result<ID> {
        Ok(global_id(Kind::EntityMention, self.row_id))
    }

    /// The entity mentioned.
    async fn node(&self, ctx: &Context<'_>) -> Result<GraphNode> {
        node(ctx, self.node_id).await
    }

    /// The section it is mentioned in.
    async fn section(&self, ctx: &Context<'_>) -> Result<PaperSection> {
        loader(ctx)?
            .load_one(Id::<PaperSection>::new(self.section_id))
            .await?
            .ok_or_else(|| error(ErrorCode::NotFound, "section not found"))
    }
}

/// Orders of node listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Enum, Default)]
pub enum NodeOrder {
    /// By name, A to Z.
    #[default]
    NameAsc,
    /// By name, Z to A.
    NameDesc,
    /// Newest first.
    CreatedAtDesc,
    /// Oldest first.
    CreatedAtAsc,
}

impl NodeOrder {
    fn sort(self) -> Sort {
        let (name, column, sql_type, desc) = match self {
            NodeOrder::NameAsc => ("name_asc", "n.name", "text", false),
            NodeOrder::NameDesc => ("name_desc", "n.name", "text", true),
            NodeOrder::CreatedAtDesc => ("created_at_desc", "n.created_at", "timestamptz", true),
            NodeOrder::CreatedAtAsc => ("created_at_asc", "n.created_at", "timestamptz", false),
        };
        Sort {
            name,
            column,
            sql_type,
            id_column: "n.id",
            desc,
        }
    }
}

/// Which nodes to list.
#[derive(Clone, Debug, Default, InputObject)]
pub struct NodeFilter {
    /// Only these entity types.
    pub node_types: Option<Vec<NodeType>>,
    /// Name or alias contains this text, ignoring case (scans the tenant's nodes; use
    /// `search` for ranked, indexed fuzzy search).
    pub text: Option<String>,
    /// Only entities mentioned in this paper.
    pub paper: Option<ID>,
    /// Created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this instant.
    pub created_before: Option<DateTime<Utc>>,
}

/// Where nodes are listed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NodeVia {
    /// The root `graphNodes` field.
    Root,
    /// Entities mentioned in a paper (`Paper.nodes`).
    Paper,
    /// Entities an insight rests on (`Insight.supportingNodes`).
    Insight,
}

/// A node listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeListing {
    via: NodeVia,
    window: Window,
    order: NodeOrder,
    node_types: Option<Vec<NodeType>>,
    text: Option<String>,
    paper: Option<Uuid>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
}

impl NodeListing {
    /// Validates the arguments into a listing.
    pub fn new(
        via: NodeVia,
        filter: Option<NodeFilter>,
        order: Option<NodeOrder>,
        window: Window,
    ) -> Result<NodeListing> {
        let f = filter.unwrap_or_default();
        Ok(NodeListing {
            via,
            window,
            order: order.unwrap_or_default(),
            node_types: sorted(f.node_types),
            text: filter_text(f.text)?,
            paper: f
                .paper
                .map(|id| row_id(&id, Kind::Paper, "filter.paper"))
                .transpose()?,
            created_after: f.created_after,
            created_before: f.created_before,
        })
    }
}

/// Nodes mentioned in paper `$`.
const NODES_OF_PAPER: &str = "n.id IN (SELECT m.node_id FROM app.paper_sections s \
     JOIN app.entity_mentions m ON m.tenant_id = s.tenant_id AND m.section_id = s.id \
     WHERE s.paper_id = ";

impl Listing for NodeListing {
    type Item = GraphNode;

    fn root_from(&self) -> &'static str {
        "FROM app.nodes n WHERE true"
    }

    fn child_from(&self) -> &'static str {
        match self.via {
            NodeVia::Root => "FROM app.nodes n WHERE true",
            NodeVia::Paper => {
                "FROM app.nodes n WHERE n.id IN (SELECT m.node_id FROM app.paper_sections s \
                 JOIN app.entity_mentions m ON m.tenant_id = s.tenant_id AND m.section_id = s.id \
                 WHERE s.paper_id = k.parent)"
            }
            NodeVia::Insight => {
                "FROM app.nodes n WHERE n.id IN (SELECT inn.node_id FROM app.insight_nodes inn \
                 WHERE inn.insight_id = k.parent)"
            }
        }
    }

    fn filters(&self, sql: &mut Sql) {
        if let Some(types) = &self.node_types {
            let types: Vec<&'static str> = types.iter().map(|t| t.as_str()).collect();
            sql.push(" AND n.node_type = ANY(").bind(types).push(")");
        }
        if let Some(text) = &self.text {
            let pattern = format!("%{}%", like_escape(text));
            sql.push(" AND (n.name ILIKE ")
                .bind(pattern.clone())
                .push(" OR array_to_string(n.aliases, ' ') ILIKE ")
                .bind(pattern)
                .push(")");
        }
        if let Some(paper) = self.paper {
            sql.push(" AND ").push(NODES_OF_PAPER).bind(paper).push(")");
        }
        if let Some(t) = self.created_after {
            sql.push(" AND n.created_at >= ").bind(t);
        }
        if let Some(t) = self.created_before {
            sql.push(" AND n.created_at < ").bind(t);
        }
    }

    fn sort(&self) -> Sort {
        self.order.sort()
    }

    fn window(&self) -> &Window {
        &self.window
    }
}

/// Escapes LIKE wildcards so user text matches literally.
fn like_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// Orders of edge listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Enum, Default)]
pub enum EdgeOrder {
    /// Oldest first.
    #[default]
    CreatedAtAsc,
    /// Newest first.
    CreatedAtDesc,
    /// Heaviest (most evidence) first.
    WeightDesc,
    /// Most confident first (root listing only).
    ConfidenceDesc,
}

impl EdgeOrder {
    fn sort(self) -> Sort {
        let (name, column, sql_type, desc) = match self {
            EdgeOrder::CreatedAtAsc => ("created_at_asc", "e.created_at", "timestamptz", false),
            EdgeOrder::CreatedAtDesc => ("created_at_desc", "e.created_at", "timestamptz", true),
            EdgeOrder::WeightDesc => ("weight_desc", "e.weight", "double precision", true),
            EdgeOrder::ConfidenceDesc => {
                ("confidence_desc", "e.confidence", "double precision", true)
            }
        };
        Sort {
            name,
            column,
            sql_type,
            id_column: "e.id",
            desc,
        }
    }
}

/// Which edges to list.
#[derive(Clone, Debug, Default, InputObject)]
pub struct EdgeFilter {
    /// Only these relation types.
    pub relation_types: Option<Vec<RelationType>>,
    /// Only these review statuses.
    pub review_status: Option<Vec<ReviewStatus>>,
    /// Confidence at least this.
    pub min_confidence: Option<f64>,
    /// Confidence at most this.
    pub max_confidence: Option<f64>,
    /// Edges touching this node (either end).
    pub node: Option<ID>,
    /// Created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this instant.
    pub created_before: Option<DateTime<Utc>>,
}

/// Where edges are listed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EdgeVia {
    /// The root `graphEdges` field.
    Root,
    /// A node's outgoing relations.
    Outgoing,
    /// A node's incoming relations.
    Incoming,
    /// A node's relations either way.
    Both,
    /// Relations an insight rests on.
    Insight,
}

/// An edge listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EdgeListing {
    via: EdgeVia,
    window: Window,
    order: EdgeOrder,
    relation_types: Option<Vec<RelationType>>,
    review_status: Option<Vec<ReviewStatus>>,
    /// Confidence bounds as bits, so the listing can be a batching key.
    min_confidence: Option<u64>,
    max_confidence: Option<u64>,
    node: Option<Uuid>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
}

impl EdgeListing {
    /// Validates the arguments into a listing.
    pub fn new(
        via: EdgeVia,
        filter: Option<EdgeFilter>,
        order: Option<EdgeOrder>,
        window: Window,
    ) -> Result<EdgeListing> {
        let f = filter.unwrap_or_default();
        for c in [f.min_confidence, f.max_confidence].into_iter().flatten() {
            if !(0.0..=1.0).contains(&c) {
                return Err(error(
                    ErrorCode::BadUserInput,
                    "confidence bounds are between 0 and 1",
                ));
            }
        }
        Ok(EdgeListing {
            via,
            window,
            order: order.unwrap_or_default(),
            relation_types: sorted(f.relation_types),
            review_status: sorted(f.review_status),
            min_confidence: f.min_confidence.map(f64::to_bits),
            max_confidence: f.max_confidence.map(f64::to_bits),
            node: f
                .node
                .map(|id| row_id(&id, Kind::GraphNode, "filter.node"))
                .transpose()?,
            created_after: f.created_after,
            created_before: f.created_before,
        })
    }
}

impl Listing for EdgeListing {
    type Item = GraphEdge;

    fn root_from(&self) -> &'static str {
        "FROM app.edges e WHERE true"
    }

    fn child_from(&self) -> &'static str {
        match self.via {
            EdgeVia::Root => "FROM app.edges e WHERE true",
            EdgeVia::Outgoing => "FROM app.edges e WHERE e.source_id = k.parent",
            EdgeVia::Incoming => "FROM app.edges e WHERE e.target_id = k.parent",
            // Two index scans merged in order (no self-loops exist, so no row appears twice).
            EdgeVia::Both => {
                "FROM (SELECT * FROM app.edges WHERE source_id = k.parent \
                 UNION ALL SELECT * FROM app.edges WHERE target_id = k.parent) e WHERE true"
            }
            EdgeVia::Insight => {
                "FROM app.edges e WHERE e.id IN (SELECT ie.edge_id FROM app.insight_edges ie \
                 WHERE ie.insight_id = k.parent)"
            }
        }
    }

    fn filters(&self, sql: &mut Sql) {
        if let Some(types) = &self.relation_types {
            let types: Vec<&'static str> = types.iter().map(|t| t.as_str()).collect();
            sql.push(" AND e.relation_type = ANY(")
                .bind(types)
                .push(")");
        }
        if let Some(statuses) = &self.review_status {
            let statuses: Vec<&'static str> = statuses.iter().map(|s| s.as_str()).collect();
            sql.push(" AND e.review_status = ANY(")
                .bind(statuses)
                .push(")");
        }
        if let Some(bits) = self.min_confidence {
            sql.push(" AND e.confidence >= ").bind(f64::from_bits(bits));
        }
        if let Some(bits) = self.max_confidence {
            sql.push(" AND e.confidence <= ").bind(f64::from_bits(bits));
        }
        if let Some(node) = self.node {
            sql.push(" AND (e.source_id = ")
                .bind(node)
                .push(" OR e.target_id = ")
                .bind(node)
                .push(")");
        }
        if let Some(t) = self.created_after {
            sql.push(" AND e.created_at >= ").bind(t);
        }
        if let Some(t) = self.created_before {
            sql.push(" AND e.created_at < ").bind(t);
        }
    }

    fn sort(&self) -> Sort {
        self.order.sort()
    }

    fn window(&self) -> &Window {
        &self.window
    }
}

/// Where mentions are listed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MentionVia {
    /// A node's mentions.
    Node,
    /// A section's mentions.
    Section,
}

/// A mention listing, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MentionListing {
    via: MentionVia,
    window: Window,
}

impl MentionListing {
    /// A node's mentions.
    pub fn by_node(window: Window) -> MentionListing {
        MentionListing {
            via: MentionVia::Node,
            window,
        }
    }

    /// A section's mentions.
    pub fn by_section(window: Window) -> MentionListing {
        MentionListing {
            via: MentionVia::Section,
            window,
        }
    }
}

impl Listing for MentionListing {
    type Item = EntityMention;

    fn root_from(&self) -> &'static str {
        "FROM app.entity_mentions m WHERE true"
    }

    fn child_from(&self) -> &'static str {
        match self.via {
            MentionVia::Node => "FROM app.entity_mentions m WHERE m.node_id = k.parent",
            MentionVia::Section => "FROM app.entity_mentions m WHERE m.section_id = k.parent",
        }
    }

    fn filters(&self, _sql: &mut Sql) {}

    fn sort(&self) -> Sort {
        Sort {
            name: "created_at_asc",
            column: "m.created_at",
            sql_type: "timestamptz",
            id_column: "m.id",
            desc: false,
        }
    }

    fn window(&self) -> &Window {
        &self.window
    }
}

/// Graph queries.
#[derive(Default)]
pub struct GraphQuery;

#[Object]
impl GraphQuery {
    /// The tenant's entities.
    #[graphql(
        guard = "MemberGuard",
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn graph_nodes(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<NodeFilter>,
        order_by: Option<NodeOrder>,
    ) -> Result<Connection<GraphNode>> {
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        let listing = NodeListing::new(NodeVia::Root, filter, order_by, window)?;
        root_connection(ctx, listing).await
    }

    /// The tenant's relations.
    #[graphql(
        guard = "MemberGuard",
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn graph_edges(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<EdgeFilter>,
        order_by: Option<EdgeOrder>,
    ) -> Result<Connection<GraphEdge>> {
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        let listing = EdgeListing::new(EdgeVia::Root, filter, order_by, window)?;
        root_connection(ctx, listing).await
    }

    /// One entity by id (global ID or UUID).
    #[graphql(guard = "MemberGuard")]
    async fn graph_node(&self, ctx: &Context<'_>, id: ID) -> Result<Option<GraphNode>> {
        let id = row_id(&id, Kind::GraphNode, "id")?;
        loader(ctx)?.load_one(Id::<GraphNode>::new(id)).await
    }

    /// One relation by id (global ID or UUID).
    #[graphql(guard = "MemberGuard")]
    async fn graph_edge(&self, ctx: &Context<'_>, id: ID) -> Result<Option<GraphEdge>> {
        let id = row_id(&id, Kind::GraphEdge, "id")?;
        loader(ctx)?.load_one(Id::<GraphEdge>::new(id)).await
    }
}
