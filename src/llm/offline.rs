//! A provider with no network and no key: deterministic, empty output of the asked shape.
//!
//! Without top-level `properties` in the schema it answers
//! `{"entities":[],"relations":[],"mentions":[]}`; with them, an object holding an empty value
//! of each property's type (`[]`, `{}`, `""`, `0`, `false`, or `null`). Usage is zero. This is
//! a placeholder for local runs and tests; the pipeline decides what offline extraction means.

use std::time::Instant;

use serde_json::{json, Map, Value};

use super::{
    ApiKey, FinishReason, LlmError, LlmFuture, LlmProvider, LlmRequest, LlmResponse, TokenUsage,
};

/// The offline provider.
#[derive(Clone, Copy, Debug, Default)]
pub struct OfflineProvider;

impl OfflineProvider {
    /// The offline provider.
    pub fn new() -> Self {
        OfflineProvider
    }
}

impl LlmProvider for OfflineProvider {
    fn name(&self) -> &'static str {
        "offline"
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, _key: Option<&'a ApiKey>) -> LlmFuture<'a> {
        Box::pin(async move {
            let started = Instant::now();
            let json = empty_output(&request.schema);
            Ok::<_, LlmError>(LlmResponse {
                text: json.to_string(),
                json,
                usage: TokenUsage::default(),
                finish: FinishReason::Stop,
                attempts: 1,
                latency: started.elapsed(),
            })
        })
    }
}

/// The empty output for `schema`.
fn empty_output(schema: &Value) -> Value {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return json!({ "entities": [], "relations": [], "mentions": [] });
    };
    let object: Map<String, Value> = properties
        .iter()
        .map(|(name, property)| (name.clone(), empty_value(property)))
        .collect();
    Value::Object(object)
}

/// The empty value of a property's type (the first type, when it lists several).
fn empty_value(property: &Value) -> Value {
    let kind = match property.get("type") {
        Some(Value::String(kind)) => Some(kind.as_str()),
        Some(Value::Array(kinds)) => kinds.first().and_then(Value::as_str),
        _ => None,
    };
    match kind.map(str::to_ascii_lowercase).as_deref() {
        Some("array") => json!([]),
        Some("object") => json!({}),
        Some("string") => json!(""),
        Some("number" | "integer") => json!(0),
        Some("boolean") => json!(false),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_follow_the_property_types() {
        let schema = json!({
            "type": "object",
            "properties": {
                "items": { "type": "array" },
                "meta": { "type": "OBJECT" },
                "title": { "type": ["string", "null"] },
                "count": { "type": "integer" },
                "done": { "type": "boolean" },
                "any": {},
            },
        });
        assert_eq!(
            empty_output(&schema),
            json!({"items": [], "meta": {}, "title": "", "count": 0, "done": false, "any": null})
        );
        assert_eq!(
            empty_output(&json!({"type": "object"})),
            json!({"entities": [], "relations": [], "mentions": []})
        );
    }
}
