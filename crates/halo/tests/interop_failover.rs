//! Mixed-cluster failover: a real Heartbeat 3.0.6 node (Debian's package, in its own mount
//! namespace, see scripts/hb-node.sh) and a halo node share one haresources group — a VIP
//! (`IPaddr2`: Debian's /etc/ha.d/resource.d/IPaddr2 on the Heartbeat side, halo's built-in
//! on the other) and a Heartbeat-class `web` script serving a page that names the node. A
//! client namespace fetches the page through the VIP, so "who holds the group" is what the
//! network sees. The group must move between the two implementations through Heartbeat's
//! own protocol (spec §3.13): `starting`/`resource`, `shutdone`, deadtime + `mach_down`,
//! the three-step `ask_resources` (auto failback and standby) and `hb_takeover`.
//!
//! A sampler reads both nodes' addresses every 50 ms for the whole test: the VIP may be on
//! both nodes only while a cable is cut (and until the healed partition is resolved).
//! Needs root and the `heartbeat` package; fails when HALO_REQUIRE_ROOT=1 and either is missing.
use halo::testbed::{is_root, node_state, wait_for, Testbed};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const HB_BIN: &str = "/usr/libexec/heartbeat/heartbeat";
const AUTHKEYS: &str = "auth 1\n1 sha1 interop-failover-key\n";
const TIMING: &str = "keepalive 500ms\nwarntime 2\ndeadtime 3\ninitdead 6\nudpport 694\n";
const HB_IP: &str = "10.79.0.1";
const HALO_IP: &str = "10.79.0.2";
const VIP: &str = "10.79.0.100";

fn hb_node() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/hb-node.sh")
}

fn prerequisites() -> bool {
    let required = std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1");
    let missing = if !is_root() {
        Some("root")
    } else if !Path::new(HB_BIN).exists() {
        Some("the Debian heartbeat package (apt-get install heartbeat)")
    } else if !Path::new("/etc/ha.d/resource.d/IPaddr2").exists() {
        Some("Debian's IPaddr2 wrapper (apt-get install heartbeat resource-agents)")
    } else {
        None
    };
    match missing {
        Some(m) if required => panic!("interop failover test needs {m} and HALO_REQUIRE_ROOT=1"),
        Some(m) => {
            eprintln!("skipping: needs {m}");
            false
        }
        None => true,
    }
}

fn install_web(dir: &Path, node: &str) {
    halo::testbed::install_web(dir, node).unwrap();
}

/// Who had the VIP at one sample.
#[derive(Default)]
struct Samples {
    /// The phase the test is in (set by the test, read by the sampler).
    phase: String,
    /// Phases in which both nodes are allowed to hold the VIP (a cable is or was cut).
    overlap_allowed: bool,
    /// Counts the phases: a sample whose reads straddle a change of phase is told apart.
    phase_no: u64,
    /// (phase, when both were first seen holding it, last seen, samples).
    doubles: Vec<(String, Instant, Instant, u32)>,
    in_double: bool,
    samples: u64,
}

struct Mixed {
    tb: Testbed,
    hb_work: PathBuf,
    halo_dir: PathBuf,
    halo_pid: Option<u32>,
    sock: PathBuf,
    samples: Arc<Mutex<Samples>>,
    stop_sampler: Arc<AtomicBool>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

fn vip_on(ns: &str) -> bool {
    Command::new("ip")
        .args(["-n", ns, "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {VIP}/")))
        .unwrap_or(false)
}

