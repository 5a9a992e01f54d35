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

/// The chart type every plot here draws on: f64 by f64 into an SVG string.
type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// Draws the legend (series labels) and writes the drawing out.
fn finish<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    root: &DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
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
        finish(&mut chart, &root)
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
        finish(&mut chart, &root)
    };
    write_svg(path, draw)
}

/// The rolling coverage of each interval level over the test hours (`series`: level and the
/// coverage of each window of `window` consecutive test rows), against its nominal level.
pub fn coverage_svg(
    series: &[(f64, Vec<f64>)],
    window: usize,
    path: &Path,
) -> Result<(), TrainError> {
    let draw = |svg: &mut String| -> Result<(), Box<dyn std::error::Error>> {
        let root = SVGBackend::with_string(svg, (900, 380)).into_drawing_area();
        root.fill(&WHITE)?;
        let lo = series
            .iter()
            .flat_map(|(l, s)| s.iter().copied().chain([*l]))
            .filter(|v| v.is_finite())
            .fold(1.0f64, f64::min);
        let n = series
            .iter()
            .map(|(_, s)| s.len())
            .max()
            .unwrap_or(0)
            .max(2) as f64;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Coverage of the last {window} test hours, rolling, against nominal (dashed)"
                ),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..n, (lo - 0.05).max(0.0)..1.0)?;
        chart
            .configure_mesh()
            .x_desc("test hour (window end)")
            .y_desc("coverage")
            .draw()?;
        let colours = [BLUE, RED, GREEN, MAGENTA, CYAN];
        for (k, (level, s)) in series.iter().enumerate() {
            let colour = colours[k % colours.len()];
            chart
                .draw_series(LineSeries::new(
                    s.iter().enumerate().map(|(i, v)| (i as f64, *v)),
                    &colour,
                ))?
                .label(format!("{:.0}%", level * 100.0))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
            chart.draw_series(DashedLineSeries::new(
                [(0.0, *level), (n, *level)],
                6,
                4,
                colour.mix(0.6).into(),
            ))?;
        }
        finish(&mut chart, &root)
    };
    write_svg(path, draw)
}

/// The page template, kept as a file so the layout is read and edited as HTML. Its name
/// ends in `.html`, so minijinja escapes every value for HTML except the plots (`|safe`).
const TEMPLATE: &str = include_str!("../templates/evaluation.html");

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// The page's values, formatted; the template only lays them out.
#[derive(Serialize)]
struct Page<'a> {
    name: &'a str,
    version: Option<&'a str>,
    run: &'a str,
    created: &'a str,
    coins: String,
    registry: &'a str,
    spec: &'a str,
    digest: &'a str,
    forecasters: [ForecasterRow<'a>; 3],
    walk: Option<WalkView>,
    intervals: Vec<IntervalRow>,
    gate: GateView<'a>,
    learning_svg: &'a str,
    pred_svg: &'a str,
    coverage_svg: &'a str,
    splits: Vec<SplitRow<'a>>,
    training: TrainingView,
    params: Vec<(&'a str, &'a str)>,
}

#[derive(Serialize)]
struct ForecasterRow<'a> {
    name: &'a str,
    rmse: String,
    mae: String,
    mape: String,
    direction: String,
    skill: String,
}

impl<'a> ForecasterRow<'a> {
    fn new(name: &'a str, m: &PointMetrics) -> Self {
        ForecasterRow {
            name,
            rmse: format!("{:.2}", m.rmse),
            mae: format!("{:.2}", m.mae),
            mape: format!("{:.3}%", m.mape),
            direction: fmt_opt(m.directional_accuracy),
            skill: format!("{:+.4}", m.skill),
        }
    }
}

/// The walk-forward section: one row per fold and the means.
#[derive(Serialize)]
struct WalkView {
    folds: Vec<FoldRow>,
    mean: FoldRow,
}

#[derive(Serialize, Default)]
struct FoldRow {
    fold: usize,
    train_windows: usize,
    test_start: String,
    test_end: String,
    rows: usize,
    rmse: String,
    mae: String,
    direction: String,
    skill: String,
    persistence_rmse: String,
}

