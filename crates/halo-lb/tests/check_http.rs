//! connect, http, https, simpletcp, external, on/off: each up and down against real servers
//! on 127.0.0.1, on a current-thread runtime (the daemon's flavour).

#[path = "support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use halo_lb::check::{run_check, CheckKind, CheckResult, CheckSpec, Command, HttpMethod, Transport};
use support::*;

const T: Duration = Duration::from_secs(5);

fn spec(kind: CheckKind, target: std::net::SocketAddr) -> CheckSpec {
    CheckSpec::new(kind, target, T)
}

fn up(r: &CheckResult) {
    assert!(r.up, "expected up, got down: {}", r.reason);
}

fn down(r: &CheckResult, reason_part: &str) {
    assert!(!r.up, "expected down, got up: {}", r.reason);
    assert!(r.reason.contains(reason_part), "reason '{}' lacks '{reason_part}'", r.reason);
}

#[tokio::test]
async fn connect_up_and_down() {
    let (a, _) = http_server();
    up(&run_check(&spec(CheckKind::Connect, a)).await);
    down(&run_check(&spec(CheckKind::Connect, closed_port())).await, "refused");
}

#[tokio::test]
async fn http_status_and_body() {
    let (a, http) = http_server();
    let s = spec(CheckKind::Http, a).with_request("ok").with_receive("hello").unwrap();
    let r = run_check(&s).await;
    up(&r);
    assert!(r.reason.contains("HTTP 200 OK"), "{}", r.reason);
    // The default request is "/", and Host is the real server's address.
    up(&run_check(&spec(CheckKind::Http, a)).await);
    let seen = http.seen.lock().unwrap().clone();
    assert_eq!(seen[0], ("GET".to_string(), "/ok".to_string(), "127.0.0.1".to_string()));
    assert_eq!(seen[1].1, "/");

    down(&run_check(&spec(CheckKind::Http, a).with_request("/fail")).await, "HTTP 500");
    down(
        &run_check(&spec(CheckKind::Http, a).with_request("/ok").with_receive("^bye").unwrap()).await,
        "does not match",
    );
    down(&run_check(&spec(CheckKind::Http, a).with_request("/nothing")).await, "404");
    down(&run_check(&spec(CheckKind::Http, a).with_request("/garbage")).await, "HTTP");
    down(&run_check(&spec(CheckKind::Http, closed_port())).await, "refused");
}

#[tokio::test]
async fn http_virtualhost_head_and_redirects() {
    let (a, http) = http_server();
    let mut s =
        spec(CheckKind::Http, a).with_request("/host").with_receive("^www\\.example\\.test$").unwrap();
    s.virtualhost = Some("www.example.test".to_string());
    up(&run_check(&s).await);

    let mut head = spec(CheckKind::Http, a).with_request("/ok");
    head.httpmethod = HttpMethod::Head;
    up(&run_check(&head).await);
    assert_eq!(http.seen.lock().unwrap().last().unwrap().0, "HEAD");

    // A redirect on the same server is followed; one elsewhere is not.
    let r =
        run_check(&spec(CheckKind::Http, a).with_request("/redirect").with_receive("hello").unwrap()).await;
    up(&r);
    assert!(r.reason.contains("redirect"), "{}", r.reason);
    down(&run_check(&spec(CheckKind::Http, a).with_request("/away")).await, "not followed");

    // An absolute URL as request asks this real server for its path.
    up(&run_check(&spec(CheckKind::Http, a).with_request("http://www.example.test/ok")).await);
    assert_eq!(http.seen.lock().unwrap().last().unwrap().1, "/ok");
}

#[tokio::test]
async fn http_body_is_capped() {
    let (a, _) = http_server();
    // The mark sits after 1 MiB: beyond the 64 KiB read, so it is never seen...
    let r = run_check(&spec(CheckKind::Http, a).with_request("/big").with_receive("MARK").unwrap()).await;
    down(&r, "does not match");
    // ...while the start of the body is.
    up(&run_check(&spec(CheckKind::Http, a).with_request("/big").with_receive("^xxx").unwrap()).await);
}

