//! The redis-rs client behind [`Connection`].

use bytes::Bytes;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RetryMethod, Script, Value};
use session_core::{Error, Result};
use std::sync::Arc;

use crate::config::{RedisStoreBuilder, Target, Topology};
use crate::conn::{Command, Connection, Reply, ScanStep, classify, node_address, unexpected};
use crate::durability::Turns;
use crate::redis_rs_sentinel::SentinelPrimary;
use crate::scripts::ScriptId;

#[derive(Clone)]
enum Handle {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<SentinelPrimary>),
}

pub(crate) struct RedisRsConnection {
    handle: Handle,
    scripts: Vec<Script>,
    /// `WAIT`'s arguments under `Durability::Replicated`.
    wait: Option<(i64, i64)>,
    /// The durable writes at once on the connection (a Cluster takes no `WAIT` here).
    turns: Turns,
}

fn map_err(err: RedisError) -> Error {
    let transient = !matches!(err.kind(), ErrorKind::AuthenticationFailed)
        && (err.is_io_error()
            || err.is_timeout()
            || err.is_connection_dropped()
            || err.is_connection_refusal()
            || err.is_cluster_error()
            || !matches!(err.retry_method(), RetryMethod::NoRetry));
    let code = err.code().map(str::to_owned);
    classify(Box::new(err), code.as_deref(), false, transient)
}

fn config_err(err: RedisError) -> Error {
    Error::Config(format!("invalid Redis URL or settings: {err}"))
}

fn reply(value: Value) -> Result<Reply> {
    Ok(match value {
        Value::Nil => Reply::Nil,
        Value::Int(n) => Reply::Int(n),
        Value::Boolean(b) => Reply::Int(i64::from(b)),
        Value::BulkString(bytes) => Reply::Bytes(bytes.into()),
        Value::SimpleString(s) => Reply::Bytes(s.into()),
        Value::Okay => Reply::Bytes(Bytes::from_static(b"OK")),
        Value::Double(d) => Reply::Bytes(d.to_string().into()),
        Value::VerbatimString { text, .. } => Reply::Bytes(text.into()),
        Value::Array(items) | Value::Set(items) => {
            Reply::Array(items.into_iter().map(reply).collect::<Result<_>>()?)
        }
        Value::Map(pairs) => Reply::Array(
            pairs
                .into_iter()
                .flat_map(|(k, v)| [reply(k), reply(v)])
                .collect::<Result<_>>()?,
        ),
        Value::ServerError(err) => return Err(map_err(err.into())),
        other => {
            return Err(unexpected(
                "a RESP2-shaped reply",
                &Reply::Bytes(format!("{other:?}").into()),
            ));
        }
    })
}

impl Handle {
    async fn query(&self, cmd: &Cmd) -> Result<Reply> {
        let value: Value = match self.clone() {
            Self::Standalone(mut con) => cmd.query_async(&mut con).await,
            Self::Cluster(mut con) => cmd.query_async(&mut con).await,
            Self::Sentinel(primary) => {
                let mut con = primary.connection().await?;
                cmd.query_async(&mut con)
                    .await
                    .inspect_err(|err| primary.after_error(err))
            }
        }
        .map_err(map_err)?;
        reply(value)
    }

    /// `pipe`'s replies, one per command (a server error is one of them, not the result).
    async fn pipeline(&self, pipe: &Pipeline) -> Result<Vec<Value>> {
        match self.clone() {
            Self::Standalone(mut con) => pipe.query_async(&mut con).await,
            Self::Cluster(mut con) => pipe.query_async(&mut con).await,
            Self::Sentinel(primary) => {
                let mut con = primary.connection().await?;
                let values: Vec<Value> = pipe
                    .query_async(&mut con)
                    .await
                    .inspect_err(|err| primary.after_error(err))
                    .map_err(map_err)?;
                if let Some(Value::ServerError(err)) = values.first() {
                    primary.after_error(&err.clone().into());
                }
                Ok(values)
            }
        }
        .map_err(map_err)
    }

    async fn route(&self, cmd: Cmd, host: &str, port: u16) -> Result<Reply> {
        let Self::Cluster(mut con) = self.clone() else {
            return self.query(&cmd).await;
        };
        let routing = SingleNodeRoutingInfo::ByAddress {
            host: host.to_owned(),
            port,
        };
        let value = con
            .route_command(cmd, RoutingInfo::SingleNode(routing))
            .await
            .map_err(map_err)?;
        reply(value)
    }
}

async fn invoke<C: ConnectionLike>(
    script: &Script,
    mut con: C,
    keys: &[String],
    args: &[Bytes],
) -> redis::RedisResult<Value> {
    let mut invocation = script.prepare_invoke();
    for key in keys {
        invocation.key(key);
    }
    for arg in args {
        invocation.arg(&arg[..]);
    }
    invocation.invoke_async(&mut con).await
}

