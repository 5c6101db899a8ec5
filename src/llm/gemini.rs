//! The Gemini API (`generateContent`), with JSON output constrained by a response schema.
//!
//! The key travels in the `x-goog-api-key` header, never in the URL. Errors follow
//! `google.rpc.Status`: a 429 whose `QuotaFailure` names a per-day quota is final
//! ([`LlmError::QuotaExhausted`]); other 429s and 5xx are retried, waiting the `RetryInfo`
//! `retryDelay` when the server gives one. A prompt blocked by `promptFeedback`, or a
//! candidate stopped by a safety, recitation or block-list filter, is [`LlmError::Blocked`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderValue, CONTENT_TYPE};
use serde::Deserialize;
use serde_json::{json, Value};

use super::retry::{self, Attempt, RetryPolicy, Sleeper, TokioSleeper};
use super::{
    scrub, secret_header, send, shared_client, ApiKey, FinishReason, Generated, LlmError,
    LlmFuture, LlmProvider, LlmRequest, RawResponse, TokenUsage,
};

/// The public Gemini API endpoint.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com";

/// Finish reasons that mean a filter stopped the output.
const BLOCKING_FINISH_REASONS: &[&str] = &[
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
];

/// A Gemini API client.
#[derive(Clone, Debug)]
pub struct GeminiProvider {
    base_url: String,
    client: reqwest::Client,
    policy: RetryPolicy,
    sleeper: Arc<dyn Sleeper>,
}

impl Default for GeminiProvider {
    fn default() -> Self {
        GeminiProvider::new()
    }
}

impl GeminiProvider {
    /// A client of the public endpoint, with the shared HTTP client and the default policy.
    pub fn new() -> Self {
        GeminiProvider {
            base_url: DEFAULT_BASE_URL.to_owned(),
            client: shared_client(),
            policy: RetryPolicy::default(),
            sleeper: Arc::new(TokioSleeper),
        }
    }

    /// Another endpoint (a proxy, a test server); a trailing `/` is ignored.
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

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    async fn generate_inner(
        &self,
        request: &LlmRequest,
        key: Option<&ApiKey>,
    ) -> Result<super::LlmResponse, LlmError> {
        let key = key.ok_or(LlmError::MissingKey)?;
        let model = model_name(&request.model)?;
        let url = format!("{}/v1beta/models/{model}:generateContent", self.base_url);
        let body = serde_json::to_vec(&request_body(request))
            .map_err(|e| LlmError::BadResponse(format!("request not serialisable: {e}")))?;
        let key_header = secret_header(key.expose().to_owned())?;
        let started = Instant::now();
        let (result, attempts) = retry::run(&self.policy, &*self.sleeper, "gemini", |attempt| {
            let sent = self
                .client
                .post(&url)
                .header("x-goog-api-key", key_header.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body.clone());
            async move {
                let raw = match send(sent).await {
                    Ok(raw) => raw,
                    Err(outcome) => return outcome,
                };
                tracing::debug!(provider = "gemini", attempt, status = raw.status, "answer");
                interpret(raw, &request.model, key)
            }
        })
        .await;
        result.map(|generated| generated.into_response(attempts, started))
    }
}

impl LlmProvider for GeminiProvider {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn generate<'a>(&'a self, request: &'a LlmRequest, key: Option<&'a ApiKey>) -> LlmFuture<'a> {
        Box::pin(self.generate_inner(request, key))
    }
}

/// The model's name for the URL path (`models/` prefix removed), refused unless it is made of
/// letters, digits, `.`, `_` and `-` only.
fn model_name(model: &str) -> Result<&str, LlmError> {
    let name = model.strip_prefix("models/").unwrap_or(model);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(name)
    } else {
        Err(LlmError::UnknownModel(model.to_owned()))
    }
}

/// The `generateContent` request body.
fn request_body(request: &LlmRequest) -> Value {
    let mut body = json!({
        "contents": [{ "role": "user", "parts": [{ "text": request.prompt }] }],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": request.schema,
            "maxOutputTokens": request.max_output_tokens,
            "temperature": request.temperature,
        },
    });
    if !request.system.is_empty() {
        body["systemInstruction"] = json!({ "parts": [{ "text": request.system }] });
    }
    body
}

/// What one answer means: output, a final error, or a reason to retry.
fn interpret(raw: RawResponse, model: &str, key: &ApiKey) -> Attempt<Generated> {
    if (200..300).contains(&raw.status) {
        return Attempt::Done(success(&raw.body));
    }
    let status = serde_json::from_slice::<ErrorBody>(&raw.body)
        .ok()
        .map(|body| body.error);
    let details = status.as_ref().map_or(&[][..], |s| &s.details[..]);
    let server_delay = retry_delay(details).or_else(|| retry::retry_after_header(&raw.headers));
    match raw.status {
        429 if names_daily_quota(details) => Attempt::Done(Err(LlmError::QuotaExhausted)),
        429 => Attempt::Retry {
            error: LlmError::RateLimited {
                retry_after: server_delay,
            },
            server_delay,
        },
        400 if names_invalid_key(details) => Attempt::Done(Err(LlmError::InvalidKey)),
        401 | 403 => Attempt::Done(Err(LlmError::InvalidKey)),
        404 => Attempt::Done(Err(LlmError::UnknownModel(model.to_owned()))),
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
            message: scrub(
                status.as_ref().map_or("", |s| s.message.as_str()),
                Some(key),
            ),
        })),
    }
}

