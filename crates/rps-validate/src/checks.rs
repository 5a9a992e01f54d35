//! The checks themselves: pure functions from decoded raw bars (in file order) to a
//! [`CoinReport`]. Nothing here reads, writes or decides the exit code.

use std::collections::HashSet;

use arrow::datatypes::Schema;
use chrono::{DateTime, Utc};
use rps_core::Bar;
use rps_core::time::{HOUR_MS, floor_hour, fmt_ms};
use serde::{Deserialize, Serialize};

use crate::report::{Check, CoinReport, Example, Gap, Range, Severity, Status};
use crate::{MAX_EXAMPLES, VOLUME_WINDOW, volume};

/// Thresholds of a run, recorded in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The data interval end (`--end`); staleness is only enforced when it is known.
    pub end: Option<DateTime<Utc>>,
    /// Largest tolerated share of nulls per column (0.01 = 1%).
    pub max_null_ratio: f64,
    /// How long before `end` the newest bar may open, in hours.
    pub max_staleness_hours: f64,
    /// Robust z-score above which an hourly log return is an outlier.
    pub outlier_z: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            end: None,
            max_null_ratio: 0.01,
            max_staleness_hours: 2.0,
            outlier_z: 10.0,
        }
    }
}

/// Compares a decodable file's schema with the raw-bar contract: same column names and
/// types (nullability aside, since nulls are what `null_ratio` counts). Differences warn; a
/// file that does not decode never gets here (it is bad input).
pub fn schema_check(file: &Schema, expected: &Schema) -> Check {
    let mut diffs = Vec::new();
    for f in expected.fields() {
        match file.field_with_name(f.name()) {
            Ok(g) if g.data_type() != f.data_type() => diffs.push(format!(
                "column '{}' is {}, expected {}",
                f.name(),
                g.data_type(),
                f.data_type()
            )),
            Ok(_) => {}
            Err(_) => diffs.push(format!("column '{}' missing", f.name())),
        }
    }
    for g in file.fields() {
        if expected.field_with_name(g.name()).is_err() {
            diffs.push(format!("extra column '{}' ({})", g.name(), g.data_type()));
        }
    }
    let details = if diffs.is_empty() {
        "columns and types match the raw-bar schema".to_string()
    } else {
        diffs.join("; ")
    };
    let examples = diffs
        .iter()
        .take(MAX_EXAMPLES)
        .map(|d| Example {
            row: None,
            ts: None,
            note: d.clone(),
        })
        .collect();
    Check::counted("schema", Severity::Warning, diffs.len(), details, examples)
}

fn example(bars: &[Bar], row: usize, note: String) -> Example {
    Example {
        row: Some(row),
        ts: Some(fmt_ms(bars[row].ts)),
        note,
    }
}

/// Rows (file order) for which `flag` returns a note: their count and the first examples.
fn scan(bars: &[Bar], flag: impl Fn(usize, &Bar) -> Option<String>) -> (usize, Vec<Example>) {
    let mut count = 0;
    let mut examples = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        if let Some(note) = flag(i, b) {
            count += 1;
            if examples.len() < MAX_EXAMPLES {
                examples.push(example(bars, i, note));
            }
        }
    }
    (count, examples)
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Runs every check on one coin's bars (in file order) and assembles its report.
pub fn validate_bars(
    coin: &str,
    key: &str,
    bars: &[Bar],
    schema: Check,
    settings: &Settings,
) -> CoinReport {
    // Time-ordered view, one row per hour (the first stored row of a duplicated hour), for
    // the checks that need a series: gaps, returns, volume runs.
    let mut series: Vec<usize> = (0..bars.len()).collect();
    series.sort_by_key(|&i| bars[i].ts); // stable: keeps file order within an hour
    series.dedup_by_key(|i| bars[*i].ts);

    let mut checks = vec![schema, coin_check(coin, bars), alignment_check(bars)];
    checks.extend(null_checks(bars, settings.max_null_ratio));
    checks.push(duplicates_check(bars));
    checks.push(ordering_check(bars));
    let gaps = find_gaps(&series.iter().map(|&i| bars[i].ts).collect::<Vec<_>>());
    checks.push(gaps_check(&gaps));
    checks.push(ohlc_check(bars));
    checks.push(non_negative_check(bars));
    checks.push(outlier_check(bars, &series, settings.outlier_z));
    checks.push(volume_units_check(bars, &series));
    checks.push(staleness_check(bars, settings));

    let range = match (series.first(), series.last()) {
        (Some(&a), Some(&b)) => Some(Range {
            start: fmt_ms(bars[a].ts),
            end: fmt_ms(bars[b].ts),
        }),
        _ => None,
    };
    CoinReport::new(coin, key, bars.len(), range, checks, gaps)
}

