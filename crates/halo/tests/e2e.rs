//! End-to-end membership tests: real `halo run` daemons in network namespaces created here,
//! real UDP (ucast, bcast, mcast), a serial link over a pty pair, cables pulled at a bridge.
//! They need root; without it they fail when HALO_REQUIRE_ROOT=1 (CI) and are skipped
//! with a note otherwise.
use halo::testbed::{is_root, node_state, wait_for, Testbed};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 2\n2 sha256 e2e-secret\n";

fn testbed(tag: &str) -> Option<Testbed> {
    if !is_root() {
        if std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1") {
            panic!("this test needs root (network namespaces) and HALO_REQUIRE_ROOT=1");
        }
        eprintln!("skipping: not root (set HALO_REQUIRE_ROOT=1 to make this a failure)");
        return None;
    }
    Some(Testbed::new(tag).expect("testbed"))
}

struct Cluster {
    tb: Testbed,
    nodes: Vec<String>,
    pids: Vec<u32>,
}

impl Cluster {
    fn socket(&self, node: &str) -> PathBuf {
        self.tb.dir.join(format!("{node}.sock"))
    }

    fn start(&mut self, node: &str, ha_cf: &str) {
        let log = self.tb.dir.join(format!("{node}.log"));
        let cf = format!("{ha_cf}logfile {}\nrealtime off\n", log.display());
        let dir = self.tb.write_config(node, &cf, AUTHKEYS).unwrap();
        let (pid, _) = self.tb.start_halo(node, Path::new(HALO), &dir).unwrap();
        self.pids.push(pid);
    }

    fn state(&self, observer: &str, node: &str) -> Option<String> {
        node_state(&self.socket(observer), node)
    }

    /// Every pair of `among` sees each other in `state`, within `timeout`.
    fn wait_all(&self, among: &[&str], state: &str, timeout: Duration) {
        let ok = wait_for(timeout, || {
            among
                .iter()
                .all(|a| among.iter().all(|b| self.state(a, b).as_deref() == Some(state)))
                .then_some(())
        });
        if ok.is_none() {
            let mut report = String::new();
            for a in among {
                let v = halo::control::request(&self.socket(a), "status").ok();
                report
                    .push_str(&format!("\n{a}: {}", v.map(|v| v.to_string()).unwrap_or("no answer".into())));
                report.push_str(&format!("\n--- {a}.log\n{}", self.log(a)));
            }
            panic!("not all of {among:?} saw each other {state} within {timeout:?}:{report}");
        }
    }

    fn wait_state(&self, observer: &str, node: &str, state: &str, timeout: Duration) -> Duration {
        let t = Instant::now();
        if wait_for(timeout, || (self.state(observer, node).as_deref() == Some(state)).then_some(()))
            .is_none()
        {
            panic!(
                "{observer} did not see {node} {state} within {timeout:?} (it says {:?})\n--- {observer}.log\n{}",
                self.state(observer, node),
                self.log(observer)
            );
        }
        t.elapsed()
    }

    fn log(&self, node: &str) -> String {
        self.tb.node_log(node)
    }

    fn status(&self, node: &str) -> serde_json::Value {
        halo::control::request(&self.socket(node), "status").expect("status")
    }
}

const TIMING: &str = "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\n";

fn cluster(tag: &str, n: usize) -> Option<Cluster> {
    let mut tb = testbed(tag)?;
    let mut nodes = Vec::new();
    for i in 1..=n {
        let name = format!("n{i}");
        tb.add_host(&name, &format!("10.77.{}.{}/16", i / 200, i % 200 + 1)).unwrap();
        nodes.push(name);
    }
    Some(Cluster { tb, nodes, pids: Vec::new() })
}

fn addr(i: usize) -> String {
    format!("10.77.{}.{}", i / 200, i % 200 + 1)
}

