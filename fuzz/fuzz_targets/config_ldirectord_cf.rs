//! Any text into the ldirectord.cf parser: a model or file:line errors, never a panic, and
//! every finding names a line of the text (or 0, the whole file). The converter that lowers
//! ldirectord.cf into halo.toml's `[director]` (`halo config convert`) gets the same text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let lines = text.split('\n').count();
        match halo_config::parse_ldirectord_cf(std::path::Path::new("ldirectord.cf"), text) {
            Ok((cf, warnings)) => {
                for w in &warnings {
                    assert!(w.line <= lines, "warning on line {} of {lines}: {}", w.line, w.message);
                }
                for v in &cf.virtuals {
                    assert!(v.line <= lines, "virtual on line {} of {lines}", v.line);
                }
            }
            Err(e) => {
                assert!(!e.errors.is_empty(), "an Err with no error in it");
                for d in &e.errors {
                    assert!(d.line <= lines, "error on line {} of {lines}: {}", d.line, d.message);
                }
            }
        }
        let _ = halo_config::convert::ldirectord_to_toml(text);
    }
});
