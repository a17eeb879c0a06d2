//! `halo demo`: seed 001's cluster in network namespaces. Two halo nodes, alpha and beta,
//! share a virtual IP with a web server behind it (`alpha IPaddr2::VIP/24/eth0 web` in
//! haresources); a client namespace fetches the page through the VIP every 10 ms. alpha's
//! cable is pulled: beta takes the VIP and the web server, and the demo prints the outage
//! the client saw. The cable goes back and, with `auto_failback on`, the service returns to
//! alpha. Everything is cleaned up afterwards.
use crate::testbed::{wait_for, Testbed};
use anyhow::{bail, Context};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VIP: &str = "10.77.0.100";
const HA_CF: &str =
    "# halo demo: broadcast heartbeats every 100 ms, a node is dead after 500 ms of silence\n\
keepalive 100ms\nwarntime 300ms\ndeadtime 500ms\ninitdead 3\nudpport 694\nbcast eth0\nauto_failback on\n\
node alpha beta\nrealtime off\n";
const AUTHKEYS: &str = "auth 1\n1 sha1 halo-demo-key\n";

/// One probe: who answered the page through the VIP (None: nobody, within 100 ms).
fn fetch(vip: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_millis(100)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    let page = body.split("\r\n\r\n").nth(1)?.trim().to_string();
    (!page.is_empty()).then_some(page)
}

/// (when, who answered) for every probe.
type Samples = Arc<Mutex<Vec<(Instant, Option<String>)>>>;

/// A client in the `client` namespace probing the VIP every 10 ms, recording (time, who).
struct Prober {
    samples: Samples,
    stop: Arc<AtomicBool>,
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
        std::thread::spawn(move || {
            // This thread alone moves into the client's network namespace.
            if let Err(e) = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET) {
                let _ = tx.send(Err(e));
                return;
            }
            let _ = tx.send(Ok(()));
            while !st.load(Ordering::Relaxed) {
                let t = Instant::now();
                let who = fetch(vip);
                s.lock().unwrap_or_else(|e| e.into_inner()).push((t, who));
                std::thread::sleep(Duration::from_millis(10).saturating_sub(t.elapsed()));
            }
        });
        rx.recv().context("starting the client")?.context("entering the client namespace")?;
        Ok(Prober { samples, stop })
    }

    /// Waits until `node` answers (Some(time of its first answer after `since`)).
    fn wait_for(&self, node: &str, since: Instant, within: Duration) -> Option<Instant> {
        wait_for(within, || {
            let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
            s.iter().find(|(t, who)| *t >= since && who.as_deref() == Some(node)).map(|(t, _)| *t)
        })
    }

    /// The longest run without an answer after `since`, and how many probes failed.
    fn outage(&self, since: Instant) -> (Duration, usize) {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut worst = Duration::ZERO;
        let mut last_ok = since;
        let mut failed = 0;
        for (t, who) in s.iter().filter(|(t, _)| *t >= since) {
            match who {
                Some(_) => {
                    worst = worst.max(t.duration_since(last_ok));
                    last_ok = *t;
                }
                None => failed += 1,
            }
        }
        (worst, failed)
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn demo() -> anyhow::Result<i32> {
    let exe = std::env::current_exe().context("locating the halo binary")?;
    let mut tb = Testbed::new("demo")?;
    tb.add_host("alpha", "10.77.0.1/24")?;
    tb.add_host("beta", "10.77.0.2/24")?;
    tb.add_host("client", "10.77.0.9/24")?;
    let mut sockets = Vec::new();
    for node in ["alpha", "beta"] {
        let cf = format!("{HA_CF}logfile {}\n", tb.dir.join(format!("{node}.log")).display());
        let dir = tb.write_config(node, &cf, AUTHKEYS)?;
        std::fs::write(dir.join("haresources"), format!("alpha IPaddr2::{VIP}/24/eth0 web\n"))?;
        crate::testbed::install_web(&dir, node)?;
        let (_, sock) = tb.start_halo(node, &exe, &dir)?;
        sockets.push(sock);
    }
    println!(
        "== two halo nodes, alpha (10.77.0.1) and beta (10.77.0.2): heartbeats every 100 ms, deadtime 500 ms"
    );
    println!("== haresources: alpha IPaddr2::{VIP}/24/eth0 web   (a VIP and a web server, preferring alpha)");
    println!("== a client (10.77.0.9) fetches http://{VIP}/ every 10 ms\n");
    let t0 = Instant::now();
    let prober = Prober::start(&tb.ns("client"))?;
    if prober.wait_for("alpha", t0, Duration::from_secs(20)).is_none() {
        bail!("the client was never served by alpha; logs in {}", tb.dir.display());
    }
    println!("== alpha serves the VIP {} ms after start\n", t0.elapsed().as_millis());
    print_status(&sockets[0])?;
    // Like Heartbeat, a node advertises deadtime + 2 s for its first 5 s: cut after that so
    // the demo shows the configured deadtime.
    std::thread::sleep(Duration::from_secs(6).saturating_sub(t0.elapsed()));

    println!("\n== pulling alpha's network cable");
    let cut = Instant::now();
    tb.cable("alpha", false)?;
    let Some(back) = prober.wait_for("beta", cut, Duration::from_secs(10)) else {
        bail!("beta did not take over; logs in {}", tb.dir.display());
    };
    std::thread::sleep(Duration::from_millis(300));
    let (gap, failed) = prober.outage(cut - Duration::from_millis(20));
    println!(
        "== beta serves the VIP {} ms after the cut: the client's longest gap between answers was {} ms ({failed} probes failed)\n",
        back.duration_since(cut).as_millis(),
        gap.as_millis()
    );
    print_status(&sockets[1])?;

    println!("\n== plugging alpha's cable back (auto_failback on: the service goes home)");
    let heal = Instant::now();
    tb.cable("alpha", true)?;
    let Some(home) = prober.wait_for("alpha", heal, Duration::from_secs(10)) else {
        bail!("the service did not return to alpha; logs in {}", tb.dir.display());
    };
    std::thread::sleep(Duration::from_millis(500));
    let (gap, failed) = prober.outage(heal);
    println!(
        "== alpha serves again {} ms after the cable came back: longest gap {} ms ({failed} probes failed)\n",
        home.duration_since(heal).as_millis(),
        gap.as_millis()
    );
    print_status(&sockets[0])?;
    drop(prober);
    let log = std::fs::read_to_string(tb.dir.join("beta.log")).unwrap_or_default();
    println!("\n== beta's log (as a Heartbeat operator knows it):");
    for line in log.lines().filter(|l| {
        l.contains("is dead")
            || l.contains("returning")
            || l.contains("Comm_now_up")
            || l.contains("resource group")
            || l.contains("adding")
            || l.contains("removing")
    }) {
        println!("  {line}");
    }
    println!("\n== cleaning up (namespaces, processes, files)");
    Ok(0)
}

fn print_status(socket: &std::path::Path) -> anyhow::Result<()> {
    let v = crate::control::request(socket, "status")?;
    print!("{}", crate::cmd::status::render(&v));
    Ok(())
}
