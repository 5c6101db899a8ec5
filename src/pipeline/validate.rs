//! Validation of one section's raw extraction: what is kept is typed, resolved to keys, and
//! traceable to an exact quote of the section.
//!
//! # Quotes
//!
//! Evidence must occur in the section. Both sides are compared after normalising: every run of
//! Unicode whitespace is one space, leading and trailing whitespace is trimmed, typographic
//! quotes and dashes are their ASCII forms (`’` is `'`, `“` is `"`, `–` and `—` are `-`), and
//! soft hyphens and zero-width characters are ignored. Models routinely re-encode exactly these,
//! without changing a word. If that fails, the quote is tried once more without wrapping
//! quotation marks, ellipses and a final period. Matching is otherwise exact: not
//! case-insensitive, not fuzzy. A quote is shown to people as the paper's words and is where a
//! relation's credibility comes from; a case-folded or approximate match would accept
//! paraphrases and invented sentences that merely resemble the text (and case carries meaning
//! in scientific names: `SAM` and `Sam`, `ReLU` and `relu` layers).
//!
//! A quote that occurs several times is placed at its first occurrence. The located
//! [`Quote`] holds the section's own text (its whitespace and typography) at character offsets:
//! `section.chars().skip(start).take(end - start)` is `quote.text`.
//!
//! # Entities
//!
//! - Types are matched ignoring case and anything but letters and digits (`method`,
//!   `USED_FOR`, `used for` are accepted as `Method`, `USED-FOR`); others are dropped
//!   (`bad_type`).
//! - Names are trimmed with whitespace collapsed; empty names and names over
//!   [`MAX_NAME_CHARS`] characters are dropped (`invalid_value`), as are names without a letter
//!   or digit.
//! - Names resolve to keys ([`entity_key`]). When the section defines an abbreviation
//!   (`convolutional neural network (CNN)`), the short form resolves to the long form: an entity
//!   named `CNN` is named `convolutional neural network`, keyed by it, with `CNN` as an alias,
//!   and an entity named by the long form gets the short form as an alias.
//! - Entities with the same key and type are one (the first name wins; the first description
//!   too). Names that differ from the kept one only in spelling (case, plural, punctuation) are
//!   not aliases; names with another key (the short form) are.
//! - Every entity kept has at least one mention: the model's mentions whose quotes are found,
//!   or else the first whole-word occurrence of its name (or an alias) in the section. An
//!   entity with neither is dropped (`quote_not_found`) — every node must be traceable to the
//!   text. Relation evidence alone does not count: it need not name the entity.
//!
//! # Relations and mentions
//!
//! Checked in this order, each dropped item counted once: names and confidence
//! (`invalid_value`: an empty or too long name, a confidence outside 0..1 or NaN), type
//! (`bad_type`), endpoints (`unknown_entity`: a name that resolves to no kept entity; a name
//! whose key several entity types share refers to the first extracted), `self_relation`, and
//! the evidence (`quote_not_found`). Relations are deduplicated by source, target and type
//! (either direction for the symmetric `COMPARE` and `CONJUNCTION`), keeping the highest
//! confidence; a confidence below the tenant's threshold makes the relation
//! [`Proposal::Pending`], at or above it [`Proposal::Proposed`]. Mentions are deduplicated by
//! entity and offsets.

use std::collections::{HashMap, HashSet};

use super::model::{
    Dropped, Entity, Mention, Proposal, Quote, RawExtraction, Relation, SectionExtraction,
    ENTITY_TYPES, RELATION_TYPES,
};
use super::resolve::{acronyms, entity_key};

/// Longest entity name, in characters (the `nodes.name` column's limit).
pub const MAX_NAME_CHARS: usize = 500;

/// Relation types whose direction carries no meaning.
const SYMMETRIC: [&str; 2] = ["COMPARE", "CONJUNCTION"];

/// Characters ignored when locating quotes: soft hyphen and zero-width characters.
fn ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}'
    )
}

