//! `halo demo`: two halo nodes in network namespaces see each other alive; one node's
//! cable is pulled and the other declares it dead; the cable goes back and both are
//! active again. Everything is cleaned up afterwards.
use crate::testbed::{node_state, wait_for, Testbed};
use anyhow::{bail, Context};
use std::time::{Duration, Instant};

const HA_CF: &str = "# halo demo: two nodes, broadcast heartbeats every 200 ms, dead after 1 s\n\
keepalive 200ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nudpport 694\nbcast eth0\nnode alpha beta\nrealtime off\n";
const AUTHKEYS: &str = "auth 1\n1 sha1 halo-demo-key\n";

pub fn demo() -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("locating the halo binary")?;
    let mut tb = Testbed::new("demo")?;
    tb.add_host("alpha", "10.77.0.1/24")?;
    tb.add_host("beta", "10.77.0.2/24")?;
    let mut sockets = Vec::new();
    for node in ["alpha", "beta"] {
        let cf = format!("{HA_CF}logfile {}\n", tb.dir.join(format!("{node}.log")).display());
        let dir = tb.write_config(node, &cf, AUTHKEYS)?;
        let (_, sock) = tb.start_halo(node, &exe, &dir)?;
        sockets.push(sock);
    }
    println!("== two halo nodes, alpha (10.77.0.1) and beta (10.77.0.2), bcast on eth0, keepalive 200 ms, deadtime 1 s");
    let t0 = Instant::now();
    let both_active = || {
        (node_state(&sockets[0], "beta").as_deref() == Some("active")
            && node_state(&sockets[1], "alpha").as_deref() == Some("active"))
        .then_some(())
    };
    if wait_for(Duration::from_secs(15), both_active).is_none() {
        bail!("the two nodes did not become active for each other; logs in {}", tb.dir.display());
    }
    println!("== both nodes active for each other after {} ms\n", t0.elapsed().as_millis());
    print_status(&sockets[0])?;
    // Like Heartbeat, a node advertises deadtime + 2 s for its first 5 s; cut after that so
    // the demo shows the configured deadtime.
    let settle = Duration::from_secs(6).saturating_sub(t0.elapsed());
    println!(
        "\n== waiting {} ms: a starting node advertises deadtime + 2 s for its first 5 s",
        settle.as_millis()
    );
    std::thread::sleep(settle);
    let v = crate::control::request(&sockets[0], "status")?;
    let dt = v["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "beta"))
        .map(|n| n["deadtime_ms"].clone());
    println!(
        "== pulling beta's network cable (alpha declares beta dead after {} ms of silence)",
        dt.unwrap_or_default()
    );
    tb.cable("beta", false)?;
    let t1 = Instant::now();
    if wait_for(Duration::from_secs(10), || {
        (node_state(&sockets[0], "beta").as_deref() == Some("dead")).then_some(())
    })
    .is_none()
    {
        bail!("alpha did not declare beta dead");
    }
    println!("== alpha declared beta dead {} ms after the cable was pulled\n", t1.elapsed().as_millis());
    print_status(&sockets[0])?;
    println!("\n== plugging the cable back");
    tb.cable("beta", true)?;
    let t2 = Instant::now();
    if wait_for(Duration::from_secs(10), both_active).is_none() {
        bail!("the nodes did not see each other again");
    }
    println!("== both active again {} ms after the cable came back\n", t2.elapsed().as_millis());
    print_status(&sockets[0])?;
    let log = std::fs::read_to_string(tb.dir.join("alpha.log")).unwrap_or_default();
    println!("\n== alpha's log (as a Heartbeat operator knows it):");
    for line in log.lines().filter(|l| {
        l.contains("Link ")
            || l.contains("is dead")
            || l.contains("Status update")
            || l.contains("returning")
            || l.contains("Comm_now_up")
    }) {
        println!("  {line}");
    }
    println!("\n== cleaning up (namespaces, processes, files)");
    Ok(0)
}

fn print_status(socket: &std::path::Path) -> anyhow::Result<()> {
    let v = crate::control::request(socket, "status")?;
    print!("{}", crate::cmd::status::render(&v));
    Ok(())
}
