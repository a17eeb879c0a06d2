//! Diagnostics: every rejected or suspicious input is reported as `file:line: message`.

use std::fmt;
use std::path::{Path, PathBuf};

/// One finding about one line of one file (or about the whole file when `line == 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    /// 1-based line number; 0 means the finding concerns the whole file.
    pub line: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &Path, line: usize, message: impl Into<String>) -> Self {
        Diagnostic { file: file.to_path_buf(), line, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// The configuration was refused. Holds every error found, in file order, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_lines(.errors))]
pub struct ConfigError {
    pub errors: Vec<Diagnostic>,
}

impl ConfigError {
    pub fn new(errors: Vec<Diagnostic>) -> Self {
        ConfigError { errors }
    }
}

fn render_lines(errors: &[Diagnostic]) -> String {
    let mut out = String::new();
    for (i, d) in errors.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&d.to_string());
    }
    out
}

/// Collects errors and warnings for one file while it is parsed.
#[derive(Debug)]
pub(crate) struct Sink<'a> {
    pub file: &'a Path,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a Path) -> Self {
        Sink { file, errors: Vec::new(), warnings: Vec::new() }
    }

    pub fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(self.file, line, message));
    }

    pub fn warn(&mut self, line: usize, message: impl Into<String>) {
        self.warnings.push(Diagnostic::new(self.file, line, message));
    }
}

/// The candidate within two edits of `word` (and close relative to its length), for "did you
/// mean" hints. Words whose length differs by more than two cannot qualify and are skipped
/// before the quadratic distance, so a long garbage token costs nothing.
pub(crate) fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let n = word.chars().count();
    candidates
        .filter(|d| d.chars().count().abs_diff(n) <= 2)
        .map(|d| (edit_distance(d, word), d))
        .filter(|(dist, d)| *dist <= 2 && *dist * 3 <= d.len())
        .min_by_key(|(dist, _)| *dist)
        .map(|(_, d)| d)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_and_without_line() {
        let d = Diagnostic::new(Path::new("/etc/ha.d/ha.cf"), 7, "keepalive: bad");
        assert_eq!(d.to_string(), "/etc/ha.d/ha.cf:7: keepalive: bad");
        let d = Diagnostic::new(Path::new("/etc/ha.d/authkeys"), 0, "bad permissions");
        assert_eq!(d.to_string(), "/etc/ha.d/authkeys: bad permissions");
    }

    #[test]
    fn config_error_is_one_diagnostic_per_line() {
        let e = ConfigError::new(vec![
            Diagnostic::new(Path::new("ha.cf"), 1, "a"),
            Diagnostic::new(Path::new("ha.cf"), 2, "b"),
        ]);
        assert_eq!(e.to_string(), "ha.cf:1: a\nha.cf:2: b");
    }
}
