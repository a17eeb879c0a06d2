//! `auto_failback legacy` with a Heartbeat 3.0.6 peer (spec §3.13.5): the peer never states
//! its holdings (no `starting`, no `resource`); groups move only through `ip-request` /
//! `ip-request-resp`. One engine (n1, halo) is fed hand-made messages from `n2`, a legacy
//! Heartbeat.
use halo_config::AutoFailback;
use halo_core::{Action, CoreConfig, Engine, Event, GroupConfig, Now};
use halo_wire::Message;

const G1: &str = "IPaddr::10.0.0.50/24/eth0";
const G2: &str = "10.0.0.60";

struct Peer {
    seq: u64,
}

impl Peer {
    fn msg(&mut self, kind: &str, fields: &[(&str, &str)]) -> Event {
        self.seq += 1;
        let mut m = Message::of_type(kind);
        for (k, v) in fields {
            m.add(k, v);
        }
        m.add("src", "n2");
        m.add("seq", format!("{:x}", self.seq));
        m.add("hg", "7");
        m.add("ts", "6b49d200");
        Event::Message { link: 0, msg: m }
    }
}

/// n1 (halo, legacy) with G1 preferring n1 and G2 preferring n2; n2 is heard `active`
/// (Heartbeat without flow control: no reqnodes). Returns at comm up.
fn n1_with_legacy_n2(running_at_start: &[&str]) -> (Engine, Peer, Vec<Action>) {
    let mut c = CoreConfig::new("n1", &["n1", "n2"], &["eth0"]);
    c.keepalive_ms = 100;
    c.deadtime_ms = 1000;
    c.initdead_ms = 2000;
    c.auto_failback = AutoFailback::Legacy;
    c.groups = vec![GroupConfig::new(G1, "n1"), GroupConfig::new(G2, "n2")];
    c.running_at_start = running_at_start.iter().map(|s| s.to_string()).collect();
    let mut e = Engine::new(c);
    let mut p = Peer { seq: 0 };
    let mut out = Vec::new();
    e.handle(Now::at(0), Event::Tick, &mut out);
    e.handle(Now::at(10), p.msg("status", &[("st", "active"), ("dt", "3e8")]), &mut out);
    e.handle(Now::at(20), Event::Tick, &mut out);
    assert!(e.comm_up());
    (e, p, out)
}

fn sent<'a>(out: &'a [Action], kind: &str) -> Vec<&'a Message> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(m) if m.kind() == Some(kind) => Some(m),
            _ => None,
        })
        .collect()
}

