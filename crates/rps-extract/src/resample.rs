//! Resampling of price observations into UTC-hour OHLC bars (crates/rps-core/src/exit.rs): open = first,
//! high = max, low = min, close = last, points = count. An hour without an observation is a
//! gap and produces no bar; nothing is interpolated.

use rps_core::time::floor_hour;
use rps_core::{Bar, Source};

/// One price observation (a LiveCoinWatch `history` point, or a synthetic tick).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    /// When the price was observed, ms since the epoch (UTC).
    pub ts: i64,
    /// Price in USD.
    pub rate: f64,
    /// Volume in USD as the source reports it at that moment (LiveCoinWatch: rolling 24 h).
    pub volume: Option<f64>,
    /// Market capitalisation in USD.
    pub cap: Option<f64>,
}

/// Builds hourly bars from observations in any order. Observations with the same timestamp
/// keep their input order (the later one in the input is the later observation). `volume` and
/// `cap` are the last known values within the hour.
pub fn resample(
    coin: &str,
    mut obs: Vec<Observation>,
    source: Source,
    ingested_at: i64,
) -> Vec<Bar> {
    // Stable sort: equal timestamps stay in arrival order, so "last" is well defined.
    if !obs.is_sorted_by_key(|o| o.ts) {
        obs.sort_by_key(|o| o.ts);
    }
    let mut bars: Vec<Bar> = Vec::new();
    for o in &obs {
        let hour = floor_hour(o.ts);
        match bars.last_mut() {
            Some(bar) if bar.ts == hour => {
                bar.high = bar.high.max(o.rate);
                bar.low = bar.low.min(o.rate);
                bar.close = o.rate;
                bar.points += 1;
                if o.volume.is_some() {
                    bar.volume = o.volume;
                }
                if o.cap.is_some() {
                    bar.cap = o.cap;
                }
            }
            _ => bars.push(Bar {
                ts: hour,
                coin: coin.to_string(),
                open: o.rate,
                high: o.rate,
                low: o.rate,
                close: o.rate,
                volume: o.volume,
                cap: o.cap,
                points: 1,
                source,
                ingested_at,
            }),
        }
    }
    bars
}

#[cfg(test)]
mod tests {
    use super::*;
    use rps_core::time::HOUR_MS;

    fn ob(ts: i64, rate: f64) -> Observation {
        Observation {
            ts,
            rate,
            volume: Some(rate * 10.0),
            cap: None,
        }
    }

    #[test]
    fn observations_become_ohlc_bars_of_their_utc_hour() {
        let h = 10 * HOUR_MS;
        let obs = vec![
            ob(h + 5, 100.0),
            ob(h + 600_000, 105.0),
            ob(h + 1_200_000, 95.0),
            ob(h + HOUR_MS - 1, 101.0),
        ];
        let bars = resample("BTC", obs, Source::Livecoinwatch, 0);
        assert_eq!(bars.len(), 1);
        let b = &bars[0];
        assert_eq!(
            (b.ts, b.open, b.high, b.low, b.close, b.points),
            (h, 100.0, 105.0, 95.0, 101.0, 4)
        );
        assert_eq!(
            b.volume,
            Some(1010.0),
            "volume is the last value of the hour"
        );
    }

    #[test]
    fn an_hour_without_observations_stays_a_gap() {
        let obs = vec![ob(0, 1.0), ob(2 * HOUR_MS + 1, 2.0)];
        let bars = resample("BTC", obs, Source::Livecoinwatch, 0);
        assert_eq!(
            bars.iter().map(|b| b.ts).collect::<Vec<_>>(),
            vec![0, 2 * HOUR_MS]
        );
    }

    #[test]
    fn unordered_observations_give_the_same_bars_as_ordered_ones() {
        let ordered: Vec<_> = (0..100)
            .map(|i| ob(i * 400_000, 100.0 + (i % 7) as f64))
            .collect();
        let mut shuffled = ordered.clone();
        shuffled.reverse();
        shuffled.swap(3, 50);
        assert_eq!(
            resample("BTC", ordered, Source::Synthetic, 0),
            resample("BTC", shuffled, Source::Synthetic, 0)
        );
    }

    #[test]
    fn an_observation_on_the_hour_opens_the_new_bar() {
        let bars = resample(
            "BTC",
            vec![ob(HOUR_MS - 1, 1.0), ob(HOUR_MS, 2.0)],
            Source::Synthetic,
            0,
        );
        assert_eq!(bars.len(), 2);
        assert_eq!((bars[1].ts, bars[1].open), (HOUR_MS, 2.0));
    }
}
