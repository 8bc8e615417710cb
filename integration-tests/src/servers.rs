//! Dedicated servers that a test (or the soak run) may kill and start again: a
//! `redis-server`, a throwaway PostgreSQL cluster, a MariaDB server and a FerretDB process, each on its own
//! free port and data directory, removed on drop. The shared servers of `scripts/services`
//! are never killed.
//!
//! Each keeps what it acknowledged across a kill, as a production server would: Redis
//! with an append-only file, PostgreSQL and FerretDB by their own logs. (A killed
//! process loses nothing the kernel already has; none of these fsync, to stay fast.)

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A server the caller may crash and bring back.
pub trait DedicatedServer: Send {
    /// Its client URL.
    fn url(&self) -> String;
    /// Kills it abruptly, as a crash would: no clean shutdown, clients cut off.
    fn kill(&mut self) -> Result<(), String>;
    /// Starts it again on the same port and data, and waits until it accepts connections.
    fn restart(&mut self) -> Result<(), String>;
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// A fresh directory under the system's temp dir.
fn scratch_dir(kind: &str) -> Result<PathBuf, String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("session-{kind}-{}-{stamp}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// Spawns `command` with its output appended to `log`, without waiting for anything.
fn launch(command: &mut Command, log: &Path) -> Result<Child, String> {
    let name = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?)
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))
}

/// One look at a server still starting: an error (with its log) once it has exited, or
/// once `until` has passed (then it is killed).
fn still_starting(
    child: &mut Child,
    name: &str,
    port: u16,
    until: Instant,
    log: &Path,
) -> Result<(), String> {
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    if let Ok(Some(status)) = child.try_wait() {
        return Err(format!("{name} exited at start-up ({status}):\n{}", log()));
    }
    if Instant::now() > until {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!(
            "{name} did not listen on {port} within 30 s:\n{}",
            log()
        ));
    }
    Ok(())
}

/// Spawns `command` with its output appended to `log`, and waits until `port` accepts
/// connections (or the process exits, or 30 s pass).
fn spawn_listening(command: &mut Command, port: u16, log: &Path) -> Result<Child, String> {
    let name = command.get_program().to_string_lossy().into_owned();
    let mut child = launch(command, log)?;
    let until = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        still_starting(&mut child, &name, port, until, log)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child)
}

/// A server process of ours: its port, its directory (removed on drop) and the process.
#[derive(Debug)]
struct Process {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Process {
    fn new(kind: &str) -> Result<Self, String> {
        Ok(Self {
            port: free_port()?,
            dir: scratch_dir(kind)?,
            child: None,
        })
    }

    fn spawn(&mut self, mut command: Command) -> Result<(), String> {
        let log = self.dir.join("server.log");
        self.child = Some(spawn_listening(&mut command, self.port, &log)?);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn log_file(path: &Path) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A `redis-server` of our own (on the PATH), persisting to an append-only file.
#[derive(Debug)]
pub struct RedisServer(Process);

impl RedisServer {
    /// Starts one on a free port.
    pub fn start() -> Result<Self, String> {
        let mut server = Self(Process::new("redis")?);
        server.restart()?;
        Ok(server)
    }
}

impl DedicatedServer for RedisServer {
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.0.port)
    }

    fn kill(&mut self) -> Result<(), String> {
        self.0.kill();
        Ok(())
    }

    fn restart(&mut self) -> Result<(), String> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.0.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "no"])
            .arg("--dir")
            .arg(&self.0.dir);
        self.0.spawn(command)
    }
}

/// `FERRETDB_BIN`, else the binary `scripts/services` builds; `Err` says why it's unusable.
pub fn ferretdb_binary() -> Result<PathBuf, String> {
    let path = match std::env::var_os("FERRETDB_BIN") {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => {
            let home = std::env::var_os("HOME").ok_or("HOME is not set")?;
            Path::new(&home).join(".cache/session-stores/bin/ferretdb")
        }
    };
    if !path.is_file() {
        return Err(format!(
            "no FerretDB binary at {} (set FERRETDB_BIN, or run scripts/services, which \
             builds it there)",
            path.display()
        ));
    }
    let output = Command::new(&path)
        .arg("--version")
        .output()
        .map_err(|err| format!("cannot run {}: {err}", path.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} does not run (`--version` failed: {}); rebuild it with scripts/services or \
             point FERRETDB_BIN at a working build",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
                .lines()
                .next()
                .unwrap_or("")
        ));
    }
    Ok(path)
}

/// A FerretDB process (SQLite backend) of our own.
#[derive(Debug)]
pub struct FerretServer {
    binary: PathBuf,
    process: Process,
}

impl FerretServer {
    /// Starts one on a free port, with the binary from [`ferretdb_binary`].
    pub fn start() -> Result<Self, String> {
        let process = Process::new("ferretdb")?;
        std::fs::create_dir_all(process.dir.join("data")).map_err(|e| e.to_string())?;
        let mut server = Self {
            binary: ferretdb_binary()?,
            process,
        };
        server.restart()?;
        Ok(server)
    }
}