impl Mixed {
    /// A bridge with `hb` (Heartbeat), `halo` and `client`; the haresources line names
    /// `preferred`; both sides run with `auto_failback failback`.
    fn new(tag: &str, preferred: &str, failback: &str) -> Option<Mixed> {
        if !prerequisites() {
            return None;
        }
        let mut tb = Testbed::for_test(tag)?;
        tb.add_host("hb", &format!("{HB_IP}/24")).unwrap();
        tb.add_host("halo", &format!("{HALO_IP}/24")).unwrap();
        tb.add_host("client", "10.79.0.9/24").unwrap();
        let haresources = format!("{preferred} IPaddr2::{VIP}/24/eth0 web\n");

        let hb_work = tb.dir.join("hbwork");
        let had = hb_work.join("ha.d");
        std::fs::create_dir_all(&had).unwrap();
        let hb_cf = format!(
            "{TIMING}ucast eth0 {HALO_IP}\nnode hb halo\nlogfile {}\ndebugfile {}\nrealtime off\nauto_failback {failback}\n",
            hb_work.join("ha-log").display(),
            hb_work.join("ha-debug").display()
        );
        std::fs::write(had.join("ha.cf"), hb_cf).unwrap();
        std::fs::write(had.join("authkeys"), AUTHKEYS).unwrap();
        std::fs::write(had.join("nodeinfo"), "hb\n").unwrap();
        std::fs::write(had.join("haresources"), &haresources).unwrap();
        install_web(&had, "hb");

        let halo_cf = format!(
            "{TIMING}ucast eth0 {HB_IP}\nnode hb halo\nlogfile {}\ndebugfile {}\nauto_failback {failback}\nrealtime off\n",
            tb.dir.join("halo.log").display(),
            tb.dir.join("halo.debug").display()
        );
        let halo_dir = tb.write_config("halo", &halo_cf, AUTHKEYS).unwrap();
        std::fs::write(halo_dir.join("haresources"), &haresources).unwrap();
        install_web(&halo_dir, "halo");
        let sock = tb.dir.join("halo.sock");

        let samples = Arc::new(Mutex::new(Samples { phase: "start".into(), ..Default::default() }));
        let stop_sampler = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (samples, stop) = (samples.clone(), stop_sampler.clone());
            let (hb_ns, halo_ns) = (tb.ns("hb"), tb.ns("halo"));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    // The phase the reads start in is the sample's: a double holding seen while
                    // a cable was cut is not blamed on the phase the test moved on to meanwhile.
                    let (phase, overlap_allowed, phase_no) = {
                        let s = samples.lock().unwrap();
                        (s.phase.clone(), s.overlap_allowed, s.phase_no)
                    };
                    // Two reads are not one instant: Heartbeat's copy is read again after
                    // halo's, so a handover from Heartbeat to halo between the first two reads
                    // is not taken for a double holding (a handover the other way cannot
                    // show as one in this order).
                    let both = vip_on(&hb_ns) && vip_on(&halo_ns) && vip_on(&hb_ns);
                    let now = Instant::now();
                    let mut s = samples.lock().unwrap();
                    s.samples += 1;
                    // The phase changed during the reads: this sample is the old phase's last,
                    // and the next one (in the new phase) starts a record of its own.
                    let straddled = s.phase_no != phase_no;
                    if both {
                        if s.in_double && !straddled {
                            if let Some(d) = s.doubles.last_mut() {
                                d.2 = now;
                                d.3 += 1;
                            }
                        } else {
                            let phase = if overlap_allowed { format!("{phase} (cable cut)") } else { phase };
                            s.doubles.push((phase, now, now, 1));
                            s.in_double = !straddled;
                        }
                    } else {
                        s.in_double = false;
                    }
                    drop(s);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Some(Mixed {
            tb,
            hb_work,
            halo_dir,
            halo_pid: None,
            sock,
            samples,
            stop_sampler,
            sampler: Some(sampler),
        })
    }

    fn phase(&self, name: &str, overlap_allowed: bool) {
        eprintln!("=== {name}");
        let mut s = self.samples.lock().unwrap();
        s.phase = name.to_string();
        s.overlap_allowed = overlap_allowed;
        s.phase_no += 1;
        s.in_double = false;
    }

    fn hb(&self, verb: &str, extra: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(hb_node())
            .args([verb, &self.tb.ns("hb"), &self.hb_work.to_string_lossy()])
            .args(extra)
            .env("HB_START_WAIT", "10")
            .output()
            .expect("hb-node.sh")
    }

    fn hb_start(&self) {
        let out = self.hb("start", &[]);
        assert!(
            out.status.success(),
            "hb-node.sh start: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.hb_log()
        );
    }

