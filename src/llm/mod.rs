//! Language-model providers: one request shape, one response shape, one error enum.
//!
//! A [`LlmProvider`] turns an [`LlmRequest`] (system instruction, prompt, JSON schema) into an
//! [`LlmResponse`] whose text is parsed as JSON. [`GeminiProvider`] speaks the Gemini API,
//! [`OpenAiProvider`] any OpenAI-compatible chat-completions server, [`OfflineProvider`] needs
//! neither network nor key. HTTP providers retry transient failures themselves (see [`retry`]):
//! what reaches the caller is final for this call. Token counts are normalised into
//! [`TokenUsage`] whatever the provider, so metering reads one shape.
//!
//! Secrets: an [`ApiKey`] prints as `[redacted]`, is sent only in a header marked sensitive,
//! and is scrubbed from any provider message kept in an error. Log lines carry the provider,
//! the attempt, the status and the delay, nothing else.

pub mod gemini;
pub mod limiter;
pub mod offline;
pub mod openai;
pub mod retry;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::time::Duration;

pub use gemini::GeminiProvider;
pub use limiter::ConcurrencyLimiter;
pub use offline::OfflineProvider;
pub use openai::{MaxTokensField, OpenAiProvider};
pub use retry::{RecordingSleeper, RetryPolicy, Sleeper, TokioSleeper};

/// One structured-output generation.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmRequest {
    /// The provider's model name, e.g. `gemini-2.5-flash`.
    pub model: String,
    /// The system instruction (omitted from the request when empty).
    pub system: String,
    /// The user content.
    pub prompt: String,
    /// The JSON schema the output must follow.
    pub schema: serde_json::Value,
    /// The most output tokens the provider may generate.
    pub max_output_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
}

/// Token counts, normalised across providers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// All prompt tokens, cached ones included (Gemini `promptTokenCount`, OpenAI
    /// `prompt_tokens`).
    pub input_tokens: u64,
    /// The cached part of `input_tokens` (Gemini `cachedContentTokenCount`, OpenAI
    /// `prompt_tokens_details.cached_tokens`).
    pub cached_tokens: u64,
    /// Visible output only, thinking excluded (Gemini `candidatesTokenCount`, OpenAI
    /// `completion_tokens` minus `reasoning_tokens`).
    pub output_tokens: u64,
    /// Thinking tokens (Gemini `thoughtsTokenCount`, OpenAI
    /// `completion_tokens_details.reasoning_tokens`).
    pub thinking_tokens: u64,
}

/// Why the provider stopped generating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// A natural end of the output.
    Stop,
    /// The output-token limit was reached.
    MaxTokens,
    /// A safety or content filter stopped the output (the HTTP providers report this as
    /// [`LlmError::Blocked`] rather than as a response).
    Safety,
    /// Anything else, as the provider spelled it.
    Other(String),
}

/// A successful generation.
#[derive(Clone, Debug, PartialEq)]
pub struct LlmResponse {
    /// The raw text of the first candidate (Gemini) or choice (OpenAI), thoughts excluded.
    pub text: String,
    /// `text` parsed as JSON.
    pub json: serde_json::Value,
    /// The usage of the final, successful attempt.
    pub usage: TokenUsage,
    /// Why generation stopped.
    pub finish: FinishReason,
    /// Attempts made, 1 when the first succeeded.
    pub attempts: u32,
    /// Wall time of the whole call, retries and waits included.
    pub latency: Duration,
}

