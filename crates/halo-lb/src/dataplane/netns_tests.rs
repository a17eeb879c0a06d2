//! End-to-end tests of the nftables data plane: a client, a director and two real servers,
//! each in its own network namespace cabled to a bridge, real nftables in the director.
//! Real servers answer each line they read with their name (TCP) or each datagram with their
//! name (UDP), so the client sees which one it reached. Without root (or without `nft`) the
//! tests are skipped with a note, and fail under `HALO_REQUIRE_ROOT=1`.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 100);
const DIRECTOR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const R1: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const R2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 12);
const VIP6: Ipv6Addr = v6_of(VIP);
const R1_6: Ipv6Addr = v6_of(R1);
const R2_6: Ipv6Addr = v6_of(R2);
/// A host's IPv6 address beside its IPv4 one: fd77::N for 10.77.0.N.
const fn v6_of(v4: Ipv4Addr) -> Ipv6Addr {
    Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, v4.octets()[3] as u16)
}
/// Bounds a blocked read or connect so that a broken data plane fails the test instead of
/// hanging it; never part of what is asserted.
const IO_LIMIT: Duration = Duration::from_secs(5);

fn skip(test: &str, why: &str) -> bool {
    if std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1") {
        panic!("{test}: {why} (HALO_REQUIRE_ROOT=1)");
    }
    eprintln!("note: {test} skipped: {why}");
    false
}

