//! The one-screen result `rps-train` prints on stdout (logs go to stderr).

/// The result on stdout (logs go to stderr): the candidate a persistence champion replaced
/// first, when there is one.
pub fn print(s: &rps_train::Summary) {
    if let Some(c) = &s.candidate {
        print_one(c);
        rps_cli::say(
            "no model beats persistence (no change) on the gate rows: the persistence kind is the champion",
        );
    }
    print_one(s);
}

fn print_one(s: &rps_train::Summary) {
    let ev = &s.evaluation;
    let (m, p, r) = (
        &ev.test.model,
        &ev.test.persistence,
        &ev.test.rolling_mean_5,
    );
    rps_cli::say(format_args!(
        "model {} version {} (kind {}, run {})",
        ev.model_name,
        s.version,
        ev.params.get("model_kind").map_or("?", String::as_str),
        s.run_id
    ));
    rps_cli::say(format_args!(
        "test ({} hours): RMSE {:.2} USD, MAE {:.2}, MAPE {:.3}%, skill {:+.4} | persistence RMSE {:.2} | rolling-mean-5 RMSE {:.2}",
        m.rows,
        m.rmse,
        m.mae,
        m.mape,
        // A skill that rounds to zero prints as +0.0000, not -0.0000 (persistence scores
        // its own baseline up to float rounding).
        if m.skill.abs() < 5e-5 { 0.0 } else { m.skill },
        p.rmse,
        r.rmse
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
        "gate: {} — new RMSE {} vs champion RMSE {}, persistence RMSE {} (champion version {}, {} rows): {}",
        if g.promote {
            "promoted to champion"
        } else {
            "challenger, champion unchanged"
        },
        num(g.new_rmse),
        num(g.champion_rmse),
        num(g.persistence_rmse),
        g.champion_version.as_deref().unwrap_or("none"),
        g.rows,
        g.reason
    ));
}
