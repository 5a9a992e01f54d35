//! From stored feature frames to model-ready arrays: the candidate windows (consecutive
//! hours, known target), the chronological train / validation / calibration / test split,
//! standardisation fitted on the training rows only, and the data digest.

use rps_core::time::HOUR_MS;
use rps_features::{FeatureFrame, spec};
use rps_model::{MODEL_INPUTS, ReferenceHistogram, Scaler, reference_histograms};
use sha2::{Digest, Sha256};

use crate::TrainError;

/// One window: the `lookback` rows ending at `row` of frame `coin`, predicting the next hour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowRef {
    /// Index into [`Prepared::frames`].
    pub coin: usize,
    /// Row in that frame where the window ends.
    pub row: usize,
    /// Row in the stacked matrix.
    pub global: usize,
    /// Hour of the window's last row (ms UTC).
    pub ts: i64,
}

/// Split fractions (chronological; the test split is what remains).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SplitFractions {
    /// Share of the windows (the oldest) for training.
    pub train: f64,
    /// Share of the windows after those for validation (early stopping).
    pub val: f64,
    /// Share of the windows after those for conformal calibration.
    pub calib: f64,
}

impl SplitFractions {
    /// Share of the windows left for the test split (the newest).
    pub fn test(&self) -> f64 {
        1.0 - self.train - self.val - self.calib
    }
}

/// Window indices (into [`Prepared::windows`]) per split, each in time order.
#[derive(Debug, Clone, Default)]
pub struct Splits {
    /// Training windows (after `max_train_rows` dropped the oldest).
    pub train: Vec<usize>,
    /// Validation windows (early stopping).
    pub val: Vec<usize>,
    /// Conformal calibration windows.
    pub calib: Vec<usize>,
    /// Test windows (the newest).
    pub test: Vec<usize>,
}

/// Everything training and evaluation read.
#[derive(Debug)]
pub struct Prepared {
    /// The feature frames read, one per coin.
    pub frames: Vec<FeatureFrame>,
    /// Row offset of each frame in the stacked matrix.
    pub offsets: Vec<usize>,
    /// Column of each model input in the frames.
    pub columns: Vec<usize>,
    /// All candidate windows, sorted by (ts, coin).
    pub windows: Vec<WindowRef>,
    /// The chronological split of `windows`.
    pub splits: Splits,
    /// Training windows dropped by `max_train_rows` (the oldest).
    pub train_dropped: usize,
    /// Standardisation fitted on the training windows' rows.
    pub scaler: Scaler,
    /// Standardised inputs, stacked rows × inputs (non-finite → 0; never inside a window).
    pub x: Vec<f32>,
    /// Standardised target per stacked row (non-finite → 0; never at a window end).
    pub y: Vec<f32>,
    /// Training-split histograms of each model input, for drift detection.
    pub reference: Vec<ReferenceHistogram>,
    /// sha256 of the feature data, hex.
    pub digest: String,
}

impl Prepared {
    /// Global row indices of window ends for a split.
    pub fn ends(&self, idx: &[usize]) -> Vec<usize> {
        idx.iter().map(|&i| self.windows[i].global).collect()
    }

    /// Model inputs per row.
    pub fn n_inputs(&self) -> usize {
        self.columns.len()
    }

    /// First and last hour of the data read, and its row count.
    pub fn span(&self) -> (i64, i64, usize) {
        let start = self
            .frames
            .iter()
            .filter_map(|f| f.ts.first())
            .min()
            .copied()
            .unwrap_or(0);
        let end = self
            .frames
            .iter()
            .filter_map(|f| f.ts.last())
            .max()
            .copied()
            .unwrap_or(0);
        (start, end, self.frames.iter().map(|f| f.len()).sum())
    }
}