fn can_run(test: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        return skip(test, "needs root");
    }
    if let Err(e) = Nft::new().run(&["--version"], None) {
        return skip(test, &e.to_string());
    }
    true
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(out.status.success(), "{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Runs `f` on a thread inside the named namespace: sockets it creates stay there.
fn in_ns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(&fd, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("netns thread")
}

/// The four hosts on one bridge; namespaces deleted and servers stopped on drop.
struct Bed {
    prefix: String,
    servers: Vec<socket2::Socket>,
}

impl Bed {
    fn new() -> Bed {
        static N: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!("hlb{}x{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let bed = Bed { prefix, servers: Vec::new() };
        let sw = bed.ns("sw");
        for h in ["sw", "cl", "dir", "r1", "r2"] {
            sh(&["ip", "netns", "add", &bed.ns(h)]);
            sh(&["ip", "-n", &bed.ns(h), "link", "set", "lo", "up"]);
        }
        sh(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"]);
        sh(&["ip", "-n", &sw, "link", "set", "br0", "up"]);
        for (i, (h, a)) in [("cl", CLIENT), ("dir", DIRECTOR), ("r1", R1), ("r2", R2)].into_iter().enumerate()
        {
            let (ns, port) = (bed.ns(h), format!("p{i}"));
            sh(&[
                "ip", "link", "add", "eth0", "netns", &ns, "type", "veth", "peer", "name", &port, "netns",
                &sw,
            ]);
            sh(&["ip", "-n", &sw, "link", "set", &port, "master", "br0", "up"]);
            sh(&["ip", "-n", &ns, "addr", "add", &format!("{a}/24"), "dev", "eth0"]);
            // Dual stack; nodad: usable at once.
            sh(&["ip", "-n", &ns, "addr", "add", &format!("{}/64", v6_of(a)), "dev", "eth0", "nodad"]);
            sh(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
        }
        sh(&["ip", "-n", &bed.ns("dir"), "addr", "add", &format!("{VIP}/24"), "dev", "eth0"]);
        sh(&["ip", "-n", &bed.ns("dir"), "addr", "add", &format!("{VIP6}/64"), "dev", "eth0", "nodad"]);
        sh(&["ip", "netns", "exec", &bed.ns("dir"), "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        sh(&["ip", "netns", "exec", &bed.ns("dir"), "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        bed
    }

    fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn plane(&self) -> NftDataPlane {
        NftDataPlane::new(Nft::new().in_netns(self.ns("dir")))
    }

    /// LVS-DR real servers: the VIP on lo, ARP for it left to the director.
    fn dr_reals(&self) {
        for h in ["r1", "r2"] {
            let ns = self.ns(h);
            for k in ["all", "eth0"] {
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{k}.arp_ignore=1"),
                ]);
                sh(&[
                    "ip",
                    "netns",
                    "exec",
                    &ns,
                    "sysctl",
                    "-qw",
                    &format!("net.ipv4.conf.{k}.arp_announce=2"),
                ]);
            }
            sh(&["ip", "-n", &ns, "addr", "add", &format!("{VIP}/32"), "dev", "lo"]);
        }
    }

    /// LVS-DR real servers for IPv6: the VIP on lo as /128. (Neighbour discovery answers only
    /// for addresses of the interface asked on, so nothing like arp_ignore is needed.)
    fn dr_reals6(&self) {
        for h in ["r1", "r2"] {
            sh(&["ip", "-n", &self.ns(h), "addr", "add", &format!("{VIP6}/128"), "dev", "lo", "nodad"]);
        }
    }

    /// A TCP server in `host` on `port` that answers each line with `host`.
    fn tcp_server(&mut self, host: &'static str, port: u16) {
        let l = in_ns(&self.ns(host), move || TcpListener::bind(("0.0.0.0", port)).expect("bind tcp"));
        self.serve(host, l);
    }

    /// [`Bed::tcp_server`] on IPv6 (`[::]`, IPv6 only).
    fn tcp_server6(&mut self, host: &'static str, port: u16) {
        let l = in_ns(&self.ns(host), move || {
            let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).expect("socket");
            s.set_only_v6(true).expect("v6 only");
            s.set_reuse_address(true).expect("reuse");
            s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into()).expect("bind tcp6");
            s.listen(64).expect("listen");
            TcpListener::from(s)
        });
        self.serve(host, l);
    }

    fn serve(&mut self, host: &'static str, l: TcpListener) {
        self.servers.push(socket2::Socket::from(l.try_clone().expect("clone listener")));
        std::thread::spawn(move || {
            while let Ok((s, _)) = l.accept() {
                std::thread::spawn(move || {
                    let mut w = match s.try_clone() {
                        Ok(w) => w,
                        Err(_) => return,
                    };
                    for line in BufReader::new(s).lines() {
                        if line.is_err() || writeln!(w, "{host}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
    }

    /// A UDP server in `host` on `port` that answers each datagram with `host`.
    fn udp_server(&mut self, host: &'static str, port: u16) {
        let s = in_ns(&self.ns(host), move || UdpSocket::bind(("0.0.0.0", port)).expect("bind udp"));
        self.servers.push(socket2::Socket::from(s.try_clone().expect("clone socket")));
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                if n == 0 {
                    return;
                }
                let _ = s.send_to(host.as_bytes(), from);
            }
        });
    }

    /// A connection from the client (from `src`, one of its addresses) to VIP:port.
    fn connect(&self, src: Ipv4Addr, port: u16) -> Conn {
        let s = in_ns(&self.ns("cl"), move || {
            let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
            s.bind(&SocketAddr::from((src, 0)).into()).expect("bind client");
            s.connect_timeout(&SocketAddr::from((VIP, port)).into(), IO_LIMIT).expect("connect to the VIP");
            TcpStream::from(s)
        });
        s.set_read_timeout(Some(IO_LIMIT)).expect("timeout");
        Conn { r: BufReader::new(s.try_clone().expect("clone")), w: s }
    }

    /// Which real server a new connection from `src` reaches (the connection is closed).
    fn who(&self, src: Ipv4Addr, port: u16) -> String {
        self.connect(src, port).ask()
    }

    /// [`Bed::who`] from the client's IPv6 address to `[VIP6]:port`.
    fn who6(&self, port: u16) -> String {
        let s = in_ns(&self.ns("cl"), move || {
            let s = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).expect("socket");
            s.connect_timeout(&SocketAddr::from((VIP6, port)).into(), IO_LIMIT)
                .unwrap_or_else(|e| panic!("connect to the IPv6 VIP port {port}: {e}"));
            TcpStream::from(s)
        });
        s.set_read_timeout(Some(IO_LIMIT)).expect("timeout");
        Conn { r: BufReader::new(s.try_clone().expect("clone")), w: s }.ask()
    }

    fn udp_who(&self, port: u16) -> String {
        let s = in_ns(&self.ns("cl"), || UdpSocket::bind((CLIENT, 0)).expect("bind"));
        s.set_read_timeout(Some(IO_LIMIT)).expect("timeout");
        s.send_to(b"who", (VIP, port)).expect("send");
        let mut buf = [0u8; 64];
        let n = s.recv(&mut buf).expect("an answer through the VIP");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for s in &self.servers {
            let _ = s.shutdown(Shutdown::Both);
        }
        for h in ["cl", "dir", "r1", "r2", "sw"] {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(h)]).output();
        }
    }
}

struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    /// Sends a line, returns the server's name.
    fn ask(&mut self) -> String {
        writeln!(self.w, "who").expect("send on the connection");
        let mut line = String::new();
        self.r.read_line(&mut line).expect("an answer on the connection");
        line.trim().to_string()
    }
}

fn service(port: u16, scheduler: &str, forward: Forward, weights: &[u32]) -> VirtualService {
    VirtualService {
        key: ServiceKey { protocol: Protocol::Tcp, vip: IpAddr::V4(VIP), port, fwmark: 0 },
        scheduler: scheduler.into(),
        persistence: None,
        forward,
        masquerade: forward == Forward::Masq,
        reals: [R1, R2]
            .iter()
            .zip(weights)
            .map(|(&ip, &weight)| RealServer { addr: SocketAddr::from((ip, port)), weight })
            .collect(),
    }
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

#[test]
fn dataplane_missing_nft_is_a_clear_error() {
    let plane = NftDataPlane::new(Nft::new().with_program("/nonexistent/halo-test/nft"));
    let err = plane.apply(&Desired::default()).expect_err("no nft");
    assert!(matches!(err, Error::NftMissing { .. }), "{err:?}");
    assert!(err.to_string().contains("install nftables"), "{err}");
    let plane = NftDataPlane::new(Nft::new().with_program("halo-no-such-nft"));
    assert!(matches!(plane.stats(), Err(Error::NftMissing { .. })));
}

#[test]
fn dataplane_nat_rr_alternates_reapply_changes_nothing_and_counts() {
    if !can_run("dataplane_nat_rr_alternates_reapply_changes_nothing_and_counts") {
        return;
    }
    let mut bed = Bed::new();
    bed.tcp_server("r1", 80);
    bed.tcp_server("r2", 80);
    let plane = bed.plane();
    let desired = Desired { services: vec![service(80, "rr", Forward::Masq, &[1, 1])] };
    let changes = plane.apply(&desired).expect("apply");
    assert_eq!(changes, vec![Change::TableCreated]);
    let seen: Vec<String> = (0..6).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!(count(&seen, "r1"), 3, "{seen:?}");
    assert_eq!(count(&seen, "r2"), 3, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "rr alternates: {seen:?}");

    assert_eq!(plane.apply(&desired).expect("re-apply"), Vec::<Change>::new(), "same state, no change");
    let stats = plane.stats().expect("stats");
    assert_eq!(stats.len(), 2, "{stats:?}");
    for s in &stats {
        assert!(s.in_packets >= 3 * 3 && s.out_packets >= 3 * 3, "each real served 3 connections: {s:?}");
        assert!(s.in_bytes > s.in_packets * 20, "{s:?}");
    }
    // The table is halo's alone and goes away on request.
    assert!(plane.remove().expect("remove"));
    assert!(plane.stats().expect("stats").is_empty());
    assert!(!plane.remove().expect("remove again"));
}

#[test]
fn dataplane_nat_weights_split_three_to_one() {
    if !can_run("dataplane_nat_weights_split_three_to_one") {
        return;
    }
    let mut bed = Bed::new();
    bed.tcp_server("r1", 80);
    bed.tcp_server("r2", 80);
    let plane = bed.plane();
    plane.apply(&Desired { services: vec![service(80, "wrr", Forward::Masq, &[3, 1])] }).expect("apply");
    let seen: Vec<String> = (0..12).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (9, 3), "{seen:?}");
    // wlc has no connection counts here: it is the same weighted split.
    let changes =
        plane.apply(&Desired { services: vec![service(80, "wlc", Forward::Masq, &[1, 3])] }).expect("apply");
    assert_eq!(changes, vec![Change::RulesReplaced("svc_tcp_10_77_0_100_80".into())]);
    let seen: Vec<String> = (0..8).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (2, 6), "{seen:?}");
}

#[test]
fn dataplane_nat_established_connections_survive_weight_changes_and_removal() {
    if !can_run("dataplane_nat_established_connections_survive_weight_changes_and_removal") {
        return;
    }
    let mut bed = Bed::new();
    bed.tcp_server("r1", 80);
    bed.tcp_server("r2", 80);
    let plane = bed.plane();
    plane.apply(&Desired { services: vec![service(80, "rr", Forward::Masq, &[1, 1])] }).expect("apply");
    let mut on_r1 = bed.connect(CLIENT, 80);
    assert_eq!(on_r1.ask(), "r1");
    let mut on_r2 = bed.connect(CLIENT, 80);
    assert_eq!(on_r2.ask(), "r2");

    // r1 quiescent: no new connections, the open one keeps working.
    let changes =
        plane.apply(&Desired { services: vec![service(80, "rr", Forward::Masq, &[0, 5])] }).expect("apply");
    assert!(!changes.is_empty());
    assert_eq!(on_r1.ask(), "r1");
    let seen: Vec<String> = (0..4).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!(count(&seen, "r2"), 4, "{seen:?}");

    // r1 removed altogether: its chain and counters go, its connection stays (conntrack).
    let mut only_r2 = service(80, "rr", Forward::Masq, &[1]);
    only_r2.reals = vec![RealServer { addr: SocketAddr::from((R2, 80)), weight: 1 }];
    let changes = plane.apply(&Desired { services: vec![only_r2] }).expect("apply");
    assert!(
        changes.contains(&Change::ChainRemoved("real_tcp_10_77_0_100_80_10_77_0_11_80".into())),
        "{changes:?}"
    );
    assert!(changes.contains(&Change::CounterRemoved("in_tcp_10_77_0_100_80_10_77_0_11_80".into())));
    assert_eq!(on_r1.ask(), "r1");
    assert_eq!(on_r2.ask(), "r2");
    let seen: Vec<String> = (0..3).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!(count(&seen, "r2"), 3, "{seen:?}");
}

#[test]
fn dataplane_persistence_keeps_a_client_on_one_real_server() {
    if !can_run("dataplane_persistence_keeps_a_client_on_one_real_server") {
        return;
    }
    let mut bed = Bed::new();
    bed.tcp_server("r1", 80);
    bed.tcp_server("r2", 80);
    let clients: Vec<Ipv4Addr> = (21..27).map(|d| Ipv4Addr::new(10, 77, 0, d)).collect();
    for c in &clients {
        sh(&["ip", "-n", &bed.ns("cl"), "addr", "add", &format!("{c}/24"), "dev", "eth0"]);
    }
    let plane = bed.plane();
    let mut svc = service(80, "wrr", Forward::Masq, &[1, 1]);
    svc.persistence = Some(Persistence { timeout_s: 300, netmask: Netmask::HOST });
    plane.apply(&Desired { services: vec![svc.clone()] }).expect("apply");
    let first: Vec<String> = clients.iter().map(|&c| bed.who(c, 80)).collect();
    assert_eq!(count(&first, "r1"), 3, "clients spread: {first:?}");
    assert_eq!(count(&first, "r2"), 3, "clients spread: {first:?}");
    for _ in 0..3 {
        let again: Vec<String> = clients.iter().map(|&c| bed.who(c, 80)).collect();
        assert_eq!(again, first, "each client stays on its real server");
    }
    let aff = plane.affinity().expect("affinity");
    assert_eq!(aff.values().sum::<usize>(), clients.len(), "{aff:?}");

    // Re-applying with other weights keeps the sets, so the bindings hold.
    svc.reals[0].weight = 4;
    assert!(!plane.apply(&Desired { services: vec![svc.clone()] }).expect("apply").is_empty());
    let again: Vec<String> = clients.iter().map(|&c| bed.who(c, 80)).collect();
    assert_eq!(again, first, "bindings survive an apply");

    // A /24 netmask: every client is one masked client, so all go where the first went.
    svc.persistence =
        Some(Persistence { timeout_s: 300, netmask: Netmask::v4(Ipv4Addr::new(255, 255, 255, 0)) });
    let changes = plane.apply(&Desired { services: vec![svc] }).expect("apply");
    assert!(changes.iter().any(|c| matches!(c, Change::RulesReplaced(_))), "{changes:?}");
    let masked: Vec<String> = clients.iter().map(|&c| bed.who(c, 80)).collect();
    assert!(masked.iter().all(|s| *s == masked[0]), "{masked:?}");
}

#[test]
fn dataplane_udp_service() {
    if !can_run("dataplane_udp_service") {
        return;
    }
    let mut bed = Bed::new();
    bed.udp_server("r1", 5353);
    bed.udp_server("r2", 5353);
    let plane = bed.plane();
    let mut svc = service(53, "rr", Forward::Masq, &[1, 1]);
    svc.key.protocol = Protocol::Udp;
    for r in &mut svc.reals {
        r.addr.set_port(5353);
    }
    plane.apply(&Desired { services: vec![svc] }).expect("apply");
    let seen: Vec<String> = (0..4).map(|_| bed.udp_who(53)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (2, 2), "{seen:?}");
    let stats = plane.stats().expect("stats");
    assert!(stats.iter().all(|s| s.in_packets == 2 && s.out_packets == 2), "{stats:?}");
}

#[test]
fn dataplane_direct_routing() {
    if !can_run("dataplane_direct_routing") {
        return;
    }
    let mut bed = Bed::new();
    bed.dr_reals();
    bed.tcp_server("r1", 80);
    bed.tcp_server("r2", 80);
    bed.udp_server("r1", 53);
    bed.udp_server("r2", 53);
    let plane = bed.plane();
    let mut udp = service(53, "rr", Forward::Gate, &[1, 1]);
    udp.key.protocol = Protocol::Udp;
    let desired = Desired { services: vec![service(80, "rr", Forward::Gate, &[1, 1]), udp] };
    plane.apply(&desired).expect("apply");
    let seen: Vec<String> = (0..4).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (2, 2), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "rr alternates: {seen:?}");
    let seen: Vec<String> = (0..4).map(|_| bed.udp_who(53)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (2, 2), "{seen:?}");
    assert_eq!(plane.apply(&desired).expect("re-apply"), Vec::<Change>::new());

    // An open connection keeps its real server when that server turns quiescent and the
    // weights change; new connections go elsewhere.
    let mut c = bed.connect(CLIENT, 80);
    let first = c.ask();
    let weights: &[u32] = if first == "r1" { &[0, 3] } else { &[3, 0] };
    let mut d2 = desired.clone();
    d2.services[0] = service(80, "wrr", Forward::Gate, weights);
    let d2_for_removal = d2.clone();
    assert!(!plane.apply(&d2).expect("apply").is_empty());
    for _ in 0..3 {
        assert_eq!(c.ask(), first, "the established DR connection stays");
    }
    let seen: Vec<String> = (0..4).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!(count(&seen, &first), 0, "no new connection to the quiescent server: {seen:?}");
    // Removed altogether: it drains (kept at weight 0 while its flow set holds flows).
    let mut d3 = d2_for_removal;
    d3.services[0].reals.retain(|r| r.weight > 0);
    let left = if first == "r1" { "r2" } else { "r1" };
    plane.apply(&d3).expect("apply");
    assert_eq!(c.ask(), first, "the established DR connection to a removed server stays");
    let seen: Vec<String> = (0..3).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!(count(&seen, left), 3, "{seen:?}");
    assert_eq!(plane.apply(&d3).expect("re-apply"), Vec::<Change>::new());
    let stats = plane.stats().expect("stats");
    let tcp: Vec<&RealStats> = stats.iter().filter(|s| s.service.port == 80).collect();
    assert_eq!(tcp.len(), 2);
    assert!(tcp.iter().all(|s| s.in_packets > 0 && s.out_packets == 0), "{stats:?}");
}

