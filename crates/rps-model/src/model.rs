//! The model abstraction. A *kind* of forecaster (the LSTM is the first) is a type of trained
//! weights implementing [`ModelKind`]: how to train it, predict with it (batched windows for
//! evaluation, one window at serving time) and store it in a package. Everything else —
//! training orchestration, calibration, the promotion gate, the package format, the
//! [`crate::Forecaster`] and walk-forward evaluation — works on the kind-erased [`Model`] and
//! finds a kind by name in [`crate::kinds::KINDS`].

use std::any::Any;
use std::fmt::Debug;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use crate::Result;
use crate::fit::{EpochStats, FitConfig, FitOutcome, Windows};
use crate::package::ModelMetadata;

/// A kind of model: the type of its trained weights and what can be done with them.
///
/// Inputs are standardised windows (`lookback × inputs` values, row-major, oldest row first)
/// and outputs standardised next-hour log returns; the package's scaler maps both ways.
pub trait ModelKind: Clone + PartialEq + Debug + Send + Sync + Sized + 'static {
    /// The kind's name: `kind` in `metadata.json`, the `model_kind` run parameter and the
    /// MLflow flavor `rps_<NAME>`.
    const NAME: &'static str;

    /// The weights laid out for the batch-1 serving path, built once per loaded model.
    type Serving: Debug + Send + Sync + 'static;

    /// Trains from seeded initial weights on the windows ending at `train`, keeping the best
    /// epoch on `val` (the contract of [`crate::fit()`], which has already checked the
    /// windows and that both splits are non-empty).
    fn fit(
        data: &Windows<'_>,
        train: &[usize],
        val: &[usize],
        cfg: &FitConfig,
        on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
    ) -> Result<FitOutcome<Self>>;

    /// Standardised predictions for the windows ending at `ends` (checked to fit `data`).
    fn predict_windows(&self, data: &Windows<'_>, ends: &[usize]) -> Result<Vec<f32>>;

    /// The serving form of these weights.
    fn serving(&self) -> Self::Serving;

    /// The serve-time single forecast: the standardised prediction for one standardised
    /// window.
    fn forecast(serving: &Self::Serving, window: &[f32]) -> f32;

    /// Writes the weights file of a package (`path` is its `model.safetensors`).
    fn save(&self, path: &Path) -> Result<()>;

    /// Reads the weights file of a package described by `meta`.
    fn load(path: &Path, meta: &ModelMetadata) -> Result<Self>;

    /// Why these weights cannot run as the package `meta` describes (a shape that does not
    /// match, non-finite values), or `None` when they can.
    fn check(&self, meta: &ModelMetadata) -> Option<String>;
}

/// The object-safe face of a [`ModelKind`], so a package can hold weights of any kind.
trait DynModel: Debug + Send + Sync {
    fn kind(&self) -> &'static str;
    fn predict_windows(&self, data: &Windows<'_>, ends: &[usize]) -> Result<Vec<f32>>;
    fn serving(&self) -> Serving;
    fn save(&self, path: &Path) -> Result<()>;
    fn check(&self, meta: &ModelMetadata) -> Option<String>;
    fn clone_box(&self) -> Box<dyn DynModel>;
    fn as_any(&self) -> &dyn Any;
    fn eq_dyn(&self, other: &dyn DynModel) -> bool;
}

impl<K: ModelKind> DynModel for K {
    fn kind(&self) -> &'static str {
        K::NAME
    }
    fn predict_windows(&self, data: &Windows<'_>, ends: &[usize]) -> Result<Vec<f32>> {
        ModelKind::predict_windows(self, data, ends)
    }
    fn serving(&self) -> Serving {
        Serving(Arc::new(ServingOf::<K>(ModelKind::serving(self))))
    }
    fn save(&self, path: &Path) -> Result<()> {
        ModelKind::save(self, path)
    }
    fn check(&self, meta: &ModelMetadata) -> Option<String> {
        ModelKind::check(self, meta)
    }
    fn clone_box(&self) -> Box<dyn DynModel> {
        Box::new(self.clone())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn eq_dyn(&self, other: &dyn DynModel) -> bool {
        other.as_any().downcast_ref::<K>() == Some(self)
    }
}

/// Trained weights of any kind: what training returns and a package holds.
#[derive(Debug)]
pub struct Model(Box<dyn DynModel>);

impl Model {
    /// Wraps a kind's trained weights.
    pub fn new<K: ModelKind>(weights: K) -> Model {
        Model(Box::new(weights))
    }

