//! The one-screen result `rps-train` prints on stdout (logs go to stderr).

/// The result on stdout (logs go to stderr).
pub fn print(s: &rps_train::Summary) {
    let ev = &s.evaluation;
    let (m, p, r) = (
        &ev.test.model,
        &ev.test.persistence,
        &ev.test.rolling_mean_5,
    );
    rps_cli::say(format_args!(
        "model {} version {} (run {})",
        ev.model_name, s.version, s.run_id
    ));
    rps_cli::say(format_args!(
        "test ({} hours): RMSE {:.2} USD, MAE {:.2}, MAPE {:.3}%, skill {:+.4} | persistence RMSE {:.2} | rolling-mean-5 RMSE {:.2}",
        m.rows, m.rmse, m.mae, m.mape, m.skill, p.rmse, r.rmse
    ));
    for i in &ev.intervals {
        rps_cli::say(format_args!(
            "interval {:.0}%: coverage {:.1}%, mean width {:.2} USD",
            i.level * 100.0,
            i.coverage * 100.0,
            i.mean_width_usd
        ));
    }
    let g = &ev.gate;
    let num = |v: Option<f64>| {
        v.map(|x| format!("{x:.3}"))
            .unwrap_or_else(|| "none".into())
    };
    rps_cli::say(format_args!(
        "gate: {} — new RMSE {} vs champion RMSE {} (champion version {}, {} rows): {}",
        if g.promote {
            "promoted to champion"
        } else {
            "challenger, champion unchanged"
        },
        num(g.new_rmse),
        num(g.champion_rmse),
        g.champion_version.as_deref().unwrap_or("none"),
        g.rows,
        g.reason
    ));
}
