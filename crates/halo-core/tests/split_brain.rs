//! The split-brain history (`halo status`'s "Split-brain history"): engines in memory with
//! a virtual clock, a virtual network through the real codec that a test can cut, and a
//! virtual executor. A partition long enough for both sides to hold a group, then a heal:
//! each side records one episode — when, with whom, which group, who kept it and who gave
//! it up — and a plain handover records none.
use halo_config::AutoFailback;
use halo_core::status::{SplitBrain, MAX_SPLIT_BRAINS};
use halo_core::{Action, CoreConfig, Engine, Event, GroupConfig, Level, Now, OperatorCmd, RscSet};
use halo_wire::{AuthMethod, Keyring};
use std::collections::BTreeSet;

const G1: &str = "IPaddr::10.0.0.50/24/eth0";
const G2: &str = "10.0.0.60";
const DEADTIME_MS: u64 = 1000;
const AGENT_MS: u64 = 5;

struct Net {
    now: u64,
    engines: Vec<Engine>,
    /// (due, to, datagram)
    wire: Vec<(u64, usize, Vec<u8>)>,
    /// (due, node, key, start?)
    agents: Vec<(u64, usize, String, bool)>,
    running: Vec<BTreeSet<String>>,
    /// Nodes whose cable is out (nothing in, nothing out).
    cut: BTreeSet<usize>,
    logs: Vec<(u64, usize, Level, String)>,
    keyring: Keyring,
}

impl Net {
    fn new(n: usize) -> Net {
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let engines = (0..n)
            .map(|i| {
                let mut c = CoreConfig::new(&names[i], &refs, &["eth0"]);
                c.keepalive_ms = 100;
                c.deadtime_ms = DEADTIME_MS;
                c.warntime_ms = 500;
                c.initdead_ms = 2000;
                c.generation = 100;
                c.uuid = [i as u8 + 1; 16];
                c.seed = i as u64 + 7;
                c.groups = vec![GroupConfig::new(G1, "n1"), GroupConfig::new(G2, "n2")];
                c.auto_failback = AutoFailback::On;
                Engine::new(c)
            })
            .collect();
        Net {
            now: 0,
            engines,
            wire: Vec::new(),
            agents: Vec::new(),
            running: vec![BTreeSet::new(); n],
            cut: BTreeSet::new(),
            logs: Vec::new(),
            keyring: Keyring::new(1, vec![(1, AuthMethod::Sha1, b"k".to_vec())]),
        }
    }

    fn apply(&mut self, from: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(m) if !self.cut.contains(&from) => {
                    let bytes = halo_wire::encode(&m, &self.keyring);
                    for to in (0..self.engines.len()).filter(|t| *t != from && !self.cut.contains(t)) {
                        self.wire.push((self.now + 1, to, bytes.clone()));
                    }
                }
                Action::Log(l, t) => self.logs.push((self.now, from, l, t)),
                Action::StartGroup { key, .. } => self.agents.push((self.now + AGENT_MS, from, key, true)),
                Action::StopGroup { key, .. } => self.agents.push((self.now + AGENT_MS, from, key, false)),
                _ => {}
            }
        }
    }

    fn handle(&mut self, i: usize, ev: Event) {
        let mut out = Vec::new();
        self.engines[i].handle(Now::at(self.now), ev, &mut out);
        self.apply(i, out);
    }

    fn step(&mut self, ms: u64) {
        for _ in 0..ms {
            self.now += 1;
            let now = self.now;
            let (due, rest): (Vec<_>, Vec<_>) = self.wire.drain(..).partition(|w| w.0 <= now);
            self.wire = rest;
            for (_, to, bytes) in due {
                let msg = halo_wire::decode(&bytes, &self.keyring).expect("verifies");
                self.handle(to, Event::Message { link: 0, msg });
            }
            let (due, rest): (Vec<_>, Vec<_>) = self.agents.drain(..).partition(|a| a.0 <= now);
            self.agents = rest;
            for (_, node, key, start) in due {
                if start {
                    self.running[node].insert(key.clone());
                    self.handle(node, Event::GroupStarted { key, ok: true, detail: String::new() });
                } else {
                    self.running[node].remove(&key);
                    self.handle(node, Event::GroupStopped { key, ok: true, detail: String::new() });
                }
            }
            for i in 0..self.engines.len() {
                if self.engines[i].next_deadline() <= now {
                    self.handle(i, Event::Tick);
                }
            }
        }
    }

    fn history(&self, i: usize) -> Vec<SplitBrain> {
        self.engines[i].split_brains().episodes().cloned().collect()
    }

    fn holders(&self, key: &str) -> Vec<usize> {
        (0..self.engines.len()).filter(|i| self.running[*i].contains(key)).collect()
    }

    fn logs_of(&self, i: usize, needle: &str) -> Vec<&str> {
        self.logs.iter().filter(|l| l.1 == i && l.3.contains(needle)).map(|l| l.3.as_str()).collect()
    }

    /// Cuts node `i` off for `ms`, then heals; returns the time of the heal.
    fn partition(&mut self, i: usize, ms: u64) -> u64 {
        self.cut.insert(i);
        self.step(ms);
        self.cut.clear();
        self.now
    }
}