    /// Heartbeat's graceful stop (SIGTERM: release, `shutdone`).
    fn hb_stop(&self) {
        let out = self.hb("stop", &[]);
        assert!(out.status.success(), "hb-node.sh stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn cl_status(&self, args: &[&str]) -> String {
        let out = self.hb("cl_status", args);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn halo_start(&mut self) {
        let (pid, _) = self.tb.start_halo("halo", Path::new(HALO), &self.halo_dir).unwrap();
        self.halo_pid = Some(pid);
    }

    fn halo_stop(&mut self) {
        let pid = self.halo_pid.take().expect("halo runs");
        self.tb.stop(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// The halo CLI, as an operator types it.
    fn halo_cli(&self, args: &[&str]) -> String {
        let out = Command::new(HALO).arg("--socket").arg(&self.sock).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "halo {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    fn hb_log(&self) -> String {
        std::fs::read_to_string(self.hb_work.join("ha-log")).unwrap_or_default()
    }

    fn halo_log(&self) -> String {
        std::fs::read_to_string(self.tb.dir.join("halo.log")).unwrap_or_default()
            + &std::fs::read_to_string(self.tb.dir.join("halo.out")).unwrap_or_default()
    }

    fn has_vip(&self, node: &str) -> bool {
        vip_on(&self.tb.ns(node))
    }

    /// The page the client gets through the VIP (None: no answer within 1 s).
    fn fetch(&self) -> Option<String> {
        self.tb.fetch("client", &format!("http://{VIP}/"), Duration::from_secs(1))
    }

    fn dump(&self) -> String {
        format!(
            "hb holds VIP: {}, halo holds VIP: {}\n--- heartbeat ha-log\n{}\n--- halo log\n{}",
            self.has_vip("hb"),
            self.has_vip("halo"),
            self.hb_log(),
            self.halo_log()
        )
    }

    /// Waits until the client is served by `node` and the other node does not hold the VIP.
    fn served_by(&self, node: &str, within: Duration, what: &str) {
        let other = if node == "hb" { "halo" } else { "hb" };
        let ok = wait_for(within, || {
            (self.fetch().as_deref() == Some(node) && self.has_vip(node) && !self.has_vip(other))
                .then_some(())
        });
        if ok.is_none() {
            panic!(
                "{what}: the client was not served by {node} alone within {within:?} (got {:?})\n{}",
                self.fetch(),
                self.dump()
            );
        }
        eprintln!("    {what}: served by {node}");
    }

    fn both_active(&self, within: Duration) {
        let ok = wait_for(within, || {
            (node_state(&self.sock, "hb").as_deref() == Some("active")
                && self.cl_status(&["nodestatus", "halo"]) == "active")
                .then_some(())
        });
        if ok.is_none() {
            panic!(
                "halo and heartbeat are not active for each other: halo says hb {:?}, cl_status says halo {:?}\n{}",
                node_state(&self.sock, "hb"),
                self.cl_status(&["nodestatus", "halo"]),
                self.dump()
            );
        }
    }

    /// Stops the sampler and fails if both nodes held the VIP outside a cable cut.
    fn check_no_double(&mut self) {
        self.stop_sampler.store(true, Ordering::Relaxed);
        if let Some(h) = self.sampler.take() {
            let _ = h.join();
        }
        let s = self.samples.lock().unwrap();
        let mut bad = Vec::new();
        for (phase, first, last, n) in &s.doubles {
            let line = format!("{phase}: both held the VIP for {n} sample(s) over {:?}", *last - *first);
            eprintln!("    overlap: {line}");
            if !phase.ends_with("(cable cut)") {
                bad.push(line);
            }
        }
        eprintln!("    {} samples of both nodes' addresses", s.samples);
        assert!(s.samples > 100, "the sampler ran");
        if !bad.is_empty() {
            panic!("both nodes held the VIP while their link was up:\n{}\n{}", bad.join("\n"), self.dump());
        }
    }
}

impl Drop for Mixed {
    fn drop(&mut self) {
        self.stop_sampler.store(true, Ordering::Relaxed);
        let _ = self.hb("stop", &[]);
        // The web servers the scripts left behind (halo stopped by SIGKILL in Testbed's drop).
        for dir in [self.hb_work.join("ha.d"), self.halo_dir.clone()] {
            if let Ok(pid) = std::fs::read_to_string(dir.join("web.pid")) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
    }
}

/// The group prefers the Heartbeat node: it fails over to halo (graceful stop, then a cable
/// cut) and comes back to Heartbeat through the auto-failback `ask_resources` exchange.
#[test]
fn heartbeat_preferred_group_fails_over_to_halo_and_back() {
    let Some(mut c) = Mixed::new("hfh", "hb", "on") else { return };
    c.phase("initial acquisition", false);
    c.hb_start();
    c.halo_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("hb", Duration::from_secs(40), "initial acquisition");
    let st = halo::control::request(&c.sock, "status").unwrap();
    assert_eq!(st["resources"]["groups"][0]["holders"], serde_json::json!(["hb"]), "{st}");
    // (cl_status rscstatus is no witness: Heartbeat sets its `local` bit in
    // req_our_resources whether or not it runs anything.)

    // Heartbeat stops gracefully: it releases, says shutdone, halo takes over at once.
    c.phase("heartbeat stops (shutdone)", false);
    c.hb_stop();
    c.served_by("halo", Duration::from_secs(15), "takeover after heartbeat's shutdone");
    assert!(c.halo_log().contains("Received shutdown notice from 'hb'."), "{}", c.dump());

    // Heartbeat returns: auto_failback on, halo hands the group back (ask_resources).
    c.phase("heartbeat returns (auto failback)", false);
    c.hb_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("hb", Duration::from_secs(40), "auto failback to heartbeat");
    assert!(c.hb_log().contains("ask_resources") || c.hb_log().contains("standby"), "{}", c.dump());

    // Heartbeat loses its cable: halo takes over after deadtime; both hold it while cut.
    std::thread::sleep(Duration::from_secs(3));
    c.phase("heartbeat's cable cut", true);
    c.tb.cable("hb", false).unwrap();
    let ok = wait_for(Duration::from_secs(20), || (c.fetch().as_deref() == Some("halo")).then_some(()));
    assert!(ok.is_some(), "halo serves while heartbeat is cut off\n{}", c.dump());
    assert!(c.halo_log().contains("node hb: is dead"), "{}", c.dump());

    // The cable returns: the healed partition resolves to heartbeat alone.
    c.phase("heartbeat's cable back", true);
    c.tb.cable("hb", true).unwrap();
    c.served_by("hb", Duration::from_secs(60), "back to heartbeat after the heal");
    c.phase("settled after the heal", false);
    c.both_active(Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(3));
    assert!(c.has_vip("hb") && !c.has_vip("halo"), "{}", c.dump());
    c.check_no_double();
}

/// The group prefers the halo node: it fails over to Heartbeat (graceful stop of halo, then
/// a cable cut) and comes back; `halo standby` hands it to Heartbeat and `halo takeover`
/// brings it back (`hb_takeover` → Heartbeat's hb_standby).
#[test]
fn halo_preferred_group_fails_over_to_heartbeat_and_back_and_moves_on_standby_takeover() {
    let Some(mut c) = Mixed::new("hfl", "halo", "on") else { return };
    c.phase("initial acquisition", false);
    c.hb_start();
    c.halo_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("halo", Duration::from_secs(40), "initial acquisition");

    // Operator moves: standby hands the group to Heartbeat, takeover brings it back.
    std::thread::sleep(Duration::from_secs(2));
    c.phase("halo standby", false);
    let r = c.halo_cli(&["standby", "all"]);
    eprintln!("    halo standby: {}", r.trim());
    c.served_by("hb", Duration::from_secs(30), "halo standby");
    std::thread::sleep(Duration::from_secs(2));
    c.phase("halo takeover", false);
    let r = c.halo_cli(&["takeover", "all"]);
    eprintln!("    halo takeover: {}", r.trim());
    c.served_by("halo", Duration::from_secs(30), "halo takeover");
    assert!(c.hb_log().contains("hb_takeover") || c.hb_log().contains("standby"), "{}", c.dump());

    // halo stops gracefully: Heartbeat takes over at its shutdone.
    std::thread::sleep(Duration::from_secs(2));
    c.phase("halo stops (shutdone)", false);
    c.halo_stop();
    assert!(!c.has_vip("halo"), "halo released the VIP before exiting");
    c.served_by("hb", Duration::from_secs(15), "heartbeat takes over at halo's shutdone");

    // halo returns: Heartbeat gives the group back (its auto failback, ask_resources).
    c.phase("halo returns (auto failback)", false);
    c.halo_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("halo", Duration::from_secs(40), "auto failback to halo");

    // halo loses its cable: Heartbeat takes over after deadtime.
    std::thread::sleep(Duration::from_secs(3));
    c.phase("halo's cable cut", true);
    c.tb.cable("halo", false).unwrap();
    let ok = wait_for(Duration::from_secs(20), || (c.fetch().as_deref() == Some("hb")).then_some(()));
    assert!(ok.is_some(), "heartbeat serves while halo is cut off\n{}", c.dump());

    c.phase("halo's cable back", true);
    c.tb.cable("halo", true).unwrap();
    c.served_by("halo", Duration::from_secs(60), "back to halo after the heal");
    c.phase("settled after the heal", false);
    c.both_active(Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(3));
    assert!(c.has_vip("halo") && !c.has_vip("hb"), "{}", c.dump());
    c.check_no_double();
}

/// `auto_failback off` on both: the group stays where it runs when its preferred node
/// (Heartbeat) returns, until the operator moves it with `halo standby`.
#[test]
fn auto_failback_off_leaves_the_group_on_halo_until_standby() {
    let Some(mut c) = Mixed::new("hfo", "hb", "off") else { return };
    c.phase("initial acquisition", false);
    c.hb_start();
    c.halo_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("hb", Duration::from_secs(40), "initial acquisition");

    c.phase("heartbeat stops (shutdone)", false);
    c.hb_stop();
    c.served_by("halo", Duration::from_secs(15), "takeover after heartbeat's shutdone");

    c.phase("heartbeat returns (no failback)", false);
    c.hb_start();
    c.both_active(Duration::from_secs(40));
    // Past Heartbeat's RQSTDELAY: nothing moves.
    std::thread::sleep(Duration::from_secs(12));
    // Up to three tries: one curl can time out on a loaded machine; an answer from hb fails
    // at once.
    let answer = (0..3).find_map(|_| c.fetch());
    assert_eq!(answer.as_deref(), Some("halo"), "{}", c.dump());
    assert!(!c.has_vip("hb"), "{}", c.dump());

    c.phase("halo standby", false);
    c.halo_cli(&["standby", "all"]);
    c.served_by("hb", Duration::from_secs(30), "halo standby");
    c.check_no_double();
}

// ---------------------------------------------------------------------------------------
// `auto_failback legacy` (Heartbeat's default): no `starting`/`resource` from Heartbeat;
// groups move by `ip-request` / `ip-request-resp` (spec §3.13.5), by death and `shutdone`.

/// Waits until exactly one node holds the VIP and serves the client; returns it.
fn settled_holder(c: &Mixed, within: Duration, what: &str) -> String {
    let got = wait_for(within, || {
        let (h, l) = (c.has_vip("hb"), c.has_vip("halo"));
        let node = match (h, l) {
            (true, false) => "hb",
            (false, true) => "halo",
            _ => return None,
        };
        (c.fetch().as_deref() == Some(node)).then(|| node.to_string())
    });
    got.unwrap_or_else(|| panic!("{what}: no single node serves within {within:?}\n{}", c.dump()))
}

/// The group prefers the Heartbeat node (legacy on both): halo takes it when Heartbeat
/// stops or loses its cable, and hands it back when Heartbeat (re)starts and asks for it
/// (`ip-request` → halo stops the group → `ip-request-resp weown=yes ok=OK`).
#[test]
fn legacy_heartbeat_preferred_group_fails_over_to_halo_and_back_by_ip_request() {
    let Some(mut c) = Mixed::new("hlh", "hb", "legacy") else { return };
    c.phase("initial acquisition", false);
    c.hb_start();
    c.halo_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("hb", Duration::from_secs(40), "initial acquisition");
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        c.has_vip("hb") && !c.has_vip("halo"),
        "halo never starts a group a legacy peer may hold\n{}",
        c.dump()
    );

    c.phase("heartbeat stops (shutdone)", false);
    c.hb_stop();
    c.served_by("halo", Duration::from_secs(15), "takeover after heartbeat's shutdone");

    c.phase("heartbeat returns (legacy failback: ip-request)", false);
    c.hb_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("hb", Duration::from_secs(40), "legacy failback to heartbeat");
    // halo gave it up on Heartbeat's ip-request (weown=yes), or already when it saw
    // Heartbeat start afresh (weown=no: Heartbeat may take it without asking).
    assert!(
        c.halo_log().contains("ip-request-resp to hb:") || c.halo_log().contains("starts afresh"),
        "{}",
        c.dump()
    );
    assert!(c.hb_log().contains("received ip-request-resp"), "{}", c.dump());

    // Heartbeat loses its cable: halo takes over after deadtime; both hold it while cut.
    std::thread::sleep(Duration::from_secs(3));
    c.phase("heartbeat's cable cut", true);
    c.tb.cable("hb", false).unwrap();
    let ok = wait_for(Duration::from_secs(20), || (c.fetch().as_deref() == Some("halo")).then_some(()));
    assert!(ok.is_some(), "halo serves while heartbeat is cut off\n{}", c.dump());

    // The heal: Heartbeat gives everything up, says shutdone and restarts itself; at its
    // comm up it takes its group again (asking, or alone in its view), and halo releases it
    // as soon as it sees the fresh start.
    c.phase("heartbeat's cable back", true);
    c.tb.cable("hb", true).unwrap();
    c.served_by("hb", Duration::from_secs(60), "back to heartbeat after its restart");
    c.phase("settled after the heal", false);
    c.both_active(Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(settled_holder(&c, Duration::from_secs(5), "settled"), "hb", "{}", c.dump());

    // A clean Heartbeat restart asks for its group again: legacy failback.
    c.phase("heartbeat restarts", false);
    c.hb_stop();
    c.served_by("halo", Duration::from_secs(15), "heartbeat stopped");
    c.hb_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("hb", Duration::from_secs(40), "legacy failback after the restart");
    c.check_no_double();
}

/// The group prefers the halo node (legacy on both): Heartbeat takes it when halo stops
/// or loses its cable (`mach_down`); halo gets it back by asking (`ip-request`), and
/// never starts it before Heartbeat's answer.
#[test]
fn legacy_halo_preferred_group_fails_over_to_heartbeat_and_back_by_ip_request() {
    let Some(mut c) = Mixed::new("hll", "halo", "legacy") else { return };
    c.phase("initial acquisition", false);
    c.hb_start();
    c.halo_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("halo", Duration::from_secs(40), "initial acquisition");
    assert!(c.halo_log().contains("requesting resource group"), "{}", c.dump());

    c.phase("halo stops (shutdone)", false);
    c.halo_stop();
    assert!(!c.has_vip("halo"), "halo released the VIP before exiting");
    c.served_by("hb", Duration::from_secs(15), "heartbeat takes over at halo's shutdone");

    c.phase("halo returns (legacy failback: ip-request)", false);
    c.halo_start();
    c.both_active(Duration::from_secs(40));
    c.served_by("halo", Duration::from_secs(40), "legacy failback to halo");
    assert!(c.hb_log().contains("rc.d/ip-request"), "{}", c.dump());
    assert!(c.halo_log().contains("received ip-request-resp"), "{}", c.dump());

    // halo loses its cable: Heartbeat takes over after deadtime.
    std::thread::sleep(Duration::from_secs(3));
    c.phase("halo's cable cut", true);
    c.tb.cable("halo", false).unwrap();
    let ok = wait_for(Duration::from_secs(20), || (c.fetch().as_deref() == Some("hb")).then_some(()));
    assert!(ok.is_some(), "heartbeat serves while halo is cut off\n{}", c.dump());

    // The heal: Heartbeat gives everything up and restarts; halo kept the group.
    c.phase("halo's cable back", true);
    c.tb.cable("halo", true).unwrap();
    c.served_by("halo", Duration::from_secs(60), "back to halo after the heal");
    c.phase("settled after the heal", false);
    c.both_active(Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(5));
    assert!(c.has_vip("halo") && !c.has_vip("hb"), "{}", c.dump());

    // Heartbeat restarts while halo holds its group: Heartbeat asks only for its own
    // (none), nothing moves.
    c.phase("heartbeat restarts", false);
    c.hb_stop();
    c.hb_start();
    c.both_active(Duration::from_secs(40));
    std::thread::sleep(Duration::from_secs(5));
    assert!(c.has_vip("halo") && !c.has_vip("hb"), "{}", c.dump());
    c.check_no_double();
}
