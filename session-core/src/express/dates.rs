//! Dates as JavaScript writes them in JSON.

use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// `at` as JavaScript's `Date.prototype.toJSON` writes it: `2026-11-23T13:09:21.835Z`.
pub fn js_iso(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    let year = at.year();
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+07}")
    };
    format!(
        "{year}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// Parses what `Date.prototype.toJSON` writes (`YYYY-MM-DDTHH:MM:SS[.sss]Z`).
pub fn parse_js_iso(text: &str) -> Option<OffsetDateTime> {
    let (date, time) = text.strip_suffix('Z')?.split_once('T')?;
    let (sign, date) = match date.as_bytes().first()? {
        b'+' => (1, &date[1..]),
        b'-' => (-1, &date[1..]),
        _ => (1, date),
    };
    let mut parts = date.splitn(3, '-');
    let year: i32 = sign * parts.next()?.parse::<i32>().ok()?;
    let month = Month::try_from(parts.next()?.parse::<u8>().ok()?).ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    let (hms, millis) = time.split_once('.').unwrap_or((time, "0"));
    let mut parts = hms.splitn(3, ':');
    let hour: u8 = parts.next()?.parse().ok()?;
    let minute: u8 = parts.next()?.parse().ok()?;
    let second: u8 = parts.next()?.parse().ok()?;
    let millis: u16 = format!("{millis:0<3}").get(..3)?.parse().ok()?;
    let date = Date::from_calendar_date(year, month, day).ok()?;
    let time = Time::from_hms_milli(hour, minute, second, millis).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time_util::{from_unix_millis, unix_millis};

    #[test]
    fn iso_is_javascripts() {
        let at = from_unix_millis(1_795_439_361_835).unwrap();
        assert_eq!(js_iso(at), "2026-11-23T13:09:21.835Z");
        assert_eq!(parse_js_iso("2026-11-23T13:09:21.835Z"), Some(at));
        assert_eq!(
            js_iso(from_unix_millis(0).unwrap()),
            "1970-01-01T00:00:00.000Z"
        );
        let last = from_unix_millis(253_402_300_799_999).unwrap();
        assert_eq!(js_iso(last), "9999-12-31T23:59:59.999Z");
        assert_eq!(parse_js_iso(&js_iso(last)), Some(last));
        assert_eq!(
            parse_js_iso("2026-11-23T13:09:21Z").map(unix_millis),
            Some(1_795_439_361_000)
        );
        assert_eq!(parse_js_iso("yesterday"), None);
    }
}
