//! halo.toml's placement end to end: three real daemons in network namespaces, run from a
//! halo.toml with a clone on every node and a VIP group preferring n1, then n3. The clone
//! runs on all three at once; n1's cable cut moves the group to n3 (its second preferred
//! node, not n2 which comes next in the node list) while the clone stays where it runs.
use halo::testbed::{wait_for, Testbed};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const VIP: &str = "10.78.0.100";

/// A clone's resource: marks its instance with a file in the node's configuration dir.
const MARKER: &str = r#"#!/bin/sh
D=$(cd "$(dirname "$0")/.." && pwd)
case "$1" in
start) touch "$D/marker.on"; exit 0 ;;
stop) rm -f "$D/marker.on"; exit 0 ;;
status) if [ -f "$D/marker.on" ]; then echo running; else echo stopped; fi ;;
esac
exit 0
"#;

fn toml() -> String {
    format!(
        r#"[cluster]
nodes = ["n1", "n2", "n3"]
keepalive = "100ms"
warntime = "500ms"
deadtime = 1
initdead = 3
auto_failback = "on"
realtime = false

[[link]]
type = "bcast"
iface = "eth0"

[auth]
active = 1
keys = [{{ index = 1, method = "sha1", key = "placement-secret" }}]

[[group]]
name = "vip"
nodes = ["n1", "n3"]
resources = ["IPaddr2::{VIP}/16/eth0"]

[[clone]]
name = "markers"
resources = ["marker"]
"#
    )
}

fn status(sock: &Path) -> Option<serde_json::Value> {
    halo::control::request(sock, "status").ok()
}

fn clone_on(sock: &Path) -> Vec<String> {
    let Some(v) = status(sock) else { return Vec::new() };
    v["resources"]["clones"][0]["running_on"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

#[test]
fn a_clone_runs_everywhere_and_a_group_moves_to_its_second_preferred_node() {
    let Some(mut tb) = Testbed::for_test("pl") else { return };
    let nodes = ["n1", "n2", "n3"];
    for (i, n) in nodes.iter().enumerate() {
        tb.add_host(n, &format!("10.78.0.{}/16", i + 1)).unwrap();
    }
    let mut socks = Vec::new();
    for node in nodes {
        let dir = tb.dir.join(node).join("ha.d");
        let rd = dir.join("resource.d");
        std::fs::create_dir_all(&rd).unwrap();
        let text =
            toml() + &format!("\n[log]\nlogfile = \"{}\"\n", tb.dir.join(format!("{node}.log")).display());
        std::fs::write(dir.join("halo.toml"), text).unwrap();
        std::fs::set_permissions(dir.join("halo.toml"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(rd.join("marker"), MARKER).unwrap();
        std::fs::set_permissions(rd.join("marker"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let (_, sock) = tb.start_halo(node, Path::new(HALO), &dir).unwrap();
        socks.push(sock);
    }
    let logs = |tb: &Testbed| {
        let mut s = String::new();
        for n in nodes {
            for f in [format!("{n}.log"), format!("{n}.out")] {
                s += &format!("--- {f}\n{}\n", std::fs::read_to_string(tb.dir.join(&f)).unwrap_or_default());
            }
        }
        s
    };
    let has_vip = |tb: &Testbed, node: &str| {
        let out = tb.exec(node, &["ip", "-4", "addr", "show", "dev", "eth0"]).unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
    };
    let marked = |tb: &Testbed, node: &str| tb.dir.join(node).join("ha.d/marker.on").exists();

    // All up: the clone runs on every node, the group on n1.
    let everywhere = wait_for(Duration::from_secs(30), || {
        socks.iter().all(|s| clone_on(s) == ["n1", "n2", "n3"]).then_some(())
    });
    assert!(everywhere.is_some(), "the clone did not run on every node\n{}", logs(&tb));
    assert!(nodes.iter().all(|n| marked(&tb, n)));
    let on_n1 = wait_for(Duration::from_secs(20), || has_vip(&tb, "n1").then_some(()));
    assert!(on_n1.is_some(), "n1 never held the VIP\n{}", logs(&tb));
    assert!(!has_vip(&tb, "n2") && !has_vip(&tb, "n3"));
    let st = status(&socks[1]).unwrap();
    let g = &st["resources"]["groups"][0];
    assert_eq!(g["name"], "vip", "{st}");
    assert_eq!(g["nodes"], serde_json::json!(["n1", "n3"]), "{st}");
    // Clones stay out of what Heartbeat peers see: n2 holds no group.
    assert_eq!(st["resources"]["rscstatus"], "none", "{st}");

    // n1's cable cut: the group goes to n3, the second preferred node, not to n2.
    tb.cable("n1", false).unwrap();
    let moved = wait_for(Duration::from_secs(20), || has_vip(&tb, "n3").then_some(()));
    assert!(moved.is_some(), "n3 did not take the VIP\n{}", logs(&tb));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!has_vip(&tb, "n2"), "{}", logs(&tb));
    let st = status(&socks[1]).unwrap();
    assert_eq!(st["resources"]["groups"][0]["holders"], serde_json::json!(["n3"]), "{st}");
    // The clone did not move: n2 and n3 still run their instances, nothing restarted.
    assert_eq!(clone_on(&socks[1]), ["n2", "n3"]);
    assert!(marked(&tb, "n2") && marked(&tb, "n3"));
    for n in ["n2", "n3"] {
        let log = std::fs::read_to_string(tb.dir.join(format!("{n}.log"))).unwrap_or_default();
        assert_eq!(log.matches("Starting clone markers here").count(), 1, "{n}\n{log}");
    }
}
