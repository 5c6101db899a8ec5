//! Extraction of one section by a language model: versioned prompts, the structured-output
//! schema, parsing against it, and the per-section driver with its repair and gleaning calls.
//!
//! # Prompts
//!
//! The prompts are files under `prompts/` at the repository root, embedded at build time. Each
//! holds a system instruction after `<!-- system -->` and a user template after
//! `<!-- user -->`, whose `{{name}}` placeholders are filled once (a value that itself contains
//! `{{…}}` is not expanded again). Changing a prompt means a new file and a new version
//! constant: the version is stored with everything the prompt produced, and a section is
//! extracted again only under a new (model, prompt version).
//!
//! - `extract-v1` ([`EXTRACT_PROMPT_VERSION`]): the instruction and the section.
//! - `glean-v1` ([`GLEAN_PROMPT_VERSION`]): a second pass given the first answer, for what it
//!   missed; its system instruction follows the extraction's.
//! - `repair-v1` ([`REPAIR_PROMPT_VERSION`]): a rejected answer and why; corrected JSON only.
//!
//! The schema (`prompts/extraction.schema.json`, [`schema`]) uses only what Gemini's
//! `responseSchema` accepts: `type`, `properties`, `required`, `items`, `enum`, `description`.
//!
//! # The driver ([`extract_section`])
//!
//! 1. `extract`: the extraction request. An answer that is not JSON
//!    ([`LlmError::MalformedOutput`]) or does not follow the schema ([`parse_raw`]) gets one
//!    `repair` call with the rejected text and the error; if that answer is still invalid, the
//!    section fails.
//! 2. `glean`, when the tenant enables it: the gleaning request, with its own single
//!    `glean-repair`. Its items are appended to the first answer; validation removes
//!    duplicates.
//!
//! Any other error of a call fails the section with the error's message. The failure is
//! retryable when the error is transient (rate limits after the provider's retries, 5xx,
//! timeouts, connection failures, a database error while checking limits): the job runner
//! tries the job again later. A failing glean fails the section as well, so a stored
//! extraction is always what its prompt version says.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use serde_json::Value;

use super::model::{Provenance, RawExtraction};
use crate::llm::{LlmError, LlmRequest, LlmResponse};
use crate::usage::calls::CallError;

/// The extraction prompt's version.
pub const EXTRACT_PROMPT_VERSION: &str = "extract-v1";
/// The gleaning prompt's version.
pub const GLEAN_PROMPT_VERSION: &str = "glean-v1";
/// The repair prompt's version.
pub const REPAIR_PROMPT_VERSION: &str = "repair-v1";
/// The prompt version stored for a run with gleaning (the extraction's, then the gleaning's).
pub const EXTRACT_GLEAN_PROMPT_VERSION: &str = "extract-v1+glean-v1";
/// The agent recorded for language-model extraction.
pub const EXTRACT_AGENT: &str = "extractor";
/// The output budget of every extraction call, in tokens.
pub const MAX_OUTPUT_TOKENS: u32 = 8192;

const EXTRACT_PROMPT: &str = include_str!("../../prompts/extract-v1.md");
const GLEAN_PROMPT: &str = include_str!("../../prompts/glean-v1.md");
const REPAIR_PROMPT: &str = include_str!("../../prompts/repair-v1.md");
const SCHEMA_JSON: &str = include_str!("../../prompts/extraction.schema.json");

static SCHEMA: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(SCHEMA_JSON).expect("prompts/extraction.schema.json is valid JSON")
});

/// The JSON schema of an extraction, sent as the structured-output schema.
pub fn schema() -> &'static Value {
    &SCHEMA
}

/// The prompt version stored with a run's output: [`EXTRACT_PROMPT_VERSION`], or
/// [`EXTRACT_GLEAN_PROMPT_VERSION`] with gleaning.
pub fn prompt_version(gleaning: bool) -> &'static str {
    if gleaning {
        EXTRACT_GLEAN_PROMPT_VERSION
    } else {
        EXTRACT_PROMPT_VERSION
    }
}

/// A prompt file's system instruction and user template.
fn parts(file: &'static str) -> (&'static str, &'static str) {
    let body = file
        .trim_start()
        .strip_prefix("<!-- system -->")
        .unwrap_or(file);
    match body.split_once("<!-- user -->") {
        Some((system, user)) => (system.trim(), user.trim()),
        None => ("", body.trim()),
    }
}

