//! The HTML profile: well-formed, self-contained, one histogram per feature, the
//! correlation heatmap, the statistics table and the validation checks.

use quick_xml::events::Event;
use rps_features as features;
use rps_validate::checks::Settings;
use rps_validate::report::{Check, CoinReport, Report, Severity};

use crate::support::{bars_at, config, fixture_bars, put_raw};

/// Parses the whole page as XML (start/end tags must match) and returns, in order, the
/// `class` of every `figure` and the number of `svg` elements inside each figure.
fn parse(html: &str) -> Vec<(String, String, usize)> {
    let mut reader = quick_xml::Reader::from_str(html);
    reader.config_mut().check_end_names = true;
    let mut figures = Vec::new();
    let mut in_figure = false;
    loop {
        match reader.read_event() {
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                let name = e.name().as_ref().to_vec();
                if name == b"figure" {
                    let attr = |k: &[u8]| {
                        e.try_get_attribute(k)
                            .unwrap()
                            .map(|a| String::from_utf8(a.value.to_vec()).unwrap())
                            .unwrap_or_default()
                    };
                    let id = if attr(b"data-feature").is_empty() {
                        attr(b"data-coin")
                    } else {
                        attr(b"data-feature")
                    };
                    figures.push((attr(b"class"), id, 0));
                    in_figure = true;
                } else if name == b"svg" && in_figure {
                    figures.last_mut().unwrap().2 += 1;
                }
            }
            Ok(Event::End(e)) if e.name().as_ref() == b"figure" => in_figure = false,
            Ok(_) => {}
            Err(e) => panic!("not well-formed at byte {}: {e}", reader.buffer_position()),
        }
    }
    figures
}

#[tokio::test]
async fn the_profile_is_one_well_formed_offline_page_with_every_chart() {
    let dir = tempfile::tempdir().unwrap();
    put_raw(dir.path(), "BTC", &fixture_bars()).await;
    // A second coin with a hole, to see gaps counted in the overview.
    put_raw(dir.path(), "ETH", &bars_at("ETH", (0..400).chain(410..700))).await;
    let report = dir.path().join("validation.json");
    let checks = vec![
        Check::counted("null_ratio", Severity::Error, 0, "no nulls".into(), vec![]),
        Check::counted(
            "volume_units",
            Severity::Warning,
            20143,
            "swapped, see https://example.org".into(),
            vec![],
        ),
    ];
    let btc = CoinReport::new("BTC", "raw/BTC.parquet", 33259, None, checks, vec![]);
    Report::new("./data", Settings::default(), vec![btc])
        .write(&report)
        .unwrap();
    let html_path = dir.path().join("reports/profile.html");
    let mut cfg = config(dir.path());
    cfg.profile = Some(html_path.clone());
    cfg.validation_report = Some(report);
    rps_transform::run(cfg).await.unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();

    assert!(
        !html.to_ascii_lowercase().contains("http"),
        "no URL of any kind"
    );
    assert!(!html.contains("<script") && !html.contains("<link") && !html.contains("<img"));
    let figures = parse(&html);
    let names = &features::spec().names;
    let hists: Vec<&str> = figures
        .iter()
        .filter(|f| f.0 == "histogram")
        .map(|f| f.1.as_str())
        .collect();
    assert_eq!(
        hists,
        names.iter().map(String::as_str).collect::<Vec<_>>(),
        "one per feature, in order"
    );
    assert!(
        figures.iter().all(|f| f.2 == 1),
        "each figure holds exactly one inline svg"
    );
    let heat = figures.iter().filter(|f| f.0 == "heatmap").count();
    assert_eq!(heat, 1);
    // The heatmap has a cell per feature pair.
    let start = html.find("<figure class=\"heatmap\">").unwrap();
    let end = start + html[start..].find("</figure>").unwrap();
    assert!(html[start..end].matches("<rect").count() >= names.len() * names.len());
    let prices: Vec<&str> = figures
        .iter()
        .filter(|f| f.0 == "price")
        .map(|f| f.1.as_str())
        .collect();
    assert_eq!(prices, vec!["BTC", "ETH"]);

    // Overview, statistics, validation.
    assert!(
        html.contains("33259")
            && html.contains("2018-05-15T06:00:00Z")
            && html.contains("2022-03-01T00:00:00Z")
    );
    assert!(
        html.contains("(10 hours missing)"),
        "ETH's hole is in the overview"
    );
    for col in ["close", "logret_std_168", "target_logret_1h"] {
        assert!(
            html.contains(&format!("<tr><td>{col}</td>")),
            "stats row for {col}"
        );
    }
    assert!(html.contains("volume_units") && html.contains("tr class=\"warn\""));
    assert!(html.contains("1 check(s) did not pass"));
    assert!(
        html.contains("see hxxps:"),
        "URLs from the report are defanged"
    );
}

#[tokio::test]
async fn a_missing_validation_report_is_noted_in_the_profile() {
    let dir = tempfile::tempdir().unwrap();
    put_raw(dir.path(), "BTC", &bars_at("BTC", 0..300)).await;
    let html_path = dir.path().join("p.html");
    let mut cfg = config(dir.path());
    cfg.profile = Some(html_path.clone());
    cfg.validation_report = Some(dir.path().join("absent.json"));
    rps_transform::run(cfg).await.unwrap();
    let html = std::fs::read_to_string(&html_path).unwrap();
    parse(&html);
    assert!(html.contains("absent.json: cannot read it"));
}
