//! bench/director: the health checker under load — `COUNT` real servers (127.0.0.1, ports from
//! `BASE`) each checked once per second with `KIND` (http: ldirectord's default negotiate
//! check, or connect) in rounds, on one current_thread tokio runtime, as halo's director does. After a
//! warm-up it measures `SECS` seconds and prints one JSON line: checks/s, up ratio, CPU % of
//! one core (getrusage) and RSS (VmRSS / VmHWM).
//! Usage: check_load BASE COUNT KIND SECS
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halo_lb::check::{run_check, CheckKind, CheckSpec};

fn cpu_seconds() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

fn status_kib(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let base: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20000);
    let count: u16 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10000);
    let kind = match args.next().as_deref() {
        Some("connect") => CheckKind::Connect,
        _ => CheckKind::Http,
    };
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let done = Arc::new(AtomicU64::new(0));
    let ups = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let specs: Arc<Vec<CheckSpec>> = Arc::new(
        (0..count)
            .map(|i| {
                CheckSpec::new(kind, SocketAddr::from(([127, 0, 0, 1], base + i)), Duration::from_secs(5))
            })
            .collect(),
    );
    rt.block_on(async {
        // As halo's director runs a virtual service (service_loop): every interval, one round
        // that checks every real server at once and waits for all of them.
        let (d, u, sp) = (done.clone(), ups.clone(), specs.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut set = tokio::task::JoinSet::new();
                for i in 0..sp.len() {
                    let sp = sp.clone();
                    set.spawn(async move { run_check(&sp[i]).await.up });
                }
                while let Some(r) = set.join_next().await {
                    d.fetch_add(1, Ordering::Relaxed);
                    if matches!(r, Ok(true)) {
                        u.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        tokio::time::sleep(Duration::from_secs(3)).await; // warm-up
        let (c0, d0, u0, t0) = (cpu_seconds(), done.load(Ordering::Relaxed), ups.load(Ordering::Relaxed), Instant::now());
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let wall = t0.elapsed().as_secs_f64();
        let checks = done.load(Ordering::Relaxed) - d0;
        let up = ups.load(Ordering::Relaxed) - u0;
        println!(
            "{{\"kind\":\"{}\",\"servers\":{count},\"seconds\":{wall:.1},\"checks_per_s\":{:.0},\"up_ratio\":{:.4},\"cpu_pct_one_core\":{:.1},\"rss_mib\":{:.1},\"hwm_mib\":{:.1}}}",
            kind,
            checks as f64 / wall,
            if checks == 0 { 0.0 } else { up as f64 / checks as f64 },
            (cpu_seconds() - c0) / wall * 100.0,
            status_kib("VmRSS:") as f64 / 1024.0,
            status_kib("VmHWM:") as f64 / 1024.0,
        );
    });
}
