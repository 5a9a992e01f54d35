//! The LiveCoinWatch client (docs/LIVECOINWATCH.md): POST JSON with the key in `x-api-key`,
//! requests spaced, 429/5xx/timeouts retried with exponential backoff and jitter (honouring
//! `Retry-After`), other 4xx failing at once, and a 200 whose body is not the documented JSON
//! treated as an error, never as "no data".
//!
//! The key comes from `LIVE_COIN_WATCH_API_KEY`, is held in a [`SecretString`], and only
//! leaves it to fill the request header: it is never logged or put into an error.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Mutex;
use tokio::time::Instant;

use rps_core::retry::{self, Failure, Verdict};

use crate::error::{ExtractError, Result};
use crate::resample::Observation;

/// The public API.
pub const DEFAULT_API_BASE: &str = "https://api.livecoinwatch.com/";
/// The environment variable holding the API key.
pub const KEY_VAR: &str = "LIVE_COIN_WATCH_API_KEY";
/// `coins/map` accepts at most this many codes per call.
const MAP_CHUNK: usize = 100;
/// The longest `Retry-After` the client waits; a server asking for more is treated as down.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// How the client talks to the API.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Base URL (`https://api.livecoinwatch.com/`; tests point it at a local server).
    pub base: String,
    /// Minimum time between two requests (the API allows a few per second).
    pub request_interval: Duration,
    /// Retries after the first attempt for 429, 5xx, timeouts and connection errors.
    pub max_retries: u32,
    /// First backoff delay; doubles each retry (with jitter), up to `retry_max`.
    pub retry_base: Duration,
    /// Longest backoff delay.
    pub retry_max: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl ClientOptions {
    /// The retry policy these options describe: `max_retries` after the first attempt, the
    /// delay doubling from `retry_base` up to `retry_max`, with equal jitter.
    pub fn retry_policy(&self) -> retry::Policy {
        retry::Policy {
            attempts: self.max_retries.saturating_add(1),
            base: self.retry_base,
            cap: self.retry_max,
            jitter: retry::Jitter::Equal,
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            base: DEFAULT_API_BASE.into(),
            request_interval: Duration::from_millis(400),
            max_retries: 5,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
        }
    }
}

/// A LiveCoinWatch client. Requests are sequential and spaced by `request_interval`.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    key: SecretString,
    opts: ClientOptions,
    last_request: Mutex<Option<Instant>>,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// `credits` response.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Credits {
    /// Requests (credits) the key may still spend today.
    pub daily_credits_remaining: u64,
    /// The key's daily credit allowance.
    pub daily_credits_limit: u64,
}

#[derive(Debug, Deserialize)]
struct History {
    history: Vec<HistoryPoint>,
}

#[derive(Debug, Deserialize)]
struct HistoryPoint {
    date: i64,
    rate: Option<f64>,
    volume: Option<f64>,
    cap: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct MapCoin {
    code: String,
}

/// Observations of one `history` window.
#[derive(Debug, Default, Clone)]
pub struct HistoryWindow {
    /// The usable points of the window, as price observations.
    pub observations: Vec<Observation>,
    /// Points with a null (or non-positive, non-finite) rate, skipped.
    pub skipped: usize,
}

enum Attempt {
    /// Try again after the delay (the server's `Retry-After` if given).
    Retry {
        why: String,
        retry_after: Option<Duration>,
    },
    /// Stop with this error.
    Fail(ExtractError),
}

impl Client {
    /// Builds a client with an explicit key.
    pub fn new(key: SecretString, opts: ClientOptions) -> Result<Client> {
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .user_agent(concat!("rps-extract/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ExtractError::Internal(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            key,
            opts,
            last_request: Mutex::new(None),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
        })
    }

    /// Requests sent so far (each attempt counts: each costs a credit).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Retries made so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The daily credits left.
    pub async fn credits(&self) -> Result<Credits> {
        self.post("credits", &json!({})).await
    }

    /// Which of `codes` the API knows (`coins/map`; unknown codes are simply absent).
    pub async fn known_codes(&self, codes: &[String]) -> Result<Vec<String>> {
        let mut known = Vec::new();
        for chunk in codes.chunks(MAP_CHUNK) {
            let body = json!({
                "currency": "USD", "codes": chunk, "sort": "rank", "order": "ascending",
                "offset": 0, "limit": 0, "meta": false
            });
            let coins: Vec<MapCoin> = self.post("coins/map", &body).await?;
            known.extend(coins.into_iter().map(|c| c.code.to_ascii_uppercase()));
        }
        Ok(known)
    }

    /// Requests needed by [`Client::known_codes`] for `n` codes.
    pub fn map_requests(n: usize) -> u64 {
        n.div_ceil(MAP_CHUNK) as u64
    }