fn coin_check(coin: &str, bars: &[Bar]) -> Check {
    let (n, ex) = scan(bars, |_, b| {
        (b.coin != coin).then(|| format!("coin '{}' in the file of {coin}", b.coin))
    });
    let details = format!("{n} rows whose coin is not {coin}");
    Check::counted("coin", Severity::Error, n, details, ex)
}

fn alignment_check(bars: &[Bar]) -> Check {
    let (n, ex) = scan(bars, |_, b| {
        (b.ts.rem_euclid(HOUR_MS) != 0).then(|| format!("ts {} ms is not on the hour", b.ts))
    });
    let details = format!("{n} rows whose ts is not the start of a UTC hour");
    Check::counted("hour_alignment", Severity::Error, n, details, ex)
}

/// Null ratio per column; NaN prices are nulls (rps-core decodes null prices as NaN). The
/// limit applies to the prices, which every feature needs; the optional columns (`volume`,
/// whose features treat an unknown hour as unknown, and `cap`, which no feature reads) are
/// reported, never failed: a CSV backfill without them followed by API hours with them is a
/// normal history.
fn null_checks(bars: &[Bar], max_ratio: f64) -> Vec<Check> {
    type Get = fn(&Bar) -> Option<f64>;
    let cols: [(&str, bool, Get); 6] = [
        ("open", false, |b| Some(b.open)),
        ("high", false, |b| Some(b.high)),
        ("low", false, |b| Some(b.low)),
        ("close", false, |b| Some(b.close)),
        ("volume", true, |b| b.volume),
        ("cap", true, |b| b.cap),
    ];
    let rows = bars.len();
    cols.iter()
        .map(|&(col, optional, get)| {
            let name = format!("null_ratio.{col}");
            let (n, ex) = scan(bars, |_, b| {
                get(b)
                    .is_none_or(f64::is_nan)
                    .then(|| format!("{col} is null"))
            });
            if optional && n == rows {
                let details = format!("not provided by the source (null in all {rows} rows)");
                return Check {
                    name,
                    severity: Severity::Error,
                    status: Status::Pass,
                    count: n,
                    details,
                    examples: Vec::new(),
                };
            }
            let ratio = if rows == 0 {
                0.0
            } else {
                n as f64 / rows as f64
            };
            if optional {
                return Check {
                    name,
                    severity: Severity::Warning,
                    status: if n > 0 { Status::Warn } else { Status::Pass },
                    count: n,
                    details: format!(
                        "{n} of {rows} rows null ({}); optional column, no limit",
                        pct(ratio)
                    ),
                    examples: ex,
                };
            }
            let status = if ratio > max_ratio {
                Status::Fail
            } else if n > 0 {
                Status::Warn
            } else {
                Status::Pass
            };
            Check {
                name,
                severity: Severity::Error,
                status,
                count: n,
                details: format!(
                    "{n} of {rows} rows null ({}), limit {}",
                    pct(ratio),
                    pct(max_ratio)
                ),
                examples: ex,
            }
        })
        .collect()
}

fn duplicates_check(bars: &[Bar]) -> Check {
    let mut seen: HashSet<(&str, i64)> = HashSet::with_capacity(bars.len());
    let mut n = 0;
    let mut ex = Vec::new();
    for (i, b) in bars.iter().enumerate() {
        if !seen.insert((b.coin.as_str(), b.ts)) {
            n += 1;
            if ex.len() < MAX_EXAMPLES {
                ex.push(example(
                    bars,
                    i,
                    format!("repeats ({}, {})", b.coin, fmt_ms(b.ts)),
                ));
            }
        }
    }
    let details = format!("{n} rows repeating an earlier (coin, ts)");
    Check::counted("duplicates", Severity::Error, n, details, ex)
}

