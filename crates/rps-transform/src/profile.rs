//! The data profile: one self-contained HTML page (no external URL — charts are inline SVG,
//! styles inline) rendered from `templates/profile.html` with minijinja.
//!
//! Counts, missing, mean, std, min and max are exact over every feature row. Quartiles,
//! histograms and correlations use every row up to [`SAMPLE_ROWS`] in total and an evenly
//! strided sample per coin beyond that (the page says so), so profiling 100 coins does not
//! hold 100 coins of features in memory.

use rps_core::Bar;
use rps_core::time::HOUR_MS;
use rps_features::{self as features, FeatureBlock, TARGET_CLOSE, TARGET_LOGRET};

use crate::{CoinSummary, Result, Summary, TransformError, charts, validation};

/// Rows kept in total for quartiles, histograms and correlations.
pub const SAMPLE_ROWS: usize = 100_000;
/// Price points per coin in the close-price chart.
const PRICE_POINTS: usize = 1_500;
/// Coins with a close-price chart (the rest are listed in the overview only).
const MAX_PRICE_CHARTS: usize = 12;
const HIST_BINS: usize = 30;

/// Sampled rows per coin when `n_coins` coins are profiled.
pub fn sample_per_coin(n_coins: usize) -> usize {
    (SAMPLE_ROWS / n_coins.max(1)).max(1_000)
}

/// Profiled columns: close, the features in spec order, the targets.
pub fn columns() -> Vec<String> {
    let mut c = vec!["close".to_string()];
    c.extend(features::spec().names.iter().cloned());
    c.push(TARGET_LOGRET.into());
    c.push(TARGET_CLOSE.into());
    c
}

/// Gap-free runs of (ts, close) points of one coin.
type PriceRuns = Vec<Vec<(i64, f64)>>;

