//! `halo check` against real files, real namespaces and real daemons: the key file's mode,
//! a missing interface, LVS-DR sysctls and NAT forwarding read from a namespace's own
//! /proc/sys, and — with two daemons running — peers heard and reachable, the clock skew
//! one node's heartbeats show (the daemon's test hook shifts its clock, since namespaces
//! share one) and configuration drift between two nodes whose haresources differ, gone once
//! they differ only in comments.
use halo::testbed::{wait_for, Testbed};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 check-secret\n";
const N1: &str = "10.81.0.1";
const N2: &str = "10.81.0.2";
const VIP_DR: &str = "10.81.0.100";
const VIP_NAT: &str = "10.81.0.101";

fn ha_cf(iface: &str) -> String {
    format!(
        "keepalive 200ms\ndeadtime 2\nwarntime 1\ninitdead 4\nudpport 694\nucast {iface} {N1}\nucast {iface} {N2}\nauto_failback on\nnode n1 n2\n"
    )
}

/// A resource that does nothing but say it runs.
const DUMMY: &str = r#"#!/bin/sh
D=$(cd "$(dirname "$0")/.." && pwd)
case "$1" in
start) touch "$D/dummy.on" ;;
stop) rm -f "$D/dummy.on" ;;
status) if [ -f "$D/dummy.on" ]; then echo running; else echo stopped; fi ;;
esac
exit 0
"#;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("halo-check-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write_dir(d: &Path, ha_cf: &str, haresources: Option<&str>) {
    std::fs::create_dir_all(d).unwrap();
    std::fs::write(d.join("ha.cf"), ha_cf).unwrap();
    std::fs::write(d.join("authkeys"), AUTHKEYS).unwrap();
    std::fs::set_permissions(d.join("authkeys"), std::fs::Permissions::from_mode(0o600)).unwrap();
    if let Some(h) = haresources {
        std::fs::write(d.join("haresources"), h).unwrap();
        let rd = d.join("resource.d");
        std::fs::create_dir_all(&rd).unwrap();
        std::fs::write(rd.join("dummy"), DUMMY).unwrap();
        std::fs::set_permissions(rd.join("dummy"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn run(cmd: &mut Command) -> Run {
    let o = cmd.output().unwrap();
    Run {
        code: o.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&o.stdout).into_owned(),
        err: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// `halo check` in `ns` (None: this namespace).
fn check(ns: Option<&str>, socket: &Path, dir: &Path, node: &str, extra: &[&str]) -> Run {
    let mut c = match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, HALO]);
            c
        }
        None => Command::new(HALO),
    };
    c.arg("--socket")
        .arg(socket)
        .arg("check")
        .arg("--config-dir")
        .arg(dir)
        .args(["--node", node])
        .args(extra);
    run(&mut c)
}

/// The checks of a `--json` report with this name and status.
fn lines<'a>(v: &'a Value, name: &str, status: &str) -> Vec<&'a Value> {
    v["checks"].as_array().unwrap().iter().filter(|c| c["check"] == name && c["status"] == status).collect()
}

fn json(r: &Run) -> Value {
    serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {}{}", r.out, r.err))
}