fn ordering_check(bars: &[Bar]) -> Check {
    let (n, ex) = scan(bars, |i, b| {
        (i > 0 && b.ts < bars[i - 1].ts)
            .then(|| format!("earlier than the previous row ({})", fmt_ms(bars[i - 1].ts)))
    });
    let details = format!("{n} rows earlier than the row before them (rows must ascend by ts)");
    Check::counted("ordering", Severity::Error, n, details, ex)
}

/// Missing hours between consecutive distinct timestamps (ascending).
pub fn find_gaps(ts: &[i64]) -> Vec<Gap> {
    ts.windows(2)
        .filter_map(|w| {
            let missing = (w[1] - w[0]) / HOUR_MS - 1;
            (missing > 0).then(|| Gap {
                start: fmt_ms(w[0] + HOUR_MS),
                end: fmt_ms(w[0] + missing * HOUR_MS),
                missing_hours: missing.unsigned_abs(),
            })
        })
        .collect()
}

fn gaps_check(gaps: &[Gap]) -> Check {
    let hours: u64 = gaps.iter().map(|g| g.missing_hours).sum();
    let details = match gaps.iter().max_by_key(|g| g.missing_hours) {
        Some(g) => format!(
            "{} gaps, {hours} missing hours (largest {} h from {}); listed in gaps[]",
            gaps.len(),
            g.missing_hours,
            g.start
        ),
        None => "no missing hours between the first and last bar".to_string(),
    };
    Check::counted("gaps", Severity::Warning, gaps.len(), details, Vec::new())
}

fn ohlc_problem(b: &Bar) -> Option<String> {
    let (o, h, l, c) = (b.open, b.high, b.low, b.close);
    if [o, h, l, c].iter().any(|x| x.is_nan()) {
        return None; // counted by null_ratio
    }
    if [o, h, l, c].iter().any(|x| !x.is_finite()) {
        return Some(format!("infinite price (o {o} h {h} l {l} c {c})"));
    }
    if [o, h, l, c].iter().any(|x| *x <= 0.0) {
        return Some(format!("price not > 0 (o {o} h {h} l {l} c {c})"));
    }
    if l > o.min(c) {
        return Some(format!("low {l} above open {o} or close {c}"));
    }
    if h < o.max(c) {
        return Some(format!("high {h} below open {o} or close {c}"));
    }
    None
}

fn ohlc_check(bars: &[Bar]) -> Check {
    let (n, ex) = scan(bars, |_, b| ohlc_problem(b));
    let details = format!("{n} rows violating 0 < low <= open, close <= high");
    Check::counted("ohlc", Severity::Error, n, details, ex)
}

