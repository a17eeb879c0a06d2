//! End-to-end director of seed 002 in network namespaces: n1 and n2 both run halo and serve
//! HTTP (`testcluster.html` answering N1 / N2) and are LVS-DR real servers (`halo lvs
//! realserver start`: the VIP on lo, arp_ignore/arp_announce); the group
//! `n1 IPaddr2::VIP/16/eth0 ldirectord::ldirectord.cf` puts the VIP and halo's built-in
//! director on n1. The client sees N1 and N2 alternate (rr, direct routing); N2's web server
//! stops and N2 leaves the table; n1's cable is cut and n2 holds the VIP and the director
//! and serves. `halo lvs` is checked against ipvsadm's format.
use halo::testbed::{wait_for, Testbed};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 director-secret\n";
const VIP: &str = "10.79.0.100";

/// Seed 002's ldirectord.cf with the seed's values scaled down (checks every second).
const LDIRECTORD_CF: &str = "\
checktimeout=1
checkinterval=1
emailalertstatus=stopping

virtual=10.79.0.100:80
\treal=10.79.0.1:80 gate 1 \"testcluster.html\", \"N1\"
\treal=10.79.0.2:80 gate 1 \"testcluster.html\", \"N2\"
\tchecktype=negotiate
\tservice=http
\tcheckport=80
\tscheduler=rr
";

struct Cluster {
    tb: Testbed,
    web: Vec<(String, u32)>,
}

impl Cluster {
    fn new(tag: &str) -> Option<Cluster> {
        let mut tb = Testbed::for_test(tag)?;
        tb.add_host("n1", "10.79.0.1/16").unwrap();
        tb.add_host("n2", "10.79.0.2/16").unwrap();
        tb.add_host("client", "10.79.0.9/16").unwrap();
        Some(Cluster { tb, web: Vec::new() })
    }

    fn socket(&self, node: &str) -> PathBuf {
        self.tb.dir.join(format!("{node}.sock"))
    }

    fn state_dir(&self, node: &str) -> PathBuf {
        self.tb.dir.join(node).join("state")
    }

