//! The promotion gate: a new model becomes `champion` only if it beats the current champion
//! on the same recent rows, with the champion re-scored now (its old metrics are not
//! trusted: data, features or code may have changed since).

use rps_model::Forecaster;
use serde::Serialize;

use crate::data::Prepared;
use crate::eval::rmse;

/// What the gate decided, and the numbers it decided on.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GateDecision {
    /// Whether the new model becomes champion.
    pub promote: bool,
    /// `--force-promote` was given.
    pub forced: bool,
    /// Why, in words (the numbers compared, or why there was nothing to compare).
    pub reason: String,
    /// New model's RMSE (USD) on the gate rows.
    pub new_rmse: Option<f64>,
    /// Champion's RMSE (USD) on the same rows, re-scored.
    pub champion_rmse: Option<f64>,
    /// The champion's registry version, if there is a champion.
    pub champion_version: Option<String>,
    /// Test rows both models could score.
    pub rows: usize,
}

/// Both models' RMSE in USD on the test windows the champion can also score (its lookback
/// may differ). Returns `(new, champion, rows)`.
pub fn rescore(
    new: &Forecaster,
    champion: &Forecaster,
    prep: &Prepared,
    test: &[usize],
) -> (f64, f64, usize) {
    let (mut a, mut p_new, mut p_champ) = (Vec::new(), Vec::new(), Vec::new());
    for &i in test {
        let w = prep.windows[i];
        let f = &prep.frames[w.coin];
        if !champion.window_fits(f, w.row) {
            continue;
        }
        let (Ok(c), Ok(n)) = (
            champion.predict_logrets(f, &[w.row]),
            new.predict_logrets(f, &[w.row]),
        ) else {
            continue;
        };
        let last = f.close[w.row];
        a.push(f.target_close_1h[w.row]);
        p_champ.push(last * c[0].exp());
        p_new.push(last * n[0].exp());
    }
    (rmse(&p_new, &a), rmse(&p_champ, &a), a.len())
}
