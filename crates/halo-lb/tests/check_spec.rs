//! From ldirectord.cf to check specs (ldirectord's rules), and health over real checks:
//! failurecount 3 against a server that falls sick and recovers, and checktype=N.

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use halo_config::{parse_ldirectord_cf, LdirectordCf};
use halo_lb::check::{
    spec_for, spec_for_addr, CheckKind, CheckSpec, Checker, Command, HealthPolicy, SpecError, Transition,
    Transport,
};
use support::*;

const CF: &str = "\
checktimeout=3
negotiatetimeout=7
failurecount=3
checkcount=2

virtual=192.0.2.10:80
\treal=127.0.0.1:8080 masq
\treal=127.0.0.2 gate 2 \"/health\", \"^OK\"
\tservice=http
\trequest=\"index.html\"
\treceive=\"hello\"
\tvirtualhost=www.example.test
\thttpmethod=HEAD

virtual=192.0.2.10:53
\treal=127.0.0.1 gate
\tchecktype=connect

virtual=192.0.2.10:25
\treal=127.0.0.1 gate
\tchecktype=3
\tnegotiatetimeout=9

virtual=192.0.2.10:9000
\treal=127.0.0.1:9001 gate
\tchecktype=external
\tcheckcommand=/usr/local/bin/check

virtual=1
\treal=127.0.0.1 gate
\tchecktype=ping

virtual=192.0.2.10:21
\treal=127.0.0.1 gate

virtual=192.0.2.10:5060
\treal=127.0.0.1 gate
\tprotocol=udp

virtual=192.0.2.10:7000
\treal=ftp.example.test:21 gate
\tchecktype=negotiate
\tservice=ftp
\tchecktimeout=4

virtual=192.0.2.10:8000
\treal=127.0.0.1 gate
\tchecktype=external-perl
\tcheckcommand=/etc/ha.d/check.pl

virtual6=[2001:db8::10]:9000
\treal6=[::1] gate
\tchecktype=external
\tcheckcommand=/usr/local/bin/check
";

fn cf() -> LdirectordCf {
    match parse_ldirectord_cf(Path::new("ldirectord.cf"), CF) {
        Ok((cf, _warnings)) => cf,
        Err(e) => panic!("{e}"),
    }
}

fn spec(cf: &LdirectordCf, v: usize, r: usize) -> CheckSpec {
    spec_for(&cf.virtuals[v], &cf.virtuals[v].reals[r], &cf.global).expect("spec")
}

