//! Import of hourly-bar CSV exports (exchange or aggregator downloads). The defaults read the
//! CryptoDataDownload format (`unix,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USD`,
//! newest first, seconds); other exports are read by mapping column names with flags.
//!
//! Every row is checked before anything is returned, so a bad file never reaches the store.
//! Bad values are counted; the error names the first one (file, row, line, field) and how
//! many there were, and shows at most a few hundred bytes of any value.
//!
//! The file is streamed (read, decompressed and parsed a buffer at a time): memory holds one
//! bar per distinct (coin, hour), not the file, and records and fields have a length cap, so a
//! 2 GB export, `/dev/zero` or a NUL-filled file cost bounded memory and a short error.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use rps_core::redact::clip;

use rps_core::time::HOUR_MS;
use rps_core::{Bar, Source};

use crate::error::{ExtractError, Result};

/// Column names of a CSV export. Matching ignores case and surrounding spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvColumns {
    /// Bar open time: unix seconds or milliseconds (auto-detected), or an ISO date-time.
    pub ts: String,
    /// Open price in USD.
    pub open: String,
    /// High price in USD.
    pub high: String,
    /// Low price in USD.
    pub low: String,
    /// Close price in USD.
    pub close: String,
    /// Volume in USD. Optional: when the column is absent the bars have no volume.
    pub volume: String,
    /// Trading pair such as `BTC/USD`. Optional: when absent every row is one coin.
    pub symbol: String,
}

impl Default for CsvColumns {
    fn default() -> Self {
        CsvColumns {
            ts: "unix".into(),
            open: "Open".into(),
            high: "High".into(),
            low: "Low".into(),
            close: "Close".into(),
            volume: "Volume USD".into(),
            symbol: "Symbol".into(),
        }
    }
}

/// What to import.
#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    /// Which header names hold which field.
    pub columns: CsvColumns,
    /// Coins to keep (`--coins`). `None`: every coin of the `Symbol` column, or BTC when the
    /// file has no such column.
    pub coins: Option<Vec<String>>,
    /// First hour to keep (ms, inclusive; `--start`); earlier rows are checked, counted and
    /// skipped.
    pub start: Option<i64>,
    /// End of the hours to keep (ms, exclusive; `--end`); later rows are checked, counted and
    /// skipped.
    pub end: Option<i64>,
}

/// The bars read from a file, per coin, ascending by `ts`, one per hour.
#[derive(Debug, Default)]
pub struct CsvImport {
    /// The bars kept, by coin symbol.
    pub bars: BTreeMap<String, Vec<Bar>>,
    /// Data rows read (including skipped ones).
    pub rows: u64,
    /// Rows of coins not asked for with `--coins`, per coin.
    pub skipped_coins: BTreeMap<String, u64>,
    /// Rows outside `--start`/`--end`, skipped.
    pub outside_window: u64,
    /// Rows that repeated an earlier row exactly (same hour, same values) and were dropped.
    pub exact_duplicates: u64,
    /// Bytes of CSV text read (after decompression).
    pub bytes: u64,
}

/// The longest record (line, or lines of one quoted record) read, in bytes. An hourly bar
/// is well under 200 bytes; a stream without line breaks (`/dev/zero`, a NUL-filled or
/// binary file) is refused after this many bytes instead of being buffered whole.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// The longest field accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;

/// How much of an input value an error line shows.
const SHOWN_BYTES: usize = 120;

/// Reads and checks a CSV file, plain or gzip-compressed (recognised by its magic bytes,
/// whatever the file is called: exports are often downloaded as `.csv.gz`).
///
/// The file is streamed: memory grows with the distinct (coin, hour) bars kept, not with the
/// file's size, and a record longer than [`MAX_RECORD_BYTES`] stops the import.
pub fn import_file(path: &Path, opts: &CsvOptions, ingested_at: i64) -> Result<CsvImport> {
    let file = path.display().to_string();
    let open_err = |source| ExtractError::Open {
        file: file.clone(),
        source,
    };
    let mut buffered = BufReader::with_capacity(64 * 1024, File::open(path).map_err(open_err)?);
    let gzip = buffered
        .fill_buf()
        .map_err(open_err)?
        .starts_with(&GZIP_MAGIC);
    let source: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    import_reader(source, gzip, &file, opts, ingested_at)
}

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// `bytes` decompressed when they are gzip (every member, as `gzip -d` does), else as they
/// are; `file` names the input in the error.
pub fn decompress(bytes: &[u8], file: &str) -> Result<Vec<u8>> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes.to_vec());
    }
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4));
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut out).map_err(
        |source| ExtractError::Gzip {
            file: file.to_string(),
            source,
        },
    )?;
    Ok(out)
}

