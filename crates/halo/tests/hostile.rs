//! Hostile input on the cluster's segment: two honest nodes and an attacker host on the same
//! bridge. The attacker first listens to the cluster (a UDP socket on port 694 receives the
//! broadcast heartbeats: captured valid packets), then for ~10 s sends at a high rate
//! forged packets (valid format, wrong key; an unknown key index), packets claiming to be
//! from a member with a signature that does not match, replays of the captured packets,
//! validly signed packets of an old generation, truncated, 64 KiB and random packets.
//!
//! Nothing without a valid signature may be accepted: membership and placement stay as
//! they were, the honest nodes never see each other other than `active` (sampled through
//! the storm), replays are dropped, everything is counted by reason in status "dropped",
//! and the drop warnings are rate limited. The control socket refuses a non-root user.
use halo::testbed::{node_state, wait_for, Testbed};
use halo_wire::{AuthMethod, Keyring, Message};
use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const SECRET: &str = "hostile-secret";
const VIP: &str = "10.80.0.100";
const BCAST: &str = "10.80.255.255:694";

fn good_key() -> Keyring {
    Keyring::new(2, vec![(2, AuthMethod::Sha256, SECRET.as_bytes().to_vec())])
}

/// splitmix64, for the random packets and the mix.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{ns}")).expect("netns file");
    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// The packets of one kind the attacker sends, and what it sent of them.
struct Kind {
    name: &'static str,
    packets: Vec<Vec<u8>>,
    sent: u64,
}

/// What the attacker sends, built from what it captured.
fn arsenal(captured: &[Vec<u8>], rng: &mut Prng) -> Vec<Kind> {
    let from = |node: &str| -> Vec<&Vec<u8>> {
        captured
            .iter()
            .filter(|p| halo_wire::decode_unverified(p).is_ok_and(|m| m.get("src") == Some(node)))
            .collect()
    };
    let n2 = from("n2");
    assert!(!n2.is_empty() && !from("n1").is_empty(), "the attacker captured packets of both nodes");
    let template: Message = n2
        .iter()
        .filter_map(|p| halo_wire::decode_unverified(p).ok())
        .find(|m| m.kind() == Some("status"))
        .expect("a captured status of n2");
    let seq = template.get_hex("seq").unwrap_or(1);
    let hg = template.get_hex("hg").unwrap_or(1);
    let wrong = Keyring::new(2, vec![(2, AuthMethod::Sha256, b"not-the-secret".to_vec())]);
    let unknown = Keyring::new(7, vec![(7, AuthMethod::Sha1, b"whatever".to_vec())]);

    // A status of n2 saying it is dead, ahead in sequence: harmful if it were accepted.
    let mut dead = template.clone();
    dead.set("st", "dead");
    let mut forged = Vec::new();
    for i in 1..=20u64 {
        dead.set("seq", format!("{:x}", seq + 10 * i));
        forged.push(halo_wire::encode(&dead, &wrong));
    }
    // A shutdown notice "from n2".
    let mut bye = template.clone();
    bye.set("t", "shutdone");
    bye.set("seq", format!("{:x}", seq + 5));
    forged.push(halo_wire::encode(&bye, &wrong));
    let unknown_key = vec![halo_wire::encode(&dead, &unknown), halo_wire::encode(&bye, &unknown)];

    // Captured packets of members with one byte of the signed text changed.
    let flipped: Vec<Vec<u8>> = captured
        .iter()
        .filter_map(|p| {
            let i = p.windows(4).position(|w| w == b"seq=")? + 4;
            let mut p = p.clone();
            p[i] = if p[i] == b'1' { b'2' } else { b'1' };
            Some(p)
        })
        .collect();

    // Validly signed, but of n2's previous generation (a capture from before its restart).
    let mut old = template.clone();
    old.set("hg", format!("{:x}", hg.saturating_sub(1).max(1)));
    let old_gen: Vec<Vec<u8>> = (1..=20u64)
        .map(|i| {
            old.set("seq", format!("{:x}", seq + 100 + i));
            halo_wire::encode(&old, &good_key())
        })
        .collect();
    assert!(hg > 1, "n2's generation is past 1 (so that an older one exists): {hg}");

    let truncated: Vec<Vec<u8>> = captured
        .iter()
        .flat_map(|p| {
            let cut = 1 + (rng.next() as usize) % (p.len() - 1);
            [p[..cut].to_vec(), p[..p.len() - 1].to_vec()]
        })
        .collect();
    let mut big_netstring = b"###\n65000:(0)t=".to_vec();
    big_netstring.extend(std::iter::repeat_n(b'A', 65000 - big_netstring.len()));
    let oversized = vec![rng.bytes(65000), big_netstring];
    let random: Vec<Vec<u8>> = (0..64).map(|i| rng.bytes(1 + (i * 37) % 1400)).collect();

    vec![
        Kind { name: "forged (wrong key)", packets: forged, sent: 0 },
        Kind { name: "unknown key index", packets: unknown_key, sent: 0 },
        Kind { name: "member, bad signature", packets: flipped, sent: 0 },
        Kind { name: "old generation", packets: old_gen, sent: 0 },
        Kind { name: "replayed capture", packets: captured.to_vec(), sent: 0 },
        Kind { name: "truncated", packets: truncated, sent: 0 },
        Kind { name: "oversized (64 KiB)", packets: oversized, sent: 0 },
        Kind { name: "random", packets: random, sent: 0 },
    ]
}

