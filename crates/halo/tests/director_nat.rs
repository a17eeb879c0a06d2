//! Seed 002's director in NAT mode (LVS-NAT, ldirectord's `masq`), with a UDP service beside
//! the web one. The director `d` is a one-node halo cluster whose group
//! `d IPaddr2::VIP/24/eth1 ldirectord::ldirectord.cf` holds the VIP on its outside link;
//! the client sits on another subnet behind that link (a cable of its own, routed through the
//! director); the real servers `r1` and `r2` are on the inside subnet with the director as
//! their default gateway, and each serves HTTP (`testcluster.html`: R1 / R2) and DNS (a tiny
//! responder answering `www.test` with its own address as the A record). The client's requests
//! spread over both real servers for both services; a dead server leaves its table.
use halo::testbed::{sh, wait_for, Testbed};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 nat-secret\n";
const VIP: &str = "10.81.1.100";

const LDIRECTORD_CF: &str = "\
checktimeout=1
negotiatetimeout=1
checkinterval=1

virtual=10.81.1.100:80
\treal=10.81.0.11:80 masq 1
\treal=10.81.0.12:80 masq 1
\tservice=http
\trequest=\"testcluster.html\"
\treceive=\"R[12]\"
\tscheduler=rr

virtual=10.81.1.100:53
\treal=10.81.0.11:53 masq 1
\treal=10.81.0.12:53 masq 1
\tservice=dns
\trequest=\"www.test\"
\treceive=\"^10\\.81\\.0\\.1[12]$\"
\tscheduler=rr
";

/// Answers every A query with this server's address (argv[1]), anything else with no answer.
const DNS_SERVER: &str = r#"
import socket, struct, sys
me = socket.inet_aton(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 53))
while True:
    q, peer = s.recvfrom(4096)
    if len(q) < 17:
        continue
    i = 12
    while i < len(q) and q[i] != 0:
        i += q[i] + 1
    qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
    question = q[12:i + 5]
    a = qtype == 1
    head = q[:2] + b"\x81\x80" + struct.pack(">HHHH", 1, 1 if a else 0, 0, 0)
    rr = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4) + me if a else b""
    s.sendto(head + question + rr, peer)
"#;

