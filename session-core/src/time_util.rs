//! Millisecond UTC time, the precision every backend stores exactly.

use time::{OffsetDateTime, UtcOffset};

/// The current time in UTC, rounded down to the millisecond.
pub fn now() -> OffsetDateTime {
    to_millis(OffsetDateTime::now_utc())
}

/// `at` in UTC, rounded down to the millisecond.
pub fn to_millis(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(UtcOffset::UTC);
    let nanos = at.nanosecond();
    // Cannot fail: the value stays within 0..1_000_000_000.
    at.replace_nanosecond(nanos - nanos % 1_000_000)
        .unwrap_or(at)
}

/// Milliseconds since the Unix epoch, as Redis `PXAT` and stored formats want them.
pub fn unix_millis(at: OffsetDateTime) -> i64 {
    // OffsetDateTime's range (±9999 years) fits i64 milliseconds.
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The time `millis` after the Unix epoch, or `None` if outside the supported range.
pub fn from_unix_millis(millis: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip() {
        let at = now();
        assert_eq!(from_unix_millis(unix_millis(at)), Some(at));
        assert_eq!(from_unix_millis(i64::MAX), None);
    }
}
