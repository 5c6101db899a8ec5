//! The closed loop: one persistent HTTP/1.1 connection per worker, requests back to back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::de::IgnoredAny;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::mix::Mix;
use super::vars::{Prepared, Universe};

/// Error descriptions kept for printing.
pub const MAX_SAMPLES: usize = 5;
/// How much of an error response's body a sample keeps.
const SAMPLE_BODY_CHARS: usize = 600;
/// The pause after a failed connection attempt, so a dead server does not spin the driver.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// Where requests go.
#[derive(Clone, Debug)]
pub struct Endpoint {
    host: String,
    port: u16,
    authority: HeaderValue,
    path: Uri,
}

impl Endpoint {
    /// Reads an `http://host[:port]/path` URL.
    pub fn parse(url: &str) -> Result<Endpoint> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("{url:?} is not a URL"))?;
        if uri.scheme_str() != Some("http") {
            bail!("{url:?}: only http:// URLs are supported");
        }
        let authority = uri.authority().context("the URL has no host")?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        Ok(Endpoint {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(80),
            authority: HeaderValue::from_str(authority.as_str())?,
            path: uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .parse()?,
        })
    }
}

/// The two headers that say who is asking, pre-built per tenant.
#[derive(Clone, Debug)]
pub struct TenantHeaders {
    pub authorization: HeaderValue,
    pub tenant_id: HeaderValue,
}

/// What one query got in the measured window.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Requests that completed (answered or failed).
    pub requests: u64,
    /// Failed ones (see [`Failure`]).
    pub errors: u64,
    /// Of the errors, answers without errors whose data had a null root field (not found).
    pub null_roots: u64,
    /// Latencies of the successful requests, µs.
    pub latencies_us: Vec<u64>,
}

impl Counts {
    fn merge(&mut self, other: Counts) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.null_roots += other.null_roots;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// What the workers saw.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Per query of the mix, in mix order, measured window only.
    pub measured: Vec<Counts>,
    /// Requests completed during the warm-up.
    pub warmup_requests: u64,
    /// Of which failed.
    pub warmup_errors: u64,
    /// The first few failures, described.
    pub samples: Vec<String>,
}

/// Everything the workers share.
pub struct Plan {
    pub endpoint: Endpoint,
    pub tenants: Vec<TenantHeaders>,
    pub universe: Universe,
    pub queries: Vec<Prepared>,
    pub mix: Mix,
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub timeout: Duration,
    pub seed: u64,
}

/// Why a request failed.
#[derive(Debug)]
enum Failure {
    /// No connection could be made.
    Connect(String),
    /// The connection broke or was closed: it is replaced.
    Lost(String),
    /// No complete answer within the timeout: the connection is replaced.
    Timeout,
    /// An answer that is not a success.
    Answer { what: String, body: Bytes },
    /// A success whose data has null root fields.
    NullRoot { fields: String, body: Bytes },
}

impl Failure {
    fn drops_connection(&self) -> bool {
        matches!(
            self,
            Failure::Connect(_) | Failure::Lost(_) | Failure::Timeout
        )
    }

    fn describe(&self) -> String {
        let body = |b: &Bytes| {
            let text = String::from_utf8_lossy(b);
            let mut cut: String = text.chars().take(SAMPLE_BODY_CHARS).collect();
            if cut.len() < text.len() {
                cut.push('…');
            }
            cut
        };
        match self {
            Failure::Connect(e) => format!("cannot connect: {e}"),
            Failure::Lost(e) => format!("connection lost: {e}"),
            Failure::Timeout => "no answer within the timeout".into(),
            Failure::Answer { what, body: b } => format!("{what}: {}", body(b)),
            Failure::NullRoot { fields, body: b } => {
                format!("null root field(s) {fields} (not found?): {}", body(b))
            }
        }
    }
}

/// The parts of a GraphQL answer the driver checks, without building the data.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<HashMap<String, Option<IgnoredAny>>>,
    #[serde(default)]
    errors: Option<Vec<IgnoredAny>>,
}

