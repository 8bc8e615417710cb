//! Network faults between a store and its server, injected by a real toxiproxy server
//! (Shopify's) through its HTTP API.
//!
//! `scripts/services` builds and starts toxiproxy on 127.0.0.1:8474 and exports
//! `SESSION_STORES_TOXIPROXY_URL`. Each test creates its own proxy, on a port the server
//! picks, so tests running in parallel never share one.

use std::time::Duration;

use serde_json::{Value, json};

use crate::Skip;

/// The environment variable holding the toxiproxy API's URL.
pub const URL_VAR: &str = "SESSION_STORES_TOXIPROXY_URL";

/// A client of the toxiproxy API.
#[derive(Debug, Clone)]
pub struct Toxiproxy {
    api: String,
    http: reqwest::Client,
}

/// One proxy: `listen` forwards to `upstream` until faults are added.
#[derive(Debug, Clone)]
pub struct Proxy {
    client: Toxiproxy,
    name: String,
    listen: String,
}

/// The network faults the fault tests inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every reply delayed by 400–600 ms: slower than half the tests' call timeout, so
    /// some calls time out while their writes still reach the server.
    LatencySpike,
    /// Every connection reset by the proxy as soon as data flows (TCP RST).
    ConnectionReset,
    /// The proxy down: open connections closed, new ones refused.
    Unreachable,
    /// Connections stay open but nothing reaches the server and nothing comes back.
    HalfOpen,
    /// Each connection closed after 16 KiB of replies, in the middle of one: the server
    /// ran the command, its reply is lost. A client that sent it again (fred's default) would
    /// apply a compare-and-swap twice.
    LostReplies,
}

impl Fault {
    /// Every fault, in the order the tests run them.
    pub const ALL: [Fault; 5] = [
        Self::LatencySpike,
        Self::ConnectionReset,
        Self::Unreachable,
        Self::HalfOpen,
        Self::LostReplies,
    ];

    const TOXIC: &'static str = "fault";
}

impl Toxiproxy {
    /// The toxiproxy named by `SESSION_STORES_TOXIPROXY_URL`, or why there is none.
    pub fn from_env() -> Result<Self, Skip> {
        match std::env::var(URL_VAR) {
            Ok(url) if !url.trim().is_empty() => Ok(Self {
                api: url.trim().trim_end_matches('/').to_owned(),
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|err| Skip(format!("no HTTP client: {err}")))?,
            }),
            _ => Err(Skip(format!(
                "no toxiproxy: set {URL_VAR} (scripts/services starts one and prints it)"
            ))),
        }
    }

    /// A new proxy named `name` (unique per test) in front of `upstream` (`host:port`),
    /// listening on a free port of 127.0.0.1.
    pub async fn proxy(&self, name: &str, upstream: &str) -> Result<Proxy, String> {
        // A proxy left by an earlier, aborted run of the same test would clash.
        self.call(reqwest::Method::DELETE, &format!("/proxies/{name}"), None)
            .await
            .ok();
        let created = self
            .call(
                reqwest::Method::POST,
                "/proxies",
                Some(json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream})),
            )
            .await?;
        let listen = created["listen"]
            .as_str()
            .ok_or_else(|| format!("toxiproxy answered without a listen address: {created}"))?
            .to_owned();
        Ok(Proxy {
            client: self.clone(),
            name: name.to_owned(),
            listen,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.api));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let what = format!("toxiproxy {method} {path}");
        let response = request.send().await.map_err(|e| format!("{what}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{what}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{what}: {status}: {text}"));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("{what}: {e}: {text}"))
    }
}

impl Proxy {
    /// Where clients connect: `127.0.0.1:<port>`.
    pub fn listen(&self) -> &str {
        &self.listen
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.listen
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Starts `fault`; [`Self::lift`] ends it.
    pub async fn inject(&self, fault: Fault) -> Result<(), String> {
        let toxic = |kind: &str, stream: &str, attributes: Value| {
            json!({"name": Fault::TOXIC, "type": kind, "stream": stream, "toxicity": 1.0,
                   "attributes": attributes})
        };
        let body = match fault {
            Fault::Unreachable => return self.set_enabled(false).await,
            Fault::LatencySpike => toxic(
                "latency",
                "downstream",
                json!({"latency": 500, "jitter": 100}),
            ),
            Fault::ConnectionReset => toxic("reset_peer", "upstream", json!({"timeout": 0})),
            // timeout 0: hold the data and the connection until the toxic is removed.
            Fault::HalfOpen => toxic("timeout", "upstream", json!({"timeout": 0})),
            Fault::LostReplies => toxic("limit_data", "downstream", json!({"bytes": 16384})),
        };
        self.client
            .call(
                reqwest::Method::POST,
                &format!("/proxies/{}/toxics", self.name),
                Some(body),
            )
            .await
            .map(drop)
    }

    /// Ends `fault`: traffic flows normally again.
    pub async fn lift(&self, fault: Fault) -> Result<(), String> {
        match fault {
            Fault::Unreachable => self.set_enabled(true).await,
            _ => self
                .client
                .call(
                    reqwest::Method::DELETE,
                    &format!("/proxies/{}/toxics/{}", self.name, Fault::TOXIC),
                    None,
                )
                .await
                .map(drop),
        }
    }

    async fn set_enabled(&self, enabled: bool) -> Result<(), String> {
        self.client
            .call(
                reqwest::Method::POST,
                &format!("/proxies/{}", self.name),
                Some(json!({ "enabled": enabled })),
            )
            .await
            .map(drop)
    }

    /// Removes the proxy (its connections close).
    pub async fn delete(self) -> Result<(), String> {
        self.client
            .call(
                reqwest::Method::DELETE,
                &format!("/proxies/{}", self.name),
                None,
            )
            .await
            .map(drop)
    }
}
