//! Any text into the halo.toml parser: a model or file:line errors, never a panic. An inline
//! `[director]` is lowered to ldirectord.cf text with a halo.toml line for each of its lines;
//! that text goes on into the ldirectord.cf parser, as `load_toml_dir` does.
#![no_main]
use halo_config::halo_toml::DirectorSource;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let lines = text.split('\n').count();
        let (parsed, errors, warnings) =
            halo_config::halo_toml::parse_halo_toml(std::path::Path::new("halo.toml"), text);
        assert!(parsed.is_some() || !errors.is_empty(), "neither a model nor an error");
        for d in errors.iter().chain(&warnings) {
            assert!(d.line <= lines, "finding on line {} of {lines}: {}", d.line, d.message);
        }
        if let Some(DirectorSource::Inline { text: cf, lines: at }) = parsed.and_then(|p| p.director) {
            assert_eq!(at.len(), cf.lines().count(), "one halo.toml line per lowered line");
            assert!(at.iter().all(|&l| l <= lines), "lowered lines point into the file");
            let _ = halo_config::parse_ldirectord_cf(std::path::Path::new("halo.toml"), &cf);
        }
    }
});
