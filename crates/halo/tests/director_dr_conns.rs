//! Connection counts of LVS-DR services on the nftables plane, end to end: a director node
//! `d` (VIP on its eth0) runs `halo run` with the group `d ldirectord::ldirectord.cf`
//! (one DR service, rr over r1 and r2); the real servers (`halo lvs realserver start`) run a
//! line server that answers each line with its name; a client holds four TCP connections
//! through the VIP and asks once on each. conntrack never sees these connections (the DR
//! plane drops the original before it is confirmed): the counts come from the plane's flow
//! sets. `halo lvs` must show them as `ActiveConn` of the right real servers (2 + 2), the
//! status JSON (`active_conns`, what /metrics exports) the same, and `halo lvs -c` must list
//! the four connections, each with the real server that answered it.
use halo::testbed::{wait_for, Testbed};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const VIP: &str = "10.81.0.100";
const R1: &str = "10.81.0.11:7000";
const R2: &str = "10.81.0.12:7000";
const CONNS: usize = 4;

const LDIRECTORD_CF: &str = "\
checktimeout=1
checkinterval=1

virtual=10.81.0.100:7000
\treal=10.81.0.11:7000 gate 1
\treal=10.81.0.12:7000 gate 1
\tchecktype=connect
\tscheduler=rr
\tprotocol=tcp
";

/// Opens N connections to VIP:7000, asks once on each, prints "OPEN port=name ..." and holds
/// them.
const CLIENT: &str = r#"
import socket, sys, time
vip, n = sys.argv[1], int(sys.argv[2])
conns = [socket.create_connection((vip, 7000), timeout=20) for _ in range(n)]
seen = []
for c in conns:
    c.sendall(b"who\n")
    data = b""
    while not data.endswith(b"\n"):
        d = c.recv(100)
        if not d:
            break
        data += d
    seen.append("%d=%s" % (c.getsockname()[1], data.decode().split()[0] if data else "CLOSED"))
print("OPEN", " ".join(seen), flush=True)
time.sleep(300)
"#;

struct Bed {
    tb: Testbed,
}

impl Bed {
    fn socket(&self) -> PathBuf {
        self.tb.dir.join("d.sock")
    }

    fn log(&self) -> String {
        ["d.log", "d.out", "client.out"]
            .iter()
            .map(|f| format!("--- {f}\n{}", std::fs::read_to_string(self.tb.dir.join(f)).unwrap_or_default()))
            .collect()
    }

    fn lvs(&self, args: &[&str]) -> String {
        let out =
            Command::new(HALO).arg("--socket").arg(self.socket()).arg("lvs").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The daemon's `lvs` answer, first director.
    fn director(&self) -> Value {
        let v = halo::control::request(&self.socket(), "lvs").unwrap_or(Value::Null);
        v["directors"][0].clone()
    }

    fn until(&self, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
        if wait_for(within, || f().then_some(())).is_none() {
            panic!("{what} (waited {within:?})\n--- halo lvs\n{}\n{}", self.lvs(&[]), self.log());
        }
    }

    /// The client's "OPEN" line: its local port → the name of the real server that answered.
    fn opened(&self) -> Option<BTreeMap<u16, String>> {
        let out = std::fs::read_to_string(self.tb.dir.join("client.out")).ok()?;
        let line = out.lines().find(|l| l.starts_with("OPEN "))?;
        line.split_whitespace()
            .skip(1)
            .map(|w| {
                let (p, n) = w.split_once('=')?;
                Some((p.parse().ok()?, n.to_string()))
            })
            .collect()
    }
}

/// (ActiveConn, InActConn) of `addr` in `halo lvs`.
fn conns_in(lvs: &str, addr: &str) -> Option<(u32, u32)> {
    lvs.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        match cols.as_slice() {
            ["->", a, _fwd, _w, act, inact] if *a == addr => Some((act.parse().ok()?, inact.parse().ok()?)),
            _ => None,
        }
    })
}

