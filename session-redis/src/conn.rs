//! The tiny interface each client implements; everything else is shared.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use session_core::{BoxError, Error, Result};

use crate::scripts::ScriptId;

/// The backend name in errors.
pub(crate) const BACKEND: &str = "redis";

/// A reply, reduced to what the store reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    Nil,
    Int(i64),
    /// A string, as the client received it (no copy).
    Bytes(Bytes),
    Array(Vec<Reply>),
}

impl Reply {
    pub(crate) fn into_opt_bytes(self) -> Result<Option<Bytes>> {
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

/// Server error replies that say the command did not run and that go away by themselves (a
/// loading replica, a failover, a resharding, a busy script): the store sends such a command
/// again ([`RetryRefused`]), which is safe for every command, unlike a retry after a lost
/// reply.
pub(crate) fn refusal(message: &str) -> bool {
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

/// The source of an [`Error`] for a server reply that refused a command ([`refusal`]): it
/// did not run, so it may be sent again.
#[derive(Debug)]
pub(crate) struct Refused(pub(crate) BoxError);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "redis refused the command, which did not run: {}",
            self.0
        )
    }
}

impl std::error::Error for Refused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A client error as a store error: a command that did not run (a server [`refusal`], or
/// one the client never sent: `not_sent`), retried by [`RetryRefused`]; another transient
/// failure; or a permanent one.
pub(crate) fn classify(
    err: BoxError,
    server_message: Option<&str>,
    not_sent: bool,
    transient: bool,
) -> Error {
    if not_sent || server_message.is_some_and(refusal) {
        Error::transient(BACKEND, Refused(err))
    } else if transient {
        Error::transient(BACKEND, err)
    } else {
        Error::permanent(BACKEND, err)
    }
}

fn is_refused(err: &Error) -> bool {
    matches!(err, Error::Backend { source, .. } if source.is::<Refused>())
}

/// Sends a command again after a [refusal](refusal) (a command that did not run), pausing a
/// little longer each time, until it runs or the store's call timeout ends the wait. Never
/// after any other failure: a command whose reply was lost may have run, and sending a
/// compare-and-swap again could apply it twice. Both clients are configured never to send a
/// command again by themselves; this is the one place the store does.
async fn retry_refused<T, F, Fut>(mut call: F) -> Result<T>
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = Result<T>> + Send,
{
    let mut pause = Duration::from_millis(2);
    loop {
        match call().await {
            Err(err) if is_refused(&err) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The client the store talks through, each of its calls [retried after a
/// refusal](retry_refused).
///
/// An enum rather than a `Box<dyn Connection>`: a trait object's async calls each cost a
/// boxed future, one per layer (the retry and the client, so two per command); matched
/// here, only the client's future is boxed.
pub(crate) enum Conn {
    /// fred.
    #[cfg(feature = "fred")]
    Fred(crate::fred_client::FredConnection),
    /// redis-rs.
    #[cfg(feature = "redis")]
    RedisRs(crate::redis_rs_client::RedisRsConnection),
}

/// `$call` on whichever client `$conn` is, awaited in a box: the clients' futures are large
/// (redis-rs's most), and inline every future around them grew to the largest, so that
/// building and moving them copied far more than the box saves (measured: +36% of the
/// instructions per `create` with redis-rs, nearly all `memcpy`), and session-admin's
/// futures exceeded the compiler's layout depth. Boxed as a trait object: with the concrete
/// type the compiler's `Send`/`Sync` checks of the store's futures went through every client
/// future and overflowed with redis-rs alone.
macro_rules! on_client {
    ($conn:expr, $client:ident => $call:expr) => {
        match $conn {
            #[cfg(feature = "fred")]
            Conn::Fred($client) => erased($call).await,
            #[cfg(feature = "redis")]
            Conn::RedisRs($client) => erased($call).await,
        }
    };
}

/// `call` boxed as `dyn Future` (see `on_client!`).
fn erased<'a, T>(
    call: impl Future<Output = T> + Send + 'a,
) -> std::pin::Pin<Box<dyn Future<Output = T> + Send + 'a>> {
    Box::pin(call)
}

impl Conn {
    /// [`Connection::eval`], retried after a refusal.
    pub(crate) async fn eval(
        &self,
        script: ScriptId,
        keys: &[String],
        args: Vec<Bytes>,
    ) -> Result<Reply> {
        let args = &args[..];
        retry_refused(move || async move { on_client!(self, c => c.eval(script, keys, args)) })
            .await
    }

    /// [`Connection::command`], retried after a refusal.
    pub(crate) async fn command(&self, command: Command, key: &str) -> Result<Reply> {
        let command = &command;
        retry_refused(move || async move { on_client!(self, c => c.command(command, key)) }).await
    }

    /// [`Connection::scan`], retried after a refusal.
    pub(crate) async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        retry_refused(move || async move { on_client!(self, c => c.scan(pattern)) }).await
    }

    /// [`Connection::info_server`], retried after a refusal.
    pub(crate) async fn info_server(&self) -> Result<Vec<String>> {
        retry_refused(move || async move { on_client!(self, c => c.info_server()) }).await
    }

    /// [`Connection::scan_nodes`], retried after a refusal.
    pub(crate) async fn scan_nodes(&self) -> Result<Vec<String>> {
        retry_refused(move || async move { on_client!(self, c => c.scan_nodes()) }).await
    }

    /// [`Connection::scan_step`], retried after a refusal.
    pub(crate) async fn scan_step(
        &self,
        node: &str,
        cursor: u64,
        pattern: &str,
        count: u32,
    ) -> Result<ScanStep> {
        retry_refused(move || async move {
            on_client!(self, c => c.scan_step(node, cursor, pattern, count))
        })
        .await
    }
}

/// The plain single-key commands the store sends. Typed rather than named so that each
/// client sends them through its own calls: fred flushes its socket after every custom
/// command, which cost a third of the throughput under concurrency, while its own `GET` and
/// `SET` are written out in batches.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Command {
    /// `GET key`.
    Get,
    /// `GETDEL key`.
    GetDel,
    /// `SET key value [NX] [PXAT at]`: `Nil` when `NX` found the key taken.
    Set {
        /// The value.
        value: Bytes,
        /// Adds `NX`.
        only_if_absent: bool,
        /// Adds `PXAT` (Unix ms).
        expire_at_ms: Option<i64>,
    },
    /// `PTTL key`.
    Pttl,
    /// `EXISTS key`.
    Exists,
    /// `PEXPIREAT key at` (Unix ms): idempotent, so safe to re-send.
    PexpireAt(i64),
}

impl Command {
    /// `SET key value [PXAT at]`, overwriting.
    pub(crate) fn set(value: Bytes, expire_at_ms: Option<i64>) -> Self {
        Self::Set {
            value,
            only_if_absent: false,
            expire_at_ms,
        }
    }

    /// Whether it changes the data (so under `Durability::Replicated` waits for replicas).
    pub(crate) fn writes(&self) -> bool {
        matches!(self, Self::GetDel | Self::Set { .. } | Self::PexpireAt(_))
    }

    /// The command's name and its arguments after the key, as sent on the wire (fred has a
    /// typed call per command, used when no `WAIT` follows).
    pub(crate) fn parts(&self) -> (&'static str, Vec<Bytes>) {
        match *self {
            Self::Get => ("GET", Vec::new()),
            Self::GetDel => ("GETDEL", Vec::new()),
            Self::Pttl => ("PTTL", Vec::new()),
            Self::Exists => ("EXISTS", Vec::new()),
            Self::PexpireAt(at) => ("PEXPIREAT", vec![at.to_string().into()]),
            Self::Set {
                ref value,
                only_if_absent,
                expire_at_ms,
            } => {
                let mut args = vec![value.clone()];
                if only_if_absent {
                    args.push(Bytes::from_static(b"NX"));
                }
                if let Some(at) = expire_at_ms {
                    args.extend([Bytes::from_static(b"PXAT"), at.to_string().into()]);
                }
                ("SET", args)
            }
        }
    }
}

/// What the store needs from a client: a handful of primitives, each routed by its first key
/// on a cluster. Called only through [`Conn`], which matches the client statically (so a
/// call's future is never boxed) and sends a refused command again.
pub(crate) trait Connection: Send + Sync + 'static {
    /// Runs one of the store's scripts (`EVALSHA`, loading it after `NOSCRIPT`) on `keys`
    /// (routed by the first on a cluster).
    fn eval(
        &self,
        script: ScriptId,
        keys: &[String],
        args: &[Bytes],
    ) -> impl Future<Output = Result<Reply>> + Send;

    /// Runs `command` on `key`.
    fn command(&self, command: &Command, key: &str) -> impl Future<Output = Result<Reply>> + Send;

    /// Every key matching `pattern`, on every primary (duplicates possible).
    fn scan(&self, pattern: &str) -> impl Future<Output = Result<Vec<Vec<u8>>>> + Send;

    /// `INFO server` of the node(s) the client reaches.
    fn info_server(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// The nodes a [`ScanSessions`](session_core::ScanSessions) scan walks, in an order that
    /// stays the same while the deployment does: on a Cluster the primaries' `host:port`,
    /// ordered by the lowest hash slot each serves (so a failover keeps a shard's place);
    /// otherwise the one server, as `""`.
    fn scan_nodes(&self) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// One `SCAN cursor MATCH pattern COUNT count` on `node` (from [`Self::scan_nodes`]).
    fn scan_step(
        &self,
        node: &str,
        cursor: u64,
        pattern: &str,
        count: u32,
    ) -> impl Future<Output = Result<ScanStep>> + Send;
}

/// A node from [`Connection::scan_nodes`] as host and port; `None` for the one server.
pub(crate) fn node_address(node: &str) -> Result<Option<(&str, u16)>> {
    if node.is_empty() {
        return Ok(None);
    }
    node.rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse().ok()?)))
        .map(Some)
        .ok_or_else(|| Error::Config(format!("not a cluster node address: {node}")))
}

