//! Papers and their sections: GraphQL types, listings, queries and mutations.

mod mutations;

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::graph::{
    EntityMention, GraphNode, MentionListing, NodeFilter, NodeListing, NodeOrder, NodeVia,
};
use crate::graphql::loaders::{child_connection, loader, root_connection, Id, Listing, Row};
use crate::graphql::pagination::{filter_text, sorted, Connection, Sort, Sql, Window};
use crate::graphql::relay::{global_id, row_id, Kind};
use crate::graphql::{max_page_size, MemberGuard};
use crate::insights::{Insight, InsightFilter, InsightListing, InsightOrder, InsightVia};

pub use mutations::{PaperMutation, INSERT_SECTIONS};

/// How a paper came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Enum)]
pub enum SourceKind {
    /// Entered through the API.
    Manual,
    /// Plain text.
    Text,
    /// Markdown.
    Markdown,
    /// A PDF's text layer.
    Pdf,
    /// Fetched from arXiv.
    Arxiv,
}

impl SourceKind {
    fn parse(s: &str) -> SourceKind {
        match s {
            "text" => SourceKind::Text,
            "markdown" => SourceKind::Markdown,
            "pdf" => SourceKind::Pdf,
            "arxiv" => SourceKind::Arxiv,
            _ => SourceKind::Manual,
        }
    }
}

/// The role of a section in a paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum SectionKind {
    /// The abstract.
    Abstract,
    /// Introduction.
    Introduction,
    /// Background and related work.
    Background,
    /// Methods.
    Methods,
    /// Results and experiments.
    Results,
    /// Discussion.
    Discussion,
    /// Conclusion.
    Conclusion,
    /// References.
    References,
    /// Anything else.
    Other,
}

impl SectionKind {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SectionKind::Abstract => "abstract",
            SectionKind::Introduction => "introduction",
            SectionKind::Background => "background",
            SectionKind::Methods => "methods",
            SectionKind::Results => "results",
            SectionKind::Discussion => "discussion",
            SectionKind::Conclusion => "conclusion",
            SectionKind::References => "references",
            SectionKind::Other => "other",
        }
    }

    fn parse(s: &str) -> SectionKind {
        [
            SectionKind::Abstract,
            SectionKind::Introduction,
            SectionKind::Background,
            SectionKind::Methods,
            SectionKind::Results,
            SectionKind::Discussion,
            SectionKind::Conclusion,
            SectionKind::References,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .unwrap_or(SectionKind::Other)
    }
}

/// A research paper.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex)]
pub struct Paper {
    /// The row id (UUID).
    pub row_id: Uuid,
    /// Title.
    pub title: String,
    /// Authors, in order.
    pub authors: Vec<String>,
    /// The abstract.
    #[graphql(name = "abstract")]
    pub abstract_text: Option<String>,
    /// DOI.
    pub doi: Option<String>,
    /// arXiv identifier.
    pub arxiv_id: Option<String>,
    /// Publication year.
    pub year: Option<i32>,
    /// Venue.
    pub venue: Option<String>,
    /// How it came in.
    pub source_kind: SourceKind,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl Row for Paper {
    const COLUMNS: &'static str =
        "p.id, p.title, p.authors, p.abstract, p.doi, p.arxiv_id, p.year, \
                                   p.venue, p.source_kind, p.created_at, p.updated_at";
    const FROM: &'static str = "FROM app.papers p";
    const ID: &'static str = "p.id";

    fn from_row(r: &tokio_postgres::Row, o: usize) -> Self {
        Paper {
            row_id: r.get(o),
            title: r.get(o + 1),
            authors: r.get(o + 2),
            abstract_text: r.get(o + 3),
            doi: r.get(o + 4),
            arxiv_id: r.get(o + 5),
            year: r.get(o + 6),
            venue: r.get(o + 7),
            source_kind: SourceKind::parse(r.get(o + 8)),
            created_at: r.get(o + 9),
            updated_at: r.get(o + 10),
        }
    }

    fn row_id(&self) -> Uuid {
        self.row_id
    }
}

#[ComplexObject]
impl Paper {
    /// The global ID.
    pub async fn id(&self, _ctx: &Context<'_>) -> Result<ID> {
        Ok(global_id(Kind::Paper, self.row_id))
    }

    /// The paper's sections, in reading order.
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    async fn sections(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        kinds: Option<Vec<SectionKind>>,
    ) -> Result<Connection<PaperSection>> {
        let listing = SectionListing {
            window: Window::new(first, after, last, before, max_page_size(ctx))?,
            kinds: sorted(kinds),
        };
        child_connection(ctx, self.row_id, listing).await
    }

    /// The entities mentioned in the paper.
    #[graphql(
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        filter: Option<NodeFilter>,
        order_by: Option<NodeOrder>,
    ) -> Result<Connection<GraphNode>> {
        let listing = NodeListing::new(
            NodeVia::Paper,
            filter,
            order_by,
            Window::new(first, after, last, before, max_page_size(ctx))?,
        )?;
        child_connection(ctx, self.row_id, listing).await
    }