/// Fills `{{name}}` placeholders in one pass; unknown placeholders stay as they are.
fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let value = after.find("}}").and_then(|close| {
            let name = &after[..close];
            values
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value, close + 2))
        });
        match value {
            Some((value, skip)) => {
                out.push_str(value);
                rest = &after[skip..];
            }
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The section to extract, with the context the prompts show.
#[derive(Clone, Copy, Debug)]
pub struct SectionInput<'a> {
    /// The paper's title.
    pub title: &'a str,
    /// The section's heading, if it has one.
    pub heading: Option<&'a str>,
    /// The section's text.
    pub text: &'a str,
}

impl SectionInput<'_> {
    fn values(&self) -> [(&str, &str); 3] {
        let title = if self.title.trim().is_empty() {
            "(untitled)"
        } else {
            self.title
        };
        let heading = match self.heading {
            Some(h) if !h.trim().is_empty() => h,
            _ => "(no heading)",
        };
        [
            ("title", title),
            ("heading", heading),
            ("section", self.text),
        ]
    }
}

fn request(model: &str, system: String, prompt: String) -> LlmRequest {
    LlmRequest {
        model: model.to_owned(),
        system,
        prompt,
        schema: schema().clone(),
        max_output_tokens: MAX_OUTPUT_TOKENS,
        temperature: 0.0,
    }
}

/// The extraction request for a section.
pub fn extract_request(model: &str, section: &SectionInput<'_>) -> LlmRequest {
    let (system, user) = parts(EXTRACT_PROMPT);
    request(model, system.to_owned(), render(user, &section.values()))
}

/// The gleaning request for a section, given the first answer.
pub fn glean_request(model: &str, section: &SectionInput<'_>, first: &RawExtraction) -> LlmRequest {
    let (extract_system, _) = parts(EXTRACT_PROMPT);
    let (glean_system, user) = parts(GLEAN_PROMPT);
    let previous = serde_json::to_string(first).unwrap_or_default();
    let [title, heading, text] = section.values();
    let values = [title, heading, text, ("previous", previous.as_str())];
    request(
        model,
        format!("{extract_system}\n\n{glean_system}"),
        render(user, &values),
    )
}

/// The repair request for a rejected answer (`output`) and the reason it was rejected.
pub fn repair_request(model: &str, output: &str, error: &str) -> LlmRequest {
    let (system, user) = parts(REPAIR_PROMPT);
    let values = [("output", output), ("error", error)];
    request(model, system.to_owned(), render(user, &values))
}

/// Why an answer does not follow the schema: the path of the first problem and what it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SchemaError {
    /// Where, e.g. `relations[2].confidence` (`$` for the whole answer).
    pub path: String,
    /// What, e.g. `expected a number`.
    pub message: String,
}

fn schema_error(path: &str, message: &str) -> SchemaError {
    SchemaError {
        path: if path.is_empty() { "$" } else { path }.to_owned(),
        message: message.to_owned(),
    }
}

/// Checks an answer against the schema and reads it.
///
/// Checked: the JSON types, required fields (a `null` counts as missing), no unknown fields,
/// numbers where numbers belong. Not checked: `enum` values — an entity or relation type
/// outside the vocabulary is one bad item, which validation maps (case, `_` for `-`) or drops
/// and counts, rather than a reason to pay for a repair of the whole answer.
pub fn parse_raw(value: &Value) -> Result<RawExtraction, SchemaError> {
    check(schema(), value, "")?;
    serde_json::from_value(value.clone()).map_err(|e| schema_error("", &e.to_string()))
}