/// Builds windows, splits and standardised arrays from the frames (one per coin).
pub fn prepare(
    frames: Vec<FeatureFrame>,
    lookback: usize,
    fractions: SplitFractions,
    max_train_rows: Option<usize>,
) -> Result<Prepared, TrainError> {
    let sp = spec();
    let columns =
        MODEL_INPUTS
            .iter()
            .map(|n| {
                sp.index(n).ok_or_else(|| TrainError::Usage(format!(
                "model input '{n}' is not in feature spec {} (a bug: the inputs are derived from the spec)",
                sp.hash
            )))
            })
            .collect::<Result<Vec<_>, _>>()?;

    // Candidate windows per frame.
    let mut windows = Vec::new();
    let mut offsets = Vec::with_capacity(frames.len());
    let mut total = 0usize;
    for (c, f) in frames.iter().enumerate() {
        offsets.push(total);
        let n = f.len();
        let row_ok: Vec<bool> = (0..n)
            .map(|r| columns.iter().all(|&j| f.row(r)[j].is_finite()))
            .collect();
        // Length of the run of usable consecutive hours ending at each row.
        let mut run = 0usize;
        for (r, &ok) in row_ok.iter().enumerate() {
            let consecutive = r > 0 && f.ts[r] - f.ts[r - 1] == HOUR_MS;
            run = if !ok {
                0
            } else if consecutive {
                run + 1
            } else {
                1
            };
            let target_known =
                f.target_logret_1h[r].is_finite() && f.target_close_1h[r].is_finite();
            if run >= lookback && target_known && f.close[r] > 0.0 {
                windows.push(WindowRef {
                    coin: c,
                    row: r,
                    global: total + r,
                    ts: f.ts[r],
                });
            }
        }
        total += n;
    }
    windows.sort_by_key(|w| (w.ts, w.coin));
    let n = windows.len();
    let cut = |frac: f64| ((n as f64) * frac).round() as usize;
    let (a, b, c) = (
        cut(fractions.train),
        cut(fractions.train + fractions.val),
        cut(fractions.train + fractions.val + fractions.calib),
    );
    let mut splits = Splits {
        train: (0..a).collect(),
        val: (a..b).collect(),
        calib: (b..c).collect(),
        test: (c..n).collect(),
    };
    let mut train_dropped = 0;
    if let Some(max) = max_train_rows.filter(|&m| splits.train.len() > m) {
        train_dropped = splits.train.len() - max;
        splits.train.drain(..train_dropped);
    }
    let min = 8;
    for (name, s) in [
        ("training", &splits.train),
        ("validation", &splits.val),
        ("calibration", &splits.calib),
        ("test", &splits.test),
    ] {
        if s.len() < min {
            return Err(TrainError::TooFewWindows {
                split: name.into(),
                got: s.len(),
                need: min,
                windows: n,
                lookback,
            });
        }
    }

    let (scaler, train_cols, x, y) = standardise(
        &frames,
        &offsets,
        &columns,
        &windows,
        &splits.train,
        lookback,
    );
    let reference = reference_histograms(&MODEL_INPUTS, &train_cols, 10);
    let digest = digest(&frames);
    Ok(Prepared {
        frames,
        offsets,
        columns,
        windows,
        splits,
        train_dropped,
        scaler,
        x,
        y,
        reference,
        digest,
    })
}

/// Standardisation fitted on the rows of the `train` windows only, and the whole stacked
/// data standardised with it: `(scaler, training values per input, x, y)`. Non-finite values
/// become 0 (they never fall inside a window or at a window end).
pub fn standardise(
    frames: &[FeatureFrame],
    offsets: &[usize],
    columns: &[usize],
    windows: &[WindowRef],
    train: &[usize],
    lookback: usize,
) -> (Scaler, Vec<Vec<f64>>, Vec<f32>, Vec<f32>) {
    let nf = columns.len();
    let total: usize = frames.iter().map(|f| f.len()).sum();
    // Training rows: every row inside a training window.
    let mut train_row = vec![false; total];
    for &i in train {
        let w = windows[i];
        train_row[w.global + 1 - lookback..=w.global].fill(true);
    }
    let value = |g: usize, j: usize| -> f64 {
        let c = offsets.partition_point(|&o| o <= g) - 1;
        frames[c].row(g - offsets[c])[columns[j]]
    };
    let train_cols: Vec<Vec<f64>> = (0..nf)
        .map(|j| {
            (0..total)
                .filter(|&g| train_row[g])
                .map(|g| value(g, j))
                .collect()
        })
        .collect();
    let train_targets: Vec<f64> = train
        .iter()
        .map(|&i| frames[windows[i].coin].target_logret_1h[windows[i].row])
        .collect();
    let scaler = Scaler::fit(&train_cols, &train_targets);
    let mut x = Vec::with_capacity(total * nf);
    let mut y = Vec::with_capacity(total);
    for f in frames {
        for r in 0..f.len() {
            let row = f.row(r);
            for (j, &col) in columns.iter().enumerate() {
                let v = scaler.x(j, row[col]);
                x.push(if v.is_finite() { v as f32 } else { 0.0 });
            }
            let t = scaler.y(f.target_logret_1h[r]);
            y.push(if t.is_finite() { t as f32 } else { 0.0 });
        }
    }
    (scaler, train_cols, x, y)
}

/// sha256 over every frame's coin, timestamps, closes, feature values and targets (little
/// endian), in coin order: the same feature data gives the same digest on any machine.
pub fn digest(frames: &[FeatureFrame]) -> String {
    let mut h = Sha256::new();
    h.update(spec().hash.as_bytes());
    for f in frames {
        h.update(f.coin.as_bytes());
        h.update((f.len() as u64).to_le_bytes());
        for t in &f.ts {
            h.update(t.to_le_bytes());
        }
        for v in f
            .close
            .iter()
            .chain(&f.values)
            .chain(&f.target_logret_1h)
            .chain(&f.target_close_1h)
        {
            h.update(v.to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}
