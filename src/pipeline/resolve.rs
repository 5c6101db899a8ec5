//! Entity resolution: the key that makes two names one entity, abbreviations defined in a
//! section, and near-duplicate scoring for a person to review.
//!
//! # The key ([`entity_key`])
//!
//! One node exists per tenant, key and type, so the key decides what is "the same name". It is
//! built in this order, and stays stable (changing it means re-keying stored nodes):
//!
//! 1. Unicode compatibility decomposition (NFKD, so `ﬁ` is `fi`, full-width `Ａ` is `A`, `²` is
//!    `2`); combining marks on Latin, Greek and Cyrillic letters are dropped (`naïve` is
//!    `naive`), those of other scripts are kept and recomposed (NFC).
//! 2. Words are runs of letters and digits. A possessive `'s` is dropped (`Bayes' rule`,
//!    `Dijkstra's algorithm` → `dijkstra algorithm`), other apostrophes join (`don't` → `dont`).
//!    `+` and `#` right after a word stay part of it (`C++`, `C#`, so they are not `C`). Every
//!    other character (hyphens, underscores, punctuation, spaces) separates words.
//! 3. Words are lowercased and joined with one space.
//! 4. The last word, if it is made of letters only, is made singular with simple English rules:
//!    an acronym's plural loses its `s` (`CNNs`, `LLMs`); an all-capitals word is never changed
//!    (`BERT`, `MOS`); irregular plurals come from a short table (`analyses`, `indices`,
//!    `criteria`, `corpora`); words that end in `s` but are singular stay (`bias`, `lens`,
//!    `series`, `means`, `Bayes`, `physics`, …); words of three letters or fewer stay; then
//!    `-ies` → `-y`, `-sses` → `-ss`, `-ches`/`-shes`/`-xes` → drop `es`, and a final `-s` is
//!    dropped unless the word ends in `-ss`, `-us` or `-is`.
//! 5. The key is cut to [`MAX_KEY_CHARS`] characters.
//!
//! # Abbreviations ([`acronyms`])
//!
//! Definitions such as `convolutional neural network (CNN)` and `CNN (convolutional neural
//! network)` are found with the Schwartz–Hearst algorithm: every letter and digit of the short
//! form must occur, in order, in the long form, the first one at the start of a word, and the
//! long form has at most `min(|short| + 5, 2 × |short|)` words. One addition: the short form
//! must hold a capital letter, which keeps parenthesised words such as `(see above)` out.
//! Validation gives an entity named by a defined short form the long form's name and key, with
//! the short form as an alias.
//!
//! # Near duplicates ([`similarity`], [`duplicate_candidates`])
//!
//! Two names with different keys are scored by the best of three signals on their keys: one
//! minus the Levenshtein distance over the longer length, the Jaccard overlap of their words,
//! and "one is the acronym of the other" (a fixed [`ACRONYM_SCORE`]). Names whose numbers
//! differ (`ResNet-50` and `ResNet-101`, `CIFAR-10` and `CIFAR-100`) are versions or sizes, not
//! spellings, so their edit and overlap scores are halved. Candidates are pairs, each scored on
//! its own: nothing is transitive and nothing is merged here.

use std::collections::HashSet;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use uuid::Uuid;

/// Longest key, in characters (the `nodes.key` column's limit).
pub const MAX_KEY_CHARS: usize = 500;

/// The score given to a short name that is the acronym of the other.
pub const ACRONYM_SCORE: f64 = 0.9;