    /// Price observations of `code` between `start` and `end` (ms), as the API returns them.
    pub async fn history(&self, code: &str, start: i64, end: i64) -> Result<HistoryWindow> {
        let body =
            json!({"currency": "USD", "code": code, "start": start, "end": end, "meta": false});
        let h: History = self.post("coins/single/history", &body).await?;
        let mut out = HistoryWindow::default();
        for p in h.history {
            match p.rate {
                Some(rate) if rate.is_finite() && rate > 0.0 => {
                    out.observations.push(Observation {
                        ts: p.date,
                        rate,
                        volume: p.volume.filter(|v| v.is_finite() && *v >= 0.0),
                        cap: p.cap.filter(|v| v.is_finite() && *v >= 0.0),
                    })
                }
                _ => out.skipped += 1,
            }
        }
        Ok(out)
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/{endpoint}", self.opts.base.trim_end_matches('/'))
    }

    /// Waits until `request_interval` has passed since the previous request.
    async fn pace(&self) {
        let mut last = self.last_request.lock().await;
        if let Some(prev) = *last {
            tokio::time::sleep_until(prev + self.opts.request_interval).await;
        }
        *last = Some(Instant::now());
    }

    /// One POST with retries; decodes a 200 body as `T`.
    async fn post<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &serde_json::Value,
    ) -> Result<T> {
        let url = self.url(endpoint);
        let target = url.as_str();
        let outcome = retry::retry_notify(
            &self.opts.retry_policy(),
            |a: &Attempt| match a {
                Attempt::Fail(_) => Verdict::Permanent,
                // A server asking for a longer wait than we accept is treated as down.
                Attempt::Retry {
                    retry_after: Some(d),
                    ..
                } if *d > MAX_RETRY_AFTER => Verdict::Permanent,
                Attempt::Retry {
                    retry_after: Some(d),
                    ..
                } => Verdict::RetryAfter(*d),
                Attempt::Retry { .. } => Verdict::Transient,
            },
            |a, r| {
                self.retries.fetch_add(1, Ordering::Relaxed);
                let why = match a {
                    Attempt::Retry { why, .. } => why.as_str(),
                    Attempt::Fail(_) => "failed",
                };
                tracing::warn!(
                    endpoint,
                    attempt = r.attempt,
                    of = r.of,
                    delay_ms = r.delay.as_millis() as u64,
                    "{why}; retrying"
                );
            },
            move |_| async move {
                self.pace().await;
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.attempt(target, body).await
            },
        )
        .await;
        match outcome {
            Ok(v) => Ok(v),
            Err(Failure {
                error: Attempt::Fail(e),
                ..
            }) => Err(e),
            Err(Failure {
                error: Attempt::Retry { why, retry_after },
                attempts,
                exhausted,
            }) => {
                let last = match retry_after {
                    Some(d) if !exhausted => {
                        format!("{why}; Retry-After {}s is longer than we wait", d.as_secs())
                    }
                    _ => why,
                };
                Err(ExtractError::GaveUp {
                    endpoint: url,
                    attempts,
                    last,
                })
            }
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> std::result::Result<T, Attempt> {
        let sent = self
            .http
            .post(url)
            .header("x-api-key", self.key.expose_secret())
            .json(body)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            // Timeouts and connection failures are transient from where we stand; the error
            // text names the URL only (the key is a header and never part of it).
            Err(e) => {
                return Err(Attempt::Retry {
                    why: transport_error(&e),
                    retry_after: None,
                });
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(parse_retry_after);
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Err(Attempt::Retry {
                    why: transport_error(&e),
                    retry_after: None,
                });
            }
        };
        if status.is_success() {
            return serde_json::from_slice::<T>(&bytes).map_err(|e| {
                Attempt::Fail(ExtractError::Malformed {
                    endpoint: url.to_string(),
                    reason: format!(
                        "{e} (body starts: {})",
                        without_key(snippet(&bytes), self.key.expose_secret())
                    ),
                })
            });
        }
        let message = without_key(error_message(&bytes), self.key.expose_secret());
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(Attempt::Fail(ExtractError::Unauthorized {
                    endpoint: url.to_string(),
                    status: status.as_u16(),
                    message,
                }))
            }
            StatusCode::TOO_MANY_REQUESTS => Err(Attempt::Retry {
                why: format!("HTTP 429 ({message})"),
                retry_after,
            }),
            s if s.is_server_error() => Err(Attempt::Retry {
                why: format!("HTTP {} ({message})", s.as_u16()),
                retry_after,
            }),
            s => Err(Attempt::Fail(ExtractError::Rejected {
                endpoint: url.to_string(),
                status: s.as_u16(),
                message,
            })),
        }
    }
}