/// A 2xx answer: the first candidate's text, parsed, or why there is none.
fn success(body: &[u8]) -> Result<Generated, LlmError> {
    let response: GenerateContentResponse = serde_json::from_slice(body)
        .map_err(|e| LlmError::BadResponse(format!("generateContent answer: {e}")))?;
    let usage = response
        .usage_metadata
        .map(UsageMetadata::normalise)
        .unwrap_or_default();
    if let Some(reason) = response.prompt_feedback.and_then(|f| f.block_reason) {
        return Err(LlmError::Blocked { reason });
    }
    let candidate = response
        .candidates
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::BadResponse("no candidates".into()))?;
    let text: String = candidate
        .content
        .map(|content| content.parts)
        .unwrap_or_default()
        .into_iter()
        .filter(|part| !part.thought)
        .filter_map(|part| part.text)
        .collect();
    let finish = match candidate.finish_reason.as_deref() {
        Some("STOP") => FinishReason::Stop,
        Some("MAX_TOKENS") => {
            return Err(LlmError::Truncated {
                partial: text,
                usage,
            })
        }
        Some(reason) if BLOCKING_FINISH_REASONS.contains(&reason) => {
            return Err(LlmError::Blocked {
                reason: reason.to_owned(),
            })
        }
        Some(other) => FinishReason::Other(other.to_owned()),
        None => FinishReason::Other(String::new()),
    };
    Generated::parse(text, usage, finish)
}

/// The `retryDelay` of a `google.rpc.RetryInfo` detail.
fn retry_delay(details: &[Value]) -> Option<Duration> {
    details_of_type(details, "google.rpc.RetryInfo")
        .find_map(|detail| detail.get("retryDelay")?.as_str())
        .and_then(retry::parse_google_duration)
}

/// Whether a `google.rpc.QuotaFailure` violation (or an `ErrorInfo`'s `quota_limit`) names a
/// per-day quota, which no retry within the day can mend.
fn names_daily_quota(details: &[Value]) -> bool {
    let per_day = |s: &str| s.to_ascii_lowercase().contains("perday");
    let violation = details_of_type(details, "google.rpc.QuotaFailure")
        .filter_map(|detail| detail.get("violations")?.as_array())
        .flatten()
        .any(|violation| {
            ["quotaId", "quotaMetric"]
                .iter()
                .filter_map(|field| violation.get(field)?.as_str())
                .any(per_day)
        });
    violation
        || details_of_type(details, "google.rpc.ErrorInfo")
            .filter_map(|detail| detail.pointer("/metadata/quota_limit")?.as_str())
            .any(per_day)
}

/// Whether a `google.rpc.ErrorInfo` says the key is bad (`API_KEY_INVALID`, `API_KEY_EXPIRED`).
fn names_invalid_key(details: &[Value]) -> bool {
    details_of_type(details, "google.rpc.ErrorInfo")
        .filter_map(|detail| detail.get("reason")?.as_str())
        .any(|reason| reason.starts_with("API_KEY_"))
}

/// The details whose `@type` is `type.googleapis.com/{name}`.
fn details_of_type<'a>(details: &'a [Value], name: &'a str) -> impl Iterator<Item = &'a Value> {
    details.iter().filter(move |detail| {
        detail
            .get("@type")
            .and_then(Value::as_str)
            .and_then(|t| t.strip_prefix("type.googleapis.com/"))
            == Some(name)
    })
}

/// A `generateContent` answer (the fields used).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Part>,
}

#[derive(Deserialize)]
struct Part {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
}

impl UsageMetadata {
    fn normalise(self) -> TokenUsage {
        TokenUsage {
            input_tokens: self.prompt_token_count.unwrap_or(0),
            cached_tokens: self.cached_content_token_count.unwrap_or(0),
            output_tokens: self.candidates_token_count.unwrap_or(0),
            thinking_tokens: self.thoughts_token_count.unwrap_or(0),
        }
    }
}

/// A `google.rpc.Status` error answer.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorStatus,
}

#[derive(Deserialize)]
struct ErrorStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_checked_before_they_reach_the_path() {
        assert_eq!(model_name("gemini-2.5-flash").unwrap(), "gemini-2.5-flash");
        assert_eq!(
            model_name("models/gemini-2.0-flash-001").unwrap(),
            "gemini-2.0-flash-001"
        );
        for bad in [
            "",
            "models/",
            "../v1/files",
            "a?key=x",
            "a b",
            "gemini:generate",
        ] {
            assert!(
                matches!(model_name(bad), Err(LlmError::UnknownModel(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_system_instruction_is_left_out() {
        let request = LlmRequest {
            model: "m".into(),
            system: String::new(),
            prompt: "p".into(),
            schema: json!({"type": "object"}),
            max_output_tokens: 10,
            temperature: 0.0,
        };
        assert!(request_body(&request).get("systemInstruction").is_none());
    }

    #[test]
    fn per_minute_quota_is_not_daily() {
        let details = vec![json!({
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{
                "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
            }],
        })];
        assert!(!names_daily_quota(&details));
        let daily = vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "RATE_LIMIT_EXCEEDED",
            "metadata": { "quota_limit": "Gemini25ProRequestsPerDay" },
        })];
        assert!(names_daily_quota(&daily));
    }
}
