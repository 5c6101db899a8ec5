//! The LLM providers against scripted local servers that answer with each API's real JSON,
//! and the per-tenant concurrency limiter.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{handler, EndpointExt, Request, Response, Server};
use research_graph::ids::TenantId;
use research_graph::llm::{
    ApiKey, ConcurrencyLimiter, FinishReason, GeminiProvider, LlmError, LlmProvider, LlmRequest,
    LlmResponse, OfflineProvider, OpenAiProvider, RecordingSleeper, RetryPolicy, TokenUsage,
};
use serde_json::{json, Value};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// The scripted server

/// One scripted answer.
struct Scripted {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    delay: Duration,
}

impl Scripted {
    fn json(status: u16, body: Value) -> Scripted {
        Scripted {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Scripted {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn slow(mut self, delay: Duration) -> Scripted {
        self.delay = delay;
        self
    }
}

/// One request the server received.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    query: Option<String>,
    uri: String,
    headers: HashMap<String, String>,
    body: Value,
}

#[derive(Default)]
struct MockState {
    script: VecDeque<Scripted>,
    received: Vec<Received>,
}

/// A server on loopback answering each request with the next scripted answer.
struct Mock {
    base: String,
    state: Arc<Mutex<MockState>>,
}

impl Mock {
    async fn start(script: Vec<Scripted>) -> Mock {
        let state = Arc::new(Mutex::new(MockState {
            script: script.into(),
            received: Vec::new(),
        }));
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        tokio::spawn(Server::new_with_acceptor(acceptor).run(answer.data(Arc::clone(&state))));
        Mock {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// The requests received so far.
    fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// How many requests arrived.
    fn hits(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }

    /// How many scripted answers were never asked for.
    fn unused(&self) -> usize {
        self.state.lock().unwrap().script.len()
    }
}

#[handler]
async fn answer(request: &Request, body: Vec<u8>, state: Data<&Arc<Mutex<MockState>>>) -> Response {
    let next = {
        let mut state = state.lock().unwrap();
        state.received.push(Received {
            path: request.uri().path().to_owned(),
            query: request.uri().query().map(str::to_owned),
            uri: request.uri().to_string(),
            headers: request
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                .collect(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        state.script.pop_front()
    };
    let Some(next) = next else {
        // Not a status any provider retries, so a test that over-asks fails at once.
        return Response::builder()
            .status(StatusCode::IM_A_TEAPOT)
            .body("script exhausted");
    };
    tokio::time::sleep(next.delay).await;
    let mut response = Response::builder()
        .status(StatusCode::from_u16(next.status).unwrap())
        .content_type("application/json");
    for (name, value) in next.headers {
        response = response.header(name, value);
    }
    response.body(next.body)
}

// ---------------------------------------------------------------------------------------------
// Requests, providers and answers

const GEMINI_KEY: &str = "AIzaSyTestKey-0123456789abcdefghij";
const OPENAI_KEY: &str = "sk-proj-test-key-0123456789abcdef";

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        attempt_timeout: Duration::from_secs(5),
    }
}

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "entities": { "type": "array", "items": { "type": "string" } },
        },
        "required": ["entities"],
    })
}

fn request(model: &str) -> LlmRequest {
    LlmRequest {
        model: model.into(),
        system: "Extract the entities of the text.".into(),
        prompt: "Graph neural networks for molecule property prediction.".into(),
        schema: schema(),
        max_output_tokens: 1024,
        temperature: 0.25,
    }
}

fn gemini(mock: &Mock, sleeper: &RecordingSleeper) -> GeminiProvider {
    GeminiProvider::new()
        .with_base_url(&mock.base)
        .with_policy(policy())
        .with_sleeper(Arc::new(sleeper.clone()))
}

fn openai(mock: &Mock, sleeper: &RecordingSleeper) -> OpenAiProvider {
    OpenAiProvider::new()
        .with_base_url(format!("{}/v1/", mock.base))
        .with_policy(policy())
        .with_sleeper(Arc::new(sleeper.clone()))
}

async fn call_gemini(mock: &Mock, sleeper: &RecordingSleeper) -> Result<LlmResponse, LlmError> {
    gemini(mock, sleeper)
        .generate(&request("gemini-2.5-flash"), Some(&ApiKey::new(GEMINI_KEY)))
        .await
}

async fn call_openai(mock: &Mock, sleeper: &RecordingSleeper) -> Result<LlmResponse, LlmError> {
    openai(mock, sleeper)
        .generate(&request("gpt-4.1-mini"), Some(&ApiKey::new(OPENAI_KEY)))
        .await
}

const ENTITIES: &str = r#"{"entities":["graph neural network","molecule"]}"#;

/// A `generateContent` answer with one candidate.
fn gemini_answer(parts: Value, finish: &str, usage: Value) -> Value {
    json!({
        "candidates": [{
            "content": { "parts": parts, "role": "model" },
            "finishReason": finish,
            "index": 0,
        }],
        "usageMetadata": usage,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "mJ3aaOzLJ-mWz7IPx4bVsAQ",
    })
}

fn gemini_ok() -> Scripted {
    Scripted::json(
        200,
        gemini_answer(
            json!([{ "text": ENTITIES }]),
            "STOP",
            json!({
                "promptTokenCount": 31,
                "candidatesTokenCount": 12,
                "totalTokenCount": 43,
                "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": 31 }],
            }),
        ),
    )
}

