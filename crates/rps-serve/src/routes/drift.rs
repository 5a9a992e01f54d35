//! `GET /drift`: the drift detectors' state as JSON (the same numbers as the gauges).

use axum::Json;
use axum::extract::State;

use crate::api::{ConceptOut, DriftOut};
use crate::state::AppState;
use rps_monitor::drift::PsiSummary;

/// Data drift (PSI per feature of recent inputs vs the model's reference) and concept drift
/// (Page-Hinkley on realised forecast errors).
#[utoipa::path(get, path = "/drift", tag = "monitoring",
    responses((status = 200, description = "Drift detector state", body = DriftOut)))]
pub async fn drift(State(state): State<AppState>) -> Json<DriftOut> {
    let (summary, rows) = state.psi();
    let settings = state.settings();
    let data_ready = summary.is_some();
    let data = summary.unwrap_or(PsiSummary {
        threshold: settings.psi_threshold,
        share_needed: settings.drift_share,
        rows,
        ..PsiSummary::default()
    });
    let concept = state.with_monitor(|m| ConceptOut {
        drift: m.ph.drift(),
        statistic: m.ph.statistic(),
        lambda: m.ph.lambda(),
        samples: m.ph.samples(),
    });
    Json(DriftOut {
        data,
        data_ready,
        min_rows: settings.drift_min_rows,
        concept,
    })
}
