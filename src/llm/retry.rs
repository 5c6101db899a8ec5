//! Retries with jittered exponential backoff, honouring the delays servers ask for.
//!
//! After a failed attempt `n` (counted from 0), the wait is drawn uniformly from
//! `0..=min(max_delay, base_delay * 2^n)` ("full jitter"), unless the server named a delay: an
//! HTTP `Retry-After` (seconds or an HTTP-date) or a `google.rpc.RetryInfo` `retryDelay` in a
//! Gemini error. That delay is waited as given, capped at `max_delay`. Each attempt has its
//! own timeout. Waiting goes through a [`Sleeper`], so tests can record the delays instead of
//! sleeping them ([`RecordingSleeper`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::LlmError;

/// How often and how patiently a provider retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least one is always made).
    pub max_attempts: u32,
    /// The backoff ceiling after the first failure; it doubles after each further one.
    pub base_delay: Duration,
    /// The longest wait, whether computed or asked for by the server.
    pub max_delay: Duration,
    /// The limit on one attempt: sending, waiting and reading the answer.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            attempt_timeout: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The most that the wait after failed attempt `retry` (from 0) may be, without a server
    /// delay: `min(max_delay, base_delay * 2^retry)`.
    pub fn backoff_ceiling(&self, retry: u32) -> Duration {
        1u32.checked_shl(retry)
            .and_then(|factor| self.base_delay.checked_mul(factor))
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// A random wait in `0..=backoff_ceiling(retry)`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = u64::try_from(self.backoff_ceiling(retry).as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(0..=ceiling))
    }

    /// The wait after failed attempt `retry`: the server's delay (capped at `max_delay`) when
    /// it gave one, the jittered backoff otherwise.
    pub fn delay(&self, retry: u32, server_delay: Option<Duration>) -> Duration {
        match server_delay {
            Some(delay) => delay.min(self.max_delay),
            None => self.backoff(retry),
        }
    }
}

/// Waits between attempts.
pub trait Sleeper: Send + Sync + fmt::Debug {
    /// Waits for `delay`.
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// Sleeps on the tokio timer; what providers use unless told otherwise.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioSleeper;

impl Sleeper for TokioSleeper {
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(delay))
    }
}

/// Records each delay and returns at once. Clones share the record, so a test keeps one clone
/// and gives another to the provider.
#[derive(Clone, Debug, Default)]
pub struct RecordingSleeper {
    delays: Arc<Mutex<Vec<Duration>>>,
}

impl RecordingSleeper {
    /// An empty record.
    pub fn new() -> Self {
        RecordingSleeper::default()
    }

    /// The delays asked for so far, in order.
    pub fn delays(&self) -> Vec<Duration> {
        self.delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, delay: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.delays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(delay);
        Box::pin(std::future::ready(()))
    }
}

/// What one attempt came to.
pub(crate) enum Attempt<T> {
    /// Final: a success, or an error that no retry can mend.
    Done(Result<T, LlmError>),
    /// A transient failure; `server_delay` is the wait the server asked for, if any.
    Retry {
        error: LlmError,
        server_delay: Option<Duration>,
    },
}

/// Runs `attempt` (given the attempt number, from 1) until it is done or the attempts run out;
/// returns the outcome and the number of attempts made.
pub(crate) async fn run<T, F, Fut>(
    policy: &RetryPolicy,
    sleeper: &dyn Sleeper,
    provider: &'static str,
    mut attempt: F,
) -> (Result<T, LlmError>, u32)
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let max_attempts = policy.max_attempts.max(1);
    let mut made = 0;
    loop {
        made += 1;
        let outcome = tokio::time::timeout(policy.attempt_timeout, attempt(made))
            .await
            .unwrap_or(Attempt::Retry {
                error: LlmError::Timeout,
                server_delay: None,
            });
        match outcome {
            Attempt::Done(result) => return (result, made),
            Attempt::Retry {
                error,
                server_delay,
            } => {
                if made >= max_attempts {
                    tracing::debug!(provider, attempt = made, error = error.kind(), "giving up");
                    return (Err(error), made);
                }
                let delay = policy.delay(made - 1, server_delay);
                tracing::debug!(
                    provider,
                    attempt = made,
                    error = error.kind(),
                    delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                    server_delay = server_delay.is_some(),
                    "retrying"
                );
                sleeper.sleep(delay).await;
            }
        }
    }
}