/// Reads and checks CSV content (not compressed); `file` names it in errors.
pub fn import_bytes(
    bytes: &[u8],
    file: &str,
    opts: &CsvOptions,
    ingested_at: i64,
) -> Result<CsvImport> {
    import_reader(bytes, false, file, opts, ingested_at)
}

/// Why the byte stream under the CSV reader stopped.
#[derive(Debug)]
enum StreamFault {
    /// Reading (or, for gzip, decompressing) failed.
    Source(io::Error),
    /// More than [`MAX_RECORD_BYTES`] without a complete record.
    TooLong,
}

impl std::fmt::Display for StreamFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamFault::Source(e) => e.fmt(f),
            StreamFault::TooLong => write!(f, "record longer than {MAX_RECORD_BYTES} bytes"),
        }
    }
}

impl std::error::Error for StreamFault {}

/// The input stream with a byte count: fails with [`StreamFault::TooLong`] once more than
/// [`MAX_RECORD_BYTES`] were read since `mark` (set after every complete record), so no
/// reader above it buffers an endless line.
struct Guarded<R> {
    inner: R,
    read: Rc<Cell<u64>>,
    mark: Rc<Cell<u64>>,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read.get() - self.mark.get() > MAX_RECORD_BYTES {
            return Err(io::Error::other(StreamFault::TooLong));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.read.set(self.read.get() + n as u64);
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => Err(io::Error::other(StreamFault::Source(e))),
        }
    }
}

/// The import's error for a failed read: too long, a gzip fault, a read fault, or (when the
/// error is the CSV reader's own) `other`.
fn stream_error(
    e: &io::Error,
    gzip: bool,
    file: &str,
    line: u64,
    other: impl FnOnce() -> ExtractError,
) -> ExtractError {
    match e.get_ref().and_then(|i| i.downcast_ref::<StreamFault>()) {
        Some(StreamFault::TooLong) => ExtractError::TooLong {
            file: file.into(),
            line,
            limit: MAX_RECORD_BYTES,
        },
        Some(StreamFault::Source(src)) => {
            let source = io::Error::new(src.kind(), src.to_string());
            if gzip {
                ExtractError::Gzip {
                    file: file.into(),
                    source,
                }
            } else {
                ExtractError::Open {
                    file: file.into(),
                    source,
                }
            }
        }
        None => other(),
    }
}