/// Typographic quotes and dashes as ASCII.
fn fold_typography(c: char) -> char {
    match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{2032}' | '\u{02BC}' => '\'',
        '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{201F}' | '\u{2033}' => '"',
        '\u{2010}' | '\u{2011}' | '\u{2012}' | '\u{2013}' | '\u{2014}' | '\u{2015}'
        | '\u{2212}' => '-',
        c => c,
    }
}

/// The normalised characters of `text`, each with the index of the character it came from.
fn normalised(text: &str) -> (Vec<char>, Vec<usize>) {
    let mut norm = Vec::with_capacity(text.len());
    let mut origin = Vec::with_capacity(text.len());
    let mut space_at: Option<usize> = None;
    for (i, c) in text.chars().enumerate() {
        if c.is_whitespace() {
            if !norm.is_empty() && space_at.is_none() {
                space_at = Some(i);
            }
            continue;
        }
        if ignorable(c) {
            continue;
        }
        if let Some(at) = space_at.take() {
            norm.push(' ');
            origin.push(at);
        }
        norm.push(fold_typography(c));
        origin.push(i);
    }
    (norm, origin)
}

/// Finds quotes in one section.
struct Locator {
    chars: Vec<char>,
    norm: Vec<char>,
    origin: Vec<usize>,
}

impl Locator {
    fn new(text: &str) -> Locator {
        let (norm, origin) = normalised(text);
        Locator {
            chars: text.chars().collect(),
            norm,
            origin,
        }
    }

    /// An evidence quote, as is or without wrapping quotation marks, ellipses and a final
    /// period.
    fn locate(&self, quote: &str) -> Option<Quote> {
        let (q, _) = normalised(quote);
        if let Some(found) = self.find(&q, false) {
            return Some(found);
        }
        let wrapping = |c: &char| matches!(c, '"' | '\'' | '.' | '\u{2026}' | ' ');
        let start = q.iter().position(|c| !wrapping(c))?;
        let end = q.iter().rposition(|c| !wrapping(c))? + 1;
        if end - start == q.len() {
            return None;
        }
        self.find(&q[start..end], false)
    }

    /// A name, as a whole word (not inside a longer word).
    fn locate_word(&self, name: &str) -> Option<Quote> {
        let (q, _) = normalised(name);
        self.find(&q, true)
    }

    fn find(&self, q: &[char], whole_word: bool) -> Option<Quote> {
        if q.is_empty() || q.len() > self.norm.len() {
            return None;
        }
        let word = |i: usize| self.norm.get(i).is_some_and(|c| c.is_alphanumeric());
        let inside_word = |s: usize| (s > 0 && word(s - 1)) || word(s + q.len());
        (0..=self.norm.len() - q.len())
            .filter(|&s| self.norm[s..s + q.len()] == *q)
            .find(|&s| !whole_word || !inside_word(s))
            .and_then(|s| self.quote(s, s + q.len()))
    }

    /// The section's own text for normalised characters `s..e`.
    fn quote(&self, s: usize, e: usize) -> Option<Quote> {
        let start = self.origin[s];
        let end = self.origin[e - 1] + 1;
        Some(Quote {
            text: self.chars[start..end].iter().collect(),
            start: i32::try_from(start).ok()?,
            end: i32::try_from(end).ok()?,
        })
    }
}