/// Irregular plurals (and plural-looking words whose singular is not the rule's).
const IRREGULAR: [(&str, &str); 34] = [
    ("analyses", "analysis"),
    ("appendices", "appendix"),
    ("avalanches", "avalanche"),
    ("axes", "axis"),
    ("bacteria", "bacterium"),
    ("caches", "cache"),
    ("calories", "calorie"),
    ("children", "child"),
    ("cookies", "cookie"),
    ("corpora", "corpus"),
    ("criteria", "criterion"),
    ("diagnoses", "diagnosis"),
    ("feet", "foot"),
    ("foci", "focus"),
    ("formulae", "formula"),
    ("halves", "half"),
    ("headaches", "headache"),
    ("hypotheses", "hypothesis"),
    ("indices", "index"),
    ("leaves", "leaf"),
    ("loci", "locus"),
    ("matrices", "matrix"),
    ("mice", "mouse"),
    ("movies", "movie"),
    ("niches", "niche"),
    ("nuclei", "nucleus"),
    ("parentheses", "parenthesis"),
    ("phenomena", "phenomenon"),
    ("prognoses", "prognosis"),
    ("radii", "radius"),
    ("schemata", "schema"),
    ("stimuli", "stimulus"),
    ("syntheses", "synthesis"),
    ("vertices", "vertex"),
];

/// Words that end in `s` but are singular (or have no singular).
const INVARIANT: [&str; 49] = [
    "acoustics",
    "alias",
    "analytics",
    "atlas",
    "bayes",
    "bias",
    "bioinformatics",
    "canvas",
    "chaos",
    "cosmos",
    "diabetes",
    "dynamics",
    "economics",
    "electronics",
    "ethics",
    "gas",
    "genomics",
    "graphics",
    "hastings",
    "herpes",
    "informatics",
    "kinetics",
    "lens",
    "linguistics",
    "logistics",
    "mathematics",
    "means",
    "measles",
    "mechanics",
    "metabolomics",
    "mumps",
    "news",
    "optics",
    "pancreas",
    "phonetics",
    "physics",
    "pragmatics",
    "proteomics",
    "rabies",
    "robotics",
    "semantics",
    "series",
    "species",
    "statistics",
    "thermodynamics",
    "bus",
    "data",
    "analysis",
    "lucas",
];

/// The normalised key of an entity name; see the module documentation for the rules.
pub fn entity_key(name: &str) -> String {
    let words = split_words(&fold(name));
    let count = words.len();
    let mut key = String::new();
    for (i, word) in words.iter().enumerate() {
        if !key.is_empty() {
            key.push(' ');
        }
        if i + 1 == count {
            key.push_str(&singular(word));
        } else {
            key.extend(word.chars().flat_map(char::to_lowercase));
        }
    }
    if let Some((cut, _)) = key.char_indices().nth(MAX_KEY_CHARS) {
        key.truncate(cut);
        let trimmed = key.trim_end().len();
        key.truncate(trimmed);
    }
    key
}

/// Compatibility decomposition, European diacritics dropped, the rest recomposed.
fn fold(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut strip_marks = false;
    for c in name.nfkd() {
        if is_combining_mark(c) {
            if strip_marks {
                continue;
            }
        } else {
            strip_marks = latin_or_greek(c);
        }
        out.push(c);
    }
    out.nfc().collect()
}

/// Whether a base letter's diacritics are dropped: Latin (basic to Extended-B) and Greek.
fn latin_or_greek(c: char) -> bool {
    let code = c as u32;
    code < 0x0250 || (0x0370..0x0400).contains(&code)
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02BC}')
}