fn field_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `value` against the schema subset used here.
fn check(schema: &Value, value: &Value, path: &str) -> Result<(), SchemaError> {
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(object) = value.as_object() else {
                return Err(schema_error(path, "expected an object"));
            };
            let properties = schema.get("properties").and_then(Value::as_object);
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if let Some(key) = object
                .keys()
                .find(|key| !properties.is_some_and(|p| p.contains_key(key.as_str())))
            {
                return Err(schema_error(&field_path(path, key), "unknown field"));
            }
            if let Some(key) = required
                .iter()
                .find(|key| object.get(**key).is_none_or(Value::is_null))
            {
                return Err(schema_error(
                    &field_path(path, key),
                    "missing required field",
                ));
            }
            for (key, property) in properties.into_iter().flatten() {
                match object.get(key) {
                    Some(Value::Null) | None => {}
                    Some(v) => check(property, v, &field_path(path, key))?,
                }
            }
            Ok(())
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return Err(schema_error(path, "expected an array"));
            };
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"))?;
                }
            }
            Ok(())
        }
        Some("string") if !value.is_string() => Err(schema_error(path, "expected a string")),
        Some("number") if !value.is_number() => Err(schema_error(path, "expected a number")),
        Some("integer") if !(value.is_i64() || value.is_u64()) => {
            Err(schema_error(path, "expected an integer"))
        }
        Some("boolean") if !value.is_boolean() => Err(schema_error(path, "expected a boolean")),
        _ => Ok(()),
    }
}

/// One model call of the driver. Its name is the agent of the call's usage and part of its
/// idempotency key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// The extraction.
    Extract,
    /// The repair of a rejected extraction.
    Repair,
    /// The gleaning pass.
    Glean,
    /// The repair of a rejected gleaning answer.
    GleanRepair,
}

