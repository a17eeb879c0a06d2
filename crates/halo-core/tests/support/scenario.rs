//! A schedule: the cluster's configuration and the timed faults and commands played on it,
//! all drawn from one seed. Printing a `Scenario` shows what a seed does; the seed alone
//! replays it.
use super::Rng;
use halo_config::AutoFailback;
use halo_core::{CloneConfig, ColocationConfig, GroupConfig, OperatorCmd, OrderConfig, RscSet};
use std::fmt;

/// How a virtual resource agent behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Ok,
    Fail,
    /// Never answers: the executor reports a failure after [`Scenario::agent_timeout_ms`].
    Hang,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// Nodes with different side numbers stop hearing each other (both ways).
    Partition(Vec<u8>),
    /// Messages from `from` no longer reach `to` (the other direction still works).
    OneWay {
        from: usize,
        to: usize,
    },
    /// Every cut and one-way loss ends.
    Heal,
    /// Link quality between all nodes: loss, duplication (percent) and the largest delay
    /// (random delays reorder).
    Quality {
        drop_pct: u64,
        dup_pct: u64,
        max_delay_ms: u64,
    },
    /// A node stops (or starts again) reaching the ping node.
    Ping {
        node: usize,
        ok: bool,
    },
    /// kill -9 of halo: the groups it ran keep running (a VIP stays configured).
    CrashHalo(usize),
    /// The machine dies: everything it ran is gone.
    CrashMachine(usize),
    /// A down node starts again (generation raised, running groups probed).
    Restart(usize),
    /// Graceful stop (`halo` gets SIGTERM): release, `shutdone`, exit.
    Shutdown(usize),
    Operator(usize, OperatorCmd),
    /// From now on a group's agent on a node starts / stops like this.
    Agent {
        node: usize,
        group: usize,
        start: Mode,
        stop: Mode,
    },
    /// The monitor of a running group fails on a node.
    MonitorFail {
        node: usize,
        group: usize,
    },
}

pub use halo_core::NoQuorumPolicy;

#[derive(Clone, Debug)]
pub struct Scenario {
    pub seed: u64,
    pub nodes: usize,
    pub groups: Vec<GroupConfig>,
    pub clones: Vec<CloneConfig>,
    pub order: Vec<OrderConfig>,
    pub colocation: Vec<ColocationConfig>,
    pub failback: AutoFailback,
    pub keepalive_ms: u64,
    pub deadtime_ms: u64,
    pub initdead_ms: u64,
    pub deadping_ms: u64,
    /// A ping node `gw` is configured (two-node clusters only).
    pub ping: bool,
    pub policy: NoQuorumPolicy,
    /// When each node boots.
    pub boot_at: Vec<u64>,
    /// Agent run time range (ms) and the executor's timeout for a hung agent.
    pub agent_ms: (u64, u64),
    pub agent_timeout_ms: u64,
    pub quality: (u64, u64, u64),
    pub ops: Vec<(u64, Op)>,
    /// End of the chaos: the network heals for good, down nodes restart, agents behave.
    pub chaos_end: u64,
    /// STONITH configured on every node: the percentage of fences that fail (until the
    /// chaos ends). None: no fencing.
    pub fencing: Option<u64>,
    /// An attacker on the segment sends again, to any node, this percentage of as many
    /// packets as the cluster sends: validly signed ones it recorded earlier (until the
    /// chaos ends). Drawn apart from the rest, so seeds without replays play as before.
    pub replay_pct: u64,
}

