//! The accept loop: one HTTP/1.1 connection per task, with the limits a server facing
//! untrusted clients needs and `axum::serve` does not set:
//!
//! - a **header timeout**: a client that does not send a whole request head within
//!   [`Settings::header_timeout`] is disconnected, and so is a kept-alive connection idle for
//!   that long between requests (hyper's header-read timer restarts after each response);
//! - a **connection cap**: beyond [`Settings::max_connections`] open connections a new one gets
//!   `503 {"error": "overloaded"}` and is closed, so the process never runs out of file
//!   descriptors (`accept` failing with EMFILE would stall `/health` too);
//! - a **bounded shutdown**: on stop, no new connections are accepted, idle ones close, and
//!   requests in flight get [`Settings::shutdown_grace`] to finish before their connections
//!   are dropped.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::error::{ApiError, ErrorCode};
use crate::metrics::Metrics;
use crate::state::Settings;

/// hyper's own limit on a request head, above the JSON-answering [`Settings::max_header_bytes`]
/// check of the router: heads between the two get a JSON 431, larger ones hyper's bare 431.
fn hard_header_limit(s: &Settings) -> usize {
    (s.max_header_bytes + s.max_uri_bytes).max(8 << 10) * 4
}

/// Serves `app` on `listener` until `stop` completes; returns once every connection closed
/// or the grace period ran out.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &Settings,
    metrics: &Metrics,
    stop: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let (closing, closing_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_header_size(hard_header_limit(settings))
        .max_headers(256);
    let mut tasks = JoinSet::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // EMFILE/ENFILE and the like: the connection stays queued; back off
                    // instead of spinning on the error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics.connections_shed.inc();
            tasks.spawn(shed(stream));
            continue;
        };
        metrics.open_connections.inc();
        let open = metrics.open_connections.clone();
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let mut closing = closing_rx.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => log_end(r),
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    log_end(conn.await);
                }
            }
            open.dec();
        });
    }
    drop(listener);
    let _ = closing.send(true);
    let open = tasks.len();
    let drained = tokio::time::timeout(settings.shutdown_grace, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = tasks.len(),
            of = open,
            grace = ?settings.shutdown_grace,
            "shutdown grace period over: closing the connections still open"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

fn log_end(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        // Timeouts and clients that hang up are routine; nothing a user must act on.
        tracing::debug!(error = %e, "connection ended");
    }
}

/// Answers a connection over the cap with a JSON 503 and closes it.
async fn shed(mut stream: TcpStream) {
    let body = serde_json::to_string(
        &ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Overloaded,
            "the server is at its connection limit (--max-connections); retry shortly",
        )
        .body(),
    )
    .unwrap_or_default();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\
         x-content-type-options: nosniff\r\ncache-control: no-store\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        // Read what the client already sent: closing with unread data makes the kernel
        // reset the connection, and the client would see the reset, not the 503.
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
}
