//! The ldirectord.cf examples under `examples/` parse into the model the director runs from:
//! seed 002's director and the example Debian ships with ldirectord 1:4.12.0 (copied from
//! /usr/share/doc/ldirectord/examples/ldirectord.cf), including every sample section it holds
//! commented out.

use std::path::{Path, PathBuf};

use halo_config::ldirectord_cf::{
    CheckType, DaemonStatus, Forward, Host, HttpMethod, LogTarget, Protocol, Service,
};
use halo_config::{parse_ldirectord_cf, Fallback, LdirectordCf, VirtualAddr};

fn example(path: &str) -> (PathBuf, String) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(path);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (p, text)
}

fn load(path: &str) -> (LdirectordCf, Vec<String>) {
    let (p, text) = example(path);
    match parse_ldirectord_cf(&p, &text) {
        Ok((cfg, w)) => (cfg, w.iter().map(|d| d.to_string()).collect()),
        Err(e) => panic!("examples/{path} was refused:\n{e}"),
    }
}

fn ip(s: &str) -> Host {
    Host::Ip(s.parse().unwrap_or_else(|e| panic!("{s}: {e}")))
}

#[test]
fn seed_002_director() {
    let (cfg, w) = load("seed-002-director/ldirectord.cf");
    assert!(w.is_empty(), "{w:?}");
    let g = &cfg.global;
    assert_eq!(g.checktimeout, Some(10));
    assert_eq!(g.negotiatetimeout, None);
    assert_eq!(g.checkinterval, 10);
    assert_eq!(g.emailalert, vec!["root"]);
    assert_eq!(g.emailalertfreq, 0);
    assert_eq!(g.emailalertstatus, vec![DaemonStatus::Stopping]);
    assert!(!g.quiescent);
    assert_eq!(cfg.virtuals.len(), 1);
    let v = &cfg.virtuals[0];
    assert_eq!(v.addr, VirtualAddr::Ip { ip: "192.168.1.199".parse().unwrap(), port: 80 });
    assert_eq!(v.protocol, Protocol::Tcp);
    assert_eq!(v.checktype, CheckType::Negotiate);
    assert_eq!(v.service, Service::Http);
    assert_eq!(v.checkport, Some(80));
    assert_eq!(v.scheduler, "rr");
    // The seed's log: "Checking negotiate ... timeout" uses checktimeout for both.
    assert_eq!(v.effective_checktimeout(g), 10);
    assert_eq!(v.effective_negotiatetimeout(g), 10);
    assert_eq!(v.reals.len(), 2);
    for (r, (addr, body)) in v.reals.iter().zip([("192.168.1.61", "N1"), ("192.168.1.62", "N2")]) {
        assert_eq!(r.addr, ip(addr));
        assert_eq!(r.port, Some(80));
        assert_eq!(r.forward, Forward::Gate);
        assert_eq!(r.weight, 1);
        assert_eq!(v.request_for(r), "testcluster.html");
        assert_eq!(v.receive_for(r), body);
        assert_eq!(v.checkport_for(r), Some(80));
    }
    assert_eq!(v.effective_fallback(g), None);
}

#[test]
fn debian_example() {
    let (cfg, w) = load("debian-ldirectord/ldirectord.cf");
    assert!(w.is_empty(), "{w:?}");
    let g = &cfg.global;
    assert_eq!(g.checktimeout, Some(3));
    assert_eq!(g.checkinterval, 1);
    assert!(g.autoreload);
    assert!(!g.quiescent);
    assert_eq!(g.logfile, LogTarget::File("/var/log/ldirectord.log".into()));
    assert_eq!(cfg.virtuals.len(), 1);
    let v = &cfg.virtuals[0];
    assert_eq!(v.line, 25);
    assert_eq!(v.id(), "tcp:192.168.6.240:80");
    assert_eq!(v.servicename.as_deref(), Some("Web Site"));
    assert_eq!(v.comment.as_deref(), Some("Test load balanced web site"));
    let reals: Vec<String> =
        v.reals.iter().map(|r| format!("{}:{:?} {}", r.addr, r.port, r.forward)).collect();
    assert_eq!(
        reals,
        ["192.168.6.2:Some(80) gate", "192.168.6.3:Some(80) gate", "192.168.6.6:Some(80) gate"]
    );
    assert_eq!(v.fallback, Some(Fallback { addr: ip("127.0.0.1"), port: Some(80), forward: Forward::Gate }));
    assert_eq!(v.service, Service::Http);
    assert_eq!(v.scheduler, "rr");
    assert_eq!(v.persistent, None);
    assert_eq!(v.protocol, Protocol::Tcp);
    assert_eq!(v.checktype, CheckType::Negotiate);
    assert_eq!(v.checkport, Some(80));
    assert_eq!(v.request.as_deref(), Some("index.html"));
    assert_eq!(v.receive.as_deref(), Some("Test Page"));
    assert_eq!(v.virtualhost.as_deref(), Some("www.x.y.z"));
    assert_eq!(v.httpmethod, HttpMethod::Get);
    // ldirectord -d on this file prints checktimeout 3 and negotiatetimeout 3.
    assert_eq!(v.effective_checktimeout(g), 3);
    assert_eq!(v.effective_negotiatetimeout(g), 3);
}

