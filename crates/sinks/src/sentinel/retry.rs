//! When and how long to wait before calling the Logs Ingestion API again.
//!
//! Three pieces, all free of I/O except for sleeping:
//! - [`classify`] turns one call's result into a [`Decision`]: done, wait and retry, refresh the
//!   token once, split the body (413), halve it to find the rows at fault (400), or stop (a
//!   configuration error);
//! - [`RetryPolicy::backoff`]: exponential backoff with full jitter and a cap (a uniform draw in
//!   `[0, min(cap, initial · multiplier^attempt)]`), used when the service gives no `Retry-After`;
//! - [`RateBudget`]: a token bucket per DCR over bytes and requests per minute, so that we wait
//!   for budget instead of exceeding the DCR's limits (2 GB and 12,000 requests per minute).
//!
//! Invariants:
//! - a wait is never longer than the policy's cap, except when the service asks for longer with
//!   `Retry-After`: the service's word wins, it knows its own throttle;
//! - transient errors (5xx, 408, timeouts, dropped connections) and throttling are retried
//!   without a count limit: the pipeline must not lose data, and backpressure comes from not
//!   acknowledging the batch. Only configuration errors, and a second 401 in a row, stop;
//! - the budget never lets more than its per-minute capacity through in a burst, and refills
//!   continuously (capacity / 60 per second).

use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::{sync::Mutex, time::Instant};

use super::service::{SendError, SendErrorKind};

/// Exponential backoff with full jitter and a cap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Upper bound of the first wait.
    pub initial: Duration,
    /// Cap on any computed wait.
    pub max: Duration,
    /// Growth of the upper bound per attempt (≥ 1).
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { initial: Duration::from_secs(1), max: Duration::from_secs(60), multiplier: 2.0 }
    }
}

impl RetryPolicy {
    /// The upper bound of the wait before retry number `attempt` (0-based): never above the cap.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.max(1.0).powi(attempt.min(64) as i32);
        let secs = self.initial.as_secs_f64() * factor;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() { self.max } else { Duration::from_secs_f64(secs) }
    }

    /// A uniform draw in `[0, ceiling(attempt)]` (full jitter).
    pub fn backoff(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        if ceiling.is_zero() {
            return ceiling;
        }
        Duration::from_nanos(rng.random_range(0..=ceiling.as_nanos().min(u64::MAX as u128) as u64))
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.initial.is_zero() {
            return Err("retry.initial must be greater than zero".into());
        }
        if self.max < self.initial {
            return Err(format!("retry.max ({:?}) must be at least retry.initial ({:?})", self.max, self.initial));
        }
        if !self.multiplier.is_finite() || self.multiplier < 1.0 {
            return Err(format!("retry.multiplier must be a number ≥ 1, not {}", self.multiplier));
        }
        Ok(())
    }
}

/// Parses a `Retry-After` header: delay-seconds (`"120"`) or an HTTP-date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, relative to `now`; a date in the past is zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::from(date.with_timezone(&chrono::Utc));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// What to do after one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Accepted (2xx).
    Done,
    /// Wait this long, then send the same body again.
    Retry { after: Duration, throttled: bool },
    /// 401: get a new token and send again, once.
    RefreshToken,
    /// 413: send the body in halves ([`super::Packer::split`]).
    Split,
    /// 400: send the body in halves to find the rows the service refuses; a single row refused
    /// on its own is rejected (a dead letter) once the stream has accepted other rows, since
    /// then the stream works and that row is at fault.
    Bisect,
    /// Do not retry: a configuration error, or a 401 right after a token refresh.
    Fail,
}

/// Decides from one call's result. `attempt` counts the waits already made for this body (for
/// the backoff), `refreshed` tells whether the token was already refreshed after a 401.
pub fn classify(
    result: &Result<(), SendError>,
    attempt: u32,
    refreshed: bool,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
) -> Decision {
    let Err(error) = result else { return Decision::Done };
    match &error.kind {
        SendErrorKind::Transient => Decision::Retry { after: policy.backoff(attempt, rng), throttled: false },
        SendErrorKind::Throttled { retry_after } => {
            Decision::Retry { after: retry_after.unwrap_or_else(|| policy.backoff(attempt, rng)), throttled: true }
        }
        SendErrorKind::TooLarge => Decision::Split,
        SendErrorKind::Invalid => Decision::Bisect,
        SendErrorKind::Unauthorized if !refreshed => Decision::RefreshToken,
        SendErrorKind::Unauthorized | SendErrorKind::Config => Decision::Fail,
    }
}

/// A token bucket over bytes and requests per minute (one per DCR).
#[derive(Debug)]
pub struct RateBudget {
    bytes_per_minute: f64,
    requests_per_minute: f64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    bytes: f64,
    requests: f64,
    at: Instant,
}

const MINUTE: f64 = 60.0;

impl RateBudget {
    /// A full bucket. Both limits must be positive (see [`super::SentinelConfig::validate`]).
    pub fn new(bytes_per_minute: u64, requests_per_minute: u32) -> Self {
        let (bytes, requests) = (bytes_per_minute.max(1) as f64, f64::from(requests_per_minute.max(1)));
        Self {
            bytes_per_minute: bytes,
            requests_per_minute: requests,
            state: Mutex::new(Bucket { bytes, requests, at: Instant::now() }),
        }
    }

