//! halo-config turns every legacy Heartbeat 3.0.6 configuration file that Heartbeat would
//! accept (`ha.cf`, `authkeys`, `haresources`, `nodeinfo`) into one typed [`Model`], and ldirectord's
//! `ldirectord.cf` into an [`LdirectordCf`],, with
//! Heartbeat's defaults, derived values and start-up checks applied. Parsers are pure: text in,
//! a model out, or errors that each name `file:line` and what was expected. The only I/O is
//! [`load_dir`] reading the directory it is given.
//!
//! It must never touch the network or the host beyond reading those files (no name lookups,
//! no interface or user checks: those belong to the runtime), never keep global state (two
//! configurations can be parsed side by side), and never silently drop a line: every line is
//! applied, refused with an error, or reported with a warning — including directives halo
//! accepts but does not act on yet (see [`ha_cf::IMPLEMENTED`]).
//!
//! # Layout
//!
//! * [`model`] — the typed [`Model`] and its parts.
//! * [`ha_cf`] — `ha.cf` directives, defaults and Heartbeat's start conditions.
//! * [`authkeys`] — signing keys and the key-file permission rule.
//! * [`haresources`] — resource groups, read the way ResourceManager reads them.
//! * [`halo_toml`] — halo's own format: the same model from one file, plus several preferred
//!   nodes per group, clones, order and colocation, and the director.
//! * [`ldirectord_cf`] — ldirectord's global and virtual-service directives, with its
//!   defaults and timeout resolution (host names are kept unresolved for the runtime).
//! * [`time`] — time, boolean and integer syntax shared by the files.
//! * [`diag`] — [`Diagnostic`] and [`ConfigError`].
//! * [`digest`] — [`config_digest`]: what a configuration means, hashed, for comparing nodes.

pub mod authkeys;
pub mod convert;
pub mod diag;
pub mod digest;
pub mod ha_cf;
pub mod halo_toml;
pub mod haresources;
pub mod ldirectord_cf;
pub mod model;
pub mod time;

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use authkeys::{check_keyfile_mode, parse_authkeys, parse_authkeys_with_warnings};
pub use diag::{ConfigError, Diagnostic};
pub use digest::config_digest;
pub use ha_cf::{check_start, parse_ha_cf, IMPLEMENTED};
pub use haresources::{parse_haresources, parse_haresources_with_warnings};
pub use ldirectord_cf::{
    parse_ldirectord_cf, Fallback, Globals, LdirectordCf, RealServer, VirtualAddr, VirtualService,
};
pub use model::{
    AuthKey, AuthKeys, AuthMethodName, AutoFailback, Autojoin, CloneSpec, Colocation, Director, GenMethod,
    GroupPlacement, HaCf, Haresources, LatchedPorts, LvsSync, Medium, Model, MsgFmt, Order, PingKind,
    PingNode, Placement, ResourceGroup, ResourceSpec, Respawn, UuidFrom,
};
pub use time::{parse_bool, parse_time_ms};

/// A configuration that passed every check, with the warnings found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub model: Model,
    pub warnings: Vec<Diagnostic>,
}

