//! What the formats shared with [express-session] have in common: the session's cookie
//! object and JavaScript's date text.
//!
//! express-session keeps, beside each session's data, a `cookie` object: the settings of
//! that session's cookie (`originalMaxAge`, `expires`, `httpOnly`, `path`, `domain`,
//! `secure`, `sameSite`). Every store sharing sessions with it (connect-redis,
//! connect-mongo, connect-pg-simple) stores the object inside the session's JSON; a
//! [`Record`] read in such a format carries it ([`Record::cookie`]), and a write stores
//! [`cookie_json`] of the record.
//!
//! [express-session]: https://www.npmjs.com/package/express-session

mod dates;
pub mod object;
mod sessions;

pub use dates::{js_iso, parse_js_iso};
pub use sessions::{ExpressSession, ExpressSessions};

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::record::{Data, Record};
use crate::time_util::{now, unix_millis};

/// The session data's field holding the cookie object in express-session's JSON.
pub const COOKIE_FIELD: &str = "cookie";

/// express-session's cookie object for a session that has none yet (created by Rust):
/// a cookie for the record's remaining lifetime, `HttpOnly`, path `/`, `SameSite=Lax`.
pub fn default_cookie(expires_at: OffsetDateTime) -> Data {
    let mut cookie = Map::new();
    let max_age = (unix_millis(expires_at) - unix_millis(now())).max(0);
    cookie.insert("originalMaxAge".into(), Value::from(max_age));
    cookie.insert("expires".into(), Value::from(js_iso(expires_at)));
    cookie.insert("httpOnly".into(), Value::Bool(true));
    cookie.insert("path".into(), Value::from("/"));
    cookie.insert("sameSite".into(), Value::from("lax"));
    cookie
}

/// The cookie object a write stores for `record`, as JSON: [`Record::cookie`] (or
/// [`default_cookie`]) with `expires` set to the record's `expires_at`; a `null` or
/// missing `expires` (a browser-session cookie) stays so.
pub fn cookie_json(record: &Record) -> String {
    let mut cookie = record
        .cookie()
        .cloned()
        .unwrap_or_else(|| default_cookie(record.expires_at()));
    if let Some(expires) = cookie.get_mut("expires")
        && !expires.is_null()
    {
        *expires = Value::from(js_iso(record.expires_at()));
    }
    // express-session's member order (its `Cookie#data`), then any other member.
    let mut out = String::from("{");
    let known = COOKIE_MEMBERS
        .iter()
        .filter_map(|key| cookie.get_key_value(*key));
    let others = cookie
        .iter()
        .filter(|(key, _)| !COOKIE_MEMBERS.contains(&key.as_str()));
    for (key, value) in known.chain(others) {
        if out.len() > 1 {
            out.push(',');
        }
        // Strings and JSON values always serialize.
        out.push_str(&serde_json::to_string(key).unwrap_or_default());
        out.push(':');
        out.push_str(&serde_json::to_string(value).unwrap_or_default());
    }
    out.push('}');
    out
}

/// The members of express-session's cookie object, in the order it writes them.
const COOKIE_MEMBERS: [&str; 9] = [
    "originalMaxAge",
    "partitioned",
    "priority",
    "expires",
    "secure",
    "httpOnly",
    "domain",
    "path",
    "sameSite",
];

/// When the cookie object says the session ends: its `expires`, when that is a date.
pub fn cookie_expires(cookie: &Data) -> Option<OffsetDateTime> {
    cookie
        .get("expires")
        .and_then(Value::as_str)
        .and_then(parse_js_iso)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn cookie_json_keeps_the_members_and_moves_expires() {
        let mut record = Record::new(now() + Duration::hours(1));
        let default: Value = serde_json::from_str(&cookie_json(&record)).unwrap();
        assert_eq!(default["httpOnly"], true);
        assert_eq!(
            default["expires"].as_str().and_then(parse_js_iso),
            Some(record.expires_at())
        );
        let mut cookie = Map::new();
        cookie.insert("originalMaxAge".into(), Value::from(2_592_000_000_u64));
        cookie.insert("expires".into(), Value::from("2020-01-01T00:00:00.000Z"));
        cookie.insert("domain".into(), Value::from("example.com"));
        record.set_cookie(Some(cookie));
        let text = cookie_json(&record);
        assert!(
            text.starts_with(r#"{"originalMaxAge":2592000000,"expires":""#),
            "{text}"
        );
        let written: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(written["originalMaxAge"], 2_592_000_000_u64);
        assert_eq!(written["domain"], "example.com");
        assert_eq!(
            cookie_expires(written.as_object().unwrap()),
            Some(record.expires_at())
        );
        let mut browser = Map::new();
        browser.insert("originalMaxAge".into(), Value::Null);
        browser.insert("expires".into(), Value::Null);
        record.set_cookie(Some(browser));
        let written: Value = serde_json::from_str(&cookie_json(&record)).unwrap();
        assert!(written["expires"].is_null());
    }
}
