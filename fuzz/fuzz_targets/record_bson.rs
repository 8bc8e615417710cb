//! Decoding a stored MongoDB document never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use session_core::SessionId;
use session_mongo::mongodb::bson::Document;

fuzz_target!(|data: &[u8]| {
    let id = SessionId::parse("fuzzfuzzfuzzfuzzfuzzfuzzfuzzfuzz").expect("a valid id");
    if let Ok(document) = Document::from_reader(data) {
        let _ = session_mongo::decode_document(&id, document);
    }
});
