//! Metadata detection: what a paper's first page says about itself.
//!
//! Best effort, from the text alone, and only from its head (about the first page, and never
//! past a References heading, where other papers' identifiers are):
//!
//! - DOI: the first `10.NNNN/…` (bare, `doi:` or a doi.org link);
//! - arXiv id: `arXiv:2301.01234v2`, `arXiv:hep-th/9901001` or an arxiv.org link, stored without
//!   its version;
//! - year: a date line ("5 Jan 2023", "January 5, 2023", "2023-01-05", "© 2023"), else the
//!   year of the venue line, else a year between the title and the abstract, else the year of a
//!   new-style arXiv id; always between 1900 and next year;
//! - authors: the lines between the title and the abstract that read as a list of names
//!   (separated by commas, semicolons, "and" or "&"; two to five capitalised words each, no
//!   sentence punctuation, no affiliation words, footnote marks dropped);
//! - venue: a line "Proceedings of …", "In … Conference/Journal …", "Published/Accepted … at/in
//!   …", "Journal of …" or "… Transactions on …".
//!
//! What the caller gives wins over what is detected ([`PaperMeta::or`]).

use std::sync::LazyLock;

use chrono::Datelike;
use regex::Regex;

use super::arxiv::ArxivId;
use super::ingest::{normalise, section_kind};
use super::PaperMeta;
use crate::papers::SectionKind;

/// How far into the text identifiers are looked for: about the first page.
const HEAD_CHARS: usize = 8_000;

/// How many lines of the head are looked at for a date or a venue.
const HEAD_LINES: usize = 80;

/// Most lines between the title and the abstract.
const MAX_FRONT_LINES: usize = 30;

impl PaperMeta {
    /// These values, completed by `detected` where they are missing.
    pub fn or(self, detected: PaperMeta) -> PaperMeta {
        PaperMeta {
            title: self.title.or(detected.title),
            authors: if self.authors.is_empty() {
                detected.authors
            } else {
                self.authors
            },
            doi: self.doi.or(detected.doi),
            arxiv_id: self.arxiv_id.or(detected.arxiv_id),
            year: self.year.or(detected.year),
            venue: self.venue.or(detected.venue),
        }
    }
}

/// Detects the metadata of a paper from its text (plain or Markdown). The title is left to
/// the parser.
pub fn detect(text: &str) -> PaperMeta {
    let normalised = normalise(text);
    let head = head(&normalised);
    let lines: Vec<&str> = head.lines().map(str::trim).take(HEAD_LINES).collect();
    let front = front_matter(&lines);
    let arxiv = ArxivId::find(head);
    let venue = find_venue(&lines);
    let year = find_year(&lines, front, venue.as_deref(), arxiv.as_ref());
    let mut authors: Vec<String> = Vec::new();
    for name in front.iter().filter_map(|l| name_list(l)).flatten() {
        if !authors.contains(&name) {
            authors.push(name);
        }
    }
    PaperMeta {
        title: None,
        authors,
        doi: find_doi(head),
        arxiv_id: arxiv.map(|a| a.id().to_owned()),
        year,
        venue,
    }
}

/// The first page or so, and never past a References heading.
fn head(text: &str) -> &str {
    let end = text
        .char_indices()
        .nth(HEAD_CHARS)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    let mut offset = 0;
    for line in text[..end].split_inclusive('\n') {
        let bare = line.trim();
        if offset > 0 && bare.len() <= 40 && section_kind(bare) == SectionKind::References {
            return &text[..offset];
        }
        offset += line.len();
    }
    &text[..end]
}

/// Whether a line starts the abstract or the body.
fn ends_front_matter(line: &str) -> bool {
    let lower = line.trim_start_matches('#').trim().to_lowercase();
    let abstract_start = lower.starts_with("abstract")
        && !lower["abstract".len()..].starts_with(|c: char| c.is_alphabetic());
    abstract_start
        || line.starts_with('#')
        || (line.len() <= 80 && !line.ends_with('.') && section_kind(line) != SectionKind::Other)
}

/// The lines between the title and the abstract.
fn front_matter<'a>(lines: &'a [&'a str]) -> &'a [&'a str] {
    let Some(title) = lines.iter().position(|l| !l.is_empty()) else {
        return &[];
    };
    let start = title + 1;
    let end = lines[start..]
        .iter()
        .position(|l| ends_front_matter(l))
        .map(|i| start + i)
        .unwrap_or(lines.len())
        .min(start + MAX_FRONT_LINES);
    &lines[start..end]
}

static DOI: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"\b10\.\d{4,9}/[^\s"<>]+"#).expect("valid regex"));

