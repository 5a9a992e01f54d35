//! The promotion gate: a new model becomes `champion` only if it beats the current champion
//! on the same recent rows, with the champion re-scored now (its old metrics are not
//! trusted: data, features or code may have changed since), and only on enough rows to tell
//! (`--min-gate-rows`, a week of hours by default: on 20 rows either model wins by luck).
//!
//! Persistence (the next close equals the current one) is the floor: a learnable model whose
//! RMSE on the gate rows is not below persistence's is never promoted, whatever the
//! champion. When neither the new model nor the champion beats persistence, rps-train makes
//! the persistence kind the champion ([`GateDecision::persistence_champion`]).

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
    /// Persistence's RMSE (USD) on the same rows.
    pub persistence_rmse: Option<f64>,
    /// Test rows both models could score.
    pub rows: usize,
    /// Neither the new model nor the champion beats persistence, and the champion is not the
    /// persistence kind already: the persistence kind should become the champion.
    pub persistence_champion: bool,
}

/// The RMSEs in USD on the test windows the champion can also score (its lookback may
/// differ).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rescored {
    /// The new model's.
    pub new: f64,
    /// The champion's.
    pub champion: f64,
    /// Persistence's (the next close equals the current one).
    pub persistence: f64,
    /// Rows scored.
    pub rows: usize,
}

/// Scores the new model, the champion and persistence on the same test windows.
pub fn rescore(
    new: &Forecaster,
    champion: &Forecaster,
    prep: &Prepared,
    test: &[usize],
) -> Rescored {
    let (mut a, mut p_new, mut p_champ, mut p_none) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
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
        p_none.push(last);
    }
    Rescored {
        new: rmse(&p_new, &a),
        champion: rmse(&p_champ, &a),
        persistence: rmse(&p_none, &a),
        rows: a.len(),
    }
}

/// Whether a learnable model fails the floor: its RMSE is not below persistence's.
pub fn below_floor(rmse: f64, persistence: f64) -> bool {
    // NaN (nothing scored) counts as failing too.
    rmse.partial_cmp(&persistence) != Some(std::cmp::Ordering::Less)
}

/// The comparison of a new model with the champion it was re-scored against and with
/// persistence on the same rows: whether to promote and why, in words that carry the
/// numbers. `learnable`: the new model is not the persistence kind itself (which is the
/// floor, so it is only compared with the champion).
pub fn judge(
    r: &Rescored,
    min_rows: usize,
    champion_version: &str,
    learnable: bool,
) -> (bool, String) {
    let (new_rmse, champion_rmse, rows) = (r.new, r.champion, r.rows);
    let numbers = format!(
        "new RMSE {new_rmse:.3} vs champion v{champion_version} RMSE {champion_rmse:.3}, \
         persistence RMSE {:.3} on {rows} rows",
        r.persistence
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
    } else if learnable && below_floor(new_rmse, r.persistence) {
        (
            false,
            format!("{numbers}: the new model is not better than persistence (no change)"),
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

    fn scored(new: f64, champion: f64, persistence: f64, rows: usize) -> Rescored {
        Rescored {
            new,
            champion,
            persistence,
            rows,
        }
    }

    #[test]
    fn a_better_model_is_promoted_only_on_enough_rows() {
        let (promote, why) = judge(&scored(100.0, 120.0, 110.0, 500), 168, "3", true);
        assert!(promote, "{why}");
        let (promote, why) = judge(&scored(100.0, 120.0, 110.0, 20), 168, "3", true);
        assert!(!promote, "20 rows decide nothing: {why}");
        assert!(
            why.contains("only 20 gate rows") && why.contains("168"),
            "{why}"
        );
        assert!(why.contains("100.000") && why.contains("120.000"), "{why}");
        let (promote, _) = judge(&scored(130.0, 120.0, 140.0, 500), 168, "3", true);
        assert!(!promote);
    }

    #[test]
    fn a_model_no_better_than_persistence_is_never_promoted() {
        // Better than the champion, but not better than "no change".
        let (promote, why) = judge(&scored(100.0, 120.0, 99.5, 500), 168, "3", true);
        assert!(!promote, "{why}");
        assert!(
            why.contains("not better than persistence") && why.contains("99.500"),
            "{why}"
        );
        // A tie is not better either.
        assert!(!judge(&scored(100.0, 120.0, 100.0, 500), 168, "3", true).0);
        // The persistence kind itself is the floor: it is judged against the champion only.
        let (promote, why) = judge(&scored(99.5, 120.0, 99.5, 500), 168, "3", false);
        assert!(promote, "{why}");
    }
}