/// Why a generation failed. Retries, where they apply, have already been made.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// HTTP 429 after the retries ran out; `retry_after` is the last delay the server asked for.
    #[error("rate limited by the provider")]
    RateLimited {
        /// The server's last requested delay, if it gave one.
        retry_after: Option<Duration>,
    },
    /// A per-day quota is used up; never retried.
    #[error("the provider's daily quota is exhausted")]
    QuotaExhausted,
    /// The provider refused the key (400 `API_KEY_INVALID`, 401, 403); never retried.
    #[error("the provider refused the API key")]
    InvalidKey,
    /// The provider needs a key and none was given; nothing was sent.
    #[error("the provider needs an API key and none was given")]
    MissingKey,
    /// The prompt or the output was blocked by a safety or content filter; never retried.
    #[error("blocked by the provider: {reason}")]
    Blocked {
        /// The provider's reason, e.g. `SAFETY` or `content_filter`.
        reason: String,
    },
    /// The output-token limit was reached; never retried.
    #[error("output truncated at the token limit")]
    Truncated {
        /// The text generated before the limit.
        partial: String,
        /// The tokens spent, for metering.
        usage: TokenUsage,
    },
    /// HTTP 5xx after the retries ran out.
    #[error("the provider is unavailable (HTTP {status})")]
    Unavailable {
        /// The last status received.
        status: u16,
    },
    /// Every attempt timed out.
    #[error("the provider did not answer in time")]
    Timeout,
    /// The provider could not be reached (connection refused or reset, TLS) after the retries
    /// ran out.
    #[error("could not reach the provider: {0}")]
    Connect(String),
    /// The output is not JSON; the caller decides whether to ask for a repair.
    #[error("the output is not valid JSON")]
    MalformedOutput {
        /// The text received.
        text: String,
        /// The tokens spent, for metering.
        usage: TokenUsage,
    },
    /// The provider's answer did not have the expected shape.
    #[error("unexpected answer from the provider: {0}")]
    BadResponse(String),
    /// The provider rejected the request itself (another 4xx, e.g. a schema it does not
    /// support); never retried. The message is the provider's, with any key scrubbed.
    #[error("the provider rejected the request (HTTP {status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The provider's message.
        message: String,
    },
    /// The model does not exist (HTTP 404), or its name is not a valid model name.
    #[error("unknown model {0:?}")]
    UnknownModel(String),
}

impl LlmError {
    /// The tokens spent, when the provider reported them (truncated or malformed output).
    pub fn usage(&self) -> Option<&TokenUsage> {
        match self {
            LlmError::Truncated { usage, .. } | LlmError::MalformedOutput { usage, .. } => {
                Some(usage)
            }
            _ => None,
        }
    }

    /// Whether the same request may succeed later (a transient failure). Malformed output is
    /// not: it calls for a repair prompt, which is the caller's decision.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::RateLimited { .. }
                | LlmError::Unavailable { .. }
                | LlmError::Timeout
                | LlmError::Connect(_)
        )
    }

    /// A short, stable name for metering and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::QuotaExhausted => "quota_exhausted",
            LlmError::InvalidKey => "invalid_key",
            LlmError::MissingKey => "missing_key",
            LlmError::Blocked { .. } => "blocked",
            LlmError::Truncated { .. } => "truncated",
            LlmError::Unavailable { .. } => "unavailable",
            LlmError::Timeout => "timeout",
            LlmError::Connect(_) => "connect",
            LlmError::MalformedOutput { .. } => "malformed_output",
            LlmError::BadResponse(_) => "bad_response",
            LlmError::Rejected { .. } => "rejected",
            LlmError::UnknownModel(_) => "unknown_model",
        }
    }
}

/// A secret API key. `Debug` and `Display` print `[redacted]`; only [`ApiKey::expose`] gives
/// the key, to put it in a request header.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps a key.
    pub fn new(s: impl Into<String>) -> Self {
        ApiKey(s.into())
    }

    /// The key itself, for a request header. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The last four characters, to tell keys apart; `****` for keys shorter than eight
    /// characters, of which four would reveal too much.
    pub fn last4(&self) -> String {
        let count = self.0.chars().count();
        if count < 8 {
            return "****".to_owned();
        }
        self.0.chars().skip(count - 4).collect()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The future a provider returns.
pub type LlmFuture<'a> = Pin<Box<dyn Future<Output = Result<LlmResponse, LlmError>> + Send + 'a>>;

/// A language-model provider.
pub trait LlmProvider: Send + Sync {
    /// The provider's label: `gemini`, `openai` or `offline`.
    fn name(&self) -> &'static str;

    /// Generates structured output for `request`, retrying transient failures.
    fn generate<'a>(&'a self, request: &'a LlmRequest, key: Option<&'a ApiKey>) -> LlmFuture<'a>;
}

/// The process's HTTP client for providers, built once (connection pools are shared).
pub fn shared_client() -> reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .user_agent(concat!("research-graph/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("a TLS-capable HTTP client")
        })
        .clone()
}

