//! Any text into the authkeys parser: a model or file:line errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = halo_config::parse_authkeys(std::path::Path::new("authkeys"), text);
    }
});
