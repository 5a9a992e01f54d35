//! The feature engine: the one implementation of the formulas of [`mod@crate::spec`], turning
//! hourly bars into feature rows — all at once into a [`FeatureFrame`] ([`compute`], which
//! rps-serve also runs on the bars of one prediction), or a bounded [`FeatureBlock`] at a
//! time ([`Blocks`], which rps-transform streams to files). See the crate docs for rows,
//! gaps and targets.

use std::f64::consts::TAU;
use std::ops::Range;
use std::sync::LazyLock;

use rps_core::schema::Bar;
use rps_core::time::HOUR_MS;

use crate::file::ROW_GROUP_ROWS;
use crate::frame::{FeatureBlock, FeatureFrame};
use crate::spec::{FEATURES, Kind, meta, spec, spec_metadata};

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
                Kind::ParkinsonMean(w) => (Series::Parkinson, w),
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
    parkinson: Vec<f64>,
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
            parkinson: Vec::new(),
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
            parkinson,
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
        parkinson.clear();
        parkinson.extend(seg.iter().map(parkinson_variance));
        let (close, logret, volume, parkinson) =
            (&close[..], &logret[..], &volume[..], &parkinson[..]);
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
                    Series::Parkinson => parkinson,
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
                    Kind::Parkinson => col.zip(rows).for_each(|(o, i)| *o = parkinson[i]),
                    Kind::CloseMean(_) | Kind::LogRetMean(_) | Kind::ParkinsonMean(_) => {
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
    Parkinson,
}

/// Parkinson's range-based variance of a bar, `ln(high / low)² / (4 ln 2)`; NaN when the
/// range is not a price range (`low <= 0`, `high < low`).
fn parkinson_variance(b: &Bar) -> f64 {
    if b.low > 0.0 && b.high >= b.low {
        let r = (b.high / b.low).ln();
        r * r / (4.0 * std::f64::consts::LN_2)
    } else {
        f64::NAN
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_bars::{bars, gappy_bars};

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
    fn too_few_bars_give_an_empty_frame_counted_as_warmup() {
        let f = compute("BTC", &bars(0..100));
        assert!(f.is_empty());
        assert_eq!(f.dropped_warmup, 100);
    }
}
