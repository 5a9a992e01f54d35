//! The promotion gate: a new model becomes `champion` only if it beats the current champion
//! on the same recent rows, with the champion re-scored now (its old metrics are not
//! trusted: data, features or code may have changed since), and only on enough rows to tell
//! (`--min-gate-rows`, a week of hours by default: on 20 rows either model wins by luck).

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

/// The comparison of a new model with the champion it was re-scored against: whether to
/// promote and why, in words that carry the numbers.
pub fn judge(
    new_rmse: f64,
    champion_rmse: f64,
    rows: usize,
    min_rows: usize,
    champion_version: &str,
) -> (bool, String) {
    let numbers = format!(
        "new RMSE {new_rmse:.3} vs champion v{champion_version} RMSE {champion_rmse:.3} on \
         {rows} rows"
    );
    if rows == 0 {
        (
            true,
            format!("champion v{champion_version} could not score any test row"),
        )
    } else if rows < min_rows {
        (
            false,
            format!(
                "not promoted: only {rows} gate rows, fewer than --min-gate-rows {min_rows} \
                 ({numbers}); train on more data, or --force-promote"
            ),
        )
    } else if new_rmse < champion_rmse {
        (true, format!("{numbers}: the new model is better"))
    } else {
        (false, format!("{numbers}: the new model is not better"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_better_model_is_promoted_only_on_enough_rows() {
        let (promote, why) = judge(100.0, 120.0, 500, 168, "3");
        assert!(promote, "{why}");
        let (promote, why) = judge(100.0, 120.0, 20, 168, "3");
        assert!(!promote, "20 rows decide nothing: {why}");
        assert!(
            why.contains("only 20 gate rows") && why.contains("168"),
            "{why}"
        );
        assert!(why.contains("100.000") && why.contains("120.000"), "{why}");
        let (promote, _) = judge(130.0, 120.0, 500, 168, "3");
        assert!(!promote);
    }
}
