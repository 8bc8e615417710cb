//! The `session-admin` command line: its arguments, exit codes and [`run`].
//!
//! Adding a command: a variant of [`Command`] with its arguments, a file under `commands/`
//! with an `async fn run(ctx: &Context, args) -> Result<Report, Failure>`, and its arm in
//! `Command::run`. A command opens what it needs through [`Context`] (one store from
//! `--url`, or more).

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use clap::{Parser, Subcommand};
use session_core::Error;

use crate::commands;
use crate::open::{OpenOptions, Opened};
use crate::output::Report;
use crate::redact::{redacted, scrub};

/// The exit codes, as `--help` shows them (the crate docs list the same).
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the store failed or could not be reached (connection, authentication, timeout)
  2  usage: bad arguments, a malformed session id, a store URL that can't be read
  3  not found: `show` or `revoke` of a session id that has no live session
  4  corrupt records: some stored records did not decode (`stats`, `list`, `show`,
     `migrate`, which copies the rest)
  5  `migrate`'s verification failed: sampled sessions missing or different in the target

The store URL's passwords are never printed (`***` stands in for them).";

/// How `session-admin` ends; [`Exit::code`] is the process's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exit {
    /// 0: done.
    Ok,
    /// 1: the store failed or could not be reached, or another runtime error.
    Failed,
    /// 2: bad arguments (clap's own errors), a malformed session id, an unreadable store
    /// URL.
    Usage,
    /// 3: `show` or `revoke` of a session id without a live session.
    NotFound,
    /// 4: some stored records did not decode (the output lists the rest).
    Corrupt,
    /// 5: `migrate` finished but its verification found sampled sessions missing or
    /// different in the target.
    Unverified,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::NotFound => 3,
            Self::Corrupt => 4,
            Self::Unverified => 5,
        }
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit.code())
    }
}

/// Operate a session store: count, list, show, revoke and purge sessions, and summarise
/// what is stored. Sessions are shown by fingerprint (a one-way tag); ids and session data
/// only when asked.
#[derive(Debug, Parser)]
#[command(name = "session-admin", version, after_help = EXIT_CODES)]
struct Cli {
    /// The store: memory, or a redis://, rediss://, redis+cluster://, redis+sentinel://,
    /// postgres://, mysql://, mariadb://, sqlite:// or mongodb:// URL. Where the sessions live
    /// in it, if not the default: ?session_prefix= (Redis), ?session_table= (SQL),
    /// ?session_schema= (PostgreSQL), ?session_database= and ?session_collection= (MongoDB).
    #[arg(long, env = "SESSION_ADMIN_URL", hide_env_values = true, global = true)]
    url: Option<String>,

    /// How long one store call may take, connecting included: 500ms, 5s, 2m (a bare number
    /// is seconds).
    #[arg(long, global = true, default_value = "5s", value_parser = parse_timeout)]
    timeout: Duration,

    /// Print one JSON document on stdout instead of tables (errors too).
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
enum Command {
    /// How many live sessions the store holds (the store's own count; `stats` counts by a
    /// full scan).
    Count,
    /// Live sessions, by fingerprint: of one owner (--owner), else the first --limit.
    List(commands::list::Args),
    /// One session: its times, owner and data keys; the values only with --reveal.
    Show(commands::show::Args),
    /// End one session (by id) or every session of an owner (--owner).
    Revoke(commands::revoke::Args),
    /// Remove expired sessions, a batch at a time (stores that keep expired records: SQL,
    /// MongoDB; Redis and the memory store expire sessions by themselves).
    Purge(commands::purge::Args),
    /// Sessions by size and by time to expiry, from a full scan; counts corrupt records.
    Stats,
    /// Copy every live session from --from to --to (insert-if-free: never over a session
    /// the target holds), resumable with --checkpoint, verified at the end. Run it while
    /// the application serves through session_core::MigratingStore (see the README's
    /// runbook). --url is not used.
    Migrate(commands::migrate::Args),
}

impl Command {
    async fn run(&self, ctx: &Context) -> Result<Report, Failure> {
        match self {
            Self::Count => commands::count::run(ctx).await,
            Self::List(args) => commands::list::run(ctx, args).await,
            Self::Show(args) => commands::show::run(ctx, args).await,
            Self::Revoke(args) => commands::revoke::run(ctx, args).await,
            Self::Purge(args) => commands::purge::run(ctx, args).await,
            Self::Stats => commands::stats::run(ctx).await,
            Self::Migrate(args) => commands::migrate::run(ctx, args).await,
        }
    }
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| c.is_ascii_alphabetic()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 5s or 2m"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(format!("unknown unit {unit:?}: use ms, s or m")),
    };
    if !(seconds > 0.0 && seconds <= 86_400.0) {
        return Err("a timeout is more than 0 and at most a day".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// What every command gets: where the store is and how to reach it.
#[derive(Debug)]
pub(crate) struct Context {
    url: String,
    timeout: Duration,
    progress: bool,
}

impl Context {
    /// The store `--url` names, opened for inspection (nothing created, no background
    /// tasks).
    pub async fn open(&self) -> Result<Opened, Failure> {
        if self.url.trim().is_empty() {
            return Err(Failure::usage(
                "no store URL: give --url or set SESSION_ADMIN_URL (see --help)",
            ));
        }
        self.open_url(&self.url, false).await
    }

    /// The store `url` names; with `create`, its table or collection is made when missing
    /// (a migration's target), else nothing is created.
    pub async fn open_url(&self, url: &str, create: bool) -> Result<Opened, Failure> {
        let options = if create {
            OpenOptions::new()
        } else {
            OpenOptions::inspect()
        };
        options
            .timeout(self.timeout)
            .open(url)
            .await
            .map_err(|err| {
                let mut failure = Failure::from(err);
                failure.message = scrub(&failure.message, url);
                failure
            })
    }

    /// The store's URL as it may be printed.
    pub fn store(&self) -> String {
        redacted(&self.url).to_string()
    }

    /// A spinner on stderr counting `what` (hidden unless stderr is a terminal the user
    /// watches).
    pub fn spinner(&self, what: &'static str) -> indicatif::ProgressBar {
        let target = if self.progress {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        };
        let bar = indicatif::ProgressBar::with_draw_target(None, target);
        if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
            "{{spinner}} {{pos}} {what} ({{elapsed}}, {{per_sec}})"
        )) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(120));
        bar
    }
}

