//! Node bytes into the RESP reply parser (every RESP2 and RESP3 type, nested): never a panic, and the invariants
//! in `resp_shared` hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

mod resp_shared;

fuzz_target!(|data: &[u8]| {
    resp_shared::check(data, puerta::redis::resp::parse_reply);
});