fn non_negative_check(bars: &[Bar]) -> Check {
    let (n, ex) = scan(bars, |_, b| match (b.volume, b.cap) {
        (Some(v), _) if v < 0.0 => Some(format!("volume {v} < 0")),
        (_, Some(c)) if c < 0.0 => Some(format!("cap {c} < 0")),
        _ => None,
    });
    let details = format!("{n} rows with a negative volume or cap");
    Check::counted("non_negative", Severity::Error, n, details, ex)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Robust z-scores `0.6745 (r - median) / MAD` of hourly log returns. When the MAD is 0
/// (more than half the returns equal) the mean absolute deviation × 1.2533 stands in
/// (Iglewicz & Hoaglin); when that is 0 too every return is the median and none is an outlier.
fn outlier_check(bars: &[Bar], series: &[usize], threshold: f64) -> Check {
    // Only returns between consecutive hours: a return across a gap is not an hourly return.
    let returns: Vec<(usize, f64)> = series
        .windows(2)
        .filter_map(|w| {
            let (a, b) = (&bars[w[0]], &bars[w[1]]);
            let ok = |x: f64| x.is_finite() && x > 0.0;
            (b.ts - a.ts == HOUR_MS && ok(a.close) && ok(b.close))
                .then(|| (w[1], (b.close / a.close).ln()))
        })
        .collect();
    if returns.len() < 10 {
        let details = format!("{} hourly returns: too few to score", returns.len());
        return Check::counted("outlier_returns", Severity::Warning, 0, details, Vec::new());
    }
    let mut r: Vec<f64> = returns.iter().map(|x| x.1).collect();
    let med = median(&mut r);
    let mut dev: Vec<f64> = r.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&mut dev);
    let scale = if mad > 0.0 {
        mad / 0.6745
    } else {
        1.2533 * dev.iter().sum::<f64>() / dev.len() as f64
    };
    let mut flagged: Vec<(usize, f64, f64)> = if scale > 0.0 {
        returns
            .iter()
            .map(|&(row, x)| (row, x, (x - med) / scale))
            .filter(|(_, _, z)| z.abs() > threshold)
            .collect()
    } else {
        Vec::new()
    };
    let n = flagged.len();
    flagged.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    let ex = flagged
        .iter()
        .take(MAX_EXAMPLES)
        .map(|&(row, x, z)| example(bars, row, format!("log return {x:+.4} (robust z {z:+.1})")))
        .collect();
    let details = format!(
        "{n} of {} hourly log returns beyond robust z {threshold} (median {med:+.5}, MAD {mad:.5})",
        returns.len()
    );
    Check::counted("outlier_returns", Severity::Warning, n, details, ex)
}

fn volume_units_check(bars: &[Bar], series: &[usize]) -> Check {
    let pairs: Vec<(Option<f64>, f64)> = series
        .iter()
        .map(|&i| (bars[i].volume, bars[i].close))
        .collect();
    let flags = volume::swapped_rows(&pairs, VOLUME_WINDOW);
    let n = flags.iter().filter(|f| **f).count();
    // Swaps come in runs; show the runs (in time order) rather than single rows.
    let mut runs: Vec<(usize, usize)> = Vec::new(); // (first, last) positions in `series`
    for (p, &f) in flags.iter().enumerate() {
        if !f {
            continue;
        }
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == p => *last = p,
            _ => runs.push((p, p)),
        }
    }
    let ex = runs
        .iter()
        .take(MAX_EXAMPLES)
        .map(|&(a, b)| {
            let (ra, rb) = (series[a], series[b]);
            let note = format!(
                "{} rows to {}: volume {} USD at close {} (a coin amount?)",
                b - a + 1,
                fmt_ms(bars[rb].ts),
                bars[ra].volume.unwrap_or(f64::NAN),
                bars[ra].close
            );
            example(bars, ra, note)
        })
        .collect();
    let details = format!(
        "{n} rows in {} runs whose volume looks like a coin amount, not USD \
         (0 < volume < close in most of the ±{VOLUME_WINDOW} neighbouring rows; \
         volume columns swapped at import?)",
        runs.len()
    );
    Check::counted("volume_units", Severity::Warning, n, details, ex)
}