fn starts(out: &[Action]) -> Vec<String> {
    out.iter()
        .filter_map(|a| match a {
            Action::StartGroup { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

fn stops(out: &[Action]) -> Vec<String> {
    out.iter()
        .filter_map(|a| match a {
            Action::StopGroup { key, .. } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// Keeps n2 alive with statuses and ticks from `from` to `to` (ms).
fn run(e: &mut Engine, p: &mut Peer, from: u64, to: u64, out: &mut Vec<Action>) {
    let mut t = from;
    while t < to {
        t += 100;
        e.handle(Now::at(t), p.msg("status", &[("st", "active"), ("dt", "3e8")]), out);
        e.handle(Now::at(t + 1), Event::Tick, out);
    }
}

#[test]
fn halo_asks_a_silent_heartbeat_for_its_local_group_and_starts_it_only_once_given() {
    let (mut e, mut p, mut out) = n1_with_legacy_n2(&[]);
    run(&mut e, &mut p, 20, 500, &mut out);
    let asked: Vec<&str> = sent(&out, "ip-request").iter().filter_map(|m| m.get("ipaddr")).collect();
    assert_eq!(asked.first(), Some(&G1), "{out:?}");
    assert!(!asked.contains(&G2), "only our local group is asked for: {asked:?}");
    // Past RQSTDELAY with no answer: still nothing starts (n2 may hold both), and the
    // request is repeated (a Heartbeat not yet comm-up drops it).
    run(&mut e, &mut p, 500, 12_000, &mut out);
    assert!(starts(&out).is_empty(), "nothing starts without the answer: {:?}", starts(&out));
    assert!(sent(&out, "ip-request").len() >= 3, "repeated: {}", sent(&out, "ip-request").len());
    // Heartbeat's rc.d/ip-request gave it up and answers.
    out.clear();
    let resp = p.msg("ip-request-resp", &[("dest", "n1"), ("ipaddr", G1), ("weown", "yes"), ("ok", "OK")]);
    e.handle(Now::at(12_050), resp, &mut out);
    assert_eq!(starts(&out), vec![G1.to_string()]);
    e.handle(
        Now::at(12_060),
        Event::GroupStarted { key: G1.into(), ok: true, detail: String::new() },
        &mut out,
    );
    // G2 stays with n2 (presumed) for good while n2 lives; no more requests for G1.
    out.clear();
    run(&mut e, &mut p, 12_060, 30_000, &mut out);
    assert!(starts(&out).is_empty() && stops(&out).is_empty(), "{out:?}");
    assert!(sent(&out, "ip-request").is_empty(), "{out:?}");
}

#[test]
fn an_answer_without_the_group_weown_no_also_lets_halo_start_it() {
    let (mut e, mut p, mut out) = n1_with_legacy_n2(&[]);
    run(&mut e, &mut p, 20, 300, &mut out);
    out.clear();
    let resp = p.msg("ip-request-resp", &[("dest", "n1"), ("ipaddr", G1), ("weown", "no"), ("ok", "OK")]);
    e.handle(Now::at(310), resp, &mut out);
    assert_eq!(starts(&out), vec![G1.to_string()]);
}

#[test]
fn heartbeats_ip_request_for_a_group_halo_runs_stops_it_first_then_answers_weown_yes() {
    // halo holds both (found running at start); n2 comes up and asks for its own group.
    let (mut e, mut p, mut out) = n1_with_legacy_n2(&[G1, G2]);
    run(&mut e, &mut p, 20, 300, &mut out);
    assert!(sent(&out, "ip-request").is_empty(), "we hold our group: nothing to ask");
    out.clear();
    e.handle(Now::at(310), p.msg("ip-request", &[("ipaddr", G2)]), &mut out);
    assert_eq!(stops(&out), vec![G2.to_string()]);
    assert!(sent(&out, "ip-request-resp").is_empty(), "no answer before the stop completes");
    out.clear();
    e.handle(Now::at(400), Event::GroupStopped { key: G2.into(), ok: true, detail: String::new() }, &mut out);
    let r = sent(&out, "ip-request-resp");
    assert_eq!(r.len(), 1, "{out:?}");
    let fields: Vec<(&str, Option<&str>)> =
        ["dest", "ipaddr", "weown", "ok"].iter().map(|f| (*f, r[0].get(f))).collect();
    assert_eq!(
        fields,
        vec![("dest", Some("n2")), ("ipaddr", Some(G2)), ("weown", Some("yes")), ("ok", Some("OK"))]
    );
    // It is n2's now: never restarted here while n2 lives; G1 stays here.
    out.clear();
    run(&mut e, &mut p, 400, 20_000, &mut out);
    assert!(starts(&out).is_empty() && stops(&out).is_empty(), "{out:?}");
    let st = e.resource_status(Now::at(20_000));
    let g2 = st.groups.iter().find(|g| g.key == G2).unwrap();
    assert_eq!(g2.holders, vec!["n2".to_string()]);
}

#[test]
fn heartbeats_ip_request_for_a_group_halo_does_not_run_is_answered_weown_no_at_once() {
    let (mut e, mut p, mut out) = n1_with_legacy_n2(&[]);
    run(&mut e, &mut p, 20, 200, &mut out);
    out.clear();
    e.handle(Now::at(210), p.msg("ip-request", &[("ipaddr", G2)]), &mut out);
    let r = sent(&out, "ip-request-resp");
    assert_eq!(r.len(), 1, "{out:?}");
    assert_eq!((r[0].get("dest"), r[0].get("weown"), r[0].get("ok")), (Some("n2"), Some("no"), Some("OK")));
    assert!(stops(&out).is_empty());
}

#[test]
fn when_the_legacy_peer_dies_halo_takes_everything_and_gives_its_group_back_when_asked() {
    let (mut e, mut p, mut out) = n1_with_legacy_n2(&[]);
    run(&mut e, &mut p, 20, 300, &mut out);
    // n2 leaves gracefully: shutdone (it released everything first).
    out.clear();
    e.handle(Now::at(310), p.msg("shutdone", &[("st", "dead")]), &mut out);
    let mut s = starts(&out);
    s.sort();
    assert_eq!(s, vec![G2.to_string(), G1.to_string()], "{out:?}");
    for k in [G1, G2] {
        e.handle(
            Now::at(320),
            Event::GroupStarted { key: k.into(), ok: true, detail: String::new() },
            &mut out,
        );
    }
    // n2 restarts (new generation) and asks for its group at comm up.
    out.clear();
    let mut p = Peer { seq: 0 };
    let st = |p: &mut Peer| {
        let mut ev = p.msg("status", &[("st", "active"), ("dt", "3e8")]);
        if let Event::Message { msg, .. } = &mut ev {
            msg.set("hg", "8");
        }
        ev
    };
    e.handle(Now::at(5000), st(&mut p), &mut out);
    e.handle(Now::at(5001), Event::Tick, &mut out);
    // A fresh start (new generation after its death): it takes its group at its comm up,
    // asking or not, so halo releases it at once.
    assert_eq!(stops(&out), vec![G2.to_string()], "{out:?}");
    e.handle(
        Now::at(5050),
        Event::GroupStopped { key: G2.into(), ok: true, detail: String::new() },
        &mut out,
    );
    e.handle(Now::at(5060), Event::Tick, &mut out);
    let mut ev = p.msg("ip-request", &[("ipaddr", G2)]);
    if let Event::Message { msg, .. } = &mut ev {
        msg.set("hg", "8");
    }
    e.handle(Now::at(5100), ev, &mut out);
    let r = sent(&out, "ip-request-resp");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].get("weown"), Some("no"));
    assert_eq!(starts(&out), Vec::<String>::new());
}

#[test]
fn a_heartbeat_that_takes_its_group_without_asking_gets_it_and_halo_stops_its_copy() {
    // Heartbeat's req_our_resources counts active nodes before it records our status: it
    // may believe itself alone and take its group (self-addressed ip-request-resp).
    let (mut e, mut p, mut out) = n1_with_legacy_n2(&[G1, G2]);
    run(&mut e, &mut p, 20, 300, &mut out);
    out.clear();
    let take = p.msg("ip-request-resp", &[("dest", "n2"), ("ipaddr", G2), ("weown", "yes"), ("ok", "OK")]);
    e.handle(Now::at(310), take, &mut out);
    run(&mut e, &mut p, 310, 600, &mut out);
    assert_eq!(stops(&out), vec![G2.to_string()], "{out:?}");
    assert!(sent(&out, "ip-request-resp").is_empty(), "nothing to answer: {out:?}");
    e.handle(Now::at(700), Event::GroupStopped { key: G2.into(), ok: true, detail: String::new() }, &mut out);
    out.clear();
    run(&mut e, &mut p, 700, 15_000, &mut out);
    assert!(starts(&out).is_empty() && stops(&out).is_empty(), "{out:?}");
}
