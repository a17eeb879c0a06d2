//! Membership scenarios driven in memory: several engines, a virtual clock and a virtual
//! network whose links can be cut per direction. Messages go through the real wire codec
//! (encode, sign, decode, verify) so that what is tested is what travels.
use halo_core::{Action, CoreConfig, Engine, Event, Level, NodeState, Now};
use halo_wire::{AuthMethod, Keyring, Message};
use std::collections::BTreeSet;

struct Sim {
    now: u64,
    engines: Vec<Engine>,
    names: Vec<String>,
    /// (from, to, link) pairs that drop everything.
    cut: BTreeSet<(usize, usize, usize)>,
    /// Drop every n-th message from a node (0 = none), to exercise retransmission.
    lossy: Option<(usize, u64)>,
    sent_count: u64,
    queue: Vec<(u64, usize, usize, Vec<u8>)>,
    logs: Vec<(u64, usize, Level, String)>,
    down: BTreeSet<usize>,
    keyring: Keyring,
    links: usize,
    delay_ms: u64,
}

impl Sim {
    fn new(n: usize, links: usize, tweak: impl Fn(&mut CoreConfig)) -> Sim {
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let link_names: Vec<String> = (0..links).map(|l| format!("eth{l}")).collect();
        let link_refs: Vec<&str> = link_names.iter().map(|s| s.as_str()).collect();
        let engines = (0..n)
            .map(|i| {
                let mut cfg = CoreConfig::new(&names[i], &refs, &link_refs);
                cfg.keepalive_ms = 100;
                cfg.deadtime_ms = 1000;
                cfg.warntime_ms = 500;
                cfg.initdead_ms = 2000;
                cfg.generation = 100 + i as u64;
                cfg.uuid = [i as u8 + 1; 16];
                cfg.seed = i as u64 + 7;
                tweak(&mut cfg);
                Engine::new(cfg)
            })
            .collect();
        Sim {
            now: 0,
            engines,
            names,
            cut: BTreeSet::new(),
            lossy: None,
            sent_count: 0,
            queue: Vec::new(),
            logs: Vec::new(),
            down: BTreeSet::new(),
            keyring: Keyring::new(1, vec![(1, AuthMethod::Sha1, b"testkey".to_vec())]),
            links,
            delay_ms: 1,
        }
    }

    fn apply(&mut self, from: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(m) => {
                    self.sent_count += 1;
                    if let Some((node, every)) = self.lossy {
                        if node == from && self.sent_count.is_multiple_of(every) {
                            continue;
                        }
                    }
                    let bytes = halo_wire::encode(&m, &self.keyring);
                    for to in 0..self.engines.len() {
                        for link in 0..self.links {
                            if to != from && !self.cut.contains(&(from, to, link)) {
                                self.queue.push((self.now + self.delay_ms, to, link, bytes.clone()));
                            }
                        }
                    }
                }
                Action::Log(level, text) => self.logs.push((self.now, from, level, text)),
                // No haresources in these scenarios: no group actions.
                _ => {}
            }
        }
    }

    fn step(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 1;
            let now = Now::at(self.now);
            let due: Vec<_> = {
                let (due, rest): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|q| q.0 <= self.now);
                self.queue = rest;
                due
            };
            for (_, to, link, bytes) in due {
                if self.down.contains(&to) {
                    continue;
                }
                let msg = halo_wire::decode(&bytes, &self.keyring).expect("sim packets verify");
                let mut out = Vec::new();
                self.engines[to].handle(now, Event::Message { link, msg }, &mut out);
                self.apply(to, out);
            }
            for i in 0..self.engines.len() {
                if self.down.contains(&i) {
                    continue;
                }
                if self.engines[i].next_deadline() <= self.now {
                    let mut out = Vec::new();
                    self.engines[i].handle(now, Event::Tick, &mut out);
                    self.apply(i, out);
                }
            }
        }
    }

    fn state(&self, of: usize, about: usize) -> NodeState {
        self.engines[of].node_state(&self.names[about]).unwrap()
    }

    fn all_active(&self) -> bool {
        (0..self.engines.len()).filter(|i| !self.down.contains(i)).all(|i| {
            (0..self.engines.len())
                .filter(|j| !self.down.contains(j))
                .all(|j| self.state(i, j) == NodeState::Active)
        })
    }

    fn logged(&self, node: usize, needle: &str) -> bool {
        self.logs.iter().any(|(_, n, _, t)| *n == node && t.contains(needle))
    }

    fn cut_node(&mut self, node: usize, link: usize) {
        for other in 0..self.engines.len() {
            self.cut.insert((node, other, link));
            self.cut.insert((other, node, link));
        }
    }

    fn heal_node(&mut self, node: usize, link: usize) {
        for other in 0..self.engines.len() {
            self.cut.remove(&(node, other, link));
            self.cut.remove(&(other, node, link));
        }
    }
}