/// The first DOI, without trailing punctuation or an unbalanced closing bracket.
fn find_doi(head: &str) -> Option<String> {
    let found = DOI.find(head)?.as_str();
    let mut doi = found.trim_end_matches(['.', ',', ';', ':', '\'']);
    while let Some(last @ (')' | ']')) = doi.chars().last() {
        let open = if last == ')' { '(' } else { '[' };
        if doi.matches(open).count() >= doi.matches(last).count() {
            break;
        }
        doi = doi[..doi.len() - 1].trim_end_matches(['.', ',', ';', ':']);
    }
    Some(doi.to_owned())
}

const MONTH: &str = r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?";

static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?i)\b(?:\d{{1,2}}(?:st|nd|rd|th)?\s+{MONTH},?\s+((?:19|20)\d{{2}})|{MONTH}\s+(?:\d{{1,2}}(?:st|nd|rd|th)?,?\s+)?((?:19|20)\d{{2}})|((?:19|20)\d{{2}})-\d{{2}}-\d{{2}})\b|(?:©|\(c\)|copyright)\s*((?:19|20)\d{{2}})\b"
    ))
    .expect("valid regex")
});

static YEAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(?:19|20)\d{2}\b").expect("valid regex"));

fn plausible(year: i32) -> bool {
    (1900..=chrono::Utc::now().year() + 1).contains(&year)
}

fn first_year(line: &str) -> Option<i32> {
    YEAR.find_iter(line)
        .filter_map(|m| m.as_str().parse().ok())
        .find(|y| plausible(*y))
}

fn find_year(
    lines: &[&str],
    front: &[&str],
    venue: Option<&str>,
    arxiv: Option<&ArxivId>,
) -> Option<i32> {
    let dated = lines.iter().find_map(|line| {
        DATE.captures_iter(line).find_map(|c| {
            let year: i32 = c.iter().skip(1).flatten().next()?.as_str().parse().ok()?;
            plausible(year).then_some(year)
        })
    });
    dated
        .or_else(|| venue.and_then(first_year))
        .or_else(|| front.iter().find_map(|l| first_year(l)))
        .or_else(|| arxiv.and_then(ArxivId::year).filter(|y| plausible(*y)))
}

static VENUES: LazyLock<[Regex; 4]> = LazyLock::new(|| {
    [
        r"(?i)^(?:in\s+)?((?:the\s+)?proceedings\s+of\s+.+)$",
        r"(?i)^(?:published|accepted|appearing|to appear|presented)\b.*?\b(?:in|at)\s+(?:the\s+)?(.+)$",
        r"^In:?\s+(.*\b(?:Conference|Symposium|Workshop|Journal|Transactions|Proceedings)\b.*)$",
        r"^((?:Journal of|Annals of)\s.+|.*\bTransactions on\s.+)$",
    ]
    .map(|r| Regex::new(r).expect("valid regex"))
});

/// What follows a venue on its line: copyright notes, page counts, links.
static VENUE_TAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\.?\s*(?:copyright\b|©|\(c\))|,?\s*pp\.|,\s*\d*\s*pages\b|\s+(?:https?://|doi:)",
    )
    .expect("valid regex")
});

/// A venue line's venue, without page ranges, copyright notes or final punctuation.
fn find_venue(lines: &[&str]) -> Option<String> {
    lines.iter().filter(|l| l.len() <= 250).find_map(|line| {
        let line = line.trim_matches(|c| c == '*' || c == '_').trim();
        let venue = VENUES.iter().find_map(|r| r.captures(line))?.get(1)?;
        let venue = match VENUE_TAIL.find(venue.as_str()) {
            Some(tail) => &venue.as_str()[..tail.start()],
            None => venue.as_str(),
        };
        let venue = venue.trim().trim_end_matches(['.', ',', ';', ':']).trim();
        (venue.len() >= 3).then(|| venue.to_owned())
    })
}