/// Three nodes over `media`: all active; one cable pulled: dead for the others (and they
/// for it) after deadtime; cable back: active again.
fn three_nodes_over(tag: &str, media: &str) {
    let Some(mut c) = cluster(tag, 3) else { return };
    let cf = format!("{TIMING}udpport 694\n{media}node n1 n2 n3\n");
    for n in c.nodes.clone() {
        c.start(&n, &cf);
    }
    c.wait_all(&["n1", "n2", "n3"], "active", Duration::from_secs(10));
    let st = c.status("n1");
    assert_eq!(st["node"], "n1");
    let nodes = st["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        assert_eq!(n["state"], "active");
        assert!(n["generation"].as_u64().unwrap() > 0);
        assert_eq!(n["links"][0]["name"], "eth0");
        assert_eq!(n["links"][0]["state"], "up");
    }
    // Past the 5 s during which starting nodes advertise a longer deadtime.
    std::thread::sleep(Duration::from_secs(5));
    // The clock starts before the cable is pulled: `took` can only overstate the time from
    // the cut to n1's verdict (a slow `ip` or a late wake-up adds to it, never takes from
    // it), so a `took` under deadtime (1 s, less a keepalive and some slack) means n3 was
    // declared dead early.
    let cut = Instant::now();
    c.tb.cable("n3", false).unwrap();
    c.wait_state("n1", "n3", "dead", Duration::from_secs(5));
    let took = cut.elapsed();
    c.wait_state("n2", "n3", "dead", Duration::from_secs(2));
    c.wait_state("n3", "n1", "dead", Duration::from_secs(2));
    assert!(took >= Duration::from_millis(700), "declared dead after {took:?}, before deadtime");
    assert_eq!(c.state("n1", "n2").as_deref(), Some("active"), "n1 and n2 still see each other");
    assert!(c.log("n1").contains("node n3: is dead"), "{}", c.log("n1"));
    assert!(c.log("n1").contains("Link n3:eth0 dead."));
    c.tb.cable("n3", true).unwrap();
    c.wait_all(&["n1", "n2", "n3"], "active", Duration::from_secs(5));
    assert!(c.log("n1").contains("Cluster node n3 returning after partition."));
    assert!(c.log("n1").contains("Link n3:eth0 up."));
}

#[test]
fn three_nodes_ucast() {
    let media: String = (1..=3).map(|i| format!("ucast eth0 {}\n", addr(i))).collect();
    three_nodes_over("uc", &media);
}

#[test]
fn three_nodes_mcast() {
    three_nodes_over("mc", "mcast eth0 225.0.0.7 694 1 0\n");
}

#[test]
fn three_nodes_bcast() {
    three_nodes_over("bc", "bcast eth0\n");
}

/// A null-modem cable made of two ptys and a relay that can be cut.
struct NullModem {
    paths: [String; 2],
    cut: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    _slaves: Vec<std::os::fd::OwnedFd>,
}

impl NullModem {
    fn new() -> NullModem {
        use std::os::fd::AsFd;
        let a = nix::pty::openpty(None, None).unwrap();
        let b = nix::pty::openpty(None, None).unwrap();
        let paths = [
            nix::unistd::ttyname(a.slave.as_fd()).unwrap().to_string_lossy().into_owned(),
            nix::unistd::ttyname(b.slave.as_fd()).unwrap().to_string_lossy().into_owned(),
        ];
        let cut = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c2, s2) = (cut.clone(), stop.clone());
        let (ma, mb) = (a.master, b.master);
        std::thread::spawn(move || {
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let mut buf = [0u8; 4096];
            while !s2.load(Ordering::Relaxed) {
                let mut fds =
                    [PollFd::new(ma.as_fd(), PollFlags::POLLIN), PollFd::new(mb.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0) <= 0 {
                    continue;
                }
                let ready: Vec<bool> =
                    fds.iter().map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN))).collect();
                for (i, r) in ready.into_iter().enumerate() {
                    if !r {
                        continue;
                    }
                    let (from, to) = if i == 0 { (&ma, &mb) } else { (&mb, &ma) };
                    if let Ok(n) = nix::unistd::read(from, &mut buf) {
                        if n > 0 && !c2.load(Ordering::Relaxed) {
                            let _ = nix::unistd::write(to, &buf[..n]);
                        }
                    }
                }
            }
        });
        NullModem { paths, cut, stop, _slaves: vec![a.slave, b.slave] }
    }
}

