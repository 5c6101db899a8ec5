//! Storing an ingested document in the session's tenant: one paper with its sections, or, when
//! the tenant already has a paper with the same content hash, nothing at all. Metadata detected
//! in the text fill what was not given; a detected DOI or arXiv id that a paper of the tenant
//! has already names that paper, and nothing is stored either.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use uuid::Uuid;

use super::ingest::{self, source_kind_name, Document, SourceFormat};
use super::metadata;
use crate::db::{DbError, TenantSession};
use crate::graphql::loaders::{loader, Id};
use crate::graphql::{db_error, error, session, ErrorCode, MemberGuard};
use crate::papers::{Paper, SourceKind, INSERT_SECTIONS};

/// Metadata given with a document; what is given overrides what was detected.
#[derive(Clone, Debug, Default)]
pub struct PaperMeta {
    /// Title (detected: the first heading or line).
    pub title: Option<String>,
    /// Authors.
    pub authors: Vec<String>,
    /// DOI.
    pub doi: Option<String>,
    /// arXiv id.
    pub arxiv_id: Option<String>,
    /// Year.
    pub year: Option<i32>,
    /// Venue.
    pub venue: Option<String>,
}

/// What storing did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestOutcome {
    /// The paper (new, or the one with the same content).
    pub paper: Uuid,
    /// A new paper was created (false: the same content was ingested before).
    pub created: bool,
    /// Sections stored (0 when nothing was created).
    pub sections: usize,
}

/// Stores `doc` with `meta` in the session's tenant.
pub async fn store(
    session: &TenantSession,
    doc: &Document,
    kind: impl Into<SourceKind>,
    meta: &PaperMeta,
) -> Result<IngestOutcome, DbError> {
    let title = meta.title.clone().unwrap_or_else(|| doc.title.clone());
    let row = session
        .query_opt(
            "INSERT INTO app.papers (tenant_id, title, authors, abstract, doi, arxiv_id, year, venue,
                 source_kind, content_hash)
             VALUES (app.tenant_id(), $1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant_id, content_hash) DO NOTHING RETURNING id",
            &[
                &title,
                &meta.authors,
                &doc.abstract_text,
                &meta.doi,
                &meta.arxiv_id,
                &meta.year,
                &meta.venue,
                &source_kind_name(kind.into()),
                &doc.content_hash,
            ],
        )
        .await?;
    let Some(row) = row else {
        let existing = session
            .query_one(
                "SELECT id FROM app.papers WHERE content_hash = $1",
                &[&doc.content_hash],
            )
            .await?;
        return Ok(IngestOutcome {
            paper: existing.get(0),
            created: false,
            sections: 0,
        });
    };
    let paper: Uuid = row.get(0);
    let kinds: Vec<&'static str> = doc.sections.iter().map(|s| s.kind.as_str()).collect();
    let headings: Vec<Option<String>> = doc.sections.iter().map(|s| s.heading.clone()).collect();
    let contents: Vec<String> = doc.sections.iter().map(|s| s.content.clone()).collect();
    session
        .execute(INSERT_SECTIONS, &[&paper, &kinds, &headings, &contents])
        .await?;
    Ok(IngestOutcome {
        paper,
        created: true,
        sections: doc.sections.len(),
    })
}

/// The tenant's paper with this DOI or this arXiv id (without version), if any.
pub async fn find_paper(
    session: &TenantSession,
    doi: Option<&str>,
    arxiv_id: Option<&str>,
) -> Result<Option<Uuid>, DbError> {
    if doi.is_none() && arxiv_id.is_none() {
        return Ok(None);
    }
    let row = session
        .query_opt(
            "SELECT id FROM app.papers WHERE doi = $1 OR arxiv_id = $2 ORDER BY created_at LIMIT 1",
            &[&doi, &arxiv_id],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Stores `doc` with the `given` metadata completed by the `detected` ones. When a detected
/// (not given) DOI or arXiv id is a paper's of the tenant already, the document is that paper:
/// nothing is stored.
pub async fn store_detected(
    session: &TenantSession,
    doc: &Document,
    kind: impl Into<SourceKind>,
    given: &PaperMeta,
    detected: PaperMeta,
) -> Result<IngestOutcome, DbError> {
    let meta = given.clone().or(detected);
    let doi = meta.doi.as_deref().filter(|_| given.doi.is_none());
    let arxiv_id = meta
        .arxiv_id
        .as_deref()
        .filter(|_| given.arxiv_id.is_none());
    if let Some(paper) = find_paper(session, doi, arxiv_id).await? {
        return Ok(IngestOutcome {
            paper,
            created: false,
            sections: 0,
        });
    }
    store(session, doc, kind, &meta).await
}

/// A document to ingest.
#[derive(InputObject)]
pub struct IngestPaperInput {
    /// The text.
    pub content: String,
    /// How it is written (plain text by default).
    #[graphql(default_with = "SourceFormat::Text")]
    pub format: SourceFormat,
    /// Title (detected from the text when absent).
    pub title: Option<String>,
    /// Authors (detected from the text when absent).
    #[graphql(default)]
    pub authors: Vec<String>,
    /// DOI (detected from the text when absent).
    pub doi: Option<String>,
    /// arXiv id (detected from the text when absent).
    pub arxiv_id: Option<String>,
    /// Year (detected from the text when absent).
    pub year: Option<i32>,
    /// Venue (detected from the text when absent).
    pub venue: Option<String>,
}

/// The result of `ingestPaper`.
#[derive(SimpleObject)]
pub struct IngestResult {
    /// The paper.
    pub paper: Paper,
    /// Whether it was created now (false: the same text was ingested before).
    pub created: bool,
    /// Sections created.
    pub sections: i32,
}

/// Ingestion mutations.
#[derive(Default)]
pub struct IngestMutation;

#[Object]
impl IngestMutation {
    /// Ingests a paper's text: detects its title, abstract and sections (long ones are
    /// chunked) and the metadata not given (authors, DOI, arXiv id, year, venue), and stores
    /// them. The same text ingested again changes nothing, and so does a text whose detected
    /// DOI or arXiv id is a paper's of the tenant already.
    #[graphql(guard = "MemberGuard")]
    async fn ingest_paper(
        &self,
        ctx: &Context<'_>,
        input: IngestPaperInput,
    ) -> Result<IngestResult> {
        let doc = ingest::parse(&input.content, input.format)
            .map_err(|e| error(ErrorCode::BadUserInput, e.to_string()))?;
        if input.year.is_some_and(|y| !(1000..=3000).contains(&y)) {
            return Err(error(
                ErrorCode::BadUserInput,
                "year is between 1000 and 3000",
            ));
        }
        let meta = PaperMeta {
            title: input.title.filter(|t| !t.trim().is_empty()),
            authors: input.authors,
            doi: input.doi,
            arxiv_id: input.arxiv_id,
            year: input.year,
            venue: input.venue,
        };
        let detected = metadata::detect(&input.content);
        let s = session(ctx)?;
        let outcome = store_detected(s, &doc, input.format, &meta, detected)
            .await
            .map_err(|e| {
                if e.sql_state().map(|c| c.code()) == Some("23505") {
                    return error(
                        ErrorCode::BadUserInput,
                        "a paper with this DOI or arXiv id exists in this tenant",
                    );
                }
                db_error(e)
            })?;
        let paper = loader(ctx)?
            .load_one(Id::<Paper>::new(outcome.paper))
            .await?
            .ok_or_else(|| error(ErrorCode::Internal, "the stored paper is not visible"))?;
        Ok(IngestResult {
            paper,
            created: outcome.created,
            sections: outcome.sections as i32,
        })
    }
}