impl WalkView {
    fn new(wf: &WalkForward) -> Self {
        let figures = |rmse: f64, mae: f64, direction: Option<f64>, skill: f64, p: f64| FoldRow {
            rmse: format!("{rmse:.2}"),
            mae: format!("{mae:.2}"),
            direction: fmt_opt(direction),
            skill: format!("{skill:+.4}"),
            persistence_rmse: format!("{p:.2}"),
            ..FoldRow::default()
        };
        let folds = wf
            .folds
            .iter()
            .map(|f| FoldRow {
                fold: f.fold,
                train_windows: f.train_windows,
                test_start: f.test_start.clone(),
                test_end: f.test_end.clone(),
                rows: f.test_windows,
                ..figures(
                    f.model.rmse,
                    f.model.mae,
                    f.model.directional_accuracy,
                    f.model.skill,
                    f.persistence.rmse,
                )
            })
            .collect();
        let mean = figures(
            wf.mean_rmse,
            wf.mean_mae,
            wf.mean_directional_accuracy,
            wf.mean_skill,
            wf.mean_persistence_rmse,
        );
        WalkView { folds, mean }
    }
}

#[derive(Serialize)]
struct IntervalRow {
    level: String,
    q: String,
    coverage: String,
    width: String,
    score: String,
    worst: String,
    miss_run: usize,
    by_vol: String,
    static_coverage: String,
    static_width: String,
    static_score: String,
}

#[derive(Serialize)]
struct GateView<'a> {
    promote: bool,
    reason: &'a str,
    new_rmse: String,
    champion_rmse: String,
    champion_version: &'a str,
    rows: usize,
}

#[derive(Serialize)]
struct SplitRow<'a> {
    name: &'a str,
    windows: usize,
    start: &'a str,
    end: &'a str,
}

#[derive(Serialize)]
struct TrainingView {
    epochs: usize,
    best: usize,
    seconds_per_epoch: String,
    seconds: String,
    stopped_early: bool,
}

impl<'a> Page<'a> {
    fn new(
        ev: &'a Evaluation,
        learning_svg: &'a str,
        pred_svg: &'a str,
        coverage_svg: &'a str,
    ) -> Self {
        let g = &ev.gate;
        let num = |v: Option<f64>| v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into());
        let t = &ev.training;
        Page {
            name: &ev.model_name,
            version: ev.version.as_deref(),
            run: &ev.run_id,
            created: &ev.created_at,
            coins: ev.coins.join(","),
            registry: &ev.registry,
            spec: &ev.feature_spec_hash,
            digest: &ev.data_digest,
            forecasters: [
                ForecasterRow::new("LSTM (this model)", &ev.test.model),
                ForecasterRow::new("persistence", &ev.test.persistence),
                ForecasterRow::new("rolling mean of 5 closes", &ev.test.rolling_mean_5),
            ],
            walk: ev.walk_forward.as_ref().map(WalkView::new),
            intervals: ev
                .intervals
                .iter()
                .map(|i| IntervalRow {
                    level: format!("{:.0}%", i.level * 100.0),
                    q: format!("{:.5}", i.q_logret),
                    coverage: format!("{:.1}%", i.coverage * 100.0),
                    width: format!("{:.2}", i.mean_width_usd),
                    score: format!("{:.2}", i.interval_score_usd),
                    worst: i
                        .worst_720h_coverage
                        .map_or_else(|| "n/a".into(), |w| format!("{:.1}%", w * 100.0)),
                    miss_run: i.longest_miss_run_hours,
                    by_vol: i
                        .coverage_by_vol_tercile
                        .iter()
                        .map(|c| format!("{:.1}%", c * 100.0))
                        .collect::<Vec<_>>()
                        .join(", "),
                    static_coverage: format!("{:.1}%", i.baseline_static.coverage * 100.0),
                    static_width: format!("{:.2}", i.baseline_static.mean_width_usd),
                    static_score: format!("{:.2}", i.baseline_static.interval_score_usd),
                })
                .collect(),
            gate: GateView {
                promote: g.promote,
                reason: &g.reason,
                new_rmse: num(g.new_rmse),
                champion_rmse: num(g.champion_rmse),
                champion_version: g.champion_version.as_deref().unwrap_or("–"),
                rows: g.rows,
            },
            learning_svg,
            pred_svg,
            coverage_svg,
            splits: ev
                .splits
                .iter()
                .map(|(name, s)| SplitRow {
                    name,
                    windows: s.windows,
                    start: &s.start,
                    end: &s.end,
                })
                .collect(),
            training: TrainingView {
                epochs: t.epochs_run,
                best: t.best_epoch,
                seconds_per_epoch: format!("{:.2}", t.seconds_per_epoch),
                seconds: format!("{:.1}", t.seconds),
                stopped_early: t.stopped_early,
            },
            params: ev
                .params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
        }
    }
}