/// Reads and checks CSV text from `input` (`gzip`: it is a decompressor, so read faults are
/// reported as gzip faults); `file` names it in errors.
fn import_reader(
    input: impl Read,
    gzip: bool,
    file: &str,
    opts: &CsvOptions,
    ingested_at: i64,
) -> Result<CsvImport> {
    let read = Rc::new(Cell::new(0));
    let mark = Rc::new(Cell::new(0));
    let mut input = BufReader::new(Guarded {
        inner: input,
        read: Rc::clone(&read),
        mark: Rc::clone(&mark),
    });
    // The first line decides two things: a UTF-8 byte order mark is dropped, and
    // CryptoDataDownload's URL line above the header is skipped.
    let mut first = Vec::new();
    input.read_until(b'\n', &mut first).map_err(|e| {
        stream_error(&e, gzip, file, 1, || ExtractError::Open {
            file: file.into(),
            source: io::Error::new(e.kind(), e.to_string()),
        })
    })?;
    if first.is_empty() {
        return Err(ExtractError::Empty {
            file: file.into(),
            what: "empty file (no header, no rows)",
        });
    }
    if first.starts_with("\u{feff}".as_bytes()) {
        first.drain(..3);
    }
    let url_line = first.trim_ascii().starts_with(b"http") && !first.contains(&b',');
    let skipped_lines = u64::from(url_line);
    if url_line {
        first.clear();
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(io::Cursor::new(first).chain(input));
    // A CSV reader error as the import's error, `line` being where the reader stood.
    let csv_error = |e: csv::Error, line: u64| -> ExtractError {
        let at = e.position().map_or(line, |p| p.line() + skipped_lines);
        match e.kind() {
            csv::ErrorKind::Io(io) => {
                stream_error(io, gzip, file, line, || bad_record(file, &e, at))
            }
            csv::ErrorKind::Utf8 { err, .. } => ExtractError::NotUtf8 {
                file: file.into(),
                line: at,
                field: err.field() + 1,
            },
            _ => bad_record(file, &e, at),
        }
    };
    // The one use of the clock: no bar may be newer than the current hour.
    let newest_hour = rps_core::time::floor_hour(chrono::Utc::now().timestamp_millis());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_error(e, 1 + skipped_lines))?
        .iter()
        .map(str::to_string)
        .collect();
    mark.set(read.get());
    if header.iter().all(|h| h.is_empty()) {
        return Err(ExtractError::Empty {
            file: file.into(),
            what: "empty file (no header, no rows)",
        });
    }
    if let Some((i, h)) = header
        .iter()
        .enumerate()
        .find(|(_, h)| h.len() > MAX_FIELD_BYTES)
    {
        return Err(too_long_field(file, 1 + skipped_lines, i, h.len()));
    }
    let find = |name: &str| {
        header
            .iter()
            .position(|h| h.eq_ignore_ascii_case(name.trim()))
    };
    let require = |name: &str, flag: &'static str| {
        find(name).ok_or_else(|| ExtractError::MissingColumn {
            file: file.into(),
            column: clip(name, SHOWN_BYTES),
            header: clip(&header.join(","), 4 * SHOWN_BYTES),
            flag,
        })
    };
    let c = &opts.columns;
    let i_ts = require(&c.ts, "--ts-column")?;
    let i_open = require(&c.open, "--open-column")?;
    let i_high = require(&c.high, "--high-column")?;
    let i_low = require(&c.low, "--low-column")?;
    let i_close = require(&c.close, "--close-column")?;
    let i_volume = find(&c.volume);
    if i_volume.is_none() {
        tracing::warn!(file, column = %c.volume, "no volume column: bars get no volume (map one with --volume-column)");
    }
    let i_symbol = find(&c.symbol);
    let coin_from = match (i_symbol, &opts.coins) {
        (Some(i), _) => CoinFrom::Column(i),
        (None, None) => CoinFrom::Fixed("BTC".to_string()),
        (None, Some(coins)) if coins.len() == 1 => CoinFrom::Fixed(coins[0].clone()),
        (None, Some(_)) => {
            return Err(ExtractError::Usage(format!(
                "{file}: no '{}' column to tell coins apart: give exactly one coin with --coins",
                clip(&c.symbol, SHOWN_BYTES)
            )));
        }
    };

    let mut out = CsvImport::default();
    // Per coin and hour, the bar and the row it came from; a repeated hour is resolved as it
    // is read, so memory holds one bar per (coin, hour) whatever the file's size.
    let mut kept: BTreeMap<String, BTreeMap<i64, (Bar, u64)>> = BTreeMap::new();
    let mut conflict: Option<ExtractError> = None;
    let mut bad = BadValues::default();
    let mut record = csv::StringRecord::new();
    let mut line = 1 + skipped_lines;
    let t0 = Instant::now();
    let mut next_progress = PROGRESS_EVERY;
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => return Err(csv_error(e, line + 1)),
        }
        mark.set(read.get());
        out.rows += 1;
        let row = out.rows;
        line = record.position().map_or(line + 1, |p| p.line()) + skipped_lines;
        if let Some((i, f)) = record
            .iter()
            .enumerate()
            .find(|(_, f)| f.len() > MAX_FIELD_BYTES)
        {
            return Err(too_long_field(file, line, i, f.len()));
        }
        if read.get() >= next_progress {
            next_progress += PROGRESS_EVERY;
            let secs = t0.elapsed().as_secs_f64().max(1e-9);
            tracing::info!(
                file,
                rows = out.rows,
                mb_read = read.get() / 1_000_000,
                mb_per_s = format!("{:.1}", read.get() as f64 / 1e6 / secs),
                "reading CSV"
            );
        }
        let mut fail = |field: &str, reason: String| bad.push(file, row, line, field, reason);
        let coin = match &coin_from {
            CoinFrom::Fixed(c) => c.clone(),
            CoinFrom::Column(i) => match coin_of_symbol(&record[*i]) {
                Ok(c) => c,
                Err(reason) => {
                    fail(&header[*i], reason);
                    continue;
                }
            },
        };
        if let Some(wanted) = &opts.coins
            && !wanted.contains(&coin)
        {
            *out.skipped_coins.entry(coin).or_default() += 1;
            continue;
        }
        let ts = match parse_ts(&record[i_ts]).and_then(|t| in_bounds(t, newest_hour)) {
            Ok(t) => Some(t),
            Err(reason) => {
                fail(&header[i_ts], reason);
                None
            }
        };
        let mut price = |i: usize| match parse_price(&record[i]) {
            Ok(v) => Some(v),
            Err(reason) => {
                fail(&header[i], reason);
                None
            }
        };
        let (open, high, low, close) = (price(i_open), price(i_high), price(i_low), price(i_close));
        let volume = match i_volume.map(|i| (i, parse_volume(&record[i]))) {
            None => Ok(None),
            Some((_, Ok(v))) => Ok(v),
            Some((i, Err(reason))) => {
                fail(&header[i], reason);
                Err(())
            }
        };
        let (Some(ts), Some(open), Some(high), Some(low), Some(close), Ok(volume)) =
            (ts, open, high, low, close, volume)
        else {
            continue;
        };
        if opts.start.is_some_and(|s| ts < s) || opts.end.is_some_and(|e| ts >= e) {
            out.outside_window += 1;
            continue;
        }
        let bar = Bar {
            ts,
            coin: coin.clone(),
            open,
            high,
            low,
            close,
            volume,
            cap: None,
            points: 0,
            source: Source::Csv,
            ingested_at,
        };
        match kept.entry(coin).or_default().entry(ts) {
            Entry::Vacant(v) => {
                v.insert((bar, row));
            }
            Entry::Occupied(o) => {
                let (earlier, prow) = o.get();
                if same_values(earlier, &bar) {
                    out.exact_duplicates += 1;
                } else if conflict.is_none() {
                    conflict = Some(ExtractError::BadValue {
                        file: file.into(),
                        row,
                        line,
                        field: header[i_ts].clone(),
                        reason: format!(
                            "hour {} of {} also at row {prow} with different prices (which one is right?)",
                            rps_core::time::fmt_ms(ts),
                            bar.coin
                        ),
                    });
                }
            }
        }
    }
    out.bytes = read.get();
    if out.rows == 0 {
        return Err(ExtractError::Empty {
            file: file.into(),
            what: "a header but no data rows",
        });
    }
    bad.finish()?;
    if let Some(e) = conflict {
        return Err(e);
    }
    if let Some(wanted) = &opts.coins {
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|c| !kept.contains_key(*c))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            let present: Vec<&str> = out.skipped_coins.keys().map(String::as_str).collect();
            return Err(ExtractError::UnknownCoin {
                codes: missing.join(","),
                source_name: "csv",
                hint: format!(
                    " ({file} has rows for: {})",
                    if present.is_empty() {
                        "none".into()
                    } else {
                        present.join(",")
                    }
                ),
            });
        }
    }
    for (coin, hours) in kept {
        out.bars
            .insert(coin, hours.into_values().map(|(bar, _)| bar).collect());
    }
    if out.exact_duplicates > 0 {
        tracing::warn!(
            file,
            rows = out.exact_duplicates,
            "dropped rows repeating an earlier row exactly"
        );
    }
    if out.outside_window > 0 {
        tracing::info!(
            file,
            rows = out.outside_window,
            "skipped rows outside --start/--end"
        );
    }
    for (coin, n) in &out.skipped_coins {
        tracing::info!(
            file,
            coin,
            rows = n,
            "skipped rows of a coin not in --coins"
        );
    }
    Ok(out)
}

