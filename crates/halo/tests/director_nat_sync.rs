//! Director connection sync for LVS-NAT end to end: established NAT connections (held by the
//! kernel's conntrack alone, no halo set) survive a director failover when the directors sync.
//!
//! Two directors d1 and d2 run halo with the group
//! `d1 IPaddr2::VIP/24/eth0 IPaddr2::GW/24/eth0 ldirectord::ldirectord.cf` (LVS-NAT, `masq`,
//! rr): the VIP on the client's subnet and GW, the real servers' default gateway, on theirs,
//! so the real servers' replies follow the director when it moves. r1 and r2 run a line
//! server that answers each line with its name; the client (on the VIP's subnet) holds eight
//! TCP connections through the VIP, asks once on each, then d1's cable is pulled, d2 takes the
//! group over, and the client asks again on every connection in reverse order (so that a
//! director scheduling them afresh sends each to the other real server than before).
//!
//! The same scenario runs twice: with `lvs_sync_daemon` every connection is answered by the
//! same real server after the failover (d2 created the synced conntrack entries, with their
//! DNAT binding, as it created its table: its log says so); without it the connections are
//! broken (reset by the real server they are newly scheduled to, or timed out).
use halo::testbed::{wait_for, Testbed};
use std::path::{Path, PathBuf};
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const VIP: &str = "10.81.1.100";
const GW: &str = "10.81.0.254";
const CONNS: usize = 8;

const LDIRECTORD_CF: &str = "\
checktimeout=1
checkinterval=1
quiescent=no

virtual=10.81.1.100:7000
\treal=10.81.0.11:7000 masq 1
\treal=10.81.0.12:7000 masq 1
\tchecktype=connect
\tscheduler=rr
\tprotocol=tcp
";

/// The IPv6 variant: the same roles on fd81::/64 (directors, real servers, GW) and
/// fd81:1::/64 (the client and the VIP).
const VIP6: &str = "fd81:1::100";
const GW6: &str = "fd81::fe";
const LDIRECTORD_CF6: &str = "\
checktimeout=1
checkinterval=1
quiescent=no

virtual6=[fd81:1::100]:7000
\treal6=[fd81::11]:7000 masq 1
\treal6=[fd81::12]:7000 masq 1
\tchecktype=connect
\tscheduler=rr
\tprotocol=tcp
";

struct Bed {
    tb: Testbed,
    sync: bool,
    six: bool,
}

impl Bed {
    fn log(&self, node: &str) -> String {
        self.tb.node_log(node)
    }

