//! Inferred insights: what the reasoning agent concluded over the graph, with the nodes and
//! relations each rests on.

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::graph::{
    EdgeListing, EdgeOrder, EdgeVia, GraphEdge, GraphNode, NodeListing, NodeOrder, NodeVia,
};
use crate::graphql::loaders::{child_connection, loader, root_connection, Id, Listing, Row};
use crate::graphql::pagination::sorted;
use crate::graphql::pagination::{Connection, Sort, Sql, Window};
use crate::graphql::relay::{global_id, row_id, Kind};
use crate::graphql::{db_error, error, max_page_size, session, written, ErrorCode, MemberGuard};

/// What kind of conclusion an insight is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum InsightType {
    /// Papers disagree (e.g. conflicting metric claims for a method on a dataset).
    Conflict,
    /// Something is missing (e.g. a task with no evaluated method).
    Gap,
    /// A likely relation implied by others.
    Transitive,
    /// Anything else.
    Other,
}

impl InsightType {
    fn as_str(self) -> &'static str {
        match self {
            InsightType::Conflict => "conflict",
            InsightType::Gap => "gap",
            InsightType::Transitive => "transitive",
            InsightType::Other => "other",
        }
    }

    fn parse(s: &str) -> InsightType {
        match s {
            "conflict" => InsightType::Conflict,
            "gap" => InsightType::Gap,
            "transitive" => InsightType::Transitive,
            _ => InsightType::Other,
        }
    }
}

/// Where an insight stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum InsightStatus {
    /// As proposed by the agent.
    Proposed,
    /// Accepted by a member.
    Accepted,
    /// Rejected by a member.
    Rejected,
}

impl InsightStatus {
    fn as_str(self) -> &'static str {
        match self {
            InsightStatus::Proposed => "proposed",
            InsightStatus::Accepted => "accepted",
            InsightStatus::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> InsightStatus {
        match s {
            "accepted" => InsightStatus::Accepted,
            "rejected" => InsightStatus::Rejected,
            _ => InsightStatus::Proposed,
        }
    }
}

/// An insight inferred over the graph.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex)]
pub struct Insight {
    /// The row id (UUID).
    pub row_id: Uuid,
    /// What kind of conclusion.
    pub insight_type: InsightType,
    /// The conclusion.
    pub statement: String,
    /// Why.
    pub rationale: Option<String>,
    /// The agent's confidence, 0 to 1.
    pub confidence: f64,
    /// Where it stands.
    pub status: InsightStatus,
    /// The model that proposed it.
    pub model: Option<String>,
    /// The prompt version used.
    pub prompt_version: Option<String>,
    /// The pipeline job that proposed it.
    pub job_id: Option<Uuid>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl Row for Insight {
    const COLUMNS: &'static str = "i.id, i.insight_type, i.statement, i.rationale, i.confidence, \
        i.status, i.model, i.prompt_version, i.job_id, i.created_at, i.updated_at";
    const FROM: &'static str = "FROM app.inferred_insights i";
    const ID: &'static str = "i.id";

    fn from_row(r: &tokio_postgres::Row, o: usize) -> Self {
        Insight {
            row_id: r.get(o),
            insight_type: InsightType::parse(r.get(o + 1)),
            statement: r.get(o + 2),
            rationale: r.get(o + 3),
            confidence: r.get(o + 4),
            status: InsightStatus::parse(r.get(o + 5)),
            model: r.get(o + 6),
            prompt_version: r.get(o + 7),
            job_id: r.get(o + 8),
            created_at: r.get(o + 9),
            updated_at: r.get(o + 10),
        }
    }

    fn row_id(&self) -> Uuid {
        self.row_id
    }
}

#[ComplexObject]
impl Insight {
    /// The global ID.
    pub async fn id(&self, _ctx: &Context<'_>) -> Result<ID> {
        Ok(global_id(Kind::Insight, self.row_id))
    }

    /// The entities the insight rests on.
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    async fn supporting_nodes(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        order_by: Option<NodeOrder>,
    ) -> Result<Connection<GraphNode>> {
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        let listing = NodeListing::new(NodeVia::Insight, None, order_by, window)?;
        child_connection(ctx, self.row_id, listing).await
    }

    /// The relations the insight rests on.
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    async fn supporting_edges(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        order_by: Option<EdgeOrder>,
    ) -> Result<Connection<GraphEdge>> {
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        let listing = EdgeListing::new(EdgeVia::Insight, None, order_by, window)?;
        child_connection(ctx, self.row_id, listing).await
    }
}

/// Orders of insight listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Enum, Default)]
pub enum InsightOrder {
    /// Newest first.
    #[default]
    CreatedAtDesc,
    /// Oldest first.
    CreatedAtAsc,
    /// Most confident first.
    ConfidenceDesc,
}

/// Which insights to list.
#[derive(Clone, Debug, Default, InputObject)]
pub struct InsightFilter {
    /// Only these statuses.
    pub status: Option<Vec<InsightStatus>>,
    /// Only these kinds.
    pub insight_types: Option<Vec<InsightType>>,
    /// Confidence at least this.
    pub min_confidence: Option<f64>,
    /// Confidence at most this.
    pub max_confidence: Option<f64>,
    /// Created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this instant.
    pub created_before: Option<DateTime<Utc>>,
}

/// Where insights are listed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InsightVia {
    /// The root `insights` field.
    Root,
    /// Insights resting on entities of a paper (`Paper.insights`).
    Paper,
}

/// An insight listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InsightListing {
    via: InsightVia,
    window: Window,
    order: InsightOrder,
    status: Option<Vec<InsightStatus>>,
    insight_types: Option<Vec<InsightType>>,
    min_confidence: Option<u64>,
    max_confidence: Option<u64>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
}

