//! Partition torture: three `halo run` daemons and a client in network namespaces, one VIP
//! group (the built-in IPaddr2 and a small web server answering the node's name),
//! `auto_failback on`, keepalive 100 ms / deadtime 500 ms. For a bounded time
//! (`HALO_PARTITION_SECS`, 90 s by default) nftables rules in the switch's bridge cut and heal
//! the links between the nodes at random, one-way cuts included, from a seeded PRNG (the
//! seed is printed; `HALO_PARTITION_SEED` replays it). A checker samples every 10 ms which
//! nodes hold the VIP and a client asks the VIP continuously.
//!
//! Without fencing two owners during a cut are expected: they are reported, not asserted.
//! What is asserted holds whatever the timing: after the final heal and a settle period one
//! node holds the VIP and the client is served, every daemon still answers, none panicked.
use halo::testbed::{wait_for, Testbed};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const AUTHKEYS: &str = "auth 1\n1 sha1 partition-secret\n";
const VIP: &str = "10.79.0.100";
const NODES: [&str; 3] = ["n1", "n2", "n3"];
const DEADTIME_MS: u64 = 500;

/// splitmix64: small, seedable, good enough to draw a schedule.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Moves the calling thread into a namespace (network namespaces are per thread).
fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// What the checker and the client saw, in milliseconds.
#[derive(Default, Debug, Clone, Copy)]
struct Tally {
    samples: u64,
    two_owners_ms: u64,
    no_owner_ms: u64,
    served_ms: u64,
    unserved_ms: u64,
}

struct Watch {
    stop: Arc<AtomicBool>,
    /// Bit i: node i holds the VIP (its sampler could bind to it).
    owners: Arc<AtomicU64>,
    /// 1 + index of the node that answered the client's last request, 0: no answer.
    served_by: Arc<AtomicU64>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// One sampler thread per node namespace (a UDP bind to the VIP succeeds only where it
    /// is a local address: a syscall, far cheaper than `ip addr` every 10 ms), one client
    /// thread asking the VIP over HTTP, and the checker adding up the milliseconds.
    fn start(tb: &Testbed) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let owners = Arc::new(AtomicU64::new(0));
        let served_by = Arc::new(AtomicU64::new(0));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut threads = Vec::new();
        for (i, node) in NODES.iter().enumerate() {
            let (ns, stop, owners) = (tb.ns(node), stop.clone(), owners.clone());
            threads.push(std::thread::spawn(move || {
                enter_netns(&ns);
                let vip: std::net::Ipv4Addr = VIP.parse().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if UdpSocket::bind((vip, 0)).is_ok() {
                        owners.fetch_or(1 << i, Ordering::Relaxed);
                    } else {
                        owners.fetch_and(!(1 << i), Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }));
        }
        {
            let (ns, stop, served_by) = (tb.ns("client"), stop.clone(), served_by.clone());
            threads.push(std::thread::spawn(move || {
                enter_netns(&ns);
                let addr: SocketAddr = format!("{VIP}:80").parse().unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let who = ask(addr).and_then(|b| NODES.iter().position(|n| *n == b.trim()));
                    served_by.store(who.map_or(0, |i| i as u64 + 1), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            }));
        }
        {
            let (stop, owners, served_by, tally) =
                (stop.clone(), owners.clone(), served_by.clone(), tally.clone());
            threads.push(std::thread::spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                    let now = Instant::now();
                    let dt = now.duration_since(last).as_millis() as u64;
                    last = now;
                    let n = owners.load(Ordering::Relaxed).count_ones();
                    let mut t = tally.lock().unwrap();
                    t.samples += 1;
                    match n {
                        0 => t.no_owner_ms += dt,
                        1 => {}
                        _ => t.two_owners_ms += dt,
                    }
                    if served_by.load(Ordering::Relaxed) > 0 {
                        t.served_ms += dt;
                    } else {
                        t.unserved_ms += dt;
                    }
                }
            }));
        }
        Watch { stop, owners, served_by, tally, threads }
    }

    fn owners(&self) -> Vec<&'static str> {
        let bits = self.owners.load(Ordering::Relaxed);
        NODES.iter().enumerate().filter(|(i, _)| bits & (1 << i) != 0).map(|(_, n)| *n).collect()
    }

    fn served_by(&self) -> Option<&'static str> {
        let v = self.served_by.load(Ordering::Relaxed) as usize;
        (v > 0).then(|| NODES[v - 1])
    }

    fn tally(&self) -> Tally {
        *self.tally.lock().unwrap()
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.0 GET of the VIP's page, bounded to ~0.5 s.
fn ask(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(300))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: vip\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string())
}

