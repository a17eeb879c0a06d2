//! End-to-end fencing (STONITH): two `halo run` daemons in network namespaces with
//! `n1 IPaddr::VIP/16/eth0:0` in haresources and a `stonith_host` device in ha.cf. n1's cable
//! is pulled: n2 must have n1 fenced before it takes the VIP, must not take it while the
//! fence fails, and with meatware only once the operator ran `halo fence confirm n1`.
//!
//! The `external/halotest` device is a cluster-glue external plugin written here (found
//! through `HALO_STONITH_PLUGINS`): it "powers off" a testbed node — every process in its
//! namespace killed (halo first of all), its link down — and, like a real power switch on
//! the network, cannot be reached by a node whose own cable is out.
use halo::testbed::{wait_for, Testbed};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 fencing-secret\n";
const VIP: &str = "10.79.0.100";

const HALOTEST: &str = r#"#!/bin/sh
case "$1" in
getconfignames) echo ns_n1 ns_n2 log; exit 0 ;;
gethosts) echo n1 n2; exit 0 ;;
status) exit 0 ;;
reset|off)
    ip link show eth0 | grep -q LOWER_UP || { echo "fence device unreachable: no link" >&2; exit 1; }
    eval ns=\$ns_$2
    [ -n "$ns" ] || { echo "unknown node $2" >&2; exit 1; }
    echo "$1 $2" >> "$log"
    for p in $(ip netns pids "$ns"); do kill -9 "$p"; done
    ip -n "$ns" link set eth0 down
    exit 0 ;;
esac
exit 1
"#;

struct Cluster {
    tb: Testbed,
}

impl Cluster {
    fn new(tag: &str) -> Option<Cluster> {
        let mut tb = Testbed::for_test(tag)?;
        // The test plugin, for this testbed's daemons only (removed with the testbed).
        let dir = tb.dir.join("stonith");
        let ext = dir.join("external");
        std::fs::create_dir_all(&ext).unwrap();
        let p = ext.join("halotest");
        std::fs::write(&p, HALOTEST).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        tb.env.push(("HALO_STONITH_PLUGINS".into(), dir.to_string_lossy().into_owned()));
        tb.add_host("n1", "10.79.0.1/16").unwrap();
        tb.add_host("n2", "10.79.0.2/16").unwrap();
        Some(Cluster { tb })
    }

    fn socket(&self, node: &str) -> PathBuf {
        self.tb.dir.join(format!("{node}.sock"))
    }

    /// Writes both nodes' configurations with `stonith_host` line `stonith` and starts them.
    fn start(&mut self, stonith: &str) {
        for node in ["n1", "n2"] {
            let log = self.tb.dir.join(format!("{node}.log"));
            let cf = format!(
                "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nbcast eth0\nauto_failback on\n\
                 node n1 n2\nlogfile {}\nrealtime off\n{stonith}\n",
                log.display()
            );
            let dir = self.tb.write_config(node, &cf, AUTHKEYS).unwrap();
            std::fs::write(dir.join("haresources"), format!("n1 IPaddr::{VIP}/16/eth0:0\n")).unwrap();
            self.tb.start_halo(node, Path::new(HALO), &dir).unwrap();
        }
        self.until(Duration::from_secs(15), "n1 holds the VIP", || self.has_vip("n1"));
        self.until(Duration::from_secs(10), "n2 knows n1 holds it", || {
            self.status("n2")
                .is_some_and(|s| s["resources"]["groups"][0]["holders"] == serde_json::json!(["n1"]))
        });
    }

    fn log(&self, node: &str) -> String {
        self.tb.node_log(node)
    }

    fn logs(&self) -> String {
        format!("--- n1\n{}\n--- n2\n{}", self.log("n1"), self.log("n2"))
    }

    fn has_vip(&self, node: &str) -> bool {
        let out = self.tb.exec(node, &["ip", "-4", "addr", "show"]).unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
    }

