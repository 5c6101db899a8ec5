//! Creating, changing and deleting papers with their sections (owners and members).

use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result, ID};
use uuid::Uuid;

use super::{Paper, SectionKind};
use crate::graphql::loaders::Row;
use crate::graphql::relay::{row_id, Kind};
use crate::graphql::{db_error, error, session, written, ErrorCode, MemberGuard};

/// Most sections in one paper.
const MAX_SECTIONS: usize = 1000;

/// A section of a new paper.
#[derive(InputObject)]
pub struct SectionInput {
    /// The heading, as written.
    pub heading: Option<String>,
    /// The section's role (other by default).
    pub kind: Option<SectionKind>,
    /// The text (not empty).
    pub content: String,
}

/// A new paper.
#[derive(InputObject)]
pub struct CreatePaperInput {
    /// Title (1 to 1000 characters).
    pub title: String,
    /// Authors, in order.
    #[graphql(default)]
    pub authors: Vec<String>,
    /// The abstract.
    #[graphql(name = "abstract")]
    pub abstract_text: Option<String>,
    /// DOI (unique in the tenant).
    pub doi: Option<String>,
    /// arXiv id (unique in the tenant).
    pub arxiv_id: Option<String>,
    /// Publication year.
    pub year: Option<i32>,
    /// Venue.
    pub venue: Option<String>,
    /// The sections, in reading order.
    #[graphql(default)]
    pub sections: Vec<SectionInput>,
}

/// Changes to a paper; absent fields stay, null clears optional ones.
#[derive(InputObject)]
pub struct UpdatePaperInput {
    /// New title.
    pub title: Option<String>,
    /// New authors.
    pub authors: Option<Vec<String>>,
    /// New abstract.
    #[graphql(name = "abstract")]
    pub abstract_text: MaybeUndefined<String>,
    /// New DOI.
    pub doi: MaybeUndefined<String>,
    /// New arXiv id.
    pub arxiv_id: MaybeUndefined<String>,
    /// New year.
    pub year: MaybeUndefined<i32>,
    /// New venue.
    pub venue: MaybeUndefined<String>,
    /// Replaces all sections (and with them the mentions extracted from them).
    pub sections: Option<Vec<SectionInput>>,
}

fn check_title(title: &str) -> Result<()> {
    if title.trim().is_empty() || title.chars().count() > 1000 {
        return Err(error(
            ErrorCode::BadUserInput,
            "title has 1 to 1000 characters",
        ));
    }
    Ok(())
}

fn check_year(year: Option<i32>) -> Result<()> {
    if year.is_some_and(|y| !(1000..=3000).contains(&y)) {
        return Err(error(
            ErrorCode::BadUserInput,
            "year is between 1000 and 3000",
        ));
    }
    Ok(())
}

fn check_authors(authors: &[String]) -> Result<()> {
    if authors.len() > 500 || authors.iter().any(|a| a.trim().is_empty() || a.len() > 300) {
        return Err(error(
            ErrorCode::BadUserInput,
            "at most 500 authors, each 1 to 300 characters",
        ));
    }
    Ok(())
}