/// A vocabulary entry matching `value` ignoring case and anything but letters and digits.
fn canonical(value: &str, vocabulary: &[&'static str]) -> Option<&'static str> {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = squash(value);
    if wanted.is_empty() {
        return None;
    }
    vocabulary.iter().find(|t| squash(t) == wanted).copied()
}

/// A name trimmed, whitespace collapsed; `None` when empty or too long.
fn clean_name(name: &str) -> Option<String> {
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = name.chars().count();
    (count > 0 && count <= MAX_NAME_CHARS).then_some(name)
}

fn clean_description(description: Option<&str>) -> Option<String> {
    description
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_owned)
}

/// Names resolved with the section's abbreviations.
struct Names {
    /// Key of a short form → its long form.
    long_of: HashMap<String, String>,
    /// Key of a long form → its short forms.
    shorts_of: HashMap<String, Vec<String>>,
}

/// A name's entity name and key; `alias` is the name as given when it was a short form.
struct Resolved {
    name: String,
    key: String,
    alias: Option<String>,
}

impl Names {
    fn new(text: &str) -> Names {
        let mut long_of = HashMap::new();
        let mut shorts_of: HashMap<String, Vec<String>> = HashMap::new();
        for def in acronyms(text) {
            let short = entity_key(&def.short);
            let long = entity_key(&def.long);
            if short.is_empty() || long.is_empty() || short == long {
                continue;
            }
            long_of.entry(short).or_insert_with(|| def.long.clone());
            shorts_of.entry(long).or_default().push(def.short);
        }
        Names { long_of, shorts_of }
    }

    fn resolve(&self, name: &str) -> Resolved {
        let key = entity_key(name);
        match self.long_of.get(&key) {
            Some(long) => Resolved {
                name: long.clone(),
                key: entity_key(long),
                alias: Some(name.to_owned()),
            },
            None => Resolved {
                name: name.to_owned(),
                key,
                alias: None,
            },
        }
    }

    fn key(&self, name: &str) -> String {
        self.resolve(name).key
    }
}

/// Adds `alias` to an entity unless it is only another spelling of its name.
fn add_alias(entity: &mut Entity, alias: &str) {
    if alias != entity.name
        && entity_key(alias) != entity.key
        && !entity.aliases.iter().any(|a| a == alias)
    {
        entity.aliases.push(alias.to_owned());
    }
}

/// Validates one section's raw extraction against the section's text; see the module
/// documentation for what is kept.
pub fn validate(
    raw: &RawExtraction,
    section_text: &str,
    confidence_threshold: f64,
) -> SectionExtraction {
    validate_in_context(raw, section_text, section_text, confidence_threshold)
}

/// [`validate`], with abbreviations read from `definitions` (the whole paper) rather than the
/// section alone: a paper defines "Sparse Graph Transformer (SGT)" once, in its abstract, and
/// "SGT" in its results section is the same entity. Quotes are still located in the section.
pub fn validate_in_context(
    raw: &RawExtraction,
    section_text: &str,
    definitions: &str,
    confidence_threshold: f64,
) -> SectionExtraction {
    let locator = Locator::new(section_text);
    let names = Names::new(definitions);
    let mut dropped = Dropped::default();

    let mut entities: Vec<Entity> = Vec::new();
    let mut by_key_type: HashMap<(String, &'static str), usize> = HashMap::new();
    for e in &raw.entities {
        let Some(name) = clean_name(&e.name) else {
            dropped.invalid_value += 1;
            continue;
        };
        let Some(entity_type) = canonical(&e.entity_type, &ENTITY_TYPES) else {
            dropped.bad_type += 1;
            continue;
        };
        let resolved = names.resolve(&name);
        if resolved.key.is_empty() {
            dropped.invalid_value += 1;
            continue;
        }
        let description = clean_description(e.description.as_deref());
        let slot = (resolved.key.clone(), entity_type);
        let i = match by_key_type.get(&slot) {
            Some(&i) => {
                add_alias(&mut entities[i], &name);
                if entities[i].description.is_none() {
                    entities[i].description = description;
                }
                i
            }
            None => {
                let mut entity = Entity {
                    name: resolved.name,
                    entity_type: entity_type.to_owned(),
                    description,
                    key: resolved.key,
                    aliases: Vec::new(),
                };
                for short in names.shorts_of.get(&entity.key).into_iter().flatten() {
                    add_alias(&mut entity, short);
                }
                by_key_type.insert(slot, entities.len());
                entities.push(entity);
                entities.len() - 1
            }
        };
        if let Some(alias) = resolved.alias {
            add_alias(&mut entities[i], &alias);
        }
    }

    let first_by_key = |entities: &[Entity]| -> HashMap<String, usize> {
        let mut map = HashMap::new();
        for (i, e) in entities.iter().enumerate() {
            map.entry(e.key.clone()).or_insert(i);
        }
        map
    };

    let lookup = first_by_key(&entities);
    let mut quotes: Vec<Vec<Quote>> = vec![Vec::new(); entities.len()];
    for m in &raw.mentions {
        let Some(name) = clean_name(&m.entity) else {
            dropped.invalid_value += 1;
            continue;
        };
        let Some(&i) = lookup.get(&names.key(&name)) else {
            dropped.unknown_entity += 1;
            continue;
        };
        let Some(quote) = locator.locate(&m.evidence) else {
            dropped.quote_not_found += 1;
            continue;
        };
        if !quotes[i].contains(&quote) {
            quotes[i].push(quote);
        }
    }
    for (entity, found) in entities.iter().zip(quotes.iter_mut()) {
        if found.is_empty() {
            let by_name = std::iter::once(&entity.name)
                .chain(&entity.aliases)
                .find_map(|n| locator.locate_word(n));
            found.extend(by_name);
        }
    }

    let mut kept = Vec::new();
    let mut mentions = Vec::new();
    for (entity, found) in entities.into_iter().zip(quotes) {
        if found.is_empty() {
            dropped.quote_not_found += 1;
            continue;
        }
        let index = kept.len();
        mentions.extend(found.into_iter().map(|quote| Mention {
            entity: index,
            quote,
        }));
        kept.push(entity);
    }
    let entities = kept;
    let lookup = first_by_key(&entities);

    let mut relations: Vec<Relation> = Vec::new();
    let mut by_endpoints: HashMap<(usize, usize, &'static str), usize> = HashMap::new();
    for r in &raw.relations {
        let (Some(source), Some(target)) = (clean_name(&r.source), clean_name(&r.target)) else {
            dropped.invalid_value += 1;
            continue;
        };
        if !(0.0..=1.0).contains(&r.confidence) {
            dropped.invalid_value += 1;
            continue;
        }
        let Some(relation_type) = canonical(&r.relation_type, &RELATION_TYPES) else {
            dropped.bad_type += 1;
            continue;
        };
        let endpoints = (
            lookup.get(&names.key(&source)),
            lookup.get(&names.key(&target)),
        );
        let (Some(&s), Some(&t)) = endpoints else {
            dropped.unknown_entity += 1;
            continue;
        };
        if s == t {
            dropped.self_relation += 1;
            continue;
        }
        let Some(evidence) = locator.locate(&r.evidence) else {
            dropped.quote_not_found += 1;
            continue;
        };
        let relation = Relation {
            source: s,
            target: t,
            relation_type: relation_type.to_owned(),
            description: clean_description(r.description.as_deref()),
            confidence: r.confidence,
            status: if r.confidence < confidence_threshold {
                Proposal::Pending
            } else {
                Proposal::Proposed
            },
            evidence,
        };
        let slot = if SYMMETRIC.contains(&relation_type) {
            (s.min(t), s.max(t), relation_type)
        } else {
            (s, t, relation_type)
        };
        match by_endpoints.get(&slot) {
            Some(&k) if relations[k].confidence < relation.confidence => relations[k] = relation,
            Some(_) => {}
            None => {
                by_endpoints.insert(slot, relations.len());
                relations.push(relation);
            }
        }
    }

    let mut seen = HashSet::new();
    mentions.retain(|m| seen.insert((m.entity, m.quote.start, m.quote.end)));
    SectionExtraction {
        entities,
        relations,
        mentions,
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::pipeline::model::{RawEntity, RawMention, RawRelation};

    fn entity(name: &str, entity_type: &str) -> RawEntity {
        RawEntity {
            name: name.into(),
            entity_type: entity_type.into(),
            description: None,
        }
    }

    fn relation(
        source: &str,
        target: &str,
        t: &str,
        confidence: f64,
        evidence: &str,
    ) -> RawRelation {
        RawRelation {
            source: source.into(),
            target: target.into(),
            relation_type: t.into(),
            description: None,
            confidence,
            evidence: evidence.into(),
        }
    }

    fn mention(entity: &str, evidence: &str) -> RawMention {
        RawMention {
            entity: entity.into(),
            evidence: evidence.into(),
        }
    }

    /// The section text at a quote's character offsets.
    fn at(text: &str, q: &Quote) -> String {
        text.chars()
            .skip(q.start as usize)
            .take((q.end - q.start) as usize)
            .collect()
    }

    #[test]
    fn quotes_are_located_at_character_offsets_across_whitespace() {
        let text = "Über naïve 模型 work.\nWe  propose\n\tGraphNet for\u{00A0}link prediction.";
        let locator = Locator::new(text);
        let q = locator
            .locate("We propose GraphNet for link prediction")
            .expect("found");
        assert_eq!(q.text, "We  propose\n\tGraphNet for\u{00A0}link prediction");
        assert_eq!(at(text, &q), q.text);
        assert_eq!(q.start, 20);
        let q = locator.locate("  naïve 模型 ").expect("found");
        assert_eq!((q.start, q.end, q.text.as_str()), (5, 13, "naïve 模型"));
        assert_eq!(at(text, &q), q.text);
    }

    #[test]
    fn typography_is_folded_both_ways() {
        let text = "The model’s F1 rose – sharply – on “hard” cases.";
        let locator = Locator::new(text);
        let q = locator
            .locate("model's F1 rose - sharply - on \"hard\" cases")
            .expect("found");
        assert_eq!(q.text, "model’s F1 rose – sharply – on “hard” cases");
        assert_eq!(at(text, &q), q.text);
        let ascii = Locator::new("the model's F1 rose - sharply");
        assert!(ascii.locate("model’s F1 rose — sharply").is_some());
    }

    #[test]
    fn wrapping_marks_are_forgiven_but_not_case_or_wording() {
        let text = "We evaluate on ImageNet, which is large.";
        let locator = Locator::new(text);
        let q = locator
            .locate("\"We evaluate on ImageNet.\"")
            .expect("found");
        assert_eq!(q.text, "We evaluate on ImageNet");
        assert!(locator.locate("…which is large…").is_some());
        assert!(locator.locate("we evaluate on imagenet").is_none());
        assert!(locator
            .locate("We evaluate on ImageNet which is large")
            .is_none());
        assert!(locator.locate("We evaluate ... is large").is_none());
        assert!(locator.locate("   ").is_none());
        assert!(locator.locate("...").is_none());
    }

    #[test]
    fn soft_hyphens_and_zero_width_characters_are_ignored() {
        let text = "infor\u{00AD}mation re\u{200B}trieval";
        let q = Locator::new(text)
            .locate("information retrieval")
            .expect("found");
        assert_eq!(q.text, text);
        assert_eq!((q.start, q.end), (0, 23));
    }

    #[test]
    fn the_first_occurrence_is_taken_and_names_match_whole_words() {
        let text = "RoBERTa beats BERT. BERT is older.";
        let locator = Locator::new(text);
        assert_eq!(locator.locate("BERT").map(|q| q.start), Some(2));
        assert_eq!(locator.locate_word("BERT").map(|q| q.start), Some(14));
        assert!(locator.locate_word("BERTa").is_none());
    }

    proptest! {
        #[test]
        fn any_respaced_substring_is_located_at_exact_offsets(
            words in prop::collection::vec("[a-zé模’–]{1,6}", 1..12),
            seps in prop::collection::vec(prop::sample::select(vec![" ", "  ", "\n", "\t ", "\u{00A0}"]), 12),
            from in 0usize..12,
            len in 1usize..12,
        ) {
            let mut text = String::from("\n ");
            for (w, s) in words.iter().zip(&seps) {
                text.push_str(w);
                text.push_str(s);
            }
            let from = from % words.len();
            let to = (from + len).min(words.len());
            let quote = words[from..to].join(" ");
            let located = Locator::new(&text).locate(&quote);
            prop_assert!(located.is_some(), "{quote:?} in {text:?}");
            let q = located.unwrap();
            prop_assert_eq!(at(&text, &q), q.text.clone());
            let (a, _) = normalised(&q.text);
            let (b, _) = normalised(&quote);
            prop_assert_eq!(a, b);
        }
    }

    const TEXT: &str = "We propose GraphNet, a graph neural network for link prediction. \
                        GraphNet is evaluated on the OGB benchmark and outperforms GCN.";

    #[test]
    fn a_clean_extraction_is_kept_whole() {
        let raw = RawExtraction {
            entities: vec![
                entity("GraphNet", "Method"),
                entity("link prediction", "Task"),
                entity("OGB", "Dataset"),
            ],
            relations: vec![
                relation(
                    "GraphNet",
                    "link prediction",
                    "USED-FOR",
                    0.9,
                    "GraphNet, a graph neural network for link prediction",
                ),
                relation(
                    "OGB",
                    "GraphNet",
                    "EVALUATE-FOR",
                    0.5,
                    "GraphNet is evaluated on the OGB benchmark",
                ),
            ],
            mentions: vec![
                mention("GraphNet", "We propose GraphNet"),
                mention("link prediction", "for link prediction"),
                mention("OGB", "the OGB benchmark"),
            ],
        };
        let out = validate(&raw, TEXT, 0.6);
        assert_eq!(out.dropped, Dropped::default());
        assert_eq!(out.entities.len(), 3);
        assert_eq!(out.entities[1].key, "link prediction");
        assert_eq!(out.relations.len(), 2);
        assert_eq!(out.relations[0].status, Proposal::Proposed);
        assert_eq!(out.relations[1].status, Proposal::Pending);
        assert_eq!((out.relations[1].source, out.relations[1].target), (2, 0));
        assert_eq!(out.mentions.len(), 3);
        for m in &out.mentions {
            assert_eq!(at(TEXT, &m.quote), m.quote.text);
        }
    }

    #[test]
    fn types_are_mapped_from_trivial_spellings_or_dropped() {
        let raw = RawExtraction {
            entities: vec![
                entity("GraphNet", "method"),
                entity("link prediction", " TASK "),
                entity("GCN", "Other Scientific Term"),
                entity("OGB", "Person"),
            ],
            relations: vec![
                relation(
                    "GraphNet",
                    "link prediction",
                    "used_for",
                    0.9,
                    "for link prediction",
                ),
                relation("GraphNet", "GCN", "Compare", 0.9, "outperforms GCN"),
                relation("GraphNet", "GCN", "CAUSES", 0.9, "outperforms GCN"),
            ],
            mentions: vec![],
        };
        let out = validate(&raw, TEXT, 0.6);
        let types: Vec<&str> = out
            .entities
            .iter()
            .map(|e| e.entity_type.as_str())
            .collect();
        assert_eq!(types, ["Method", "Task", "OtherScientificTerm"]);
        let relations: Vec<&str> = out
            .relations
            .iter()
            .map(|r| r.relation_type.as_str())
            .collect();
        assert_eq!(relations, ["USED-FOR", "COMPARE"]);
        assert_eq!(out.dropped.bad_type, 2);
        assert_eq!(out.dropped.total(), 2);
    }

    #[test]
    fn invalid_values_unknown_entities_and_self_relations_are_dropped() {
        let raw = RawExtraction {
            entities: vec![
                entity("GraphNet", "Method"),
                entity("GCN", "Method"),
                entity("   ", "Method"),
                entity(&"x".repeat(501), "Method"),
                entity("!!!", "Method"),
            ],
            relations: vec![
                relation("GraphNet", "GCN", "COMPARE", f64::NAN, "outperforms GCN"),
                relation("GraphNet", "GCN", "COMPARE", 1.5, "outperforms GCN"),
                relation("GraphNet", "GCN", "COMPARE", -0.1, "outperforms GCN"),
                relation("", "GCN", "COMPARE", 0.5, "outperforms GCN"),
                relation("GraphNet", "GAT", "COMPARE", 0.5, "outperforms GCN"),
                relation("graphnet", "GraphNet", "COMPARE", 0.5, "outperforms GCN"),
                relation("GraphNet", "GCN", "COMPARE", 0.5, "outperforms GAT"),
                relation("GraphNet", "GCN", "COMPARE", 1.0, "outperforms GCN"),
            ],
            mentions: vec![
                mention("GAT", "GraphNet"),
                mention("", "GraphNet"),
                mention("GCN", "outperforms GAT"),
            ],
        };
        let out = validate(&raw, TEXT, 0.6);
        assert_eq!(out.entities.len(), 2);
        assert_eq!(
            out.dropped,
            Dropped {
                quote_not_found: 2,
                bad_type: 0,
                unknown_entity: 2,
                self_relation: 1,
                invalid_value: 3 + 4 + 1,
            }
        );
        assert_eq!(out.relations.len(), 1);
        assert_eq!(out.relations[0].confidence, 1.0);
    }

    #[test]
    fn entities_merge_by_key_and_type_only() {
        let raw = RawExtraction {
            entities: vec![
                RawEntity {
                    description: Some("  ".into()),
                    ..entity("Graph neural networks", "Method")
                },
                RawEntity {
                    description: Some("A model of graphs.".into()),
                    ..entity("graph neural network", "Method")
                },
                entity("graph neural network", "Task"),
            ],
            relations: vec![],
            mentions: vec![mention("graph neural network", "a graph neural network")],
        };
        let text = "Graph neural networks: we use a graph neural network.";
        let out = validate(&raw, text, 0.6);
        assert_eq!(out.entities.len(), 2);
        assert_eq!(out.entities[0].name, "Graph neural networks");
        assert_eq!(
            out.entities[0].description.as_deref(),
            Some("A model of graphs.")
        );
        assert!(
            out.entities[0].aliases.is_empty(),
            "spellings are not aliases"
        );
        assert_eq!(out.entities[1].entity_type, "Task");
        let first = |i: usize| {
            out.mentions
                .iter()
                .find(|m| m.entity == i)
                .map(|m| m.quote.start)
        };
        assert_eq!(first(0), Some(30), "the model's mention");
        assert_eq!(
            first(1),
            Some(32),
            "found by name (case-sensitive): the same key, another type"
        );
    }

    #[test]
    fn acronyms_resolve_to_their_expansion() {
        let text = "A convolutional neural network (CNN) reads images. \
                    The CNN is compared with a recurrent neural network (RNN).";
        let raw = RawExtraction {
            entities: vec![
                entity("CNN", "Method"),
                entity("convolutional neural network", "Method"),
                entity("RNN", "Method"),
            ],
            relations: vec![relation(
                "CNN",
                "recurrent neural network",
                "COMPARE",
                0.8,
                "The CNN is compared with a recurrent neural network (RNN).",
            )],
            mentions: vec![mention("CNN", "The CNN is compared")],
        };
        let out = validate(&raw, text, 0.6);
        assert_eq!(out.dropped, Dropped::default());
        assert_eq!(out.entities.len(), 2);
        let cnn = &out.entities[0];
        assert_eq!(cnn.name, "convolutional neural network");
        assert_eq!(cnn.key, "convolutional neural network");
        assert_eq!(cnn.aliases, ["CNN"]);
        let rnn = &out.entities[1];
        assert_eq!(
            (rnn.name.as_str(), rnn.aliases.as_slice()),
            ("recurrent neural network", &["RNN".to_owned()][..])
        );
        assert_eq!((out.relations[0].source, out.relations[0].target), (0, 1));
        let rnn_mention = out
            .mentions
            .iter()
            .find(|m| m.entity == 1)
            .expect("by name");
        assert_eq!(rnn_mention.quote.text, "recurrent neural network");
    }

    #[test]
    fn the_expansion_alone_gets_the_acronym_as_alias() {
        let text = "We train a long short-term memory (LSTM) network.";
        let raw = RawExtraction {
            entities: vec![entity("long short-term memory", "Method")],
            ..RawExtraction::default()
        };
        let out = validate(&raw, text, 0.6);
        assert_eq!(out.entities[0].aliases, ["LSTM"]);
        assert_eq!(out.mentions[0].quote.start, 11);
    }

    #[test]
    fn entities_without_a_locatable_mention_are_dropped_with_their_relations() {
        let raw = RawExtraction {
            entities: vec![entity("GraphNet", "Method"), entity("GraphSAGE", "Method")],
            relations: vec![relation(
                "GraphNet",
                "GraphSAGE",
                "COMPARE",
                0.9,
                "outperforms GCN",
            )],
            mentions: vec![mention("GraphSAGE", "GraphSAGE is fast")],
        };
        let out = validate(&raw, TEXT, 0.6);
        assert_eq!(out.entities.len(), 1);
        assert_eq!(out.entities[0].name, "GraphNet");
        assert_eq!(out.mentions.len(), 1);
        assert_eq!(out.mentions[0].quote.text, "GraphNet");
        assert_eq!(
            out.dropped.quote_not_found, 2,
            "the mention, then the entity"
        );
        assert_eq!(out.dropped.unknown_entity, 1);
    }

    #[test]
    fn relations_are_deduplicated_keeping_the_most_confident() {
        let raw = RawExtraction {
            entities: vec![entity("GraphNet", "Method"), entity("GCN", "Method")],
            relations: vec![
                relation("GraphNet", "GCN", "COMPARE", 0.4, "outperforms GCN"),
                relation("GCN", "GraphNet", "COMPARE", 0.7, "GraphNet is evaluated"),
                relation("GraphNet", "GCN", "USED-FOR", 0.6, "outperforms GCN"),
                relation("GCN", "GraphNet", "USED-FOR", 0.5, "outperforms GCN"),
                relation("GraphNet", "GCN", "COMPARE", 0.6, "outperforms GCN"),
            ],
            mentions: vec![],
        };
        let out = validate(&raw, TEXT, 0.6);
        assert_eq!(out.relations.len(), 3);
        let compare = &out.relations[0];
        assert_eq!(
            (compare.source, compare.target, compare.confidence),
            (1, 0, 0.7)
        );
        assert_eq!(compare.evidence.text, "GraphNet is evaluated");
        assert_eq!(compare.status, Proposal::Proposed);
        assert_eq!(
            out.relations[1].status,
            Proposal::Proposed,
            "at the threshold"
        );
        assert_eq!(out.relations[2].status, Proposal::Pending);
        assert_eq!(out.dropped.total(), 0);
    }

    #[test]
    fn mentions_are_deduplicated_by_entity_and_offsets() {
        let raw = RawExtraction {
            entities: vec![entity("GraphNet", "Method")],
            relations: vec![],
            mentions: vec![
                mention("GraphNet", "We propose GraphNet"),
                mention("graphnet", "We  propose GraphNet"),
                mention("GraphNet", "GraphNet is evaluated"),
            ],
        };
        let out = validate(&raw, TEXT, 0.6);
        assert_eq!(out.mentions.len(), 2);
    }
}
