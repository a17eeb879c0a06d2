//! What `halo status` shows: a plain snapshot of the engine, serialisable by the runtime,
//! and the split-brain history placement keeps ([`SplitBrains`]: the runtime adds wall-clock
//! times and earlier runs' episodes).

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkStatus {
    pub name: String,
    /// "up" or "dead", as `cl_status hblinkstatus` prints them.
    pub state: &'static str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub name: String,
    /// "init", "up", "active" or "dead".
    pub state: &'static str,
    /// "normal" (or "ping" for ping nodes).
    pub kind: &'static str,
    pub generation: u64,
    pub uuid: Option<[u8; 16]>,
    pub links: Vec<LinkStatus>,
    /// Milliseconds since the last status message (None: never heard).
    pub last_heard_ms: Option<u64>,
    /// Its load average as its last status carried it (the `ld` field: the first line of
    /// its `/proc/loadavg`); None when it sends none or was never heard.
    pub load: Option<String>,
    /// The deadtime this node is timed out with (what it advertised, or ours).
    pub deadtime_ms: u64,
    pub late_heartbeats: u64,
    pub lost_packets: u64,
    /// The intervals between consecutive heartbeats (status messages) received from this
    /// peer while it was not dead (None: ourselves and ping nodes).
    pub heartbeat_interval: Option<IntervalHistogram>,
}

/// Upper bounds (ms) of the heartbeat interval histogram's buckets: around keepalives from
/// 10 ms to several seconds, up to the 30 s of a long deadtime; more falls in `+Inf`.
pub const HEARTBEAT_BUCKETS_MS: [u64; 15] =
    [10, 25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10_000, 30_000];

/// A fixed-size histogram of intervals in ms (Prometheus-style): observing one is a search
/// over [`HEARTBEAT_BUCKETS_MS`] and three adds, no allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IntervalHistogram {
    /// Per bucket (not cumulative): intervals in (previous bound, bound]; the last one is
    /// everything above the highest bound.
    pub counts: [u64; HEARTBEAT_BUCKETS_MS.len() + 1],
    pub sum_ms: u64,
    pub count: u64,
}

impl IntervalHistogram {
    pub fn observe(&mut self, ms: u64) {
        let i = HEARTBEAT_BUCKETS_MS.partition_point(|b| *b < ms);
        self.counts[i] += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count += 1;
    }

    /// `(le_ms, intervals <= le_ms)` for every finite bound, cumulative as Prometheus wants
    /// them (the `+Inf` bucket is `count`).
    pub fn cumulative(&self) -> Vec<(u64, u64)> {
        let mut acc = 0;
        HEARTBEAT_BUCKETS_MS
            .iter()
            .zip(self.counts.iter())
            .map(|(le, c)| {
                acc += c;
                (*le, acc)
            })
            .collect()
    }
}

/// Whether the nodes agree with each other: the configuration each runs (a digest its
/// heartbeats carry) and how far its clock is from ours.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsistencyStatus {
    /// Ours (None: the runtime set none).
    pub config_digest: Option<String>,
    /// Every configured node, ourselves included, in configuration order.
    pub nodes: Vec<NodeConsistency>,
    /// Live peers whose digest differs from ours, configuration order. A peer that sends
    /// none (a Heartbeat node) is not counted.
    pub config_drift: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeConsistency {
    pub name: String,
    /// What its last status carried (None: never heard, or it sends none).
    pub config_digest: Option<String>,
    /// Its wall clock minus ours in ms, smoothed (0 for ourselves; None: never heard).
    pub clock_skew_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterStatus {
    pub node: String,
    pub state: &'static str,
    pub generation: u64,
    /// Whether communication is up (Heartbeat's `comm_now_up`).
    pub comm_up: bool,
    pub flow_control: bool,
    /// Every configured node, ourselves included, in configuration order.
    pub nodes: Vec<NodeStatus>,
    /// Messages the engine refused, by reason (replay, unknown_node, ...).
    pub dropped: Vec<(&'static str, u64)>,
    pub sent_messages: u64,
    pub retransmitted: u64,
    /// Our own worst scheduling lateness seen (ms): a late daemon must not call others dead.
    pub max_lateness_ms: u64,
    pub quorum: QuorumStatus,
}

/// Quorum as this node sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumStatus {
    /// Whether this node's partition has quorum (computed even when the policy ignores it).
    pub have: bool,
    /// This node plus the peers it hears.
    pub votes: usize,
    /// Configured nodes.
    pub expected: usize,
    /// Two-node clusters with ping nodes: whether we reach one (the tie-breaker).
    pub tie_breaker: Option<bool>,
    /// `ignore`, `freeze` or `stop`.
    pub policy: &'static str,
}

// ------------------------------------------------------------------ split-brain history

/// How many split-brain episodes a node remembers (the oldest are forgotten first).
pub const MAX_SPLIT_BRAINS: usize = 20;

/// One split-brain as this node saw it: two or more nodes held one group at once, and
/// this node was one of them (a healed partition: Heartbeat's "Both machines own our
/// resources!"; or an orphan found running at start-up). It opens when the first group is
/// found doubly held and ends when every group it touched is held by one node at most.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitBrain {
    /// 1, 2, ... in this run of the engine.
    pub id: u64,
    /// Engine clock (ms) when it was found.
    pub detected_ms: u64,
    /// Engine clock (ms) when the last group it touched was held once again (None: still on).
    pub resolved_ms: Option<u64>,
    /// The other nodes that held a group at the same time as this one, ha.cf order.
    pub peers: Vec<String>,
    pub groups: Vec<SplitBrainGroup>,
}

