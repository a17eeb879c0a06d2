//! A digest of what a configuration *means*, not of how its files are written: nodes carry
//! it in their heartbeats so that each can tell whether its peers run the same cluster
//! configuration (`halo status`, `halo check`).
//!
//! The digest is taken over the [`Model`] after normalisation, so comments, blank lines,
//! whitespace, line numbers, the order-free spelling of values (`keepalive 1` and
//! `keepalive 1000ms`), and the choice between the legacy files and halo.toml do not
//! matter. Left out because they are legitimately different on every host:
//!
//! * the heartbeat media (`bcast`/`ucast`/`mcast`/`serial` lines name this host's
//!   interfaces and, for `ucast`, the *other* node's address) and the UDP ports they latched;
//! * logging (`logfile`, `debugfile`, `logfacility`, `use_logd`, `debug`);
//! * `nodeinfo` (this host's own name) and the directory the files were read from;
//! * the authkeys secrets (only the methods and the active index are kept: a secret must
//!   not leave the host, even hashed, and nodes whose keys differ cannot hear each other
//!   anyway).
//!
//! Everything else counts: nodes, timings, auto_failback, ping nodes, STONITH, respawn,
//! haresources, halo.toml placement, the director's virtual services. The canonical form is
//! the `Debug` rendering of the normalised model, so a field added to the model is covered
//! without anyone remembering to add it here; the price is that two halo versions whose
//! models differ in shape report different digests for the same files.
use crate::model::Model;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Hex characters of the digest: 64 bits of SHA-256, plenty to tell configurations apart
/// (this is not a security check) and short enough for every heartbeat.
pub const DIGEST_HEX_LEN: usize = 16;

/// The digest of a configuration's meaning: 16 lower-case hex characters.
pub fn config_digest(model: &Model) -> String {
    let hash = Sha256::digest(canonical(model).as_bytes());
    hash.iter().take(DIGEST_HEX_LEN / 2).map(|b| format!("{b:02x}")).collect()
}

