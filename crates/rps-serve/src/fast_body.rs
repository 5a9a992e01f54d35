//! A fast path for the one large body the server takes: `POST /predict` with a window of bars
//! (`{"coin": "BTC", "bars": [{"ts": …, "open": …, …}, …]}`, ~27 kB for 216 bars).
//!
//! It parses the common, well-formed shape in a single pass without serde's per-field
//! machinery, and gives up (`None`) at the first thing it does not expect: escapes in
//! strings, unknown or repeated keys, missing fields, numbers outside JSON's grammar or
//! range, trailing text. [`crate::api::parse_body`] then runs the ordinary serde parse, which
//! produces the documented 400/422 answers, so every error keeps its exact message and only
//! valid bodies take this path. Numbers are correctly rounded (an exact fast path for short
//! decimals, the standard library's parser otherwise).

use crate::api::{BarIn, PredictRequest, Ts};

/// Powers of ten up to 1e22, the largest that a double holds exactly.
static POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    /// Skips whitespace, then consumes `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// The bytes of a string without escapes or control characters (keys need no UTF-8
    /// check: they are compared with ASCII names).
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.i;
        let rest = &self.b[start..];
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        Some(&rest[..len])
    }

    /// A string without escapes or control characters, as UTF-8.
    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_string()?).ok()
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        self.ws();
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    /// A number in JSON's grammar: its value and whether it is an integer. Mantissas of up to
    /// 15 digits with small exponents (every price and volume here) are converted exactly
    /// (Clinger's fast path: both factors are exact doubles, so one rounding); anything else
    /// goes through the standard library's parser.
    fn number(&mut self) -> Option<(f64, bool)> {
        self.ws();
        let b = self.b;
        let start = self.i;
        let mut i = self.i;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let mut mantissa: u64 = 0;
        let mut digits = 0u32;
        let scan = |i: &mut usize, m: &mut u64, d: &mut u32| {
            let s = *i;
            while let Some(&c) = b.get(*i) {
                if !c.is_ascii_digit() {
                    break;
                }
                if *d < 19 {
                    *m = *m * 10 + u64::from(c - b'0');
                }
                *d += 1;
                *i += 1;
            }
            *i - s
        };
        match b.get(i) {
            Some(b'0') => {
                i += 1;
                digits += 1;
            }
            Some(c) if c.is_ascii_digit() => {
                scan(&mut i, &mut mantissa, &mut digits);
            }
            _ => return None,
        }
        let mut integer = true;
        let mut frac = 0usize;
        if b.get(i) == Some(&b'.') {
            i += 1;
            integer = false;
            frac = scan(&mut i, &mut mantissa, &mut digits);
            if frac == 0 {
                return None;
            }
        }
        let mut exp: i64 = 0;
        let mut exp_ok = true;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            integer = false;
            let eneg = b.get(i) == Some(&b'-');
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let s = i;
            while let Some(&c) = b.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                exp = exp.saturating_mul(10).saturating_add(i64::from(c - b'0'));
                i += 1;
            }
            if i == s {
                return None;
            }
            if eneg {
                exp = -exp;
            }
            exp_ok = exp.abs() < 1000;
        }
        self.i = i;
        let e10 = exp - frac as i64;
        let v = if digits <= 15 && exp_ok && e10.abs() <= 22 {
            let m = mantissa as f64; // < 10^15 < 2^53: exact
            let p = POW10[e10.unsigned_abs() as usize];
            if e10 < 0 { m / p } else { m * p }
        } else {
            std::str::from_utf8(&b[start..i])
                .ok()?
                .parse::<f64>()
                .ok()?
                .abs()
        };
        let v = if neg { -v } else { v };
        Some((v, integer))
    }

    fn f64(&mut self) -> Option<f64> {
        self.number().map(|(v, _)| v).filter(|v| v.is_finite())
    }

    /// `ts`: integer milliseconds in the accepted range, or RFC 3339 text.
    fn ts(&mut self) -> Option<Ts> {
        if self.peek()? == b'"' {
            let s = self.string()?;
            return rps_core::time::parse_utc(s)
                .ok()
                .map(|t| Ts(t.timestamp_millis()));
        }
        let (v, integer) = self.number()?;
        // The range Ts's deserializer accepts (exact in f64); anything else gets its message.
        (integer && (1e11..=32_503_680_000_000.0).contains(&v)).then_some(Ts(v as i64))
    }

    fn bar(&mut self) -> Option<BarIn> {
        if !self.eat(b'{') {
            return None;
        }
        let (mut ts, mut open, mut high, mut low, mut close) = (None, None, None, None, None);
        let mut volume: Option<Option<f64>> = None;
        if !self.eat(b'}') {
            loop {
                let key = self.raw_string()?;
                if !self.eat(b':') {
                    return None;
                }
                match key {
                    b"ts" if ts.is_none() => ts = Some(self.ts()?),
                    b"open" if open.is_none() => open = Some(self.f64()?),
                    b"high" if high.is_none() => high = Some(self.f64()?),
                    b"low" if low.is_none() => low = Some(self.f64()?),
                    b"close" if close.is_none() => close = Some(self.f64()?),
                    b"volume" if volume.is_none() => {
                        volume = Some(if self.literal(b"null") {
                            None
                        } else {
                            Some(self.f64()?)
                        });
                    }
                    _ => return None,
                }
                if self.eat(b',') {
                    continue;
                }
                if self.eat(b'}') {
                    break;
                }
                return None;
            }
        }
        Some(BarIn {
            ts: ts?,
            open: open?,
            high: high?,
            low: low?,
            close: close?,
            volume: volume.flatten(),
        })
    }

    fn bars(&mut self) -> Option<Option<Vec<BarIn>>> {
        if self.literal(b"null") {
            return Some(None);
        }
        if !self.eat(b'[') {
            return None;
        }
        let mut out = Vec::with_capacity(256);
        if self.eat(b']') {
            return Some(Some(out));
        }
        loop {
            out.push(self.bar()?);
            if self.eat(b',') {
                continue;
            }
            if self.eat(b']') {
                return Some(Some(out));
            }
            return None;
        }
    }
}