fn check(status: StatusCode, body: Bytes) -> Result<(), Failure> {
    if status != StatusCode::OK {
        return Err(Failure::Answer {
            what: format!("HTTP {status}"),
            body,
        });
    }
    let envelope: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => {
            return Err(Failure::Answer {
                what: format!("not a GraphQL answer ({e})"),
                body,
            })
        }
    };
    if envelope.errors.as_ref().is_some_and(|e| !e.is_empty()) {
        return Err(Failure::Answer {
            what: "GraphQL errors".into(),
            body,
        });
    }
    let Some(data) = envelope.data else {
        return Err(Failure::Answer {
            what: "null data".into(),
            body,
        });
    };
    let mut nulls: Vec<&str> = data
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.as_str())
        .collect();
    if !nulls.is_empty() {
        nulls.sort_unstable();
        return Err(Failure::NullRoot {
            fields: nulls.join(", "),
            body,
        });
    }
    Ok(())
}

type Sender = SendRequest<Full<Bytes>>;

async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Sender, String> {
    let attempt = async {
        let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            // Ends when the connection closes or the sender is dropped; a broken connection
            // shows up as the next request's failure.
            let _ = connection.await;
        });
        Ok(sender)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err("timed out".into()),
    }
}

struct Shared {
    plan: Plan,
    measure_start: Instant,
    end: Instant,
    samples: Mutex<Vec<String>>,
    sampled: AtomicUsize,
    x_tenant_id: HeaderName,
}

impl Shared {
    fn sample(&self, text: impl FnOnce() -> String) {
        if self.sampled.fetch_add(1, Ordering::Relaxed) < MAX_SAMPLES {
            self.samples.lock().expect("samples lock").push(text());
        }
    }