#[test]
fn three_nodes_become_active_for_each_other_without_waiting_initdead() {
    let mut sim = Sim::new(3, 1, |_| {});
    sim.step(600);
    assert!(sim.all_active(), "all three nodes must be active for each other well before initdead");
    for i in 0..3 {
        assert!(sim.logged(i, "Comm_now_up(): updating status to active"));
        assert!(sim.logged(i, "Link n"), "link up lines expected");
    }
    let st = sim.engines[0].status(Now::at(sim.now));
    assert_eq!(st.nodes.len(), 3);
    assert!(st.nodes.iter().all(|n| n.state == "active"));
    assert!(st.nodes.iter().all(|n| n.links.iter().all(|l| l.state == "up")));
    assert_eq!(st.nodes[1].generation, 101);
}

#[test]
fn a_silent_node_is_dead_after_deadtime_and_returns_after_partition() {
    let mut sim = Sim::new(3, 1, |_| {});
    // Past the first 5 s, during which a starting node advertises deadtime + 2 s.
    sim.step(6000);
    assert!(sim.all_active());
    sim.cut_node(2, 0);
    let cut_at = sim.now;
    sim.step(900);
    assert_eq!(sim.state(0, 2), NodeState::Active, "not dead before deadtime");
    sim.step(400);
    assert_eq!(sim.state(0, 2), NodeState::Dead);
    assert_eq!(sim.state(1, 2), NodeState::Dead);
    assert_eq!(sim.state(2, 0), NodeState::Dead);
    assert_eq!(sim.state(0, 1), NodeState::Active, "the others stay alive for each other");
    let (t, _, lvl, _) = sim.logs.iter().find(|(_, n, _, t)| *n == 0 && t == "node n3: is dead").unwrap();
    assert_eq!(*lvl, Level::Warn);
    // The last status came at most one keepalive (100 ms) before the cut.
    assert!(*t > cut_at + 900 && *t <= cut_at + 1002, "declared dead at {} (cut at {cut_at})", t);
    assert!(sim.logged(0, "Link n3:eth0 dead."));
    sim.heal_node(2, 0);
    sim.step(300);
    assert!(sim.all_active());
    assert!(sim.logged(0, "Cluster node n3 returning after partition."));
}

#[test]
fn losing_one_link_of_two_is_a_warning_not_a_death() {
    let mut sim = Sim::new(2, 2, |_| {});
    sim.step(6000);
    assert!(sim.all_active());
    sim.cut_node(1, 0);
    sim.step(2000);
    assert_eq!(sim.state(0, 1), NodeState::Active);
    let line = sim.logs.iter().find(|(_, n, _, t)| *n == 0 && t.starts_with("Link n2:eth0 dead.")).unwrap();
    assert_eq!(line.2, Level::Warn);
    let st = sim.engines[0].status(Now::at(sim.now));
    let n2 = &st.nodes[1];
    assert_eq!(n2.links[0].state, "dead");
    assert_eq!(n2.links[1].state, "up");
    sim.heal_node(1, 0);
    sim.step(500);
    assert!(sim.logs.iter().filter(|(_, n, _, t)| *n == 0 && t == "Link n2:eth0 up.").count() >= 2);
    // Both links gone: now it is a death.
    sim.cut_node(1, 0);
    sim.cut_node(1, 1);
    sim.step(1200);
    assert_eq!(sim.state(0, 1), NodeState::Dead);
}

