//! The fred client behind [`Connection`].

use bytes::Bytes;
use fred::prelude::{
    ClientLike, ClusterInterface, Config, Error as FredError, ErrorKind, KeysInterface,
    LuaInterface, Pool, ReconnectPolicy, Server, ServerConfig, Value,
};
use fred::types::scripts::Script;
use fred::types::{Builder, ClusterHash, CustomCommand, Expiration, SetOptions};
use futures::TryStreamExt;
use session_core::{Error, Result};

use crate::config::{RedisStoreBuilder, Target, Topology};
use crate::conn::{Command, Connection, Reply, ScanStep, classify, node_address};
use crate::durability::Turns;
use crate::scripts::ScriptId;

pub(crate) struct FredConnection {
    pool: Pool,
    scripts: Vec<Script>,
    /// `WAIT`'s arguments under `Durability::Replicated`.
    wait: Option<(i64, i64)>,
    /// The durable writes at once on each node connection of each client.
    turns: Turns,
}

pub(crate) fn map_err(err: FredError) -> Error {
    let transient = matches!(
        err.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Cluster
            | ErrorKind::Routing
            | ErrorKind::Backpressure
            | ErrorKind::Sentinel
    );
    let server = err.details().to_owned();
    // Not run: no connection to write it to (reconnecting), or a MOVED/ASK reply (the node
    // did not run it) that fred, allowed no redirection, hands back rather than following
    // with an attempt it no longer has. The store sends those again (`RetryRefused`).
    let not_sent = server.starts_with("Failed to route command")
        || server.starts_with("Too many redirections");
    // fred re-queues the commands in flight on a connection it closes (a cluster resync,
    // draining every node), and with its one attempt spent answers them so: they were
    // written and may have run, so the outcome is unknown (retryable, never resent here).
    let transient = transient || server.starts_with("Too many failed write attempts");
    classify(Box::new(err), Some(&server), not_sent, transient)
}

pub(crate) fn config_err(err: FredError) -> Error {
    Error::Config(format!("invalid Redis URL or settings: {}", err.details()))
}

fn reply(value: Value) -> Reply {
    match value {
        Value::Null => Reply::Nil,
        Value::Integer(n) => Reply::Int(n),
        Value::Boolean(b) => Reply::Int(i64::from(b)),
        Value::String(s) => Reply::Bytes(s.into_inner()),
        Value::Bytes(b) => Reply::Bytes(b),
        Value::Double(d) => Reply::Bytes(d.to_string().into()),
        Value::Queued => Reply::Nil,
        Value::Array(items) => Reply::Array(items.into_iter().map(reply).collect()),
        Value::Map(map) => Reply::Array(
            map.inner()
                .into_iter()
                .flat_map(|(k, v)| [Reply::Bytes(k.into_bytes()), reply(v)])
                .collect(),
        ),
    }
}

fn values(args: &[Bytes]) -> Vec<Value> {
    args.iter().cloned().map(Value::Bytes).collect()
}

/// A builder for a connection beside the store's pool (an expiry or tracking feed):
/// `timeout` for connecting and for each command, and a notification buffer of `buffer`.
pub(crate) fn side_builder(config: Config, timeout: std::time::Duration, buffer: usize) -> Builder {
    let mut builder = Builder::from_config(config);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
        })
        .with_performance_config(|p| {
            p.broadcast_channel_capacity = buffer;
            p.default_command_timeout = timeout;
        });
    builder
}

pub(crate) fn config(target: &Target) -> Result<Config> {
    let first = target.urls.first().map(String::as_str).unwrap_or_default();
    match target.topology {
        Topology::Standalone => Config::from_url_centralized(first).map_err(config_err),
        Topology::Sentinel => Config::from_url_sentinel(first).map_err(config_err),
        Topology::Cluster => {
            let mut config = Config::from_url_clustered(first).map_err(config_err)?;
            if let ServerConfig::Clustered { hosts, .. } = &mut config.server {
                for url in &target.urls[1..] {
                    match Config::from_url_centralized(url)
                        .map_err(config_err)?
                        .server
                    {
                        ServerConfig::Centralized { server } => hosts.push(server),
                        _ => {
                            return Err(Error::Config(
                                "a cluster node URL must name one host".into(),
                            ));
                        }
                    }
                }
            }
            Ok(config)
        }
    }
}

