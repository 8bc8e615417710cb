//! The testcontainers fallback of [`server_url`](crate::server_url): one container per
//! backend per test binary, removed when the binary exits. (A Redis Cluster has none: it
//! needs its nodes to announce addresses the client can reach.)
//!
//! Images: the upstream ones by default (redis:7.0, postgres:15, mongo:7.0, mariadb:10.11,
//! pulled from Docker Hub); an image named in
//! `SESSION_STORES_<BACKEND>_IMAGE` (`name:tag`) instead, such as the Debian-based images
//! `scripts/services docker` builds where no registry is reachable. Those must behave like
//! the project's own (`scripts/docker/*/Dockerfile`): the same port, the same login, and the
//! ready line below.

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use testcontainers_modules::testcontainers::bollard::models::PortBinding;
use testcontainers_modules::testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{
    Container, ContainerRequest, GenericImage, Image, ImageExt,
};
use testcontainers_modules::{mongo::Mongo, postgres::Postgres, redis::Redis};

use crate::{Backend, Skip};

/// The containers this process started, kept alive: a dropped `Container` is removed at once.
/// The reaper of [`owner`] removes them when the process is gone.
static KEEP: Mutex<Vec<Box<dyn std::any::Any + Send>>> = Mutex::new(Vec::new());

/// What a container of `backend` listens on, the URL that reaches it, and the log line that
/// says it is ready (for a custom image).
struct Spec {
    port: u16,
    url: fn(u16) -> String,
    ready: WaitFor,
}

fn spec(backend: Backend) -> Option<Spec> {
    Some(match backend {
        Backend::Redis => Spec {
            port: 6379,
            url: |port| format!("redis://127.0.0.1:{port}"),
            ready: WaitFor::message_on_stdout("Ready to accept connections"),
        },
        Backend::Postgres => Spec {
            port: 5432,
            url: |port| format!("postgres://postgres:postgres@127.0.0.1:{port}/postgres"),
            ready: WaitFor::message_on_stderr("database system is ready to accept connections"),
        },
        Backend::Mongo => Spec {
            port: 27017,
            url: |port| format!("mongodb://127.0.0.1:{port}"),
            // FerretDB's; a MongoDB image logs "Waiting for connections" instead.
            ready: WaitFor::message_on_stderr("Listening on"),
        },
        Backend::Mysql => Spec {
            port: 3306,
            url: |port| format!("mysql://sessions:sessions@127.0.0.1:{port}/sessions_test"),
            // The server's last start-up line; a temporary server an image's entrypoint
            // runs first listens on no port ("port: 0").
            ready: WaitFor::message_on_stderr("port: 3306"),
        },
        Backend::RedisCluster | Backend::RedisSentinel => return None,
    })
}

/// Starts a server for `backend` and returns its URL. Callable from async code: the
/// blocking runner gets a thread of its own (it would panic inside a tokio runtime).
pub(crate) fn start(backend: Backend) -> Result<String, Skip> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| start_here(backend))
            .join()
            .unwrap_or_else(|_| Err(Skip("starting the container panicked".into())))
    })
}

fn start_here(backend: Backend) -> Result<String, Skip> {
    let Some(spec) = spec(backend) else {
        return Err(Skip(format!(
            "no {backend:?} server: there is no container fallback, set {}",
            backend.env_var()
        )));
    };
    match backend.custom_image() {
        Some(image) => {
            let (name, tag) = image.rsplit_once(':').unwrap_or((&image, "latest"));
            let image = GenericImage::new(name, tag)
                .with_exposed_port(spec.port.tcp())
                .with_wait_for(spec.ready.clone());
            run(image, &spec)
        }
        None => match backend {
            // The versions the local images carry (Debian bookworm's), where the module's
            // default is older; MongoDB itself rather than FerretDB upstream.
            Backend::Redis => run(Redis::default().with_tag("7.0"), &spec),
            Backend::Postgres => run(Postgres::default().with_tag("15"), &spec),
            Backend::Mysql => run(upstream_mariadb(&spec), &spec),
            _ => run(Mongo::default().with_tag("7.0"), &spec),
        },
    }
}

/// The official MariaDB image, set up as the project's own (`scripts/docker/mariadb`).
fn upstream_mariadb(spec: &Spec) -> ContainerRequest<GenericImage> {
    GenericImage::new("mariadb", "10.11")
        .with_exposed_port(spec.port.tcp())
        .with_wait_for(spec.ready.clone())
        .with_env_var("MARIADB_ROOT_PASSWORD", "sessions-root")
        .with_env_var("MARIADB_USER", "sessions")
        .with_env_var("MARIADB_PASSWORD", "sessions")
        .with_env_var("MARIADB_DATABASE", "sessions_test")
}

fn run<I: Image + 'static>(
    request: impl Into<ContainerRequest<I>>,
    spec: &Spec,
) -> Result<String, Skip> {
    let port = spec.port;
    // On 127.0.0.1 whatever the daemon's default: one apt started publishes on 0.0.0.0.
    let container: Container<I> = request
        .into()
        .with_label(OWNER_LABEL, owner())
        .with_host_config_modifier(move |config| {
            config.publish_all_ports = Some(false);
            let binding = PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(String::new()),
            };
            config.port_bindings = Some(HashMap::from([(
                format!("{port}/tcp"),
                Some(vec![binding]),
            )]));
        })
        .start()
        .map_err(|err| Skip(format!("docker is there but the container failed: {err}")))?;
    let host_port = container.get_host_port_ipv4(spec.port);
    KEEP.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Box::new(container));
    let host_port = host_port.map_err(|err| Skip(format!("container port not mapped: {err}")))?;
    Ok((spec.url)(host_port))
}

/// The label whose value, [`owner`], marks every container and network this process
/// creates (here and in [`crate::docker`]).
pub(crate) const OWNER_LABEL: &str = "session-stores.owner";

/// This process's value of [`OWNER_LABEL`]. The first call starts the reaper, before
/// anything is created: whatever carries the label is removed once this process has ended,
/// however it ends (a panic, a failed test's exit code, a signal, SIGKILL included, also
/// while a container is still starting). testcontainers removes a container when its
/// handle drops, but these handles live in a static, which is never dropped; `scripts/test`
/// counts containers after its run and fails on any left.
///
/// The reaper is `sh` in a process group of its own, ignoring the signals `timeout` and
/// Ctrl-C send to the test's whole group, and it waits for end-of-file on a pipe only this
/// process holds (closed by the kernel when it exits; no pid to be reused).
pub(crate) fn owner() -> &'static str {
    static OWNER: OnceLock<(String, Option<ChildStdin>)> = OnceLock::new();
    let (owner, _pipe) = OWNER.get_or_init(|| {
        let owner = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let filter = format!("label={OWNER_LABEL}={owner}");
        let reaper = format!(
            "trap '' HUP INT TERM; cat >/dev/null; \
             docker ps -aq --filter {filter} | xargs -r docker rm --force --volumes; \
             docker network ls -q --filter {filter} | xargs -r docker network rm"
        );
        let spawned = Command::new("sh")
            .args(["-c", &reaper])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn();
        let pipe = match spawned {
            Ok(mut child) => child.stdin.take(),
            Err(err) => {
                eprintln!(
                    "integration-tests: no reaper, containers will outlive this process: {err}"
                );
                None
            }
        };
        (owner, pipe)
    });
    owner
}
