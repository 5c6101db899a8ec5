//! `search`: ranked full-text search over papers and sections, and fuzzy (trigram) search over
//! entity names, in one connection.
//!
//! Papers and sections match with `websearch_to_tsquery` and rank with `ts_rank_cd` normalised
//! to 0..1; entities match with pg_trgm's `%` and rank by `similarity`. Everything runs under
//! row-level security, and the search indexes (which lead with tenant_id) serve it: migration V5
//! makes `@@` and `%` usable inside index scans under RLS (see docs/ARCHITECTURE.md).

use std::future::Future;
use std::pin::Pin;

use async_graphql::{Context, Enum, Object, Result, SimpleObject};
use uuid::Uuid;

use crate::graph::GraphNode;
use crate::graphql::loaders::{loader, Id};
use crate::graphql::pagination::{Connection, Counter, Cursor, Page, Sql, Window};
use crate::graphql::{db_error, error, max_page_size, session, ErrorCode, MemberGuard};
use crate::papers::{Paper, PaperSection};

/// What to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum SearchKind {
    /// Paper titles and abstracts.
    Paper,
    /// Section headings and text.
    Section,
    /// Entity names.
    Node,
}

/// One search result.
#[derive(Clone, SimpleObject)]
pub struct SearchHit {
    /// What matched.
    pub kind: SearchKind,
    /// Relevance, 0 to 1 (text rank for papers and sections, name similarity for entities).
    pub score: f64,
    /// The matching passage with the matched words in `<mark>…</mark>` (the name for entities).
    pub snippet: Option<String>,
    /// The paper, when a paper matched.
    pub paper: Option<Paper>,
    /// The section, when a section matched.
    pub section: Option<PaperSection>,
    /// The entity, when an entity matched.
    pub node: Option<GraphNode>,
}

const PAPERS: &str = "SELECT 'paper' AS kind, p.id, \
     ts_rank_cd(p.search, websearch_to_tsquery('english', $1), 32)::float8 AS score \
     FROM app.papers p WHERE p.search @@ websearch_to_tsquery('english', $1)";
const SECTIONS: &str = "SELECT 'section' AS kind, s.id, \
     ts_rank_cd(s.search, websearch_to_tsquery('english', $1), 32)::float8 AS score \
     FROM app.paper_sections s WHERE s.search @@ websearch_to_tsquery('english', $1)";
const NODES: &str = "SELECT 'node' AS kind, n.id, similarity(n.name, $1)::float8 AS score \
     FROM app.nodes n WHERE n.name % $1";

/// The union of the kinds asked for, as `hits (kind, id, score)`.
fn hits(sql: &mut Sql, kinds: &[SearchKind]) {
    sql.push("(");
    for (i, kind) in kinds.iter().enumerate() {
        if i > 0 {
            sql.push(" UNION ALL ");
        }
        sql.push(match kind {
            SearchKind::Paper => PAPERS,
            SearchKind::Section => SECTIONS,
            SearchKind::Node => NODES,
        });
    }
    sql.push(") h");
}

/// The search query and kinds, validated.
#[derive(Clone)]
struct SearchArgs {
    query: String,
    kinds: Vec<SearchKind>,
}

struct SearchCount(SearchArgs);

impl Counter for SearchCount {
    fn count<'a>(
        &'a self,
        ctx: &'a Context<'_>,
    ) -> Pin<Box<dyn Future<Output = Result<i64>> + Send + 'a>> {
        Box::pin(async move {
            // $1, the query text, is used in every branch.
            let mut sql = Sql::new("SELECT count(*) FROM ");
            sql.bind_only(self.0.query.clone());
            hits(&mut sql, &self.0.kinds);
            let row = session(ctx)?
                .query_one(&sql.text, &sql.params())
                .await
                .map_err(db_error)?;
            Ok(row.get(0))
        })
    }
}

/// The `search` root field.
#[derive(Default)]
pub struct SearchQuery;

