//! A configuration reload (`halo reload`, SIGHUP) applied to a running engine without
//! dropping membership: peers keep their state, sequence tracking and generations.
//!
//! What changes live: timing (keepalive, deadtime, warntime, initdead, deadping — peers
//! judge us by the `dt` our next status advertises), max_rexmit_delay, hopfudge, the node
//! list (a new node starts in `init` as if never heard; a removed one is forgotten), the
//! resource groups, clones and constraints, auto_failback, no_quorum_policy and fencing.
//! What does not: our name, generation, uuid, links and ping nodes (the runtime opened
//! them; it reports those as needing a restart and passes the old values back).
use super::{CoreConfig, Engine};
use crate::engine::Action;

impl Engine {
    /// Applies `new` (see the module doc for what is taken from it). `stopped`: groups the
    /// runtime stopped here for the reload (removed, or changed and restarted): the engine
    /// forgets that it held them, so placement starts them again where they belong.
    pub fn reconfigure(
        &mut self,
        now: super::Now,
        new: &CoreConfig,
        stopped: &[String],
        out: &mut Vec<Action>,
    ) {
        let keep = CoreConfig {
            node: self.cfg.node.clone(),
            generation: self.cfg.generation,
            uuid: self.cfg.uuid,
            links: self.cfg.links.clone(),
            flow_control: self.cfg.flow_control,
            seed: self.cfg.seed,
            running_at_start: self.cfg.running_at_start.clone(),
            ping_nodes: self.cfg.ping_nodes.clone(),
            ..new.clone()
        };
        // Peers in the new configuration order: known ones keep everything, new ones are
        // made the way Engine::new makes them (from a throw-away engine, so their fields
        // stay defined in one place).
        let mut fresh =
            Engine::new(CoreConfig { running_at_start: Vec::new(), groups: Vec::new(), ..keep.clone() });
        let mut old = std::mem::take(&mut self.peers);
        for name in keep.nodes.iter().filter(|n| **n != keep.node) {
            if let Some(i) = old.iter().position(|p| p.name == *name) {
                self.peers.push(old.remove(i));
            } else if let Some(i) = fresh.peers.iter().position(|p| p.name == *name) {
                self.peers.push(fresh.peers.remove(i));
            }
        }
        self.cfg = keep;
        self.rsc.reconfigure(
            &self.cfg.nodes,
            self.cfg.auto_failback,
            &self.cfg.groups,
            (&self.cfg.clones, &self.cfg.order, &self.cfg.colocation),
            self.cfg.fencing.clone(),
            stopped,
        );
        // A shorter keepalive takes effect now, not after the old interval.
        if self.started_ms.is_some() {
            self.next_status_ms = self.next_status_ms.min(now.ms + self.cfg.keepalive_ms);
        }
        self.last_now_ms = now.ms;
        if self.comm_up && !self.leaving && !self.shut_down {
            self.with_rsc(now, out, |r, v, o| r.reconcile(now.ms, v, o));
        }
        self.promised_deadline = self.compute_deadline();
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Action, CoreConfig, Engine, Event, NodeState, Now};
    use crate::resources::{GroupConfig, GroupState};

    #[test]
    fn a_reload_keeps_what_did_not_change_and_knows_the_new_nodes_and_groups() {
        let mut cfg = CoreConfig::new("a", &["a", "b"], &["eth0"]);
        cfg.groups = vec![GroupConfig::new("g1", "a"), GroupConfig::new("g2", "b")];
        let mut e = Engine::new(cfg.clone());
        let mut out = Vec::new();
        e.handle(Now::at(0), Event::Tick, &mut out);
        let generation = e.config().generation;

        let mut new = cfg.clone();
        new.nodes = vec!["a".into(), "c".into()];
        new.keepalive_ms = 200;
        new.deadtime_ms = 3000;
        new.groups = vec![GroupConfig::new("g1", "a"), GroupConfig::new("g3", "c")];
        new.generation = generation + 7;
        out.clear();
        e.reconfigure(Now::at(100), &new, &[], &mut out);

        assert_eq!(e.config().keepalive_ms, 200);
        assert_eq!(e.config().deadtime_ms, 3000);
        assert_eq!(e.config().generation, generation, "the generation is this run's, never reloaded");
        assert_eq!(e.node_state("b"), None, "a removed node is forgotten");
        assert_eq!(e.node_state("c"), Some(NodeState::Init), "a new node starts unheard");
        assert_eq!(e.group_state("g1"), Some(GroupState::Stopped));
        assert_eq!(e.group_state("g2"), None);
        assert_eq!(e.group_state("g3"), Some(GroupState::Stopped));
        assert!(e.next_deadline() <= 300, "the shorter keepalive applies at once: {}", e.next_deadline());
        assert!(!out.iter().any(|a| matches!(a, Action::StartGroup { .. })), "{out:?}");
    }
}
