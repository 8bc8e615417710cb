//! A store URL taken apart: its scheme, and the `session_*` query parameters that name where
//! the sessions live (a Redis key prefix, a SQL table, a MongoDB collection), which are
//! ours and are removed before the URL reaches a driver.

use session_core::{Error, Result};

use crate::redact::redacted;

/// Where the sessions live inside the server, when not where the stores put them by
/// default: the `session_*` parameters of a URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Names {
    /// `session_prefix`: the Redis key prefix.
    pub prefix: Option<String>,
    /// `session_table`: the PostgreSQL, MySQL or SQLite table.
    pub table: Option<String>,
    /// `session_schema`: the PostgreSQL schema.
    pub schema: Option<String>,
    /// `session_database`: the MongoDB database (also the URL's path).
    pub database: Option<String>,
    /// `session_collection`: the MongoDB collection.
    pub collection: Option<String>,
    /// `session_format`: `express` for the format shared with express-session.
    pub format: Option<String>,
    /// `session_owner_path`: where the owner sits in express-session data (`passport.user`).
    pub owner_path: Option<String>,
}

impl Names {
    fn slot(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "session_prefix" => &mut self.prefix,
            "session_table" => &mut self.table,
            "session_schema" => &mut self.schema,
            "session_database" => &mut self.database,
            "session_collection" => &mut self.collection,
            "session_format" => &mut self.format,
            "session_owner_path" => &mut self.owner_path,
            _ => return None,
        })
    }

    /// Fails unless every parameter given is one of `allowed` (those `backend` has).
    pub fn only(&self, backend: &str, allowed: &[&str]) -> Result<()> {
        let given = [
            ("session_prefix", &self.prefix),
            ("session_table", &self.table),
            ("session_schema", &self.schema),
            ("session_database", &self.database),
            ("session_collection", &self.collection),
            ("session_format", &self.format),
            ("session_owner_path", &self.owner_path),
        ];
        for (name, value) in given {
            if value.is_some() && !allowed.contains(&name) {
                let takes = if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                };
                return Err(Error::Config(format!(
                    "`{name}` does not apply to a {backend} store (it takes: {takes})"
                )));
            }
        }
        Ok(())
    }
}

/// A setting taken apart.
#[derive(Debug)]
pub(crate) struct Setting {
    /// The scheme, lowercased (`""` for an empty setting).
    pub scheme: String,
    /// The URL without our parameters, for the driver.
    pub url: String,
    /// Our parameters.
    pub names: Names,
}

/// Parses `setting` (trimmed): the scheme is what comes before the first `:`; the
/// `session_*` query parameters of each comma-separated URL are taken out.
pub(crate) fn parse(setting: &str) -> Result<Setting> {
    let setting = setting.trim();
    let scheme = setting
        .split_once(':')
        .map_or(setting, |(scheme, _)| scheme)
        .to_ascii_lowercase();
    let mut names = Names::default();
    let mut parts = Vec::new();
    for part in setting.split(',') {
        let Some((base, query)) = part.split_once('?') else {
            parts.push(part.to_owned());
            continue;
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !name.starts_with("session_") {
                kept.push(pair);
                continue;
            }
            let Some(slot) = names.slot(name) else {
                return Err(Error::Config(format!(
                    "unknown parameter `{name}` in the store URL {}: the session_* \
                     parameters are session_prefix (Redis), session_table (SQL), \
                     session_schema (PostgreSQL), session_database and session_collection \
                     (MongoDB), session_format=express and session_owner_path (Redis, PostgreSQL, \
                     MongoDB)",
                    redacted(setting)
                )));
            };
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| Error::Config(format!("`{name}` is not UTF-8 once decoded")))?;
            if value.is_empty() {
                return Err(Error::Config(format!("`{name}` is empty")));
            }
            *slot = Some(value.into_owned());
        }
        parts.push(if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        });
    }
    Ok(Setting {
        scheme,
        url: parts.join(","),
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_parameters_are_taken_out_and_the_drivers_are_kept() {
        let s =
            parse(" postgres://u:p@db/app?sslmode=disable&session_table=t1&session_schema=admin ")
                .unwrap();
        assert_eq!(s.scheme, "postgres");
        assert_eq!(s.url, "postgres://u:p@db/app?sslmode=disable");
        assert_eq!(s.names.table.as_deref(), Some("t1"));
        assert_eq!(s.names.schema.as_deref(), Some("admin"));

        let s = parse("redis://a:1?session_prefix=app%3Asess%3A,redis://b:2").unwrap();
        assert_eq!(s.url, "redis://a:1,redis://b:2");
        assert_eq!(s.names.prefix.as_deref(), Some("app:sess:"));

        let s = parse("sqlite::memory:").unwrap();
        assert_eq!(
            (s.scheme.as_str(), s.url.as_str()),
            ("sqlite", "sqlite::memory:")
        );
        assert_eq!(parse("").unwrap().scheme, "");
        assert_eq!(parse("Memory").unwrap().scheme, "memory");
    }

    #[test]
    fn unknown_or_misplaced_parameters_are_refused_without_the_password() {
        let err = parse("postgres://u:hunter2@db/app?session_tabel=x").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("session_tabel"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let names = parse("redis://h?session_table=x").unwrap().names;
        assert!(names.only("redis", &["session_prefix"]).is_err());
        assert!(parse("redis://h?session_prefix=").is_err());
    }
}
