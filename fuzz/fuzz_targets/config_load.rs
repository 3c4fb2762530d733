//! Any byte string given as a config file must yield a Config or a ConfigError, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = puerta::config::Config::parse(text, std::path::Path::new("fuzz.toml"));
    }
});
