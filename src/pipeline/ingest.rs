//! Ingestion: a paper's text (plain or Markdown) becomes a title, an abstract and sections.
//!
//! - Text is normalised (line endings, trailing spaces, runs of blank lines) before anything
//!   else, and the SHA-256 of the normalised text is the paper's content hash: ingesting the same
//!   paper again, whatever its line endings, is a no-op.
//! - Markdown: the first level-1 heading is the title; every other heading starts a section.
//!   Plain text: the first non-empty line is the title; a short line naming a usual section
//!   (optionally numbered: "1 Introduction", "2.1 Methods", "IV. RESULTS") starts one.
//! - Each section gets a kind from its heading (abstract, introduction, methods, …), and the
//!   abstract section, if any, becomes the paper's abstract.
//! - Sections longer than [`MAX_SECTION_CHARS`] are cut at paragraph (then sentence) boundaries,
//!   so each fits an extraction prompt.

use sha2::{Digest, Sha256};

use super::pdf::MAX_PDF_BYTES;
use crate::papers::{SectionKind, SourceKind};

/// Longest section, in characters, before it is chunked.
pub const MAX_SECTION_CHARS: usize = 6_000;

/// Largest document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024 * 1024;

/// How a document is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
pub enum SourceFormat {
    /// Plain text.
    Text,
    /// Markdown.
    Markdown,
}

impl SourceFormat {
    /// The `papers.source_kind` spelling.
    pub fn source_kind(self) -> &'static str {
        match self {
            SourceFormat::Text => "text",
            SourceFormat::Markdown => "markdown",
        }
    }
}

impl From<SourceFormat> for SourceKind {
    fn from(format: SourceFormat) -> SourceKind {
        match format {
            SourceFormat::Text => SourceKind::Text,
            SourceFormat::Markdown => SourceKind::Markdown,
        }
    }
}

/// The `papers.source_kind` spelling of how a paper came in.
pub fn source_kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Manual => "manual",
        SourceKind::Text => "text",
        SourceKind::Markdown => "markdown",
        SourceKind::Pdf => "pdf",
        SourceKind::Arxiv => "arxiv",
    }
}

/// One section of a parsed document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParsedSection {
    /// The heading as written (None for text before the first heading).
    pub heading: Option<String>,
    /// The section's role.
    pub kind: SectionKind,
    /// The text.
    pub content: String,
}

/// A parsed document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    /// The title.
    pub title: String,
    /// The abstract, if a section is one.
    pub abstract_text: Option<String>,
    /// The sections, in reading order, chunked.
    pub sections: Vec<ParsedSection>,
    /// SHA-256 (hex) of the normalised text.
    pub content_hash: String,
}

/// Why a document cannot be ingested.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IngestError {
    /// Nothing but white space.
    #[error("the document is empty")]
    Empty,
    /// Over [`MAX_DOCUMENT_BYTES`].
    #[error("the document is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    /// A title over 1,000 characters cannot be right.
    #[error("no usable title (the first line is over 1,000 characters); give one explicitly")]
    NoTitle,
    /// Not a PDF file.
    #[error("not a PDF (the file does not start with %PDF-)")]
    NotPdf,
    /// Over [`MAX_PDF_BYTES`].
    #[error("the PDF is larger than {MAX_PDF_BYTES} bytes")]
    PdfTooLarge,
    /// Encrypted, and the empty password does not open it.
    #[error("the PDF is protected by a password; ingest an unprotected copy")]
    Encrypted,
    /// Pages without text: a scan, or text drawn as paths.
    #[error(
        "the PDF has no text layer (a scanned document?); run OCR on it first (e.g. ocrmypdf) \
         and ingest the result"
    )]
    NoTextLayer,
    /// The PDF's structure cannot be read.
    #[error("the PDF cannot be read: {0}")]
    BadPdf(String),
}

/// Normalises line endings, trailing spaces and runs of blank lines.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.replace("\r\n", "\n").replace('\r', "\n").lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(line);
    }
    out
}

/// The content hash of a document's text.
pub fn content_hash(normalised: &str) -> String {
    format!("{:x}", Sha256::digest(normalised.as_bytes()))
}

const SECTION_NAMES: [(&str, SectionKind); 22] = [
    ("abstract", SectionKind::Abstract),
    ("summary", SectionKind::Abstract),
    ("introduction", SectionKind::Introduction),
    ("background", SectionKind::Background),
    ("related work", SectionKind::Background),
    ("preliminaries", SectionKind::Background),
    ("method", SectionKind::Methods),
    ("methods", SectionKind::Methods),
    ("methodology", SectionKind::Methods),
    ("approach", SectionKind::Methods),
    ("model", SectionKind::Methods),
    ("experiments", SectionKind::Results),
    ("experimental setup", SectionKind::Results),
    ("results", SectionKind::Results),
    ("evaluation", SectionKind::Results),
    ("discussion", SectionKind::Discussion),
    ("limitations", SectionKind::Discussion),
    ("conclusion", SectionKind::Conclusion),
    ("conclusions", SectionKind::Conclusion),
    ("future work", SectionKind::Conclusion),
    ("references", SectionKind::References),
    ("bibliography", SectionKind::References),
];