impl DedicatedServer for FerretServer {
    fn url(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.process.port)
    }

    fn kill(&mut self) -> Result<(), String> {
        self.process.kill();
        Ok(())
    }

    fn restart(&mut self) -> Result<(), String> {
        let dir = &self.process.dir;
        let mut command = Command::new(&self.binary);
        command
            .arg("--handler=sqlite")
            .arg(format!("--sqlite-url=file:{}/", dir.join("data").display()))
            .arg(format!("--state-dir={}", dir.display()))
            .arg(format!("--listen-addr=127.0.0.1:{}", self.process.port))
            .arg(format!("--debug-addr=127.0.0.1:{}", free_port()?))
            .arg("--telemetry=disable")
            .arg("--log-level=warn");
        self.process.spawn(command)
    }
}

/// A throwaway PostgreSQL cluster (`initdb`, `pg_ctl`), stopped and removed on drop.
#[derive(Debug)]
pub struct PostgresServer {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
    /// The system user running the server when we run as root (PostgreSQL refuses root).
    user: Option<String>,
}

impl PostgresServer {
    /// Creates a cluster in a temporary directory and starts it on a free port.
    pub fn start() -> Result<Self, String> {
        let bin = pg_bindir().ok_or("no initdb found: set SESSION_STORES_PG_BINDIR")?;
        let user = if run_output(Command::new("id").arg("-u"))?.trim() == "0" {
            let user =
                std::env::var("SESSION_STORES_PG_OS_USER").unwrap_or_else(|_| "sessionpg".into());
            if run_output(Command::new("id").arg("-u").arg(&user)).is_err() {
                return Err(format!(
                    "running as root and there is no system user {user:?} to run a throwaway \
                     PostgreSQL as (scripts/services creates it; or set SESSION_STORES_PG_OS_USER)"
                ));
            }
            Some(user)
        } else {
            None
        };
        let dir = scratch_dir("pg")?;
        if let Some(user) = &user {
            run_output(Command::new("chown").arg(user).arg(&dir))?;
        }
        let cluster = Self {
            dir,
            bin,
            port: free_port()?,
            user,
        };
        let data = cluster.data();
        let init = [
            "-D",
            &data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ];
        cluster.run("initdb", &init)?;
        let mut cluster = cluster;
        cluster.restart()?;
        Ok(cluster)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(tool);
        let mut command = match &self.user {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(&program);
                c
            }
            None => Command::new(&program),
        };
        command.args(args).current_dir(&self.dir);
        run_output(&mut command).map(drop)
    }
}

impl DedicatedServer for PostgresServer {
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// `pg_ctl -m immediate`: no shutdown checkpoint, clients cut off, recovery on start.
    fn kill(&mut self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
    }