/// What one `SCAN` step returned.
#[derive(Debug, Default)]
pub(crate) struct ScanStep {
    /// The cursor to continue from; 0 once the node has been walked.
    pub(crate) cursor: u64,
    /// The keys met (those matching the pattern; some may be met again later).
    pub(crate) keys: Vec<Vec<u8>>,
}

impl ScanStep {
    /// A `SCAN` reply: `[cursor, [key, ...]]`.
    pub(crate) fn parse(reply: Reply) -> Result<Self> {
        let shape = |got: &Reply| unexpected("a SCAN reply [cursor, [keys]]", got);
        let mut items = reply.into_array()?.into_iter();
        let cursor = match items.next() {
            Some(Reply::Bytes(text)) => std::str::from_utf8(&text)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| shape(&Reply::Bytes(text.clone())))?,
            Some(Reply::Int(n)) => u64::try_from(n).map_err(|_| shape(&Reply::Int(n)))?,
            other => return Err(shape(&other.unwrap_or(Reply::Nil))),
        };
        let mut keys = Vec::new();
        for key in items
            .next()
            .map(Reply::into_array)
            .transpose()?
            .unwrap_or_default()
        {
            keys.extend(key.into_opt_bytes()?.map(Vec::from));
        }
        Ok(Self { cursor, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(command: Command) -> (&'static str, Vec<String>) {
        let (name, args) = command.parts();
        let args = args
            .into_iter()
            .map(|a| String::from_utf8(a.to_vec()).unwrap())
            .collect();
        (name, args)
    }

    #[test]
    fn set_sends_nx_before_pxat() {
        let command = Command::Set {
            value: Bytes::from_static(b"v"),
            only_if_absent: true,
            expire_at_ms: Some(1_700_000_000_123),
        };
        assert_eq!(
            wire(command),
            (
                "SET",
                vec![
                    "v".into(),
                    "NX".into(),
                    "PXAT".into(),
                    "1700000000123".into()
                ]
            )
        );
        assert_eq!(
            wire(Command::set(Bytes::from_static(b"v"), None)),
            ("SET", vec!["v".into()])
        );
    }

    #[test]
    fn scan_replies_parse_and_node_addresses_split() {
        let reply = Reply::Array(vec![
            Reply::Bytes(Bytes::from_static(b"17")),
            Reply::Array(vec![Reply::Bytes(Bytes::from_static(b"sess:a"))]),
        ]);
        let step = ScanStep::parse(reply).unwrap();
        assert_eq!((step.cursor, step.keys), (17, vec![b"sess:a".to_vec()]));
        for bad in [
            Reply::Int(1),
            Reply::Array(vec![Reply::Bytes(Bytes::from_static(b"-1"))]),
            Reply::Array(vec![Reply::Nil]),
        ] {
            assert!(ScanStep::parse(bad).is_err());
        }
        assert_eq!(node_address("").unwrap(), None);
        assert_eq!(
            node_address("127.0.0.1:17001").unwrap(),
            Some(("127.0.0.1", 17001))
        );
        assert!(node_address("nowhere").is_err());
    }

    #[test]
    fn key_only_commands_have_no_arguments() {
        for (command, name) in [
            (Command::Get, "GET"),
            (Command::GetDel, "GETDEL"),
            (Command::Pttl, "PTTL"),
            (Command::Exists, "EXISTS"),
        ] {
            assert_eq!(wire(command), (name, vec![]));
        }
    }
}