/// The attacker, in its own namespace: captures the cluster's broadcasts for `listen`,
/// then sends `rate` packets a second for `storm`, one 64 KiB packet in 200.
fn attack(ns: String, listen: Duration, storm: Duration, rate: u64) -> Vec<Kind> {
    enter_netns(&ns);
    let sock = UdpSocket::bind("0.0.0.0:694").expect("bind 694");
    sock.set_broadcast(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut captured = Vec::new();
    let end = Instant::now() + listen;
    let mut buf = vec![0u8; 70000];
    while Instant::now() < end {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            captured.push(buf[..n].to_vec());
        }
    }
    let mut rng = Prng(0x6a09_e667_f3bc_c908);
    let mut kinds = arsenal(&captured, &mut rng);
    let to: SocketAddr = BCAST.parse().unwrap();
    let start = Instant::now();
    let mut i = 0u64;
    while start.elapsed() < storm {
        let k = if i % 200 == 199 {
            6
        } else {
            let k = (rng.next() % 7) as usize;
            if k >= 6 {
                7
            } else {
                k
            }
        };
        let kind = &mut kinds[k];
        let p = &kind.packets[(rng.next() as usize) % kind.packets.len()];
        if sock.send_to(p, to).is_ok() {
            kind.sent += 1;
        }
        i += 1;
        let due = Duration::from_micros(i * 1_000_000 / rate);
        let el = start.elapsed();
        if due > el + Duration::from_millis(1) {
            std::thread::sleep(due - el);
        }
    }
    kinds
}

struct Cluster {
    tb: Testbed,
}

impl Cluster {
    fn socket(&self, node: &str) -> PathBuf {
        self.tb.dir.join(format!("{node}.sock"))
    }

    fn log(&self, node: &str) -> String {
        self.tb.node_log(node)
    }

    fn status(&self, node: &str) -> serde_json::Value {
        halo::control::request(&self.socket(node), "status").unwrap_or_else(|e| panic!("{node} status: {e}"))
    }

    fn start(&mut self, node: &str) {
        let log = self.tb.dir.join(format!("{node}.log"));
        let cf = format!(
            "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nudpport 694\nbcast eth0\n\
             auto_failback on\nnode n1 n2\nlogfile {}\nrealtime off\n",
            log.display()
        );
        let dir = self.tb.write_config(node, &cf, &format!("auth 2\n2 sha256 {SECRET}\n")).unwrap();
        std::fs::write(dir.join("haresources"), format!("n1 IPaddr::{VIP}/16/eth0:0\n")).unwrap();
        self.tb.start_halo(node, Path::new(HALO), &dir).unwrap();
    }
}

/// UDP receive-buffer overflows in a namespace (`RcvbufErrors` of /proc/net/snmp): packets
/// the kernel dropped before halo could count them.
/// What the kernel dropped before halo could read it, as counters that only grow (compare two
/// readings): per namespace (/proc/net/snmp there) a full receive buffer (Udp RcvbufErrors),
/// the IP layer's discards and failed reassemblies (Ip InDiscards, ReasmFails: the 64 KiB
/// packets arrive in fragments); for the host as a whole the packets the full backlog queues
/// of the CPUs dropped (/proc/net/softnet_stat, column 2: not kept per namespace, and the
/// veth pairs of the testbed pass every packet through them).
#[derive(Clone, Copy, Debug)]
struct KernelDrops {
    rcvbuf: u64,
    ip: u64,
    backlog: u64,
}

