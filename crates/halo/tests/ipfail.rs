//! ipfail's rule under real daemons: with a ping node in ha.cf, the node that can no longer
//! reach it (its echo replies dropped by nftables on the "gateway") while its peer can,
//! hands its group over; when it reaches the ping node again, the group comes back
//! (auto_failback on).
use halo::testbed::{wait_for, Testbed};
use std::path::Path;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const VIP: &str = "10.80.0.100";

fn holds(tb: &Testbed, node: &str) -> bool {
    let out = tb.exec(node, &["ip", "-4", "addr", "show"]).unwrap();
    String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
}

fn wait_holder(tb: &Testbed, node: &str, other: &str, what: &str) {
    let ok = wait_for(Duration::from_secs(15), || (holds(tb, node) && !holds(tb, other)).then_some(()));
    if ok.is_none() {
        let log = |n: &str| std::fs::read_to_string(tb.dir.join(format!("{n}.log"))).unwrap_or_default();
        panic!("{what}: {node} should hold {VIP} alone\n--- n1\n{}\n--- n2\n{}", log("n1"), log("n2"));
    }
}

#[test]
fn the_node_cut_off_from_its_ping_node_hands_its_group_over() {
    let Some(mut tb) = Testbed::for_test("ipf") else { return };
    tb.add_host("n1", "10.80.0.1/16").unwrap();
    tb.add_host("n2", "10.80.0.2/16").unwrap();
    tb.add_host("gw", "10.80.0.254/16").unwrap();
    for node in ["n1", "n2"] {
        let log = tb.dir.join(format!("{node}.log"));
        let cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\ndeadping 1\nbcast eth0\nping 10.80.0.254\n\
             auto_failback on\nnode n1 n2\nlogfile {}\nrealtime off\n",
            log.display()
        );
        let dir = tb.write_config(node, &cf, "auth 1\n1 sha1 ipfail\n").unwrap();
        std::fs::write(dir.join("haresources"), format!("n1 IPaddr2::{VIP}/16/eth0\n")).unwrap();
        tb.start_halo(node, Path::new(HALO), &dir).unwrap();
    }
    wait_holder(&tb, "n1", "n2", "initial acquisition");
    let st = halo::control::request(&tb.dir.join("n1.sock"), "status").unwrap();
    let gw = st["nodes"].as_array().unwrap().iter().find(|n| n["type"] == "ping").cloned().unwrap();
    assert_eq!(gw["name"], "10.80.0.254");
    assert_eq!(gw["state"], "ping");

    // The gateway stops answering n1 (and only n1).
    tb.exec("gw", &["nft", "add", "table", "ip", "cut"]).unwrap();
    tb.exec("gw", &["nft", "add", "chain", "ip", "cut", "out", "{ type filter hook output priority 0 ; }"])
        .unwrap();
    tb.exec(
        "gw",
        &[
            "nft",
            "add",
            "rule",
            "ip",
            "cut",
            "out",
            "ip",
            "daddr",
            "10.80.0.1",
            "icmp",
            "type",
            "echo-reply",
            "drop",
        ],
    )
    .unwrap();
    wait_holder(&tb, "n2", "n1", "n1 lost its ping node");
    let n1 = std::fs::read_to_string(tb.dir.join("n1.log")).unwrap();
    assert!(n1.contains("ping node 10.80.0.254: is dead"), "{n1}");

    // The gateway answers n1 again: the group goes home.
    tb.exec("gw", &["nft", "delete", "table", "ip", "cut"]).unwrap();
    wait_holder(&tb, "n1", "n2", "n1 reaches its ping node again");
}