/// A `google.rpc.Status` error answer.
fn gemini_error(code: u16, status: &str, message: &str, details: Value) -> Scripted {
    Scripted::json(
        code,
        json!({ "error": { "code": code, "message": message, "status": status, "details": details } }),
    )
}

fn gemini_rate_limited(retry_delay: &str) -> Scripted {
    gemini_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        json!([
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                    "quotaDimensions": { "location": "global", "model": "gemini-2.5-flash" },
                    "quotaValue": "10",
                }],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }],
            },
            { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay },
        ]),
    )
}

fn gemini_unavailable() -> Scripted {
    Scripted::json(
        503,
        json!({ "error": { "code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE" } }),
    )
}

/// A chat completion with one choice.
fn openai_answer(content: Value, finish: &str, usage: Value) -> Scripted {
    Scripted::json(
        200,
        json!({
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "object": "chat.completion",
            "created": 1741569952,
            "model": "gpt-4.1-mini-2025-04-14",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": content, "refusal": null, "annotations": [] },
                "logprobs": null,
                "finish_reason": finish,
            }],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_6f2eabb9a5",
        }),
    )
}

fn openai_usage(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> Value {
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": { "cached_tokens": cached, "audio_tokens": 0 },
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    })
}

/// An OpenAI error answer.
fn openai_error(status: u16, message: &str, kind: &str, code: Value) -> Scripted {
    Scripted::json(
        status,
        json!({ "error": { "message": message, "type": kind, "param": null, "code": code } }),
    )
}

// ---------------------------------------------------------------------------------------------
// Gemini

#[tokio::test]
async fn gemini_sends_the_documented_request_with_the_key_in_a_header() {
    let mock = Mock::start(vec![gemini_ok()]).await;
    let sleeper = RecordingSleeper::new();
    let response = call_gemini(&mock, &sleeper).await.unwrap();

    assert_eq!(
        response.json,
        json!({"entities": ["graph neural network", "molecule"]})
    );
    assert_eq!(response.text, ENTITIES);
    assert_eq!(response.finish, FinishReason::Stop);
    assert_eq!(response.attempts, 1);
    assert!(sleeper.delays().is_empty());

    let received = mock.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(sent.query, None);
    assert!(!sent.uri.contains(GEMINI_KEY));
    assert_eq!(sent.headers["x-goog-api-key"], GEMINI_KEY);
    assert!(!sent.headers.contains_key("authorization"));
    assert_eq!(sent.headers["content-type"], "application/json");
    assert_eq!(
        sent.body,
        json!({
            "systemInstruction": { "parts": [{ "text": "Extract the entities of the text." }] },
            "contents": [{
                "role": "user",
                "parts": [{ "text": "Graph neural networks for molecule property prediction." }],
            }],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseSchema": schema(),
                "maxOutputTokens": 1024,
                "temperature": 0.25,
            },
        })
    );
}

