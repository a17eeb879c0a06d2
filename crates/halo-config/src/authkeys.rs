//! `authkeys` (spec §2), parsed the way Heartbeat 3.0.6 `parse_authfile` reads it.
//!
//! ```text
//! auth 1
//! 1 sha1 SecretKey
//! 2 md5 OtherKey
//! 3 crc
//! ```
//!
//! Blank lines and lines starting with `#` are skipped; a line starting with `a` must be
//! `auth N`; every other line is `INDEX METHOD [KEY]`. The key is one whitespace-free word
//! taken exactly as written (quotes are part of it). Heartbeat selects the signing key while
//! reading key lines, so `auth N` must come before the line that defines key `N`.

use std::path::Path;

use crate::diag::{ConfigError, Diagnostic, Sink};
use crate::model::{AuthKey, AuthKeys, AuthMethodName};
use crate::time::{parse_int, WHITESPACE};

/// Heartbeat's `MAXAUTH`: key indices are 0..=15.
pub const MAX_AUTH: u8 = 16;

/// Parses authkeys text (no permission check; see [`check_keyfile_mode`]). Warnings are
/// dropped; use [`parse_authkeys_with_warnings`] to see them.
pub fn parse_authkeys(file: &Path, text: &str) -> Result<AuthKeys, ConfigError> {
    parse_authkeys_with_warnings(file, text).map(|(keys, _)| keys)
}

/// Parses authkeys text and also returns warnings (ignored extra words, redefinitions, ...).
pub fn parse_authkeys_with_warnings(
    file: &Path,
    text: &str,
) -> Result<(AuthKeys, Vec<Diagnostic>), ConfigError> {
    let (keys, errors, warnings) = parse_authkeys_lenient(file, text);
    match keys {
        Some(k) if errors.is_empty() => Ok((k, warnings)),
        _ => Err(ConfigError::new(errors)),
    }
}

/// Heartbeat refuses a key file that group or others can read (writability and owner are not
/// checked). `mode` is `st_mode`.
pub fn check_keyfile_mode(path: &Path, mode: u32) -> Result<(), String> {
    if mode & 0o044 != 0 {
        let p = path.display();
        Err(format!(
            "bad permissions on keyfile {p} (mode {:04o}): it must not be readable by group or others; run chmod 600 {p}",
            mode & 0o7777
        ))
    } else {
        Ok(())
    }
}