/// Exact, mergeable running statistics of one column (Welford / Chan).
#[derive(Debug, Clone)]
pub struct ColumnAcc {
    count: usize,
    missing: usize,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Default for ColumnAcc {
    fn default() -> Self {
        ColumnAcc {
            count: 0,
            missing: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl ColumnAcc {
    fn push(&mut self, x: f64) {
        if !x.is_finite() {
            self.missing += 1;
            return;
        }
        self.count += 1;
        let d = x - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (x - self.mean);
        self.min = self.min.min(x);
        self.max = self.max.max(x);
    }

    fn merge(&mut self, o: &ColumnAcc) {
        self.missing += o.missing;
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            let missing = self.missing;
            *self = o.clone();
            self.missing = missing;
            return;
        }
        let n = (self.count + o.count) as f64;
        let d = o.mean - self.mean;
        self.mean += d * o.count as f64 / n;
        self.m2 += o.m2 + d * d * self.count as f64 * o.count as f64 / n;
        self.count += o.count;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    fn std(&self) -> f64 {
        if self.count > 1 {
            (self.m2 / (self.count - 1) as f64).sqrt()
        } else {
            f64::NAN
        }
    }
}

/// What one coin contributes to the profile (built in the coin's worker).
#[derive(Debug)]
pub struct CoinPiece {
    coin: String,
    acc: Vec<ColumnAcc>,
    /// Sampled values per column (the same rows in every column).
    sample: Vec<Vec<f64>>,
    rows: usize,
    /// Close over time, down-sampled, split into gap-free runs.
    price: PriceRuns,
    summary: CoinSummary,
    /// Every `stride`-th feature row is sampled.
    stride: usize,
}

impl CoinPiece {
    /// Starts the piece of one coin from its raw bars and summary; its `summary.rows_out`
    /// feature rows are then added block by block with [`CoinPiece::add_block`], of which
    /// at most `sample` rows are kept (evenly strided).
    pub fn start(coin: &str, bars: &[Bar], summary: &CoinSummary, sample: usize) -> CoinPiece {
        let n = summary.rows_out;
        let cols = columns().len();
        let pstride = bars.len().div_ceil(PRICE_POINTS).max(1);
        let mut price: PriceRuns = Vec::new();
        let mut prev: Option<i64> = None;
        for b in bars.iter().step_by(pstride).filter(|b| b.close.is_finite()) {
            // A jump longer than the stride means hours are missing: start a new line.
            if prev.is_none_or(|p| b.ts - p > pstride as i64 * HOUR_MS) {
                price.push(Vec::new());
            }
            if let Some(run) = price.last_mut() {
                run.push((b.ts, b.close));
            }
            prev = Some(b.ts);
        }
        let stride = n.div_ceil(sample.max(1)).max(1);
        CoinPiece {
            coin: coin.to_string(),
            acc: vec![ColumnAcc::default(); cols],
            // Not `vec![Vec::with_capacity(..); cols]`: a clone does not keep the capacity.
            sample: (0..cols)
                .map(|_| Vec::with_capacity(n.div_ceil(stride)))
                .collect(),
            rows: 0,
            price,
            summary: summary.clone(),
            stride,
        }
    }

    /// Adds the next feature rows: every value to the statistics, and the sampled rows
    /// (every `stride`-th row of the coin) to the sample.
    pub fn add_block(&mut self, block: &FeatureBlock) {
        let nf = features::FEATURES.len();
        let first = self.rows;
        // The first row of this block that is sampled.
        let skip = (self.stride - first % self.stride) % self.stride;
        for (c, (acc, sample)) in self.acc.iter_mut().zip(&mut self.sample).enumerate() {
            let col: &[f64] = match c {
                0 => &block.close,
                c if c <= nf => block.column(c - 1),
                c if c == nf + 1 => &block.target_logret_1h,
                _ => &block.target_close_1h,
            };
            col.iter().for_each(|&x| acc.push(x));
            sample.extend(col.iter().skip(skip).step_by(self.stride));
        }
        self.rows += block.len();
    }
}

/// The profile being accumulated over the coins of a run.
#[derive(Debug)]
pub struct Profile {
    acc: Vec<ColumnAcc>,
    sample: Vec<Vec<f64>>,
    rows: usize,
    prices: Vec<(String, PriceRuns)>,
    coins: Vec<(String, CoinSummary)>,
}

impl Default for Profile {
    fn default() -> Self {
        Self::new()
    }
}

/// One row of the statistics table (numbers pre-formatted).
#[derive(Debug, serde::Serialize)]
struct StatRow {
    name: String,
    count: usize,
    missing: usize,
    mean: String,
    std: String,
    min: String,
    q25: String,
    q50: String,
    q75: String,
    max: String,
}

#[derive(Debug, serde::Serialize)]
struct Chart {
    name: String,
    svg: String,
}

#[derive(Debug, serde::Serialize)]
struct CoinRow {
    coin: String,
    #[serde(flatten)]
    s: CoinSummary,
}

#[derive(Debug, serde::Serialize)]
struct Page<'a> {
    spec_hash: &'a str,
    spec_version: u32,
    warmup: usize,
    n_features: usize,
    coins: Vec<CoinRow>,
    n_coins: usize,
    rows_in: usize,
    rows_out: usize,
    dropped_gap: usize,
    dropped_warmup: usize,
    gaps: usize,
    missing_hours: i64,
    first_ts: String,
    last_ts: String,
    sampled: bool,
    sample_rows: usize,
    stats: Vec<StatRow>,
    histograms: Vec<Chart>,
    heatmap: String,
    prices: Vec<Chart>,
    prices_omitted: usize,
    validation: Option<&'a validation::Report>,
    warnings: &'a [String],
}

/// The template, kept as a file so the page layout is read and edited as HTML.
const TEMPLATE: &str = include_str!("../templates/profile.html");

/// Formats a statistic for the table.
fn num(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else if v == 0.0 {
        "0".into()
    } else if !(1e-3..1e6).contains(&v.abs()) {
        format!("{v:.4e}")
    } else {
        format!("{v:.6}")
    }
}

/// Quantile `q` of sorted values, linear interpolation (pandas' default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Pearson correlation over the rows where both values are finite.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let pairs = || {
        a.iter()
            .zip(b)
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let n = pairs().count() as f64;
    if n < 2.0 {
        return f64::NAN;
    }
    let (ma, mb) = pairs().fold((0.0, 0.0), |(sa, sb), (x, y)| (sa + x, sb + y));
    let (ma, mb) = (ma / n, mb / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in pairs() {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        f64::NAN
    } else {
        sab / (saa * sbb).sqrt()
    }
}

impl Profile {
    /// An empty profile, before any coin is added.
    pub fn new() -> Profile {
        Profile {
            acc: vec![ColumnAcc::default(); columns().len()],
            sample: vec![Vec::new(); columns().len()],
            rows: 0,
            prices: Vec::new(),
            coins: Vec::new(),
        }
    }

    /// Adds one coin (call in a fixed coin order for a deterministic page).
    pub fn add(&mut self, piece: CoinPiece) {
        for (a, b) in self.acc.iter_mut().zip(&piece.acc) {
            a.merge(b);
        }
        for (s, p) in self.sample.iter_mut().zip(piece.sample) {
            s.extend(p);
        }
        self.rows += piece.rows;
        self.prices.push((piece.coin.clone(), piece.price));
        self.coins.push((piece.coin, piece.summary));
    }

    /// Renders the page.
    pub fn render(&self, summary: &Summary, report: Option<&validation::Report>) -> Result<String> {
        let render_err = |reason: String| TransformError::Render { reason };
        let cols = columns();
        let sp = features::spec();
        let sample_rows = self.sample.first().map_or(0, Vec::len);

        let stats = cols
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let mut sorted: Vec<f64> = self.sample[c]
                    .iter()
                    .copied()
                    .filter(|x| x.is_finite())
                    .collect();
                sorted.sort_by(f64::total_cmp);
                let a = &self.acc[c];
                let present = a.count > 0;
                StatRow {
                    name: name.clone(),
                    count: a.count,
                    missing: a.missing,
                    mean: num(if present { a.mean } else { f64::NAN }),
                    std: num(a.std()),
                    min: num(if present { a.min } else { f64::NAN }),
                    q25: num(quantile(&sorted, 0.25)),
                    q50: num(quantile(&sorted, 0.5)),
                    q75: num(quantile(&sorted, 0.75)),
                    max: num(if present { a.max } else { f64::NAN }),
                }
            })
            .collect();

        // Feature columns are 1..=n_features in `columns()`.
        let feat = |j: usize| &self.sample[j + 1];
        let histograms = sp
            .names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                charts::histogram(name, feat(j), HIST_BINS)
                    .map(|svg| Chart {
                        name: name.clone(),
                        svg,
                    })
                    .map_err(render_err)
            })
            .collect::<Result<Vec<_>>>()?;
        let nf = sp.names.len();
        let mut corr = vec![vec![f64::NAN; nf]; nf];
        for (i, j) in (0..nf).flat_map(|i| (0..=i).map(move |j| (i, j))) {
            let c = if i == j {
                // A column correlates with itself unless it is constant or empty.
                if pearson(feat(i), feat(i)).is_nan() {
                    f64::NAN
                } else {
                    1.0
                }
            } else {
                pearson(feat(i), feat(j))
            };
            corr[i][j] = c;
            corr[j][i] = c;
        }
        let heatmap = charts::heatmap(&sp.names, &corr).map_err(render_err)?;
        let prices = self
            .prices
            .iter()
            .take(MAX_PRICE_CHARTS)
            .map(|(coin, runs)| {
                charts::price_chart(coin, runs)
                    .map(|svg| Chart {
                        name: coin.clone(),
                        svg,
                    })
                    .map_err(render_err)
            })
            .collect::<Result<Vec<_>>>()?;

