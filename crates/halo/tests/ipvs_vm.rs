//! halo's IPVS data plane against a real IPVS kernel. This machine's kernel has no IPVS, so
//! the test boots one: `scripts/ipvs-vm.sh` starts Debian's 6.1 kernel under qemu (TCG) from
//! a busybox initramfs holding this very test binary, the real `halo` binary (why the test
//! lives in the halo crate), ipvsadm and the IPVS modules, and runs
//! the binary there with `HALO_IPVS_VM_GUEST=1`, which makes this test play the guest's
//! scenario instead (one boot runs every step). The guest checks each step against
//! `ipvsadm` itself and prints a marker per step and each pair of listings (ipvsadm's and
//! halo's); the host then requires every marker, the guest's exit status 0, and compares the
//! listings again.
//!
//! Steps: an rr DR service with two real servers (`ipvsadm -L -n` agrees, a second apply
//! changes nothing); connections through it; a weight change edits that one real server in
//! place (the counters and connection counts of both survive); a real server removed; one
//! quiescent (weight 0); a NAT (masq) service and a persistent service with a netmask (one
//! client keeps its real server, one persistence template); every scheduler; a fwmark
//! service with an ipip real server; IPv6 with a prefix-length netmask and thresholds; a
//! service someone else added is left alone; the sync daemon (states, options, defaults
//! read back) and a backup director's namespace receiving the master's connections; a
//! service removed; the kernel's refusals explained; real HTTP traffic through a NAT
//! service to two web servers in namespaces; a director failover on a bridge where the
//! synced established connection survives and an unsynced one is reset; four threads
//! reading at once; a clean removal; a fresh plane removing a killed daemon's services. At
//! the steps, halo's listing (what `halo lvs` prints: `ipvsadm::list` over the table read
//! back from the kernel) equals `ipvsadm -L -n` byte for byte, and so do `--stats`,
//! `--rate`, `--thresholds`, `--persistent-conn`, `--tun-info` and `-c`.
//!
//! Then the real daemon ([`halo_director`]): `halo run` of a one-node cluster whose
//! haresources is `n1 ldirectord::ldirectord.cf` (dataplane left to `auto`): its director
//! picks IPVS, puts the NAT service with the real servers whose connect check passes in the
//! kernel's table (one whose port nothing listens on never enters), `halo lvs` equals
//! `ipvsadm -L -n`; a real server whose listener closes leaves the table; client fetches
//! through the VIP are counted (`halo lvs`, `--stats --exact` and `-c` equal ipvsadm's);
//! `halo reload` with a new scheduler and weight edits the service and real server in place
//! (their counters go on); ldirectord's `readdquiescent` after a `halo reload` to
//! `quiescent=yes`: a healthy real server deleted from the kernel by hand (`ipvsadm -d`)
//! whose check then fails stays out of the table with `readdquiescent=no` (the default) and
//! comes back with its weight once its check passes again, and after a reload to
//! `readdquiescent=yes` the same deletion and failure put it back at weight 0 until its
//! check passes; SIGTERM stops the daemon, which deletes its service and leaves the one
//! someone else added.
//!
//! Needs root (the kernel package download and qemu) and the packages of scripts/test.sh;
//! without root it is skipped with a note, unless `HALO_REQUIRE_ROOT=1`, where anything that
//! keeps the VM from booting is a failure.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use halo_lb::dataplane::ipvs::{self, Change, Daemon, IpvsDataPlane};
use halo_lb::dataplane::{
    DataPlane, Desired, Forward, Nft, NftDataPlane, Persistence, PlaneChoice, Protocol, RealServer,
    ServiceKey, VirtualService,
};
use halo_lb::ipvsadm;

const GUEST_ENV: &str = "HALO_IPVS_VM_GUEST";
const TEST_NAME: &str = "ipvs_data_plane_in_a_qemu_vm";

/// Every step the guest must report done, in order.
const STEPS: &[&str] = &[
    "auto-selects-ipvs",
    "dr-service-added",
    "second-apply-changes-nothing",
    "connections-counted",
    "weight-edited-in-place",
    "real-server-removed",
    "quiescent-weight-0",
    "masq-and-persistent-services",
    "persistence-keeps-the-client",
    "every-scheduler",
    "fwmark-ipip",
    "ipv6",
    "views-stats-rate-conn",
    "foreign-service-left-alone",
    "sync-daemon",
    "sync-to-backup-namespace",
    "service-removed",
    "kernel-refusals-explained",
    "nat-traffic-reaches-real-servers",
    "established-tcp-synced-to-backup",
    "failover-keeps-an-established-connection",
    "concurrent-sockets",
    "clean-removal",
    "leftovers-of-a-killed-daemon",
    "halo-run-director-picks-ipvs",
    "halo-run-starts-the-kernel-sync-daemons",
    "failed-check-leaves-the-table",
    "halo-lvs-counts-connections",
    "halo-reload-edits-in-place",
    "quiescent-missing-real-left-out",
    "readdquiescent-adds-it-back-at-weight-0",
    "halo-stop-removes-only-its-services",
];

