//! The membership engine: Heartbeat 3.0.6's liveness and join protocol over messages.
//!
//! Timeline of a node (spec §3.12): it sends `status st=init`, then `st=up`, and advertises
//! a deadtime 2 s longer than its own for the first 5 s. Once every configured node has
//! been heard from (or `initdead` has passed and the silent ones were declared dead) it
//! asks a live peer for the node list (`reqnodes`), and when the reply (`repnodes`) arrives
//! communication is "up": it goes `active`. A peer is dead when no `status` message came
//! from it for the deadtime *it* advertised (`dt`). Every sequenced message can be asked
//! for again (`NS_rexmit`) and is acknowledged (`NS_ackmsg`) as Heartbeat does it.
use crate::history::{History, Lookup};
use crate::resources::{
    CloneConfig, ColocationConfig, GroupConfig, OperatorCmd, OrderConfig, ResourceStatus, Resources, RscOut,
    View,
};
use crate::seqtrack::{GenVerdict, SeqTrack, Verdict};
use crate::status::{ClusterStatus, IntervalHistogram, LinkStatus, NodeStatus, QuorumStatus};
use halo_config::AutoFailback;
use halo_wire::Message;
use std::collections::{BTreeMap, VecDeque};

/// A configuration reload applied live (`halo reload`).
mod reconfig;

/// The time of an event: a monotonic clock in milliseconds (only differences matter) and
/// the wall clock in seconds (only for the `ts` field peers require) and in milliseconds
/// (only to measure the clock skew between nodes: see `CLOCK_FIELD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    pub ms: u64,
    pub wall_secs: u64,
    pub wall_ms: u64,
}

impl Now {
    pub fn at(ms: u64) -> Now {
        Now { ms, wall_secs: 1_800_000_000 + ms / 1000, wall_ms: 1_800_000_000_000 + ms }
    }
}

/// halo's own fields in `status` messages (Heartbeat ignores fields it does not know: a
/// 3.0.6 peer reads `st`, `dt` and `protocol` and nothing else of a status). The digest of
/// the sender's configuration (`halo_config::config_digest`), so that nodes see whether
/// they all run the same one.
pub const CONFIG_DIGEST_FIELD: &str = "halo_cfg";
/// The sender's wall clock in hex milliseconds: `ts` has whole seconds only, too coarse to
/// tell a skew of a second from none.
pub const CLOCK_FIELD: &str = "halo_ms";
/// Each new skew sample moves the estimate this fraction of the way (1/N): one late packet
/// does not swing it, a real step shows within a few heartbeats.
const SKEW_SMOOTHING: i64 = 4;

#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Our node name (lower-case).
    pub node: String,
    /// Every configured normal node, ourselves included, lower-case, config order.
    pub nodes: Vec<String>,
    pub keepalive_ms: u64,
    pub deadtime_ms: u64,
    pub warntime_ms: u64,
    pub initdead_ms: u64,
    pub max_rexmit_delay_ms: u64,
    pub hopfudge: u8,
    /// This start's generation (persisted and raised by the runtime).
    pub generation: u64,
    pub uuid: [u8; 16],
    /// Link names, indexed as the runtime indexes its links.
    pub links: Vec<String>,
    /// Advertise `protocol=1` (ACKs and `reqnodes`), as 3.0.6 does by default.
    pub flow_control: bool,
    /// Seed of the engine's only randomness (ACK triggers, retransmit-request jitter).
    pub seed: u64,
    /// haresources groups (empty: resources are not managed).
    pub groups: Vec<GroupConfig>,
    pub auto_failback: AutoFailback,
    /// Groups the start-up probe found running here: held until placement says otherwise,
    /// never started twice.
    pub running_at_start: Vec<String>,
    /// ha.cf ping nodes (`ping`, `ping6`, `ping_group` names): alive while they answer.
    pub ping_nodes: Vec<String>,
    /// A ping node is dead after this long without an answer (`deadping`).
    pub deadping_ms: u64,
    /// What a node without quorum does with resource groups. `Ignore` (the default, as
    /// Heartbeat 3 without a quorum plugin) never checks quorum.
    pub no_quorum_policy: NoQuorumPolicy,
    /// halo.toml's clones (run on every listed node at once, halo-only).
    pub clones: Vec<CloneConfig>,
    /// halo.toml's order constraints (by group or clone name).
    pub order: Vec<OrderConfig>,
    /// halo.toml's colocation constraints (by group or clone name).
    pub colocation: Vec<ColocationConfig>,
    /// STONITH (ha.cf `stonith`/`stonith_host`). None: no fencing, Heartbeat's behaviour
    /// without a STONITH device (a dead node's groups are taken over at once).
    pub fencing: Option<FencingConfig>,
}

/// Who can fence. With fencing, a node that timed out (or left while a stop failed) is
/// fenced before any group starts anywhere its death could matter; see the resources
/// module for who fences and what waits.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FencingConfig {
    /// Nodes that have a STONITH device (a `stonith_host` line naming them or `*`, or a
    /// `stonith` line: every node). Any of them can fence any other node.
    pub fencers: Vec<String>,
    /// First retry after a failed fence; each further failure doubles it up to
    /// `retry_max_ms`.
    pub retry_ms: u64,
    pub retry_max_ms: u64,
}

impl FencingConfig {
    /// Every node can fence, retries from 2 s up to 60 s.
    pub fn all(nodes: &[String]) -> FencingConfig {
        FencingConfig { fencers: nodes.to_vec(), retry_ms: 2000, retry_max_ms: 60_000 }
    }

    pub fn can_fence(&self, node: &str) -> bool {
        self.fencers.iter().any(|n| n == node)
    }
}

/// What a node does while its partition lacks quorum. Quorum is a strict majority of the
/// configured nodes (this node and the peers it hears); in a two-node cluster with ping
/// nodes, a lone node has quorum while it reaches a ping node (Heartbeat's quorum-plugin
/// tie-breaker: the half still on the network keeps serving).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NoQuorumPolicy {
    /// No quorum checks at all (Heartbeat-compatible default).
    #[default]
    Ignore,
    /// Keep what runs here, start nothing (no takeover, no restart, no move).
    Freeze,
    /// Release every group; start nothing until quorum returns.
    Stop,
}

impl NoQuorumPolicy {
    pub fn name(self) -> &'static str {
        match self {
            NoQuorumPolicy::Ignore => "ignore",
            NoQuorumPolicy::Freeze => "freeze",
            NoQuorumPolicy::Stop => "stop",
        }
    }

    /// `ignore`, `freeze` or `stop` (Pacemaker's `no-quorum-policy` names).
    pub fn parse(s: &str) -> Option<NoQuorumPolicy> {
        Some(match s {
            "ignore" => NoQuorumPolicy::Ignore,
            "freeze" => NoQuorumPolicy::Freeze,
            "stop" => NoQuorumPolicy::Stop,
            _ => return None,
        })
    }
}

impl CoreConfig {
    /// A configuration with Heartbeat's defaults, for tests and simulations.
    pub fn new(node: &str, nodes: &[&str], links: &[&str]) -> CoreConfig {
        CoreConfig {
            node: node.to_string(),
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            keepalive_ms: 1000,
            deadtime_ms: 10_000,
            warntime_ms: 5000,
            initdead_ms: 20_000,
            max_rexmit_delay_ms: 250,
            hopfudge: 1,
            generation: 1,
            uuid: [0; 16],
            links: links.iter().map(|s| s.to_string()).collect(),
            flow_control: true,
            seed: 1,
            groups: Vec::new(),
            auto_failback: AutoFailback::On,
            running_at_start: Vec::new(),
            ping_nodes: Vec::new(),
            deadping_ms: 10_000,
            no_quorum_policy: NoQuorumPolicy::Ignore,
            clones: Vec::new(),
            order: Vec::new(),
            colocation: Vec::new(),
            fencing: None,
        }
    }
}