/// Bytes of CSV text between two progress log lines.
const PROGRESS_EVERY: u64 = 256 * 1024 * 1024;

fn too_long_field(file: &str, line: u64, index: usize, len: usize) -> ExtractError {
    ExtractError::BadRecord {
        file: file.into(),
        line,
        reason: format!(
            "field {} is {len} bytes long, more than the {MAX_FIELD_BYTES} a bar's field may have",
            index + 1
        ),
    }
}

/// Where a row's coin comes from.
enum CoinFrom {
    /// Every row is this coin (no symbol column).
    Fixed(String),
    /// The symbol column at this index.
    Column(usize),
}

fn same_values(a: &Bar, b: &Bar) -> bool {
    a.open == b.open
        && a.high == b.high
        && a.low == b.low
        && a.close == b.close
        && a.volume == b.volume
}

fn bad_record(file: &str, e: &csv::Error, skipped_lines: u64) -> ExtractError {
    let line = e.position().map_or(0, |p| p.line()) + skipped_lines;
    ExtractError::BadRecord {
        file: file.into(),
        line,
        reason: e.to_string(),
    }
}

/// Counts bad values and keeps the first, so the error names it and says how many there were.
#[derive(Default)]
struct BadValues {
    first: Option<ExtractError>,
    count: u64,
}

