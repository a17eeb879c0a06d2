//! Resource placement driven in memory: engines with haresources groups, a virtual clock,
//! a virtual network (through the real codec), and a virtual executor that "runs" a group's
//! start or stop after a few milliseconds. Every step checks the safety invariant that
//! matters most: no group runs on two nodes at once while the nodes agree on membership.
use halo_config::AutoFailback;
use halo_core::{
    Action, CloneConfig, ColocationConfig, CoreConfig, Engine, Event, GroupConfig, Level, Now, OperatorCmd,
    OrderConfig, RscSet,
};
use halo_wire::{AuthMethod, Keyring};
use std::collections::{BTreeMap, BTreeSet};

const AGENT_MS: u64 = 5;

struct Sim {
    now: u64,
    engines: Vec<Engine>,
    gens: Vec<u64>,
    cfg: Vec<CoreConfig>,
    queue: Vec<(u64, usize, Vec<u8>)>,
    /// (due, node, key, start?, ok)
    agents: Vec<(u64, usize, String, bool, bool)>,
    /// Groups that really run on each node (what the executor did).
    running: Vec<BTreeSet<String>>,
    /// Group starts that must fail, per node.
    fail_start: BTreeSet<(usize, String)>,
    down: BTreeSet<usize>,
    cut: BTreeSet<usize>,
    /// One-way cuts: messages from the first node to the second are lost.
    one_way: BTreeSet<(usize, usize)>,
    logs: Vec<(u64, usize, Level, String)>,
    starts: Vec<(u64, usize, String)>,
    stops: Vec<(u64, usize, String)>,
    exited: BTreeSet<usize>,
    keyring: Keyring,
    /// Longest time any group ran on two nodes at once while no cable was cut.
    max_double_ms: u64,
    double_since: BTreeMap<String, u64>,
    /// Nodes whose ping node answers them (when ping nodes are configured).
    ping_ok: Vec<bool>,
    /// Fence requests: (time, requester, target).
    fences: Vec<(u64, usize, String)>,
    /// `stonith` messages sent: (sender, node, result).
    stonith_msgs: Vec<(usize, String, String)>,
}

fn groups() -> Vec<GroupConfig> {
    vec![GroupConfig::new("IPaddr::10.0.0.50/24/eth0", "n1"), GroupConfig::new("10.0.0.60", "n2")]
}

impl Sim {
    fn new(n: usize, failback: AutoFailback) -> Sim {
        Sim::with(n, failback, |_| {})
    }

    /// A cluster whose configurations `configure` adjusts (halo.toml's placement).
    fn with(n: usize, failback: AutoFailback, configure: impl Fn(&mut CoreConfig)) -> Sim {
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let cfg: Vec<CoreConfig> = (0..n)
            .map(|i| {
                let mut c = CoreConfig::new(&names[i], &refs, &["eth0"]);
                c.keepalive_ms = 100;
                c.deadtime_ms = 1000;
                c.warntime_ms = 500;
                c.initdead_ms = 2000;
                c.generation = 100;
                c.uuid = [i as u8 + 1; 16];
                c.seed = i as u64 + 3;
                c.groups = groups();
                c.auto_failback = failback;
                configure(&mut c);
                c
            })
            .collect();
        let engines = cfg.iter().cloned().map(Engine::new).collect();
        Sim {
            now: 0,
            engines,
            gens: vec![100; n],
            cfg,
            queue: Vec::new(),
            agents: Vec::new(),
            running: vec![BTreeSet::new(); n],
            fail_start: BTreeSet::new(),
            down: BTreeSet::new(),
            cut: BTreeSet::new(),
            one_way: BTreeSet::new(),
            logs: Vec::new(),
            starts: Vec::new(),
            stops: Vec::new(),
            exited: BTreeSet::new(),
            keyring: Keyring::new(1, vec![(1, AuthMethod::Sha1, b"k".to_vec())]),
            max_double_ms: 0,
            double_since: BTreeMap::new(),
            ping_ok: vec![true; n],
            fences: Vec::new(),
            stonith_msgs: Vec::new(),
        }
    }

    fn apply(&mut self, from: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(m) => {
                    if m.kind() == Some("stonith") {
                        let f = |k: &str| m.get(k).unwrap_or("").to_string();
                        self.stonith_msgs.push((from, f("node"), f("result")));
                    }
                    if self.cut.contains(&from) {
                        continue;
                    }
                    let bytes = halo_wire::encode(&m, &self.keyring);
                    for to in 0..self.engines.len() {
                        if to != from && !self.cut.contains(&to) && !self.one_way.contains(&(from, to)) {
                            self.queue.push((self.now + 1, to, bytes.clone()));
                        }
                    }
                }
                Action::Log(l, t) => self.logs.push((self.now, from, l, t)),
                Action::StartGroup { key, .. } => {
                    let ok = !self.fail_start.contains(&(from, key.clone()));
                    self.starts.push((self.now, from, key.clone()));
                    self.agents.push((self.now + AGENT_MS, from, key, true, ok));
                }
                Action::StopGroup { key, .. } => {
                    self.stops.push((self.now, from, key.clone()));
                    self.agents.push((self.now + AGENT_MS, from, key, false, true))
                }
                Action::Announce { .. } => {}
                Action::Fence { node } => self.fences.push((self.now, from, node)),
                Action::Exit => {
                    self.exited.insert(from);
                }
            }
        }
    }

    fn handle(&mut self, i: usize, ev: Event) {
        let mut out = Vec::new();
        self.engines[i].handle(Now::at(self.now), ev, &mut out);
        self.apply(i, out);
    }

    fn step(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += 1;
            let (due, rest): (Vec<_>, Vec<_>) = self.queue.drain(..).partition(|q| q.0 <= self.now);
            self.queue = rest;
            for (_, to, bytes) in due {
                if self.down.contains(&to) || self.exited.contains(&to) {
                    continue;
                }
                let msg = halo_wire::decode(&bytes, &self.keyring).expect("verifies");
                self.handle(to, Event::Message { link: 0, msg });
            }
            let (due, rest): (Vec<_>, Vec<_>) = self.agents.drain(..).partition(|a| a.0 <= self.now);
            self.agents = rest;
            for (_, node, key, start, ok) in due {
                if self.down.contains(&node) {
                    continue;
                }
                if start {
                    if ok {
                        self.running[node].insert(key.clone());
                    }
                    self.handle(
                        node,
                        Event::GroupStarted { key, ok, detail: if ok { "" } else { "exit 1" }.into() },
                    );
                } else {
                    self.running[node].remove(&key);
                    self.handle(node, Event::GroupStopped { key, ok, detail: String::new() });
                }
            }
            for i in 0..self.engines.len() {
                if self.down.contains(&i) || self.exited.contains(&i) {
                    continue;
                }
                if self.now.is_multiple_of(100) && self.ping_ok[i] && !self.cfg[i].ping_nodes.is_empty() {
                    self.handle(i, Event::PingReply { node: "gw".into() });
                }
                if self.engines[i].next_deadline() <= self.now {
                    self.handle(i, Event::Tick);
                }
            }
            self.check_double();
        }
    }

    fn check_double(&mut self) {
        // Groups only: a clone runs on many nodes by design.
        for g in self.cfg[0].groups.clone() {
            let holders = (0..self.engines.len())
                .filter(|i| !self.down.contains(i) && self.running[*i].contains(&g.key))
                .count();
            if holders > 1 && self.cut.is_empty() {
                let since = *self.double_since.entry(g.key.clone()).or_insert(self.now);
                self.max_double_ms = self.max_double_ms.max(self.now - since);
            } else {
                self.double_since.remove(&g.key);
            }
        }
    }

    /// Crash: the process and everything it ran are gone (a dead machine).
    fn crash(&mut self, i: usize) {
        self.down.insert(i);
        self.running[i].clear();
        self.agents.retain(|a| a.1 != i);
    }

    /// A fresh process with a higher generation; `keep` says whether what ran survived.
    fn restart(&mut self, i: usize, keep: bool) {
        self.gens[i] += 1;
        let mut c = self.cfg[i].clone();
        c.generation = self.gens[i];
        if !keep {
            self.running[i].clear();
        }
        c.running_at_start = self.running[i].iter().cloned().collect();
        self.engines[i] = Engine::new(c);
        self.down.remove(&i);
        self.exited.remove(&i);
    }

    fn runs(&self, i: usize, key: &str) -> bool {
        self.running[i].contains(key)
    }

    fn logged(&self, i: usize, needle: &str) -> bool {
        self.logs.iter().any(|(_, n, _, t)| *n == i && t.contains(needle))
    }

    fn starts_of(&self, i: usize, key: &str) -> usize {
        self.starts.iter().filter(|(_, n, k)| *n == i && k == key).count()
    }

    fn operator(&mut self, i: usize, cmd: OperatorCmd) -> Result<String, String> {
        let mut out = Vec::new();
        let r = self.engines[i].operator(Now::at(self.now), cmd, &mut out);
        self.apply(i, out);
        r
    }
}

