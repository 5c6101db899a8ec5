//! Every model call through `MeteredLlm`, against a local OpenAI-compatible server speaking the
//! real chat-completions JSON: exact costs from the provider's usage block, errors metered,
//! unknown models refused before any request, and a hard limit that holds for 50 concurrent
//! calls while soft mode lets them all run and reports the 80% and 100% states.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{seed_tenant, Seeded, TestDb};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{handler, http::StatusCode, EndpointExt, IntoResponse, Response, Route, Server};
use research_graph::llm::{
    ApiKey, ConcurrencyLimiter, LlmProvider, LlmRequest, OpenAiProvider, RetryPolicy,
};
use research_graph::money::Usd;
use research_graph::usage::calls::{CallContext, CallError, MeteredLlm};
use research_graph::usage::limits::LimitState;
use research_graph::usage::meter::Meter;
use research_graph::usage::pricing::Pricing;
use serde_json::{json, Value};

/// $1 per 1M uncached input, $0.10 cached, $4 output: easy to compute by hand.
const PRICES: &str = r#"
markup_percent = "25"
[models.test-model]
provider = "openai"
input = "1.00"
output = "4.00"
cache_read = "0.10"
"#;

/// What the mock answers, and how many requests it saw.
struct Mock {
    mode: &'static str,
    requests: AtomicUsize,
}

#[handler]
async fn completions(mock: Data<&Arc<Mock>>, body: Json<Value>) -> Response {
    mock.requests.fetch_add(1, Ordering::SeqCst);
    let usage = if mock.mode == "small" {
        // What a 37-byte prompt and a short answer really use: within the call's estimate.
        json!({ "prompt_tokens": 30, "completion_tokens": 800 })
    } else {
        json!({ "prompt_tokens": 12_000, "completion_tokens": 3_000,
            "prompt_tokens_details": { "cached_tokens": 2_000 }, "completion_tokens_details": { "reasoning_tokens": 1_000 } })
    };
    match mock.mode {
        "invalid_key" => (StatusCode::UNAUTHORIZED, Json(json!({ "error": { "message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key" } }))).into_response(),
        "truncated" => Json(json!({ "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": "{\"entities\": [" }, "finish_reason": "length" }],
            "usage": usage })).into_response(),
        _ => {
            // "small" serves the hard-limit test: every admitted call is still in flight, holding
            // its reservation, while the other calls are admitted (a call that finished early
            // would free budget, since its real cost is below its estimate, and let one more in).
            let latency = if mock.mode == "small" { 3_000 } else { 20 };
            tokio::time::sleep(Duration::from_millis(latency)).await;
            Json(json!({ "id": "c", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{ "index": 0, "message": { "role": "assistant", "content": "{\"entities\": []}" }, "finish_reason": "stop" }],
                "usage": usage })).into_response()
        }
    }
}

async fn mock(mode: &'static str) -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock {
        mode,
        requests: AtomicUsize::new(0),
    });
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let route = Route::new()
        .at("/v1/chat/completions", completions)
        .data(Arc::clone(&mock));
    tokio::spawn(Server::new_with_acceptor(acceptor).run(route));
    (format!("http://{addr}/v1"), mock)
}

fn gateway(t: &TestDb, base: &str, meter: &Arc<Meter>) -> MeteredLlm {
    let policy = RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    };
    let provider: Arc<dyn LlmProvider> = Arc::new(
        OpenAiProvider::new()
            .with_base_url(base)
            .with_policy(policy),
    );
    MeteredLlm::new(
        t.db.clone(),
        Arc::new(Pricing::parse(PRICES).unwrap()),
        Arc::clone(meter),
        ConcurrencyLimiter::new(64),
        vec![provider],
    )
}

fn context(a: &Seeded, key: &str) -> CallContext {
    CallContext {
        tenant: a.tenant,
        user: a.owner,
        job_id: Some(a.job),
        stage: "extract".into(),
        agent: "extractor".into(),
        idempotency_key: key.into(),
        platform_key: Some(ApiKey::new("sk-platform-test-key")),
        tenant_key: None,
    }
}

fn request(model: &str) -> LlmRequest {
    LlmRequest {
        model: model.into(),
        system: "Extract entities.".into(),
        prompt: "We propose GraphNet.".into(),
        schema: json!({ "type": "object", "properties": { "entities": { "type": "array" } }, "required": ["entities"], "additionalProperties": false }),
        max_output_tokens: 1_000,
        temperature: 0.0,
    }
}

async fn events(
    t: &TestDb,
    a: &Seeded,
) -> Vec<(String, i64, i64, i64, i64, i64, i64, Option<String>)> {
    t.superuser()
        .await
        .query(
            "SELECT outcome, input_tokens, cached_tokens, output_tokens, thinking_tokens, base_cost_micros, billed_cost_micros, error_kind \
             FROM app.usage_events WHERE tenant_id = $1 AND stage = 'extract' AND provider = 'openai' ORDER BY occurred_at",
            &[&a.tenant.0],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7)))
        .collect()
}