/// `n` queries for www.test to argv[1]:53, each from a fresh socket (a new flow), one line
/// per query: the A record, or FAIL.
const DNS_CLIENT: &str = r#"
import socket, struct, sys
for k in range(int(sys.argv[2])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    q = struct.pack(">HHHHHH", k + 1, 0x0100, 1, 0, 0, 0) + b"\x03www\x04test\x00" + struct.pack(">HH", 1, 1)
    s.sendto(q, (sys.argv[1], 53))
    try:
        r, _ = s.recvfrom(4096)
        print(socket.inet_ntoa(r[-4:]) if struct.unpack(">H", r[6:8])[0] else "EMPTY")
    except OSError:
        print("FAIL")
    s.close()
"#;

struct Nat {
    tb: Testbed,
    servers: Vec<(String, &'static str, u32)>,
}

impl Drop for Nat {
    fn drop(&mut self) {
        for host in ["d", "r1", "r2", "client"] {
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

impl Nat {
    /// The bed of one test; `tag` names its namespaces (unique per test: the tests of this
    /// file run at once, in one process).
    fn new(tag: &str) -> Option<Nat> {
        let mut tb = Testbed::for_test(tag)?;
        // Inside: the director and the real servers on the switch.
        tb.add_host("d", "10.81.0.1/24").unwrap();
        tb.add_host("r1", "10.81.0.11/24").unwrap();
        tb.add_host("r2", "10.81.0.12/24").unwrap();
        // Outside: the client on its own subnet and its own cable to the director. It is made
        // a testbed host (so it is cleaned up) whose switch cable is then pulled.
        tb.add_host("client", "10.81.9.9/24").unwrap();
        tb.cable("client", false).unwrap();
        let (d, c) = (tb.ns("d"), tb.ns("client"));
        sh(&["ip", "-n", &d, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", &c])
            .unwrap();
        sh(&["ip", "-n", &d, "addr", "add", "10.81.1.1/24", "dev", "eth1"]).unwrap();
        sh(&["ip", "-n", &c, "addr", "add", "10.81.1.9/24", "dev", "eth1"]).unwrap();
        sh(&["ip", "-n", &d, "link", "set", "eth1", "up"]).unwrap();
        sh(&["ip", "-n", &c, "link", "set", "eth1", "up"]).unwrap();
        sh(&["ip", "-n", &c, "route", "add", "10.81.0.0/24", "via", "10.81.1.1"]).unwrap();
        for r in ["r1", "r2"] {
            sh(&["ip", "-n", &tb.ns(r), "route", "add", "default", "via", "10.81.0.1"]).unwrap();
        }
        // LVS-NAT needs a forwarding director (ldirectord leaves that to the operator too).
        tb.exec("d", &["sysctl", "-qw", "net.ipv4.ip_forward=1"]).unwrap();
        Some(Nat { tb, servers: Vec::new() })
    }

    fn start_servers(&mut self, node: &str) {
        let ip = if node == "r1" { "10.81.0.11" } else { "10.81.0.12" };
        let www = self.tb.dir.join(node).join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("testcluster.html"), format!("{}\n", node.to_uppercase())).unwrap();
        let web = format!("cd {} && exec python3 -m http.server 80 --bind 0.0.0.0", www.display());
        let out = self.tb.dir.join(format!("{node}.web"));
        let pid = self.tb.spawn(node, Path::new("/bin/sh"), &["-c", &web], &out).unwrap();
        self.servers.push((node.to_string(), "web", pid));
        let out = self.tb.dir.join(format!("{node}.dns"));
        let pid = self.tb.spawn(node, Path::new("python3"), &["-c", DNS_SERVER, ip], &out).unwrap();
        self.servers.push((node.to_string(), "dns", pid));
        let up = wait_for(Duration::from_secs(10), || {
            let t = self.tb.exec(node, &["ss", "-ltnun"]).ok()?;
            let t = String::from_utf8_lossy(&t.stdout).to_string();
            (t.contains(":80 ") && t.contains(":53 ")).then_some(())
        });
        assert!(up.is_some(), "the servers of {node} listen");
    }

    /// Starts the director: a one-node halo whose group holds the VIP on the outside link and
    /// runs `ldirectord` (logging into the test's directory).
    fn start_director(&mut self, ldirectord_cf: &str) {
        let cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 2\nbcast eth0\nauto_failback off\n\
             node d\nlogfile {}\nrealtime off\n",
            self.tb.dir.join("d.log").display()
        );
        let group = format!("d IPaddr2::{VIP}/24/eth1 ldirectord::ldirectord.cf\n");
        let dir = self.tb.write_director_config("d", &cf, AUTHKEYS, &group, ldirectord_cf).unwrap();
        self.tb.start_halo("d", Path::new(HALO), &dir).unwrap();
    }

    fn stop(&mut self, node: &str, what: &str) {
        let i = self.servers.iter().position(|(n, w, _)| n == node && *w == what).expect("server runs");
        let (_, _, pid) = self.servers.remove(i);
        self.tb.stop(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
    }

    fn lvs(&self) -> String {
        self.tb.halo_lvs(Path::new(HALO), "d", &[]).unwrap_or_default()
    }

    fn fetches(&self, n: usize) -> Vec<String> {
        let url = format!("http://{VIP}/testcluster.html");
        (0..n)
            .map(|_| self.tb.fetch("client", &url, Duration::from_secs(2)).unwrap_or_else(|| "FAIL".into()))
            .collect()
    }

    fn queries(&self, n: usize) -> Vec<String> {
        let out = self.tb.exec("client", &["python3", "-c", DNS_CLIENT, VIP, &n.to_string()]).unwrap();
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.tb.dir.join("d.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.tb.dir.join("d.out")).unwrap_or_default()
    }

    fn until(&self, within: Duration, what: &str, mut f: impl FnMut() -> bool) {
        if wait_for(within, || f().then_some(())).is_none() {
            panic!("{what} (waited {within:?})\n{}\n{}", self.lvs(), self.log());
        }
    }
}

fn count(v: &[String], what: &str) -> usize {
    v.iter().filter(|x| *x == what).count()
}

#[test]
fn seed_002_director_nat_http_and_udp_dns() {
    let Some(mut c) = Nat::new("nat") else { return };
    c.start_servers("r1");
    c.start_servers("r2");
    c.start_director(LDIRECTORD_CF);

    c.until(Duration::from_secs(30), "the director has both real servers of both services", || {
        let t = c.lvs();
        ["10.81.0.11:80", "10.81.0.12:80", "10.81.0.11:53", "10.81.0.12:53"].iter().all(|r| t.contains(r))
    });
    let table = c.lvs();
    assert!(table.contains(&format!("TCP  {VIP}:80 rr")), "{table}");
    assert!(table.contains(&format!("UDP  {VIP}:53 rr")), "{table}");
    assert_eq!(table.matches("Masq").count(), 4, "every real server is NAT: {table}");
    // The kernel's table, which the client meets, read from the kernel itself: both services
    // rotate over both real servers there first.
    c.until(
        Duration::from_secs(10),
        "the kernel's table rotates over both real servers of both services",
        || {
            let t = c.tb.nft_table("d", "ip", "halo_lb").unwrap_or_default();
            ["10.81.0.11:80", "10.81.0.12:80", "10.81.0.11:53", "10.81.0.12:53"]
                .iter()
                .all(|r| t.contains(&format!("dnat to {r}")))
                && t.matches("numgen").count() == 2
        },
    );

    // HTTP through the NATing director: R1 and R2 alternate, the client sees only the VIP.
    let seen = c.fetches(6);
    assert_eq!((count(&seen, "R1"), count(&seen, "R2")), (3, 3), "{seen:?}\n{}", c.log());
    // LVS-NAT rewrites only the destination: the real servers see the client's own address.
    let web_log = std::fs::read_to_string(c.tb.dir.join("r1.web")).unwrap_or_default();
    assert!(web_log.contains("10.81.1.9 - -"), "r1 saw the client's address: {web_log}");
    // DNS over UDP: each query a new flow, spread over both servers.
    let answers = c.queries(8);
    assert_eq!(
        (count(&answers, "10.81.0.11"), count(&answers, "10.81.0.12")),
        (4, 4),
        "{answers:?}\n{}",
        c.lvs()
    );

    // r2's DNS responder dies: its DNS check fails, it leaves the UDP table only.
    c.stop("r2", "dns");
    c.until(Duration::from_secs(15), "r2 left the DNS table", || !c.lvs().contains("10.81.0.12:53"));
    assert!(c.lvs().contains("10.81.0.12:80"), "r2 still serves HTTP: {}", c.lvs());
    // The client's view is awaited rather than sampled once.
    c.until(Duration::from_secs(10), "every DNS answer from r1", || count(&c.queries(4), "10.81.0.11") == 4);

    // r1's web server dies: HTTP goes to r2 only.
    c.stop("r1", "web");
    c.until(Duration::from_secs(15), "r1 left the HTTP table", || !c.lvs().contains("10.81.0.11:80"));
    c.until(Duration::from_secs(10), "every HTTP answer from R2", || count(&c.fetches(4), "R2") == 4);
    assert!(c.log().contains("Deleted real server: 10.81.0.12:53"), "{}", c.log());
}

/// A firewall-mark virtual service (`virtual=7`) through `halo run` on the nftables plane:
/// the operator's own rules on the director mark the VIP's ports 80 and 8080 as 7; halo's
/// director balances whatever carries the mark over both real servers (NAT, the packet's port
/// kept: the real servers are named without one and checked on `checkport`), and nothing
/// else; a real server whose check fails leaves for both ports at once.
#[test]
fn firewall_mark_service_through_halo_run_on_nftables() {
    let Some(mut c) = Nat::new("natfwm") else { return };
    // The operator's marking rules, in a table of their own at the mangle priority.
    let marks = format!(
        "table ip operator {{\n chain pre {{\n  type filter hook prerouting priority mangle;\n  \
         ip daddr {VIP} tcp dport {{ 80, 8080 }} meta mark set 7\n }}\n}}\n"
    );
    let marks_file = c.tb.dir.join("operator.nft");
    std::fs::write(&marks_file, marks).unwrap();
    let out = c.tb.exec("d", &["nft", "-f", &marks_file.display().to_string()]).unwrap();
    assert!(out.status.success(), "the marking rules load: {}", String::from_utf8_lossy(&out.stderr));
    // Each real server serves testcluster.html on 80 and 8080.
    for node in ["r1", "r2"] {
        let www = c.tb.dir.join(node).join("www");
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("testcluster.html"), format!("{}\n", node.to_uppercase())).unwrap();
        for port in ["80", "8080"] {
            let web = format!("cd {} && exec python3 -m http.server {port} --bind 0.0.0.0", www.display());
            let out = c.tb.dir.join(format!("{node}.web{port}"));
            let pid = c.tb.spawn(node, Path::new("/bin/sh"), &["-c", &web], &out).unwrap();
            c.servers.push((node.to_string(), if port == "80" { "web" } else { "web8080" }, pid));
        }
        let up = wait_for(Duration::from_secs(10), || {
            let t = c.tb.exec(node, &["ss", "-ltn"]).ok()?;
            let t = String::from_utf8_lossy(&t.stdout).to_string();
            (t.contains(":80 ") && t.contains(":8080 ")).then_some(())
        });
        assert!(up.is_some(), "the web servers of {node} listen");
    }
    c.start_director(
        "checktimeout=3\nnegotiatetimeout=3\ncheckinterval=1\n\nvirtual=7\n\
         \treal=10.81.0.11 masq 1\n\treal=10.81.0.12 masq 1\n\tservice=http\n\tcheckport=80\n\
         \trequest=\"testcluster.html\"\n\treceive=\"R[12]\"\n\tscheduler=rr\n",
    );

    c.until(Duration::from_secs(30), "the director has both real servers of FWM 7", || {
        let t = c.lvs();
        t.contains("FWM  7 rr") && t.contains("10.81.0.11:0") && t.contains("10.81.0.12:0")
    });
    let table = c.lvs();
    assert_eq!(table.matches("Masq").count(), 2, "{table}");
    c.until(Duration::from_secs(10), "the kernel's table balances the mark over both", || {
        let t = c.tb.nft_table("d", "ip", "halo_lb").unwrap_or_default();
        t.contains("meta mark 0x00000007")
            && t.contains("dnat to 10.81.0.11")
            && t.contains("dnat to 10.81.0.12")
            && t.contains("numgen")
    });
    let fetch = |c: &Nat, port: u16| {
        let url = format!("http://{VIP}:{port}/testcluster.html");
        c.tb.fetch("client", &url, Duration::from_secs(2)).unwrap_or_else(|| "FAIL".into())
    };
    // Both marked ports, round robin over the one mark: each real server takes every other
    // connection, whichever port it came to, and answers on the port the client asked for.
    let seen: Vec<String> = (0..8).map(|i| fetch(&c, if i % 4 < 2 { 80 } else { 8080 })).collect();
    assert_eq!((count(&seen, "R1"), count(&seen, "R2")), (4, 4), "{seen:?}\n{}", c.lvs());
    for node in ["r1", "r2"] {
        let log8080 = std::fs::read_to_string(c.tb.dir.join(format!("{node}.web8080"))).unwrap_or_default();
        assert!(log8080.contains("GET /testcluster.html"), "{node} answered on 8080: {log8080}");
    }
    // An unmarked port of the VIP is not balanced: nothing on the director answers it.
    assert_eq!(fetch(&c, 9090), "FAIL", "port 9090 carries no mark");

    // r1's web server on the check port dies: r1 leaves the service, for 8080 as well.
    c.stop("r1", "web");
    c.until(Duration::from_secs(15), "r1 left FWM 7", || !c.lvs().contains("10.81.0.11:0"));
    c.until(Duration::from_secs(10), "every answer from R2, on both ports", || {
        (0..4).map(|i| fetch(&c, if i % 2 == 0 { 80 } else { 8080 })).all(|a| a == "R2")
    });
}