/// Section columns (kinds, headings, contents) as arrays, for one `unnest` insert.
type SectionArrays = (Vec<&'static str>, Vec<Option<String>>, Vec<String>);

/// Validates sections into [`SectionArrays`].
fn section_arrays(sections: &[SectionInput]) -> Result<SectionArrays> {
    if sections.len() > MAX_SECTIONS {
        return Err(error(
            ErrorCode::BadUserInput,
            format!("at most {MAX_SECTIONS} sections"),
        ));
    }
    if sections.iter().any(|s| s.content.trim().is_empty()) {
        return Err(error(ErrorCode::BadUserInput, "a section needs content"));
    }
    Ok((
        sections
            .iter()
            .map(|s| s.kind.unwrap_or(SectionKind::Other).as_str())
            .collect(),
        sections.iter().map(|s| s.heading.clone()).collect(),
        sections.iter().map(|s| s.content.clone()).collect(),
    ))
}

/// Inserts sections `$2…$4` (kinds, headings, contents) of paper `$1`, numbered from 0 in the
/// order given, each with the SHA-256 of its content.
pub const INSERT_SECTIONS: &str = "INSERT INTO app.paper_sections \
     (tenant_id, paper_id, ordinal, kind, heading, content, content_hash) \
     SELECT app.tenant_id(), $1, x.n - 1, x.kind, x.heading, x.content, \
            encode(sha256(convert_to(x.content, 'UTF8')), 'hex') \
     FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS x (kind, heading, content, n)";

fn unset<T: Clone>(value: &MaybeUndefined<T>) -> (bool, Option<T>) {
    match value {
        MaybeUndefined::Undefined => (false, None),
        MaybeUndefined::Null => (true, None),
        MaybeUndefined::Value(v) => (true, Some(v.clone())),
    }
}

/// A unique violation on a paper as a clear input error.
fn paper_conflict(err: crate::db::DbError) -> async_graphql::Error {
    if err.sql_state().map(|c| c.code()) == Some("23505") {
        return error(
            ErrorCode::BadUserInput,
            "a paper with this DOI or arXiv id exists in this tenant",
        );
    }
    db_error(err)
}

/// Paper mutations.
#[derive(Default)]
pub struct PaperMutation;

#[Object]
impl PaperMutation {
    /// Creates a paper with its sections.
    #[graphql(guard = "MemberGuard")]
    async fn create_paper(&self, ctx: &Context<'_>, input: CreatePaperInput) -> Result<Paper> {
        check_title(&input.title)?;
        check_year(input.year)?;
        check_authors(&input.authors)?;
        let (kinds, headings, contents) = section_arrays(&input.sections)?;
        let s = session(ctx)?;
        let row = s
            .query_one(
                &format!(
                    "INSERT INTO app.papers AS p (tenant_id, title, authors, abstract, doi, arxiv_id, \
                     year, venue, source_kind) \
                     VALUES (app.tenant_id(), $1, $2, $3, $4, $5, $6, $7, 'manual') RETURNING {}",
                    Paper::COLUMNS
                ),
                &[
                    &input.title.trim(),
                    &input.authors,
                    &input.abstract_text,
                    &input.doi,
                    &input.arxiv_id,
                    &input.year,
                    &input.venue,
                ],
            )
            .await
            .map_err(paper_conflict)?;
        let paper = Paper::from_row(&row, 0);
        if !kinds.is_empty() {
            s.execute(
                INSERT_SECTIONS,
                &[&paper.row_id, &kinds, &headings, &contents],
            )
            .await
            .map_err(db_error)?;
        }
        Ok(paper)
    }

    /// Changes a paper.
    #[graphql(guard = "MemberGuard")]
    async fn update_paper(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdatePaperInput,
    ) -> Result<Paper> {
        let id = row_id(&id, Kind::Paper, "id")?;
        if let Some(title) = &input.title {
            check_title(title)?;
        }
        if let MaybeUndefined::Value(y) = input.year {
            check_year(Some(y))?;
        }
        if let Some(authors) = &input.authors {
            check_authors(authors)?;
        }
        let sections = input.sections.as_deref().map(section_arrays).transpose()?;
        let (set_abstract, abstract_text) = unset(&input.abstract_text);
        let (set_doi, doi) = unset(&input.doi);
        let (set_arxiv, arxiv) = unset(&input.arxiv_id);
        let (set_year, year) = unset(&input.year);
        let (set_venue, venue) = unset(&input.venue);
        let s = session(ctx)?;
        let row = s
            .query_opt(
                &format!(
                    "UPDATE app.papers p SET title = coalesce($2, p.title), \
                     authors = coalesce($3, p.authors), \
                     abstract = CASE WHEN $4 THEN $5 ELSE p.abstract END, \
                     doi = CASE WHEN $6 THEN $7 ELSE p.doi END, \
                     arxiv_id = CASE WHEN $8 THEN $9 ELSE p.arxiv_id END, \
                     year = CASE WHEN $10 THEN $11 ELSE p.year END, \
                     venue = CASE WHEN $12 THEN $13 ELSE p.venue END, \
                     updated_at = now() WHERE p.id = $1 RETURNING {}",
                    Paper::COLUMNS
                ),
                &[
                    &id,
                    &input.title.as_deref().map(str::trim),
                    &input.authors,
                    &set_abstract,
                    &abstract_text,
                    &set_doi,
                    &doi,
                    &set_arxiv,
                    &arxiv,
                    &set_year,
                    &year,
                    &set_venue,
                    &venue,
                ],
            )
            .await
            .map_err(paper_conflict)?;
        let paper = written(s, row.map(|r| Paper::from_row(&r, 0)), "paper")?;
        if let Some((kinds, headings, contents)) = sections {
            s.execute("DELETE FROM app.paper_sections WHERE paper_id = $1", &[&id])
                .await
                .map_err(db_error)?;
            if !kinds.is_empty() {
                s.execute(INSERT_SECTIONS, &[&id, &kinds, &headings, &contents])
                    .await
                    .map_err(db_error)?;
            }
        }
        Ok(paper)
    }

    /// Deletes a paper with its sections, their mentions and its jobs. Returns its id.
    #[graphql(guard = "MemberGuard")]
    async fn delete_paper(&self, ctx: &Context<'_>, id: ID) -> Result<ID> {
        let row = row_id(&id, Kind::Paper, "id")?;
        let s = session(ctx)?;
        let deleted = s
            .query_opt("DELETE FROM app.papers WHERE id = $1 RETURNING id", &[&row])
            .await
            .map_err(db_error)?
            .map(|r| r.get::<_, Uuid>(0));
        written(s, deleted, "paper")?;
        Ok(id)
    }
}
