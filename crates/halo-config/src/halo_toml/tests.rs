use super::*;
use crate::convert::{ldirectord_to_toml, to_legacy, to_toml};
use crate::{load_dir, Model};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "halo-toml-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    fn write(&self, name: &str, text: &str) -> &Self {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write");
        let mode = if name == "authkeys" || name == FILE { 0o600 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// A model without what only says where it was read from (directory, line numbers, the
/// order parameters were recorded in).
fn normalized(mut m: Model) -> Model {
    m.dir = PathBuf::new();
    m.ha_cf.directive_lines.clear();
    m.ha_cf.recorded.sort();
    for r in m.ha_cf.respawn.iter_mut().chain(m.ha_cf.failfast.iter_mut()) {
        r.line = 0;
    }
    if let Some(h) = &mut m.haresources {
        h.groups.iter_mut().for_each(|g| g.line = 0);
    }
    m.placement.groups.iter_mut().for_each(|g| g.line = 0);
    m.placement.clones.iter_mut().for_each(|g| g.line = 0);
    m.placement.order.iter_mut().for_each(|g| g.line = 0);
    m.placement.colocation.iter_mut().for_each(|g| g.line = 0);
    if let Some(d) = &mut m.director {
        d.text.clear();
        d.file = None;
        for v in d.cf.virtuals.iter_mut() {
            v.line = 0;
            v.reals.iter_mut().for_each(|r| r.line = 0);
        }
    }
    m
}

fn copy_legacy(example: &Path) -> Scratch {
    let s = Scratch::new();
    for name in ["ha.cf", "authkeys", "haresources", "ldirectord.cf"] {
        if let Ok(text) = std::fs::read_to_string(example.join(name)) {
            s.write(name, &text);
        }
    }
    s
}

fn errors_of(toml: &str) -> Vec<String> {
    let s = Scratch::new();
    s.write(FILE, toml);
    match load_dir(&s.0) {
        Ok(_) => Vec::new(),
        Err(e) => e.errors.iter().map(|d| format!("{}:{}", d.line, d.message)).collect(),
    }
}

const MINIMAL: &str = r#"
[cluster]
nodes = ["alpha", "beta"]
keepalive = 1
deadtime = 10

[[link]]
type = "bcast"
iface = "eth0"

[log]
logfacility = "daemon"

[auth]
active = 1
keys = [{ index = 1, method = "sha1", key = "secret" }]
"#;

#[test]
fn every_legacy_example_round_trips_through_toml() {
    let mut seen = 0;
    for entry in std::fs::read_dir(examples()).expect("examples/") {
        let dir = entry.expect("entry").path();
        if !dir.join("ha.cf").exists() {
            continue;
        }
        seen += 1;
        let legacy = copy_legacy(&dir);
        let model = load_dir(&legacy.0).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).model;

        let (toml_text, _notes) = to_toml(&model);
        let t = Scratch::new();
        t.write(FILE, &toml_text);
        let from_toml =
            load_dir(&t.0).unwrap_or_else(|e| panic!("{}: {e}\n{toml_text}", dir.display())).model;
        assert_eq!(
            normalized(from_toml.clone()),
            normalized(model.clone()),
            "{}:\n{toml_text}",
            dir.display()
        );

        // And back to the legacy files: the same model again.
        let (files, notes) = to_legacy(&from_toml);
        assert!(notes.is_empty(), "{notes:?}");
        let back = Scratch::new();
        back.write("ha.cf", &files.ha_cf).write("authkeys", &files.authkeys);
        if let Some(h) = &files.haresources {
            back.write("haresources", h);
        }
        let again =
            load_dir(&back.0).unwrap_or_else(|e| panic!("{}: {e}\n{}", dir.display(), files.ha_cf)).model;
        assert_eq!(normalized(again), normalized(model), "{}:\n{}", dir.display(), files.ha_cf);
    }
    assert!(seen >= 3, "expected the legacy examples under examples/");
}

