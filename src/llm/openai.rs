//! Any OpenAI-compatible chat-completions server (OpenAI, vLLM, llama.cpp, Ollama, …), with
//! JSON output constrained by `response_format: json_schema` (strict).
//!
//! The key, when given, travels as `Authorization: Bearer`; local servers need none. The output
//! limit is sent as `max_tokens`, which nearly every compatible server accepts; OpenAI's
//! reasoning models refuse it and want `max_completion_tokens`
//! ([`OpenAiProvider::with_max_tokens_field`]). A 429 with `insufficient_quota` is final; other
//! 429s and 5xx are retried, waiting `retry-after-ms` or `Retry-After` when given.

use std::sync::Arc;
use std::time::Instant;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{json, Value};

use super::retry::{self, Attempt, RetryPolicy, Sleeper, TokioSleeper};
use super::{
    scrub, secret_header, send, shared_client, ApiKey, FinishReason, Generated, LlmError,
    LlmFuture, LlmProvider, LlmRequest, LlmResponse, RawResponse, TokenUsage,
};

/// OpenAI's own endpoint.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// The `json_schema.name` sent with every request.
const SCHEMA_NAME: &str = "output";

/// `schema` as OpenAI's strict structured outputs require it: every object closed
/// (`additionalProperties: false`) and every property required, a property that was optional
/// becoming nullable instead (`"type": ["string", "null"]`, and `null` added to its `enum`).
/// The answer then carries `null` where the model had nothing, which the callers read as absent.
pub fn strict_schema(schema: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    let mut out = schema.clone();
    let Value::Object(map) = &mut out else {
        return out;
    };
    if let Some(Value::Object(props)) = map.get("properties") {
        let required: Vec<String> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut strict = serde_json::Map::new();
        for (name, prop) in props {
            let mut prop = strict_schema(prop);
            if !required.contains(name) {
                nullable(&mut prop);
            }
            strict.insert(name.clone(), prop);
        }
        let names: Vec<Value> = strict.keys().cloned().map(Value::String).collect();
        map.insert("properties".into(), Value::Object(strict));
        map.insert("required".into(), Value::Array(names));
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(items) = map.get("items") {
        let items = strict_schema(items);
        map.insert("items".into(), items);
    }
    out
}

/// Lets a property schema also be `null`.
fn nullable(prop: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(map) = prop else { return };
    match map.get("type").cloned() {
        Some(Value::String(t)) if t != "null" => {
            map.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(mut types)) if !types.contains(&json!("null")) => {
            types.push(json!("null"));
            map.insert("type".into(), Value::Array(types));
        }
        _ => {}
    }
    if let Some(Value::Array(values)) = map.get_mut("enum") {
        if !values.contains(&Value::Null) {
            values.push(Value::Null);
        }
    }
}

/// Which request field carries the output-token limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxTokensField {
    /// `max_tokens`: understood by nearly every compatible server.
    #[default]
    MaxTokens,
    /// `max_completion_tokens`: required by OpenAI's reasoning models.
    MaxCompletionTokens,
}

/// An OpenAI-compatible chat-completions client.
#[derive(Clone, Debug)]
pub struct OpenAiProvider {
    base_url: String,
    client: reqwest::Client,
    policy: RetryPolicy,
    sleeper: Arc<dyn Sleeper>,
    max_tokens_field: MaxTokensField,
}

impl Default for OpenAiProvider {
    fn default() -> Self {
        OpenAiProvider::new()
    }
}

impl OpenAiProvider {
    /// A client of OpenAI's endpoint, with the shared HTTP client and the default policy.
    pub fn new() -> Self {
        OpenAiProvider {
            base_url: DEFAULT_BASE_URL.to_owned(),
            client: shared_client(),
            policy: RetryPolicy::default(),
            sleeper: Arc::new(TokioSleeper),
            max_tokens_field: MaxTokensField::default(),
        }
    }