#[derive(Debug)]
pub enum Event {
    /// Time passed; the runtime sends one at [`Engine::next_deadline`] at the latest.
    Tick,
    /// An authenticated message arrived on link `link`.
    Message { link: usize, msg: Message },
    /// The first line of `/proc/loadavg`, carried in the `ld` field.
    Load(String),
    /// Graceful stop: release every group, then tell the peers we leave (`shutdone`), so
    /// they take over at once instead of waiting deadtime. [`Action::Exit`] follows.
    Shutdown,
    /// The runtime finished starting a group ([`Action::StartGroup`]).
    GroupStarted { key: String, ok: bool, detail: String },
    /// The runtime finished stopping a group ([`Action::StopGroup`]).
    GroupStopped { key: String, ok: bool, detail: String },
    /// A running group's periodic monitor found a resource not running.
    MonitorFailed { key: String, why: String },
    /// A ping node answered an ICMP echo.
    PingReply { node: String },
    /// The runtime finished fencing a node ([`Action::Fence`]), or an operator vouched
    /// that it is down (`halo fence confirm`). `ok`: it is powered off / reset.
    FenceDone { node: String, ok: bool, detail: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
    Crit,
}

#[derive(Debug, PartialEq)]
pub enum Action {
    /// Send on every link (Heartbeat writes every message to all media).
    Send(Message),
    Log(Level, String),
    /// Start a resource group (left to right); answer with [`Event::GroupStarted`].
    StartGroup {
        key: String,
        reason: String,
    },
    /// Stop a resource group (right to left); answer with [`Event::GroupStopped`].
    StopGroup {
        key: String,
        reason: String,
    },
    /// Announce a held group's addresses again (gratuitous ARP / NA).
    Announce {
        key: String,
    },
    /// Fence (STONITH) a node: power it off or reset it, so that whatever it ran is gone.
    /// Answer with [`Event::FenceDone`]; until then no group starts here.
    Fence {
        node: String,
    },
    /// The graceful shutdown is complete: the runtime may exit.
    Exit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Init,
    Up,
    Active,
    Dead,
}

impl NodeState {
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Init => "init",
            NodeState::Up => "up",
            NodeState::Active => "active",
            NodeState::Dead => "dead",
        }
    }

    fn parse(s: &str) -> Option<NodeState> {
        Some(match s {
            "init" => NodeState::Init,
            "up" => NodeState::Up,
            "active" => NodeState::Active,
            "dead" => NodeState::Dead,
            _ => return None,
        })
    }
}

/// How long a starting node advertises a longer deadtime (spec §3.12: 5 s, +2 s).
const STARTUP_DT_MS: u64 = 5000;
const STARTUP_DT_EXTRA_MS: u64 = 2000;
const REQNODES_RETRY_MS: u64 = 1000;
const MAX_REXMIT_PER_REQUEST: u64 = 50;
const ACK_EVERY: u64 = 10;
/// Repeated warnings of one kind are logged at most this often.
const LOG_QUIET_MS: u64 = 5000;
/// Unsequenced (`NS_*`) messages carry no `seq`, only the sender's `ts` (whole seconds): one
/// older than the sender's newest sequenced message by more than this is a replay.
const NS_WINDOW_SECS: u64 = 2;
/// At most this many unsequenced messages per peer are remembered to refuse their copies.
const NS_SEEN_MAX: usize = 256;

struct Peer {
    name: String,
    state: NodeState,
    /// When the last `status` arrived (None: never).
    last_status_ms: Option<u64>,
    /// Deadtime the peer advertised in `dt` (None: use ours).
    advertised_dt: Option<u64>,
    seq: SeqTrack,
    uuid: Option<[u8; 16]>,
    /// Per link: when anything last arrived on it from this peer.
    link_heard: Vec<Option<u64>>,
    link_up: Vec<bool>,
    /// Per link: the highest seq of this generation that arrived on it. Only a packet that
    /// passed the generation/sequence window marks a link alive: a new message, or the
    /// first copy on this link of one another link delivered first. A replayed old
    /// heartbeat must not keep a dead link up.
    link_seq: Vec<u64>,
    /// `ts` of its newest sequenced message (this generation): the reference for the
    /// freshness of its unsequenced ones (see `NS_WINDOW_SECS`).
    ts_ref: Option<u64>,
    /// Unsequenced messages accepted from it lately (`ts`, digest of all fields): a copy
    /// is a replay (or a duplicate over another link), so a replayed `NS_rexmit` is never
    /// served twice. Older than the window they are refused by `ts` alone.
    ns_seen: VecDeque<(u64, u64)>,
    /// The peer advertises `protocol` (flow control); None until its first status.
    protocol: Option<bool>,
    ack_trigger: u64,
    /// Highest seq of ours this peer acknowledged.
    acked: u64,
    heard_ever: bool,
    late_heartbeats: u64,
    lost_packets: u64,
    /// Intervals between its consecutive heartbeats (while not dead), for `/metrics`.
    heartbeat_interval: IntervalHistogram,
    /// We saw it die; a return with the same generation is a healed partition.
    declared_dead: bool,
    /// The `ld` field of its last status (its load average), when it sends one.
    load: Option<String>,
    /// Sequence number of the newest `status` applied (this generation): a retransmitted
    /// older one (a gap filled after a partition) must not set the state back.
    status_seq: u64,
    /// First heard (this generation) since we last checked its status: a peer that is
    /// already `active` then came up without us (alone, or across a partition) and its
    /// `starting` never reached us.
    first_contact: bool,
    /// The configuration digest its last status carried (halo peers only).
    config_digest: Option<String>,
    /// Its wall clock minus ours (ms) when its status messages arrive, smoothed; from its
    /// `halo_ms` field, or from Heartbeat's whole-second `ts` (to within half a second).
    clock_skew_ms: Option<i64>,
}

impl Peer {
    /// Whether we ask this peer to resend what we missed (not while we hold it dead).
    fn asks_rexmit(&self) -> bool {
        self.state != NodeState::Dead && self.heard_ever
    }

    fn deadtime(&self, cfg: &CoreConfig, comm_up: bool) -> u64 {
        if !comm_up {
            return cfg.initdead_ms;
        }
        self.advertised_dt.unwrap_or(cfg.deadtime_ms)
    }
}

pub struct Engine {
    cfg: CoreConfig,
    state: NodeState,
    started_ms: Option<u64>,
    peers: Vec<Peer>,
    seq: u64,
    history: History,
    load: String,
    /// Our configuration digest, carried in every status (None: not sent).
    config_digest: Option<String>,
    comm_up: bool,
    flow_control: bool,
    /// Waiting for `repnodes`: when the next `reqnodes` goes out.
    reqnodes_at: Option<u64>,
    reqnodes_rotor: usize,
    next_status_ms: u64,
    /// The deadline we last asked the runtime for; a tick much later means we stalled.
    promised_deadline: u64,
    startup_dt_pending: bool,
    /// After our own stall, death verdicts wait until this time.
    defer_deaths_until: u64,
    max_lateness_ms: u64,
    dropped: BTreeMap<&'static str, u64>,
    quiet_until: BTreeMap<&'static str, u64>,
    sent_messages: u64,
    retransmitted: u64,
    rng: u64,
    shut_down: bool,
    /// Shutdown asked: groups are being released before `shutdone`.
    leaving: bool,
    rsc: Resources,
    last_now_ms: u64,
    /// Ping nodes: name, last answer (the start counts as one: a ping node is presumed
    /// alive until deadping passes in silence, so a starting node does not look cut off),
    /// and whether it is alive.
    pings: Vec<(String, u64, bool)>,
    /// Placement is a function of the resource manager's state, the membership view and
    /// time (the resource manager's own deadlines), so `reconcile` runs only when one of
    /// them changed: it used to run after every event, every heartbeat included, and build
    /// a full `resource` message each time just to compare it with the last one sent.
    /// Set by every other resource-manager step, and by a reconcile that acted (its own
    /// effects may call for another step).
    rsc_dirty: bool,
    /// The view the last reconcile saw: each peer's state, and the quorum policy in force.
    rsc_view: Vec<NodeState>,
    rsc_no_quorum: Option<NoQuorumPolicy>,
    /// And whether quorum was settled (see `quorum_settled`).
    rsc_settled: bool,
    /// When the last reconcile's time-dependent decisions change (`Resources::deadline`).
    rsc_due: Option<u64>,
}