#[test]
fn dataplane_repairs_hand_edits_and_leaves_other_tables_alone() {
    if !can_run("dataplane_repairs_hand_edits_and_leaves_other_tables_alone") {
        return;
    }
    let mut bed = Bed::new();
    bed.tcp_server("r1", 80);
    bed.tcp_server("r2", 80);
    let dir = bed.ns("dir");
    let nft = |args: &str| {
        let mut full = vec!["ip", "netns", "exec", &dir, "nft"];
        full.extend(args.split_whitespace());
        sh(&full);
    };
    nft("add table ip other");
    nft("add chain ip other c");
    nft("add rule ip other c counter");
    let plane = bed.plane();
    let desired = Desired { services: vec![service(80, "rr", Forward::Masq, &[1, 1])] };
    plane.apply(&desired).expect("apply");
    // Someone drops the service's new connections by hand: the next apply sees the foreign
    // rule in the kernel's listing and puts the table back.
    nft("insert rule ip halo_lb svc_tcp_10_77_0_100_80 drop");
    let blocked = in_ns(&bed.ns("cl"), || {
        TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), Duration::from_millis(300))
    });
    assert!(blocked.is_err(), "the hand-made drop rule is in force");
    let changes = plane.apply(&desired).expect("apply");
    assert_eq!(changes, vec![Change::RulesReplaced("svc_tcp_10_77_0_100_80".into())]);
    let seen: Vec<String> = (0..2).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (1, 1), "{seen:?}");
    // A chain deleted by hand comes back.
    nft("flush chain ip halo_lb forward");
    nft("delete chain ip halo_lb forward");
    assert_eq!(plane.apply(&desired).expect("apply"), vec![Change::ChainAdded("forward".into())]);
    assert_eq!(plane.apply(&desired).expect("apply"), Vec::<Change>::new());
    plane.remove().expect("remove");
    let out = Command::new("ip")
        .args(["netns", "exec", &dir, "nft", "list", "table", "ip", "other"])
        .output()
        .expect("nft");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("counter"),
        "other table intact"
    );
}