fn staleness_check(bars: &[Bar], s: &Settings) -> Check {
    let newest = bars.iter().map(|b| b.ts).max();
    let (Some(newest), Some(end)) = (newest, s.end) else {
        let details = match newest {
            Some(t) => format!("no --end given: newest bar {} (not checked)", fmt_ms(t)),
            None => "no bars".to_string(),
        };
        return Check::counted("staleness", Severity::Error, 0, details, Vec::new());
    };
    let end_ms = end.timestamp_millis();
    // The data interval is [start, end): a bar at or after `end` has not happened yet for
    // this run (a mistyped year, a clock-skewed source). It would make the freshness gauges
    // negative and every forecast "insufficient history", so it fails the run.
    let ahead = bars.iter().filter(|b| b.ts >= end_ms).count();
    if ahead > 0 {
        return Check {
            name: "staleness".into(),
            severity: Severity::Error,
            status: Status::Fail,
            count: ahead,
            details: format!(
                "{ahead} bar(s) at or after --end {}, the newest {}: bars from after the data \
                 interval (remove them from raw/ or fix the source)",
                fmt_ms(end_ms),
                fmt_ms(newest)
            ),
            examples: Vec::new(),
        };
    }
    let age_h = (end_ms - newest) as f64 / HOUR_MS as f64;
    // The last complete hour before `end` is the one whose bar we expect last.
    let expected_last = floor_hour(end_ms) - HOUR_MS;
    let missing = usize::try_from((expected_last - newest).max(0) / HOUR_MS).unwrap_or(0);
    let status = if age_h > s.max_staleness_hours {
        Status::Fail
    } else {
        Status::Pass
    };
    let details = format!(
        "newest bar {} opens {age_h:.1} h before --end {} (limit {} h); {missing} trailing hours missing",
        fmt_ms(newest),
        fmt_ms(end_ms),
        s.max_staleness_hours
    );
    Check {
        name: "staleness".into(),
        severity: Severity::Error,
        status,
        count: missing,
        details,
        examples: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rps_core::Source;

    const T0: i64 = 1_700_000_000_000 / HOUR_MS * HOUR_MS;

    fn bar(h: i64, close: f64) -> Bar {
        Bar {
            ts: T0 + h * HOUR_MS,
            coin: "BTC".into(),
            open: close,
            high: close * 1.01,
            low: close * 0.99,
            close,
            volume: Some(close * 100.0),
            cap: None,
            points: 0,
            source: Source::Synthetic,
            ingested_at: 0,
        }
    }

    /// A random walk with ~0.5% hourly moves (deterministic LCG noise).
    fn series(n: i64) -> Vec<Bar> {
        let mut state: u64 = 42;
        let mut close = 20_000.0;
        (0..n)
            .map(|h| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                close *= 1.0 + 0.01 * ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5);
                bar(h, close)
            })
            .collect()
    }

    fn run(bars: &[Bar], s: &Settings) -> CoinReport {
        let schema = schema_check(
            &rps_core::schema::raw_schema(),
            &rps_core::schema::raw_schema(),
        );
        validate_bars("BTC", "raw/BTC.parquet", bars, schema, s)
    }

    fn status(r: &CoinReport, name: &str) -> (Status, usize) {
        let c = r.check(name).unwrap();
        (c.status, c.count)
    }

    #[test]
    fn a_clean_series_passes_every_check_and_an_absent_cap_is_not_a_null_failure() {
        let r = run(&series(100), &Settings::default());
        assert_eq!(r.status, Status::Pass, "{r:#?}");
        assert_eq!(r.checks.len(), 17);
        assert!(
            r.check("null_ratio.cap")
                .unwrap()
                .details
                .contains("not provided")
        );
    }

    #[test]
    fn nulls_warn_up_to_the_ratio_and_fail_above_it() {
        let mut bars = series(200);
        bars[3].close = f64::NAN;
        bars[4].close = f64::NAN;
        let s = Settings::default();
        assert_eq!(
            status(&run(&bars, &s), "null_ratio.close"),
            (Status::Warn, 2)
        );
        bars[5].close = f64::NAN;
        assert_eq!(
            status(&run(&bars, &s), "null_ratio.close"),
            (Status::Fail, 3)
        );
        // A NaN price is a null, not also an OHLC violation.
        assert_eq!(status(&run(&bars, &s), "ohlc"), (Status::Pass, 0));
    }

    #[test]
    fn a_backfill_without_cap_then_api_hours_with_it_warns_and_does_not_fail() {
        // 93 % of the rows (a CSV backfill) have neither cap nor volume; the API hours after
        // it have both. No feature reads cap and volume features skip unknown hours.
        let mut bars = series(300);
        for (i, b) in bars.iter_mut().enumerate() {
            let from_api = i >= 279;
            b.cap = from_api.then_some(1e12);
            b.volume = from_api.then_some(1e9);
        }
        let r = run(&bars, &Settings::default());
        assert_eq!(status(&r, "null_ratio.cap"), (Status::Warn, 279));
        assert_eq!(status(&r, "null_ratio.volume"), (Status::Warn, 279));
        assert_ne!(r.status, Status::Fail, "{r:#?}");
        assert!(
            r.check("null_ratio.cap")
                .unwrap()
                .details
                .contains("optional")
        );
    }

    #[test]
    fn gaps_are_listed_with_their_first_and_last_missing_hour() {
        let bars: Vec<Bar> = series(20)
            .into_iter()
            .filter(|b| ![5, 6, 7, 12].contains(&((b.ts - T0) / HOUR_MS)))
            .collect();
        let gaps = find_gaps(&bars.iter().map(|b| b.ts).collect::<Vec<_>>());
        assert_eq!(
            gaps,
            vec![
                Gap {
                    start: fmt_ms(T0 + 5 * HOUR_MS),
                    end: fmt_ms(T0 + 7 * HOUR_MS),
                    missing_hours: 3
                },
                Gap {
                    start: fmt_ms(T0 + 12 * HOUR_MS),
                    end: fmt_ms(T0 + 12 * HOUR_MS),
                    missing_hours: 1
                },
            ]
        );
    }

    #[test]
    fn a_return_spike_is_an_outlier_but_not_a_failure() {
        let mut bars = series(300);
        for b in &mut bars[150..] {
            b.close *= 1.5;
            b.open = b.close;
            b.high = b.close * 1.01;
            b.low = b.close * 0.99;
        }
        let r = run(&bars, &Settings::default());
        assert_eq!(status(&r, "outlier_returns"), (Status::Warn, 1));
        assert_eq!(
            r.check("outlier_returns").unwrap().examples[0].row,
            Some(150)
        );
        assert_eq!(r.status, Status::Warn);
    }

    #[test]
    fn ohlc_violations_and_negative_volumes_fail() {
        let mut bars = series(50);
        bars[10].low = bars[10].open * 1.1;
        bars[11].high = bars[11].close * 0.5;
        bars[12].open = 0.0;
        bars[13].volume = Some(-1.0);
        let r = run(&bars, &Settings::default());
        assert_eq!(status(&r, "ohlc"), (Status::Fail, 3));
        assert_eq!(status(&r, "non_negative"), (Status::Fail, 1));
    }

    #[test]
    fn misordered_duplicated_and_off_hour_rows_each_fail_their_check() {
        let mut bars = series(30);
        bars.swap(3, 4);
        bars.push(bars[20].clone());
        bars[7].ts += 60_000;
        let r = run(&bars, &Settings::default());
        assert_eq!(status(&r, "ordering"), (Status::Fail, 2)); // the swap and the re-appended row
        assert_eq!(status(&r, "duplicates"), (Status::Fail, 1));
        assert_eq!(status(&r, "hour_alignment"), (Status::Fail, 1));
    }

    #[test]
    fn staleness_is_enforced_only_with_an_end() {
        let bars = series(10); // newest bar opens at T0 + 9 h
        let mut s = Settings::default();
        assert_eq!(status(&run(&bars, &s), "staleness"), (Status::Pass, 0));
        s.end = DateTime::from_timestamp_millis(T0 + 11 * HOUR_MS); // newest is 2 h old
        assert_eq!(status(&run(&bars, &s), "staleness"), (Status::Pass, 1));
        s.end = DateTime::from_timestamp_millis(T0 + 12 * HOUR_MS); // 3 h old
        assert_eq!(status(&run(&bars, &s), "staleness"), (Status::Fail, 2));
    }

    #[test]
    fn bars_at_or_after_the_end_fail_the_run() {
        let mut bars = series(10);
        bars.push(bar(24 * 365 * 77, 20_000.0)); // a row dated ~2099
        let s = Settings {
            end: DateTime::from_timestamp_millis(T0 + 10 * HOUR_MS),
            ..Settings::default()
        };
        let r = run(&bars, &s);
        assert_eq!(status(&r, "staleness"), (Status::Fail, 1));
        assert!(
            r.check("staleness")
                .unwrap()
                .details
                .contains("after --end")
        );
        assert_eq!(r.status, Status::Fail);
    }
}
