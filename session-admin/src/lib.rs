//! Operate any session store by URL: count, list, show, revoke and purge sessions, and
//! summarise what is stored, from the `session-admin` command line (feature `cli`, on by
//! default) or from your own code ([`open`], without the command line's dependencies).
//!
//! ```text
//! export SESSION_ADMIN_URL='postgres://app:secret@db/app'   # or pass --url
//! session-admin count                      # the store's own count of live sessions
//! session-admin list --owner alice         # alice's sessions, by fingerprint
//! session-admin show <ID> [--reveal]       # one session; data values only with --reveal
//! session-admin revoke <ID>                # end one session
//! session-admin revoke --owner alice       # end all of alice's sessions
//! session-admin purge [--batch 1000]       # remove expired sessions (SQL, MongoDB)
//! session-admin stats                      # sizes, expiries, corrupt records (full scan)
//! session-admin --json stats               # any command: one JSON document on stdout
//! session-admin migrate --from redis://old --to postgres://new/app --checkpoint m.json
//! ```
//!
//! The URLs are the demo's (it opens its store through [`open`]): `memory`, `redis://`,
//! `rediss://`, `redis+cluster://`, `redis+sentinel://`, `postgres://`, `mysql://`,
//! `mariadb://`, `sqlite://` and `mongodb://`; see [`OpenOptions::open`], which also lists
//! the `session_*` query parameters naming a non-default table, prefix or collection.
//!
//! What the tool never prints: a URL's passwords (`***` stands in for them, in errors too;
//! see [`redacted`]), session ids (sessions are shown by
//! [fingerprint](session_core::SessionId::fingerprint); `list --show-ids` prints them), and
//! session data (`show` prints keys with the type and size of their values; `--reveal`
//! prints the values).
//!
//! # Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | the store failed or could not be reached (connection, authentication, timeout) |
//! | 2 | usage: bad arguments (clap's own errors), a malformed session id, a store URL that can't be read |
//! | 3 | not found: `show` or `revoke` of a session id with no live session |
//! | 4 | corrupt records: some stored records did not decode (`stats`, `list`, `show`, `migrate`); the output still lists the rest |
//! | 5 | `migrate`'s verification failed: sampled sessions missing or different in the target |
//!
//! # From code
//!
//! ```no_run
//! use session_admin::{OpenOptions, open};
//! use session_core::ScanCursor;
//!
//! # async fn example() -> session_core::Result<()> {
//! // As an application opens its store (tables created when missing):
//! let opened = open("sqlite://sessions.db").await?;
//! println!("{} live sessions on {}", opened.store.count().await?, opened.backend);
//!
//! // As an operator's tool does: nothing created, a short timeout per call.
//! let url = "postgres://app:secret@db/app?session_table=web_sessions";
//! let opened = OpenOptions::inspect()
//!     .timeout(std::time::Duration::from_secs(2))
//!     .open(url)
//!     .await?;
//! println!("opened {}", session_admin::redacted(url)); // postgres://app:***@db/...
//!
//! // Every session, page by page (a page may repeat a session: dedupe when counting).
//! let mut cursor = ScanCursor::start();
//! loop {
//!     let page = opened.store.scan(&cursor, 500).await?;
//!     for record in &page.records {
//!         println!("{} owned by {:?}", record.id().fingerprint(), record.owner());
//!     }
//!     match page.next {
//!         Some(next) => cursor = next,
//!         None => break,
//!     }
//! }
//!
//! // Expired sessions, 1,000 at a time, where the store keeps them.
//! if let Some(purge) = &opened.purge {
//!     while purge.batch(1_000).await? == 1_000 {}
//! }
//! # Ok(()) }
//! ```
//!
//! With the `cli` feature, [`run`] is the whole command line as a function: arguments in,
//! output to the writers given, the exit code back (how the integration tests drive it).

#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod commands;
pub mod migrate;
mod open;
#[cfg(feature = "cli")]
mod output;
mod redact;
mod setting;

#[cfg(feature = "cli")]
pub use cli::{Exit, run, run_in_terminal};
pub use open::{OpenOptions, Opened, Purge, open};
pub use redact::{MASK, Redacted, redacted, scrub};

/// These docs, for the test that checks the exit codes documented here are the ones used.
#[cfg(all(test, feature = "cli"))]
const DOCS_EXIT_CODES: &str = include_str!("lib.rs");