    /// Insights resting on entities mentioned in the paper.
    #[graphql(
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
        let listing = InsightListing::new(
            InsightVia::Paper,
            filter,
            order_by,
            Window::new(first, after, last, before, max_page_size(ctx))?,
        )?;
        child_connection(ctx, self.row_id, listing).await
    }
}

/// A section of a paper.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex)]
pub struct PaperSection {
    /// The row id (UUID).
    pub row_id: Uuid,
    #[graphql(skip)]
    pub paper_id: Uuid,
    /// Position in the paper, from 0.
    pub ordinal: i32,
    /// The section's role.
    pub kind: SectionKind,
    /// Heading, as written.
    pub heading: Option<String>,
    /// The text.
    pub content: String,
    /// Created.
    pub created_at: DateTime<Utc>,
}

impl Row for PaperSection {
    const COLUMNS: &'static str =
        "s.id, s.paper_id, s.ordinal, s.kind, s.heading, s.content, s.created_at";
    const FROM: &'static str = "FROM app.paper_sections s";
    const ID: &'static str = "s.id";

    fn from_row(r: &tokio_postgres::Row, o: usize) -> Self {
        PaperSection {
            row_id: r.get(o),
            paper_id: r.get(o + 1),
            ordinal: r.get(o + 2),
            kind: SectionKind::parse(r.get(o + 3)),
            heading: r.get(o + 4),
            content: r.get(o + 5),
            created_at: r.get(o + 6),
        }
    }

    fn row_id(&self) -> Uuid {
        self.row_id
    }
}

#[ComplexObject]
impl PaperSection {
    /// The global ID.
    pub async fn id(&self, _ctx: &Context<'_>) -> Result<ID> {
        Ok(global_id(Kind::PaperSection, self.row_id))
    }

    /// The paper it belongs to.
    async fn paper(&self, ctx: &Context<'_>) -> Result<Option<Paper>> {
        loader(ctx)?.load_one(Id::<Paper>::new(self.paper_id)).await
    }

    /// Entities mentioned in this section, with their evidence.
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
        child_connection(ctx, self.row_id, MentionListing::by_section(window)).await
    }
}

/// Sections of a paper, in reading order.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SectionListing {
    window: Window,
    kinds: Option<Vec<SectionKind>>,
}

const SECTION_ORDER: Sort = Sort {
    name: "ordinal",
    column: "s.ordinal",
    sql_type: "integer",
    id_column: "s.id",
    desc: false,
};

impl Listing for SectionListing {
    type Item = PaperSection;

    fn root_from(&self) -> &'static str {
        "FROM app.paper_sections s WHERE true"
    }

    fn child_from(&self) -> &'static str {
        "FROM app.paper_sections s WHERE s.paper_id = k.parent"
    }

    fn filters(&self, sql: &mut Sql) {
        if let Some(kinds) = &self.kinds {
            let kinds: Vec<&'static str> = kinds.iter().map(|k| k.as_str()).collect();
            sql.push(" AND s.kind = ANY(").bind(kinds).push(")");
        }
    }

    fn sort(&self) -> Sort {
        SECTION_ORDER
    }

    fn window(&self) -> &Window {
        &self.window
    }
}

/// Orders of the papers connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Enum, Default)]
pub enum PaperOrder {
    /// Newest first.
    #[default]
    CreatedAtDesc,
    /// Oldest first.
    CreatedAtAsc,
    /// By title, A to Z.
    TitleAsc,
    /// By title, Z to A.
    TitleDesc,
}

impl PaperOrder {
    fn sort(self) -> Sort {
        let (name, column, sql_type, desc) = match self {
            PaperOrder::CreatedAtDesc => ("created_at_desc", "p.created_at", "timestamptz", true),
            PaperOrder::CreatedAtAsc => ("created_at_asc", "p.created_at", "timestamptz", false),
            PaperOrder::TitleAsc => ("title_asc", "p.title", "text", false),
            PaperOrder::TitleDesc => ("title_desc", "p.title", "text", true),
        };
        Sort {
            name,
            column,
            sql_type,
            id_column: "p.id",
            desc,
        }
    }
}

/// Which papers to list.
#[derive(Clone, Debug, Default, InputObject)]
pub struct PaperFilter {
    /// Full-text match on title and abstract (web-search syntax: words, "phrases", -not).
    pub text: Option<String>,
    /// Exact DOI.
    pub doi: Option<String>,
    /// Exact arXiv id.
    pub arxiv_id: Option<String>,
    /// Published in or after this year.
    pub year_from: Option<i32>,
    /// Published in or before this year.
    pub year_to: Option<i32>,
    /// Created at or after this instant.
    pub created_after: Option<DateTime<Utc>>,
    /// Created before this instant.
    pub created_before: Option<DateTime<Utc>>,
    /// How the papers came in.
    pub source_kinds: Option<Vec<SourceKind>>,
    /// Papers mentioning this entity (a GraphNode id).
    pub mentions_node: Option<ID>,
}