#[test]
fn lost_messages_are_requested_and_retransmitted() {
    let mut sim = Sim::new(2, 1, |_| {});
    sim.step(1000);
    sim.lossy = Some((1, 3));
    sim.step(3000);
    sim.lossy = None;
    sim.step(1000);
    assert!(sim.all_active());
    assert!(sim.logged(0, "lost packet(s) for [n2]"));
    assert!(sim.logged(0, "No pkts missing from n2!"));
    let st1 = sim.engines[1].status(Now::at(sim.now));
    assert!(st1.retransmitted > 0, "n2 must have answered NS_rexmit");
    let st0 = sim.engines[0].status(Now::at(sim.now));
    assert!(st0.nodes[1].lost_packets > 0);
}

#[test]
fn a_peer_without_protocol_disables_flow_control_and_comm_still_comes_up() {
    let mut sim = Sim::new(2, 1, |c| {
        if c.node == "n2" {
            c.flow_control = false;
        }
    });
    sim.step(1000);
    assert!(sim.all_active());
    assert!(sim.logged(0, "flow control disabled due to different version heartbeat"));
}

#[test]
fn graceful_shutdown_is_not_a_death() {
    let mut sim = Sim::new(2, 1, |_| {});
    sim.step(1000);
    let mut out = Vec::new();
    sim.engines[1].handle(Now::at(sim.now), Event::Shutdown, &mut out);
    sim.apply(1, out);
    sim.down.insert(1);
    sim.step(20);
    assert_eq!(sim.state(0, 1), NodeState::Dead);
    assert!(sim.logged(0, "Received shutdown notice from 'n2'."));
    assert!(!sim.logged(0, "node n2: is dead\u{0}"));
    assert!(!sim.logs.iter().any(|(_, n, l, t)| *n == 0 && *l == Level::Warn && t == "node n2: is dead"));
}

#[test]
fn a_node_alone_goes_active_after_initdead() {
    let mut sim = Sim::new(2, 1, |_| {});
    sim.down.insert(1);
    sim.step(1900);
    assert_eq!(sim.engines[0].state(), NodeState::Up);
    sim.step(200);
    assert_eq!(sim.engines[0].state(), NodeState::Active);
    assert_eq!(sim.state(0, 1), NodeState::Dead);
}

#[test]
fn replayed_older_generation_is_dropped_and_restart_is_recognised() {
    let mut sim = Sim::new(2, 1, |_| {});
    sim.step(1000);
    let keyring = sim.keyring.clone();
    // A message of n2's from an older generation, correctly signed (a captured replay).
    let mut old = Message::of_type("status");
    old.add("st", "active");
    old.add("dt", "3e8");
    old.add("src", "n2");
    old.add("seq", "ffff");
    old.add("hg", "1");
    old.add("ts", "5");
    let msg = halo_wire::decode(&halo_wire::encode(&old, &keyring), &keyring).unwrap();
    let mut out = Vec::new();
    sim.engines[0].handle(Now::at(sim.now), Event::Message { link: 0, msg }, &mut out);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Log(Level::Warn, t) if t.contains("attempted replay attack [n2]"))));
    let st = sim.engines[0].status(Now::at(sim.now));
    assert!(st.dropped.iter().any(|(r, c)| *r == "replay" && *c == 1));
    assert_eq!(st.nodes[1].generation, 101);

    // A restart: a fresh engine for n2 with a higher generation.
    sim.down.insert(1);
    sim.step(300);
    let names = ["n1", "n2"];
    let mut cfg = CoreConfig::new("n2", &names, &["eth0"]);
    cfg.keepalive_ms = 100;
    cfg.deadtime_ms = 1000;
    cfg.warntime_ms = 500;
    cfg.initdead_ms = 2000;
    cfg.generation = 102;
    sim.engines[1] = Engine::new(cfg);
    sim.down.remove(&1);
    sim.step(500);
    assert!(sim.logged(0, "Heartbeat restart on node n2"));
    assert!(sim.all_active());
    assert_eq!(sim.engines[0].status(Now::at(sim.now)).nodes[1].generation, 102);
}