impl InsightListing {
    /// Validates the arguments into a listing.
    pub fn new(
        via: InsightVia,
        filter: Option<InsightFilter>,
        order: Option<InsightOrder>,
        window: Window,
    ) -> Result<InsightListing> {
        let f = filter.unwrap_or_default();
        for c in [f.min_confidence, f.max_confidence].into_iter().flatten() {
            if !(0.0..=1.0).contains(&c) {
                return Err(error(
                    ErrorCode::BadUserInput,
                    "confidence bounds are between 0 and 1",
                ));
            }
        }
        Ok(InsightListing {
            via,
            window,
            order: order.unwrap_or_default(),
            status: sorted(f.status),
            insight_types: sorted(f.insight_types),
            min_confidence: f.min_confidence.map(f64::to_bits),
            max_confidence: f.max_confidence.map(f64::to_bits),
            created_after: f.created_after,
            created_before: f.created_before,
        })
    }
}

impl Listing for InsightListing {
    type Item = Insight;

    fn root_from(&self) -> &'static str {
        "FROM app.inferred_insights i WHERE true"
    }

    fn child_from(&self) -> &'static str {
        match self.via {
            InsightVia::Root => "FROM app.inferred_insights i WHERE true",
            InsightVia::Paper => {
                "FROM app.inferred_insights i WHERE i.id IN (SELECT inn.insight_id \
                 FROM app.insight_nodes inn WHERE inn.node_id IN (SELECT m.node_id \
                 FROM app.paper_sections s JOIN app.entity_mentions m \
                 ON m.tenant_id = s.tenant_id AND m.section_id = s.id WHERE s.paper_id = k.parent))"
            }
        }
    }

    fn filters(&self, sql: &mut Sql) {
        if let Some(status) = &self.status {
            let status: Vec<&'static str> = status.iter().map(|s| s.as_str()).collect();
            sql.push(" AND i.status = ANY(").bind(status).push(")");
        }
        if let Some(types) = &self.insight_types {
            let types: Vec<&'static str> = types.iter().map(|t| t.as_str()).collect();
            sql.push(" AND i.insight_type = ANY(").bind(types).push(")");
        }
        if let Some(bits) = self.min_confidence {
            sql.push(" AND i.confidence >= ").bind(f64::from_bits(bits));
        }
        if let Some(bits) = self.max_confidence {
            sql.push(" AND i.confidence <= ").bind(f64::from_bits(bits));
        }
        if let Some(t) = self.created_after {
            sql.push(" AND i.created_at >= ").bind(t);
        }
        if let Some(t) = self.created_before {
            sql.push(" AND i.created_at < ").bind(t);
        }
    }

    fn sort(&self) -> Sort {
        let (name, column, sql_type, desc) = match self.order {
            InsightOrder::CreatedAtDesc => ("created_at_desc", "i.created_at", "timestamptz", true),
            InsightOrder::CreatedAtAsc => ("created_at_asc", "i.created_at", "timestamptz", false),
            InsightOrder::ConfidenceDesc => {
                ("confidence_desc", "i.confidence", "double precision", true)
            }
        };
        Sort {
            name,
            column,
            sql_type,
            id_column: "i.id",
            desc,
        }
    }

    fn window(&self) -> &Window {
        &self.window
    }
}

/// Insight queries.
#[derive(Default)]
pub struct InsightQuery;

#[Object]
impl InsightQuery {
    /// The tenant's insights.
    #[graphql(
        guard = "MemberGuard",
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn insights(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<InsightFilter>,
        order_by: Option<InsightOrder>,
    ) -> Result<Connection<Insight>> {
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        let listing = InsightListing::new(InsightVia::Root, filter, order_by, window)?;
        root_connection(ctx, listing).await
    }

    /// One insight by id (global ID or UUID).
    #[graphql(guard = "MemberGuard")]
    async fn insight(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Insight>> {
        let id = row_id(&id, Kind::Insight, "id")?;
        loader(ctx)?.load_one(Id::<Insight>::new(id)).await
    }
}

/// Insight mutations.
#[derive(Default)]
pub struct InsightMutation;

#[Object]
impl InsightMutation {
    /// Accepts, rejects or reopens an insight (owners and members).
    #[graphql(guard = "MemberGuard")]
    async fn update_insight_status(
        &self,
        ctx: &Context<'_>,
        id: ID,
        status: InsightStatus,
    ) -> Result<Insight> {
        let id = row_id(&id, Kind::Insight, "id")?;
        let s = session(ctx)?;
        let sql = format!(
            "UPDATE app.inferred_insights i SET status = $2, updated_at = now() WHERE i.id = $1 RETURNING {}",
            Insight::COLUMNS
        );
        let row = s
            .query_opt(&sql, &[&id, &status.as_str()])
            .await
            .map_err(db_error)?;
        written(s, row.map(|r| Insight::from_row(&r, 0)), "insight")
    }
}
