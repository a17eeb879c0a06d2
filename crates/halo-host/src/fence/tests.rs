use super::*;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("halo-fence-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("external")).unwrap();
    d
}

fn script(dir: &Path, name: &str, body: &str) {
    let p = dir.join("external").join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn parses_every_type_and_names_the_fencers() {
    let dir = tmpdir("parse");
    script(&dir, "mine", "exit 0");
    let d = parse_devices(
        None,
        &lines(&[
            "n1 ipmi n2 10.0.0.2 admin secret",
            "* external/mine a=1",
            "N2 meatware",
            "* test fail /tmp/x",
            "* null",
        ]),
        &dir,
    )
    .unwrap();
    assert_eq!(d[0].kind, Kind::Ipmi);
    assert_eq!(d[1].kind, Kind::External { name: "mine".into(), path: dir.join("external/mine") });
    assert_eq!((d[2].from.as_str(), &d[2].kind), ("n2", &Kind::Meatware));
    assert_eq!(d[3].kind, Kind::Test { ok: false, record: Some("/tmp/x".into()) });
    let nodes = lines(&["n1", "n2", "n3"]);
    assert_eq!(fencers(&d[..1], &nodes), vec!["n1"]);
    assert_eq!(fencers(&d, &nodes), nodes);
    for (bad, why) in [
        ("* baytech 10.0.0.3 login pw", "unknown STONITH type 'baytech'"),
        ("* external/nope", "no STONITH plugin"),
        ("* ipmi n2 10.0.0.2", "ipmi needs HOSTNAME IPADDR USER PASSWORD"),
        ("*", "expected 'stonith_host HOST|* TYPE PARAMS...'"),
    ] {
        let e = parse_devices(None, &lines(&[bad]), &dir).unwrap_err();
        assert!(e.contains(why), "{bad}: {e}");
    }
    // `stonith TYPE FILE`: the file holds the parameters.
    let f = dir.join("stonith.cfg");
    std::fs::write(&f, "# ipmi of n2\nn2 10.0.0.2\nadmin secret\n").unwrap();
    let d = parse_devices(Some(&format!("ipmi {}", f.display())), &[], &dir).unwrap();
    assert_eq!(
        (d[0].from.as_str(), d[0].params.clone()),
        ("*", lines(&["n2", "10.0.0.2", "admin", "secret"]))
    );
}

#[test]
fn ipmi_and_ssh_command_lines() {
    let p = lines(&["n2", "10.0.0.2", "admin", "secret"]);
    let (argv, env) = ipmi_command(&p, "n2").unwrap();
    assert_eq!(argv.join(" "), "-I lanplus -H 10.0.0.2 -U admin -E chassis power reset");
    assert_eq!(env, vec![("IPMI_PASSWORD".to_string(), "secret".to_string())]);
    assert!(ipmi_command(&p, "n3").is_none(), "a device for n2 only");
    let (argv, _) = ipmi_command(&lines(&["n2", "10.0.0.2", "admin", "secret", "lan"]), "N2").unwrap();
    assert_eq!(argv[1], "lan");
    let a = ssh_argv("n2");
    assert!(a.windows(2).any(|w| w == ["-o", "BatchMode=yes"]));
    assert_eq!(a[a.len() - 2], "n2");
    assert!(a.last().unwrap().contains("reboot -nf"));
}

#[test]
fn external_plugins_get_named_parameters_and_gethosts_decides() {
    let dir = tmpdir("external");
    let log = dir.join("calls");
    script(
        &dir,
        "fake",
        &format!(
            "echo \"$1 $2 ip=$ipaddr hosts=$hostlist\" >> {}\ncase $1 in\n getconfignames) echo ipaddr; echo hostlist;;\n gethosts) echo $hostlist;;\n reset) [ \"$2\" = n2 ] || exit 1;;\n *) exit 1;;\nesac\nexit 0",
            log.display()
        ),
    );
    let d = parse_devices(None, &lines(&["* external/fake 10.0.0.9 n2 n3"]), &dir).unwrap();
    let mw = Meatware::default();
    let mut logs = Vec::new();
    let r = fence(&d, "n1", "n2", &mw, &mut |s| logs.push(s));
    assert_eq!(r.as_deref(), Ok("external/fake: fake reset n2: exit 0"));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert!(calls.contains("reset n2 ip=10.0.0.9 hosts=n2 n3"), "{calls}");
    // Not among its hosts: skipped as badhost, never reset.
    let r = fence(&d, "n1", "n4", &mw, &mut |s| logs.push(s));
    assert!(r.as_ref().is_err_and(|e| e.contains("badhost")), "{r:?}");
    assert!(!std::fs::read_to_string(&log).unwrap().contains("reset n4"));
    // A failing reset is an error with the reason; a hung one is killed at the timeout.
    let r = fence(&d, "n1", "n3", &mw, &mut |s| logs.push(s));
    assert!(r.as_ref().is_err_and(|e| e.contains("fake reset n3: exit 1")), "{r:?}");
    script(&dir, "hang", "case $1 in reset) sleep 30;; esac\nexit 0");
    let t = Instant::now();
    let r = external("hang", &dir.join("external/hang"), &[], "n2", Duration::from_millis(500));
    assert!(r.as_ref().is_err_and(|e| e.contains("timed out")), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
    // Devices usable by another node only: nothing to run.
    let d = parse_devices(None, &lines(&["n3 external/fake a=b"]), &dir).unwrap();
    assert!(
        fence(&d, "n1", "n2", &mw, &mut |_| {}).is_err_and(|e| e.contains("no STONITH device usable by n1"))
    );
}

#[test]
fn debians_cluster_glue_ssh_plugin_lists_its_hosts() {
    // The real script, where the cluster-glue package installed it: only gethosts is
    // called (reset would ssh).
    let dir = Path::new(PLUGIN_DIR);
    if !dir.join("external/ssh").is_file() {
        eprintln!("cluster-glue not installed: skipped");
        return;
    }
    let d = parse_devices(None, &lines(&["* external/ssh n2 n3"]), dir).unwrap();
    let Kind::External { path, .. } = &d[0].kind else { panic!() };
    let env = external_env(path, &d[0].params, FENCE_TIMEOUT).unwrap();
    assert_eq!(env, vec![("hostlist".to_string(), "n2 n3".to_string())]);
    let r = external("ssh", path, &d[0].params, "n4", FENCE_TIMEOUT);
    assert!(r.is_err_and(|e| e.contains("badhost: n4 is not among its hosts (n2 n3)")));
}

#[test]
fn test_device_records_and_the_next_device_is_tried_after_a_failure() {
    let dir = tmpdir("test");
    let rec = dir.join("rec");
    let d = parse_devices(
        None,
        &lines(&[&format!("* test fail {}", rec.display()), &format!("* test ok {}", rec.display())]),
        &dir,
    )
    .unwrap();
    let r = fence(&d, "n1", "n2", &Meatware::default(), &mut |_| {});
    assert_eq!(r.as_deref(), Ok("test: reset n2"));
    assert_eq!(std::fs::read_to_string(&rec).unwrap(), "reset n2\nreset n2\n");
}

#[test]
fn meatware_completes_only_when_the_operator_confirms() {
    let mw = Arc::new(Meatware::default());
    assert!(!mw.confirm("n2"), "nothing waits yet");
    let d = parse_devices(None, &lines(&["* meatware"]), Path::new("/nonexistent")).unwrap();
    let m2 = Arc::clone(&mw);
    let h = std::thread::spawn(move || fence(&d, "n1", "n2", &m2, &mut |_| {}));
    let t = Instant::now();
    while mw.waiting().is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(mw.waiting(), vec!["n2"]);
    assert!(!h.is_finished());
    assert!(!mw.confirm("n3"));
    assert!(mw.confirm("n2"));
    assert_eq!(h.join().unwrap().as_deref(), Ok("meatware: meatware: confirmed by the operator"));
    assert!(mw.waiting().is_empty());
    assert_eq!(
        mw.wait("n3", Duration::from_millis(50)),
        Err("meatware: no operator confirmation within 0 s".to_string())
    );
}