#[test]
fn director_dr_connection_counts_from_the_flow_sets() {
    let Some(mut tb) = Testbed::for_test("ddrc") else { return };
    tb.add_host("d", "10.81.0.1/16").unwrap();
    tb.add_host("r1", "10.81.0.11/16").unwrap();
    tb.add_host("r2", "10.81.0.12/16").unwrap();
    tb.add_host("client", "10.81.0.9/16").unwrap();
    tb.exec("d", &["ip", "addr", "add", &format!("{VIP}/16"), "dev", "eth0"]).unwrap();
    let mut b = Bed { tb };

    b.tb.lvs_realservers(Path::new(HALO), &["r1", "r2"], VIP).unwrap();
    b.tb.start_line_servers(&["r1", "r2"], &[7000]).unwrap();

    let log = b.tb.dir.join("d.log");
    let cf = format!(
        "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 2\nbcast eth0\nauto_failback off\n\
         node d\nlogfile {}\nrealtime off\n",
        log.display()
    );
    let authkeys = "auth 1\n1 sha1 dr-conns\n";
    let group = "d ldirectord::ldirectord.cf\n";
    let dir = b.tb.write_director_config("d", &cf, authkeys, group, LDIRECTORD_CF).unwrap();
    b.tb.start_halo("d", Path::new(HALO), &dir).unwrap();
    b.until(Duration::from_secs(30), "both real servers in the table", || {
        let t = b.lvs(&[]);
        conns_in(&t, R1).is_some() && conns_in(&t, R2).is_some()
    });
    assert_eq!(b.director()["dataplane"], "nftables", "{}", b.director());
    // The checks go to the real servers' own addresses, not through the VIP: nothing yet.
    let t = b.lvs(&[]);
    assert_eq!((conns_in(&t, R1), conns_in(&t, R2)), (Some((0, 0)), Some((0, 0))), "{t}");

    // The kernel's table, which the client meets, read from the kernel itself: both real
    // servers must be in its rotation first.
    b.until(Duration::from_secs(10), "both real servers in the kernel's table", || {
        let t = b.tb.nft_table("d", "ip", "halo_lb").unwrap_or_default();
        t.contains("dup to 10.81.0.11") && t.contains("dup to 10.81.0.12") && t.contains("numgen")
    });

    let client = b.tb.dir.join("client.py");
    std::fs::write(&client, CLIENT).unwrap();
    let out = b.tb.dir.join("client.out");
    b.tb.spawn("client", Path::new("python3"), &[client.to_str().unwrap(), VIP, &CONNS.to_string()], &out)
        .unwrap();
    b.until(Duration::from_secs(30), "the client's connections are answered", || b.opened().is_some());
    let opened = b.opened().unwrap();
    assert_eq!(opened.len(), CONNS, "{opened:?}");
    let on = |name: &str| opened.values().filter(|n| *n == name).count() as u32;
    assert_eq!(on("r1") + on("r2"), CONNS as u32, "every connection answered by r1 or r2: {opened:?}");

    // `halo lvs`: ActiveConn of each real server is the number of connections it answered.
    let t = b.lvs(&[]);
    assert_eq!(conns_in(&t, R1), Some((on("r1"), 0)), "{t}\n{opened:?}");
    assert_eq!(conns_in(&t, R2), Some((on("r2"), 0)), "{t}\n{opened:?}");
    assert_eq!((on("r1"), on("r2")), (2, 2), "rr over two real servers: {opened:?}");
    // The status JSON (what /metrics exports per real server) says the same.
    let d = b.director();
    assert_eq!(d["flows_error"], Value::Null, "{d}");
    let reals = d["services"][0]["reals"].as_array().cloned().unwrap_or_default();
    for (addr, name) in [(R1, "r1"), (R2, "r2")] {
        let r = reals.iter().find(|r| r["addr"] == addr).unwrap_or_else(|| panic!("{addr} in {d}"));
        assert_eq!(r["active_conns"].as_u64(), Some(u64::from(on(name))), "{r}");
        assert_eq!(r["inact_conns"].as_u64(), Some(0), "{r}");
    }
    let metrics = halo::http::director_metrics(&serde_json::json!({ "directors": [d] }));
    let sample = |addr: &str| {
        let prefix = format!(
            "halo_real_server_active_connections{{service=\"tcp:{VIP}:7000\",real_server=\"{addr}\"}} "
        );
        metrics.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    };
    assert_eq!((sample(R1), sample(R2)), (Some("2".into()), Some("2".into())), "{metrics}");

    // `halo lvs -c`: the four connections, each with the real server that answered it.
    let list = b.lvs(&["-c"]);
    let rows: Vec<Vec<&str>> = list.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), CONNS, "{list}");
    for r in &rows {
        assert_eq!((r[0], r[2], r[4]), ("TCP", "ESTABLISHED", "10.81.0.100:7000"), "{list}");
        let port: u16 = r[3].strip_prefix("10.81.0.9:").and_then(|p| p.parse().ok()).expect("client port");
        let want = match opened.get(&port).map(String::as_str) {
            Some("r1") => R1,
            Some("r2") => R2,
            other => panic!("{port} is no connection of the client ({other:?}): {list}\n{opened:?}"),
        };
        assert_eq!(r[5], want, "{list}\n{opened:?}");
    }
}
