//! The resource manager's side of a configuration reload (see `engine::reconfig`).
use super::{
    clone_group_config, new_clone, new_group, CloneConfig, ColocationConfig, GroupConfig, OrderConfig,
    Resources,
};
use halo_config::AutoFailback;

impl Resources {
    /// New nodes, groups, clones and constraints. A group kept (same key) keeps its state,
    /// failures and claims with its new preferred nodes; one in `stopped` (the runtime
    /// stopped it for the reload) starts afresh, stopped; a new one is stopped; a removed
    /// one is forgotten (the runtime stopped it first if it ran here).
    pub fn reconfigure(
        &mut self,
        nodes: &[String],
        failback: AutoFailback,
        groups: &[GroupConfig],
        (clones, order, colocation): (&[CloneConfig], &[OrderConfig], &[ColocationConfig]),
        fencing: Option<crate::engine::FencingConfig>,
        stopped: &[String],
    ) {
        self.nodes = nodes.to_vec();
        self.failback = failback;
        self.peers.retain(|n, _| nodes.contains(n));
        for n in nodes.iter().filter(|n| **n != self.me) {
            self.peers.entry(n.clone()).or_default();
        }
        self.legacy.retain(|n, _| nodes.contains(n));
        self.fences.retain(|n, _| nodes.contains(n));
        let mut old = std::mem::take(&mut self.groups);
        self.groups = groups
            .iter()
            .map(|cfg| match old.iter().position(|g| g.cfg.key == cfg.key) {
                Some(i) if !stopped.contains(&cfg.key) => {
                    let mut g = old.remove(i);
                    g.cfg = cfg.clone();
                    g
                }
                _ => new_group(cfg.clone(), &[]),
            })
            .collect();
        let mut old = std::mem::take(&mut self.clones);
        self.clones = clones
            .iter()
            .map(|c| match old.iter().position(|g| g.cfg.key == c.name) {
                Some(i) if !stopped.contains(&c.name) => {
                    let mut g = old.remove(i);
                    g.cfg = clone_group_config(c);
                    g
                }
                _ => new_clone(c, &[]),
            })
            .collect();
        self.order = order.to_vec();
        self.colocation = colocation.to_vec();
        self.fencing = fencing;
    }
}