#[test]
fn dataplane_direct_routing_with_persistence() {
    if !can_run("dataplane_direct_routing_with_persistence") {
        return;
    }
    let mut bed = Bed::new();
    bed.dr_reals();
    bed.tcp_server("r1", 80);
    bed.tcp_server("r2", 80);
    let clients: Vec<Ipv4Addr> = (21..25).map(|d| Ipv4Addr::new(10, 77, 0, d)).collect();
    for c in &clients {
        sh(&["ip", "-n", &bed.ns("cl"), "addr", "add", &format!("{c}/24"), "dev", "eth0"]);
    }
    let plane = bed.plane();
    let mut svc = service(80, "rr", Forward::Gate, &[1, 1]);
    svc.persistence = Some(Persistence { timeout_s: 120, netmask: Netmask::HOST });
    plane.apply(&Desired { services: vec![svc] }).expect("apply");
    let first: Vec<String> = clients.iter().map(|&c| bed.who(c, 80)).collect();
    assert_eq!((count(&first, "r1"), count(&first, "r2")), (2, 2), "{first:?}");
    for _ in 0..2 {
        let again: Vec<String> = clients.iter().map(|&c| bed.who(c, 80)).collect();
        assert_eq!(again, first, "each client stays on its real server");
    }
}

#[test]
fn dataplane_direct_routing_connection_counts_from_the_flow_sets() {
    if !can_run("dataplane_direct_routing_connection_counts_from_the_flow_sets") {
        return;
    }
    let mut bed = Bed::new();
    bed.dr_reals();
    bed.tcp_server("r1", 80);
    bed.tcp_server("r2", 80);
    let plane = bed.plane();
    let key = ServiceKey { protocol: Protocol::Tcp, vip: IpAddr::V4(VIP), port: 80, fwmark: 0 };
    plane.apply(&Desired { services: vec![service(80, "rr", Forward::Gate, &[1, 1])] }).expect("apply");
    assert!(plane.dr_flows(&[key]).expect("flows").is_empty(), "no connection yet");
    // Four connections held open through the VIP, each asked which real server it reached.
    let mut conns: Vec<Conn> = (0..4).map(|_| bed.connect(CLIENT, 80)).collect();
    let mut reached = std::collections::BTreeMap::new();
    for c in &mut conns {
        let name = c.ask();
        let real = SocketAddr::from((if name == "r1" { R1 } else { R2 }, 80));
        reached.insert(c.w.local_addr().expect("local address"), real);
    }
    let flows = plane.dr_flows(&[key]).expect("flows");
    let counts = flows::dr_count(&flows);
    let of = |ip| counts.get(&(key, SocketAddr::from((ip, 80)))).copied().unwrap_or_default();
    // rr over two real servers: two each, all with a packet just now, so all active.
    assert_eq!(
        (of(R1), of(R2)),
        (
            crate::conntrack::Conns { active: 2, inactive: 0 },
            crate::conntrack::Conns { active: 2, inactive: 0 }
        ),
        "{flows:#?}"
    );
    // `-c`: the four connections, each with the real server that answered it.
    let listed = flows::dr_connections(&flows);
    assert_eq!(listed.len(), 4, "{listed:#?}");
    for c in &listed {
        assert!(c.source.is_ipv4(), "{c:?}");
        assert_eq!(Some(&c.destination), reached.get(&c.source), "{c:?}");
        assert_eq!((c.protocol.as_str(), c.state.as_str()), ("TCP", "ESTABLISHED"));
        assert_eq!(c.virtual_addr, SocketAddr::from((VIP, 80)));
        assert!(c.expires > 800 && c.expires <= 900, "{c:?}");
    }
    // Another DR service's flows are not these.
    let other = ServiceKey { port: 81, ..key };
    assert!(plane.dr_flows(&[other]).expect("flows").is_empty());
}