/// The normalised model as text: what [`config_digest`] hashes (useful to see why two
/// digests differ).
pub fn canonical(model: &Model) -> String {
    let mut m = model.clone();
    m.dir = PathBuf::new();
    m.nodeinfo = None;

    let h = &mut m.ha_cf;
    h.media.clear();
    h.latched_ports = Default::default();
    h.logfile = None;
    h.debugfile = None;
    h.logfacility = None;
    h.use_logd = None;
    h.debug = 0;
    // As written and where: the values themselves are in the typed fields.
    h.recorded.clear();
    h.directive_lines.clear();
    for r in h.respawn.iter_mut().chain(h.failfast.iter_mut()) {
        r.line = 0;
    }

    for k in &mut m.authkeys.keys {
        k.key = None;
    }
    // Defined-key order is file order; the set is what matters.
    m.authkeys.keys.sort_by_key(|k| k.index);

    if let Some(hr) = &mut m.haresources {
        for g in &mut hr.groups {
            g.line = 0;
        }
    }
    let p = &mut m.placement;
    p.groups.iter_mut().for_each(|g| g.line = 0);
    p.clones.iter_mut().for_each(|c| c.line = 0);
    p.order.iter_mut().for_each(|o| o.line = 0);
    p.colocation.iter_mut().for_each(|c| c.line = 0);

    if let Some(d) = &mut m.director {
        // The file's name and text carry comments and layout; `cf` is what they say.
        d.file = None;
        d.text.clear();
        for v in &mut d.cf.virtuals {
            v.line = 0;
            for r in &mut v.reals {
                r.line = 0;
            }
        }
    }
    format!("{m:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(tag: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("halo-digest-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        for (name, text) in files {
            std::fs::write(d.join(name), text).unwrap();
        }
        if d.join("authkeys").exists() {
            std::fs::set_permissions(d.join("authkeys"), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        if d.join("halo.toml").exists() {
            std::fs::set_permissions(d.join("halo.toml"), std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        d
    }

    fn digest_of(tag: &str, files: &[(&str, &str)]) -> String {
        let d = dir(tag, files);
        let loaded = crate::load_dir(&d).unwrap_or_else(|e| panic!("{tag}: {e}"));
        let _ = std::fs::remove_dir_all(&d);
        config_digest(&loaded.model)
    }

    const HA_CF: &str = "keepalive 1\ndeadtime 10\nwarntime 5\ninitdead 20\nucast eth0 10.0.0.2\nauto_failback on\nnode n1 n2\n";
    const AUTHKEYS: &str = "auth 1\n1 sha1 secret\n";
    const HARESOURCES: &str = "n1 10.0.0.100/24/eth0 web\n";

    fn base(tag: &str) -> String {
        digest_of(tag, &[("ha.cf", HA_CF), ("authkeys", AUTHKEYS), ("haresources", HARESOURCES)])
    }

    #[test]
    fn digest_is_short_lower_hex() {
        let d = base("hex");
        assert_eq!(d.len(), DIGEST_HEX_LEN);
        assert!(d.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{d}");
    }

    #[test]
    fn comments_whitespace_and_line_numbers_do_not_matter() {
        let a = base("plain");
        let ha_cf = "# cluster of two\n\n  keepalive   1   # seconds\ndeadtime 10\n\nwarntime 5\ninitdead 20\nucast eth0 10.0.0.2\nauto_failback on\n# nodes\nnode n1\nnode n2\n";
        let haresources = "# the web group\n\nn1   10.0.0.100/24/eth0 \\\n   web\n";
        let b = digest_of(
            "commented",
            &[
                ("ha.cf", ha_cf),
                ("authkeys", "# keys\nauth 1\n\n1 sha1 secret\n"),
                ("haresources", haresources),
            ],
        );
        assert_eq!(a, b);
    }

    #[test]
    fn same_value_spelled_differently_is_the_same() {
        let a = base("spelled-a");
        let ha_cf = HA_CF.replace("keepalive 1\n", "keepalive 1000ms\n").replace("node n1 n2", "node N1,n2");
        let b = digest_of(
            "spelled-b",
            &[("ha.cf", &ha_cf), ("authkeys", AUTHKEYS), ("haresources", HARESOURCES)],
        );
        assert_eq!(a, b);
    }

    #[test]
    fn host_local_lines_do_not_matter() {
        let a = base("local-a");
        // The other node's ha.cf: ucast to n1's address, its own log file, another key.
        let ha_cf = HA_CF.replace("ucast eth0 10.0.0.2", "ucast eth1 10.0.0.1\nbcast eth2")
            + "logfile /var/log/other.log\ndebug 2\n";
        let b = digest_of(
            "local-b",
            &[("ha.cf", &ha_cf), ("authkeys", "auth 1\n1 sha1 othersecret\n"), ("haresources", HARESOURCES)],
        );
        assert_eq!(a, b);
    }

    #[test]
    fn what_the_cluster_does_matters() {
        let a = base("differs-a");
        let other_group = digest_of(
            "differs-b",
            &[("ha.cf", HA_CF), ("authkeys", AUTHKEYS), ("haresources", "n2 10.0.0.100/24/eth0 web\n")],
        );
        assert_ne!(a, other_group);
        let timing = HA_CF.replace("deadtime 10", "deadtime 12");
        let other_timing = digest_of(
            "differs-c",
            &[("ha.cf", &timing), ("authkeys", AUTHKEYS), ("haresources", HARESOURCES)],
        );
        assert_ne!(a, other_timing);
        let no_groups = digest_of("differs-d", &[("ha.cf", HA_CF), ("authkeys", AUTHKEYS)]);
        assert_ne!(a, no_groups);
        let method = digest_of(
            "differs-e",
            &[("ha.cf", HA_CF), ("authkeys", "auth 1\n1 md5 secret\n"), ("haresources", HARESOURCES)],
        );
        assert_ne!(a, method);
    }

    #[test]
    fn the_secret_is_not_in_the_canonical_form() {
        let d = dir("secret", &[("ha.cf", HA_CF), ("authkeys", AUTHKEYS)]);
        let m = crate::load_dir(&d).unwrap().model;
        let _ = std::fs::remove_dir_all(&d);
        let c = canonical(&m);
        assert!(!c.contains("secret"), "{c}");
        assert!(!c.contains(&d.display().to_string()), "{c}");
    }

    #[test]
    fn legacy_files_and_their_halo_toml_conversion_agree() {
        let d = dir("convert", &[("ha.cf", HA_CF), ("authkeys", AUTHKEYS), ("haresources", HARESOURCES)]);
        let legacy = crate::load_dir(&d).unwrap().model;
        let _ = std::fs::remove_dir_all(&d);
        let (toml, _) = crate::convert::to_toml(&legacy);
        let t = dir("convert-toml", &[("halo.toml", &toml)]);
        let converted = crate::load_dir(&t).unwrap_or_else(|e| panic!("{e}\n{toml}")).model;
        let _ = std::fs::remove_dir_all(&t);
        assert_eq!(
            config_digest(&legacy),
            config_digest(&converted),
            "{}\n{}",
            canonical(&legacy),
            canonical(&converted)
        );
    }
}