/// The heading without its numbering ("2.1 ", "3) ", "IV. ") or trailing colon, lowercased.
fn bare_heading(heading: &str) -> String {
    let h = heading.trim().trim_start_matches('#').trim();
    let h = h
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ')')
        .trim_start();
    let h = match h.split_once(". ") {
        Some((numeral, tail))
            if !numeral.is_empty() && numeral.chars().all(|c| "IVXLivxl".contains(c)) =>
        {
            tail
        }
        _ => h,
    };
    h.trim().trim_end_matches(':').to_lowercase()
}

/// The kind a heading announces.
pub fn section_kind(heading: &str) -> SectionKind {
    let bare = bare_heading(heading);
    SECTION_NAMES
        .iter()
        .find(|(name, _)| bare == *name || bare.starts_with(&format!("{name} ")))
        .map(|(_, kind)| *kind)
        .unwrap_or(SectionKind::Other)
}

/// Whether a plain-text line is a section heading.
fn is_text_heading(line: &str) -> bool {
    let line = line.trim();
    line.len() <= 80
        && !line.ends_with('.')
        && !line.ends_with(',')
        && section_kind(line) != SectionKind::Other
}

/// Parses a document.
pub fn parse(text: &str, format: SourceFormat) -> Result<Document, IngestError> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(IngestError::TooLarge);
    }
    let normalised = normalise(text);
    if normalised.is_empty() {
        return Err(IngestError::Empty);
    }
    let hash = content_hash(&normalised);
    let mut title = None;
    let mut sections: Vec<(Option<String>, Vec<&str>)> = vec![(None, Vec::new())];
    for line in normalised.lines() {
        let heading = match format {
            SourceFormat::Markdown if line.starts_with('#') => {
                let level = line.chars().take_while(|c| *c == '#').count();
                let text = line[level..].trim();
                if level == 1 && title.is_none() && sections.len() == 1 {
                    title = Some(text.to_owned());
                    continue;
                }
                Some(text.to_owned())
            }
            SourceFormat::Text if title.is_none() && !line.trim().is_empty() => {
                title = Some(line.trim().to_owned());
                continue;
            }
            SourceFormat::Text if is_text_heading(line) => Some(line.trim().to_owned()),
            _ => None,
        };
        match heading {
            Some(h) => sections.push((Some(h), Vec::new())),
            None => sections.last_mut().map(|s| s.1.push(line)).unwrap_or(()),
        }
    }
    let title = match title {
        Some(t) if t.chars().count() <= 1000 => t,
        Some(_) => return Err(IngestError::NoTitle),
        None => normalised
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned(),
    };
    let mut parsed = Vec::new();
    for (heading, body) in sections {
        let content = body.join("\n").trim().to_owned();
        if content.is_empty() {
            continue;
        }
        let kind = heading
            .as_deref()
            .map(section_kind)
            .unwrap_or(SectionKind::Other);
        let chunks = chunk(&content, MAX_SECTION_CHARS);
        let parts = chunks.len();
        for (i, chunk) in chunks.into_iter().enumerate() {
            let heading = match (&heading, parts) {
                (h, 1) => h.clone(),
                (Some(h), n) => Some(format!("{h} (part {} of {n})", i + 1)),
                (None, n) => Some(format!("part {} of {n}", i + 1)),
            };
            parsed.push(ParsedSection {
                heading,
                kind,
                content: chunk,
            });
        }
    }
    let abstract_text = parsed
        .iter()
        .find(|s| s.kind == SectionKind::Abstract)
        .map(|s| s.content.clone());
    Ok(Document {
        title,
        abstract_text,
        sections: parsed,
        content_hash: hash,
    })
}