impl BadValues {
    fn push(&mut self, file: &str, row: u64, line: u64, field: &str, reason: String) {
        self.count += 1;
        if self.count <= 10 {
            tracing::warn!(file, row, line, field, "{reason}");
        }
        if self.first.is_none() {
            self.first = Some(ExtractError::BadValue {
                file: file.into(),
                row,
                line,
                field: field.into(),
                reason,
            });
        }
    }

    fn finish(self) -> Result<()> {
        match self.first {
            None => Ok(()),
            Some(ExtractError::BadValue {
                file,
                row,
                line,
                field,
                reason,
            }) if self.count > 1 => Err(ExtractError::BadValue {
                file,
                row,
                line,
                field,
                reason: format!("{reason} (first of {} bad values)", self.count),
            }),
            Some(e) => Err(e),
        }
    }
}

/// The earliest hour a bar may have: 2009-01-01T00:00:00Z (the first Bitcoin block is of
/// 2009-01-03). Anything earlier is a unit or parsing mistake (a 1970 date is seconds read
/// as milliseconds, or a zero).
pub const MIN_TS: i64 = 1_230_768_000_000;

/// Refuses a bar time before [`MIN_TS`] or after `newest` (the current hour: a bar from the
/// future would make every later forecast and freshness check wrong, and could not be
/// replaced by a real one).
pub fn in_bounds(ts: i64, newest: i64) -> std::result::Result<i64, String> {
    if ts < MIN_TS {
        Err(format!(
            "{} is before 2009-01-01, earlier than any coin's trading (seconds read as \
             milliseconds?)",
            rps_core::time::fmt_ms(ts)
        ))
    } else if ts > newest {
        Err(format!(
            "{} is after the current hour {}: a bar from the future",
            rps_core::time::fmt_ms(ts),
            rps_core::time::fmt_ms(newest)
        ))
    } else {
        Ok(ts)
    }
}

/// Parses a bar time: unix seconds or milliseconds (values of 10^11 and above are read as
/// milliseconds: 10^11 s is the year 5138, 10^11 ms is 1973), or an ISO date-time in UTC.
/// The time must be the start of a UTC hour.
pub fn parse_ts(s: &str) -> std::result::Result<i64, String> {
    let ms = if let Ok(v) = s.parse::<i64>() {
        if v.abs() >= 100_000_000_000 {
            v
        } else {
            v.saturating_mul(1000)
        }
    } else if let Ok(v) = s.parse::<f64>() {
        if !v.is_finite() {
            return Err(format!("'{}' is not a time", clip(s, SHOWN_BYTES)));
        }
        if v.abs() >= 1e11 {
            v.round() as i64
        } else {
            (v * 1000.0).round() as i64
        }
    } else if let Ok(t) = rps_core::time::parse_utc(s) {
        t.timestamp_millis()
    } else if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        t.and_utc().timestamp_millis()
    } else {
        return Err(format!(
            "'{}' is not a unix time (seconds or milliseconds) or an ISO date-time",
            clip(s, SHOWN_BYTES)
        ));
    };
    if ms.rem_euclid(HOUR_MS) != 0 {
        return Err(format!(
            "'{}' ({}) is not the start of a UTC hour; hourly bars are expected",
            clip(s, SHOWN_BYTES),
            rps_core::time::fmt_ms(ms)
        ));
    }
    Ok(ms)
}