/// One group a split-brain touched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitBrainGroup {
    pub key: String,
    /// Every node seen holding it during the episode.
    pub held_by: Vec<String>,
    /// Who holds it once the episode ended (None: nobody of `held_by`, or not ended).
    pub kept_by: Option<String>,
    /// Holders that gave it up (stopped it).
    pub released_by: Vec<String>,
    /// Holders that dropped out of sight (dead to us) before they were seen to let go.
    pub lost: Vec<String>,
}

impl SplitBrain {
    pub fn keys(&self) -> Vec<&str> {
        self.groups.iter().map(|g| g.key.as_str()).collect()
    }

    /// Every node that kept a group, without repeats.
    pub fn kept_by(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for n in self.groups.iter().filter_map(|g| g.kept_by.as_deref()) {
            if !v.contains(&n) {
                v.push(n);
            }
        }
        v
    }

    /// Every node that gave a group up, without repeats.
    pub fn released_by(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for n in self.groups.iter().flat_map(|g| g.released_by.iter()) {
            if !v.contains(&n.as_str()) {
                v.push(n);
            }
        }
        v
    }
}

/// A group's holders as placement sees them on one reconcile, and where it belongs.
pub struct HeldTwice<'a> {
    pub key: &'a str,
    pub holders: &'a [String],
    pub desired: Option<&'a str>,
}

/// The last [`MAX_SPLIT_BRAINS`] split-brains of this run, fed by placement.
#[derive(Clone, Debug, Default)]
pub struct SplitBrains {
    list: std::collections::VecDeque<SplitBrain>,
    next_id: u64,
    /// Bumped on every change: the runtime persists the history when it moves.
    changes: u64,
}

impl SplitBrains {
    pub fn episodes(&self) -> impl Iterator<Item = &SplitBrain> {
        self.list.iter()
    }

    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Whether an episode is still open.
    pub fn open(&self) -> bool {
        self.list.back().is_some_and(|e| e.resolved_ms.is_none())
    }

    /// Called after placement with the holders of every group this node holds or a
    /// split-brain touches (`holders`: this node if it holds it, and every active peer that
    /// says it does). `alive` tells a node that let go from one we no longer hear. Returns
    /// the lines to log.
    pub fn observe(
        &mut self,
        now: u64,
        me: &str,
        groups: &[HeldTwice],
        alive: &dyn Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut logs = Vec::new();
        for g in groups.iter().filter(|g| g.holders.len() > 1 && g.holders.iter().any(|h| h == me)) {
            if !self.open() {
                self.next_id += 1;
                if self.list.len() == MAX_SPLIT_BRAINS {
                    self.list.pop_front();
                }
                self.list.push_back(SplitBrain { id: self.next_id, detected_ms: now, ..Default::default() });
                self.changes += 1;
            }
            let Some(ep) = self.list.back_mut() else { break };
            let known = ep.groups.iter().position(|x| x.key == g.key);
            let i = known.unwrap_or_else(|| {
                ep.groups.push(SplitBrainGroup { key: g.key.to_string(), ..Default::default() });
                ep.groups.len() - 1
            });
            let grp = &mut ep.groups[i];
            let mut grew = known.is_none();
            for h in g.holders {
                if !grp.held_by.contains(h) {
                    grp.held_by.push(h.clone());
                    grew = true;
                }
                if h != me && !ep.peers.contains(h) {
                    ep.peers.push(h.clone());
                }
            }
            if grew {
                self.changes += 1;
                logs.push(format!(
                    "SPLIT-BRAIN (episode {}): group {} is held by {} at once; {} keeps it, the other{} give{} it up",
                    ep.id,
                    g.key,
                    grp.held_by.join(" and "),
                    g.desired.unwrap_or("no node"),
                    if grp.held_by.len() > 2 { "s" } else { "" },
                    if grp.held_by.len() > 2 { "" } else { "s" },
                ));
            }
        }
        if !self.open() {
            return logs;
        }
        let Some(ep) = self.list.back_mut() else { return logs };
        let holders_of = |key: &str| groups.iter().find(|g| g.key == key).map_or(&[][..], |g| g.holders);
        if ep.groups.iter().any(|g| holders_of(&g.key).len() > 1) {
            return logs;
        }
        ep.resolved_ms = Some(now);
        self.changes += 1;
        let mut parts = Vec::new();
        for g in ep.groups.iter_mut() {
            let now_held = holders_of(&g.key);
            g.kept_by = now_held.first().filter(|h| g.held_by.contains(h)).cloned();
            for h in &g.held_by {
                if now_held.contains(h) {
                    continue;
                }
                if alive(h) || h == me {
                    g.released_by.push(h.clone());
                } else {
                    g.lost.push(h.clone());
                }
            }
            let mut part = format!("{}: kept by {}", g.key, g.kept_by.as_deref().unwrap_or("nobody"));
            if !g.released_by.is_empty() {
                part.push_str(&format!(", given up by {}", g.released_by.join(" ")));
            }
            if !g.lost.is_empty() {
                part.push_str(&format!(", lost sight of {} before it let go", g.lost.join(" ")));
            }
            parts.push(part);
        }
        logs.push(format!(
            "split-brain (episode {}) with {} resolved after {} ms: {}",
            ep.id,
            ep.peers.join(" "),
            now.saturating_sub(ep.detected_ms),
            parts.join("; ")
        ));
        logs
    }
}