#[tokio::test]
async fn gemini_usage_is_normalised_and_thoughts_are_skipped() {
    let mock = Mock::start(vec![Scripted::json(
        200,
        gemini_answer(
            json!([
                { "text": "**Listing entities**\nThe text names a method and a domain.", "thought": true },
                { "text": "{\"entities\":" },
                { "text": "[\"molecule\"]}" },
            ]),
            "STOP",
            json!({
                "promptTokenCount": 2048,
                "candidatesTokenCount": 9,
                "totalTokenCount": 2270,
                "cachedContentTokenCount": 1536,
                "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": 2048 }],
                "cacheTokensDetails": [{ "modality": "TEXT", "tokenCount": 1536 }],
                "thoughtsTokenCount": 213,
            }),
        ),
    )])
    .await;
    let response = call_gemini(&mock, &RecordingSleeper::new()).await.unwrap();
    assert_eq!(response.text, r#"{"entities":["molecule"]}"#);
    assert_eq!(response.json, json!({"entities": ["molecule"]}));
    assert_eq!(
        response.usage,
        TokenUsage {
            input_tokens: 2048,
            cached_tokens: 1536,
            output_tokens: 9,
            thinking_tokens: 213,
        }
    );
}

#[tokio::test]
async fn gemini_429_waits_the_retry_info_delay_capped_at_max_delay() {
    let mock = Mock::start(vec![
        gemini_rate_limited("1.5s"),
        gemini_rate_limited("37s"),
        gemini_ok(),
    ])
    .await;
    let sleeper = RecordingSleeper::new();
    let response = call_gemini(&mock, &sleeper).await.unwrap();
    assert_eq!(response.attempts, 3);
    assert_eq!(mock.hits(), 3);
    // Exactly the server's delays: no jitter added; 37 s is capped at max_delay (2 s).
    assert_eq!(
        sleeper.delays(),
        vec![Duration::from_millis(1500), Duration::from_secs(2)]
    );
    assert_eq!(response.usage.input_tokens, 31);
}

#[tokio::test]
async fn gemini_429_retry_info_then_success_takes_two_attempts() {
    let mock = Mock::start(vec![gemini_rate_limited("37s"), gemini_ok()]).await;
    let sleeper = RecordingSleeper::new();
    let provider = gemini(&mock, &sleeper).with_policy(RetryPolicy {
        max_delay: Duration::from_secs(60),
        ..policy()
    });
    let response = provider
        .generate(&request("gemini-2.5-flash"), Some(&ApiKey::new(GEMINI_KEY)))
        .await
        .unwrap();
    assert_eq!(response.attempts, 2);
    assert_eq!(sleeper.delays(), vec![Duration::from_secs(37)]);
}

#[tokio::test]
async fn gemini_429_until_attempts_run_out_is_rate_limited() {
    let mock = Mock::start((0..5).map(|_| gemini_rate_limited("0.5s")).collect()).await;
    let sleeper = RecordingSleeper::new();
    let error = call_gemini(&mock, &sleeper).await.unwrap_err();
    assert!(
        matches!(error, LlmError::RateLimited { retry_after: Some(d) } if d == Duration::from_millis(500)),
        "{error:?}"
    );
    assert_eq!(error.kind(), "rate_limited");
    assert!(error.is_retryable());
    assert_eq!(mock.hits(), 4);
    assert_eq!(sleeper.delays(), vec![Duration::from_millis(500); 3]);
}