    fn restart(&mut self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        let data = self.data();
        self.run(
            "pg_ctl",
            &[
                "-D", &data, "-o", &opts, "-l", &log, "-w", "-t", "60", "start",
            ],
        )
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where `initdb` and `pg_ctl` are: `SESSION_STORES_PG_BINDIR`, `pg_config --bindir`, the
/// PATH, or Debian's `/usr/lib/postgresql/<newest>/bin`.
fn pg_bindir() -> Option<PathBuf> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("SESSION_STORES_PG_BINDIR") {
        return Some(PathBuf::from(dir)).filter(|d| has_initdb(d));
    }
    if let Ok(out) = run_output(Command::new("pg_config").arg("--bindir")) {
        let dir = PathBuf::from(out.trim());
        if has_initdb(&dir) {
            return Some(dir);
        }
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_initdb(d))
    {
        return Some(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| has_initdb(d))
        .collect();
    versions.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    versions.pop()
}

/// A throwaway MariaDB server (`mariadb-install-db`, then `mariadbd` in the foreground) on a
/// free port, with a `sessions`/`sessions` account on database `sessions`; removed on drop.
/// Run as root, it runs as the `mysql` system user (Debian's mariadb-server creates it;
/// `SESSION_STORES_MYSQL_OS_USER` to choose another).
#[derive(Debug)]
pub struct MariadbServer {
    process: Process,
    user: Option<String>,
}

impl MariadbServer {
    /// Creates the data directory and starts the server.
    pub fn start() -> Result<Self, String> {
        let process = Process::new("mariadb")?;
        let user = if run_output(Command::new("id").arg("-u"))?.trim() == "0" {
            let user =
                std::env::var("SESSION_STORES_MYSQL_OS_USER").unwrap_or_else(|_| "mysql".into());
            run_output(Command::new("chown").arg(&user).arg(&process.dir))
                .map_err(|e| format!("no system user {user:?} to run MariaDB as: {e}"))?;
            Some(user)
        } else {
            None
        };
        let mut install = Command::new("mariadb-install-db");
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", process.dir.join("data").display()))
            .arg("--auth-root-authentication-method=normal")
            .arg("--skip-test-db");
        if let Some(user) = &user {
            install.arg(format!("--user={user}"));
        }
        run_output(install.current_dir(&process.dir))
            .map_err(|e| format!("mariadb-install-db (is mariadb-server installed?): {e}"))?;
        let mut server = Self { process, user };
        server.restart()?;
        server.admin(
            "CREATE USER 'sessions'@'127.0.0.1' IDENTIFIED BY 'sessions'; \
             GRANT ALL PRIVILEGES ON *.* TO 'sessions'@'127.0.0.1'; \
             CREATE DATABASE sessions CHARACTER SET utf8mb4;",
        )?;
        Ok(server)
    }

    fn socket(&self) -> PathBuf {
        self.process.dir.join("mariadbd.sock")
    }

    /// Runs SQL as the server's root account over its socket (no password: only this
    /// machine's users who can reach the scratch directory can).
    fn admin(&self, sql: &str) -> Result<(), String> {
        run_output(
            Command::new("mariadb")
                .arg("--no-defaults")
                .arg(format!("--socket={}", self.socket().display()))
                .args(["-u", "root", "-e", sql]),
        )
        .map(drop)
    }
}

impl DedicatedServer for MariadbServer {
    fn url(&self) -> String {
        format!(
            "mysql://sessions:sessions@127.0.0.1:{}/sessions",
            self.process.port
        )
    }

    /// SIGKILL: no clean shutdown, InnoDB recovers from its redo log on start.
    fn kill(&mut self) -> Result<(), String> {
        self.process.kill();
        Ok(())
    }

    fn restart(&mut self) -> Result<(), String> {
        let dir = &self.process.dir;
        let mut command = Command::new(
            ["/usr/sbin/mariadbd", "/usr/bin/mariadbd"]
                .into_iter()
                .find(|p| Path::new(p).is_file())
                .unwrap_or("mariadbd"),
        );
        command
            .arg("--no-defaults")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", self.socket().display()))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--port={}", self.process.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--innodb-log-file-size=16M",
            ]);
        if let Some(user) = &self.user {
            command.arg(format!("--user={user}"));
        }
        command.current_dir(dir);
        self.process.spawn(command)
    }
}

/// Why a `redis-server` of ours did not come up.
#[derive(Debug)]
enum SpawnError {
    /// Another process holds its port: [`free_port`] only found the port free, and something
    /// else (another test's server, a toxiproxy proxy, a client's ephemeral port) can take it
    /// before our process binds it. Starting again on fresh ports is the cure.
    PortTaken(String),
    /// Anything else (it crashed, or never listened).
    Failed(String),
}

impl From<SpawnError> for String {
    fn from(err: SpawnError) -> String {
        match err {
            SpawnError::PortTaken(why) | SpawnError::Failed(why) => why,
        }
    }
}

/// How long a port may answer as another process while ours starts: ours exits at once when
/// it can't bind, so this is only a bound for a process that neither binds nor exits.
const FOREIGN_PORT_PATIENCE: Duration = Duration::from_secs(5);

