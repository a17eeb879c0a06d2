//! `halo demo`: seed 002's load-balanced web cluster, with three halo nodes in network
//! namespaces on one bridge. n1 and n2 can direct: the group
//! `n1 IPaddr2::VIP/24/eth0 ldirectord::demo.cf` puts the VIP and halo's built-in director
//! on n1 (n2 is next in ha.cf's node list). n2 and n3 are the web servers, LVS-DR real
//! servers set up by `halo lvs realserver start` (the VIP on lo, arp_ignore/arp_announce),
//! each serving a page that names it. A client namespace fetches the page through the VIP
//! every 10 ms. The demo shows `halo status` and the director's view, pulls n1's cable,
//! measures when n2 holds the VIP and runs the director and when the client is served by
//! both web servers again, and prints the outage the client saw. Everything (processes,
//! namespaces with their addresses and nftables tables, files) is removed at the end, after
//! an error, and on Ctrl-C (SIGINT, SIGTERM and SIGHUP are caught for that), and the removal
//! is checked.
use crate::testbed::{install_web, Testbed};
use anyhow::{bail, Context};
use nix::sys::signal::{SigSet, Signal};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const VIP: &str = "10.77.0.100";
const NODES: [(&str, &str); 3] = [("n1", "10.77.0.1"), ("n2", "10.77.0.2"), ("n3", "10.77.0.3")];
const CLIENT: (&str, &str) = ("client", "10.77.0.9");
/// The real servers: the web servers behind the VIP.
const WEB: [&str; 2] = ["n2", "n3"];
const HA_CF: &str =
    "# halo demo: broadcast heartbeats every 100 ms, a node is dead after 500 ms of silence\n\
keepalive 100ms\nwarntime 300ms\ndeadtime 500ms\ninitdead 3\nudpport 694\nbcast eth0\nauto_failback off\n\
node n1 n2 n3\nrealtime off\n";
const AUTHKEYS: &str = "auth 1\n1 sha1 halo-demo-key\n";
const HARESOURCES: &str = "n1 IPaddr2::10.77.0.100/24/eth0 ldirectord::demo.cf\n";
/// Seed 002's ldirectord.cf for this network: each real server checked every second.
const DEMO_CF: &str = "\
checktimeout=3
checkinterval=1

virtual=10.77.0.100:80
\treal=10.77.0.2:80 gate 1 \"index.html\", \"n2\"
\treal=10.77.0.3:80 gate 1 \"index.html\", \"n3\"
\tchecktype=negotiate
\tservice=http
\tscheduler=rr
";

/// Set by the signal thread: every wait of the demo gives up, and the demo cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[derive(Debug)]
struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

fn go_on() -> anyhow::Result<()> {
    if INTERRUPTED.load(Ordering::Relaxed) {
        return Err(Interrupted.into());
    }
    Ok(())
}

