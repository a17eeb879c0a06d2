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