/// The words of a folded name, as written (case kept for the plural rules).
fn split_words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || (is_combining_mark(c) && !word.is_empty()) {
            word.push(c);
            i += 1;
            continue;
        }
        let after = |k: usize| chars.get(k).copied();
        if is_apostrophe(c) && !word.is_empty() {
            let next = after(i + 1);
            let possessive =
                matches!(next, Some('s' | 'S')) && !after(i + 2).is_some_and(char::is_alphanumeric);
            if possessive {
                i += 2;
                continue;
            }
            if next.is_some_and(char::is_alphanumeric) {
                i += 1;
                continue;
            }
        }
        if matches!(c, '+' | '#') && !word.is_empty() {
            let mut end = i;
            while end < chars.len() && matches!(chars[end], '+' | '#') {
                end += 1;
            }
            if !after(end).is_some_and(char::is_alphanumeric) {
                word.extend(&chars[i..end]);
                words.push(std::mem::take(&mut word));
                i = end;
                continue;
            }
        }
        if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        i += 1;
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// The lowercase singular of the last word of a name (see the module documentation).
fn singular(word: &str) -> String {
    let lower: String = word.chars().flat_map(char::to_lowercase).collect();
    if !word.chars().all(char::is_alphabetic) {
        return lower;
    }
    let chars: Vec<char> = word.chars().collect();
    let n = chars.len();
    if n >= 3 && chars[n - 1] == 's' && chars[..n - 1].iter().all(|c| c.is_uppercase()) {
        return lower[..lower.len() - 1].to_owned();
    }
    if n >= 2 && chars.iter().all(|c| c.is_uppercase()) {
        return lower;
    }
    if let Some((_, one)) = IRREGULAR.iter().find(|(many, _)| *many == lower) {
        return (*one).to_owned();
    }
    if INVARIANT.contains(&lower.as_str()) || lower.chars().count() <= 3 {
        return lower;
    }
    if let Some(stem) = lower.strip_suffix("ies") {
        return format!("{stem}y");
    }
    if lower.ends_with("sses")
        || lower.ends_with("ches")
        || lower.ends_with("shes")
        || lower.ends_with("xes")
    {
        return lower[..lower.len() - 2].to_owned();
    }
    if lower.ends_with("ss") || lower.ends_with("us") || lower.ends_with("is") {
        return lower;
    }
    match lower.strip_suffix('s') {
        Some(stem) => stem.to_owned(),
        None => lower,
    }
}

/// An abbreviation defined in a text: `long (short)` or `short (long)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcronymDef {
    /// The short form as written, e.g. `CNN`.
    pub short: String,
    /// The long form as written, whitespace collapsed, e.g. `convolutional neural network`.
    pub long: String,
}

/// The abbreviations a text defines, in order, the first definition of each short form only.
pub fn acronyms(text: &str) -> Vec<AcronymDef> {
    let mut found: Vec<AcronymDef> = Vec::new();
    for (open, _) in text.match_indices('(') {
        let rest = &text[open + 1..];
        let Some(close) = rest.find(')') else {
            continue;
        };
        let inner = &rest[..close];
        if inner.contains('(') {
            continue;
        }
        let inner = inner.split([';', ',']).next().unwrap_or_default().trim();
        let before = sentence_before(&text[..open]);
        let def =
            short_in_parentheses(inner, before).or_else(|| long_in_parentheses(inner, before));
        if let Some(def) = def {
            if !found.iter().any(|d| d.short == def.short) {
                found.push(def);
            }
        }
    }
    found
}

/// The part of `text` after the last sentence or clause boundary, parenthesis or blank line.
fn sentence_before(text: &str) -> &str {
    let mut start = 0;
    let mut previous: Option<char> = None;
    let mut blank_line = false;
    for (i, c) in text.char_indices() {
        let paragraph = c == '\n' && blank_line;
        let boundary = paragraph
            || matches!(c, '(' | ')')
            || (c.is_whitespace() && matches!(previous, Some('.' | '!' | '?' | ';' | ':')));
        if boundary {
            start = i + c.len_utf8();
        }
        if c == '\n' {
            blank_line = true;
        } else if !c.is_whitespace() {
            blank_line = false;
        }
        previous = Some(c);
    }
    &text[start..]
}

/// Whether `s` can be a short form: one or two words, 2 to 10 characters, starting with a letter
/// or digit, with a capital letter.
fn valid_short(s: &str) -> bool {
    let count = s.chars().count();
    s.split_whitespace().count() <= 2
        && (2..=10).contains(&count)
        && s.chars().next().is_some_and(char::is_alphanumeric)
        && s.chars().any(char::is_uppercase)
}

