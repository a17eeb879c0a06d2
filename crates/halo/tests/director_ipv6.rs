//! Seed 002's director over IPv6: a `virtual6=` service with `real6=` real servers by direct
//! routing, run by halo's built-in director on the nftables plane (its `ip6` table). The
//! director `d` is a one-node halo cluster whose group `d IPaddr2::VIP6/64/eth0
//! ldirectord::ldirectord.cf` holds the IPv6 VIP; `r1` and `r2` serve HTTP on IPv6
//! (`testcluster.html`: R1 / R2) with the VIP on `lo` put there by `halo lvs realserver start
//! --vip`; the client fetches `http://[VIP6]/`. Both real servers answer in turn; a dead web
//! server leaves the table within the check interval and the client sees only the other; a
//! clean stop of the director removes its tables.
use halo::testbed::{sh, wait_for, Testbed};
use std::path::Path;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 six-secret\n";
const VIP6: &str = "fd79::100";

const LDIRECTORD_CF: &str = "\
checktimeout=3
negotiatetimeout=3
checkinterval=1

virtual6=[fd79::100]:80
\treal6=[fd79::11]:80 gate 1
\treal6=[fd79::12]:80 gate 1
\tservice=http
\trequest=\"testcluster.html\"
\treceive=\"R[12]\"
\tscheduler=rr
";

struct Six {
    tb: Testbed,
    web: Vec<(String, u32)>,
}

impl Six {
    fn new() -> Option<Six> {
        let mut tb = Testbed::for_test("six")?;
        // IPv4 for the heartbeats; IPv6 (nodad: usable at once) for the service.
        for (h, v4, v6) in [
            ("d", "10.82.0.1", "fd79::1"),
            ("r1", "10.82.0.11", "fd79::11"),
            ("r2", "10.82.0.12", "fd79::12"),
        ]
        .into_iter()
        .chain([("client", "10.82.0.9", "fd79::9")])
        {
            let ns = tb.add_host(h, &format!("{v4}/24")).unwrap();
            sh(&["ip", "-n", &ns, "addr", "add", &format!("{v6}/64"), "dev", "eth0", "nodad"]).unwrap();
        }
        Some(Six { tb, web: Vec::new() })
    }

    fn start_web(&mut self, node: &str) {
        let www = self.tb.dir.join(node).join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("testcluster.html"), format!("{}\n", node.to_uppercase())).unwrap();
        let web = format!("cd {} && exec python3 -m http.server 80 --bind ::", www.display());
        let out = self.tb.dir.join(format!("{node}.web"));
        let pid = self.tb.spawn(node, Path::new("/bin/sh"), &["-c", &web], &out).unwrap();
        self.web.push((node.to_string(), pid));
        let up = wait_for(Duration::from_secs(10), || {
            let t = self.tb.exec(node, &["ss", "-ltn"]).ok()?;
            String::from_utf8_lossy(&t.stdout).contains(":80 ").then_some(())
        });
        assert!(up.is_some(), "the web server of {node} listens on IPv6");
    }

    fn stop_web(&mut self, node: &str) {
        let i = self.web.iter().position(|(n, _)| n == node).expect("web server runs");
        let (_, pid) = self.web.remove(i);
        self.tb.stop(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    }

    fn lvs(&self) -> String {
        self.lvs_with(&[])
    }

    fn lvs_with(&self, args: &[&str]) -> String {
        self.tb.halo_lvs(Path::new(HALO), "d", args).unwrap_or_default()
    }

    fn fetches(&self, n: usize) -> Vec<String> {
        let url = format!("http://[{VIP6}]/testcluster.html");
        (0..n)
            .map(|_| self.tb.fetch("client", &url, Duration::from_secs(2)).unwrap_or_else(|| "FAIL".into()))
            .collect()
    }

    fn tables(&self) -> String {
        let out = self.tb.exec("d", &["nft", "list", "tables"]).unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.tb.dir.join("d.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.tb.dir.join("d.out")).unwrap_or_default()
    }

    fn until(&self, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
        if wait_for(within, || f().then_some(())).is_none() {
            panic!(
                "{what} (waited {within:?})\n{}\n{}\n{}",
                self.lvs_with(&["--health"]),
                self.tables(),
                self.log()
            );
        }
    }
}

fn count(v: &[String], what: &str) -> usize {
    v.iter().filter(|x| *x == what).count()
}

#[test]
fn seed_002_director_over_ipv6_direct_routing() {
    let Some(mut c) = Six::new() else { return };
    let cf = format!(
        "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 2\nbcast eth0\nauto_failback off\n\
         node d\nlogfile {}\nrealtime off\n",
        c.tb.dir.join("d.log").display()
    );
    let group = format!("d IPaddr2::{VIP6}/64/eth0 ldirectord::ldirectord.cf\n");
    let dir = c.tb.write_director_config("d", &cf, AUTHKEYS, &group, LDIRECTORD_CF).unwrap();
    for r in ["r1", "r2"] {
        c.start_web(r);
        // The LVS-DR real-server side for an IPv6 VIP: on lo as /128.
        let state = c.tb.dir.join(r).join("state");
        let out =
            c.tb.exec(
                r,
                &[HALO, "lvs", "realserver", "start", "--vip", VIP6, "--state-dir", &state.to_string_lossy()],
            )
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let lo = c.tb.exec(r, &["ip", "-6", "addr", "show", "dev", "lo"]).unwrap();
        assert!(String::from_utf8_lossy(&lo.stdout).contains("inet6 fd79::100/128"), "{r}: VIP6 on lo");
    }
    let (pid, _) = c.tb.start_halo("d", Path::new(HALO), &dir).unwrap();

    c.until(Duration::from_secs(30), "the director has both IPv6 real servers", || {
        let t = c.lvs();
        t.contains("[fd79::11]:80") && t.contains("[fd79::12]:80")
    });
    let table = c.lvs();
    assert!(table.contains("TCP  [fd79::100]:80 rr"), "{table}");
    assert_eq!(table.matches("Route").count(), 2, "both real servers by direct routing: {table}");
    assert!(
        c.tables().contains("table ip6 halo_lb"),
        "the IPv6 service runs in an ip6 table: {}",
        c.tables()
    );

    // The kernel's table follows `halo lvs` a moment later: wait for the client's view.
    c.until(Duration::from_secs(10), "the client served by R1 and R2 in turn", || {
        let seen = c.fetches(4);
        count(&seen, "R1") == 2 && count(&seen, "R2") == 2
    });
    c.until(Duration::from_secs(10), "rr: R1 and R2 alternate over six fetches", || {
        let seen = c.fetches(6);
        seen.windows(2).all(|w| w[0] != w[1]) && !seen.contains(&"FAIL".to_string())
    });
    // Direct routing: the real server sees the client's own IPv6 address.
    let web_log = std::fs::read_to_string(c.tb.dir.join("r1.web")).unwrap_or_default();
    assert!(web_log.contains("fd79::9 - -"), "r1 saw the client's address: {web_log}");

    // r2's web server dies: its check fails, it leaves the table, the client sees only R1.
    c.stop_web("r2");
    c.until(Duration::from_secs(15), "r2 left the table", || !c.lvs().contains("[fd79::12]:80"));
    c.until(Duration::from_secs(10), "every answer from R1", || count(&c.fetches(4), "R1") == 4);
    assert!(c.log().contains("Deleted real server: [fd79::12]:80 ([fd79::100]:80)"), "{}", c.log());

    // A clean stop (cleanstop=yes, the default) removes the director's tables.
    c.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let tables = c.tables();
    assert!(!tables.contains("halo_lb"), "no director table left: {tables}");
}
