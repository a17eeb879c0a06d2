//! End-to-end reload (`halo reload`, SIGHUP) on a two-node cluster in network namespaces:
//! n1 holds a group with a VIP and a counting script. An unchanged configuration touches
//! nothing (`ip monitor address` sees no change of the VIP, the script is not run again);
//! a group added to haresources starts alone; a changed group restarts alone; an invalid
//! haresources line is refused with its file:line and the running configuration stays.
use halo::testbed::{wait_for, Testbed};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 reload-secret\n";
const VIP: &str = "10.79.0.100";

/// A Heartbeat-class script `count::NAME` (called `count NAME OP`): each start and stop is
/// appended to `<config dir>/ops` as `start NAME` / `stop NAME`.
const COUNT: &str = r#"#!/bin/sh
D=$(cd "$(dirname "$0")/.." && pwd)
case "$2" in
start) echo "start $1" >> "$D/ops"; touch "$D/on.$1"; exit 0 ;;
stop) [ -f "$D/on.$1" ] && echo "stop $1" >> "$D/ops"; rm -f "$D/on.$1"; exit 0 ;;
status) if [ -f "$D/on.$1" ]; then echo running; else echo stopped; fi ;;
esac
exit 0
"#;

struct Cluster {
    tb: Testbed,
    dirs: Vec<(String, PathBuf)>,
}

impl Cluster {
    fn dir(&self, node: &str) -> &Path {
        &self.dirs.iter().find(|(n, _)| n == node).unwrap().1
    }

    fn socket(&self, node: &str) -> PathBuf {
        self.tb.dir.join(format!("{node}.sock"))
    }

    fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.tb.dir.join(format!("{node}.log"))).unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!("--- n1\n{}\n--- n2\n{}", self.log("n1"), self.log("n2"))
    }

    fn ops(&self, node: &str) -> Vec<String> {
        std::fs::read_to_string(self.dir(node).join("ops"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn set_haresources(&self, text: &str) {
        for (_, d) in &self.dirs {
            std::fs::write(d.join("haresources"), text).unwrap();
        }
    }

    /// `halo reload` against a node's daemon: (exit code, stdout, stderr).
    fn reload(&self, node: &str) -> (i32, String, String) {
        let out = Command::new(HALO).arg("--socket").arg(self.socket(node)).arg("reload").output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn wait_ops(&self, node: &str, want: &[&str], what: &str) {
        let ok = wait_for(Duration::from_secs(30), || (self.ops(node) == want).then_some(()));
        assert!(
            ok.is_some(),
            "{what}: ops on {node} are {:?}, expected {want:?}\n{}",
            self.ops(node),
            self.logs()
        );
    }

    /// Lines `ip monitor address` printed about the VIP on n1.
    fn vip_events(&self) -> Vec<String> {
        std::fs::read_to_string(self.tb.dir.join("n1-monitor.out"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(VIP))
            .map(str::to_string)
            .collect()
    }

    fn group_state(&self, node: &str, key: &str) -> Option<String> {
        let v = halo::control::request(&self.socket(node), "status").ok()?;
        v.pointer("/resources/groups")?
            .as_array()?
            .iter()
            .find(|g| g["key"] == key)
            .and_then(|g| g["state"].as_str().map(str::to_string))
    }
}

fn cluster(tag: &str) -> Option<Cluster> {
    let mut tb = Testbed::for_test(tag)?;
    tb.add_host("n1", "10.79.0.1/16").unwrap();
    tb.add_host("n2", "10.79.0.2/16").unwrap();
    let mut dirs = Vec::new();
    for node in ["n1", "n2"] {
        let log = tb.dir.join(format!("{node}.log"));
        let cf = format!(
            "keepalive 100ms\nwarntime 1\ndeadtime 2\ninitdead 4\nbcast eth0\nauto_failback on\n\
             node n1 n2\nlogfile {}\nrealtime off\n",
            log.display()
        );
        let dir = tb.write_config(node, &cf, AUTHKEYS).unwrap();
        halo::testbed::install_script(&dir, "count", COUNT).unwrap();
        dirs.push((node.to_string(), dir));
    }
    Some(Cluster { tb, dirs })
}

const GROUP_A: &str = "n1 IPaddr::10.79.0.100/16/eth0 count::a\n";

#[test]
fn reload_applies_only_the_difference() {
    let Some(mut c) = cluster("rld") else { return };
    c.set_haresources(GROUP_A);
    let mut pids = Vec::new();
    for node in ["n1", "n2"] {
        let dir = c.dir(node).to_path_buf();
        // `ip netns exec` execs the daemon: this is its pid.
        pids.push(c.tb.start_halo(node, Path::new(HALO), &dir).unwrap().0 as i32);
    }
    let hup = |pid: i32| {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP).unwrap()
    };
    c.wait_ops("n1", &["start a"], "n1 takes its group");
    let monitor = c.tb.dir.join("n1-monitor.out");
    let mon_pid = c.tb.spawn("n1", Path::new("ip"), &["monitor", "address"], &monitor).unwrap();
    // The monitor is listening once it reports a change we make ourselves (made again and
    // again: it may subscribe after the first one).
    let listening = wait_for(Duration::from_secs(10), || {
        let _ = c.tb.exec("n1", &["ip", "addr", "add", "10.79.0.77/32", "dev", "lo"]);
        let _ = c.tb.exec("n1", &["ip", "addr", "del", "10.79.0.77/32", "dev", "lo"]);
        std::fs::read_to_string(&monitor).unwrap_or_default().contains("10.79.0.77").then_some(())
    });
    assert!(listening.is_some(), "ip monitor address did not start");

    // 1. Unchanged configuration: SIGHUP and `halo reload` touch nothing.
    hup(pids[0]);
    let reloaded = wait_for(Duration::from_secs(10), || {
        c.log("n1").contains("reload: configuration reloaded: nothing changed").then_some(())
    });
    assert!(reloaded.is_some(), "SIGHUP did not reload\n{}", c.logs());
    assert!(c.log("n1").contains("SIGHUP: log files reopened"), "{}", c.log("n1"));
    let (code, out, err) = c.reload("n1");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "configuration reloaded: nothing changed\n");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.ops("n1"), ["start a"], "an unchanged reload restarted the group\n{}", c.logs());
    assert!(c.vip_events().is_empty(), "an unchanged reload touched the VIP: {:?}", c.vip_events());

    // 2. A second group: it alone starts.
    c.set_haresources(&format!("{GROUP_A}n1 count::b\n"));
    let (code, out, err) = c.reload("n2");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = c.reload("n1");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out, "configuration reloaded:\n  group count::b: added\n", "{err}");
    c.wait_ops("n1", &["start a", "start b"], "the added group starts");
    assert!(c.vip_events().is_empty(), "adding a group touched the VIP: {:?}", c.vip_events());
    // The ops file shows the start as it happens; the engine marks the group running a
    // moment later.
    let running = wait_for(Duration::from_secs(10), || {
        (c.group_state("n1", "count::b").as_deref() == Some("running")).then_some(())
    });
    assert!(
        running.is_some(),
        "the added group is not running: {:?}\n{}",
        c.group_state("n1", "count::b"),
        c.logs()
    );

    // 3. The second group changes: it alone is restarted, with its new resources.
    c.set_haresources(&format!("{GROUP_A}n1 count::b count::c\n"));
    let (code, out, err) = c.reload("n2");
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = c.reload("n1");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  group count::b: changed (restarted where it runs)\n"), "{out}");
    assert!(out.contains("stopping group(s) count::b here first"), "{out}");
    c.wait_ops("n1", &["start a", "start b", "stop b", "start b", "start c"], "the changed group restarts");
    assert!(c.vip_events().is_empty(), "changing another group touched the VIP: {:?}", c.vip_events());

    // 4. An invalid haresources line: refused with file:line, the running config stays.
    c.set_haresources(&format!("{GROUP_A}n1 count::b count::c\nn2\n"));
    let (code, out, err) = c.reload("n1");
    assert_ne!(code, 0, "an invalid configuration was accepted: {out}");
    assert!(err.contains("haresources:3:") && err.contains("has no resources"), "{err}");
    hup(pids[0]);
    let refused = wait_for(Duration::from_secs(10), || {
        (c.log("n1").matches("reload refused, the running configuration stays").count() >= 2).then_some(())
    });
    assert!(refused.is_some(), "SIGHUP with an invalid configuration was not refused\n{}", c.log("n1"));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(c.ops("n1"), ["start a", "start b", "stop b", "start b", "start c"]);
    // The restarted group is marked running a moment after its last start ran.
    let running = |key: &str| c.group_state("n1", key).as_deref() == Some("running");
    let both = wait_for(Duration::from_secs(10), || {
        (running("count::b") && running(&format!("IPaddr::{VIP}/16/eth0"))).then_some(())
    });
    assert!(both.is_some(), "both groups run on n1 after the refused reload\n{}", c.log("n1"));
    assert!(c.vip_events().is_empty(), "{:?}", c.vip_events());

    // 5. Timing changes apply without dropping membership; a new udpport needs a restart.
    let cf = std::fs::read_to_string(c.dir("n1").join("ha.cf")).unwrap();
    let faster = cf.replace("deadtime 2\n", "deadtime 3\n") + "udpport 7000\n";
    std::fs::write(c.dir("n1").join("ha.cf"), faster).unwrap();
    c.set_haresources(&format!("{GROUP_A}n1 count::b count::c\n"));
    let (code, out, err) = c.reload("n1");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  deadtime: 2000 ms -> 3000 ms\n"), "{out}");
    assert!(out.contains("restart needed for: udpport"), "{out}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(halo::testbed::node_state(&c.socket("n1"), "n2").as_deref(), Some("active"), "{}", c.logs());
    assert_eq!(halo::testbed::node_state(&c.socket("n2"), "n1").as_deref(), Some("active"), "{}", c.logs());
    let v = halo::control::request(&c.socket("n2"), "status").unwrap();
    let dt =
        v["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "n1").unwrap()["deadtime_ms"].as_u64();
    assert_eq!(dt, Some(3000), "n2 judges n1 by the deadtime n1 advertises now");
    assert_eq!(c.ops("n1"), ["start a", "start b", "stop b", "start b", "start c"]);
    assert!(c.vip_events().is_empty(), "{:?}", c.vip_events());
    // The monitor was listening all along: a change made now is seen at once.
    let still = wait_for(Duration::from_secs(10), || {
        let _ = c.tb.exec("n1", &["ip", "addr", "add", "10.79.0.78/32", "dev", "lo"]);
        std::fs::read_to_string(&monitor).unwrap_or_default().contains("10.79.0.78").then_some(())
    });
    assert!(still.is_some(), "ip monitor address stopped reporting: the VIP checks above saw nothing");
    c.tb.stop(mon_pid, nix::sys::signal::Signal::SIGTERM).ok();
}

/// `halo status --json`'s director real servers on a node: (address, weight, health).
fn status_reals(c: &Cluster, node: &str) -> Vec<(String, Option<u64>, String)> {
    let out =
        Command::new(HALO).arg("--socket").arg(c.socket(node)).args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let vs = v["director"]["virtual_services"].as_array().cloned().unwrap_or_default();
    vs.iter()
        .flat_map(|s| s["real_servers"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["address"].as_str().unwrap_or("").to_string(),
                r["weight"].as_u64(),
                r["health"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

const LB_CF: &str = "checktimeout=1\ncheckinterval=1\n\nvirtual=10.79.0.100:80\n\treal=10.79.0.2:80 gate 1\n\
                     \tchecktype=connect\n\tservice=http\n\tscheduler=rr\n";

/// A director resource whose ldirectord.cf changes (its haresources line does not) is
/// reconfigured in place: the group is not restarted and the real server kept keeps its
/// health (it is `up` at once, not down until checked again); the new one joins.
#[test]
fn reload_reconfigures_a_director_in_place() {
    let Some(mut c) = cluster("rldd") else { return };
    c.set_haresources("n1 ldirectord::lb.cf\n");
    for (_, d) in &c.dirs {
        std::fs::write(d.join("lb.cf"), halo::testbed::ldirectord_cf_logging_in(d, LB_CF)).unwrap();
    }
    let web = c.tb.dir.join("n2-web.out");
    c.tb.spawn("n2", Path::new("/usr/bin/python3"), &["-m", "http.server", "80", "--bind", "0.0.0.0"], &web)
        .unwrap();
    for node in ["n1", "n2"] {
        let dir = c.dir(node).to_path_buf();
        c.tb.start_halo(node, Path::new(HALO), &dir).unwrap();
    }
    let up = ("10.79.0.2:80".to_string(), Some(1), "up".to_string());
    let ok = wait_for(Duration::from_secs(30), || (status_reals(&c, "n1") == [up.clone()]).then_some(()));
    assert!(
        ok.is_some(),
        "the director did not find its real server up: {:?}\n{}",
        status_reals(&c, "n1"),
        c.logs()
    );

    let more = LB_CF.replace("\tchecktype", "\treal=10.79.0.3:80 gate 1\n\tchecktype");
    for (_, d) in &c.dirs {
        std::fs::write(d.join("lb.cf"), halo::testbed::ldirectord_cf_logging_in(d, &more)).unwrap();
    }
    let (code, out, err) = c.reload("n1");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("lb.cf: changed (director reconfigured)"), "{out}");
    let done = wait_for(Duration::from_secs(10), || {
        c.log("n1").contains("reload: director for").then(|| status_reals(&c, "n1"))
    });
    let reals = done.unwrap_or_else(|| panic!("the director was not reconfigured\n{}", c.logs()));
    assert!(c.log("n1").contains("reconfigured:"), "{}", c.log("n1"));
    assert_eq!(reals.first(), Some(&up), "the kept real server lost its health: {reals:?}");
    assert!(reals.iter().any(|(a, _, _)| a == "10.79.0.3:80"), "the new real server is missing: {reals:?}");
    let log = c.log("n1");
    assert!(!log.contains("stopping group"), "the director's group was restarted:\n{log}");
    assert_eq!(log.matches("starting group ldirectord::lb.cf").count(), 1, "{log}");
}
