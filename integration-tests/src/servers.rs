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

/// Spawns `command` with its output appended to `log`, and waits until `port` accepts
/// connections (or the process exits, or 30 s pass).
fn spawn_listening(command: &mut Command, port: u16, log: &Path) -> Result<Child, String> {
    let name = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log_file(log)?)
        .stderr(log_file(log)?)
        .spawn()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let until = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
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
