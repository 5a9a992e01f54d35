//! The feature contract: the one table of features (names, windows, order, version), its
//! hash, and the one implementation that turns hourly bars into feature rows — used by
//! `rps-transform` for training data and by `rps-serve` at prediction time, so the two can
//! never disagree.
//!
//! # Rows and gaps
//! A feature row for hour `t` is emitted only when every bar its longest window touches
//! (`t - warmup ..= t`) is present, valid and one hour after the previous one. Nothing is
//! ever computed across a missing hour. Rows that are not emitted are counted:
//! - `dropped_warmup`: rows whose window reaches back before the first bar of the input
//!   (the first `warmup` bars when the series starts without a gap);
//! - `dropped_gap`: every other dropped row — its window spans a missing hour, or the bar
//!   itself is unusable (non-finite or non-positive price; counted as a missing hour), or
//!   the bars are out of order / duplicated (any step other than +1 h is a break).
//!
//! `rows_in == len() + dropped_gap + dropped_warmup` always holds.
//!
//! # Targets
//! `target_close_1h[t] = close[t+1]` and `target_logret_1h[t] = ln(close[t+1] / close[t])`
//! when bar `t+1` is the next hour and valid; NaN otherwise (the newest row, or before a gap).
//!
//! # Changing the spec
//! Changing a name, a window, the order or the *formula* of a feature requires bumping
//! [`SPEC_VERSION`]: the hash covers names, windows and the version, so a model trained on
//! another spec refuses to serve.

use std::f64::consts::TAU;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sha2::{Digest, Sha256};

use rps_core::schema::Bar;
use rps_core::time::HOUR_MS;
use rps_core::{CoreError, Result};

/// Version of the feature definitions; bump it whenever any formula changes.
pub const SPEC_VERSION: u32 = 1;

/// Column names of the targets in feature files.
pub const TARGET_LOGRET: &str = "target_logret_1h";
/// Column name of the next hour's close in feature files.
pub const TARGET_CLOSE: &str = "target_close_1h";

/// Footer / schema metadata keys of feature files.
pub mod meta {
    /// The [`super::FeatureSpec::hash`] the file was computed with.
    pub const SPEC_HASH: &str = "feature_spec_hash";
    /// The [`super::SPEC_VERSION`] the file was computed with.
    pub const SPEC_VERSION: &str = "feature_spec_version";
    /// Comma-separated feature names, in column order (for non-Rust readers).
    pub const NAMES: &str = "feature_names";
    /// Bars read for this coin.
    pub const ROWS_IN: &str = "rows_in";
    /// Rows dropped because their window spans a gap.
    pub const DROPPED_GAP: &str = "dropped_gap";
    /// Rows dropped because their window reaches before the first bar.
    pub const DROPPED_WARMUP: &str = "dropped_warmup";
}

/// How a feature is computed. Windows count hours; the doc of each variant gives the formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Previous hour's close (USD).
    Lag1Close,
    /// Mean of the last `w` closes, this hour's included (USD).
    CloseMean(usize),
    /// UTC hour of day, 0..23.
    Hour,
    /// Log return `ln(close[t] / close[t-1])`.
    LogRet,
    /// Log return `k` hours earlier: `logret[t-k]`.
    LogRetLag(usize),
    /// Mean of the last `w` log returns (this hour's included).
    LogRetMean(usize),
    /// Sample standard deviation (n-1) of the last `w` log returns.
    LogRetStd(usize),
    /// `close[t] / mean(last w closes) - 1`.
    CloseRelMean(usize),
    /// `(high - low) / close`.
    RangeRel,
    /// `(volume[t] - mean) / std` over the known volumes of the last `w` hours (sample std);
    /// 0 when this hour's volume is unknown, fewer than 2 are known, or the std is 0.
    VolumeZ(usize),
    /// `sin(2π hour / 24)`.
    HourSin,
    /// `cos(2π hour / 24)`.
    HourCos,
    /// `sin(2π dow / 7)`, Monday = 0.
    DowSin,
    /// `cos(2π dow / 7)`, Monday = 0.
    DowCos,
}

impl Kind {
    /// How many consecutive bars, ending at the row's own bar, the feature reads.
    pub const fn window(self) -> usize {
        match self {
            Kind::Hour
            | Kind::RangeRel
            | Kind::HourSin
            | Kind::HourCos
            | Kind::DowSin
            | Kind::DowCos => 1,
            Kind::Lag1Close | Kind::LogRet => 2,
            Kind::CloseMean(w) | Kind::CloseRelMean(w) | Kind::VolumeZ(w) => w,
            Kind::LogRetLag(k) => k + 2,
            Kind::LogRetMean(w) | Kind::LogRetStd(w) => w + 1,
        }
    }
}

/// One row of the feature table.
#[derive(Debug, Clone, Copy)]
pub struct FeatureDef {
    pub name: &'static str,
    pub kind: Kind,
}

const fn def(name: &'static str, kind: Kind) -> FeatureDef {
    FeatureDef { name, kind }
}

/// THE feature table: names, formulas and windows, in column order. Defined once.
pub static FEATURES: &[FeatureDef] = &[
    // The seed's features, kept for compatibility (price units).
    def("lag_1", Kind::Lag1Close),
    def("rolling_mean_5", Kind::CloseMean(5)),
    def("hour", Kind::Hour),
    // Stationary features for forecasters.
    def("logret", Kind::LogRet),
    def("logret_lag_1", Kind::LogRetLag(1)),
    def("logret_lag_2", Kind::LogRetLag(2)),
    def("logret_lag_3", Kind::LogRetLag(3)),
    def("logret_lag_4", Kind::LogRetLag(4)),
    def("logret_lag_5", Kind::LogRetLag(5)),
    def("logret_lag_6", Kind::LogRetLag(6)),
    def("logret_lag_7", Kind::LogRetLag(7)),
    def("logret_lag_8", Kind::LogRetLag(8)),
    def("logret_lag_9", Kind::LogRetLag(9)),
    def("logret_lag_10", Kind::LogRetLag(10)),
    def("logret_lag_11", Kind::LogRetLag(11)),
    def("logret_lag_12", Kind::LogRetLag(12)),
    def("logret_lag_13", Kind::LogRetLag(13)),
    def("logret_lag_14", Kind::LogRetLag(14)),
    def("logret_lag_15", Kind::LogRetLag(15)),
    def("logret_lag_16", Kind::LogRetLag(16)),
    def("logret_lag_17", Kind::LogRetLag(17)),
    def("logret_lag_18", Kind::LogRetLag(18)),
    def("logret_lag_19", Kind::LogRetLag(19)),
    def("logret_lag_20", Kind::LogRetLag(20)),
    def("logret_lag_21", Kind::LogRetLag(21)),
    def("logret_lag_22", Kind::LogRetLag(22)),
    def("logret_lag_23", Kind::LogRetLag(23)),
    def("logret_lag_24", Kind::LogRetLag(24)),
    def("logret_mean_6", Kind::LogRetMean(6)),
    def("logret_mean_24", Kind::LogRetMean(24)),
    def("logret_mean_168", Kind::LogRetMean(168)),
    def("logret_std_6", Kind::LogRetStd(6)),
    def("logret_std_24", Kind::LogRetStd(24)),
    def("logret_std_168", Kind::LogRetStd(168)),
    def("close_rel_mean_24", Kind::CloseRelMean(24)),
    def("close_rel_mean_168", Kind::CloseRelMean(168)),
    def("range_rel", Kind::RangeRel),
    def("volume_z_168", Kind::VolumeZ(168)),
    def("hour_sin", Kind::HourSin),
    def("hour_cos", Kind::HourCos),
    def("dow_sin", Kind::DowSin),
    def("dow_cos", Kind::DowCos),
];

