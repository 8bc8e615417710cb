//! Decoding a stored JSON record never panics; what decodes re-encodes and decodes alike.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::{SessionId, StoreOptions, codec};

fuzz_target!(|data: &[u8]| {
    let id = SessionId::parse("fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz").expect("a valid id");
    if let Ok(record) = codec::decode(&id, data) {
        let options = StoreOptions { max_payload_bytes: usize::MAX, ..StoreOptions::default() };
        let bytes = codec::encode(&record, &options).expect("a decoded record encodes");
        let again = codec::decode(&id, &bytes).expect("an encoded record decodes");
        assert_eq!(again.data(), record.data());
        assert_eq!(again.expires_at(), record.expires_at());
    }
});
