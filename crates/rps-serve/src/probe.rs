//! `rps-serve probe`: one GET against a running server, for a container's HEALTHCHECK (the
//! image then needs no curl). Exits 0 on a 2xx answer within the timeout, else 4 with one
//! line saying what answered or failed.

use std::time::Duration;

use crate::error::{Result, ServeError};

/// GETs `url` and returns its status when it is 2xx.
///
/// # Errors
/// [`ServeError::Probe`] when the request fails or times out, or the answer is not 2xx.
pub async fn probe(url: &str, timeout: Duration) -> Result<u16> {
    let fail = |reason: String| ServeError::Probe {
        url: rps_core::redact::url(url),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(rps_core::error::chain(&e)))?;
    let status = resp.status();
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err(fail(format!("HTTP {status}")))
    }
}