/// The feature spec as data: what a model package records and checks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSpec {
    pub version: u32,
    /// Feature names in column order.
    pub names: Vec<String>,
    /// Bars needed before the first row (longest window - 1).
    pub warmup: usize,
    /// First 16 hex chars of sha256 over [`FeatureSpec::canonical`].
    pub hash: String,
}

impl FeatureSpec {
    /// The canonical text the hash covers: version, then `name:window` per line, in order.
    pub fn canonical() -> String {
        let mut s = format!("rps-features v{SPEC_VERSION}\n");
        for d in FEATURES {
            s.push_str(&format!("{}:{}\n", d.name, d.kind.window()));
        }
        s
    }

    /// Column index of a feature.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// Window (bars read, own bar included) of a feature.
    pub fn window(&self, name: &str) -> Option<usize> {
        FEATURES
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.kind.window())
    }
}

/// The feature spec of this build.
pub fn spec() -> &'static FeatureSpec {
    static SPEC: LazyLock<FeatureSpec> = LazyLock::new(|| {
        let canonical = FeatureSpec::canonical();
        let digest = Sha256::digest(canonical.as_bytes());
        let mut hash = hex::encode(digest);
        hash.truncate(16);
        FeatureSpec {
            version: SPEC_VERSION,
            names: FEATURES.iter().map(|d| d.name.to_string()).collect(),
            warmup: FEATURES.iter().map(|d| d.kind.window()).max().unwrap_or(1) - 1,
            hash,
        }
    });
    &SPEC
}

/// Feature rows of one coin, row-major, with targets and the drop counts.
#[derive(Debug, Clone, Default)]
pub struct FeatureFrame {
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
    pub rows_in: usize,
    pub dropped_gap: usize,
    pub dropped_warmup: usize,
}

/// Whether a bar can take part in a window (prices usable for logs and ratios).
fn usable(b: &Bar) -> bool {
    b.close.is_finite() && b.close > 0.0 && b.high.is_finite() && b.low.is_finite()
}

/// Row counts of one coin's features. They follow from the bars alone (which bars are
/// usable and one hour apart), so they are known before any feature is computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bars read.
    pub rows_in: usize,
    /// Feature rows emitted.
    pub rows_out: usize,
    /// Rows dropped because their window spans a gap (module docs).
    pub dropped_gap: usize,
    /// Rows dropped because their window reaches before the first bar.
    pub dropped_warmup: usize,
}

impl Counts {
    /// The file metadata of a feature file with these counts: spec metadata plus the
    /// counts, in a fixed order.
    pub fn metadata(&self) -> Vec<(String, String)> {
        let mut m = spec_metadata();
        m.push((meta::ROWS_IN.into(), self.rows_in.to_string()));
        m.push((meta::DROPPED_GAP.into(), self.dropped_gap.to_string()));
        m.push((meta::DROPPED_WARMUP.into(), self.dropped_warmup.to_string()));
        m
    }
}

/// Splits ascending `bars` into the gap-free runs of usable bars that yield rows (longer
/// than `warmup`), and counts rows out and dropped.
fn segments(bars: &[Bar], warmup: usize) -> (Vec<Range<usize>>, Counts) {
    let mut counts = Counts {
        rows_in: bars.len(),
        ..Counts::default()
    };
    let mut segs = Vec::new();
    let mut start = 0;
    while start < bars.len() {
        if !usable(&bars[start]) {
            counts.dropped_gap += 1;
            start += 1;
            continue;
        }
        let mut end = start + 1;
        while end < bars.len()
            && usable(&bars[end])
            && bars[end].ts.checked_sub(bars[end - 1].ts) == Some(HOUR_MS)
        {
            end += 1;
        }
        let len = end - start;
        let dropped = len.min(warmup);
        if start == 0 {
            counts.dropped_warmup += dropped;
        } else {
            counts.dropped_gap += dropped;
        }
        if len > warmup {
            counts.rows_out += len - warmup;
            segs.push(start..end);
        }
        start = end;
    }
    (segs, counts)
}

/// The row counts [`compute`] would give for `bars`, without computing any feature.
pub fn counts(bars: &[Bar]) -> Counts {
    segments(bars, spec().warmup).1
}

/// Computes the features of one coin. `bars` must be ascending by `ts`; a step other than
/// one hour (hole, duplicate, disorder) or an unusable bar breaks the series (module docs).
///
/// Collects every row into one row-major frame; [`Blocks`] computes the same rows (same
/// code, same bits) a bounded block at a time.
pub fn compute(coin: &str, bars: &[Bar]) -> FeatureFrame {
    let mut blocks = Blocks::with_block_rows(bars, usize::MAX);
    let counts = blocks.counts();
    let nf = FEATURES.len();
    let mut frame = FeatureFrame {
        coin: coin.to_string(),
        ts: Vec::with_capacity(counts.rows_out),
        close: Vec::with_capacity(counts.rows_out),
        values: vec![f64::NAN; counts.rows_out * nf],
        target_logret_1h: Vec::with_capacity(counts.rows_out),
        target_close_1h: Vec::with_capacity(counts.rows_out),
        rows_in: counts.rows_in,
        dropped_gap: counts.dropped_gap,
        dropped_warmup: counts.dropped_warmup,
    };
    let mut tails = Tails {
        ts: &mut frame.ts,
        close: &mut frame.close,
        target_logret: &mut frame.target_logret_1h,
        target_close: &mut frame.target_close_1h,
    };
    blocks.fill::<RowMajor>(counts.rows_out, &mut frame.values, nf, &mut tails);
    frame
}

