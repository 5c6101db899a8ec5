//! Ingestion from arXiv: an id or link is looked up in the arXiv API (an Atom feed), and the
//! paper's PDF is fetched and read like any PDF.
//!
//! - Ids: new style (`2301.01234`, `2301.01234v2`) and old style (`hep-th/9901001`,
//!   `math.GT/0309136v1`), optionally prefixed `arXiv:`; links to `arxiv.org/abs/…`,
//!   `/pdf/…` (with or without `.pdf`) and `/html/…`.
//! - Versions are revisions of one paper: the paper is stored under its id without the version
//!   (the tenant's unique key), and an id the tenant has already, in any version, is not fetched
//!   again: nothing changes. The version asked for is the one fetched (the latest when none is).
//!   A paper of the tenant with the DOI that arXiv gives is the same paper too.
//! - The feed's metadata (title, authors, abstract, year of first publication, DOI, journal
//!   reference as the venue) win over what is detected in the PDF's text; detection fills the
//!   rest.
//! - The PDF's address is the feed's `pdf` link, else `{base}/pdf/{id}`.
//! - arXiv asks API clients for one request every three seconds: requests to an arxiv.org host
//!   are spaced so. Answers are capped ([`MAX_FEED_BYTES`], the PDF size cap) and timed out.

use std::fmt;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use regex::Regex;
use uuid::Uuid;

use super::ingest::{self, IngestError, SourceFormat};
use super::metadata;
use super::pdf::{self, MAX_PDF_BYTES};
use super::store::{find_paper, store_detected, IngestOutcome, PaperMeta};
use crate::db::{Database, DbError};
use crate::ids::{TenantId, UserId};
use crate::papers::SourceKind;

/// The arXiv API's default address.
pub const DEFAULT_BASE: &str = "https://export.arxiv.org";

/// Largest API answer read, in bytes.
pub const MAX_FEED_BYTES: usize = 1024 * 1024;

/// An arXiv identifier, with the version asked for if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArxivId {
    id: String,
    version: Option<u32>,
}

static NEW_STYLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(\d{2})(\d{2})\.(\d{4,5})(?:v(\d{1,3}))?$").expect("valid regex")
});

static OLD_STYLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([a-z]+(?:-[a-z]+)?)(?:\.[A-Za-z]{2})?/(\d{2})(\d{2})(\d{3})(?:v(\d{1,3}))?$")
        .expect("valid regex")
});

static IN_TEXT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)(?:\barxiv:\s*|arxiv\.org/(?:abs|pdf)/)((?:[a-z]+(?:-[a-z]+)?(?:\.[a-z]{2})?/\d{7}|\d{4}\.\d{4,5})(?:v\d{1,3})?)",
    )
    .expect("valid regex")
});

impl ArxivId {
    /// Reads an id or an arxiv.org link; None when it is neither.
    pub fn parse(input: &str) -> Option<ArxivId> {
        let input = input.trim();
        let lower = input.to_ascii_lowercase();
        let bare = if let Some(rest) = ["https://", "http://"]
            .iter()
            .find_map(|scheme| lower.strip_prefix(scheme).map(|_| &input[scheme.len()..]))
        {
            let (host, path) = rest.split_once('/')?;
            let host = host.to_ascii_lowercase();
            if !matches!(
                host.as_str(),
                "arxiv.org" | "www.arxiv.org" | "export.arxiv.org"
            ) {
                return None;
            }
            let path = path.split(['?', '#']).next().unwrap_or_default();
            let path = path.trim_end_matches('/');
            let id = ["abs/", "pdf/", "html/"]
                .iter()
                .find_map(|p| path.strip_prefix(p))?;
            id.strip_suffix(".pdf").unwrap_or(id)
        } else if lower.starts_with("arxiv:") {
            input["arxiv:".len()..].trim_start()
        } else {
            input
        };
        ArxivId::parse_bare(bare)
    }