pub(crate) fn parse_authkeys_lenient(
    file: &Path,
    text: &str,
) -> (Option<AuthKeys>, Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut s = Sink::new(file);
    let mut auth: Option<(i64, usize)> = None;
    let mut active: Option<u8> = None;
    let mut keys: Vec<(AuthKey, usize)> = Vec::new();
    let mut warned_sha256 = false;

    for (idx, raw) in text.split('\n').enumerate() {
        let line = idx + 1;
        let bp = raw.trim_start_matches(WHITESPACE);
        let shown = bp.trim_end_matches(WHITESPACE);
        if bp.is_empty() || bp.starts_with('#') {
            continue;
        }
        if bp.starts_with('a') {
            match parse_auth_line(bp) {
                Some((n, trailing)) => {
                    if !trailing.is_empty() {
                        s.warn(
                            line,
                            format!("the words after 'auth {n}' ('{trailing}') are ignored, as Heartbeat ignores them"),
                        );
                    }
                    if let Some((prev, first)) = auth {
                        s.warn(
                            line,
                            format!("auth given again (auth {prev} at line {first}); as in Heartbeat, auth {n} selects among the keys defined after this line"),
                        );
                    }
                    auth = Some((n, line));
                }
                None => s.error(
                    line,
                    format!("expected 'auth N' (N is the index of the key that signs outgoing messages), got '{shown}'"),
                ),
            }
            continue;
        }

        let words: Vec<&str> = bp.split(WHITESPACE).filter(|w| !w.is_empty()).collect();
        let usage = "expected 'INDEX METHOD [KEY]' such as '1 sha1 SecretKey', or 'auth INDEX'";
        let Some(index) = parse_int(words[0]) else {
            s.error(line, format!("{usage}, got '{shown}'"));
            continue;
        };
        if words.len() < 2 {
            s.error(line, format!("{usage}, got '{shown}' (the method is missing)"));
            continue;
        }
        let index = match u8::try_from(index).ok().filter(|i| *i < MAX_AUTH) {
            Some(i) => i,
            None => {
                s.error(line, format!("key index must be from 0 to {}, got '{}'", MAX_AUTH - 1, words[0]));
                continue;
            }
        };
        let Some(method) = AuthMethodName::parse(words[1]) else {
            s.error(
                line,
                format!(
                    "unknown method '{}': expected crc, md5 or sha1 (or sha256, a halo extension)",
                    words[1]
                ),
            );
            continue;
        };
        let key = words.get(2).map(|k| k.to_string());
        match (&key, method.needs_key()) {
            (Some(k), false) => {
                s.error(line, format!("{} does not use a key, got '{k}'", method.as_str()));
                continue;
            }
            (None, true) => {
                s.error(
                    line,
                    format!("{} requires a key: expected '{index} {} KEY'", method.as_str(), method.as_str()),
                );
                continue;
            }
            _ => {}
        }
        if words.len() > 3 {
            s.warn(
                line,
                format!(
                    "only '{}' is the key; the words after it ('{}') are ignored, as Heartbeat ignores them (a key cannot contain spaces)",
                    words[2],
                    words[3..].join(" ")
                ),
            );
        }
        if method == AuthMethodName::Sha256 && !warned_sha256 {
            warned_sha256 = true;
            s.warn(
                line,
                "sha256 is a halo extension: Heartbeat 3.0.6 nodes refuse this file and cannot check such signatures",
            );
        }
        let new = AuthKey { index, method, key };
        match keys.iter_mut().find(|(k, _)| k.index == index) {
            Some(slot) => {
                s.warn(
                    line,
                    format!(
                        "key {index} is defined again (first at line {}); this definition replaces it",
                        slot.1
                    ),
                );
                *slot = (new, line);
            }
            None => keys.push((new, line)),
        }
        if auth.is_some_and(|(n, _)| n == i64::from(index)) {
            active = Some(index);
        }
    }

    if active.is_none() {
        match auth {
            None => s.error(
                0,
                "missing 'auth N' line: it selects which key signs outgoing messages, e.g. 'auth 1'",
            ),
            Some((n, at)) => {
                let earlier = keys.iter().find(|(k, l)| i64::from(k.index) == n && *l < at).map(|(_, l)| *l);
                match earlier {
                    Some(l) => s.error(
                        at,
                        format!("auth {n}: key {n} is defined at line {l}, before this auth line; Heartbeat only selects a key defined after 'auth N', so move the auth line to the top"),
                    ),
                    None => s.error(at, format!("auth {n}: key {n} is not defined in this file")),
                }
            }
        }
    }

    let result = active.map(|active| AuthKeys { active, keys: keys.into_iter().map(|(k, _)| k).collect() });
    (result, s.errors, s.warnings)
}