/// A command that failed: why (printed, passwords scrubbed) and how it exits.
#[derive(Debug)]
pub(crate) struct Failure {
    pub exit: Exit,
    pub kind: &'static str,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::Usage,
            kind: "usage",
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            exit: Exit::NotFound,
            kind: "not_found",
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        let exit = match &err {
            Error::Config(_) | Error::InvalidId(_) => Exit::Usage,
            Error::Decode { .. } => Exit::Corrupt,
            _ => Exit::Failed,
        };
        // The whole chain: a backend error's own message is often only "error
        // communicating with the server", its cause says which.
        let mut message = err.to_string();
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !message.contains(&cause_text) {
                message.push_str(": ");
                message.push_str(&cause_text);
            }
            source = cause.source();
        }
        Self {
            exit,
            kind: err.kind(),
            message,
        }
    }
}

/// Runs `session-admin` with `args` (the program name first, as `std::env::args_os`
/// gives them), writing the result to `out` and errors to `err`; no progress bars. The
/// exit code is returned, not taken: this is how tests and other programs embed the
/// command line.
pub async fn run<I, T>(args: I, out: &mut (dyn Write + Send), err: &mut (dyn Write + Send)) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    execute(args, out, err, false).await
}

/// Runs `session-admin` as the binary does: the process's arguments, stdout and stderr,
/// progress bars on stderr when it is a terminal.
pub async fn run_in_terminal() -> Exit {
    use std::io::IsTerminal;
    let progress = std::io::stderr().is_terminal();
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    execute(std::env::args_os(), &mut out, &mut err, progress).await
}

async fn execute<I, T>(
    args: I,
    out: &mut (dyn Write + Send),
    err: &mut (dyn Write + Send),
    progress: bool,
) -> Exit
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            // clap may quote what was typed, a URL with its password included.
            let text = scrub(&error.render().to_string(), "");
            return match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = write!(out, "{text}");
                    Exit::Ok
                }
                _ => {
                    let _ = write!(err, "{text}");
                    Exit::Usage
                }
            };
        }
    };
    let url = cli.url.clone().unwrap_or_default();
    let ctx = Context {
        url: url.clone(),
        timeout: cli.timeout,
        progress,
    };
    let result = cli.command.run(&ctx).await;
    match result {
        Ok(report) => {
            // Built by the command from the store's records and the redacted URL: nothing
            // to scrub (and scrubbing a password such as "sessions" would garble it).
            let printed = if cli.json {
                writeln!(out, "{}", report.json)
            } else {
                write!(out, "{}", report.text)
            };
            if printed.is_err() {
                return Exit::Failed;
            }
            report.exit
        }
        Err(failure) => {
            let message = scrub(&failure.message, &url);
            let _ = writeln!(err, "session-admin: error: {message}");
            if cli.json {
                let document = serde_json::json!({
                    "error": {
                        "kind": failure.kind,
                        "exit": failure.exit.code(),
                        "message": message,
                    }
                });
                let _ = writeln!(out, "{document}");
            }
            failure.exit
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_parse_with_or_without_a_unit() {
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_timeout("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_timeout("1.5m"), Ok(Duration::from_secs(90)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("5h").is_err());
        assert!(parse_timeout("soon").is_err());
    }

    #[test]
    fn the_exit_codes_are_the_documented_ones() {
        let codes = [
            Exit::Ok,
            Exit::Failed,
            Exit::Usage,
            Exit::NotFound,
            Exit::Corrupt,
        ]
        .map(Exit::code);
        assert_eq!(codes, [0, 1, 2, 3, 4]);
        for code in codes {
            assert!(EXIT_CODES.contains(&format!("\n  {code}  ")), "{code}");
            assert!(
                crate::DOCS_EXIT_CODES.contains(&format!("| {code} |")),
                "{code}"
            );
        }
    }

    #[test]
    fn the_arguments_hold_together() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
