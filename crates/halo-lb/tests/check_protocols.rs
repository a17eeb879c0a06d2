//! smtp, pop(s), imap(s), nntp, ftp, dns and sip: each up and down against small servers on
//! 127.0.0.1.

#[path = "support/mod.rs"]
mod support;

use std::time::Duration;

use halo_lb::check::{run_check, CheckKind, CheckResult, CheckSpec, Transport};
use support::*;

const T: Duration = Duration::from_secs(5);

fn up(r: &CheckResult) {
    assert!(r.up, "expected up, got down: {}", r.reason);
}

fn down(r: &CheckResult, reason_part: &str) {
    assert!(!r.up, "expected down, got up: {}", r.reason);
    assert!(r.reason.contains(reason_part), "reason '{}' lacks '{reason_part}'", r.reason);
}

fn spec(kind: CheckKind, target: std::net::SocketAddr) -> CheckSpec {
    CheckSpec::new(kind, target, T)
}

#[tokio::test]
async fn smtp() {
    let a = scripted("220-mx.example.test ESMTP\r\n220 ready\r\n", smtp_reply, None);
    let r = run_check(&spec(CheckKind::Smtp, a)).await;
    up(&r);
    assert!(r.reason.contains("220"), "{}", r.reason);
    up(&run_check(&spec(CheckKind::Smtp, scripted("220 old\r\n", smtp_helo_only, None))).await);
    down(&run_check(&spec(CheckKind::Smtp, scripted("554 go away\r\n", smtp_reply, None))).await, "554");
    down(&run_check(&spec(CheckKind::Smtp, scripted("220 x\r\n", quit_only, None))).await, "HELO refused");
    down(&run_check(&spec(CheckKind::Smtp, scripted("hello\r\n", smtp_reply, None))).await, "not a reply");
    down(&run_check(&spec(CheckKind::Smtp, closed_port())).await, "refused");
}

#[tokio::test]
async fn pop_and_pops() {
    let a = scripted("+OK POP3 ready\r\n", pop_reply, None);
    up(&run_check(&spec(CheckKind::Pop, a)).await);
    let mut s = spec(CheckKind::Pop, a);
    s.login = "alice".into();
    s.passwd = "secret".into();
    up(&run_check(&s).await);
    s.passwd = "wrong".into();
    down(&run_check(&s).await, "login refused");
    down(&run_check(&spec(CheckKind::Pop, scripted("-ERR busy\r\n", pop_reply, None))).await, "-ERR busy");

    let tls = scripted("+OK POP3S ready\r\n", pop_reply, Some(tls_acceptor()));
    up(&run_check(&spec(CheckKind::Pops, tls)).await);
    down(&run_check(&spec(CheckKind::Pops, a)).await, "TLS");
}

#[tokio::test]
async fn imap_and_imaps() {
    let a = scripted("* OK IMAP4rev1 ready\r\n", imap_reply, None);
    up(&run_check(&spec(CheckKind::Imap, a)).await);
    let mut s = spec(CheckKind::Imap, a);
    s.login = "alice".into();
    s.passwd = "secret".into();
    up(&run_check(&s).await);
    s.passwd = "wrong".into();
    down(&run_check(&s).await, "login refused");
    down(&run_check(&spec(CheckKind::Imap, scripted("* BYE overloaded\r\n", imap_reply, None))).await, "BYE");

    let tls = scripted("* PREAUTH ready\r\n", imap_reply, Some(tls_acceptor()));
    up(&run_check(&spec(CheckKind::Imaps, tls)).await);
}

#[tokio::test]
async fn nntp() {
    up(&run_check(&spec(CheckKind::Nntp, scripted("200 news ready\r\n", quit_only, None))).await);
    down(&run_check(&spec(CheckKind::Nntp, scripted("400 unavailable\r\n", quit_only, None))).await, "400");
    down(&run_check(&spec(CheckKind::Nntp, closed_port())).await, "refused");
}

#[tokio::test]
async fn ftp_retr_flow() {
    let a = ftp_server();
    let s = spec(CheckKind::Ftp, a).with_request("index.html").with_receive("says hello").unwrap();
    let r = run_check(&s).await;
    up(&r);
    assert!(r.reason.contains("RETR /index.html"), "{}", r.reason);
    // The leading "/" is optional, a login is used when set.
    let mut s = spec(CheckKind::Ftp, a).with_request("/index.html");
    s.login = "alice".into();
    s.passwd = "secret".into();
    up(&run_check(&s).await);
    s.passwd = "wrong".into();
    down(&run_check(&s).await, "login as alice refused");
    down(
        &run_check(&spec(CheckKind::Ftp, a).with_request("/index.html").with_receive("^nope").unwrap()).await,
        "does not match",
    );
    down(&run_check(&spec(CheckKind::Ftp, a).with_request("/missing")).await, "550");
    // A 1 MiB file is read up to the cap and matched there.
    up(&run_check(&spec(CheckKind::Ftp, a).with_request("/big").with_receive("^zzz").unwrap()).await);
    down(&run_check(&spec(CheckKind::Ftp, closed_port())).await, "refused");
}

#[tokio::test]
async fn dns_over_udp_and_tcp() {
    let a = dns_server().await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut s = spec(CheckKind::Dns, a)
            .with_request("www.example.test")
            .with_receive("^192\\.0\\.2\\.99$")
            .unwrap();
        s.transport = transport;
        up(&run_check(&s).await);
        // An address is looked up as PTR.
        let mut s =
            spec(CheckKind::Dns, a).with_request("/192.0.2.99").with_receive("www\\.example").unwrap();
        s.transport = transport;
        up(&run_check(&s).await);
        let mut s = spec(CheckKind::Dns, a).with_request("www.example.test").with_receive("^10\\.").unwrap();
        s.transport = transport;
        down(&run_check(&s).await, "does not match");
        let mut s = spec(CheckKind::Dns, a).with_request("nowhere.example.test");
        s.transport = transport;
        down(&run_check(&s).await, "Non-Existent Domain");
    }
    // Truncated over UDP: asked again over TCP.
    let mut s =
        spec(CheckKind::Dns, a).with_request("big.example.test").with_receive("192\\.0\\.2\\.100").unwrap();
    s.transport = Transport::Udp;
    up(&run_check(&s).await);
    let mut s = spec(CheckKind::Dns, a).with_request("not a name!!");
    s.transport = Transport::Udp;
    assert!(!run_check(&s).await.up);
}

#[tokio::test]
async fn sip_options() {
    let (a, seen) = sip_server("200 OK").await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut s = spec(CheckKind::Sip, a);
        s.transport = transport;
        s.login = "ldirectord@test".into();
        up(&run_check(&s).await);
    }
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["OPTIONS sip:ldirectord@test SIP/2.0", "OPTIONS sip:ldirectord@test SIP/2.0"]
    );
    let (b, _) = sip_server("404 Not Found").await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let mut s = spec(CheckKind::Sip, b);
        s.transport = transport;
        down(&run_check(&s).await, "404");
    }
}