/// Most words a long form may have for `short`.
fn max_long_words(short: &str) -> usize {
    let n = short.chars().count();
    (n + 5).min(2 * n)
}

/// `long form (SF)`: `inner` is the short form, the long form ends `before`.
fn short_in_parentheses(inner: &str, before: &str) -> Option<AcronymDef> {
    if !valid_short(inner) {
        return None;
    }
    let before = before.trim_end();
    let limit = max_long_words(inner);
    let starts: Vec<usize> = word_starts(before);
    let from = starts.len().saturating_sub(limit);
    let candidate = &before[*starts.get(from)?..];
    let long = best_long_form(inner, candidate)?;
    accept(inner, long, limit)
}

/// `SF (long form)`: the word before the parenthesis is the short form, `inner` the long form.
fn long_in_parentheses(inner: &str, before: &str) -> Option<AcronymDef> {
    if inner.split_whitespace().count() <= 2 {
        return None;
    }
    let short = before
        .split_whitespace()
        .last()?
        .trim_matches(|c: char| !c.is_alphanumeric());
    if !valid_short(short) {
        return None;
    }
    let limit = max_long_words(short);
    if inner.split_whitespace().count() > limit {
        return None;
    }
    let long = best_long_form(short, inner)?;
    accept(short, long, limit)
}

/// The final checks of a pair: the long form is longer, does not contain the short form as a
/// word, and is not too many words.
fn accept(short: &str, long: &str, limit: usize) -> Option<AcronymDef> {
    let long = long.split_whitespace().collect::<Vec<_>>().join(" ");
    let words = long.split_whitespace().count();
    if long.chars().count() <= short.chars().count()
        || words > limit
        || long.split_whitespace().any(|w| w == short)
    {
        return None;
    }
    Some(AcronymDef {
        short: short.to_owned(),
        long,
    })
}

/// Byte offsets where the words of `text` start.
fn word_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut in_word = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_word = false;
        } else if !in_word {
            starts.push(i);
            in_word = true;
        }
    }
    starts
}

fn same_letter(a: char, b: char) -> bool {
    a.to_lowercase().eq(b.to_lowercase())
}

/// Schwartz–Hearst: the shortest suffix of `candidate` whose letters cover `short` in order,
/// the first letter of `short` at the start of a word.
fn best_long_form<'a>(short: &str, candidate: &'a str) -> Option<&'a str> {
    let s: Vec<char> = short.chars().collect();
    let l: Vec<(usize, char)> = candidate.char_indices().collect();
    let mut li = l.len() as isize - 1;
    for si in (0..s.len()).rev() {
        let current = s[si];
        if !current.is_alphanumeric() {
            continue;
        }
        loop {
            if li < 0 {
                return None;
            }
            let c = l[li as usize].1;
            let at_word_start = li == 0 || !l[li as usize - 1].1.is_alphanumeric();
            if same_letter(c, current) && (si > 0 || at_word_start) {
                break;
            }
            li -= 1;
        }
        li -= 1;
    }
    let matched = (li + 1) as usize;
    let start = l[..matched]
        .iter()
        .rposition(|(_, c)| c.is_whitespace())
        .map_or(0, |p| p + 1);
    Some(&candidate[l[start].0..])
}

/// How similar two names are, 0 to 1 (1 for the same key); see the module documentation.
pub fn similarity(a: &str, b: &str) -> f64 {
    score_keys(&entity_key(a), &entity_key(b)).0
}

/// Which signal a score came from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Signal {
    Same,
    Edit(f64),
    Overlap(f64),
    Acronym,
    None,
}

impl Signal {
    fn reason(self) -> String {
        match self {
            Signal::Same => "same key".to_owned(),
            Signal::Edit(s) => format!("edit distance {s:.2}"),
            Signal::Overlap(s) => format!("token overlap {s:.2}"),
            Signal::Acronym => "acronym of".to_owned(),
            Signal::None => "no signal".to_owned(),
        }
    }
}