impl FredConnection {
    pub(crate) async fn connect(target: &Target, options: &RedisStoreBuilder) -> Result<Self> {
        let timeout = options.effective_connect_timeout();
        let command_timeout = options.options.timeout;
        let mut builder = Builder::from_config(config(target)?);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                // Never write a command a second time: fred's default (3) sends a command
                // again when the connection drops before its reply, and a compare-and-swap
                // or a rename's compare-and-delete that already ran then runs twice (one
                // modify adding 2; a session deleted under both ids). The store resends
                // only what the server refused (`RetryRefused`), redirections included:
                // fred follows none (it would need a second attempt, and refuses), it
                // answers MOVED (after refreshing its slot map) and ASK with an error the
                // store recognises as "did not run" and sends again.
                c.max_command_attempts = 1;
                c.max_redirections = 0;
            })
            .with_performance_config(|p| p.default_command_timeout = command_timeout)
            // Keep reconnecting for ever (backing off to 2 s): the store must recover by
            // itself when the server comes back.
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2));
        let pool = builder.build_pool(options.pool_size).map_err(config_err)?;
        pool.init().await.map_err(map_err)?;
        let scripts = ScriptId::ALL
            .iter()
            .map(|id| Script::from_lua(id.source()))
            .collect();
        Ok(Self {
            pool,
            scripts,
            wait: options.durability.wait(),
            turns: Turns::new(options.durability, options.options.timeout),
        })
    }

    /// `name key-routed args` then `WAIT`, pipelined on one connection: `WAIT` counts the
    /// replicas that have every earlier write of its own connection, so on any other one it
    /// would confirm nothing. Both go to the node of `key`'s slot, in a turn of `client`'s
    /// connection to it ([`Turns`]: the slot's primary as `client` knows it on a Cluster, its
    /// one server otherwise). The write's reply is classified as usual (a refusal did not
    /// run, so the store may send both again); a failed `WAIT` never is, as its write may
    /// have run.
    async fn durable(
        &self,
        client: &fred::clients::Client,
        name: &'static str,
        key: &str,
        args: Vec<Value>,
        (replicas, timeout_ms): (i64, i64),
    ) -> std::result::Result<Result<Reply>, FredError> {
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let node = if client.is_clustered() {
            client
                .cached_cluster_state()
                .and_then(|routing| routing.get_server(slot).map(Server::to_string))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let pipe = client.pipeline();
        let pipeline = async move {
            let slot = ClusterHash::Custom(slot);
            let (): () = pipe
                .custom(CustomCommand::new_static(name, slot.clone(), false), args)
                .await?;
            let (): () = pipe
                .custom(
                    CustomCommand::new_static("WAIT", slot, false),
                    vec![Value::Integer(replicas), Value::Integer(timeout_ms)],
                )
                .await?;
            Ok::<_, FredError>(pipe.try_all::<Value>().await)
        };
        let mut results = match self
            .turns
            .run(format!("{}/{node}", client.id()), pipeline)
            .await
        {
            Ok(results) => results?.into_iter(),
            Err(err) => return Ok(Err(err)),
        };
        let written = match results.next() {
            Some(written) => written?,
            None => return Ok(Err(unanswered())),
        };
        Ok(match results.next() {
            Some(Ok(Value::Integer(acked))) => {
                crate::durability::confirmed(acked, replicas, timeout_ms).map(|()| reply(written))
            }
            other => Err(Error::transient(
                crate::conn::BACKEND,
                format!("the write ran, but its WAIT failed: {other:?}"),
            )),
        })
    }

    /// [`Self::durable`] for a script: `EVALSHA`, loading the script once after `NOSCRIPT`
    /// (which means it did not run).
    async fn durable_eval(
        &self,
        script: &Script,
        keys: &[String],
        args: &[Bytes],
        wait: (i64, i64),
    ) -> Result<Reply> {
        let client = self.pool.next();
        let key = keys.first().map(String::as_str).unwrap_or_default();
        let mut line = vec![
            Value::from(script.sha1().clone()),
            Value::Integer(i64::try_from(keys.len()).unwrap_or(i64::MAX)),
        ];
        line.extend(keys.iter().map(|k| Value::from(k.as_str())));
        line.extend(values(args));
        for attempt in 0..2 {
            match self
                .durable(client, "EVALSHA", key, line.clone(), wait)
                .await
            {
                Err(err) if attempt == 0 && err.details().starts_with("NOSCRIPT") => {
                    load_script(client, script, keys).await?;
                }
                done => return done.map_err(map_err)?,
            }
        }
        Err(unanswered())
    }
}

/// `SCRIPT LOAD` on the node of `keys`' first key, the one that answered `NOSCRIPT`. Not
/// fred's `Script::load`: it loads on every node of a cluster, first waiting for every
/// reply in flight on every node, so one silent node stalls every call of the client.
async fn load_script(
    client: &fred::clients::Client,
    script: &Script,
    keys: &[String],
) -> Result<()> {
    let key = keys.first().map(String::as_str).unwrap_or_default();
    let slot = ClusterHash::Custom(fred::util::redis_keyslot(key.as_bytes()));
    let source = script.lua().cloned().unwrap_or_default();
    let _: Value = client
        .custom(
            CustomCommand::new_static("SCRIPT", slot, false),
            vec![Value::from("LOAD"), Value::from(source)],
        )
        .await
        .map_err(map_err)?;
    Ok(())
}