fn parse_price(s: &str) -> std::result::Result<f64, String> {
    if s.is_empty() {
        return Err("empty; a price is required".into());
    }
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{}' is not a number", clip(s, SHOWN_BYTES)))?;
    if !v.is_finite() {
        Err(format!("'{}' is not a finite price", clip(s, SHOWN_BYTES)))
    } else if v < 0.0 {
        Err(format!("negative price {}", clip(s, SHOWN_BYTES)))
    } else if v == 0.0 {
        Err("price 0; prices must be > 0".into())
    } else {
        Ok(v)
    }
}

fn parse_volume(s: &str) -> std::result::Result<Option<f64>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{}' is not a number", clip(s, SHOWN_BYTES)))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!(
            "volume {} must be a finite number >= 0",
            clip(s, SHOWN_BYTES)
        ));
    }
    Ok(Some(v))
}

/// The coin of a pair such as `BTC/USD`, `BTC-USD`, `BTCUSD` or a bare `BTC`. Prices must be
/// quoted in USD.
pub fn coin_of_symbol(s: &str) -> std::result::Result<String, String> {
    let s = s.trim().to_ascii_uppercase();
    let (base, quote) = match s.split_once(['/', '-', '_']) {
        Some((b, q)) => (b.to_string(), Some(q.to_string())),
        None => match s.strip_suffix("USD") {
            Some(b) if !b.is_empty() => (b.to_string(), Some("USD".to_string())),
            _ => (s.clone(), None),
        },
    };
    if let Some(q) = quote
        && q != "USD"
    {
        return Err(format!(
            "pair '{}' is quoted in {}; prices must be in USD",
            clip(&s, SHOWN_BYTES),
            clip(&q, SHOWN_BYTES)
        ));
    }
    rps_core::schema::parse_coins(&base)
        .ok()
        .and_then(|v| v.into_iter().next())
        .filter(|_| !base.contains(','))
        .ok_or_else(|| {
            format!(
                "'{}' is not a coin or pair (e.g. BTC/USD)",
                clip(&s, SHOWN_BYTES)
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "unix,Date,Symbol,Open,High,Low,Close,Volume BTC,Volume USD\n";

    #[test]
    fn a_gzip_file_imports_like_the_plain_one_and_a_corrupt_one_is_named() {
        use std::io::Write;
        let text = "unix,Symbol,Open,High,Low,Close,Volume USD\n\
                    1646092800,BTC/USD,1,2,0.5,1.5,10\n1646089200,BTC/USD,1,2,0.5,1.5,10\n";
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("btc.csv.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).unwrap();
        let packed = enc.finish().unwrap();
        std::fs::write(&gz, &packed).unwrap();
        let from_gz = import_file(&gz, &CsvOptions::default(), 0).unwrap();
        assert_eq!(from_gz.bars, import(text).unwrap().bars);
        std::fs::write(&gz, &packed[..packed.len() / 2]).unwrap();
        let err = import_file(&gz, &CsvOptions::default(), 0).unwrap_err();
        assert!(matches!(err, ExtractError::Gzip { .. }), "{err}");
        assert!(err.to_string().contains("btc.csv.gz"), "{err}");
    }

    fn import(text: &str) -> Result<CsvImport> {
        import_bytes(text.as_bytes(), "t.csv", &CsvOptions::default(), 0)
    }

    #[test]
    fn bars_before_2009_or_after_the_current_hour_are_refused_naming_the_row() {
        let now = 0; // ingested_at is metadata only; the bound is the clock's current hour
        let csv = "unix,date,symbol,open,high,low,close\n\
                   1646092800,2022-03-01 00:00:00,BTC/USD,1,1,1,1\n\
                   4070908800,2099-01-01 00:00:00,BTC/USD,1,1,1,1\n";
        let e = import_bytes(csv.as_bytes(), "f.csv", &CsvOptions::default(), now)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.csv") && e.contains("row 2") && e.contains("2099-01-01"),
            "{e}"
        );
        assert!(e.contains("future"), "{e}");
        let csv = "unix,date,symbol,open,high,low,close\n0,1970-01-01,BTC/USD,1,1,1,1\n";
        let e = import_bytes(csv.as_bytes(), "f.csv", &CsvOptions::default(), now)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 1") && e.contains("before 2009"), "{e}");
    }

    #[test]
    fn a_newest_first_export_comes_out_ascending() {
        let text = format!(
            "{HEAD}1646100000,x,BTC/USD,3,4,2,3.5,1,10\n1646096400,x,BTC/USD,2,3,1,2.5,1,20\n1646092800,x,BTC/USD,1,2,0.5,1.5,1,30\n"
        );
        let got = import(&text).unwrap();
        let ts: Vec<i64> = got.bars["BTC"].iter().map(|b| b.ts).collect();
        let t0 = 1_646_092_800_000;
        assert_eq!(ts, vec![t0, t0 + HOUR_MS, t0 + 2 * HOUR_MS]);
        assert_eq!(
            got.bars["BTC"][0].volume,
            Some(30.0),
            "volume is the USD column"
        );
        assert_eq!(got.bars["BTC"][0].source, Source::Csv);
    }

    #[test]
    fn seconds_and_milliseconds_are_both_understood() {
        assert_eq!(parse_ts("1646092800").unwrap(), 1_646_092_800_000);
        assert_eq!(parse_ts("1646092800000").unwrap(), 1_646_092_800_000);
        assert_eq!(parse_ts("2022-03-01 00:00:00").unwrap(), 1_646_092_800_000);
        assert!(
            parse_ts("1646092801")
                .unwrap_err()
                .contains("start of a UTC hour")
        );
        assert!(parse_ts("soon").is_err());
    }

    #[test]
    fn pairs_map_to_their_base_coin_and_must_be_in_usd() {
        assert_eq!(coin_of_symbol("BTC/USD").unwrap(), "BTC");
        assert_eq!(coin_of_symbol("eth-usd").unwrap(), "ETH");
        assert_eq!(coin_of_symbol("BTCUSD").unwrap(), "BTC");
        assert_eq!(coin_of_symbol("SOL").unwrap(), "SOL");
        assert!(coin_of_symbol("BTC/EUR").unwrap_err().contains("EUR"));
    }

    #[test]
    fn a_non_numeric_price_is_reported_with_its_row_and_field() {
        let text = format!(
            "{HEAD}1646100000,x,BTC/USD,3,4,2,3.5,1,10\n1646096400,x,BTC/USD,2,3,1,abc,1,20\n"
        );
        let err = import(&text).unwrap_err().to_string();
        assert!(
            err.contains("row 2") && err.contains("line 3") && err.contains("'Close'"),
            "{err}"
        );
    }

    #[test]
    fn several_bad_values_are_counted_and_the_first_named() {
        let text = format!(
            "{HEAD}1646100000,x,BTC/USD,-3,4,2,3.5,1,10\n1646096400,x,BTC/USD,2,3,1,abc,1,20\n"
        );
        let err = import(&text).unwrap_err().to_string();
        assert!(
            err.contains("row 1") && err.contains("negative price") && err.contains("first of 2"),
            "{err}"
        );
    }

    #[test]
    fn renamed_columns_are_found_through_the_mapping() {
        let opts = CsvOptions {
            columns: CsvColumns {
                ts: "time".into(),
                close: "last".into(),
                ..Default::default()
            },
            coins: Some(vec!["ETH".into()]),
            ..Default::default()
        };
        let text = "time,open,high,low,last\n1646092800000,1,2,0.5,1.5\n";
        let got = import_bytes(text.as_bytes(), "t.csv", &opts, 0).unwrap();
        assert_eq!(got.bars["ETH"][0].close, 1.5);
        assert_eq!(got.bars["ETH"][0].volume, None);
    }

    #[test]
    fn an_exact_repeat_is_dropped_but_a_conflicting_one_is_refused() {
        let row = "1646096400,x,BTC/USD,2,3,1,2.5,1,20\n";
        let got = import(&format!("{HEAD}{row}{row}")).unwrap();
        assert_eq!((got.bars["BTC"].len(), got.exact_duplicates), (1, 1));
        let err = import(&format!("{HEAD}{row}1646096400,x,BTC/USD,2,3,1,2.6,1,20\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("row 2") && err.contains("also at row 1"),
            "{err}"
        );
    }

    #[test]
    fn the_cryptodatadownload_url_line_above_the_header_is_skipped() {
        let text = format!(
            "https://www.CryptoDataDownload.com\n{HEAD}1646096400,x,BTC/USD,2,3,1,x,1,20\n"
        );
        let err = import(&text).unwrap_err().to_string();
        assert!(err.contains("row 1 (line 3)"), "{err}");
    }

    #[test]
    fn an_endless_line_is_refused_after_the_record_cap_without_buffering_it() {
        // 8 GiB of NUL bytes without a line break: stopped after ~64 KiB.
        let zeros = io::repeat(0).take(8 << 30);
        let err = import_reader(zeros, false, "zero.csv", &CsvOptions::default(), 0).unwrap_err();
        assert!(
            matches!(err, ExtractError::TooLong { line: 1, .. }),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.len() < 300, "a short line: {msg}");

        // The same after a valid header and rows: the line of the over-long record is named.
        let head = format!("{HEAD}1646096400,x,BTC/USD,2,3,1,2.5,1,20\n");
        let long = io::Cursor::new(head).chain(io::repeat(b'7').take(1 << 30));
        let err = import_reader(long, false, "long.csv", &CsvOptions::default(), 0).unwrap_err();
        assert!(
            matches!(err, ExtractError::TooLong { line: 3, .. }),
            "{err}"
        );
    }

    #[test]
    fn an_over_long_field_is_refused_and_echoed_values_are_clipped() {
        let big = "9".repeat(MAX_FIELD_BYTES + 1);
        let err = import(&format!("{HEAD}1646096400,x,BTC/USD,2,3,1,{big},1,20\n")).unwrap_err();
        assert!(
            err.to_string().contains("field 7 is 1025 bytes long"),
            "{err}"
        );
        let junk = "x".repeat(MAX_FIELD_BYTES);
        let err = import(&format!("{HEAD}1646096400,x,BTC/USD,2,3,1,{junk},1,20\n"))
            .unwrap_err()
            .to_string();
        assert!(err.len() < 400 && err.contains("row 1"), "{err}");
    }

    #[test]
    fn a_byte_order_mark_and_a_multi_member_gzip_stream_are_read() {
        use std::io::Write;
        let rows = [
            "1646092800,x,BTC/USD,1,2,0.5,1.5,1,30\n",
            "1646096400,x,BTC/USD,2,3,1,2.5,1,20\n",
        ];
        let with_bom = format!("\u{feff}{HEAD}{}{}", rows[0], rows[1]);
        assert_eq!(import(&with_bom).unwrap().bars["BTC"].len(), 2);

        // Two gzip members (as `cat a.gz b.gz` makes), the second repeating a row exactly.
        let member = |text: &str| {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(text.as_bytes()).unwrap();
            enc.finish().unwrap()
        };
        let mut packed = member(&format!("{HEAD}{}{}", rows[0], rows[1]));
        packed.extend(member(rows[1]));
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("two.csv.gz");
        std::fs::write(&gz, packed).unwrap();
        let got = import_file(&gz, &CsvOptions::default(), 0).unwrap();
        assert_eq!(
            (got.bars["BTC"].len(), got.exact_duplicates, got.rows),
            (2, 1, 3)
        );
    }

    #[test]
    fn rows_outside_the_window_are_counted_and_not_kept() {
        let text = format!(
            "{HEAD}1646100000,x,BTC/USD,3,4,2,3.5,1,10\n1646096400,x,BTC/USD,2,3,1,2.5,1,20\n1646092800,x,BTC/USD,1,2,0.5,1.5,1,30\n"
        );
        let opts = CsvOptions {
            start: Some(1_646_096_400_000),
            end: Some(1_646_100_000_000),
            ..Default::default()
        };
        let got = import_bytes(text.as_bytes(), "t.csv", &opts, 0).unwrap();
        assert_eq!(got.bars["BTC"].len(), 1);
        assert_eq!(got.bars["BTC"][0].ts, 1_646_096_400_000);
        assert_eq!(got.outside_window, 2);
    }
}
