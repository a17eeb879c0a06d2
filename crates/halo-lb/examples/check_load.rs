//! bench/director: the health checker under load — `COUNT` real servers (127.0.0.1, ports from
//! `BASE`) each checked once per second with `KIND` (http: ldirectord's default negotiate
//! check, or connect), on one current_thread tokio runtime, paced as halo's director paces them
//! (halo-lb's `check::pace`: a stable phase per real server, a cap on checks in flight). After a
//! warm-up it measures `SECS` seconds and prints one JSON line: checks/s, up ratio, CPU % of
//! one core (getrusage), RSS (VmRSS / VmHWM) and the checks in flight (mean, peak).
//! `KIND-floor` (http-floor, connect-floor): the same connections from a blocking loop, the
//! kernel's share of a check on this machine (see `floor`).
//! Usage: check_load BASE COUNT KIND SECS
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halo_lb::check::pace::{self, Pacer};
use halo_lb::check::{run_check, CheckKind, CheckSpec};
use tokio::sync::Semaphore;

/// Most checks in flight at once, since the end of the warm-up.
static PEAK: AtomicU64 = AtomicU64::new(0);

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
    let kind_arg = args.next().unwrap_or_default();
    let kind = match kind_arg.trim_end_matches("-floor") {
        "connect" => CheckKind::Connect,
        _ => CheckKind::Http,
    };
    let secs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    if kind_arg.ends_with("-floor") {
        return floor(base, count, kind, secs);
    }
    let done = Arc::new(AtomicU64::new(0));
    let ups = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let specs: Arc<Vec<CheckSpec>> = Arc::new(
        (0..count)
            .map(|i| {
                CheckSpec::new(kind, SocketAddr::from(([127, 0, 0, 1], base + i)), Duration::from_secs(5))
            })
            .collect(),
    );
    rt.block_on(async {
        // As halo's director runs a virtual service (service_loop): each real server once per
        // interval at its own phase, the first check at once, a cap on the checks in flight.
        let (d, u, sp, fl) = (done.clone(), ups.clone(), specs.clone(), in_flight.clone());
        let targets: Vec<SocketAddr> = sp.iter().map(|s| s.target).collect();
        let pacer = Pacer::new(tokio::time::Instant::now(), Duration::from_secs(1), &targets);
        let limit = Arc::new(Semaphore::new(pace::in_flight_cap(f64::from(count), sp[0].timeout)));
        tokio::spawn(pace::drive(
            pacer,
            limit,
            move |i| {
                let (sp, d, u, f) = (sp.clone(), d.clone(), u.clone(), fl.clone());
                let now = f.fetch_add(1, Ordering::Relaxed) + 1;
                PEAK.fetch_max(now, Ordering::Relaxed);
                async move {
                    let up = run_check(&sp[i]).await.up;
                    f.fetch_sub(1, Ordering::Relaxed);
                    d.fetch_add(1, Ordering::Relaxed);
                    if up {
                        u.fetch_add(1, Ordering::Relaxed);
                    }
                }
            },
            || {},
        ));
        tokio::time::sleep(Duration::from_secs(3)).await; // warm-up
        let (c0, d0, u0, t0) = (cpu_seconds(), done.load(Ordering::Relaxed), ups.load(Ordering::Relaxed), Instant::now());
        PEAK.store(0, Ordering::Relaxed);
        // The checks in flight, sampled every 10 ms.
        let (mut samples, mut sum) = (0u64, 0u64);
        let end = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
            sum += in_flight.load(Ordering::Relaxed);
            samples += 1;
        }
        let wall = t0.elapsed().as_secs_f64();
        let checks = done.load(Ordering::Relaxed) - d0;
        let up = ups.load(Ordering::Relaxed) - u0;
        println!(
            "{{\"kind\":\"{}\",\"servers\":{count},\"seconds\":{wall:.1},\"checks_per_s\":{:.0},\"up_ratio\":{:.4},\"cpu_pct_one_core\":{:.1},\"rss_mib\":{:.1},\"hwm_mib\":{:.1},\"in_flight_mean\":{:.1},\"in_flight_peak\":{}}}",
            kind,
            checks as f64 / wall,
            if checks == 0 { 0.0 } else { up as f64 / checks as f64 },
            (cpu_seconds() - c0) / wall * 100.0,
            status_kib("VmRSS:") as f64 / 1024.0,
            status_kib("VmHWM:") as f64 / 1024.0,
            sum as f64 / samples.max(1) as f64,
            PEAK.load(Ordering::Relaxed),
        );
    });
}

/// `KIND-floor`: the kernel's share, for comparison — the same connections (connect, or
/// connect + request + one read of the answer; closed with a reset) from a plain blocking
/// loop, no runtime, no epoll, `COUNT` a second in 1 ms slices. What a check cannot cost less
/// than on this machine; on loopback it includes the real servers' side of every packet.
fn floor(base: u16, count: u16, kind: CheckKind, secs: u64) {
    use std::io::{Read, Write};
    let one = |port: u16| -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        if kind == CheckKind::Http {
            let mut buf = [0u8; 1024];
            s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_ok()
                && matches!(s.read(&mut buf), Ok(n) if n > 0)
        } else {
            true
        }
    };
    let per_ms = (u64::from(count) / 1000).max(1);
    let (mut port, mut checks, mut up) = (0u16, 0u64, 0u64);
    let mut run = |until: Instant, count_it: bool| {
        let start = Instant::now();
        let mut slice = 0u32;
        while Instant::now() < until {
            for _ in 0..per_ms {
                let ok = one(base + port);
                port = (port + 1) % count;
                if count_it {
                    checks += 1;
                    up += u64::from(ok);
                }
            }
            slice += 1;
            let next = start + Duration::from_millis(u64::from(slice));
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    };
    run(Instant::now() + Duration::from_secs(3), false);
    let (c0, t0) = (cpu_seconds(), Instant::now());
    run(t0 + Duration::from_secs(secs), true);
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "{{\"kind\":\"{kind}-floor\",\"servers\":{count},\"seconds\":{wall:.1},\"checks_per_s\":{:.0},\"up_ratio\":{:.4},\"cpu_pct_one_core\":{:.1},\"rss_mib\":{:.1},\"hwm_mib\":{:.1},\"in_flight_mean\":1.0,\"in_flight_peak\":1}}",
        checks as f64 / wall,
        if checks == 0 { 0.0 } else { up as f64 / checks as f64 },
        (cpu_seconds() - c0) / wall * 100.0,
        status_kib("VmRSS:") as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0,
    );
}