    fn logs(&self) -> String {
        ["d1", "d2", "client"]
            .iter()
            .map(|n| format!("--- {n}\n{}", self.log(n)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn config(&self, node: &str) -> PathBuf {
        let log = self.tb.dir.join(format!("{node}.log"));
        let mut cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nbcast eth0\nauto_failback off\n\
             node d1 d2\nlogfile {}\nrealtime off\n",
            log.display()
        );
        if self.sync {
            cf.push_str("lvs_sync_daemon eth0 id 9 interval 0.5\n");
        }
        let (group, ld) = if self.six {
            (
                format!("d1 IPaddr2::{VIP6}/64/eth0 IPaddr2::{GW6}/64/eth0 ldirectord::ldirectord.cf\n"),
                LDIRECTORD_CF6,
            )
        } else {
            (
                format!("d1 IPaddr2::{VIP}/24/eth0 IPaddr2::{GW}/24/eth0 ldirectord::ldirectord.cf\n"),
                LDIRECTORD_CF,
            )
        };
        self.tb.write_director_config(node, &cf, "auth 1\n1 sha1 sync-secret\n", &group, ld).unwrap()
    }

    fn vip(&self) -> &'static str {
        if self.six {
            VIP6
        } else {
            VIP
        }
    }

    fn has_vip(&self, node: &str) -> bool {
        let out = self.tb.exec(node, &["ip", "addr", "show", "dev", "eth0"]).unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {}/", self.vip()))
    }

    fn table(&self, node: &str) -> Option<String> {
        self.tb.nft_table(node, if self.six { "ip6" } else { "ip" }, "halo_lb")
    }

    fn until(&self, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
        if wait_for(within, || f().then_some(())).is_none() {
            panic!("{what} (waited {within:?})\n{}", self.logs());
        }
    }

    fn phase(&self, which: &str) -> Option<Vec<String>> {
        let out = std::fs::read_to_string(self.tb.dir.join("client.out")).ok()?;
        let line = out.lines().find(|l| l.starts_with(which))?;
        Some(line.split_whitespace().skip(1).map(String::from).collect())
    }
}

/// Runs the scenario; returns the names that answered each connection before and after the
/// failover, and d2's log.
fn failover(tag: &str, sync: bool, six: bool) -> Option<(Vec<String>, Vec<String>, String)> {
    let mut tb = Testbed::for_test(tag)?;
    tb.add_host("d1", "10.81.0.1/24").unwrap();
    tb.add_host("d2", "10.81.0.2/24").unwrap();
    tb.add_host("r1", "10.81.0.11/24").unwrap();
    tb.add_host("r2", "10.81.0.12/24").unwrap();
    // The client on the VIP's subnet, on the same segment.
    tb.add_host("client", "10.81.1.9/24").unwrap();
    for d in ["d1", "d2"] {
        // LVS-NAT needs a forwarding director; replies come in and go out on eth0: no
        // redirects to the real servers.
        for s in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.eth0.send_redirects=0",
        ] {
            tb.exec(d, &["sysctl", "-qw", s]).unwrap();
        }
    }
    if six {
        // IPv6 beside the IPv4 the heartbeats use (nodad: usable at once).
        for (h, a) in [
            ("d1", "fd81::1/64"),
            ("d2", "fd81::2/64"),
            ("r1", "fd81::11/64"),
            ("r2", "fd81::12/64"),
            ("client", "fd81:1::9/64"),
        ] {
            tb.exec(h, &["ip", "addr", "add", a, "dev", "eth0", "nodad"]).unwrap();
        }
        for d in ["d1", "d2"] {
            tb.exec(d, &["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]).unwrap();
        }
    }
    let mut bed = Bed { tb, sync, six };

    for r in ["r1", "r2"] {
        let route: &[&str] = if six {
            &["ip", "-6", "route", "add", "default", "via", GW6]
        } else {
            &["ip", "route", "add", "default", "via", GW]
        };
        let out = bed.tb.exec(r, route).unwrap();
        assert!(out.status.success(), "default route on {r}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let (real1, real2) = if six { ("fd81::11", "fd81::12") } else { ("10.81.0.11", "10.81.0.12") };
    bed.tb.start_line_servers(&["r1", "r2"], &[7000]).unwrap();

    let (c1, c2) = (bed.config("d1"), bed.config("d2"));
    let (_p1, _) = bed.tb.start_halo("d1", Path::new(HALO), &c1).unwrap();
    let (_p2, _) = bed.tb.start_halo("d2", Path::new(HALO), &c2).unwrap();
    bed.until(Duration::from_secs(30), "d1 holds the VIP and both real servers in its table", || {
        bed.has_vip("d1")
            && bed.table("d1").is_some_and(|t| t.contains(real1) && t.contains(real2) && t.contains("numgen"))
    });

    let client = bed.tb.dir.join("client.py");
    std::fs::write(&client, halo::testbed::HELD_CLIENT_PY).unwrap();
    let go = bed.tb.dir.join("go");
    let out = bed.tb.dir.join("client.out");
    bed.tb
        .spawn(
            "client",
            Path::new("python3"),
            &[client.to_str().unwrap(), bed.vip(), &CONNS.to_string(), go.to_str().unwrap()],
            &out,
        )
        .unwrap();
    bed.until(Duration::from_secs(30), "the client's first round is answered", || {
        bed.phase("PHASE1").is_some()
    });
    let first = bed.phase("PHASE1").unwrap();
    assert!(
        first.len() == CONNS
            && first.iter().all(|n| n == "r1" || n == "r2")
            && first.contains(&"r1".into())
            && first.contains(&"r2".into()),
        "rr spreads the NAT connections over r1 and r2 through d1: {first:?}\n{}",
        bed.logs()
    );

    if sync {
        // d2 holds d1's NAT connections before d1 goes.
        bed.until(Duration::from_secs(30), "d2 stages d1's NAT connections", || {
            bed.log("d2").lines().any(|l| {
                l.contains("director sync: backup for table ip halo_lb:")
                    && l.split_whitespace()
                        .skip_while(|w| *w != "and")
                        .nth(1)
                        .and_then(|n| n.parse::<usize>().ok())
                        .is_some_and(|n| n >= CONNS)
            })
        });
    } else {
        // As long as the sync above takes at most.
        std::thread::sleep(Duration::from_secs(2));
    }

    bed.tb.cable("d1", false).unwrap();
    // Both real servers in d2's kernel table (the table is made before the first checks
    // answer; one apply per answer): the second round must not meet a table of one.
    bed.until(Duration::from_secs(20), "d2 takes the VIP, the gateway and the director over", || {
        bed.has_vip("d2")
            && bed.table("d2").is_some_and(|t| t.contains(real1) && t.contains(real2) && t.contains("numgen"))
    });
    if sync {
        bed.until(Duration::from_secs(10), "d2 reports the NAT connections it created", || {
            bed.log("d2").contains("synced NAT connection(s) created in conntrack")
        });
    }

    std::fs::write(&go, "").unwrap();
    bed.until(Duration::from_secs(90), "the client's second round is done", || bed.phase("PHASE2").is_some());
    let second = bed.phase("PHASE2").unwrap();
    let d2 = bed.log("d2");
    eprintln!("sync {sync}: before the failover: {first:?}\n             after it:          {second:?}");
    bed.tb.kill_all();
    Some((first, second, d2))
}

#[test]
fn nat_connections_survive_a_director_failover_only_with_sync() {
    let Some((first, second, d2)) = failover("nsy1", true, false) else { return };
    assert_eq!(
        second, first,
        "with sync every established NAT connection is answered by the same real server after the \
         failover\n{d2}"
    );
    let created = d2
        .lines()
        .find(|l| l.contains("synced NAT connection(s) created in conntrack"))
        .unwrap_or_else(|| panic!("d2 logs the NAT connections it created\n{d2}"));
    assert!(
        created.contains(&format!("{CONNS} of {CONNS} synced NAT connection(s)")),
        "d2 created every synced connection: {created}"
    );

    // The contrast: the same failover without lvs_sync_daemon breaks the connections.
    let Some((first, second, d2)) = failover("nsy0", false, false) else { return };
    let kept = first.iter().zip(&second).filter(|(a, b)| a == b).count();
    assert!(
        kept < CONNS / 2,
        "without sync the NAT connections do not survive the failover ({kept} of {CONNS} did): \
         {first:?} -> {second:?}\n{d2}"
    );
    assert!(!d2.contains("synced NAT connection"), "{d2}");
}

#[test]
fn ipv6_nat_connections_survive_a_director_failover_with_sync() {
    // The same over IPv6 (virtual6, real6; conntrack's IPv6 entries synced and created with
    // their DNAT binding on the new director).
    let Some((first, second, d2)) = failover("nsy6", true, true) else { return };
    assert!(first.iter().all(|n| n == "r1" || n == "r2") && first.contains(&"r1".into()), "{first:?}\n{d2}");
    assert_eq!(second, first, "every established IPv6 NAT connection kept its real server\n{d2}");
    let created = d2
        .lines()
        .find(|l| l.contains("synced NAT connection(s) created in conntrack"))
        .unwrap_or_else(|| panic!("d2 logs the NAT connections it created\n{d2}"));
    assert!(created.contains(&format!("{CONNS} of {CONNS} synced NAT connection(s)")), "{created}");
}
