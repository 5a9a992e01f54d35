//! The evaluation report (JSON for machines, a small self-contained HTML page for people)
//! and its two SVG plots: the learning curve and predicted vs actual with intervals.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::TrainError;
use crate::eval::{IntervalMetrics, PointMetrics};
use crate::gate::GateDecision;
use crate::walk::WalkForward;
use rps_model::EpochStats;

/// Rows and time range of one split.
#[derive(Debug, Clone, Serialize)]
pub struct SplitInfo {
    /// Windows in the split.
    pub windows: usize,
    /// Hour of the first window's last row, RFC 3339 UTC (empty for an empty split).
    pub start: String,
    /// Hour of the last window's last row, RFC 3339 UTC (empty for an empty split).
    pub end: String,
}

/// How training went.
#[derive(Debug, Clone, Serialize)]
pub struct TrainingInfo {
    /// Epochs run (early stopping may end before `--epochs`).
    pub epochs_run: usize,
    /// The 1-based epoch whose weights were kept (lowest validation loss).
    pub best_epoch: usize,
    /// That epoch's validation loss (MSE of the standardised target).
    pub best_val_loss: f64,
    /// Whether early stopping ended training before `--epochs`.
    pub stopped_early: bool,
    /// Wall-clock seconds of the whole training.
    pub seconds: f64,
    /// Mean wall-clock seconds per epoch.
    pub seconds_per_epoch: f64,
    /// Every epoch's figures, in order.
    pub history: Vec<EpochStats>,
}

/// Test-split quality of the model and the baselines, on the same rows.
#[derive(Debug, Clone, Serialize)]
pub struct TestMetrics {
    /// The trained model.
    pub model: PointMetrics,
    /// The persistence baseline: next close = last close.
    pub persistence: PointMetrics,
    /// The baseline that predicts the feature `rolling_mean_5` (mean of the last 5 closes).
    pub rolling_mean_5: PointMetrics,
}

/// The full evaluation report.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Registered model name.
    pub model_name: String,
    /// The tracking run's id.
    pub run_id: String,
    /// When the model was created, RFC 3339 UTC (as in its metadata).
    pub created_at: String,
    /// Where the run is tracked (`MLflow at <url>` or `local registry at <dir>`).
    pub registry: String,
    /// Hash of the feature spec trained on.
    pub feature_spec_hash: String,
    /// sha256 of the feature data (hex, first 36 chars).
    pub data_digest: String,
    /// Coins trained on.
    pub coins: Vec<String>,
    /// Training parameters, as logged to the tracking server.
    pub params: BTreeMap<String, String>,
    /// Per split: `1_train`, `2_validation`, `3_calibration`, `4_test`.
    pub splits: BTreeMap<String, SplitInfo>,
    /// How training went.
    pub training: TrainingInfo,
    /// Test-split quality of the model and the baselines.
    pub test: TestMetrics,
    /// Test-split quality of each interval level, ascending.
    pub intervals: Vec<IntervalMetrics>,
    /// The promotion gate's decision.
    pub gate: GateDecision,
    /// Walk-forward folds, when requested (`--walk-forward K`).
    pub walk_forward: Option<WalkForward>,
    /// Registered version, when registration succeeded.
    pub version: Option<String>,
}

impl Evaluation {
    /// The metrics file for DVC: the evaluation table without the epoch history.
    pub fn metrics_json(&self) -> serde_json::Value {
        let intervals: BTreeMap<String, &IntervalMetrics> = self
            .intervals
            .iter()
            .map(|i| (format!("{:.0}", i.level * 100.0), i))
            .collect();
        let mut v = serde_json::json!({
            "model_name": self.model_name,
            "run_id": self.run_id,
            "test": self.test,
            "intervals": intervals,
            "gate": self.gate,
            "training": {
                "epochs_run": self.training.epochs_run,
                "best_epoch": self.training.best_epoch,
                "best_val_loss": self.training.best_val_loss,
                "seconds": self.training.seconds,
                "seconds_per_epoch": self.training.seconds_per_epoch,
            },
            "test_windows": self.test.model.rows,
        });
        if let Some(wf) = &self.walk_forward {
            v["walk_forward"] = serde_json::json!(wf);
        }
        v
    }
}

/// One test row for the predicted-vs-actual plot.
#[derive(Debug, Clone, Copy)]
pub struct PlotRow {
    /// Actual next-hour close, USD.
    pub actual: f64,
    /// Predicted close, USD.
    pub pred: f64,
    /// Lower bound of the plotted interval, USD.
    pub lower: f64,
    /// Upper bound of the plotted interval, USD.
    pub upper: f64,
}