#[tokio::test]
async fn gemini_daily_quota_is_final() {
    let mock = Mock::start(vec![
        gemini_error(
            429,
            "RESOURCE_EXHAUSTED",
            "You exceeded your current quota, please check your plan and billing details.",
            json!([
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
                        "quotaDimensions": { "location": "global", "model": "gemini-2.5-flash" },
                        "quotaValue": "250",
                    }],
                },
                { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "12s" },
            ]),
        ),
        gemini_ok(),
    ])
    .await;
    let sleeper = RecordingSleeper::new();
    let error = call_gemini(&mock, &sleeper).await.unwrap_err();
    assert!(matches!(error, LlmError::QuotaExhausted), "{error:?}");
    assert!(!error.is_retryable());
    assert_eq!(mock.hits(), 1);
    assert!(sleeper.delays().is_empty());
}

#[tokio::test]
async fn gemini_503_twice_then_success_backs_off_with_jitter() {
    let mock = Mock::start(vec![
        gemini_unavailable(),
        gemini_unavailable(),
        gemini_ok(),
    ])
    .await;
    let sleeper = RecordingSleeper::new();
    let response = call_gemini(&mock, &sleeper).await.unwrap();
    assert_eq!(response.attempts, 3);
    assert_eq!(mock.hits(), 3);
    let delays = sleeper.delays();
    assert_eq!(delays.len(), 2);
    // Full jitter: within [0, base * 2^n].
    assert!(delays[0] <= Duration::from_millis(100), "{delays:?}");
    assert!(delays[1] <= Duration::from_millis(200), "{delays:?}");
}

#[tokio::test]
async fn gemini_503_until_attempts_run_out_is_unavailable() {
    let mock = Mock::start((0..6).map(|_| gemini_unavailable()).collect()).await;
    let sleeper = RecordingSleeper::new();
    let error = call_gemini(&mock, &sleeper).await.unwrap_err();
    assert!(
        matches!(error, LlmError::Unavailable { status: 503 }),
        "{error:?}"
    );
    assert_eq!(mock.hits(), 4);
    assert_eq!(mock.unused(), 2);
    let delays = sleeper.delays();
    assert_eq!(delays.len(), 3);
    for (n, delay) in delays.iter().enumerate() {
        assert!(*delay <= policy().backoff_ceiling(n as u32), "{delays:?}");
    }
}

#[tokio::test]
async fn gemini_invalid_key_is_final_and_not_echoed() {
    let mock = Mock::start(vec![
        gemini_error(
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            json!([
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": { "service": "generativelanguage.googleapis.com" },
                },
                {
                    "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                    "locale": "en-US",
                    "message": "API key not valid. Please pass a valid API key.",
                },
            ]),
        ),
        gemini_ok(),
    ])
    .await;
    let error = call_gemini(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::InvalidKey), "{error:?}");
    assert_eq!(mock.hits(), 1);
    assert!(!format!("{error} {error:?}").contains(GEMINI_KEY));
}