impl RedisRsConnection {
    pub(crate) async fn connect(target: &Target, options: &RedisStoreBuilder) -> Result<Self> {
        let timeout = options.effective_connect_timeout();
        let response_timeout = options.options.timeout;
        let handle = match target.topology {
            Topology::Standalone => {
                let url = target.urls.first().map(String::as_str).unwrap_or_default();
                let client = redis::Client::open(url).map_err(config_err)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(response_timeout))
                    .set_min_delay(std::time::Duration::from_millis(50))
                    .set_max_delay(std::time::Duration::from_secs(2));
                Handle::Standalone(
                    client
                        .get_connection_manager_with_config(config)
                        .await
                        .map_err(map_err)?,
                )
            }
            Topology::Cluster if options.durability.wait().is_some() => {
                return Err(Error::Config(
                    "Durability::Replicated on a Redis Cluster is supported with the fred \
                     client only (RedisStoreBuilder::fred)"
                        .into(),
                ));
            }
            Topology::Cluster => {
                // No retries: redis-rs's cluster client sends a command again after a
                // dropped connection, which may have run it already (a compare-and-swap
                // applied twice). Refused commands (MOVED, ASK, TRYAGAIN...) are resent by
                // the store (`RetryRefused`) once the client has refreshed its slot map.
                let client = ClusterClient::builder(target.urls.clone())
                    .connection_timeout(timeout)
                    .response_timeout(response_timeout)
                    .retries(0)
                    .build()
                    .map_err(config_err)?;
                Handle::Cluster(client.get_async_connection().await.map_err(map_err)?)
            }
            Topology::Sentinel => {
                let url = target.urls.first().map(String::as_str).unwrap_or_default();
                Handle::Sentinel(SentinelPrimary::connect(url, timeout, response_timeout).await?)
            }
        };
        let scripts = ScriptId::ALL
            .iter()
            .map(|id| Script::new(id.source()))
            .collect();
        Ok(Self {
            handle,
            scripts,
            wait: options.durability.wait(),
            turns: Turns::new(options.durability, options.options.timeout),
        })
    }

    /// `write` then `WAIT`, pipelined on one connection (`WAIT` counts the replicas that
    /// have every earlier write of its own connection), in a turn of the connection
    /// ([`Turns`]). The write's reply is classified as usual (a refusal did not run, so the
    /// store may send both again); a failed `WAIT` never is, as its write may have run.
    /// `None`: the server answered `NOSCRIPT` (the script is not loaded there, so nothing
    /// ran).
    async fn durable(
        &self,
        write: Cmd,
        (replicas, timeout_ms): (i64, i64),
    ) -> Result<Option<Reply>> {
        let mut pipe = redis::pipe();
        pipe.add_command(write)
            .cmd("WAIT")
            .arg(replicas)
            .arg(timeout_ms)
            .ignore_errors();
        let handle = self.handle.clone();
        let sent = async move { handle.pipeline(&pipe).await };
        let mut values = self.turns.run(String::new(), sent).await??.into_iter();
        let written = match values.next() {
            Some(Value::ServerError(err)) if err.code() == "NOSCRIPT" => return Ok(None),
            written => reply(written.unwrap_or(Value::Nil))?,
        };
        match values.next() {
            Some(Value::Int(acked)) => {
                crate::durability::confirmed(acked, replicas, timeout_ms).map(|()| Some(written))
            }
            other => Err(Error::transient(
                crate::conn::BACKEND,
                format!("the write ran, but its WAIT failed: {other:?}"),
            )),
        }
    }

    /// [`Self::durable`] for a script: `EVALSHA`, loading the script once after `NOSCRIPT`.
    async fn durable_eval(
        &self,
        id: ScriptId,
        keys: &[String],
        args: &[Bytes],
        wait: (i64, i64),
    ) -> Result<Reply> {
        let script = &self.scripts[id.index()];
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
        for arg in args {
            cmd.arg(&arg[..]);
        }
        if let Some(done) = self.durable(cmd.clone(), wait).await? {
            return Ok(done);
        }
        self.handle
            .query(redis::cmd("SCRIPT").arg("LOAD").arg(id.source()))
            .await?;
        self.durable(cmd, wait).await?.ok_or_else(|| {
            Error::transient(
                crate::conn::BACKEND,
                "the server lost the script again right after loading it (NOSCRIPT twice)",
            )
        })
    }

    /// Every key matching `pattern` on `node` (`None`: the one server).
    async fn scan_node(&self, pattern: &str, node: Option<(&str, u16)>) -> Result<Vec<Vec<u8>>> {
        let mut keys = Vec::new();
        let mut cursor = 0;
        loop {
            let step = self.scan_once(node, cursor, pattern, 1000).await?;
            keys.extend(step.keys);
            cursor = step.cursor;
            if cursor == 0 {
                return Ok(keys);
            }
        }
    }

    /// One `SCAN` step on `node` (`None`: the one server).
    async fn scan_once(
        &self,
        node: Option<(&str, u16)>,
        cursor: u64,
        pattern: &str,
        count: u32,
    ) -> Result<ScanStep> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        let reply = match node {
            Some((host, port)) => self.handle.route(cmd, host, port).await?,
            None => self.handle.query(&cmd).await?,
        };
        ScanStep::parse(reply)
    }

    /// The primaries' addresses, from `CLUSTER SLOTS` (each slot range: start, end, primary),
    /// ordered by the lowest slot each serves (the order a scan walks them in).
    async fn primaries(&self) -> Result<Vec<(String, u16)>> {
        let slots = self
            .handle
            .query(&redis::cmd("CLUSTER").arg("SLOTS").clone())
            .await?;
        let mut ranges = Vec::new();
        for range in slots.into_array()? {
            let mut fields = range.into_array()?.into_iter();
            let start = fields.next().map(Reply::into_int).transpose()?.unwrap_or(0);
            ranges.push((start, fields.nth(1)));
        }
        ranges.sort_by_key(|(start, _)| *start);
        let mut nodes = Vec::new();
        for (_, primary) in ranges {
            let mut primary = primary
                .map(Reply::into_array)
                .transpose()?
                .unwrap_or_default()
                .into_iter();
            let host = primary
                .next()
                .map(Reply::into_opt_bytes)
                .transpose()?
                .flatten();
            let port = primary.next().map(Reply::into_int).transpose()?;
            if let (Some(host), Some(port)) = (host, port) {
                let node = (
                    String::from_utf8_lossy(&host).into_owned(),
                    u16::try_from(port).unwrap_or(0),
                );
                if !nodes.contains(&node) {
                    nodes.push(node);
                }
            }
        }
        Ok(nodes)
    }
}

