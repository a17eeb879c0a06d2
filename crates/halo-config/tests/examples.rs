//! Every configuration under `examples/` must load. Git does not keep mode 0600, so each
//! example is copied to a scratch directory and its authkeys chmod'ed there first.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use halo_config::{load_dir, AuthMethodName, AutoFailback, Loaded, Medium};

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A copy of one example directory, removed on drop.
struct Copy(PathBuf);

impl Copy {
    fn of(example: &Path, authkeys_mode: u32) -> Copy {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = example.file_name().and_then(|n| n.to_str()).unwrap_or("example");
        let dir = std::env::temp_dir().join(format!(
            "halo-config-examples-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        for entry in std::fs::read_dir(example).expect("read example dir") {
            let entry = entry.expect("dir entry");
            if entry.file_type().expect("file type").is_file() {
                std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
            }
        }
        let keys = dir.join("authkeys");
        if keys.exists() {
            std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(authkeys_mode))
                .expect("chmod authkeys");
        }
        Copy(dir)
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load_example(name: &str) -> Loaded {
    let copy = Copy::of(&examples_dir().join(name), 0o600);
    match load_dir(&copy.0) {
        Ok(l) => l,
        Err(e) => panic!("examples/{name} was refused:\n{e}"),
    }
}

#[test]
fn every_example_loads() {
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).expect("examples dir") {
        let path = entry.expect("dir entry").path();
        // Examples in other formats (halo.toml, ldirectord.cf only) belong to other crates.
        if !path.join("ha.cf").is_file() {
            continue;
        }
        let copy = Copy::of(&path, 0o600);
        if let Err(e) = load_dir(&copy.0) {
            panic!("{} was refused:\n{e}", path.display());
        }
        loaded.push(path.file_name().unwrap().to_string_lossy().into_owned());
    }
    for name in ["seed-001", "seed-002", "minimal-ucast"] {
        assert!(loaded.iter().any(|l| l == name), "examples/{name} missing");
    }
}

#[test]
fn readable_authkeys_is_refused_with_the_reason() {
    let copy = Copy::of(&examples_dir().join("seed-001"), 0o644);
    let e = load_dir(&copy.0).unwrap_err();
    let keys = copy.0.join("authkeys");
    assert_eq!(e.errors.len(), 1, "{e}");
    assert_eq!(
        e.errors[0].message,
        format!(
            "bad permissions on keyfile {p} (mode 0644): it must not be readable by group or others; run chmod 600 {p}",
            p = keys.display()
        )
    );
    assert_eq!(e.errors[0].file, keys);
}

#[test]
fn seed_001() {
    let l = load_example("seed-001");
    let m = &l.model;
    assert_eq!(m.ha_cf.nodes, vec!["debian1", "debian2"]);
    assert_eq!(m.ha_cf.keepalive_ms, 1000);
    assert_eq!(m.ha_cf.deadtime_ms, 10_000);
    assert_eq!(m.ha_cf.initdead_ms, 120_000);
    assert_eq!(m.ha_cf.auto_failback, AutoFailback::On);
    assert_eq!(m.ha_cf.media, vec![Medium::Bcast { iface: "eth0".into() }]);
    assert_eq!(m.ha_cf.port_of(&m.ha_cf.media[0]), Some(694));
    assert_eq!(m.ha_cf.ping_nodes[0].name, "10.3.2.1");
    assert_eq!(m.authkeys.active_key().unwrap().method, AuthMethodName::Sha1);
    let g = &m.haresources.as_ref().unwrap().groups[0];
    assert_eq!(g.node, "debian1");
    assert_eq!(g.key(), "IPaddr::10.3.2.50/8/eth0:0");
    assert_eq!(g.resources[1].agent, "apache2");
    let w: Vec<String> = l.warnings.iter().map(|d| d.to_string()).collect();
    // udpport follows bcast in the seed: reported, not fatal.
    assert!(w.iter().any(|m| m.contains("ha.cf:13: udpport 694 comes after media")), "{w:?}");
    assert!(
        !w.iter().any(|m| m.contains("'ping' is accepted but not implemented")),
        "ping is implemented: {w:?}"
    );
}

#[test]
fn seed_002() {
    let l = load_example("seed-002");
    let m = &l.model;
    assert_eq!(m.ha_cf.nodes, vec!["n1", "n2"]);
    assert_eq!(m.ha_cf.warntime_ms, 6000);
    assert_eq!(m.ha_cf.auto_failback, AutoFailback::Off);
    assert_eq!(m.ha_cf.media.len(), 2);
    assert_eq!(m.ha_cf.media[1].link_name(), "/dev/ttyS0");
    assert_eq!(m.authkeys.active, 1);
    assert_eq!(m.authkeys.active_key().unwrap().method, AuthMethodName::Md5);
    assert_eq!(m.authkeys.active_key().unwrap().key.as_deref(), Some("\"secret\""));
    assert_eq!(m.authkeys.keys.len(), 3);
    let g = &m.haresources.as_ref().unwrap().groups[0];
    assert_eq!(g.node, "n1");
    assert_eq!(g.resources[0].agent, "IPaddr2");
    assert_eq!(g.resources[0].args, vec!["192.168.6.240"]);
    assert_eq!(g.resources[1].agent, "ldirectord");
    // `3 sha1 "autre secret"`: the key is `"autre`, the rest is ignored with a warning.
    assert!(l.warnings.iter().any(|d| d.to_string().contains("authkeys:4: only '\"autre' is the key")));
}

#[test]
fn minimal_ucast() {
    let l = load_example("minimal-ucast");
    let m = &l.model;
    assert_eq!(m.ha_cf.nodes, vec!["alpha", "beta"]);
    assert_eq!(m.ha_cf.media.len(), 2);
    assert!(m.ha_cf.media.iter().all(|md| m.ha_cf.port_of(md) == Some(694)));
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
}