/// Two nodes up, n1 holding G1 and n2 holding G2.
fn settled(n: usize) -> Net {
    let mut net = Net::new(n);
    net.step(6000);
    assert_eq!(net.holders(G1), [0], "n1 runs its group");
    assert_eq!(net.holders(G2), [1], "n2 runs its group");
    net
}

#[test]
fn a_healed_partition_is_one_episode_on_both_sides_with_the_keeper_and_the_loser() {
    let mut net = settled(2);
    assert!(net.history(0).is_empty() && net.history(1).is_empty(), "no split-brain before the cut");
    let cut_at = net.now;
    let healed = net.partition(0, 3 * DEADTIME_MS);
    assert_eq!(net.holders(G1), [0, 1], "while cut both hold n1's group (n2 seized it)");
    assert_eq!(net.holders(G2), [0, 1], "and n2's (n1 seized it)");
    net.step(3 * DEADTIME_MS);
    assert_eq!(net.holders(G1), [0], "n1 keeps its group after the heal");
    assert_eq!(net.holders(G2), [1], "n2 keeps its group after the heal");

    for (i, me, peer) in [(0, "n1", "n2"), (1, "n2", "n1")] {
        let h = net.history(i);
        assert_eq!(h.len(), 1, "{me}: one episode: {h:#?}");
        let e = &h[0];
        assert_eq!(e.id, 1);
        assert!(
            e.detected_ms >= healed && e.detected_ms < healed + DEADTIME_MS,
            "{me}: found at the heal: {e:#?}"
        );
        assert!(e.detected_ms > cut_at);
        let resolved = e.resolved_ms.unwrap_or_else(|| panic!("{me}: resolved: {e:#?}"));
        assert!(resolved <= healed + DEADTIME_MS, "{me}: resolved within a deadtime of the heal: {e:#?}");
        assert_eq!(e.peers, [peer]);
        let mut keys = e.keys();
        keys.sort();
        assert_eq!(keys, [G2, G1], "{me}: both groups were held twice");
        for g in &e.groups {
            let (keeper, loser) = if g.key == G1 { ("n1", "n2") } else { ("n2", "n1") };
            assert_eq!(g.kept_by.as_deref(), Some(keeper), "{me}: {g:#?}");
            assert_eq!(g.released_by, [loser], "{me}: {g:#?}");
            assert!(g.lost.is_empty());
            let mut held = g.held_by.clone();
            held.sort();
            assert_eq!(held, ["n1", "n2"]);
        }
        let mut kept = e.kept_by();
        kept.sort();
        assert_eq!(kept, ["n1", "n2"]);
        let found = net.logs_of(i, "SPLIT-BRAIN (episode 1)");
        assert_eq!(found.len(), 2, "{me}: one warning per group: {found:?}");
        assert!(found[0].contains(" keeps it"), "{found:?}");
        let ended = net.logs_of(i, "split-brain (episode 1)");
        assert_eq!(ended.len(), 1, "{me}: {ended:?}");
        assert!(ended[0].contains(&format!("with {peer} resolved after")), "{ended:?}");
        assert!(ended[0].contains(&format!("{G1}: kept by n1, given up by n2")), "{ended:?}");
        assert!(net.logs.iter().any(|l| l.1 == i && l.2 == Level::Warn && l.3.starts_with("SPLIT-BRAIN")));
    }
}