#[test]
fn ldirectord_rules() {
    let cf = cf();
    // http: checkport from the real, request/receive from the virtual, negotiatetimeout.
    let s = spec(&cf, 0, 0);
    assert_eq!(s.kind, CheckKind::Http);
    assert_eq!(s.target, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(s.timeout, Duration::from_secs(7));
    assert_eq!(s.request, "index.html");
    assert_eq!(s.receive.as_ref().map(|r| r.as_str()), Some("hello"));
    assert_eq!(s.virtualhost.as_deref(), Some("www.example.test"));
    assert_eq!(s.httpmethod, halo_lb::check::HttpMethod::Head);
    assert_eq!(s.combined, None);
    // The real's own request/receive; no port: the service's (http: 80).
    let s = spec(&cf, 0, 1);
    assert_eq!(s.target, "127.0.0.2:80".parse().unwrap());
    assert_eq!((s.request.as_str(), s.receive.as_ref().map(|r| r.as_str())), ("/health", Some("^OK")));

    // connect on a UDP service (port 53) is a ping, with checktimeout × checkcount.
    let s = spec(&cf, 1, 0);
    assert_eq!((s.kind, s.transport, s.attempts), (CheckKind::Ping, Transport::Udp, 2));
    assert_eq!(s.timeout, Duration::from_secs(6));

    // checktype=3 on port 25: smtp negotiate with 3 connect checks between.
    let s = spec(&cf, 2, 0);
    assert_eq!(s.kind, CheckKind::Smtp);
    assert_eq!(s.timeout, Duration::from_secs(9));
    let c = s.combined.expect("combined");
    // The virtual's negotiatetimeout is its checktimeout too (mutual defaults, §7.3).
    assert_eq!((c.connects, c.connect_timeout), (3, Duration::from_secs(9)));

    // external: VIP VPORT RIP RPORT, checktimeout; IPv6 in brackets, port 0 when none.
    let s = spec(&cf, 3, 0);
    assert_eq!(s.kind, CheckKind::External);
    assert_eq!(s.timeout, Duration::from_secs(3));
    assert_eq!(
        s.command,
        Some(Command {
            program: "/usr/local/bin/check".into(),
            args: vec!["192.0.2.10".into(), "9000".into(), "127.0.0.1".into(), "9001".into()],
        })
    );
    let s = spec(&cf, 9, 0);
    assert_eq!(s.command.unwrap().args, vec!["[2001:db8::10]", "9000", "[::1]", "0"]);

    // fwmark: ping, VIP is the mark.
    let s = spec(&cf, 4, 0);
    assert_eq!(s.kind, CheckKind::Ping);
    assert_eq!(s.target.ip(), "127.0.0.1".parse::<std::net::IpAddr>().unwrap());

    // ftp by port 21: port 21, default request "/".
    let s = spec(&cf, 5, 0);
    assert_eq!((s.kind, s.target.port(), s.request.as_str()), (CheckKind::Ftp, 21, "/"));

    // sip by port over UDP, login defaults to ldirectord@<hostname>.
    let s = spec(&cf, 6, 0);
    assert_eq!((s.kind, s.transport, s.target.port()), (CheckKind::Sip, Transport::Udp, 5060));
    assert!(s.login.starts_with("ldirectord@"), "{}", s.login);

    // A host name must be resolved first; with its address, ftp defaults apply.
    let v = &cf.virtuals[7];
    assert_eq!(
        spec_for(v, &v.reals[0], &cf.global).unwrap_err(),
        SpecError::Unresolved("ftp.example.test".into())
    );
    let s = spec_for_addr(v, &v.reals[0], "192.0.2.21".parse().unwrap(), &cf.global).unwrap();
    assert_eq!(
        (s.kind, s.target, s.timeout),
        (CheckKind::Ftp, "192.0.2.21:21".parse().unwrap(), Duration::from_secs(4))
    );
    assert_eq!(s.login, "anonymous");
    assert!(s.passwd.starts_with("ldirectord@"));

    // external-perl is run by perl.
    let s = spec(&cf, 8, 0);
    let c = s.command.unwrap();
    assert_eq!(c.program, "perl");
    assert_eq!(c.args[0], "/etc/ha.d/check.pl");

    // The health policy: failurecount, rise 1.
    let p = HealthPolicy::for_virtual(&cf.virtuals[0], &cf.global);
    assert_eq!((p.rise, p.fall), (1, 3));
}

#[test]
fn receive_pattern_errors_are_reported() {
    let text = "virtual=192.0.2.10:80\n\treal=127.0.0.1 gate\n\treceive=\"(?<=x)y\"\n";
    let (cf, _) = parse_ldirectord_cf(Path::new("x.cf"), text).expect("parse");
    let err = spec_for(&cf.virtuals[0], &cf.virtuals[0].reals[0], &cf.global).unwrap_err();
    assert!(matches!(err, SpecError::Receive { .. }), "{err}");
}

#[tokio::test]
async fn failurecount_3_against_a_server() {
    let (a, http) = http_server();
    let spec = CheckSpec::new(CheckKind::Http, a, Duration::from_secs(5));
    let mut c = Checker::new(spec, HealthPolicy::ldirectord(3));
    assert!(!c.health().is_up());
    assert_eq!(c.check().await.1, Some(Transition::Up));
    http.healthy.store(false, Ordering::SeqCst);
    let (r, t) = c.check().await;
    assert!(!r.up && t.is_none());
    assert_eq!(c.health().status(), "up (soft failure 1/3)");
    assert_eq!(c.check().await.1, None);
    assert_eq!(c.check().await.1, Some(Transition::Down));
    assert_eq!(c.check().await.1, None);
    http.healthy.store(true, Ordering::SeqCst);
    assert_eq!(c.check().await.1, Some(Transition::Up));
    let kept: Vec<bool> = c.health().history().map(|r| r.up).collect();
    assert_eq!(kept, [true, false, false, false, false, true]);
}

#[tokio::test]
async fn combined_alternates_connect_and_negotiate() {
    let (a, http) = http_server();
    let mut spec = CheckSpec::new(CheckKind::Http, a, Duration::from_secs(5));
    spec.combined = Some(halo_lb::check::Combined { connects: 2, connect_timeout: Duration::from_secs(1) });
    let mut c = Checker::new(spec, HealthPolicy::default());
    let mut kinds = Vec::new();
    for _ in 0..7 {
        kinds.push(c.next_spec().kind);
        let (r, _) = c.check().await;
        assert!(r.up, "{}", r.reason);
    }
    use CheckKind::{Connect as C, Http as H};
    assert_eq!(kinds, [H, C, C, H, C, C, H]);
    assert_eq!(http.seen.lock().unwrap().len(), 3);
    // A failed negotiate check is retried as negotiate.
    http.healthy.store(false, Ordering::SeqCst);
    assert_eq!(c.next_spec().kind, C);
    c.check().await;
    c.check().await;
    assert_eq!(c.next_spec().kind, H);
    assert!(!c.check().await.0.up);
    assert_eq!(c.next_spec().kind, H);
}