/// Parses a well-formed `POST /predict` body; `None` for anything else (the caller then runs
/// the ordinary parse, which explains what is wrong).
pub fn predict_request(bytes: &[u8]) -> Option<PredictRequest> {
    let mut c = Cursor { b: bytes, i: 0 };
    if !c.eat(b'{') {
        return None;
    }
    let (mut coin, mut bars): (Option<String>, Option<Option<Vec<BarIn>>>) = (None, None);
    if !c.eat(b'}') {
        loop {
            let key = c.raw_string()?;
            if !c.eat(b':') {
                return None;
            }
            match key {
                b"coin" if coin.is_none() => coin = Some(c.string()?.to_string()),
                b"bars" if bars.is_none() => bars = Some(c.bars()?),
                _ => return None,
            }
            if c.eat(b',') {
                continue;
            }
            if c.eat(b'}') {
                break;
            }
            return None;
        }
    }
    c.ws();
    if c.i != bytes.len() {
        return None;
    }
    Some(PredictRequest {
        coin: coin?,
        bars: bars.flatten(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slow(body: &str) -> Option<PredictRequest> {
        serde_json::from_str::<PredictRequest>(body).ok()
    }

    /// The fast path agrees with serde on what it accepts, and declines the rest.
    fn same(body: &str) {
        let fast = predict_request(body.as_bytes());
        let slow = slow(body);
        match (&fast, &slow) {
            (Some(f), Some(s)) => {
                assert_eq!(f.coin, s.coin, "{body}");
                let (fb, sb) = (f.bars.as_deref(), s.bars.as_deref());
                assert_eq!(fb.map(<[_]>::len), sb.map(<[_]>::len), "{body}");
                for (a, b) in fb.unwrap_or(&[]).iter().zip(sb.unwrap_or(&[])) {
                    assert_eq!(a.ts, b.ts, "{body}");
                    for (x, y) in [
                        (a.open, b.open),
                        (a.high, b.high),
                        (a.low, b.low),
                        (a.close, b.close),
                    ] {
                        // serde_json's default float parser may be an ULP off; ours is exact.
                        assert!((x - y).abs() <= y.abs() * 1e-15, "{body}: {x} vs {y}");
                    }
                    assert_eq!(a.volume.is_some(), b.volume.is_some(), "{body}");
                }
            }
            (None, _) => {} // declined: serde decides (and explains)
            (Some(_), None) => panic!("the fast path accepted a body serde refuses: {body}"),
        }
    }

    #[test]
    fn well_formed_bodies_parse_as_serde_parses_them() {
        let body = r#" { "coin" : "BTC", "bars": [
            {"ts": 1646092800000, "open": 43000.5, "high": 43100, "low": 42900.25, "close": 43050.125, "volume": 1.5e6},
            {"ts": "2022-03-01T01:00:00Z", "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": null},
            {"close": 1, "low": 1, "high": 1, "open": 1, "ts": 1646100000000}
        ] } "#;
        assert!(predict_request(body.as_bytes()).is_some());
        same(body);
        for b in [
            r#"{"coin":"BTC"}"#,
            r#"{"coin":"eth","bars":null}"#,
            r#"{"coin":"BTC","bars":[]}"#,
        ] {
            assert!(predict_request(b.as_bytes()).is_some(), "{b}");
            same(b);
        }
    }

    #[test]
    fn numbers_are_correctly_rounded() {
        for text in [
            "0",
            "-0",
            "1",
            "43000.5",
            "0.1",
            "0.30000000000000004",
            "12345.678901234",
            "1.5e6",
            "-2.5E-3",
            "9007199254740993",
            "123456789012345678901234",
            "1e-300",
            "4.9e-324",
            "1.7976931348623157e308",
            "0.000001234",
            "98765.4321e-2",
        ] {
            let mut c = Cursor {
                b: text.as_bytes(),
                i: 0,
            };
            let (v, _) = c.number().unwrap();
            assert_eq!(
                v.to_bits(),
                text.parse::<f64>().unwrap().to_bits(),
                "{text}"
            );
            assert_eq!(c.i, text.len(), "{text}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde() {
        for b in [
            r#"{"coin":"BTC","horizon":2}"#,
            r#"{"coin":"BTC","coin":"ETH"}"#,
            r#"{"coin":"B\u0054C"}"#,
            r#"{"lag_1":1,"rolling_mean_5":1,"hour":1}"#,
            r#"{"coin":"BTC","bars":[{"ts":1646092800,"open":1,"high":1,"low":1,"close":1}]}"#,
            r#"{"coin":"BTC","bars":[{"ts":1646092800000,"open":.5,"high":1,"low":1,"close":1}]}"#,
            r#"{"coin":"BTC","bars":[{"ts":1646092800000,"open":1e999,"high":1,"low":1,"close":1}]}"#,
            r#"{"coin":"BTC","bars":[{"ts":1646092800000,"open":"1","high":1,"low":1,"close":1}]}"#,
            r#"{"coin":"BTC","bars":[{"ts":1646092800000,"high":1,"low":1,"close":1}]}"#,
            r#"{"coin":"BTC","bars":[{"ts":1646092800000,"open":1,"high":1,"low":1,"close":1,"x":1}]}"#,
            r#"{"coin":"BTC","bars":[{"ts":1646092800000,"open":01,"high":1,"low":1,"close":1}]}"#,
            r#"{"coin":"BTC"} x"#,
            r#"{"coin":"BTC",}"#,
            r#"{"coin": "#,
            "",
        ] {
            assert!(predict_request(b.as_bytes()).is_none(), "{b}");
            same(b);
        }
    }
}
