//! Merge candidates: pairs of entities that entity resolution found alike (similar names of the
//! same type) but did not merge. A member merges a pair (`mergeNodes` semantics, the first node
//! kept) or dismisses it. Nothing is ever merged automatically, and merging one pair never merges
//! another pair that shares a node.

use async_graphql::{ComplexObject, Context, Enum, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::graph::{merge_into, GraphNode};
use crate::graphql::loaders::{loader, root_connection, Id, Listing, Row};
use crate::graphql::pagination::{sorted, Connection, Sort, Sql, Window};
use crate::graphql::{db_error, error, max_page_size, session, written, ErrorCode, MemberGuard};

/// Where a candidate stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Enum)]
pub enum CandidateStatus {
    /// Waiting for review.
    Open,
    /// Merged (the row then disappears with the merged node; kept for symmetry).
    Merged,
    /// Dismissed: the two are different things.
    Dismissed,
}

impl CandidateStatus {
    fn as_str(self) -> &'static str {
        match self {
            CandidateStatus::Open => "open",
            CandidateStatus::Merged => "merged",
            CandidateStatus::Dismissed => "dismissed",
        }
    }

    fn parse(s: &str) -> CandidateStatus {
        match s {
            "merged" => CandidateStatus::Merged,
            "dismissed" => CandidateStatus::Dismissed,
            _ => CandidateStatus::Open,
        }
    }
}

/// Two entities that may be the same.
#[derive(Clone, Debug, SimpleObject)]
#[graphql(complex)]
pub struct MergeCandidate {
    /// The candidate's id (UUID).
    pub id: Uuid,
    /// How alike, 0 to 1.
    pub score: f64,
    /// Which signal made them alike (edit distance, token overlap, …).
    pub reason: String,
    /// Where it stands.
    pub status: CandidateStatus,
    /// The job whose resolution stage proposed it.
    pub job_id: Option<Uuid>,
    /// Proposed.
    pub created_at: DateTime<Utc>,
    #[graphql(skip)]
    node_a: Uuid,
    #[graphql(skip)]
    node_b: Uuid,
}

impl Row for MergeCandidate {
    const COLUMNS: &'static str =
        "c.id, c.score, c.reason, c.status, c.job_id, c.created_at, c.node_a, c.node_b";
    const FROM: &'static str = "FROM app.merge_candidates c";
    const ID: &'static str = "c.id";

    fn from_row(r: &tokio_postgres::Row, o: usize) -> Self {
        MergeCandidate {
            id: r.get(o),
            score: r.get(o + 1),
            reason: r.get(o + 2),
            status: CandidateStatus::parse(r.get(o + 3)),
            job_id: r.get(o + 4),
            created_at: r.get(o + 5),
            node_a: r.get(o + 6),
            node_b: r.get(o + 7),
        }
    }

    fn row_id(&self) -> Uuid {
        self.id
    }
}

#[ComplexObject]
impl MergeCandidate {
    /// One of the pair (kept by `resolveMergeCandidate(decision: MERGE)`).
    async fn node_a(&self, ctx: &Context<'_>) -> Result<Option<GraphNode>> {
        loader(ctx)?
            .load_one(Id::<GraphNode>::new(self.node_a))
            .await
    }

    /// The other (merged into `nodeA` by `resolveMergeCandidate(decision: MERGE)`).
    async fn node_b(&self, ctx: &Context<'_>) -> Result<Option<GraphNode>> {
        loader(ctx)?
            .load_one(Id::<GraphNode>::new(self.node_b))
            .await
    }
}

/// A listing of candidates (highest score first).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CandidateListing {
    window: Window,
    status: Option<Vec<CandidateStatus>>,
}

impl Listing for CandidateListing {
    type Item = MergeCandidate;

    fn root_from(&self) -> &'static str {
        "FROM app.merge_candidates c WHERE true"
    }

    fn child_from(&self) -> &'static str {
        "FROM app.merge_candidates c WHERE (c.node_a = k.parent OR c.node_b = k.parent)"
    }

    fn filters(&self, sql: &mut Sql) {
        if let Some(status) = &self.status {
            let status: Vec<&'static str> = status.iter().map(|s| s.as_str()).collect();
            sql.push(" AND c.status = ANY(").bind(status).push(")");
        }
    }

    fn sort(&self) -> Sort {
        Sort {
            name: "created_at_desc",
            column: "c.created_at",
            sql_type: "timestamptz",
            id_column: "c.id",
            desc: true,
        }
    }

    fn window(&self) -> &Window {
        &self.window
    }
}

/// Merge-candidate queries.
#[derive(Default)]
pub struct CandidateQuery;

#[Object]
impl CandidateQuery {
    /// Pairs of entities that may be the same, newest first (open ones by default).
    #[graphql(
        guard = "MemberGuard",
        complexity = "child_complexity.saturating_mul(first.or(last).unwrap_or(20).max(1) as usize).min(1 << 32)"
    )]
    async fn merge_candidates(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
        #[graphql(default_with = "Some(vec![CandidateStatus::Open])")] status: Option<
            Vec<CandidateStatus>,
        >,
    ) -> Result<Connection<MergeCandidate>> {
        let window = Window::new(first, after, last, before, max_page_size(ctx))?;
        root_connection(
            ctx,
            CandidateListing {
                window,
                status: sorted(status),
            },
        )
        .await
    }
}

/// What to do with a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Enum)]
pub enum CandidateDecision {
    /// Merge `nodeB` into `nodeA`.
    Merge,
    /// They are different: keep both, and do not propose the pair again.
    Dismiss,
}

/// Merge-candidate mutations.
#[derive(Default)]
pub struct CandidateMutation;

#[Object]
impl CandidateMutation {
    /// Merges or dismisses an open candidate. Merging returns the kept node.
    #[graphql(guard = "MemberGuard")]
    async fn resolve_merge_candidate(
        &self,
        ctx: &Context<'_>,
        id: Uuid,
        decision: CandidateDecision,
    ) -> Result<Option<GraphNode>> {
        let s = session(ctx)?;
        let row = s
            .query_opt(
                "UPDATE app.merge_candidates SET status = $2, reviewed_by = app.user_id(),
                     reviewed_at = now()
                 WHERE id = $1 AND status = 'open' RETURNING node_a, node_b",
                &[
                    &id,
                    &if decision == CandidateDecision::Merge {
                        "merged"
                    } else {
                        "dismissed"
                    },
                ],
            )
            .await
            .map_err(db_error)?;
        let Some(row) = row else {
            let exists = s
                .query_opt(
                    "SELECT status FROM app.merge_candidates WHERE id = $1",
                    &[&id],
                )
                .await
                .map_err(db_error)?;
            return match exists {
                Some(r) if s.role().is_some_and(|r| r != crate::ids::Role::Viewer) => Err(error(
                    ErrorCode::BadUserInput,
                    format!("the candidate is already {}", r.get::<_, &str>(0)),
                )),
                _ => written(s, None, "merge candidate"),
            };
        };
        match decision {
            CandidateDecision::Dismiss => Ok(None),
            CandidateDecision::Merge => {
                let kept = merge_into(s, row.get(0), row.get(1)).await?;
                written(s, kept, "entity").map(Some)
            }
        }
    }
}