#[tokio::test]
async fn a_call_is_metered_with_the_exact_cost_of_its_usage() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let (base, _) = mock("ok").await;
    let meter = Arc::new(Meter::start(t.db.clone(), 64));
    let llm = gateway(&t, &base, &meter);
    let answer = llm
        .call(&context(&a, "call-1"), &request("test-model"))
        .await
        .unwrap();
    // 10,000 uncached × $1 + 2,000 cached × $0.10 + (2,000 output + 1,000 thinking) × $4, per 1M:
    // 10,000 + 200 + 12,000 = 22,200 µ$; billed +25% = 27,750 µ$.
    assert_eq!(
        (answer.cost.base, answer.cost.billed),
        (Usd(22_200), Usd(27_750))
    );
    assert_eq!(answer.response.json, json!({ "entities": [] }));
    meter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        events(&t, &a).await,
        vec![(
            "ok".into(),
            12_000,
            2_000,
            2_000,
            1_000,
            22_200,
            27_750,
            None
        )]
    );

    // An unknown model is an error before any request, never a zero cost.
    let (base, mock_seen) = mock("ok").await;
    let llm = gateway(&t, &base, &Arc::new(Meter::start(t.db.clone(), 4)));
    let err = llm
        .call(&context(&a, "call-2"), &request("gpt-unknown"))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Pricing(_)), "{err}");
    assert_eq!(mock_seen.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn failed_calls_are_metered_too() {
    let t = TestDb::new().await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    let meter = Arc::new(Meter::start(t.db.clone(), 64));
    let (truncating, _) = mock("truncated").await;
    let err = gateway(&t, &truncating, &meter)
        .call(&context(&a, "t-1"), &request("test-model"))
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Llm(_)), "{err}");
    let (refusing, _) = mock("invalid_key").await;
    let err = gateway(&t, &refusing, &meter)
        .call(&context(&a, "k-1"), &request("test-model"))
        .await
        .unwrap_err();
    assert!(err.to_string().to_lowercase().contains("key"), "{err}");
    assert!(
        !err.to_string().contains("sk-platform-test-key"),
        "the key never appears"
    );
    meter.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        events(&t, &a).await,
        vec![
            // The truncated answer still cost its tokens.
            (
                "error".into(),
                12_000,
                2_000,
                2_000,
                1_000,
                22_200,
                27_750,
                Some("truncated".into())
            ),
            ("error".into(), 0, 0, 0, 0, 0, 0, Some("invalid_key".into())),
        ]
    );
}

async fn limit(t: &TestDb, a: &Seeded, mode: &str, daily_cost: i64) {
    t.superuser()
        .await
        .execute(
            "UPDATE app.tenant_settings SET limit_mode = $2, daily_cost_limit_micros = $3 WHERE tenant_id = $1",
            &[&a.tenant.0, &mode, &daily_cost],
        )
        .await
        .unwrap();
}

/// A call's maximum: its 37 prompt bytes as tokens and its 1,000-token output budget:
/// 37 × $1 + 1,000 × $4 per 1M = 4,037 µ$, billed (+25%) 5,046 µ$. A daily limit of ten such
/// estimates admits exactly ten calls; each then really bills 30 × $1 + 800 × $4 = 3,230 µ$ (+25%
/// = 4,038 µ$), within its reservation.
const ESTIMATE_BILLED: i64 = 5_046;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_cannot_overshoot_a_hard_limit() {
    let t = TestDb::with_pool_size(8).await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    limit(&t, &a, "hard", 10 * ESTIMATE_BILLED).await;
    let (base, mock_seen) = mock("small").await;
    let meter = Arc::new(Meter::start(t.db.clone(), 128));
    let llm = Arc::new(gateway(&t, &base, &meter));
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let (llm, a) = (Arc::clone(&llm), a);
            tokio::spawn(async move {
                llm.call(&context(&a, &format!("hard-{i}")), &request("test-model"))
                    .await
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => ok += 1,
            Err(CallError::LimitExceeded(_)) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, refused), (10, 40));
    assert_eq!(
        mock_seen.requests.load(Ordering::SeqCst),
        10,
        "refused calls never reached the provider"
    );
    meter.shutdown(Duration::from_secs(10)).await;
    let recorded = events(&t, &a).await;
    assert_eq!(recorded.iter().filter(|e| e.0 == "ok").count(), 10);
    assert_eq!(recorded.iter().filter(|e| e.0 == "blocked").count(), 40);
    let billed: i64 = recorded.iter().map(|e| e.6).sum();
    assert!(
        billed <= 10 * ESTIMATE_BILLED,
        "billed {billed} within the limit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_soft_mode_all_calls_run_and_the_states_are_reported() {
    let t = TestDb::with_pool_size(8).await;
    let a = seed_tenant(&t, "alpha", "10.1/a", "k").await;
    // Each call bills 27,750 µ$; the limit is ten calls' worth.
    limit(&t, &a, "soft", 10 * 27_750).await;
    let (base, mock_seen) = mock("ok").await;
    let meter = Arc::new(Meter::start(t.db.clone(), 128));
    let llm = gateway(&t, &base, &meter);
    let mut states = Vec::new();
    for i in 0..12 {
        let answer = llm
            .call(&context(&a, &format!("soft-{i}")), &request("test-model"))
            .await
            .expect("soft mode runs everything");
        states.push(answer.limits.iter().map(|l| l.state).max().unwrap());
        while meter.counts().written < i + 1 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    assert_eq!(mock_seen.requests.load(Ordering::SeqCst), 12);
    assert_eq!(&states[..8], &[LimitState::Ok; 8]);
    assert_eq!(&states[8..10], &[LimitState::Warning; 2]);
    assert_eq!(&states[10..], &[LimitState::Exceeded; 2]);
    meter.shutdown(Duration::from_secs(5)).await;
}
