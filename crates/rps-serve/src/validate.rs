//! Request validation beyond types: coin codes, prices, and the shape of a bar window (on the
//! hour, ascending, consecutive, long enough). Every rule failure is a 422 naming the field.

use rps_core::time::{HOUR_MS, fmt_ms};
use rps_core::{Bar, Source};

use crate::api::BarIn;
use crate::error::ApiError;

/// Longest accepted window: a month of hours is far more than any model here needs.
pub const MAX_BARS: usize = 5_000;

/// The coin-code rule, as the OpenAPI schema states it.
pub const COIN_PATTERN: &str = "^[A-Za-z0-9_]{1,16}$";

/// Largest accepted price, USD: far above any coin's, far enough below `f64::MAX` that a
/// forecast and its interval bounds stay finite numbers.
pub const MAX_PRICE: f64 = 1e12;
/// Largest accepted volume, USD.
pub const MAX_VOLUME: f64 = 1e18;

/// Normalises a coin code (`btc` → `BTC`); refuses anything that is not 1–16 ASCII letters,
/// digits or underscores ([`COIN_PATTERN`]).
pub fn coin_code(raw: &str, field: &str) -> Result<String, ApiError> {
    if raw.is_empty()
        || raw.len() > 16
        || !raw
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
    {
        return Err(ApiError::invalid(format!(
            "{field}: '{}' is not a coin code (1-16 letters, digits or '_', e.g. BTC)",
            rps_core::redact::clip(raw, 40)
        )));
    }
    Ok(raw.to_ascii_uppercase())
}

/// A field of a bar, formatted (`bars[3].close`) only when an error names it.
#[derive(Debug, Clone, Copy)]
struct BarField(usize, &'static str);

impl std::fmt::Display for BarField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bars[{}].{}", self.0, self.1)
    }
}

/// A price must be a positive finite number no larger than [`MAX_PRICE`].
pub fn price(v: f64, field: impl std::fmt::Display) -> Result<f64, ApiError> {
    if v.is_finite() && v > 0.0 && v <= MAX_PRICE {
        Ok(v)
    } else {
        Err(ApiError::invalid(format!(
            "{field}: must be a positive finite price of at most {MAX_PRICE:e} USD, got {v}"
        )))
    }
}

/// An hour timestamp must be on the hour.
pub fn on_the_hour(ts: i64, field: impl std::fmt::Display) -> Result<i64, ApiError> {
    if ts.rem_euclid(HOUR_MS) == 0 {
        Ok(ts)
    } else {
        Err(ApiError::invalid(format!(
            "{field}: {} is not on the hour (bars are keyed by their UTC hour open time)",
            fmt_ms(ts)
        )))
    }
}