/// The score of two keys and the signal it came from.
fn score_keys(a: &str, b: &str) -> (f64, Signal) {
    if a == b {
        return (1.0, Signal::Same);
    }
    if a.is_empty() || b.is_empty() {
        return (0.0, Signal::None);
    }
    let a_chars: Vec<char> = a.chars().collect();
    let b_chars: Vec<char> = b.chars().collect();
    let longest = a_chars.len().max(b_chars.len()) as f64;
    let mut edit = 1.0 - levenshtein(&a_chars, &b_chars) as f64 / longest;
    let mut overlap = jaccard(a, b);
    if numbers(a) != numbers(b) {
        edit /= 2.0;
        overlap /= 2.0;
    }
    let acronym = if is_acronym_of(a, b) || is_acronym_of(b, a) {
        ACRONYM_SCORE
    } else {
        0.0
    };
    if acronym >= edit && acronym >= overlap && acronym > 0.0 {
        (acronym, Signal::Acronym)
    } else if edit >= overlap {
        (edit, Signal::Edit(edit))
    } else {
        (overlap, Signal::Overlap(overlap))
    }
}

/// Levenshtein distance over characters.
fn levenshtein(a: &[char], b: &[char]) -> usize {
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Jaccard overlap of the words of two keys.
fn jaccard(a: &str, b: &str) -> f64 {
    let a: HashSet<&str> = a.split(' ').collect();
    let b: HashSet<&str> = b.split(' ').collect();
    let union = a.union(&b).count();
    if union == 0 {
        return 0.0;
    }
    a.intersection(&b).count() as f64 / union as f64
}

/// The runs of digits in a key.
fn numbers(key: &str) -> Vec<&str> {
    key.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Small words an acronym may skip (`bag of words` → `BOW` or `BW`).
const ACRONYM_SKIPS: [&str; 8] = ["of", "the", "for", "and", "a", "an", "in", "on"];

/// Whether key `short` (one word of letters) is the initials of key `long` (several words),
/// with or without its small words.
fn is_acronym_of(short: &str, long: &str) -> bool {
    let length = short.chars().count();
    if short.contains(' ') || !(2..=10).contains(&length) || !short.chars().all(char::is_alphabetic)
    {
        return false;
    }
    let words: Vec<&str> = long.split(' ').collect();
    if words.len() < 2 {
        return false;
    }
    let initials = |skip: bool| -> String {
        words
            .iter()
            .filter(|w| !skip || !ACRONYM_SKIPS.contains(w))
            .filter_map(|w| w.chars().next())
            .collect()
    };
    initials(false) == short || initials(true) == short
}

/// A stored or new entity, as duplicate detection sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRef {
    /// The node.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// Its type (one of the entity types).
    pub node_type: String,
    /// Its key ([`entity_key`] of its name, or the expansion's key).
    pub key: String,
}

/// Two nodes that may be the same entity, for a person to merge or dismiss.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The node with the smaller id.
    pub a: Uuid,
    /// The node with the larger id.
    pub b: Uuid,
    /// The score, at least the threshold.
    pub score: f64,
    /// The signal, e.g. `edit distance 0.93`, `token overlap 0.80` or `acronym of`.
    pub reason: String,
}

/// Whether the best possible score of two keys can reach `threshold`, before computing it:
/// the edit score is at most the shorter length over the longer one, the overlap the smaller
/// word count over the larger one.
fn may_reach(a: &str, b: &str, threshold: f64) -> bool {
    let (la, lb) = (a.chars().count(), b.chars().count());
    let (wa, wb) = (a.split(' ').count(), b.split(' ').count());
    let edit_bound = la.min(lb) as f64 / la.max(lb).max(1) as f64;
    let overlap_bound = wa.min(wb) as f64 / wa.max(wb) as f64;
    let acronym_possible = (wa == 1) != (wb == 1);
    edit_bound >= threshold
        || overlap_bound >= threshold
        || (acronym_possible && ACRONYM_SCORE >= threshold)
}

