//! End-to-end notify hooks: two daemons in network namespaces, n2 with an ha.cf `notify`
//! hook that appends `begin SEQ EVENT GROUP` / `end SEQ` around a sleep to a file. n1 holds
//! a group with a VIP; its cable is pulled and n2 takes the group over. The hook's file must
//! show every run alone (each `begin` followed by its own `end`), in the order the daemon
//! logged the events, with the failover's events in their causal order.
use halo::testbed::{wait_for, Testbed};
use std::path::Path;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 hooks-secret\n";
const KEY: &str = "IPaddr::10.81.0.100/16/eth0";

#[test]
fn hooks_run_one_at_a_time_in_event_order_through_a_failover() {
    let Some(mut tb) = Testbed::for_test("hk") else { return };
    tb.add_host("n1", "10.81.0.1/16").unwrap();
    tb.add_host("n2", "10.81.0.2/16").unwrap();
    let out = tb.dir.join("hook.out");
    let hook = tb.dir.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"begin $HALO_SEQ $HALO_EVENT $HALO_GROUP node=$HALO_NODE local=$HALO_LOCAL_NODE $1\" >> {o}\n\
             sleep 0.2\necho \"end $HALO_SEQ\" >> {o}\n",
            o = out.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut sockets = Vec::new();
    for node in ["n1", "n2"] {
        let log = tb.dir.join(format!("{node}.log"));
        let notify = if node == "n2" { format!("notify {} tagged\n", hook.display()) } else { String::new() };
        let cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nbcast eth0\nauto_failback off\n\
             node n1 n2\nlogfile {}\nrealtime off\n{notify}",
            log.display()
        );
        let dir = tb.write_config(node, &cf, AUTHKEYS).unwrap();
        std::fs::write(dir.join("haresources"), format!("n1 {KEY}\n")).unwrap();
        sockets.push(tb.start_halo(node, Path::new(HALO), &dir).unwrap().1);
    }
    let log = |node: &str| std::fs::read_to_string(tb.dir.join(format!("{node}.log"))).unwrap_or_default();
    let held = |sock: &Path| {
        halo::control::request(sock, "status").ok().and_then(|v| {
            v.pointer("/resources/groups/0/state").and_then(|s| s.as_str()).map(|s| s == "running")
        })
    };
    let up = wait_for(Duration::from_secs(30), || held(&sockets[0]).filter(|h| *h));
    assert!(up.is_some(), "n1 did not take its group\n{}\n{}", log("n1"), log("n2"));

    tb.cable("n1", false).unwrap();
    let took = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains(&format!(" group_started {KEY} ")))
            .then_some(())
    });
    assert!(took.is_some(), "n2 did not report the takeover\n{}", log("n2"));
    // Let the last run finish: group_started's run has ended and no run is under way (an
    // even number of lines, the last an `end`). A run that never ends fails below.
    let _ = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let seq = lines.iter().find_map(|l| {
            let w: Vec<&str> = l.split(' ').collect();
            (w.len() > 2 && w[0] == "begin" && w[2] == "group_started").then(|| w[1].to_string())
        })?;
        (lines.len().is_multiple_of(2)
            && lines.contains(&format!("end {seq}").as_str())
            && lines.last().is_some_and(|l| l.starts_with("end ")))
        .then_some(())
    });

    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Strictly serialised: begin N, end N, begin M, end M, ... with N < M.
    assert_eq!(lines.len() % 2, 0, "a run did not finish:\n{text}");
    let mut ran = Vec::new();
    let mut last = 0u64;
    for pair in lines.chunks(2) {
        let begin: Vec<&str> = pair[0].split(' ').collect();
        assert_eq!(begin[0], "begin", "runs overlap:\n{text}");
        let seq: u64 = begin[1].parse().unwrap();
        assert_eq!(pair[1], format!("end {seq}"), "runs overlap:\n{text}");
        assert!(seq > last, "events out of order:\n{text}");
        last = seq;
        assert!(pair[0].ends_with(" local=n2 tagged"), "{}", pair[0]);
        let group = begin.get(3).copied().filter(|g| !g.starts_with("node=")).unwrap_or("");
        ran.push((begin[2].to_string(), group.to_string(), pair[0].to_string()));
    }
    // The order the daemon logged them in (`event NAME [node=..] [group=..]`).
    let logged: Vec<(String, String)> = log("n2")
        .lines()
        .filter_map(|l| l.split_once(": event ").map(|(_, e)| e))
        .map(|e| {
            let name = e.split(' ').next().unwrap_or("").to_string();
            let group = e.split(' ').find_map(|w| w.strip_prefix("group=")).unwrap_or("").to_string();
            (name, group)
        })
        .collect();
    let ran_pairs: Vec<(String, String)> = ran.iter().map(|(e, g, _)| (e.clone(), g.clone())).collect();
    assert_eq!(
        ran_pairs,
        logged[..ran_pairs.len()],
        "hooks ran in another order than logged:\n{text}\n{}",
        log("n2")
    );
    // The failover, in causal order, naming the dead node.
    let pos = |name: &str| {
        ran.iter()
            .position(|(e, _, _)| e == name)
            .unwrap_or_else(|| panic!("no {name} event:\n{text}\n{}", log("n2")))
    };
    let (dead, failover, starting, started) =
        (pos("node_dead"), pos("failover"), pos("group_starting"), pos("group_started"));
    assert!(dead < failover && failover < starting && starting < started, "{text}");
    assert!(ran[dead].2.contains(" node=n1 "), "{}", ran[dead].2);
    assert!(ran[failover].2.contains(&format!(" failover {KEY} node=n1 ")), "{}", ran[failover].2);
    assert!(ran.iter().any(|(e, _, _)| e == "node_up"), "n1 coming up was not reported:\n{text}");
    // Counted in status (and /metrics): every run so far, none failed.
    let v = halo::control::request(&sockets[1], "status").unwrap();
    assert!(v["hooks"]["runs"].as_u64() >= Some(ran.len() as u64), "{}", v["hooks"]);
    assert_eq!(v["hooks"]["failures"], 0, "{}", v["hooks"]);
    assert_eq!(v["hooks"]["commands"], 1, "{}", v["hooks"]);
    let metrics = halo::http::metrics(&v);
    assert!(metrics.contains("\nhalo_hook_failures_total 0\n"), "{metrics}");
}