/// Checks a client's window and turns it into bars for the feature code.
///
/// `min_bars` is the model's warm-up + lookback: a shorter window cannot produce a forecast.
pub fn window(
    coin: &str,
    input: &[BarIn],
    min_bars: usize,
    now_ms: i64,
) -> Result<Vec<Bar>, ApiError> {
    if input.len() < min_bars {
        return Err(ApiError::invalid(format!(
            "bars: need at least {min_bars} consecutive hourly bars (feature warm-up + model \
             lookback, see GET /model), got {}",
            input.len()
        )));
    }
    if input.len() > MAX_BARS {
        return Err(ApiError::invalid(format!(
            "bars: at most {MAX_BARS} bars per request, got {}",
            input.len()
        )));
    }
    let mut out = Vec::with_capacity(input.len());
    for (i, b) in input.iter().enumerate() {
        let f = |name: &'static str| BarField(i, name);
        let ts = on_the_hour(b.ts.0, f("ts"))?;
        let open = price(b.open, f("open"))?;
        let high = price(b.high, f("high"))?;
        let low = price(b.low, f("low"))?;
        let close = price(b.close, f("close"))?;
        // Relative tolerance: exports round prices to cents, so bounds may be off by a hair.
        let tol = 1e-9 * high;
        if low > open.min(close) + tol || high < open.max(close) - tol {
            return Err(ApiError::invalid(format!(
                "bars[{i}]: low {low} and high {high} must bracket open {open} and close {close}"
            )));
        }
        let volume = match b.volume {
            Some(v) if !(v.is_finite() && (0.0..=MAX_VOLUME).contains(&v)) => {
                return Err(ApiError::invalid(format!(
                    "{}: must be a non-negative finite volume of at most {MAX_VOLUME:e}, got {v}",
                    f("volume")
                )));
            }
            v => v,
        };
        if let Some(prev) = out.last().map(|p: &Bar| p.ts)
            && ts <= prev
        {
            return Err(ApiError::invalid(format!(
                "bars[{i}].ts: {} is not after bars[{}].ts {}: bars must be sorted ascending \
                 with one bar per hour",
                fmt_ms(ts),
                i - 1,
                fmt_ms(prev)
            )));
        }
        out.push(Bar {
            ts,
            coin: coin.to_string(),
            open,
            high,
            low,
            close,
            volume,
            cap: None,
            points: 0,
            // The feature code ignores the source; a client's bars are live observations.
            source: Source::Livecoinwatch,
            ingested_at: now_ms,
        });
    }
    // Gaps are checked once the order is known to be right, so a swapped pair is reported
    // as disorder rather than as two gaps.
    for (i, w) in out.windows(2).enumerate() {
        let (prev, ts) = (w[0].ts, w[1].ts);
        if ts != prev + HOUR_MS {
            return Err(ApiError::invalid(format!(
                "bars[{}].ts: {} missing hour(s) after bars[{i}] ({} -> {}): bars must be \
                 consecutive hours",
                i + 1,
                (ts - prev) / HOUR_MS - 1,
                fmt_ms(prev),
                fmt_ms(ts)
            )));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Ts;

    const T0: i64 = 1_646_092_800_000;

    fn bars(n: usize) -> Vec<BarIn> {
        (0..n)
            .map(|i| BarIn {
                ts: Ts(T0 + i as i64 * HOUR_MS),
                open: 100.0,
                high: 101.0,
                low: 99.0,
                close: 100.5,
                volume: Some(10.0),
            })
            .collect()
    }

    fn detail(r: Result<Vec<Bar>, ApiError>) -> String {
        r.unwrap_err().detail
    }

    #[test]
    fn a_consecutive_window_becomes_bars_of_the_coin() {
        let out = window("BTC", &bars(5), 5, 0).unwrap();
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|b| b.coin == "BTC"));
        assert_eq!(out[4].ts - out[0].ts, 4 * HOUR_MS);
    }

    #[test]
    fn a_too_short_window_names_the_minimum() {
        let d = detail(window("BTC", &bars(4), 5, 0));
        assert!(d.contains("at least 5"), "{d}");
    }

    #[test]
    fn unsorted_duplicate_and_gapped_windows_are_refused() {
        let mut b = bars(6);
        b.swap(2, 3);
        assert!(detail(window("BTC", &b, 5, 0)).contains("sorted"));
        let mut b = bars(6);
        b[3].ts = b[2].ts;
        assert!(detail(window("BTC", &b, 5, 0)).contains("sorted"));
        let mut b = bars(6);
        for x in &mut b[3..] {
            x.ts.0 += 2 * HOUR_MS;
        }
        assert!(detail(window("BTC", &b, 5, 0)).contains("2 missing hour(s)"));
    }

    #[test]
    fn bad_prices_and_volumes_name_the_field() {
        type Case = (fn(&mut BarIn), &'static str);
        let cases: [Case; 6] = [
            (|b| b.close = -1.0, "bars[2].close"),
            (|b| b.open = 0.0, "bars[2].open"),
            (|b| b.high = f64::INFINITY, "bars[2].high"),
            (|b| b.low = f64::NAN, "bars[2].low"),
            (|b| b.volume = Some(-3.0), "bars[2].volume"),
            (|b| b.low = 100.6, "bars[2]: low"),
        ];
        for (mutate, field) in cases {
            let mut b = bars(5);
            mutate(&mut b[2]);
            let d = detail(window("BTC", &b, 5, 0));
            assert!(d.starts_with(field), "{field}: {d}");
        }
    }

    #[test]
    fn times_off_the_hour_are_refused() {
        let mut b = bars(5);
        b[1].ts.0 += 60_000;
        assert!(detail(window("BTC", &b, 5, 0)).contains("not on the hour"));
    }

    #[test]
    fn coin_codes_are_normalised_and_junk_refused() {
        assert_eq!(coin_code("btc", "coin").unwrap(), "BTC");
        // As strict as the OpenAPI pattern: no trimming of what a client sent.
        assert!(coin_code(" btc ", "coin").is_err());
        assert!(coin_code("BTC/USD", "coin").is_err());
        assert!(coin_code("", "coin").is_err());
        assert!(coin_code(&"X".repeat(17), "coin").is_err());
    }
}