fn service6(port: u16, forward: Forward, real_port: u16) -> VirtualService {
    VirtualService {
        key: ServiceKey { protocol: Protocol::Tcp, vip: IpAddr::V6(VIP6), port, fwmark: 0 },
        scheduler: "rr".into(),
        persistence: None,
        forward,
        masquerade: forward == Forward::Masq,
        reals: [R1_6, R2_6]
            .iter()
            .map(|&ip| RealServer { addr: SocketAddr::from((ip, real_port)), weight: 1 })
            .collect(),
    }
}

#[test]
fn dataplane_ipv6_dr_and_nat_run_in_an_ip6_table_next_to_ipv4() {
    if !can_run("dataplane_ipv6_dr_and_nat_run_in_an_ip6_table_next_to_ipv4") {
        return;
    }
    let mut bed = Bed::new();
    bed.dr_reals();
    bed.dr_reals6();
    for h in ["r1", "r2"] {
        bed.tcp_server(h, 80);
        bed.tcp_server6(h, 80);
        bed.tcp_server6(h, 8080);
    }
    let plane = bed.plane();
    let v4 = service(80, "rr", Forward::Gate, &[1, 1]);
    let dr6 = service6(80, Forward::Gate, 80);
    let nat6 = service6(81, Forward::Masq, 8080);
    let desired = Desired { services: vec![v4.clone(), dr6.clone(), nat6.clone()] };
    let changes = plane.apply(&desired).expect("apply");
    assert!(changes.contains(&Change::TableCreated), "{changes:?}");
    assert!(changes.contains(&Change::Ip6(Box::new(Change::TableCreated))), "{changes:?}");

    // Direct routing over IPv6: the packet reaches the real server unchanged (VIP6 on its lo)
    // and rr alternates; NAT over IPv6 to port 8080; IPv4 beside them, untouched.
    let seen: Vec<String> = (0..4).map(|_| bed.who6(80)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (2, 2), "DR6 {seen:?}");
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "rr alternates: {seen:?}");
    // NAT needs the real servers without the VIP: the director's masquerade may pick the VIP
    // as its source address (IPv6 source selection), and a real server holding it on lo would
    // keep the replies to itself.
    for h in ["r1", "r2"] {
        sh(&["ip", "-n", &bed.ns(h), "addr", "del", &format!("{VIP6}/128"), "dev", "lo"]);
    }
    let seen: Vec<String> = (0..4).map(|_| bed.who6(81)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (2, 2), "NAT6 {seen:?}");
    let seen: Vec<String> = (0..4).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (2, 2), "DR4 {seen:?}");

    assert_eq!(plane.apply(&desired).expect("re-apply"), Vec::<Change>::new(), "same state, no change");
    // Counters of the IPv6 real servers, read back from the ip6 table.
    let stats = plane.stats().expect("stats");
    for r in dr6.reals.iter().chain(&nat6.reals) {
        let s = stats.iter().find(|s| s.real == r.addr).unwrap_or_else(|| panic!("{r:?} in {stats:?}"));
        assert!(s.in_packets >= 2, "{s:?}");
    }
    let nat_out: u64 = stats.iter().filter(|s| s.service == nat6.key).map(|s| s.out_packets).sum();
    assert!(nat_out >= 4, "NAT replies counted: {stats:?}");
    // The DR flows of IPv6 clients, for ActiveConn and -c.
    let flows = plane.dr_flows(&[dr6.key]).expect("flows");
    assert_eq!(flows.len(), 4, "{flows:?}");
    assert!(flows.iter().all(|f| f.client.ip() == IpAddr::V6(v6_of(CLIENT))), "{flows:?}");
    let listed = flows::dr_connections(&flows);
    assert!(listed.iter().all(|c| c.virtual_addr == SocketAddr::from((VIP6, 80))), "{listed:?}");

    // The last IPv6 service goes: so does the ip6 table; IPv4 keeps running.
    let changes = plane.apply(&Desired { services: vec![v4] }).expect("apply");
    assert_eq!(changes, vec![Change::Ip6(Box::new(Change::TableRemoved))]);
    let tables = Nft::new().in_netns(bed.ns("dir")).run(&["list", "tables"], None).expect("list tables");
    assert!(!tables.contains("ip6"), "{tables}");
    let seen: Vec<String> = (0..2).map(|_| bed.who(CLIENT, 80)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (1, 1), "DR4 {seen:?}");
    assert!(plane.remove().expect("remove"));
}

