//! Store URLs as they may be printed: every password replaced by `***`, in the URL itself and
//! in any message that might repeat it (a driver's error quoting its connection string).
//!
//! What counts as a secret: the password of every `scheme://user:password@host` in the text
//! (a comma-separated node list has one per node), and the value of every query parameter
//! whose name holds `pass`, `pwd`, `secret`, `token` or `credential`, or names MongoDB's
//! `authMechanismProperties` (PostgreSQL takes `?password=`, Redis Sentinel
//! `?sentinel_password=`, MongoDB AWS session tokens). Redacting too much is harmless;
//! printing a password is not.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// What stands in for a secret.
pub const MASK: &str = "***";

/// Query parameters whose values are secrets, by a part of their (lowercased) name.
const SECRET_PARAMS: [&str; 6] = [
    "pass",
    "pwd",
    "secret",
    "token",
    "credential",
    "authmechanismproperties",
];

/// A store URL that prints with its passwords replaced by [`MASK`]; see [`redacted`].
#[derive(Clone, Copy)]
pub struct Redacted<'a>(&'a str);

/// `url`, to print: `postgres://app:***@db:5432/app`. Its `Debug` is the same, so a
/// redacted URL can't leak through `{:?}` either.
pub fn redacted(url: &str) -> Redacted<'_> {
    Redacted(url)
}

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&mask(self.0, &secret_ranges(self.0)))
    }
}

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// `text` (an error message, a usage line) with every secret of `url` replaced by
/// [`MASK`] wherever it appears, as written or percent-decoded, and then every password of
/// any URL in the text. A short password may mask unrelated words too: a garbled message
/// is better than a leaked password.
pub fn scrub(text: &str, url: &str) -> String {
    let mut secrets: Vec<String> = Vec::new();
    for range in secret_ranges(url) {
        let raw = &url[range];
        secrets.push(raw.to_owned());
        if let Ok(Cow::Owned(decoded)) = percent_encoding::percent_decode_str(raw).decode_utf8() {
            secrets.push(decoded);
        }
    }
    // Longest first, so a secret containing another is masked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        text = text.replace(secret.as_str(), MASK);
    }
    let ranges = secret_ranges(&text);
    mask(&text, &ranges)
}

/// `text` with `ranges` (sorted, disjoint) replaced by [`MASK`].
fn mask(text: &str, ranges: &[Range<usize>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for range in ranges {
        out.push_str(&text[at..range.start]);
        out.push_str(MASK);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Where the secrets are in `text`: sorted, disjoint byte ranges, none empty.
fn secret_ranges(text: &str) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    // Passwords: in the authority after each `://`, between the first `:` of the user info
    // and its last `@` (an unencoded `@` in a password is taken as part of it).
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let start = from + found + 3;
        let end = text[start..]
            .find(|c: char| matches!(c, '/' | '?' | '#' | '"' | '\'' | '`') || c.is_whitespace())
            .map_or(text.len(), |n| start + n);
        let authority = &text[start..end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
            && colon + 1 < at
        {
            ranges.push(start + colon + 1..start + at);
        }
        from = start;
    }
    // Secret query parameters: `name=value` after a `?` or `&`.
    for (sep, _) in text.match_indices(['?', '&']) {
        let pair_start = sep + 1;
        let pair_end = text[pair_start..]
            .find(|c: char| matches!(c, '&' | '#' | ',' | '"' | '\'' | '`') || c.is_whitespace())
            .map_or(text.len(), |n| pair_start + n);
        let pair = &text[pair_start..pair_end];
        if let Some((name, value)) = pair.split_once('=') {
            let name = name.to_ascii_lowercase();
            if !value.is_empty() && SECRET_PARAMS.iter().any(|s| name.contains(s)) {
                let start = pair_start + name.len() + 1;
                ranges.push(start..pair_end);
            }
        }
    }
    ranges.sort_by_key(|r| r.start);
    // Merge overlaps (a password holding `?pass=`), so masking never slices twice.
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
    for range in ranges {
        match merged.last_mut() {
            Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
            _ => merged.push(range),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(url: &str) -> String {
        redacted(url).to_string()
    }

    #[test]
    fn passwords_in_user_info_are_masked() {
        assert_eq!(
            shown("postgres://app:s3cret@db:5432/app"),
            "postgres://app:***@db:5432/app"
        );
        assert_eq!(
            shown("redis://:pw@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            shown("redis://:a@h1:1,redis://:b@h2:2"),
            "redis://:***@h1:1,redis://:***@h2:2"
        );
        assert_eq!(shown("mongodb://u:p@t@h/db"), "mongodb://u:***@h/db");
        // No password, nothing to hide.
        assert_eq!(shown("redis://user@cache"), "redis://user@cache");
        assert_eq!(shown("sqlite:///tmp/s.db"), "sqlite:///tmp/s.db");
        assert_eq!(shown("memory"), "memory");
        assert_eq!(
            format!("{:?}", redacted("mysql://u:p@h")),
            "\"mysql://u:***@h\""
        );
    }

    #[test]
    fn secret_query_parameters_are_masked() {
        assert_eq!(
            shown("postgres://db/app?user=app&password=s3cret&sslmode=require"),
            "postgres://db/app?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            shown("redis+sentinel://s1:26379/mymaster?sentinel_password=x1&node=s2:26379"),
            "redis+sentinel://s1:26379/mymaster?sentinel_password=***&node=s2:26379"
        );
        assert_eq!(
            shown("mongodb://h/?authMechanismProperties=AWS_SESSION_TOKEN:tok"),
            "mongodb://h/?authMechanismProperties=***"
        );
    }

    #[test]
    fn scrub_masks_a_password_wherever_a_message_repeats_it() {
        let url = "postgres://app:p%40ss-word@db/app";
        let message = "connecting to postgres://app:p%40ss-word@db/app failed: \
                       bad password p@ss-word; p%40ss-word";
        let scrubbed = scrub(message, url);
        assert!(!scrubbed.contains("ss-word"), "{scrubbed}");
        assert!(scrubbed.contains("postgres://app:***@db/app"), "{scrubbed}");
        // URLs in a message are masked even when they aren't the one given.
        assert_eq!(
            scrub("see redis://:other@h", "memory"),
            "see redis://:***@h"
        );
    }
}