/// The delay a `retry-after-ms` (milliseconds, as OpenAI sends) or `Retry-After` header asks
/// for, if present and readable.
pub(crate) fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let millis = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok());
    millis.or_else(|| {
        let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
        parse_retry_after(value, SystemTime::now())
    })
}

/// Parses a `Retry-After` value: delay seconds, or an HTTP-date (a date already past is no
/// wait at all).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses a protobuf `Duration` in its JSON form: seconds with an optional fraction and an
/// `s` suffix (`"37s"`, `"1.5s"`).
pub(crate) fn parse_google_duration(value: &str) -> Option<Duration> {
    let number = value.trim().strip_suffix('s')?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
        || fraction.len() > 9
    {
        return None;
    }
    let seconds = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let nanos = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    Some(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_ceiling_doubles_up_to_the_maximum() {
        let p = policy();
        assert_eq!(p.backoff_ceiling(0), Duration::from_millis(100));
        assert_eq!(p.backoff_ceiling(1), Duration::from_millis(200));
        assert_eq!(p.backoff_ceiling(3), Duration::from_millis(800));
        assert_eq!(p.backoff_ceiling(4), Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(40), Duration::from_secs(1));
        assert_eq!(p.backoff_ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn backoff_is_jittered_within_the_ceiling() {
        let p = policy();
        let draws: Vec<Duration> = (0..200).map(|_| p.backoff(2)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(400)));
        // Full jitter: the draws spread out rather than sitting at the ceiling.
        let distinct: std::collections::HashSet<_> = draws.iter().collect();
        assert!(distinct.len() > 100, "{} distinct draws", distinct.len());
        assert!(draws.iter().any(|d| *d < Duration::from_millis(200)));
    }

    #[test]
    fn server_delay_wins_but_is_capped() {
        let p = policy();
        assert_eq!(
            p.delay(0, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(37))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        // 1445412480 is Wed, 21 Oct 2015 07:28:00 GMT.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("1.5", now), None);
    }

    #[test]
    fn retry_after_ms_comes_before_retry_after() {
        use reqwest::header::HeaderValue;
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_header(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(retry_after_header(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", HeaderValue::from_static("1250.5"));
        assert_eq!(
            retry_after_header(&headers),
            Some(Duration::from_micros(1_250_500))
        );
        headers.insert("retry-after-ms", HeaderValue::from_static("-5"));
        assert_eq!(retry_after_header(&headers), Some(Duration::from_secs(3)));
    }

    #[test]
    fn google_durations() {
        assert_eq!(parse_google_duration("37s"), Some(Duration::from_secs(37)));
        assert_eq!(
            parse_google_duration("1.5s"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_google_duration("0.000000001s"),
            Some(Duration::from_nanos(1))
        );
        assert_eq!(
            parse_google_duration(".25s"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_google_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "37",
            "s",
            ".s",
            "-1s",
            "1.2.3s",
            "1e3s",
            "1.0000000001s",
            "",
        ] {
            assert_eq!(parse_google_duration(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn recording_sleeper_shares_its_record() {
        let sleeper = RecordingSleeper::new();
        let given = sleeper.clone();
        given.sleep(Duration::from_millis(3)).await;
        given.sleep(Duration::from_secs(2)).await;
        assert_eq!(
            sleeper.delays(),
            vec![Duration::from_millis(3), Duration::from_secs(2)]
        );
    }

    #[tokio::test]
    async fn run_stops_at_max_attempts_and_records_waits() {
        let sleeper = RecordingSleeper::new();
        let (result, made) = run::<(), _, _>(&policy(), &sleeper, "test", |_| async {
            Attempt::Retry {
                error: LlmError::Unavailable { status: 503 },
                server_delay: None,
            }
        })
        .await;
        assert!(matches!(result, Err(LlmError::Unavailable { status: 503 })));
        assert_eq!(made, 5);
        let delays = sleeper.delays();
        assert_eq!(delays.len(), 4);
        for (retry, delay) in delays.iter().enumerate() {
            assert!(*delay <= policy().backoff_ceiling(retry as u32));
        }
    }

    #[tokio::test]
    async fn run_times_out_slow_attempts_then_succeeds() {
        let sleeper = RecordingSleeper::new();
        let p = RetryPolicy {
            attempt_timeout: Duration::from_millis(50),
            ..policy()
        };
        let (result, made) = run(&p, &sleeper, "test", |n| async move {
            if n == 1 {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Attempt::Done(Ok(n))
        })
        .await;
        assert_eq!(result.unwrap(), 2);
        assert_eq!(made, 2);
        assert_eq!(sleeper.delays().len(), 1);
    }
}