    /// The kind's name ([`ModelKind::NAME`]).
    pub fn kind(&self) -> &'static str {
        self.0.kind()
    }

    /// The weights as their kind's own type, if they are of kind `K`.
    pub fn downcast_ref<K: ModelKind>(&self) -> Option<&K> {
        self.0.as_any().downcast_ref::<K>()
    }

    /// See [`crate::predict_windows`] (which checks `ends` first).
    pub(crate) fn predict_windows(&self, data: &Windows<'_>, ends: &[usize]) -> Result<Vec<f32>> {
        self.0.predict_windows(data, ends)
    }

    /// The serving form (built once per loaded model).
    pub(crate) fn serving(&self) -> Serving {
        self.0.serving()
    }

    /// Writes the weights file (`path` is the package's `model.safetensors`).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.0.save(path)
    }

    /// See [`ModelKind::check`].
    pub fn check(&self, meta: &ModelMetadata) -> Option<String> {
        self.0.check(meta)
    }
}

impl Clone for Model {
    fn clone(&self) -> Self {
        Model(self.0.clone_box())
    }
}

/// Equal when of the same kind with equal weights.
impl PartialEq for Model {
    fn eq(&self, other: &Model) -> bool {
        self.0.eq_dyn(&*other.0)
    }
}

impl<K: ModelKind> From<K> for Model {
    fn from(weights: K) -> Model {
        Model::new(weights)
    }
}

/// The object-safe face of a kind's serving form.
trait DynServing: Debug + Send + Sync {
    fn forecast(&self, window: &[f32]) -> f32;
}

#[derive(Debug)]
struct ServingOf<K: ModelKind>(K::Serving);

impl<K: ModelKind> DynServing for ServingOf<K> {
    fn forecast(&self, window: &[f32]) -> f32 {
        K::forecast(&self.0, window)
    }
}

/// A model's serving form, shared by the clones of a [`crate::Forecaster`].
#[derive(Debug, Clone)]
pub(crate) struct Serving(Arc<dyn DynServing>);

impl Serving {
    /// The standardised prediction for one standardised window.
    pub(crate) fn forecast(&self, window: &[f32]) -> f32 {
        self.0.forecast(window)
    }
}

type FitFn = fn(
    &Windows<'_>,
    &[usize],
    &[usize],
    &FitConfig,
    &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<FitOutcome>;
type LoadFn = fn(&Path, &ModelMetadata) -> Result<Model>;

/// A registered kind: its name and how to train or load one, kind-erased. Built by
/// [`Kind::of`] in the table [`crate::kinds::KINDS`].
#[derive(Clone, Copy)]
pub struct Kind {
    /// The kind's name ([`ModelKind::NAME`]), as written to `metadata.json`'s `kind`.
    pub name: &'static str,
    fit: FitFn,
    load: LoadFn,
}

impl Debug for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kind").field("name", &self.name).finish()
    }
}

impl Kind {
    /// The registry entry of kind `K`.
    pub const fn of<K: ModelKind>() -> Kind {
        Kind {
            name: K::NAME,
            fit: fit_as_model::<K>,
            load: load_as_model::<K>,
        }
    }

    /// [`ModelKind::fit`] of this kind.
    pub fn fit(
        &self,
        data: &Windows<'_>,
        train: &[usize],
        val: &[usize],
        cfg: &FitConfig,
        on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
    ) -> Result<FitOutcome> {
        (self.fit)(data, train, val, cfg, on_epoch)
    }

    /// [`ModelKind::load`] of this kind.
    pub fn load(&self, path: &Path, meta: &ModelMetadata) -> Result<Model> {
        (self.load)(path, meta)
    }
}

fn fit_as_model<K: ModelKind>(
    data: &Windows<'_>,
    train: &[usize],
    val: &[usize],
    cfg: &FitConfig,
    on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<FitOutcome> {
    Ok(K::fit(data, train, val, cfg, on_epoch)?.map_weights(Model::new))
}

fn load_as_model<K: ModelKind>(path: &Path, meta: &ModelMetadata) -> Result<Model> {
    Ok(Model::new(K::load(path, meta)?))
}
