//! End-to-end failover of seed 001's cluster: two `halo run` daemons in network namespaces,
//! `node1 IPaddr::VIP/16/eth0:0 web` in haresources (the built-in IPaddr and a Heartbeat-class
//! script starting a small HTTP server), and a client namespace fetching the page through
//! the VIP. Cables are pulled at the bridge; the answer must move to the other node and, with
//! `auto_failback on`, come back.
use halo::testbed::{wait_for, Testbed};
use std::path::{Path, PathBuf};
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 failover-secret\n";
const VIP: &str = "10.78.0.100";

/// A Heartbeat-class script whose start fails on `n1` only (HA_CURHOST) and works elsewhere.
const FLAKY: &str = r#"#!/bin/sh
D=$(cd "$(dirname "$0")/.." && pwd)
case "$1" in
start)
    [ "$HA_CURHOST" = n1 ] && { echo "flaky: refusing to start on n1" >&2; exit 1; }
    touch "$D/flaky.on"; exit 0 ;;
stop) rm -f "$D/flaky.on"; exit 0 ;;
status) if [ -f "$D/flaky.on" ]; then echo running; else echo stopped; fi ;;
esac
exit 0
"#;

/// A Heartbeat-class script whose start takes 3 s (a slow service coming up).
const SLOW_START: &str = r#"#!/bin/sh
D=$(cd "$(dirname "$0")/.." && pwd)
case "$1" in
start) sleep 3; touch "$D/slow.on"; exit 0 ;;
stop) rm -f "$D/slow.on"; exit 0 ;;
status) if [ -f "$D/slow.on" ]; then echo running; else echo stopped; fi ;;
esac
exit 0
"#;

/// How a node's `ha.cf` differs between the scenarios.
#[derive(Clone, Copy)]
struct Timing {
    deadtime: &'static str,
    warntime: &'static str,
    initdead: &'static str,
}

/// Seed 001's timing scaled down: a cable cut is noticed in a second.
const FAST: Timing = Timing { deadtime: "1", warntime: "500ms", initdead: "3" };
/// Room to restart a killed daemon before its peer declares it dead.
const SLOW: Timing = Timing { deadtime: "6", warntime: "2", initdead: "12" };

struct Cluster {
    tb: Testbed,
    pids: Vec<(String, u32)>,
}

impl Cluster {
    fn new(tag: &str) -> Option<Cluster> {
        let mut tb = Testbed::for_test(tag)?;
        tb.add_host("n1", "10.78.0.1/16").unwrap();
        tb.add_host("n2", "10.78.0.2/16").unwrap();
        tb.add_host("client", "10.78.0.9/16").unwrap();
        Some(Cluster { tb, pids: Vec::new() })
    }

    fn socket(&self, node: &str) -> PathBuf {
        self.tb.dir.join(format!("{node}.sock"))
    }

    fn config(&self, node: &str, failback: &str, haresources: &str) -> PathBuf {
        self.config_timed(node, failback, FAST, haresources)
    }

    fn config_timed(&self, node: &str, failback: &str, t: Timing, haresources: &str) -> PathBuf {
        let log = self.tb.dir.join(format!("{node}.log"));
        let cf = format!(
            "keepalive 100ms\nwarntime {}\ndeadtime {}\ninitdead {}\nbcast eth0\nauto_failback {failback}\n\
             node n1 n2\nlogfile {}\nrealtime off\n",
            t.warntime,
            t.deadtime,
            t.initdead,
            log.display()
        );
        let dir = self.tb.write_config(node, &cf, AUTHKEYS).unwrap();
        std::fs::write(dir.join("haresources"), haresources).unwrap();
        halo::testbed::install_web(&dir, node).unwrap();
        for (name, text) in [("flaky", FLAKY), ("slow", SLOW_START)] {
            halo::testbed::install_script(&dir, name, text).unwrap();
        }
        dir
    }

    fn start(&mut self, node: &str, dir: &Path) {
        let (pid, _) = self.tb.start_halo(node, Path::new(HALO), dir).unwrap();
        self.pids.push((node.to_string(), pid));
    }

    fn pid(&self, node: &str) -> u32 {
        self.pids.iter().rev().find(|(n, _)| n == node).map(|(_, p)| *p).unwrap()
    }