/// Spawns `redis-server` (`command`: a server or a sentinel) with its output appended to
/// `log`, and waits until the server answering on `port` is that process: its `INFO server`
/// names its process id. A port that merely accepts connections proves nothing: the port
/// was free when picked, but another process may have bound it since, and our process then
/// exits ("Address already in use") while the port keeps answering as the other one (seen
/// as a sentinel set whose "sentinel" answered `unknown command 'SENTINEL'`).
///
/// Sleeps on the runtime instead of blocking one of its threads (a workload may be running).
async fn spawn_redis(command: &mut Command, port: u16, log: &Path) -> Result<Child, SpawnError> {
    let name = command.get_program().to_string_lossy().into_owned();
    let mut child = launch(command, log).map_err(SpawnError::Failed)?;
    let pid = child.id().to_string();
    let start = Instant::now();
    let mut foreign_since: Option<(Instant, String)> = None;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            let why = format!("{name} on :{port} exited at start-up ({status}):\n{log}");
            return Err(if log.contains("Address already in use") {
                SpawnError::PortTaken(why)
            } else {
                SpawnError::Failed(why)
            });
        }
        // Another process answering keeps us waiting for ours to give up on the port (it
        // exits at once, seen above); no answer means ours is still starting.
        if let Ok(info) = query(port, &["INFO", "server"]).await {
            let answered = info_field(info.text().unwrap_or_default(), "process_id")
                .unwrap_or("none")
                .to_owned();
            if answered == pid {
                return Ok(child);
            }
            let since = foreign_since.get_or_insert((Instant::now(), answered));
            if since.0.elapsed() > FOREIGN_PORT_PATIENCE {
                let _ = child.kill();
                let _ = child.wait();
                return Err(SpawnError::PortTaken(format!(
                    "{name} (pid {pid}) never got :{port}: process {} answers there",
                    since.1
                )));
            }
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(SpawnError::Failed(format!(
                "{name} did not answer on :{port} within 30 s:\n{log}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `redis-server --version`, or why it can't be run (a test skips on that, while a set that
/// fails to come up with a working binary is a failure).
pub fn redis_server_version() -> Result<String, String> {
    let out = Command::new("redis-server")
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run redis-server (is it on the PATH?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "redis-server --version failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A reply of a Redis server (RESP2), as far as the set's checks need one.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Resp {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Resp>>),
}

impl Resp {
    fn text(&self) -> Option<&str> {
        match self {
            Self::Status(s) | Self::Bulk(Some(s)) => Some(s),
            _ => None,
        }
    }

    fn items(&self) -> &[Resp] {
        match self {
            Self::Array(Some(items)) => items,
            _ => &[],
        }
    }

    /// A field of a flat `[name, value, name, value, …]` array, as `SENTINEL MASTER` and
    /// each entry of `SENTINEL REPLICAS` answer.
    fn field(&self, name: &str) -> Option<&str> {
        self.items()
            .chunks(2)
            .find(|pair| pair.first().and_then(Resp::text) == Some(name))
            .and_then(|pair| pair.get(1)?.text())
    }
}

fn read_resp(reader: &mut impl std::io::BufRead) -> Result<Resp, String> {
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("reading a reply: {e}"))?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or("the server closed the connection")?;
    let number = || {
        rest.parse::<i64>()
            .map_err(|_| format!("not a RESP length: {line:?}"))
    };
    Ok(match kind {
        "+" => Resp::Status(rest.to_owned()),
        "-" => Resp::Error(rest.to_owned()),
        ":" => Resp::Int(number()?),
        "$" => match usize::try_from(number()?) {
            Err(_) => Resp::Bulk(None),
            Ok(len) => {
                let mut buf = vec![0; len + 2];
                reader
                    .read_exact(&mut buf)
                    .map_err(|e| format!("reading a reply: {e}"))?;
                buf.truncate(len);
                Resp::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        },
        "*" => match usize::try_from(number()?) {
            Err(_) => Resp::Array(None),
            Ok(len) => Resp::Array(Some(
                (0..len)
                    .map(|_| read_resp(reader))
                    .collect::<Result<_, _>>()?,
            )),
        },
        _ => return Err(format!("not a RESP reply: {line:?}")),
    })
}

/// Commands sent together on one connection of their own to the server on `port` of
/// 127.0.0.1, their replies in order, within 2 s each. An error reply is an `Err`.
fn pipeline_blocking(port: u16, commands: &[Vec<String>]) -> Result<Vec<Resp>, String> {
    use std::io::Write;
    let what = commands
        .iter()
        .map(|args| args.join(" "))
        .collect::<Vec<_>>()
        .join("; ");
    let what = format!("{what} on :{port}");
    let limit = Duration::from_secs(2);
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stream = TcpStream::connect_timeout(&address, limit).map_err(|e| format!("{what}: {e}"))?;
    stream
        .set_read_timeout(Some(limit))
        .and_then(|()| stream.set_write_timeout(Some(limit)))
        .map_err(|e| format!("{what}: {e}"))?;
    let mut request = String::new();
    for args in commands {
        request.push_str(&format!("*{}\r\n", args.len()));
        for arg in args {
            request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
        }
    }
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| format!("{what}: {e}"))?;
    let mut reader = std::io::BufReader::new(&stream);
    commands
        .iter()
        .map(|_| match read_resp(&mut reader) {
            Ok(Resp::Error(err)) => Err(format!("{what}: {err}")),
            Ok(reply) => Ok(reply),
            Err(err) => Err(format!("{what}: {err}")),
        })
        .collect()
}

/// One command to the server on `port` of 127.0.0.1, on a connection of its own, within 2 s,
/// off the runtime's threads. An error reply is an `Err`.
async fn query(port: u16, args: &[&str]) -> Result<Resp, String> {
    let mut replies = pipeline(port, &[args]).await?;
    replies
        .pop()
        .ok_or_else(|| format!("{} on :{port}: no reply", args.join(" ")))
}

/// [`pipeline_blocking`] off the runtime's threads.
async fn pipeline(port: u16, commands: &[&[&str]]) -> Result<Vec<Resp>, String> {
    let commands: Vec<Vec<String>> = commands
        .iter()
        .map(|args| args.iter().map(|a| (*a).to_owned()).collect())
        .collect();
    tokio::task::spawn_blocking(move || pipeline_blocking(port, &commands))
        .await
        .map_err(|e| format!("a Redis query panicked: {e}"))?
}

/// The value of `name` in an `INFO` section's `name:value` lines.
fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.trim_end().strip_prefix(name)?.strip_prefix(':'))
}

/// A Redis Sentinel set of our own, to fail over: a primary and a replica (`redis-server`
/// with an append-only file, like [`RedisServer`]) and three sentinels (quorum 2), each on
/// a free port with a scratch directory removed on drop, the processes killed on drop. The
/// shared set of `scripts/services` is never failed over; tests that do start one of these.
///
/// The replica replicates through a toxiproxy proxy in front of the primary, so a test can
/// cut replication ([`Self::hold_replication`]) and open the window in which writes the
/// primary acknowledged exist nowhere else; a failover in that window loses them.
///
/// Sentinel settings are short so a failover completes in a few seconds:
/// `down-after-milliseconds` 1000 from [`Self::kill_primary`] on and `failover-timeout`
/// 3000. A replica cut off from its primary stays eligible for promotion: Sentinel skips
/// only replicas whose link has been down longer than the primary's down time plus ten
/// times `down-after-milliseconds` (`replica-validity-factor` is a Cluster setting), far
/// more than a test holds it.
///
/// A test schedules one failover, and gets only that one: outside the window from
/// [`Self::kill_primary`] to the end of [`Self::wait_for_failover`], the sentinels count a
/// primary down only after a minute of silence. With 1000 ms throughout, a loaded machine
/// made a sentinel judge the just-promoted primary down a second after the switch (its new
/// link's first `PING` unanswered for 1000 ms, while that primary forked for the old one's
/// full sync), and the sentinels failed back to the old primary, which had just rejoined:
/// the node the store had reconnected to was then a primary nobody replicated from, whose
/// `WAIT`s all timed out, until Sentinel turned it into a replica 8-12 s later (seen as
/// fred's "did not resume within 10 s of the old primary rejoining", 1 run in ~25 here).
/// [`Self::failovers`] counts the failovers that happened, for the tests to check.
///
/// The proxy is deleted by [`Self::stop`] (toxiproxy's API is async, `Drop` is not); a set
/// dropped without it leaves the proxy behind until the next set of the same name, which
/// replaces it.
#[derive(Debug)]
pub struct RedisSentinelSet {
    service: String,
    /// Before the nodes: dropped (killed) first, so none fails a node over on the way out.
    sentinels: Vec<Process>,
    /// The data nodes: the first primary, then its replica.
    nodes: [Process; 2],
    /// In front of the first primary; the replica's upstream.
    proxy: crate::toxiproxy::Proxy,
    /// The node killed last by [`Self::kill_primary`], and when.
    killed: Option<(usize, Instant)>,
}

/// How long a primary must be silent before a sentinel thinks it down, while a test fails
/// it over.
const DOWN_AFTER_MS: u64 = 1000;
/// The same the rest of the time: long enough that no failover happens but the one a test
/// schedules.
const STEADY_DOWN_AFTER_MS: u64 = 60_000;
/// How long the health check's `WAIT` waits for the replica to confirm its write: short, as
/// it is retried every 50 ms until the primary streams to the replica.
const HEALTH_WAIT_MS: &str = "100";
/// Sentinel's bound on each failover step, and twice it between two attempts on one primary
/// (after a split vote, say): short, so a retried failover still fits a test.
const FAILOVER_TIMEOUT_MS: u64 = 3000;
/// How many times [`RedisSentinelSet::start`] starts the set on fresh ports when another
/// process took one of them.
const START_ATTEMPTS: usize = 5;

impl RedisSentinelSet {
    /// Starts a set whose replication proxy is named `name` (unique per test: an earlier
    /// proxy of that name is replaced) on `toxiproxy`, and waits until it is healthy: the
    /// replica in sync and confirming writes (`WAIT`), and every sentinel agreeing on the
    /// primary, seeing the replica and both other sentinels.
    ///
    /// Its five ports are picked free, but another process may bind one before ours does
    /// (other tests start servers and proxies meanwhile): the whole set is then started
    /// again on fresh ports, up to five times.
    pub async fn start(
        toxiproxy: &crate::toxiproxy::Toxiproxy,
        name: &str,
    ) -> Result<Self, String> {
        let mut taken = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(toxiproxy, name).await {
                Ok(set) => return Ok(set),
                Err(SpawnError::PortTaken(why)) => taken.push(why),
                Err(SpawnError::Failed(why)) => return Err(why),
            }
        }
        Err(format!(
            "another process took one of the set's ports in each of {START_ATTEMPTS} \
             attempts:\n{}",
            taken.join("\n")
        ))
    }

    /// One attempt of [`Self::start`], on fresh ports; dropped (its processes killed) when
    /// it fails.
    async fn start_once(
        toxiproxy: &crate::toxiproxy::Toxiproxy,
        name: &str,
    ) -> Result<Self, SpawnError> {
        let nodes = [
            Process::new("sentinel-node").map_err(SpawnError::Failed)?,
            Process::new("sentinel-node").map_err(SpawnError::Failed)?,
        ];
        let primary_port = nodes[0].port;
        let proxy = toxiproxy
            .proxy(name, &format!("127.0.0.1:{primary_port}"))
            .await
            .map_err(SpawnError::Failed)?;
        let sentinels = (0..3)
            .map(|_| Process::new("sentinel"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SpawnError::Failed)?;
        let mut set = Self {
            service: "failover".into(),
            nodes,
            sentinels,
            proxy,
            killed: None,
        };
        for node in 0..2 {
            set.spawn_node(node).await?;
        }
        set.write_sentinel_configs().map_err(SpawnError::Failed)?;
        for sentinel in &mut set.sentinels {
            let config = sentinel.dir.join("sentinel.conf");
            let mut command = Command::new("redis-server");
            command.arg(&config).arg("--sentinel");
            let log = sentinel.dir.join("server.log");
            sentinel.child = Some(spawn_redis(&mut command, sentinel.port, &log).await?);
        }
        set.wait_healthy(Duration::from_secs(30))
            .await
            .map_err(SpawnError::Failed)?;
        Ok(set)
    }

    /// The `redis-server` command of data node `node`: the replica replicates through the
    /// proxy; a restarted first primary comes back as a primary, with what its append-only
    /// file holds, until the sentinels turn it into a replica.
    fn node_command(&self, node: usize) -> Command {
        let process = &self.nodes[node];
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &process.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", "no"])
            // Redis 7 waits 5 s before a diskless full sync by default.
            .args(["--repl-diskless-sync-delay", "0"])
            .arg("--dir")
            .arg(&process.dir);
        if node == 1 {
            command.args(["--replicaof", "127.0.0.1", &self.proxy.port().to_string()]);
        }
        command
    }

    async fn spawn_node(&mut self, node: usize) -> Result<(), SpawnError> {
        let mut command = self.node_command(node);
        let process = &mut self.nodes[node];
        let log = process.dir.join("server.log");
        process.child = Some(spawn_redis(&mut command, process.port, &log).await?);
        Ok(())
    }

    /// Each sentinel's config, in its own directory (a sentinel rewrites it). The sentinels
    /// and the replica are written in as already known, so the set needs no round of
    /// discovery (hello messages every 2 s) before a failover can reach a quorum.
    fn write_sentinel_configs(&self) -> Result<(), String> {
        let ids: Vec<String> = self
            .sentinels
            .iter()
            .map(|_| (0..40).map(|_| fastrand::digit(16)).collect())
            .collect();
        let service = &self.service;
        for (i, sentinel) in self.sentinels.iter().enumerate() {
            let mut config = format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\nlogfile \"\"\nsentinel myid {id}\n\
                 sentinel monitor {service} 127.0.0.1 {primary} 2\n\
                 sentinel down-after-milliseconds {service} {STEADY_DOWN_AFTER_MS}\n\
                 sentinel failover-timeout {service} {FAILOVER_TIMEOUT_MS}\n\
                 sentinel known-replica {service} 127.0.0.1 {replica}\n",
                port = sentinel.port,
                dir = sentinel.dir.display(),
                id = ids[i],
                primary = self.nodes[0].port,
                replica = self.nodes[1].port,
            );
            for (j, other) in self.sentinels.iter().enumerate() {
                if j != i {
                    config.push_str(&format!(
                        "sentinel known-sentinel {service} 127.0.0.1 {} {}\n",
                        other.port, ids[j]
                    ));
                }
            }
            let path = sentinel.dir.join("sentinel.conf");
            std::fs::write(&path, config).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Waits until the replica is in sync, every sentinel reports the first primary with
    /// flags `master`, the replica (flags `slave`, nothing else) and both other sentinels,
    /// and the replica confirms a write on the primary (`WAIT 1`), as a store under
    /// `Durability::Replicated` needs for its first write.
    ///
    /// The replica's `master_link_status:up` (and the primary's `state=online` for it) do
    /// not promise that: after the diskless full sync, the primary streams writes (and the
    /// `REPLCONF GETACK` of a `WAIT`) to the replica only from the replica's first
    /// `REPLCONF ACK` on. The replica sends one as soon as it has loaded the snapshot, but
    /// if it reaches the primary before the primary has reaped its snapshot child (its cron
    /// does, every 100 ms) it is spent for nothing ("Waiting for REPLCONF ACK from slave to
    /// enable streaming" comes later in the primary's log), and the stream starts with the
    /// replica's next periodic ACK, up to a second later. A `WAIT` in between gets no
    /// confirmation: seen as the workload's first write failing after its 800 ms `WAIT`,
    /// in about one start in six on a loaded machine.
    async fn wait_healthy(&self, within: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let problem = match self.health().await {
                Ok(()) => return Ok(()),
                Err(problem) => problem,
            };
            if start.elapsed() > within {
                return Err(format!(
                    "the sentinel set did not become healthy within {within:?}: {problem}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn health(&self) -> Result<(), String> {
        let info = query(self.nodes[1].port, &["INFO", "replication"]).await?;
        let info = info.text().unwrap_or_default();
        if info_field(info, "master_link_status") != Some("up") {
            return Err("the replica is not in sync".into());
        }
        let (primary, replica) = (
            self.nodes[0].port.to_string(),
            self.nodes[1].port.to_string(),
        );
        for sentinel in &self.sentinels {
            let master = query(sentinel.port, &["SENTINEL", "MASTER", &self.service]).await?;
            let fields = ["port", "flags", "num-slaves", "num-other-sentinels"]
                .map(|name| master.field(name).unwrap_or_default());
            if fields != [primary.as_str(), "master", "1", "2"] {
                return Err(format!(
                    "sentinel :{} sees port/flags/replicas/sentinels {fields:?}",
                    sentinel.port
                ));
            }
            let replicas = query(sentinel.port, &["SENTINEL", "REPLICAS", &self.service]).await?;
            let seen = replicas.items().iter().any(|r| {
                r.field("port") == Some(replica.as_str()) && r.field("flags") == Some("slave")
            });
            if !seen {
                return Err(format!(
                    "sentinel :{} does not see replica :{replica} healthy: {replicas:?}",
                    sentinel.port
                ));
            }
        }
        // Last, as it may take `HEALTH_WAIT_MS`: a write and its `WAIT` on one connection
        // (`WAIT` counts the replicas holding its own connection's writes; on a fresh
        // connection it would confirm nothing).
        let replies = pipeline(
            self.nodes[0].port,
            &[
                &["SET", "sentinel-set:health", "1"],
                &["WAIT", "1", HEALTH_WAIT_MS],
            ],
        )
        .await?;
        match replies.get(1) {
            Some(Resp::Int(acked)) if *acked >= 1 => Ok(()),
            reply => Err(format!(
                "the replica did not confirm a write within {HEALTH_WAIT_MS} ms \
                 (WAIT 1 answered {reply:?}): the primary does not stream to it yet"
            )),
        }
    }

    /// The last lines of every process's log, to explain a failover that did not happen.
    pub fn log_tails(&self) -> String {
        let mut tails = String::new();
        let processes = self.nodes.iter().map(|p| ("node", p));
        for (kind, process) in processes.chain(self.sentinels.iter().map(|p| ("sentinel", p))) {
            let log = std::fs::read_to_string(process.dir.join("server.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            tails.push_str(&format!("--- {kind} :{}\n", process.port));
            for line in &lines[lines.len().saturating_sub(60)..] {
                tails.push_str(line);
                tails.push('\n');
            }
        }
        tails
    }

    /// A `redis+sentinel://` URL naming all three sentinels.
    pub fn url(&self) -> String {
        let mut url = format!(
            "redis+sentinel://127.0.0.1:{}?sentinelServiceName={}",
            self.sentinels[0].port, self.service
        );
        for sentinel in &self.sentinels[1..] {
            url.push_str(&format!("&node=127.0.0.1:{}", sentinel.port));
        }
        url
    }

    /// The primary's port as each sentinel reports it (`None` for one that doesn't answer).
    async fn reported_primaries(&self) -> Vec<Option<u16>> {
        let mut ports = Vec::new();
        for sentinel in &self.sentinels {
            let reply = query(
                sentinel.port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", &self.service],
            )
            .await;
            ports.push(
                reply
                    .ok()
                    .and_then(|r| r.items().get(1)?.text()?.parse().ok()),
            );
        }
        ports
    }

    /// The data node at least two sentinels report as the primary.
    async fn primary(&self) -> Result<usize, String> {
        let reported = self.reported_primaries().await;
        self.nodes
            .iter()
            .position(|node| reported.iter().filter(|p| **p == Some(node.port)).count() >= 2)
            .ok_or_else(|| format!("the sentinels agree on no primary: {reported:?}"))
    }

    /// Sets every sentinel's `down-after-milliseconds`.
    async fn set_down_after(&self, ms: u64) -> Result<(), String> {
        let ms = ms.to_string();
        for sentinel in &self.sentinels {
            query(
                sentinel.port,
                &[
                    "SENTINEL",
                    "SET",
                    &self.service,
                    "down-after-milliseconds",
                    &ms,
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// How many failovers the sentinels made so far: the most `+switch-master` events one
    /// sentinel logged.
    pub fn failovers(&self) -> usize {
        self.sentinels
            .iter()
            .map(|sentinel| {
                std::fs::read_to_string(sentinel.dir.join("server.log"))
                    .unwrap_or_default()
                    .matches("+switch-master")
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Kills the current primary (as the sentinels report it) with SIGKILL, the sentinels
    /// now counting a primary down after a second of silence.
    pub async fn kill_primary(&mut self) -> Result<(), String> {
        self.set_down_after(DOWN_AFTER_MS).await?;
        let primary = self.primary().await?;
        self.nodes[primary].kill();
        self.killed = Some((primary, Instant::now()));
        Ok(())
    }

    /// Waits until at least two sentinels report another primary than the one
    /// [`Self::kill_primary`] killed and that node says it is one (`ROLE`), then makes the
    /// sentinels slow to count a primary down again (no second failover); returns the time
    /// since the kill.
    pub async fn wait_for_failover(&self, within: Duration) -> Result<Duration, String> {
        let (killed, at) = self.killed.ok_or("no primary was killed")?;
        let other = 1 - killed;
        let port = self.nodes[other].port;
        loop {
            let reported = self.reported_primaries().await;
            if reported.iter().filter(|p| **p == Some(port)).count() >= 2 {
                let role = query(port, &["ROLE"]).await?;
                if role.items().first().and_then(Resp::text) == Some("master") {
                    let after = at.elapsed();
                    self.set_down_after(STEADY_DOWN_AFTER_MS).await?;
                    return Ok(after);
                }
            }
            if at.elapsed() > within {
                return Err(format!(
                    "no failover within {within:?} of the kill: the sentinels report {reported:?} \
                     (killed :{}, replica :{port})\n{}",
                    self.nodes[killed].port,
                    self.log_tails()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the node [`Self::kill_primary`] killed again, on its port and data, as a
    /// replica of the promoted one: what its configuration says once Sentinel has rewritten
    /// it after the failover. (Started as a primary, it waits for the sentinels to demote
    /// it, 8 s later by Sentinel's rule of four publish periods, and in 1 of about 10 runs
    /// on a loaded machine not within 20 s; the tests are about the store, not that wait.)
    /// Its first sync discards the writes only it had.
    pub async fn restart_old_primary(&mut self) -> Result<(), String> {
        let (killed, _) = self.killed.ok_or("no primary was killed")?;
        let promoted = self.nodes[1 - killed].port.to_string();
        let mut command = self.node_command(killed);
        command.args(["--replicaof", "127.0.0.1", &promoted]);
        let process = &mut self.nodes[killed];
        let log = process.dir.join("server.log");
        // Its port was free for a moment: another process may have bound it (then this
        // says so; the sentinels know the node by that port, so no other would do).
        process.child = Some(spawn_redis(&mut command, process.port, &log).await?);
        Ok(())
    }

    /// Waits until the node [`Self::restart_old_primary`] restarted replicates from the new
    /// primary, in sync; returns the time since the kill. Until then the new primary has no
    /// replica, so a store that waits for one on each write can't write.
    pub async fn wait_for_rejoin(&self, within: Duration) -> Result<Duration, String> {
        let (killed, at) = self.killed.ok_or("no primary was killed")?;
        let primary = self.nodes[1 - killed].port.to_string();
        let start = Instant::now();
        loop {
            let info = query(self.nodes[killed].port, &["INFO", "replication"]).await;
            let info = info.as_ref().ok().and_then(Resp::text).unwrap_or_default();
            let fields = ["role", "master_port", "master_link_status"]
                .map(|name| info_field(info, name).unwrap_or_default());
            if fields == ["slave", primary.as_str(), "up"] {
                return Ok(at.elapsed());
            }
            if start.elapsed() > within {
                return Err(format!(
                    "the old primary did not rejoin as a replica of :{primary} within \
                     {within:?}: role/master port/link {fields:?}\n{}",
                    self.log_tails()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cuts the replica off from the first primary: the proxy closes the replication
    /// connection and refuses new ones, so writes the primary acknowledges from now on
    /// exist only there. (A toxic that drops bytes but keeps the connection would leave a
    /// gap in the replication stream, which the replica would apply around on release.)
    ///
    /// Sentinel "fixes" a replica that replicates from another address than the primary's
    /// once `failover-timeout` has passed since it noticed, so the replica may by now
    /// replicate straight from the primary: it is pointed back at the proxy (and so cut).
    pub async fn hold_replication(&self) -> Result<(), String> {
        use crate::toxiproxy::Fault;
        self.proxy.inject(Fault::Unreachable).await?;
        let replica = self.nodes[1].port;
        let info = query(replica, &["INFO", "replication"]).await?;
        let proxy = self.proxy.port().to_string();
        if info_field(info.text().unwrap_or_default(), "master_port") != Some(proxy.as_str()) {
            query(replica, &["REPLICAOF", "127.0.0.1", &proxy]).await?;
        }
        // Closing the proxy's connections is asynchronous: wait until the replica sees it.
        let start = Instant::now();
        loop {
            let info = query(replica, &["INFO", "replication"]).await?;
            if info_field(info.text().unwrap_or_default(), "master_link_status") == Some("down") {
                return Ok(());
            }
            if start.elapsed() > Duration::from_secs(5) {
                return Err(
                    "the replica's replication link stayed up behind a closed proxy".into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Lets replication through again: the replica reconnects within a second and catches
    /// up from the primary's backlog.
    pub async fn release_replication(&self) -> Result<(), String> {
        self.proxy.lift(crate::toxiproxy::Fault::Unreachable).await
    }

    /// Deletes the replication proxy; the processes stop when the set is dropped.
    pub async fn stop(self) -> Result<(), String> {
        self.proxy.clone().delete().await
    }
}
