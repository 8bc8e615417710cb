//! Session id parsing never panics, and what parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::SessionId;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(id) = SessionId::parse(text)
    {
        assert_eq!(id.expose(), text);
    }
});
