//! SIGTERM and SIGINT during training (Airflow stopping a task, Ctrl-C): the open run is
//! tagged `rps.error` = `interrupted by SIGTERM` (or `SIGINT`) and ended KILLED, then the
//! process exits [`EXIT_SIGTERM`] (143) or [`EXIT_SIGINT`] (130), the shell's 128 + signal
//! number, which is what Airflow reports for a task it stopped.
//!
//! Training is CPU-bound and blocks the thread it runs on, so the signal is not awaited
//! next to it: [`run`] registers the handlers and spawns a watcher task on the (multi-thread)
//! runtime, which ends the run `OpenRun` holds and exits the process. Nothing is left
//! half-written by that exit: rps-train writes files through a temp file renamed into place
//! (`rps_core::fs`) and packages through a staging directory renamed into place
//! (`ModelPackage::save`), and the next run removes what a killed one left behind.

use std::sync::Arc;
use std::time::Duration;

use rps_mlflow::{ERROR_TAG, Registry, RunHandle, RunStatus};
use tokio::sync::{Mutex, MutexGuard};
use tracing::warn;

use crate::{Config, Summary, TrainError};

/// Exit code after SIGINT (128 + 2).
pub const EXIT_SIGINT: u8 = 130;
/// Exit code after SIGTERM (128 + 15).
pub const EXIT_SIGTERM: u8 = 143;
/// How long the watcher tries to end the run before it exits anyway. A run it could not end
/// (MLflow down) stays RUNNING until the next rps-train on this host closes it as orphaned.
/// Airflow waits 60 s (`killed_task_cleanup_time`) before its SIGKILL.
pub const GRACE: Duration = Duration::from_secs(10);

/// The run being tracked, shared by the training and the signal watcher. Whoever takes it
/// ends it: the training when it is done ([`OpenRun::claim`]), or the watcher on a signal.
#[derive(Debug, Clone, Default)]
pub(crate) struct OpenRun(Arc<Mutex<Option<Open>>>);

/// A run and the registry it lives in.
#[derive(Debug)]
pub(crate) struct Open {
    registry: Registry,
    run: RunHandle,
}

impl OpenRun {
    /// Publishes the run that has just started.
    pub(crate) async fn set(&self, registry: &Registry, run: &RunHandle) {
        *self.0.lock().await = Some(Open {
            registry: registry.clone(),
            run: run.clone(),
        });
    }

    /// Takes the run in order to end it. The guard keeps a signal waiting until it is
    /// dropped, i.e. until the run has ended; `None` when the watcher took the run.
    pub(crate) async fn claim(&self) -> Option<MutexGuard<'_, Option<Open>>> {
        let mut guard = self.0.lock().await;
        guard.take().map(|_| guard)
    }
}

/// [`crate::run`] with SIGTERM and SIGINT handled as described in the module docs. Call it
/// on a multi-thread runtime (on a current-thread one the watcher only runs when the
/// training yields).
pub async fn run(cfg: &Config) -> Result<Summary, TrainError> {
    // Registered before anything else, so a signal from here on is ours, never the
    // default action.
    let signals = Signals::install().map_err(TrainError::Signal)?;
    let open = OpenRun::default();
    tokio::spawn(watch(signals, open.clone()));
    crate::run_in(cfg, &open).await
}

/// Waits for the first signal, ends the open run KILLED (within [`GRACE`]; a second signal
/// cuts that short) and exits the process with the signal's code.
async fn watch(mut signals: Signals, open: OpenRun) {
    let (name, code) = signals.next().await;
    warn!(
        signal = name,
        exit_code = code,
        "interrupted: ending the open run KILLED"
    );
    tokio::select! {
        done = tokio::time::timeout(GRACE, end_killed(&open, name)) => {
            if done.is_err() {
                warn!(grace_seconds = GRACE.as_secs(), "the run could not be ended in time; the next rps-train on this host closes it");
            }
        }
        (again, _) = signals.next() => warn!(signal = again, "second signal: exiting without waiting"),
    }
    std::process::exit(i32::from(code));
}

async fn end_killed(open: &OpenRun, signal: &str) {
    // Waits while the training is ending the run itself; then there is nothing to end.
    let mut slot = open.0.lock().await;
    let Some(Open { registry, run }) = slot.take() else {
        return;
    };
    let reason = format!("interrupted by {signal}");
    if let Err(e) = registry
        .set_tags(&run, &[(ERROR_TAG.to_string(), reason)])
        .await
    {
        warn!(run_id = %run.run_id, error = %e, "could not tag the interrupted run");
    }
    match registry.end_run(&run, RunStatus::Killed).await {
        Ok(()) => warn!(run_id = %run.run_id, signal, "run ended KILLED"),
        Err(e) => warn!(run_id = %run.run_id, error = %e, "could not mark the run KILLED"),
    }
}

/// The signals that stop a training run.
#[cfg(unix)]
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The next signal's name and exit code.
    async fn next(&mut self) -> (&'static str, u8) {
        tokio::select! {
            Some(()) = self.term.recv() => ("SIGTERM", EXIT_SIGTERM),
            Some(()) = self.int.recv() => ("SIGINT", EXIT_SIGINT),
            // Both streams closed: the runtime is going away, and no signal will come.
            else => std::future::pending().await,
        }
    }
}

/// Elsewhere only Ctrl-C exists.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals)
    }

    async fn next(&mut self) -> (&'static str, u8) {
        match tokio::signal::ctrl_c().await {
            Ok(()) => ("SIGINT", EXIT_SIGINT),
            Err(_) => std::future::pending().await,
        }
    }
}
