//! Expiry policies: absolute lifetime, idle timeout, both, and lazy touch.

use time::{Duration, OffsetDateTime};

use crate::record::Record;
use crate::time_util::now;

/// How long sessions live, and when a read should extend them.
///
/// - [`Expiry::absolute`]: the session ends a fixed time after creation, whatever happens.
/// - [`Expiry::idle`]: the session ends after a period without use; each use slides it.
/// - [`Expiry::idle_and_absolute`]: two clocks: the idle expiry slides, but never past the
///   absolute deadline, which the record carries so every backend caps `touch` on the server.
/// - [`Expiry::lazy_touch`]: slide only when less than a part of the idle window remains, so
///   a stream of reads doesn't write on every request.
///
/// ```
/// use session_core::Expiry;
/// use time::Duration;
///
/// // Log out after 30 idle minutes, and after 12 hours in any case; extend at most about
/// // every 15 minutes.
/// let expiry = Expiry::idle_and_absolute(Duration::minutes(30), Duration::hours(12))
///     .lazy_touch(0.5);
/// let record = expiry.new_record();
/// assert!(record.deadline().is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expiry {
    idle: Option<Duration>,
    absolute: Option<Duration>,
    touch_when_remaining_below: f64,
}

impl Expiry {
    /// The session ends `lifetime` after creation; reads never extend it.
    pub fn absolute(lifetime: Duration) -> Self {
        Self {
            idle: None,
            absolute: Some(lifetime),
            touch_when_remaining_below: 1.0,
        }
    }

    /// The session ends after `idle` without use; every use slides it.
    pub fn idle(idle: Duration) -> Self {
        Self {
            idle: Some(idle),
            absolute: None,
            touch_when_remaining_below: 1.0,
        }
    }

    /// The idle expiry slides but never past `absolute` after creation.
    pub fn idle_and_absolute(idle: Duration, absolute: Duration) -> Self {
        Self {
            idle: Some(idle),
            absolute: Some(absolute),
            touch_when_remaining_below: 1.0,
        }
    }

    /// Touch only when less than `fraction` (0 to 1) of the idle window remains.
    ///
    /// With 0.5 and a 30-minute idle window, a session is written at most about every
    /// 15 minutes while it is in use, instead of on every request.
    pub fn lazy_touch(mut self, fraction: f64) -> Self {
        self.touch_when_remaining_below = fraction.clamp(0.0, 1.0);
        self
    }

    /// The idle window, if any.
    pub fn idle_window(&self) -> Option<Duration> {
        self.idle
    }

    /// A new, never stored record whose expiry and deadline follow this policy.
    pub fn new_record(&self) -> Record {
        let start = now();
        let lifetime = self.idle.or(self.absolute).unwrap_or(Duration::ZERO);
        let mut record = Record::new(start + lifetime);
        record.set_deadline(self.absolute.map(|lifetime| start + lifetime));
        record
    }

    /// The expiry a touch of `record` should move it to now, or `None` when no write is
    /// needed (no idle window, already at the deadline, or lazy touch says it's too soon).
    pub fn touch_target(&self, record: &Record) -> Option<OffsetDateTime> {
        self.touch_target_at(record, now())
    }

    /// [`Expiry::touch_target`] at a given time.
    pub fn touch_target_at(&self, record: &Record, at: OffsetDateTime) -> Option<OffsetDateTime> {
        let idle = self.idle?;
        let remaining = record.expires_at() - at;
        if remaining >= idle * self.touch_when_remaining_below
            && self.touch_when_remaining_below < 1.0
        {
            return None;
        }
        let target = record
            .deadline()
            .map_or(at + idle, |deadline| (at + idle).min(deadline));
        (target > record.expires_at()).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_never_touches() {
        let expiry = Expiry::absolute(Duration::hours(1));
        let record = expiry.new_record();
        assert_eq!(record.deadline(), Some(record.expires_at()));
        assert_eq!(expiry.touch_target(&record), None);
    }

    #[test]
    fn idle_slides_and_two_clocks_cap_at_the_deadline() {
        let expiry = Expiry::idle_and_absolute(Duration::minutes(30), Duration::hours(1));
        let record = expiry.new_record();
        let later = record.created_at() + Duration::minutes(50);
        assert_eq!(expiry.touch_target_at(&record, later), record.deadline());
        let at_deadline = record.created_at() + Duration::minutes(61);
        let mut touched = record.clone();
        touched.set_expires_at(record.deadline().unwrap());
        assert_eq!(expiry.touch_target_at(&touched, at_deadline), None);
    }

    #[test]
    fn lazy_touch_waits_until_half_the_window_is_gone() {
        let expiry = Expiry::idle(Duration::minutes(30)).lazy_touch(0.5);
        let record = expiry.new_record();
        let soon = record.created_at() + Duration::minutes(10);
        assert_eq!(expiry.touch_target_at(&record, soon), None);
        let late = record.created_at() + Duration::minutes(16);
        assert_eq!(
            expiry.touch_target_at(&record, late),
            Some(late + Duration::minutes(30))
        );
    }
}