    /// The page the client gets through the VIP (None: no answer within 1 s).
    fn fetch(&self) -> Option<String> {
        self.tb.fetch("client", &format!("http://{VIP}/"), Duration::from_secs(1))
    }

    fn log(&self, node: &str) -> String {
        self.tb.node_log(node)
    }

    fn logs(&self) -> String {
        format!("--- n1\n{}\n--- n2\n{}", self.log("n1"), self.log("n2"))
    }

    fn addrs(&self, node: &str) -> String {
        let out = self.tb.exec(node, &["ip", "-4", "addr", "show"]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn has_vip(&self, node: &str) -> bool {
        self.addrs(node).contains(&format!("{VIP}/"))
    }

    /// Waits until the client is served by `node`; panics with both logs otherwise.
    fn served_by(&self, node: &str, within: Duration, what: &str) {
        if wait_for(within, || (self.fetch().as_deref() == Some(node)).then_some(())).is_none() {
            panic!(
                "{what}: the client was not served by {node} within {within:?} (got {:?})\n{}",
                self.fetch(),
                self.logs()
            );
        }
    }

    /// Waits until `f` holds; panics with `what` and both logs otherwise.
    fn until(&self, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
        if wait_for(within, || f().then_some(())).is_none() {
            panic!("{what} (waited {within:?})\n{}", self.logs());
        }
    }

    /// For `during`, the client is served by `node` every time it asks (allowing one lost
    /// answer for a retransmitted SYN) and `other` never holds the VIP.
    fn stays_on(&self, node: &str, other: &str, during: Duration, what: &str) {
        let end = std::time::Instant::now() + during;
        let mut misses = Vec::new();
        while std::time::Instant::now() < end {
            let got = self.fetch();
            if got.as_deref() != Some(node) {
                misses.push(got);
            }
            assert!(!self.has_vip(other), "{what}: {other} holds the VIP\n{}", self.logs());
            assert!(misses.len() <= 1, "{what}: the client got {misses:?}, not {node}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn ctl(&self, node: &str, cmd: &str) -> serde_json::Value {
        halo::control::request(&self.socket(node), cmd).unwrap_or_else(|e| panic!("{node} {cmd}: {e}"))
    }

    /// Waits until `node`'s own state of the (first) group is `running`: the client may be
    /// served before the start has been reported (SIGTERM in between hits a halo-core bug,
    /// see `sigterm_while_the_group_starts_releases_it_once_started`).
    fn running_on(&self, node: &str) {
        self.until(Duration::from_secs(10), &format!("{node} reports the group running"), || {
            halo::control::request(&self.socket(node), "status")
                .is_ok_and(|st| st["resources"]["groups"][0]["state"] == "running")
        });
    }

    /// `halo status --json` as an operator runs it.
    fn status_json(&self, node: &str) -> serde_json::Value {
        let out = std::process::Command::new(HALO)
            .arg("--socket")
            .arg(self.socket(node))
            .args(["status", "--json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "halo status --json: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The config directory of a node (as written by [`config_timed`]).
    fn dir(&self, node: &str) -> PathBuf {
        self.tb.dir.join(node).join("ha.d")
    }

    /// How many times `web start` ran on `node`.
    fn web_starts(&self, node: &str) -> usize {
        std::fs::read_to_string(self.dir(node).join("starts")).unwrap_or_default().lines().count()
    }

    /// The pid of `node`'s web server, if its pid file names a live one.
    fn web_pid(&self, node: &str) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.dir(node).join("web.pid")).ok()?.trim().parse().ok()?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).ok().map(|()| pid)
    }

    /// A client asking the VIP every 100 ms in the background, one line per answer (the
    /// page, or FAIL) in the returned file, until the testbed goes.
    fn background_client(&mut self) -> PathBuf {
        let out = self.tb.dir.join("client.answers");
        // A generous --max-time: a FAIL must mean the service was lost, not that curl was
        // scheduled late on a loaded machine.
        let script = format!("while :; do curl -s --max-time 3 http://{VIP}/ || echo FAIL; sleep 0.1; done");
        self.tb.spawn("client", Path::new("/bin/sh"), &["-c", &script], &out).unwrap();
        out
    }

    /// Kills halo on `node` with SIGKILL: what it started keeps running, orphaned.
    fn crash(&mut self, node: &str) {
        let pid = self.pid(node);
        self.tb.stop(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    }
}

impl Drop for Cluster {
    /// Orphans (web servers of a killed halo) live on in their namespaces: kill every
    /// process left in the hosts' namespaces, then let the testbed remove them.
    fn drop(&mut self) {
        for _ in 0..2 {
            for host in ["n1", "n2", "client"] {
                let Ok(out) =
                    std::process::Command::new("ip").args(["netns", "pids", &self.tb.ns(host)]).output()
                else {
                    continue;
                };
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    if let Ok(pid) = pid.parse::<i32>() {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn seed_001_vip_and_web_fail_over_and_fail_back() {
    let Some(mut c) = Cluster::new("fo") else { return };
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 web\n");
    let d1 = c.config("n1", "on", &hr);
    let d2 = c.config("n2", "on", &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.served_by("n1", Duration::from_secs(15), "initial acquisition");
    assert!(!c.has_vip("n2"), "only n1 holds the VIP");
    let label = c.tb.exec("n1", &["ip", "-4", "addr", "show", "dev", "eth0"]).unwrap();
    assert!(String::from_utf8_lossy(&label.stdout).contains("eth0:0"), "IPaddr's alias label");
    let st = c.ctl("n2", "status");
    let g = &st["resources"]["groups"][0];
    assert_eq!(g["holders"], serde_json::json!(["n1"]), "{st}");
    assert_eq!(g["key"], format!("IPaddr::{VIP}/16/eth0:0"));

    // n1 loses its cable: n2 takes the VIP and the web server after deadtime.
    std::thread::sleep(Duration::from_secs(5));
    c.tb.cable("n1", false).unwrap();
    c.served_by("n2", Duration::from_secs(10), "failover after the cable cut");
    assert!(c.log("n2").contains("node n1: is dead"));
    assert!(c.log("n2").contains("Acquiring resource group"), "{}", c.log("n2"));

    // The cable comes back: both held the group while cut; auto_failback on gives it back to
    // n1, n2 releases, and the client follows n1's announcements.
    c.tb.cable("n1", true).unwrap();
    c.served_by("n1", Duration::from_secs(10), "failback after the heal");
    assert!(
        wait_for(Duration::from_secs(5), || (!c.has_vip("n2")).then_some(())).is_some(),
        "n2 released the VIP"
    );

    // Operator moves: standby on n1 sends everything to n2, takeover brings it back.
    let r = c.ctl("n1", "standby all");
    assert!(r["ok"].as_str().unwrap().contains("standby"), "{r}");
    c.served_by("n2", Duration::from_secs(10), "halo standby");
    assert!(!c.has_vip("n1"));
    c.ctl("n1", "takeover all");
    c.served_by("n1", Duration::from_secs(10), "halo takeover");
    assert!(!c.has_vip("n2"));

    // SIGTERM: n1 releases first and says so; n2 takes over without waiting deadtime.
    c.running_on("n1");
    let pid = c.pid("n1");
    c.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(!c.has_vip("n1"), "n1 released the VIP before exiting");
    c.served_by("n2", Duration::from_secs(15), "takeover after a graceful stop");
    assert!(c.log("n2").contains("Received shutdown notice from 'n1'."), "{}", c.log("n2"));
}

/// `auto_failback off` across a cable cut: both nodes held the group while cut. Seed 003's
/// rule (halo-core: a claim seized from a node seen dead yields to the normal one) applies
/// whatever auto_failback says: the side that seized gives up, so n2 releases and n1, which
/// never stopped, keeps serving. `halo takeover` on n2 then moves the group there, and it
/// stays there (auto_failback off).
#[test]
fn auto_failback_off_healed_partition_the_seizing_side_gives_up() {
    let Some(mut c) = Cluster::new("fboff") else { return };
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 web\n");
    let d1 = c.config("n1", "off", &hr);
    let d2 = c.config("n2", "off", &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.served_by("n1", Duration::from_secs(15), "initial acquisition");
    std::thread::sleep(Duration::from_secs(3));
    c.tb.cable("n1", false).unwrap();
    c.served_by("n2", Duration::from_secs(10), "failover after the cable cut");
    assert!(c.has_vip("n1"), "the cut node keeps its group (no quorum in a pair)");

    c.tb.cable("n1", true).unwrap();
    c.until(Duration::from_secs(10), "n2 (the seizing side) released the VIP after the heal", || {
        !c.has_vip("n2")
    });
    c.served_by("n1", Duration::from_secs(10), "n1 serves after the heal");
    c.stays_on("n1", "n2", Duration::from_secs(3), "after the heal");
    let st = c.ctl("n2", "status");
    assert_eq!(st["resources"]["groups"][0]["holders"], serde_json::json!(["n1"]), "{st}");
    assert!(c.log("n2").contains("returning after partition"), "{}", c.log("n2"));

    let r = c.ctl("n2", "takeover all");
    assert!(r["ok"].as_str().unwrap().contains("takeover"), "{r}");
    c.served_by("n2", Duration::from_secs(10), "halo takeover on n2");
    c.until(Duration::from_secs(5), "n1 released the VIP after the takeover", || !c.has_vip("n1"));
    c.stays_on("n2", "n1", Duration::from_secs(3), "auto_failback off after the takeover");
}

/// `auto_failback off` without a partition: n1 stops (SIGTERM), n2 takes the group, n1
/// comes back and takes nothing; `halo takeover` on n1 moves the group back.
#[test]
fn auto_failback_off_returning_node_takes_nothing_until_takeover() {
    let Some(mut c) = Cluster::new("fboffr") else { return };
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 web\n");
    let d1 = c.config("n1", "off", &hr);
    let d2 = c.config("n2", "off", &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.served_by("n1", Duration::from_secs(15), "initial acquisition");
    c.running_on("n1");
    let pid = c.pid("n1");
    c.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    c.served_by("n2", Duration::from_secs(10), "takeover after a graceful stop");

    c.start("n1", &d1);
    c.until(Duration::from_secs(15), "n1 rejoined and knows n2 holds the group", || {
        halo::control::request(&c.socket("n1"), "status")
            .is_ok_and(|st| st["resources"]["groups"][0]["holders"] == serde_json::json!(["n2"]))
    });
    c.stays_on("n2", "n1", Duration::from_secs(5), "auto_failback off after n1's return");
    assert_eq!(c.web_starts("n1"), 1, "n1 did not start the web server again");

    c.ctl("n1", "takeover all");
    c.served_by("n1", Duration::from_secs(10), "halo takeover on the returning node");
    c.until(Duration::from_secs(5), "n2 released the VIP after the takeover", || !c.has_vip("n2"));
}

/// resource-agents' real OCF IPaddr2 and Dummy under halo: `ocf:PROVIDER:TYPE::name=value`
/// and `OCF::TYPE::INSTANCE` (parameters in `conf/OCF/Dummy/state`, a per-node state file).
/// IPaddr2 adds the VIP the client reaches the web server through; on a cable cut the
/// group, Dummy's state file included, comes up on n2.
#[test]
fn real_ocf_ipaddr2_and_dummy_fail_over() {
    let Some(mut c) = Cluster::new("ocf") else { return };
    for agent in ["IPaddr2", "Dummy"] {
        let p = Path::new("/usr/lib/ocf/resource.d/heartbeat").join(agent);
        assert!(p.exists(), "{} is missing: install resource-agents (scripts/test.sh)", p.display());
    }
    let hr = format!("n1 ocf:heartbeat:IPaddr2::ip={VIP}::cidr_netmask=16 OCF::Dummy::state web\n");
    let mut dirs = Vec::new();
    for node in ["n1", "n2"] {
        let d = c.config(node, "on", &hr);
        let conf = d.join("conf/OCF/Dummy");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("state"), format!("state={}\n", d.join("dummy.state").display())).unwrap();
        dirs.push(d);
    }
    c.start("n1", &dirs[0]);
    c.start("n2", &dirs[1]);
    c.served_by("n1", Duration::from_secs(20), "initial acquisition through OCF IPaddr2");
    let a = c.addrs("n1");
    assert!(a.contains(&format!("inet {VIP}/16")) && a.contains("eth0"), "{a}");
    assert!(!c.has_vip("n2"));
    assert!(dirs[0].join("dummy.state").exists(), "Dummy started on n1\n{}", c.logs());
    assert!(!dirs[1].join("dummy.state").exists(), "Dummy not started on n2");
    assert!(c.log("n1").contains("/usr/lib/ocf/resource.d/heartbeat/IPaddr2"), "{}", c.log("n1"));

    std::thread::sleep(Duration::from_secs(3));
    c.tb.cable("n1", false).unwrap();
    c.served_by("n2", Duration::from_secs(15), "failover after the cable cut");
    assert!(c.addrs("n2").contains(&format!("inet {VIP}/16")));
    assert!(dirs[1].join("dummy.state").exists(), "Dummy's state file followed to n2\n{}", c.logs());
    c.tb.cable("n1", true).unwrap();
    c.served_by("n1", Duration::from_secs(15), "failback after the heal");
    c.until(Duration::from_secs(10), "n2 stopped the group: VIP and Dummy state gone", || {
        !c.has_vip("n2") && !dirs[1].join("dummy.state").exists()
    });
}

/// Debian heartbeat's IPaddr2 wrapper as `heartbeat:IPaddr2::VIP/16/eth0` (halo's built-in
/// IPaddr2 is bypassed): the wrapper from /etc/ha.d/resource.d is linked into the test's
/// resource.d, where `heartbeat:NAME` looks.
#[test]
fn debian_heartbeat_ipaddr2_wrapper_fails_over() {
    let Some(mut c) = Cluster::new("hbw") else { return };
    let wrapper = Path::new("/etc/ha.d/resource.d/IPaddr2");
    assert!(wrapper.exists(), "{} is missing: install heartbeat (scripts/test.sh)", wrapper.display());
    let hr = format!("n1 heartbeat:IPaddr2::{VIP}/16/eth0 web\n");
    let mut dirs = Vec::new();
    for node in ["n1", "n2"] {
        let d = c.config(node, "on", &hr);
        for f in ["IPaddr2", "hto-mapfuncs"] {
            std::os::unix::fs::symlink(
                Path::new("/etc/ha.d/resource.d").join(f),
                d.join("resource.d").join(f),
            )
            .unwrap();
        }
        dirs.push(d);
    }
    c.start("n1", &dirs[0]);
    c.start("n2", &dirs[1]);
    c.served_by("n1", Duration::from_secs(20), "initial acquisition through the IPaddr2 wrapper");
    assert!(c.addrs("n1").contains(&format!("inet {VIP}/16")));
    assert!(!c.has_vip("n2"));
    assert!(
        c.log("n1").contains(&format!("resource.d/IPaddr2 {VIP}/16/eth0 start")),
        "the wrapper ran, not the built-in\n{}",
        c.log("n1")
    );
    std::thread::sleep(Duration::from_secs(3));
    c.tb.cable("n1", false).unwrap();
    c.served_by("n2", Duration::from_secs(15), "failover after the cable cut");
    assert!(c.addrs("n2").contains(&format!("inet {VIP}/16")));
}

/// `kill -9` of the halo holding the group leaves the VIP and the web server running; a
/// halo restarted on that node before the peer's deadtime finds them running (start-up
/// probe), keeps them without starting the web server twice, and the client keeps being
/// served by n1 throughout.
#[test]
fn restart_after_kill_9_adopts_the_running_group() {
    let Some(mut c) = Cluster::new("rst") else { return };
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 web\n");
    let d1 = c.config_timed("n1", "on", SLOW, &hr);
    let d2 = c.config_timed("n2", "on", SLOW, &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.served_by("n1", Duration::from_secs(30), "initial acquisition");
    c.running_on("n1");
    std::thread::sleep(Duration::from_secs(2));
    let web = c.web_pid("n1").expect("n1's web server runs");
    let answers = c.background_client();
    c.until(Duration::from_secs(5), "the background client is served", || {
        std::fs::read_to_string(&answers).is_ok_and(|a| a.lines().any(|l| l == "n1"))
    });

    c.crash("n1");
    assert!(c.has_vip("n1"), "the VIP stays up when halo is killed");
    assert_eq!(c.web_pid("n1"), Some(web), "the web server stays up when halo is killed");
    c.start("n1", &d1);
    c.until(Duration::from_secs(15), "the restarted n1 held the group (probed)", || {
        c.log("n1").contains("is running here already (probed)")
    });
    // Past n2's deadtime: a restart noticed as a death would move the group now.
    c.stays_on("n1", "n2", Duration::from_secs(10), "after the restart");
    assert_eq!(c.web_starts("n1"), 1, "the web server was started once\n{}", c.logs());
    assert_eq!(c.web_starts("n2"), 0, "n2 never started it\n{}", c.logs());
    assert_eq!(c.web_pid("n1"), Some(web), "the same web server still serves");
    // Every answer through the crash and the restart came from n1; at most one was lost.
    let got = std::fs::read_to_string(&answers).unwrap();
    let lines: Vec<&str> = got.lines().skip_while(|l| *l != "n1").collect();
    assert!(lines.len() > 20, "the client kept asking: {lines:?}");
    assert!(lines.iter().all(|l| *l == "n1" || *l == "FAIL"), "{lines:?}");
    assert!(lines.iter().filter(|l| **l == "FAIL").count() <= 1, "service was lost: {lines:?}");
    let st = c.ctl("n2", "status");
    assert_eq!(st["resources"]["groups"][0]["holders"], serde_json::json!(["n1"]), "{st}");
    assert!(!c.log("n2").contains("node n1: is dead"), "{}", c.log("n2"));

    // The restarted halo holds the adopted VIP like one it started: removed behind its
    // back, it is put back by the address watch (not by a restart of the whole group).
    c.tb.exec("n1", &["ip", "addr", "del", &format!("{VIP}/16"), "dev", "eth0"]).unwrap();
    c.until(Duration::from_secs(10), "the adopted VIP was put back on n1", || c.has_vip("n1"));
    c.served_by("n1", Duration::from_secs(10), "after the adopted VIP was restored");
    c.until(Duration::from_secs(5), "the removal was logged", || c.log("n1").contains("behind halo's back"));
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(c.web_starts("n1"), 1, "the group was not restarted\n{}", c.logs());
}

/// The orphan case: n1's halo is killed, n2 takes the group over after deadtime, then n1's
/// halo restarts (auto_failback off) and finds the orphaned VIP and web server: they must
/// be removed there, since n2 owns the group now.
#[test]
fn restart_after_takeover_removes_the_orphaned_vip() {
    let Some(mut c) = Cluster::new("orph") else { return };
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 web\n");
    let d1 = c.config("n1", "off", &hr);
    let d2 = c.config("n2", "off", &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.served_by("n1", Duration::from_secs(15), "initial acquisition");
    c.running_on("n1");
    std::thread::sleep(Duration::from_secs(2));
    c.crash("n1");
    c.until(Duration::from_secs(10), "n2 took the group over", || c.has_vip("n2"));
    c.served_by("n2", Duration::from_secs(10), "failover after kill -9");
    assert!(c.has_vip("n1"), "the orphaned VIP is still on n1 while its halo is down");

    c.start("n1", &d1);
    c.until(Duration::from_secs(15), "the restarted n1 removed the orphaned VIP", || !c.has_vip("n1"));
    c.until(Duration::from_secs(5), "the orphaned web server on n1 stopped", || c.web_pid("n1").is_none());
    c.stays_on("n2", "n1", Duration::from_secs(5), "after n1's restart");
    let st = c.ctl("n1", "status");
    assert_eq!(st["resources"]["groups"][0]["holders"], serde_json::json!(["n2"]), "{st}");
}

/// A held VIP deleted behind halo's back (`ip addr del`) is put back by the executor's
/// address watch, logged, and the client is served again by the same node.
#[test]
fn vip_removed_behind_halos_back_is_restored() {
    let Some(mut c) = Cluster::new("adel") else { return };
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 web\n");
    let d1 = c.config("n1", "on", &hr);
    let d2 = c.config("n2", "on", &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.served_by("n1", Duration::from_secs(15), "initial acquisition");
    c.running_on("n1");
    c.tb.exec("n1", &["ip", "addr", "del", &format!("{VIP}/16"), "dev", "eth0"]).unwrap();
    c.until(Duration::from_secs(10), "the VIP was put back on n1", || c.has_vip("n1"));
    c.served_by("n1", Duration::from_secs(10), "after the VIP was restored");
    c.until(Duration::from_secs(5), "the removal was logged", || {
        c.log("n1").contains("behind halo's back") && c.log("n1").contains("restored and announced again")
    });
    assert!(!c.has_vip("n2"));
    assert_eq!(c.web_starts("n1"), 1, "the group was not restarted\n{}", c.logs());
}

/// A resource whose start fails on the preferred node only: the group runs on n2, n1's
/// status shows it failed there with the error, and `halo cleanup` clears the failure.
#[test]
fn start_failure_on_the_preferred_node_runs_the_group_elsewhere() {
    let Some(mut c) = Cluster::new("sfail") else { return };
    // auto_failback off: after the cleanup the group stays where it runs instead of failing
    // on n1 again.
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 flaky web\n");
    let d1 = c.config("n1", "off", &hr);
    let d2 = c.config("n2", "off", &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.served_by("n2", Duration::from_secs(20), "the group runs on n2 after failing on n1");
    assert!(!c.has_vip("n1"), "n1 undid its partial start\n{}", c.logs());
    assert_eq!(c.web_starts("n1"), 0, "web comes after flaky: never started on n1");
    let st = c.status_json("n1");
    let g = &st["resources"]["groups"][0];
    assert_eq!(g["failed"], serde_json::json!(true), "{st}");
    let err = g["last_error"].as_str().unwrap_or_default();
    assert!(err.contains("flaky"), "last_error names the resource: {st}");
    assert_eq!(g["holders"], serde_json::json!(["n2"]), "{st}");
    assert!(c.log("n1").contains("refusing to start on n1"), "the agent's output is logged");

    let out =
        std::process::Command::new(HALO).arg("--socket").arg(c.socket("n1")).arg("cleanup").output().unwrap();
    assert!(out.status.success(), "halo cleanup: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 failed group(s) cleared"));
    let st = c.status_json("n1");
    let g = &st["resources"]["groups"][0];
    assert_eq!(g["failed"], serde_json::json!(false), "{st}");
    assert_eq!(g["last_error"], serde_json::Value::Null, "{st}");
    c.stays_on("n2", "n1", Duration::from_secs(3), "after the cleanup (auto_failback off)");
}

/// The web server killed in place: the monitor (every MONITOR_INTERVAL_MS) finds it stopped
/// and the group is restarted on the same node.
#[test]
fn monitored_resource_killed_is_restarted_in_place() {
    let Some(mut c) = Cluster::new("mon") else { return };
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 web\n");
    let d1 = c.config("n1", "on", &hr);
    let d2 = c.config("n2", "on", &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.served_by("n1", Duration::from_secs(15), "initial acquisition");
    c.running_on("n1");
    let web = c.web_pid("n1").expect("n1's web server runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(web), nix::sys::signal::Signal::SIGKILL).unwrap();
    c.until(Duration::from_secs(20), "the web server was started again on n1", || c.web_starts("n1") == 2);
    c.served_by("n1", Duration::from_secs(10), "after the restart in place");
    assert!(c.web_pid("n1").is_some_and(|p| p != web), "a new web server runs");
    assert!(c.log("n1").contains("failed its monitor"), "{}", c.log("n1"));
    assert!(!c.has_vip("n2"));
    assert_eq!(c.web_starts("n2"), 0, "the group did not move\n{}", c.logs());
}

/// SIGTERM while the group is still starting: halo lets the start finish, then releases the
/// group, says `shutdone` and exits; n2 takes over at once.
#[test]
fn sigterm_while_the_group_starts_releases_it_once_started() {
    let Some(mut c) = Cluster::new("termst") else { return };
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 slow web\n");
    let d1 = c.config("n1", "on", &hr);
    let d2 = c.config("n2", "on", &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.until(Duration::from_secs(15), "n1 is starting the slow resource", || {
        c.log("n1").contains("resource.d/slow start")
    });
    let pid = c.pid("n1");
    let code = c.tb.stop(pid, nix::sys::signal::Signal::SIGTERM);
    assert!(matches!(code, Ok(Some(0))), "n1 exited cleanly: {code:?}\n{}", c.logs());
    assert!(!c.has_vip("n1"), "n1 released the VIP before exiting");
    assert!(!d1.join("slow.on").exists() && c.web_pid("n1").is_none(), "n1 stopped its resources");
    c.served_by("n2", Duration::from_secs(10), "takeover after a graceful stop during a start");
}

/// A resource that keeps dying: restarted in place MAX_RESTARTS times, then the group moves
/// to n2 and n1 reports it failed there.
#[test]
fn resource_dying_too_often_moves_the_group_away() {
    let Some(mut c) = Cluster::new("monx") else { return };
    let hr = format!("n1 IPaddr::{VIP}/16/eth0:0 web\n");
    let d1 = c.config("n1", "on", &hr);
    let d2 = c.config("n2", "on", &hr);
    c.start("n1", &d1);
    c.start("n2", &d2);
    c.served_by("n1", Duration::from_secs(15), "initial acquisition");
    c.running_on("n1");
    let restarts = halo_core::resources::MAX_RESTARTS;
    for n in 1..=restarts {
        let web = c.web_pid("n1").expect("n1's web server runs");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(web), nix::sys::signal::Signal::SIGKILL).unwrap();
        c.until(Duration::from_secs(20), &format!("restart {n} in place"), || c.web_starts("n1") == n + 1);
        // The next kill must hit a started group, not the start in progress.
        c.running_on("n1");
        c.served_by("n1", Duration::from_secs(10), &format!("after restart {n} in place"));
    }
    let web = c.web_pid("n1").expect("n1's web server runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(web), nix::sys::signal::Signal::SIGKILL).unwrap();
    c.served_by("n2", Duration::from_secs(20), "the group moved after one failure too many");
    c.until(Duration::from_secs(5), "n1 released the VIP", || !c.has_vip("n1"));
    assert_eq!(c.web_starts("n1"), restarts + 1, "no restart in place after the last failure");
    let st = c.status_json("n1");
    assert_eq!(st["resources"]["groups"][0]["failed"], serde_json::json!(true), "{st}");
}

/// Restart safety with resource-agents' OCF IPaddr2 and Dummy: after `kill -9` and a quick
/// restart, their `monitor` probes find them running; nothing is started twice and the
/// group stays on n1.
#[test]
fn restart_after_kill_9_with_ocf_agents_starts_nothing_twice() {
    let Some(mut c) = Cluster::new("rstocf") else { return };
    let hr = format!("n1 ocf:heartbeat:IPaddr2::ip={VIP}::cidr_netmask=16 OCF::Dummy::state web\n");
    let mut dirs = Vec::new();
    for node in ["n1", "n2"] {
        let d = c.config_timed(node, "on", SLOW, &hr);
        let conf = d.join("conf/OCF/Dummy");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("state"), format!("state={}\n", d.join("dummy.state").display())).unwrap();
        dirs.push(d);
    }
    c.start("n1", &dirs[0]);
    c.start("n2", &dirs[1]);
    c.served_by("n1", Duration::from_secs(30), "initial acquisition");
    c.running_on("n1");
    c.crash("n1");
    c.start("n1", &dirs[0]);
    c.until(Duration::from_secs(15), "the restarted n1 held the group (probed)", || {
        c.log("n1").contains("is running here already (probed)")
    });
    c.stays_on("n1", "n2", Duration::from_secs(8), "after the restart");
    // n1's logfile holds both lives (its .out only the second).
    let logfile = std::fs::read_to_string(c.tb.dir.join("n1.log")).unwrap();
    let starts = |what: &str| logfile.matches(what).count();
    assert_eq!(starts("heartbeat/IPaddr2 start"), 1, "IPaddr2 started once\n{}", c.log("n1"));
    assert_eq!(starts("heartbeat/Dummy start"), 1, "Dummy started once\n{}", c.log("n1"));
    assert_eq!(c.web_starts("n1"), 1, "web started once\n{}", c.logs());
    assert!(dirs[0].join("dummy.state").exists() && !dirs[1].join("dummy.state").exists());
}