fn plot_err(path: &Path) -> impl FnOnce(String) -> TrainError + '_ {
    move |reason| TrainError::Report {
        path: path.to_path_buf(),
        reason,
    }
}

/// Renders a plot in memory and writes it atomically ([`rps_core::fs::write`]), so a run
/// stopped mid-way never leaves half an SVG.
fn write_svg(
    path: &Path,
    draw: impl FnOnce(&mut String) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), TrainError> {
    let mut svg = String::new();
    draw(&mut svg).map_err(|e| plot_err(path)(e.to_string()))?;
    rps_core::fs::write(path, svg.as_bytes()).map_err(|e| plot_err(path)(e.to_string()))
}

/// Train and validation loss per epoch.
pub fn learning_curve_svg(history: &[EpochStats], path: &Path) -> Result<(), TrainError> {
    let draw = |svg: &mut String| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (720, 400)).into_drawing_area();
        root.fill(&WHITE)?;
        let ys = history
            .iter()
            .flat_map(|h| [h.train_loss, h.val_loss])
            .filter(|v| v.is_finite());
        let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let (lo, hi) = if lo.is_finite() {
            (lo, hi.max(lo + 1e-6))
        } else {
            (0.0, 1.0)
        };
        let pad = (hi - lo) * 0.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Learning curve (MSE of the standardised log return)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(1f64..(history.len().max(2) as f64), (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("loss")
            .draw()?;
        chart
            .draw_series(LineSeries::new(
                history.iter().map(|h| (h.epoch as f64, h.train_loss)),
                &BLUE,
            ))?
            .label("train")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart
            .draw_series(LineSeries::new(
                history.iter().map(|h| (h.epoch as f64, h.val_loss)),
                &RED,
            ))?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    write_svg(path, draw)
}

/// Actual vs predicted close over the last test hours, with the interval band.
pub fn predictions_svg(rows: &[PlotRow], level: f64, path: &Path) -> Result<(), TrainError> {
    let draw = |svg: &mut String| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (900, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        let vals = rows
            .iter()
            .flat_map(|r| [r.actual, r.pred, r.lower, r.upper])
            .filter(|v| v.is_finite());
        let (lo, hi) = vals.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
        let (lo, hi) = if lo.is_finite() {
            (lo, hi.max(lo + 1.0))
        } else {
            (0.0, 1.0)
        };
        let pad = (hi - lo) * 0.05;
        let n = rows.len().max(2) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Next-hour close on the last {} test hours ({:.0}% interval)",
                    rows.len(),
                    level * 100.0
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n, (lo - pad)..(hi + pad))?;
        chart.configure_mesh().x_desc("hour").y_desc("USD").draw()?;
        let mut band: Vec<(f64, f64)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (i as f64, r.upper))
            .collect();
        band.extend(
            rows.iter()
                .enumerate()
                .rev()
                .map(|(i, r)| (i as f64, r.lower)),
        );
        chart
            .draw_series(std::iter::once(Polygon::new(band, BLUE.mix(0.15).filled())))?
            .label("interval")
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 4), (x + 16, y + 4)], BLUE.mix(0.15).filled())
            });
        chart
            .draw_series(LineSeries::new(
                rows.iter().enumerate().map(|(i, r)| (i as f64, r.actual)),
                &BLACK,
            ))?
            .label("actual")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK));
        chart
            .draw_series(LineSeries::new(
                rows.iter().enumerate().map(|(i, r)| (i as f64, r.pred)),
                &BLUE,
            ))?
            .label("predicted")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    write_svg(path, draw)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// The walk-forward section: one row per fold and the means.
fn walk_html(wf: &WalkForward) -> String {
    let rows: String = wf
        .folds
        .iter()
        .map(|f| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{} – {}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{:+.4}</td><td>{:.2}</td></tr>",
                f.fold,
                f.train_windows,
                esc(&f.test_start),
                esc(&f.test_end),
                f.test_windows,
                f.model.rmse,
                f.model.mae,
                fmt_opt(f.model.directional_accuracy),
                f.model.skill,
                f.persistence.rmse
            )
        })
        .collect();
    format!(
        "<h2>Walk-forward ({} expanding-window folds)</h2>\n<p>Each fold retrains on every window before its test block (standardisation re-fitted on its training windows) and is scored with persistence on the same hours.</p>\n<table><tr><th>fold</th><th>train windows</th><th>test hours</th><th>rows</th><th>RMSE (USD)</th><th>MAE (USD)</th><th>direction</th><th>skill</th><th>persistence RMSE</th></tr>{rows}<tr><td><b>mean</b></td><td></td><td></td><td></td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{:+.4}</td><td>{:.2}</td></tr></table>\n",
        wf.folds.len(),
        wf.mean_rmse,
        wf.mean_mae,
        fmt_opt(wf.mean_directional_accuracy),
        wf.mean_skill,
        wf.mean_persistence_rmse
    )
}