        let first_ts = self
            .coins
            .iter()
            .filter_map(|(_, s)| s.first_ts.clone())
            .min()
            .unwrap_or_default();
        let last_ts = self
            .coins
            .iter()
            .filter_map(|(_, s)| s.last_ts.clone())
            .max()
            .unwrap_or_default();
        let page = Page {
            spec_hash: &sp.hash,
            spec_version: sp.version,
            warmup: sp.warmup,
            n_features: nf,
            n_coins: self.coins.len(),
            coins: self
                .coins
                .iter()
                .map(|(c, s)| CoinRow {
                    coin: c.clone(),
                    s: s.clone(),
                })
                .collect(),
            rows_in: summary.rows_in,
            rows_out: summary.rows_out,
            dropped_gap: summary.dropped_gap,
            dropped_warmup: summary.dropped_warmup,
            gaps: self.coins.iter().map(|(_, s)| s.gaps).sum(),
            missing_hours: self.coins.iter().map(|(_, s)| s.missing_hours).sum(),
            first_ts,
            last_ts,
            sampled: sample_rows < self.rows,
            sample_rows,
            stats,
            histograms,
            heatmap,
            prices,
            prices_omitted: self.prices.len().saturating_sub(MAX_PRICE_CHARTS),
            validation: report,
            warnings: &summary.warnings,
        };
        let mut env = minijinja::Environment::new();
        env.add_template("profile.html", TEMPLATE)
            .map_err(|e| render_err(e.to_string()))?;
        let tmpl = env
            .get_template("profile.html")
            .map_err(|e| render_err(e.to_string()))?;
        tmpl.render(minijinja::value::Serde(&page))
            .map_err(|e| render_err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_column_statistics_equal_one_pass_over_all_values() {
        let xs: Vec<f64> = (0..100)
            .map(|i| (i as f64 * 0.3).sin() * 10.0 + 3.0)
            .collect();
        let mut whole = ColumnAcc::default();
        xs.iter().for_each(|&x| whole.push(x));
        let (mut a, mut b) = (ColumnAcc::default(), ColumnAcc::default());
        xs[..37].iter().for_each(|&x| a.push(x));
        xs[37..].iter().for_each(|&x| b.push(x));
        b.push(f64::NAN);
        a.merge(&b);
        assert_eq!(a.count, 100);
        assert_eq!(a.missing, 1);
        assert!((a.mean - whole.mean).abs() < 1e-12);
        assert!((a.std() - whole.std()).abs() < 1e-12);
    }

    fn piece_in_blocks(bars: &[Bar], rows: usize, sample: usize) -> CoinPiece {
        let mut blocks = features::Blocks::with_block_rows(bars, rows);
        let c = blocks.counts();
        let summary = CoinSummary {
            rows_in: c.rows_in,
            rows_out: c.rows_out,
            dropped_gap: c.dropped_gap,
            dropped_warmup: c.dropped_warmup,
            gaps: 0,
            missing_hours: 0,
            first_ts: None,
            last_ts: None,
            output: String::new(),
        };
        let mut piece = CoinPiece::start("BTC", bars, &summary, sample);
        let mut block = FeatureBlock::default();
        while blocks.next_block(&mut block) {
            piece.add_block(&block);
        }
        piece
    }

    #[test]
    fn a_piece_samples_every_strided_row_and_is_the_same_whatever_the_block_size() {
        let bars: Vec<Bar> = (0..2_000)
            .filter(|h| !(900..905).contains(h))
            .map(|h| Bar {
                ts: h * HOUR_MS,
                coin: String::new(),
                open: 1.0,
                high: 2.0 + (h % 5) as f64,
                low: 1.0,
                close: 1.5 + (h as f64 * 0.1).sin(),
                volume: Some((h % 11) as f64),
                cap: None,
                points: 0,
                source: rps_core::Source::Synthetic,
                ingested_at: 0,
            })
            .collect();
        let frame = features::compute("BTC", &bars);
        let whole = piece_in_blocks(&bars, usize::MAX, 100);
        let stride = frame.len().div_ceil(100);
        assert!(stride > 1);
        let want: Vec<f64> = frame.close.iter().copied().step_by(stride).collect();
        assert_eq!(
            whole.sample[0], want,
            "close of rows 0, stride, 2 stride, ..."
        );
        assert_eq!(whole.rows, frame.len());
        for rows in [1, 13, 256, 1_000] {
            let p = piece_in_blocks(&bars, rows, 100);
            let bits = |v: &Vec<Vec<f64>>| -> Vec<Vec<u64>> {
                v.iter()
                    .map(|c| c.iter().map(|x| x.to_bits()).collect())
                    .collect()
            };
            assert_eq!(bits(&p.sample), bits(&whole.sample), "blocks of {rows}");
            assert_eq!(format!("{:?}", p.acc), format!("{:?}", whole.acc));
            assert_eq!(p.rows, whole.rows);
        }
    }

    #[test]
    fn quartiles_interpolate_like_pandas() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&v, 0.25), 1.75);
        assert_eq!(quantile(&v, 0.5), 2.5);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn perfectly_related_columns_correlate_to_one() {
        let a = [1.0, 2.0, 3.0, f64::NAN];
        let b = [2.0, 4.0, 6.0, 1.0];
        assert!((pearson(&a, &b) - 1.0).abs() < 1e-12);
        assert!(pearson(&[1.0, 1.0], &[1.0, 2.0]).is_nan());
    }
}
