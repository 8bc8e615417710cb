//! Small things many tests need: an expiry an hour away, a free port, waiting for a
//! condition.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

/// An hour from now: an expiry no test outlives.
pub fn in_an_hour() -> OffsetDateTime {
    session_core::now() + time::Duration::hours(1)
}

/// A free port of 127.0.0.1 (free when asked; good enough for a test's own servers).
///
/// # Panics
/// When no port can be bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|err| panic!("no free port: {err}"))
}

/// Blocks the thread until `done` holds, checking every 20 ms.
///
/// # Panics
/// When `within` passes first, naming `what` it waited for.
pub fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