/// The switch port of each node: the testbed names them p0, p1, ... in the order hosts
/// were added (n1, n2, n3, then the client, whose cable is never cut).
fn port(i: usize) -> String {
    format!("p{i}")
}

/// Replaces the switch's ruleset by one dropping every frame from `a`'s port to `b`'s for
/// each (a, b) in `cuts`, in one nft transaction. The bridge forward hook sees flooded
/// frames (broadcast heartbeats, ARP) once per output port, so one-way cuts are exact.
fn apply_cuts(tb: &Testbed, cuts: &BTreeSet<(usize, usize)>) {
    let mut rules = String::from(
        "flush ruleset\ntable bridge halo_cut {\n  chain cut {\n    type filter hook forward priority 0; policy accept;\n",
    );
    for (a, b) in cuts {
        rules.push_str(&format!("    iifname \"{}\" oifname \"{}\" drop\n", port(*a), port(*b)));
    }
    rules.push_str("  }\n}\n");
    let mut child = std::process::Command::new("ip")
        .args(["netns", "exec", &tb.ns("sw"), "nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nft");
    child.stdin.take().unwrap().write_all(rules.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "nft -f: {}\n{rules}", String::from_utf8_lossy(&out.stderr));
}

struct Cluster {
    tb: Testbed,
}

impl Cluster {
    fn config(&self, node: &str) -> PathBuf {
        let log = self.tb.dir.join(format!("{node}.log"));
        let cf = format!(
            "keepalive 100ms\nwarntime 300ms\ndeadtime {DEADTIME_MS}ms\ninitdead 2\nbcast eth0\n\
             auto_failback on\nnode {}\nlogfile {}\nrealtime off\n",
            NODES.join(" "),
            log.display()
        );
        let dir = self.tb.write_config(node, &cf, AUTHKEYS).unwrap();
        std::fs::write(dir.join("haresources"), format!("n1 IPaddr2::{VIP}/16/eth0 web\n")).unwrap();
        halo::testbed::install_web(&dir, node).unwrap();
        dir
    }

    fn socket(&self, node: &str) -> PathBuf {
        self.tb.dir.join(format!("{node}.sock"))
    }

    fn log(&self, node: &str) -> String {
        std::fs::read_to_string(self.tb.dir.join(format!("{node}.log"))).unwrap_or_default()
            + &std::fs::read_to_string(self.tb.dir.join(format!("{node}.out"))).unwrap_or_default()
    }

    /// The last lines of every node's log, for a failure message.
    fn tails(&self) -> String {
        let mut s = String::new();
        for n in NODES {
            let log = self.log(n);
            let lines: Vec<&str> = log.lines().collect();
            s.push_str(&format!(
                "--- {n} (last 60 lines)\n{}\n",
                lines[lines.len().saturating_sub(60)..].join("\n")
            ));
        }
        s
    }

    fn all_active(&self) -> bool {
        NODES.iter().all(|a| {
            NODES.iter().all(|b| halo::testbed::node_state(&self.socket(a), b).as_deref() == Some("active"))
        })
    }
}

impl Drop for Cluster {
    /// Web servers outlive a killed halo: kill whatever is left in the hosts' namespaces.
    fn drop(&mut self) {
        for host in NODES.iter().chain(&["client"]) {
            let Ok(out) =
                std::process::Command::new("ip").args(["netns", "pids", &self.tb.ns(host)]).output()
            else {
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

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn random_partitions_heal_to_one_owner() {
    let Some(mut tb) = Testbed::for_test("pt") else { return };
    for (i, n) in NODES.iter().enumerate() {
        tb.add_host(n, &format!("10.79.0.{}/16", i + 1)).unwrap();
    }
    tb.add_host("client", "10.79.0.9/16").unwrap();
    let mut c = Cluster { tb };
    let seed = env_u64("HALO_PARTITION_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let secs = env_u64("HALO_PARTITION_SECS").unwrap_or(90);
    eprintln!("partition torture: seed {seed} (HALO_PARTITION_SEED={seed} replays), {secs} s");
    let mut rng = Prng(seed);

    let dirs: Vec<PathBuf> = NODES.iter().map(|n| c.config(n)).collect();
    for (n, d) in NODES.iter().zip(&dirs) {
        c.tb.start_halo(n, Path::new(HALO), d).unwrap();
    }
    apply_cuts(&c.tb, &BTreeSet::new());
    let mut watch = Watch::start(&c.tb);
    if wait_for(Duration::from_secs(20), || (c.all_active() && watch.served_by() == Some("n1")).then_some(()))
        .is_none()
    {
        panic!(
            "initial acquisition: served by {:?}, owners {:?}\n{}",
            watch.served_by(),
            watch.owners(),
            c.tails()
        );
    }
    let before = watch.tally();

    // The torture: every 0.2–2.5 s cut something (one direction between two nodes, both
    // directions, or a node from both others) or heal something (one direction, or all).
    let mut cuts: BTreeSet<(usize, usize)> = BTreeSet::new();
    let (mut n_cuts, mut n_heals, mut one_way) = (0u64, 0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200 + rng.below(2300)));
        let a = rng.below(3) as usize;
        let b = (a + 1 + rng.below(2) as usize) % 3;
        if cuts.is_empty() || rng.below(100) < 55 {
            match rng.below(3) {
                0 => {
                    cuts.insert((a, b));
                    one_way += 1;
                }
                1 => {
                    cuts.insert((a, b));
                    cuts.insert((b, a));
                }
                _ => {
                    for o in (0..3).filter(|o| *o != a) {
                        cuts.insert((a, o));
                        cuts.insert((o, a));
                    }
                }
            }
            n_cuts += 1;
        } else {
            if rng.below(3) == 0 {
                cuts.clear();
            } else {
                let pick = rng.below(cuts.len() as u64) as usize;
                let e = *cuts.iter().nth(pick).unwrap();
                cuts.remove(&e);
            }
            n_heals += 1;
        }
        apply_cuts(&c.tb, &cuts);
    }
    if !cuts.is_empty() {
        cuts.clear();
        n_heals += 1;
        apply_cuts(&c.tb, &cuts);
    }
    let healed = Instant::now();
    let during = watch.tally();

    // Settle: 3 × deadtime for the membership, then the agents (a stop and a start of the
    // web server, ARP). Settled: one owner, serving the client, everyone active for each
    // other, for 3 s in a row. The bound is generous for a loaded machine: not the point.
    let limit = Duration::from_millis(3 * DEADTIME_MS) + Duration::from_secs(30);
    let mut since: Option<Instant> = None;
    let settled = loop {
        let owners = watch.owners();
        let ok = owners.len() == 1 && watch.served_by() == Some(owners[0]) && c.all_active();
        match (ok, since) {
            (true, Some(t)) if t.elapsed() >= Duration::from_secs(3) => break Some(t),
            (true, None) => since = Some(Instant::now()),
            (false, _) => since = None,
            _ => {}
        }
        if healed.elapsed() > limit {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let t = |a: Tally, b: Tally| Tally {
        samples: a.samples - b.samples,
        two_owners_ms: a.two_owners_ms - b.two_owners_ms,
        no_owner_ms: a.no_owner_ms - b.no_owner_ms,
        served_ms: a.served_ms - b.served_ms,
        unserved_ms: a.unserved_ms - b.unserved_ms,
    };
    let d = t(during, before);
    eprintln!(
        "partition torture (seed {seed}, {secs} s): {n_cuts} cuts ({one_way} one-way), {n_heals} heals; \
         {} samples; two owners {} ms, no owner {} ms; client served {} ms, not served {} ms; \
         settled {:?} after the final heal",
        d.samples,
        d.two_owners_ms,
        d.no_owner_ms,
        d.served_ms,
        d.unserved_ms,
        settled.map(|t| t.duration_since(healed))
    );
    assert!(d.samples > secs * 50, "the checker sampled every ~10 ms ({} samples)", d.samples);
    if settled.is_none() {
        let neigh =
            c.tb.exec("client", &["ip", "neigh", "show"])
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let mut macs = String::new();
        for n in NODES {
            if let Ok(o) = c.tb.exec(n, &["cat", "/sys/class/net/eth0/address"]) {
                macs.push_str(&format!("{n} {} ", String::from_utf8_lossy(&o.stdout).trim()));
            }
            let g = halo::control::request(&c.socket(n), "status").map(|v| v["resources"]["groups"].clone());
            macs.push_str(&format!("groups {g:?}\n"));
        }
        panic!(
            "seed {seed}: not settled {limit:?} after the final heal: owners {:?}, client served by {:?}, \
             all active: {}\nclient neighbours: {neigh:?}\n{macs}{}",
            watch.owners(),
            watch.served_by(),
            c.all_active(),
            c.tails()
        );
    }
    eprintln!("settled on {:?} (auto_failback on: n1 expected when all are healthy)", watch.owners());
    watch.stop();

    for n in NODES {
        let st = halo::control::request(&c.socket(n), "status");
        assert!(st.is_ok(), "seed {seed}: {n} does not answer status: {st:?}\n{}", c.tails());
        let log = c.log(n);
        assert!(!log.contains("panicked"), "seed {seed}: {n} panicked\n{log}");
    }
}