/// Words that are never part of a name: affiliations, title words, page furniture.
const NOT_NAMES: [&str; 96] = [
    "abstract",
    "academy",
    "algorithm",
    "algorithms",
    "all",
    "analysis",
    "approach",
    "are",
    "arxiv",
    "attention",
    "author",
    "authors",
    "based",
    "center",
    "centre",
    "china",
    "classification",
    "college",
    "company",
    "conference",
    "contribution",
    "corp",
    "corporation",
    "corresponding",
    "data",
    "deep",
    "deepmind",
    "department",
    "dept",
    "detection",
    "draft",
    "efficient",
    "email",
    "equal",
    "faculty",
    "for",
    "foundation",
    "from",
    "generative",
    "gmbh",
    "google",
    "graph",
    "graphs",
    "group",
    "hospital",
    "inc",
    "inference",
    "institut",
    "institute",
    "introduction",
    "journal",
    "keywords",
    "lab",
    "laboratories",
    "laboratory",
    "labs",
    "language",
    "large",
    "learning",
    "llc",
    "ltd",
    "meta",
    "method",
    "methods",
    "microsoft",
    "model",
    "models",
    "network",
    "networks",
    "neural",
    "prediction",
    "preprint",
    "proceedings",
    "representation",
    "research",
    "review",
    "robust",
    "school",
    "study",
    "survey",
    "symposium",
    "system",
    "systems",
    "the",
    "theory",
    "towards",
    "transactions",
    "transformer",
    "transformers",
    "universidad",
    "university",
    "universität",
    "université",
    "using",
    "via",
    "workshop",
];

/// Lower-case words that may stand inside a name.
const PARTICLES: [&str; 20] = [
    "al", "bin", "da", "das", "de", "del", "della", "den", "der", "di", "do", "dos", "du", "la",
    "le", "st.", "ten", "ter", "van", "von",
];

static SEPARATORS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s*(?:,|;|&|·|\band\b|\s{2,})\s*").expect("valid regex"));

/// Footnote marks around a name: digits, symbols, superscripts, asterisks.
fn is_mark(c: char) -> bool {
    c.is_ascii_digit()
        || "*∗†‡§¶‖#⋆★✝✉^_".contains(c)
        || ('\u{2070}'..='\u{209F}').contains(&c)
        || matches!(c, '\u{00B9}' | '\u{00B2}' | '\u{00B3}')
}

/// The names of a line that lists only names.
fn name_list(line: &str) -> Option<Vec<String>> {
    let mut line = line.trim_matches(|c: char| c == '*' || c == '_' || c.is_whitespace());
    for label in ["authors:", "author:", "by "] {
        if line.to_lowercase().starts_with(label) {
            line = line[label.len()..].trim_start_matches(['*', '_', ' ']);
        }
    }
    if line.is_empty()
        || line.len() > 300
        || line.ends_with(['.', '!', '?', ':', ';'])
        || line.contains(['@', '(', ')', '[', ']', '/', '|', '='])
    {
        return None;
    }
    // Names are separated by commas and the like, or only by their footnote marks
    // ("Ada Lovelace1∗ Charles Babbage2").
    let mut parts: Vec<String> = Vec::new();
    for part in SEPARATORS.split(line) {
        let mut current: Vec<&str> = Vec::new();
        for raw in part.split_whitespace() {
            let word = raw.trim_matches(is_mark);
            if !word.is_empty() {
                current.push(word);
            }
            if raw.ends_with(is_mark) && !current.is_empty() {
                parts.push(current.join(" "));
                current.clear();
            }
        }
        if !current.is_empty() {
            parts.push(current.join(" "));
        }
    }
    if parts.is_empty() || !parts.iter().all(|p| is_name(p)) {
        return None;
    }
    Some(parts)
}

