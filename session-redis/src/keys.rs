//! The key layout, in one place.

use session_core::SessionId;

/// Builds and recognises this store's keys.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: String) -> Self {
        Self { prefix }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `{prefix}{id}`: one string key per session.
    pub(crate) fn session(&self, id: &SessionId) -> String {
        format!("{}{}", self.prefix, id.expose())
    }

    /// `{prefix}owner:{<owner>}`: the owner's index, a sorted set. It can never clash with a
    /// session key, because ids never contain `:`.
    pub(crate) fn owner(&self, owner: &str) -> String {
        format!("{}{owner}}}", self.owner_prefix())
    }

    /// `{prefix}owner:{`: what an owner's index key is before the owner and the closing
    /// brace (the touch script builds the key from the owner it finds).
    pub(crate) fn owner_prefix(&self) -> String {
        format!("{}owner:{{", self.prefix)
    }

    /// The SCAN pattern matching every key of this store (the prefix, glob-escaped).
    pub(crate) fn scan_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 2);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        pattern
    }

    /// The session id a session key of this store names; `None` for any other key.
    pub(crate) fn session_id(&self, key: &[u8]) -> Option<SessionId> {
        let rest = key.strip_prefix(self.prefix.as_bytes())?;
        SessionId::parse(std::str::from_utf8(rest).ok()?).ok()
    }

    /// Whether `key` is a session key of this store (and not an owner index).
    pub(crate) fn is_session_key(&self, key: &[u8]) -> bool {
        key.strip_prefix(self.prefix.as_bytes())
            .and_then(|rest| std::str::from_utf8(rest).ok())
            .is_some_and(|rest| SessionId::parse(rest).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let keys = Keys::new("app*[1]:sess:".into());
        let id = SessionId::generate();
        let session = keys.session(&id);
        assert_eq!(session, format!("app*[1]:sess:{}", id.expose()));
        assert!(keys.is_session_key(session.as_bytes()));
        let owner = keys.owner("alice");
        assert_eq!(owner, "app*[1]:sess:owner:{alice}");
        assert_eq!(keys.owner_prefix(), "app*[1]:sess:owner:{");
        assert!(!keys.is_session_key(owner.as_bytes()));
        assert_eq!(keys.scan_pattern(), "app\\*\\[1\\]:sess:*");
    }
}
