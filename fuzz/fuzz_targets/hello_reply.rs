//! Whatever a "mongos" answers to the health check's `hello` goes through the OP_MSG/BSON decoder:
//! it must be accepted or rejected with an error, never panic or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The request id the checker would expect; the reply's responseTo is at bytes 8..12.
    let id = data
        .get(8..12)
        .map_or(1, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let _ = puerta::mongodb::health::hello::decode_hello_reply(data, id);
    let _ = puerta::mongodb::health::hello::decode_hello_reply(data, 1);
});
