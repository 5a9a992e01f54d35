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
//!
//! # Modules
//! - [`mod@spec`]: the feature table, kinds, version and hash;
//! - [`engine`]: computing features over bars (whole, by blocks, or for one prediction);
//! - [`frame`]: the in-memory feature frame and block;
//! - [`mod@file`]: Parquet read/write of feature files.
//!
//! Everything public is also re-exported at the crate root (`rps_features::compute`,
//! `rps_features::FEATURES`, ...), the paths the other crates use.

#![deny(missing_docs)]

pub mod engine;
pub mod file;
pub mod frame;
pub mod spec;

pub use engine::{Blocks, Counts, compute, counts, dow_of, hour_of};
pub use file::{
    FeatureFileWriter, ROW_GROUP_ROWS, encode_frame, feature_schema, read_frame, write_blocks,
    write_blocks_to, write_frame, write_frame_to,
};
pub use frame::{FeatureBlock, FeatureFrame};
pub use spec::{
    FEATURES, FeatureDef, FeatureSpec, Kind, MODEL_INPUTS, SPEC_VERSION, TARGET_CLOSE,
    TARGET_LOGRET, meta, spec, spec_metadata,
};

/// Bars for the unit tests of the modules.
#[cfg(test)]
mod test_bars {
    use rps_core::schema::{Bar, Source};
    use rps_core::time::HOUR_MS;

    pub(crate) fn bars(ts: impl IntoIterator<Item = i64>) -> Vec<Bar> {
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

    /// Bars with holes, an unusable bar and a duplicate: several segments of rows.
    pub(crate) fn gappy_bars() -> Vec<Bar> {
        let mut b = bars((0..700).chain(702..1500).chain(1501..2300));
        b[1000].close = f64::NAN;
        let dup = b[1800].clone();
        b.insert(1800, dup);
        b
    }
}
