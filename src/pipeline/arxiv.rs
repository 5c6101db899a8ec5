//! arXiv identifiers: new style (`2301.01234`, `2301.01234v2`) and old style (`hep-th/9901001`,
//! `math.GT/0309136v1`), optionally prefixed `arXiv:`, and links to `arxiv.org/abs/…`, `/pdf/…`
//! (with or without `.pdf`) and `/html/…`. Versions are revisions of one paper: the paper is its
//! id without the version.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

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
}
