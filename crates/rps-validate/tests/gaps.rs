//! Gaps are listed exactly: first and last missing hour and how many hours are missing.

use rps_core::time::HOUR_MS;
use rps_validate::{Gap, Status};

use crate::common::{bars, ms, validate, write};

fn gap(start: &str, end: &str, missing_hours: u64) -> Gap {
    Gap {
        start: start.into(),
        end: end.into(),
        missing_hours,
    }
}

#[test]
fn gaps_at_known_places_are_listed_exactly_and_only_warn() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = ms("2024-01-01T00:00:00Z");
    let removed = |ts: i64| {
        let h = (ts - t0) / HOUR_MS;
        (5..=7).contains(&h) || h == 100 || (150..160).contains(&h)
    };
    let b: Vec<_> = bars("BTC", "2024-01-01T00:00:00Z", 200)
        .into_iter()
        .filter(|b| !removed(b.ts))
        .collect();
    assert_eq!(b.len(), 186);
    write(dir.path(), "BTC", &b);

    let out = validate(dir.path(), &["--coins", "BTC"]);

    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let report = out.report.unwrap();
    let btc = report.coin("BTC").unwrap();
    assert_eq!(
        btc.gaps,
        vec![
            gap("2024-01-01T05:00:00Z", "2024-01-01T07:00:00Z", 3),
            gap("2024-01-05T04:00:00Z", "2024-01-05T04:00:00Z", 1),
            gap("2024-01-07T06:00:00Z", "2024-01-07T15:00:00Z", 10),
        ]
    );
    let c = btc.check("gaps").unwrap();
    assert_eq!((c.status, c.count), (Status::Warn, 3));
    assert!(c.details.contains("14 missing hours"), "{}", c.details);
    assert_eq!(btc.rows, 186);
    assert!(out.stdout.contains("gaps"), "{}", out.stdout);
}