/// A self-contained HTML page: tables plus the two SVGs inlined (they are our own plots,
/// passed through unescaped; every other value is escaped by the template).
pub fn html(
    ev: &Evaluation,
    learning_svg: &str,
    pred_svg: &str,
    coverage_svg: &str,
) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.add_template("evaluation.html", TEMPLATE)?;
    let mut page = env
        .get_template("evaluation.html")?
        .render(minijinja::value::Serde(&Page::new(
            ev,
            learning_svg,
            pred_svg,
            coverage_svg,
        )))?;
    // minijinja drops the template's final newline.
    page.push('\n');
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> PointMetrics {
        PointMetrics {
            rmse: 274.495,
            mae: 215.671,
            mape: 0.4912,
            directional_accuracy: Some(0.512),
            skill: -0.0025,
            rows: 410,
        }
    }

    fn evaluation(free_text: &str) -> Evaluation {
        Evaluation {
            model_name: free_text.into(),
            run_id: "e61444e30aba411114df0567cfd57fe4".into(),
            created_at: "2025-01-01T00:00:00Z".into(),
            registry: format!("local registry at {free_text}"),
            feature_spec_hash: "abc".into(),
            data_digest: "def".into(),
            coins: vec!["BTC".into()],
            params: [("note".to_string(), free_text.to_string())].into(),
            splits: BTreeMap::new(),
            training: TrainingInfo {
                epochs_run: 3,
                best_epoch: 2,
                best_val_loss: 0.9,
                stopped_early: true,
                seconds: 1.26,
                seconds_per_epoch: 0.4166,
                history: Vec::new(),
            },
            test: TestMetrics {
                model: metrics(),
                persistence: metrics(),
                rolling_mean_5: metrics(),
            },
            intervals: vec![IntervalMetrics {
                level: 0.9,
                q_logret: 0.0123456,
                coverage: 0.978,
                mean_width_usd: 1216.891,
                interval_score_usd: 1402.5,
                worst_720h_coverage: Some(0.93),
                longest_miss_run_hours: 3,
                coverage_by_vol_tercile: vec![0.95, 0.9, 0.86],
                baseline_static: Default::default(),
            }],
            gate: GateDecision {
                promote: true,
                reason: free_text.into(),
                new_rmse: Some(274.495),
                ..GateDecision::default()
            },
            walk_forward: None,
            version: Some("7".into()),
        }
    }

    #[test]
    fn free_text_reaching_the_report_is_escaped_but_the_plots_are_not() {
        let evil = "<script>alert(\"x\")</script>";
        let page = html(
            &evaluation(evil),
            "<svg id=\"lc\"></svg>",
            "<svg id=\"pv\"></svg>",
            "<svg id=\"cv\"></svg>",
        )
        .expect("the template renders");
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("<svg id=\"lc\"></svg>") && page.contains("<svg id=\"pv\"></svg>"));
        assert!(page.contains("<svg id=\"cv\"></svg>"));
    }

    #[test]
    fn the_report_shows_the_figures_as_before() {
        let page = html(&evaluation("rps-forecaster"), "", "", "").expect("the template renders");
        for part in [
            "<b>rps-forecaster</b> version 7, run <code>e61444e30aba411114df0567cfd57fe4</code>",
            "<tr><td>LSTM (this model)</td><td>274.50</td><td>215.67</td><td>0.491%</td><td>51.2%</td><td>-0.0025</td></tr>",
            "<tr><td>90%</td><td>97.8%</td><td>1216.89</td><td>1402.50</td><td>93.0%</td><td>3</td><td>95.0%, 90.0%, 86.0%</td><td>0.01235</td><td>0.0%</td><td>0.00</td><td>0.00</td></tr>",
            "<p class=\"ok\"><b>promoted to champion</b>: rps-forecaster<br>new model RMSE 274.50 vs champion – (version –) on 0 re-scored test rows.</p>",
            "Training: 3 epochs (best 2, 0.42 s/epoch, 1.3 s), stopped early.",
            "<tr><td>note</td><td>rps-forecaster</td></tr>",
        ] {
            assert!(page.contains(part), "missing {part} in {page}");
        }
        assert!(page.ends_with("</body></html>\n"));
    }
}