/// Two to five capitalised words (initials and particles allowed), not all of them initials,
/// none of them an affiliation or title word.
fn is_name(part: &str) -> bool {
    let words: Vec<&str> = part.split_whitespace().collect();
    let capitalised = |w: &str| w.chars().next().is_some_and(char::is_uppercase);
    let word_ok = |w: &&str| {
        let lower = w.to_lowercase();
        if PARTICLES.contains(&lower.as_str()) && !capitalised(w) {
            return true;
        }
        capitalised(w)
            && w.chars()
                .all(|c| c.is_alphabetic() || matches!(c, '-' | '\'' | '’' | '.'))
            && !NOT_NAMES.contains(&lower.trim_end_matches('.'))
    };
    (2..=5).contains(&words.len())
        && words.iter().all(word_ok)
        && capitalised(words[0])
        && capitalised(words[words.len() - 1])
        && words
            .iter()
            .any(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first page of a NeurIPS-style paper, as the PDF reader gives it.
    const NEURIPS: &str = "\
GraphNet: Message Passing for Link Prediction
in Heterogeneous Networks
Ada Lovelace1∗ Charles Babbage2 and Mary Somerville1
1University of London 2Analytical Engines Ltd
{ada,mary}@london.example.org
Abstract
We propose GraphNet, a message passing network for link prediction. On Cora it
reaches 0.91 AUC.
1 Introduction
Links matter [3]. DOIs of others come later.
37th Conference on Neural Information Processing Systems (NeurIPS 2023).
arXiv:2301.01234v2 [cs.LG] 5 Jan 2023
References
[1] A. Turing. Computing machinery. doi:10.1093/mind/lix.236.433";

    #[test]
    fn a_neurips_first_page() {
        let meta = detect(NEURIPS);
        assert_eq!(
            meta.authors,
            ["Ada Lovelace", "Charles Babbage", "Mary Somerville"]
        );
        assert_eq!(meta.arxiv_id.as_deref(), Some("2301.01234"));
        assert_eq!(meta.year, Some(2023));
        assert_eq!(
            meta.doi, None,
            "the DOI in the references is another paper's"
        );
        assert_eq!(meta.title, None);
    }

    #[test]
    fn an_acm_first_page_with_doi_venue_and_comma_separated_authors() {
        let text = "\
Learning to Rank Graphs
Ada Lovelace, Alan M. Turing, and Grace Hopper
Analytical Engines Ltd., London, UK
ABSTRACT
We rank graphs.
ACM Reference Format:
Ada Lovelace, Alan M. Turing, and Grace Hopper. 2023. Learning to Rank Graphs. In
Proceedings of the 29th ACM SIGKDD Conference on Knowledge Discovery and Data Mining (KDD '23), August 6-10, 2023, Long Beach, CA, USA. ACM, New York, NY, USA, 10 pages. https://doi.org/10.1145/3580305.3599400.
1 INTRODUCTION
Text.";
        let meta = detect(text);
        assert_eq!(
            meta.authors,
            ["Ada Lovelace", "Alan M. Turing", "Grace Hopper"]
        );
        assert_eq!(meta.doi.as_deref(), Some("10.1145/3580305.3599400"));
        assert_eq!(meta.year, Some(2023));
        assert_eq!(
            meta.venue.as_deref(),
            Some(
                "Proceedings of the 29th ACM SIGKDD Conference on Knowledge Discovery and Data \
                 Mining (KDD '23), August 6-10, 2023, Long Beach, CA, USA. ACM, New York, NY, USA"
            )
        );
        assert_eq!(meta.arxiv_id, None);
    }

    #[test]
    fn an_iclr_header_old_style_arxiv_id_and_markdown_authors() {
        let text = "\
# Strings and Branes

**Authors:** Edward Witten; Juan Maldacena

Published as a conference paper at ICLR 2024

## Abstract
See arXiv:hep-th/9901001v3 for the long version, and (doi:10.1000/xyz(1)2).";
        let meta = detect(text);
        assert_eq!(meta.authors, ["Edward Witten", "Juan Maldacena"]);
        assert_eq!(meta.venue.as_deref(), Some("ICLR 2024"));
        assert_eq!(meta.year, Some(2024));
        assert_eq!(meta.arxiv_id.as_deref(), Some("hep-th/9901001"));
        assert_eq!(meta.doi.as_deref(), Some("10.1000/xyz(1)2"));
    }

    #[test]
    fn dates_journals_and_lines_that_are_not_names() {
        let text = "\
Deep Graph Networks
Message Passing Networks
Received: 12 March 2019 / Accepted: 2 May 2020
Journal of Machine Learning Research 21 (2020) 1-48
Stanford University, Stanford, CA 94305
This paper was written by Ada Lovelace and others.
Abstract: we study graphs.";
        let meta = detect(text);
        assert!(meta.authors.is_empty(), "{:?}", meta.authors);
        assert_eq!(meta.year, Some(2019));
        assert_eq!(
            meta.venue.as_deref(),
            Some("Journal of Machine Learning Research 21 (2020) 1-48")
        );
    }

    #[test]
    fn given_values_win() {
        let given = PaperMeta {
            doi: Some("10.1/given".into()),
            authors: vec!["Given Author".into()],
            ..PaperMeta::default()
        };
        let meta = given.or(detect(NEURIPS));
        assert_eq!(meta.doi.as_deref(), Some("10.1/given"));
        assert_eq!(meta.authors, ["Given Author"]);
        assert_eq!(meta.arxiv_id.as_deref(), Some("2301.01234"));
        assert_eq!(meta.year, Some(2023));
    }

    #[test]
    fn nothing_to_detect() {
        let meta = detect("Notes\n\nSome text without metadata, written in 3000 words.");
        assert!(meta.authors.is_empty());
        assert_eq!(
            (meta.doi, meta.arxiv_id, meta.year, meta.venue),
            (None, None, None, None)
        );
    }
}
