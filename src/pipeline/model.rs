//! The pipeline's data between stages: what an extractor answers for one section (raw, as the
//! JSON schema describes it), and what validation keeps (typed, with exact offsets).

use serde::{Deserialize, Serialize};

/// Entity types (the scientific information-extraction vocabulary).
pub const ENTITY_TYPES: [&str; 6] = [
    "Task",
    "Method",
    "Dataset",
    "Metric",
    "Material",
    "OtherScientificTerm",
];

/// Relation types.
pub const RELATION_TYPES: [&str; 7] = [
    "USED-FOR",
    "EVALUATE-FOR",
    "FEATURE-OF",
    "PART-OF",
    "HYPONYM-OF",
    "COMPARE",
    "CONJUNCTION",
];

/// An extractor's answer for one section, before validation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtraction {
    /// Entities named in the section.
    #[serde(default)]
    pub entities: Vec<RawEntity>,
    /// Relations between them.
    #[serde(default)]
    pub relations: Vec<RawRelation>,
    /// Where each entity is mentioned.
    #[serde(default)]
    pub mentions: Vec<RawMention>,
}

/// An entity as extracted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntity {
    /// The name as written.
    pub name: String,
    /// One of [`ENTITY_TYPES`] (anything else is rejected by validation).
    #[serde(rename = "type")]
    pub entity_type: String,
    /// A one-sentence description.
    #[serde(default)]
    pub description: Option<String>,
}

/// A relation as extracted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelation {
    /// The source entity's name (one of the extracted entities).
    pub source: String,
    /// The target entity's name.
    pub target: String,
    /// One of [`RELATION_TYPES`].
    #[serde(rename = "type")]
    pub relation_type: String,
    /// What the relation says.
    #[serde(default)]
    pub description: Option<String>,
    /// The extractor's confidence, 0 to 1.
    pub confidence: f64,
    /// A verbatim quote of the section that states the relation.
    pub evidence: String,
}

/// A mention as extracted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMention {
    /// The entity's name (one of the extracted entities).
    pub entity: String,
    /// A verbatim quote of the section that mentions it.
    pub evidence: String,
}

/// A quote located in its section: `text` is the section's own text at character offsets
/// `start..end` (so `substr(content, start + 1, end - start) = text` in SQL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quote {
    /// The section text at the offsets.
    pub text: String,
    /// First character (0-based, in characters, not bytes).
    pub start: i32,
    /// One past the last character.
    pub end: i32,
}

/// An entity that passed validation, with its resolution key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// The name as written (the expansion, when the text defines an acronym for it).
    pub name: String,
    /// One of [`ENTITY_TYPES`].
    pub entity_type: String,
    /// A description, if given.
    pub description: Option<String>,
    /// Normalised key: one node per tenant, key and type.
    pub key: String,
    /// Other names for it found in the section (e.g. the acronym).
    pub aliases: Vec<String>,
}

/// Where an entity is mentioned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mention {
    /// Index into [`SectionExtraction::entities`].
    pub entity: usize,
    /// The evidence.
    pub quote: Quote,
}

/// Review status given to a new relation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Proposal {
    /// Below the tenant's confidence threshold.
    Pending,
    /// At or above it.
    Proposed,
}

impl Proposal {
    /// The `edges.review_status` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Proposal::Pending => "pending",
            Proposal::Proposed => "proposed",
        }
    }
}

/// A relation that passed validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Relation {
    /// Index into [`SectionExtraction::entities`].
    pub source: usize,
    /// Index into [`SectionExtraction::entities`].
    pub target: usize,
    /// One of [`RELATION_TYPES`].
    pub relation_type: String,
    /// What it says.
    pub description: Option<String>,
    /// 0 to 1.
    pub confidence: f64,
    /// Pending or proposed, from the tenant's threshold.
    pub status: Proposal,
    /// The evidence.
    pub evidence: Quote,
}

/// What validation dropped, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// The evidence quote does not occur in the section.
    pub quote_not_found: u32,
    /// An entity or relation type outside the vocabulary.
    pub bad_type: u32,
    /// A relation or mention naming an entity that was not extracted (or was dropped).
    pub unknown_entity: u32,
    /// A relation from an entity to itself.
    pub self_relation: u32,
    /// A confidence outside 0..1, an empty name, or a name over 500 characters.
    pub invalid_value: u32,
}

impl Dropped {
    /// All dropped items.
    pub fn total(&self) -> u32 {
        self.quote_not_found
            + self.bad_type
            + self.unknown_entity
            + self.self_relation
            + self.invalid_value
    }
}

/// One section's validated extraction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SectionExtraction {
    /// Entities (deduplicated by key and type within the section).
    pub entities: Vec<Entity>,
    /// Relations (deduplicated by endpoints and type; the best-supported kept).
    pub relations: Vec<Relation>,
    /// Mentions (deduplicated by entity and offsets).
    pub mentions: Vec<Mention>,
    /// What was dropped.
    pub dropped: Dropped,
}

/// Who produced an extraction, recorded with every mention and piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    /// The agent: `extractor`, `gleaner`, or `offline-rules`.
    pub agent: String,
    /// The model (`offline` for the rule-based extractor).
    pub model: String,
    /// The prompt version, e.g. `extract-v1` (or the rules' version).
    pub prompt_version: String,
}