/// Reads a Heartbeat configuration directory (`/etc/ha.d` layout): `ha.cf` and `authkeys`
/// (required; `authkeys` must not be readable by group or others), `haresources` and
/// `nodeinfo` (optional), then applies Heartbeat's start conditions across the files.
/// Every error of every file is collected, not just the first.
///
/// A directory with a `halo.toml` is read from that file instead (see [`load_toml_dir`]); one
/// that has both `halo.toml` and `ha.cf` is refused, naming both, so that no one edits a file
/// that is not read.
pub fn load_dir(dir: &Path) -> Result<Loaded, ConfigError> {
    let toml_path = dir.join(halo_toml::FILE);
    if toml_path.exists() {
        let ha_cf_path = dir.join("ha.cf");
        if ha_cf_path.exists() {
            return Err(ConfigError::new(vec![Diagnostic::new(
                &toml_path,
                0,
                format!(
                    "{} is here too: halo reads either halo.toml or the legacy files, never both; keep one (halo config convert prints one as the other)",
                    ha_cf_path.display()
                ),
            )]));
        }
        return load_toml_dir(dir);
    }
    let mut errors = Vec::new();
    let mut warnings = Vec::new();

    // ha.cf
    let ha_cf_path = dir.join("ha.cf");
    let ha_cf = match read_required(&ha_cf_path, &mut errors) {
        Some(bytes) => {
            let text = decode(&ha_cf_path, &bytes, false, &mut errors, &mut warnings);
            let (cfg, e, w) = ha_cf::parse_ha_cf_lenient(&ha_cf_path, &text);
            errors.extend(e);
            warnings.extend(w);
            Some(cfg)
        }
        None => None,
    };

    // authkeys
    let authkeys = read_authkeys(dir, &mut errors, &mut warnings);

    // haresources
    let haresources_path = dir.join("haresources");
    let haresources = match read_optional(&haresources_path, &mut errors) {
        Some(bytes) => {
            let text = decode(&haresources_path, &bytes, false, &mut errors, &mut warnings);
            let (h, e, w) = haresources::parse_haresources_lenient(&haresources_path, &text);
            errors.extend(e);
            warnings.extend(w);
            Some(h)
        }
        None => None,
    };

    // nodeinfo
    let nodeinfo_path = dir.join("nodeinfo");
    let nodeinfo = read_optional(&nodeinfo_path, &mut errors).and_then(|bytes| {
        let text = decode(&nodeinfo_path, &bytes, true, &mut errors, &mut warnings);
        let (name, e, w) = parse_nodeinfo(&nodeinfo_path, &text);
        errors.extend(e);
        warnings.extend(w);
        name
    });

    // Heartbeat's start conditions across files.
    if let Some(cfg) = &ha_cf {
        let (e, w) = check_start(&ha_cf_path, cfg);
        errors.extend(e);
        warnings.extend(w);
        if let Some(h) = &haresources {
            let (e, w) = check_haresources(cfg, &ha_cf_path, h, &haresources_path);
            errors.extend(e);
            warnings.extend(w);
        } else if cfg.autojoin != Autojoin::None_ && !cfg.pacemaker_enabled() {
            warnings.push(Diagnostic::new(
                &ha_cf_path,
                cfg.line_of("autojoin").unwrap_or(0),
                "autojoin without pacemaker: Heartbeat 3.0.6 refuses this (\"R1 style resource management conflicts with autojoin set\"); halo accepts it because there is no haresources file",
            ));
        }
    }

    if !errors.is_empty() {
        return Err(ConfigError::new(errors));
    }
    match (ha_cf, authkeys) {
        (Some(ha_cf), Some(authkeys)) => Ok(Loaded {
            model: Model {
                dir: dir.to_path_buf(),
                ha_cf,
                authkeys,
                haresources,
                nodeinfo,
                placement: Placement::default(),
                director: None,
            },
            warnings,
        }),
        // Unreachable in practice: a missing part always came with an error.
        _ => Err(ConfigError::new(vec![Diagnostic::new(dir, 0, "configuration is incomplete")])),
    }
}