/// Sleeps `d`, unless interrupted.
fn pause(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    loop {
        go_on()?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Polls `f` every 20 ms until it returns Some; an error naming `what` after `within`.
fn until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let end = Instant::now() + within;
    loop {
        go_on()?;
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > end {
            bail!("{what}: not within {} s", within.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread started after:
/// call it first) and starts the thread that takes them with sigwait and sets
/// [`INTERRUPTED`]. Children get an empty mask (std's Command resets it).
fn catch_signals() -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    set.thread_block().context("blocking SIGINT, SIGTERM and SIGHUP")?;
    std::thread::Builder::new()
        .name("demo-signals".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                if !INTERRUPTED.swap(true, Ordering::Relaxed) {
                    eprintln!("\n== {sig} received: stopping the demo and cleaning up");
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// One probe: who answered the page through the VIP (None: nobody, within 100 ms to connect
/// and 200 ms to answer).
fn fetch(vip: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_millis(100)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let page = body.split("\r\n\r\n").nth(1)?.trim().to_string();
    (!page.is_empty()).then_some(page)
}

/// (when the request started, who answered) for every request.
type Samples = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// A client in its own namespace fetching the page through the VIP every 10 ms.
struct Prober {
    samples: Samples,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What the client saw in a window of time.
struct Seen {
    /// Requests answered, by the server that answered.
    answers: BTreeMap<String, usize>,
    failed: usize,
    /// The longest time between two answers (from the last answer before the window).
    longest_gap: Duration,
}

impl Prober {
    fn start(netns: &str) -> anyhow::Result<Prober> {
        let ns =
            std::fs::File::open(format!("/run/netns/{netns}")).context("opening the client namespace")?;
        let samples: Samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&samples), Arc::clone(&stop));
        let vip: SocketAddr = format!("{VIP}:80").parse()?;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("demo-client".into()).spawn(move || {
            // This thread alone moves into the client's network namespace.
            if let Err(e) = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET) {
                let _ = tx.send(Err(e));
                return;
            }
            drop(ns);
            let _ = tx.send(Ok(()));
            while !st.load(Ordering::Relaxed) {
                let t = Instant::now();
                let who = fetch(vip);
                s.lock().unwrap_or_else(|e| e.into_inner()).push((t, who));
                std::thread::sleep(Duration::from_millis(10).saturating_sub(t.elapsed()));
            }
        })?;
        rx.recv().context("starting the client")?.context("entering the client namespace")?;
        Ok(Prober { samples, stop, thread: Some(thread) })
    }

    fn samples(&self) -> std::sync::MutexGuard<'_, Vec<(Instant, Option<String>)>> {
        self.samples.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When `server` first answered a request started at or after `since`.
    fn first(&self, server: &str, since: Instant) -> Option<Instant> {
        self.samples().iter().find(|(t, w)| *t >= since && w.as_deref() == Some(server)).map(|(t, _)| *t)
    }

    /// When every web server had answered since `since` (the latest of their first answers).
    fn all_served(&self, since: Instant) -> Option<Instant> {
        WEB.iter().map(|w| self.first(w, since)).collect::<Option<Vec<_>>>()?.into_iter().max()
    }

    fn seen(&self, from: Instant, to: Instant) -> Seen {
        let s = self.samples();
        let mut last_ok = s.iter().rev().find(|(t, w)| *t < from && w.is_some()).map_or(from, |(t, _)| *t);
        let mut seen = Seen { answers: BTreeMap::new(), failed: 0, longest_gap: Duration::ZERO };
        for (t, who) in s.iter().filter(|(t, _)| *t >= from && *t < to) {
            match who {
                Some(w) => {
                    *seen.answers.entry(w.clone()).or_default() += 1;
                    seen.longest_gap = seen.longest_gap.max(t.duration_since(last_ok));
                    last_ok = *t;
                }
                None => seen.failed += 1,
            }
        }
        seen
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Out of the client's namespace before it is deleted.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The testbed until it is cleaned up: dropped on a panic too, then still every process in
/// its namespaces is killed before the namespaces go.
struct Bed(Option<Testbed>);

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut tb) = self.0.take() {
            tb.kill_all();
        }
    }
}

pub fn demo() -> anyhow::Result<i32> {
    catch_signals()?;
    let exe = std::env::current_exe().context("locating the halo binary")?;
    let start = Instant::now();
    let mut bed = Bed(None);
    let result = run(&exe, &mut bed);
    if let (Err(e), Some(tb)) = (&result, &bed.0) {
        if !INTERRUPTED.load(Ordering::Relaxed) {
            eprintln!("halo demo failed: {e:#}");
            print_logs(tb);
        }
    }
    let clean = match bed.0.take() {
        Some(tb) => clean_up(tb),
        None => true,
    };
    if INTERRUPTED.load(Ordering::Relaxed) {
        println!("== demo interrupted after {:.1} s", start.elapsed().as_secs_f64());
        return Ok(130);
    }
    result?;
    println!("== demo finished in {:.1} s", start.elapsed().as_secs_f64());
    Ok(if clean { 0 } else { 1 })
}

fn run(exe: &Path, bed: &mut Bed) -> anyhow::Result<()> {
    let tb = bed.0.insert(Testbed::new("demo")?);
    println!("halo demo: a three-node halo cluster in network namespaces on one bridge (10.77.0.0/24)");
    println!("  n1 {}   director: holds the VIP {VIP} and runs halo's ldirectord", NODES[0].1);
    println!("  n2 {}   web server, and the director's standby (next in ha.cf's node list)", NODES[1].1);
    println!("  n3 {}   web server", NODES[2].1);
    println!("  client {} fetches http://{VIP}/ every 10 ms; the page names the server", CLIENT.1);
    println!("  haresources: {}", HARESOURCES.trim());
    println!("  demo.cf: virtual={VIP}:80 rr, real n2 and n3 by direct routing (gate), HTTP check every 1 s");
    println!("  ha.cf: heartbeats every 100 ms on eth0, a node is dead after 500 ms of silence");
    for (n, a) in NODES.iter().chain([&CLIENT]) {
        go_on()?;
        tb.add_host(n, &format!("{a}/24"))?;
    }
    println!("== testbed: network namespaces {}-*, files in {}", tb.prefix(), tb.dir.display());

    let mut dirs = Vec::new();
    for (n, _) in NODES {
        let cf = format!("{HA_CF}logfile {}\n", tb.dir.join(format!("{n}.log")).display());
        let dir = tb.write_config(n, &cf, AUTHKEYS)?;
        std::fs::write(dir.join("haresources"), HARESOURCES)?;
        // The director logs in the demo's directory, not in /var/log.
        let log = tb.dir.join(format!("{n}-ldirectord.log"));
        std::fs::write(dir.join("demo.cf"), format!("{DEMO_CF}logfile=\"{}\"\n", log.display()))?;
        dirs.push(dir);
    }
    for (n, dir) in NODES.iter().map(|(n, _)| *n).zip(&dirs).filter(|(n, _)| WEB.contains(n)) {
        go_on()?;
        install_web(dir, n)?;
        let web = dir.join("resource.d/web");
        tb.exec(n, &[&web.to_string_lossy(), "start"])
            .with_context(|| format!("starting {n}'s web server"))?;
        let state = tb.dir.join(n).join("state");
        let out = tb.exec(
            n,
            &[
                &exe.to_string_lossy(),
                "lvs",
                "realserver",
                "start",
                "--config-dir",
                &dir.to_string_lossy(),
                "--state-dir",
                &state.to_string_lossy(),
            ],
        )?;
        println!(
            "== {n}: web server on port 80; halo lvs realserver start: {}",
            String::from_utf8_lossy(&out.stdout).trim()
        );
    }
    let t0 = Instant::now();
    let mut sockets = BTreeMap::new();
    for ((n, _), dir) in NODES.iter().zip(&dirs) {
        let (_, sock) = tb.start_halo(n, exe, dir)?;
        sockets.insert(*n, sock);
    }
    println!("== halo run started on n1, n2 and n3");
    let prober = Prober::start(&tb.ns(CLIENT.0))?;
    until(Duration::from_secs(30), "n1 holding the VIP with its director", || {
        (has_vip(tb, "n1") && director_ready(&sockets["n1"])).then_some(())
    })?;
    let both = until(Duration::from_secs(15), "the client served by n2 and n3", || prober.all_served(t0))?;
    println!(
        "== n1 holds the VIP and directs; the client is served by n2 and n3 ({:.1} s after halo started)\n",
        both.duration_since(t0).as_secs_f64()
    );
    print_status(&sockets["n1"], "n1")?;
    // Like Heartbeat, a node advertises deadtime + 2 s for its first 5 s: cut after that so
    // the demo shows the configured deadtime.
    pause(Duration::from_secs(6).saturating_sub(t0.elapsed()).max(Duration::from_secs(1)))?;

    println!("\n== pulling n1's network cable (n1 holds the VIP and runs the director)");
    tb.cable("n1", false)?;
    // The cut counts from when the port is down: a request started while `ip` was still
    // running could be answered through n1, in the same millisecond.
    let cut = Instant::now();
    let (mut vip_at, mut director_at) = (None, None);
    let served = until(Duration::from_secs(20), "n2 taking over and the client served by both again", || {
        vip_at = vip_at.or_else(|| has_vip(tb, "n2").then(Instant::now));
        director_at = director_at.or_else(|| director_ready(&sockets["n2"]).then(Instant::now));
        let served = prober.all_served(cut)?;
        Some((vip_at?, director_at?, served))
    });
    let (vip_at, director_at, served) = served?;
    // A second of service after the takeover, for the counts.
    pause(Duration::from_secs(1))?;
    let end = Instant::now();
    let ms = |t: Instant| t.duration_since(cut).as_millis();
    let first_after = |w: &str| prober.first(w, cut).map_or(0, ms);
    println!(
        "== after the cut, polled: n2 holds the VIP at +{} ms, its director has both real servers \
         at +{} ms; the client is answered again by n2 at +{} ms, by n3 at +{} ms",
        ms(vip_at),
        ms(director_at),
        first_after("n2"),
        first_after("n3")
    );
    let around = prober.seen(cut - Duration::from_secs(1), served + Duration::from_secs(1));
    println!(
        "== the client's outage: longest gap between two answers {} ms, {} of {} requests failed \
         (from 1 s before the cut to 1 s after both servers answered again)",
        around.longest_gap.as_millis(),
        around.failed,
        around.failed + around.answers.values().sum::<usize>()
    );
    let before = prober.seen(both, cut);
    let after = prober.seen(served, end);
    let counts = |s: &Seen| {
        WEB.iter().map(|w| format!("{w} {}", s.answers.get(*w).unwrap_or(&0))).collect::<Vec<_>>().join(", ")
    };
    println!(
        "== answers by server: before the cut {} ({} failed); after the takeover {} ({} failed)\n",
        counts(&before),
        before.failed,
        counts(&after),
        after.failed
    );
    print_status(&sockets["n2"], "n2")?;
    drop(prober);
    let log = std::fs::read_to_string(tb.dir.join("n2.log")).unwrap_or_default();
    println!("\n== n2's log of the takeover:");
    for line in log.lines().filter(|l| {
        ["is dead", "Taking over", "acquir", "adding", "Added real server", "ldirectord"]
            .iter()
            .any(|k| l.contains(k))
    }) {
        println!("  {line}");
    }
    Ok(())
}

fn has_vip(tb: &Testbed, node: &str) -> bool {
    tb.exec(node, &["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!(" {VIP}/")))
}

/// Whether the node's director runs with both real servers in its table (weight > 0).
fn director_ready(socket: &Path) -> bool {
    let Ok(v) = crate::control::request(socket, "lvs") else { return false };
    let in_table = |d: &serde_json::Value| {
        d["services"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["reals"].as_array().into_iter().flatten())
            .filter(|r| r["in_table"].as_u64().unwrap_or(0) > 0)
            .count()
    };
    v["directors"].as_array().into_iter().flatten().any(|d| d["running"] == true && in_table(d) == WEB.len())
}

/// `halo status` and `halo lvs --health` as they print on `node`.
fn print_status(socket: &Path, node: &str) -> anyhow::Result<()> {
    let v = crate::control::request(socket, "status")?;
    let status = crate::cmd::status::render(&v);
    println!("$ halo status   # on {node}");
    print!("{status}");
    // halo status may carry the director's view itself; otherwise, halo lvs does.
    if !status.contains(&format!("{VIP}:80")) {
        let lvs = crate::control::request(socket, "lvs")?;
        println!("$ halo lvs --health   # on {node}");
        print!("{}", crate::cmd::lvs::render_health(&lvs));
    }
    Ok(())
}

/// The last lines of every node's logs, for an error (the files go with the clean-up).
fn print_logs(tb: &Testbed) {
    for (n, _) in NODES {
        for f in [format!("{n}.log"), format!("{n}.out")] {
            let text = std::fs::read_to_string(tb.dir.join(&f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("--- {f} (last lines)");
            for l in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("{l}");
            }
        }
    }
}

/// Removes everything and checks that nothing is left: no namespace of the testbed (their
/// addresses and nftables tables go with them), no process, no file. False if something is.
fn clean_up(mut tb: Testbed) -> bool {
    let t = Instant::now();
    let prefix = format!("{}-", tb.prefix());
    let dir: PathBuf = tb.dir.clone();
    let namespaces = tb.namespaces().len();
    let killed = tb.kill_all();
    drop(tb);
    let mut left = Vec::new();
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for name in String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.split_whitespace().next()) {
            if name.starts_with(&prefix) {
                left.push(format!("namespace {name}"));
            }
        }
    }
    left.extend(processes_under(&dir).into_iter().map(|p| format!("process {p}")));
    let kept = std::env::var_os("HALO_KEEP_TESTBED").is_some();
    if dir.exists() && !kept {
        left.push(dir.display().to_string());
    }
    println!(
        "\n== cleaned up in {} ms: {killed} processes killed, {namespaces} namespaces deleted \
         (with their addresses and nftables tables){}",
        t.elapsed().as_millis(),
        if kept {
            format!(", {} kept (HALO_KEEP_TESTBED)", dir.display())
        } else {
            format!(", {} removed", dir.display())
        }
    );
    if left.is_empty() {
        println!("== checked: no namespace {prefix}*, no process of the demo, no file left");
        true
    } else {
        println!("== LEFT BEHIND: {}", left.join(", "));
        false
    }
}

/// Processes whose command line or working directory is under `dir`.
fn processes_under(dir: &Path) -> Vec<u32> {
    let d = dir.to_string_lossy();
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != std::process::id())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(d.as_ref()) || cwd.starts_with(dir)
        })
        .collect()
}