#[test]
fn readable_authkeys_fails_with_the_fix_and_private_passes() {
    let d = tmpdir("keys");
    write_dir(&d, &ha_cf("lo"), None);
    let none = d.join("no.sock");
    let r = check(None, &none, &d, "n1", &["--config-only"]);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    assert!(r.out.contains("OK   authkeys: ") && r.out.contains("mode 0600"), "{}", r.out);

    std::fs::set_permissions(d.join("authkeys"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = check(None, &none, &d, "n1", &["--config-only"]);
    assert_eq!(r.code, 1, "{}{}", r.out, r.err);
    let path = d.join("authkeys").display().to_string();
    let line =
        r.err.lines().find(|l| l.starts_with("FAIL authkeys: ")).unwrap_or_else(|| panic!("{}", r.err));
    assert!(line.contains("mode 0644") && line.ends_with(&format!("fix: chmod 600 {path}")), "{line}");

    let r = check(None, &none, &d, "n1", &["--config-only", "--json"]);
    assert_eq!(r.code, 1);
    let v = json(&r);
    assert_eq!(v["ok"], false);
    let fails = lines(&v, "authkeys", "FAIL");
    assert_eq!(fails.len(), 1, "{v}");
    assert_eq!(fails[0]["fix"], format!("chmod 600 {path}"));
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn missing_interface_fails_and_present_one_passes() {
    let Some(mut tb) = Testbed::for_test("chkif") else { return };
    let ns = tb.add_host("n1", &format!("{N1}/24")).unwrap();
    let none = tb.dir.join("no.sock");
    let good = tb.dir.join("good");
    write_dir(&good, &ha_cf("eth0"), None);
    let r = check(Some(&ns), &none, &good, "n1", &["--json"]);
    let v = json(&r);
    assert_eq!(lines(&v, "interface", "OK").len(), 2, "{v}");
    // No daemon: said, not failed.
    assert_eq!(lines(&v, "daemon", "WARN").len(), 1, "{v}");
    assert!(lines(&v, "daemon", "WARN")[0]["detail"].as_str().unwrap().contains("not running"), "{v}");
    assert_eq!(r.code, 0, "{v}");

    let bad = tb.dir.join("bad");
    write_dir(&bad, &ha_cf("eth7"), None);
    let r = check(Some(&ns), &none, &bad, "n1", &[]);
    assert_eq!(r.code, 1, "{}{}", r.out, r.err);
    assert!(
        r.err.contains(&format!("FAIL interface: ucast eth7 {N1}: no interface named eth7 on this host")),
        "{}",
        r.err
    );
    assert!(r.err.contains("check(s) FAILED"), "{}", r.err);
    tb.kill_all();
}

#[test]
fn lvs_dr_sysctls_and_nat_forwarding() {
    let Some(mut tb) = Testbed::for_test("chklvs") else { return };
    let ns = tb.add_host("n2", &format!("{N2}/24")).unwrap();
    let none = tb.dir.join("no.sock");
    let d = tb.dir.join("lvs");
    // n1 runs the director group; n2 (this host) is a direct-routing real server of one
    // service, and a NAT service exists too (so any node that can run the director must
    // forward).
    write_dir(&d, &ha_cf("eth0"), Some("n1 ldirectord::ldirectord.cf\n"));
    std::fs::write(
        d.join("ldirectord.cf"),
        format!(
            "checktimeout=3\ncheckinterval=1\nvirtual={VIP_DR}:80\n\treal={N2}:80 gate\n\treal=10.81.0.3:80 gate\n\tservice=http\n\tscheduler=rr\n\tchecktype=connect\nvirtual={VIP_NAT}:80\n\treal=10.81.5.2:80 masq\n\tservice=http\n\tscheduler=rr\n\tchecktype=connect\n"
        ),
    )
    .unwrap();
    let r = check(Some(&ns), &none, &d, "n2", &["--json"]);
    assert_eq!(r.code, 1, "{}{}", r.out, r.err);
    let v = json(&r);
    let dr = lines(&v, "lvs-dr", "FAIL");
    assert_eq!(dr.len(), 1, "{v}");
    let detail = dr[0]["detail"].as_str().unwrap();
    assert!(detail.starts_with(VIP_DR) && detail.contains("is not on lo"), "{detail}");
    assert!(
        detail.contains("arp_ignore on eth0 is 0") && detail.contains("arp_announce on eth0 is 0"),
        "{detail}"
    );
    assert_eq!(
        dr[0]["fix"].as_str().unwrap().split(" (").next().unwrap(),
        format!("halo lvs realserver start --vip {VIP_DR}")
    );
    // Only the service that routes to this host counts: the NAT VIP is not a DR VIP here.
    assert!(!v.to_string().contains(&format!("{VIP_NAT} (this host")), "{v}");
    let fwd = lines(&v, "ip_forward", "FAIL");
    assert_eq!(fwd.len(), 1, "{v}");
    assert!(fwd[0]["detail"].as_str().unwrap().contains("net.ipv4.ip_forward=0"), "{v}");

    // Set up as the fix says, and forwarding on: both pass.
    let state = tb.dir.join("rs-state");
    tb.exec(
        "n2",
        &[HALO, "lvs", "realserver", "start", "--vip", VIP_DR, "--state-dir", &state.to_string_lossy()],
    )
    .unwrap();
    tb.exec("n2", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
    let r = check(Some(&ns), &none, &d, "n2", &["--json"]);
    let v = json(&r);
    assert_eq!(r.code, 0, "{v}");
    let ok = lines(&v, "lvs-dr", "OK");
    assert_eq!(ok.len(), 1, "{v}");
    assert!(ok[0]["detail"].as_str().unwrap().contains("on lo, arp_ignore=1 and arp_announce=2"), "{v}");
    assert_eq!(lines(&v, "ip_forward", "OK").len(), 1, "{v}");
    tb.kill_all();
}

fn status(ns: &str, socket: &Path, json: bool) -> Option<String> {
    let mut args = vec!["netns", "exec", ns, HALO, "--socket"];
    let s = socket.to_string_lossy();
    args.push(&s);
    args.push("status");
    if json {
        args.push("--json");
    }
    let o = Command::new("ip").args(&args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).into_owned())
}

fn status_json(ns: &str, socket: &Path) -> Option<Value> {
    serde_json::from_str(&status(ns, socket, true)?).ok()
}

fn node<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["nodes"].as_array().unwrap().iter().find(|n| n["name"] == name).unwrap()
}

/// Starts halo on `host`, optionally with its clock shifted (the daemon's test hook).
fn start(tb: &mut Testbed, host: &str, dir: &Path, clock_offset_ms: Option<i64>) -> (u32, PathBuf) {
    let Some(off) = clock_offset_ms else { return tb.start_halo(host, Path::new(HALO), dir).unwrap() };
    let sock = tb.dir.join(format!("{host}.sock"));
    let state = tb.dir.join(host).join("state");
    let out = tb.dir.join(format!("{host}.out"));
    let env = format!("{}={off}", halo::run::TEST_CLOCK_OFFSET_ENV);
    let (s, c, st) = (sock.to_string_lossy(), dir.to_string_lossy(), state.to_string_lossy());
    let pid = tb
        .spawn(
            host,
            Path::new("/usr/bin/env"),
            &[&env, HALO, "--socket", &s, "run", "--config-dir", &c, "--node", host, "--state-dir", &st],
            &out,
        )
        .unwrap();
    (pid, sock)
}

#[test]
fn drift_and_clock_skew_between_two_running_nodes() {
    let Some(mut tb) = Testbed::for_test("chkrun") else { return };
    let ns1 = tb.add_host("n1", &format!("{N1}/24")).unwrap();
    let ns2 = tb.add_host("n2", &format!("{N2}/24")).unwrap();
    let d1 = tb.dir.join("n1").join("ha.d");
    let d2 = tb.dir.join("n2").join("ha.d");
    write_dir(&d1, &ha_cf("eth0"), Some("n1 dummy\n"));
    // n2's haresources is valid and different: it prefers the group itself.
    write_dir(&d2, &ha_cf("eth0"), Some("n2 dummy\n"));
    let (_p1, s1) = start(&mut tb, "n1", &d1, None);
    let (p2, s2) = start(&mut tb, "n2", &d2, Some(3000));

    let v = wait_for(Duration::from_secs(20), || {
        let v = status_json(&ns1, &s1)?;
        let skew = node(&v, "n2")["clock_skew_ms"].as_i64()?;
        (node(&v, "n2")["state"] == "active" && v["config_drift"] == serde_json::json!(["n2"]) && skew > 2000)
            .then_some(v)
    })
    .unwrap_or_else(|| panic!("n1 never saw n2 drift: {:?}", status_json(&ns1, &s1)));
    let ours = v["config_digest"].as_str().unwrap();
    assert_eq!(node(&v, "n1")["config_digest"], ours);
    assert_eq!(ours, halo_config::config_digest(&halo_config::load_dir(&d1).unwrap().model));
    let theirs = node(&v, "n2")["config_digest"].as_str().unwrap();
    assert_eq!(theirs, halo_config::config_digest(&halo_config::load_dir(&d2).unwrap().model));
    assert_ne!(ours, theirs);
    let skew = node(&v, "n2")["clock_skew_ms"].as_i64().unwrap();
    assert!((2500..=3500).contains(&skew), "n2 runs 3 s ahead; n1 measures {skew} ms");
    assert_eq!(node(&v, "n1")["clock_skew_ms"], 0);
    // n2 sees the same from its side: n1 differs and is 3 s behind.
    let v2 = wait_for(Duration::from_secs(10), || {
        let v = status_json(&ns2, &s2)?;
        (v["config_drift"] == serde_json::json!(["n1"]) && node(&v, "n1")["clock_skew_ms"].as_i64()? < -2000)
            .then_some(v)
    })
    .unwrap_or_else(|| panic!("n2 never saw n1 drift: {:?}", status_json(&ns2, &s2)));
    assert!((-3500..=-2500).contains(&node(&v2, "n1")["clock_skew_ms"].as_i64().unwrap()), "{v2}");

    let text = status(&ns1, &s1, false).unwrap();
    assert!(text.contains(&format!("Config: differs on n2 (digest n1 {ours}, n2 {theirs})")), "{text}");
    // The skew is measured (3 s and the transit of a heartbeat): the same range as above.
    let shown: Option<f64> = text.lines().find_map(|l| {
        l.strip_prefix("Clock: n2 is ")?.split_once(" s ahead of n1 (keep the clocks in step")?.0.parse().ok()
    });
    assert!(shown.is_some_and(|s| (2.5..=3.5).contains(&s)), "n2 runs 3 s ahead: {shown:?}\n{text}");

    let r = check(Some(&ns1), &s1, &d1, "n1", &[]);
    assert_eq!(r.code, 1, "{}{}", r.out, r.err);
    assert!(
        r.err.contains(&format!(
            "FAIL config drift: n2 run(s) another configuration than this node (n1 {ours}; n2 {theirs})"
        )),
        "{}",
        r.err
    );
    assert!(
        r.err.contains("WARN clock: n2 is") && r.err.contains("ahead of this host; fix: run NTP"),
        "{}",
        r.err
    );
    assert!(r.out.contains("OK   peer: n2: active, heartbeat heard"), "{}", r.out);
    assert!(
        r.out.contains(&format!("OK   reachable: ucast eth0 {N2} peer {N2} answers ICMP echo")),
        "{}",
        r.out
    );
    assert!(r.out.contains("OK   daemon: running on"), "{}", r.out);

    // n2 gets n1's configuration, written differently (comments, blank lines, layout), and
    // its clock back: no drift, no skew warning, every check passes.
    write_dir(
        &d2,
        &format!(
            "# the same cluster\n\n{}",
            ha_cf("eth0").replace("node n1 n2", "node n1   # first\nnode n2")
        ),
        Some("# one group\n\nn1    dummy   # preferred on n1\n"),
    );
    tb.stop(p2, nix::sys::signal::Signal::SIGTERM).unwrap();
    let (_p2, _s2) = start(&mut tb, "n2", &d2, None);
    let v = wait_for(Duration::from_secs(20), || {
        let v = status_json(&ns1, &s1)?;
        let skew = node(&v, "n2")["clock_skew_ms"].as_i64()?;
        (node(&v, "n2")["state"] == "active"
            && node(&v, "n2")["config_digest"] == v["config_digest"]
            && skew.abs() < 500)
            .then_some(v)
    })
    .unwrap_or_else(|| panic!("drift never went away: {:?}", status_json(&ns1, &s1)));
    assert_eq!(v["config_drift"], serde_json::json!([]));
    let text = status(&ns1, &s1, false).unwrap();
    assert!(!text.contains("Config:") && !text.contains("Clock:"), "{text}");
    let r = check(Some(&ns1), &s1, &d1, "n1", &["--json"]);
    let v = json(&r);
    assert_eq!(r.code, 0, "{v}");
    assert_eq!(v["ok"], true);
    let same = lines(&v, "config drift", "OK");
    assert_eq!(same.len(), 1, "{v}");
    assert!(same[0]["detail"].as_str().unwrap().contains("on n1 n2"), "{v}");
    assert_eq!(lines(&v, "clock", "OK").len(), 1, "{v}");
    // Nothing else to say but the test configuration's own warnings (short initdead, no log).
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "OK" || (c["status"] == "WARN" && c["check"] == "configuration")),
        "{v}"
    );
    tb.kill_all();
}