/// Up to [`ROW_GROUP_ROWS`] consecutive feature rows of one coin, column by column (the
/// layout Parquet writes), filled by [`Blocks::next_block`]. Reuse one block for every
/// block of every coin: its buffers are kept.
#[derive(Debug, Clone, Default)]
pub struct FeatureBlock {
    /// Hour open of each row (ms UTC), ascending.
    pub ts: Vec<i64>,
    /// Close of each row's hour (USD).
    pub close: Vec<f64>,
    /// Feature `j` of the rows is `values[j * cap..j * cap + len()]`.
    values: Vec<f64>,
    cap: usize,
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
    fn reset(&mut self, cap: usize) {
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
    fn fill_from_frame(&mut self, frame: &FeatureFrame, rows: Range<usize>) {
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

/// One coin's feature rows, computed a block at a time into a reused [`FeatureBlock`] —
/// memory stays bounded by the block whatever the number of rows. The rows, their values
/// (bit for bit) and the [`Counts`] are those of [`compute`].
#[derive(Debug)]
pub struct Blocks<'a> {
    bars: &'a [Bar],
    segments: Vec<Range<usize>>,
    counts: Counts,
    /// Index of the segment being computed.
    seg: usize,
    /// Next row of that segment (segment index; 0 = not started).
    next: usize,
    block_rows: usize,
    rows: RowComputer,
}

impl<'a> Blocks<'a> {
    /// Blocks of [`ROW_GROUP_ROWS`] rows (the last one shorter) over `bars`, ascending by
    /// `ts` (see [`compute`]).
    pub fn new(bars: &'a [Bar]) -> Blocks<'a> {
        Blocks::with_block_rows(bars, ROW_GROUP_ROWS)
    }

    /// Blocks of `block_rows` rows (at least one).
    pub fn with_block_rows(bars: &'a [Bar], block_rows: usize) -> Blocks<'a> {
        let (segments, counts) = segments(bars, spec().warmup);
        Blocks {
            bars,
            segments,
            counts,
            seg: 0,
            next: 0,
            block_rows: block_rows.clamp(1, counts.rows_out.max(1)),
            rows: RowComputer::new(),
        }
    }

    /// The row counts of the whole coin (known before the first block).
    pub fn counts(&self) -> Counts {
        self.counts
    }

    /// Fills `block` with the next rows; `false` (and an empty block) when all were given.
    pub fn next_block(&mut self, block: &mut FeatureBlock) -> bool {
        block.reset(self.block_rows);
        let mut tails = Tails {
            ts: &mut block.ts,
            close: &mut block.close,
            target_logret: &mut block.target_logret_1h,
            target_close: &mut block.target_close_1h,
        };
        let cap = block.cap;
        self.fill::<ColMajor>(self.block_rows, &mut block.values, cap, &mut tails) > 0
    }

    /// Computes up to `max` next rows into `values` (laid out as `L` with `stride`) and
    /// `tails`; returns how many.
    fn fill<L: Layout>(
        &mut self,
        max: usize,
        values: &mut [f64],
        stride: usize,
        tails: &mut Tails<'_>,
    ) -> usize {
        let warmup = spec().warmup;
        let mut done = 0;
        while done < max && self.seg < self.segments.len() {
            let seg = &self.bars[self.segments[self.seg].clone()];
            if self.next == 0 {
                self.next = warmup;
                self.rows.start_segment();
            }
            let end = seg.len().min(self.next + (max - done));
            self.rows
                .rows::<L>(seg, self.next..end, values, stride, done, tails);
            done += end - self.next;
            self.next = end;
            if end == seg.len() {
                self.seg += 1;
                self.next = 0;
            }
        }
        done
    }
}

/// The per-row columns that are not features, pushed as rows are computed.
struct Tails<'a> {
    ts: &'a mut Vec<i64>,
    close: &'a mut Vec<f64>,
    target_logret: &'a mut Vec<f64>,
    target_close: &'a mut Vec<f64>,
}

/// Where feature values go: `column(values, stride, j, r0, m)` are the cells of feature
/// `j` for the rows `r0..r0 + m`.
trait Layout {
    fn column(
        values: &mut [f64],
        stride: usize,
        j: usize,
        r0: usize,
        m: usize,
    ) -> impl Iterator<Item = &mut f64>;
}

/// A [`FeatureFrame`]: row after row, `stride` (= the number of features) values each.
struct RowMajor;

impl Layout for RowMajor {
    fn column(
        values: &mut [f64],
        stride: usize,
        j: usize,
        r0: usize,
        m: usize,
    ) -> impl Iterator<Item = &mut f64> {
        values[r0 * stride..(r0 + m) * stride]
            .chunks_exact_mut(stride)
            .map(move |row| &mut row[j])
    }
}

/// A [`FeatureBlock`]: column after column, `stride` (= the block's capacity) rows each.
struct ColMajor;

impl Layout for ColMajor {
    fn column(
        values: &mut [f64],
        stride: usize,
        j: usize,
        r0: usize,
        m: usize,
    ) -> impl Iterator<Item = &mut f64> {
        values[j * stride + r0..j * stride + r0 + m].iter_mut()
    }
}

/// Rows per inner block of [`RowComputer::rows`]: its per-window statistics stay in cache.
const SUB_ROWS: usize = 256;

/// Which rolling window each feature reads: one per distinct (series, width), since
/// `logret_mean_w` and `logret_std_w` read the same window and its sums are updated once
/// per row, not once per feature.
struct WindowPlan {
    windows: Vec<(Series, usize)>,
    /// Per feature, its index in `windows` (`usize::MAX` when it reads none).
    window_of: Vec<usize>,
}

static WINDOWS: LazyLock<WindowPlan> = LazyLock::new(|| {
    let mut windows: Vec<(Series, usize)> = Vec::new();
    let window_of = FEATURES
        .iter()
        .map(|d| {
            let key = match d.kind {
                Kind::CloseMean(w) | Kind::CloseRelMean(w) => (Series::Close, w),
                Kind::LogRetMean(w) | Kind::LogRetStd(w) => (Series::LogRet, w),
                Kind::VolumeZ(w) => (Series::Volume, w),
                // Not read for these kinds.
                _ => return usize::MAX,
            };
            windows.iter().position(|k| *k == key).unwrap_or_else(|| {
                windows.push(key);
                windows.len() - 1
            })
        })
        .collect();
    WindowPlan { windows, window_of }
});

/// THE implementation of the feature formulas: computes consecutive rows of one gap-free
/// segment, any number at a time, carrying the rolling windows between calls.
struct RowComputer {
    rolls: Vec<Roll>,
    /// Inputs of the rows being computed and the `warmup` rows before (segment-local).
    close: Vec<f64>,
    logret: Vec<f64>,
    volume: Vec<f64>,
    stats: Vec<[Stats; SUB_ROWS]>,
    hours: [usize; SUB_ROWS],
    dows: [usize; SUB_ROWS],
    hour_sin: [f64; 24],
    hour_cos: [f64; 24],
    dow_sin: [f64; 7],
    dow_cos: [f64; 7],
}

impl std::fmt::Debug for RowComputer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowComputer").finish_non_exhaustive()
    }
}

impl RowComputer {
    fn new() -> RowComputer {
        let n = WINDOWS.windows.len();
        RowComputer {
            rolls: Vec::with_capacity(n),
            close: Vec::new(),
            logret: Vec::new(),
            volume: Vec::new(),
            stats: vec![[Roll::new(1).sums; SUB_ROWS]; n],
            hours: [0; SUB_ROWS],
            dows: [0; SUB_ROWS],
            // Calendar features take 24 and 7 values: computed once, not once per row.
            hour_sin: std::array::from_fn(|h| (TAU * h as f64 / 24.0).sin()),
            hour_cos: std::array::from_fn(|h| (TAU * h as f64 / 24.0).cos()),
            dow_sin: std::array::from_fn(|d| (TAU * d as f64 / 7.0).sin()),
            dow_cos: std::array::from_fn(|d| (TAU * d as f64 / 7.0).cos()),
        }
    }

    /// Forgets the windows: the next rows are the first of a new segment.
    fn start_segment(&mut self) {
        self.rolls.clear();
        self.rolls
            .extend(WINDOWS.windows.iter().map(|&(_, w)| Roll::new(w)));
    }

