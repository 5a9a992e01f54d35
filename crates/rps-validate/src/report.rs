//! The validation report: its types (the JSON schema of the crate docs), the counted summary
//! that decides pass/warn/fail, the human summary and the atomic report write.

use std::path::Path;

use rps_core::ExitCode;
use serde::{Deserialize, Serialize};

use crate::checks::Settings;
use crate::{Result, ValidateError};

/// What a check that finds something does to the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Findings fail the run (exit 3).
    Error,
    /// Findings are reported; the run passes.
    Warning,
}

/// Outcome of a check, a coin or a run. Ordered: pass < warn < fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The check found nothing to report (for a coin or run: no check warned or failed).
    Pass,
    /// A check found something it only warns about; the run still passes (exit 0).
    Warn,
    /// A check found something that fails the run (exit 3).
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One flagged row (or run of rows) shown as evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// 0-based row in the stored file.
    pub row: Option<usize>,
    /// The row's hour, RFC 3339 UTC.
    pub ts: Option<String>,
    /// What is wrong with it.
    pub note: String,
}

/// The result of one check on one coin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// The check's name (`ohlc`, `null_ratio.close`… see the crate docs' table).
    pub name: String,
    /// What a finding of this check does to the run.
    pub severity: Severity,
    /// The check's outcome: pass when nothing was flagged, else per `severity`.
    pub status: Status,
    /// How many rows (or gaps, for `gaps`) the check flagged.
    pub count: usize,
    /// A one-line human explanation of the result.
    pub details: String,
    /// Evidence: some flagged rows, at most [`MAX_EXAMPLES`](crate::MAX_EXAMPLES).
    pub examples: Vec<Example>,
}

impl Check {
    /// A check whose status follows from its severity: nothing found passes, a finding warns
    /// (warning) or fails (error).
    pub fn counted(
        name: &str,
        severity: Severity,
        count: usize,
        details: String,
        examples: Vec<Example>,
    ) -> Check {
        let status = match (count, severity) {
            (0, _) => Status::Pass,
            (_, Severity::Error) => Status::Fail,
            (_, Severity::Warning) => Status::Warn,
        };
        Check {
            name: name.to_string(),
            severity,
            status,
            count,
            details,
            examples,
        }
    }
}

/// Name of the check recorded for a coin that could not be read at all.
pub const READABLE: &str = "readable";

/// A run of missing hours; `start` and `end` are the first and last missing hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// The first missing hour, RFC 3339 UTC.
    pub start: String,
    /// The last missing hour (inclusive), RFC 3339 UTC.
    pub end: String,
    /// Hours missing in this run (`end - start` in hours, plus one).
    pub missing_hours: u64,
}

/// First and last bar of a coin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    /// The oldest bar's hour, RFC 3339 UTC.
    pub start: String,
    /// The newest bar's hour, RFC 3339 UTC.
    pub end: String,
}

/// Everything found for one coin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoinReport {
    /// The coin's symbol (`BTC`).
    pub coin: String,
    /// The store key of the raw file.
    pub key: String,
    /// Rows in the raw file (0 for an unreadable file).
    pub rows: usize,
    /// First and last bar; `None` when there is none (an unreadable file).
    pub range: Option<Range>,
    /// The worst status of the coin's checks.
    pub status: Status,
    /// Every check run on the coin, in a fixed order.
    pub checks: Vec<Check>,
    /// Every run of missing hours between the first and last bar.
    pub gaps: Vec<Gap>,
}

impl CoinReport {
    /// Builds a coin report; its status is the worst of its checks.
    pub fn new(
        coin: &str,
        key: &str,
        rows: usize,
        range: Option<Range>,
        checks: Vec<Check>,
        gaps: Vec<Gap>,
    ) -> CoinReport {
        let status = checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Pass);
        CoinReport {
            coin: coin.to_string(),
            key: key.to_string(),
            rows,
            range,
            status,
            checks,
            gaps,
        }
    }

    /// The entry of a coin whose raw file is missing, empty or does not decode: a failed
    /// `readable` check (the run then exits 2, bad input).
    pub fn unreadable(coin: &str, key: &str, reason: &str) -> CoinReport {
        let check = Check::counted(READABLE, Severity::Error, 1, reason.to_string(), Vec::new());
        CoinReport::new(coin, key, 0, None, vec![check], Vec::new())
    }

    /// The named check, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Counts over all checks of all coins; the verdict is taken from these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Coins in the report (unreadable ones included).
    pub coins: usize,
    /// Rows read, summed over the coins.
    pub rows: usize,
    /// Checks run, summed over the coins.
    pub checks: usize,
    /// Checks that passed.
    pub passed: usize,
    /// Checks that warned.
    pub warned: usize,
    /// Checks that failed; any makes the run fail.
    pub failed: usize,
    /// Coins whose raw file is missing, empty or undecodable (bad input, exit 2).
    pub unreadable: usize,
}

/// The whole validation report (the `--report` JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always `rps-validate`.
    pub tool: String,
    /// The rps-validate version that wrote the report (its crate version).
    pub version: String,
    /// The store location validated.
    pub store: String,
    /// The thresholds and data interval end used.
    pub settings: Settings,
    /// The verdict, taken from [`Report::summary`]: fail, else warn, else pass.
    pub status: Status,
    /// The counts over all checks of all coins.
    pub summary: Summary,
    /// One entry per coin, in the order validated.
    pub coins: Vec<CoinReport>,
}