    fn config(&self, node: &str, haresources: &str) -> PathBuf {
        let log = self.tb.dir.join(format!("{node}.log"));
        let cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nbcast eth0\nauto_failback off\n\
             node n1 n2\nlogfile {}\nrealtime off\n",
            log.display()
        );
        self.tb.write_director_config(node, &cf, AUTHKEYS, haresources, LDIRECTORD_CF).unwrap()
    }

    /// The node's web server: `testcluster.html` holds N1 or N2.
    fn start_web(&mut self, node: &str) {
        let www = self.tb.dir.join(node).join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("testcluster.html"), format!("{}\n", node.to_uppercase())).unwrap();
        let script = format!("cd {} && exec python3 -m http.server 80 --bind 0.0.0.0", www.display());
        let out = self.tb.dir.join(format!("{node}.web"));
        let pid = self.tb.spawn(node, Path::new("/bin/sh"), &["-c", &script], &out).unwrap();
        self.web.push((node.to_string(), pid));
        let up = wait_for(Duration::from_secs(10), || {
            let o = self.tb.exec(node, &["ss", "-ltn"]).ok()?;
            String::from_utf8_lossy(&o.stdout).contains(":80 ").then_some(())
        });
        assert!(up.is_some(), "the web server of {node} listens");
    }

    fn stop_web(&mut self, node: &str) {
        let i = self.web.iter().position(|(n, _)| n == node).expect("web runs");
        let (_, pid) = self.web.remove(i);
        self.tb.stop(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    }

    fn halo(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(HALO).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `halo lvs ARGS` against `node`'s daemon.
    fn lvs(&self, node: &str, args: &[&str]) -> String {
        let sock = self.socket(node);
        let mut full = vec!["--socket", sock.to_str().unwrap(), "lvs"];
        full.extend_from_slice(args);
        let (ok, out, err) = self.halo(&full);
        assert!(ok, "halo lvs {args:?} on {node}: {err}");
        out
    }

    /// `halo status [--json]` against `node`'s daemon.
    fn status(&self, node: &str, json: bool) -> String {
        let sock = self.socket(node);
        let mut args = vec!["--socket", sock.to_str().unwrap(), "status"];
        if json {
            args.push("--json");
        }
        let (ok, out, err) = self.halo(&args);
        assert!(ok, "halo status on {node}: {err}");
        out
    }

    /// The real servers of `halo status --json`'s director on `node`: (address, weight in
    /// the table, health).
    fn status_reals(&self, node: &str) -> Vec<(String, Option<u64>, String)> {
        let v: serde_json::Value = serde_json::from_str(&self.status(node, true)).unwrap();
        let vs = v["director"]["virtual_services"].as_array().cloned().unwrap_or_default();
        vs.iter()
            .flat_map(|s| s["real_servers"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                (
                    r["address"].as_str().unwrap_or("").to_string(),
                    r["weight"].as_u64(),
                    r["health"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// `halo lvs` on `node`, empty while its daemon does not answer yet.
    fn try_lvs(&self, node: &str) -> String {
        let sock = self.socket(node);
        let (ok, out, _) = self.halo(&["--socket", sock.to_str().unwrap(), "lvs"]);
        if ok {
            out
        } else {
            String::new()
        }
    }

    /// `halo lvs realserver ACTION` in `node`'s namespace, VIPs from its configuration.
    fn realserver(&self, node: &str, action: &str, dir: &Path) -> (bool, String) {
        let state = self.state_dir(node);
        std::fs::create_dir_all(&state).unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &self.tb.ns(node), HALO, "lvs", "realserver", action, "--config-dir"])
            .arg(dir)
            .arg("--state-dir")
            .arg(&state)
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn fetch(&self) -> Option<String> {
        self.tb.fetch("client", &format!("http://{VIP}/testcluster.html"), Duration::from_secs(2))
    }

    fn fetches(&self, n: usize) -> Vec<String> {
        (0..n).map(|_| self.fetch().unwrap_or_else(|| "FAIL".into())).collect()
    }

    fn log(&self, node: &str) -> String {
        self.tb.node_log(node)
    }

    fn logs(&self) -> String {
        format!("--- n1\n{}\n--- n2\n{}", self.log("n1"), self.log("n2"))
    }

    fn has_vip_on_eth0(&self, node: &str) -> bool {
        let out = self.tb.exec(node, &["ip", "-4", "addr", "show", "dev", "eth0"]).unwrap();
        String::from_utf8_lossy(&out.stdout).contains(&format!("{VIP}/"))
    }

    /// The director's table as the kernel has it (`nft list table ip halo_lb` in `node`'s
    /// namespace), empty while there is none: what the client meets, read from the kernel
    /// itself (`halo lvs` lists the table as the director last applied it).
    fn kernel_table(&self, node: &str) -> String {
        self.tb.nft_table(node, "ip", "halo_lb").unwrap_or_default()
    }

    /// Both real servers in the rotation of `node`'s kernel table: a per-real chain each
    /// (named after the VIP and the real server) and the `numgen` map between them (there
    /// only while two or more real servers are in it).
    fn kernel_rotates_both(&self, node: &str) -> bool {
        let t = self.kernel_table(node);
        t.contains("_10_79_0_1_80 ") && t.contains("_10_79_0_2_80 ") && t.contains("numgen")
    }

    fn until(&self, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
        if wait_for(within, || f().then_some(())).is_none() {
            panic!("{what} (waited {within:?})\n{}", self.logs());
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for host in ["n1", "n2", "client"] {
            let Ok(out) = Command::new("ip").args(["netns", "pids", &self.tb.ns(host)]).output() else {
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

fn count(v: &[String], what: &str) -> usize {
    v.iter().filter(|x| *x == what).count()
}

const HEADER: &str = "IP Virtual Server version 1.2.1 (size=4096)\n\
                      Prot LocalAddress:Port Scheduler Flags\n  \
                      -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n";

#[test]
fn seed_002_director_direct_routing_health_checks_and_failover() {
    let Some(mut c) = Cluster::new("dir") else { return };
    let hr = format!("n1 IPaddr2::{VIP}/16/eth0 ldirectord::ldirectord.cf\n");
    let d1 = c.config("n1", &hr);
    let d2 = c.config("n2", &hr);
    c.start_web("n1");
    c.start_web("n2");

    // Both nodes are LVS-DR real servers; the VIP is taken from the haresources group that
    // runs ldirectord.
    for (n, d) in [("n1", &d1), ("n2", &d2)] {
        let (ok, out) = c.realserver(n, "start", d);
        assert!(ok && out.contains(VIP), "realserver start on {n}: {out}");
        let (ok, out) = c.realserver(n, "status", d);
        assert!(ok && out.contains("lvsdr is running"), "realserver status on {n}: {out}");
        let lo = c.tb.exec(n, &["ip", "-4", "addr", "show", "dev", "lo"]).unwrap();
        assert!(String::from_utf8_lossy(&lo.stdout).contains(&format!("{VIP}/32")), "{n}: VIP on lo");
        let ign = c.tb.exec(n, &["cat", "/proc/sys/net/ipv4/conf/eth0/arp_ignore"]).unwrap();
        assert_eq!(String::from_utf8_lossy(&ign.stdout).trim(), "1");
    }

    let (p1, _) = c.tb.start_halo("n1", Path::new(HALO), &d1).unwrap();
    let (_p2, _) = c.tb.start_halo("n2", Path::new(HALO), &d2).unwrap();
    c.until(Duration::from_secs(20), "n1 runs the director with both real servers", || {
        let t = c.try_lvs("n1");
        t.contains("10.79.0.1:80") && t.contains("10.79.0.2:80")
    });
    assert!(c.has_vip_on_eth0("n1"), "n1 holds the VIP\n{}", c.logs());
    assert!(!c.has_vip_on_eth0("n2"), "n2 does not");
    // The kernel's copy of the table holds both before the client asks.
    c.until(Duration::from_secs(10), "n1's kernel table rotates over both real servers", || {
        c.kernel_rotates_both("n1")
    });

    // rr over direct routing: N1 and N2 alternate.
    let seen = c.fetches(6);
    assert_eq!((count(&seen, "N1"), count(&seen, "N2")), (3, 3), "{seen:?}\n{}", c.logs());
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "rr alternates: {seen:?}");

    // halo lvs: ipvsadm -L -n byte for byte (n1 is the director itself: Local). The six
    // fetches are counted from the DR flow sets: closed a moment ago, but without TCP state
    // a flow counts as active for 2 minutes after its last packet (DR_ACTIVE_IDLE_S).
    assert_eq!(
        c.lvs("n1", &[]),
        format!(
            "{HEADER}TCP  {VIP}:80 rr\n  \
             -> 10.79.0.1:80                 Local   1      3          0         \n  \
             -> 10.79.0.2:80                 Route   1      3          0         \n"
        )
    );
    assert_eq!(c.lvs("n1", &["-L", "-n"]), c.lvs("n1", &[]));
    let stats = c.lvs("n1", &["--stats"]);
    let lines: Vec<&str> = stats.lines().collect();
    assert_eq!(lines[0], "IP Virtual Server version 1.2.1 (size=4096)");
    assert_eq!(lines[1], "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes");
    assert_eq!(lines[2], "  -> RemoteAddress:Port");
    assert!(lines[3].starts_with(&format!("TCP  {VIP}:80 ")), "{stats}");
    for (line, real) in [(lines[4], "10.79.0.1:80"), (lines[5], "10.79.0.2:80")] {
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], real, "{stats}");
        let inpkts: u64 = cols[3].parse().unwrap();
        assert!(inpkts > 0, "DR counts packets in to {real}: {stats}");
        assert_eq!(cols[4], "0", "DR replies bypass the director: {stats}");
    }
    let rate = c.lvs("n1", &["--rate"]);
    assert!(
        rate.contains("\nProt LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n")
    );
    // -c: the six fetches, from the client, each with its real server.
    let list = c.lvs("n1", &["-c"]);
    assert!(
        list.starts_with(
            "IPVS connection entries\npro expire state       source             virtual            destination\n"
        ),
        "{list}"
    );
    let rows: Vec<Vec<&str>> = list.lines().skip(2).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 6, "{list}");
    for r in &rows {
        assert_eq!((r[0], r[2], r[4]), ("TCP", "ESTABLISHED", "10.79.0.100:80"), "{list}");
    }
    for real in ["10.79.0.1:80", "10.79.0.2:80"] {
        assert_eq!(rows.iter().filter(|r| r[5] == real).count(), 3, "{list}");
    }
    // n2 runs no director: an empty table.
    assert_eq!(c.lvs("n2", &[]), HEADER);

    // halo status on the director node: the virtual service and both real servers with
    // their weight and health; --json carries the same.
    let text = c.status("n1", false);
    assert!(text.contains(&format!("\nDirector:\n TCP {VIP}:80 rr (ldirectord.cf, on n1)\n")), "{text}");
    for real in ["10.79.0.1:80", "10.79.0.2:80"] {
        assert!(text.contains(&format!("     -> {real} gate weight 1 up (last check: ")), "{real}: {text}");
    }
    let v: serde_json::Value = serde_json::from_str(&c.status("n1", true)).unwrap();
    let svc = &v["director"]["virtual_services"][0];
    assert_eq!(
        (svc["protocol"].as_str(), svc["address"].as_str()),
        (Some("TCP"), Some("10.79.0.100:80")),
        "{v}"
    );
    assert_eq!(svc["scheduler"], "rr");
    assert_eq!(
        c.status_reals("n1"),
        [
            ("10.79.0.1:80".to_string(), Some(1), "up".to_string()),
            ("10.79.0.2:80".to_string(), Some(1), "up".to_string())
        ]
    );
    for r in svc["real_servers"].as_array().unwrap() {
        assert_eq!(r["forward"], "gate", "{r}");
        assert!(r["checks"].as_u64().unwrap() >= 1, "{r}");
        assert!(r["last_check"].is_string(), "{r}");
        assert!(r["counters"]["inpkts"].as_u64().unwrap() > 0, "the client's packets were counted: {r}");
    }
    // n2 does not hold it: where it runs, no real servers.
    let text = c.status("n2", false);
    assert!(
        text.contains(&format!(
            "\nDirector:\n ldirectord::ldirectord.cf (group IPaddr2::{VIP}/16/eth0): runs on n1 (its real servers: `halo status` there)\n"
        )),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&c.status("n2", true)).unwrap();
    assert_eq!(v["director"]["here"], false, "{v}");
    assert_eq!(v["director"]["virtual_services"], serde_json::json!([]), "{v}");

    // N2's web server stops: N2 leaves the table at its next check, the client sees N1 only.
    c.stop_web("n2");
    c.until(Duration::from_secs(10), "N2 left the table", || !c.lvs("n1", &[]).contains("10.79.0.2:80"));
    let health = c.lvs("n1", &["--health"]);
    assert!(health.contains("10.79.0.2:80") && health.contains("not in table"), "{health}");
    // The kernel's table follows `halo lvs` a moment later: once it no longer rotates, every
    // fetch is N1's.
    c.until(Duration::from_secs(10), "n1's kernel table no longer rotates", || {
        let t = c.kernel_table("n1");
        !t.is_empty() && !t.contains("numgen")
    });
    let seen = c.fetches(4);
    assert_eq!(count(&seen, "N1"), 4, "{seen:?}");
    assert!(c.log("n1").contains("Deleted real server: 10.79.0.2:80"), "{}", c.log("n1"));
    // halo status shows it down, out of the table (not quiescent), with the check's reason.
    let reals = c.status_reals("n1");
    assert_eq!(reals[0], ("10.79.0.1:80".to_string(), Some(1), "up".to_string()), "{reals:?}");
    assert_eq!(reals[1], ("10.79.0.2:80".to_string(), None, "down".to_string()), "{reals:?}");
    let text = c.status("n1", false);
    assert!(text.contains("     -> 10.79.0.2:80 gate out of the table down: "), "{text}");

    // It comes back at its next successful check.
    c.start_web("n2");
    c.until(Duration::from_secs(10), "N2 back in the table", || c.lvs("n1", &[]).contains("10.79.0.2:80"));
    c.until(Duration::from_secs(10), "n1's kernel table rotates over both again", || {
        c.kernel_rotates_both("n1")
    });
    let seen = c.fetches(4);
    assert_eq!((count(&seen, "N1"), count(&seen, "N2")), (2, 2), "{seen:?}");

    // n1's cable is cut: n2 holds the VIP and the director, and serves (N1 unreachable
    // leaves its table).
    c.tb.cable("n1", false).unwrap();
    c.until(Duration::from_secs(15), "n2 runs the director", || {
        let t = c.lvs("n2", &[]);
        t.contains("10.79.0.2:80") && !t.contains("10.79.0.1:80")
    });
    assert!(c.has_vip_on_eth0("n2"), "n2 holds the VIP\n{}", c.logs());
    c.until(Duration::from_secs(10), "the client is served by N2", || c.fetch().as_deref() == Some("N2"));
    let seen = c.fetches(4);
    assert_eq!(count(&seen, "N2"), 4, "{seen:?}\n{}", c.logs());
    // Every fetch n2 served since it took over is an active DR flow (at least the four).
    let t = c.lvs("n2", &[]);
    let real = format!("{HEADER}TCP  {VIP}:80 rr\n  -> 10.79.0.2:80                 Local   1      ");
    let counts: Vec<u32> =
        t.strip_prefix(&real).unwrap_or_default().split_whitespace().filter_map(|x| x.parse().ok()).collect();
    assert!(counts.len() == 2 && counts[0] >= 4 && counts[1] == 0, "{t}");

    // A graceful stop of the cut n1 releases its group: the director's table goes.
    c.tb.stop(p1, nix::sys::signal::Signal::SIGTERM).unwrap();
    let tables = c.tb.exec("n1", &["nft", "list", "tables"]).unwrap();
    assert!(!String::from_utf8_lossy(&tables.stdout).contains("halo_lb"), "n1 removed its table");
    let (ok, _) = c.realserver("n2", "stop", &d2);
    assert!(ok);
}