#[tokio::test]
async fn gemini_blocked_prompt_is_blocked() {
    let mock = Mock::start(vec![Scripted::json(
        200,
        json!({
            "promptFeedback": {
                "blockReason": "SAFETY",
                "safetyRatings": [
                    { "category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE" },
                    { "category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE" },
                    { "category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE" },
                    { "category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH" },
                ],
            },
            "usageMetadata": { "promptTokenCount": 31, "totalTokenCount": 31 },
            "modelVersion": "gemini-2.5-flash",
        }),
    )])
    .await;
    let error = call_gemini(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::Blocked { reason } if reason == "SAFETY"),
        "{error:?}"
    );
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn gemini_safety_finish_is_blocked() {
    let mock = Mock::start(vec![Scripted::json(
        200,
        json!({
            "candidates": [{
                "finishReason": "SAFETY",
                "index": 0,
                "safetyRatings": [
                    { "category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": true },
                ],
            }],
            "usageMetadata": { "promptTokenCount": 31, "totalTokenCount": 31 },
            "modelVersion": "gemini-2.5-flash",
        }),
    )])
    .await;
    let error = call_gemini(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::Blocked { reason } if reason == "SAFETY"),
        "{error:?}"
    );
    assert_eq!(error.kind(), "blocked");
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn gemini_max_tokens_is_truncated_with_usage_kept() {
    let mock = Mock::start(vec![Scripted::json(
        200,
        gemini_answer(
            json!([{ "text": "{\"entities\":[\"graph neur" }]),
            "MAX_TOKENS",
            json!({
                "promptTokenCount": 31,
                "candidatesTokenCount": 8,
                "totalTokenCount": 1055,
                "thoughtsTokenCount": 1016,
            }),
        ),
    )])
    .await;
    let error = call_gemini(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();
    let LlmError::Truncated { partial, usage } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(partial, "{\"entities\":[\"graph neur");
    let expected = TokenUsage {
        input_tokens: 31,
        cached_tokens: 0,
        output_tokens: 8,
        thinking_tokens: 1016,
    };
    assert_eq!(*usage, expected);
    assert_eq!(error.usage(), Some(&expected));
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn gemini_slow_attempts_time_out() {
    let slow = Duration::from_secs(3);
    let mock = Mock::start(vec![gemini_ok().slow(slow), gemini_ok().slow(slow)]).await;
    let sleeper = RecordingSleeper::new();
    let provider = gemini(&mock, &sleeper).with_policy(RetryPolicy {
        max_attempts: 2,
        attempt_timeout: Duration::from_millis(200),
        ..policy()
    });
    let started = Instant::now();
    let error = provider
        .generate(&request("gemini-2.5-flash"), Some(&ApiKey::new(GEMINI_KEY)))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Timeout), "{error:?}");
    assert_eq!(mock.hits(), 2);
    assert_eq!(sleeper.delays().len(), 1);
    assert!(started.elapsed() < slow, "{:?}", started.elapsed());
}

#[tokio::test]
async fn gemini_slow_attempt_then_fast_one_succeeds() {
    let mock = Mock::start(vec![gemini_ok().slow(Duration::from_secs(3)), gemini_ok()]).await;
    let sleeper = RecordingSleeper::new();
    let provider = gemini(&mock, &sleeper).with_policy(RetryPolicy {
        attempt_timeout: Duration::from_millis(200),
        ..policy()
    });
    let response = provider
        .generate(&request("gemini-2.5-flash"), Some(&ApiKey::new(GEMINI_KEY)))
        .await
        .unwrap();
    assert_eq!(response.attempts, 2);
    assert_eq!(mock.hits(), 2);
    assert_eq!(sleeper.delays().len(), 1);
}

#[tokio::test]
async fn gemini_default_sleeper_really_waits() {
    let mock = Mock::start(vec![gemini_rate_limited("0.3s"), gemini_ok()]).await;
    let provider = GeminiProvider::new()
        .with_base_url(&mock.base)
        .with_policy(policy());
    let started = Instant::now();
    let response = provider
        .generate(&request("gemini-2.5-flash"), Some(&ApiKey::new(GEMINI_KEY)))
        .await
        .unwrap();
    assert_eq!(response.attempts, 2);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(response.latency >= Duration::from_millis(300));
}

#[tokio::test]
async fn gemini_malformed_output_keeps_text_and_usage() {
    let mock = Mock::start(vec![Scripted::json(
        200,
        gemini_answer(
            json!([{ "text": "Sure! Here are the entities: molecule" }]),
            "STOP",
            json!({ "promptTokenCount": 31, "candidatesTokenCount": 9, "totalTokenCount": 40 }),
        ),
    )])
    .await;
    let error = call_gemini(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();
    let LlmError::MalformedOutput { text, usage } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(text, "Sure! Here are the entities: molecule");
    assert_eq!(usage.output_tokens, 9);
    assert!(!error.is_retryable());
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn gemini_unknown_model_and_missing_key() {
    let mock = Mock::start(vec![gemini_error(
        404,
        "NOT_FOUND",
        "models/gemini-0.1-nano is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.",
        json!([]),
    )])
    .await;
    let sleeper = RecordingSleeper::new();
    let provider = gemini(&mock, &sleeper);
    let key = ApiKey::new(GEMINI_KEY);
    let error = provider
        .generate(&request("gemini-0.1-nano"), Some(&key))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::UnknownModel(m) if m == "gemini-0.1-nano"),
        "{error:?}"
    );
    assert_eq!(mock.hits(), 1);

    let error = provider
        .generate(&request("gemini-2.5-flash"), None)
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::MissingKey), "{error:?}");
    assert_eq!(mock.hits(), 1, "nothing is sent without a key");
}