const G1: &str = "IPaddr::10.0.0.50/24/eth0";
const G2: &str = "10.0.0.60";

#[test]
fn simultaneous_start_each_node_takes_its_own_group_once_without_heartbeats_10s_wait() {
    let mut sim = Sim::new(2, AutoFailback::On);
    sim.step(1500);
    assert!(sim.runs(0, G1) && !sim.runs(1, G1));
    assert!(sim.runs(1, G2) && !sim.runs(0, G2));
    assert_eq!(sim.starts_of(0, G1), 1);
    assert_eq!(sim.starts_of(1, G1), 0);
    assert_eq!(sim.max_double_ms, 0);
    let st = sim.engines[0].resource_status(Now::at(sim.now));
    assert!(st.stable);
    assert_eq!(st.rscstatus, "local");
    let g = st.groups.iter().find(|g| g.key == G1).unwrap();
    assert_eq!(g.holders, vec!["n1".to_string()]);
}

#[test]
fn death_of_the_owner_moves_its_group_after_deadtime_and_auto_failback_on_brings_it_back() {
    let mut sim = Sim::new(2, AutoFailback::On);
    sim.step(6000);
    assert!(sim.runs(0, G1));
    sim.crash(0);
    let t = sim.now;
    sim.step(900);
    assert!(!sim.runs(1, G1), "not before deadtime");
    sim.step(400);
    assert!(sim.runs(1, G1), "the peer takes over after deadtime");
    let (started_at, _, _) = sim.starts.iter().rev().find(|(_, n, k)| *n == 1 && k == G1).unwrap();
    assert!(*started_at - t <= 1000 + 100 + 2, "takes over right at the death verdict");
    assert!(sim.logged(1, "Acquiring resource group IPaddr::10.0.0.50/24/eth0 (its holder died)"));
    // n1 comes back: with auto_failback on the group returns to it, handed over (stop, then start).
    sim.restart(0, false);
    sim.step(3000);
    assert!(sim.runs(0, G1) && !sim.runs(1, G1));
    assert!(sim.runs(1, G2) && !sim.runs(0, G2));
    assert_eq!(sim.max_double_ms, 0, "never on both nodes");
    assert!(sim.logged(1, "Releasing resource group IPaddr::10.0.0.50/24/eth0: it belongs on n1"));
}