/// Near-duplicate pairs among `new` and between `new` and `existing`: same type, different
/// keys, score at least `threshold`. Each pair once (`a < b`), best score first. Pairs are
/// scored one by one, so two candidates sharing a node say nothing about the other two.
pub fn duplicate_candidates(
    new: &[NodeRef],
    existing: &[NodeRef],
    threshold: f64,
) -> Vec<Candidate> {
    let mut seen: HashSet<(Uuid, Uuid)> = HashSet::new();
    let mut out = Vec::new();
    for (i, x) in new.iter().enumerate() {
        for y in new[i + 1..].iter().chain(existing) {
            if x.id == y.id || x.node_type != y.node_type || x.key == y.key {
                continue;
            }
            let pair = if x.id < y.id {
                (x.id, y.id)
            } else {
                (y.id, x.id)
            };
            if seen.contains(&pair) || !may_reach(&x.key, &y.key, threshold) {
                continue;
            }
            let (score, signal) = score_keys(&x.key, &y.key);
            if score >= threshold {
                seen.insert(pair);
                out.push(Candidate {
                    a: pair.0,
                    b: pair.1,
                    score,
                    reason: signal.reason(),
                });
            }
        }
    }
    out.sort_by(|p, q| {
        q.score
            .total_cmp(&p.score)
            .then(p.a.cmp(&q.a))
            .then(p.b.cmp(&q.b))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fold_case_punctuation_and_plural() {
        let cases = [
            (
                "Convolutional Neural Networks",
                "convolutional neural network",
            ),
            (
                "convolutional neural network",
                "convolutional neural network",
            ),
            (
                "  Convolutional   Neural-Network ",
                "convolutional neural network",
            ),
            ("BERT", "bert"),
            ("BERT (base)", "bert base"),
            ("ImageNet-1k", "imagenet 1k"),
            ("F1-score", "f1 score"),
            ("F1 score", "f1 score"),
            ("graph_neural_networks", "graph neural network"),
            ("CNNs", "cnn"),
            ("LLMs", "llm"),
            ("GATs", "gat"),
            ("MOS", "mos"),
            ("Big data", "big data"),
            (
                "Principal component analysis",
                "principal component analysis",
            ),
            ("CAN bus", "can bus"),
            ("Ontologies", "ontology"),
            ("Knowledge Graph Embeddings", "knowledge graph embedding"),
            ("Classes", "class"),
            ("losses", "loss"),
            ("Gaussian processes", "gaussian process"),
            ("beam search approaches", "beam search approach"),
            ("hash functions", "hash function"),
            ("Lookup caches", "lookup cache"),
            ("bounding boxes", "bounding box"),
            ("Naive Bayes", "naive bayes"),
            ("Naïve Bayes", "naive bayes"),
            ("k-means", "k means"),
            ("K-Means", "k means"),
            ("Metropolis-Hastings", "metropolis hastings"),
            ("Corpus", "corpus"),
            ("Text corpora", "text corpus"),
            ("statistical analyses", "statistical analysis"),
            ("Robotics", "robotics"),
            ("evaluation metrics", "evaluation metric"),
            ("Gas", "gas"),
            ("its", "its"),
            ("Dijkstra's algorithm", "dijkstra algorithm"),
            ("Dijkstra’s algorithm", "dijkstra algorithm"),
            ("Parkinson's disease", "parkinson disease"),
            ("C++", "c++"),
            ("C#", "c#"),
            ("C", "c"),
            ("BERT+CRF", "bert crf"),
            ("ﬁne-tuning", "fine tuning"),
            ("ＢＥＲＴ", "bert"),
            ("x²", "x2"),
            ("Schrödinger equation", "schrodinger equation"),
            ("ResNet-50", "resnet 50"),
            ("wav2vec 2.0", "wav2vec 2 0"),
            ("!!!", ""),
            ("", ""),
        ];
        for (name, key) in cases {
            assert_eq!(entity_key(name), key, "{name:?}");
        }
        assert_eq!(
            entity_key("Convolutional Neural Networks"),
            entity_key("convolutional neural network")
        );
    }

    #[test]
    fn keys_keep_other_scripts_and_are_bounded() {
        assert_eq!(entity_key("Нейронные Сети"), "нейронные сети");
        assert_eq!(entity_key("नमस्ते दुनिया"), "नमस्ते दुनिया");
        assert_eq!(entity_key("机器 学习"), "机器 学习");
        let long = "a".repeat(300) + " " + &"b".repeat(300);
        let key = entity_key(&long);
        assert_eq!(key.chars().count(), MAX_KEY_CHARS);
        assert_eq!(entity_key(&key), key, "a key is its own key");
        let spaced = "x".repeat(499) + " yz";
        assert_eq!(entity_key(&spaced), "x".repeat(499));
    }

    #[test]
    fn keys_are_idempotent() {
        for name in [
            "Convolutional Neural Networks",
            "GATs",
            "ImageNet-1k",
            "C++ compilers",
        ] {
            let key = entity_key(name);
            assert_eq!(entity_key(&key), key, "{name:?}");
        }
    }

    fn pairs(text: &str) -> Vec<(String, String)> {
        acronyms(text)
            .into_iter()
            .map(|d| (d.short, d.long))
            .collect()
    }

    #[test]
    fn finds_long_then_short_definitions() {
        assert_eq!(
            pairs("We train a convolutional neural network (CNN) on images."),
            [("CNN".into(), "convolutional neural network".into())]
        );
        assert_eq!(
            pairs("Graph Attention Networks (GATs) weigh neighbours."),
            [("GATs".into(), "Graph Attention Networks".into())]
        );
        assert_eq!(
            pairs("It uses long short-term memory (LSTM) cells."),
            [("LSTM".into(), "long short-term memory".into())]
        );
        assert_eq!(
            pairs("We report the mean intersection over union (mIoU) on the test set."),
            [("mIoU".into(), "mean intersection over union".into())]
        );
        assert_eq!(
            pairs("We introduce Dual-Path Context Network (DPCN), which works."),
            [("DPCN".into(), "Dual-Path Context Network".into())]
        );
        assert_eq!(
            pairs("the support vector\nmachine (SVM; Cortes 1995) separates"),
            [("SVM".into(), "support vector machine".into())]
        );
    }

    #[test]
    fn finds_short_then_long_definitions() {
        assert_eq!(
            pairs("Results for NER (named entity recognition) improve."),
            [("NER".into(), "named entity recognition".into())]
        );
    }

    #[test]
    fn ignores_parentheses_that_are_not_definitions() {
        assert!(pairs("accuracy rises (see above) and falls (Table 2).").is_empty());
        assert!(pairs("a gain of 3 points (74.1% vs 71.0%) overall").is_empty());
        assert!(pairs("as in prior work (e.g., Smith et al.) we").is_empty());
        assert!(pairs("an unclosed (CNN").is_empty());
        assert!(
            pairs("random forest (CNN)").is_empty(),
            "letters do not match"
        );
        assert!(pairs("(CNN) at the start").is_empty());
    }

    #[test]
    fn keeps_the_first_definition_of_a_short_form() {
        let text = "a graph attention network (GAT) and later a generative adversarial thing (GAT)";
        assert_eq!(
            pairs(text),
            [("GAT".into(), "graph attention network".into())]
        );
        let two = "a convolutional neural network (CNN) and a recurrent neural network (RNN)";
        assert_eq!(
            pairs(two),
            [
                ("CNN".into(), "convolutional neural network".into()),
                ("RNN".into(), "recurrent neural network".into())
            ]
        );
    }

    #[test]
    fn similarity_combines_edit_distance_and_overlap() {
        assert_eq!(similarity("BERT", "bert"), 1.0);
        assert_eq!(similarity("CNNs", "CNN"), 1.0);
        let close = similarity("Convolutional Neural Net", "convolutional neural network");
        assert!(close > 0.85 && close < 0.9, "{close}");
        assert_eq!(
            similarity("graph neural network", "neural network graph"),
            1.0
        );
        assert!(similarity("BERT", "GPT") < 0.3);
        assert_eq!(
            similarity("CNN", "convolutional neural network"),
            ACRONYM_SCORE
        );
        assert_eq!(similarity("BoW", "bag of words"), ACRONYM_SCORE);
        assert_eq!(similarity("", "x"), 0.0);
    }

    #[test]
    fn different_numbers_are_not_spelling_variants() {
        assert!(similarity("ImageNet-1k", "ImageNet-21k") < 0.5);
        assert!(similarity("CIFAR-10", "CIFAR-100") < 0.5);
        assert!(similarity("ResNet-50", "ResNet-101") < 0.5);
        assert!(similarity("ResNet50", "ResNet-50") > 0.85);
    }

    fn node(n: u128, name: &str, node_type: &str) -> NodeRef {
        NodeRef {
            id: Uuid::from_u128(n),
            name: name.to_owned(),
            node_type: node_type.to_owned(),
            key: entity_key(name),
        }
    }

    #[test]
    fn candidates_are_same_type_different_key_ordered_and_unique() {
        let new = [
            node(5, "Convolutional Neural Net", "Method"),
            node(3, "Transformer", "Method"),
        ];
        let existing = [
            node(1, "convolutional neural network", "Method"),
            node(2, "Convolutional Neural Networks", "Task"),
            node(4, "Transformers", "Method"),
            node(5, "Convolutional Neural Net", "Method"),
        ];
        let found = duplicate_candidates(&new, &existing, 0.85);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].a, Uuid::from_u128(1));
        assert_eq!(found[0].b, Uuid::from_u128(5));
        assert!(
            found[0].reason.starts_with("edit distance 0.8"),
            "{found:?}"
        );
    }

    #[test]
    fn candidates_among_new_nodes_and_by_acronym() {
        let new = [
            node(9, "CNN", "Method"),
            node(7, "convolutional neural network", "Method"),
        ];
        let found = duplicate_candidates(&new, &[], 0.85);
        assert_eq!(
            found,
            [Candidate {
                a: Uuid::from_u128(7),
                b: Uuid::from_u128(9),
                score: ACRONYM_SCORE,
                reason: "acronym of".into(),
            }]
        );
        assert!(duplicate_candidates(&new, &[], 0.95).is_empty());
    }

    #[test]
    fn candidates_are_never_transitive() {
        let a = "speech recognizer";
        let b = "speech recogniser";
        let c = "speech recognisers model";
        let t = 0.7;
        assert!(similarity(a, b) >= t);
        assert!(similarity(b, c) >= t, "{}", similarity(b, c));
        assert!(similarity(a, c) < t, "{}", similarity(a, c));
        let nodes = [
            node(1, a, "Method"),
            node(2, b, "Method"),
            node(3, c, "Method"),
        ];
        let found: Vec<(u128, u128)> = duplicate_candidates(&nodes, &[], t)
            .iter()
            .map(|c| (c.a.as_u128(), c.b.as_u128()))
            .collect();
        assert_eq!(found.len(), 2);
        assert!(
            found.contains(&(1, 2)) && found.contains(&(2, 3)),
            "{found:?}"
        );
    }

    #[test]
    fn candidates_come_best_first() {
        let new = [
            node(1, "Graph Neural Network", "Method"),
            node(2, "Graph Neural Networx", "Method"),
            node(3, "Neural Network Graph", "Method"),
        ];
        let found = duplicate_candidates(&new, &[], 0.8);
        assert!(found.len() >= 2);
        assert!(found.windows(2).all(|w| w[0].score >= w[1].score));
        assert_eq!(found[0].reason, "token overlap 1.00");
    }
}