    fn status(&self, node: &str) -> Option<serde_json::Value> {
        halo::control::request(&self.socket(node), "status").ok()
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

    fn until(&self, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
        if wait_for(within, || f().then_some(())).is_none() {
            panic!("{what} (waited {within:?})\n{}", self.logs());
        }
    }

    /// For `during`, `node` never holds the VIP.
    fn never_holds(&self, node: &str, during: Duration, what: &str) {
        let end = std::time::Instant::now() + during;
        while std::time::Instant::now() < end {
            assert!(!self.has_vip(node), "{what}: {node} holds the VIP\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What an operator does before confirming a meatware fence: the machine is off.
    fn power_off(&self, node: &str) {
        let ns = self.tb.ns(node);
        let out = std::process::Command::new("ip").args(["netns", "pids", &ns]).output().unwrap();
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        halo::testbed::sh(&["ip", "-n", &ns, "link", "set", "eth0", "down"]).unwrap();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for host in ["n1", "n2"] {
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
    }
}

#[test]
fn cable_cut_the_survivor_fences_the_other_node_then_takes_the_vip() {
    let Some(mut c) = Cluster::new("fence") else { return };
    let record = c.tb.dir.join("fenced");
    let line =
        format!("stonith_host * external/halotest {} {} {}", c.tb.ns("n1"), c.tb.ns("n2"), record.display());
    c.start(&line);
    c.tb.cable("n1", false).unwrap();
    c.until(Duration::from_secs(15), "n2 takes the VIP after fencing n1", || c.has_vip("n2"));
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "reset n1\n", "n2 fenced n1, once");
    // n1 is "powered off": no process left in its namespace, its link down.
    // (A process n1 forked while the plugin was killing its list lives a few ms longer.)
    let pids = || std::process::Command::new("ip").args(["netns", "pids", &c.tb.ns("n1")]).output().unwrap();
    let gone = wait_for(Duration::from_secs(2), || pids().stdout.is_empty().then_some(()));
    assert!(gone.is_some(), "n1 still runs processes: {}", String::from_utf8_lossy(&pids().stdout));
    let l2 = c.log("n2");
    let fenced = l2.find("node n1 fenced (STONITH OK").unwrap_or_else(|| panic!("{}", c.logs()));
    let acquired = l2.find("Acquiring resource group").unwrap_or_else(|| panic!("{}", c.logs()));
    assert!(fenced < acquired, "fenced before the takeover\n{l2}");
    assert!(l2.contains("Fencing node n1 (STONITH, attempt 1)"), "{l2}");
    let st = c.status_json("n2");
    assert_eq!(st["resources"]["fencing"], serde_json::json!([]), "{st}");
    assert_eq!(st["resources"]["groups"][0]["holders"], serde_json::json!(["n2"]), "{st}");
}

#[test]
fn cable_cut_with_a_failing_fence_the_survivor_does_not_take_the_vip_and_says_why() {
    let Some(mut c) = Cluster::new("fencefail") else { return };
    c.start("stonith_host * test fail");
    c.tb.cable("n1", false).unwrap();
    c.until(Duration::from_secs(10), "n2 reports the failed fence", || {
        let st = c.status_json("n2");
        let f = &st["resources"]["fencing"][0];
        f["node"] == "n1" && f["state"] == "failed" && f["attempts"].as_u64().unwrap_or(0) >= 1
    });
    c.never_holds("n2", Duration::from_secs(5), "while n1 is not fenced");
    let st = c.status_json("n2");
    let f = &st["resources"]["fencing"][0];
    assert!(f["last_error"].as_str().unwrap().contains("test device told to fail"), "{st}");
    assert_eq!(f["fencer"], "n2", "{st}");
    assert!(f["attempts"].as_u64().unwrap() >= 2, "retried: {st}");
    assert!(c.log("n2").contains("STONITH of node n1 FAILED"), "{}", c.logs());
    let out =
        std::process::Command::new(HALO).arg("--socket").arg(c.socket("n2")).arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FENCING of n1 FAILED (attempt"), "{text}");
    assert!(text.contains("test device told to fail"), "{text}");
    assert!(c.has_vip("n1"), "the cut node keeps its VIP (it was never fenced)");
}

#[test]
fn meatware_the_survivor_takes_over_only_after_halo_fence_confirm() {
    let Some(mut c) = Cluster::new("meat") else { return };
    c.start("stonith_host * meatware");
    c.tb.cable("n1", false).unwrap();
    c.until(Duration::from_secs(10), "n2 waits for the operator", || {
        c.log("n2").contains("run 'halo fence confirm n1'")
    });
    c.never_holds("n2", Duration::from_secs(3), "before the confirmation");
    let st = c.status_json("n2");
    assert_eq!(st["resources"]["fencing"][0]["state"], "requested", "{st}");
    // A node that nobody is fencing cannot be confirmed.
    let out = std::process::Command::new(HALO)
        .arg("--socket")
        .arg(c.socket("n2"))
        .args(["fence", "confirm", "n2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The operator resets n1 by hand, then confirms.
    c.power_off("n1");
    let out = std::process::Command::new(HALO)
        .arg("--socket")
        .arg(c.socket("n2"))
        .args(["fence", "confirm", "n1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("meatware fence of n1 confirmed"));
    c.until(Duration::from_secs(10), "n2 takes the VIP after the confirmation", || c.has_vip("n2"));
    assert!(c.log("n2").contains("node n1 fenced (STONITH OK: meatware"), "{}", c.logs());
}
