//! The server's runtime knobs ([`Settings`]) and the [`Token`] `/feedback` requires.

use std::time::Duration;

/// Runtime knobs of the server.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PSI above which a feature counts as drifted (raised per feature by the package's
    /// calibration, see [`rps_monitor::drift::DriftRule`]).
    pub psi_threshold: f64,
    /// Share of features that must drift for the data-drift verdict.
    pub drift_share: f64,
    /// Recent distinct input rows kept for PSI.
    pub drift_window: usize,
    /// Rows needed before PSI is reported.
    pub drift_min_rows: usize,
    /// Page-Hinkley tolerance δ (in error-scale units).
    pub ph_delta: f64,
    /// Page-Hinkley alarm threshold λ.
    pub ph_lambda: f64,
    /// Realised errors before Page-Hinkley may alarm.
    pub ph_min_samples: u64,
    /// How often the alias (or model directory) is checked for a new model.
    pub model_poll_interval: Duration,
    /// How often the store is checked for new bars.
    pub store_poll_interval: Duration,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time limit for a whole request.
    pub request_timeout: Duration,
    /// Most requests in one batch.
    pub max_batch: usize,
    /// The bearer token `/feedback` requires; `None` turns the route off (403). Realised
    /// closes feed the concept-drift detector, so only a caller holding it may send them.
    pub feedback_token: Option<Token>,
    /// Time a client has to send a request's headers, and the longest a kept-alive
    /// connection may sit idle between requests.
    pub header_timeout: Duration,
    /// Most connections served at once; beyond, new connections get a 503 and are closed.
    pub max_connections: usize,
    /// Longest a shutdown waits for requests in flight before closing their connections.
    pub shutdown_grace: Duration,
    /// Longest accepted request URI (path and query), in bytes (414 beyond).
    pub max_uri_bytes: usize,
    /// Largest accepted request head (all header names and values), in bytes (431 beyond).
    pub max_header_bytes: usize,
}

/// A secret that never shows in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a secret; an empty one is no token.
    pub fn new(s: impl Into<String>) -> Option<Token> {
        let s = s.into();
        (!s.trim().is_empty()).then(|| Token(s.trim().to_string()))
    }

    /// Whether `given` is the token, compared in time independent of where they differ.
    pub fn matches(&self, given: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(rps_core::redact::MASK)
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            psi_threshold: 0.2,
            drift_share: 0.5,
            drift_window: 1_000,
            drift_min_rows: 100,
            ph_delta: 0.1,
            ph_lambda: 25.0,
            ph_min_samples: 30,
            model_poll_interval: Duration::from_secs(30),
            store_poll_interval: Duration::from_secs(60),
            max_body_bytes: 1 << 20,
            request_timeout: Duration::from_secs(10),
            max_batch: 64,
            feedback_token: None,
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
            shutdown_grace: Duration::from_secs(10),
            max_uri_bytes: 8 << 10,
            max_header_bytes: 16 << 10,
        }
    }
}

impl Settings {
    /// The data-drift rule of these settings.
    pub fn drift_rule(&self) -> rps_monitor::drift::DriftRule {
        rps_monitor::drift::DriftRule {
            threshold: self.psi_threshold,
            share: self.drift_share,
        }
    }
}