/// The sample sections the Debian example holds commented out, each uncommented on its own
/// (several reuse the same virtual address, so together they would be duplicates).
fn debian_samples() -> Vec<(usize, String)> {
    let (_, text) = example("debian-ldirectord/ldirectord.cf");
    let mut out = Vec::new();
    let mut cur: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("#virtual") {
            if let Some(done) = cur.take() {
                out.push(done);
            }
            cur = Some((i + 1, format!("virtual{rest}\n")));
        } else if let Some(rest) = line.strip_prefix("#\t") {
            if let Some((_, body)) = cur.as_mut() {
                body.push('\t');
                body.push_str(rest);
                body.push('\n');
            }
        } else if let Some(done) = cur.take() {
            out.push(done);
        }
    }
    out.extend(cur);
    out
}

#[test]
fn debian_example_commented_samples() {
    let samples = debian_samples();
    assert_eq!(samples.len(), 19, "{samples:#?}");
    for (line, text) in &samples {
        let file = PathBuf::from(format!("sample-at-line-{line}"));
        let result = parse_ldirectord_cf(&file, text);
        // The SIP sample writes `real=192.168.6.2::5060 gate`, which ldirectord misreads (its
        // unanchored pattern takes "5060" as the host, i.e. 0.0.19.196); halo refuses it.
        if text.contains("::5060") {
            let e = result.expect_err("the SIP sample has '::' before its ports");
            assert_eq!(e.errors.len(), 3, "{e}");
            assert!(
                e.errors[0]
                    .message
                    .contains("write one ':' between the address and the port, as in 192.168.6.2:5060"),
                "{e}"
            );
            continue;
        }
        let (cfg, w) = match result {
            Ok(r) => r,
            Err(e) => panic!("sample at line {line} refused:\n{e}\n{text}"),
        };
        let w: Vec<String> = w.iter().map(|d| d.to_string()).collect();
        let v = &cfg.virtuals[0];
        match v.port() {
            // The ftp sample sets scheduler twice.
            21 => assert!(w.len() == 1 && w[0].contains("scheduler is given again"), "{w:?}"),
            _ => assert!(w.is_empty(), "sample at line {line}: {w:?}"),
        }
        match v.port() {
            0 => {
                assert_eq!(v.addr, VirtualAddr::Fwmark(1));
                assert_eq!(v.service, Service::Http);
                assert_eq!(v.protocol, Protocol::Fwm);
            }
            53 => assert_eq!(v.protocol, Protocol::Udp),
            23 => {
                assert_eq!(v.service, Service::None);
                assert_eq!(v.checktype, CheckType::On);
                assert_eq!(v.persistent, Some(600));
            }
            3306 | 5432 | 1521 => {
                assert_eq!(v.reals[0].addr, Host::Name("sql01".into()));
                assert_eq!(v.reals[0].range_end, Some(Host::Name("sql03".into())));
                assert_eq!(v.reals[0].weight, 10);
                assert!(v.login.is_some() && v.passwd.is_some() && v.database.is_some());
                assert_eq!(v.request.as_deref(), Some("SELECT * FROM link"));
            }
            1812 => {
                assert_eq!(v.service, Service::Radius);
                assert_eq!(v.secret.as_deref(), Some("somesecret"));
                assert_eq!(v.effective_checktimeout(&cfg.global), 1);
            }
            119 if v.v6 => {
                assert_eq!(v.id(), "tcp:[2001:db8::5]:119");
                assert_eq!(v.reals[0].addr, ip("2001:db8:0:1::4"));
                assert_eq!(v.fallback.as_ref().map(|f| &f.addr), Some(&ip("::1")));
            }
            80 => assert!(v.reals.len() == 1 || v.reals.len() == 7, "{:?}", v.reals),
            _ => {}
        }
    }
}