#[test]
fn ldirectord_examples_round_trip_inline_and_by_file() {
    for name in ["debian-ldirectord", "seed-002-director"] {
        let text =
            std::fs::read_to_string(examples().join(name).join("ldirectord.cf")).expect("ldirectord.cf");
        let (want, _) = crate::parse_ldirectord_cf(Path::new("ldirectord.cf"), &text).expect("parses");

        let s = Scratch::new();
        s.write(FILE, &format!("{MINIMAL}{}", ldirectord_to_toml(&text)));
        let m = load_dir(&s.0).unwrap_or_else(|e| panic!("{name}: {e}\n{}", ldirectord_to_toml(&text))).model;
        let mut want_n = want.clone();
        for v in want_n.virtuals.iter_mut() {
            v.line = 0;
            v.reals.iter_mut().for_each(|r| r.line = 0);
        }
        let got = normalized(m).director.expect("director").cf;
        assert_eq!(got, want_n, "{name}");

        let f = Scratch::new();
        f.write("ldirectord.cf", &text);
        f.write(FILE, &format!("{MINIMAL}\n[director]\nfile = \"ldirectord.cf\"\n"));
        let m = load_dir(&f.0).unwrap_or_else(|e| panic!("{name}: {e}")).model;
        let d = m.director.expect("director");
        assert_eq!(d.cf, want, "{name}");
        assert_eq!(d.file.as_deref(), Some(Path::new("ldirectord.cf")));
    }
}

#[test]
fn the_halo_toml_example_loads_with_everything_legacy_cannot_say() {
    let text = std::fs::read_to_string(examples().join("halo.toml/halo.toml")).expect("example");
    let s = Scratch::new();
    s.write(FILE, &text);
    let m = load_dir(&s.0).unwrap_or_else(|e| panic!("{e}")).model;
    assert_eq!(m.ha_cf.nodes, ["gw1", "gw2", "gw3"]);
    assert_eq!(m.ha_cf.keepalive_ms, 500);
    assert_eq!(m.ha_cf.deadtime_ms, 5000);
    assert_eq!(m.ha_cf.media.len(), 2);
    let h = m.haresources.as_ref().expect("groups");
    assert_eq!(h.groups.len(), 2);
    assert_eq!(h.groups[1].node, "gw2");
    assert_eq!(m.preferred_nodes(h.groups[1].key()), ["gw2", "gw3", "gw1"]);
    assert_eq!(m.placement.groups[0].name, "vpn");
    assert_eq!(m.placement.clones[0].name, "gw_pingd_clone");
    assert!(m.placement.clones[0].nodes.is_empty());
    assert_eq!(
        (m.placement.order[0].first.as_str(), m.placement.order[0].then.as_str()),
        ("gw_pingd_clone", "vpn")
    );
    assert!(m.placement.colocation[0].apart);
    let d = m.director.as_ref().expect("director");
    assert_eq!(d.cf.virtuals.len(), 1);
    assert_eq!(d.cf.virtuals[0].reals.len(), 2);
    assert_eq!(d.cf.global.checkinterval, 5);

    // To legacy: what haresources cannot say is named, not dropped silently.
    let (files, notes) = to_legacy(&m);
    let all = notes.join("\n");
    assert!(all.contains("clone 'gw_pingd_clone'"), "{all}");
    assert!(all.contains("order 'gw_pingd_clone' before 'vpn'"), "{all}");
    assert!(all.contains("colocation 'web' apart from 'vpn'"), "{all}");
    assert!(all.contains("prefers gw2, gw3, gw1"), "{all}");
    assert!(files
        .haresources
        .as_deref()
        .unwrap_or("")
        .contains("gw2 IPaddr2::192.168.1.199/24/eth0 ldirectord"));
    assert!(files
        .ldirectord
        .as_ref()
        .is_some_and(|(n, t)| n == "ldirectord.cf" && t.contains("\treal=10.0.0.61:80 gate 1")));

    // And the toml printed from it reads back as the same model.
    let (again, _) = to_toml(&m);
    let t = Scratch::new();
    t.write(FILE, &again);
    let m2 = load_dir(&t.0).unwrap_or_else(|e| panic!("{e}\n{again}")).model;
    assert_eq!(normalized(m2), normalized(m));
}