/// A transport error as one line: what kind of failure, then the error and its causes.
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    format!("{kind}: {}", rps_core::error::chain(e))
}

/// `Retry-After`: delta-seconds or an HTTP date.
fn parse_retry_after(v: &reqwest::header::HeaderValue) -> Option<Duration> {
    let s = v.to_str().ok()?.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(s).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The API's error description (`{"error":{"code":..,"status":..,"description":..}}`) or the
/// start of the body, at most 120 characters either way.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        let e = v.get("error").unwrap_or(&v);
        for k in ["description", "message", "status"] {
            if let Some(s) = e.get(k).and_then(|s| s.as_str()) {
                return clip(s);
            }
        }
    }
    let s = snippet(body);
    if s.is_empty() { "empty body".into() } else { s }
}

/// `text` with every occurrence of the API key masked: an upstream (or a proxy) that echoes
/// the request headers must not put the key into our errors and logs.
fn without_key(text: String, key: &str) -> String {
    if key.len() < 4 || !text.contains(key) {
        return text;
    }
    text.replace(key, rps_core::redact::MASK)
}

fn snippet(body: &[u8]) -> String {
    clip(&String::from_utf8_lossy(body))
}

fn clip(s: &str) -> String {
    rps_core::redact::clip(s, 120)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let opts = ClientOptions {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(1_000),
            ..ClientOptions::default()
        };
        let policy = opts.retry_policy();
        assert_eq!(policy.max_attempts(), opts.max_retries + 1);
        for n in 0..8 {
            let full = (100u64 << n).min(1_000);
            let d = policy.delay(n + 1).as_millis() as u64;
            assert!(
                (full / 2..=full).contains(&d),
                "retry {n}: {d} ms not in {}..={full}",
                full / 2
            );
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let v = reqwest::header::HeaderValue::from_static("7");
        assert_eq!(parse_retry_after(&v), Some(Duration::from_secs(7)));
        let past = reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
    }

    #[test]
    fn an_echoed_api_key_is_masked_and_a_long_description_clipped() {
        let body = br#"{"error":{"description":"bad key k-9f8e7d6c5b4a for this plan"}}"#;
        let m = without_key(error_message(body), "k-9f8e7d6c5b4a");
        assert_eq!(m, "bad key *** for this plan");
        let long = format!(r#"{{"error":{{"description":"{}"}}}}"#, "x".repeat(5000));
        let m = error_message(long.as_bytes());
        assert!(m.len() < 160 && m.ends_with("bytes in total)"), "{m}");
    }

    #[test]
    fn the_api_error_description_is_preferred_over_the_raw_body() {
        let body = br#"{"error":{"code":429,"status":"Too Many Requests","description":"Daily credits exhausted"}}"#;
        assert_eq!(error_message(body), "Daily credits exhausted");
        assert_eq!(error_message(b"<html>oops</html>"), "<html>oops</html>");
    }

    #[test]
    fn the_key_does_not_appear_in_the_debug_output() {
        let c = Client::new(
            SecretString::from("sekrit-key-123"),
            ClientOptions::default(),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("sekrit-key-123"));
    }
}

/// Hour-aligned request windows of `window_hours` covering `[start, end)`. Windows sit on a
/// fixed grid (multiples of `window_hours` since the epoch) and are always requested whole,
/// because the API picks the spacing of its points from the requested range: the same hour
/// is then always fetched through the same window, so a backfill and later incremental runs
/// give the same bars for the same hours.
pub fn plan_windows(start: i64, end: i64, window_hours: i64) -> Vec<(i64, i64)> {
    let w = window_hours.max(1) * rps_core::time::HOUR_MS;
    let mut out = Vec::new();
    if start >= end {
        return out;
    }
    let mut ws = start.div_euclid(w) * w;
    while ws < end {
        out.push((ws, ws + w));
        ws += w;
    }
    out
}

#[cfg(test)]
mod window_tests {
    use super::*;
    use rps_core::time::HOUR_MS;

    #[test]
    fn windows_sit_on_a_fixed_grid_and_cover_the_range() {
        let day = 24 * HOUR_MS;
        let w = plan_windows(day + 5 * HOUR_MS, 3 * day + HOUR_MS, 24);
        assert_eq!(
            w,
            vec![(day, 2 * day), (2 * day, 3 * day), (3 * day, 4 * day)]
        );
        assert!(plan_windows(day, day, 24).is_empty());
        // An incremental run for one hour asks for the same window the backfill used.
        assert_eq!(
            plan_windows(2 * day + 13 * HOUR_MS, 2 * day + 14 * HOUR_MS, 24),
            vec![(2 * day, 3 * day)]
        );
    }
}