    async fn request(
        &self,
        connection: &mut Option<Sender>,
        tenant: usize,
        body: Bytes,
    ) -> Result<(), Failure> {
        let sender = match connection {
            Some(sender) if sender.is_closed() => {
                *connection = None;
                return Err(Failure::Lost("closed by the server".into()));
            }
            Some(sender) => sender,
            None => connection.insert(
                connect(&self.plan.endpoint, self.plan.timeout)
                    .await
                    .map_err(Failure::Connect)?,
            ),
        };
        let headers = &self.plan.tenants[tenant];
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.plan.endpoint.path.clone())
            .header(HOST, self.plan.endpoint.authority.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(AUTHORIZATION, headers.authorization.clone())
            .header(&self.x_tenant_id, headers.tenant_id.clone())
            .body(Full::new(body))
            .expect("a valid request");
        let exchange = async {
            sender
                .ready()
                .await
                .map_err(|e| Failure::Lost(e.to_string()))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| Failure::Lost(e.to_string()))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Failure::Lost(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(self.plan.timeout, exchange)
            .await
            .map_err(|_| Failure::Timeout)??;
        check(status, body)
    }
}

struct WorkerResult {
    measured: Vec<Counts>,
    warmup_requests: u64,
    warmup_errors: u64,
}

async fn worker(shared: Arc<Shared>, index: usize, mut connection: Option<Sender>) -> WorkerResult {
    let plan = &shared.plan;
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    rng.set_stream(index as u64);
    let mut result = WorkerResult {
        measured: vec![Counts::default(); plan.queries.len()],
        warmup_requests: 0,
        warmup_errors: 0,
    };
    while Instant::now() < shared.end {
        let q = plan.mix.pick(&mut rng);
        let draw = plan.universe.draw(&mut rng);
        let query = &plan.queries[q];
        let body = query.body(&plan.universe, &draw);
        let started = Instant::now();
        let attempt = shared.request(&mut connection, draw.tenant as usize, body);
        // A request still running when the window closes is abandoned and not counted.
        let Ok(outcome) = tokio::time::timeout_at(shared.end, attempt).await else {
            break;
        };
        let done = Instant::now();
        let measured = done >= shared.measure_start;
        match outcome {
            Ok(()) => {
                if measured {
                    let counts = &mut result.measured[q];
                    counts.requests += 1;
                    let micros = (done - started).as_micros();
                    counts
                        .latencies_us
                        .push(u64::try_from(micros).unwrap_or(u64::MAX));
                } else {
                    result.warmup_requests += 1;
                }
            }
            Err(failure) => {
                if measured {
                    let counts = &mut result.measured[q];
                    counts.requests += 1;
                    counts.errors += 1;
                    if matches!(failure, Failure::NullRoot { .. }) {
                        counts.null_roots += 1;
                    }
                } else {
                    result.warmup_requests += 1;
                    result.warmup_errors += 1;
                }
                shared.sample(|| {
                    format!(
                        "[{}] {} (tenant {}): {}",
                        if measured { "measured" } else { "warm-up" },
                        query.name,
                        draw.tenant,
                        failure.describe()
                    )
                });
                if failure.drops_connection() {
                    connection = None;
                }
                if matches!(failure, Failure::Connect(_)) {
                    tokio::time::sleep_until((Instant::now() + RECONNECT_PAUSE).min(shared.end))
                        .await;
                }
            }
        }
    }
    result
}

/// Opens every connection, then runs the warm-up and the measured window; `on_start` is
/// called once the connections are open, just before the clock starts.
pub async fn run(plan: Plan, on_start: impl FnOnce()) -> Result<Outcome> {
    let mut connections = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        let sender = connect(&plan.endpoint, plan.timeout)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| {
                format!(
                    "cannot connect to {}",
                    plan.endpoint.authority.to_str().unwrap_or("the server")
                )
            })?;
        connections.push(sender);
    }
    on_start();
    let start = Instant::now();
    let n_queries = plan.queries.len();
    let shared = Arc::new(Shared {
        measure_start: start + plan.warmup,
        end: start + plan.warmup + plan.measure,
        plan,
        samples: Mutex::new(Vec::new()),
        sampled: AtomicUsize::new(0),
        x_tenant_id: HeaderName::from_static("x-tenant-id"),
    });
    let workers: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(i, sender)| tokio::spawn(worker(shared.clone(), i, Some(sender))))
        .collect();
    let mut outcome = Outcome {
        measured: vec![Counts::default(); n_queries],
        ..Outcome::default()
    };
    for worker in workers {
        let result = worker.await.context("a worker panicked")?;
        for (total, counts) in outcome.measured.iter_mut().zip(result.measured) {
            total.merge(counts);
        }
        outcome.warmup_requests += result.warmup_requests;
        outcome.warmup_errors += result.warmup_errors;
    }
    outcome.samples = std::mem::take(&mut *shared.samples.lock().expect("samples lock"));
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, body: &str) -> Option<String> {
        check(
            StatusCode::from_u16(status).unwrap(),
            Bytes::from(body.to_owned()),
        )
        .err()
        .map(|f| f.describe())
    }

    #[test]
    fn what_counts_as_an_error() {
        assert_eq!(failure(200, r#"{"data":{"a":{"b":null},"c":[]}}"#), None);
        assert_eq!(failure(200, r#"{"data":{},"errors":[]}"#), None);
        assert!(failure(500, r#"{"data":{"a":1}}"#)
            .unwrap()
            .starts_with("HTTP 500"));
        assert!(
            failure(200, r#"{"data":{"a":1},"errors":[{"message":"x"}]}"#)
                .unwrap()
                .starts_with("GraphQL errors")
        );
        assert!(failure(200, r#"{"data":null,"errors":[{"message":"x"}]}"#).is_some());
        assert!(failure(200, r#"{"data":null}"#)
            .unwrap()
            .starts_with("null data"));
        assert!(failure(200, r#"{"errors":null}"#)
            .unwrap()
            .starts_with("null data"));
        assert!(failure(200, "<html>")
            .unwrap()
            .starts_with("not a GraphQL answer"));
        let null_root = failure(200, r#"{"data":{"graphNode":null,"b":1,"a":null}}"#).unwrap();
        assert!(
            null_root.starts_with("null root field(s) a, graphNode"),
            "{null_root}"
        );
    }

    #[test]
    fn samples_cut_long_bodies() {
        let long = format!(r#"{{"errors":[{{"message":"{}"}}]}}"#, "x".repeat(5000));
        let text = failure(200, &long).unwrap();
        assert!(text.len() < 1000 && text.ends_with('…'), "{}", text.len());
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("http://127.0.0.1:5000/graphql").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 5000));
        assert_eq!(e.authority, "127.0.0.1:5000");
        assert_eq!(e.path, "/graphql");
        let e = Endpoint::parse("http://localhost").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("localhost", 80));
        assert_eq!(e.path, "/");
        let e = Endpoint::parse("http://[::1]:8080/t/x/graphql?a=1").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.path, "/t/x/graphql?a=1");
        assert!(Endpoint::parse("https://example.com/graphql").is_err());
        assert!(Endpoint::parse("/graphql").is_err());
    }
}