#[test]
fn three_nodes_only_the_holders_record_it_and_the_seized_side_gives_up() {
    let mut net = settled(3);
    // n1 alone: n2 seizes G1 (first in ha.cf order after n1), n1 seizes G2.
    net.partition(0, 3 * DEADTIME_MS);
    net.step(3 * DEADTIME_MS);
    assert_eq!(net.holders(G1), [0]);
    assert_eq!(net.holders(G2), [1]);
    let n3 = net.history(2);
    assert!(n3.is_empty(), "n3 held nothing twice: {n3:#?}");
    let e = &net.history(0)[0];
    assert_eq!(e.peers, ["n2"], "{e:#?}");
    assert!(e.resolved_ms.is_some());
    let mut released = e.released_by();
    released.sort();
    assert_eq!(released, ["n1", "n2"], "each gave up the other's group: {e:#?}");
}

#[test]
fn plain_handovers_and_a_death_record_no_split_brain() {
    let mut net = settled(2);
    // Standby moves both groups to n2, takeover brings them back: one holder at a time.
    let mut out = Vec::new();
    let r = net.engines[0].operator(Now::at(net.now), OperatorCmd::Standby(RscSet::ALL), &mut out);
    assert!(r.is_ok(), "{r:?}");
    net.apply(0, out);
    net.step(2000);
    assert_eq!(net.holders(G1), [1], "standby moved G1");
    // Takeover of everything: a claim moves n2's own group here too.
    let mut out = Vec::new();
    let r = net.engines[0].operator(Now::at(net.now), OperatorCmd::Takeover(RscSet::ALL), &mut out);
    assert!(r.is_ok(), "{r:?}");
    net.apply(0, out);
    net.step(2000);
    assert_eq!(net.holders(G1), [0], "takeover");
    assert_eq!(net.holders(G2), [0], "takeover of n2's group");
    // n2 takes its own group back, then its cable is pulled for good: n1 takes G2 once
    // n2 is dead to it, and never hears of n2 again.
    let mut out = Vec::new();
    let r = net.engines[1].operator(
        Now::at(net.now),
        OperatorCmd::Takeover(RscSet::parse("local").unwrap()),
        &mut out,
    );
    assert!(r.is_ok(), "{r:?}");
    net.apply(1, out);
    net.step(2000);
    assert_eq!(net.holders(G2), [1], "n2 took its group back");
    net.cut.insert(1);
    net.step(3 * DEADTIME_MS);
    assert!(net.running[0].contains(G2));
    for i in 0..2 {
        let h = net.history(i);
        assert!(h.is_empty(), "n{}: no episode: {h:#?}", i + 1);
        assert!(net.logs_of(i, "SPLIT-BRAIN").is_empty());
    }
}

#[test]
fn the_history_keeps_the_last_episodes_only() {
    let mut net = settled(2);
    let rounds = MAX_SPLIT_BRAINS as u64 + 3;
    for _ in 0..rounds {
        net.partition(0, 3 * DEADTIME_MS);
        net.step(3 * DEADTIME_MS);
    }
    for i in 0..2 {
        let h = net.history(i);
        assert_eq!(h.len(), MAX_SPLIT_BRAINS, "n{}", i + 1);
        let ids: Vec<u64> = h.iter().map(|e| e.id).collect();
        let want: Vec<u64> = (rounds - MAX_SPLIT_BRAINS as u64 + 1..=rounds).collect();
        assert_eq!(ids, want, "n{}: the oldest are forgotten", i + 1);
        assert!(h.iter().all(|e| e.resolved_ms.is_some()), "n{}: every one resolved", i + 1);
        assert!(h.windows(2).all(|w| w[0].detected_ms < w[1].detected_ms));
    }
    assert!(net.engines[0].split_brains().changes() >= rounds * 3, "changes are counted for the runtime");
}