    /// Another server: the URL that `/chat/completions` is appended to (e.g.
    /// `http://localhost:8000/v1`); a trailing `/` is ignored.
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into().trim_end_matches('/').to_owned();
        self
    }

    /// Another HTTP client.
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    /// Another retry policy.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Another way of waiting between attempts (tests record the delays).
    pub fn with_sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// Which field carries the output-token limit.
    pub fn with_max_tokens_field(mut self, field: MaxTokensField) -> Self {
        self.max_tokens_field = field;
        self
    }

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    async fn generate_inner(
        &self,
        request: &LlmRequest,
        key: Option<&ApiKey>,
    ) -> Result<LlmResponse, LlmError> {
        let url = format!("{}/chat/completions", self.base_url);
        let body = serde_json::to_vec(&request_body(request, self.max_tokens_field))
            .map_err(|e| LlmError::BadResponse(format!("request not serialisable: {e}")))?;
        let authorization = key
            .map(|key| secret_header(format!("Bearer {}", key.expose())))
            .transpose()?;
        let started = Instant::now();
        let (result, attempts) = retry::run(&self.policy, &*self.sleeper, "openai", |attempt| {
            let mut sent = self
                .client
                .post(&url)
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone());
            if let Some(authorization) = &authorization {
                sent = sent.header(AUTHORIZATION, authorization.clone());
            }
            async move {
                let raw = match send(sent).await {
                    Ok(raw) => raw,
                    Err(outcome) => return outcome,
                };
                tracing::debug!(provider = "openai", attempt, status = raw.status, "answer");
                interpret(raw, &request.model, key)
            }
        })
        .await;
        result.map(|generated| generated.into_response(attempts, started))
    }
}

impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, key: Option<&'a ApiKey>) -> LlmFuture<'a> {
        Box::pin(self.generate_inner(request, key))
    }
}

/// The chat-completions request body.
fn request_body(request: &LlmRequest, max_tokens_field: MaxTokensField) -> Value {
    let mut messages = Vec::with_capacity(2);
    if !request.system.is_empty() {
        messages.push(json!({ "role": "system", "content": request.system }));
    }
    messages.push(json!({ "role": "user", "content": request.prompt }));
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "response_format": {
            "type": "json_schema",
            "json_schema": { "name": SCHEMA_NAME, "schema": strict_schema(&request.schema), "strict": true },
        },
        "temperature": request.temperature,
    });
    let field = match max_tokens_field {
        MaxTokensField::MaxTokens => "max_tokens",
        MaxTokensField::MaxCompletionTokens => "max_completion_tokens",
    };
    body[field] = json!(request.max_output_tokens);
    body
}

/// What one answer means: output, a final error, or a reason to retry.
fn interpret(raw: RawResponse, model: &str, key: Option<&ApiKey>) -> Attempt<Generated> {
    if (200..300).contains(&raw.status) {
        return Attempt::Done(success(&raw.body));
    }
    let error = serde_json::from_slice::<ErrorBody>(&raw.body)
        .ok()
        .and_then(|body| body.error);
    let is = |name: &str| {
        error.as_ref().is_some_and(|e| {
            e.code.as_ref().and_then(Value::as_str) == Some(name) || e.kind.as_deref() == Some(name)
        })
    };
    let server_delay = retry::retry_after_header(&raw.headers);
    match raw.status {
        429 if is("insufficient_quota") => Attempt::Done(Err(LlmError::QuotaExhausted)),
        429 => Attempt::Retry {
            error: LlmError::RateLimited {
                retry_after: server_delay,
            },
            server_delay,
        },
        401 | 403 => Attempt::Done(Err(LlmError::InvalidKey)),
        404 if is("model_not_found") => {
            Attempt::Done(Err(LlmError::UnknownModel(model.to_owned())))
        }
        408 => Attempt::Retry {
            error: LlmError::Timeout,
            server_delay,
        },
        500..=599 => Attempt::Retry {
            error: LlmError::Unavailable { status: raw.status },
            server_delay,
        },
        other => Attempt::Done(Err(LlmError::Rejected {
            status: other,
            message: scrub(error.as_ref().map_or("", |e| e.message.as_str()), key),
        })),
    }
}

/// A 2xx answer: the first choice's content, parsed, or why there is none.
fn success(body: &[u8]) -> Result<Generated, LlmError> {
    let completion: ChatCompletion = serde_json::from_slice(body)
        .map_err(|e| LlmError::BadResponse(format!("chat completion answer: {e}")))?;
    let usage = completion.usage.map(Usage::normalise).unwrap_or_default();
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::BadResponse("no choices".into()))?;
    let message = choice
        .message
        .ok_or_else(|| LlmError::BadResponse("choice without a message".into()))?;
    if message.refusal.as_deref().is_some_and(|r| !r.is_empty()) {
        return Err(LlmError::Blocked {
            reason: "refusal".into(),
        });
    }
    let text = message.content.unwrap_or_default();
    let finish = match choice.finish_reason.as_deref() {
        Some("stop") => FinishReason::Stop,
        Some("length") => {
            return Err(LlmError::Truncated {
                partial: text,
                usage,
            })
        }
        Some("content_filter") => {
            return Err(LlmError::Blocked {
                reason: "content_filter".into(),
            })
        }
        Some(other) => FinishReason::Other(other.to_owned()),
        None => FinishReason::Other(String::new()),
    };
    Generated::parse(text, usage, finish)
}