/// Cuts `text` into pieces of at most `max` characters, at paragraph boundaries, then sentence
/// boundaries, then anywhere.
pub fn chunk(text: &str, max: usize) -> Vec<String> {
    if text.chars().count() <= max {
        return vec![text.to_owned()];
    }
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    let push = |piece: &str, current: &mut String, out: &mut Vec<String>| {
        let sep = if current.is_empty() { 0 } else { 2 };
        if current.chars().count() + sep + piece.chars().count() > max && !current.is_empty() {
            out.push(std::mem::take(current));
        }
        if !current.is_empty() {
            current.push_str("\n\n");
        }
        current.push_str(piece);
    };
    for paragraph in text.split("\n\n") {
        if paragraph.chars().count() <= max {
            push(paragraph, &mut current, &mut out);
            continue;
        }
        // A paragraph too long on its own: by sentences, and a sentence too long by characters.
        for sentence in paragraph.split_inclusive(". ") {
            let chars: Vec<char> = sentence.chars().collect();
            for piece in chars.chunks(max) {
                let piece: String = piece.iter().collect();
                push(piece.trim(), &mut current, &mut out);
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKDOWN: &str = "# GraphNet: Message Passing for Link Prediction\r\n\r\n\
        ## Abstract\r\nWe propose GraphNet.   \r\nIt predicts links.\r\n\r\n\r\n\
        ## 1 Introduction\r\nLinks matter.\r\n\r\n## 2. Methods\r\nWe stack layers.\r\n\
        ## Results\r\nGraphNet reaches 0.91 AUC on Cora.\r\n## Appendix A\r\nMore tables.\r\n";

    #[test]
    fn markdown_sections_kinds_and_abstract() {
        let d = parse(MARKDOWN, SourceFormat::Markdown).unwrap();
        assert_eq!(d.title, "GraphNet: Message Passing for Link Prediction");
        assert_eq!(
            d.abstract_text.as_deref(),
            Some("We propose GraphNet.\nIt predicts links.")
        );
        let kinds: Vec<SectionKind> = d.sections.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            [
                SectionKind::Abstract,
                SectionKind::Introduction,
                SectionKind::Methods,
                SectionKind::Results,
                SectionKind::Other
            ]
        );
        assert_eq!(d.sections[1].heading.as_deref(), Some("1 Introduction"));
    }

    #[test]
    fn plain_text_with_numbered_and_capitalised_headings() {
        let text = "A Study of Graphs\nAda Lovelace\n\nABSTRACT\nGraphs are everywhere.\n\n\
                    I. INTRODUCTION\nWe look at graphs.\n\n2.1 Related work\nOthers did too.\n\n\
                    This line ends with a period, so it is no heading: results.\n\nConclusion\nDone.";
        let d = parse(text, SourceFormat::Text).unwrap();
        assert_eq!(d.title, "A Study of Graphs");
        let found: Vec<(Option<&str>, SectionKind)> = d
            .sections
            .iter()
            .map(|s| (s.heading.as_deref(), s.kind))
            .collect();
        assert_eq!(
            found,
            [
                (None, SectionKind::Other),
                (Some("ABSTRACT"), SectionKind::Abstract),
                (Some("I. INTRODUCTION"), SectionKind::Introduction),
                (Some("2.1 Related work"), SectionKind::Background),
                (Some("Conclusion"), SectionKind::Conclusion),
            ]
        );
        assert!(d.sections[3].content.contains("ends with a period"));
    }

    #[test]
    fn the_hash_ignores_line_endings_and_blank_runs_but_not_words() {
        let unix = MARKDOWN.replace("\r\n", "\n");
        let a = parse(MARKDOWN, SourceFormat::Markdown).unwrap();
        let b = parse(&unix, SourceFormat::Markdown).unwrap();
        assert_eq!(a.content_hash, b.content_hash);
        let c = parse(&unix.replace("0.91", "0.92"), SourceFormat::Markdown).unwrap();
        assert_ne!(a.content_hash, c.content_hash);
        assert_eq!(a.content_hash.len(), 64);
    }

    #[test]
    fn long_sections_are_chunked_at_paragraphs() {
        let paragraph = "Graph networks pass messages. ".repeat(50); // 1,500 characters
        let body = [paragraph.trim(); 10].join("\n\n");
        let text = format!("# T\n\n## Methods\n{body}\n");
        let d = parse(&text, SourceFormat::Markdown).unwrap();
        assert!(d.sections.len() >= 3, "{}", d.sections.len());
        for s in &d.sections {
            assert!(s.content.chars().count() <= MAX_SECTION_CHARS);
            assert_eq!(s.kind, SectionKind::Methods);
        }
        assert_eq!(
            d.sections[0].heading.as_deref(),
            Some(&*format!("Methods (part 1 of {})", d.sections.len()))
        );
        let joined: String = d
            .sections
            .iter()
            .map(|s| s.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        assert_eq!(joined, body, "nothing lost or reordered");
        // A single huge paragraph still fits.
        let huge = "x".repeat(MAX_SECTION_CHARS * 2 + 10);
        assert!(chunk(&huge, MAX_SECTION_CHARS)
            .iter()
            .all(|c| c.chars().count() <= MAX_SECTION_CHARS));
    }

    #[test]
    fn empty_and_oversized_documents_are_refused() {
        assert_eq!(
            parse(" \n\r\n ", SourceFormat::Text),
            Err(IngestError::Empty)
        );
        let big = "a".repeat(MAX_DOCUMENT_BYTES + 1);
        assert_eq!(parse(&big, SourceFormat::Text), Err(IngestError::TooLarge));
    }
}
