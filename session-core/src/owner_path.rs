//! Where in session data the owner is, for sessions another program writes.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::record::Data;

/// A path into session data naming the session's owner, for sessions an app in another
/// language writes with the owner nested in its data: express apps keep the user at
/// `req.session.user.id`, or with Passport at `req.session.passport.user`. A store
/// configured with one reads the owner of such a session from its data, so "log out
/// everywhere" finds sessions this side never wrote.
///
/// ```
/// use serde_json::json;
/// use session_core::OwnerPath;
///
/// let path: OwnerPath = "passport.user".parse()?;
/// let data = json!({"passport": {"user": 42}, "cart": []});
/// assert_eq!(path.owner_in(data.as_object().unwrap()), Some("42".to_owned()));
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct OwnerPath {
    path: String,
    segments: Vec<String>,
}

impl OwnerPath {
    /// `path`: object keys separated by dots (`user.id`). [`Error::Config`] when it is
    /// empty or has an empty key.
    pub fn parse(path: &str) -> Result<Self> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(Error::Config(format!(
                "owner path {path:?}: give object keys separated by dots, such as \
                 `user.id` or `passport.user`"
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            segments,
        })
    }

    /// The owner `data` names at this path: a non-empty string as it is, or an integer
    /// (within ±2^53, so JavaScript holds it exactly) as its decimal text; `None` for
    /// anything else or nothing there.
    pub fn owner_in(&self, data: &Data) -> Option<String> {
        let (first, rest) = self.segments.split_first()?;
        let mut value = data.get(first)?;
        for key in rest {
            value = value.as_object()?.get(key)?;
        }
        match value {
            Value::String(owner) if !owner.is_empty() => Some(owner.clone()),
            Value::Number(number) => integer_text(number),
            _ => None,
        }
    }

    /// The path as given.
    pub fn as_str(&self) -> &str {
        &self.path
    }
}

/// An integral number's decimal text (`7`, also for `7.0`), if JavaScript holds it exactly.
fn integer_text(number: &serde_json::Number) -> Option<String> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if let Some(n) = number.as_i64() {
        return (n.unsigned_abs() <= EXACT as u64).then(|| n.to_string());
    }
    if number.as_u64().is_some() {
        return None; // above i64::MAX, so above 2^53
    }
    let float = number.as_f64()?;
    (float.fract() == 0.0 && float.abs() <= EXACT).then(|| format!("{float:.0}"))
}

impl FromStr for OwnerPath {
    type Err = Error;

    fn from_str(path: &str) -> Result<Self> {
        Self::parse(path)
    }
}

impl fmt::Debug for OwnerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OwnerPath({:?})", self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner(path: &str, data: Value) -> Option<String> {
        OwnerPath::parse(path)
            .unwrap()
            .owner_in(data.as_object().unwrap())
    }

    #[test]
    fn owners_are_found_where_the_path_points() {
        assert_eq!(
            owner("user.id", json!({"user": {"id": "u1"}})),
            Some("u1".into())
        );
        assert_eq!(
            owner("passport.user", json!({"passport": {"user": 7}})),
            Some("7".into())
        );
        assert_eq!(owner("a", json!({"a": 7.0})), Some("7".into()));
        assert_eq!(owner("a", json!({"a": -12})), Some("-12".into()));
        for nothing in [
            json!({}),
            json!({"user": "u1"}),
            json!({"user": {"id": ""}}),
            json!({"user": {"id": null}}),
            json!({"user": {"id": 1.5}}),
            json!({"user": {"id": 1e300}}),
            json!({"user": {"id": u64::MAX}}),
            json!({"user": {"id": ["u1"]}}),
            json!({"user": [{"id": "u1"}]}),
        ] {
            assert_eq!(owner("user.id", nothing.clone()), None, "{nothing}");
        }
    }

    #[test]
    fn bad_paths_are_config_errors() {
        for bad in ["", ".", "user.", ".id", "a..b"] {
            assert!(
                matches!(OwnerPath::parse(bad), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
        assert_eq!("a.b".parse::<OwnerPath>().unwrap().as_str(), "a.b");
    }
}