    /// Computes the rows `rows` of the contiguous, usable segment `seg` (`rows.start >=
    /// warmup`, and the row after the previous call's last unless the segment was just
    /// started) into the rows `r0..` of `values` (layout `L`) and pushes their tails.
    ///
    /// Rows are produced a sub-block at a time, feature by feature: each feature's formula
    /// runs in a tight loop over the sub-block (its `match` hoisted out of the row loop)
    /// and writes its column, which stays in cache. Every value is the same expression on
    /// the same inputs as row by row, so the bits are the same in either layout.
    fn rows<L: Layout>(
        &mut self,
        seg: &[Bar],
        rows: Range<usize>,
        values: &mut [f64],
        stride: usize,
        r0: usize,
        tails: &mut Tails<'_>,
    ) {
        let warmup = spec().warmup;
        let n = seg.len();
        let (i0, i1) = (rows.start, rows.end);
        tails.ts.extend(seg[i0..i1].iter().map(|b| b.ts));
        tails.close.extend(seg[i0..i1].iter().map(|b| b.close));
        for i in i0..i1 {
            let (tc, tl) = if i + 1 < n {
                (seg[i + 1].close, (seg[i + 1].close / seg[i].close).ln())
            } else {
                (f64::NAN, f64::NAN)
            };
            tails.target_close.push(tc);
            tails.target_logret.push(tl);
        }
        // From here on, indices are local to the rows read: no window reaches back more
        // than `warmup` rows before the first row computed.
        let lo = i0 - warmup;
        let RowComputer {
            rolls,
            close,
            logret,
            volume,
            stats,
            hours,
            dows,
            hour_sin,
            hour_cos,
            dow_sin,
            dow_cos,
        } = self;
        logret.clear();
        logret.extend((lo..i1).map(|i| {
            if i == 0 {
                f64::NAN
            } else {
                (seg[i].close / seg[i - 1].close).ln()
            }
        }));
        let seg = &seg[lo..i1];
        let (i0, i1) = (warmup, i1 - lo);
        close.clear();
        close.extend(seg.iter().map(|b| b.close));
        volume.clear();
        volume.extend(seg.iter().map(|b| b.volume.unwrap_or(f64::NAN)));
        let (close, logret, volume) = (&close[..], &logret[..], &volume[..]);
        for s0 in (i0..i1).step_by(SUB_ROWS) {
            let s1 = (s0 + SUB_ROWS).min(i1);
            let m = s1 - s0;
            for ((&(series, _), roll), st) in WINDOWS
                .windows
                .iter()
                .zip(rolls.iter_mut())
                .zip(stats.iter_mut())
            {
                let xs = match series {
                    Series::Close => close,
                    Series::LogRet => logret,
                    Series::Volume => volume,
                };
                for (i, s) in (s0..s1).zip(st.iter_mut()) {
                    *s = roll.next(xs, i);
                }
            }
            for (i, (h, d)) in (s0..s1).zip(hours.iter_mut().zip(dows.iter_mut())) {
                // In 0..24 and 0..7 by construction (rem_euclid).
                *h = hour_of(seg[i].ts) as usize;
                *d = dow_of(seg[i].ts) as usize;
            }
            let (hours, dows) = (&hours[..m], &dows[..m]);
            let out_row = r0 + (s0 - i0);
            for (j, (def, &r)) in FEATURES.iter().zip(&WINDOWS.window_of).enumerate() {
                let col = L::column(values, stride, j, out_row, m);
                let rows = s0..s1;
                match def.kind {
                    Kind::Lag1Close => col.zip(rows).for_each(|(o, i)| *o = close[i - 1]),
                    Kind::Hour => col.zip(hours).for_each(|(o, &h)| *o = h as f64),
                    Kind::LogRet => col.zip(rows).for_each(|(o, i)| *o = logret[i]),
                    Kind::LogRetLag(k) => col.zip(rows).for_each(|(o, i)| *o = logret[i - k]),
                    Kind::RangeRel => col
                        .zip(rows)
                        .for_each(|(o, i)| *o = (seg[i].high - seg[i].low) / close[i]),
                    Kind::HourSin => col.zip(hours).for_each(|(o, &h)| *o = hour_sin[h]),
                    Kind::HourCos => col.zip(hours).for_each(|(o, &h)| *o = hour_cos[h]),
                    Kind::DowSin => col.zip(dows).for_each(|(o, &d)| *o = dow_sin[d]),
                    Kind::DowCos => col.zip(dows).for_each(|(o, &d)| *o = dow_cos[d]),
                    Kind::CloseMean(_) | Kind::LogRetMean(_) => {
                        col.zip(&stats[r]).for_each(|(o, s)| *o = s.mean())
                    }
                    Kind::CloseRelMean(_) => col
                        .zip(&stats[r])
                        .zip(rows)
                        .for_each(|((o, s), i)| *o = close[i] / s.mean() - 1.0),
                    Kind::LogRetStd(_) => col.zip(&stats[r]).for_each(|(o, s)| *o = s.std()),
                    Kind::VolumeZ(_) => col.zip(&stats[r]).zip(rows).for_each(|((o, &s), i)| {
                        let (v, mean, std) = (volume[i], s.mean(), s.std());
                        // A (near-)constant window has no scale: "no deviation", not ±inf.
                        *o = if v.is_finite() && s.n >= 2 && std > 16.0 * f64::EPSILON * mean.abs()
                        {
                            (v - mean) / std
                        } else {
                            0.0
                        };
                    }),
                }
            }
        }
    }
}

/// The input series a rolling window reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Series {
    Close,
    LogRet,
    Volume,
}

/// Rows per block when converting between row-major and column-major layouts.
const BLOCK: usize = 128;

