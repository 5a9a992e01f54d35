//! The one retry policy of the workspace, used by the LiveCoinWatch client (rps-extract) and
//! the MLflow client (rps-mlflow): a bounded number of attempts, a delay that doubles from
//! `base` up to `cap`, and "equal jitter" (each sleep uniform in `[d/2, d]`) so that clients
//! which failed together do not retry in lock-step. What counts as transient (and whether a
//! server asked for a particular wait, as `Retry-After` does) is the caller's decision.

use std::future::Future;
use std::time::Duration;

/// How the delay between two attempts is spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly `base * 2^(n-1)`, capped (deterministic; for tests).
    None,
    /// A uniform point in the upper half of the capped delay (`[d/2, d]`).
    Equal,
}

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Total attempts including the first; 0 is taken as 1.
    pub attempts: u32,
    /// The delay before the first retry (before jitter).
    pub base: Duration,
    /// The longest delay (before jitter).
    pub cap: Duration,
    /// How the delay is spread.
    pub jitter: Jitter,
}

impl Policy {
    /// Total attempts, at least 1.
    pub fn max_attempts(&self) -> u32 {
        self.attempts.max(1)
    }

    /// The delay before retry number `retry` (1 = after the first failure) without jitter:
    /// `base * 2^(retry-1)`, capped at `cap`.
    pub fn full_delay(&self, retry: u32) -> Duration {
        let exp = retry.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.cap)
    }

    /// The delay before retry number `retry` (1 = after the first failure), jitter applied.
    pub fn delay(&self, retry: u32) -> Duration {
        let full = self.full_delay(retry);
        match self.jitter {
            Jitter::None => full,
            Jitter::Equal => {
                let half = full / 2;
                half + (full - half).mul_f64(rand::random_range(0.0..=1.0))
            }
        }
    }
}

/// What the caller's classifier says about a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Final: do not try again.
    Permanent,
    /// Try again after the policy's delay.
    Transient,
    /// Try again after this delay instead of the policy's (a server's `Retry-After`).
    RetryAfter(Duration),
}

impl From<bool> for Verdict {
    /// `true` (transient) is [`Verdict::Transient`], `false` is [`Verdict::Permanent`].
    fn from(transient: bool) -> Self {
        if transient {
            Verdict::Transient
        } else {
            Verdict::Permanent
        }
    }
}

/// Why [`retry`] stopped without a success: the last error and how many attempts were made.
#[derive(Debug)]
pub struct Failure<E> {
    /// The error of the last attempt.
    pub error: E,
    /// Attempts made, including the last.
    pub attempts: u32,
    /// `true` when every attempt failed transiently (the policy ran out); `false` when the
    /// last error was permanent.
    pub exhausted: bool,
}

/// One retry about to happen, as shown to the `on_retry` callback of [`retry_notify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retrying {
    /// The attempt that just failed (1-based).
    pub attempt: u32,
    /// Total attempts the policy allows.
    pub of: u32,
    /// The sleep before the next attempt.
    pub delay: Duration,
}

/// Runs `op` (given the 1-based attempt number) until it succeeds, fails permanently, or the
/// policy's attempts are used up, sleeping [`Policy::delay`] between attempts.
/// `is_transient` classifies each error: a `bool` or a [`Verdict`].
///
/// # Errors
/// The last error, with the attempt count, as a [`Failure`].
pub async fn retry<T, E, V, Fut>(
    policy: &Policy,
    is_transient: impl Fn(&E) -> V,
    op: impl FnMut(u32) -> Fut,
) -> Result<T, Failure<E>>
where
    V: Into<Verdict>,
    Fut: Future<Output = Result<T, E>>,
{
    retry_notify(policy, is_transient, |_, _| {}, op).await
}

/// [`retry`], calling `on_retry` with the error and the coming sleep before each retry (to
/// log it, or count it).
///
/// # Errors
/// The last error, with the attempt count, as a [`Failure`].
pub async fn retry_notify<T, E, V, Fut>(
    policy: &Policy,
    is_transient: impl Fn(&E) -> V,
    mut on_retry: impl FnMut(&E, Retrying),
    mut op: impl FnMut(u32) -> Fut,
) -> Result<T, Failure<E>>
where
    V: Into<Verdict>,
    Fut: Future<Output = Result<T, E>>,
{
    let of = policy.max_attempts();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match op(attempt).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let delay = match is_transient(&error).into() {
            Verdict::Permanent => {
                return Err(Failure {
                    error,
                    attempts: attempt,
                    exhausted: false,
                });
            }
            _ if attempt >= of => {
                return Err(Failure {
                    error,
                    attempts: attempt,
                    exhausted: true,
                });
            }
            Verdict::Transient => policy.delay(attempt),
            Verdict::RetryAfter(d) => d,
        };
        on_retry(&error, Retrying { attempt, of, delay });
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(attempts: u32, jitter: Jitter) -> Policy {
        Policy {
            attempts,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(1_000),
            jitter,
        }
    }

    #[test]
    fn the_delay_doubles_up_to_the_cap() {
        let p = policy(5, Jitter::None);
        let ms: Vec<u128> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1_000, 1_000]);
        assert_eq!(p.delay(u32::MAX), Duration::from_millis(1_000));
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half() {
        let p = policy(5, Jitter::Equal);
        for n in 1..40 {
            let full = p.full_delay(n);
            for _ in 0..20 {
                let d = p.delay(n);
                assert!(d >= full / 2 && d <= full, "retry {n}: {d:?} vs {full:?}");
            }
        }
    }

    #[test]
    fn zero_attempts_means_one() {
        assert_eq!(policy(0, Jitter::None).max_attempts(), 1);
    }

    fn zero(attempts: u32) -> Policy {
        Policy {
            attempts,
            base: Duration::ZERO,
            cap: Duration::ZERO,
            jitter: Jitter::Equal,
        }
    }

    #[tokio::test]
    async fn transient_errors_are_retried_until_the_attempts_run_out() {
        let mut seen = Vec::new();
        let r: Result<(), _> = retry_notify(
            &zero(3),
            |_: &&str| true,
            |_, r| seen.push((r.attempt, r.of)),
            |n| async move { Err(if n == 3 { "last" } else { "busy" }) },
        )
        .await;
        let f = r.unwrap_err();
        assert_eq!((f.error, f.attempts, f.exhausted), ("last", 3, true));
        assert_eq!(seen, [(1, 3), (2, 3)]);
    }

    #[tokio::test]
    async fn a_permanent_error_stops_at_once_and_a_success_is_returned() {
        let f = retry(
            &zero(5),
            |e: &&str| *e == "busy",
            |n| async move { Err::<(), _>(if n < 2 { "busy" } else { "bad" }) },
        )
        .await
        .unwrap_err();
        assert_eq!((f.error, f.attempts, f.exhausted), ("bad", 2, false));
        let ok = retry(
            &zero(5),
            |_: &&str| true,
            |n| async move { if n < 4 { Err("busy") } else { Ok(n) } },
        )
        .await
        .unwrap();
        assert_eq!(ok, 4);
    }

    #[tokio::test]
    async fn a_requested_wait_replaces_the_policy_delay() {
        let mut delays = Vec::new();
        let _ = retry_notify(
            &policy(3, Jitter::None),
            |_: &()| Verdict::RetryAfter(Duration::from_millis(1)),
            |_, r| delays.push(r.delay),
            |_| async { Err::<(), ()>(()) },
        )
        .await;
        assert_eq!(delays, [Duration::from_millis(1); 2]);
    }
}