/// The papers listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PaperListing {
    via: PaperVia,
    window: Window,
    order: PaperOrder,
    text: Option<String>,
    doi: Option<String>,
    arxiv_id: Option<String>,
    year_from: Option<i32>,
    year_to: Option<i32>,
    created_after: Option<DateTime<Utc>>,
    created_before: Option<DateTime<Utc>>,
    source_kinds: Option<Vec<&'static str>>,
    mentions_node: Option<Uuid>,
}

/// Where papers are listed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PaperVia {
    /// The root `papers` field.
    Root,
    /// Papers mentioning an entity (`GraphNode.papers`).
    Node,
}

impl PaperListing {
    /// Validates the arguments into a listing.
    pub fn new(
        via: PaperVia,
        filter: Option<PaperFilter>,
        order: Option<PaperOrder>,
        window: Window,
    ) -> Result<PaperListing> {
        let f = filter.unwrap_or_default();
        let mut kinds: Option<Vec<&'static str>> = f.source_kinds.map(|ks| {
            ks.into_iter()
                .map(|k| match k {
                    SourceKind::Manual => "manual",
                    SourceKind::Text => "text",
                    SourceKind::Markdown => "markdown",
                    SourceKind::Pdf => "pdf",
                    SourceKind::Arxiv => "arxiv",
                })
                .collect()
        });
        if let Some(k) = kinds.as_mut() {
            k.sort();
            k.dedup();
        }
        Ok(PaperListing {
            via,
            window,
            order: order.unwrap_or_default(),
            text: filter_text(f.text)?,
            doi: f.doi,
            arxiv_id: f.arxiv_id,
            year_from: f.year_from,
            year_to: f.year_to,
            created_after: f.created_after,
            created_before: f.created_before,
            source_kinds: kinds,
            mentions_node: f
                .mentions_node
                .map(|id| row_id(&id, Kind::GraphNode, "filter.mentionsNode"))
                .transpose()?,
        })
    }
}

/// Papers mentioning node `$`: the sections' papers of the node's mentions.
const PAPERS_OF_NODE: &str = "p.id IN (SELECT s.paper_id FROM app.entity_mentions m \
     JOIN app.paper_sections s ON s.tenant_id = m.tenant_id AND s.id = m.section_id \
     WHERE m.node_id = ";

impl Listing for PaperListing {
    type Item = Paper;

    fn root_from(&self) -> &'static str {
        "FROM app.papers p WHERE true"
    }

    fn child_from(&self) -> &'static str {
        match self.via {
            PaperVia::Root => "FROM app.papers p WHERE true",
            PaperVia::Node => {
                "FROM app.papers p WHERE p.id IN (SELECT s.paper_id FROM app.entity_mentions m \
                 JOIN app.paper_sections s ON s.tenant_id = m.tenant_id AND s.id = m.section_id \
                 WHERE m.node_id = k.parent)"
            }
        }
    }

    fn filters(&self, sql: &mut Sql) {
        if let Some(text) = &self.text {
            sql.push(" AND p.search @@ websearch_to_tsquery('english', ")
                .bind(text.clone())
                .push(")");
        }
        if let Some(doi) = &self.doi {
            sql.push(" AND p.doi = ").bind(doi.clone());
        }
        if let Some(arxiv) = &self.arxiv_id {
            sql.push(" AND p.arxiv_id = ").bind(arxiv.clone());
        }
        if let Some(y) = self.year_from {
            sql.push(" AND p.year >= ").bind(y);
        }
        if let Some(y) = self.year_to {
            sql.push(" AND p.year <= ").bind(y);
        }
        if let Some(t) = self.created_after {
            sql.push(" AND p.created_at >= ").bind(t);
        }
        if let Some(t) = self.created_before {
            sql.push(" AND p.created_at < ").bind(t);
        }
        if let Some(kinds) = &self.source_kinds {
            sql.push(" AND p.source_kind = ANY(")
                .bind(kinds.clone())
                .push(")");
        }
        if let Some(node) = self.mentions_node {
            sql.push(" AND ").push(PAPERS_OF_NODE).bind(node).push(")");
        }
    }

    fn sort(&self) -> Sort {
        self.order.sort()
    }

    fn window(&self) -> &Window {
        &self.window
    }
}

/// Paper queries.
#[derive(Default)]
pub struct PaperQuery;

#[Object]
impl PaperQuery {
    /// The tenant's papers.
    #[graphql(
        guard = "MemberGuard",
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
        let listing = PaperListing::new(
            PaperVia::Root,
            filter,
            order_by,
            Window::new(first, after, last, before, max_page_size(ctx))?,
        )?;
        root_connection(ctx, listing).await
    }

    /// One paper by id (global ID or UUID); null when it does not exist in this tenant.
    #[graphql(guard = "MemberGuard")]
    async fn paper(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Paper>> {
        let id = row_id(&id, Kind::Paper, "id")?;
        loader(ctx)?.load_one(Id::<Paper>::new(id)).await
    }
}