#[test]
fn unknown_keys_name_the_line_and_the_near_miss() {
    let text = MINIMAL
        .replace("keepalive = 1", "keepaliv = 1")
        .replace("iface = \"eth0\"", "iface = \"eth0\"\nifac = \"x\"");
    let errs =
        errors_of(&format!("{text}\n[[group]]\nnodes = [\"alpha\"]\nresources = [\"a\"]\nresource = 1\n"));
    assert!(
        errs.contains(&"4:unknown key 'keepaliv' in [cluster]: did you mean 'keepalive'?".to_string()),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with("10:unknown key 'ifac' in [link[0]]: did you mean 'iface'?")),
        "{errs:?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("22:unknown key 'resource' in [group[0]]: did you mean 'resources'?")),
        "{errs:?}"
    );
    let errs = errors_of(&format!("{MINIMAL}\n[clutser]\n"));
    assert!(
        errs.iter().any(|e| e.contains("unknown key 'clutser' at the top level: did you mean 'cluster'?")),
        "{errs:?}"
    );
    let errs = errors_of(&format!("{MINIMAL}\n[director]\ncheckintervall = 3\n[[director.virtual]]\nvirtual = \"10.0.0.1:80\"\nreal = \"10.0.0.2:80 gate\"\nshceduler = \"rr\"\n"));
    assert!(errs.iter().any(|e| e.contains("did you mean 'checkinterval'")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("did you mean 'scheduler'")), "{errs:?}");
}

#[test]
fn errors_carry_halo_toml_line_numbers() {
    // A value the ha.cf rules refuse, renumbered to the toml line.
    let errs = errors_of(&MINIMAL.replace("keepalive = 1", "keepalive = \"fast\""));
    assert!(errs.iter().any(|e| e.starts_with("4:keepalive:")), "{errs:?}");
    // A wrong type.
    let errs = errors_of(&MINIMAL.replace("keepalive = 1", "keepalive = [1]"));
    assert!(errs.iter().any(|e| e.starts_with("4:cluster.keepalive: expected a string, number or boolean, got an array")), "{errs:?}");
    // TOML syntax.
    let errs = errors_of(&MINIMAL.replace("deadtime = 10", "deadtime = 10 10"));
    assert!(errs.iter().any(|e| e.starts_with("5:expected valid TOML")), "{errs:?}");
    // A group on a node the cluster does not have; a constraint naming nothing.
    let errs = errors_of(&format!(
        "{MINIMAL}\n[[group]]\nnodes = [\"alpha\", \"gamma\"]\nresources = [\"IPaddr2::10.0.0.1\"]\n\n[[order]]\nfirst = \"IPaddr2::10.0.0.1\"\nthen = \"wbe\"\n"
    ));
    assert!(
        errs.iter().any(|e| e.starts_with("19:group[0].nodes: 'gamma' is not a node of [cluster]")),
        "{errs:?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with("22:order[0].then: 'wbe' is not the name of a group or clone")),
        "{errs:?}"
    );
    // Cycles.
    let errs = errors_of(&format!(
        "{MINIMAL}\n[[group]]\nname = \"a\"\nnodes = [\"alpha\"]\nresources = [\"x\"]\n[[group]]\nname = \"b\"\nnodes = [\"beta\"]\nresources = [\"y\"]\n[[order]]\nfirst = \"a\"\nthen = \"b\"\n[[order]]\nfirst = \"b\"\nthen = \"a\"\n"
    ));
    assert!(errs.iter().any(|e| e.contains("form a cycle")), "{errs:?}");
    // ha.cf's start rules apply too (deadtime against keepalive), on the toml line.
    let errs = errors_of(&MINIMAL.replace("deadtime = 10", "deadtime = 1"));
    assert!(
        errs.iter().any(|e| e.starts_with("5:deadtime (1000 ms) must be more than twice keepalive")),
        "{errs:?}"
    );
    // Missing link.
    let errs = errors_of(&MINIMAL.replace("[[link]]\ntype = \"bcast\"\niface = \"eth0\"\n", ""));
    assert!(errs.iter().any(|e| e.contains("no heartbeat media")), "{errs:?}");
    // A ucast link without its peer, an mcast with a key it does not take.
    let errs = errors_of(&MINIMAL.replace("type = \"bcast\"", "type = \"ucast\""));
    assert!(errs.iter().any(|e| e.starts_with("7:link[0]: a ucast link needs 'peer'")), "{errs:?}");
    // Keys.
    let errs = errors_of(&MINIMAL.replace("active = 1", "active = 2"));
    assert!(errs.iter().any(|e| e.starts_with("15:auth.active: key 2 is not defined")), "{errs:?}");
}