/// Reads `DIR/halo.toml`: the cluster, links, logging, resources and director from that
/// file; the keys from its `[auth]`, or from `DIR/authkeys` when it has none (a file holding
/// keys must not be readable by group or others, whichever it is); `nodeinfo` as in a legacy
/// directory. A `haresources` beside it is not read (a warning says so).
pub fn load_toml_dir(dir: &Path) -> Result<Loaded, ConfigError> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let path = dir.join(halo_toml::FILE);
    let mut parsed = None;
    if let Some(bytes) = read_required(&path, &mut errors) {
        match String::from_utf8(bytes) {
            Ok(text) => {
                let (p, e, w) = halo_toml::parse_halo_toml(&path, &text);
                errors.extend(e);
                warnings.extend(w);
                parsed = p;
            }
            Err(e) => errors.push(Diagnostic::new(
                &path,
                text_line(e.as_bytes(), e.utf8_error().valid_up_to()),
                "expected UTF-8 text (TOML files are UTF-8)",
            )),
        }
    }
    let Some(p) = parsed else {
        return Err(ConfigError::new(errors));
    };

    let authkeys = match p.authkeys {
        Some(keys) => {
            match std::fs::metadata(&path) {
                Ok(meta) => {
                    if let Err(msg) = check_keyfile_mode(&path, meta.mode()) {
                        errors.push(Diagnostic::new(&path, 0, format!("{msg} (it holds the [auth] keys)")));
                    }
                }
                Err(e) => errors.push(io_diag(&path, &e)),
            }
            let authkeys_path = dir.join("authkeys");
            if authkeys_path.exists() {
                warnings.push(Diagnostic::new(
                    &authkeys_path,
                    0,
                    "not read: halo.toml has an [auth] table (remove one of them)",
                ));
            }
            Some(keys)
        }
        None => read_authkeys(dir, &mut errors, &mut warnings),
    };

    let haresources_path = dir.join("haresources");
    if haresources_path.exists() {
        warnings.push(Diagnostic::new(
            &haresources_path,
            0,
            "not read: the resource groups come from halo.toml's [[group]] tables",
        ));
    }
    if let Some(h) = &p.haresources {
        if p.ha_cf.pacemaker_enabled() {
            warnings.push(Diagnostic::new(
                &path,
                h.groups.first().map(|g| g.line).unwrap_or(0),
                "the groups are not used because crm/pacemaker is enabled (as in Heartbeat)",
            ));
        } else if p.ha_cf.autojoin != Autojoin::None_ {
            errors.push(Diagnostic::new(
                &path,
                p.ha_cf.line_of("autojoin").unwrap_or(0),
                "autojoin conflicts with [[group]] (R1 style resource management): set autojoin = \"none\"",
            ));
        }
    }

    let director = match p.director {
        None => None,
        Some(halo_toml::DirectorSource::File { path: file, line }) => {
            let full = dir.join(&file);
            match std::fs::read(&full) {
                Ok(bytes) => {
                    let text = decode(&full, &bytes, false, &mut errors, &mut warnings);
                    let (cf, e, w) = ldirectord_cf::parse_ldirectord_cf_lenient(&full, &text);
                    errors.extend(e);
                    warnings.extend(w);
                    Some(Director { file: Some(file), text, cf })
                }
                Err(e) => {
                    errors.push(Diagnostic::new(
                        &path,
                        line,
                        format!("director.file: cannot read {}: {e}", full.display()),
                    ));
                    None
                }
            }
        }
        Some(halo_toml::DirectorSource::Inline { text, lines }) => {
            let (mut cf, mut e, mut w) = ldirectord_cf::parse_ldirectord_cf_lenient(&path, &text);
            halo_toml::remap_director(&mut cf, &mut e, &lines);
            halo_toml::remap_director(&mut LdirectordCf::default(), &mut w, &lines);
            errors.extend(e);
            warnings.extend(w);
            Some(Director { file: None, text, cf })
        }
    };

    let nodeinfo_path = dir.join("nodeinfo");
    let nodeinfo = read_optional(&nodeinfo_path, &mut errors).and_then(|bytes| {
        let text = decode(&nodeinfo_path, &bytes, true, &mut errors, &mut warnings);
        let (name, e, w) = parse_nodeinfo(&nodeinfo_path, &text);
        errors.extend(e);
        warnings.extend(w);
        name
    });

    if !errors.is_empty() {
        return Err(ConfigError::new(errors));
    }
    let Some(authkeys) = authkeys else {
        return Err(ConfigError::new(vec![Diagnostic::new(dir, 0, "configuration is incomplete")]));
    };
    Ok(Loaded {
        model: Model {
            dir: dir.to_path_buf(),
            ha_cf: p.ha_cf,
            authkeys,
            haresources: p.haresources,
            nodeinfo,
            placement: p.placement,
            director,
        },
        warnings,
    })
}

fn text_line(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())].iter().filter(|b| **b == b'\n').count() + 1
}

/// Cross-checks haresources against ha.cf: R1 mode forbids autojoin, and every group's node
/// must be a `node` of ha.cf (Heartbeat: "Bad nodename in haresources").
fn check_haresources(
    cfg: &HaCf,
    ha_cf_path: &Path,
    h: &Haresources,
    path: &Path,
) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if cfg.pacemaker_enabled() {
        warnings.push(Diagnostic::new(
            path,
            0,
            "this file is not used because crm/pacemaker is enabled in ha.cf (as in Heartbeat)",
        ));
        return (errors, warnings);
    }
    if cfg.autojoin != Autojoin::None_ {
        let mode = match cfg.autojoin {
            Autojoin::Other => "other",
            _ => "any",
        };
        errors.push(Diagnostic::new(
            ha_cf_path,
            cfg.line_of("autojoin").unwrap_or(0),
            format!("autojoin {mode} conflicts with haresources (R1 style resource management): set autojoin none"),
        ));
    }
    let listed = if cfg.nodes.is_empty() { "none".to_string() } else { cfg.nodes.join(", ") };
    for g in &h.groups {
        if !cfg.nodes.contains(&g.node) {
            errors.push(Diagnostic::new(
                path,
                g.line,
                format!(
                    "Bad nodename in haresources: '{}' is not a node of {} (node directives: {listed})",
                    g.node,
                    ha_cf_path.display()
                ),
            ));
        }
    }
    (errors, warnings)
}