#[tokio::test]
async fn http_proxy_sends_absolute_url() {
    let (a, http) = http_server();
    let s = spec(CheckKind::HttpProxy, a).with_request("http://www.example.test/ok");
    // The test server answers 404 for an absolute-form target: what matters is what it got.
    let _ = run_check(&s).await;
    let seen = http.seen.lock().unwrap().clone();
    assert_eq!(seen[0].1, "http://www.example.test/ok");
    assert_eq!(seen[0].2, "www.example.test");
    down(&run_check(&spec(CheckKind::HttpProxy, a).with_request("/relative")).await, "not an absolute URL");
}

#[tokio::test]
async fn https_without_verification_and_sni() {
    let (a, _, sni) = https_server();
    up(&run_check(&spec(CheckKind::Https, a).with_request("/ok").with_receive("hello").unwrap()).await);
    let mut s =
        spec(CheckKind::Https, a).with_request("/host").with_receive("^www\\.example\\.test$").unwrap();
    s.virtualhost = Some("www.example.test".to_string());
    up(&run_check(&s).await);
    down(&run_check(&spec(CheckKind::Https, a).with_request("/fail")).await, "HTTP 500");
    let sni = sni.lock().unwrap().clone();
    // No SNI for an address, the virtualhost's name otherwise.
    assert_eq!(sni[0], None);
    assert_eq!(sni[1].as_deref(), Some("www.example.test"));

    // TLS to a plain-text server fails the handshake, and plain HTTP to TLS gets no answer.
    let (plain, _) = http_server();
    down(&run_check(&spec(CheckKind::Https, plain)).await, "TLS");
    let mut s = spec(CheckKind::Http, a);
    s.timeout = Duration::from_millis(500);
    assert!(!run_check(&s).await.up);
}

#[tokio::test]
async fn simpletcp_lines() {
    let a = line_server();
    let s = spec(CheckKind::Simpletcp, a).with_request("PING\\n").with_receive("^PONG").unwrap();
    let r = run_check(&s).await;
    up(&r);
    assert!(r.reason.contains("PONG ok"), "{}", r.reason);
    // Any line without a pattern.
    up(&run_check(&spec(CheckKind::Simpletcp, a).with_request("other")).await);
    down(
        &run_check(&spec(CheckKind::Simpletcp, a).with_request("other").with_receive("PONG").unwrap()).await,
        "no line",
    );
    down(&run_check(&spec(CheckKind::Simpletcp, closed_port())).await, "refused");
}

#[tokio::test]
async fn external_exit_status() {
    let mut s = spec(CheckKind::External, closed_port());
    s.command = Some(Command { program: "/bin/sh".into(), args: vec!["-c".into(), "exit 0".into()] });
    up(&run_check(&s).await);
    s.command = Some(Command { program: "/bin/sh".into(), args: vec!["-c".into(), "exit 3".into()] });
    down(&run_check(&s).await, "exited 3");
    s.command = Some(Command { program: "/nonexistent/check".into(), args: vec![] });
    down(&run_check(&s).await, "/nonexistent/check");
}

fn alive(pid: i32) -> bool {
    // A zombie (waiting for a reaper that may be slow in a container) is not running.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'),
        Err(_) => false,
    }
}

