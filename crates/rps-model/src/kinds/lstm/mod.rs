//! The LSTM kind: one LSTM layer over the window, then a linear head (`net`), trained with a
//! fused, hand-written sequence op (`seq_op`) and AdamW (`train`), served through packed
//! SIMD kernels ([`net::InferenceWeights`]).

pub mod net;
pub mod seq_op;
mod train;

use std::ops::ControlFlow;
use std::path::Path;

pub use net::{InferenceWeights, LstmNet, LstmWeights, Scratch};

use crate::Result;
use crate::fit::{EpochStats, FitConfig, FitOutcome, Windows};
use crate::model::ModelKind;
use crate::package::ModelMetadata;

/// The kind's name in packages.
pub const NAME: &str = "lstm";

impl ModelKind for LstmWeights {
    const NAME: &'static str = NAME;
    type Serving = InferenceWeights;

    fn fit(
        data: &Windows<'_>,
        train: &[usize],
        val: &[usize],
        cfg: &FitConfig,
        on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
    ) -> Result<FitOutcome<Self>> {
        train::fit(data, train, val, cfg, on_epoch)
    }

    fn predict_windows(&self, data: &Windows<'_>, ends: &[usize]) -> Result<Vec<f32>> {
        train::predict_windows(self, data, ends)
    }

    fn serving(&self) -> InferenceWeights {
        InferenceWeights::new(self)
    }

    fn forecast(serving: &InferenceWeights, window: &[f32]) -> f32 {
        serving.predict(window, &mut Scratch::default())
    }

    fn save(&self, path: &Path) -> Result<()> {
        LstmWeights::save(self, path)
    }

    fn load(path: &Path, meta: &ModelMetadata) -> Result<Self> {
        LstmWeights::load(path, meta.inputs.len(), meta.hidden)
    }

    fn check(&self, meta: &ModelMetadata) -> Option<String> {
        if meta.hidden == 0 {
            return Some("the LSTM's hidden size must be > 0".into());
        }
        if self.inputs != meta.inputs.len() || self.hidden != meta.hidden {
            return Some("weights do not match the metadata's inputs/hidden size".into());
        }
        if !self.all_finite() {
            return Some("weights contain non-finite values".into());
        }
        None
    }
}