/// Heartbeat's `get_localnodeinfo`: the first line of nodeinfo names the local node, but only
/// when it ends with a newline.
fn parse_nodeinfo(path: &Path, text: &str) -> (Option<String>, Vec<Diagnostic>, Vec<Diagnostic>) {
    match text.split_once('\n') {
        Some((first, _)) if first.trim().is_empty() => (
            None,
            vec![Diagnostic::new(
                path,
                1,
                "the first line is empty; it must hold this node's name",
            )],
            Vec::new(),
        ),
        Some((first, _)) => (Some(first.to_string()), Vec::new(), Vec::new()),
        None => (
            None,
            Vec::new(),
            vec![Diagnostic::new(
                path,
                1,
                "ignored: the first line does not end with a newline, so Heartbeat would not use it either (uname -n names this node)",
            )],
        ),
    }
}

fn io_diag(path: &Path, e: &io::Error) -> Diagnostic {
    Diagnostic::new(path, 0, format!("cannot read: {e}"))
}

/// Reads `<dir>/authkeys`: required, private (mode checked), parsed leniently so that every
/// error is reported with the others.
fn read_authkeys(
    dir: &Path,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> Option<AuthKeys> {
    let path = dir.join("authkeys");
    let bytes = read_required(&path, errors)?;
    let text = decode(&path, &bytes, true, errors, warnings);
    match std::fs::metadata(&path) {
        Ok(meta) => {
            if let Err(msg) = check_keyfile_mode(&path, meta.mode()) {
                errors.push(Diagnostic::new(&path, 0, msg));
            }
        }
        Err(e) => errors.push(io_diag(&path, &e)),
    }
    let (keys, e, w) = authkeys::parse_authkeys_lenient(&path, &text);
    errors.extend(e);
    warnings.extend(w);
    keys
}

fn read_required(path: &Path, errors: &mut Vec<Diagnostic>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            errors.push(io_diag(path, &e));
            None
        }
    }
}

fn read_optional(path: &Path, errors: &mut Vec<Diagnostic>) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            errors.push(io_diag(path, &e));
            None
        }
    }
}

/// Decodes a file line by line. Old configurations are often Latin-1; bytes that are not UTF-8
/// are harmless inside a `#` comment, replaced with U+FFFD (and warned about) elsewhere, and
/// refused where they would change a secret (`strict`, for authkeys keys).
fn decode(
    path: &Path,
    bytes: &[u8],
    strict: bool,
    errors: &mut Vec<Diagnostic>,
    warnings: &mut Vec<Diagnostic>,
) -> String {
    if let Ok(s) = std::str::from_utf8(bytes) {
        return s.to_string();
    }
    let mut out = String::with_capacity(bytes.len());
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let text = String::from_utf8_lossy(line);
        if let Err(e) = std::str::from_utf8(line) {
            // ha.cf and haresources comments start at any '#'; authkeys comments only at the
            // start of a line.
            let in_comment = if strict {
                line.trim_ascii_start().starts_with(b"#")
            } else {
                line[..e.valid_up_to()].contains(&b'#')
            };
            if !in_comment {
                let msg = if strict {
                    "this line is not valid UTF-8; halo keeps keys and names as UTF-8 text, so re-encode the file or use ASCII"
                } else {
                    "this line is not valid UTF-8; the invalid bytes were replaced with U+FFFD"
                };
                let d = Diagnostic::new(path, i + 1, msg);
                if strict {
                    errors.push(d);
                } else {
                    warnings.push(d);
                }
            }
        }
        out.push_str(&text);
    }
    out
}

/// The conventional Heartbeat configuration directory.
pub fn default_dir() -> PathBuf {
    PathBuf::from("/etc/ha.d")
}

#[cfg(test)]
mod tests;