#[test]
fn a_directory_with_both_formats_is_refused_naming_both() {
    let s = Scratch::new();
    s.write(FILE, MINIMAL).write("ha.cf", "node alpha\nbcast eth0\n");
    let e = load_dir(&s.0).unwrap_err().to_string();
    assert!(e.contains("halo.toml") && e.contains("ha.cf") && e.contains("never both"), "{e}");
}

#[test]
fn keys_in_halo_toml_need_a_private_file_and_authkeys_may_stay_beside_it() {
    let s = Scratch::new();
    s.write(FILE, MINIMAL);
    std::fs::set_permissions(s.0.join(FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = load_dir(&s.0).unwrap_err().to_string();
    assert!(e.contains("halo.toml") && e.contains("chmod 600"), "{e}");

    let s = Scratch::new();
    let no_auth = MINIMAL.split("[auth]").next().unwrap().to_string();
    s.write(FILE, &no_auth).write("authkeys", "auth 2\n2 md5 abc\n");
    let m = load_dir(&s.0).unwrap_or_else(|e| panic!("{e}")).model;
    assert_eq!(m.authkeys.active, 2);
}

#[test]
fn times_take_seconds_or_units() {
    let s = Scratch::new();
    s.write(
        FILE,
        &MINIMAL.replace("keepalive = 1", "keepalive = \"250ms\"\nwarntime = \"3s\"\ninitdead = 30"),
    );
    let m = load_dir(&s.0).unwrap_or_else(|e| panic!("{e}")).model;
    assert_eq!((m.ha_cf.keepalive_ms, m.ha_cf.warntime_ms, m.ha_cf.initdead_ms), (250, 3000, 30000));
    assert_eq!(m.ha_cf.parameter("keepalive"), Some("250ms"));
}

#[test]
fn director_dataplane_in_halo_toml_and_converted_both_ways() {
    use crate::ldirectord_cf::Dataplane;
    let text = "dataplane = ipvs\ncheckinterval = 3\nvirtual = 10.0.0.1:80\n\treal = 10.0.0.2:80 gate\n";
    let toml = ldirectord_to_toml(text);
    assert!(toml.contains("dataplane = \"ipvs\""), "{toml}");
    let s = Scratch::new();
    s.write(FILE, &format!("{MINIMAL}{toml}"));
    let m = load_dir(&s.0).unwrap_or_else(|e| panic!("{e}\n{toml}")).model;
    assert_eq!(m.director.as_ref().expect("director").cf.global.dataplane, Dataplane::Ipvs);
    // Back to ldirectord.cf and read again.
    let (files, _) = to_legacy(&m);
    let (name, cf) = files.ldirectord.as_ref().expect("an ldirectord.cf");
    assert_eq!(name, "ldirectord.cf");
    let (back, _) = crate::parse_ldirectord_cf(Path::new("ldirectord.cf"), cf).expect(cf);
    assert_eq!(back.global.dataplane, Dataplane::Ipvs, "{cf}");
    // A bad value names the halo.toml line.
    let bad = Scratch::new();
    bad.write(FILE, &format!("{MINIMAL}\n[director]\ndataplane = \"lvs\"\n\n[[director.virtual]]\nvirtual = \"10.0.0.1:80\"\nreal = [\"10.0.0.2:80 gate\"]\n"));
    let e = load_dir(&bad.0).expect_err("refused").to_string();
    assert!(e.contains("dataplane") && e.contains("expected auto, nftables or ipvs"), "{e}");
    let line = MINIMAL.lines().count() + 3;
    assert!(e.contains(&format!("{FILE}:{line}")), "line {line}: {e}");
}