impl Engine {
    pub fn new(cfg: CoreConfig) -> Engine {
        let mut rng = cfg.seed ^ 0x9e37_79b9_7f4a_7c15;
        let mut peers = Vec::new();
        for name in cfg.nodes.iter().filter(|n| **n != cfg.node) {
            let ack_trigger = next_rand(&mut rng) % ACK_EVERY;
            peers.push(Peer {
                name: name.clone(),
                state: NodeState::Init,
                last_status_ms: None,
                advertised_dt: None,
                seq: SeqTrack::default(),
                uuid: None,
                link_heard: vec![None; cfg.links.len()],
                link_up: vec![false; cfg.links.len()],
                link_seq: vec![0; cfg.links.len()],
                ts_ref: None,
                ns_seen: VecDeque::new(),
                protocol: None,
                ack_trigger,
                acked: 0,
                heard_ever: false,
                late_heartbeats: 0,
                lost_packets: 0,
                heartbeat_interval: IntervalHistogram::default(),
                declared_dead: false,
                load: None,
                status_seq: 0,
                first_contact: false,
                config_digest: None,
                clock_skew_ms: None,
            });
        }
        let flow_control = cfg.flow_control;
        let mut rsc =
            Resources::new(&cfg.node, &cfg.nodes, cfg.auto_failback, &cfg.groups, &cfg.running_at_start);
        rsc.set_placement(&cfg.clones, &cfg.order, &cfg.colocation, &cfg.running_at_start);
        rsc.set_fencing(cfg.fencing.clone());
        rsc.set_generation(cfg.generation);
        if !cfg.ping_nodes.is_empty() {
            rsc.set_ping_count(cfg.ping_nodes.len());
        }
        Engine {
            cfg,
            state: NodeState::Init,
            started_ms: None,
            peers,
            seq: 0,
            history: History::default(),
            load: String::new(),
            config_digest: None,
            comm_up: false,
            flow_control,
            reqnodes_at: None,
            reqnodes_rotor: 0,
            next_status_ms: 0,
            promised_deadline: 0,
            startup_dt_pending: true,
            defer_deaths_until: 0,
            max_lateness_ms: 0,
            dropped: BTreeMap::new(),
            quiet_until: BTreeMap::new(),
            sent_messages: 0,
            retransmitted: 0,
            rng,
            shut_down: false,
            leaving: false,
            rsc,
            last_now_ms: 0,
            pings: Vec::new(),
            rsc_dirty: true,
            rsc_view: Vec::new(),
            rsc_no_quorum: None,
            rsc_settled: true,
            rsc_due: None,
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.cfg
    }

    pub fn state(&self) -> NodeState {
        self.state
    }

    pub fn comm_up(&self) -> bool {
        self.comm_up
    }

    /// The state we currently hold of `node` (ourselves included).
    pub fn node_state(&self, node: &str) -> Option<NodeState> {
        if node == self.cfg.node {
            return Some(self.state);
        }
        self.peers.iter().find(|p| p.name == node).map(|p| p.state)
    }

    /// The digest of the configuration this node runs, sent in every status from now on
    /// (at start, and again after a reload).
    pub fn set_config_digest(&mut self, digest: String) {
        self.config_digest = Some(digest);
    }

    /// Whether the nodes agree: configuration digests and clock skews as their heartbeats
    /// told them.
    pub fn consistency(&self) -> crate::status::ConsistencyStatus {
        use crate::status::{ConsistencyStatus, NodeConsistency};
        let mut nodes = Vec::new();
        let mut drift = Vec::new();
        for name in &self.cfg.nodes {
            if *name == self.cfg.node {
                nodes.push(NodeConsistency {
                    name: name.clone(),
                    config_digest: self.config_digest.clone(),
                    clock_skew_ms: Some(0),
                });
                continue;
            }
            let Some(p) = self.peers.iter().find(|p| p.name == *name) else { continue };
            if p.state != NodeState::Dead {
                if let (Some(ours), Some(theirs)) = (&self.config_digest, &p.config_digest) {
                    if ours != theirs {
                        drift.push(p.name.clone());
                    }
                }
            }
            nodes.push(NodeConsistency {
                name: p.name.clone(),
                config_digest: p.config_digest.clone(),
                clock_skew_ms: p.clock_skew_ms,
            });
        }
        ConsistencyStatus { config_digest: self.config_digest.clone(), nodes, config_drift: drift }
    }

    /// The latest time by which the runtime must deliver the next [`Event::Tick`]. Computed
    /// once at the end of every [`handle`](Self::handle) (only `handle` changes the state),
    /// so the runtime may ask as often as it likes.
    pub fn next_deadline(&self) -> u64 {
        self.promised_deadline
    }

    fn compute_deadline(&self) -> u64 {
        let Some(started) = self.started_ms else {
            return 0;
        };
        if self.shut_down {
            return u64::MAX;
        }
        let mut d = self.next_status_ms;
        if let Some(r) = self.reqnodes_at {
            d = d.min(r);
        }
        if self.startup_dt_pending {
            d = d.min(started + STARTUP_DT_MS);
        }
        // Death verdicts are held back while we recover from our own stall.
        let hold = self.defer_deaths_until;
        for p in &self.peers {
            let deadtime = p.deadtime(&self.cfg, self.comm_up);
            if p.state != NodeState::Dead {
                let base = p.last_status_ms.unwrap_or(started);
                d = d.min((base + deadtime + 1).max(hold));
            }
            for (i, heard) in p.link_heard.iter().enumerate() {
                if let (true, Some(h)) = (p.link_up[i], heard) {
                    d = d.min((h + deadtime + 1).max(hold));
                }
            }
            // Only gaps that request_missing will ask for: a gap of a peer we hold dead
            // (its messages arrive before the status that revives it) waits for that status;
            // counting it would put the deadline in the past and spin the runtime.
            if p.asks_rexmit() {
                if let Some(at) = p.seq.missing.values().min() {
                    d = d.min(*at);
                }
            }
        }
        if let Some(r) = self.rsc.deadline(self.last_now_ms) {
            d = d.min(r);
        }
        for p in self.pings.iter().filter(|p| p.2) {
            d = d.min(p.1 + self.cfg.deadping_ms + 1);
        }
        d
    }

    pub fn handle(&mut self, now: Now, ev: Event, out: &mut Vec<Action>) {
        if self.shut_down {
            return;
        }
        if self.started_ms.is_none() {
            self.start(now, out);
        }
        self.last_now_ms = now.ms;
        match ev {
            Event::Tick => self.tick(now, out),
            Event::Message { link, msg } => self.receive(now, link, msg, out),
            Event::Load(l) => self.load = l,
            Event::Shutdown => {
                if !self.leaving {
                    self.leaving = true;
                    self.with_rsc(now, out, |r, _, o| r.shutdown(o));
                }
            }
            Event::GroupStarted { key, ok, detail } => {
                self.with_rsc(now, out, |r, v, o| r.started(now.ms, &key, ok, &detail, v, o))
            }
            Event::GroupStopped { key, ok, detail } => {
                self.with_rsc(now, out, |r, v, o| r.stopped(now.ms, &key, ok, &detail, v, o))
            }
            Event::MonitorFailed { key, why } => {
                self.with_rsc(now, out, |r, _, o| r.monitor_failed(now.ms, &key, &why, o))
            }
            Event::FenceDone { node, ok, detail } => {
                self.with_rsc(now, out, |r, v, o| r.fence_done(now.ms, &node, ok, &detail, v, o))
            }
            Event::PingReply { node } => {
                if let Some(p) = self.pings.iter_mut().find(|p| p.0 == node) {
                    p.1 = now.ms;
                    if !p.2 {
                        p.2 = true;
                        out.push(Action::Log(
                            Level::Info,
                            format!("Status update for ping node {node}: status ping"),
                        ));
                        self.ping_count_changed();
                    }
                }
            }
        }
        if self.leaving && !self.shut_down {
            if self.rsc.all_released() {
                let mut m = Message::of_type("shutdone");
                m.add("st", "dead");
                self.send(now, m, out);
                out.push(Action::Log(
                    Level::Info,
                    "halo shutdown: resources released, sent shutdone to the cluster".into(),
                ));
                out.push(Action::Exit);
                self.shut_down = true;
            }
        } else if self.comm_up && !self.shut_down {
            self.reconcile(now, out);
        }
        self.promised_deadline = self.compute_deadline();
    }

    /// Runs placement when its inputs changed since it last ran (see `rsc_dirty`).
    fn reconcile(&mut self, now: Now, out: &mut Vec<Action>) {
        let no_quorum = self.no_quorum();
        let settled = self.quorum_settled(now);
        let same_view = self.rsc_no_quorum == no_quorum
            && self.rsc_settled == settled
            && self.rsc_view.len() == self.peers.len()
            && self.peers.iter().zip(&self.rsc_view).all(|(p, s)| p.state == *s);
        let due = self.rsc_due.is_some_and(|d| now.ms >= d);
        if !self.rsc_dirty && same_view && !due {
            return;
        }
        let before = out.len();
        self.with_rsc(now, out, |r, v, o| r.reconcile(now.ms, v, o));
        self.rsc_dirty = out.len() != before;
        self.rsc_view.clear();
        self.rsc_view.extend(self.peers.iter().map(|p| p.state));
        self.rsc_no_quorum = no_quorum;
        self.rsc_settled = settled;
        self.rsc_due = self.rsc.deadline(now.ms);
    }

    /// Runs a resource-manager step with the membership view, then sends what it produced.
    fn with_rsc(
        &mut self,
        now: Now,
        out: &mut Vec<Action>,
        f: impl FnOnce(&mut Resources, &View, &mut RscOut),
    ) {
        self.rsc_dirty = true;
        let mut ro = RscOut::default();
        let no_quorum = self.no_quorum();
        let settled = self.quorum_settled(now);
        {
            let peers = &self.peers;
            let active = |n: &str| peers.iter().any(|p| p.name == n && p.state == NodeState::Active);
            let alive = |n: &str| peers.iter().any(|p| p.name == n && p.state != NodeState::Dead);
            let generation = |n: &str| {
                peers
                    .iter()
                    .find(|p| p.name == n && p.heard_ever)
                    .map(|p| p.seq.generation)
                    .filter(|g| *g > 0)
            };
            let view = View { active: &active, alive: &alive, no_quorum, settled, generation: &generation };
            f(&mut self.rsc, &view, &mut ro);
        }
        out.append(&mut ro.actions);
        for m in ro.msgs {
            self.send(now, m, out);
        }
    }

    /// An operator's `standby`, `takeover` or `cleanup`; the answer is for the operator.
    pub fn operator(&mut self, now: Now, cmd: OperatorCmd, out: &mut Vec<Action>) -> Result<String, String> {
        if self.leaving {
            return Err("halo is shutting down".into());
        }
        let mut result = Err(String::new());
        self.with_rsc(now, out, |r, _, o| result = r.operator(cmd, o));
        if self.comm_up {
            self.reconcile(now, out);
        }
        self.promised_deadline = self.compute_deadline();
        result
    }

    /// Our own state of a group (None: no such group).
    pub fn group_state(&self, key: &str) -> Option<crate::resources::GroupState> {
        self.rsc.group_state(key)
    }

    /// What this node is in standby for.
    pub fn standby(&self) -> crate::resources::RscSet {
        self.rsc.standby()
    }

    /// Keys of the groups running here (for the runtime's monitors).
    pub fn running_groups(&self) -> Vec<String> {
        self.rsc.running_keys()
    }

    /// The split-brains of this run (groups held here and elsewhere at once), oldest first.
    pub fn split_brains(&self) -> &crate::status::SplitBrains {
        self.rsc.split_brains()
    }

    pub fn resource_status(&self, now: Now) -> ResourceStatus {
        let peers = &self.peers;
        let active = |n: &str| peers.iter().any(|p| p.name == n && p.state == NodeState::Active);
        let alive = |n: &str| peers.iter().any(|p| p.name == n && p.state != NodeState::Dead);
        let settled = self.quorum_settled(now);
        let generation = |_: &str| None;
        let view = View {
            active: &active,
            alive: &alive,
            no_quorum: self.no_quorum(),
            settled,
            generation: &generation,
        };
        self.rsc.status(now.ms, &view)
    }

    /// Quorum as this node sees it: its own vote and one per peer it hears (not dead).
    pub fn quorum(&self) -> QuorumStatus {
        let expected = self.cfg.nodes.len().max(1);
        let votes = 1 + self.peers.iter().filter(|p| p.heard_ever && p.state != NodeState::Dead).count();
        let tie_breaker = expected == 2 && !self.cfg.ping_nodes.is_empty();
        let reaches_ping = self.pings.iter().any(|p| p.2);
        let have = votes * 2 > expected || (tie_breaker && reaches_ping);
        QuorumStatus {
            have,
            votes,
            expected,
            tie_breaker: if tie_breaker { Some(reaches_ping) } else { None },
            policy: self.cfg.no_quorum_policy.name(),
        }
    }

    /// Whether quorum holds counting only the peers heard lately (within [`late_ms`]), or
    /// quorum is ignored. A node cut off from the others declares them dead one at a time,
    /// up to a keepalive apart: when the first dies, the others are still counted though
    /// silent for nearly a deadtime, and the cut-off node would believe for a moment that it
    /// has quorum — and fence, or take a group over. Acting on a death (a fence, a start)
    /// waits for this; releasing for want of quorum does not (a late peer is no reason to).
    ///
    /// [`late_ms`]: Self::late_ms
    fn quorum_settled(&self, now: Now) -> bool {
        if self.cfg.no_quorum_policy == NoQuorumPolicy::Ignore {
            return true;
        }
        let q = self.quorum();
        if !q.have {
            return false;
        }
        let late = self.late_ms();
        let fresh = 1 + self
            .peers
            .iter()
            .filter(|p| {
                p.heard_ever
                    && p.state != NodeState::Dead
                    && p.last_status_ms.is_some_and(|t| now.ms.saturating_sub(t) <= late)
            })
            .count();
        fresh * 2 > q.expected || q.tie_breaker == Some(true)
    }

    /// Silent longer than this, a live peer does not count toward acting on a death: half a
    /// deadtime, at least two keepalives, at most a deadtime.
    fn late_ms(&self) -> u64 {
        (self.cfg.deadtime_ms / 2).max(2 * self.cfg.keepalive_ms).min(self.cfg.deadtime_ms)
    }

    /// The policy in force now: None while we have quorum or quorum is ignored.
    fn no_quorum(&self) -> Option<NoQuorumPolicy> {
        match self.cfg.no_quorum_policy {
            NoQuorumPolicy::Ignore => None,
            p if !self.quorum().have => Some(p),
            _ => None,
        }
    }

    fn ping_count_changed(&mut self) {
        let n = self.pings.iter().filter(|p| p.2).count();
        self.rsc_dirty = true;
        self.rsc.set_ping_count(n);
    }

    fn check_pings(&mut self, now: Now, out: &mut Vec<Action>) {
        let deadping = self.cfg.deadping_ms;
        let mut changed = false;
        for p in self.pings.iter_mut() {
            if p.2 && now.ms > p.1 + deadping {
                p.2 = false;
                changed = true;
                out.push(Action::Log(Level::Warn, format!("ping node {}: is dead", p.0)));
            }
        }
        if changed {
            self.ping_count_changed();
        }
    }

    fn start(&mut self, now: Now, out: &mut Vec<Action>) {
        self.started_ms = Some(now.ms);
        self.pings = self.cfg.ping_nodes.iter().map(|n| (n.clone(), now.ms, true)).collect();
        out.push(Action::Log(
            Level::Info,
            format!(
                "Configuration validated. Starting halo {} on node {} (generation {})",
                env!("CARGO_PKG_VERSION"),
                self.cfg.node,
                self.cfg.generation
            ),
        ));
        self.send_status(now, out);
        // Heartbeat goes init -> up at once (it sends `up` twice right after `init`).
        self.state = NodeState::Up;
        self.send_status(now, out);
        self.next_status_ms = now.ms + self.cfg.keepalive_ms;
        if self.peers.is_empty() {
            self.comm_now_up(now, out);
        }
    }

    fn advertised_dt(&self, now: Now) -> u64 {
        match self.started_ms {
            Some(s) if now.ms < s + STARTUP_DT_MS => self.cfg.deadtime_ms + STARTUP_DT_EXTRA_MS,
            _ => self.cfg.deadtime_ms,
        }
    }

    fn send_status(&mut self, now: Now, out: &mut Vec<Action>) {
        let mut m = Message::of_type("status");
        m.add("st", self.state.name());
        m.add("dt", format!("{:x}", self.advertised_dt(now)));
        if self.flow_control {
            m.add("protocol", "1");
        }
        if let Some(d) = &self.config_digest {
            m.add(CONFIG_DIGEST_FIELD, d);
        }
        m.add(CLOCK_FIELD, format!("{:x}", now.wall_ms));
        self.send(now, m, out);
    }

    /// Adds the standard fields (spec §3.8) in Heartbeat's order, records sequenced
    /// messages for retransmission, and emits the send.
    fn send(&mut self, now: Now, mut m: Message, out: &mut Vec<Action>) {
        let kind = m.kind().unwrap_or("").to_string();
        let ns = kind.starts_with("NS_");
        if let Some(dest) = m.get("dest").map(str::to_string) {
            if let Some(uuid) = self.uuid_of(&dest) {
                m.set_binary("destuuid", uuid);
            }
        }
        m.set("src", &self.cfg.node);
        m.set_binary("srcuuid", self.cfg.uuid);
        if !ns {
            self.seq += 1;
            m.set("seq", format!("{:x}", self.seq));
        }
        m.set("hg", format!("{:x}", self.cfg.generation));
        m.set("ts", format!("{:x}", now.wall_secs));
        if !ns && !self.load.is_empty() {
            m.set("ld", &self.load);
        }
        m.set("ttl", (self.cfg.hopfudge as usize + self.cfg.nodes.len()).to_string());
        if !ns {
            self.history.push(self.seq, &m, now.ms);
        }
        self.sent_messages += 1;
        out.push(Action::Send(m));
    }

    fn uuid_of(&self, node: &str) -> Option<[u8; 16]> {
        if node == self.cfg.node {
            return Some(self.cfg.uuid);
        }
        self.peers.iter().find(|p| p.name == node).and_then(|p| p.uuid)
    }

    fn drop_msg(
        &mut self,
        now: Now,
        reason: &'static str,
        detail: impl FnOnce() -> String,
        out: &mut Vec<Action>,
    ) {
        *self.dropped.entry(reason).or_default() += 1;
        let quiet = self.quiet_until.entry(reason).or_default();
        if now.ms >= *quiet {
            *quiet = now.ms + LOG_QUIET_MS;
            out.push(Action::Log(Level::Warn, detail()));
        }
    }

    // ---------------------------------------------------------------- receiving

    fn receive(&mut self, now: Now, link: usize, msg: Message, out: &mut Vec<Action>) {
        let Some(kind) = msg.kind().map(str::to_string) else {
            return self.drop_msg(now, "no_type", || "dropped a message without a type (t)".into(), out);
        };
        let Some(src) = msg.get("src").map(str::to_ascii_lowercase) else {
            return self.drop_msg(now, "no_src", || format!("dropped a {kind} message without src"), out);
        };
        if src == self.cfg.node {
            // Our own broadcast/multicast looped back: not an error, just not news.
            *self.dropped.entry("own").or_default() += 1;
            return;
        }
        let Some(pi) = self.peers.iter().position(|p| p.name == src) else {
            return self.drop_msg(
                now,
                "unknown_node",
                || format!("received a {kind} message from unknown node {src} (not in ha.cf)"),
                out,
            );
        };
        if msg.get_hex("ts").unwrap_or(0) == 0 {
            return self.drop_msg(
                now,
                "malformed",
                || format!("dropped a {kind} message from {src} without ts"),
                out,
            );
        }
        let ns = kind.starts_with("NS_");
        let hg = msg.get_hex("hg").unwrap_or(0);
        let seq = msg.get_hex("seq");
        if !ns && seq.is_none() {
            return self.drop_msg(
                now,
                "malformed",
                || format!("dropped a {kind} message from {src} without seq"),
                out,
            );
        }
        let for_us = match msg.get("dest") {
            None => true,
            Some(d) => d.eq_ignore_ascii_case(&self.cfg.node),
        };
        if ns && !for_us {
            return;
        }

        match self.peers[pi].seq.check_generation(hg) {
            GenVerdict::Older { current } => {
                return self.drop_msg(
                    now,
                    "replay",
                    || format!("attempted replay attack [{src}]? [gen = {hg}, curgen = {current}]: message dropped"),
                    out,
                );
            }
            GenVerdict::Newer { previous } => {
                if previous > 0 {
                    out.push(Action::Log(Level::Info, format!("Heartbeat restart on node {src}")));
                    let name = src.clone();
                    self.with_rsc(now, out, |r, _, o| r.peer_returned(now.ms, &name, true, o));
                } else if self.peers[pi].declared_dead {
                    // First heard after we held it dead without ever hearing it (initdead):
                    // "dead" meant "holds nothing", but it may have booted with groups found
                    // running. Until it says, placement waits for it. (Simulator seed 7012,
                    // with fencing: started here while the returning node still ran it.)
                    let name = src.clone();
                    self.with_rsc(now, out, |r, _, o| r.peer_returned(now.ms, &name, true, o));
                }
                let p = &mut self.peers[pi];
                p.seq.new_generation(hg);
                // A restarted node may run another configuration, or a corrected clock.
                p.config_digest = None;
                p.clock_skew_ms = None;
                p.declared_dead = false;
                p.status_seq = 0;
                p.first_contact = previous == 0;
                p.link_seq.iter_mut().for_each(|s| *s = 0);
                p.ts_ref = None;
                p.ns_seen.clear();
            }
            GenVerdict::Same => {}
        }

        if let Some(u) = msg.get_bytes("srcuuid") {
            if let Ok(u) = <[u8; 16]>::try_from(u) {
                self.peers[pi].uuid = Some(u);
            }
        }

        if let Some(seq) = seq {
            if !ns {
                let jitter = self.cfg.max_rexmit_delay_ms.max(50);
                let first_request = now.ms + 50 + next_rand(&mut self.rng) % (jitter - 49);
                let verdict = self.peers[pi].seq.observe(seq, |_| first_request);
                let newest = matches!(
                    verdict,
                    Verdict::Accept | Verdict::AcceptWithGap { .. } | Verdict::Reset { .. }
                );
                if newest {
                    // The reference for the freshness of its unsequenced messages.
                    self.peers[pi].ts_ref = msg.get_hex("ts");
                }
                if verdict != Verdict::Stale {
                    self.link_fresh(now, pi, link, seq, verdict != Verdict::Duplicate, out);
                }
                match verdict {
                    Verdict::Accept => {}
                    Verdict::Duplicate => {
                        *self.dropped.entry("duplicate").or_default() += 1;
                        return;
                    }
                    Verdict::Stale => {
                        return self.drop_msg(
                            now,
                            "stale_seq",
                            || format!("dropped an old message from {src} (seq {seq:x})"),
                            out,
                        );
                    }
                    Verdict::AcceptWithGap { last, missing } => {
                        self.peers[pi].lost_packets += missing;
                        out.push(Action::Log(
                            Level::Warn,
                            format!("{missing} lost packet(s) for [{src}] [{last:x}:{seq:x}]"),
                        ));
                    }
                    Verdict::Reset { last } => {
                        out.push(Action::Log(
                            Level::Warn,
                            format!("lost a lot of packets from {src} [{last:x}:{seq:x}]: resetting its sequence tracking"),
                        ));
                    }
                    Verdict::FillsGap { now_complete } => {
                        if now_complete {
                            out.push(Action::Log(Level::Info, format!("No pkts missing from {src}!")));
                            let last = self.peers[pi].seq.last;
                            self.maybe_ack(now, pi, last, true, out);
                        }
                    }
                }
                self.maybe_ack(now, pi, seq, false, out);
            }
        }
        if ns && !self.ns_fresh(now, pi, link, &msg, out) {
            return;
        }
        // A Heartbeat's self-addressed `ip-request-resp` (legacy `req_resource` when it
        // believes itself alone) says which group it takes.
        let takes =
            kind == "ip-request-resp" && msg.get("dest").is_some_and(|d| d.eq_ignore_ascii_case(&src));
        if !for_us && !takes {
            return;
        }

        match kind.as_str() {
            "status" => self.on_status(now, pi, &msg, out),
            "NS_rexmit" => self.on_rexmit(now, pi, &msg, out),
            "NS_nak_rexmit" => {
                if let Some(s) = msg.get_hex("firstseq") {
                    self.peers[pi].seq.give_up(s);
                }
            }
            "NS_ackmsg" => {
                if let Some(a) = msg.get_hex("ackseq") {
                    let p = &mut self.peers[pi];
                    if a > p.acked && a <= self.seq {
                        p.acked = a;
                    }
                }
            }
            "reqnodes" => self.on_reqnodes(now, pi, out),
            "repnodes" => self.on_repnodes(now, pi, &msg, out),
            "shutdone" => {
                out.push(Action::Log(Level::Info, format!("Received shutdown notice from '{src}'.")));
                self.set_dead(now, pi, false, out);
            }
            "starting" | "resource" | "ask_resources" | "hb_takeover" | "stonith" => {
                if kind == "starting" {
                    self.starting_means_active(pi, seq.unwrap_or(0), out);
                }
                self.with_rsc(now, out, |r, v, o| r.on_message(now.ms, &src, &kind, &msg, v, o));
            }
            // Legacy mode's resource requests (rc.d/ip-request, ip-request-resp).
            "ip-request" | "ip-request-resp" => {
                self.with_rsc(now, out, |r, v, o| r.on_message(now.ms, &src, &kind, &msg, v, o));
            }
            _ => {}
        }
    }

    /// A node says `starting` only once it is active (`comm_now_up`, Heartbeat too). If its
    /// `status st=active` is late or lost, we would place groups without it while it places
    /// them with itself: both could start one. So its `starting` makes it active here.
    fn starting_means_active(&mut self, pi: usize, seq: u64, out: &mut Vec<Action>) {
        let p = &mut self.peers[pi];
        if matches!(p.state, NodeState::Init | NodeState::Up) && p.heard_ever {
            p.state = NodeState::Active;
            // An older status (st=up) still on its way must not set it back.
            p.status_seq = p.status_seq.max(seq);
            out.push(Action::Log(
                Level::Info,
                format!("Status update for node {}: status active (it says starting)", p.name),
            ));
        }
    }

    /// Whether an unsequenced message is new: not older than the window, not a copy of one
    /// accepted lately. Only then does it prove its link.
    fn ns_fresh(&mut self, now: Now, pi: usize, link: usize, msg: &Message, out: &mut Vec<Action>) -> bool {
        let ts = msg.get_hex("ts").unwrap_or(0);
        if let Some(newest) = self.peers[pi].ts_ref.filter(|r| ts.saturating_add(NS_WINDOW_SECS) < *r) {
            let (kind, src) = (msg.kind().unwrap_or(""), &self.peers[pi].name);
            let text = format!("dropped an old {kind} from {src} (ts {ts:x}, newest {newest:x}): a replay?");
            self.drop_msg(now, "stale_ns", || text, out);
            return false;
        }
        let digest = ns_digest(msg);
        let p = &mut self.peers[pi];
        if p.ns_seen.iter().any(|(_, d)| *d == digest) {
            // Like a sequenced copy: the normal case with several links, or a replay.
            *self.dropped.entry("duplicate").or_default() += 1;
            return false;
        }
        if let Some(r) = p.ts_ref {
            while p.ns_seen.front().is_some_and(|(t, _)| t.saturating_add(NS_WINDOW_SECS) < r) {
                p.ns_seen.pop_front();
            }
        }
        if p.ns_seen.len() >= NS_SEEN_MAX {
            p.ns_seen.pop_front();
        }
        p.ns_seen.push_back((ts, digest));
        self.link_heard(now, pi, link, out);
        true
    }

    /// A sequenced packet on `link`: it proves the link if it is new (`fresh`: it passed
    /// the sequence window) or the first copy on this link of one another link brought.
    fn link_fresh(&mut self, now: Now, pi: usize, link: usize, seq: u64, fresh: bool, out: &mut Vec<Action>) {
        let Some(last) = self.peers[pi].link_seq.get_mut(link) else { return };
        if !fresh && seq <= *last {
            return;
        }
        *last = (*last).max(seq);
        self.link_heard(now, pi, link, out);
    }

    fn link_heard(&mut self, now: Now, pi: usize, link: usize, out: &mut Vec<Action>) {
        let p = &mut self.peers[pi];
        if link >= p.link_heard.len() {
            return;
        }
        p.link_heard[link] = Some(now.ms);
        if !p.link_up[link] {
            p.link_up[link] = true;
            out.push(Action::Log(Level::Info, format!("Link {}:{} up.", p.name, self.cfg.links[link])));
        }
    }

    fn maybe_ack(&mut self, now: Now, pi: usize, seq: u64, force: bool, out: &mut Vec<Action>) {
        let p = &self.peers[pi];
        if !self.flow_control || p.protocol != Some(true) || !p.seq.missing.is_empty() {
            return;
        }
        if force || seq % ACK_EVERY == p.ack_trigger {
            let mut m = Message::of_type("NS_ackmsg");
            m.add("dest", &p.name);
            m.add("ackseq", format!("{seq:x}"));
            self.send(now, m, out);
        }
    }

    fn on_status(&mut self, now: Now, pi: usize, msg: &Message, out: &mut Vec<Action>) {
        let warntime = self.cfg.warntime_ms;
        let deadtime = self.cfg.deadtime_ms;
        let st = msg.get("st").and_then(NodeState::parse).unwrap_or(NodeState::Up);
        let has_protocol = msg.has("protocol");
        let p = &mut self.peers[pi];
        // Heartbeat ignores a status older than the last one ("Status ordering", spec
        // §3.11). Within a generation seq alone orders them: a status retransmitted to fill
        // a gap after a partition would otherwise set an active peer back to `up`.
        let seq = msg.get_hex("seq").unwrap_or(0);
        if seq < p.status_seq {
            *self.dropped.entry("old_status").or_default() += 1;
            return;
        }
        p.status_seq = seq;
        if let Some(last) = p.last_status_ms {
            let interval = now.ms.saturating_sub(last);
            if p.state != NodeState::Dead {
                p.heartbeat_interval.observe(interval);
            }
            if p.state != NodeState::Dead && interval > warntime {
                p.late_heartbeats += 1;
                let lvl = if interval > deadtime { Level::Crit } else { Level::Warn };
                let extra = if interval > deadtime { " (> deadtime)" } else { "" };
                out.push(Action::Log(
                    lvl,
                    format!("Late heartbeat: Node {}: interval {interval} ms{extra}", p.name),
                ));
            }
        }
        p.last_status_ms = Some(now.ms);
        p.heard_ever = true;
        p.advertised_dt = msg.get_hex("dt").filter(|dt| *dt > 0);
        p.protocol = Some(has_protocol);
        if let Some(ld) = msg.get("ld") {
            p.load = Some(ld.to_string());
        }
        if let Some(d) = msg.get(CONFIG_DIGEST_FIELD) {
            // Every status carries it, nearly always unchanged: no new String per heartbeat.
            let d = d.char_indices().nth(64).map_or(d, |(end, _)| &d[..end]);
            if p.config_digest.as_deref() != Some(d) {
                p.config_digest = Some(d.to_string());
            }
        }
        // Its clock minus ours. `ts` is whole seconds: its middle is the best guess.
        let theirs = match msg.get_hex(CLOCK_FIELD) {
            Some(ms) => Some(ms as i128),
            None => msg.get_hex("ts").map(|s| s as i128 * 1000 + 500),
        };
        if let Some(t) = theirs {
            let sample = (t - now.wall_ms as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
            p.clock_skew_ms = Some(match p.clock_skew_ms {
                None => sample,
                Some(s) => s + (sample - s) / SKEW_SMOOTHING,
            });
        }
        if p.declared_dead && st != NodeState::Dead {
            p.declared_dead = false;
            let name = p.name.clone();
            out.push(Action::Log(Level::Crit, format!("Cluster node {name} returning after partition.")));
            self.with_rsc(now, out, |r, _, o| r.peer_returned(now.ms, &name, false, o));
        }
        let p = &mut self.peers[pi];
        if std::mem::take(&mut p.first_contact) && st == NodeState::Active && self.comm_up {
            // It went active without hearing us (it booted alone or behind a partition and
            // took what it found unheld): its `starting` is lost, so ask what it holds, as
            // after a partition; until it answers, placement waits for it.
            let name = p.name.clone();
            out.push(Action::Log(
                Level::Warn,
                format!("node {name} is already active at first contact: asking what it holds"),
            ));
            self.with_rsc(now, out, |r, _, o| r.peer_returned(now.ms, &name, true, o));
        }
        if !has_protocol && self.flow_control {
            self.flow_control = false;
            out.push(Action::Log(
                Level::Info,
                format!(
                    "flow control disabled due to different version heartbeat (node {})",
                    self.peers[pi].name
                ),
            ));
        }
        let p = &mut self.peers[pi];
        if st != p.state {
            p.state = st;
            out.push(Action::Log(
                Level::Info,
                format!("Status update for node {}: status {}", p.name, st.name()),
            ));
        }
        self.check_comm_up(now, out);
    }

    fn on_rexmit(&mut self, now: Now, pi: usize, msg: &Message, out: &mut Vec<Action>) {
        let (Some(first), Some(last)) = (msg.get_dec("firstseq"), msg.get_dec("lastseq")) else {
            return self.drop_msg(
                now,
                "malformed",
                || "dropped an NS_rexmit without a valid range".into(),
                out,
            );
        };
        if last < first {
            return;
        }
        let last = last.min(first + MAX_REXMIT_PER_REQUEST - 1);
        let damp = self.cfg.max_rexmit_delay_ms.saturating_sub(10);
        for seq in first..=last {
            let resend = match self.history.lookup(seq) {
                Lookup::Found(s) => {
                    if now.ms >= s.last_sent_ms + damp {
                        s.last_sent_ms = now.ms;
                        Ok(Some(s.msg.unpack()))
                    } else {
                        Ok(None)
                    }
                }
                Lookup::TooLow => Err("seqno too low"),
                Lookup::NotFound => Err("seqno not found"),
            };
            match resend {
                Ok(Some(m)) => {
                    self.retransmitted += 1;
                    out.push(Action::Send(m));
                }
                Ok(None) => {}
                Err(info) if seq <= self.seq => {
                    let mut m = Message::of_type("NS_nak_rexmit");
                    m.add("firstseq", format!("{seq:x}"));
                    m.add("dest", self.peers[pi].name.clone());
                    m.add("info", info);
                    self.send(now, m, out);
                }
                Err(_) => {}
            }
        }
    }

    fn on_reqnodes(&mut self, now: Now, pi: usize, out: &mut Vec<Action>) {
        // Field order as 3.0.6 sends it: dest first, then t (spec §3.9).
        let mut m = Message::new();
        m.add("dest", self.peers[pi].name.clone());
        m.add("t", "repnodes");
        let mut list = String::new();
        for n in &self.cfg.nodes {
            list.push_str(n);
            list.push(' ');
        }
        m.add("nodelist", list);
        m.add("delnodelist", " ");
        self.send(now, m, out);
    }

    fn on_repnodes(&mut self, now: Now, pi: usize, msg: &Message, out: &mut Vec<Action>) {
        if self.comm_up || self.reqnodes_at.is_none() {
            return;
        }
        let theirs: Vec<String> =
            msg.get("nodelist").unwrap_or("").split_whitespace().map(str::to_ascii_lowercase).collect();
        let missing: Vec<&String> = theirs.iter().filter(|n| !self.cfg.nodes.contains(n)).collect();
        let extra: Vec<&String> = self.cfg.nodes.iter().filter(|n| !theirs.contains(n)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            out.push(Action::Log(
                Level::Warn,
                format!(
                    "node list of {} differs from ours: it has [{}] that ha.cf lacks, lacks [{}]; keeping ha.cf's list",
                    self.peers[pi].name,
                    join(&missing),
                    join(&extra)
                ),
            ));
        }
        self.comm_now_up(now, out);
    }

    // ---------------------------------------------------------------- time

    fn tick(&mut self, now: Now, out: &mut Vec<Action>) {
        let Some(started) = self.started_ms else {
            return;
        };
        // Our own lateness: a tick long after the deadline we asked for means this process
        // did not run. Judging others then would blame them for our stall.
        let lateness = now.ms.saturating_sub(self.promised_deadline);
        self.max_lateness_ms = self.max_lateness_ms.max(lateness);
        if lateness > self.cfg.warntime_ms.min(self.cfg.keepalive_ms * 2) {
            self.defer_deaths_until = now.ms + self.cfg.keepalive_ms;
            out.push(Action::Log(
                Level::Warn,
                format!("halo itself was late by {lateness} ms (scheduling); death verdicts deferred by one keepalive"),
            ));
        }
        if self.startup_dt_pending && now.ms >= started + STARTUP_DT_MS {
            // Our advertised deadtime drops to the configured one: tell the peers now.
            self.startup_dt_pending = false;
            self.next_status_ms = now.ms;
        }
        if now.ms >= self.next_status_ms {
            self.send_status(now, out);
            self.next_status_ms = now.ms + self.cfg.keepalive_ms;
        }

        if now.ms >= self.defer_deaths_until {
            for pi in 0..self.peers.len() {
                self.check_peer(now, started, pi, out);
            }
            self.check_pings(now, out);
        }

        if !self.comm_up {
            self.check_comm_up(now, out);
        }
        if let Some(at) = self.reqnodes_at {
            if now.ms >= at {
                self.send_reqnodes(now, out);
            }
        }
        self.request_missing(now, out);
    }

    fn check_peer(&mut self, now: Now, started: u64, pi: usize, out: &mut Vec<Action>) {
        let comm_up = self.comm_up;
        let deadtime = self.peers[pi].deadtime(&self.cfg, comm_up);
        let p = &self.peers[pi];
        let mut alive_links = 0;
        let mut dying = Vec::new();
        for (i, heard) in p.link_heard.iter().enumerate() {
            if !p.link_up[i] {
                continue;
            }
            if heard.is_some_and(|h| now.ms > h + deadtime) {
                dying.push(i);
            } else {
                alive_links += 1;
            }
        }
        for i in dying {
            let p = &mut self.peers[pi];
            p.link_up[i] = false;
            let text = format!("Link {}:{} dead.", p.name, self.cfg.links[i]);
            if alive_links > 0 {
                out.push(Action::Log(
                    Level::Warn,
                    format!("{text} Node {} is still reachable over {alive_links} other link(s).", p.name),
                ));
            } else {
                out.push(Action::Log(Level::Info, text));
            }
        }
        let p = &self.peers[pi];
        if p.state != NodeState::Dead {
            let base = p.last_status_ms.unwrap_or(started);
            if now.ms > base + deadtime {
                self.set_dead(now, pi, true, out);
            }
        }
    }

    fn set_dead(&mut self, now: Now, pi: usize, timed_out: bool, out: &mut Vec<Action>) {
        let p = &mut self.peers[pi];
        if p.state == NodeState::Dead {
            return;
        }
        p.state = NodeState::Dead;
        p.declared_dead = timed_out;
        p.seq.missing.clear();
        if timed_out {
            out.push(Action::Log(Level::Warn, format!("node {}: is dead", p.name)));
        } else {
            out.push(Action::Log(Level::Info, format!("node {}: is dead (shut down)", p.name)));
        }
        for i in 0..p.link_up.len() {
            if p.link_up[i] {
                p.link_up[i] = false;
                out.push(Action::Log(Level::Info, format!("Link {}:{} dead.", p.name, self.cfg.links[i])));
            }
        }
        let name = p.name.clone();
        self.with_rsc(now, out, |r, v, o| r.peer_dead(now.ms, &name, timed_out, v, o));
        if !self.comm_up {
            self.check_comm_up(now, out);
        }
    }

    fn request_missing(&mut self, now: Now, out: &mut Vec<Action>) {
        let delay = self.cfg.max_rexmit_delay_ms.max(1);
        for pi in 0..self.peers.len() {
            let p = &mut self.peers[pi];
            if !p.asks_rexmit() {
                continue;
            }
            let due: Vec<u64> =
                p.seq.missing.iter().filter(|(_, at)| **at <= now.ms).map(|(s, _)| *s).collect();
            if due.is_empty() {
                continue;
            }
            for s in &due {
                p.seq.missing.insert(*s, now.ms + delay);
            }
            let name = p.name.clone();
            // Contiguous runs go in one request (Heartbeat sends one per seq; both parse).
            let mut i = 0;
            while i < due.len() {
                let first = due[i];
                let mut last = first;
                while i + 1 < due.len() && due[i + 1] == last + 1 && last - first + 1 < MAX_REXMIT_PER_REQUEST
                {
                    i += 1;
                    last = due[i];
                }
                i += 1;
                let mut m = Message::of_type("NS_rexmit");
                m.add("dest", &name);
                m.add("firstseq", first.to_string());
                m.add("lastseq", last.to_string());
                self.send(now, m, out);
            }
        }
    }

    // ---------------------------------------------------------------- joining

    /// Communication is up once every configured node was heard from or declared dead
    /// (spec §3.12 step 2).
    fn check_comm_up(&mut self, now: Now, out: &mut Vec<Action>) {
        if self.comm_up || self.reqnodes_at.is_some() {
            return;
        }
        let all_known = self.peers.iter().all(|p| p.heard_ever || p.state == NodeState::Dead);
        if !all_known {
            return;
        }
        let anyone_alive = self.peers.iter().any(|p| p.state != NodeState::Dead);
        if self.flow_control && anyone_alive {
            self.send_reqnodes(now, out);
        } else {
            self.comm_now_up(now, out);
        }
    }

    fn send_reqnodes(&mut self, now: Now, out: &mut Vec<Action>) {
        let live: Vec<usize> =
            (0..self.peers.len()).filter(|i| self.peers[*i].state != NodeState::Dead).collect();
        if live.is_empty() {
            self.reqnodes_at = None;
            return self.comm_now_up(now, out);
        }
        let pi = live[self.reqnodes_rotor % live.len()];
        self.reqnodes_rotor += 1;
        let mut m = Message::of_type("reqnodes");
        m.add("dest", self.peers[pi].name.clone());
        self.send(now, m, out);
        self.reqnodes_at = Some(now.ms + REQNODES_RETRY_MS);
    }

    fn comm_now_up(&mut self, now: Now, out: &mut Vec<Action>) {
        self.reqnodes_at = None;
        self.comm_up = true;
        self.state = NodeState::Active;
        // Until now peers were timed out with initdead; from now on with their deadtime. A
        // peer silent for longer than that is dead now — before placement (and quorum)
        // counts it, and before its overdue deadline reads as our own stall.
        if let Some(started) = self.started_ms {
            for pi in 0..self.peers.len() {
                self.check_peer(now, started, pi, out);
            }
        }
        out.push(Action::Log(Level::Info, "Comm_now_up(): updating status to active".into()));
        self.send_status(now, out);
        self.with_rsc(now, out, |r, _, o| r.comm_up(now.ms, o));
    }

    // ---------------------------------------------------------------- status

    pub fn status(&self, now: Now) -> ClusterStatus {
        let mut nodes = Vec::new();
        for name in &self.cfg.nodes {
            if *name == self.cfg.node {
                nodes.push(NodeStatus {
                    name: name.clone(),
                    state: self.state.name(),
                    kind: "normal",
                    generation: self.cfg.generation,
                    uuid: Some(self.cfg.uuid),
                    // We never hear ourselves over ucast; Heartbeat reports its own links
                    // as dead there. We report what we can vouch for: our links exist.
                    links: self
                        .cfg
                        .links
                        .iter()
                        .map(|l| LinkStatus { name: l.clone(), state: "up" })
                        .collect(),
                    last_heard_ms: Some(0),
                    load: (!self.load.is_empty()).then(|| self.load.clone()),
                    deadtime_ms: self.cfg.deadtime_ms,
                    late_heartbeats: 0,
                    lost_packets: 0,
                    heartbeat_interval: None,
                });
                continue;
            }
            let Some(p) = self.peers.iter().find(|p| p.name == *name) else {
                continue;
            };
            nodes.push(NodeStatus {
                name: p.name.clone(),
                state: p.state.name(),
                kind: "normal",
                generation: p.seq.generation,
                uuid: p.uuid,
                links: self
                    .cfg
                    .links
                    .iter()
                    .enumerate()
                    .map(|(i, l)| LinkStatus {
                        name: l.clone(),
                        state: if p.link_up[i] { "up" } else { "dead" },
                    })
                    .collect(),
                last_heard_ms: p.last_status_ms.map(|t| now.ms.saturating_sub(t)),
                load: p.load.clone(),
                deadtime_ms: p.deadtime(&self.cfg, self.comm_up),
                late_heartbeats: p.late_heartbeats,
                lost_packets: p.lost_packets,
                heartbeat_interval: Some(p.heartbeat_interval.clone()),
            });
        }
        for (name, last, alive) in &self.pings {
            nodes.push(NodeStatus {
                name: name.clone(),
                state: if *alive { "ping" } else { "dead" },
                kind: "ping",
                generation: 0,
                uuid: None,
                links: Vec::new(),
                last_heard_ms: Some(now.ms.saturating_sub(*last)),
                load: None,
                deadtime_ms: self.cfg.deadping_ms,
                late_heartbeats: 0,
                lost_packets: 0,
                heartbeat_interval: None,
            });
        }
        ClusterStatus {
            node: self.cfg.node.clone(),
            state: self.state.name(),
            generation: self.cfg.generation,
            comm_up: self.comm_up,
            flow_control: self.flow_control,
            nodes,
            dropped: self.dropped.iter().map(|(k, v)| (*k, *v)).collect(),
            sent_messages: self.sent_messages,
            retransmitted: self.retransmitted,
            max_lateness_ms: self.max_lateness_ms,
            quorum: self.quorum(),
        }
    }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

/// A digest of every field of a message (its signature included), to recognise a copy.
fn ns_digest(msg: &Message) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in msg.fields() {
        f.name.hash(&mut h);
        f.ftype.hash(&mut h);
        f.value.hash(&mut h);
    }
    h.finish()
}

/// xorshift64*: the engine needs a little jitter, reproducible from a seed.
fn next_rand(state: &mut u64) -> u64 {
    let mut x = *state;
    if x == 0 {
        x = 0x2545_f491_4f6c_dd1d;
    }
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[cfg(test)]
mod consistency_tests {
    use super::*;

    fn sends(out: Vec<Action>) -> Vec<Message> {
        out.into_iter().filter_map(|a| if let Action::Send(m) = a { Some(m) } else { None }).collect()
    }

    /// Two engines one second of heartbeats apart: n2's wall clock runs `skew_ms` ahead.
    fn pair(d1: &str, d2: Option<&str>, skew_ms: i64, secs: u64) -> Engine {
        let mut a = Engine::new(CoreConfig::new("n1", &["n1", "n2"], &["eth0"]));
        let mut b = Engine::new(CoreConfig::new("n2", &["n1", "n2"], &["eth0"]));
        a.set_config_digest(d1.into());
        if let Some(d) = d2 {
            b.set_config_digest(d.into());
        }
        for t in 0..secs * 10 {
            let now_a = Now::at(t * 100);
            let mut now_b = Now::at(t * 100);
            now_b.wall_ms = (now_b.wall_ms as i64 + skew_ms) as u64;
            now_b.wall_secs = now_b.wall_ms / 1000;
            let mut out = Vec::new();
            a.handle(now_a, Event::Tick, &mut out);
            for m in sends(std::mem::take(&mut out)) {
                b.handle(now_b, Event::Message { link: 0, msg: m }, &mut out);
            }
            b.handle(now_b, Event::Tick, &mut out);
            for m in sends(out) {
                a.handle(now_a, Event::Message { link: 0, msg: m }, &mut Vec::new());
            }
        }
        a
    }

    #[test]
    fn a_peer_with_another_configuration_is_drift() {
        let c = pair("aaaa", Some("bbbb"), 0, 5).consistency();
        assert_eq!(c.config_digest.as_deref(), Some("aaaa"));
        assert_eq!(c.config_drift, vec!["n2".to_string()]);
        assert_eq!(c.nodes[1].config_digest.as_deref(), Some("bbbb"));
        let c = pair("aaaa", Some("aaaa"), 0, 5).consistency();
        assert!(c.config_drift.is_empty(), "{c:?}");
    }

    #[test]
    fn a_peer_without_a_digest_is_not_drift() {
        let c = pair("aaaa", None, 0, 5).consistency();
        assert!(c.config_drift.is_empty(), "{c:?}");
        assert_eq!(c.nodes[1].config_digest, None);
    }

    #[test]
    fn clock_skew_follows_the_peers_clock() {
        let c = pair("a", Some("a"), 0, 5).consistency();
        assert_eq!(c.nodes[0].clock_skew_ms, Some(0));
        assert_eq!(c.nodes[1].clock_skew_ms, Some(0));
        let c = pair("a", Some("a"), 3000, 5).consistency();
        assert_eq!(c.nodes[1].clock_skew_ms, Some(3000));
        let c = pair("a", Some("a"), -2500, 5).consistency();
        assert_eq!(c.nodes[1].clock_skew_ms, Some(-2500));
    }

    #[test]
    fn heartbeat_ts_alone_gives_the_skew_to_half_a_second() {
        let mut a = Engine::new(CoreConfig::new("n1", &["n1", "n2"], &["eth0"]));
        let mut out = Vec::new();
        a.handle(Now::at(0), Event::Tick, &mut out);
        // A Heartbeat status: whole-second ts, 4 s ahead of our wall clock, no halo fields.
        let now = Now::at(1000);
        let mut m = Message::of_type("status");
        m.add("st", "up");
        m.add("dt", "2710");
        m.add("protocol", "1");
        m.add("src", "n2");
        m.add("seq", "1");
        m.add("hg", "5");
        m.add("ts", format!("{:x}", now.wall_secs + 4));
        a.handle(now, Event::Message { link: 0, msg: m }, &mut out);
        let skew = a.consistency().nodes[1].clock_skew_ms.unwrap();
        assert!((3500..=4500).contains(&skew), "{skew}");
    }

    #[test]
    fn status_carries_the_digest_and_the_clock() {
        let mut a = Engine::new(CoreConfig::new("n1", &["n1", "n2"], &["eth0"]));
        a.set_config_digest("0123456789abcdef".into());
        let mut out = Vec::new();
        let now = Now::at(0);
        a.handle(now, Event::Tick, &mut out);
        let st = sends(out).into_iter().find(|m| m.kind() == Some("status")).unwrap();
        assert_eq!(st.get(CONFIG_DIGEST_FIELD), Some("0123456789abcdef"));
        assert_eq!(st.get_hex(CLOCK_FIELD), Some(now.wall_ms));
        // Heartbeat's own fields are all there, in its order, before the standard ones.
        assert_eq!(st.get("st"), Some("init"));
        assert!(st.get("ts").is_some());
    }
}
