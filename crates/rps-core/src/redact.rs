//! Removes credentials from URLs before they are printed, logged, stored in a report or sent
//! in a response: the userinfo of `scheme://user:password@host` and the values of query
//! parameters that carry secrets (`?token=…`, `?api_key=…`, `X-Amz-Signature=…`).
//!
//! [`text`] works on free text, so it also cleans URLs that other libraries embed in their
//! error messages (reqwest writes `error sending request for url (http://…)`). The error-chain
//! renderer ([`crate::error::chain`]) and the log writer of every binary pass their output
//! through it; code that shows a configured URL on purpose (a tracking URI in a log line or a
//! report) uses [`url`].

use std::borrow::Cow;

/// What replaces a removed credential.
pub const MASK: &str = "***";

/// Echoed text clipped to at most `max` bytes (at a character boundary, surrounding
/// whitespace trimmed), with the full length said: an upstream error body, a path or a value
/// a client sent never makes an error line or response grow without bound.
pub fn clip(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in total)", &s[..end], s.len())
}

/// [`clip`] in place (no allocation when `s` is already short enough).
pub fn clip_in_place(s: &mut String, max: usize) {
    if s.len() > max {
        *s = clip(s, max);
    }
}

/// Query parameter names whose value is a secret, compared case-insensitively; a name that
/// contains any of [`SECRET_PARTS`] counts too.
const SECRET_PARAMS: &[&str] = &["sig", "key", "auth", "code", "pass", "pwd"];
/// Substrings of query parameter names that mark a secret (`access_token`, `x-api-key`,
/// `X-Amz-Credential`, `client_secret`, `password`, `X-Amz-Signature`).
const SECRET_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "api_key",
    "api-key",
    "signature",
    "credential",
    "session",
];

/// Bytes that end a URL embedded in text.
fn ends_url(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`' | b')' | b']')
}

fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

fn secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_PARAMS.contains(&n.as_str()) || SECRET_PARTS.iter().any(|p| n.contains(p))
}

/// One URL (`scheme://…`, without surrounding text) with its credentials masked.
fn redact_one(u: &str, out: &mut String) {
    // The authority runs to the first `/`, `?` or `#` after `://`.
    let Some(sep) = u.find("://") else {
        out.push_str(u);
        return;
    };
    let after = sep + 3;
    let auth_end = u[after..]
        .find(['/', '?', '#'])
        .map_or(u.len(), |i| after + i);
    out.push_str(&u[..after]);
    let authority = &u[after..auth_end];
    match authority.rfind('@') {
        Some(at) => {
            out.push_str(MASK);
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let rest = &u[auth_end..];
    let Some(q) = rest.find('?') else {
        out.push_str(rest);
        return;
    };
    out.push_str(&rest[..=q]);
    let query = &rest[q + 1..];
    let (query, fragment) = match query.find('#') {
        Some(h) => query.split_at(h),
        None => (query, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if secret_param(name) && !value.is_empty() => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
}

/// `s` with the credentials of every URL in it masked; borrowed when there was nothing to
/// mask.
pub fn text(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut copied = 0; // bytes of `s` already in `out`
    let mut from = 0;
    let mut changed = false;
    while let Some(i) = s[from..].find("://").map(|i| from + i) {
        let mut start = i;
        while start > copied && is_scheme_byte(b[start - 1]) {
            start -= 1;
        }
        let end = (i + 3..b.len())
            .find(|&j| ends_url(b[j]))
            .unwrap_or(b.len());
        if start == i {
            from = i + 3; // no scheme: not a URL
            continue;
        }
        let mut one = String::new();
        redact_one(&s[start..end], &mut one);
        if one != s[start..end] {
            out.push_str(&s[copied..start]);
            out.push_str(&one);
            copied = end;
            changed = true;
        }
        from = end.max(i + 3);
    }
    if !changed {
        return Cow::Borrowed(s);
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// A configured URL as it may be shown: `http://user:pw@host/?token=t` →
/// `http://***@host/?token=***`.
pub fn url(u: &str) -> String {
    text(u).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_secret_query_values_are_masked_and_the_rest_is_kept() {
        assert_eq!(
            url("http://user:s3cr3t@mlflow.internal:5000/?token=tok&experiment=rps#x"),
            "http://***@mlflow.internal:5000/?token=***&experiment=rps#x"
        );
        assert_eq!(
            url("https://b.s3.amazonaws.com/k?X-Amz-Credential=AK%2F1&X-Amz-Signature=ab12&x=1"),
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&x=1"
        );
        assert_eq!(url("http://127.0.0.1:5055"), "http://127.0.0.1:5055");
        assert_eq!(url("s3://bucket/prefix"), "s3://bucket/prefix");
    }

    #[test]
    fn urls_inside_error_text_are_cleaned_and_clean_text_is_borrowed() {
        let e = "MLflow request GET http://u:pw@h:9/api/2.0/mlflow/runs/get?run_id=1 failed: \
                 error sending request for url (http://h:9/x?access_token=abc&a=b): refused";
        assert_eq!(
            text(e),
            "MLflow request GET http://***@h:9/api/2.0/mlflow/runs/get?run_id=1 failed: \
             error sending request for url (http://h:9/x?access_token=***&a=b): refused"
        );
        let clean = "store s3://bucket/rps: not found; see http://127.0.0.1:9000/";
        assert!(matches!(text(clean), Cow::Borrowed(_)));
        // An `@` in a path is not userinfo; `://` without a scheme is not a URL.
        assert_eq!(text("http://h/a@b and ://x@y"), "http://h/a@b and ://x@y");
    }

    #[test]
    fn no_byte_of_a_secret_survives_in_any_position() {
        for s in [
            "http://alice:hunter2@h",
            "(http://alice:hunter2@h/p)",
            "x=\"https://alice:hunter2@h:1/p?q=1\"",
            "http://h/?password=hunter2",
            "http://h/?Api-Key=hunter2#frag",
        ] {
            assert!(!text(s).contains("hunter2"), "{s} -> {}", text(s));
        }
    }

    #[test]
    fn clipping_keeps_short_text_and_cuts_long_text_at_a_char_boundary() {
        assert_eq!(clip("  short  ", 10), "short");
        let long = "é".repeat(1000);
        let c = clip(&long, 101);
        assert!(c.starts_with(&"é".repeat(50)), "{c}");
        assert!(c.ends_with("… (2000 bytes in total)"), "{c}");
        assert!(c.len() < 140, "{}", c.len());
        let mut s = "x".repeat(10_000);
        clip_in_place(&mut s, 600);
        assert!(s.len() < 640, "{}", s.len());
    }
}
