//! Bad inputs: each is a one-line error naming file/row/field, exit 2, and the store keeps
//! every byte it had.

use std::path::Path;

use crate::common::*;

/// A store that already holds a good import, and a directory for fixtures.
async fn populated() -> (Backend, tempfile::TempDir) {
    let b = Backend::local();
    let dir = tempfile::tempdir().unwrap();
    let good = write_lines(dir.path(), "good.csv", &rps_testkit::fixture::head(10));
    let out = extract_on(
        &b,
        &["--source", "csv", "--path", good.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    (b, dir)
}

/// Runs an import of `path` and checks: exit 2, the error line contains every `needle`, and
/// the store is unchanged.
async fn refused(b: &Backend, path: &Path, extra: &[&str], needles: &[&str]) {
    let before = b.snapshot().await;
    assert!(!before.is_empty());
    let mut args = vec!["--source", "csv", "--path", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = extract_on(b, &args, &[]).await;
    assert_eq!(out.code, 2, "stderr: {}", out.stderr);
    let line = out.error_line();
    for n in needles {
        assert!(line.contains(n), "error line lacks '{n}': {line}");
    }
    assert!(out.stdout.is_empty(), "no summary on failure");
    assert_eq!(b.snapshot().await, before, "the store is unchanged");
}

fn with_field(lines: &[String], row: usize, field: usize, value: &str) -> Vec<String> {
    let mut out = lines.to_vec();
    let mut f: Vec<String> = out[row].split(',').map(str::to_string).collect();
    f[field] = value.into();
    out[row] = f.join(",");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_numeric_price_names_its_file_row_and_field() {
    let (b, dir) = populated().await;
    let p = write_lines(
        dir.path(),
        "nan.csv",
        &with_field(&rps_testkit::fixture::head(20), 7, 6, "n/a"),
    );
    refused(
        &b,
        &p,
        &[],
        &[
            p.to_str().unwrap(),
            "row 7",
            "field 'Close'",
            "'n/a' is not a number",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_price_names_its_file_row_and_field() {
    let (b, dir) = populated().await;
    let p = write_lines(
        dir.path(),
        "neg.csv",
        &with_field(&rps_testkit::fixture::head(20), 4, 5, "-1.5"),
    );
    refused(
        &b,
        &p,
        &[],
        &[
            p.to_str().unwrap(),
            "row 4",
            "field 'Low'",
            "negative price -1.5",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_required_column_is_named_with_the_flag_that_maps_it() {
    let (b, dir) = populated().await;
    let lines: Vec<String> = rps_testkit::fixture::head(5)
        .iter()
        .map(|l| {
            let mut f: Vec<&str> = l.split(',').collect();
            f.remove(4); // High
            f.join(",")
        })
        .collect();
    let p = write_lines(dir.path(), "nohigh.csv", &lines);
    refused(
        &b,
        &p,
        &[],
        &[
            p.to_str().unwrap(),
            "missing required column 'High'",
            "--high-column",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_and_a_header_without_rows_are_refused() {
    let (b, dir) = populated().await;
    let empty = dir.path().join("empty.csv");
    std::fs::write(&empty, b"").unwrap();
    refused(&b, &empty, &[], &[empty.to_str().unwrap(), "empty file"]).await;
    let header_only = write_lines(dir.path(), "header.csv", &[CDD_HEADER.to_string()]);
    refused(
        &b,
        &header_only,
        &[],
        &[header_only.to_str().unwrap(), "no data rows"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_utf8_file_names_the_line() {
    let (b, dir) = populated().await;
    let mut bytes = (rps_testkit::fixture::head(8).join("\n") + "\n").into_bytes();
    let line6 = bytes
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'\n')
        .nth(4)
        .unwrap()
        .0
        + 1;
    bytes[line6 + 12] = 0xff; // inside the Date field of line 6 (data row 5)
    let p = dir.path().join("latin.csv");
    std::fs::write(&p, bytes).unwrap();
    refused(
        &b,
        &p,
        &[],
        &[p.to_str().unwrap(), "line 6", "not valid UTF-8"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_or_nul_filled_input_fails_fast_with_a_short_line() {
    let (b, dir) = populated().await;
    // /dev/zero never ends: the import must stop at the record cap, not read it into memory.
    let zero = std::path::Path::new("/dev/zero");
    refused(
        &b,
        zero,
        &[],
        &["/dev/zero", "line 1", "a record longer than 65536 bytes"],
    )
    .await;
    // A 200 MB file of NUL bytes (sparse: costs no disk) gives one short error line.
    let nul = dir.path().join("nul.csv");
    std::fs::File::create(&nul)
        .unwrap()
        .set_len(200_000_000)
        .unwrap();
    let out = extract_on(
        &b,
        &["--source", "csv", "--path", nul.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.len() < 2_000 && out.error_line().contains("longer than 65536 bytes"),
        "{}",
        rps_core::redact::clip(&out.stderr, 2_000)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_coin_code_is_refused() {
    let (b, dir) = populated().await;
    let p = write_lines(dir.path(), "btc.csv", &rps_testkit::fixture::head(5));
    refused(
        &b,
        &p,
        &["--coins", "DOGE"],
        &["unknown coin code DOGE", "has rows for: BTC"],
    )
    .await;
    let bad_pair = write_lines(
        dir.path(),
        "eur.csv",
        &with_field(&rps_testkit::fixture::head(5), 2, 2, "BTC/EUR"),
    );
    refused(&b, &bad_pair, &[], &["row 2", "field 'Symbol'", "EUR"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_store_location_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let csv = write_lines(dir.path(), "good.csv", &rps_testkit::fixture::head(5));
    // A store "directory" that is a regular file.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"keep me").unwrap();
    let loc = file.join("data");
    let out = extract(
        &[
            "--store",
            loc.to_str().unwrap(),
            "--source",
            "csv",
            "--path",
            csv.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.error_line().contains(loc.to_str().unwrap()),
        "{}",
        out.error_line()
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me");

    // A store whose raw/ folder cannot be created (a file is in the way): the write fails.
    let store = dir.path().join("store");
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("raw"), b"in the way").unwrap();
    let out = extract(
        &[
            "--store",
            store.to_str().unwrap(),
            "--source",
            "csv",
            "--path",
            csv.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.error_line().contains("raw/BTC.parquet"),
        "{}",
        out.error_line()
    );
    assert_eq!(std::fs::read(store.join("raw")).unwrap(), b"in the way");
    assert_eq!(
        std::fs::read_dir(&store).unwrap().count(),
        1,
        "nothing else was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_usage_exits_2() {
    let out = extract(&["--source", "csv"], &[]).await;
    assert_eq!(out.code, 2, "--source csv without --path: {}", out.stderr);
    let out = extract(&["--coins", "BTC/USD"], &[]).await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = extract(
        &[
            "--start",
            "2024-01-02",
            "--end",
            "2024-01-01",
            "--store",
            "/nonexistent-never-created",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.error_line().contains("is not before --end"),
        "{}",
        out.error_line()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_explains_every_flag() {
    let out = extract(&["--help"], &[]).await;
    assert_eq!(out.code, 0);
    for flag in [
        "--store",
        "--log-format",
        "--source",
        "--path",
        "--coins",
        "--start",
        "--end",
        "--api-base",
        "--window-hours",
        "--backfill-days",
        "--request-interval-ms",
        "--max-retries",
        "--retry-base-ms",
        "--retry-max-ms",
        "--timeout-secs",
        "--credits-check-above",
        "--ts-column",
        "--open-column",
        "--high-column",
        "--low-column",
        "--close-column",
        "--volume-column",
        "--symbol-column",
        "--seed",
    ] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing"));
        let idx = out.stdout.find(line).unwrap() + line.len();
        let rest = &out.stdout[idx..];
        // This flag's block ends where the next option line starts (indented 2 or 6 spaces;
        // deeper lines starting with '-' are possible values).
        let end = rest
            .match_indices('\n')
            .map(|(i, _)| i)
            .find(|&i| rest[i + 1..].starts_with("  -") || rest[i + 1..].starts_with("      --"))
            .unwrap_or(rest.len());
        let block = &rest[..end];
        assert!(
            block
                .lines()
                .any(|l| l.trim().len() > 10 && !l.contains("[env")),
            "{flag} has no description"
        );
        assert!(
            block.contains("[env: RPS_"),
            "{flag} has no RPS_ env fallback: {block}"
        );
    }
}
