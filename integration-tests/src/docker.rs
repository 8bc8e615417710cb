//! Containers and networks driven through the `docker` command line, for the tests that
//! need what testcontainers doesn't offer (cutting one node off a network).
//!
//! A [`Network`] is a user-defined bridge network with the containers run on it, removed
//! (containers, their volumes, then the network) when it is dropped, a panicking test
//! included. Everything created here carries the label testcontainers puts on its own
//! ([`MANAGED_BY`]), so the CI's count of leaked containers and networks sees these too.
//!
//! The host reaches containers at their addresses on the network (Linux: the bridge is a
//! host interface), so no port is published: a Redis Cluster's nodes announce those same
//! addresses, which a published port would hide from the clients.
//!
//! [`RedisCluster`] builds a Redis Cluster of three masters on such a network; a test cuts
//! one node off with [`Network::disconnect`] and heals it with [`Network::reconnect`].

use std::fmt;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use session_core::SessionId;

use crate::{Backend, Skip};

/// The label (`key=value`) on every container and network created here.
pub const MANAGED_BY: &str = "org.testcontainers.managed-by=testcontainers";

/// The upstream image of [`RedisCluster`] when `SESSION_STORES_REDIS_IMAGE` is not set.
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7.0";

/// How long one `docker` command may take before it counts as hung (a `docker run` on a
/// busy 2-core machine takes a second or two).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A `docker` command that failed: what was run, and what it said.
#[derive(Debug, Clone)]
pub struct DockerError(pub String);

impl fmt::Display for DockerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DockerError {}