impl Drop for NullModem {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn serial_and_ethernet_links_one_cut_is_not_a_death() {
    let Some(mut c) = cluster("se", 2) else {
        return;
    };
    let modem = NullModem::new();
    for (i, n) in ["n1", "n2"].iter().enumerate() {
        let cf =
            format!("{TIMING}udpport 694\nbcast eth0\nbaud 115200\nserial {}\nnode n1 n2\n", modem.paths[i]);
        c.start(n, &cf);
    }
    c.wait_all(&["n1", "n2"], "active", Duration::from_secs(10));
    let links = c.status("n1")["nodes"][1]["links"].clone();
    assert_eq!(links.as_array().unwrap().len(), 2, "{links}");
    std::thread::sleep(Duration::from_secs(5));
    // Ethernet cut: the serial link carries the heartbeats, nobody dies.
    c.tb.cable("n2", false).unwrap();
    let dead_link = wait_for(Duration::from_secs(4), || {
        let l = c.status("n1")["nodes"][1]["links"].clone();
        (l[0]["state"] == "dead").then_some(l)
    })
    .expect("eth0 link of n2 must go dead");
    assert_eq!(dead_link[1]["state"], "up", "serial link must stay up: {dead_link}");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(c.state("n1", "n2").as_deref(), Some("active"));
    assert_eq!(c.state("n2", "n1").as_deref(), Some("active"));
    let log = c.log("n1");
    assert!(log.contains("WARN: Link n2:eth0 dead."), "{log}");
    assert!(!log.contains("node n2: is dead"), "{log}");
    // Serial cut too: now it is a death.
    modem.cut.store(true, Ordering::Relaxed);
    c.wait_state("n1", "n2", "dead", Duration::from_secs(4));
    modem.cut.store(false, Ordering::Relaxed);
    c.tb.cable("n2", true).unwrap();
    c.wait_all(&["n1", "n2"], "active", Duration::from_secs(5));
}

#[test]
fn thirty_two_nodes_on_one_bridge() {
    let Some(mut c) = cluster("32", 32) else {
        return;
    };
    let names: Vec<String> = c.nodes.clone();
    let cf = format!(
        "keepalive 200ms\nwarntime 1\ndeadtime 3\ninitdead 6\nudpport 694\nbcast eth0\nnode {}\n",
        names.join(" ")
    );
    for n in &names {
        c.start(n, &cf);
    }
    let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    c.wait_all(&refs, "active", Duration::from_secs(30));
    for n in &refs {
        let st = c.status(n);
        let nodes = st["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 32);
        assert!(nodes.iter().all(|x| x["state"] == "active"), "{n}: {st}");
    }
}

#[test]
fn status_json_has_the_documented_fields_and_sigterm_is_a_shutdown_not_a_death() {
    let Some(mut c) = cluster("st", 2) else {
        return;
    };
    let cf = format!("{TIMING}udpport 694\nbcast eth0\nnode n1 n2\n");
    // n1 also keeps a debug log: every message received is in it, the info lines too.
    let debugfile = c.tb.dir.join("n1.debug");
    c.start("n1", &format!("{cf}debug 1\ndebugfile {}\n", debugfile.display()));
    c.start("n2", &cf);
    c.wait_all(&["n1", "n2"], "active", Duration::from_secs(10));
    let debug = std::fs::read_to_string(&debugfile).unwrap_or_default();
    assert!(debug.contains("debug: got status from n2"), "{debug}");
    assert!(debug.contains("Comm_now_up(): updating status to active"), "{debug}");
    let out = std::process::Command::new(HALO)
        .args(["--socket", &c.socket("n1").to_string_lossy(), "status", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["node"], "n1");
    for n in v["nodes"].as_array().unwrap() {
        for key in ["name", "state", "generation", "links"] {
            assert!(n.get(key).is_some(), "missing {key} in {n}");
        }
        for l in n["links"].as_array().unwrap() {
            assert!(l.get("name").is_some() && l.get("state").is_some());
        }
    }
    let text = std::process::Command::new(HALO)
        .args(["--socket", &c.socket("n1").to_string_lossy(), "status"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("Online: [ n1 n2 ]") && text.contains(" * n2: eth0 up"), "{text}");

    let pid = c.pids[1];
    let code = c.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(code, Some(0));
    let took = c.wait_state("n1", "n2", "dead", Duration::from_secs(3));
    assert!(took < Duration::from_millis(900), "a shutdown must not wait for deadtime ({took:?})");
    assert!(c.log("n1").contains("Received shutdown notice from 'n2'."));
    assert!(!c.log("n1").contains("WARN: node n2: is dead"));
    // No daemon: status fails.
    let out = std::process::Command::new(HALO)
        .args(["--socket", &c.socket("n2").to_string_lossy(), "status"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no halo daemon answers"));
}

#[test]
fn generation_rises_at_every_start() {
    let Some(mut c) = cluster("gen", 2) else {
        return;
    };
    let cf = format!("{TIMING}udpport 694\nbcast eth0\nnode n1 n2\n");
    c.start("n1", &cf);
    c.start("n2", &cf);
    c.wait_all(&["n1", "n2"], "active", Duration::from_secs(10));
    let g1 = c.status("n2")["generation"].as_u64().unwrap();
    let pid = c.pids.remove(1);
    c.tb.stop(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    c.start("n2", &cf);
    c.wait_all(&["n1", "n2"], "active", Duration::from_secs(10));
    let g2 = c.status("n2")["generation"].as_u64().unwrap();
    assert_eq!(g2, g1 + 1);
    let seen = c.status("n1")["nodes"][1]["generation"].as_u64().unwrap();
    assert_eq!(seen, g2);
    assert!(c.log("n1").contains("Heartbeat restart on node n2"));
}

/// Garbage, unsigned and wrongly signed packets from another host are dropped and counted
/// by reason, and the honest peer stays alive.
#[test]
fn forged_and_malformed_packets_are_dropped_and_counted() {
    let Some(mut c) = cluster("fg", 3) else {
        return;
    };
    let cf = format!("{TIMING}udpport 694\nbcast eth0\nnode n1 n2\n");
    c.start("n1", &cf);
    c.start("n2", &cf);
    c.wait_all(&["n1", "n2"], "active", Duration::from_secs(10));
    // n3 is not a cluster member: an attacker on the same segment.
    let script = r####"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
body = b"###\n11:(0)t=status,12:(0)st=active,9:(0)src=n2,8:(0)seq=1,8:(0)hg=ff,8:(0)ts=ff,%%%\n"
packets = [b"\x00garbage\xff" * 20, b"###\n99999999999:", body, body + b"42:2 0000000000000000000000000000000000000000,",
           b">>>\nt=status\nsrc=n2\nseq=1\nhg=ff\nts=ff\nauth=2 00\n<<<\n", b"x" * 65000]
for p in packets:
    for _ in range(5):
        try:
            s.sendto(p, ("10.77.255.255", 694))
        except OSError:
            pass
"####;
    c.tb.exec("n3", &["python3", "-c", script]).unwrap();
    // The daemon reads, counts and logs them as it gets to them: wait for the counters and
    // the log line.
    let reasons = ["malformed", "unsigned", "bad_auth"];
    let counted =
        |st: &serde_json::Value| reasons.iter().all(|r| st["dropped"][r].as_u64().unwrap_or(0) >= 5);
    let _ = wait_for(Duration::from_secs(10), || {
        (counted(&c.status("n1")) && c.log("n1").contains("dropped a packet on link eth0")).then_some(())
    });
    let st = c.status("n1");
    let dropped = &st["dropped"];
    for reason in reasons {
        assert!(dropped[reason].as_u64().unwrap_or(0) >= 5, "{reason} not counted: {st}");
    }
    assert_eq!(c.state("n1", "n2").as_deref(), Some("active"));
    assert!(c.log("n1").contains("dropped a packet on link eth0"), "{}", c.log("n1"));
    // Rate limited: 30 bad packets, far fewer warning lines.
    assert!(c.log("n1").matches("dropped a packet").count() <= 6, "{}", c.log("n1"));
}

/// A node whose generation went backwards (state restored from an old backup, or a
/// replay) is refused until it comes back with a newer one.
#[test]
fn a_generation_that_goes_backwards_is_refused_as_a_replay() {
    let Some(mut c) = cluster("rp", 2) else {
        return;
    };
    let cf = format!("{TIMING}udpport 694\nbcast eth0\nnode n1 n2\n");
    c.start("n1", &cf);
    c.start("n2", &cf);
    c.wait_all(&["n1", "n2"], "active", Duration::from_secs(10));
    let g = c.status("n2")["generation"].as_u64().unwrap();
    let pid = c.pids.remove(1);
    c.tb.stop(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    // Heartbeat's file format: "%15lu\n". The next start will use g - 5.
    let genfile = c.tb.dir.join("n2").join("state").join("hb_generation");
    std::fs::write(&genfile, format!("{:>15}\n", g - 6)).unwrap();
    c.start("n2", &cf);
    // n2's messages under the old generation are refused as they come, and n1 sees n2 dead
    // (killed, and nothing it sends since is accepted): wait for both, then for more refused
    // messages (n2 keeps sending): it stays dead through them.
    let replays = |c: &Cluster| c.status("n1")["dropped"]["replay"].as_u64().unwrap_or(0);
    let first = wait_for(Duration::from_secs(15), || {
        Some(replays(&c)).filter(|r| *r > 0 && c.state("n1", "n2").as_deref() == Some("dead"))
    });
    assert!(first.is_some(), "no replay counted or n2 not dead: {}", c.status("n1"));
    let more = wait_for(Duration::from_secs(10), || Some(replays(&c)).filter(|r| Some(*r) > first));
    assert!(more.is_some(), "n2's later messages were not refused: {}", c.status("n1"));
    let st = c.status("n1");
    assert!(st["dropped"]["replay"].as_u64().unwrap_or(0) > 0, "{st}");
    assert_eq!(st["nodes"][1]["generation"].as_u64(), Some(g), "n1 must keep the newest generation it saw");
    assert_eq!(c.state("n1", "n2").as_deref(), Some("dead"));
    assert!(c.log("n1").contains("attempted replay attack [n2]"), "{}", c.log("n1"));
}
