//! Hot model reload: the served model behind an atomic swap, the source polled for a new one
//! (alias or directory), and the refusal of packages that do not load (corrupt, feature-spec
//! mismatch), remembered so a bad package is not fetched again and again.

use std::sync::{Arc, Mutex, RwLock};

use rps_mlflow::source::{ModelSource, SourceError};

use super::{AppState, ForecastError, lock};
use crate::model::LoadedModel;

/// What a hot-reload poll did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The source still points at the served model (or at one already refused).
    Unchanged,
    /// A new model is now served.
    Swapped {
        /// The version now served.
        version: String,
    },
    /// The new model was refused; the old one keeps serving.
    Failed {
        /// Why the new model was refused.
        reason: String,
    },
    /// No model has been promoted yet (the alias points nowhere): the normal wait before the
    /// first model, polled at the regular interval.
    Waiting,
    /// The source could not be asked or the new model not downloaded (registry down,
    /// directory unreadable): counted as a failed reload and retried with backoff.
    ProbeFailed {
        /// What failed.
        reason: String,
    },
}

/// The served model and where new ones come from.
#[derive(Debug)]
pub(super) struct ModelSlot {
    /// `None` until the first model loads (the server starts before a champion exists).
    current: RwLock<Option<Arc<LoadedModel>>>,
    source: ModelSource,
    /// The key of the last package refused, not fetched again until the source moves.
    refused_key: Mutex<Option<String>>,
    reload_lock: tokio::sync::Mutex<()>,
}

impl ModelSlot {
    pub(super) fn new(model: Option<LoadedModel>, source: ModelSource) -> Self {
        ModelSlot {
            current: RwLock::new(model.map(Arc::new)),
            source,
            refused_key: Mutex::new(None),
            reload_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn current(&self) -> Option<Arc<LoadedModel>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(super) fn source(&self) -> &ModelSource {
        &self.source
    }
}

impl AppState {
    /// The model serving right now, if one has loaded (a request keeps using the one it
    /// started with).
    pub fn current_model(&self) -> Option<Arc<LoadedModel>> {
        self.inner.models.current()
    }

    /// The model serving right now, or [`ForecastError::NoModel`] while none has loaded.
    pub fn model(&self) -> Result<Arc<LoadedModel>, ForecastError> {
        self.current_model().ok_or_else(|| self.no_model())
    }

    /// The error of requests that need a model before the first one has loaded.
    pub fn no_model(&self) -> ForecastError {
        ForecastError::NoModel {
            poll: self.settings().model_poll_interval,
        }
    }

    /// Where models come from.
    pub fn source(&self) -> &ModelSource {
        self.inner.models.source()
    }

    /// Asks the source whether it points at a new model; if so loads it in the background and
    /// swaps it in atomically. A package that fails to load (corrupt, feature-spec mismatch)
    /// is refused, counted, remembered (not retried until the source changes again), and the
    /// old model keeps serving.
    pub async fn reload_once(&self) -> ReloadOutcome {
        let slot = &self.inner.models;
        let _one_at_a_time = slot.reload_lock.lock().await;
        let cand = match self.source().probe().await {
            Ok(c) => c,
            Err(e) => {
                // Before the first model, an alias that points nowhere is the normal wait.
                // Once a model serves, a registry that vanished or fails is an incident: it
                // is logged as a warning and counted as a failed reload (the reload alert).
                let waiting =
                    matches!(e, SourceError::NoAlias { .. }) && self.current_model().is_none();
                if waiting {
                    tracing::debug!(error = %e, "no model to serve yet");
                    return ReloadOutcome::Waiting;
                }
                self.metrics().observe_reload(false);
                if self.current_model().is_some() {
                    tracing::warn!(error = %e, "checking for a new model failed; the current model keeps serving");
                } else {
                    tracing::warn!(error = %e, "checking for the first model failed; /ready stays 503 and the source is retried");
                }
                return ReloadOutcome::ProbeFailed {
                    reason: e.to_string(),
                };
            }
        };
        if self.current_model().is_some_and(|m| m.key == cand.key) {
            return ReloadOutcome::Unchanged;
        }
        if lock(&slot.refused_key).as_deref() == Some(cand.key.as_str()) {
            return ReloadOutcome::Unchanged;
        }
        match LoadedModel::fetch(self.source(), &cand, self.store()).await {
            Ok(model) => {
                let version = model.version.clone();
                self.install(model);
                tracing::info!(version, source = %self.source().describe(), "serving a new model");
                ReloadOutcome::Swapped { version }
            }
            Err(e) if e.exit_code() == rps_core::ExitCode::External => {
                // The registry failed mid-download: not the package's fault, so it is not
                // refused but fetched again at the next poll.
                self.metrics().observe_reload(false);
                tracing::warn!(error = %e, "downloading the new model failed; retried at the next poll");
                ReloadOutcome::ProbeFailed {
                    reason: e.to_string(),
                }
            }
            Err(e) => {
                self.metrics().observe_reload(false);
                *lock(&slot.refused_key) = Some(cand.key.clone());
                tracing::warn!(error = %e, "refused a new model; the old one keeps serving");
                ReloadOutcome::Failed {
                    reason: e.to_string(),
                }
            }
        }
    }

    /// Swaps in a new model with its calibrator states: requests in flight finish with the
    /// old `Arc`, new ones get the new model; cached forecasts are keyed by model and so
    /// recompute on next use; the calibration gauges switch to the new model's states.
    pub fn install(&self, model: LoadedModel) {
        self.metrics().set_model_info(model.info_labels());
        let model = Arc::new(model);
        *self
            .inner
            .models
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(model.clone());
        self.publish_calibration(&model, None);
        self.inner.monitoring.on_new_model(self.metrics());
        self.metrics().observe_reload(true);
    }
}
