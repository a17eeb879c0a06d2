//! Any text into the ha_cf parser: a model or file:line errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = halo_config::parse_ha_cf(std::path::Path::new("ha.cf"), text);
    }
});