impl KernelDrops {
    fn read(tb: &Testbed, host: &str) -> KernelDrops {
        let out = tb.exec(host, &["cat", "/proc/net/snmp"]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let field = |proto: &str, name: &str| -> u64 {
            let rows: Vec<&str> = text.lines().filter(|l| l.starts_with(proto)).collect();
            let (names, values) = (rows[0].split_whitespace(), rows[1].split_whitespace());
            names.zip(values).find(|(n, _)| *n == name).and_then(|(_, v)| v.parse().ok()).unwrap_or(0)
        };
        let softnet = std::fs::read_to_string("/proc/net/softnet_stat").unwrap_or_default();
        let backlog = softnet
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1).and_then(|v| u64::from_str_radix(v, 16).ok()))
            .sum();
        KernelDrops {
            rcvbuf: field("Udp:", "RcvbufErrors"),
            ip: field("Ip:", "InDiscards") + field("Ip:", "ReasmFails"),
            backlog,
        }
    }

    /// The drops since `before`, all kinds together.
    fn since(self, before: KernelDrops) -> u64 {
        (self.rcvbuf - before.rcvbuf) + (self.ip - before.ip) + (self.backlog - before.backlog)
    }
}

fn dropped(st: &serde_json::Value) -> BTreeMap<String, u64> {
    st["dropped"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

fn peer<'a>(st: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    st["nodes"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["name"] == name))
        .unwrap_or(&serde_json::Value::Null)
}

fn drop_log_lines(log: &str) -> usize {
    log.lines().filter(|l| l.contains("dropped") || l.contains("replay attack")).count()
}

#[test]
fn hostile_packets_are_dropped_counted_and_harmless() {
    let Some(mut tb) = Testbed::for_test("ho") else { return };
    tb.add_host("n1", "10.80.0.1/16").unwrap();
    tb.add_host("n2", "10.80.0.2/16").unwrap();
    tb.add_host("n3", "10.80.0.3/16").unwrap();
    let mut c = Cluster { tb };
    // n2 has run before (Heartbeat's "%15lu\n" generation file): its generation has a
    // predecessor whose packets can be replayed.
    let state = c.tb.dir.join("n2").join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("hb_generation"), format!("{:>15}\n", 41)).unwrap();
    c.start("n2");
    c.start("n1");
    let ok = wait_for(Duration::from_secs(15), || {
        let both = ["n1", "n2"]
            .iter()
            .all(|a| ["n1", "n2"].iter().all(|b| node_state(&c.socket(a), b).as_deref() == Some("active")));
        let held = halo::control::request(&c.socket("n1"), "status")
            .is_ok_and(|st| st["resources"]["groups"][0]["state"] == "running");
        (both && held).then_some(())
    });
    assert!(ok.is_some(), "cluster up\n{}\n{}", c.log("n1"), c.log("n2"));

    let rate: u64 = std::env::var("HALO_HOSTILE_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(4000);
    let storm = Duration::from_secs(10);
    let listen = Duration::from_secs(2);
    let before = [c.status("n1"), c.status("n2")];
    let (log1, log2) = (drop_log_lines(&c.log("n1")), drop_log_lines(&c.log("n2")));
    let kd0 = [KernelDrops::read(&c.tb, "n1"), KernelDrops::read(&c.tb, "n2")];
    let ns = c.tb.ns("n3");
    let attacker = std::thread::spawn(move || attack(ns, listen, storm, rate));

    // Through the capture and the storm: both honest nodes see each other active, n1
    // holds the group for both, and both answer their control socket.
    let mut samples = 0u32;
    let mut bad: Vec<String> = Vec::new();
    let mut slowest = Duration::ZERO;
    while !attacker.is_finished() {
        let t = Instant::now();
        let st = [
            halo::control::request(&c.socket("n1"), "status"),
            halo::control::request(&c.socket("n2"), "status"),
        ];
        slowest = slowest.max(t.elapsed());
        samples += 1;
        for (i, (me, other)) in [("n1", "n2"), ("n2", "n1")].iter().enumerate() {
            match &st[i] {
                Ok(v) => {
                    if peer(v, other)["state"] != "active" {
                        bad.push(format!("{me} sees {other} {}", peer(v, other)["state"]));
                    }
                    if v["resources"]["groups"][0]["holders"] != serde_json::json!(["n1"]) {
                        bad.push(format!("{me}: holders {}", v["resources"]["groups"][0]["holders"]));
                    }
                }
                Err(e) => bad.push(format!("{me} did not answer: {e}")),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let kinds = attacker.join().expect("attacker");
    std::thread::sleep(Duration::from_millis(300));
    let after = [c.status("n1"), c.status("n2")];
    let kd = [KernelDrops::read(&c.tb, "n1"), KernelDrops::read(&c.tb, "n2")];
    let rcv = [kd[0].since(kd0[0]), kd[1].since(kd0[1])];

    let total: u64 = kinds.iter().map(|k| k.sent).sum();
    eprintln!("hostile: {total} packets in {storm:?} (target {rate}/s):");
    for k in &kinds {
        eprintln!("  {:>22}: {} sent ({} distinct)", k.name, k.sent, k.packets.len());
    }
    let sent =
        |names: &[&str]| -> u64 { kinds.iter().filter(|k| names.contains(&k.name)).map(|k| k.sent).sum() };
    let mut counted = [0u64; 2];
    for (i, node) in ["n1", "n2"].iter().enumerate() {
        let (b, a) = (dropped(&before[i]), dropped(&after[i]));
        let delta: BTreeMap<&str, u64> = a
            .iter()
            .map(|(k, v)| (k.as_str(), v - b.get(k).copied().unwrap_or(0)))
            .filter(|(_, v)| *v > 0)
            .collect();
        counted[i] = delta.values().sum();
        let other = if i == 0 { "n2" } else { "n1" };
        let late = peer(&after[i], other)["late_heartbeats"].as_u64().unwrap_or(0)
            - peer(&before[i], other)["late_heartbeats"].as_u64().unwrap_or(0);
        eprintln!(
            "  {node}: dropped {delta:?} (total {}), kernel drops {} (rcvbuf {}, ip {}, backlog {}), \
             late heartbeats of {other} {late}, max_lateness_ms {}, lost_packets of {other} {}",
            counted[i],
            rcv[i],
            kd[i].rcvbuf - kd0[i].rcvbuf,
            kd[i].ip - kd0[i].ip,
            kd[i].backlog - kd0[i].backlog,
            after[i]["max_lateness_ms"],
            peer(&after[i], other)["lost_packets"]
        );
        for reason in ["bad_auth", "unknown_key", "malformed", "replay"] {
            assert!(
                delta.get(reason).copied().unwrap_or(0) > 0 || (reason == "replay" && i == 1),
                "{node}: nothing counted as {reason}: {delta:?}"
            );
        }
        // Every replayed capture is counted: as a duplicate (a copy of a message already
        // accepted, sequenced or not), as stale (older than the sequence window, or for an
        // unsequenced NS_* message older than the sender's newest message), or as our own.
        let replays: u64 = ["duplicate", "stale_seq", "own", "old_status", "stale_ns"]
            .iter()
            .filter_map(|r| delta.get(r))
            .sum();
        let replayed = sent(&["replayed capture"]);
        assert!(
            replays + rcv[i] >= replayed,
            "{node}: {replays} counted as replays + {} kernel drops < {replayed} replayed captures: {delta:?}",
            rcv[i]
        );
        // Each kind under its own reason: no more than was sent of it (nothing honest fails
        // authentication), no less but for what the kernel dropped before halo read it.
        let mut expect = vec![
            ("bad_auth", sent(&["forged (wrong key)", "member, bad signature"])),
            ("unknown_key", sent(&["unknown key index"])),
            ("malformed", sent(&["truncated", "oversized (64 KiB)", "random"])),
        ];
        if i == 0 {
            expect.push(("replay", sent(&["old generation"])));
        }
        for (reason, n) in expect {
            let got = delta.get(reason).copied().unwrap_or(0);
            assert!(
                got <= n && got + rcv[i] >= n,
                "{node}: {got} counted as {reason}, {n} sent, {} kernel drops",
                rcv[i]
            );
        }
        // Each hostile packet is counted, but for what the kernel itself dropped.
        assert!(
            counted[i] + rcv[i] >= total,
            "{node}: {} counted + {} kernel drops of {total} sent",
            counted[i],
            rcv[i]
        );
        assert!(late <= 20, "{node}: {late} late heartbeats of {other} during the storm");
    }
    eprintln!("  {samples} status samples of both nodes, slowest answer {slowest:?}; violations: {bad:?}");
    assert!(samples >= 50, "sampled through the storm: {samples}");
    assert!(bad.is_empty(), "membership or placement changed under attack: {bad:?}\n{}", c.log("n1"));

    // Nothing forged was taken for n2: the same generation, never dead, never restarted.
    for (i, (me, other)) in [("n1", "n2"), ("n2", "n1")].iter().enumerate() {
        assert_eq!(peer(&after[i], other)["generation"], peer(&before[i], other)["generation"], "{me}");
        assert_eq!(after[i]["generation"], before[i]["generation"], "{me}");
        let log = c.log(me);
        for never in ["is dead", "Heartbeat restart", "shutdown notice", "panicked"] {
            assert!(!log.contains(never), "{me} logged '{never}'\n{log}");
        }
    }
    let lines = [drop_log_lines(&c.log("n1")) - log1, drop_log_lines(&c.log("n2")) - log2];
    eprintln!("  drop warnings logged during the storm: n1 {}, n2 {}", lines[0], lines[1]);
    assert!(lines.iter().all(|l| *l < 50), "drop warnings are rate limited: {lines:?}");
    assert!(lines[0] > 0, "drops are logged at all");
}

/// The control socket is root's (mode 0600): `halo status` as `nobody` is refused.
#[test]
fn control_socket_refuses_a_non_root_user() {
    let Some(mut tb) = Testbed::for_test("hs") else { return };
    tb.add_host("n1", "10.81.0.1/16").unwrap();
    let mut c = Cluster { tb };
    c.start("n1");
    let sock = c.socket("n1");
    assert!(
        wait_for(Duration::from_secs(10), || halo::control::request(&sock, "status").ok()).is_some(),
        "n1 answers root\n{}",
        c.log("n1")
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
    let (ok, err) = status_as_nobody(&sock, "nogroup");
    assert!(!ok, "nobody got an answer");
    assert!(err.contains("ermission denied"), "{err}");
    eprintln!("halo status as nobody: {}", err.trim());
}

/// `halo status` as `nobody` with `gid` as its only group: (success, stderr).
fn status_as_nobody(sock: &Path, gid: &str) -> (bool, String) {
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=nobody", &format!("--regid={gid}"), "--clear-groups", "--"])
        .arg(HALO)
        .arg("--socket")
        .arg(sock)
        .arg("status")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `halo run --socket-group nogroup`: the socket is the group's with mode 0660; a member
/// gets an answer, a user outside the group is refused. An unknown group stops the start.
#[test]
fn socket_group_lets_its_members_in() {
    let Some(mut tb) = Testbed::for_test("sg") else { return };
    tb.add_host("n1", "10.82.0.1/16").unwrap();
    let mut c = Cluster { tb };
    let log = c.tb.dir.join("n1.log");
    let cf = format!(
        "keepalive 100ms\nwarntime 500ms\ndeadtime 1\ninitdead 3\nbcast eth0\nnode n1\nlogfile {}\nrealtime off\n",
        log.display()
    );
    let dir = c.tb.write_config("n1", &cf, &format!("auth 2\n2 sha256 {SECRET}\n")).unwrap();
    let sock = c.socket("n1");
    let state = c.tb.dir.join("n1").join("state");
    let args = |group: &str| -> Vec<String> {
        [
            "--socket",
            &sock.to_string_lossy(),
            "run",
            "--config-dir",
            &dir.to_string_lossy(),
            "--node",
            "n1",
            "--state-dir",
            &state.to_string_lossy(),
            "--socket-group",
            group,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    let bad = std::process::Command::new("ip")
        .args(["netns", "exec", &c.tb.ns("n1"), HALO])
        .args(args("no-such-group-here"))
        .output()
        .unwrap();
    assert!(!bad.status.success(), "an unknown socket group must stop the start");
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("no-such-group-here"), "{err}");
    assert!(!sock.exists(), "no socket left behind");

    let a = args("nogroup");
    let a: Vec<&str> = a.iter().map(|s| s.as_str()).collect();
    let out = c.tb.dir.join("n1.out");
    c.tb.spawn("n1", Path::new(HALO), &a, &out).unwrap();
    assert!(
        wait_for(Duration::from_secs(10), || halo::control::request(&sock, "status").ok()).is_some(),
        "n1 answers root\n{}",
        c.log("n1")
    );
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(&sock).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "socket mode");
    assert_eq!(meta.gid(), 65534, "socket group (nogroup)");
    let (ok, err) = status_as_nobody(&sock, "nogroup");
    assert!(ok, "a member of the socket group is answered: {err}");
    let (ok, err) = status_as_nobody(&sock, "daemon");
    assert!(!ok && err.contains("ermission denied"), "outside the group: refused: {err}");
}
