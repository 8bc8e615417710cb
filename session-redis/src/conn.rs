//! The tiny interface each client implements; everything else is shared.

use std::fmt;

use async_trait::async_trait;
use session_core::{Error, Result};

use crate::scripts::ScriptId;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "redis";

/// A reply, reduced to what the store reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Nil,
    Int(i64),
    Bytes(Vec<u8>),
    Array(Vec<Reply>),
}

impl Reply {
    pub(crate) fn into_opt_bytes(self) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Nil => Ok(None),
            Self::Bytes(bytes) => Ok(Some(bytes)),
            other => Err(unexpected("a string or nil", &other)),
        }
    }

    pub(crate) fn into_int(self) -> Result<i64> {
        match self {
            Self::Int(n) => Ok(n),
            other => Err(unexpected("an integer", &other)),
        }
    }

    pub(crate) fn into_array(self) -> Result<Vec<Reply>> {
        match self {
            Self::Array(items) => Ok(items),
            Self::Nil => Ok(Vec::new()),
            other => Err(unexpected("an array", &other)),
        }
    }

    /// Every string in the reply, depth first (INFO from several nodes comes back as a map).
    pub(crate) fn strings(self) -> Vec<String> {
        match self {
            Self::Bytes(bytes) => vec![String::from_utf8_lossy(&bytes).into_owned()],
            Self::Array(items) => items.into_iter().flat_map(Self::strings).collect(),
            _ => Vec::new(),
        }
    }
}

/// A reply the store did not expect (a bug, or a foreign value under our keys).
#[derive(Debug)]
pub(crate) struct UnexpectedReply(pub(crate) String);

impl fmt::Display for UnexpectedReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UnexpectedReply {}

pub(crate) fn unexpected(wanted: &str, got: &Reply) -> Error {
    Error::permanent(
        BACKEND,
        UnexpectedReply(format!("expected {wanted} from redis, got {got:?}")),
    )
}

/// Server error codes that go away by themselves (a loading replica, a failover, a
/// resharding, a busy script).
pub(crate) fn transient_server_error(message: &str) -> bool {
    let code = message.split_whitespace().next().unwrap_or("");
    matches!(
        code,
        "LOADING"
            | "CLUSTERDOWN"
            | "TRYAGAIN"
            | "MASTERDOWN"
            | "BUSY"
            | "READONLY"
            | "MOVED"
            | "ASK"
            | "NOREPLICAS"
    )
}

/// What the store needs from a client: a handful of primitives, each routed by its first key
/// on a cluster.
#[async_trait]
pub(crate) trait Connection: Send + Sync + 'static {
    /// Runs one of the store's scripts (`EVALSHA`, loading it after `NOSCRIPT`).
    async fn eval(&self, script: ScriptId, key: &str, args: Vec<Vec<u8>>) -> Result<Reply>;

    /// Runs a command whose first argument is its only key.
    async fn command(&self, name: &'static str, key: &str, args: Vec<Vec<u8>>) -> Result<Reply>;

    /// Every key matching `pattern`, on every primary (duplicates possible).
    async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>>;

    /// `INFO server` of the node(s) the client reaches.
    async fn info_server(&self) -> Result<Vec<String>>;
}