/// A chat-completions answer (the fields used).
#[derive(Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: Option<Message>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    content: Option<String>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptTokensDetails>,
    completion_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Deserialize)]
struct PromptTokensDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct CompletionTokensDetails {
    reasoning_tokens: Option<u64>,
}

impl Usage {
    fn normalise(self) -> TokenUsage {
        let thinking = self
            .completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0);
        TokenUsage {
            input_tokens: self.prompt_tokens.unwrap_or(0),
            cached_tokens: self
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0),
            output_tokens: self.completion_tokens.unwrap_or(0).saturating_sub(thinking),
            thinking_tokens: thinking,
        }
    }
}

/// An error answer: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> LlmRequest {
        LlmRequest {
            model: "gpt-4.1-mini".into(),
            system: "sys".into(),
            prompt: "p".into(),
            schema: json!({"type": "object"}),
            max_output_tokens: 64,
            temperature: 0.2,
        }
    }

    #[test]
    fn strict_schemas_close_every_object_and_make_optional_properties_nullable() {
        let strict = strict_schema(crate::pipeline::extract::schema());
        let entity = &strict["properties"]["entities"]["items"];
        assert_eq!(entity["additionalProperties"], false);
        assert_eq!(entity["required"], json!(["description", "name", "type"]));
        assert_eq!(
            entity["properties"]["description"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(entity["properties"]["name"]["type"], "string");
        assert_eq!(strict["additionalProperties"], false);
        // Every object, however deep, is closed and requires all its properties.
        fn check(v: &serde_json::Value) {
            if let Some(props) = v.get("properties").and_then(|p| p.as_object()) {
                assert_eq!(v["additionalProperties"], false, "{v}");
                assert_eq!(v["required"].as_array().unwrap().len(), props.len(), "{v}");
                props.values().for_each(check);
            }
            if let Some(items) = v.get("items") {
                check(items);
            }
        }
        check(&strict);
        check(&strict_schema(&crate::pipeline::reason::reasoning_schema()));
        // An answer with nulls where the model had nothing still parses.
        let answer = json!({ "entities": [{ "name": "BERT", "type": "Method", "description": null }],
                             "relations": [], "mentions": [] });
        let raw = crate::pipeline::extract::parse_raw(&answer).unwrap();
        assert_eq!(raw.entities[0].description, None);
        // Enums of optional properties accept null.
        let mut p = json!({ "type": "string", "enum": ["a", "b"] });
        nullable(&mut p);
        assert_eq!(
            p,
            json!({ "type": ["string", "null"], "enum": ["a", "b", null] })
        );
    }

    #[test]
    fn the_limit_goes_in_exactly_one_field() {
        let body = request_body(&request(), MaxTokensField::MaxTokens);
        assert_eq!(body["max_tokens"], 64);
        assert!(body.get("max_completion_tokens").is_none());
        let body = request_body(&request(), MaxTokensField::MaxCompletionTokens);
        assert_eq!(body["max_completion_tokens"], 64);
        assert!(body.get("max_tokens").is_none());
    }

    #[test]
    fn usage_without_details_counts_all_completion_tokens_as_output() {
        let usage: Usage =
            serde_json::from_value(json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8, "prompt_tokens_details": null}))
                .unwrap();
        assert_eq!(
            usage.normalise(),
            TokenUsage {
                input_tokens: 5,
                cached_tokens: 0,
                output_tokens: 3,
                thinking_tokens: 0
            }
        );
    }

    #[test]
    fn refusal_is_blocked() {
        let body = json!({
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": null, "refusal": "I can't help with that." },
                "finish_reason": "stop",
            }],
        });
        let error = success(body.to_string().as_bytes()).err().unwrap();
        assert!(matches!(error, LlmError::Blocked { reason } if reason == "refusal"));
    }
}