/// `sscanf(bp, "auth %d")`: the literal `auth`, optional whitespace, an integer. Returns the
/// number and whatever follows it (trimmed).
fn parse_auth_line(bp: &str) -> Option<(i64, &str)> {
    let rest = bp.strip_prefix("auth")?.trim_start_matches(WHITESPACE);
    let sign_len = usize::from(rest.starts_with(['+', '-']));
    let digits = rest[sign_len..].bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let end = sign_len + digits;
    let n = rest[..end].parse::<i64>().ok()?;
    Some((n, rest[end..].trim_matches(WHITESPACE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<(AuthKeys, Vec<Diagnostic>), ConfigError> {
        parse_authkeys_with_warnings(Path::new("authkeys"), text)
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text).unwrap_err().errors.iter().map(|d| d.to_string()).collect()
    }

    #[test]
    fn seed_001() {
        let (k, w) = parse("auth 1\n1 sha1 P@ssw0rd\n").unwrap();
        assert!(w.is_empty());
        assert_eq!(k.active, 1);
        assert_eq!(
            k.active_key(),
            Some(&AuthKey { index: 1, method: AuthMethodName::Sha1, key: Some("P@ssw0rd".into()) })
        );
    }

    #[test]
    fn seed_002_keeps_quotes_and_ignores_extra_words() {
        let text = "auth 1\n1 md5 \"secret\"\n2 crc\n3 sha1 \"autre secret\"\n";
        let (k, w) = parse(text).unwrap();
        assert_eq!(k.active, 1);
        assert_eq!(k.key(1).unwrap().key.as_deref(), Some("\"secret\""));
        assert_eq!(k.key(2).unwrap().method, AuthMethodName::Crc);
        assert_eq!(k.key(2).unwrap().key, None);
        assert_eq!(k.key(3).unwrap().key.as_deref(), Some("\"autre"));
        assert_eq!(w.len(), 1);
        assert!(w[0].to_string().starts_with("authkeys:4: only '\"autre' is the key"));
    }

    #[test]
    fn comments_blanks_and_crlf() {
        let text = "# keys\n\n   \n  # indented comment\r\nauth 2\r\n2 crc\r\n";
        let (k, _) = parse(text).unwrap();
        assert_eq!(k.active, 2);
    }

    #[test]
    fn missing_auth() {
        assert_eq!(
            errors("1 sha1 x\n"),
            vec!["authkeys: missing 'auth N' line: it selects which key signs outgoing messages, e.g. 'auth 1'"]
        );
    }

    #[test]
    fn auth_index_not_defined() {
        assert_eq!(
            errors("auth 3\n1 sha1 x\n"),
            vec!["authkeys:1: auth 3: key 3 is not defined in this file"]
        );
    }

    #[test]
    fn auth_after_key_is_refused_like_heartbeat() {
        let e = errors("1 sha1 x\nauth 1\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("authkeys:2: auth 1: key 1 is defined at line 1, before this auth line"));
    }

    #[test]
    fn index_range() {
        let (k, _) = parse("auth 0\n0 crc\n15 md5 k\n").unwrap();
        assert_eq!(k.active, 0);
        assert_eq!(k.keys.len(), 2);
        let e = errors("auth 1\n1 crc\n16 md5 k\n");
        assert_eq!(e, vec!["authkeys:3: key index must be from 0 to 15, got '16'"]);
        let e = errors("auth 1\n1 crc\n-1 md5 k\n");
        assert_eq!(e, vec!["authkeys:3: key index must be from 0 to 15, got '-1'"]);
    }

    #[test]
    fn key_requirements() {
        assert_eq!(
            errors("auth 1\n1 md5\n"),
            vec![
                "authkeys:2: md5 requires a key: expected '1 md5 KEY'",
                "authkeys:1: auth 1: key 1 is not defined in this file"
            ]
        );
        let e = errors("auth 1\n1 crc secret\n");
        assert_eq!(e[0], "authkeys:2: crc does not use a key, got 'secret'");
        let e = errors("auth 1\n1 sha1\n");
        assert!(e[0].contains("sha1 requires a key"));
    }

    #[test]
    fn unknown_method_and_case() {
        let e = errors("auth 1\n1 SHA1 k\n");
        assert_eq!(
            e[0],
            "authkeys:2: unknown method 'SHA1': expected crc, md5 or sha1 (or sha256, a halo extension)"
        );
    }

    #[test]
    fn sha256_extension_warns() {
        let (k, w) = parse("auth 1\n1 sha256 k\n").unwrap();
        assert_eq!(k.active_key().unwrap().method, AuthMethodName::Sha256);
        assert!(w[0].message.contains("halo extension"));
    }

    #[test]
    fn bad_lines() {
        assert_eq!(
            errors("auth one\n"),
            vec![
                "authkeys:1: expected 'auth N' (N is the index of the key that signs outgoing messages), got 'auth one'",
                "authkeys: missing 'auth N' line: it selects which key signs outgoing messages, e.g. 'auth 1'"
            ]
        );
        let e = errors("auth 1\nsha1 key\n1 crc\n");
        assert_eq!(
            e,
            vec!["authkeys:2: expected 'INDEX METHOD [KEY]' such as '1 sha1 SecretKey', or 'auth INDEX', got 'sha1 key'"]
        );
        let e = errors("auth 1\n1\n1 crc\n");
        assert!(e[0].contains("the method is missing"));
    }

    #[test]
    fn auth_without_space_and_trailing_words() {
        let (k, w) = parse("auth1 extra\n1 crc\n").unwrap();
        assert_eq!(k.active, 1);
        assert!(w[0].message.contains("'extra'"));
    }

    #[test]
    fn redefinition_replaces() {
        let (k, w) = parse("auth 1\n1 crc\n1 sha1 k\n").unwrap();
        assert_eq!(k.keys.len(), 1);
        assert_eq!(k.key(1).unwrap().method, AuthMethodName::Sha1);
        assert!(w[0].message.contains("defined again"));
    }

    #[test]
    fn permissions() {
        let p = Path::new("/etc/ha.d/authkeys");
        assert!(check_keyfile_mode(p, 0o100600).is_ok());
        assert!(check_keyfile_mode(p, 0o100400).is_ok());
        assert!(check_keyfile_mode(p, 0o100620).is_ok());
        assert_eq!(
            check_keyfile_mode(p, 0o100644).unwrap_err(),
            "bad permissions on keyfile /etc/ha.d/authkeys (mode 0644): it must not be readable by group or others; run chmod 600 /etc/ha.d/authkeys"
        );
        assert!(check_keyfile_mode(p, 0o100640).is_err());
        assert!(check_keyfile_mode(p, 0o100604).is_err());
    }
}
