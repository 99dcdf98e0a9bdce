//! Connection URLs whose passwords never show: [`DatabaseUrl`], and the masking every error built
//! from a URL or a configuration source passes through.

use serde::Deserialize;
use std::fmt;

/// A connection URL whose password is never shown.
///
/// `Debug` and `Display` print the URL with the password replaced by `***`.
///
/// ```
/// use activerecord::DatabaseUrl;
///
/// let url = DatabaseUrl::from("postgres://app:s3cret@db.internal:5432/bank");
/// assert_eq!(url.to_string(), "postgres://app:***@db.internal:5432/bank");
/// assert!(!format!("{url:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The full URL, password included: only for handing to a driver.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The password, if the URL has one.
    fn password(&self) -> Option<String> {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.password().map(str::to_owned))
            .filter(|p| !p.is_empty())
    }

    /// `text` with every occurrence of this URL's password (raw or percent-encoded) masked, and
    /// any other `scheme://user:password@` password too (see [`redact_secrets`]).
    pub(crate) fn redact(&self, text: &str) -> String {
        let mut known = Vec::new();
        if let Some(password) = self.password() {
            known.push(password);
        }
        redact_known(text, &[self.0.as_str()], known)
    }
}

/// `text` with the password of every `scheme://user:password@` it holds masked, whether or not
/// the URL parses (a configuration error may quote a malformed one), and every password found that
/// way in `sources` (the texts the error was built from) masked wherever it appears, raw or
/// percent-decoded. Errs on the side of masking too much: from the first `:` after `scheme://` to
/// the last `@` of the line.
pub(crate) fn redact_secrets(text: &str, sources: &[&str]) -> String {
    redact_known(text, sources, Vec::new())
}

fn redact_known(text: &str, sources: &[&str], mut known: Vec<String>) -> String {
    for source in sources.iter().copied().chain([text]) {
        for line in source.lines() {
            for span in password_spans(line) {
                known.push(line[span].to_owned());
            }
        }
    }
    let decoded: Vec<String> = known
        .iter()
        .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
        .collect();
    known.extend(decoded);
    known.retain(|p| !p.is_empty() && p != "***");
    // Longest first, so that a password containing another is masked whole.
    known.sort_by_key(|p| std::cmp::Reverse(p.len()));
    known.dedup();
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let mut last = 0;
        for span in password_spans(line) {
            out.push_str(&line[last..span.start]);
            out.push_str("***");
            last = span.end;
        }
        out.push_str(&line[last..]);
    }
    for password in &known {
        out = out.replace(password.as_str(), "***");
    }
    out
}

/// The byte ranges of `line` that hold the password of a `scheme://user:password@host`: from
/// the `:` after the user name to the last `@` of the line.
fn password_spans(line: &str) -> Vec<std::ops::Range<usize>> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(found) = line[from..].find("://") {
        let user_start = from + found + 3;
        let rest = &line[user_start..];
        let user_end = rest.find(|c: char| matches!(c, ':' | '@' | '/' | '"' | '\'') || c.is_whitespace());
        from = user_start;
        if let Some(user_len) = user_end.filter(|&u| rest[u..].starts_with(':')) {
            let start = user_start + user_len + 1;
            if let Some(at) = line.rfind('@').filter(|&at| at > start) {
                spans.push(start..at);
                from = at;
            }
        }
    }
    spans
}

impl From<&str> for DatabaseUrl {
    fn from(url: &str) -> Self {
        DatabaseUrl(url.to_owned())
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        DatabaseUrl(url)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut parsed) if parsed.password().is_some() => {
                // Cannot fail: the URL already has a password, so it can have another.
                let _ = parsed.set_password(Some("***"));
                f.write_str(parsed.as_str())
            }
            Ok(_) => f.write_str(&self.0),
            // An unparsable URL may still hold a password after the scheme: show only the scheme.
            Err(_) => write!(f, "{}:<unparsable URL>", self.0.split(':').next().unwrap_or("")),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_raw_and_encoded_passwords() {
        let url = DatabaseUrl::from("mysql://root:p%40ss@127.0.0.1:3306/bank");
        assert_eq!(url.to_string(), "mysql://root:***@127.0.0.1:3306/bank");
        assert_eq!(url.redact("bad password p%40ss / p@ss"), "bad password *** / ***");
        let no_password = DatabaseUrl::from("sqlite://bank.db");
        assert_eq!(no_password.to_string(), "sqlite://bank.db");
    }

    #[test]
    fn malformed_urls_are_masked_wherever_they_appear() {
        let cases = [
            (
                "x postgres://app:s3cret@db/bank y",
                "x postgres://app:***@db/bank y",
                "s3cret",
            ),
            ("\"mysql://root:p@ss:w0rd@db/b", "\"mysql://root:***@db/b", "w0rd"),
            ("postgres://:pw%40x@h", "postgres://:***@h", "pw"),
            (
                "no userinfo postgres://db:5432/bank",
                "no userinfo postgres://db:5432/bank",
                "\u{0}",
            ),
            (
                "user only postgres://app@db/bank",
                "user only postgres://app@db/bank",
                "\u{0}",
            ),
        ];
        for (text, masked, secret) in cases {
            let out = redact_secrets(text, &[]);
            assert_eq!(out, masked);
            assert!(!out.contains(secret), "{out}");
        }
        // A password found in the source is masked where the message quotes it without its URL.
        let out = redact_secrets("found `p%40ss` and `p@ss`", &["url = postgres://u:p%40ss@h/d"]);
        assert_eq!(out, "found `***` and `***`");
    }
}
