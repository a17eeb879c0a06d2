//! What `halo status` shows: a plain snapshot of the engine, serialisable by the runtime.

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