/// Splits row-major `values` (`nf` per row) into columns, block by block.
fn columns_of(values: &[f64], nf: usize) -> Vec<Vec<f64>> {
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

/// UTC hour of day of a millisecond timestamp.
pub fn hour_of(ts: i64) -> i64 {
    ts.div_euclid(HOUR_MS).rem_euclid(24)
}

/// Day of week (Monday = 0) of a millisecond timestamp; 1970-01-01 was a Thursday.
pub fn dow_of(ts: i64) -> i64 {
    (ts.div_euclid(24 * HOUR_MS) + 3).rem_euclid(7)
}

/// Sums over the finite values of a window, relative to `shift`.
#[derive(Debug, Clone, Copy)]
struct Stats {
    n: usize,
    shift: f64,
    s1: f64,
    s2: f64,
}

impl Stats {
    /// Mean of the window (NaN when empty).
    fn mean(&self) -> f64 {
        if self.n == 0 {
            f64::NAN
        } else {
            self.shift + self.s1 / self.n as f64
        }
    }

    /// Sample standard deviation (n - 1) of the window (NaN below two values).
    fn std(&self) -> f64 {
        if self.n < 2 {
            return f64::NAN;
        }
        let m = self.s1 / self.n as f64;
        ((self.s2 - self.s1 * m) / (self.n - 1) as f64)
            .max(0.0)
            .sqrt()
    }
}

/// Trailing-window statistics (`xs[i+1-w ..= i]`, non-finite values skipped), advanced
/// one row at a time with [`Roll::next`] over consecutive `i`. O(1) per row: sums are
/// updated by add/remove, but re-summed from scratch every `w` rows around a shift taken
/// from the window itself, so rounding cannot accumulate and the variance formula has no
/// catastrophic cancellation (agrees with a direct two-pass computation to ~1e-13).
#[derive(Debug, Clone)]
struct Roll {
    w: usize,
    /// Rows until the window is re-summed from scratch (0 at the first call).
    until_resum: usize,
    sums: Stats,
}

impl Roll {
    fn new(w: usize) -> Roll {
        Roll {
            w: w.max(1),
            until_resum: 0,
            sums: Stats {
                n: 0,
                shift: 0.0,
                s1: 0.0,
                s2: 0.0,
            },
        }
    }

    /// Sums of the window ending at `i`; `i` must be one more than at the previous call
    /// (any value `>= w - 1` at the first).
    fn next(&mut self, xs: &[f64], i: usize) -> Stats {
        let lo = i + 1 - self.w;
        // Updated in a local copy and stored whole: the caller's copy of the result is
        // then not read back from fields just written one by one (a store-forwarding stall).
        let mut s = self.sums;
        if self.until_resum == 0 {
            let win = &xs[lo..=i];
            s.shift = win.iter().copied().find(|x| x.is_finite()).unwrap_or(0.0);
            (s.n, s.s1, s.s2) = (0, 0.0, 0.0);
            for &x in win.iter().filter(|x| x.is_finite()) {
                let d = x - s.shift;
                s.n += 1;
                s.s1 += d;
                s.s2 += d * d;
            }
            self.until_resum = self.w;
        } else {
            // Not the first call, so lo >= 1.
            let old = xs[lo - 1];
            if old.is_finite() {
                let d = old - s.shift;
                s.n -= 1;
                s.s1 -= d;
                s.s2 -= d * d;
            }
            let new = xs[i];
            if new.is_finite() {
                let d = new - s.shift;
                s.n += 1;
                s.s1 += d;
                s.s2 += d * d;
            }
        }
        self.until_resum -= 1;
        self.sums = s;
        s
    }
}

const UTC: &str = "UTC";

/// Arrow schema of feature files: `ts`, `coin`, `close`, the features in spec order
/// (float64), then the two targets (nullable float64: null where NaN). The schema metadata
/// carries the spec hash, version and names.
pub fn feature_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let sp = spec();
        let mut fields = vec![
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
                false,
            ),
            Field::new("coin", DataType::Utf8, false),
            Field::new("close", DataType::Float64, false),
        ];
        fields.extend(
            sp.names
                .iter()
                .map(|n| Field::new(n, DataType::Float64, false)),
        );
        fields.push(Field::new(TARGET_LOGRET, DataType::Float64, true));
        fields.push(Field::new(TARGET_CLOSE, DataType::Float64, true));
        Arc::new(
            Schema::new(fields).with_metadata(
                spec_metadata()
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            ),
        )
    });
    SCHEMA.clone()
}