    fn parse_bare(id: &str) -> Option<ArxivId> {
        let valid_month = |m: &str| matches!(m.parse::<u32>(), Ok(1..=12));
        let version = |v: Option<regex::Match>| v.and_then(|v| v.as_str().parse().ok());
        if let Some(c) = NEW_STYLE.captures(id) {
            let (yy, mm, number) = (&c[1], &c[2], &c[3]);
            let yymm: u32 = format!("{yy}{mm}").parse().ok()?;
            let digits_ok = if yymm >= 1501 {
                number.len() == 5
            } else {
                number.len() == 4
            };
            if !valid_month(mm) || yymm < 704 || !digits_ok {
                return None;
            }
            return Some(ArxivId {
                id: format!("{yy}{mm}.{number}"),
                version: version(c.get(4)),
            });
        }
        let c = OLD_STYLE.captures(id)?;
        let yy: u32 = c[2].parse().ok()?;
        if !valid_month(&c[3]) || !(yy >= 91 || yy <= 7) {
            return None;
        }
        Some(ArxivId {
            id: format!("{}/{}{}{}", &c[1], &c[2], &c[3], &c[4]),
            version: version(c.get(5)),
        })
    }

    /// The first id a text cites with `arXiv:` or an arxiv.org link.
    pub fn find(text: &str) -> Option<ArxivId> {
        IN_TEXT
            .captures_iter(text)
            .find_map(|c| ArxivId::parse_bare(&c[1]))
    }

    /// The id without version: the paper.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The version asked for.
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// The id with its version, if one was given.
    pub fn versioned(&self) -> String {
        match self.version {
            Some(v) => format!("{}v{v}", self.id),
            None => self.id.clone(),
        }
    }

    /// The year of submission a new-style id (and an old-style one) tells.
    pub fn year(&self) -> Option<i32> {
        let digits = self.id.rsplit('/').next().unwrap_or(&self.id);
        let yy: i32 = digits.get(..2)?.parse().ok()?;
        Some(if yy >= 91 { 1900 + yy } else { 2000 + yy })
    }
}

impl fmt::Display for ArxivId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.versioned())
    }
}

/// An entry of the arXiv API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArxivEntry {
    /// The entry's id, with the version it describes.
    pub id: ArxivId,
    /// Title, white space collapsed.
    pub title: String,
    /// Authors in order.
    pub authors: Vec<String>,
    /// The abstract, white space collapsed.
    pub summary: String,
    /// The year of the first version.
    pub year: Option<i32>,
    /// The DOI of the published version.
    pub doi: Option<String>,
    /// Where it was published.
    pub journal_ref: Option<String>,
    /// The PDF's address.
    pub pdf_url: Option<String>,
}