fn unanswered() -> Error {
    Error::transient(
        crate::conn::BACKEND,
        "the pipeline came back without a reply",
    )
}

impl Connection for FredConnection {
    async fn eval(&self, script: ScriptId, keys: &[String], args: &[Bytes]) -> Result<Reply> {
        let wait = self.wait.filter(|_| !script.reads());
        let script = &self.scripts[script.index()];
        if let Some(wait) = wait {
            // Boxed: the durable path's state (its pipeline, its turn) would otherwise
            // make every call's future as large, and moving it cost even without `WAIT`.
            return Box::pin(self.durable_eval(script, keys, args, wait)).await;
        }
        let client = self.pool.next();
        for attempt in 0..2 {
            match client
                .evalsha::<Value, _, _, _>(script.sha1().clone(), keys.to_vec(), values(args))
                .await
            {
                Err(err) if attempt == 0 && err.details().starts_with("NOSCRIPT") => {
                    load_script(client, script, keys).await?;
                }
                done => return done.map(reply).map_err(map_err),
            }
        }
        Err(unanswered())
    }

    async fn command(&self, command: &Command, key: &str) -> Result<Reply> {
        let client = self.pool.next();
        if let Some(wait) = self.wait.filter(|_| command.writes()) {
            let (name, args) = command.parts();
            let mut line = vec![Value::from(key)];
            line.extend(values(&args));
            // Boxed, as in `eval`.
            return Box::pin(self.durable(client, name, key, line, wait))
                .await
                .map_err(map_err)?;
        }
        let value: Value = match *command {
            Command::Get => client.get(key).await,
            Command::GetDel => client.getdel(key).await,
            Command::Pttl => client.pttl(key).await,
            Command::Exists => client.exists(key).await,
            Command::PexpireAt(at) => client.pexpire_at(key, at, None).await,
            Command::Set {
                ref value,
                only_if_absent,
                expire_at_ms,
            } => {
                let value = Value::Bytes(value.clone());
                let expire = expire_at_ms.map(Expiration::PXAT);
                let options = only_if_absent.then_some(SetOptions::NX);
                client.set(key, value, expire, options, false).await
            }
        }
        .map_err(map_err)?;
        Ok(reply(value))
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<Vec<u8>>> {
        let client = self.pool.next();
        let keys: Vec<fred::types::Key> = if client.is_clustered() {
            client
                .scan_cluster_buffered(pattern, Some(1000), None)
                .try_collect()
                .await
        } else {
            client
                .scan_buffered(pattern, Some(1000), None)
                .try_collect()
                .await
        }
        .map_err(map_err)?;
        Ok(keys
            .into_iter()
            .map(|key| key.as_bytes().to_vec())
            .collect())
    }

    async fn scan_nodes(&self) -> Result<Vec<String>> {
        let client = self.pool.next();
        if !client.is_clustered() {
            return Ok(vec![String::new()]);
        }
        let routing = match client.cached_cluster_state() {
            Some(routing) if !routing.slots().is_empty() => routing,
            _ => {
                client.sync_cluster().await.map_err(map_err)?;
                client.cached_cluster_state().ok_or_else(|| {
                    Error::transient(crate::conn::BACKEND, "the cluster's slot map is unknown")
                })?
            }
        };
        // fred keeps the slot ranges sorted by their first slot.
        let mut nodes: Vec<String> = Vec::new();
        for range in routing.slots() {
            let node = range.primary.to_string();
            if !nodes.contains(&node) {
                nodes.push(node);
            }
        }
        Ok(nodes)
    }

    async fn scan_step(
        &self,
        node: &str,
        cursor: u64,
        pattern: &str,
        count: u32,
    ) -> Result<ScanStep> {
        let client = self.pool.next();
        let cursor = cursor.to_string();
        let pattern = pattern.to_owned();
        let value: Value = match node_address(node)? {
            None => client.scan_page(cursor, pattern, Some(count), None).await,
            Some((host, port)) => {
                client
                    .with_cluster_node(Server::new(host, port))
                    .scan_page(cursor, pattern, Some(count), None)
                    .await
            }
        }
        .map_err(map_err)?;
        ScanStep::parse(reply(value))
    }

    async fn info_server(&self) -> Result<Vec<String>> {
        let cmd = CustomCommand::new_static("INFO", ClusterHash::Random, false);
        let value: Value = self
            .pool
            .next()
            .custom(cmd, vec!["server"])
            .await
            .map_err(map_err)?;
        Ok(reply(value).strings())
    }
}
