//! End-to-end failover of seed 001's cluster: two `halo run` daemons in network namespaces,
//! `node1 IPaddr::VIP/16/eth0:0 web` in haresources (the built-in IPaddr and a Heartbeat-class
//! script starting a small HTTP server), and a client namespace fetching the page through
//! the VIP. Cables are pulled at the bridge; the answer must move to the other node and, with
//! `auto_failback on`, come back.
use halo::testbed::{wait_for, Testbed};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 failover-secret\n";
const VIP: &str = "10.78.0.100";

/// A Heartbeat-class resource script: an HTTP server on port 80 serving a page that names
/// the node; `status` prints running/stopped as ResourceManager expects.
const WEB: &str = r#"#!/bin/sh
D=$(cd "$(dirname "$0")/.." && pwd)
PID="$D/web.pid"
case "$1" in
start)
    cd "$D/www" || exit 1
    python3 -m http.server 80 --bind 0.0.0.0 >/dev/null 2>&1 </dev/null &
    echo $! > "$PID"
    i=0
    while [ $i -lt 100 ]; do
        ss -ltn | grep -q ':80 ' && exit 0
        sleep 0.05; i=$((i+1))
    done
    exit 1 ;;
stop)
    [ -f "$PID" ] && kill "$(cat "$PID")" 2>/dev/null
    rm -f "$PID"; exit 0 ;;
status)
    if [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; then echo running; else echo stopped; fi ;;
esac
exit 0
"#;

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
        let log = self.tb.dir.join(format!("{node}.log"));
        let cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nbcast eth0\nauto_failback {failback}\n\
             node n1 n2\nlogfile {}\nrealtime off\n",
            log.display()
        );
        let dir = self.tb.write_config(node, &cf, AUTHKEYS).unwrap();
        std::fs::write(dir.join("haresources"), haresources).unwrap();
        let rd = dir.join("resource.d");
        std::fs::create_dir_all(&rd).unwrap();
        std::fs::write(rd.join("web"), WEB).unwrap();
        std::fs::set_permissions(rd.join("web"), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/index.html"), format!("{node}\n")).unwrap();
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
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.tb.ns("client"), "curl", "-s", "--max-time", "1"])
            .arg(format!("http://{VIP}/"))
            .output()
            .ok()?;
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !body.is_empty()).then_some(body)
    }

    fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.tb.dir.join(format!("{node}.log"))).unwrap_or_default()
            + &std::fs::read_to_string(self.tb.dir.join(format!("{node}.out"))).unwrap_or_default()
    }

    fn has_vip(&self, node: &str) -> bool {
        let out = self.tb.exec(node, &["ip", "-4", "addr", "show"]).unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
    }

    /// Waits until the client is served by `node`; panics with both logs otherwise.
    fn served_by(&self, node: &str, within: Duration, what: &str) {
        if wait_for(within, || (self.fetch().as_deref() == Some(node)).then_some(())).is_none() {
            panic!(
                "{what}: the client was not served by {node} within {within:?} (got {:?})\n--- n1\n{}\n--- n2\n{}",
                self.fetch(),
                self.log("n1"),
                self.log("n2")
            );
        }
    }

    fn ctl(&self, node: &str, cmd: &str) -> serde_json::Value {
        halo::control::request(&self.socket(node), cmd).unwrap_or_else(|e| panic!("{node} {cmd}: {e}"))
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
    let pid = c.pid("n1");
    c.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(!c.has_vip("n1"), "n1 released the VIP before exiting");
    c.served_by("n2", Duration::from_secs(5), "takeover after a graceful stop");
    assert!(c.log("n2").contains("Received shutdown notice from 'n1'."), "{}", c.log("n2"));
}
