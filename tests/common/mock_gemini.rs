//! A local server that speaks the Gemini API's `generateContent` wire format: requests are
//! answered by a test-supplied function of the request body (sections are extracted
//! concurrently, so answers are chosen by content, not by arrival order), after a simulated
//! latency, with Gemini's real success and error bodies.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{handler, EndpointExt, Response, Server};
use serde_json::{json, Value};

/// One answer: an HTTP status, a JSON body and extra headers.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

/// Usage counts of one scripted answer, as Gemini reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// `promptTokenCount`.
    pub prompt: u64,
    /// `candidatesTokenCount`.
    pub output: u64,
    /// `thoughtsTokenCount`.
    pub thoughts: u64,
}

/// A successful answer whose text is `text`, with `usage`.
pub fn text_answer(text: &str, usage: Usage) -> Answer {
    let mut metadata = json!({
        "promptTokenCount": usage.prompt,
        "candidatesTokenCount": usage.output,
        "totalTokenCount": usage.prompt + usage.output + usage.thoughts,
        "promptTokensDetails": [{ "modality": "TEXT", "tokenCount": usage.prompt }],
    });
    if usage.thoughts > 0 {
        metadata["thoughtsTokenCount"] = json!(usage.thoughts);
    }
    Answer {
        status: 200,
        body: json!({
            "candidates": [{
                "content": { "parts": [{ "text": text }], "role": "model" },
                "finishReason": "STOP",
                "index": 0,
            }],
            "usageMetadata": metadata,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "mJ3aaOzLJ-mWz7IPx4bVsAQ",
        }),
    }
}

/// A successful answer carrying `value` as its JSON text.
pub fn json_answer(value: &Value, usage: Usage) -> Answer {
    text_answer(&value.to_string(), usage)
}

/// HTTP 429 RESOURCE_EXHAUSTED with a RetryInfo delay, as Gemini sends it.
pub fn rate_limited(retry_delay: &str) -> Answer {
    Answer {
        status: 429,
        body: json!({ "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{
                        "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                        "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        "quotaDimensions": { "location": "global", "model": "gemini-2.5-flash" },
                        "quotaValue": "10",
                    }],
                },
                { "@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay },
            ],
        }}),
    }
}

/// HTTP 503 UNAVAILABLE, as Gemini sends it when overloaded.
pub fn unavailable() -> Answer {
    Answer {
        status: 503,
        body: json!({ "error": {
            "code": 503,
            "message": "The model is overloaded. Please try again later.",
            "status": "UNAVAILABLE",
        }}),
    }
}

/// The user prompt of a `generateContent` request body (all text parts, joined).
pub fn prompt_of(body: &Value) -> String {
    body["contents"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["parts"].as_array().into_iter().flatten())
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The system instruction of a request body.
pub fn system_of(body: &Value) -> String {
    body["systemInstruction"]["parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

type Responder = dyn Fn(&Value, usize) -> Answer + Send + Sync;

struct State {
    responder: Box<Responder>,
    latency: Duration,
    received: Mutex<Vec<Value>>,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

/// The server.
pub struct MockGemini {
    /// Base URL to give the provider.
    pub base: String,
    state: Arc<State>,
}

impl MockGemini {
    /// Starts a server answering request number `n` (from 0) with body `b` by
    /// `responder(b, n)`, each after `latency`.
    pub async fn start(
        latency: Duration,
        responder: impl Fn(&Value, usize) -> Answer + Send + Sync + 'static,
    ) -> MockGemini {
        let state = Arc::new(State {
            responder: Box::new(responder),
            latency,
            received: Mutex::new(Vec::new()),
            calls: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
        });
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        tokio::spawn(Server::new_with_acceptor(acceptor).run(generate.data(Arc::clone(&state))));
        MockGemini {
            base: format!("http://{addr}"),
            state,
        }
    }

    /// Request bodies received so far.
    pub fn received(&self) -> Vec<Value> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }
}

#[handler]
async fn generate(body: Vec<u8>, state: Data<&Arc<State>>) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = state.calls.fetch_add(1, Ordering::SeqCst);
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    state.received.lock().unwrap().push(body.clone());
    tokio::time::sleep(state.latency).await;
    let answer = (state.responder)(&body, n);
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap())
        .content_type("application/json")
        .body(answer.body.to_string())
}