/// Runs `docker <args>` and returns its standard output, trimmed.
///
/// The output is read once the command has exited, so it must fit a pipe's buffer (64 KiB
/// on Linux): every command here prints a few lines at most.
pub fn docker(args: &[&str]) -> Result<String, DockerError> {
    let what = || format!("docker {}", args.join(" "));
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| DockerError(format!("cannot run `{}`: {err}", what())))?;
    // A daemon that stopped answering would otherwise hang the test until CI kills it,
    // and with it the guards that remove what was created.
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > COMMAND_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(DockerError(format!(
                    "`{}` did not finish within {COMMAND_TIMEOUT:?}",
                    what()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(err) => return Err(DockerError(format!("waiting for `{}`: {err}", what()))),
        }
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    if !status.success() {
        return Err(DockerError(format!(
            "`{}` failed ({status}): {}{}",
            what(),
            stderr.trim(),
            stdout.trim()
        )));
    }
    Ok(stdout.trim().to_owned())
}

/// Whether a test can run containers of `image`: the `docker` command works, its daemon
/// answers, and the image is there, pulled if it is not (as testcontainers would; this
/// project's CI reaches no registry and builds its images locally). The [`Skip`] says what
/// is missing.
pub fn available(image: &str) -> Result<(), Skip> {
    docker(&["version", "--format", "{{.Server.Version}}"]).map_err(|err| {
        Skip(format!(
            "no Docker daemon to run containers on (needed to cut a node off a network): {err}"
        ))
    })?;
    if docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_ok() {
        return Ok(());
    }
    docker(&["pull", "--quiet", image]).map_err(|err| {
        Skip(format!(
            "the image {image} is not on this machine and pulling it failed ({err}): build \
             the local ones with `scripts/services docker` and name one with {}",
            Backend::Redis.image_var()
        ))
    })?;
    Ok(())
}

/// The label that hands what is created here to this process's reaper too
/// (`containers::owner`): the [`Network`] guard's `Drop` does not run when the test process
/// is killed (a CI timeout, Ctrl-C).
fn owned() -> String {
    format!(
        "{}={}",
        crate::containers::OWNER_LABEL,
        crate::containers::owner()
    )
}

/// A name no other test run uses: `session-stores-<purpose>-<random>`.
fn unique_name(purpose: &str) -> String {
    let random = SessionId::generate().expose()[..10]
        .to_ascii_lowercase()
        .replace(['-', '_'], "x");
    format!("session-stores-{purpose}-{random}")
}

/// A user-defined bridge network and the containers run on it; dropping it removes them.
#[derive(Debug)]
pub struct Network {
    name: String,
    /// Every container run on it, also those whose start failed (a name may be taken).
    containers: Vec<String>,
}

impl Network {
    /// Creates a network named after `purpose` (plus a random part) with a subnet of its
    /// own: Docker keeps a container's address across a disconnect only on a network whose
    /// subnet was given at creation (`docker network connect --ip` refuses others).
    ///
    /// The subnet is one Docker picks as free (a throwaway network is created to learn it,
    /// so Docker's check against the host's routes applies), then claimed explicitly; a
    /// concurrent test claiming the same one first makes this try again.
    pub fn create(purpose: &str) -> Result<Network, DockerError> {
        let mut last = None;
        for _ in 0..5 {
            let probe = unique_name(&format!("{purpose}-probe"));
            let owned = owned();
            docker(&[
                "network", "create", "--label", MANAGED_BY, "--label", &owned, &probe,
            ])?;
            let subnet = docker(&[
                "network",
                "inspect",
                "--format",
                "{{range .IPAM.Config}}{{.Subnet}} {{end}}",
                &probe,
            ]);
            docker(&["network", "rm", &probe])?;
            let subnet = subnet?;
            let Some(subnet) = subnet.split_whitespace().find(|s| !s.contains(':')) else {
                return Err(DockerError(format!(
                    "the network {probe} had no IPv4 subnet: {subnet:?}"
                )));
            };
            let name = unique_name(purpose);
            match docker(&[
                "network", "create", "--label", MANAGED_BY, "--label", &owned, "--subnet", subnet,
                &name,
            ]) {
                Ok(_) => {
                    return Ok(Network {
                        name,
                        containers: Vec::new(),
                    });
                }
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| DockerError("no network created".into())))
    }

    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts a container of `image` on this network, detached, running `command` (the
    /// image's own command when empty); returns its name. Ports are not published.
    pub fn run(
        &mut self,
        purpose: &str,
        image: &str,
        command: &[&str],
    ) -> Result<String, DockerError> {
        let name = unique_name(purpose);
        self.containers.push(name.clone());
        let owned = owned();
        let mut args = vec![
            "run",
            "--detach",
            "--pull",
            "never",
            "--label",
            MANAGED_BY,
            "--label",
            &owned,
            "--network",
            &self.name,
            "--name",
            &name,
            image,
        ];
        args.extend_from_slice(command);
        docker(&args)?;
        Ok(name)
    }

    /// The IPv4 address of `container` on this network.
    pub fn ip(&self, container: &str) -> Result<String, DockerError> {
        let format = format!(
            "{{{{with index .NetworkSettings.Networks \"{}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}",
            self.name
        );
        let ip = docker(&["container", "inspect", "--format", &format, container])?;
        if ip.is_empty() {
            return Err(DockerError(format!(
                "{container} has no address on {}",
                self.name
            )));
        }
        Ok(ip)
    }

    /// Cuts `container` off the network: its interface goes away, so packets to and from
    /// it are dropped (no reset reaches either side), as in a real partition.
    pub fn disconnect(&self, container: &str) -> Result<(), DockerError> {
        docker(&["network", "disconnect", &self.name, container]).map(drop)
    }

    /// Puts `container` back on the network at `ip`, the address it had: a cluster's
    /// nodes and clients know it only by that address.
    pub fn reconnect(&self, container: &str, ip: &str) -> Result<(), DockerError> {
        docker(&["network", "connect", "--ip", ip, &self.name, container]).map(drop)
    }

    /// Runs `command` inside `container` and returns its output.
    pub fn exec(&self, container: &str, command: &[&str]) -> Result<String, DockerError> {
        let mut args = vec!["exec", container];
        args.extend_from_slice(command);
        docker(&args)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if !self.containers.is_empty() {
            let mut args = vec!["rm", "--force", "--volumes"];
            args.extend(self.containers.iter().map(String::as_str));
            if let Err(err) = docker(&args) {
                eprintln!("removing the test containers: {err}");
            }
        }
        if let Err(err) = docker(&["network", "rm", &self.name]) {
            eprintln!("removing the test network: {err}");
        }
    }
}

/// The Redis image to run: `$SESSION_STORES_REDIS_IMAGE`, else [`DEFAULT_REDIS_IMAGE`].
pub fn redis_image() -> String {
    Backend::Redis
        .custom_image()
        .unwrap_or_else(|| DEFAULT_REDIS_IMAGE.to_owned())
}

/// One node of a [`RedisCluster`].
#[derive(Debug, Clone)]
pub struct RedisNode {
    /// The container's name.
    pub container: String,
    /// Its address on the cluster's network; Redis listens on port 6379 there.
    pub ip: String,
}

impl RedisNode {
    /// `redis://<ip>:6379`.
    pub fn url(&self) -> String {
        format!("redis://{}:6379", self.ip)
    }
}

/// A Redis Cluster of three masters (and, from [`RedisCluster::start_with_replicas`], their
/// replicas), each a container on a network of its own; dropping it removes them all.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisNode>,
    network: Network,
}

impl RedisCluster {
    /// Starts three `redis-server` containers of `image` in cluster mode (no persistence),
    /// joins them with `redis-cli --cluster create` and waits until every node reports
    /// `cluster_state:ok`. `node_timeout` is the nodes' `cluster-node-timeout`: how long a
    /// node may be unreachable before the others count it as failed.
    ///
    /// Check [`available`] first: this fails, rather than skips, when Docker or the image
    /// is missing.
    pub fn start(image: &str, node_timeout: Duration) -> Result<RedisCluster, DockerError> {
        Self::start_with_replicas(image, node_timeout, 0)
    }

    /// [`Self::start`] with `replicas` replicas per master: nodes 0 to 2 start as the
    /// masters, the others as replicas (`redis-cli --cluster create --cluster-replicas`).
    pub fn start_with_replicas(
        image: &str,
        node_timeout: Duration,
        replicas: usize,
    ) -> Result<RedisCluster, DockerError> {
        let mut network = Network::create("redis-cluster")?;
        let node_timeout = node_timeout.as_millis().to_string();
        let command = [
            "redis-server",
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "no",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &node_timeout,
            "--appendonly",
            "no",
            "--save",
            "",
        ];
        let mut nodes = Vec::new();
        for i in 0..3 * (1 + replicas) {
            let container = network.run(&format!("redis-node{i}"), image, &command)?;
            let ip = network.ip(&container)?;
            nodes.push(RedisNode { container, ip });
        }
        let cluster = RedisCluster { nodes, network };
        // redis-cli connects to every node, so each must be listening first.
        for node in &cluster.nodes {
            cluster.wait_for(
                node,
                Duration::from_secs(30),
                |out| out == "PONG",
                &["ping"],
            )?;
        }
        let mut create = vec!["redis-cli", "--cluster", "create"];
        let addresses: Vec<String> = cluster
            .nodes
            .iter()
            .map(|node| format!("{}:6379", node.ip))
            .collect();
        create.extend(addresses.iter().map(String::as_str));
        let replicas = replicas.to_string();
        create.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        cluster.network.exec(&cluster.nodes[0].container, &create)?;
        cluster.wait_ok(Duration::from_secs(30))?;
        Ok(cluster)
    }

    /// The nodes, in the order they were started (each a master of a third of the slots).
    pub fn nodes(&self) -> &[RedisNode] {
        &self.nodes
    }

    /// The network the nodes are on.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// Every node's `redis://` URL, comma-separated: the seed list session-redis takes as a
    /// cluster, so a store can start even with one node cut off.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(RedisNode::url).collect();
        urls.join(",")
    }

    /// Cuts node `i` off the network: clients and the other nodes lose it.
    pub fn partition(&self, i: usize) -> Result<(), DockerError> {
        self.network.disconnect(&self.nodes[i].container)
    }

    /// Kills node `i`'s server at once (`docker kill`: SIGKILL, nothing flushed).
    pub fn kill(&self, i: usize) -> Result<(), DockerError> {
        docker(&["kill", &self.nodes[i].container]).map(drop)
    }

    /// Puts node `i` back on the network at its old address.
    pub fn heal(&self, i: usize) -> Result<(), DockerError> {
        let node = &self.nodes[i];
        self.network.reconnect(&node.container, &node.ip)
    }

    /// Node `i`'s own view of the cluster: its `cluster_state` (`ok` or `fail`).
    pub fn state(&self, i: usize) -> Result<String, DockerError> {
        let node = &self.nodes[i];
        let info = self
            .network
            .exec(&node.container, &["redis-cli", "cluster", "info"])?;
        info.lines()
            .find_map(|l| l.trim().strip_prefix("cluster_state:"))
            .map(str::to_owned)
            .ok_or_else(|| DockerError(format!("no cluster_state from {}: {info}", node.container)))
    }

    /// Waits until every node reports `cluster_state:ok` (all slots served, every master
    /// reachable from it), at most `within`.
    pub fn wait_ok(&self, within: Duration) -> Result<(), DockerError> {
        for node in &self.nodes {
            self.wait_for(
                node,
                within,
                |out| out.lines().any(|l| l.trim() == "cluster_state:ok"),
                &["cluster", "info"],
            )?;
        }
        Ok(())
    }

    /// Runs `redis-cli <command>` on `node` (inside its container, so it works whatever
    /// the host's tools) until `done` accepts its output, at most `within`.
    fn wait_for(
        &self,
        node: &RedisNode,
        within: Duration,
        done: impl Fn(&str) -> bool,
        command: &[&str],
    ) -> Result<(), DockerError> {
        let started = Instant::now();
        let mut args = vec!["redis-cli"];
        args.extend_from_slice(command);
        loop {
            let last = self.network.exec(&node.container, &args);
            if last.as_deref().is_ok_and(&done) {
                return Ok(());
            }
            if started.elapsed() > within {
                return Err(DockerError(format!(
                    "{} (node {}) did not get there within {within:?}: `redis-cli {}` said \
                     {last:?}",
                    node.container,
                    node.ip,
                    command.join(" ")
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
