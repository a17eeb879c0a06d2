use super::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "halo-config-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        self.write_bytes(name, text.as_bytes())
    }

    fn write_bytes(&self, name: &str, bytes: &[u8]) -> &Self {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write");
        let mode = if name == "authkeys" { 0o600 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const HA_CF: &str = "logfile /var/log/ha-log\nkeepalive 1\ndeadtime 10\ninitdead 30\nudpport 694\nbcast eth0\nauto_failback on\nnode alpha beta\n";
const AUTHKEYS: &str = "auth 1\n1 sha1 secret\n";

fn messages(e: &ConfigError) -> Vec<String> {
    e.errors.iter().map(|d| d.to_string()).collect()
}

#[test]
fn loads_a_complete_directory() {
    let s = Scratch::new();
    s.write("ha.cf", HA_CF).write("authkeys", AUTHKEYS).write("haresources", "Alpha 10.0.0.100 httpd\n");
    let loaded = load_dir(&s.0).expect("loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let m = &loaded.model;
    assert_eq!(m.dir, s.0);
    assert_eq!(m.ha_cf.nodes, vec!["alpha", "beta"]);
    assert_eq!(m.authkeys.active, 1);
    assert_eq!(m.haresources.as_ref().unwrap().groups[0].node, "alpha");
    assert_eq!(m.nodeinfo, None);
    assert!(m.check_local_node("ALPHA").is_ok());
    let err = m.check_local_node("gamma").unwrap_err();
    assert_eq!(
        err,
        format!("node gamma is not listed in {}/ha.cf (node directives: alpha, beta)", s.0.display())
    );
}

#[test]
fn haresources_is_optional() {
    let s = Scratch::new();
    s.write("ha.cf", HA_CF).write("authkeys", AUTHKEYS);
    let loaded = load_dir(&s.0).expect("loads");
    assert!(loaded.model.haresources.is_none());
}

#[test]
fn missing_required_files_are_errors() {
    let s = Scratch::new();
    let e = load_dir(&s.0).unwrap_err();
    let m = messages(&e);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(m[0].starts_with(&format!("{}/ha.cf: cannot read:", s.0.display())));
    assert!(m[1].starts_with(&format!("{}/authkeys: cannot read:", s.0.display())));
}

#[test]
fn readable_authkeys_is_refused() {
    let s = Scratch::new();
    s.write("ha.cf", HA_CF).write("authkeys", AUTHKEYS);
    let p = s.0.join("authkeys");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load_dir(&s.0).unwrap_err();
    assert_eq!(
        messages(&e),
        vec![format!(
            "{p}: bad permissions on keyfile {p} (mode 0644): it must not be readable by group or others; run chmod 600 {p}",
            p = p.display()
        )]
    );
}

#[test]
fn errors_of_every_file_are_collected() {
    let s = Scratch::new();
    s.write("ha.cf", "logfile /l\nkeepalive 2s\nnode a\nbcast eth0\nauto_failback on\n")
        .write("authkeys", "auth 2\n1 sha1 x\n")
        .write("haresources", "b 10.0.0.1\na 10.0.0.1\n");
    let e = load_dir(&s.0).unwrap_err();
    let m = messages(&e);
    let d = s.0.display();
    assert_eq!(
        m,
        vec![
            format!("{d}/ha.cf:2: keepalive: expected a time such as 2, 1.5 or 500ms (seconds unless suffixed ms or us), got '2s'"),
            format!("{d}/authkeys:1: auth 2: key 2 is not defined in this file"),
            format!("{d}/haresources:2: duplicate group key '10.0.0.1' (first at line 1): the first resource of each line names its group and must be unique"),
            format!("{d}/haresources:1: Bad nodename in haresources: 'b' is not a node of {d}/ha.cf (node directives: a)"),
        ]
    );
}

#[test]
fn cross_file_start_conditions() {
    let s = Scratch::new();
    s.write("ha.cf", "logfile /l\nkeepalive 5\ndeadtime 10\nautojoin other\n")
        .write("authkeys", AUTHKEYS)
        .write("haresources", "x httpd\n");
    let e = load_dir(&s.0).unwrap_err();
    let m: Vec<String> = e.errors.iter().map(|d| d.message.clone()).collect();
    assert_eq!(
        m,
        vec![
            "no heartbeat media: add a bcast, mcast, ucast or serial line (Heartbeat refuses to start without one)".to_string(),
            "no node directives: list every cluster member, e.g. 'node alpha beta' (names as printed by uname -n)".to_string(),
            "deadtime (10000 ms) must be more than twice keepalive (5000 ms)".to_string(),
            "autojoin other conflicts with haresources (R1 style resource management): set autojoin none".to_string(),
            "Bad nodename in haresources: 'x' is not a node of ".to_string()
                + &s.0.join("ha.cf").display().to_string()
                + " (node directives: none)",
        ]
    );
    assert_eq!(e.errors[3].line, 4);
}

#[test]
fn autojoin_without_haresources_is_a_warning() {
    let s = Scratch::new();
    s.write("ha.cf", &format!("{HA_CF}autojoin any\n")).write("authkeys", AUTHKEYS);
    let loaded = load_dir(&s.0).expect("loads");
    assert!(loaded.warnings.iter().any(|w| w.message.starts_with("autojoin without pacemaker")));
}

#[test]
fn pacemaker_ignores_haresources_with_a_warning() {
    let s = Scratch::new();
    s.write("ha.cf", &format!("{HA_CF}crm respawn\n"))
        .write("authkeys", AUTHKEYS)
        .write("haresources", "nobody 10.0.0.1\n");
    let loaded = load_dir(&s.0).expect("loads");
    assert!(loaded.warnings.iter().any(|w| w.message.contains("not used because crm/pacemaker is enabled")));
}

#[test]
fn nodeinfo_overrides_uname_only_with_a_newline() {
    let s = Scratch::new();
    s.write("ha.cf", HA_CF).write("authkeys", AUTHKEYS).write("nodeinfo", "Beta\nignored\n");
    let m = load_dir(&s.0).expect("loads").model;
    assert_eq!(m.nodeinfo.as_deref(), Some("Beta"));
    assert_eq!(m.local_node_name("alpha"), "beta");

    s.write("nodeinfo", "beta");
    let loaded = load_dir(&s.0).expect("loads");
    assert_eq!(loaded.model.nodeinfo, None);
    assert_eq!(loaded.model.local_node_name("Alpha"), "alpha");
    assert!(loaded.warnings.iter().any(|w| w.to_string().contains("nodeinfo:1: ignored")));

    s.write("nodeinfo", "\n");
    let e = load_dir(&s.0).unwrap_err();
    assert!(e.errors[0].message.contains("first line is empty"));
}

#[test]
fn latin1_comments_are_fine_but_latin1_keys_are_refused() {
    let s = Scratch::new();
    let mut ha = b"# c\xe9libataire\n".to_vec();
    ha.extend_from_slice(HA_CF.as_bytes());
    s.write_bytes("ha.cf", &ha).write("authkeys", AUTHKEYS);
    let loaded = load_dir(&s.0).expect("loads");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    s.write_bytes("authkeys", b"auth 1\n1 sha1 s\xe9same\n");
    let e = load_dir(&s.0).unwrap_err();
    assert!(e.errors[0].to_string().contains("authkeys:2: this line is not valid UTF-8"));
}

#[test]
fn warnings_carry_every_file() {
    let s = Scratch::new();
    s.write("ha.cf", "node a\nbcast eth0\napiauth ipfail uid=hacluster\n")
        .write("authkeys", "auth 1\n1 sha1 \"two words\"\n");
    let loaded = load_dir(&s.0).expect("loads");
    let w: Vec<String> = loaded.warnings.iter().map(|d| d.message.clone()).collect();
    assert!(w.iter().any(|m| m.contains("'apiauth' is accepted but not implemented")));
    assert!(w.iter().any(|m| m.contains("only '\"two' is the key")));
    assert!(w.iter().any(|m| m.contains("logs to stderr only")));
    assert!(w.iter().any(|m| m.contains("Deprecated 'legacy'")));
}
