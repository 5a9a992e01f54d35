//! The in-memory feature frame ([`FeatureFrame`]: one coin's rows, row-major) and the
//! column-major [`FeatureBlock`] that rows are computed into and written from.

use std::ops::Range;

use crate::engine::Counts;
use crate::spec::{FEATURES, TARGET_CLOSE, TARGET_LOGRET, spec};

/// Feature rows of one coin, row-major, with targets and the drop counts.
#[derive(Debug, Clone, Default)]
pub struct FeatureFrame {
    /// Coin code.
    pub coin: String,
    /// Hour open of each row (ms UTC), ascending.
    pub ts: Vec<i64>,
    /// Close of each row's hour (USD).
    pub close: Vec<f64>,
    /// `len() x spec().names.len()`, row-major, spec order.
    pub values: Vec<f64>,
    /// `ln(close[t+1] / close[t])`; NaN when the next hour is unknown or missing.
    pub target_logret_1h: Vec<f64>,
    /// `close[t+1]`; NaN likewise.
    pub target_close_1h: Vec<f64>,
    /// Bars read.
    pub rows_in: usize,
    /// Rows not emitted because their window spans a gap or an unusable bar.
    pub dropped_gap: usize,
    /// Rows not emitted because their window reaches before the first bar.
    pub dropped_warmup: usize,
}

impl FeatureFrame {
    /// Number of feature columns (the spec's).
    pub fn n_features(&self) -> usize {
        FEATURES.len()
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The feature values of row `i`, in spec order. Panics when `i >= len()`.
    pub fn row(&self, i: usize) -> &[f64] {
        let nf = self.n_features();
        &self.values[i * nf..(i + 1) * nf]
    }

    /// A column by name: a feature, `close`, or one of the targets.
    pub fn column(&self, name: &str) -> Option<Vec<f64>> {
        match name {
            "close" => Some(self.close.clone()),
            TARGET_LOGRET => Some(self.target_logret_1h.clone()),
            TARGET_CLOSE => Some(self.target_close_1h.clone()),
            _ => {
                let j = spec().index(name)?;
                let nf = self.n_features();
                Some((0..self.len()).map(|i| self.values[i * nf + j]).collect())
            }
        }
    }

    /// The file metadata of this frame: spec metadata plus the row counts.
    pub fn metadata(&self) -> Vec<(String, String)> {
        self.counts().metadata()
    }

    /// The row counts of this frame.
    pub fn counts(&self) -> Counts {
        Counts {
            rows_in: self.rows_in,
            rows_out: self.len(),
            dropped_gap: self.dropped_gap,
            dropped_warmup: self.dropped_warmup,
        }
    }
}

/// Up to [`ROW_GROUP_ROWS`](crate::file::ROW_GROUP_ROWS) consecutive feature rows of one
/// coin, column by column (the layout Parquet writes), filled by
/// [`Blocks::next_block`](crate::engine::Blocks::next_block). Reuse one block for every
/// block of every coin: its buffers are kept.
#[derive(Debug, Clone, Default)]
pub struct FeatureBlock {
    /// Hour open of each row (ms UTC), ascending.
    pub ts: Vec<i64>,
    /// Close of each row's hour (USD).
    pub close: Vec<f64>,
    /// Feature `j` of the rows is `values[j * cap..j * cap + len()]`.
    pub(crate) values: Vec<f64>,
    pub(crate) cap: usize,
    /// As [`FeatureFrame::target_logret_1h`].
    pub target_logret_1h: Vec<f64>,
    /// As [`FeatureFrame::target_close_1h`].
    pub target_close_1h: Vec<f64>,
}

impl FeatureBlock {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// The values of feature `j` (spec order). Panics when `j >= FEATURES.len()`.
    pub fn column(&self, j: usize) -> &[f64] {
        assert!(j < FEATURES.len(), "feature {j} of {}", FEATURES.len());
        &self.values[j * self.cap..j * self.cap + self.len()]
    }

    /// Empties the block and makes room for `cap` rows per column.
    pub(crate) fn reset(&mut self, cap: usize) {
        self.ts.clear();
        self.close.clear();
        self.target_logret_1h.clear();
        self.target_close_1h.clear();
        if self.cap < cap {
            self.cap = cap;
            self.values.clear();
            self.values.resize(cap * FEATURES.len(), f64::NAN);
        }
    }

    /// The rows `rows` of a frame, transposed.
    pub(crate) fn fill_from_frame(&mut self, frame: &FeatureFrame, rows: Range<usize>) {
        self.reset(rows.len());
        let nf = FEATURES.len();
        self.ts.extend_from_slice(&frame.ts[rows.clone()]);
        self.close.extend_from_slice(&frame.close[rows.clone()]);
        self.target_logret_1h
            .extend_from_slice(&frame.target_logret_1h[rows.clone()]);
        self.target_close_1h
            .extend_from_slice(&frame.target_close_1h[rows.clone()]);
        let src = &frame.values[rows.start * nf..rows.end * nf];
        for r0 in (0..rows.len()).step_by(BLOCK) {
            let r1 = (r0 + BLOCK).min(rows.len());
            for j in 0..nf {
                let col = &mut self.values[j * self.cap + r0..j * self.cap + r1];
                for (o, row) in col.iter_mut().zip(src[r0 * nf..r1 * nf].chunks_exact(nf)) {
                    *o = row[j];
                }
            }
        }
    }
}

/// Rows per block when converting between row-major and column-major layouts.
pub(crate) const BLOCK: usize = 128;

/// Splits row-major `values` (`nf` per row) into columns, block by block.
pub(crate) fn columns_of(values: &[f64], nf: usize) -> Vec<Vec<f64>> {
    let rows = values.len().checked_div(nf).unwrap_or(0);
    // Not `vec![Vec::with_capacity(rows); nf]`: a clone does not keep the capacity.
    let mut cols: Vec<Vec<f64>> = (0..nf).map(|_| Vec::with_capacity(rows)).collect();
    for r0 in (0..rows).step_by(BLOCK) {
        let r1 = (r0 + BLOCK).min(rows);
        for (j, col) in cols.iter_mut().enumerate() {
            col.extend((r0..r1).map(|r| values[r * nf + j]));
        }
    }
    cols
}