#[Object]
impl SearchQuery {
    /// Searches papers and sections (full text, ranked, with highlighted snippets) and entity
    /// names (fuzzy), best matches first.
    #[graphql(
        guard = "MemberGuard",
        complexity = "child_complexity.saturating_mul(first.unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    async fn search(
        &self,
        ctx: &Context<'_>,
        query: String,
        kinds: Option<Vec<SearchKind>>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<SearchHit>> {
        let query = query.trim().to_owned();
        if query.is_empty() || query.chars().count() > 500 {
            return Err(error(
                ErrorCode::BadUserInput,
                "a search query has 1 to 500 characters",
            ));
        }
        let mut kinds =
            kinds.unwrap_or_else(|| vec![SearchKind::Paper, SearchKind::Section, SearchKind::Node]);
        kinds.sort();
        kinds.dedup();
        if kinds.is_empty() {
            return Err(error(ErrorCode::BadUserInput, "kinds must not be empty"));
        }
        let window = Window::new(first, after, None, None, max_page_size(ctx))?;
        if window.after.as_ref().is_some_and(|c| c.order != "score") {
            return Err(error(
                ErrorCode::BadUserInput,
                "cursor belongs to another listing",
            ));
        }

        // $1 is the query text in every branch.
        let mut sql = Sql::new("SELECT h.kind, h.id, h.score, (h.score)::text, CASE h.kind \
            WHEN 'paper' THEN ts_headline('english', coalesce(p.abstract, p.title), \
                websearch_to_tsquery('english', $1), 'StartSel=<mark>, StopSel=</mark>, MaxFragments=2, MaxWords=25, MinWords=8') \
            WHEN 'section' THEN ts_headline('english', s.content, websearch_to_tsquery('english', $1), \
                'StartSel=<mark>, StopSel=</mark>, MaxFragments=2, MaxWords=25, MinWords=8') \
            ELSE n.name END \
            FROM (SELECT * FROM ");
        sql.bind_only(query.clone());
        hits(&mut sql, &kinds);
        sql.push(" WHERE true");
        if let Some(cursor) = &window.after {
            sql.push(" AND (h.score, h.id) < (")
                .bind(cursor.value.clone())
                .push("::text::float8, ")
                .bind(cursor.id)
                .push(")");
        }
        sql.push(" ORDER BY h.score DESC, h.id DESC LIMIT ")
            .bind((window.size + 1) as i64)
            .push(
                ") h LEFT JOIN app.papers p ON h.kind = 'paper' AND p.id = h.id \
                 LEFT JOIN app.paper_sections s ON h.kind = 'section' AND s.id = h.id \
                 LEFT JOIN app.nodes n ON h.kind = 'node' AND n.id = h.id \
                 ORDER BY h.score DESC, h.id DESC",
            );
        let rows = session(ctx)?
            .query(&sql.text, &sql.params())
            .await
            .map_err(db_error)?;

        let loader = loader(ctx)?;
        let ids = |kind: &str| -> Vec<Uuid> {
            rows.iter()
                .filter(|r| r.get::<_, &str>(0) == kind)
                .map(|r| r.get(1))
                .collect()
        };
        let (papers, sections, nodes) = tokio::try_join!(
            loader.load_many(ids("paper").into_iter().map(Id::<Paper>::new)),
            loader.load_many(ids("section").into_iter().map(Id::<PaperSection>::new)),
            loader.load_many(ids("node").into_iter().map(Id::<GraphNode>::new)),
        )?;
        let scanned = rows
            .iter()
            .map(|r| {
                let id: Uuid = r.get(1);
                let kind = match r.get::<_, &str>(0) {
                    "paper" => SearchKind::Paper,
                    "section" => SearchKind::Section,
                    _ => SearchKind::Node,
                };
                let hit = SearchHit {
                    kind,
                    score: r.get(2),
                    snippet: r.get(4),
                    paper: papers.get(&Id::new(id)).cloned(),
                    section: sections.get(&Id::new(id)).cloned(),
                    node: nodes.get(&Id::new(id)).cloned(),
                };
                let cursor = Cursor {
                    order: "score".into(),
                    value: r.get(3),
                    id,
                };
                (cursor, hit)
            })
            .collect();
        Ok(Connection::new(
            Page::from_scan(scanned, &window),
            SearchCount(SearchArgs { query, kinds }),
        ))
    }
}