/// A firewall-mark service: `virtual=M`, whose packets are those the director's own rules
/// mark M (a table of the test's, at the mangle priority, as an operator's would be).
fn fwmark_service(mark: u32, forward: Forward) -> VirtualService {
    VirtualService {
        key: ServiceKey {
            protocol: Protocol::Tcp,
            vip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            fwmark: mark,
        },
        scheduler: "rr".into(),
        persistence: None,
        forward,
        masquerade: forward == Forward::Masq,
        // Port 0: the packets keep theirs.
        reals: [R1, R2].iter().map(|&ip| RealServer { addr: SocketAddr::from((ip, 0)), weight: 1 }).collect(),
    }
}

#[test]
fn dataplane_firewall_mark_services_dr_with_persistence_across_ports_and_nat() {
    if !can_run("dataplane_firewall_mark_services_dr_with_persistence_across_ports_and_nat") {
        return;
    }
    let mut bed = Bed::new();
    bed.dr_reals();
    for h in ["r1", "r2"] {
        for port in [80, 443, 9090] {
            bed.tcp_server(h, port);
        }
    }
    let clients: Vec<Ipv4Addr> = (21..25).map(|d| Ipv4Addr::new(10, 77, 0, d)).collect();
    for c in &clients {
        sh(&["ip", "-n", &bed.ns("cl"), "addr", "add", &format!("{c}/24"), "dev", "eth0"]);
    }
    // The operator's marking, as ldirectord's documentation shows it for a web farm: HTTP and
    // HTTPS together (mark 7, so that a client keeps its real server across both), and a
    // third port NATed (mark 8).
    let marks = format!(
        "table ip operator {{\n chain pre {{\n  type filter hook prerouting priority mangle;\n  \
         ip daddr {VIP} tcp dport {{ 80, 443 }} meta mark set 7\n  \
         ip daddr {VIP} tcp dport 9090 meta mark set 8\n }}\n}}\n"
    );
    Nft::new()
        .in_netns(bed.ns("dir"))
        .run(&["-f", "-"], Some(&marks))
        .expect("the operator's marking rules load");

    let plane = bed.plane();
    let mut web = fwmark_service(7, Forward::Gate);
    web.persistence = Some(Persistence { timeout_s: 120, netmask: Netmask::HOST });
    let nat = fwmark_service(8, Forward::Masq);
    plane.apply(&Desired { services: vec![web.clone(), nat.clone()] }).expect("apply");

    // DR by mark with persistence: the clients spread over both real servers, and each keeps
    // its real server whichever of the two marked ports it connects to.
    let on_80: Vec<String> = clients.iter().map(|&c| bed.who(c, 80)).collect();
    assert_eq!((count(&on_80, "r1"), count(&on_80, "r2")), (2, 2), "{on_80:?}");
    let on_443: Vec<String> = clients.iter().map(|&c| bed.who(c, 443)).collect();
    assert_eq!(on_443, on_80, "persistence covers every port of the mark");
    // NAT by mark, real servers without a port: rr over both, the port kept.
    let seen: Vec<String> = (0..4).map(|_| bed.who(CLIENT, 9090)).collect();
    assert_eq!((count(&seen, "r1"), count(&seen, "r2")), (2, 2), "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "rr alternates: {seen:?}");

    assert_eq!(
        plane.apply(&Desired { services: vec![web, nat.clone()] }).expect("re-apply"),
        Vec::<Change>::new()
    );
    let stats = plane.stats().expect("stats");
    for r in &nat.reals {
        let s = stats.iter().find(|s| s.service == nat.key && s.real == r.addr).expect("counted");
        assert!(s.in_packets >= 2 && s.out_packets >= 2, "{s:?}");
    }
    let listing =
        Nft::new().in_netns(bed.ns("dir")).run(&["list", "table", "ip", "halo_lb"], None).expect("list");
    assert!(listing.contains("mark_prerouting") && listing.contains("meta mark 0x00000007"), "{listing}");
    assert!(plane.remove().expect("remove"));
}