/// The spec part of the file metadata (hash, version, names), in a fixed order.
pub fn spec_metadata() -> Vec<(String, String)> {
    let sp = spec();
    vec![
        (meta::SPEC_HASH.into(), sp.hash.clone()),
        (meta::SPEC_VERSION.into(), sp.version.to_string()),
        (meta::NAMES.into(), sp.names.join(",")),
    ]
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

    /// One record batch in the [`feature_schema`], with [`FeatureFrame::metadata`] as
    /// schema metadata.
    pub fn to_batch(&self) -> Result<RecordBatch> {
        self.batch_of(0..self.len())
    }

    /// The rows `rows` as a record batch (see [`FeatureFrame::to_batch`]).
    fn batch_of(&self, rows: std::ops::Range<usize>) -> Result<RecordBatch> {
        let n = rows.len();
        let nf = self.n_features();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(nf + 5);
        cols.push(Arc::new(
            TimestampMillisecondArray::from_iter_values(self.ts[rows.clone()].iter().copied())
                .with_timezone(UTC),
        ));
        cols.push(Arc::new(StringArray::from_iter_values(
            std::iter::repeat_n(self.coin.as_str(), n),
        )));
        cols.push(Arc::new(Float64Array::from_iter_values(
            self.close[rows.clone()].iter().copied(),
        )));
        for col in columns_of(&self.values[rows.start * nf..rows.end * nf], nf) {
            cols.push(Arc::new(Float64Array::from(col)));
        }
        let nullable = |v: &[f64]| -> ArrayRef {
            Arc::new(Float64Array::from_iter(
                v.iter().map(|x| x.is_finite().then_some(*x)),
            ))
        };
        cols.push(nullable(&self.target_logret_1h[rows.clone()]));
        cols.push(nullable(&self.target_close_1h[rows]));
        let schema = feature_schema();
        let schema = Arc::new(
            Schema::new(schema.fields().clone()).with_metadata(
                self.metadata()
                    .into_iter()
                    .collect::<std::collections::BTreeMap<_, _>>(),
            ),
        );
        RecordBatch::try_new(schema, cols).map_err(|e| CoreError::Encode {
            key: format!("features of {}", self.coin),
            reason: e.to_string(),
        })
    }

    /// Decodes feature batches. Checks every column by name and type, and — when the batch
    /// schema carries them (batches from [`FeatureFrame::to_batch`]) — the spec hash and
    /// the row counts. Batches read back from Parquet have lost their schema metadata:
    /// use [`FeatureFrame::from_decoded`] (or [`read_frame`]) for files, which checks the
    /// footer. With no batches the frame is empty and its coin comes from the file name.
    pub fn from_batch(batches: &[RecordBatch], key: &str) -> Result<FeatureFrame> {
        let bad = |reason: String| CoreError::BadFile {
            key: key.to_string(),
            reason,
        };
        let sp = spec();
        let mut frame = FeatureFrame {
            coin: rps_core::storage::layout::coin_of(key)
                .unwrap_or_default()
                .to_string(),
            ..FeatureFrame::default()
        };
        let mut counted = false;
        for batch in batches {
            let md = &batch.schema_ref().metadata;
            counted |= frame.apply_metadata(|k| md.get(k).map(String::as_str), key)?;
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| bad(format!("missing column '{name}' (not a feature file?)")))
            };
            let f64col = |name: &str| -> Result<Vec<f64>> {
                let c = col(name)?;
                let a = c.as_any().downcast_ref::<Float64Array>().ok_or_else(|| {
                    bad(format!(
                        "column '{name}' has type {}, expected Float64",
                        c.data_type()
                    ))
                })?;
                Ok((0..a.len())
                    .map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) })
                    .collect())
            };
            let ts = col("ts")?;
            let ts = ts
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .ok_or_else(|| {
                    bad(format!(
                        "column 'ts' has type {}, expected Timestamp(ms)",
                        ts.data_type()
                    ))
                })?;
            let coin = col("coin")?;
            let coin = coin.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
                bad(format!(
                    "column 'coin' has type {}, expected Utf8",
                    coin.data_type()
                ))
            })?;
            if batch.num_rows() > 0 {
                frame.coin = coin.value(0).to_string();
            }
            frame.ts.extend(ts.values().iter().copied());
            frame.close.extend(f64col("close")?);
            let feats = sp
                .names
                .iter()
                .map(|n| f64col(n))
                .collect::<Result<Vec<_>>>()?;
            let start = frame.values.len();
            frame
                .values
                .resize(start + batch.num_rows() * feats.len(), f64::NAN);
            let nf = feats.len();
            let out = &mut frame.values[start..];
            for r0 in (0..batch.num_rows()).step_by(BLOCK) {
                let r1 = (r0 + BLOCK).min(batch.num_rows());
                for (j, c) in feats.iter().enumerate() {
                    for (r, &v) in (r0..r1).zip(&c[r0..r1]) {
                        out[r * nf + j] = v;
                    }
                }
            }
            frame.target_logret_1h.extend(f64col(TARGET_LOGRET)?);
            frame.target_close_1h.extend(f64col(TARGET_CLOSE)?);
        }
        if !counted {
            frame.rows_in = frame.len();
        }
        Ok(frame)
    }

    /// Decodes a feature file read with [`rps_core::parquet_io::decode`]/`read`: the batches,
    /// plus the spec-hash check and row counts from the file footer.
    pub fn from_decoded(
        decoded: &rps_core::parquet_io::Decoded,
        key: &str,
    ) -> Result<FeatureFrame> {
        let mut frame = FeatureFrame::from_batch(&decoded.batches, key)?;
        let get = |k: &str| {
            decoded
                .metadata
                .iter()
                .find(|(mk, _)| mk == k)
                .map(|(_, v)| v.as_str())
        };
        frame.apply_metadata(get, key)?;
        Ok(frame)
    }

    /// Checks the spec hash in file/schema metadata (when present) and takes the row counts
    /// from it. Returns whether counts were found.
    fn apply_metadata<'a>(
        &mut self,
        get: impl Fn(&str) -> Option<&'a str>,
        key: &str,
    ) -> Result<bool> {
        let sp = spec();
        if let Some(h) = get(meta::SPEC_HASH)
            && h != sp.hash
        {
            return Err(CoreError::BadFile {
                key: key.to_string(),
                reason: format!(
                    "features were computed with feature spec {h}, this build uses {} \
                     (re-run rps-transform)",
                    sp.hash
                ),
            });
        }
        let num = |k: &str| get(k).and_then(|v| v.parse::<usize>().ok());
        match (
            num(meta::ROWS_IN),
            num(meta::DROPPED_GAP),
            num(meta::DROPPED_WARMUP),
        ) {
            (Some(a), Some(b), Some(c)) => {
                (self.rows_in, self.dropped_gap, self.dropped_warmup) = (a, b, c);
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// Reads the stored features of one coin (`features/<COIN>.parquet`); `Ok(None)` if absent.
/// Fails (exit 2) when the file was computed with another feature spec.
pub async fn read_frame(store: &rps_core::Store, coin: &str) -> Result<Option<FeatureFrame>> {
    let key = rps_core::storage::layout::features(coin);
    let Some(decoded) = rps_core::parquet_io::read(store, &key).await? else {
        return Ok(None);
    };
    let mut frame = FeatureFrame::from_decoded(&decoded, &format!("{}/{key}", store.location()))?;
    if frame.is_empty() {
        frame.coin = coin.to_string();
    }
    Ok(Some(frame))
}

/// Rows per Parquet row group of a feature file. The writer holds one row group in memory,
/// so this bounds its buffers (~3 MB) whatever the number of rows.
pub const ROW_GROUP_ROWS: usize = 8_192;

/// Writer settings of feature files (see [`write_frame_to`] for why).
fn writer_props(metadata: Vec<(String, String)>) -> parquet::file::properties::WriterProperties {
    use parquet::basic::Compression;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::{EnabledStatistics, WriterProperties};
    use parquet::schema::types::ColumnPath;

    let kv = metadata
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect();
    WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::None)
        .set_column_statistics_enabled(ColumnPath::from("ts"), EnabledStatistics::Page)
        .set_column_dictionary_enabled(ColumnPath::from("coin"), true)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by("rps".to_string())
        .set_key_value_metadata(Some(kv))
        .build()
}

/// Writes one feature file into `W` a row group at a time: [`FeatureFileWriter::write_block`]
/// per block (one row group each), then [`FeatureFileWriter::finish`]. Settings as
/// [`write_frame_to`]; the footer carries the [`Counts`] given at the start.
pub struct FeatureFileWriter<W: std::io::Write + Send> {
    w: parquet::file::writer::SerializedFileWriter<W>,
    coin: String,
    coin_values: Vec<parquet::data_type::ByteArray>,
    scratch: Vec<f64>,
    defs: Vec<i16>,
    key: String,
}

impl<W: std::io::Write + Send> std::fmt::Debug for FeatureFileWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeatureFileWriter")
            .field("coin", &self.coin)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<W: std::io::Write + Send> FeatureFileWriter<W> {
    /// Starts the file of `coin` (schema and settings; `key` names it in errors).
    pub fn new(out: W, coin: &str, counts: &Counts, key: &str) -> Result<Self> {
        use parquet::arrow::{ArrowSchemaConverter, add_encoded_arrow_schema_to_metadata};
        use parquet::file::writer::SerializedFileWriter;

        let enc = |e: parquet::errors::ParquetError| encode_error(key, e);
        let metadata = counts.metadata();
        // The Arrow schema is embedded as `ArrowWriter` would, with the file metadata as
        // its schema metadata (as `to_batch` gives).
        let schema = Schema::new(feature_schema().fields().clone()).with_metadata(
            metadata
                .iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>(),
        );
        let mut props = writer_props(metadata);
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let descr = ArrowSchemaConverter::new().convert(&schema).map_err(enc)?;
        let w = SerializedFileWriter::new(out, descr.root_schema_ptr(), Arc::new(props))
            .map_err(enc)?;
        Ok(FeatureFileWriter {
            w,
            coin: coin.to_string(),
            coin_values: Vec::new(),
            scratch: Vec::new(),
            defs: Vec::new(),
            key: key.to_string(),
        })
    }

    /// Writes `block` as one row group (nothing when it is empty).
    pub fn write_block(&mut self, block: &FeatureBlock) -> Result<()> {
        use parquet::data_type::{
            ByteArray, ByteArrayType, DataType as PqType, DoubleType, Int64Type,
        };
        use parquet::file::writer::SerializedRowGroupWriter;

        /// Writes the next column of `rg` (which must be of type `T`).
        fn column<W: std::io::Write + Send, T: PqType>(
            rg: &mut SerializedRowGroupWriter<'_, W>,
            values: &[T::T],
            def_levels: Option<&[i16]>,
        ) -> parquet::errors::Result<()> {
            let mut col = rg.next_column()?.ok_or_else(|| {
                parquet::errors::ParquetError::General("more columns than the schema".into())
            })?;
            col.typed::<T>().write_batch(values, def_levels, None)?;
            col.close()
        }

        let n = block.len();
        if n == 0 {
            return Ok(());
        }
        let key = &self.key;
        let enc = |e: parquet::errors::ParquetError| encode_error(key, e);
        if self.coin_values.len() < n {
            let coin = ByteArray::from(self.coin.as_str());
            self.coin_values.resize(n, coin);
        }
        let mut rg = self.w.next_row_group().map_err(enc)?;
        column::<_, Int64Type>(&mut rg, &block.ts, None).map_err(enc)?;
        column::<_, ByteArrayType>(&mut rg, &self.coin_values[..n], None).map_err(enc)?;
        column::<_, DoubleType>(&mut rg, &block.close, None).map_err(enc)?;
        for j in 0..FEATURES.len() {
            column::<_, DoubleType>(&mut rg, block.column(j), None).map_err(enc)?;
        }
        // Targets are nullable: NaN is written as null.
        for target in [&block.target_logret_1h, &block.target_close_1h] {
            self.scratch.clear();
            self.defs.clear();
            for &x in target {
                self.defs.push(i16::from(x.is_finite()));
                if x.is_finite() {
                    self.scratch.push(x);
                }
            }
            column::<_, DoubleType>(&mut rg, &self.scratch, Some(&self.defs)).map_err(enc)?;
        }
        rg.close().map_err(enc)?;
        Ok(())
    }

    /// Writes the footer and returns the output.
    pub fn finish(self) -> Result<W> {
        let key = self.key;
        self.w.into_inner().map_err(|e| encode_error(&key, e))
    }
}

fn encode_error(key: &str, e: parquet::errors::ParquetError) -> CoreError {
    CoreError::Encode {
        key: key.to_string(),
        reason: e.to_string(),
    }
}

/// Writes a frame as a feature file into `out`, one row group at a time, and returns `out`.
/// Deterministic: the same frame gives the same bytes — the bytes [`write_blocks_to`]
/// gives for the bars the frame was computed from.
///
/// Writer settings differ from [`rps_core::parquet_io::encode`] on purpose (measured on the
/// shared file, 33k rows): nearly every feature value is a distinct float64, so compression
/// buys little and costs much — uncompressed 12.2 MB, snappy 10.5 MB for 1.6x the encode
/// time, zstd(1) with byte-stream-split 9.4 MB for 5x, zstd(3) with dictionaries 12.2 MB for
/// 14x. Dictionary encoding is off (larger and slower on such data) except for `coin`;
/// min/max statistics are kept only on `ts`, which readers filter on.
///
/// Columns go straight to Parquet's column writers (the Arrow schema is embedded as
/// `ArrowWriter` would, so Arrow readers see the same types and metadata): no Arrow arrays
/// are built, and only one row group is buffered at a time (~3 MB), whatever the number of
/// rows.
pub fn write_frame_to<W: std::io::Write + Send>(
    frame: &FeatureFrame,
    out: W,
    key: &str,
) -> Result<W> {
    let mut w = FeatureFileWriter::new(out, &frame.coin, &frame.counts(), key)?;
    let mut block = FeatureBlock::default();
    let mut start = 0;
    while start < frame.len() {
        let end = (start + ROW_GROUP_ROWS).min(frame.len());
        block.fill_from_frame(frame, start..end);
        w.write_block(&block)?;
        start = end;
    }
    w.finish()
}

/// Computes the features of `coin` block by block (`blocks`, over its bars) and writes
/// each block as one row group into `out` straight away, so no more than one block of
/// features is held. `block` is the (reused) buffer; `each` sees every block before it is
/// written. Same bytes as [`write_frame_to`] of [`compute`]`(coin, bars)`.
pub fn write_blocks_to<W: std::io::Write + Send>(
    coin: &str,
    mut blocks: Blocks<'_>,
    block: &mut FeatureBlock,
    mut each: impl FnMut(&FeatureBlock),
    out: W,
    key: &str,
) -> Result<W> {
    let mut w = FeatureFileWriter::new(out, coin, &blocks.counts(), key)?;
    while blocks.next_block(block) {
        each(block);
        w.write_block(block)?;
    }
    w.finish()
}

/// Encodes a frame as a feature file in memory: deterministic bytes for the same frame
/// (see [`write_frame_to`]).
pub fn encode_frame(frame: &FeatureFrame, key: &str) -> Result<bytes::Bytes> {
    // Room for the uncompressed size up front: the file is never copied into a doubled
    // buffer, and capacity that is never written costs no resident memory.
    let width = (frame.n_features() + 4) * 8;
    let buf = Vec::with_capacity(frame.len() * width + (1 << 16));
    write_frame_to(frame, buf, key).map(bytes::Bytes::from)
}

/// Writes a frame to `features/<COIN>.parquet`, atomically; on a local store it streams
/// to disk row group by row group ([`rps_core::parquet_io::put_streamed`]).
pub async fn write_frame(store: &rps_core::Store, frame: &FeatureFrame) -> Result<()> {
    let key = rps_core::storage::layout::features(&frame.coin);
    rps_core::parquet_io::put_streamed(store, &key, |out| {
        write_frame_to(frame, out, &key).map(drop)
    })
    .await
}

/// Computes and writes the features of `coin` to `features/<COIN>.parquet` block by block
/// ([`write_blocks_to`]), atomically. On a local store only one block of features and one
/// row group are in memory at a time (S3: the file, then one PUT).
pub async fn write_blocks(
    store: &rps_core::Store,
    coin: &str,
    blocks: Blocks<'_>,
    block: &mut FeatureBlock,
    each: impl FnMut(&FeatureBlock),
) -> Result<()> {
    let key = rps_core::storage::layout::features(coin);
    rps_core::parquet_io::put_streamed(store, &key, |out| {
        write_blocks_to(coin, blocks, block, each, out, &key).map(drop)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rps_core::schema::Source;

    fn bars(ts: impl IntoIterator<Item = i64>) -> Vec<Bar> {
        ts.into_iter()
            .enumerate()
            .map(|(i, h)| {
                let close = 100.0 + (i as f64 * 0.7).sin() * 5.0 + i as f64 * 0.01;
                Bar {
                    ts: h * HOUR_MS,
                    coin: "BTC".into(),
                    open: close,
                    high: close * 1.01,
                    low: close * 0.99,
                    close,
                    volume: Some(1000.0 + (i % 17) as f64 * 13.0),
                    cap: None,
                    points: 0,
                    source: Source::Synthetic,
                    ingested_at: 0,
                }
            })
            .collect()
    }

    #[test]
    fn the_spec_hash_is_stable_and_the_warmup_is_the_longest_window() {
        let sp = spec();
        assert_eq!(sp.hash.len(), 16);
        assert_eq!(sp.warmup, 168);
        assert_eq!(sp.names.len(), FEATURES.len());
        assert_eq!(sp.index("lag_1"), Some(0));
        assert_eq!(sp.window("logret_mean_168"), Some(169));
        let mut uniq = sp.names.clone();
        uniq.sort();
        uniq.dedup();
        assert_eq!(uniq.len(), sp.names.len(), "feature names are unique");
    }

    #[test]
    fn a_window_crossing_a_gap_is_dropped_and_counted() {
        let ts: Vec<i64> = (0..300).chain(303..600).collect();
        let f = compute("BTC", &bars(ts));
        assert_eq!(f.rows_in, 597);
        assert_eq!(f.dropped_warmup, 168);
        assert_eq!(f.dropped_gap, 168);
        assert_eq!(f.len(), 597 - 336);
        assert!(
            f.ts.iter()
                .all(|&t| !(300 * HOUR_MS..(303 + 168) * HOUR_MS).contains(&t))
        );
        let last_before = f.ts.iter().position(|&t| t == 299 * HOUR_MS).unwrap();
        assert!(f.target_close_1h[last_before].is_nan());
        assert!(f.target_close_1h[last_before - 1].is_finite());
        assert!(f.target_logret_1h.last().unwrap().is_nan());
    }

    #[test]
    fn rolling_statistics_match_a_direct_two_pass_computation() {
        let xs: Vec<f64> = (0..1000)
            .map(|i| 40_000.0 + (i as f64 * 0.37).sin() * 300.0)
            .collect();
        let w = 24;
        let mut roll = Roll::new(w);
        for i in w - 1..xs.len() {
            let s = roll.next(&xs, i);
            let win = &xs[i + 1 - w..=i];
            let m = win.iter().sum::<f64>() / w as f64;
            let v = win.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (w - 1) as f64;
            assert!((s.mean() - m).abs() <= 1e-12 * m.abs());
            assert!((s.std() - v.sqrt()).abs() <= 1e-9 * v.sqrt());
        }
    }

    #[test]
    fn a_frame_survives_an_arrow_round_trip() {
        let f = compute("BTC", &bars(0..400));
        let batch = f.to_batch().unwrap();
        let back = FeatureFrame::from_batch(&[batch], "features/BTC.parquet").unwrap();
        assert_eq!(back.ts, f.ts);
        assert_eq!(back.values, f.values);
        assert_eq!(back.rows_in, 400);
        assert_eq!(back.dropped_warmup, 168);
        assert!(back.target_close_1h.last().unwrap().is_nan());
    }

    #[test]
    fn a_feature_file_keeps_values_counts_and_the_spec_through_parquet() {
        let f = compute("BTC", &bars((0..300).chain(310..500)));
        let bytes = encode_frame(&f, "features/BTC.parquet").unwrap();
        let decoded = rps_core::parquet_io::decode(bytes, "features/BTC.parquet").unwrap();
        let back = FeatureFrame::from_decoded(&decoded, "features/BTC.parquet").unwrap();
        assert_eq!(back.values, f.values);
        assert_eq!(back.ts, f.ts);
        assert_eq!(
            (back.rows_in, back.dropped_gap, back.dropped_warmup),
            (490, 168, 168)
        );
    }

    #[test]
    fn features_of_another_spec_are_refused() {
        let f = compute("BTC", &bars(0..200));
        let batch = f.to_batch().unwrap();
        let mut md: std::collections::BTreeMap<String, String> = f.metadata().into_iter().collect();
        md.insert(meta::SPEC_HASH.into(), "0123456789abcdef".into());
        let schema = Arc::new(Schema::new(batch.schema().fields().clone()).with_metadata(md));
        let other = RecordBatch::try_new(schema, batch.columns().to_vec()).unwrap();
        let err = FeatureFrame::from_batch(&[other], "features/BTC.parquet").unwrap_err();
        assert!(
            err.to_string().contains("feature spec 0123456789abcdef"),
            "{err}"
        );
    }

    /// Bars with holes, an unusable bar and a duplicate: several segments of rows.
    fn gappy_bars() -> Vec<Bar> {
        let mut b = bars((0..700).chain(702..1500).chain(1501..2300));
        b[1000].close = f64::NAN;
        let dup = b[1800].clone();
        b.insert(1800, dup);
        b
    }

    #[test]
    fn blocks_of_any_size_give_the_rows_and_bits_of_compute() {
        let b = gappy_bars();
        let frame = compute("BTC", &b);
        assert!(
            frame.dropped_gap > 0 && frame.len() > 1000,
            "several segments"
        );
        for rows in [1, 7, 256, 333, 1000, frame.len(), usize::MAX] {
            let mut blocks = Blocks::with_block_rows(&b, rows);
            assert_eq!(blocks.counts(), frame.counts());
            let mut block = FeatureBlock::default();
            let mut at = 0;
            while blocks.next_block(&mut block) {
                assert!(block.len() <= rows);
                let r = at..at + block.len();
                assert_eq!(block.ts, frame.ts[r.clone()]);
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&block.close), bits(&frame.close[r.clone()]));
                assert_eq!(
                    bits(&block.target_logret_1h),
                    bits(&frame.target_logret_1h[r.clone()])
                );
                assert_eq!(
                    bits(&block.target_close_1h),
                    bits(&frame.target_close_1h[r.clone()])
                );
                for j in 0..FEATURES.len() {
                    let want: Vec<f64> = r.clone().map(|i| frame.row(i)[j]).collect();
                    assert_eq!(
                        bits(block.column(j)),
                        bits(&want),
                        "feature {j}, rows {r:?}"
                    );
                }
                at += block.len();
            }
            assert_eq!(at, frame.len(), "blocks of {rows} cover every row");
            assert!(block.is_empty());
        }
    }

    #[test]
    fn a_file_written_block_by_block_has_the_bytes_of_the_whole_frame() {
        let key = "features/BTC.parquet";
        for b in [
            gappy_bars(),
            bars(0..(ROW_GROUP_ROWS as i64 * 2 + 500)),
            bars(0..100),
        ] {
            let whole = encode_frame(&compute("BTC", &b), key).unwrap();
            let mut seen = 0;
            let streamed = write_blocks_to(
                "BTC",
                Blocks::new(&b),
                &mut FeatureBlock::default(),
                |blk| seen += blk.len(),
                Vec::new(),
                key,
            )
            .unwrap();
            assert_eq!(streamed, whole.to_vec());
            assert_eq!(seen, compute("BTC", &b).len());
        }
    }

    /// Accepts `left` bytes, then fails.
    #[derive(Debug)]
    struct FailAfter {
        left: usize,
    }

    impl std::io::Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if buf.len() > self.left {
                return Err(std::io::Error::other("disk full"));
            }
            self.left -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_mid_file_is_an_encode_error_naming_the_file() {
        let b = bars(0..(ROW_GROUP_ROWS as i64 * 4));
        let err = write_blocks_to(
            "BTC",
            Blocks::new(&b),
            &mut FeatureBlock::default(),
            |_| {},
            FailAfter { left: 5 << 20 },
            "features/BTC.parquet",
        )
        .unwrap_err();
        assert!(matches!(err, CoreError::Encode { .. }), "{err}");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(err.to_string().contains("features/BTC.parquet"), "{err}");
    }

    #[test]
    fn too_few_bars_give_an_empty_frame_counted_as_warmup() {
        let f = compute("BTC", &bars(0..100));
        assert!(f.is_empty());
        assert_eq!(f.dropped_warmup, 100);
    }

    #[tokio::test]
    async fn a_feature_file_streamed_to_disk_has_the_bytes_encoded_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = rps_core::Store::open(dir.path().to_str().unwrap()).unwrap();
        // More rows than one row group, so several are streamed.
        let frame = compute("ETH", &bars(0..20_000));
        assert!(frame.len() > ROW_GROUP_ROWS * 2);
        write_frame(&store, &frame).await.unwrap();
        let on_disk = store.get("features/ETH.parquet").await.unwrap().unwrap();
        let in_memory = encode_frame(&frame, "features/ETH.parquet").unwrap();
        assert_eq!(on_disk, in_memory);
        let back = read_frame(&store, "ETH").await.unwrap().unwrap();
        assert_eq!(back.values, frame.values);
        assert_eq!(back.ts, frame.ts);
    }
}