/// Largest provider answer read, in bytes; a larger one is a [`LlmError::BadResponse`].
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// An HTTP answer, read whole.
struct RawResponse {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// Sends `request` and reads the answer, at most [`MAX_RESPONSE_BYTES`]. Transport failures
/// are transient; a request that cannot be built or an oversized answer is final.
async fn send<T>(request: reqwest::RequestBuilder) -> Result<RawResponse, retry::Attempt<T>> {
    let mut response = request.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let headers = std::mem::take(response.headers_mut());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(retry::Attempt::Done(Err(LlmError::BadResponse(format!(
                "answer over {MAX_RESPONSE_BYTES} bytes"
            )))));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(RawResponse {
        status,
        headers,
        body,
    })
}

/// What a transport error means for the attempt: its message without the URL, and its causes.
fn transport_error<T>(error: reqwest::Error) -> retry::Attempt<T> {
    if error.is_timeout() {
        return retry::Attempt::Retry {
            error: LlmError::Timeout,
            server_delay: None,
        };
    }
    let builder = error.is_builder();
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    if builder {
        retry::Attempt::Done(Err(LlmError::Connect(message)))
    } else {
        retry::Attempt::Retry {
            error: LlmError::Connect(message),
            server_delay: None,
        }
    }
}

/// A successful generation before its attempts and latency are known.
struct Generated {
    text: String,
    json: serde_json::Value,
    usage: TokenUsage,
    finish: FinishReason,
}

impl Generated {
    /// Parses output text as JSON; text that does not parse is [`LlmError::MalformedOutput`].
    fn parse(text: String, usage: TokenUsage, finish: FinishReason) -> Result<Generated, LlmError> {
        match serde_json::from_str(&text) {
            Ok(json) => Ok(Generated {
                text,
                json,
                usage,
                finish,
            }),
            Err(_) => Err(LlmError::MalformedOutput { text, usage }),
        }
    }

    /// The response, given how many attempts it took since `started`.
    fn into_response(self, attempts: u32, started: std::time::Instant) -> LlmResponse {
        LlmResponse {
            text: self.text,
            json: self.json,
            usage: self.usage,
            finish: self.finish,
            attempts,
            latency: started.elapsed(),
        }
    }
}

/// A header carrying a key, marked sensitive so that it is never printed.
fn secret_header(value: String) -> Result<reqwest::header::HeaderValue, LlmError> {
    let mut value =
        reqwest::header::HeaderValue::try_from(value).map_err(|_| LlmError::InvalidKey)?;
    value.set_sensitive(true);
    Ok(value)
}

/// Longest provider message kept in [`LlmError::Rejected`], in characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// A provider's error message made safe to keep: the key removed, the length bounded.
fn scrub(message: &str, key: Option<&ApiKey>) -> String {
    let mut message = match key {
        Some(key) if !key.expose().is_empty() => message.replace(key.expose(), "[redacted]"),
        _ => message.to_owned(),
    };
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_key_is_redacted_in_debug_and_display() {
        let key = ApiKey::new("AIzaSyD-secret-value-1234");
        assert_eq!(format!("{key}"), "[redacted]");
        assert_eq!(format!("{key:?}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&key)), "Some([redacted])");
        assert_eq!(key.expose(), "AIzaSyD-secret-value-1234");
    }

    #[test]
    fn last4_shows_only_the_end_of_long_keys() {
        assert_eq!(ApiKey::new("sk-abcdefgh1234").last4(), "1234");
        assert_eq!(ApiKey::new("12345678").last4(), "5678");
        assert_eq!(ApiKey::new("1234567").last4(), "****");
        assert_eq!(ApiKey::new("").last4(), "****");
        assert_eq!(ApiKey::new("ключ-секрет-äöüß").last4(), "äöüß");
    }

    #[test]
    fn scrub_removes_the_key_and_bounds_the_length() {
        let key = ApiKey::new("sk-live-secret");
        assert_eq!(
            scrub("Incorrect API key provided: sk-live-secret.", Some(&key)),
            "Incorrect API key provided: [redacted]."
        );
        let long = "x".repeat(2 * MAX_MESSAGE_CHARS);
        assert_eq!(scrub(&long, None).chars().count(), MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        let usage = TokenUsage::default();
        assert!(LlmError::RateLimited { retry_after: None }.is_retryable());
        assert!(LlmError::Unavailable { status: 503 }.is_retryable());
        assert!(LlmError::Timeout.is_retryable());
        assert!(!LlmError::QuotaExhausted.is_retryable());
        assert!(!LlmError::InvalidKey.is_retryable());
        assert!(!LlmError::MalformedOutput {
            text: String::new(),
            usage
        }
        .is_retryable());
        let truncated = LlmError::Truncated {
            partial: "{".into(),
            usage: TokenUsage {
                output_tokens: 7,
                ..usage
            },
        };
        assert_eq!(truncated.usage().map(|u| u.output_tokens), Some(7));
        assert_eq!(truncated.kind(), "truncated");
        assert_eq!(LlmError::Timeout.usage(), None);
    }
}