#[test]
fn late_heartbeats_are_warned() {
    let mut sim = Sim::new(2, 1, |_| {});
    sim.step(1000);
    sim.cut_node(1, 0);
    sim.step(700);
    sim.heal_node(1, 0);
    sim.step(300);
    assert!(sim.logged(0, "Late heartbeat: Node n2: interval"));
    assert_eq!(sim.state(0, 1), NodeState::Active);
}

#[test]
fn our_own_stall_does_not_kill_the_others() {
    let mut sim = Sim::new(2, 1, |_| {});
    sim.step(1000);
    // n1 does not run for 3 s (longer than deadtime) while n2 keeps sending; when n1
    // wakes, the runtime first hands it the queued packets, then the tick.
    sim.down.insert(0);
    let start = sim.now;
    sim.step(3000);
    sim.down.remove(&0);
    // Deliver what was queued for n1 during the stall (the socket buffer) at wake-up.
    let now = Now::at(sim.now);
    let mut out = Vec::new();
    sim.engines[0].handle(now, Event::Tick, &mut out);
    sim.apply(0, out);
    assert!(sim.logged(0, "halo itself was late by"), "the stall must be noticed");
    sim.step(200);
    assert_eq!(
        sim.state(0, 1),
        NodeState::Active,
        "n2 must not be declared dead because n1 stalled (stall began at {start})"
    );
}

impl Sim {
    /// Hands `bytes` to node `to` as if they arrived on `link` now, and returns what it
    /// does in return (not sent on).
    fn inject(&mut self, to: usize, link: usize, bytes: &[u8]) -> Vec<Action> {
        let msg = halo_wire::decode(bytes, &self.keyring).expect("injected packets verify");
        let mut out = Vec::new();
        self.engines[to].handle(Now::at(self.now), Event::Message { link, msg }, &mut out);
        out
    }

    /// A packet of `kind` in flight from `from` to `to` (stepping until one is).
    fn capture(&mut self, from: &str, to: usize, kind: &str) -> Vec<u8> {
        for _ in 0..1000 {
            let found = self.queue.iter().find(|q| {
                q.1 == to
                    && halo_wire::decode(&q.3, &self.keyring)
                        .is_ok_and(|m| m.kind() == Some(kind) && m.get("src") == Some(from))
            });
            if let Some(q) = found {
                return q.3.clone();
            }
            self.step(1);
        }
        panic!("no {kind} from {from} in flight");
    }

    fn dropped(&self, node: usize, reason: &str) -> u64 {
        let st = self.engines[node].status(Now::at(self.now));
        st.dropped.iter().find(|(r, _)| *r == reason).map_or(0, |(_, c)| *c)
    }
}

/// The messages of `out` retransmitted with sequence number `seq`.
fn resent(out: &[Action], seq: u64) -> usize {
    out.iter().filter(|a| matches!(a, Action::Send(m) if m.get_hex("seq") == Some(seq))).count()
}