/// A self-contained HTML page: tables plus the two SVGs inlined.
pub fn html(ev: &Evaluation, learning_svg: &str, pred_svg: &str) -> String {
    let row = |name: &str, m: &PointMetrics| {
        format!(
            "<tr><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.3}%</td><td>{}</td><td>{:+.4}</td></tr>",
            esc(name),
            m.rmse,
            m.mae,
            m.mape,
            fmt_opt(m.directional_accuracy),
            m.skill
        )
    };
    let intervals: String = ev
        .intervals
        .iter()
        .map(|i| {
            format!(
                "<tr><td>{:.0}%</td><td>{:.5}</td><td>{:.1}%</td><td>{:.2}</td></tr>",
                i.level * 100.0,
                i.q_logret,
                i.coverage * 100.0,
                i.mean_width_usd
            )
        })
        .collect();
    let splits: String = ev
        .splits
        .iter()
        .map(|(k, s)| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(k),
                s.windows,
                esc(&s.start),
                esc(&s.end)
            )
        })
        .collect();
    let params: String = ev
        .params
        .iter()
        .map(|(k, v)| format!("<tr><td>{}</td><td>{}</td></tr>", esc(k), esc(v)))
        .collect();
    let g = &ev.gate;
    let num = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
    let walk = ev.walk_forward.as_ref().map(walk_html).unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RPS evaluation — {name} {run}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:960px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.ok{{color:#070}}.no{{color:#a50}}</style></head><body>
<h1>Next-hour close forecast — evaluation</h1>
<p>Model <b>{name}</b>{version}, run <code>{run}</code>, created {created}, coins {coins}, registry {registry}.<br>
Feature spec <code>{spec}</code>, data digest <code>{digest}</code>.</p>
<h2>Test split (same rows for every forecaster)</h2>
<table><tr><th>forecaster</th><th>RMSE (USD)</th><th>MAE (USD)</th><th>MAPE</th><th>direction</th><th>skill vs persistence</th></tr>
{m}{p}{r}</table>
{walk}<h2>Conformal intervals (calibrated on the calibration split)</h2>
<table><tr><th>level</th><th>q (|log-return error|)</th><th>test coverage</th><th>mean width (USD)</th></tr>{intervals}</table>
<h2>Promotion gate</h2>
<p class="{gclass}"><b>{decision}</b>: {reason}<br>new model RMSE {new} vs champion {champ} (version {cv}) on {grows} re-scored test rows.</p>
<h2>Learning curve</h2>{learning}
<h2>Predicted vs actual</h2>{pred}
<h2>Splits (chronological)</h2>
<table><tr><th>split</th><th>windows</th><th>first hour</th><th>last hour</th></tr>{splits}</table>
<p>Training: {epochs} epochs (best {best}, {spe:.2} s/epoch, {secs:.1} s){early}.</p>
<h2>Parameters</h2><table>{params}</table>
</body></html>
"#,
        name = esc(&ev.model_name),
        version = ev
            .version
            .as_ref()
            .map(|v| format!(" version {}", esc(v)))
            .unwrap_or_default(),
        run = esc(&ev.run_id),
        created = esc(&ev.created_at),
        coins = esc(&ev.coins.join(",")),
        registry = esc(&ev.registry),
        spec = esc(&ev.feature_spec_hash),
        digest = esc(&ev.data_digest),
        m = row("LSTM (this model)", &ev.test.model),
        p = row("persistence", &ev.test.persistence),
        r = row("rolling mean of 5 closes", &ev.test.rolling_mean_5),
        walk = walk,
        gclass = if g.promote { "ok" } else { "no" },
        decision = if g.promote {
            "promoted to champion"
        } else {
            "challenger (not promoted)"
        },
        reason = esc(&g.reason),
        new = num(g.new_rmse),
        champ = num(g.champion_rmse),
        cv = esc(g.champion_version.as_deref().unwrap_or("–")),
        grows = g.rows,
        learning = learning_svg,
        pred = pred_svg,
        epochs = ev.training.epochs_run,
        best = ev.training.best_epoch,
        spe = ev.training.seconds_per_epoch,
        secs = ev.training.seconds,
        early = if ev.training.stopped_early {
            ", stopped early"
        } else {
            ""
        },
    )
}