impl Scenario {
    pub fn generate(seed: u64) -> Scenario {
        let mut r = Rng::new(seed);
        let nodes = if r.pct(35) { 2 } else { r.range(3, 7) as usize };
        let ngroups = r.range(1, 3) as usize;
        let groups = (0..ngroups)
            .map(|i| {
                GroupConfig::new(&format!("10.0.0.{}", 50 + i), &format!("n{}", r.below(nodes as u64) + 1))
            })
            .collect::<Vec<GroupConfig>>();
        let failback = *r.pick(&[
            AutoFailback::On,
            AutoFailback::On,
            AutoFailback::Off,
            AutoFailback::Off,
            AutoFailback::Legacy,
        ]);
        let keepalive_ms = *r.pick(&[100, 200, 500]);
        let deadtime_ms = keepalive_ms * r.range(4, 10);
        let initdead_ms = deadtime_ms * 2;
        let deadping_ms = deadtime_ms;
        let ping = nodes == 2 && r.pct(60);
        let policy = match r.below(4) {
            0 => NoQuorumPolicy::Ignore,
            1 => NoQuorumPolicy::Freeze,
            _ => NoQuorumPolicy::Stop,
        };
        let boot_at =
            (0..nodes).map(|_| if r.pct(80) { r.below(300) } else { r.below(initdead_ms * 2) }).collect();
        let agent_ms = (1, *r.pick(&[5, 20, 100]));
        let agent_timeout_ms = deadtime_ms;
        let quality =
            if r.pct(50) { (0, 0, r.range(1, 3)) } else { (r.below(15), r.below(10), r.range(1, 40)) };
        let chaos_end = r.range(3, 8) * deadtime_ms + 500;
        let nops = r.range(2, 14);
        let mut ops = Vec::new();
        for _ in 0..nops {
            let at = r.range(200, chaos_end - 1);
            let node = r.below(nodes as u64) as usize;
            let other = (node + 1 + r.below(nodes as u64 - 1) as usize) % nodes;
            let group = r.below(ngroups as u64) as usize;
            let op = match r.below(100) {
                0..=14 => {
                    let sides = if nodes > 3 && r.pct(30) { 3 } else { 2 };
                    Op::Partition((0..nodes).map(|_| r.below(sides) as u8).collect())
                }
                15..=22 => Op::OneWay { from: node, to: other },
                23..=37 => Op::Heal,
                38..=43 => {
                    Op::Quality { drop_pct: r.below(25), dup_pct: r.below(15), max_delay_ms: r.range(1, 60) }
                }
                44..=48 => Op::Ping { node, ok: r.pct(40) },
                49..=56 => Op::CrashHalo(node),
                57..=60 => Op::CrashMachine(node),
                61..=70 => Op::Restart(node),
                71..=73 => Op::Shutdown(node),
                74..=85 => {
                    let set = *r.pick(&[
                        RscSet::ALL,
                        RscSet::parse("local").unwrap(),
                        RscSet::parse("foreign").unwrap(),
                    ]);
                    let cmd = match r.below(3) {
                        0 => OperatorCmd::Standby(set),
                        1 => OperatorCmd::Takeover(set),
                        _ => OperatorCmd::Cleanup(None),
                    };
                    Op::Operator(node, cmd)
                }
                86..=94 => {
                    let modes = [Mode::Ok, Mode::Ok, Mode::Fail, Mode::Hang];
                    Op::Agent { node, group, start: *r.pick(&modes), stop: *r.pick(&modes) }
                }
                _ => Op::MonitorFail { node, group },
            };
            ops.push((at, op));
        }
        ops.sort_by_key(|(t, _)| *t);
        // halo.toml's placement, drawn last so that the draws above stay what they were:
        // more preferred nodes, a clone, an order and a colocation constraint.
        let mut groups = groups;
        for g in groups.iter_mut() {
            if r.pct(40) {
                g.nodes = vec![g.node.clone()];
                for _ in 0..r.range(1, 3) {
                    let n = format!("n{}", r.below(nodes as u64) + 1);
                    if !g.nodes.contains(&n) {
                        g.nodes.push(n);
                    }
                }
            }
        }
        let mut clones = Vec::new();
        if r.pct(40) {
            let listed = if r.pct(50) {
                Vec::new()
            } else {
                (1..=nodes).filter(|_| r.pct(70)).map(|i| format!("n{i}")).collect()
            };
            clones.push(CloneConfig { name: "pingd".into(), nodes: listed });
        }
        let mut order = Vec::new();
        let mut colocation = Vec::new();
        if r.pct(40) {
            let then = groups[r.below(ngroups as u64) as usize].key.clone();
            let first = if !clones.is_empty() && (ngroups == 1 || r.pct(50)) {
                Some(clones[0].name.clone())
            } else {
                groups.iter().map(|g| g.key.clone()).find(|k| *k != then)
            };
            if let Some(first) = first {
                order.push(OrderConfig { first, then });
            }
        }
        if ngroups > 1 && r.pct(40) {
            colocation.push(ColocationConfig {
                group: groups[1].key.clone(),
                with: groups[0].key.clone(),
                apart: r.pct(50),
            });
        }
        // Fencing, drawn after everything else for the same reason.
        let fencing = if r.pct(50) { Some(*r.pick(&[0, 0, 30])) } else { None };
        Scenario {
            fencing,
            replay_pct: {
                let mut r = Rng::new(seed ^ 0x2e91_a7c3_5d0b_f611);
                if r.pct(50) {
                    0
                } else {
                    r.range(1, 10)
                }
            },
            clones,
            order,
            colocation,
            seed,
            nodes,
            groups,
            failback,
            keepalive_ms,
            deadtime_ms,
            initdead_ms,
            deadping_ms,
            ping,
            policy,
            boot_at,
            agent_ms,
            agent_timeout_ms,
            quality,
            ops,
            chaos_end,
        }
    }