impl Step {
    /// `extract`, `repair`, `glean` or `glean-repair`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Extract => "extract",
            Step::Repair => "repair",
            Step::Glean => "glean",
            Step::GleanRepair => "glean-repair",
        }
    }

    /// The version of the prompt the step sends.
    pub fn prompt_version(self) -> &'static str {
        match self {
            Step::Extract => EXTRACT_PROMPT_VERSION,
            Step::Glean => GLEAN_PROMPT_VERSION,
            Step::Repair | Step::GleanRepair => REPAIR_PROMPT_VERSION,
        }
    }

    fn repair(self) -> Step {
        match self {
            Step::Extract | Step::Repair => Step::Repair,
            Step::Glean | Step::GleanRepair => Step::GleanRepair,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The future a [`ModelCall`] returns.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<LlmResponse, CallError>> + Send + 'a>>;

/// How the driver calls a model: the pipeline plugs in the metered gateway (with the job's
/// call context, `step` as the agent); tests plug in scripted answers.
pub trait ModelCall: Send + Sync {
    /// Makes one call for `step` (one of [`Step::as_str`]).
    fn call<'a>(&'a self, step: &'a str, request: &'a LlmRequest) -> CallFuture<'a>;
}

/// A section extracted by the model: the answers, merged, before validation.
#[derive(Clone, Debug, PartialEq)]
pub struct SectionRun {
    /// The extraction, with the gleaning pass's items appended.
    pub raw: RawExtraction,
    /// The calls made, in order.
    pub steps: Vec<Step>,
    /// The agent ([`EXTRACT_AGENT`]), the model and [`prompt_version`].
    pub provenance: Provenance,
}

/// Why a section could not be extracted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{step}: {reason}")]
pub struct SectionFailure {
    /// The call that failed.
    pub step: Step,
    /// What happened, for people (stored as the section's failure reason).
    pub reason: String,
    /// Whether running the job again later may succeed.
    pub retryable: bool,
}

fn call_failure(step: Step, error: CallError) -> SectionFailure {
    SectionFailure {
        step,
        retryable: error.is_retryable(),
        reason: error.to_string(),
    }
}

/// Why text the provider could not parse is not JSON.
fn json_error(text: &str) -> String {
    if text.trim().is_empty() {
        return "the output is empty".to_owned();
    }
    match serde_json::from_str::<Value>(text) {
        Err(e) => format!("the output is not valid JSON: {e}"),
        Ok(_) => "the output is not valid JSON".to_owned(),
    }
}

/// What became of one call: a valid answer, or the rejected text and why.
enum Answer {
    Valid(RawExtraction),
    Rejected { text: String, error: String },
}

async fn ask(
    model: &dyn ModelCall,
    step: Step,
    request: &LlmRequest,
    steps: &mut Vec<Step>,
) -> Result<Answer, SectionFailure> {
    steps.push(step);
    match model.call(step.as_str(), request).await {
        Ok(response) => match parse_raw(&response.json) {
            Ok(raw) => Ok(Answer::Valid(raw)),
            Err(e) => {
                let text = if response.text.trim().is_empty() {
                    response.json.to_string()
                } else {
                    response.text
                };
                Ok(Answer::Rejected {
                    text,
                    error: format!("the output does not follow the schema: {e}"),
                })
            }
        },
        Err(CallError::Llm(LlmError::MalformedOutput { text, .. })) => {
            let error = json_error(&text);
            Ok(Answer::Rejected { text, error })
        }
        Err(e) => Err(call_failure(step, e)),
    }
}

/// One step with at most one repair.
async fn step_with_repair(
    model: &dyn ModelCall,
    model_name: &str,
    step: Step,
    request: &LlmRequest,
    steps: &mut Vec<Step>,
) -> Result<RawExtraction, SectionFailure> {
    let (text, first_error) = match ask(model, step, request, steps).await? {
        Answer::Valid(raw) => return Ok(raw),
        Answer::Rejected { text, error } => (text, error),
    };
    let repair = step.repair();
    let request = repair_request(model_name, &text, &first_error);
    match ask(model, repair, &request, steps).await? {
        Answer::Valid(raw) => Ok(raw),
        Answer::Rejected { error, .. } => Err(SectionFailure {
            step: repair,
            reason: format!(
                "still invalid after one repair: {error} (before the repair: {first_error})"
            ),
            retryable: false,
        }),
    }
}

/// Extracts one section with `model_name`: extraction, at most one repair, and with `gleaning`
/// one gleaning pass (with at most one repair of its own). See the module documentation.
pub async fn extract_section(
    model: &dyn ModelCall,
    model_name: &str,
    section: &SectionInput<'_>,
    gleaning: bool,
) -> Result<SectionRun, SectionFailure> {
    let mut steps = Vec::new();
    let request = extract_request(model_name, section);
    let mut raw = step_with_repair(model, model_name, Step::Extract, &request, &mut steps).await?;
    if gleaning {
        let request = glean_request(model_name, section, &raw);
        let more = step_with_repair(model, model_name, Step::Glean, &request, &mut steps).await?;
        raw.entities.extend(more.entities);
        raw.relations.extend(more.relations);
        raw.mentions.extend(more.mentions);
    }
    Ok(SectionRun {
        raw,
        steps,
        provenance: Provenance {
            agent: EXTRACT_AGENT.to_owned(),
            model: model_name.to_owned(),
            prompt_version: prompt_version(gleaning).to_owned(),
        },
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, VecDeque};
    use std::sync::Mutex;
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::db::DbError;
    use crate::llm::{FinishReason, TokenUsage};
    use crate::pipeline::model::{
        RawEntity, RawMention, RawRelation, ENTITY_TYPES, RELATION_TYPES,
    };

    fn enum_of(path: &[&str]) -> Vec<String> {
        let mut node = schema();
        for key in path {
            node = &node[*key];
        }
        node["enum"]
            .as_array()
            .expect("an enum")
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect()
    }

    #[test]
    fn schema_enums_are_the_vocabularies() {
        assert_eq!(
            enum_of(&["properties", "entities", "items", "properties", "type"]),
            ENTITY_TYPES
        );
        assert_eq!(
            enum_of(&["properties", "relations", "items", "properties", "type"]),
            RELATION_TYPES
        );
    }

    /// Every keyword the schema uses, at any depth (property names excluded).
    fn keywords(schema: &Value, out: &mut BTreeSet<String>) {
        let Some(object) = schema.as_object() else {
            return;
        };
        for (key, value) in object {
            out.insert(key.clone());
            match key.as_str() {
                "properties" => {
                    for property in value.as_object().into_iter().flat_map(|p| p.values()) {
                        keywords(property, out);
                    }
                }
                "items" => keywords(value, out),
                _ => {}
            }
        }
    }

    #[test]
    fn schema_stays_within_what_gemini_accepts() {
        let mut used = BTreeSet::new();
        keywords(schema(), &mut used);
        let allowed: BTreeSet<String> = [
            "type",
            "properties",
            "required",
            "items",
            "enum",
            "description",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert!(used.is_subset(&allowed), "{used:?}");
        assert!(used.contains("required") && used.contains("enum"));
        assert!(!SCHEMA_JSON.contains("$ref") && !SCHEMA_JSON.contains("additionalProperties"));
    }

    fn valid_document() -> Value {
        json!({
            "entities": [
                {"name": "graph attention network", "type": "Method", "description": "A model."},
                {"name": "node classification", "type": "Task"}
            ],
            "relations": [{
                "source": "graph attention network",
                "target": "node classification",
                "type": "USED-FOR",
                "description": "The model classifies nodes.",
                "confidence": 0.9,
                "evidence": "a graph attention network for node classification"
            }, {
                "source": "graph attention network",
                "target": "node classification",
                "type": "EVALUATE-FOR",
                "confidence": 1,
                "evidence": "evaluated on node classification"
            }],
            "mentions": [{"entity": "node classification", "evidence": "node classification"}]
        })
    }

    #[test]
    fn a_document_valid_under_the_schema_reads_into_the_types() {
        let raw = parse_raw(&valid_document()).expect("valid");
        assert_eq!(raw.entities.len(), 2);
        assert_eq!(raw.entities[1].description, None);
        assert_eq!(raw.relations[1].confidence, 1.0);
        assert_eq!(raw.mentions[0].entity, "node classification");
        let empty = json!({"entities": [], "relations": [], "mentions": []});
        assert_eq!(parse_raw(&empty), Ok(RawExtraction::default()));
        let null_description = json!({
            "entities": [{"name": "x", "type": "Task", "description": null}],
            "relations": [], "mentions": []
        });
        assert_eq!(
            parse_raw(&null_description).expect("valid").entities[0].description,
            None
        );
    }

    #[test]
    fn the_serialised_types_are_valid_under_the_schema() {
        let raw = RawExtraction {
            entities: vec![RawEntity {
                name: "BERT".into(),
                entity_type: "Method".into(),
                description: Some("A language model.".into()),
            }],
            relations: vec![RawRelation {
                source: "BERT".into(),
                target: "GLUE".into(),
                relation_type: "COMPARE".into(),
                description: None,
                confidence: 0.5,
                evidence: "BERT on GLUE".into(),
            }],
            mentions: vec![RawMention {
                entity: "BERT".into(),
                evidence: "BERT".into(),
            }],
        };
        let value = serde_json::to_value(&raw).expect("serialisable");
        assert_eq!(parse_raw(&value), Ok(raw));
    }

    fn error_of(mut document: Value, edit: impl FnOnce(&mut Value)) -> String {
        edit(&mut document);
        parse_raw(&document).expect_err("invalid").to_string()
    }

    #[test]
    fn schema_errors_name_the_path_of_the_first_problem() {
        let doc = valid_document();
        assert_eq!(
            error_of(doc.clone(), |d| d["relations"][1]["confidence"] =
                json!("0.9")),
            "relations[1].confidence: expected a number"
        );
        assert_eq!(
            error_of(doc.clone(), |d| {
                d["relations"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("evidence");
            }),
            "relations[0].evidence: missing required field"
        );
        assert_eq!(
            error_of(doc.clone(), |d| d["entities"][0]["name"] = Value::Null),
            "entities[0].name: missing required field"
        );
        assert_eq!(
            error_of(doc.clone(), |d| d["entities"][1]["aliases"] = json!([])),
            "entities[1].aliases: unknown field"
        );
        assert_eq!(
            error_of(doc.clone(), |d| d["extra"] = json!(1)),
            "extra: unknown field"
        );
        assert_eq!(
            error_of(doc.clone(), |d| {
                d.as_object_mut().unwrap().remove("mentions");
            }),
            "mentions: missing required field"
        );
        assert_eq!(
            error_of(doc.clone(), |d| d["entities"] = json!({})),
            "entities: expected an array"
        );
        assert_eq!(
            error_of(doc.clone(), |d| d["mentions"][0] = json!("x")),
            "mentions[0]: expected an object"
        );
        assert_eq!(
            error_of(doc, |d| d["entities"][0]["type"] = json!(3)),
            "entities[0].type: expected a string"
        );
        assert_eq!(
            parse_raw(&json!([])).unwrap_err().to_string(),
            "$: expected an object"
        );
    }

    #[test]
    fn types_outside_the_vocabulary_are_left_to_validation() {
        let mut doc = valid_document();
        doc["entities"][0]["type"] = json!("method");
        doc["relations"][0]["type"] = json!("used_for");
        let raw = parse_raw(&doc).expect("valid");
        assert_eq!(raw.entities[0].entity_type, "method");
    }

    /// Every `{{name}}` in a template.
    fn placeholders(template: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut rest = template;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let close = after.find("}}").expect("closed placeholder");
            found.insert(after[..close].to_owned());
            rest = &after[close + 2..];
        }
        found
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn prompt_files_have_both_parts_and_known_placeholders() {
        for (file, expected) in [
            (EXTRACT_PROMPT, set(&["title", "heading", "section"])),
            (
                GLEAN_PROMPT,
                set(&["title", "heading", "section", "previous"]),
            ),
            (REPAIR_PROMPT, set(&["output", "error"])),
        ] {
            let (system, user) = parts(file);
            assert!(system.len() > 100, "{file}");
            assert!(!system.contains("<!--") && !user.contains("<!--"));
            assert!(placeholders(system).is_empty());
            assert_eq!(placeholders(user), expected);
        }
    }

    #[test]
    fn the_extraction_prompt_names_the_vocabulary_and_the_evidence_rules() {
        let (system, _) = parts(EXTRACT_PROMPT);
        for t in ENTITY_TYPES.iter().chain(RELATION_TYPES.iter()) {
            assert!(system.contains(&format!("- {t}:")), "{t}");
        }
        for phrase in [
            "character for character",
            "one sentence or less",
            "exactly as written",
            "calibrated",
        ] {
            assert!(system.contains(phrase), "{phrase}");
        }
    }

    #[test]
    fn requests_carry_the_model_the_schema_and_the_section() {
        let section = SectionInput {
            title: "Graphs {{heading}}",
            heading: None,
            text: "We propose {{section}} GAT.",
        };
        let r = extract_request("gemini-2.5-flash", &section);
        assert_eq!(r.model, "gemini-2.5-flash");
        assert_eq!(r.temperature, 0.0);
        assert_eq!(r.max_output_tokens, MAX_OUTPUT_TOKENS);
        assert_eq!(&r.schema, schema());
        assert!(r.system.starts_with("You build a knowledge graph"));
        assert!(
            r.prompt.contains("Paper: Graphs {{heading}}\n"),
            "{}",
            r.prompt
        );
        assert!(r.prompt.contains("Section: (no heading)\n"));
        assert!(r
            .prompt
            .contains("<section>\nWe propose {{section}} GAT.\n</section>"));

        let first = RawExtraction {
            entities: vec![RawEntity {
                name: "GAT".into(),
                entity_type: "Method".into(),
                description: None,
            }],
            ..RawExtraction::default()
        };
        let g = glean_request("m", &section, &first);
        assert!(g.system.starts_with(&r.system));
        assert!(g.system.contains("second pass"));
        assert!(g.prompt.contains(r#""name":"GAT""#), "{}", g.prompt);
        assert!(g.prompt.contains("We propose {{section}} GAT."));

        let fix = repair_request("m", "{\"entities\": [", "the output is empty");
        assert!(fix.prompt.contains("rejected: the output is empty"));
        assert!(fix.prompt.contains("{\"entities\": ["));
        assert!(fix.system.contains("corrected JSON only"));
    }

    fn ok(json: Value) -> Result<LlmResponse, CallError> {
        Ok(LlmResponse {
            text: json.to_string(),
            json,
            usage: TokenUsage::default(),
            finish: FinishReason::Stop,
            attempts: 1,
            latency: Duration::ZERO,
        })
    }

    fn malformed(text: &str) -> Result<LlmResponse, CallError> {
        Err(CallError::Llm(LlmError::MalformedOutput {
            text: text.to_owned(),
            usage: TokenUsage::default(),
        }))
    }

    /// Answers in order, recording each call's step and request.
    struct Scripted {
        answers: Mutex<VecDeque<Result<LlmResponse, CallError>>>,
        calls: Mutex<Vec<(String, LlmRequest)>>,
    }

    impl Scripted {
        fn new(answers: Vec<Result<LlmResponse, CallError>>) -> Scripted {
            Scripted {
                answers: Mutex::new(answers.into()),
                calls: Mutex::new(Vec::new()),
            }
        }

        fn steps(&self) -> Vec<String> {
            self.calls
                .lock()
                .unwrap()
                .iter()
                .map(|(s, _)| s.clone())
                .collect()
        }

        fn request(&self, i: usize) -> LlmRequest {
            self.calls.lock().unwrap()[i].1.clone()
        }
    }

    impl ModelCall for Scripted {
        fn call<'a>(&'a self, step: &'a str, request: &'a LlmRequest) -> CallFuture<'a> {
            Box::pin(async move {
                self.calls
                    .lock()
                    .unwrap()
                    .push((step.to_owned(), request.clone()));
                self.answers
                    .lock()
                    .unwrap()
                    .pop_front()
                    .expect("a scripted answer for every call")
            })
        }
    }

    const SECTION: SectionInput<'static> = SectionInput {
        title: "Attention on graphs",
        heading: Some("Abstract"),
        text: "We propose a graph attention network for node classification.",
    };

    fn one_entity(name: &str) -> Value {
        json!({
            "entities": [{"name": name, "type": "Method"}],
            "relations": [],
            "mentions": [{"entity": name, "evidence": name}]
        })
    }

    async fn drive(script: &Scripted, gleaning: bool) -> Result<SectionRun, SectionFailure> {
        extract_section(script, "gemini-2.5-flash", &SECTION, gleaning).await
    }

    #[tokio::test]
    async fn a_valid_answer_is_the_run() {
        let script = Scripted::new(vec![ok(one_entity("graph attention network"))]);
        let run = drive(&script, false).await.expect("extracted");
        assert_eq!(run.raw.entities[0].name, "graph attention network");
        assert_eq!(run.steps, [Step::Extract]);
        assert_eq!(
            run.provenance,
            Provenance {
                agent: "extractor".into(),
                model: "gemini-2.5-flash".into(),
                prompt_version: "extract-v1".into(),
            }
        );
        assert_eq!(script.steps(), ["extract"]);
        assert!(script.request(0).prompt.contains(SECTION.text));
    }

    #[tokio::test]
    async fn malformed_output_is_repaired_once() {
        let script = Scripted::new(vec![
            malformed("{\"entities\": [{\"name\": \"GAT\""),
            ok(one_entity("GAT")),
        ]);
        let run = drive(&script, false).await.expect("repaired");
        assert_eq!(run.raw.entities[0].name, "GAT");
        assert_eq!(run.steps, [Step::Extract, Step::Repair]);
        assert_eq!(script.steps(), ["extract", "repair"]);
        let repair = script.request(1);
        assert!(repair.prompt.contains("{\"entities\": [{\"name\": \"GAT\""));
        assert!(
            repair.prompt.contains("not valid JSON"),
            "{}",
            repair.prompt
        );
        assert_eq!(repair.model, "gemini-2.5-flash");
    }

    #[tokio::test]
    async fn malformed_twice_fails_the_section_with_the_reason() {
        let script = Scripted::new(vec![malformed("{"), malformed("not json at all")]);
        let failure = drive(&script, true).await.expect_err("fails");
        assert_eq!(failure.step, Step::Repair);
        assert!(!failure.retryable);
        assert!(
            failure.reason.contains("still invalid after one repair"),
            "{failure}"
        );
        assert!(failure.reason.contains("not valid JSON"), "{failure}");
        assert_eq!(
            script.steps(),
            ["extract", "repair"],
            "no gleaning after a failure"
        );
    }

    #[tokio::test]
    async fn schema_invalid_output_is_repaired_with_the_path() {
        let mut bad = one_entity("GAT");
        bad["relations"] = json!([{"source": "GAT", "target": "GAT", "type": "COMPARE",
                                   "confidence": "high", "evidence": "GAT"}]);
        let script = Scripted::new(vec![ok(bad), ok(one_entity("GAT"))]);
        let run = drive(&script, false).await.expect("repaired");
        assert_eq!(run.raw.relations, []);
        assert!(script
            .request(1)
            .prompt
            .contains("relations[0].confidence: expected a number"));
    }

    #[tokio::test]
    async fn schema_invalid_twice_fails_naming_both_errors() {
        let script = Scripted::new(vec![
            ok(json!({"entities": []})),
            ok(json!({"entities": [], "relations": [], "mentions": [], "notes": ""})),
        ]);
        let failure = drive(&script, false).await.expect_err("fails");
        assert_eq!(failure.step, Step::Repair);
        assert!(failure.reason.contains("notes: unknown field"), "{failure}");
        assert!(
            failure.reason.contains("relations: missing required field"),
            "{failure}"
        );
    }

    #[tokio::test]
    async fn gleaning_appends_to_the_first_answer() {
        let script = Scripted::new(vec![
            ok(one_entity("graph attention network")),
            ok(json!({
                "entities": [{"name": "node classification", "type": "Task"}],
                "relations": [{"source": "graph attention network", "target": "node classification",
                               "type": "USED-FOR", "confidence": 0.9,
                               "evidence": "a graph attention network for node classification"}],
                "mentions": [{"entity": "node classification", "evidence": "node classification"}]
            })),
        ]);
        let run = drive(&script, true).await.expect("extracted");
        let names: Vec<&str> = run.raw.entities.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["graph attention network", "node classification"]);
        assert_eq!(run.raw.relations.len(), 1);
        assert_eq!(run.raw.mentions.len(), 2);
        assert_eq!(run.steps, [Step::Extract, Step::Glean]);
        assert_eq!(run.provenance.prompt_version, "extract-v1+glean-v1");
        let glean = script.request(1);
        assert!(glean
            .prompt
            .contains("\"name\":\"graph attention network\""));
    }

    #[tokio::test]
    async fn gleaning_has_its_own_repair() {
        let script = Scripted::new(vec![
            malformed("{"),
            ok(one_entity("A")),
            malformed("["),
            ok(one_entity("B")),
        ]);
        let run = drive(&script, true).await.expect("extracted");
        assert_eq!(
            script.steps(),
            ["extract", "repair", "glean", "glean-repair"]
        );
        assert_eq!(run.raw.entities.len(), 2);
        assert_eq!(
            run.steps
                .iter()
                .map(|s| s.prompt_version())
                .collect::<Vec<_>>(),
            ["extract-v1", "repair-v1", "glean-v1", "repair-v1"]
        );

        let script = Scripted::new(vec![ok(one_entity("A")), malformed("{"), malformed("{")]);
        let failure = drive(&script, true).await.expect_err("fails");
        assert_eq!(failure.step, Step::GleanRepair);
        assert_eq!(failure.to_string().split(':').next(), Some("glean-repair"));
    }

    #[tokio::test]
    async fn transient_errors_fail_the_section_as_retryable() {
        let script = Scripted::new(vec![Err(CallError::Llm(LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        }))]);
        let failure = drive(&script, false).await.expect_err("fails");
        assert_eq!(failure.step, Step::Extract);
        assert!(failure.retryable);
        assert_eq!(failure.reason, "rate limited by the provider");
        assert_eq!(
            script.steps(),
            ["extract"],
            "no repair for a provider error"
        );

        let script = Scripted::new(vec![
            ok(one_entity("A")),
            Err(CallError::Db(DbError::Interrupted)),
        ]);
        let failure = drive(&script, true).await.expect_err("fails");
        assert_eq!((failure.step, failure.retryable), (Step::Glean, true));

        let script = Scripted::new(vec![
            malformed("{"),
            Err(CallError::Llm(LlmError::Unavailable { status: 503 })),
        ]);
        let failure = drive(&script, false).await.expect_err("fails");
        assert_eq!((failure.step, failure.retryable), (Step::Repair, true));
    }

    #[tokio::test]
    async fn final_errors_fail_the_section_as_not_retryable() {
        for error in [
            CallError::Llm(LlmError::QuotaExhausted),
            CallError::Llm(LlmError::Truncated {
                partial: "{".into(),
                usage: TokenUsage::default(),
            }),
            CallError::MissingTenantKey,
            CallError::LimitExceeded(Vec::new()),
            CallError::NoProvider("gemini".into()),
        ] {
            let message = error.to_string();
            let script = Scripted::new(vec![Err(error)]);
            let failure = drive(&script, false).await.expect_err("fails");
            assert!(!failure.retryable, "{message}");
            assert_eq!(failure.reason, message);
        }
    }

    #[test]
    fn the_driver_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let script = Scripted::new(Vec::new());
        let future = extract_section(&script, "m", &SECTION, false);
        assert_send(&future);
    }
}