#[tokio::test]
async fn gemini_unreachable_server_is_a_connect_error_after_retries() {
    // A port that was just free: nothing listens there.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let sleeper = RecordingSleeper::new();
    let error = GeminiProvider::new()
        .with_base_url(base)
        .with_policy(policy())
        .with_sleeper(Arc::new(sleeper.clone()))
        .generate(&request("gemini-2.5-flash"), Some(&ApiKey::new(GEMINI_KEY)))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Connect(_)), "{error:?}");
    assert!(error.is_retryable());
    assert_eq!(sleeper.delays().len(), 3);
    assert!(!error.to_string().contains(GEMINI_KEY));
}

// ---------------------------------------------------------------------------------------------
// OpenAI-compatible

#[tokio::test]
async fn openai_sends_json_schema_and_bearer_and_normalises_usage() {
    let mock = Mock::start(vec![openai_answer(
        json!(ENTITIES),
        "stop",
        openai_usage(2006, 1920, 300, 192),
    )])
    .await;
    let sleeper = RecordingSleeper::new();
    let response = call_openai(&mock, &sleeper).await.unwrap();
    assert_eq!(
        response.json,
        json!({"entities": ["graph neural network", "molecule"]})
    );
    assert_eq!(response.finish, FinishReason::Stop);
    assert_eq!(response.attempts, 1);
    assert_eq!(
        response.usage,
        TokenUsage {
            input_tokens: 2006,
            cached_tokens: 1920,
            output_tokens: 108,
            thinking_tokens: 192,
        }
    );

    let received = mock.received();
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(
        sent.headers["authorization"],
        format!("Bearer {OPENAI_KEY}")
    );
    assert!(!sent.uri.contains(OPENAI_KEY));
    assert_eq!(
        sent.body,
        json!({
            "model": "gpt-4.1-mini",
            "messages": [
                { "role": "system", "content": "Extract the entities of the text." },
                { "role": "user", "content": "Graph neural networks for molecule property prediction." },
            ],
            "response_format": {
                "type": "json_schema",
                "json_schema": { "name": "output", "schema": {
                    "type": "object",
                    "properties": {
                        "entities": { "type": "array", "items": { "type": "string" } },
                    },
                    "required": ["entities"],
                    "additionalProperties": false,
                }, "strict": true },
            },
            "max_tokens": 1024,
            "temperature": 0.25,
        })
    );
}