#[test]
fn auto_failback_off_leaves_the_group_where_it_runs() {
    let mut sim = Sim::new(2, AutoFailback::Off);
    sim.step(6000);
    sim.crash(0);
    sim.step(1500);
    assert!(sim.runs(1, G1));
    sim.restart(0, false);
    sim.step(3000);
    assert!(sim.runs(1, G1) && !sim.runs(0, G1), "stays on n2");
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn standby_and_takeover_move_groups_on_demand() {
    let mut sim = Sim::new(2, AutoFailback::On);
    sim.step(6000);
    let r = sim.operator(0, OperatorCmd::Standby(RscSet::ALL)).unwrap();
    assert!(r.contains("standby [all]"), "{r}");
    sim.step(200);
    assert!(sim.runs(1, G1) && sim.runs(1, G2) && !sim.runs(0, G1));
    assert_eq!(sim.engines[1].resource_status(Now::at(sim.now)).rscstatus, "all");
    // Standby sticks even with auto_failback on, until takeover.
    sim.step(2000);
    assert!(!sim.runs(0, G1));
    sim.operator(0, OperatorCmd::Takeover(RscSet::parse("local").unwrap())).unwrap();
    sim.step(200);
    assert!(sim.runs(0, G1) && !sim.runs(1, G1));
    assert!(sim.runs(1, G2));
    // Takeover of foreign groups moves n2's own group here too (a claim).
    sim.operator(0, OperatorCmd::Takeover(RscSet::ALL)).unwrap();
    sim.step(200);
    assert!(sim.runs(0, G2) && !sim.runs(1, G2));
    assert_eq!(sim.max_double_ms, 0);
    // n2 takes it back in turn.
    sim.operator(1, OperatorCmd::Takeover(RscSet::parse("local").unwrap())).unwrap();
    sim.step(200);
    assert!(sim.runs(1, G2) && !sim.runs(0, G2));
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn graceful_shutdown_releases_first_and_the_peer_takes_over_without_waiting_deadtime() {
    let mut sim = Sim::new(2, AutoFailback::On);
    sim.step(6000);
    sim.handle(0, Event::Shutdown);
    sim.step(100);
    assert!(sim.exited.contains(&0), "exits once released");
    assert!(!sim.runs(0, G1));
    assert!(sim.runs(1, G1), "taken over within 100 ms, long before the 1 s deadtime");
    assert!(sim.logged(1, "Received shutdown notice from 'n1'."));
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn a_failed_start_gives_the_group_to_the_other_node() {
    let mut sim = Sim::new(2, AutoFailback::On);
    sim.fail_start.insert((0, G1.to_string()));
    sim.step(2000);
    assert!(!sim.runs(0, G1));
    assert!(sim.runs(1, G1));
    assert!(sim.logged(0, "Giving up resources due to failure of IPaddr::10.0.0.50/24/eth0"));
    let st = sim.engines[0].resource_status(Now::at(sim.now));
    assert!(st.groups.iter().find(|g| g.key == G1).unwrap().failed_here);
    // After cleanup it is eligible again, and failback brings it home.
    sim.fail_start.clear();
    sim.operator(0, OperatorCmd::Cleanup(None)).unwrap();
    sim.step(200);
    assert!(sim.runs(0, G1) && !sim.runs(1, G1));
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn monitor_failures_restart_in_place_then_move_the_group() {
    let mut sim = Sim::new(2, AutoFailback::Off);
    sim.step(6000);
    for _ in 0..3 {
        sim.handle(0, Event::MonitorFailed { key: G1.into(), why: "not running".into() });
        sim.step(50);
        assert!(sim.runs(0, G1), "restarted in place");
    }
    assert_eq!(sim.starts_of(0, G1), 4);
    sim.handle(0, Event::MonitorFailed { key: G1.into(), why: "not running".into() });
    sim.step(100);
    assert!(!sim.runs(0, G1) && sim.runs(1, G1), "the fourth failure moves it");
}

#[test]
fn a_restarted_node_that_finds_its_group_running_does_not_start_it_twice() {
    let mut sim = Sim::new(2, AutoFailback::On);
    sim.step(6000);
    // halo on n1 crashes and is restarted at once: the peer never noticed, the VIP still runs.
    sim.down.insert(0);
    sim.step(200);
    sim.restart(0, true);
    sim.step(3000);
    assert!(sim.runs(0, G1) && !sim.runs(1, G1));
    assert_eq!(sim.starts_of(0, G1), 1, "probed running, never started again");
    assert_eq!(sim.starts_of(1, G1), 0);
}

#[test]
fn an_orphan_found_at_start_on_a_node_that_does_not_own_the_group_is_stopped() {
    let mut sim = Sim::new(2, AutoFailback::On);
    sim.step(6000);
    // n2 restarts and finds n1's VIP configured locally (left over): n1 owns it.
    sim.running[1].insert(G1.to_string());
    sim.down.insert(1);
    sim.step(100);
    sim.restart(1, true);
    sim.step(3000);
    assert!(sim.runs(0, G1) && !sim.runs(1, G1), "the orphan on n2 is stopped, n1 keeps it");
}

#[test]
fn a_healed_partition_leaves_each_group_on_exactly_one_node() {
    let mut sim = Sim::new(2, AutoFailback::Off);
    sim.step(6000);
    sim.cut.insert(0);
    sim.step(2000);
    assert!(sim.runs(0, G1) && sim.runs(1, G1), "split brain: both hold it while cut");
    sim.cut.clear();
    sim.step(2000);
    let holders = (0..2).filter(|i| sim.runs(*i, G1)).count();
    assert_eq!(holders, 1, "exactly one keeps it after the heal");
    assert!(sim.runs(0, G1), "the preferred node keeps it");
    assert!(sim.runs(1, G2) && !sim.runs(0, G2));
}

#[test]
fn three_nodes_place_a_dead_nodes_group_on_exactly_one_survivor() {
    let mut sim = Sim::new(3, AutoFailback::On);
    sim.step(6000);
    sim.crash(0);
    sim.step(1500);
    let holders: Vec<usize> = (1..3).filter(|i| sim.runs(*i, G1)).collect();
    assert_eq!(holders, vec![1], "the next node after n1 in ha.cf order takes it");
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn ipfail_a_node_that_loses_its_ping_node_hands_its_groups_to_the_peer_that_still_reaches_it() {
    let mut sim = Sim::new(2, AutoFailback::On);
    for c in sim.cfg.iter_mut() {
        c.ping_nodes = vec!["gw".into()];
        c.deadping_ms = 500;
    }
    for i in 0..2 {
        sim.restart(i, false);
    }
    sim.step(6000);
    assert!(sim.runs(0, G1) && sim.runs(1, G2));
    sim.ping_ok[0] = false;
    sim.step(1000);
    assert!(sim.logged(0, "ping node gw: is dead"));
    assert!(!sim.runs(0, G1) && sim.runs(1, G1), "n1 lost its uplink: n2 runs its group");
    assert!(sim.runs(1, G2));
    assert_eq!(sim.max_double_ms, 0);
    let st = sim.engines[0].status(Now::at(sim.now));
    let gw = st.nodes.iter().find(|n| n.name == "gw").unwrap();
    assert_eq!((gw.kind, gw.state), ("ping", "dead"));
    // Both cut off: equal counts, nobody is worse off; placement is as usual again (as
    // ipfail's abort_giveup then auto failback): n1's group goes home.
    sim.ping_ok[1] = false;
    sim.step(1000);
    assert!(sim.runs(0, G1) && !sim.runs(1, G1) && sim.runs(1, G2));
    // Only n2 gets its uplink back: n1 is worse off again and gives its group away.
    sim.ping_ok[1] = true;
    sim.step(1000);
    assert!(!sim.runs(0, G1) && sim.runs(1, G1));
    // Both fine: home again.
    sim.ping_ok = vec![true, true];
    sim.step(1000);
    assert!(sim.runs(0, G1) && !sim.runs(1, G1));
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn an_orphan_found_at_restart_yields_to_the_node_that_took_the_group_over() {
    let mut sim = Sim::new(2, AutoFailback::Off);
    sim.step(6000);
    // halo on n1 dies (kill -9): its VIP stays configured, an orphan; n2 takes over.
    sim.down.insert(0);
    sim.step(1500);
    assert!(sim.runs(1, G1) && sim.runs(0, G1), "n2 took over; n1's orphan is still there");
    sim.restart(0, true);
    sim.step(3000);
    assert!(sim.runs(1, G1) && !sim.runs(0, G1), "the orphan on n1 is stopped, n2 keeps the group");
    assert_eq!(sim.starts_of(1, G1), 1);
}

#[test]
fn a_shutdown_during_a_start_releases_the_group_once_started_then_leaves() {
    let mut sim = Sim::new(2, AutoFailback::On);
    let starting = |sim: &Sim| {
        sim.engines[0]
            .resource_status(Now::at(sim.now))
            .groups
            .iter()
            .any(|g| g.key == G1 && g.state == "starting")
    };
    for _ in 0..3000 {
        if starting(&sim) {
            break;
        }
        sim.step(1);
    }
    assert!(starting(&sim), "n1 is starting its group");
    sim.handle(0, Event::Shutdown);
    sim.step(200);
    assert!(sim.exited.contains(&0), "n1 left once the started group was stopped again");
    assert!(!sim.runs(0, G1));
    assert!(sim.runs(1, G1), "n2 took it over at the shutdone");
}

// ---------------------------------------------------------------------------------------
// Regressions found by the deterministic simulator (tests/sim.rs). Each drives one engine
// with hand-made messages from a peer `n2` so the exact ordering the simulator hit is kept.

/// A message from n2 as the wire would deliver it (generation 7, sequence `seq`).
fn from_n2(kind: &str, seq: u64, fields: &[(&str, &str)]) -> halo_wire::Message {
    from_peer("n2", 7, kind, seq, fields)
}

/// n1 alone in a two-node cluster with one group, fed by hand: returns the engine once its
/// communication is up (n2 heard as `up`, `repnodes` answered).
fn n1_up_with_n2(seq: &mut u64) -> (Engine, Vec<Action>) {
    n1_up_with_n2_running(seq, vec![GroupConfig::new(G2, "n2")])
}

/// [`n1_up_with_n2`] with these groups.
fn n1_up_with_n2_running(seq: &mut u64, groups: Vec<GroupConfig>) -> (Engine, Vec<Action>) {
    let mut c = CoreConfig::new("n1", &["n1", "n2"], &["eth0"]);
    c.keepalive_ms = 100;
    c.deadtime_ms = 1000;
    c.initdead_ms = 2000;
    c.generation = 5;
    c.groups = groups;
    let mut e = Engine::new(c);
    let mut out = Vec::new();
    e.handle(Now::at(0), Event::Tick, &mut out);
    *seq += 1;
    let st = from_n2("status", *seq, &[("st", "up"), ("dt", "3e8"), ("protocol", "1")]);
    e.handle(Now::at(10), Event::Message { link: 0, msg: st }, &mut out);
    *seq += 1;
    let rep = from_n2("repnodes", *seq, &[("dest", "n1"), ("nodelist", "n1 n2 ")]);
    e.handle(Now::at(20), Event::Message { link: 0, msg: rep }, &mut out);
    assert!(e.comm_up());
    (e, out)
}

fn sent<'a>(out: &'a [Action], kind: &str) -> Vec<&'a halo_wire::Message> {
    out.iter()
        .filter_map(|a| match a {
            Action::Send(m) if m.kind() == Some(kind) => Some(m),
            _ => None,
        })
        .collect()
}

#[test]
fn a_retransmitted_older_status_does_not_set_an_active_peer_back_to_up() {
    // Sim: after a partition the gap is filled by retransmission, and n2's old `st=up` made
    // it look joining again; placement dropped it as a holder and announced a "let go".
    let mut seq = 0;
    let (mut e, _) = n1_up_with_n2(&mut seq);
    let mut out = Vec::new();
    let active = from_n2("status", 9, &[("st", "active"), ("dt", "3e8")]);
    e.handle(Now::at(100), Event::Message { link: 0, msg: active }, &mut out);
    assert_eq!(e.node_state("n2"), Some(halo_core::NodeState::Active));
    // Seq 3..8 were missed; the retransmitted status 3 (still `up`) arrives now.
    let old = from_n2("status", 3, &[("st", "up"), ("dt", "3e8")]);
    e.handle(Now::at(150), Event::Message { link: 0, msg: old }, &mut out);
    assert_eq!(e.node_state("n2"), Some(halo_core::NodeState::Active));
}

#[test]
fn a_starting_overtaken_by_the_senders_next_resource_is_still_answered() {
    // Sim: reordering delivered n2's `resource` (seq 6) before its `starting` (seq 5); the
    // `starting` was dropped as old, n2 never got our holdings and waited RQSTDELAY while
    // both held a group after a partition.
    let mut seq = 0;
    let (mut e, _) = n1_up_with_n2(&mut seq);
    let mut out = Vec::new();
    let res = from_n2("resource", 6, &[("rsc_hold", "none"), ("isstable", "0"), ("halo", "1")]);
    e.handle(Now::at(100), Event::Message { link: 0, msg: res }, &mut out);
    out.clear();
    let starting = from_n2("starting", 5, &[("halo", "1")]);
    e.handle(Now::at(101), Event::Message { link: 0, msg: starting }, &mut out);
    assert_eq!(sent(&out, "resource").len(), 1, "our holdings answer the late `starting`: {out:?}");
}

#[test]
fn a_starting_peer_counts_as_active_even_before_its_active_status_arrives() {
    // Sim: n2's `status st=active` was lost; n1 placed a group without n2 while n2, at its
    // comm up, placed it with itself: both started it.
    let mut seq = 0;
    let (mut e, _) = n1_up_with_n2(&mut seq);
    assert_eq!(e.node_state("n2"), Some(halo_core::NodeState::Up));
    let mut out = Vec::new();
    let starting = from_n2("starting", 3, &[("halo", "1")]);
    e.handle(Now::at(30), Event::Message { link: 0, msg: starting }, &mut out);
    assert_eq!(e.node_state("n2"), Some(halo_core::NodeState::Active));
    // Its older `up` status, delivered late, does not undo that.
    let st = from_n2("status", 2, &[("st", "up"), ("dt", "3e8")]);
    e.handle(Now::at(31), Event::Message { link: 0, msg: st }, &mut out);
    assert_eq!(e.node_state("n2"), Some(halo_core::NodeState::Active));
}

#[test]
fn a_gap_from_a_peer_held_dead_does_not_put_the_next_deadline_in_the_past() {
    // Sim: messages from a peer we held dead arrived with a gap before its status revived
    // it; the gap's retransmit time (never served while it is dead) became the deadline,
    // already past: the runtime would spin.
    let mut seq = 0;
    let (mut e, _) = n1_up_with_n2(&mut seq);
    let mut out = Vec::new();
    let mut now = 20;
    while e.node_state("n2") != Some(halo_core::NodeState::Dead) {
        now = e.next_deadline().max(now + 1);
        e.handle(Now::at(now), Event::Tick, &mut out);
    }
    let a = from_n2("resource", 10, &[("rsc_hold", "none"), ("isstable", "1")]);
    e.handle(Now::at(now + 1), Event::Message { link: 0, msg: a }, &mut out);
    let b = from_n2("resource", 14, &[("rsc_hold", "none"), ("isstable", "1")]);
    e.handle(Now::at(now + 2), Event::Message { link: 0, msg: b }, &mut out);
    e.handle(Now::at(now + 500), Event::Tick, &mut out);
    assert!(e.next_deadline() > now + 500, "deadline {} is not in the future", e.next_deadline());
}

#[test]
fn nodes_that_came_up_apart_sort_out_their_groups_when_they_first_hear_each_other() {
    // Sim: a node booted behind a partition declares its never-heard peers dead at initdead
    // and takes every group; at the heal the peer's first message is a new generation, not
    // a "return", so nobody asked what the other held and both kept the groups for good.
    let mut sim = Sim::new(2, AutoFailback::On);
    sim.cut.insert(0);
    sim.step(4000);
    assert!(sim.runs(0, G1) && sim.runs(0, G2), "n1 alone took both groups");
    assert!(sim.runs(1, G1) && sim.runs(1, G2), "n2 alone took both groups");
    sim.cut.clear();
    sim.step(3000);
    assert!(sim.logged(0, "node n2 is already active at first contact: asking what it holds"));
    assert!(sim.runs(0, G1) && !sim.runs(1, G1), "G1 is on n1 only");
    assert!(sim.runs(1, G2) && !sim.runs(0, G2), "G2 is on n2 only");
}

fn starts(out: &[Action]) -> Vec<&str> {
    out.iter()
        .filter_map(|a| match a {
            Action::StartGroup { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect()
}

/// n1's last `resource` statement in `out`.
fn last_statement(out: &[Action]) -> &halo_wire::Message {
    sent(out, "resource").into_iter().last().expect("a resource statement")
}

#[test]
fn a_start_waits_until_every_live_halo_peer_has_read_the_intent() {
    // Sim (with fencing, 9 of 10,000 schedules): two nodes whose views differed for a
    // moment each found a group theirs and started it at once. Now a start is first an
    // intent, and goes ahead only on a statement the peer sent after reading it.
    let mut seq = 0;
    let (mut e, _) = n1_up_with_n2_running(&mut seq, vec![GroupConfig::new(G1, "n1")]);
    let mut out = Vec::new();
    let starting = from_n2("starting", 3, &[("halo", "1")]);
    e.handle(Now::at(30), Event::Message { link: 0, msg: starting }, &mut out);
    assert_eq!(starts(&out), Vec::<&str>::new(), "not before n2 read the intent: {out:?}");
    let m = last_statement(&out);
    assert_eq!(m.get("halo_intend"), Some(G1), "{m:?}");
    let round = m.get("halo_round").expect("the intent's round").to_string();
    assert!(round.starts_with("5:"), "qualified by our generation: {round}");
    // A statement of n2's that does not acknowledge it (an older one, overtaken): still no.
    out.clear();
    let res = from_n2("resource", 4, &[("rsc_hold", "none"), ("isstable", "1"), ("halo", "1")]);
    e.handle(Now::at(31), Event::Message { link: 0, msg: res }, &mut out);
    assert_eq!(starts(&out), Vec::<&str>::new(), "{out:?}");
    // An acknowledgement of a previous life of ours does not count either.
    let res = from_n2(
        "resource",
        5,
        &[("rsc_hold", "none"), ("isstable", "1"), ("halo", "1"), ("halo_ack", "n1:4:9")],
    );
    e.handle(Now::at(32), Event::Message { link: 0, msg: res }, &mut out);
    assert_eq!(starts(&out), Vec::<&str>::new(), "{out:?}");
    let ack = format!("n1:{round}");
    let res =
        from_n2("resource", 6, &[("rsc_hold", "none"), ("isstable", "1"), ("halo", "1"), ("halo_ack", &ack)]);
    e.handle(Now::at(33), Event::Message { link: 0, msg: res }, &mut out);
    assert_eq!(starts(&out), vec![G1], "{out:?}");
    assert_eq!(last_statement(&out).get("halo_intend"), None, "the intent ends with the start");
}

#[test]
fn when_two_nodes_mean_to_start_one_group_the_better_ranked_goes_first() {
    let mut seq = 0;
    let (mut e, _) = n1_up_with_n2_running(&mut seq, vec![prefer(G1, &["n1", "n2"])]);
    let mut out = Vec::new();
    let starting = from_n2("starting", 3, &[("halo", "1")]);
    e.handle(Now::at(30), Event::Message { link: 0, msg: starting }, &mut out);
    let round = last_statement(&out).get("halo_round").unwrap().to_string();
    let ack = format!("n1:{round}");
    // n2, which ranks after n1 for G1, means to start it too and has read our intent: n1
    // waits for n2 to withdraw, and says it read n2's intent.
    out.clear();
    let both = [
        ("rsc_hold", "none"),
        ("isstable", "1"),
        ("halo", "1"),
        ("halo_intend", G1),
        ("halo_round", "7:1"),
        ("halo_ack", ack.as_str()),
    ];
    e.handle(Now::at(31), Event::Message { link: 0, msg: from_n2("resource", 4, &both) }, &mut out);
    assert_eq!(starts(&out), Vec::<&str>::new(), "n2 still means to: {out:?}");
    assert_eq!(last_statement(&out).get("halo_ack"), Some("n2:7:1"), "{out:?}");
    assert_eq!(last_statement(&out).get("halo_intend"), Some(G1), "n1 keeps its intent");
    let withdrawn = [("rsc_hold", "none"), ("isstable", "1"), ("halo", "1"), ("halo_ack", ack.as_str())];
    e.handle(Now::at(32), Event::Message { link: 0, msg: from_n2("resource", 5, &withdrawn) }, &mut out);
    assert_eq!(starts(&out), vec![G1], "{out:?}");

    // The other way round: for a group n2 ranks first, n1 withdraws its intent.
    let mut seq = 0;
    let (mut e, _) = n1_up_with_n2_running(&mut seq, vec![prefer(G2, &["n2", "n1"])]);
    let mut out = Vec::new();
    // n2 says it cannot run G2 (failed there): n1 means to start it.
    let failed = [("halo", "1"), ("halo_failed", G2)];
    e.handle(Now::at(30), Event::Message { link: 0, msg: from_n2("starting", 3, &failed) }, &mut out);
    assert_eq!(last_statement(&out).get("halo_intend"), Some(G2), "{out:?}");
    let round = last_statement(&out).get("halo_round").unwrap().to_string();
    let ack = format!("n1:{round}");
    // n2 cleaned up and means to start it itself (and read our intent): n1 steps back.
    out.clear();
    let theirs = [
        ("rsc_hold", "none"),
        ("isstable", "1"),
        ("halo", "1"),
        ("halo_intend", G2),
        ("halo_round", "7:1"),
        ("halo_ack", ack.as_str()),
    ];
    e.handle(Now::at(31), Event::Message { link: 0, msg: from_n2("resource", 4, &theirs) }, &mut out);
    assert_eq!(starts(&out), Vec::<&str>::new(), "{out:?}");
    let m = last_statement(&out);
    assert_eq!(m.get("halo_intend"), None, "withdrawn: {m:?}");
    assert_eq!(m.get("halo_ack"), Some("n2:7:1"), "{m:?}");
}

#[test]
fn a_takeover_notice_from_a_halo_peer_is_not_read_as_its_holdings() {
    // Sim seed 22806: n2's `resource rsc_hold=foreign info=mach_down` (Heartbeat's notice
    // after a takeover) was read as a Heartbeat peer's statement: n2 looked like a peer
    // holding n1's group and none of its own, and not like a halo peer to wait for.
    let mut seq = 0;
    let (mut e, _) =
        n1_up_with_n2_running(&mut seq, vec![GroupConfig::new(G1, "n1"), GroupConfig::new(G2, "n2")]);
    let mut out = Vec::new();
    let holds = [("halo", "1"), ("halo_groups", G2)];
    e.handle(Now::at(30), Event::Message { link: 0, msg: from_n2("starting", 3, &holds) }, &mut out);
    let notice = from_n2("resource", 4, &[("rsc_hold", "foreign"), ("info", "mach_down")]);
    e.handle(Now::at(31), Event::Message { link: 0, msg: notice }, &mut out);
    let st = e.resource_status(Now::at(31));
    let g = |k: &str| st.groups.iter().find(|g| g.key == k).unwrap().holders.clone();
    assert_eq!(g(G2), vec!["n2".to_string()], "n2 still holds its own group");
    assert_eq!(g(G1), Vec::<String>::new(), "and not ours");
    assert_eq!(starts(&out), Vec::<&str>::new(), "G1 still waits for n2 to read the intent: {out:?}");
}

#[test]
fn a_heartbeat_peers_takeover_notice_adds_the_dead_nodes_groups_to_its_own() {
    // Heartbeat's `mach_down` script sends `resource rsc_hold=foreign info=mach_down` after
    // taking a dead node's groups over. The peer still holds its own (`rsc_hold=all` just
    // before): read as its whole holdings, its own group looked free here.
    let mut seq = 0;
    let (mut e, _) =
        n1_up_with_n2_running(&mut seq, vec![GroupConfig::new(G1, "n1"), GroupConfig::new(G2, "n2")]);
    let mut out = Vec::new();
    let all = [("rsc_hold", "all"), ("rtype", "full"), ("isstable", "1"), ("info", "req_our_resources()")];
    e.handle(Now::at(30), Event::Message { link: 0, msg: from_n2("resource", 3, &all) }, &mut out);
    let notice = from_n2("resource", 4, &[("rsc_hold", "foreign"), ("info", "mach_down")]);
    e.handle(Now::at(31), Event::Message { link: 0, msg: notice }, &mut out);
    let st = e.resource_status(Now::at(31));
    let g = |k: &str| st.groups.iter().find(|g| g.key == k).unwrap().holders.clone();
    assert_eq!(g(G2), vec!["n2".to_string()], "n2 still holds its own group: {st:?}");
    assert_eq!(g(G1), vec!["n2".to_string()], "and ours, taken over: {st:?}");
    assert_eq!(starts(&out), Vec::<&str>::new(), "nothing starts while n2 holds both: {out:?}");
    // Its next full statement replaces the holdings as before: it gave ours back, and we
    // start it (auto_failback on).
    let local = [("rsc_hold", "local"), ("rtype", "full"), ("isstable", "1")];
    e.handle(Now::at(32), Event::Message { link: 0, msg: from_n2("resource", 5, &local) }, &mut out);
    let st = e.resource_status(Now::at(32));
    let g = |k: &str| st.groups.iter().find(|g| g.key == k).unwrap().holders.clone();
    assert_eq!((g(G1), g(G2)), (vec!["n1".to_string()], vec!["n2".to_string()]), "{st:?}");
    assert_eq!(starts(&out), vec![G1], "{out:?}");
}

#[test]
fn a_request_that_overtakes_a_statement_does_not_make_the_statement_stale() {
    // Sim seed 27575: n2's `hb_takeover` (seq 0x17) arrived before the retransmitted
    // statements 0x12 and 0x13 it had sent earlier; both were dropped as older, and n1
    // believed for ever that n2 still held its group.
    let mut seq = 0;
    let (mut e, _) = n1_up_with_n2_running(&mut seq, vec![GroupConfig::new(G2, "n2")]);
    let mut out = Vec::new();
    let holds = [("rsc_hold", "local"), ("isstable", "1"), ("halo", "1"), ("halo_groups", G2)];
    e.handle(Now::at(30), Event::Message { link: 0, msg: from_n2("resource", 0x10, &holds) }, &mut out);
    let takeover = from_n2("hb_takeover", 0x17, &[("rsc_hold", "foreign")]);
    e.handle(Now::at(31), Event::Message { link: 0, msg: takeover }, &mut out);
    let none = [("rsc_hold", "none"), ("isstable", "1"), ("halo", "1"), ("halo_standby", "local")];
    e.handle(Now::at(32), Event::Message { link: 0, msg: from_n2("resource", 0x13, &none) }, &mut out);
    let st = e.resource_status(Now::at(32));
    assert_eq!(st.groups[0].holders, Vec::<String>::new(), "n2's newest statement counts: {st:?}");
}

// ---------------------------------------------------------------------------------------
// Quorum (no_quorum_policy).

fn with_policy(n: usize, policy: halo_core::NoQuorumPolicy, ping: bool) -> Sim {
    let mut sim = Sim::new(n, AutoFailback::On);
    for c in sim.cfg.iter_mut() {
        c.no_quorum_policy = policy;
        if ping {
            c.ping_nodes = vec!["gw".into()];
            c.deadping_ms = 500;
        }
    }
    for i in 0..n {
        sim.restart(i, false);
    }
    sim.step(6000);
    sim
}

#[test]
fn quorum_stop_an_isolated_node_of_three_releases_its_group_and_the_majority_runs_it() {
    let mut sim = with_policy(3, halo_core::NoQuorumPolicy::Stop, false);
    assert!(sim.runs(0, G1));
    let q = sim.engines[0].status(Now::at(sim.now)).quorum;
    assert_eq!((q.have, q.votes, q.expected, q.policy), (true, 3, 3, "stop"));
    sim.cut.insert(0);
    sim.step(1500);
    let q = sim.engines[0].status(Now::at(sim.now)).quorum;
    assert_eq!((q.have, q.votes, q.expected), (false, 1, 3));
    assert!(!sim.runs(0, G1), "n1 alone has no quorum: it released its group");
    assert!(sim.logged(0, "no quorum (no_quorum_policy stop)"));
    assert!(sim.runs(1, G1) && !sim.runs(2, G1), "n2 and n3 are a majority: n2 took it");
    // Healed: quorum is back and failback brings the group home, once.
    sim.cut.clear();
    sim.step(3000);
    assert!(sim.engines[0].status(Now::at(sim.now)).quorum.have);
    assert!(sim.runs(0, G1) && !sim.runs(1, G1));
}

#[test]
fn quorum_freeze_keeps_what_runs_and_starts_nothing() {
    let mut sim = with_policy(3, halo_core::NoQuorumPolicy::Freeze, false);
    sim.cut.insert(0);
    sim.step(1500);
    assert!(sim.runs(0, G1), "frozen: n1 keeps its group");
    assert!(!sim.runs(0, G2), "and takes nothing from the nodes it lost");
    assert!(sim.runs(1, G1), "the majority runs it too (no fencing yet)");
}

#[test]
fn quorum_two_nodes_the_half_that_reaches_the_ping_node_keeps_quorum() {
    let mut sim = with_policy(2, halo_core::NoQuorumPolicy::Stop, true);
    assert!(sim.runs(0, G1) && sim.runs(1, G2));
    // n1 loses its cable: to n2 and to the gateway.
    sim.cut.insert(0);
    sim.ping_ok[0] = false;
    sim.step(2000);
    let q = sim.engines[0].status(Now::at(sim.now)).quorum;
    assert_eq!((q.have, q.votes, q.tie_breaker), (false, 1, Some(false)));
    let q = sim.engines[1].status(Now::at(sim.now)).quorum;
    assert_eq!((q.have, q.votes, q.tie_breaker), (true, 1, Some(true)));
    assert!(!sim.runs(0, G1), "n1 has no quorum: released");
    assert!(sim.runs(1, G1) && sim.runs(1, G2), "n2 reaches the ping node: it runs both");
}

#[test]
fn quorum_is_ignored_by_default_as_in_heartbeat() {
    let mut sim = Sim::new(3, AutoFailback::On);
    sim.step(6000);
    sim.cut.insert(0);
    sim.step(1500);
    let q = sim.engines[0].status(Now::at(sim.now)).quorum;
    assert_eq!((q.have, q.policy), (false, "ignore"));
    assert!(sim.runs(0, G1) && sim.runs(0, G2), "without a policy n1 alone takes everything");
}

// ------------------------------------------------------------------ halo.toml placement

fn prefer(key: &str, nodes: &[&str]) -> GroupConfig {
    GroupConfig {
        key: key.into(),
        node: nodes[0].into(),
        nodes: nodes.iter().map(|n| n.to_string()).collect(),
        name: String::new(),
    }
}

fn holders_of(sim: &Sim, key: &str) -> Vec<usize> {
    (0..sim.engines.len()).filter(|i| !sim.down.contains(i) && sim.runs(*i, key)).collect()
}

fn when(list: &[(u64, usize, String)], node: usize, key: &str) -> Vec<u64> {
    list.iter().filter(|(_, n, k)| *n == node && k == key).map(|(t, _, _)| *t).collect()
}

const VIP: &str = "10.0.0.70";
const PINGD: &str = "pingd";

#[test]
fn placement_follows_the_preference_list_after_two_deaths_and_fails_back_in_order() {
    let mut sim = Sim::with(3, AutoFailback::On, |c| c.groups = vec![prefer(VIP, &["n1", "n3", "n2"])]);
    sim.step(6000);
    assert_eq!(holders_of(&sim, VIP), vec![0]);
    sim.crash(0);
    sim.step(2000);
    assert_eq!(holders_of(&sim, VIP), vec![2], "the second preferred node, not the next in ha.cf");
    sim.crash(2);
    sim.step(2000);
    assert_eq!(holders_of(&sim, VIP), vec![1], "the third");
    let st = sim.engines[1].resource_status(Now::at(sim.now));
    assert_eq!(st.groups[0].preferred_nodes, vec!["n1", "n3", "n2"]);
    assert_eq!(st.groups[0].preferred, "n1");
    // auto_failback on: back to the best preferred node alive, in order.
    sim.restart(2, false);
    sim.step(4000);
    assert_eq!(holders_of(&sim, VIP), vec![2]);
    sim.restart(0, false);
    sim.step(4000);
    assert_eq!(holders_of(&sim, VIP), vec![0]);
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn placement_without_failback_keeps_the_holder_and_uses_the_list_only_when_it_dies() {
    let mut sim = Sim::with(3, AutoFailback::Off, |c| c.groups = vec![prefer(VIP, &["n1", "n3", "n2"])]);
    sim.step(6000);
    sim.crash(0);
    sim.step(2000);
    assert_eq!(holders_of(&sim, VIP), vec![2]);
    sim.restart(0, false);
    sim.step(4000);
    assert_eq!(holders_of(&sim, VIP), vec![2], "stays where it runs");
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn a_clone_runs_on_every_node_survives_a_death_without_moving_and_stays_out_of_heartbeat_sets() {
    let mut sim = Sim::with(3, AutoFailback::On, |c| {
        c.clones = vec![CloneConfig { name: PINGD.into(), nodes: Vec::new() }];
    });
    sim.step(6000);
    assert_eq!(holders_of(&sim, PINGD), vec![0, 1, 2]);
    for i in 0..3 {
        assert_eq!(sim.starts_of(i, PINGD), 1);
    }
    // n3 holds no group: its Heartbeat-visible holdings stay empty.
    let st = sim.engines[2].resource_status(Now::at(sim.now));
    assert_eq!(st.rscstatus, "none");
    assert_eq!(st.clones[0].running_on, vec!["n1", "n2", "n3"]);
    assert_eq!(st.clones[0].state, "running");
    sim.crash(1);
    sim.step(3000);
    assert_eq!(holders_of(&sim, PINGD), vec![0, 2]);
    assert_eq!(sim.starts_of(0, PINGD) + sim.starts_of(2, PINGD), 2, "nothing restarted or moved");
    let st = sim.engines[0].resource_status(Now::at(sim.now));
    assert_eq!(st.clones[0].running_on, vec!["n1", "n3"]);
    // A monitor failure restarts it in place.
    sim.handle(0, Event::MonitorFailed { key: PINGD.into(), why: "not running".into() });
    sim.step(100);
    assert!(sim.runs(0, PINGD));
    assert_eq!(sim.starts_of(0, PINGD), 2);
    assert!(sim.logged(0, "restarting it here (1 of 3)"));
    // Back: its own instance again. At shutdown it stops.
    sim.restart(1, false);
    sim.step(4000);
    assert_eq!(holders_of(&sim, PINGD), vec![0, 1, 2]);
    sim.handle(2, Event::Shutdown);
    sim.step(200);
    assert!(sim.exited.contains(&2));
    assert!(!sim.runs(2, PINGD));
    assert!(sim.runs(0, PINGD) && sim.runs(1, PINGD));
}

#[test]
fn a_clone_limited_to_some_nodes_runs_only_there() {
    let mut sim = Sim::with(3, AutoFailback::On, |c| {
        c.clones = vec![CloneConfig { name: PINGD.into(), nodes: vec!["n1".into(), "n3".into()] }];
    });
    sim.step(6000);
    assert_eq!(holders_of(&sim, PINGD), vec![0, 2]);
    let st = sim.engines[1].resource_status(Now::at(sim.now));
    assert_eq!(st.clones[0].nodes, vec!["n1", "n3"]);
    assert_eq!(st.clones[0].state, "stopped");
}

#[test]
fn order_then_waits_for_first_anywhere_and_starts_after_it() {
    // G1 (n1) is ordered after G2 (n2).
    let mut sim = Sim::with(2, AutoFailback::On, |c| {
        c.order = vec![OrderConfig { first: G2.into(), then: G1.into() }];
    });
    sim.fail_start.insert((0, G2.to_string()));
    sim.fail_start.insert((1, G2.to_string()));
    sim.step(4000);
    assert!(holders_of(&sim, G2).is_empty());
    assert!(holders_of(&sim, G1).is_empty(), "waits for G2");
    assert_eq!(sim.starts_of(0, G1), 0);
    sim.fail_start.clear();
    sim.operator(0, OperatorCmd::Cleanup(None)).unwrap();
    sim.operator(1, OperatorCmd::Cleanup(None)).unwrap();
    sim.step(1000);
    assert_eq!(holders_of(&sim, G2), vec![1]);
    assert_eq!(holders_of(&sim, G1), vec![0]);
    let g2_started = *when(&sim.starts, 1, G2).last().unwrap() + AGENT_MS;
    let g1_started = *when(&sim.starts, 0, G1).last().unwrap();
    assert!(g1_started >= g2_started, "G1 ({g1_started}) after G2 ran ({g2_started})");
}

#[test]
fn order_on_one_node_then_stops_before_first_and_starts_after_it() {
    let a = "10.0.0.71";
    let b = "10.0.0.72";
    let mut sim = Sim::with(2, AutoFailback::On, |c| {
        c.groups = vec![GroupConfig::new(a, "n1"), GroupConfig::new(b, "n1")];
        c.order = vec![OrderConfig { first: a.into(), then: b.into() }];
    });
    sim.step(6000);
    assert_eq!((holders_of(&sim, a), holders_of(&sim, b)), (vec![0], vec![0]));
    // A monitor failure of `first` restarts it in place: `then` stops first, starts after.
    sim.handle(0, Event::MonitorFailed { key: a.into(), why: "not running".into() });
    sim.step(200);
    let (sa, sb) = (when(&sim.stops, 0, a), when(&sim.stops, 0, b));
    assert_eq!((sa.len(), sb.len()), (1, 1));
    assert!(sa[0] >= sb[0] + AGENT_MS, "then stopped ({}) before first ({})", sb[0], sa[0]);
    assert!(when(&sim.starts, 0, b).last().unwrap() >= &(when(&sim.starts, 0, a).last().unwrap() + AGENT_MS));
    assert_eq!((holders_of(&sim, a), holders_of(&sim, b)), (vec![0], vec![0]));
    // n1 leaves: b stops before a there; n2 starts a, then b.
    sim.handle(0, Event::Shutdown);
    sim.step(300);
    let (sa, sb) = (when(&sim.stops, 0, a), when(&sim.stops, 0, b));
    assert!(sa[1] >= sb[1] + AGENT_MS);
    assert_eq!((holders_of(&sim, a), holders_of(&sim, b)), (vec![1], vec![1]));
    assert!(when(&sim.starts, 1, b)[0] >= when(&sim.starts, 1, a)[0] + AGENT_MS);
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn order_after_a_clone_waits_for_the_local_instance_and_stops_before_it() {
    let mut sim = Sim::with(2, AutoFailback::On, |c| {
        c.clones = vec![CloneConfig { name: PINGD.into(), nodes: Vec::new() }];
        c.order = vec![OrderConfig { first: PINGD.into(), then: G1.into() }];
    });
    sim.fail_start.insert((0, PINGD.to_string()));
    sim.step(6000);
    // The clone failed on n1: G1 goes where an instance runs.
    assert!(!sim.runs(0, PINGD));
    assert_eq!(holders_of(&sim, G1), vec![1]);
    assert!(when(&sim.starts, 1, G1)[0] >= when(&sim.starts, 1, PINGD)[0] + AGENT_MS);
    let st = sim.engines[1].resource_status(Now::at(sim.now));
    assert_eq!(st.clones[0].failed_on, vec!["n1"]);
    // Cleared, n1's instance starts and G1 fails back after it.
    sim.fail_start.clear();
    sim.operator(0, OperatorCmd::Cleanup(Some(PINGD.into()))).unwrap();
    sim.step(1000);
    assert!(sim.runs(0, PINGD) && sim.runs(1, PINGD));
    assert_eq!(holders_of(&sim, G1), vec![0]);
    // Shutdown of n1: G1 stops before the clone there.
    sim.handle(0, Event::Shutdown);
    sim.step(300);
    assert!(when(&sim.stops, 0, PINGD)[0] >= when(&sim.stops, 0, G1)[0] + AGENT_MS);
    assert_eq!(holders_of(&sim, G1), vec![1]);
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn colocation_with_and_apart_follow_a_moving_group() {
    let a = "10.0.0.71";
    let b = "10.0.0.72";
    let c3 = "10.0.0.73";
    let mut sim = Sim::with(3, AutoFailback::On, |c| {
        c.groups = vec![
            GroupConfig { name: "web".into(), ..GroupConfig::new(a, "n1") },
            GroupConfig::new(b, "n3"),
            GroupConfig::new(c3, "n1"),
        ];
        c.colocation = vec![
            ColocationConfig { group: b.into(), with: "web".into(), apart: false },
            ColocationConfig { group: c3.into(), with: "web".into(), apart: true },
        ];
    });
    sim.step(6000);
    assert_eq!(holders_of(&sim, a), vec![0]);
    assert_eq!(holders_of(&sim, b), vec![0], "with web, not on its preferred n3");
    assert_eq!(holders_of(&sim, c3), vec![1], "apart from web, not on its preferred n1");
    let st = sim.engines[2].resource_status(Now::at(sim.now));
    assert_eq!(st.groups[0].name, "web");
    sim.crash(0);
    sim.step(3000);
    assert_eq!(holders_of(&sim, a), vec![1]);
    assert_eq!(holders_of(&sim, b), vec![1], "followed web");
    assert_eq!(holders_of(&sim, c3), vec![2], "left web's new node");
    // Back to n1 with failback: all follow again.
    sim.restart(0, false);
    sim.step(4000);
    assert_eq!((holders_of(&sim, a), holders_of(&sim, b), holders_of(&sim, c3)), (vec![0], vec![0], vec![1]));
    assert_eq!(sim.max_double_ms, 0);
}

#[test]
fn cleanup_accepts_a_groups_name() {
    let mut sim = Sim::with(2, AutoFailback::On, |c| {
        c.groups = vec![GroupConfig { name: "web".into(), ..GroupConfig::new(G1, "n1") }];
    });
    sim.fail_start.insert((0, G1.to_string()));
    sim.step(3000);
    assert_eq!(holders_of(&sim, G1), vec![1]);
    sim.fail_start.clear();
    let r = sim.operator(0, OperatorCmd::Cleanup(Some("web".into()))).unwrap();
    assert!(r.starts_with("1 "), "{r}");
    sim.step(1000);
    assert_eq!(holders_of(&sim, G1), vec![0]);
}

// ------------------------------------------------------------------ fencing (STONITH)

fn fenced_sim(n: usize, fencers: &[&str]) -> Sim {
    let fencers: Vec<String> = fencers.iter().map(|s| s.to_string()).collect();
    Sim::with(n, AutoFailback::On, |c| {
        c.fencing =
            Some(halo_core::FencingConfig { fencers: fencers.clone(), retry_ms: 200, retry_max_ms: 800 })
    })
}

/// Three nodes, every one with a device, `no_quorum_policy stop`.
fn fenced_quorum_sim() -> Sim {
    let mut sim = fenced_sim(3, &["n1", "n2", "n3"]);
    for c in sim.cfg.iter_mut() {
        c.no_quorum_policy = halo_core::NoQuorumPolicy::Stop;
    }
    sim.engines = sim.cfg.iter().cloned().map(Engine::new).collect();
    sim
}

fn fence_done(sim: &mut Sim, i: usize, node: &str, ok: bool, detail: &str) {
    sim.handle(i, Event::FenceDone { node: node.into(), ok, detail: detail.into() });
}

#[test]
fn fencing_a_dead_node_is_fenced_before_its_group_is_taken_over() {
    let mut sim = fenced_sim(2, &["n1", "n2"]);
    sim.step(6000);
    assert!(sim.runs(0, G1) && sim.runs(1, G2));
    assert!(sim.fences.is_empty(), "nobody is fenced while all are alive");
    sim.crash(0);
    sim.step(1300);
    assert_eq!(sim.fences.iter().map(|f| (f.1, f.2.as_str())).collect::<Vec<_>>(), vec![(1, "n1")]);
    sim.step(2000);
    assert!(!sim.runs(1, G1), "no takeover before the fence is confirmed");
    assert_eq!(sim.starts_of(1, G1), 0);
    let st = sim.engines[1].resource_status(Now::at(sim.now));
    assert_eq!(st.fencing.len(), 1);
    assert_eq!((st.fencing[0].node.as_str(), st.fencing[0].state), ("n1", "requested"));
    assert_eq!(st.fencing[0].fencer.as_deref(), Some("n2"));
    fence_done(&mut sim, 1, "n1", true, "external/test: reset");
    sim.step(100);
    assert!(sim.runs(1, G1), "taken over once fenced");
    assert_eq!(sim.starts_of(1, G1), 1);
    assert_eq!(sim.stonith_msgs, vec![(1, "n1".to_string(), "OK".to_string())]);
    assert!(sim.engines[1].resource_status(Now::at(sim.now)).fencing.is_empty());
    assert_eq!(sim.fences.len(), 1, "fenced once");
}

#[test]
fn fencing_a_failed_fence_blocks_the_takeover_and_is_retried_with_back_off() {
    let mut sim = fenced_sim(2, &["n1", "n2"]);
    sim.step(6000);
    sim.crash(0);
    sim.step(1300);
    assert_eq!(sim.fences.len(), 1);
    fence_done(&mut sim, 1, "n1", false, "ipmitool: connection timed out");
    assert!(sim.logged(1, "STONITH of node n1 FAILED (ipmitool: connection timed out): not taking over"));
    let st = sim.engines[1].resource_status(Now::at(sim.now));
    assert_eq!(st.fencing[0].state, "failed");
    assert_eq!(st.fencing[0].last_error.as_deref(), Some("ipmitool: connection timed out"));
    assert_eq!(st.fencing[0].retry_in_ms, Some(200));
    sim.step(150);
    assert_eq!(sim.fences.len(), 1, "not before the back-off");
    sim.step(100);
    assert_eq!(sim.fences.len(), 2, "retried after 200 ms");
    fence_done(&mut sim, 1, "n1", false, "still down");
    sim.step(350);
    assert_eq!(sim.fences.len(), 2, "the second back-off is 400 ms");
    sim.step(100);
    assert_eq!(sim.fences.len(), 3);
    assert!(!sim.runs(1, G1) && sim.starts_of(1, G1) == 0, "never taken over while unfenced");
    assert_eq!(sim.stonith_msgs.iter().filter(|m| m.2 == "bad").count(), 2);
    fence_done(&mut sim, 1, "n1", true, "ok");
    sim.step(100);
    assert!(sim.runs(1, G1));
    assert_eq!(sim.starts_of(1, G1), 1, "started exactly once");
}

#[test]
fn fencing_a_partition_starts_nothing_the_other_side_may_hold_until_it_is_fenced() {
    let mut sim = fenced_sim(2, &["n1", "n2"]);
    sim.step(6000);
    sim.cut.insert(0);
    sim.step(2000);
    // Both sides want the other fenced (a deathmatch) and neither takes anything over.
    let mut asked: Vec<(usize, String)> = sim.fences.iter().map(|f| (f.1, f.2.clone())).collect();
    asked.sort();
    assert_eq!(asked, vec![(0, "n2".to_string()), (1, "n1".to_string())]);
    assert!(!sim.runs(0, G2) && !sim.runs(1, G1));
    // n2's fence lands first: n1 is powered off.
    sim.crash(0);
    fence_done(&mut sim, 1, "n1", true, "reset");
    sim.step(100);
    assert!(sim.runs(1, G1) && sim.runs(1, G2));
    assert_eq!(sim.starts_of(0, G2), 0);
}

#[test]
fn fencing_three_nodes_only_the_first_survivor_fences_and_the_others_wait_for_its_stonith_message() {
    let mut sim = fenced_sim(3, &["n1", "n2", "n3"]);
    sim.step(6000);
    sim.crash(0);
    sim.step(1300);
    assert_eq!(sim.fences.iter().map(|f| (f.1, f.2.as_str())).collect::<Vec<_>>(), vec![(1, "n1")]);
    let st = sim.engines[2].resource_status(Now::at(sim.now));
    assert_eq!((st.fencing[0].state, st.fencing[0].fencer.as_deref()), ("waiting", Some("n2")));
    sim.step(500);
    assert!(!sim.runs(1, G1) && !sim.runs(2, G1));
    fence_done(&mut sim, 1, "n1", true, "reset");
    sim.step(100);
    assert!(sim.logged(2, "node n2 fenced node n1 (STONITH OK)"));
    assert!(sim.engines[2].resource_status(Now::at(sim.now)).fencing.is_empty());
    assert_eq!((0..3).filter(|i| sim.runs(*i, G1)).count(), 1);
    // The fencer dies while fencing: the next survivor takes the job over.
    let mut sim = fenced_sim(3, &["n1", "n2", "n3"]);
    sim.step(6000);
    sim.crash(0);
    sim.step(1300);
    sim.crash(1);
    sim.step(1500);
    assert_eq!(
        sim.fences.iter().map(|f| (f.1, f.2.as_str())).collect::<Vec<_>>(),
        vec![(1, "n1"), (2, "n1"), (2, "n2")]
    );
}

#[test]
fn fencing_a_partition_without_quorum_fences_nobody_and_the_majority_fences_it() {
    // Three nodes, quorum policy stop, every node with a device: n1 cut off alone must not
    // fence n2 and n3 (a deathmatch that kills the side running the groups); the two
    // others have quorum and fence n1 before taking its group.
    let mut sim = fenced_quorum_sim();
    sim.step(6000);
    assert!(sim.runs(0, G1));
    sim.cut.insert(0);
    sim.step(1500);
    assert_eq!(
        sim.fences.iter().map(|f| (f.1, f.2.as_str())).collect::<Vec<_>>(),
        vec![(1, "n1")],
        "only the majority's first survivor fences, and only n1"
    );
    assert!(sim.logged(0, "not fencing node n2: this partition has no quorum"));
    let st = sim.engines[0].resource_status(Now::at(sim.now));
    assert!(st.fencing.iter().all(|f| f.state == "no_quorum"), "{:?}", st.fencing);
    assert!(!sim.runs(0, G1), "no quorum: n1 released its group");
    assert!(!sim.runs(1, G1), "not before n1 is fenced");
    fence_done(&mut sim, 1, "n1", true, "reset");
    sim.step(100);
    assert!(sim.runs(1, G1), "taken over once fenced");
}

#[test]
fn fencing_a_node_cut_off_does_not_fence_while_its_other_peer_is_only_late() {
    // A node cut off declares its peers dead one at a time. Here n1 stops hearing n2 300 ms
    // before it stops hearing n3: when n2 is declared dead, n3 is silent for 700 ms but not
    // yet dead, and n1 counted it for quorum and fenced n2 at once (the e2e test saw it:
    // the isolated node fenced a node of the majority). A peer silent past half a deadtime
    // no longer counts toward acting on a death.
    let mut sim = fenced_quorum_sim();
    sim.step(6000);
    assert!(sim.runs(0, G1) && sim.runs(1, G2));
    sim.one_way.insert((1, 0));
    sim.step(300);
    sim.cut.insert(0);
    sim.step(3000);
    assert!(sim.fences.iter().all(|f| f.1 != 0), "n1 fences nobody: {:?}", sim.fences);
    assert!(!sim.runs(0, G2), "nor takes n2's group");
    assert!(sim.logged(0, "fencing of node n2 waits: a peer counted for quorum is late"));
    assert!(sim.logged(0, "not fencing node n2: this partition has no quorum"));
    assert_eq!(
        sim.fences.iter().map(|f| (f.1, f.2.as_str())).collect::<Vec<_>>(),
        vec![(1, "n1")],
        "the majority fences n1"
    );
}

#[test]
fn fencing_without_a_device_waits_for_the_operator_to_confirm_the_node_is_down() {
    // Only n1 has a STONITH device: n2 cannot fence it, and says so.
    let mut sim = fenced_sim(2, &["n1"]);
    sim.step(6000);
    sim.crash(0);
    sim.step(3000);
    assert!(sim.fences.is_empty());
    let st = sim.engines[1].resource_status(Now::at(sim.now));
    assert_eq!((st.fencing[0].state, st.fencing[0].fencer.as_deref()), ("waiting", None));
    assert!(!sim.runs(1, G1));
    // `halo fence confirm n1` (meatware's confirmation or an operator's word).
    fence_done(&mut sim, 1, "n1", true, "confirmed by the operator");
    sim.step(100);
    assert!(sim.runs(1, G1));
}

#[test]
fn fencing_a_graceful_shutdown_needs_no_fence_and_a_returning_node_is_no_longer_fenced() {
    let mut sim = fenced_sim(2, &["n1", "n2"]);
    sim.step(6000);
    sim.handle(0, Event::Shutdown);
    sim.step(500);
    assert!(sim.runs(1, G1), "taken over at once after shutdone");
    assert!(sim.fences.is_empty());
    // A partition that heals before the fence: the fence is dropped, nothing moved.
    let mut sim = fenced_sim(2, &["n1", "n2"]);
    sim.step(6000);
    sim.cut.insert(0);
    sim.step(1500);
    assert_eq!(sim.fences.len(), 2);
    sim.cut.clear();
    sim.step(1500);
    assert!(sim.engines[1].resource_status(Now::at(sim.now)).fencing.is_empty());
    assert!(sim.logged(1, "node n1 is back: it is no longer to be fenced"));
    assert!(sim.runs(0, G1) && sim.runs(1, G2) && !sim.runs(1, G1) && !sim.runs(0, G2));
}

#[test]
fn fencing_a_fence_that_answers_after_the_node_is_heard_again_does_not_excuse_its_next_death() {
    // n2 fences n1 (crashed); n1 boots again before the device answers (a reset whose
    // answer came late): n2 hears the new life, then the fence's OK. That OK says nothing
    // about the life n2 hears now, which booted after the reset: when it dies, n2 must
    // fence it again before taking its group.
    let mut sim = fenced_sim(2, &["n1", "n2"]);
    sim.step(6000);
    sim.crash(0);
    sim.step(3000);
    assert_eq!(sim.fences.iter().map(|f| (f.1, f.2.as_str())).collect::<Vec<_>>(), vec![(1, "n1")]);
    sim.restart(0, false);
    sim.step(3000);
    assert!(sim.logged(1, "node n1 is back: it is no longer to be fenced"));
    fence_done(&mut sim, 1, "n1", true, "reset (answered late)");
    sim.step(500);
    assert!(
        sim.logged(1, "STONITH of node n1 succeeded (reset (answered late)) after it was no longer awaited")
    );
    sim.crash(0);
    sim.step(3000);
    assert_eq!(sim.fences.len(), 2, "the new life's death is fenced anew: {:?}", sim.fences);
    assert!(!sim.logged(1, "node n1 is dead and already fenced"));
    assert!(!sim.runs(1, G1), "not taken over before that fence lands");
    fence_done(&mut sim, 1, "n1", true, "reset");
    sim.step(500);
    assert!(sim.runs(1, G1), "taken over once fenced");
}

#[test]
fn a_node_starting_alone_acquires_every_group_after_initdead_and_not_before() {
    let mut sim = Sim::new(2, AutoFailback::On);
    // n2 never comes up.
    sim.crash(1);
    sim.step(1900);
    assert!(!sim.runs(0, G1) && !sim.runs(0, G2), "nothing before initdead (2 s): n2 may still be starting");
    sim.step(300);
    assert!(sim.runs(0, G1), "its own group once n2 is declared dead after initdead");
    assert!(sim.runs(0, G2), "and n2's group too: nobody else can run it");
}

/// A message from `src` (generation `hg`) as the wire would deliver it.
fn from_peer(src: &str, hg: u64, kind: &str, seq: u64, fields: &[(&str, &str)]) -> halo_wire::Message {
    let mut m = halo_wire::Message::of_type(kind);
    for (k, v) in fields {
        m.add(k, v);
    }
    m.add("src", src);
    m.add("seq", format!("{seq:x}"));
    m.add("hg", format!("{hg:x}"));
    m.add("ts", "6b49d200");
    m
}

/// n1 of three, fed by hand: only n3 has a STONITH device. n3 reports n2 fenced (naming
/// generation `reported_gen`) while n1 still hears n2, then n2 falls silent and n1 declares
/// it dead. Returns n1's logs and its fencing status afterwards.
fn early_stonith_news(reported_gen: &str) -> (Vec<String>, Vec<String>) {
    let mut c = CoreConfig::new("n1", &["n1", "n2", "n3"], &["eth0"]);
    c.keepalive_ms = 100;
    c.deadtime_ms = 1000;
    c.initdead_ms = 2000;
    c.generation = 5;
    c.groups = vec![GroupConfig::new(G2, "n2")];
    c.fencing =
        Some(halo_core::FencingConfig { fencers: vec!["n3".into()], retry_ms: 200, retry_max_ms: 800 });
    let mut e = Engine::new(c);
    let mut out = Vec::new();
    e.handle(Now::at(0), Event::Tick, &mut out);
    let (mut s2, mut s3) = (0, 0);
    let status = |src: &str, hg: u64, seq: u64| {
        from_peer(src, hg, "status", seq, &[("st", "active"), ("protocol", "1")])
    };
    for t in (10..=500).step_by(100) {
        s2 += 1;
        e.handle(Now::at(t), Event::Message { link: 0, msg: status("n2", 7, s2) }, &mut out);
        s3 += 1;
        e.handle(Now::at(t + 1), Event::Message { link: 0, msg: status("n3", 9, s3) }, &mut out);
        e.handle(Now::at(t + 2), Event::Tick, &mut out);
    }
    // n3 saw n2 die first and reports it fenced; n1 still hears n2 (its last status at 410).
    s3 += 1;
    let news =
        from_peer("n3", 9, "stonith", s3, &[("node", "n2"), ("result", "OK"), ("halo_gen", reported_gen)]);
    e.handle(Now::at(520), Event::Message { link: 0, msg: news }, &mut out);
    for t in (611..=2500).step_by(100) {
        s3 += 1;
        e.handle(Now::at(t), Event::Message { link: 0, msg: status("n3", 9, s3) }, &mut out);
        e.handle(Now::at(t + 1), Event::Tick, &mut out);
    }
    let logs = out
        .iter()
        .filter_map(|a| match a {
            Action::Log(_, t) => Some(t.clone()),
            _ => None,
        })
        .collect();
    let fencing =
        e.resource_status(Now::at(2600)).fencing.iter().map(|f| format!("{} {}", f.node, f.state)).collect();
    (logs, fencing)
}

#[test]
fn stonith_news_read_before_the_death_counts_for_that_generation_only() {
    // Sim seeds 742 and 22755: the fencer's `stonith OK` reached a node that still heard the
    // target; it was dropped as old news, and the node waited for a fence for ever.
    let (logs, fencing) = early_stonith_news("7");
    assert!(logs.iter().any(|l| l.contains("node n2: is dead")), "{logs:#?}");
    assert!(logs.iter().any(|l| l == "node n2 is dead and a peer reported it fenced"), "{logs:#?}");
    assert!(fencing.is_empty(), "no fence awaited: {fencing:?}");
    // News naming another generation (a late retransmission about an earlier life) is old:
    // this death still needs a fence.
    let (logs, fencing) = early_stonith_news("6");
    assert!(logs.iter().any(|l| l.contains("node n2 must be fenced before any group starts")), "{logs:#?}");
    assert_eq!(fencing, ["n2 waiting"], "{logs:#?}");
}
