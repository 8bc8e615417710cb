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
//! [`RedisCluster`] builds a Redis Cluster of three masters (and their replicas) on such a
//! network; a test cuts one node off ([`RedisCluster::partition`], healed by
//! [`RedisCluster::heal`]), kills one ([`RedisCluster::kill`], back at its address with
//! [`RedisCluster::restart`]), or moves slots between masters ([`RedisCluster::reshard`]),
//! and reads the cluster's view of itself ([`RedisCluster::topology`],
//! [`RedisCluster::role`]).

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
/// Its output is read while it runs (a thread per stream): a command that prints more than
/// a pipe holds (`redis-cli --cluster reshard` prints a line per slot) would otherwise
/// block on its write until the timeout.
pub fn docker(args: &[&str]) -> Result<String, DockerError> {
    let what = || format!("docker {}", args.join(" "));
    let mut child = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| DockerError(format!("cannot run `{}`: {err}", what())))?;
    let drain = |stream: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut stream) = stream {
                let _ = stream.read_to_string(&mut text);
            }
            text
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
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
    // The streams close when the command exits (a `docker` child holding them open past
    // that is not something these commands start).
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
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

    /// Starts node `i`'s container again after [`Self::kill`], at its old address, with its
    /// own `nodes.conf` (the container's file system outlives the kill): the server comes
    /// back knowing its node id and its peers, and, if a replica took its slots over
    /// meanwhile, joins as that replica's replica (with an empty data set: nothing is
    /// persisted).
    ///
    /// The address is pinned first (`docker network connect --ip` on the stopped
    /// container): a plain `docker start` takes whatever address is free, and the cluster
    /// and its clients know the node only by the old one. Fails if that address was taken
    /// meanwhile.
    pub fn restart(&self, i: usize) -> Result<(), DockerError> {
        let node = &self.nodes[i];
        self.network.disconnect(&node.container)?;
        self.network.reconnect(&node.container, &node.ip)?;
        docker(&["start", &node.container])?;
        self.wait_for(
            node,
            Duration::from_secs(30),
            |out| out == "PONG",
            &["ping"],
        )
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
        self.wait_ok_except(&[], within)
    }

    /// [`Self::wait_ok`] asking every node but those in `down` (killed ones, which can't
    /// answer): after a failover the others report `ok` once a replica has taken over.
    pub fn wait_ok_except(&self, down: &[usize], within: Duration) -> Result<(), DockerError> {
        let up = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !down.contains(i));
        for (_, node) in up {
            self.wait_for(
                node,
                within,
                |out| out.lines().any(|l| l.trim() == "cluster_state:ok"),
                &["cluster", "info"],
            )?;
        }
        Ok(())
    }

    /// Runs `redis-cli <args>` against node `i` from inside its container (so it works
    /// whatever the host's tools), returns its output.
    pub fn cli(&self, i: usize, args: &[&str]) -> Result<String, DockerError> {
        let mut command = vec!["redis-cli"];
        command.extend_from_slice(args);
        self.network.exec(&self.nodes[i].container, &command)
    }

    /// The cluster as node `i` sees it (`CLUSTER NODES`), one entry per node it knows.
    pub fn topology(&self, i: usize) -> Result<Vec<ClusterNode>, DockerError> {
        let listing = self.cli(i, &["cluster", "nodes"])?;
        listing
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                ClusterNode::parse(line).ok_or_else(|| {
                    DockerError(format!("an unexpected CLUSTER NODES line: {line:?}"))
                })
            })
            .collect()
    }

    /// Node `i`'s id in the cluster (`CLUSTER MYID`).
    pub fn node_id(&self, i: usize) -> Result<String, DockerError> {
        self.cli(i, &["cluster", "myid"])
    }

    /// The index of the node at `address` (`ip:port`, as `CLUSTER NODES` gives it).
    pub fn index_of(&self, address: &str) -> Option<usize> {
        let ip = address.split(':').next()?;
        self.nodes.iter().position(|n| n.ip == ip)
    }

    /// The index of the replica of the primary `primary`, as node `asked` sees the cluster.
    pub fn replica_of(&self, primary: usize, asked: usize) -> Result<usize, DockerError> {
        let id = self.node_id(primary)?;
        let topology = self.topology(asked)?;
        topology
            .iter()
            .find(|n| n.flags.iter().any(|f| f == "slave") && n.primary.as_deref() == Some(&id))
            .and_then(|n| self.index_of(&n.address))
            .ok_or_else(|| {
                DockerError(format!(
                    "node {primary} ({id}) has no replica: {topology:?}"
                ))
            })
    }

    /// Node `i`'s `role` (`master` or `slave`, from `INFO replication`) and, for a replica,
    /// its primary's address and whether its link to it is up and synced.
    pub fn role(&self, i: usize) -> Result<Role, DockerError> {
        let info = self.cli(i, &["info", "replication"])?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':'))
                .map(str::to_owned)
        };
        match field("role").as_deref() {
            Some("master") => Ok(Role::Primary),
            Some("slave") => Ok(Role::Replica {
                primary: format!(
                    "{}:{}",
                    field("master_host").unwrap_or_default(),
                    field("master_port").unwrap_or_default()
                ),
                synced: field("master_link_status").as_deref() == Some("up")
                    && field("master_sync_in_progress").as_deref() == Some("0"),
            }),
            other => Err(DockerError(format!(
                "node {i} gave no known role ({other:?}): {info}"
            ))),
        }
    }

    /// Waits until node `i` is a replica of node `primary` with its link up and its first
    /// sync done, at most `within`.
    pub fn wait_replica_of(
        &self,
        i: usize,
        primary: usize,
        within: Duration,
    ) -> Result<(), DockerError> {
        let started = Instant::now();
        let wanted = format!("{}:6379", self.nodes[primary].ip);
        loop {
            let last = self.role(i);
            if matches!(&last, Ok(Role::Replica { primary, synced: true }) if *primary == wanted) {
                return Ok(());
            }
            if started.elapsed() > within {
                return Err(DockerError(format!(
                    "node {i} did not become a synced replica of node {primary} ({wanted}) \
                     within {within:?}: its role is {last:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until each of the first three nodes (the primaries as started) has a replica
    /// confirming its writes: a `SET` of a key it serves and a `WAIT 1` on one connection
    /// answer 1, at most `within`.
    ///
    /// A synced replica's link being up does not promise it: the primary streams writes
    /// (and a `WAIT`'s `GETACK`) to it only from its first `REPLCONF ACK` after the sync,
    /// up to a second later (see the Sentinel set's start-up check in `servers`), and a
    /// store under `Durability::Replicated` would see its first writes fail.
    pub fn wait_replicating(&self, within: Duration) -> Result<(), DockerError> {
        for i in 0..3 {
            let key = self.served_key(i)?;
            let script = format!("printf 'SET {key} 1\\r\\nWAIT 1 100\\r\\n' | redis-cli");
            let node = &self.nodes[i];
            let started = Instant::now();
            loop {
                let last = self.network.exec(&node.container, &["sh", "-c", &script]);
                let acked = last.as_deref().is_ok_and(|out| {
                    let mut lines = out.lines().map(str::trim);
                    lines.next() == Some("OK")
                        && lines.next().and_then(|n| n.parse::<u32>().ok()) >= Some(1)
                });
                if acked {
                    break;
                }
                if started.elapsed() > within {
                    return Err(DockerError(format!(
                        "node {i}'s replica did not confirm a write within {within:?}: \
                         SET + WAIT 1 answered {last:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// A key whose slot node `i` serves (it answers a `SET` of it, not `MOVED`).
    fn served_key(&self, i: usize) -> Result<String, DockerError> {
        let mut last = None;
        for n in 0..64 {
            let key = format!("cluster-health:{n}");
            // Another node's key gets `MOVED` (an error, for redis-cli's exit status too).
            match self.cli(i, &["set", &key, "1"]) {
                Ok(out) if out.trim() == "OK" => return Ok(key),
                other => last = Some(other),
            }
        }
        Err(DockerError(format!(
            "node {i} serves none of 64 keys (is it a primary?); the last SET: {last:?}"
        )))
    }

    /// Moves `slots` hash slots from primary `from` to primary `to` with `redis-cli
    /// --cluster reshard` (run in node `from`'s container): slot by slot, `SETSLOT
    /// IMPORTING`/`MIGRATING`, `MIGRATE` of the slot's keys, then `SETSLOT NODE`, so that
    /// clients meanwhile get `ASK` and then `MOVED` redirections. Returns how many keys it
    /// migrated (redis-cli prints a dot per key).
    pub fn reshard(&self, from: usize, to: usize, slots: usize) -> Result<usize, DockerError> {
        let from_id = self.node_id(from)?;
        let to_id = self.node_id(to)?;
        let address = format!("{}:6379", self.nodes[from].ip);
        let slots = slots.to_string();
        let output = self.cli(
            from,
            &[
                "--cluster",
                "reshard",
                &address,
                "--cluster-from",
                &from_id,
                "--cluster-to",
                &to_id,
                "--cluster-slots",
                &slots,
                "--cluster-yes",
            ],
        )?;
        Ok(output
            .lines()
            .filter_map(|l| l.strip_prefix("Moving slot "))
            // `Moving slot 7 from <ip>:6379 to <ip>:6379: ..`: the dots after the last colon.
            .map(|l| l.rsplit(':').next().unwrap_or("").matches('.').count())
            .sum())
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

/// A node's replication role, from [`RedisCluster::role`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A primary (`role:master`).
    Primary,
    /// A replica (`role:slave`).
    Replica {
        /// Its primary's `ip:port`.
        primary: String,
        /// Whether its link is up and its first full sync is over.
        synced: bool,
    },
}

/// One line of `CLUSTER NODES`: a node as another one sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// The node's id.
    pub id: String,
    /// `ip:port`.
    pub address: String,
    /// `myself`, `master`, `slave`, `fail?`, `fail`, …
    pub flags: Vec<String>,
    /// A replica's primary's id.
    pub primary: Option<String>,
    /// How many hash slots it serves (slots being imported or migrated, shown in brackets,
    /// are not counted).
    pub slots: usize,
}

impl ClusterNode {
    /// Parses `<id> <ip:port@cport[,hostname]> <flags> <primary> <ping> <pong> <epoch>
    /// <link> <slot>...`.
    fn parse(line: &str) -> Option<ClusterNode> {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            return None;
        }
        let mut slots = 0;
        for range in &fields[8..] {
            if range.starts_with('[') {
                continue;
            }
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            let (start, end): (usize, usize) = (start.parse().ok()?, end.parse().ok()?);
            slots += end.checked_sub(start)? + 1;
        }
        Some(ClusterNode {
            id: fields[0].to_owned(),
            address: fields[1].split(['@', ',']).next()?.to_owned(),
            flags: fields[2].split(',').map(str::to_owned).collect(),
            primary: (fields[3] != "-").then(|| fields[3].to_owned()),
            slots,
        })
    }

    /// Whether it is a primary that no node has marked as failed.
    pub fn is_live_primary(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
            && !self.flags.iter().any(|f| f.starts_with("fail"))
    }
}