impl Report {
    /// Counts the checks and takes the decision once: any failed check fails the run, any
    /// warning makes it `warn` (which still passes), otherwise `pass`.
    pub fn new(store: &str, settings: Settings, coins: Vec<CoinReport>) -> Report {
        let all = || coins.iter().flat_map(|c| c.checks.iter());
        let count = |s: Status| all().filter(|c| c.status == s).count();
        let summary = Summary {
            coins: coins.len(),
            rows: coins.iter().map(|c| c.rows).sum(),
            checks: all().count(),
            passed: count(Status::Pass),
            warned: count(Status::Warn),
            failed: count(Status::Fail),
            unreadable: coins
                .iter()
                .filter(|c| c.check(READABLE).is_some_and(|k| k.status == Status::Fail))
                .count(),
        };
        let status = if summary.failed > 0 {
            Status::Fail
        } else if summary.warned > 0 {
            Status::Warn
        } else {
            Status::Pass
        };
        Report {
            tool: "rps-validate".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            store: store.to_string(),
            settings,
            status,
            summary,
            coins,
        }
    }

    /// Exit code of the verdict: 3 when a check failed, 0 otherwise (warnings pass).
    pub fn exit_code(&self) -> ExitCode {
        match self.status {
            Status::Fail => ExitCode::Quality,
            Status::Pass | Status::Warn => ExitCode::Ok,
        }
    }

    /// The coin's entry, if validated.
    pub fn coin(&self, coin: &str) -> Option<&CoinReport> {
        self.coins.iter().find(|c| c.coin == coin)
    }

    /// The short human summary: per coin its range and every check that is not a plain
    /// pass (plus staleness, which is always worth a glance), then the verdict.
    pub fn summary_text(&self, report_path: Option<&Path>) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for c in &self.coins {
            let range = c
                .range
                .as_ref()
                .map(|r| format!(", {} .. {}", r.start, r.end))
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "{}: {} rows{range}: {}",
                c.coin,
                c.rows,
                c.status.label().to_uppercase()
            );
            for k in &c.checks {
                if k.status != Status::Pass || k.name == "staleness" {
                    let _ = writeln!(
                        s,
                        "  {:<4}  {:<18} {:>6}  {}",
                        k.status.label(),
                        k.name,
                        k.count,
                        k.details
                    );
                }
            }
        }
        let m = &self.summary;
        let where_ = report_path
            .map(|p| format!("; report {}", p.display()))
            .unwrap_or_default();
        let verdict = if m.unreadable > 0 {
            format!("ERROR (bad input: {} coin(s) unreadable)", m.unreadable)
        } else {
            self.status.label().to_uppercase()
        };
        let _ = writeln!(
            s,
            "validation {verdict}: {} coin(s), {} rows, {} checks: {} pass, {} warn, {} fail{where_}",
            m.coins, m.rows, m.checks, m.passed, m.warned, m.failed
        );
        s
    }

    /// Writes the report as pretty JSON, atomically ([`rps_core::fs::write`]: temp file then
    /// rename), creating the parent directory. A reader never sees half a report.
    pub fn write(&self, path: &Path) -> Result<()> {
        let err = |source| ValidateError::Report {
            path: path.to_path_buf(),
            source,
        };
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        rps_core::fs::write(path, &json).map_err(err)
    }

    /// Writes the report to `target`: a local file as [`Report::write`] does, or an object
    /// URL (`s3://bucket/prefix/name.json`, one PUT; see [`crate::location`]).
    pub async fn write_to(&self, target: &Path) -> Result<()> {
        if !crate::location::is_url(target) {
            return self.write(target);
        }
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        crate::location::write(target, json)
            .await
            .map_err(|source| ValidateError::ReportObject {
                url: target.display().to_string(),
                source: Box::new(source),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, severity: Severity, count: usize) -> Check {
        Check::counted(name, severity, count, String::new(), Vec::new())
    }

    #[test]
    fn a_warning_passes_and_an_error_fails_the_run() {
        let warn = CoinReport::new(
            "BTC",
            "k",
            1,
            None,
            vec![check("gaps", Severity::Warning, 2)],
            vec![],
        );
        let r = Report::new("s", Settings::default(), vec![warn.clone()]);
        assert_eq!((r.status, r.exit_code()), (Status::Warn, ExitCode::Ok));

        let fail = CoinReport::new(
            "ETH",
            "k",
            1,
            None,
            vec![check("ohlc", Severity::Error, 1)],
            vec![],
        );
        let r = Report::new("s", Settings::default(), vec![warn, fail]);
        assert_eq!((r.status, r.exit_code()), (Status::Fail, ExitCode::Quality));
        assert_eq!(
            (r.summary.warned, r.summary.failed, r.summary.checks),
            (1, 1, 2)
        );
    }

    #[test]
    fn the_report_is_written_whole_into_a_new_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reports/validation.json");
        let r = Report::new("s", Settings::default(), vec![]);
        r.write(&path).unwrap();
        let back: Report = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            std::fs::read_dir(dir.path().join("reports"))
                .unwrap()
                .count(),
            1
        );
    }
}