impl Connection for RedisRsConnection {
    async fn eval(&self, script: ScriptId, keys: &[String], args: &[Bytes]) -> Result<Reply> {
        if let Some(wait) = self.wait.filter(|_| !script.reads()) {
            // Boxed: the durable path's state (its pipeline, its turn) would otherwise make
            // every call's future as large, and moving it cost even without `WAIT`.
            return Box::pin(self.durable_eval(script, keys, args, wait)).await;
        }
        let script = &self.scripts[script.index()];
        let value = match self.handle.clone() {
            Handle::Standalone(con) => invoke(script, con, keys, args).await,
            Handle::Cluster(con) => invoke(script, con, keys, args).await,
            Handle::Sentinel(primary) => invoke(script, primary.connection().await?, keys, args)
                .await
                .inspect_err(|err| primary.after_error(err)),
        };
        reply(value.map_err(map_err)?)
    }

    async fn command(&self, command: &Command, key: &str) -> Result<Reply> {
        let wait = self.wait.filter(|_| command.writes());
        let (name, args) = command.parts();
        let mut cmd = redis::cmd(name);
        cmd.arg(key);
        for arg in args {
            cmd.arg(&arg[..]);
        }
        match wait {
            // Not a script: NOSCRIPT cannot come back.
            // Boxed, as in `eval`.
            Some(wait) => Box::pin(self.durable(cmd, wait)).await?.ok_or_else(|| {
                Error::permanent(crate::conn::BACKEND, "NOSCRIPT for a plain command")
            }),
            None => self.handle.query(&cmd).await,
        }
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        match &self.handle {
            Handle::Standalone(_) | Handle::Sentinel(_) => self.scan_node(pattern, None).await,
            Handle::Cluster(_) => {
                let mut keys = Vec::new();
                for (host, port) in self.primaries().await? {
                    keys.extend(self.scan_node(pattern, Some((&host, port))).await?);
                }
                Ok(keys)
            }
        }
    }

    async fn scan_nodes(&self) -> Result<Vec<String>> {
        match &self.handle {
            Handle::Standalone(_) | Handle::Sentinel(_) => Ok(vec![String::new()]),
            Handle::Cluster(_) => Ok(self
                .primaries()
                .await?
                .into_iter()
                .map(|(host, port)| format!("{host}:{port}"))
                .collect()),
        }
    }

    async fn scan_step(
        &self,
        node: &str,
        cursor: u64,
        pattern: &str,
        count: u32,
    ) -> Result<ScanStep> {
        self.scan_once(node_address(node)?, cursor, pattern, count)
            .await
    }

    async fn info_server(&self) -> Result<Vec<String>> {
        Ok(self
            .handle
            .query(redis::cmd("INFO").arg("server"))
            .await?
            .strings())
    }
}