/// Why arXiv ingestion failed.
#[derive(Debug, thiserror::Error)]
pub enum ArxivError {
    /// No such paper.
    #[error("arXiv has no paper {0}")]
    NotFound(String),
    /// The API answered with an error entry.
    #[error("arXiv refused {id}: {message}")]
    Refused {
        /// What was asked for.
        id: String,
        /// arXiv's message.
        message: String,
    },
    /// An HTTP error status.
    #[error("arXiv answered HTTP {status} for the {what} of {id}{hint}")]
    Http {
        /// The status.
        status: u16,
        /// "metadata" or "PDF".
        what: &'static str,
        /// What was asked for.
        id: String,
        /// What to do about it.
        hint: &'static str,
    },
    /// No answer in time.
    #[error("arXiv did not answer in {seconds} s for the {what} of {id}; try again later")]
    Timeout {
        /// The time allowed.
        seconds: u64,
        /// "metadata" or "PDF".
        what: &'static str,
        /// What was asked for.
        id: String,
    },
    /// No connection.
    #[error("cannot reach arXiv at {base}: {message}")]
    Connect {
        /// The API's address.
        base: String,
        /// The cause.
        message: String,
    },
    /// An answer that is not the feed expected.
    #[error("arXiv's answer for {id} cannot be read: {message}")]
    BadFeed {
        /// What was asked for.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// The PDF is over the cap.
    #[error("the PDF of arXiv {0} is larger than {MAX_PDF_BYTES} bytes")]
    TooLarge(String),
    /// The PDF cannot be ingested.
    #[error("the PDF of arXiv {id}: {source}")]
    Pdf {
        /// What was asked for.
        id: String,
        /// Why.
        source: IngestError,
    },
    /// The user is not a member of the tenant.
    #[error("user {0} is not a member of the tenant")]
    NotMember(UserId),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

const ATOM: &str = "http://www.w3.org/2005/Atom";
const ARXIV: &str = "http://arxiv.org/schemas/atom";
const OPENSEARCH: &str = "http://a9.com/-/spec/opensearch/1.1/";

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Reads an API answer for `wanted`: its entry, an error entry, or an empty feed.
pub fn parse_feed(xml: &str, wanted: &ArxivId) -> Result<ArxivEntry, ArxivError> {
    let bad = |message: String| ArxivError::BadFeed {
        id: wanted.to_string(),
        message,
    };
    let doc = roxmltree::Document::parse(xml).map_err(|e| bad(e.to_string()))?;
    let feed = doc.root_element();
    if !feed.has_tag_name((ATOM, "feed")) {
        return Err(bad(format!(
            "an Atom feed was expected, not <{}>",
            feed.tag_name().name()
        )));
    }
    let child = |node: roxmltree::Node<'_, '_>, ns: &str, name: &str| {
        node.children()
            .find(|c| c.has_tag_name((ns, name)))
            .and_then(|c| c.text())
            .map(collapse)
            .filter(|t| !t.is_empty())
    };
    let total = child(feed, OPENSEARCH, "totalResults");
    for entry in feed.children().filter(|c| c.has_tag_name((ATOM, "entry"))) {
        let id = child(entry, ATOM, "id").unwrap_or_default();
        if id.contains("/api/errors") {
            return Err(ArxivError::Refused {
                id: wanted.to_string(),
                message: child(entry, ATOM, "summary").unwrap_or(id),
            });
        }
        let Some(found) = ArxivId::parse(&id) else {
            continue;
        };
        if found.id() != wanted.id() {
            continue;
        }
        // An entry without a title is arXiv's way of saying there is no such paper.
        let Some(title) = child(entry, ATOM, "title") else {
            return Err(ArxivError::NotFound(wanted.to_string()));
        };
        let authors = entry
            .children()
            .filter(|c| c.has_tag_name((ATOM, "author")))
            .filter_map(|a| child(a, ATOM, "name"))
            .collect();
        let year =
            child(entry, ATOM, "published").and_then(|p| p.get(..4).and_then(|y| y.parse().ok()));
        let pdf_url = entry
            .children()
            .filter(|c| c.has_tag_name((ATOM, "link")))
            .find(|l| {
                l.attribute("title") == Some("pdf")
                    || l.attribute("type") == Some("application/pdf")
            })
            .and_then(|l| l.attribute("href"))
            .map(str::to_owned);
        return Ok(ArxivEntry {
            id: found,
            title,
            authors,
            summary: child(entry, ATOM, "summary").unwrap_or_default(),
            year,
            doi: child(entry, ARXIV, "doi")
                .and_then(|d| d.split_whitespace().next().map(str::to_owned)),
            journal_ref: child(entry, ARXIV, "journal_ref"),
            pdf_url,
        });
    }
    match total.as_deref() {
        Some("0") | None => Err(ArxivError::NotFound(wanted.to_string())),
        Some(_) => Err(bad("no entry for the id asked for".to_owned())),
    }
}

/// A client of the arXiv API and its PDFs.
pub struct ArxivClient {
    base: String,
    http: reqwest::Client,
    api_timeout: Duration,
    pdf_timeout: Duration,
    /// Time between requests (arXiv's rule for its hosts; none elsewhere).
    interval: Duration,
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl ArxivClient {
    /// A client of the API at `base` (e.g. [`DEFAULT_BASE`]).
    pub fn new(base: &str) -> ArxivClient {
        let base = base.trim_end_matches('/').to_owned();
        let host = base
            .split("://")
            .nth(1)
            .unwrap_or(&base)
            .split(['/', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let polite = host == "arxiv.org" || host.ends_with(".arxiv.org");
        ArxivClient {
            base,
            http: crate::llm::shared_client(),
            api_timeout: Duration::from_secs(30),
            pdf_timeout: Duration::from_secs(120),
            interval: if polite {
                Duration::from_secs(3)
            } else {
                Duration::ZERO
            },
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The same client with other timeouts for the API and for PDFs.
    pub fn with_timeouts(mut self, api: Duration, pdf: Duration) -> ArxivClient {
        self.api_timeout = api;
        self.pdf_timeout = pdf;
        self
    }

    /// The API's address.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// GETs `url`, reading at most `cap` bytes: the status and the body.
    async fn get(
        &self,
        url: &str,
        timeout: Duration,
        cap: usize,
        what: &'static str,
        id: &ArxivId,
    ) -> Result<(u16, Vec<u8>), ArxivError> {
        {
            let mut last = self.last.lock().await;
            if let Some(at) = *last {
                tokio::time::sleep_until((at + self.interval).into()).await;
            }
            *last = Some(Instant::now());
        }
        let failed = |e: reqwest::Error| {
            if e.is_timeout() {
                return ArxivError::Timeout {
                    seconds: timeout.as_secs(),
                    what,
                    id: id.to_string(),
                };
            }
            let e = e.without_url();
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            ArxivError::Connect {
                base: self.base.clone(),
                message,
            }
        };
        let mut response = self
            .http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(failed)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > cap {
                return Err(match what {
                    "PDF" => ArxivError::TooLarge(id.to_string()),
                    _ => ArxivError::BadFeed {
                        id: id.to_string(),
                        message: format!("the answer is over {cap} bytes"),
                    },
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }

    fn http_error(status: u16, what: &'static str, id: &ArxivId) -> ArxivError {
        let hint = match status {
            429 | 503 => " (arXiv is busy or limiting requests; try again in a minute)",
            500..=599 => " (a fault at arXiv; try again later)",
            _ => "",
        };
        ArxivError::Http {
            status,
            what,
            id: id.to_string(),
            hint,
        }
    }

    /// The API's entry for `id`.
    pub async fn entry(&self, id: &ArxivId) -> Result<ArxivEntry, ArxivError> {
        let url = format!(
            "{}/api/query?id_list={}&max_results=1",
            self.base,
            id.versioned()
        );
        let (status, body) = self
            .get(&url, self.api_timeout, MAX_FEED_BYTES, "metadata", id)
            .await?;
        let xml = String::from_utf8_lossy(&body);
        // A bad id is answered with an error entry, with status 400 or 200.
        if status == 200 || (status == 400 && xml.contains("/api/errors")) {
            return parse_feed(&xml, id);
        }
        Err(Self::http_error(status, "metadata", id))
    }

    /// The PDF of an entry.
    pub async fn pdf(&self, entry: &ArxivEntry) -> Result<Vec<u8>, ArxivError> {
        let url = entry
            .pdf_url
            .clone()
            .unwrap_or_else(|| format!("{}/pdf/{}", self.base, entry.id.versioned()));
        let (status, body) = self
            .get(&url, self.pdf_timeout, MAX_PDF_BYTES, "PDF", &entry.id)
            .await?;
        match status {
            200 => Ok(body),
            404 => Err(ArxivError::NotFound(entry.id.to_string())),
            _ => Err(Self::http_error(status, "PDF", &entry.id)),
        }
    }
}

/// What [`ingest`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArxivOutcome {
    /// The paper, its sections and whether it is new.
    pub stored: IngestOutcome,
    /// The entry fetched (None: the tenant had the paper, nothing was fetched).
    pub entry: Option<ArxivEntry>,
}

/// Ingests the arXiv paper `id` into `tenant` as `user`: nothing is fetched when the tenant
/// has the paper already (in any version), and no PDF when it has a paper with the DOI arXiv
/// gives (the published version). No transaction is open while arXiv is asked.
pub async fn ingest(
    db: &Database,
    tenant: TenantId,
    user: UserId,
    client: &ArxivClient,
    id: &ArxivId,
) -> Result<ArxivOutcome, ArxivError> {
    let session = db.session(tenant, user).await?;
    if session.role().is_none() {
        return Err(ArxivError::NotMember(user));
    }
    let existing: Option<Uuid> = find_paper(&session, None, Some(id.id())).await?;
    session.commit().await?;
    if let Some(paper) = existing {
        return Ok(ArxivOutcome {
            stored: IngestOutcome {
                paper,
                created: false,
                sections: 0,
            },
            entry: None,
        });
    }
    let entry = client.entry(id).await?;
    // The published version, ingested before under its DOI, is the same paper.
    if entry.doi.is_some() {
        let session = db.session(tenant, user).await?;
        let existing = find_paper(&session, entry.doi.as_deref(), None).await?;
        session.commit().await?;
        if let Some(paper) = existing {
            return Ok(ArxivOutcome {
                stored: IngestOutcome {
                    paper,
                    created: false,
                    sections: 0,
                },
                entry: Some(entry),
            });
        }
    }
    let bytes = client.pdf(&entry).await?;
    let pdf_error = |source: IngestError| ArxivError::Pdf {
        id: id.to_string(),
        source,
    };
    let text = tokio::task::spawn_blocking(move || pdf::extract_text(&bytes))
        .await
        .map_err(|e| pdf_error(IngestError::BadPdf(e.to_string())))?
        .map_err(pdf_error)?;
    let mut doc = ingest::parse(&text, SourceFormat::Text).map_err(pdf_error)?;
    if !entry.summary.is_empty() {
        doc.abstract_text = Some(entry.summary.clone());
    }
    let given = PaperMeta {
        title: Some(entry.title.clone()),
        authors: entry.authors.clone(),
        doi: entry.doi.clone(),
        arxiv_id: Some(id.id().to_owned()),
        year: entry.year,
        venue: entry.journal_ref.clone(),
    };
    let session = db.session(tenant, user).await?;
    let stored = store_detected(
        &session,
        &doc,
        SourceKind::Arxiv,
        &given,
        metadata::detect(&text),
    )
    .await?;
    session.commit().await?;
    Ok(ArxivOutcome {
        stored,
        entry: Some(entry),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Option<(String, Option<u32>)> {
        ArxivId::parse(s).map(|a| (a.id().to_owned(), a.version()))
    }

    #[test]
    fn ids_and_links() {
        let new = |v| Some(("2301.01234".to_owned(), v));
        assert_eq!(id("2301.01234"), new(None));
        assert_eq!(id(" arXiv:2301.01234v2 "), new(Some(2)));
        assert_eq!(id("arxiv: 2301.01234"), new(None));
        assert_eq!(id("https://arxiv.org/abs/2301.01234v2"), new(Some(2)));
        assert_eq!(id("http://export.arxiv.org/abs/2301.01234"), new(None));
        assert_eq!(id("https://arxiv.org/pdf/2301.01234v1.pdf"), new(Some(1)));
        assert_eq!(id("https://arxiv.org/pdf/2301.01234v1"), new(Some(1)));
        assert_eq!(id("https://www.arxiv.org/html/2301.01234v3/"), new(Some(3)));
        assert_eq!(id("https://arxiv.org/abs/2301.01234?context=cs"), new(None));
        assert_eq!(id("0704.0001"), Some(("0704.0001".into(), None)));
        assert_eq!(id("hep-th/9901001"), Some(("hep-th/9901001".into(), None)));
        assert_eq!(
            id("arXiv:math.GT/0309136v1"),
            Some(("math/0309136".into(), Some(1)))
        );
        assert_eq!(
            id("https://arxiv.org/abs/cond-mat/0102536v1"),
            Some(("cond-mat/0102536".into(), Some(1)))
        );
        for not in [
            "2313.01234",     // month 13
            "2301.1234",      // four digits after 2015
            "1401.01234",     // five digits before 2015
            "0612.1234",      // before new-style ids
            "hep-th/9913001", // month 13
            "paper.pdf",
            "https://example.org/abs/2301.01234",
            "https://arxiv.org/list/cs.LG/recent",
            "",
        ] {
            assert_eq!(id(not), None, "{not}");
        }
        let v2 = ArxivId::parse("2301.01234v2").unwrap();
        assert_eq!(v2.to_string(), "2301.01234v2");
        assert_eq!(v2.year(), Some(2023));
        assert_eq!(ArxivId::parse("hep-th/9901001").unwrap().year(), Some(1999));
    }

    #[test]
    fn ids_in_text() {
        let found = |t: &str| ArxivId::find(t).map(|a| a.versioned());
        assert_eq!(
            found("see arXiv:2301.01234v2 [cs.LG] 5 Jan 2023").as_deref(),
            Some("2301.01234v2")
        );
        assert_eq!(
            found("at https://arxiv.org/abs/hep-th/9901001.").as_deref(),
            Some("hep-th/9901001")
        );
        assert_eq!(found("version 2301.01234 of the data"), None);
    }

    const FEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" xmlns:arxiv="http://arxiv.org/schemas/atom">
  <id>https://arxiv.org/api/JbCJ3nDUpD8r6V1lYoLmJ3T9ZpY</id>
  <title>arXiv Query: search_query=&amp;id_list=2301.01234v2&amp;start=0&amp;max_results=1</title>
  <updated>2023-02-11T00:00:00Z</updated>
  <link href="https://arxiv.org/api/query?search_query=&amp;start=0&amp;max_results=1&amp;id_list=2301.01234v2" type="application/atom+xml"/>
  <opensearch:itemsPerPage>1</opensearch:itemsPerPage>
  <opensearch:totalResults>1</opensearch:totalResults>
  <opensearch:startIndex>0</opensearch:startIndex>
  <entry>
    <id>http://arxiv.org/abs/2301.01234v2</id>
    <title>GraphNet: Message Passing for
  Link Prediction</title>
    <updated>2023-02-10T18:00:00Z</updated>
    <link href="https://arxiv.org/abs/2301.01234v2" rel="alternate" type="text/html"/>
    <link href="https://arxiv.org/pdf/2301.01234v2" rel="related" type="application/pdf" title="pdf"/>
    <link href="https://doi.org/10.1234/graphnet.2023" rel="related" title="doi"/>
    <summary>  We propose GraphNet,
a message passing network.
</summary>
    <category term="cs.LG" scheme="http://arxiv.org/schemas/atom"/>
    <published>2023-01-03T18:59:59Z</published>
    <arxiv:comment>12 pages, 3 figures</arxiv:comment>
    <arxiv:journal_ref>Proc. ICML 2023</arxiv:journal_ref>
    <arxiv:doi>10.1234/graphnet.2023</arxiv:doi>
    <arxiv:primary_category term="cs.LG"/>
    <author>
      <name>Ada Lovelace</name>
      <arxiv:affiliation>University of London</arxiv:affiliation>
    </author>
    <author>
      <name>Alan Turing</name>
    </author>
  </entry>
</feed>"#;

    #[test]
    fn a_feed_entry() {
        let wanted = ArxivId::parse("2301.01234v2").unwrap();
        let entry = parse_feed(FEED, &wanted).unwrap();
        assert_eq!(
            entry,
            ArxivEntry {
                id: wanted,
                title: "GraphNet: Message Passing for Link Prediction".into(),
                authors: vec!["Ada Lovelace".into(), "Alan Turing".into()],
                summary: "We propose GraphNet, a message passing network.".into(),
                year: Some(2023),
                doi: Some("10.1234/graphnet.2023".into()),
                journal_ref: Some("Proc. ICML 2023".into()),
                pdf_url: Some("https://arxiv.org/pdf/2301.01234v2".into()),
            }
        );
    }

    #[test]
    fn empty_feeds_error_entries_and_other_answers() {
        let wanted = ArxivId::parse("2301.99999").unwrap();
        let empty = r#"<feed xmlns="http://www.w3.org/2005/Atom"><opensearch:totalResults xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">0</opensearch:totalResults></feed>"#;
        assert!(matches!(
            parse_feed(empty, &wanted),
            Err(ArxivError::NotFound(id)) if id == "2301.99999"
        ));
        let error = r#"<feed xmlns="http://www.w3.org/2005/Atom"><entry><id>http://arxiv.org/api/errors#incorrect_id_format_for_2301.99999</id><title>Error</title><summary>incorrect id format for 2301.99999</summary></entry></feed>"#;
        let message = parse_feed(error, &wanted).unwrap_err().to_string();
        assert_eq!(
            message,
            "arXiv refused 2301.99999: incorrect id format for 2301.99999"
        );
        assert!(matches!(
            parse_feed("<html>busy</html>", &wanted),
            Err(ArxivError::BadFeed { .. })
        ));
        assert!(matches!(
            parse_feed("not xml", &wanted),
            Err(ArxivError::BadFeed { .. })
        ));
    }
}