#[test]
fn ipvs_data_plane_in_a_qemu_vm() {
    match std::env::var(GUEST_ENV).as_deref() {
        Ok("1") => return guest(),
        Ok("backup-start") => return backup_start(),
        Ok("backup-check") => return backup_check(),
        Ok("backup-check-tcp") => return backup_check_tcp(),
        Ok(other) => {
            panic!("{GUEST_ENV}={other:?}: expected 1, backup-start, backup-check or backup-check-tcp")
        }
        Err(_) => {}
    }
    let require = std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1");
    if !nix::unistd::Uid::effective().is_root() {
        assert!(!require, "this test needs root (kernel package download, qemu) and HALO_REQUIRE_ROOT=1");
        eprintln!("skipping: not root (set HALO_REQUIRE_ROOT=1 to make this a failure)");
        return;
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ipvs-vm.sh");
    let exe = std::env::current_exe().expect("current_exe");
    // The console is kept for a look after a failure.
    let log = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ipvs-vm/console.log");
    let _ = std::fs::create_dir_all(log.parent().expect("parent"));
    let out = Command::new(&script)
        .args(["--env", &format!("{GUEST_ENV}=1"), "--log"])
        .arg(&log)
        // The real daemon, whose director the last steps run.
        .args(["--bin", &format!("{}=halo", env!("CARGO_BIN_EXE_halo"))])
        .arg("--")
        .arg(&exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .output()
        .expect("run scripts/ipvs-vm.sh");
    let console = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    if code == Some(2) && !console.contains("=== HALO-GUEST-BEGIN") && !require {
        eprintln!("skipping: the IPVS VM cannot be built here (HALO_REQUIRE_ROOT=1 makes this a failure):\n{stderr}");
        return;
    }
    assert!(
        console.contains("=== HALO-GUEST-EXIT 0"),
        "the guest scenario failed (script status {code:?}).\n--- console ---\n{console}\n--- stderr ---\n{stderr}"
    );
    for s in STEPS {
        assert!(console.contains(&format!("=== STEP {s} ok")), "step {s} not reported done.\n{console}");
    }
    // The listings the guest compared, compared again here.
    let blocks = blocks(&console);
    let mut pairs = 0;
    for (label, halo) in blocks.iter().filter_map(|(k, v)| k.strip_prefix("halo ").map(|l| (l, v))) {
        let theirs = blocks
            .get(&format!("ipvsadm {label}"))
            .unwrap_or_else(|| panic!("no ipvsadm {label} (console: {})", log.display()));
        assert_eq!(halo, theirs, "halo lvs and ipvsadm differ at {label}");
        pairs += 1;
    }
    assert!(pairs >= STEPS.len(), "only {pairs} listings compared:\n{console}");
    let first = &blocks["ipvsadm dr-service-added -L -n"];
    assert!(first.contains("TCP  198.51.100.10:80 rr\n"), "{first}");
    assert!(first.contains("  -> 192.0.2.11:80                Route   1      0          0"), "{first}");
}

/// `=== BEGIN label` ... `=== END label` sections of the console.
fn blocks(console: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cur: Option<(String, String)> = None;
    for line in console.split_inclusive('\n') {
        // A child's first line may follow libtest's `test NAME ... ` on the same line.
        if let Some(at) = line.find("=== BEGIN ") {
            cur = Some((line[at + 10..].trim_end().to_string(), String::new()));
        } else if line.starts_with("=== END ") {
            if let Some((k, v)) = cur.take() {
                out.insert(k, v);
            }
        } else if let Some((_, v)) = cur.as_mut() {
            v.push_str(line);
        }
    }
    out
}

// ---- the guest ----

fn step(name: &str) {
    assert!(STEPS.contains(&name), "unknown step {name}");
    println!("=== STEP {name} ok");
}

fn ipvsadm(args: &[&str]) -> String {
    let out = Command::new("ipvsadm").args(args).output().expect("run ipvsadm");
    assert!(out.status.success(), "ipvsadm {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn vip_service(
    protocol: Protocol,
    vip: [u8; 4],
    port: u16,
    sched: &str,
    forward: Forward,
    reals: &[([u8; 4], u16, u32)],
) -> VirtualService {
    VirtualService {
        key: ServiceKey { protocol, vip: Ipv4Addr::from(vip).into(), port, fwmark: 0 },
        scheduler: sched.into(),
        persistence: None,
        forward,
        masquerade: false,
        reals: reals
            .iter()
            .map(|(ip, p, w)| RealServer {
                addr: SocketAddrV4::new(Ipv4Addr::from(*ip), *p).into(),
                weight: *w,
            })
            .collect(),
    }
}

fn web(reals: &[([u8; 4], u32)]) -> VirtualService {
    let r: Vec<_> = reals.iter().map(|(ip, w)| (*ip, 80, *w)).collect();
    vip_service(Protocol::Tcp, [198, 51, 100, 10], 80, "rr", Forward::Gate, &r)
}

fn dns() -> VirtualService {
    vip_service(
        Protocol::Udp,
        [198, 51, 100, 10],
        53,
        "wrr",
        Forward::Masq,
        &[([192, 0, 2, 21], 5353, 2), ([192, 0, 2, 22], 5353, 1)],
    )
}

fn sticky(sched: &str) -> VirtualService {
    let mut s = vip_service(
        Protocol::Tcp,
        [198, 51, 100, 20],
        443,
        sched,
        Forward::Gate,
        &[([192, 0, 2, 11], 443, 1), ([192, 0, 2, 12], 443, 1)],
    );
    s.persistence = Some(Persistence {
        timeout_s: 600,
        netmask: halo_lb::scheduler::Netmask::v4(Ipv4Addr::new(255, 255, 255, 0)),
    });
    s
}

/// halo's view of `args` (`-L -n` plus options) from the kernel's table read back.
fn halo_view(plane: &IpvsDataPlane, args: &[&str]) -> String {
    let m = plane.model().expect("read the IPVS table back");
    let has = |a: &str| args.contains(&a);
    let opts = ipvsadm::Options { exact: has("--exact"), ..ipvsadm::Options::default() };
    if has("-c") {
        ipvsadm::list_conn_with(&m, false, &opts)
    } else if has("--stats") {
        ipvsadm::list_with(&m, ipvsadm::View::Stats, &opts)
    } else if has("--rate") {
        ipvsadm::list_with(&m, ipvsadm::View::Rate, &opts)
    } else if has("--persistent-conn") {
        ipvsadm::list_with(&m, ipvsadm::View::PersistentConn, &opts)
    } else if has("--thresholds") {
        ipvsadm::list_with(&m, ipvsadm::View::Thresholds, &opts)
    } else if has("--tun-info") {
        ipvsadm::list_with(&m, ipvsadm::View::TunInfo, &opts)
    } else {
        ipvsadm::list_with(&m, ipvsadm::View::Plain, &opts)
    }
}

/// `halo lvs` and `ipvsadm` agree byte for byte (views that move with time — rates,
/// expiry timers — are read again until two consecutive reads bracket the same text).
/// Prints both and returns ipvsadm's.
fn agree(plane: &IpvsDataPlane, label: &str, args: &[&str]) -> String {
    let full: Vec<&str> = ["-L", "-n"].iter().chain(args).copied().collect();
    let name = full.join(" ");
    let mut last = (String::new(), String::new());
    for _ in 0..10 {
        let before = ipvsadm(&full);
        let ours = halo_view(plane, &full);
        let after = ipvsadm(&full);
        if ours == before || ours == after {
            // ipvsadm's own text (the read that matched), not a copy of ours.
            let theirs = if ours == before { before } else { after };
            println!("=== BEGIN ipvsadm {label} {name}\n{theirs}=== END ipvsadm {label} {name}");
            println!("=== BEGIN halo {label} {name}\n{ours}=== END halo {label} {name}");
            return theirs;
        }
        last = (before, ours);
        std::thread::sleep(Duration::from_millis(150));
    }
    panic!("halo lvs and ipvsadm {name} differ at {label}:\n--- ipvsadm\n{}--- halo\n{}", last.0, last.1);
}

/// The fields of ipvsadm's line for a real server: forward, weight, active, inactive.
fn dest_line(listing: &str, service: &str, dest: &str) -> Option<Vec<String>> {
    let mut in_svc = false;
    for line in listing.lines() {
        if !line.starts_with("  ") {
            in_svc = line.starts_with(service);
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if in_svc && f.len() >= 6 && f[0] == "->" && f[1] == dest {
            return Some(f[2..6].iter().map(ToString::to_string).collect());
        }
    }
    None
}

fn dest_of<'m>(m: &'m ipvsadm::Model, svc: &str, dest: &str) -> &'m ipvsadm::Destination {
    let s =
        m.services.iter().find(|s| ipvs::service_name(&s.key) == svc).unwrap_or_else(|| panic!("no {svc}"));
    let d: SocketAddr = dest.parse().expect("addr");
    s.dests.iter().find(|x| x.addr == d).unwrap_or_else(|| panic!("no {dest} in {svc}"))
}

/// New connections from this host to `vip` (IPVS schedules locally made connections too;
/// the real servers' net leads nowhere, so each stays a SYN the kernel counts).
fn connect(vip: [u8; 4], port: u16, n: usize) {
    for _ in 0..n {
        let a = SocketAddr::from((Ipv4Addr::from(vip), port));
        let _ = TcpStream::connect_timeout(&a, Duration::from_millis(30));
    }
}

/// The table once the kernel's counters show `n` connections to `svc`: the counters are
/// summed from per-CPU ones by the rate estimator, every 2 s.
fn counted(plane: &IpvsDataPlane, svc: &str, n: u64) -> ipvsadm::Model {
    for _ in 0..50 {
        let m = plane.model().expect("model");
        let s = m.services.iter().find(|s| ipvs::service_name(&s.key) == svc).expect("service");
        if s.stats.conns >= n {
            return m;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{svc}: the kernel never counted {n} connections:\n{}", ipvsadm(&["-L", "-n", "--stats"]));
}

/// Runs iproute2's `ip` (not busybox's, which has no netns) with these words.
fn ip(cmd: &str) {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    assert_eq!(words[0], "ip");
    let out = Command::new("/sbin/ip").args(&words[1..]).output().expect("ip");
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Runs this test binary again inside namespace `b` in the given role; its output is shown.
fn in_backup(role: &str, client: &str) {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new("/sbin/ip")
        .args(["netns", "exec", "b"])
        .arg(&exe)
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(GUEST_ENV, role)
        .env("HALO_IPVS_VM_CLIENT", client)
        .output()
        .expect("ip netns exec");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{role} in namespace b failed");
}

/// In the backup director's namespace: the NAT step's TCP connections, past their
/// handshake, each to one of the two real servers.
fn backup_check_tcp() {
    let plane = IpvsDataPlane::new();
    let vip: SocketAddr = "198.51.100.30:80".parse().expect("addr");
    let reals: [SocketAddr; 2] = ["10.1.1.2:80".parse().expect("a"), "10.1.2.2:80".parse().expect("a")];
    for _ in 0..100 {
        let m = plane.model().expect("model");
        let synced: Vec<_> = m.connections.iter().filter(|c| c.virtual_addr == vip).collect();
        if synced.len() >= 4 {
            for c in &synced {
                assert_eq!(c.protocol, "TCP");
                assert!(reals.contains(&c.destination), "{c:?}");
                assert!(c.state != "SYN_RECV" && c.state != "NONE", "synced once established: {c:?}");
            }
            agree(&plane, "backup-namespace-tcp", &["-c"]);
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the master's TCP connections never reached the backup:\n{}", ipvsadm(&["-L", "-n", "-c"]));
}

/// Runs `f` on a thread inside network namespace `ns` (sockets it makes stay there).
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_string();
    std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        f()
    })
    .join()
    .expect("thread in a namespace")
}

/// Writes `line` and reads its echo; `None` when the connection is broken.
fn echo(s: &mut TcpStream, line: &str) -> Option<String> {
    use std::io::{Read, Write};
    s.write_all(line.as_bytes()).ok()?;
    let mut buf = vec![0u8; line.len()];
    s.read_exact(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// Director failover with connection sync, LVS-DR on one Ethernet segment (a bridge):
/// client `fc`, directors `da` (active, master sync daemon) and `db` (standby, backup sync
/// daemon), real server `fr` (an echo server, the VIP on its lo). A connection made while
/// the master syncs survives the VIP moving from `da` to `db`; one made while it does not
/// is reset by `db` (the control).
fn failover() {
    ip("ip link add br0 type bridge");
    ip("ip link set br0 up");
    for (ns, addr) in [("fc", "10.9.0.100"), ("da", "10.9.0.1"), ("db", "10.9.0.2"), ("fr", "10.9.0.11")] {
        ip(&format!("ip netns add {ns}"));
        ip(&format!("ip link add p{ns} type veth peer name eth0 netns {ns}"));
        ip(&format!("ip link set p{ns} master br0"));
        ip(&format!("ip link set p{ns} up"));
        ip(&format!("ip -n {ns} addr add {addr}/24 dev eth0"));
        ip(&format!("ip -n {ns} link set eth0 up"));
        ip(&format!("ip -n {ns} link set lo up"));
    }
    // The real server: the VIP on lo, never answering ARP for it (seed 002's lvsdr).
    ip("ip -n fr addr add 10.9.0.50/32 dev lo");
    in_ns("fr", || {
        for (k, v) in [
            ("all/arp_ignore", "1"),
            ("eth0/arp_ignore", "1"),
            ("all/arp_announce", "2"),
            ("eth0/arp_announce", "2"),
        ] {
            std::fs::write(format!("/proc/sys/net/ipv4/conf/{k}"), v).expect("sysctl");
        }
    });
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let file = std::fs::File::open("/run/netns/fr").expect("netns file");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = std::net::TcpListener::bind("0.0.0.0:80").expect("listen");
        tx.send(()).expect("ready");
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut s = s;
                let mut buf = [0u8; 512];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    rx.recv().expect("echo server");
    // Both directors run the same service; only da holds the VIP.
    let desired = || Desired {
        services: vec![vip_service(
            Protocol::Tcp,
            [10, 9, 0, 50],
            80,
            "rr",
            Forward::Gate,
            &[([10, 9, 0, 11], 80, 1)],
        )],
    };
    for ns in ["da", "db"] {
        let d = desired();
        assert_eq!(in_ns(ns, move || IpvsDataPlane::new().apply(&d).expect("apply")).len(), 2);
    }
    ip("ip -n da addr add 10.9.0.50/32 dev eth0");
    in_ns("da", || IpvsDataPlane::new().start_daemon(&Daemon::new(true, "eth0", 5)).expect("master"));
    in_ns("db", || IpvsDataPlane::new().start_daemon(&Daemon::new(false, "eth0", 5)).expect("backup"));

    let connect = || {
        in_ns("fc", || {
            let a: SocketAddr = "10.9.0.50:80".parse().expect("a");
            let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect to the VIP");
            s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
            s
        })
    };
    let mut synced = connect();
    assert_eq!(echo(&mut synced, "one\n").as_deref(), Some("one\n"), "through director da");
    let port = synced.local_addr().expect("addr").port();
    let on_db = move |port: u16| {
        in_ns("db", move || {
            let m = IpvsDataPlane::new().model().expect("model");
            m.connections.iter().any(|c| c.source.port() == port && c.state == "ESTABLISHED")
        })
    };
    let mut waited = 0;
    while !on_db(port) {
        waited += 1;
        assert!(waited < 100, "the connection never reached the standby director");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The control: a connection made with the master stopped is not synced.
    in_ns("da", || IpvsDataPlane::new().stop_daemon(true).expect("stop master"));
    let mut unsynced = connect();
    assert_eq!(echo(&mut unsynced, "one\n").as_deref(), Some("one\n"), "through director da");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!on_db(unsynced.local_addr().expect("addr").port()), "synced without a master");

    // da fails; db takes the VIP (the client's neighbour entry is flushed, as a gratuitous
    // ARP would update it).
    ip("ip -n da link set eth0 down");
    ip("ip -n db addr add 10.9.0.50/32 dev eth0");
    ip("ip -n fc neigh flush dev eth0");
    assert_eq!(echo(&mut synced, "two\n").as_deref(), Some("two\n"), "the synced connection survives");
    assert_eq!(echo(&mut unsynced, "two\n"), None, "the unsynced one is reset by the standby");
    let l = in_ns("db", || ipvsadm(&["-L", "-n", "-c"]));
    println!("standby director's connections after the failover:\n{l}");
}

/// The sync daemons of the backup-director step: their own group and port (a backup
/// hears only a master sending to its group and port).
fn sync_daemon(master: bool, interface: &str) -> Daemon {
    Daemon {
        group: Some("239.255.77.1".parse().expect("group")),
        port: Some(8849),
        ttl: Some(2),
        ..Daemon::new(master, interface, 9)
    }
}

/// In the backup director's namespace: the backup sync daemon (no services: a standby
/// director's table is empty until it takes over).
fn backup_start() {
    let plane = IpvsDataPlane::new();
    let backup = sync_daemon(false, "v1");
    assert!(plane.start_daemon(&backup).expect("start backup"));
    let ds = plane.daemons().expect("daemons");
    assert!(ds.len() == 1 && backup.is_running_as(&ds[0]), "{ds:?}");
}

/// In the backup director's namespace: the master's connection arrives, and halo's `-c`
/// view of it is ipvsadm's.
fn backup_check() {
    let plane = IpvsDataPlane::new();
    let client: SocketAddr = std::env::var("HALO_IPVS_VM_CLIENT").expect("client").parse().expect("addr");
    let vip: SocketAddr = "198.51.100.10:53".parse().expect("addr");
    for _ in 0..100 {
        let m = plane.model().expect("model");
        if let Some(c) = m.connections.iter().find(|c| c.source == client && c.virtual_addr == vip) {
            assert_eq!(c.protocol, "UDP");
            let d = c.destination.to_string();
            assert!(d == "192.0.2.21:5353" || d == "192.0.2.22:5353", "{c:?}");
            let l = agree(&plane, "backup-namespace", &["-c"]);
            assert!(l.contains(&format!("UDP {client}")) || l.contains(&client.to_string()), "{l}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the master's connection never reached the backup:\n{}", ipvsadm(&["-L", "-n", "-c"]));
}

/// An HTTP/1.0 GET of `/` from inside network namespace `ns` (a thread that enters it):
/// the whole answer. (busybox's static wget crashes resolving names without NSS.)
fn fetch_in_netns(ns: &str, addr: &str) -> String {
    let (ns, addr) = (ns.to_string(), addr.to_string());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let a: SocketAddr = addr.parse().expect("addr");
        let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).expect("connect through the VIP");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("send");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read the answer");
        out
    })
    .join()
    .expect("fetch thread")
}

const WEB: &str = "TCP 198.51.100.10:80";

fn guest() {
    let plane = IpvsDataPlane::new();
    assert!(ipvs::available(), "the guest kernel must have IPVS");
    let auto = DataPlane::select(PlaneChoice::Auto, NftDataPlane::new(Nft::new())).expect("select");
    assert_eq!(auto.name(), "ipvs");
    step("auto-selects-ipvs");

    // An rr DR service with two real servers.
    let d = Desired { services: vec![web(&[([192, 0, 2, 11], 1), ([192, 0, 2, 12], 1)])] };
    let ch = plane.apply(&d).expect("apply");
    assert_eq!(
        ch,
        vec![
            Change::ServiceAdded(WEB.into()),
            Change::DestAdded { service: WEB.into(), dest: "192.0.2.11:80".into() },
            Change::DestAdded { service: WEB.into(), dest: "192.0.2.12:80".into() },
        ]
    );
    let l = agree(&plane, "dr-service-added", &[]);
    assert_eq!(dest_line(&l, "TCP  198.51.100.10:80 rr", "192.0.2.11:80").expect("11")[..2], ["Route", "1"]);
    assert_eq!(dest_line(&l, "TCP  198.51.100.10:80 rr", "192.0.2.12:80").expect("12")[..2], ["Route", "1"]);
    step("dr-service-added");
    assert_eq!(plane.apply(&d).expect("apply"), vec![]);
    agree(&plane, "second-apply-changes-nothing", &[]);
    step("second-apply-changes-nothing");

    // Connections: rr sends two to each.
    connect([198, 51, 100, 10], 80, 4);
    let before = counted(&plane, WEB, 4);
    let (a, b) = (dest_of(&before, WEB, "192.0.2.11:80"), dest_of(&before, WEB, "192.0.2.12:80"));
    assert_eq!(
        (a.stats.conns, b.stats.conns),
        (2, 2),
        "rr over two real servers:\n{}{}",
        ipvsadm(&["-L", "-n", "--stats"]),
        ipvsadm(&["-L", "-n", "-c"])
    );
    assert_eq!(a.active + a.inactive + b.active + b.inactive, 4, "{a:?} {b:?}");
    let l = agree(&plane, "connections-counted", &[]);
    let f = dest_line(&l, "TCP  198.51.100.10:80 rr", "192.0.2.11:80").expect("11");
    assert_eq!(f[2].parse::<u32>().expect("n") + f[3].parse::<u32>().expect("n"), 2, "{l}");
    step("connections-counted");

    // A weight change: one SET_DEST for that real server; nothing is re-created, so the
    // counters and connection counts of both survive.
    let d = Desired { services: vec![web(&[([192, 0, 2, 11], 3), ([192, 0, 2, 12], 1)])] };
    let ch = plane.apply(&d).expect("apply");
    assert_eq!(
        ch,
        vec![Change::DestEdited {
            service: WEB.into(),
            dest: "192.0.2.11:80".into(),
            what: "weight 1 -> 3".into()
        }]
    );
    let after = plane.model().expect("model");
    for r in ["192.0.2.11:80", "192.0.2.12:80"] {
        let (x, y) = (dest_of(&before, WEB, r), dest_of(&after, WEB, r));
        assert_eq!(
            (x.stats.conns, x.stats.inpkts, x.stats.inbytes),
            (y.stats.conns, y.stats.inpkts, y.stats.inbytes),
            "{r}"
        );
        assert_eq!(x.active + x.inactive, y.active + y.inactive, "{r}");
    }
    assert_eq!(dest_of(&after, WEB, "192.0.2.11:80").weight, 3);
    let l = agree(&plane, "weight-edited-in-place", &["--stats"]);
    assert!(l.contains("  -> 192.0.2.12:80                       2"), "{l}");
    agree(&plane, "weight-edited-in-place", &[]);
    step("weight-edited-in-place");

    // A real server removed.
    let d = Desired { services: vec![web(&[([192, 0, 2, 11], 3)])] };
    assert_eq!(
        plane.apply(&d).expect("apply"),
        vec![Change::DestRemoved { service: WEB.into(), dest: "192.0.2.12:80".into() }]
    );
    let l = agree(&plane, "real-server-removed", &[]);
    assert!(!l.contains("192.0.2.12"), "{l}");
    step("real-server-removed");

    // Quiescent: weight 0, still listed, its counters kept.
    let d = Desired { services: vec![web(&[([192, 0, 2, 11], 0)])] };
    assert_eq!(plane.apply(&d).expect("apply").len(), 1);
    let l = agree(&plane, "quiescent-weight-0", &[]);
    assert_eq!(dest_line(&l, "TCP  198.51.100.10:80 rr", "192.0.2.11:80").expect("11")[..2], ["Route", "0"]);
    assert_eq!(dest_of(&plane.model().expect("model"), WEB, "192.0.2.11:80").stats.conns, 2);
    step("quiescent-weight-0");

    // NAT and persistence with a netmask.
    let d = Desired { services: vec![web(&[([192, 0, 2, 11], 1)]), dns(), sticky("wlc")] };
    let ch = plane.apply(&d).expect("apply");
    let added: Vec<_> = ch.iter().filter(|c| matches!(c, Change::ServiceAdded(_))).collect();
    assert_eq!(added.len(), 2, "{ch:?}");
    assert_eq!(ch.iter().filter(|c| matches!(c, Change::DestAdded { .. })).count(), 4, "{ch:?}");
    assert_eq!(ch.len(), 7, "the web service only has its weight edited: {ch:?}");
    let l = agree(&plane, "masq-and-persistent-services", &[]);
    assert!(l.contains("UDP  198.51.100.10:53 wrr\n"), "{l}");
    assert_eq!(dest_line(&l, "UDP  198.51.100.10:53", "192.0.2.21:5353").expect("21")[..2], ["Masq", "2"]);
    assert!(l.contains("TCP  198.51.100.20:443 wlc persistent 600 mask 255.255.255.0\n"), "{l}");
    step("masq-and-persistent-services");

    connect([198, 51, 100, 20], 443, 3);
    let m = counted(&plane, "TCP 198.51.100.20:443", 3);
    let (x, y) = (
        dest_of(&m, "TCP 198.51.100.20:443", "192.0.2.11:443"),
        dest_of(&m, "TCP 198.51.100.20:443", "192.0.2.12:443"),
    );
    let mut conns = [x.stats.conns, y.stats.conns];
    conns.sort_unstable();
    assert_eq!(conns, [0, 3], "one client, one real server: {x:?} {y:?}");
    assert_eq!(x.persist + y.persist, 1, "one persistence template");
    agree(&plane, "persistence-keeps-the-client", &[]);
    agree(&plane, "persistence-keeps-the-client", &["--persistent-conn"]);
    step("persistence-keeps-the-client");

    // Every scheduler, edited in place on the persistent service.
    for sched in
        ["rr", "wrr", "lc", "wlc", "sh", "dh", "lblc", "lblcr", "sed", "nq", "mh", "fo", "ovf", "ovf"]
    {
        let before = ipvsadm(&["-L", "-n"]);
        let d = Desired { services: vec![web(&[([192, 0, 2, 11], 1)]), dns(), sticky(sched)] };
        let ch = plane.apply(&d).expect("apply");
        let same = before.contains(&format!("TCP  198.51.100.20:443 {sched} "));
        let expect = if same { vec![] } else { vec![Change::ServiceEdited("TCP 198.51.100.20:443".into())] };
        assert_eq!(ch, expect, "{sched}");
        let l = ipvsadm(&["-L", "-n"]);
        assert!(
            l.contains(&format!("TCP  198.51.100.20:443 {sched} persistent 600 mask 255.255.255.0\n")),
            "{l}"
        );
    }
    agree(&plane, "every-scheduler", &[]);
    step("every-scheduler");

    // A fwmark service with an ipip real server (IPVS's own model).
    let base = Desired { services: vec![web(&[([192, 0, 2, 11], 1)]), dns(), sticky("sh")] };
    let mut svcs = ipvs::services_of(&base);
    let mut fwm = ipvsadm::Service::new(ipvsadm::ServiceKey::Fwmark { mark: 7, ipv6: false }, "wlc");
    let tun = ipvsadm::Forward::Tunnel(ipvsadm::Tunnel::default());
    fwm.dests.push(ipvsadm::Destination::new("192.0.2.31:0".parse().expect("a"), tun, 2));
    svcs.push(fwm);
    let ch = plane.apply_services(&svcs).expect("apply");
    assert_eq!(ch.len(), 3, "sh back, fwmark service and its real server: {ch:?}");
    let l = agree(&plane, "fwmark-ipip", &[]);
    assert!(l.contains("FWM  7 wlc\n"), "{l}");
    assert_eq!(dest_line(&l, "FWM  7", "192.0.2.31:0").expect("31")[..2], ["Tunnel", "2"]);
    agree(&plane, "fwmark-ipip", &["--tun-info"]);
    step("fwmark-ipip");

    // IPv6: a persistent service with a prefix length, a DR real server with connection
    // thresholds, each then edited in place.
    ip("ip -6 addr add 2001:db8:1::1/64 dev d0 nodad");
    let v6 = ipvsadm::ServiceKey::Addr {
        protocol: ipvsadm::Protocol::Tcp,
        addr: "[2001:db8::10]:80".parse().expect("a"),
    };
    let mut s6 = ipvsadm::Service::new(v6, "wrr");
    s6.persistent =
        Some(ipvsadm::Persistent { timeout: 120, netmask: halo_lb::Netmask::v6(64).expect("prefix") });
    let mut d6 =
        ipvsadm::Destination::new("[2001:db8:1::11]:80".parse().expect("a"), ipvsadm::Forward::Route, 5);
    (d6.u_threshold, d6.l_threshold) = (100, 10);
    s6.dests.push(d6);
    svcs.push(s6);
    let ch = plane.apply_services(&svcs).expect("apply");
    assert_eq!(ch.len(), 2, "{ch:?}");
    let l = agree(&plane, "ipv6", &[]);
    assert!(l.contains("TCP  [2001:db8::10]:80 wrr persistent 120 mask 64\n"), "{l}");
    let t = agree(&plane, "ipv6", &["--thresholds"]);
    assert!(t.contains("  -> [2001:db8:1::11]:80"), "{t}");
    let last = svcs.len() - 1;
    svcs[last].dests[0].u_threshold = 200;
    svcs[last].persistent =
        Some(ipvsadm::Persistent { timeout: 120, netmask: halo_lb::Netmask::v6(48).expect("p") });
    let ch = plane.apply_services(&svcs).expect("apply");
    let name = "TCP [2001:db8::10]:80".to_string();
    assert_eq!(
        ch,
        vec![
            Change::ServiceEdited(name.clone()),
            Change::DestEdited {
                service: name,
                dest: "[2001:db8:1::11]:80".into(),
                what: "thresholds".into()
            },
        ]
    );
    let l = agree(&plane, "ipv6", &[]);
    assert!(l.contains("TCP  [2001:db8::10]:80 wrr persistent 120 mask 48\n"), "{l}");
    agree(&plane, "ipv6-edited", &["--thresholds"]);
    step("ipv6");

    agree(&plane, "views-stats-rate-conn", &["--stats"]);
    agree(&plane, "views-stats-rate-conn", &["--stats", "--exact"]);
    agree(&plane, "views-stats-rate-conn", &["--rate"]);
    let c = agree(&plane, "views-stats-rate-conn", &["-c"]);
    assert!(c.lines().count() >= 2 + 4, "the connections made above: {c}");
    step("views-stats-rate-conn");

    // Someone else's service stays; halo's own are still reconciled.
    ipvsadm(&["-A", "-t", "203.0.113.1:80", "-s", "rr"]);
    assert_eq!(plane.apply_services(&svcs).expect("apply"), vec![]);
    let l = agree(&plane, "foreign-service-left-alone", &[]);
    assert!(l.contains("TCP  203.0.113.1:80 rr\n"), "{l}");
    step("foreign-service-left-alone");

    // The sync daemon: master and backup, as ipvsadm --start-daemon does.
    let master = Daemon::new(true, "d0", 7);
    let backup = Daemon::new(false, "d0", 7);
    assert!(plane.start_daemon(&master).expect("start master"));
    assert!(!plane.start_daemon(&master).expect("again"), "already running: nothing sent");
    assert!(plane.start_daemon(&backup).expect("start backup"));
    let mut ds = plane.daemons().expect("daemons");
    ds.sort_by_key(|d| !d.master);
    assert!(ds.len() == 2 && master.is_running_as(&ds[0]) && backup.is_running_as(&ds[1]), "{ds:?}");
    // The kernel's defaults, read back.
    assert_eq!(ds[0].group, Some("224.0.0.81".parse().expect("a")), "{ds:?}");
    assert_eq!((ds[0].port, ds[0].ttl), (Some(8848), Some(1)), "{ds:?}");
    let l = ipvsadm(&["-L", "--daemon"]);
    assert!(l.contains("master sync daemon (mcast=d0, syncid=7"), "{l}");
    assert!(l.contains("backup sync daemon (mcast=d0, syncid=7"), "{l}");
    assert!(plane.stop_daemon(true).expect("stop"));
    assert!(plane.stop_daemon(false).expect("stop"));
    assert!(!plane.stop_daemon(false).expect("stop"), "not running any more");
    assert_eq!(plane.daemons().expect("daemons"), vec![]);
    agree(&plane, "sync-daemon", &[]);
    step("sync-daemon");

    // Connection sync to a backup director: a second network namespace (the backup
    // director), linked by a veth pair; its backup daemon takes what the master sends.
    ip("ip netns add b");
    ip("ip link add v0 type veth peer name v1 netns b");
    ip("ip addr add 10.0.0.1/24 dev v0");
    ip("ip link set v0 up");
    ip("ip -n b addr add 10.0.0.2/24 dev v1");
    ip("ip -n b link set v1 up");
    ip("ip -n b link set lo up");
    in_backup("backup-start", "");
    let master = sync_daemon(true, "v0");
    assert!(plane.start_daemon(&master).expect("start master"));
    // A UDP flow of three datagrams: IPVS syncs a connection at its third packet
    // (sync_threshold 3).
    let client = std::net::UdpSocket::bind("198.51.100.10:0").expect("udp");
    for _ in 0..3 {
        client.send_to(b"q", "198.51.100.10:53").expect("send");
    }
    println!("client {}", client.local_addr().expect("addr"));
    in_backup("backup-check", &client.local_addr().expect("addr").to_string());
    // The master keeps running: the TCP connections of the traffic step below reach the
    // backup too.
    step("sync-to-backup-namespace");

    // A service removed from the desired state.
    svcs.retain(|s| ipvs::service_name(&s.key) != "UDP 198.51.100.10:53");
    assert_eq!(
        plane.apply_services(&svcs).expect("apply"),
        vec![Change::ServiceRemoved("UDP 198.51.100.10:53".into())]
    );
    let l = agree(&plane, "service-removed", &[]);
    assert!(!l.contains("UDP"), "{l}");
    step("service-removed");

    // What the kernel refuses comes back with what halo was doing and why.
    let mut bad = svcs.clone();
    bad[0].scheduler = "nosuch".into();
    let e = plane.apply_services(&bad).expect_err("unknown scheduler").to_string();
    assert!(e.contains("ip_vs_nosuch"), "{e}");
    let mut bad = svcs.clone();
    bad.push(ipvsadm::Service::new(ipvsadm::ServiceKey::Fwmark { mark: 8, ipv6: false }, "rr"));
    let last = bad.len() - 1;
    bad[last].dests.push(ipvsadm::Destination::new(
        "0.0.0.0:80".parse().expect("a"),
        ipvsadm::Forward::Route,
        1,
    ));
    let e = plane.apply_services(&bad).expect_err("unroutable real server").to_string();
    assert!(e.contains("not routable unicast") && e.contains("FWM 8"), "{e}");
    // The half-done apply is finished by the next one: FWM 8 (added before its real server
    // was refused) is halo's and goes.
    let ch = plane.apply_services(&svcs).expect("apply");
    assert_eq!(ch, vec![Change::ServiceRemoved("FWM 8".into())]);
    agree(&plane, "kernel-refusals-explained", &[]);
    step("kernel-refusals-explained");

    // Traffic through it: a client namespace fetches a page from the VIP of a NAT service
    // whose two real servers are web servers in namespaces of their own.
    for (i, ns) in ["r1", "r2"].iter().enumerate() {
        let n = i + 1;
        ip(&format!("ip netns add {ns}"));
        ip(&format!("ip link add vr{n} type veth peer name eth0 netns {ns}"));
        ip(&format!("ip addr add 10.1.{n}.1/24 dev vr{n}"));
        ip(&format!("ip link set vr{n} up"));
        ip(&format!("ip -n {ns} addr add 10.1.{n}.2/24 dev eth0"));
        ip(&format!("ip -n {ns} link set eth0 up"));
        ip(&format!("ip -n {ns} link set lo up"));
        ip(&format!("ip -n {ns} route add default via 10.1.{n}.1"));
        std::fs::create_dir_all(format!("/tmp/{ns}")).expect("mkdir");
        std::fs::write(format!("/tmp/{ns}/index.html"), format!("{ns}\n")).expect("page");
        ip(&format!("ip netns exec {ns} httpd -p 80 -h /tmp/{ns}"));
    }
    ip("ip netns add c");
    ip("ip link add vc type veth peer name eth0 netns c");
    ip("ip addr add 100.64.0.1/24 dev vc");
    ip("ip link set vc up");
    ip("ip -n c addr add 100.64.0.2/24 dev eth0");
    ip("ip -n c link set eth0 up");
    ip("ip -n c route add default via 100.64.0.1");
    ip("ip addr add 198.51.100.30/32 dev lo");
    std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("ip_forward");
    let nat = vip_service(
        Protocol::Tcp,
        [198, 51, 100, 30],
        80,
        "rr",
        Forward::Masq,
        &[([10, 1, 1, 2], 80, 1), ([10, 1, 2, 2], 80, 1)],
    );
    let mut with_nat = svcs.clone();
    with_nat.extend(ipvs::services_of(&Desired { services: vec![nat] }));
    assert_eq!(plane.apply_services(&with_nat).expect("apply").len(), 3);
    let mut seen = Vec::new();
    for _ in 0..4 {
        let page = fetch_in_netns("c", "198.51.100.30:80");
        seen.push(page.lines().last().unwrap_or("").trim().to_string());
    }
    println!("pages through the VIP: {seen:?}");
    assert!(seen[0] != seen[1] && seen[0] == seen[2] && seen[1] == seen[3], "rr alternates: {seen:?}");
    let mut both = seen[..2].to_vec();
    both.sort();
    assert_eq!(both, ["r1", "r2"]);
    let m = counted(&plane, "TCP 198.51.100.30:80", 4);
    let r1 = dest_of(&m, "TCP 198.51.100.30:80", "10.1.1.2:80");
    assert!(r1.stats.conns == 2 && r1.stats.outpkts > 0, "replies come back through NAT: {r1:?}");
    agree(&plane, "nat-traffic", &["--stats", "--exact"]);
    agree(&plane, "nat-traffic", &[]);
    assert_eq!(
        plane.apply_services(&svcs).expect("apply"),
        vec![Change::ServiceRemoved("TCP 198.51.100.30:80".into())]
    );
    step("nat-traffic-reaches-real-servers");

    // Those TCP connections were synced to the backup director once established (IPVS
    // sends a TCP connection when it becomes ESTABLISHED, at its third packet).
    in_backup("backup-check-tcp", "");
    assert!(plane.stop_daemon(true).expect("stop"));
    step("established-tcp-synced-to-backup");

    failover();
    step("failover-keeps-an-established-connection");

    // Any number of netlink sockets at once (each is bound with port id 0).
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let p = plane.clone();
            std::thread::spawn(move || (0..20).map(|_| p.model().expect("model").services.len()).max())
        })
        .collect();
    for r in readers {
        assert!(r.join().expect("reader").unwrap_or(0) >= 4);
    }
    step("concurrent-sockets");

    // A clean stop removes halo's services, and only those.
    assert!(plane.remove().expect("remove"));
    let l = agree(&plane, "clean-removal", &[]);
    assert!(l.contains("TCP  203.0.113.1:80 rr\n") && !l.contains("198.51.100"), "{l}");
    step("clean-removal");

    // A daemon killed with its services in the kernel: the next one (a plane that owns
    // nothing) removes them at stop from the desired state.
    let d = Desired { services: vec![dns()] };
    IpvsDataPlane::new().apply(&d).expect("apply");
    let fresh = IpvsDataPlane::new();
    assert!(fresh.remove_desired(&d).expect("remove"));
    let l = agree(&fresh, "leftovers-of-a-killed-daemon", &[]);
    assert!(!l.contains("198.51.100") && l.contains("203.0.113.1:80"), "{l}");
    step("leftovers-of-a-killed-daemon");

    halo_director();
}

// ---- the real daemon's director on IPVS ----

/// Where the guest keeps the daemon's configuration, socket, state and log.
const HALO_DIR: &str = "/tmp/halo-d";
const DIRECTOR_VIP: &str = "198.51.100.30:80";

/// `halo lvs ARGS` against the daemon of [`halo_director`].
fn halo_lvs(args: &[&str]) -> Result<String, String> {
    let out = Command::new("/bin/halo")
        .args(["--socket", &format!("{HALO_DIR}/halo.sock"), "lvs"])
        .args(args)
        .output()
        .map_err(|e| format!("run halo: {e}"))?;
    if !out.status.success() {
        return Err(format!("halo lvs {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// `halo lvs ARGS` prints what `ipvsadm -L -n ARGS` prints (read again while the two
/// bracket different texts: expiry timers move); both are printed for the host. Returns
/// ipvsadm's.
fn halo_agree(label: &str, args: &[&str]) -> String {
    let full: Vec<&str> = ["-L", "-n"].iter().chain(args).copied().collect();
    let name = full.join(" ");
    let mut last = (String::new(), String::new());
    for _ in 0..20 {
        let before = ipvsadm(&full);
        let ours = halo_lvs(args).unwrap_or_else(|e| panic!("{e}\n{}", daemon_log()));
        let after = ipvsadm(&full);
        if ours == before || ours == after {
            let theirs = if ours == before { before } else { after };
            println!("=== BEGIN ipvsadm {label} {name}\n{theirs}=== END ipvsadm {label} {name}");
            println!("=== BEGIN halo {label} {name}\n{ours}=== END halo {label} {name}");
            return theirs;
        }
        last = (before, ours);
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("halo lvs and ipvsadm {name} differ at {label}:\n--- ipvsadm\n{}--- halo lvs\n{}", last.0, last.1);
}

fn daemon_log() -> String {
    ["halo.log", "halo.out"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("{HALO_DIR}/{f}")).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n--- stdout/stderr\n")
}

/// Polls `ipvsadm -L -n` until `ok` holds (the director checks every second; TCG is slow).
fn wait_table(what: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut l = String::new();
    for _ in 0..300 {
        l = ipvsadm(&["-L", "-n"]);
        if ok(&l) {
            return l;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} never happened:\n{l}\n--- daemon log\n{}", daemon_log());
}

/// A TCP listener in namespace `ns` on `addr` until the returned sender is dropped (the
/// kernel completes connect checks' handshakes from its backlog).
fn listen_in_ns(ns: &str, addr: &str) -> std::sync::mpsc::Sender<()> {
    let (ns, addr) = (ns.to_string(), addr.to_string());
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (ready, is_ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns file");
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let l = std::net::TcpListener::bind(&addr).expect("listen");
        ready.send(()).expect("ready");
        let _ = stopped.recv();
        drop(l);
    });
    is_ready.recv().expect("listener up");
    stop
}

/// The real `halo run` of a one-node cluster whose only resource is halo's built-in
/// director (`n1 ldirectord::ldirectord.cf`), the data plane left to `auto`: it drives
/// IPVS here. Three NAT real servers behind the VIP of the NAT step: r1's web server (its
/// connect check passes), a port nothing listens on (never enters the table) and a
/// listener in r2 that is closed later (the real server leaves the table). `halo lvs`
/// equals `ipvsadm -L -n` (and `--stats --exact`, `-c`) at each point. Reloads to
/// `quiescent=yes`, then `readdquiescent=yes`, show what a failed real server someone
/// deleted from the kernel becomes (left out, then back at weight 0). Stopping the daemon
/// removes its service and leaves the service someone else added.
fn halo_director() {
    let d = std::path::Path::new(HALO_DIR);
    std::fs::create_dir_all(d.join("state")).expect("mkdir");
    let w = |name: &str, text: &str| std::fs::write(d.join(name), text).expect("write config");
    w(
        "ha.cf",
        &format!(
            "keepalive 200ms\nwarntime 1\ndeadtime 2\ninitdead 4\nbcast d0\nauto_failback off\nnode n1\n\
             logfile {HALO_DIR}/halo.log\nrealtime off\nlvs_sync_daemon d0 id 7\n"
        ),
    );
    w("authkeys", "auth 1\n1 sha1 ipvs-vm-secret\n");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("authkeys"), std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    w("haresources", "n1 ldirectord::ldirectord.cf\n");
    w(
        "ldirectord.cf",
        &format!(
            "checkinterval=1\nchecktimeout=2\nquiescent=no\nvirtual={DIRECTOR_VIP}\n\
             \treal=10.1.1.2:80 masq\n\treal=10.1.1.2:81 masq\n\treal=10.1.2.2:8080 masq\n\
             \tscheduler=rr\n\tprotocol=tcp\n\tchecktype=connect\n\
             virtual=7\n\treal=10.1.1.2:80 ipip\n\tscheduler=rr\n\tchecktype=connect\n"
        ),
    );
    let r2_listener = listen_in_ns("r2", "10.1.2.2:8080");
    let out = std::fs::File::create(d.join("halo.out")).expect("halo.out");
    let mut daemon = Command::new("/bin/halo")
        .args(["--socket", &format!("{HALO_DIR}/halo.sock"), "run", "--config-dir", HALO_DIR])
        .args(["--node", "n1", "--state-dir", &format!("{HALO_DIR}/state")])
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .expect("start halo run");

    let l = wait_table("the director's services with their healthy real servers", |l| {
        l.contains(&format!("TCP  {DIRECTOR_VIP} rr"))
            && l.contains("10.1.1.2:80 ")
            && l.contains("10.1.2.2:8080 ")
            && dest_line(l, "FWM  7 rr", "10.1.1.2:80").is_some()
    });
    assert!(!l.contains("10.1.1.2:81"), "a real server whose check fails never enters:\n{l}");
    assert!(l.contains("TCP  203.0.113.1:80 rr"), "someone else's service is there too:\n{l}");
    let log = daemon_log();
    assert!(log.contains("the IPVS table (dataplane=auto)"), "auto picked IPVS:\n{log}");
    let l = halo_agree("halo-run", &[]);
    let r2 = dest_line(&l, &format!("TCP  {DIRECTOR_VIP} rr"), "10.1.2.2:8080").expect("r2 listed");
    assert_eq!(r2, ["Masq", "1", "0", "0"], "{l}");
    // ldirectord's firewall-mark service (virtual=7) with an ipip real server: FWM, Tunnel.
    let fwm = dest_line(&l, "FWM  7 rr", "10.1.1.2:80").expect("the fwmark service's real server");
    assert_eq!(fwm, ["Tunnel", "1", "0", "0"], "{l}");
    let health = halo_lvs(&["--health"]).expect("halo lvs --health");
    println!("halo lvs --health:\n{health}");
    assert!(health.contains("(group ldirectord::ldirectord.cf, IPVS)\n"), "{health}");
    assert!(health.contains("10.1.1.2:81") && health.contains("not in table"), "{health}");
    step("halo-run-director-picks-ipvs");

    // ha.cf's lvs_sync_daemon on an IPVS kernel: the kernel's own sync daemons, master and
    // backup, on d0 with sync id 7 (what `ipvsadm --start-daemon` would start).
    let daemons = ipvsadm(&["-L", "--daemon"]);
    println!("ipvsadm -L --daemon:\n{daemons}");
    for state in ["master", "backup"] {
        assert!(
            daemons.contains(&format!("{state} sync daemon (mcast=d0, syncid=7")),
            "{state} sync daemon started by halo run:\n{daemons}\n{}",
            daemon_log()
        );
    }
    assert!(daemon_log().contains("IPVS's master sync daemon runs on d0"), "{}", daemon_log());
    step("halo-run-starts-the-kernel-sync-daemons");

    drop(r2_listener);
    wait_table("r2's real server leaving after its check failed", |l| !l.contains("10.1.2.2:8080"));
    let l = halo_agree("check-failed", &[]);
    assert!(l.contains("10.1.1.2:80 ") && l.contains(&format!("TCP  {DIRECTOR_VIP} rr")), "{l}");
    step("failed-check-leaves-the-table");

    // The NAT step's finished connections to r1 may still be in the kernel's table.
    let inact = |l: &str| -> u32 {
        let r1 = dest_line(l, &format!("TCP  {DIRECTOR_VIP} rr"), "10.1.1.2:80").expect("r1 listed");
        r1[3].parse().expect("InActConn")
    };
    let before = inact(&ipvsadm(&["-L", "-n"]));
    for _ in 0..2 {
        let page = fetch_in_netns("c", DIRECTOR_VIP);
        assert_eq!(page.lines().last().unwrap_or("").trim(), "r1", "{page}");
    }
    let l = halo_agree("director-traffic", &[]);
    assert_eq!(inact(&l), before + 2, "two more finished connections in InActConn (from {before}): {l}");
    let s = halo_agree("director-traffic", &["--stats", "--exact"]);
    assert!(s.contains(&format!("TCP  {DIRECTOR_VIP}")), "{s}");
    let c = halo_agree("director-traffic", &["-c"]);
    assert!(c.matches("10.1.1.2:80").count() >= 2, "{c}");
    step("halo-lvs-counts-connections");

    // halo reload with a new scheduler and weight: the service and real server are edited
    // in place (their connection counters go on), nothing else is touched.
    let conns = |l: &str| -> (u64, u64) {
        let mut svc = None;
        let mut dest = None;
        let mut in_svc = false;
        for line in l.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with("TCP  ") {
                in_svc = f.get(1) == Some(&DIRECTOR_VIP);
                if in_svc {
                    svc = f.get(2).and_then(|c| c.parse().ok());
                }
            } else if in_svc && f.first() == Some(&"->") && f.get(1) == Some(&"10.1.1.2:80") {
                dest = f.get(2).and_then(|c| c.parse().ok());
            }
        }
        (svc.expect("service Conns"), dest.expect("r1 Conns"))
    };
    // The kernel folds its per-CPU counters into --stats about every 2 s: wait for them.
    let mut counted = (0, 0);
    for _ in 0..100 {
        counted = conns(&ipvsadm(&["-L", "-n", "--stats", "--exact"]));
        if counted.0 >= 2 && counted.1 >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(counted.0 >= 2 && counted.1 >= 2, "{counted:?}");
    // ldirectord.cf with these global lines, the wlc service and r1 at weight 3; then
    // `halo reload` (which applies before it answers).
    let reload = |globals: &str| {
        std::fs::write(
            d.join("ldirectord.cf"),
            format!(
                "checkinterval=1\nchecktimeout=2\n{globals}virtual={DIRECTOR_VIP}\n\
                 \treal=10.1.1.2:80 masq 3\n\treal=10.1.1.2:81 masq\n\treal=10.1.2.2:8080 masq\n\
                 \tscheduler=wlc\n\tprotocol=tcp\n\tchecktype=connect\n"
            ),
        )
        .expect("rewrite ldirectord.cf");
        let out = Command::new("/bin/halo")
            .args(["--socket", &format!("{HALO_DIR}/halo.sock"), "reload"])
            .output()
            .expect("halo reload");
        println!(
            "halo reload ({}):\n{}",
            globals.trim_end().replace('\n', ", "),
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            out.status.success(),
            "halo reload: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            daemon_log()
        );
    };
    reload("quiescent=no\n");
    wait_table("the reload's scheduler and weight", |l| {
        l.contains(&format!("TCP  {DIRECTOR_VIP} wlc"))
            && dest_line(l, &format!("TCP  {DIRECTOR_VIP} wlc"), "10.1.1.2:80").is_some_and(|f| f[1] == "3")
    });
    let l = halo_agree("after-reload", &[]);
    assert!(l.contains("TCP  203.0.113.1:80 rr"), "{l}");
    let after = conns(&halo_agree("after-reload", &["--stats", "--exact"]));
    assert_eq!(after, counted, "edited in place: the counters go on");
    step("halo-reload-edits-in-place");

    // readdquiescent (spec §7.5): with quiescent=yes a failed real server is kept at weight
    // 0, but one missing from the kernel's table when it fails (deleted by hand) is left out
    // with readdquiescent=no (the default), added back at weight 0 with readdquiescent=yes.
    // r2 (down since its listener closed) is the real server: it is quiesced by the reload,
    // then up again with its weight once it listens.
    let svc = format!("TCP  {DIRECTOR_VIP} wlc");
    let r2_weight = |l: &str| dest_line(l, &svc, "10.1.2.2:8080").map(|f| f[1].clone());
    reload("quiescent=yes\n");
    wait_table("quiescent=yes: the failed r2 kept at weight 0", |l| r2_weight(l).as_deref() == Some("0"));
    let r2_listener = listen_in_ns("r2", "10.1.2.2:8080");
    wait_table("r2 up again at weight 1", |l| r2_weight(l).as_deref() == Some("1"));
    let left_out_line = "10.1.2.2:8080 (198.51.100.30:80) went down while missing from";
    let left_out_before = daemon_log().matches(left_out_line).count();
    // Deleted behind halo's back while it is up (nothing puts a healthy real server back:
    // the director applies on changes of state), then its check fails. But the end of the
    // first check pass after the reload is such a change too (it applies): wait until every
    // real server has been checked twice since r2 came up, so that pass is over.
    let checks = || -> Vec<u64> {
        let v = halo::control::request(std::path::Path::new(&format!("{HALO_DIR}/halo.sock")), "lvs")
            .expect("halo lvs over the control socket");
        v["directors"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|d| d["services"].as_array().into_iter().flatten())
            .flat_map(|s| s["reals"].as_array().into_iter().flatten())
            .map(|r| r["checks"].as_u64().unwrap_or(0))
            .collect()
    };
    let at_up = checks();
    let mut passed = false;
    for _ in 0..300 {
        if checks().iter().zip(&at_up).all(|(now, then)| *now >= then + 2) {
            passed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(passed, "two more checks of every real server since r2 came up: {at_up:?} -> {:?}", checks());
    assert_eq!(r2_weight(&ipvsadm(&["-L", "-n"])).as_deref(), Some("1"), "r2 still up before the delete");
    ipvsadm(&["-d", "-t", DIRECTOR_VIP, "-r", "10.1.2.2:8080"]);
    drop(r2_listener);
    let mut seen = false;
    for _ in 0..300 {
        if daemon_log().matches(left_out_line).count() > left_out_before {
            seen = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(seen, "the director never saw r2 fail while missing:\n{}", daemon_log());
    assert!(daemon_log().contains("left out until it comes up (readdquiescent=no)"), "{}", daemon_log());
    // A few check intervals later (checkinterval=1) it is still out: not re-added at weight 0.
    std::thread::sleep(Duration::from_secs(4));
    let l = halo_agree("quiescent-missing-left-out", &[]);
    assert_eq!(
        r2_weight(&l),
        None,
        "readdquiescent=no: the failed r2 missing from the table stays out:\n{l}"
    );
    let r1 = dest_line(&l, &svc, "10.1.1.2:80").expect("r1 listed");
    assert_eq!(r1[..2], ["Masq", "3"], "r1 untouched:\n{l}");
    let health = halo_lvs(&["--health"]).expect("halo lvs --health");
    println!("halo lvs --health (r2 left out):\n{health}");
    let r2_health = health.lines().find(|l| l.contains("-> 10.1.2.2:8080")).unwrap_or_default();
    assert!(r2_health.contains("not in table") && r2_health.contains("down"), "{health}");
    let r2_listener = listen_in_ns("r2", "10.1.2.2:8080");
    wait_table("r2 back with its weight once its check passes", |l| r2_weight(l).as_deref() == Some("1"));
    halo_agree("quiescent-missing-back", &[]);
    step("quiescent-missing-real-left-out");

    reload("quiescent=yes\nreaddquiescent=yes\n");
    let l = ipvsadm(&["-L", "-n"]);
    assert_eq!(r2_weight(&l).as_deref(), Some("1"), "the reload keeps r2 up:\n{l}");
    ipvsadm(&["-d", "-t", DIRECTOR_VIP, "-r", "10.1.2.2:8080"]);
    drop(r2_listener);
    wait_table("readdquiescent=yes: the failed r2 added back at weight 0", |l| {
        r2_weight(l).as_deref() == Some("0")
    });
    let l = halo_agree("readdquiescent-weight-0", &[]);
    let r2 = dest_line(&l, &svc, "10.1.2.2:8080").expect("r2 listed");
    assert_eq!(r2[..2], ["Masq", "0"], "{l}");
    let r2_listener = listen_in_ns("r2", "10.1.2.2:8080");
    wait_table("r2's weight back once its check passes", |l| r2_weight(l).as_deref() == Some("1"));
    halo_agree("readdquiescent-back", &[]);
    drop(r2_listener);
    step("readdquiescent-adds-it-back-at-weight-0");

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("SIGTERM halo");
    let mut exited = None;
    for _ in 0..600 {
        if let Some(st) = daemon.try_wait().expect("wait") {
            exited = Some(st);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let Some(st) = exited else {
        let _ = daemon.kill();
        panic!("halo did not stop on SIGTERM:\n{}", daemon_log());
    };
    assert!(st.success(), "halo run exited with {st}:\n{}", daemon_log());
    let l = ipvsadm(&["-L", "-n"]);
    println!("=== BEGIN ipvsadm after-halo-stop -L -n\n{l}=== END ipvsadm after-halo-stop -L -n");
    assert!(!l.contains("198.51.100.30"), "halo's service removed at stop:\n{l}");
    assert!(l.contains("TCP  203.0.113.1:80 rr"), "someone else's service stays:\n{l}");
    step("halo-stop-removes-only-its-services");
}