    /// Waits until one request of `bytes` fits, then takes it from the budget. A request larger
    /// than the whole per-minute budget waits for a full bucket and takes all of it.
    pub async fn acquire(&self, bytes: u64) {
        let want = (bytes as f64).min(self.bytes_per_minute);
        loop {
            let wait = {
                let mut bucket = self.state.lock().await;
                let now = Instant::now();
                let elapsed = now.duration_since(bucket.at).as_secs_f64();
                bucket.bytes = (bucket.bytes + elapsed * self.bytes_per_minute / MINUTE).min(self.bytes_per_minute);
                bucket.requests =
                    (bucket.requests + elapsed * self.requests_per_minute / MINUTE).min(self.requests_per_minute);
                bucket.at = now;
                if bucket.bytes >= want && bucket.requests >= 1.0 {
                    bucket.bytes -= want;
                    bucket.requests -= 1.0;
                    return;
                }
                let bytes_wait = (want - bucket.bytes).max(0.0) * MINUTE / self.bytes_per_minute;
                let requests_wait = (1.0 - bucket.requests).max(0.0) * MINUTE / self.requests_per_minute;
                Duration::from_secs_f64(bytes_wait.max(requests_wait)).max(Duration::from_millis(1))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{SeedableRng, rngs::SmallRng};

    use super::*;

    fn err(kind: SendErrorKind, status: Option<u16>) -> Result<(), SendError> {
        Err(SendError { kind, status, message: String::new(), outcome_unknown: false })
    }

    #[test]
    fn backoff_stays_within_zero_and_the_cap() {
        let policy = RetryPolicy::default();
        let mut rng = SmallRng::seed_from_u64(7);
        for attempt in 0..200 {
            let ceiling = policy.ceiling(attempt);
            assert!(ceiling <= policy.max);
            for _ in 0..50 {
                assert!(policy.backoff(attempt, &mut rng) <= ceiling);
            }
        }
        assert_eq!(policy.ceiling(0), Duration::from_secs(1));
        assert_eq!(policy.ceiling(3), Duration::from_secs(8));
        assert_eq!(policy.ceiling(6), Duration::from_secs(60));
        assert_eq!(policy.ceiling(u32::MAX), Duration::from_secs(60));
    }

    #[test]
    fn backoff_is_jittered_over_the_whole_range() {
        let policy = RetryPolicy::default();
        let mut rng = SmallRng::seed_from_u64(1);
        let draws: Vec<Duration> = (0..1000).map(|_| policy.backoff(10, &mut rng)).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_secs(6)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(54)));
    }

    #[test]
    fn retry_after_parses_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn classifier_decides_for_every_kind_of_result() {
        let p = RetryPolicy::default();
        let mut rng = SmallRng::seed_from_u64(3);
        let mut decide = |r: &Result<(), SendError>, refreshed| classify(r, 0, refreshed, &p, &mut rng);
        assert_eq!(decide(&Ok(()), false), Decision::Done);
        let ra = Some(Duration::from_secs(17));
        assert_eq!(
            decide(&err(SendErrorKind::Throttled { retry_after: ra }, Some(429)), false),
            Decision::Retry { after: Duration::from_secs(17), throttled: true }
        );
        match decide(&err(SendErrorKind::Throttled { retry_after: None }, Some(429)), false) {
            Decision::Retry { after, throttled: true } => assert!(after <= p.ceiling(0)),
            other => panic!("unexpected {other:?}"),
        }
        for status in [Some(500), Some(503), None] {
            match decide(&err(SendErrorKind::Transient, status), false) {
                Decision::Retry { after, throttled: false } => assert!(after <= p.ceiling(0)),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(decide(&err(SendErrorKind::TooLarge, Some(413)), false), Decision::Split);
        assert_eq!(decide(&err(SendErrorKind::Unauthorized, Some(401)), false), Decision::RefreshToken);
        assert_eq!(decide(&err(SendErrorKind::Unauthorized, Some(401)), true), Decision::Fail);
        for status in [403, 404] {
            assert_eq!(decide(&err(SendErrorKind::Config, Some(status)), false), Decision::Fail);
        }
        assert_eq!(decide(&err(SendErrorKind::Invalid, Some(400)), false), Decision::Bisect);
    }

    #[test]
    fn policy_validation_names_the_key() {
        let bad = RetryPolicy { initial: Duration::ZERO, ..RetryPolicy::default() };
        assert!(bad.validate().unwrap_err().contains("retry.initial"));
        let bad = RetryPolicy { max: Duration::from_millis(10), ..RetryPolicy::default() };
        assert!(bad.validate().unwrap_err().contains("retry.max"));
        let bad = RetryPolicy { multiplier: 0.5, ..RetryPolicy::default() };
        assert!(bad.validate().unwrap_err().contains("retry.multiplier"));
        assert!(RetryPolicy::default().validate().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn budget_waits_for_requests_per_minute() {
        let budget = RateBudget::new(u64::MAX / 2, 60);
        let start = Instant::now();
        for _ in 0..60 {
            budget.acquire(10).await;
        }
        assert!(start.elapsed() < Duration::from_millis(5), "a full bucket does not wait");
        budget.acquire(10).await;
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(990) && waited <= Duration::from_millis(1100), "{waited:?}");
        for _ in 0..10 {
            budget.acquire(10).await;
        }
        assert!(start.elapsed() >= Duration::from_secs(11));
    }

    #[tokio::test(start_paused = true)]
    async fn budget_waits_for_bytes_per_minute() {
        let budget = RateBudget::new(6_000, 12_000);
        let start = Instant::now();
        budget.acquire(6_000).await;
        assert!(start.elapsed() < Duration::from_millis(5));
        budget.acquire(3_000).await; // half a minute's bytes
        let waited = start.elapsed();
        assert!(waited >= Duration::from_secs(30) && waited <= Duration::from_millis(30_100), "{waited:?}");
        budget.acquire(1_000_000).await; // larger than a minute: waits for a full bucket
        assert!(start.elapsed() >= Duration::from_secs(90));
    }
}