    /// How long a node counts a silent peer toward starting a group: the engine's
    /// `late_ms` (half a deadtime, at least two keepalives, at most a deadtime) after the
    /// last heartbeat it heard, which left at most a keepalive before the cut and took at
    /// most the largest network delay.
    pub fn fresh_ms(&self) -> u64 {
        (self.deadtime_ms / 2).max(2 * self.keepalive_ms).min(self.deadtime_ms) + 60
    }

    /// Invariant (b)'s handover bound: once the nodes agree on membership, a group held by
    /// two nodes is down to one within this: statements exchanged (retransmitted if lost,
    /// within a deadtime), the loser's agent finished — a start that hangs cannot be
    /// stopped before the executor's timeout ends it — and its stop run.
    pub fn handover_ms(&self) -> u64 {
        // With an order constraint, what is ordered after a group stops before it: one
        // more agent run (which may hang until the timeout).
        let deps = if self.order.is_empty() { 0 } else { self.agent_timeout_ms + self.agent_ms.1 };
        self.deadtime_ms + self.agent_timeout_ms + self.agent_ms.1 + deps
    }

    /// Invariant (c)'s bound, counted from the operator's clean-up after the heal: every
    /// group runs on exactly one node within it (comm up after a restart, statements,
    /// one stop and one start).
    pub fn settle_ms(&self) -> u64 {
        3 * self.deadtime_ms + self.initdead_ms + 4 * self.agent_ms.1
    }

    /// When the operator cleans up after the heal (in-flight hung agents have timed out).
    pub fn cleanup_at(&self) -> u64 {
        self.chaos_end + self.agent_timeout_ms + 1
    }

    /// The run ends here at the latest; it ends earlier once every group stayed settled
    /// for [`Scenario::steady_ms`].
    pub fn end(&self) -> u64 {
        self.cleanup_at() + self.settle_ms() + self.steady_ms()
    }

    pub fn steady_ms(&self) -> u64 {
        2 * self.deadtime_ms
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "seed {}: {} nodes, groups [{}], auto_failback {:?}, keepalive {} ms, deadtime {} ms, initdead {} ms, ping node: {}, no_quorum_policy {:?}",
            self.seed,
            self.nodes,
            self.groups.iter().map(|g| format!("{}@{}", g.key, g.preferred().join(","))).collect::<Vec<_>>().join(" "),
            self.failback,
            self.keepalive_ms,
            self.deadtime_ms,
            self.initdead_ms,
            self.ping,
            self.policy,
        )?;
        writeln!(
            f,
            "  boot at {:?} ms; agents {}..{} ms, timeout {} ms; network drop {}% dup {}% delay <= {} ms",
            self.boot_at,
            self.agent_ms.0,
            self.agent_ms.1,
            self.agent_timeout_ms,
            self.quality.0,
            self.quality.1,
            self.quality.2
        )?;
        if self.replay_pct > 0 {
            writeln!(f, "  an attacker replays recorded packets: {}% of the packets sent", self.replay_pct)?;
        }
        if let Some(fail) = self.fencing {
            writeln!(f, "  fencing on every node, {fail}% of fences fail")?;
        }
        if !self.clones.is_empty() || !self.order.is_empty() || !self.colocation.is_empty() {
            writeln!(
                f,
                "  clones {:?}; order {:?}; colocation {:?}",
                self.clones, self.order, self.colocation
            )?;
        }
        for (t, op) in &self.ops {
            writeln!(f, "  at {t:>6} ms: {op:?}")?;
        }
        writeln!(
            f,
            "  at {:>6} ms: heal for good, restart down nodes, agents behave; cleanup at {} ms; (c) checked from {} ms to {} ms",
            self.chaos_end,
            self.cleanup_at(),
            self.cleanup_at() + self.settle_ms(),
            self.end()
        )
    }
}