#[tokio::test]
async fn openai_without_a_key_sends_no_authorization() {
    let mock = Mock::start(vec![openai_answer(
        json!(ENTITIES),
        "stop",
        json!({ "prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52 }),
    )])
    .await;
    let response = openai(&mock, &RecordingSleeper::new())
        .generate(&request("qwen2.5-7b-instruct"), None)
        .await
        .unwrap();
    assert_eq!(response.usage.output_tokens, 12);
    assert!(!mock.received()[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn openai_429_honours_retry_after() {
    let mock = Mock::start(vec![
        openai_error(
            429,
            "Rate limit reached for gpt-4.1-mini in organization org-abc on requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s.",
            "requests",
            json!("rate_limit_exceeded"),
        )
        .header("retry-after", "1"),
        openai_answer(json!(ENTITIES), "stop", openai_usage(40, 0, 12, 0)),
    ])
    .await;
    let sleeper = RecordingSleeper::new();
    let response = call_openai(&mock, &sleeper).await.unwrap();
    assert_eq!(response.attempts, 2);
    assert_eq!(mock.hits(), 2);
    assert_eq!(sleeper.delays(), vec![Duration::from_secs(1)]);
}

#[tokio::test]
async fn openai_insufficient_quota_is_final() {
    let mock = Mock::start(vec![openai_error(
        429,
        "You exceeded your current quota, please check your plan and billing details.",
        "insufficient_quota",
        json!("insufficient_quota"),
    )])
    .await;
    let sleeper = RecordingSleeper::new();
    let error = call_openai(&mock, &sleeper).await.unwrap_err();
    assert!(matches!(error, LlmError::QuotaExhausted), "{error:?}");
    assert_eq!(mock.hits(), 1);
    assert!(sleeper.delays().is_empty());
}

#[tokio::test]
async fn openai_401_is_invalid_key_and_not_retried() {
    let masked = format!(
        "{}***{}",
        &OPENAI_KEY[..6],
        &OPENAI_KEY[OPENAI_KEY.len() - 4..]
    );
    let mock = Mock::start(vec![
        openai_error(
            401,
            &format!("Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
        openai_answer(json!(ENTITIES), "stop", openai_usage(40, 0, 12, 0)),
    ])
    .await;
    let error = call_openai(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::InvalidKey), "{error:?}");
    assert_eq!(error.kind(), "invalid_key");
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn openai_rejection_message_is_kept_without_the_key() {
    let mock = Mock::start(vec![openai_error(
        400,
        &format!("Invalid schema for response_format 'output' (request made with key {OPENAI_KEY}): 'additionalProperties' is required to be supplied and to be false."),
        "invalid_request_error",
        Value::Null,
    )])
    .await;
    let error = call_openai(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();
    let LlmError::Rejected { status, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*status, 400);
    assert!(message.contains("additionalProperties"), "{message}");
    assert!(!format!("{error} {error:?}").contains(OPENAI_KEY));
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn openai_length_is_truncated_with_usage() {
    let mock = Mock::start(vec![openai_answer(
        json!("{\"entities\":[\"graph"),
        "length",
        openai_usage(40, 0, 64, 0),
    )])
    .await;
    let error = call_openai(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();
    let LlmError::Truncated { partial, usage } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(partial, "{\"entities\":[\"graph");
    assert_eq!(usage.output_tokens, 64);
    assert_eq!(usage.input_tokens, 40);
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn openai_content_filter_is_blocked() {
    let mock = Mock::start(vec![openai_answer(
        Value::Null,
        "content_filter",
        openai_usage(40, 0, 0, 0),
    )])
    .await;
    let error = call_openai(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, LlmError::Blocked { reason } if reason == "content_filter"),
        "{error:?}"
    );
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn openai_non_json_content_is_malformed_with_usage() {
    let mock = Mock::start(vec![openai_answer(
        json!("```json\n{\"entities\": [\"molecule\"]\n```"),
        "stop",
        openai_usage(40, 0, 14, 0),
    )])
    .await;
    let sleeper = RecordingSleeper::new();
    let error = call_openai(&mock, &sleeper).await.unwrap_err();
    let LlmError::MalformedOutput { text, usage } = &error else {
        panic!("{error:?}");
    };
    assert!(text.starts_with("```json"));
    assert_eq!(usage.output_tokens, 14);
    assert_eq!(error.kind(), "malformed_output");
    assert_eq!(mock.hits(), 1);
    assert!(sleeper.delays().is_empty());
}

#[tokio::test]
async fn openai_502_then_success_retries() {
    let mock = Mock::start(vec![
        Scripted {
            status: 502,
            headers: Vec::new(),
            body: "<html><body>502 Bad Gateway</body></html>".into(),
            delay: Duration::ZERO,
        },
        openai_answer(json!(ENTITIES), "stop", openai_usage(40, 0, 12, 0)),
    ])
    .await;
    let sleeper = RecordingSleeper::new();
    let response = call_openai(&mock, &sleeper).await.unwrap();
    assert_eq!(response.attempts, 2);
    assert_eq!(sleeper.delays().len(), 1);
    assert!(sleeper.delays()[0] <= Duration::from_millis(100));
}

// ---------------------------------------------------------------------------------------------
// Logs

/// A log sink shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_log_line_carries_the_key() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mock = Mock::start(vec![
        gemini_unavailable(),
        gemini_rate_limited("0.1s"),
        gemini_ok(),
    ])
    .await;
    call_gemini(&mock, &RecordingSleeper::new()).await.unwrap();
    let mock = Mock::start(vec![
        openai_error(
            500,
            "The server had an error while processing your request.",
            "server_error",
            Value::Null,
        ),
        openai_error(
            401,
            "Incorrect API key provided.",
            "invalid_request_error",
            json!("invalid_api_key"),
        ),
    ])
    .await;
    call_openai(&mock, &RecordingSleeper::new())
        .await
        .unwrap_err();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("retrying"), "{logs}");
    assert!(logs.contains("status=503"), "{logs}");
    assert!(!logs.contains(GEMINI_KEY));
    assert!(!logs.contains(OPENAI_KEY));
}

// ---------------------------------------------------------------------------------------------
// Offline

#[tokio::test]
async fn offline_needs_no_key_and_no_network() {
    let provider = OfflineProvider::new();
    assert_eq!(provider.name(), "offline");
    let mut plain = request("offline");
    plain.schema = json!({ "type": "object" });
    let response = provider.generate(&plain, None).await.unwrap();
    assert_eq!(
        response.json,
        json!({"entities": [], "relations": [], "mentions": []})
    );
    assert_eq!(
        serde_json::from_str::<Value>(&response.text).unwrap(),
        response.json
    );
    assert_eq!(response.usage, TokenUsage::default());
    assert_eq!(response.finish, FinishReason::Stop);

    let response = provider.generate(&request("offline"), None).await.unwrap();
    assert_eq!(response.json, json!({"entities": []}));
}

#[test]
fn providers_are_labelled() {
    assert_eq!(GeminiProvider::new().name(), "gemini");
    assert_eq!(OpenAiProvider::new().name(), "openai");
    let providers: Vec<Box<dyn LlmProvider>> = vec![
        Box::new(GeminiProvider::new()),
        Box::new(OpenAiProvider::new()),
        Box::new(OfflineProvider::new()),
    ];
    assert_eq!(providers.len(), 3);
}

// ---------------------------------------------------------------------------------------------
// Limiter

fn tenant(n: u128) -> TenantId {
    TenantId(Uuid::from_u128(n))
}

#[tokio::test]
async fn a_tenant_cannot_exceed_its_permits_and_others_are_unaffected() {
    let limiter = ConcurrencyLimiter::new(2);
    let (a, b) = (tenant(10), tenant(11));
    let first = limiter.acquire(a).await;
    let _second = limiter.acquire(a).await;
    assert!(limiter.try_acquire(a).is_none());
    assert_eq!(limiter.available(a), 0);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), limiter.acquire(a))
            .await
            .is_err(),
        "a third permit for the same tenant"
    );

    // Another tenant gets all of its own permits meanwhile.
    let _b1 = tokio::time::timeout(Duration::from_millis(50), limiter.acquire(b))
        .await
        .expect("tenant b is not held up by tenant a");
    let _b2 = limiter.try_acquire(b).expect("a second permit for b");
    assert!(limiter.try_acquire(b).is_none());

    drop(first);
    assert_eq!(limiter.available(a), 1);
    let _third = tokio::time::timeout(Duration::from_millis(50), limiter.acquire(a))
        .await
        .expect("a freed permit is handed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_of_one_tenant_stay_within_the_limit() {
    let limiter = Arc::new(ConcurrencyLimiter::new(3));
    let a = tenant(20);
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (limiter, running, peak) = (
                Arc::clone(&limiter),
                Arc::clone(&running),
                Arc::clone(&peak),
            );
            tokio::spawn(async move {
                let _permit = limiter.acquire(a).await;
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                running.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    // While tenant a is saturated, tenant b is served at once.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let b_permit = tokio::time::timeout(Duration::from_millis(50), limiter.acquire(tenant(21)))
        .await
        .expect("tenant b is served while a is saturated");
    drop(b_permit);
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    assert_eq!(limiter.available(a), 3);
}