#[test]
fn a_replayed_ns_rexmit_is_served_once() {
    let mut sim = Sim::new(2, 1, |_| {});
    sim.step(1000);
    assert!(sim.all_active());
    // n2 asks n1 for its message 5 again, as it would after losing it (NS_rexmit carries
    // no seq: only the generation and the sender's wall clock in seconds).
    let rexmit = |ts: u64| {
        let mut m = Message::of_type("NS_rexmit");
        m.add("dest", "n1");
        m.add("firstseq", "5");
        m.add("lastseq", "5");
        m.add("src", "n2");
        m.add("hg", format!("{:x}", 101));
        m.add("ts", format!("{ts:x}"));
        m.add("ttl", "3");
        m
    };
    let ts = Now::at(sim.now).wall_secs;
    let first = halo_wire::encode(&rexmit(ts), &sim.keyring);
    let out = sim.inject(0, 0, &first);
    assert_eq!(resent(&out, 5), 1, "the request is served: {out:?}");
    let duplicates = sim.dropped(0, "duplicate");
    // The same packet again, later than Heartbeat's own resend damping (max_rexmit_delay):
    // a replay, not served.
    sim.step(300);
    let out = sim.inject(0, 0, &first);
    assert_eq!(resent(&out, 5), 0, "a replayed NS_rexmit must not be served again: {out:?}");
    assert_eq!(sim.dropped(0, "duplicate"), duplicates + 1, "the replay is counted as a duplicate");
    // n2 asking again a second later (a new request: its ts moved on) is served.
    sim.step(700);
    let again = halo_wire::encode(&rexmit(ts + 1), &sim.keyring);
    let out = sim.inject(0, 0, &again);
    assert_eq!(resent(&out, 5), 1, "a new request for the same message is served: {out:?}");
    // Seconds later (n2's heartbeats went on meanwhile) the first request is stale.
    sim.step(3000);
    assert!(sim.all_active());
    let out = sim.inject(0, 0, &first);
    assert_eq!(resent(&out, 5), 0, "{out:?}");
    assert_eq!(sim.dropped(0, "stale_ns"), 1);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Log(Level::Warn, t) if t.contains("dropped an old NS_rexmit from n2"))));
    let st = sim.engines[0].status(Now::at(sim.now));
    assert_eq!(st.retransmitted, 2, "two requests served, the replays not");
}

#[test]
fn a_replayed_old_heartbeat_does_not_keep_a_dead_link_up() {
    let mut sim = Sim::new(2, 2, |_| {});
    sim.step(6000);
    assert!(sim.all_active());
    // An attacker captured a heartbeat of n2 on the way to n1.
    let captured = sim.capture("n2", 0, "status");
    // n2's second link fails; the attacker keeps replaying the capture on it.
    sim.cut_node(1, 1);
    for _ in 0..40 {
        sim.step(50);
        sim.inject(0, 1, &captured);
    }
    assert_eq!(sim.state(0, 1), NodeState::Active, "n2 is still heard on eth0");
    assert!(sim.logged(0, "Link n2:eth1 dead."), "a replayed heartbeat kept the dead link up");
    let st = sim.engines[0].status(Now::at(sim.now));
    assert_eq!(st.nodes[1].links[0].state, "up");
    assert_eq!(st.nodes[1].links[1].state, "dead");
    let replays = sim.dropped(0, "duplicate") + sim.dropped(0, "stale_seq");
    assert!(replays >= 40, "the replays are counted: {replays}");
    // n2 goes away entirely: replays on both links revive neither n2 nor a link.
    sim.cut_node(1, 0);
    let ups = |sim: &Sim| sim.logs.iter().filter(|(_, n, _, t)| *n == 0 && t.ends_with(" up.")).count();
    let ups_before = ups(&sim);
    for _ in 0..40 {
        sim.step(50);
        sim.inject(0, 0, &captured);
        sim.inject(0, 1, &captured);
    }
    assert_eq!(sim.state(0, 1), NodeState::Dead);
    let st = sim.engines[0].status(Now::at(sim.now));
    assert!(st.nodes[1].links.iter().all(|l| l.state == "dead"), "{:?}", st.nodes[1].links);
    assert_eq!(ups(&sim), ups_before, "no link came up again");
}