#[tokio::test]
async fn external_killed_with_its_group_at_the_deadline() {
    let dir = std::env::temp_dir().join(format!("halo-check-ext-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pids = dir.join("pids");
    let script = format!("sleep 30 & echo $! > {}; sleep 30", pids.display());
    let mut s = CheckSpec::new(CheckKind::External, closed_port(), Duration::from_millis(300));
    s.command = Some(Command { program: "/bin/sh".into(), args: vec!["-c".into(), script] });
    let start = Instant::now();
    let r = run_check(&s).await;
    let elapsed = start.elapsed();
    down(&r, "killed");
    assert!(elapsed < Duration::from_millis(600), "took {elapsed:?}");
    let bg: i32 = std::fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
    let mut gone = false;
    for _ in 0..50 {
        if !alive(bg) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "background child {bg} of the check survived");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn on_off_and_oracle_without_listener() {
    let a = closed_port();
    up(&run_check(&spec(CheckKind::On, a)).await);
    down(&run_check(&spec(CheckKind::Off, a)).await, "off");
    down(&run_check(&spec(CheckKind::Oracle, a)).await, "refused");
}

/// A server that accepts and never answers: every kind is down within its deadline (the
/// bound asserted is twice the deadline, never tighter).
#[tokio::test]
async fn deadline_is_total_for_every_kind() {
    let silent = silent_server();
    let silent_udp = silent_udp().await;
    let timeout = Duration::from_millis(300);
    let mut cases = Vec::new();
    for kind in [
        CheckKind::Http,
        CheckKind::Https,
        CheckKind::HttpProxy,
        CheckKind::Simpletcp,
        CheckKind::Ftp,
        CheckKind::Smtp,
        CheckKind::Pop,
        CheckKind::Pops,
        CheckKind::Imap,
        CheckKind::Imaps,
        CheckKind::Nntp,
        CheckKind::Dns,
        CheckKind::Sip,
    ] {
        let request =
            if kind == CheckKind::HttpProxy { "http://www.example.test/" } else { "www.example.test" };
        let mut s = CheckSpec::new(kind, silent, timeout).with_request(request);
        s.transport = Transport::Tcp;
        cases.push(s.clone());
        if matches!(kind, CheckKind::Dns | CheckKind::Sip | CheckKind::Simpletcp) {
            s.target = silent_udp;
            s.transport = Transport::Udp;
            cases.push(s);
        }
    }
    // The HTTP server's /slow path answers the headers never.
    let (a, _) = http_server();
    cases.push(CheckSpec::new(CheckKind::Http, a, timeout).with_request("/slow"));
    for s in cases {
        let start = Instant::now();
        let r = run_check(&s).await;
        let elapsed = start.elapsed();
        assert!(!r.up, "{} {:?} up against a silent server: {}", s.kind, s.transport, r.reason);
        assert!(r.reason.contains("deadline"), "{}: {}", s.kind, r.reason);
        assert!(elapsed < timeout * 2, "{} {:?} took {elapsed:?}", s.kind, s.transport);
    }
}

/// A server that sends endless bytes without a newline: no check hangs or grows without
/// bound, each ends down (or, for http, with the parser's refusal) within the deadline.
#[tokio::test]
async fn endless_answers_are_bounded() {
    let flood = flood_server();
    let timeout = Duration::from_secs(2);
    for kind in [
        CheckKind::Http,
        CheckKind::Simpletcp,
        CheckKind::Ftp,
        CheckKind::Smtp,
        CheckKind::Pop,
        CheckKind::Imap,
        CheckKind::Sip,
        CheckKind::Dns,
    ] {
        let s = CheckSpec::new(kind, flood, timeout).with_receive("never").unwrap();
        let start = Instant::now();
        let r = run_check(&s).await;
        assert!(!r.up, "{kind} up against a flood: {}", r.reason);
        assert!(start.elapsed() < timeout * 2, "{kind} took {:?}", start.elapsed());
    }
    // nntp reads 64 bytes of "AAAA": not a 2xx greeting.
    assert!(!run_check(&CheckSpec::new(CheckKind::Nntp, flood, timeout)).await.up);
}

/// 2000 http checks at once against one listener, all on this current-thread runtime.
#[tokio::test]
async fn two_thousand_at_once() {
    // Both ends of 2000 connections live in this process: make room for them.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < 8192 {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard.min(8192), hard);
        }
    }
    let (a, http) = http_server();
    let spec = CheckSpec::new(CheckKind::Http, a, Duration::from_secs(30)).with_receive("hello").unwrap();
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..2000 {
        let s = spec.clone();
        set.spawn(async move { run_check(&s).await });
    }
    let mut done = 0;
    let mut ups = 0;
    while let Some(r) = set.join_next().await {
        let r = r.expect("check task");
        done += 1;
        if r.up {
            ups += 1;
        } else {
            eprintln!("down: {}", r.reason);
        }
    }
    println!("2000 concurrent http checks in {:?} (current-thread runtime, debug build)", start.elapsed());
    assert_eq!(done, 2000);
    assert_eq!(ups, 2000);
    assert_eq!(http.seen.lock().unwrap().len(), 2000);
}

#[test]
fn check_futures_are_send() {
    fn assert_send<T: Send>(_: T) {}
    let s = CheckSpec::new(CheckKind::Http, "127.0.0.1:1".parse().unwrap(), T);
    assert_send(run_check(&s));
}
