//! Resource groups in haresources mode: who runs which group, and when it moves.
//!
//! Every node runs the same deterministic placement over the same facts, so the nodes agree
//! on an owner without a vote:
//!
//! * the membership view (which nodes are `active`),
//! * what every node holds, says it is in standby for, claims (an operator's `takeover`) and
//!   has failed — each node states these facts about *itself* in its `starting` and
//!   `resource` messages (Heartbeat's messages, with halo fields that Heartbeat ignores),
//! * `auto_failback` and each group's preferred nodes (the haresources line's node, or
//!   halo.toml's ordered list: the first eligible one with failback, else the holder keeps
//!   it; when the holder is gone, the next eligible preferred node, then ha.cf order).
//!
//! halo.toml adds clones (each node runs its own instance where the clone is listed, never
//! moved, stated in `halo_clones` and invisible to Heartbeat), order constraints (`then`
//! starts once `first` runs — a group somewhere, a clone here — and a `then` held here stops
//! before `first` stops here) and colocation (`with`/`apart` narrow the eligible nodes to
//! where the other group runs, or is to start; ignored when no eligible node satisfies it).
//!
//! A node starts a group only when placement names it, it has heard what every live peer
//! holds (or Heartbeat's 10 s `RQSTDELAY` passed), and no live node holds the group. A
//! holder whose group belongs elsewhere stops it first and says so; only then does the new
//! owner start it. So two nodes never both start a group unless they disagree about
//! membership (a partition: the safety issue's quorum and fencing). When a partition heals
//! and two nodes hold one group, placement names one keeper; the others stop, and the
//! keeper announces its addresses again so the network forgets the loser's MAC.
//!
//! Fencing (STONITH, when `CoreConfig::fencing` is set): a node that timed out, or that left
//! while still holding a group (a failed stop), may still run what it ran — a partition, a
//! hung machine, an orphan after kill -9. Its last statements may be stale too (one lost
//! with the partition), so while any such node awaits fencing *no group starts here* at
//! all (clones, which never move, still do). Exactly one survivor fences it: the first node
//! in ha.cf order that is alive in its view, has a STONITH device and is not the target
//! (`fencer`) — ha.cf order rather than "where the groups go" because a dead node's groups
//! may go to several nodes, and every survivor computes the same answer from the same
//! membership. The fencer asks the runtime (`Action::Fence`), and on success sends
//! Heartbeat's informational `stonith node=X result=OK`, which tells the other survivors
//! the node is gone; on failure it logs it, reports it in status, sends `result=bad` and
//! retries with back-off — nothing it ran starts elsewhere meanwhile. An operator can end
//! the wait by vouching the node is down (`halo fence confirm`, an `Event::FenceDone`). A
//! node that comes back (a healed partition or a restart) says what it holds again: its
//! fence is dropped. Two partitions may fence each other (Heartbeat's "STONITH deathmatch");
//! whichever fence lands first wins, and neither runs a group the other may hold.
//!
//! Heartbeat 3.0.6 peers do not run this placement: they move resources only through their
//! own protocol (spec §3.13). halo speaks it to them: it answers `starting` with
//! `resource rsc_hold=… isstable=…`, hands groups to a Heartbeat peer with the three-step
//! `ask_resources` (me → other → done), takes groups a Heartbeat peer gives up the same way,
//! and reads `hb_takeover` as that peer's claim. `auto_failback legacy` behaves as `on`
//! between halo nodes.
//!
//! With Heartbeat peers, `auto_failback legacy` speaks legacy mode's `ip-request` exchange
//! (spec §3.13.5). A legacy Heartbeat node never says what it holds (no `starting`, no
//! `resource`), so halo presumes: a peer that has not said halo's fields, once alive, may
//! hold every group halo does not hold at that moment (it took its own groups at comm up,
//! and ours if we were away), and halo never starts such a group. The presumption is
//! lifted per group only by that peer's word: its `ip-request-resp dest=<us> ipaddr=<key>
//! ok=OK` (`weown=yes`: it gave the group up; `no`: it did not hold it — Heartbeat's
//! `rc.d/ip-request` releases before it answers), by its death or `shutdone`, or by it
//! turning out to be a halo node. halo asks (`ip-request ipaddr=<key>`, repeated every
//! [`IP_REQUEST_RETRY_MS`] while unanswered: a Heartbeat not yet comm-up drops it) only
//! for its *local* groups (the haresources line names us), as Heartbeat's `req_resource`
//! does, so a group preferring the Heartbeat node stays presumed with it while it lives.
//! A group halo holds is never stopped on the presumption; it moves to a legacy
//! Heartbeat peer only when that peer asks (`ip-request`, at its comm up): halo stops it,
//! then answers `ip-request-resp dest=<peer> ipaddr=<key> weown=yes ok=OK` (a group not
//! held here: `weown=no` at once, as Heartbeat's script does; a failed stop: no answer
//! until `halo cleanup`), and counts the group as that peer's. A Heartbeat that starts
//! afresh (a new generation after we saw it die or leave) takes its local groups at its
//! comm up, asking — or not, when it has not yet recorded our `active` status (then it
//! says so only in a self-addressed `ip-request-resp`, which halo reads as its holding):
//! so halo releases that peer's local groups as soon as it sees the fresh start (also the
//! one that follows a partition's end: Heartbeat gives everything up, says `shutdone` and
//! restarts itself). Between more than two nodes the presumption is per peer and
//! conservative: a group may stay stopped while a silent peer lives.
use crate::engine::{Action, Level, NoQuorumPolicy};
use halo_config::AutoFailback;
use halo_wire::Message;
use std::collections::{BTreeMap, BTreeSet};

/// A configuration reload applied live (`halo reload`).
mod reconfig;

/// Heartbeat's `RQSTDELAY`: how long a node waits for its peers' holdings before it takes
/// its groups anyway.
pub const RQSTDELAY_MS: u64 = 10_000;
/// How long a standby request (`ask_resources info=me`) waits for `info=other`.
pub const ASK_TIMEOUT_MS: u64 = 10_000;
/// Legacy mode: an unanswered `ip-request` is repeated this often.
pub const IP_REQUEST_RETRY_MS: u64 = 3_000;
/// A group whose monitor fails is restarted in place this many times within
/// [`RESTART_WINDOW_MS`]; one more failure moves it away.
pub const MAX_RESTARTS: usize = 3;
pub const RESTART_WINDOW_MS: u64 = 60_000;

/// Heartbeat's resource sets (spec §3.13): relative to the node that names them, `local`
/// are the groups it prefers (its haresources lines), `foreign` all the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RscSet {
    pub local: bool,
    pub foreign: bool,
}

impl RscSet {
    pub const NONE: RscSet = RscSet { local: false, foreign: false };
    pub const ALL: RscSet = RscSet { local: true, foreign: true };

    pub fn parse(s: &str) -> Option<RscSet> {
        Some(match s {
            "none" => RscSet::NONE,
            "local" => RscSet { local: true, foreign: false },
            // hb_standby's `failback` is `foreign`.
            "foreign" | "failback" => RscSet { local: false, foreign: true },
            "all" => RscSet::ALL,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match (self.local, self.foreign) {
            (false, false) => "none",
            (true, false) => "local",
            (false, true) => "foreign",
            (true, true) => "all",
        }
    }

    /// Whether the set, as named by `relative_to`, covers a group preferring `preferred`.
    pub fn covers(self, relative_to: &str, preferred: &str) -> bool {
        if preferred == relative_to {
            self.local
        } else {
            self.foreign
        }
    }

    /// The same groups named by the other node of a pair (hb_takeover's mirror).
    pub fn mirror(self) -> RscSet {
        RscSet { local: self.foreign, foreign: self.local }
    }

    fn union(self, o: RscSet) -> RscSet {
        RscSet { local: self.local || o.local, foreign: self.foreign || o.foreign }
    }

    fn minus(self, o: RscSet) -> RscSet {
        RscSet { local: self.local && !o.local, foreign: self.foreign && !o.foreign }
    }
}

/// A group as the engine knows it: its key (first resource) and preferred node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupConfig {
    pub key: String,
    /// The haresources line's node: the first preferred node. Heartbeat peers know only
    /// this one (their `local`/`foreign` sets and `rsc_hold` are relative to it).
    pub node: String,
    /// halo.toml's preferred nodes, most preferred first (`node` is the first); empty:
    /// `node` alone.
    pub nodes: Vec<String>,
    /// The name order and colocation constraints use (halo.toml `name`); empty: the key.
    pub name: String,
}

impl GroupConfig {
    pub fn new(key: &str, node: &str) -> GroupConfig {
        GroupConfig { key: key.to_string(), node: node.to_string(), ..GroupConfig::default() }
    }

    /// The name constraints and operators use.
    pub fn name(&self) -> &str {
        if self.name.is_empty() {
            &self.key
        } else {
            &self.name
        }
    }

    /// The preferred nodes, most preferred first.
    pub fn preferred(&self) -> Vec<&str> {
        if self.nodes.is_empty() {
            vec![self.node.as_str()]
        } else {
            self.nodes.iter().map(String::as_str).collect()
        }
    }
}

/// A clone (halo.toml `[[clone]]`): its resources run on every listed node at once, each
/// node starting, monitoring and stopping its own instance. Clones never move and are
/// halo's alone: Heartbeat peers never hear of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloneConfig {
    /// Its name, which is also its key for the runtime (`StartGroup { key }`).
    pub name: String,
    /// The nodes it runs on; empty: every node.
    pub nodes: Vec<String>,
}

/// `then` starts only once `first` runs (a group: on some node; a clone: here), and a
/// `then` held here stops before `first` stops here. Group or clone names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrderConfig {
    pub first: String,
    pub then: String,
}

/// `group` is placed where `with` runs, or (`apart`) where it does not. A preference:
/// when no eligible node satisfies it, placement ignores it rather than stop the group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColocationConfig {
    pub group: String,
    pub with: String,
    pub apart: bool,
}

/// The local state of a group on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Stopped,
    Starting,
    Running,
    Stopping,
    /// A stop failed: the group may still run here. It is held (nobody else starts it)
    /// until an operator clears it.
    StopFailed,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Stopped => "stopped",
            GroupState::Starting => "starting",
            GroupState::Running => "running",
            GroupState::Stopping => "stopping",
            GroupState::StopFailed => "stop_failed",
        }
    }

    fn held(self) -> bool {
        !matches!(self, GroupState::Stopped)
    }
}

/// What the operator asks of this node (`halo standby`, `halo takeover`, `halo cleanup`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OperatorCmd {
    Standby(RscSet),
    Takeover(RscSet),
    /// Forget a group's failure on this node (all groups when `None`).
    Cleanup(Option<String>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupStatus {
    pub key: String,
    pub preferred: String,
    /// halo.toml's name (the key when none).
    pub name: String,
    /// Every preferred node, most preferred first (`preferred` is the first).
    pub preferred_nodes: Vec<String>,
    /// Our own state of the group.
    pub state: &'static str,
    /// The nodes that hold it, as far as we know (ourselves included).
    pub holders: Vec<String>,
    /// Where placement says it belongs now (None: no eligible node).
    pub desired: Option<String>,
    pub failed_here: bool,
    pub last_error: Option<String>,
}

/// A clone's instances as this node knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloneStatus {
    pub name: String,
    /// The nodes it runs on (every node when the configuration lists none).
    pub nodes: Vec<String>,
    /// Our own instance's state (`stopped` where it does not run here).
    pub state: &'static str,
    /// The nodes whose instance runs, as far as we know (ourselves included).
    pub running_on: Vec<String>,
    /// The nodes whose instance failed (start failure or too many monitor failures).
    pub failed_on: Vec<String>,
    pub last_error: Option<String>,
}

/// A node awaiting fencing, as status shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FenceStatus {
    pub node: String,
    /// `requested` (our fence runs), `failed` (ours failed, retry pending), `no_quorum`
    /// (held back: a partition without quorum never fences) or `waiting` (another node
    /// fences it, or none can: see `fencer`).
    pub state: &'static str,
    /// The node that fences it (None: no live node has a STONITH device).
    pub fencer: Option<String>,
    /// Our attempts so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Milliseconds since it was found dead.
    pub pending_ms: u64,
    /// Milliseconds until our next attempt (failed only).
    pub retry_in_ms: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceStatus {
    pub managed: bool,
    pub auto_failback: &'static str,
    pub standby: &'static str,
    /// Heartbeat's `cl_status rscstatus`: none, local, foreign, all, transition.
    pub rscstatus: &'static str,
    pub stable: bool,
    pub groups: Vec<GroupStatus>,
    pub failovers: u64,
    /// halo.toml's clones (empty without any).
    pub clones: Vec<CloneStatus>,
    /// Nodes awaiting fencing (empty without fencing or when none is pending): while any
    /// is, no group starts here.
    pub fencing: Vec<FenceStatus>,
}

struct Group {
    cfg: GroupConfig,
    state: GroupState,
    failed_here: bool,
    last_error: Option<String>,
    /// Monitor failures restarted in place (times).
    restarts: Vec<u64>,
    restart_after_stop: bool,
    /// Another node held it too (a healed partition): announce again once it lets go.
    contested: bool,
    /// Why we started it (for logs and the `mach_down` notice).
    took_from_dead: bool,
    /// How good our claim is when another node holds the group too: we found it running at
    /// start-up (`Adopted`: maybe an orphan), or took it from a node we saw die (`Seized`:
    /// maybe a partition, seed 003's rule: the side that seized gives up). Cleared once the
    /// whole cluster is up and nobody else holds it.
    claim: Claim,
    /// A stop waiting for what is ordered after it here to stop first (the reason).
    pending_stop: Option<String>,
    /// We mean to start it and wait for every live halo peer to have read that (the intent
    /// round of ours it must acknowledge). See [`Resources::intent_ready`].
    intent: Option<u64>,
}

/// The strength of a holding, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Claim {
    Normal,
    Seized,
    Adopted,
}

#[derive(Default)]
struct PeerRsc {
    /// We know its holdings since its last (re)start.
    known: bool,
    /// It sends halo's fields (else it is Heartbeat 3).
    halo: bool,
    holds: BTreeSet<String>,
    standby: RscSet,
    claims: BTreeSet<String>,
    failed: BTreeSet<String>,
    stable: bool,
    leaving: bool,
    /// Ping nodes it reaches (halo peers with ping nodes say so; None: unknown).
    ping: Option<usize>,
    seized: BTreeSet<String>,
    adopted: BTreeSet<String>,
    /// Groups it is still starting (held, not yet running: an order's `first` not met).
    starting: BTreeSet<String>,
    /// Clone instances it runs, and those that failed there (halo peers only).
    clones: BTreeSet<String>,
    clones_failed: BTreeSet<String>,
    /// Sequence number of the newest statement applied: a retransmitted older one (a gap
    /// filled after a partition) must not undo a newer one.
    last_seq: u64,
    /// The same for its requests (`ask_resources`, `hb_takeover`, `stonith`): apart, so
    /// that a request overtaking a retransmitted statement does not make us ignore the
    /// statement, its newest word on what it holds (simulator seed 27575).
    last_req_seq: u64,
    /// A Heartbeat peer back from a partition gives everything up and restarts: until
    /// then (ms) we keep what we hold even where it holds the same group.
    hb_yields_until: u64,
    /// Groups it means to start, waiting for acknowledgements (`halo_intend`).
    intends: BTreeSet<String>,
    /// The newest intent of ours it has read: (our generation, our round) (`halo_ack`).
    ack_me: Option<(u64, u64)>,
}

/// A dead node that must be fenced before any group starts here.
struct Fence {
    since: u64,
    attempts: u32,
    /// Our own request is with the runtime.
    requested: bool,
    retry_at: u64,
    last_error: Option<String>,
    /// Held back for want of quorum (said once).
    quorum_wait: bool,
    /// Held back while a peer counted for quorum is late (said once).
    late_wait: bool,
    /// The node's generation we held dead when the fence was decided.
    generation: Option<u64>,
}

enum AskPhase {
    WaitOther,
    Releasing,
}

/// A standby request we made to a Heartbeat peer.
struct Ask {
    peer: String,
    keys: Vec<String>,
    set: RscSet,
    since: u64,
    phase: AskPhase,
}

/// A peer that may be a legacy-mode Heartbeat (`auto_failback legacy`): it never states its
/// holdings.
#[derive(Default)]
struct LegacyPeer {
    /// Groups it may hold: never started here.
    maybe: BTreeSet<String>,
    /// Our unanswered `ip-request`s: key → when last sent.
    asked: BTreeMap<String, u64>,
    /// We saw it dead since its last start (sticky: a dying Heartbeat's last status may
    /// revive it briefly): a new generation from it next is a fresh start.
    dead: bool,
    /// `maybe` was presumed while it lived.
    presumed: bool,
}

/// The membership facts placement needs: each node's name and whether it is `active`.
pub struct View<'a> {
    pub active: &'a dyn Fn(&str) -> bool,
    /// Not dead: active, or still joining (`init`/`up`).
    pub alive: &'a dyn Fn(&str) -> bool,
    /// Our partition lacks quorum and this policy applies (None: quorum, or ignored).
    pub no_quorum: Option<crate::engine::NoQuorumPolicy>,
    /// Quorum holds counting only the peers heard lately (always, when quorum is ignored):
    /// fences and starts wait for it (the engine's `quorum_settled`).
    pub settled: bool,
    /// A peer's generation as we last heard it (None: unknown).
    pub generation: &'a dyn Fn(&str) -> Option<u64>,
}

/// `stonith node=X result=OK`, with the generation of X that is down (`halo_gen`, hex) when
/// we know it: a node that still hears X when the news comes keeps it for that generation
/// only, and a later death of that same generation needs no new fence.
fn stonith_ok(node: &str, generation: Option<u64>) -> Message {
    let mut m = Message::of_type("stonith");
    m.add("node", node);
    m.add("result", "OK");
    if let Some(g) = generation {
        m.add("halo_gen", format!("{g:x}"));
    }
    m
}

/// Messages and actions produced by the resource manager; the engine signs and sends.
#[derive(Default)]
pub struct RscOut {
    pub msgs: Vec<Message>,
    pub actions: Vec<Action>,
}

impl RscOut {
    fn log(&mut self, l: Level, s: String) {
        self.actions.push(Action::Log(l, s));
    }
}

pub struct Resources {
    me: String,
    nodes: Vec<String>,
    failback: AutoFailback,
    groups: Vec<Group>,
    peers: BTreeMap<String, PeerRsc>,
    standby: RscSet,
    claims: BTreeSet<String>,
    comm_up_at: Option<u64>,
    shutting_down: bool,
    ask: Option<Ask>,
    ask_quiet_until: u64,
    /// A Heartbeat peer gave us groups (`ask_resources … done`): answer `done` when started.
    owe_done: Option<(String, RscSet)>,
    /// The peer of `owe_done` said its own `done` (it released): ours follows once what it
    /// gave us is started — or at once when it gave us nothing we run.
    owe_done_released: bool,
    last_announced: Option<Message>,
    failovers: u64,
    /// Ping nodes we reach (None: no ping nodes configured). ipfail's rule: a node that
    /// reaches fewer ping nodes than another active node may run nothing.
    ping_count: Option<usize>,
    /// Clone instances (this node's), kept apart from `groups`: Heartbeat peers never see
    /// them in `rsc_hold`, sets, claims or standby.
    clones: Vec<Group>,
    order: Vec<OrderConfig>,
    colocation: Vec<ColocationConfig>,
    fencing: Option<crate::engine::FencingConfig>,
    /// Dead nodes awaiting fencing.
    fences: BTreeMap<String, Fence>,
    /// Nodes known fenced before we saw them die (another node's `stonith result=OK`, or a
    /// fence of ours that outlived its request), with the generation the news named (None:
    /// it named none): their death needs no new fence if it is that life's.
    fenced: BTreeMap<String, Option<u64>>,
    /// Legacy mode: what peers that never stated their holdings may hold.
    legacy: BTreeMap<String, LegacyPeer>,
    /// `ip-request`s from Heartbeat peers to answer once the group is stopped here:
    /// key → (peer, whether we held it when asked).
    owe_ip: BTreeMap<String, (String, bool)>,
    /// Groups held here and elsewhere at once, episode by episode (`halo status`).
    split_brains: crate::status::SplitBrains,
    /// Our generation: it qualifies our intent rounds, so that a peer's acknowledgement
    /// of a previous life of ours never counts.
    generation: u64,
    /// Our newest intent round (`halo_round`).
    intent_round: u64,
    /// The newest intent each peer stated: (its generation, its round), acknowledged in our
    /// statements (`halo_ack`).
    acks: BTreeMap<String, (u64, u64)>,
}

/// A clone's entry: its key and name are the clone's name, and it never claims like a
/// group (one found running at start-up is running, not `Adopted`).
fn new_clone(c: &CloneConfig, running_at_start: &[String]) -> Group {
    let mut g = new_group(clone_group_config(c), running_at_start);
    g.claim = Claim::Normal;
    g
}

fn clone_group_config(c: &CloneConfig) -> GroupConfig {
    GroupConfig { key: c.name.clone(), node: String::new(), nodes: c.nodes.clone(), name: c.name.clone() }
}

fn new_group(cfg: GroupConfig, running_at_start: &[String]) -> Group {
    let running = running_at_start.contains(&cfg.key);
    Group {
        cfg,
        state: if running { GroupState::Running } else { GroupState::Stopped },
        failed_here: false,
        last_error: None,
        restarts: Vec::new(),
        restart_after_stop: false,
        contested: false,
        took_from_dead: false,
        claim: if running { Claim::Adopted } else { Claim::Normal },
        pending_stop: None,
        intent: None,
    }
}

impl Resources {
    pub fn new(
        me: &str,
        nodes: &[String],
        failback: AutoFailback,
        groups: &[GroupConfig],
        running_at_start: &[String],
    ) -> Resources {
        let groups = groups.iter().map(|g| new_group(g.clone(), running_at_start)).collect();
        let peers = nodes.iter().filter(|n| **n != me).map(|n| (n.clone(), PeerRsc::default())).collect();
        Resources {
            me: me.to_string(),
            nodes: nodes.to_vec(),
            failback,
            groups,
            peers,
            standby: RscSet::NONE,
            claims: BTreeSet::new(),
            comm_up_at: None,
            shutting_down: false,
            ask: None,
            ask_quiet_until: 0,
            owe_done: None,
            owe_done_released: false,
            last_announced: None,
            failovers: 0,
            ping_count: None,
            clones: Vec::new(),
            order: Vec::new(),
            colocation: Vec::new(),
            fencing: None,
            fences: BTreeMap::new(),
            fenced: BTreeMap::new(),
            legacy: BTreeMap::new(),
            owe_ip: BTreeMap::new(),
            split_brains: Default::default(),
            generation: 0,
            intent_round: 0,
            acks: BTreeMap::new(),
        }
    }

    /// This run's generation (qualifies our intents to start groups).
    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    pub fn set_fencing(&mut self, fencing: Option<crate::engine::FencingConfig>) {
        self.fencing = fencing;
    }

    /// Who fences `target`: the first node in ha.cf order that is alive in our view (us or
    /// an active peer), has a STONITH device, and is not the target.
    fn fencer(&self, target: &str, view: &View) -> Option<String> {
        let f = self.fencing.as_ref()?;
        self.nodes
            .iter()
            .find(|n| *n != target && (**n == self.me || (view.active)(n)) && f.can_fence(n))
            .cloned()
    }

    /// Asks the runtime to fence the dead nodes we are to fence (first time or retry due).
    fn drive_fences(&mut self, now: u64, view: &View, out: &mut RscOut) {
        // A node we hear again (whatever way it came back) speaks for itself.
        let back: Vec<String> = self.fences.keys().filter(|n| (view.alive)(n)).cloned().collect();
        for n in back {
            self.fences.remove(&n);
            out.log(Level::Info, format!("node {n} is back: it is no longer to be fenced"));
        }
        if view.no_quorum.is_some() {
            // Without quorum nothing starts here anyway (stop or freeze): a fence would only
            // kill a node of the side that has quorum and runs the groups (a deathmatch).
            // It waits; a node still dead when quorum returns is fenced then.
            for (node, f) in self.fences.iter_mut().filter(|(_, f)| !f.requested && !f.quorum_wait) {
                f.quorum_wait = true;
                out.log(Level::Warn, format!("not fencing node {node}: this partition has no quorum"));
            }
            return;
        }
        if !view.settled {
            // A peer that counts toward our quorum has been silent for a while: it may be
            // about to be declared dead too, and then this side has no quorum. Decide then.
            for (node, f) in self.fences.iter_mut().filter(|(_, f)| !f.requested && !f.late_wait) {
                f.late_wait = true;
                out.log(
                    Level::Info,
                    format!("fencing of node {node} waits: a peer counted for quorum is late"),
                );
            }
            return;
        }
        let due: Vec<String> = self
            .fences
            .iter()
            .filter(|(_, f)| !f.requested && now >= f.retry_at)
            .map(|(n, _)| n.clone())
            .collect();
        for node in due {
            if self.fencer(&node, view).as_deref() != Some(self.me.as_str()) {
                continue;
            }
            let Some(f) = self.fences.get_mut(&node) else { continue };
            f.requested = true;
            f.attempts += 1;
            out.log(
                Level::Info,
                format!(
                    "Fencing node {node} (STONITH, attempt {}): no group starts until it is down",
                    f.attempts
                ),
            );
            out.actions.push(Action::Fence { node });
        }
    }

    /// The runtime's (or an operator's) answer to a fence.
    pub fn fence_done(
        &mut self,
        now: u64,
        node: &str,
        ok: bool,
        detail: &str,
        view: &View,
        out: &mut RscOut,
    ) {
        let detail = if detail.is_empty() { "no detail" } else { detail };
        let Some(f) = self.fences.get_mut(node) else {
            if ok {
                // It returned before the fence landed, or another node's fence of it was
                // heard first (its fence was dropped): it is down now and its death, when we
                // see it, needs no new fence. Said to all the same: a node that read the
                // other news before it held this one dead still waits for a fencer's word
                // (sim seed 742: it waited for ever).
                out.log(
                    Level::Info,
                    format!("STONITH of node {node} succeeded ({detail}) after it was no longer awaited"),
                );
                // Kept only while we do not hear it: if we do, it may be a life that booted
                // after the fence (a reset whose answer came late), which no fence has hit.
                // Its next death is then fenced anew.
                if !(view.alive)(node) {
                    self.fenced.insert(node.to_string(), None);
                }
                // Which generation it hit is not known here: the news names none.
                out.msgs.push(stonith_ok(node, None));
            } else {
                out.log(
                    Level::Info,
                    format!("STONITH of node {node} failed ({detail}); it is no longer awaited"),
                );
            }
            return;
        };
        let m = if ok {
            let generation = f.generation;
            self.fences.remove(node);
            out.log(
                Level::Info,
                format!("node {node} fenced (STONITH OK: {detail}); its groups may be taken over"),
            );
            // The generation we held dead when we asked for the fence: the one it hit.
            stonith_ok(node, generation)
        } else {
            f.requested = false;
            f.last_error = Some(detail.to_string());
            let (base, max) =
                self.fencing.as_ref().map_or((2000, 60_000), |c| (c.retry_ms.max(1), c.retry_max_ms));
            let backoff = base.saturating_mul(1 << (f.attempts.saturating_sub(1)).min(20)).min(max.max(base));
            f.retry_at = now + backoff;
            out.log(
                Level::Error,
                format!(
                    "STONITH of node {node} FAILED ({detail}): not taking over its groups; retrying in {} ms",
                    backoff
                ),
            );
            let mut m = Message::of_type("stonith");
            m.add("node", node);
            m.add("result", "bad");
            m
        };
        out.msgs.push(m);
    }

    /// Another node's `stonith node=X result=…` (informational in Heartbeat).
    fn on_stonith(&mut self, src: &str, msg: &Message, view: &View, out: &mut RscOut) {
        let (Some(node), Some(result)) = (msg.get("node"), msg.get("result")) else { return };
        if result != "OK" || node == self.me || self.fencing.is_none() {
            return;
        }
        let generation = msg.get("halo_gen").and_then(|g| u64::from_str_radix(g, 16).ok());
        if let Some(f) = self.fences.get(node) {
            if let (Some(said), Some(ours)) = (generation, f.generation) {
                if said != ours {
                    // A fence of an earlier life of the node: this death still needs its own.
                    return;
                }
            }
            self.fences.remove(node);
            out.log(
                Level::Info,
                format!("node {src} fenced node {node} (STONITH OK): its groups may be taken over"),
            );
        } else if !(view.alive)(node) {
            // Checked against the life that dies when it does (`peer_dead`).
            self.fenced.insert(node.to_string(), generation);
        } else if let Some(g) = generation {
            // A node we still hear, about to be declared dead here too (the fencer saw its
            // death first; sim seeds 742, 22755: read too early, the news was lost and this
            // node waited for a fence for ever). Kept for that generation only: news about
            // an earlier one (a late retransmission) says nothing about the one we hear.
            if (view.generation)(node) == Some(g) {
                self.fenced.insert(node.to_string(), Some(g));
            }
        }
        // Otherwise (a node we hear alive, no generation: a Heartbeat peer's) the news is
        // older than what we hear.
    }

    /// halo.toml's clones and constraints. A clone found running at start-up
    /// (`running_at_start` holds its name) is adopted, never started twice.
    pub fn set_placement(
        &mut self,
        clones: &[CloneConfig],
        order: &[OrderConfig],
        colocation: &[ColocationConfig],
        running_at_start: &[String],
    ) {
        self.clones = clones.iter().map(|c| new_clone(c, running_at_start)).collect();
        self.order = order.to_vec();
        self.colocation = colocation.to_vec();
    }

    fn all(&self) -> impl Iterator<Item = &Group> {
        self.groups.iter().chain(self.clones.iter())
    }

    fn find(&self, key: &str) -> Option<&Group> {
        self.all().find(|g| g.cfg.key == key)
    }

    fn find_mut(&mut self, key: &str) -> Option<&mut Group> {
        self.groups.iter_mut().chain(self.clones.iter_mut()).find(|g| g.cfg.key == key)
    }

    fn by_name(&self, name: &str) -> Option<&Group> {
        self.all().find(|g| g.cfg.name() == name)
    }

    fn is_clone(&self, name: &str) -> bool {
        self.clones.iter().any(|c| c.cfg.key == name)
    }

    /// Whether a clone has an instance on `node` by configuration.
    fn clone_listed(c: &Group, node: &str) -> bool {
        c.cfg.nodes.is_empty() || c.cfg.nodes.iter().any(|n| n == node)
    }

    pub fn set_ping_count(&mut self, n: usize) {
        self.ping_count = Some(n);
    }

    pub fn managed(&self) -> bool {
        !self.groups.is_empty() || !self.clones.is_empty()
    }

    /// Groups and clone instances running here (the runtime monitors them).
    pub fn running_keys(&self) -> Vec<String> {
        self.all().filter(|g| g.state == GroupState::Running).map(|g| g.cfg.key.clone()).collect()
    }

    pub fn standby(&self) -> RscSet {
        self.standby
    }

    pub fn group_state(&self, key: &str) -> Option<GroupState> {
        self.find(key).map(|g| g.state)
    }

    /// Nothing is held any more (a shutdown may complete).
    pub fn all_released(&self) -> bool {
        self.all().all(|g| !g.state.held() || g.state == GroupState::StopFailed)
    }

    fn informed(&self, now: u64, view: &View) -> bool {
        let Some(up) = self.comm_up_at else { return false };
        now >= up + RQSTDELAY_MS || self.peers.iter().all(|(n, p)| p.known || !(view.alive)(n))
    }

    /// Transitions in flight: Heartbeat's `isstable=0`.
    fn in_flux(&self) -> bool {
        self.ask.is_some()
            || self.groups.iter().any(|g| matches!(g.state, GroupState::Starting | GroupState::Stopping))
    }

    // ------------------------------------------------------------- our statements

    fn held_keys(&self) -> Vec<&str> {
        self.groups.iter().filter(|g| g.state.held()).map(|g| g.cfg.key.as_str()).collect()
    }

    fn rsc_hold(&self) -> RscSet {
        let mut s = RscSet::NONE;
        for g in self.groups.iter().filter(|g| g.state.held()) {
            if g.cfg.node == self.me {
                s.local = true;
            } else {
                s.foreign = true;
            }
        }
        s
    }

    /// halo's fields: what we hold, our standby, claims and failures. Heartbeat ignores them.
    fn add_halo_fields(&self, m: &mut Message) {
        m.add("halo", "1");
        let held = self.held_keys();
        if !held.is_empty() {
            m.add("halo_groups", held.join(" "));
        }
        if self.standby != RscSet::NONE {
            m.add("halo_standby", self.standby.name());
        }
        if !self.claims.is_empty() {
            m.add("halo_claim", self.claims.iter().cloned().collect::<Vec<_>>().join(" "));
        }
        let failed: Vec<&str> =
            self.groups.iter().filter(|g| g.failed_here).map(|g| g.cfg.key.as_str()).collect();
        if !failed.is_empty() {
            m.add("halo_failed", failed.join(" "));
        }
        if self.shutting_down {
            m.add("halo_leaving", "1");
        }
        if let Some(n) = self.ping_count {
            m.add("halo_ping", n.to_string());
        }
        for (field, claim) in [("halo_seized", Claim::Seized), ("halo_adopted", Claim::Adopted)] {
            let keys: Vec<&str> = self
                .groups
                .iter()
                .filter(|g| g.state.held() && g.claim == claim)
                .map(|g| g.cfg.key.as_str())
                .collect();
            if !keys.is_empty() {
                m.add(field, keys.join(" "));
            }
        }
        // For order constraints and clones (halo.toml); Heartbeat ignores them too.
        let starting: Vec<&str> = self
            .groups
            .iter()
            .filter(|g| g.state == GroupState::Starting)
            .map(|g| g.cfg.key.as_str())
            .collect();
        if !starting.is_empty() {
            m.add("halo_starting", starting.join(" "));
        }
        let running: Vec<&str> = self
            .clones
            .iter()
            .filter(|c| c.state == GroupState::Running)
            .map(|c| c.cfg.key.as_str())
            .collect();
        if !running.is_empty() {
            m.add("halo_clones", running.join(" "));
        }
        let failed: Vec<&str> =
            self.clones.iter().filter(|c| c.failed_here).map(|c| c.cfg.key.as_str()).collect();
        if !failed.is_empty() {
            m.add("halo_clones_failed", failed.join(" "));
        }
        let intends: Vec<&str> =
            self.groups.iter().filter(|g| g.intent.is_some()).map(|g| g.cfg.key.as_str()).collect();
        if !intends.is_empty() {
            m.add("halo_intend", intends.join(" "));
            m.add("halo_round", format!("{}:{}", self.generation, self.intent_round));
        }
        if !self.acks.is_empty() {
            let acks: Vec<String> = self.acks.iter().map(|(n, (g, r))| format!("{n}:{g}:{r}")).collect();
            m.add("halo_ack", acks.join(" "));
        }
    }

    fn resource_msg(&self, stable: bool, info: Option<&str>) -> Message {
        let mut m = Message::of_type("resource");
        m.add("rsc_hold", self.rsc_hold().name());
        m.add("rtype", "full");
        m.add("isstable", if stable { "1" } else { "0" });
        if let Some(i) = info {
            m.add("info", i);
        }
        self.add_halo_fields(&mut m);
        m
    }

    /// Says what we hold when it changed since we last said it.
    fn announce(&mut self, now: u64, view: &View, info: Option<&str>, out: &mut RscOut) {
        let stable = self.informed(now, view) && !self.in_flux();
        let m = self.resource_msg(stable, info);
        if info.is_none() && self.last_announced.as_ref() == Some(&m) {
            return;
        }
        self.last_announced = Some(m.clone());
        out.msgs.push(m);
    }

    // ------------------------------------------------------------- membership hooks

    /// Communication is up: say we start, with what we already hold (groups found running
    /// by the start-up probe), so peers never start those behind our back.
    pub fn comm_up(&mut self, now: u64, out: &mut RscOut) {
        if !self.managed() {
            return;
        }
        self.comm_up_at = Some(now);
        let mut m = Message::of_type("starting");
        self.add_halo_fields(&mut m);
        out.msgs.push(m);
        let held = self.held_keys();
        if !held.is_empty() {
            out.log(Level::Info, format!("holding at start (found running): {}", held.join(" ")));
        }
    }

    /// A peer died (deadtime passed, `timed_out`) or left (`shutdone`): whatever it held is
    /// gone — once it is fenced, with fencing.
    pub fn peer_dead(&mut self, now: u64, name: &str, timed_out: bool, view: &View, out: &mut RscOut) {
        // Known fenced, by news naming no life or this one.
        let life = (view.generation)(name);
        let known = self.fenced.remove(name).filter(|g| g.is_none() || life.is_none() || *g == life);
        let Some(p) = self.peers.get_mut(name) else { return };
        let held: Vec<String> = p.holds.iter().cloned().collect();
        if self.fencing.is_some() && (timed_out || !held.is_empty()) {
            if let Some(named) = known {
                let how = if named.is_some() { "a peer reported it fenced" } else { "already fenced" };
                out.log(Level::Info, format!("node {name} is dead and {how}"));
                // Others may wait for us (the fencer) to fence it: tell them it is done.
                // (Simulator seed 41061: a fence that landed after the node came back left
                // the others waiting for ever.) The generation just declared dead (`fenced`
                // is cleared whenever it returns).
                out.msgs.push(stonith_ok(name, life));
            } else {
                out.log(Level::Warn, format!("node {name} must be fenced before any group starts"));
                self.fences.entry(name.to_string()).or_insert(Fence {
                    since: now,
                    attempts: 0,
                    requested: false,
                    retry_at: now,
                    last_error: None,
                    quorum_wait: false,
                    late_wait: false,
                    generation: (view.generation)(name),
                });
            }
        }
        *p = PeerRsc {
            known: true,
            halo: p.halo,
            last_seq: p.last_seq,
            last_req_seq: p.last_req_seq,
            ..Default::default()
        };
        if !held.is_empty() {
            out.log(Level::Info, format!("node {name} no longer holds: {}", held.join(" ")));
            for g in self.groups.iter_mut().filter(|g| held.contains(&g.cfg.key)) {
                g.took_from_dead = true;
            }
        }
        if self.ask.as_ref().is_some_and(|a| a.peer == name) {
            out.log(Level::Warn, format!("standby request to {name} abandoned: it is dead"));
            self.ask = None;
        }
        if self.owe_done.as_ref().is_some_and(|(p, _)| p == name) {
            self.owe_done = None;
        }
    }

    /// A peer restarted (new generation) or came back after a partition: what it holds is
    /// unknown until it says; ask it by saying `starting` ourselves (it answers with
    /// `resource`, Heartbeat too).
    pub fn peer_returned(&mut self, now: u64, name: &str, restarted: bool, out: &mut RscOut) {
        if !self.managed() {
            return;
        }
        // Its fence, if any, is dropped once we hear it alive (`drive_fences`), not before.
        self.fenced.remove(name);
        // Presumed anew on the next reconcile.
        let fresh_start = restarted && self.legacy.get(name).is_some_and(|l| l.dead);
        // A Heartbeat peer back from a partition in legacy mode states nothing and keeps what
        // it held; it restarts itself only when it saw the partition long enough. The side
        // that seized its group during the cut gives that up (seed 003's rule), or both keep it.
        let heartbeat_back = !restarted
            && self.failback == AutoFailback::Legacy
            && self.peers.get(name).is_some_and(|p| p.known && !p.halo);
        self.legacy.remove(name);
        if fresh_start {
            self.legacy_release_for(name, false, out);
        } else if heartbeat_back {
            self.legacy_release_for(name, true, out);
        }
        if let Some(p) = self.peers.get_mut(name) {
            p.known = false;
            p.stable = false;
            // Heartbeat 3.0.6 answers a partition's end by giving up everything and
            // restarting (spec §3.10): what we hold stays here meanwhile.
            p.hb_yields_until = if restarted || p.halo { 0 } else { now + RQSTDELAY_MS };
        }
        // A standby exchange with the peer's previous life will never complete (Heartbeat
        // forgets it; until the 10 s timeout we would say isstable=0 and stall its start).
        // It may have held (and announced) our addresses while we could not see each other,
        // and let them go unseen: the network may still send their traffic to its MAC.
        // Announce what runs here again.
        let running: Vec<String> = self
            .groups
            .iter()
            .filter(|g| g.state == GroupState::Running)
            .map(|g| g.cfg.key.clone())
            .collect();
        if !running.is_empty() {
            out.log(Level::Info, format!("node {name} is back: announcing {} again", running.join(" ")));
            for key in running {
                out.actions.push(Action::Announce { key });
            }
        }
        if self.ask.as_ref().is_some_and(|a| a.peer == name) {
            out.log(Level::Info, format!("standby request to {name} abandoned: it restarted"));
            self.ask = None;
        }
        if self.owe_done.as_ref().is_some_and(|(p, _)| p == name) {
            self.owe_done = None;
        }
        if restarted {
            if let Some(p) = self.peers.get_mut(name) {
                p.last_seq = 0;
                p.last_req_seq = 0;
            }
        }
        if self.comm_up_at.is_some() {
            let mut m = Message::of_type("starting");
            self.add_halo_fields(&mut m);
            out.msgs.push(m);
            // Our `starting` marks us unstable for the peer (Heartbeat: BOTHSTARTING, and it
            // delays its own shutdown/restart on it): say `isstable=1` again even if nothing
            // changed since the last statement.
            self.last_announced = None;
        }
    }

    // ------------------------------------------------------------- messages

    pub fn on_message(
        &mut self,
        now: u64,
        src: &str,
        kind: &str,
        msg: &Message,
        view: &View,
        out: &mut RscOut,
    ) {
        if !self.managed() {
            return;
        }
        // Legacy requests are no statements: they leave `last_seq` alone (Heartbeat's
        // scripts send them from other processes, out of sequence order with `resource`).
        match kind {
            "ip-request" => return self.on_ip_request(src, msg, out),
            "ip-request-resp" => return self.on_ip_request_resp(src, msg, out),
            // A fence's outcome naming the generation it hit is a fact, not a statement a
            // newer one replaces: read even when it arrives after a later message of its
            // sender (sim seed 15303: dropped as older, a node waited for a fence for ever).
            // The generation decides whether it is old news. (Without one, as Heartbeat
            // sends it, it goes through the sequence check below like any request.)
            "stonith" if msg.get("halo_gen").is_some() => return self.on_stonith(src, msg, view, out),
            _ => {}
        }
        let Some(p) = self.peers.get_mut(src) else { return };
        // Only what is newer than the last statement counts (all of a sender's messages
        // share one sequence): a retransmitted older one must not undo a newer one.
        let fresh = match msg.get_hex("seq") {
            Some(seq) => {
                let last = if matches!(kind, "starting" | "resource") {
                    &mut p.last_seq
                } else {
                    &mut p.last_req_seq
                };
                let fresh = seq > *last;
                *last = (*last).max(seq);
                fresh
            }
            None => true,
        };
        match kind {
            "starting" => {
                if fresh {
                    self.read_statements(src, msg, true);
                }
                // A `starting` overtaken by the sender's next `resource` (reordered on the
                // wire) is still a question: unanswered, the sender waits RQSTDELAY for our
                // holdings and meanwhile neither starts nor releases anything.
                if self.comm_up_at.is_some() {
                    // Heartbeat's reply to `starting`: our holdings, stable or not.
                    let stable = self.informed(now, view) && !self.in_flux();
                    out.msgs.push(self.resource_msg(stable, None));
                }
            }
            _ if !fresh => {}
            // Heartbeat's notice that a takeover finished (`rsc_hold=foreign info=mach_down`),
            // when a halo peer sends it: its statements say what it holds. Read as one, it
            // made a halo peer look like a Heartbeat peer holding its foreign groups
            // (simulator seed 22806: a start that skipped the intent handshake).
            "resource"
                if msg.get("info") == Some("mach_down") && self.peers.get(src).is_some_and(|p| p.halo) => {}
            "resource" => {
                self.read_statements(src, msg, false);
                // The takeover notice carries no `isstable`: it says nothing about that.
                if let (Some(p), false) = (self.peers.get_mut(src), msg.get("info") == Some("mach_down")) {
                    p.stable = msg.get("isstable") == Some("1");
                }
            }
            "ask_resources" => self.on_ask(now, src, msg, view, out),
            "stonith" => self.on_stonith(src, msg, view, out),
            "hb_takeover" => {
                let set = msg.get("rsc_hold").and_then(RscSet::parse).unwrap_or(RscSet::ALL);
                let keys: Vec<String> = self
                    .groups
                    .iter()
                    .filter(|g| set.covers(src, &g.cfg.node))
                    .map(|g| g.cfg.key.clone())
                    .collect();
                out.log(Level::Info, format!("node {src} takes over [{}]: {}", set.name(), keys.join(" ")));
                for k in &keys {
                    if self.claims.remove(k) {
                        out.log(Level::Info, format!("our claim on {k} yields to {src}'s takeover"));
                    }
                }
                if let Some(p) = self.peers.get_mut(src) {
                    p.standby = p.standby.minus(set);
                    if !p.halo {
                        p.claims.extend(keys);
                    }
                }
            }
            _ => {}
        }
    }

    /// Reads a peer's statements about itself from `starting` / `resource`.
    fn read_statements(&mut self, src: &str, msg: &Message, starting: bool) {
        let keys_of = |groups: &[Group], set: RscSet| -> BTreeSet<String> {
            groups.iter().filter(|g| set.covers(src, &g.cfg.node)).map(|g| g.cfg.key.clone()).collect()
        };
        let words = |f: &str| -> BTreeSet<String> {
            msg.get(f).unwrap_or("").split_whitespace().map(str::to_string).collect()
        };
        let is_halo = msg.get("halo") == Some("1");
        let holds = if is_halo {
            words("halo_groups")
        } else if starting {
            BTreeSet::new()
        } else {
            keys_of(&self.groups, msg.get("rsc_hold").and_then(RscSet::parse).unwrap_or(RscSet::NONE))
        };
        let Some(p) = self.peers.get_mut(src) else { return };
        // Heartbeat says `resource rsc_hold=<what it keeps> info=shutdown|standby` *before*
        // its givegroup runs: what it drops is still held until its `shutdone` or
        // `ask_resources … done`. Starting it on that word alone runs the group twice.
        let releasing = !is_halo && !starting && matches!(msg.get("info"), Some("shutdown" | "standby"));
        // Its `rsc_hold=foreign info=mach_down` after a takeover (the `mach_down` script) says
        // it now holds the dead node's groups *too*: its own it still holds (it said
        // `rsc_hold=all` before). Read as its whole holdings, its own groups looked free.
        let took_over = !is_halo && !starting && msg.get("info") == Some("mach_down");
        let holds = if releasing || took_over { p.holds.union(&holds).cloned().collect() } else { holds };
        p.known = true;
        p.halo = is_halo;
        p.holds = holds;
        if is_halo {
            p.standby = msg.get("halo_standby").and_then(RscSet::parse).unwrap_or(RscSet::NONE);
            p.claims = words("halo_claim");
            p.failed = words("halo_failed");
            p.leaving = msg.get("halo_leaving") == Some("1");
            p.ping = msg.get("halo_ping").and_then(|n| n.parse().ok());
            p.seized = words("halo_seized");
            p.adopted = words("halo_adopted");
            p.starting = words("halo_starting");
            p.clones = words("halo_clones");
            p.clones_failed = words("halo_clones_failed");
            p.intends = words("halo_intend");
            let me = self.me.as_str();
            p.ack_me = msg.get("halo_ack").unwrap_or("").split_whitespace().find_map(|a| {
                let mut it = a.split(':');
                let (n, g, r) = (it.next()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?);
                (n == me && it.next().is_none()).then_some((g, r))
            });
            let round = msg.get("halo_round").and_then(|r| {
                let (g, r) = r.split_once(':')?;
                Some((g.parse::<u64>().ok()?, r.parse::<u64>().ok()?))
            });
            if let (false, Some(r)) = (p.intends.is_empty(), round) {
                // Acknowledged in our next statement (which this change makes us send).
                self.acks.insert(src.to_string(), r);
            }
        } else if starting {
            // A (re)starting Heartbeat node forgets its standby and claims.
            p.standby = RscSet::NONE;
            p.claims.clear();
            p.failed.clear();
            p.leaving = false;
        }
        if starting {
            p.stable = false;
        }
        // A claim of theirs on a group wins over an older claim of ours.
        let theirs: Vec<String> = p.claims.iter().cloned().collect();
        for k in theirs {
            self.claims.remove(&k);
        }
        if msg.get("info") == Some("shutdown") {
            if let Some(p) = self.peers.get_mut(src) {
                p.leaving = true;
            }
        }
    }

    fn on_ask(&mut self, now: u64, src: &str, msg: &Message, view: &View, out: &mut RscOut) {
        let set = msg.get("rsc_hold").and_then(RscSet::parse).unwrap_or(RscSet::NONE);
        match msg.get("info") {
            Some("me") => {
                if !self.informed(now, view) || self.in_flux() || self.shutting_down {
                    out.log(
                        Level::Info,
                        format!("standby message [me] from {src} ignored. Other side is in flux."),
                    );
                    return;
                }
                // The peer wants to give up `set` (named as it sees it): it is in standby
                // for those until it restarts or takes them back.
                if let Some(p) = self.peers.get_mut(src) {
                    p.standby = p.standby.union(set);
                }
                out.log(
                    Level::Info,
                    format!("node {src} goes standby [{}]: we will take its groups", set.name()),
                );
                let mut m = Message::of_type("ask_resources");
                m.add("rsc_hold", set.name());
                m.add("info", "other");
                out.msgs.push(m);
                self.owe_done = Some((src.to_string(), set));
                self.owe_done_released = false;
            }
            Some("other") => {
                if let Some(a) = self.ask.as_mut() {
                    if a.peer == src && matches!(a.phase, AskPhase::WaitOther) {
                        a.phase = AskPhase::Releasing;
                        let keys = a.keys.clone();
                        let set = a.set;
                        out.log(
                            Level::Info,
                            format!("{src} agreed: releasing [{}] {}", set.name(), keys.join(" ")),
                        );
                        out.msgs.push(self.resource_msg(false, Some("standby")));
                        for k in keys {
                            self.stop(&k, "handing over to a Heartbeat peer", out);
                        }
                    }
                }
            }
            Some("done") if self.owe_done.as_ref().is_some_and(|(p, _)| p == src) => {
                // The peer has released what it asked to give up.
                let keys: Vec<String> = self
                    .groups
                    .iter()
                    .filter(|g| set.covers(src, &g.cfg.node))
                    .map(|g| g.cfg.key.clone())
                    .collect();
                if let Some(p) = self.peers.get_mut(src) {
                    for k in &keys {
                        p.holds.remove(k);
                    }
                }
                // Our `done` follows in reconcile (after the start it triggers, if any).
                self.owe_done_released = true;
            }
            Some("done") => {
                // The peer we handed groups to took them: like Heartbeat's releaser, say
                // `isstable=1` again (its `me`/`other` left us unstable in its eyes).
                self.last_announced = None;
            }
            _ => {}
        }
    }

    // ------------------------------------------------------------- operator

    pub fn operator(&mut self, cmd: OperatorCmd, out: &mut RscOut) -> Result<String, String> {
        if !self.managed() {
            return Err("no resource groups are configured (no haresources)".into());
        }
        match cmd {
            OperatorCmd::Standby(set) => {
                self.standby = self.standby.union(set);
                let me = self.me.clone();
                self.claims
                    .retain(|k| !self.groups.iter().any(|g| g.cfg.key == *k && set.covers(&me, &g.cfg.node)));
                out.log(Level::Info, format!("Going standby [{}].", set.name()));
                Ok(format!("standby [{}]: the groups move to the other nodes", set.name()))
            }
            OperatorCmd::Takeover(set) => {
                self.standby = self.standby.minus(set);
                let me = self.me.clone();
                let keys: Vec<String> = self
                    .groups
                    .iter()
                    .filter(|g| set.covers(&me, &g.cfg.node))
                    .map(|g| g.cfg.key.clone())
                    .collect();
                self.claims.extend(keys.iter().cloned());
                let mut m = Message::of_type("hb_takeover");
                m.add("rsc_hold", set.name());
                out.msgs.push(m);
                out.log(Level::Info, format!("Taking over [{}]: {}", set.name(), keys.join(" ")));
                Ok(format!("takeover [{}]: {}", set.name(), keys.join(" ")))
            }
            OperatorCmd::Cleanup(key) => {
                let mut n = 0;
                for g in self.groups.iter_mut().chain(self.clones.iter_mut()) {
                    // By key or by halo.toml name.
                    if key.as_ref().is_none_or(|k| *k == g.cfg.key || *k == g.cfg.name()) {
                        if g.failed_here || g.state == GroupState::StopFailed {
                            n += 1;
                        }
                        g.failed_here = false;
                        g.last_error = None;
                        g.restarts.clear();
                        if g.state == GroupState::StopFailed {
                            // The operator vouches that it is stopped.
                            g.state = GroupState::Stopped;
                        }
                    }
                }
                if let Some(k) = &key {
                    if !self.all().any(|g| g.cfg.key == *k || g.cfg.name() == *k) {
                        return Err(format!("no resource group {k}"));
                    }
                }
                out.log(Level::Info, format!("cleanup: {n} failed group(s) cleared"));
                Ok(format!("{n} failed group(s) cleared"))
            }
        }
    }

    /// Graceful stop: give everything up (peers take over at our `shutdone`).
    pub fn shutdown(&mut self, out: &mut RscOut) {
        self.shutting_down = true;
        if !self.managed() {
            return;
        }
        out.msgs.push(self.resource_msg(false, Some("shutdown")));
        // Groups first, then clones (what is ordered after another stops before it).
        let keys: Vec<String> = self
            .groups
            .iter()
            .rev()
            .chain(self.clones.iter().rev())
            .filter(|g| g.state == GroupState::Running)
            .map(|g| g.cfg.key.clone())
            .collect();
        for k in keys {
            self.stop(&k, "shutting down", out);
        }
    }

    // ------------------------------------------------------------- agent results

    pub fn started(&mut self, now: u64, key: &str, ok: bool, detail: &str, view: &View, out: &mut RscOut) {
        let Some(g) = self.find_mut(key) else { return };
        if g.state != GroupState::Starting {
            return;
        }
        if ok {
            g.state = GroupState::Running;
            if std::mem::take(&mut g.took_from_dead) {
                self.failovers += 1;
                let mut m = Message::of_type("resource");
                m.add("rsc_hold", "foreign");
                m.add("info", "mach_down");
                out.msgs.push(m);
            }
        } else {
            // The executor stopped what did start; the group is down here and may go elsewhere.
            g.state = GroupState::Stopped;
            g.failed_here = true;
            g.last_error = Some(detail.to_string());
            out.log(Level::Crit, format!("Giving up resources due to failure of {key}: {detail}"));
        }
        if self.shutting_down {
            // A start that was running when the shutdown came: release it now.
            self.stop(key, "shutting down", out);
        } else if let Some(first) = self.waiting_first(key) {
            // What it is ordered after is to stop here: it goes first.
            self.stop(key, &format!("{first} stops here"), out);
        }
        // A failed start frees a stop that waited for it (also while shutting down, when
        // reconcile no longer runs: simulator seed 40436 never finished its shutdown).
        self.run_pending_stops(out);
        self.finish_owed_done(out);
        self.announce(now, view, None, out);
    }

    pub fn stopped(&mut self, now: u64, key: &str, ok: bool, detail: &str, view: &View, out: &mut RscOut) {
        let order_ok = self.find(key).is_some_and(|g| self.order_ok(g, view));
        let shutting_down = self.shutting_down;
        let Some(g) = self.find_mut(key) else { return };
        if g.state != GroupState::Stopping {
            return;
        }
        if ok {
            g.state = GroupState::Stopped;
            // Without what it is ordered after, the restart waits for reconcile.
            if std::mem::take(&mut g.restart_after_stop)
                && !g.failed_here
                && !shutting_down
                && view.no_quorum.is_none()
                && view.settled
                && order_ok
            {
                g.state = GroupState::Starting;
                out.actions.push(Action::StartGroup {
                    key: key.to_string(),
                    reason: "restart after a monitor failure".into(),
                });
            }
        } else {
            g.state = GroupState::StopFailed;
            g.restart_after_stop = false;
            g.last_error = Some(detail.to_string());
            out.log(
                Level::Crit,
                format!("Resource STOP failure for group {key}: {detail}. It stays held here (nobody else starts it) until `halo cleanup {key}`."),
            );
        }
        self.run_pending_stops(out);
        // A standby hand-over to a Heartbeat peer completes when everything asked is stopped.
        if let Some(a) = &self.ask {
            if matches!(a.phase, AskPhase::Releasing)
                && a.keys.iter().all(|k| self.group_state(k) != Some(GroupState::Stopping))
            {
                let mut m = Message::of_type("ask_resources");
                m.add("rsc_hold", a.set.name());
                m.add("info", "done");
                out.msgs.push(m);
                self.ask = None;
            }
        }
        self.announce(now, view, None, out);
    }

    /// A running group's monitor failed: restart in place, or give it up after too many.
    pub fn monitor_failed(&mut self, now: u64, key: &str, why: &str, out: &mut RscOut) {
        let Some(g) = self.find_mut(key) else { return };
        if g.state != GroupState::Running {
            return;
        }
        g.restarts.retain(|t| now < t + RESTART_WINDOW_MS);
        g.last_error = Some(why.to_string());
        if g.restarts.len() < MAX_RESTARTS {
            g.restarts.push(now);
            g.restart_after_stop = true;
            out.log(
                Level::Warn,
                format!(
                    "group {key} failed its monitor ({why}): restarting it here ({} of {MAX_RESTARTS})",
                    g.restarts.len()
                ),
            );
        } else {
            g.failed_here = true;
            out.log(
                Level::Crit,
                format!(
                    "group {key} failed its monitor {} times in {} s: moving it away",
                    MAX_RESTARTS + 1,
                    RESTART_WINDOW_MS / 1000
                ),
            );
        }
        self.stop(key, "monitor failure", out);
    }

    fn finish_owed_done(&mut self, out: &mut RscOut) {
        if let Some((peer, set)) = &self.owe_done {
            // Heartbeat's standby waits for this `done` ("Shutdown delayed until current
            // resource activity finishes"), also when its set covered no group at all.
            let keys: Vec<&Group> = self.groups.iter().filter(|g| set.covers(peer, &g.cfg.node)).collect();
            if self.owe_done_released && keys.iter().all(|g| g.state != GroupState::Starting) {
                // Heartbeat's `ask_resources … me` made both sides count the other unstable;
                // like Heartbeat's acquirer, say `isstable=1` before `done`, or its shutdown
                // and its next standby wait for it.
                let r = self.resource_msg(!self.in_flux(), None);
                self.last_announced = Some(r.clone());
                out.msgs.push(r);
                let mut m = Message::of_type("ask_resources");
                m.add("rsc_hold", set.mirror().name());
                m.add("info", "done");
                out.msgs.push(m);
                self.owe_done = None;
            }
        }
    }

    /// Stops a running group or clone instance; what is ordered after it and held here
    /// stops first (the stop waits in `pending_stop` meanwhile).
    fn stop(&mut self, key: &str, reason: &str, out: &mut RscOut) {
        let Some(g) = self.find(key) else { return };
        if g.state != GroupState::Running || g.pending_stop.is_some() {
            return;
        }
        let name = g.cfg.name().to_string();
        let deps = self.dependents_held(&name);
        if !deps.is_empty() {
            out.log(
                Level::Info,
                format!(
                    "{name} is to stop here ({reason}): stopping {} first (ordered after it)",
                    deps.join(" ")
                ),
            );
            if let Some(g) = self.find_mut(key) {
                g.pending_stop = Some(reason.to_string());
            }
            for d in deps {
                self.stop(&d, &format!("{name} stops here"), out);
            }
            return;
        }
        if let Some(g) = self.find_mut(key) {
            g.state = GroupState::Stopping;
        }
        out.actions.push(Action::StopGroup { key: key.to_string(), reason: reason.to_string() });
    }

    /// Keys of what is ordered after `name` and held here (starting, running, stopping).
    fn dependents_held(&self, name: &str) -> Vec<String> {
        self.order
            .iter()
            .filter(|o| o.first == name)
            .filter_map(|o| self.by_name(&o.then))
            .filter(|d| matches!(d.state, GroupState::Starting | GroupState::Running | GroupState::Stopping))
            .map(|d| d.cfg.key.clone())
            .collect()
    }

    /// The name of a group or clone ordered before `key` whose stop here waits for it.
    fn waiting_first(&self, key: &str) -> Option<String> {
        let name = self.find(key)?.cfg.name().to_string();
        self.order
            .iter()
            .filter(|o| o.then == name)
            .filter_map(|o| self.by_name(&o.first))
            .find(|f| f.pending_stop.is_some())
            .map(|f| f.cfg.name().to_string())
    }

    /// Stops whose dependents here have all stopped now go ahead.
    fn run_pending_stops(&mut self, out: &mut RscOut) {
        loop {
            let ready = self.all().find(|g| {
                g.pending_stop.is_some()
                    && (g.state != GroupState::Running || self.dependents_held(g.cfg.name()).is_empty())
            });
            let Some(key) = ready.map(|g| g.cfg.key.clone()) else { return };
            let Some(g) = self.find_mut(&key) else { return };
            let reason = g.pending_stop.take().unwrap_or_default();
            if g.state == GroupState::Running {
                self.stop(&key, &reason, out);
            }
        }
    }

    /// Whether everything `g` is ordered after runs: a group on some node (as its holders
    /// say), a clone here.
    fn order_ok(&self, g: &Group, view: &View) -> bool {
        self.order.iter().filter(|o| o.then == g.cfg.name()).all(|o| self.first_runs(&o.first, view))
    }

    fn first_runs(&self, name: &str, view: &View) -> bool {
        let Some(f) = self.by_name(name) else { return true };
        let here = f.state == GroupState::Running && f.pending_stop.is_none();
        if here || self.is_clone(name) {
            return here;
        }
        self.peers.iter().any(|(n, p)| {
            // A leaving node's groups are about to stop.
            (view.active)(n) && !p.leaving && p.holds.contains(&f.cfg.key) && !p.starting.contains(&f.cfg.key)
        })
    }

    /// Whether `name` (a group or a clone) runs on `node`, as far as we know.
    fn runs_on(&self, name: &str, node: &str, view: &View) -> bool {
        let Some(w) = self.by_name(name) else { return false };
        let clone = self.is_clone(name);
        if node == self.me {
            return if clone { w.state == GroupState::Running } else { w.state.held() };
        }
        self.peers.get(node).is_some_and(|p| {
            (view.active)(node)
                && if clone { p.clones.contains(&w.cfg.key) } else { p.holds.contains(&w.cfg.key) }
        })
    }

    // ------------------------------------------------------------- placement

    /// Whether a node reaches fewer ping nodes than some other active node does.
    fn cut_off(&self, node: &str, view: &View) -> bool {
        let Some(mine) = self.ping_count else { return false };
        let count = |n: &str| if n == self.me { Some(mine) } else { self.peers.get(n).and_then(|p| p.ping) };
        let Some(c) = count(node) else { return false };
        let best = self
            .nodes
            .iter()
            .filter(|n| **n == self.me || (view.active)(n))
            .filter_map(|n| count(n))
            .max()
            .unwrap_or(0);
        c < best
    }

    fn eligible(&self, node: &str, g: &Group, view: &View) -> bool {
        if self.cut_off(node, view) {
            return false;
        }
        // Ordered after a clone: only where an instance of it may run.
        for o in self.order.iter().filter(|o| o.then == g.cfg.name()) {
            if let Some(c) = self.clones.iter().find(|c| c.cfg.key == o.first) {
                let failed = if node == self.me {
                    c.failed_here
                } else {
                    self.peers.get(node).is_some_and(|p| p.clones_failed.contains(&c.cfg.key))
                };
                if failed || !Self::clone_listed(c, node) {
                    return false;
                }
            }
        }
        if node == self.me {
            return self.comm_up_at.is_some()
                && !self.shutting_down
                && !self.standby.covers(&self.me, &g.cfg.node)
                && !g.failed_here
                && g.state != GroupState::StopFailed;
        }
        let Some(p) = self.peers.get(node) else { return false };
        // A peer still joining (heard, not yet active) counts: it takes its own groups the
        // moment it is active, so taking one "because it cannot run it" in the meantime would
        // run the group on both. (The simulator, with fencing: 642 of 10,000 schedules had a
        // group on two nodes outside a fence, up to 5.2 s, when only active peers counted;
        // 23, up to 351 ms, with this; 0 in 50,000 once starts went through the intent
        // handshake, `intent_ready`.) Joining ends at the peer's initdead at the latest.
        (view.alive)(node)
            && !p.leaving
            && !p.standby.covers(node, &g.cfg.node)
            && !p.failed.contains(&g.cfg.key)
    }

    fn holders(&self, g: &Group, view: &View) -> Vec<String> {
        let mut h = Vec::new();
        for n in &self.nodes {
            if *n == self.me {
                if g.state.held() {
                    h.push(n.clone());
                }
            } else if let Some(p) = self.peers.get(n) {
                // A peer still joining that says it holds the group (an orphan it found
                // running at its start) holds it: starting it here too would run it twice.
                if (view.alive)(n) && p.holds.contains(&g.cfg.key) {
                    h.push(n.clone());
                }
            }
        }
        h
    }

    fn claim_of(&self, node: &str, g: &Group) -> Claim {
        if node == self.me {
            return g.claim;
        }
        match self.peers.get(node) {
            Some(p) if p.adopted.contains(&g.cfg.key) => Claim::Adopted,
            Some(p) if p.seized.contains(&g.cfg.key) => Claim::Seized,
            _ => Claim::Normal,
        }
    }

    /// Where a group belongs, given who holds it. The same answer on every node that
    /// shares the facts.
    fn desired(&self, g: &Group, holders: &[String], view: &View) -> Option<String> {
        self.desired_by(g, holders, view, true)
    }

    /// Where `with` of a colocation is: where it runs (a clone: its instances), or, for a
    /// group that runs nowhere, where it is to start (its own colocations aside, so that
    /// constraints never chase each other). `group` then never waits on `with` starting.
    fn with_on(&self, with: &str, node: &str, view: &View) -> bool {
        let Some(w) = self.by_name(with) else { return false };
        if self.is_clone(with) {
            return self.runs_on(with, node, view);
        }
        let holders = self.holders(w, view);
        if holders.is_empty() {
            self.desired_by(w, &holders, view, false).as_deref() == Some(node)
        } else {
            holders.iter().any(|h| h == node)
        }
    }

    fn desired_by(&self, g: &Group, holders: &[String], view: &View, colocate: bool) -> Option<String> {
        let eligible = |n: &str| self.eligible(n, g, view);
        // Colocation narrows the eligible nodes to those that satisfy it, when any does.
        let coloc: Vec<&ColocationConfig> =
            self.colocation.iter().filter(|c| colocate && c.group == g.cfg.name()).collect();
        let fits = |n: &str| coloc.iter().all(|c| self.with_on(&c.with, n, view) != c.apart);
        let narrowed = !coloc.is_empty() && self.nodes.iter().any(|n| eligible(n) && fits(n));
        let ok = |n: &str| eligible(n) && (!narrowed || fits(n));
        let claimed_by = |n: &str| -> bool {
            if n == self.me {
                self.claims.contains(&g.cfg.key)
            } else {
                self.peers.get(n).is_some_and(|p| p.claims.contains(&g.cfg.key))
            }
        };
        if let Some(n) = self.nodes.iter().find(|n| ok(n) && claimed_by(n)) {
            return Some(n.clone());
        }
        let prefs = g.cfg.preferred();
        let first_pref = prefs.iter().find(|p| ok(p)).map(|p| p.to_string());
        if self.failback != AutoFailback::Off && first_pref.is_some() {
            return first_pref;
        }
        // Keep it where it runs. Several holders (a healed partition, an orphan found at
        // start-up): the strongest claim keeps it, then the preferred nodes in order, then
        // ha.cf order.
        let strongest = holders.iter().filter(|h| ok(h)).map(|h| self.claim_of(h, g)).min();
        if let Some(best) = strongest {
            let keepers: Vec<&String> =
                holders.iter().filter(|h| ok(h) && self.claim_of(h, g) == best).collect();
            let preferred = prefs.iter().find_map(|p| keepers.iter().find(|h| **h == p));
            if let Some(h) = preferred.or(keepers.first()) {
                return Some((*h).clone());
            }
        }
        if first_pref.is_some() {
            return first_pref;
        }
        let start = self.nodes.iter().position(|n| n == prefs[0]).unwrap_or(0);
        (1..=self.nodes.len()).map(|i| &self.nodes[(start + i) % self.nodes.len()]).find(|n| ok(n)).cloned()
    }

    /// Decides and acts: called after every event, once membership is settled for it.
    pub fn reconcile(&mut self, now: u64, view: &View, out: &mut RscOut) {
        if !self.managed() || self.comm_up_at.is_none() {
            return;
        }
        if let Some(a) = &self.ask {
            if matches!(a.phase, AskPhase::WaitOther) && now >= a.since + ASK_TIMEOUT_MS {
                out.log(
                    Level::Warn,
                    format!("No reply to standby request from {}. Standby request cancelled.", a.peer),
                );
                self.ask = None;
                self.ask_quiet_until = now + ASK_TIMEOUT_MS;
            }
        }
        self.drive_fences(now, view, out);
        let fencing_pending = !self.fences.is_empty();
        self.legacy_step(now, view, out);
        let informed = self.informed(now, view);
        let mut to_heartbeat: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for i in 0..self.groups.len() {
            let g = &self.groups[i];
            let holders = self.holders(g, view);
            let desired = self.desired(g, &holders, view);
            let others_hold = holders.iter().any(|h| *h != self.me);
            let key = g.cfg.key.clone();
            if g.pending_stop.is_some() {
                // Its stop waits for what is ordered after it.
                continue;
            }
            let want_start = g.state == GroupState::Stopped
                && view.no_quorum.is_none()
                && view.settled
                && informed
                && !fencing_pending
                && desired.as_deref() == Some(self.me.as_str())
                && !others_hold
                && !self.legacy_maybe_held(&key)
                && self.order_ok(g, view);
            let state = g.state;
            if !want_start {
                self.groups[i].intent = None;
            }
            match (state, view.no_quorum) {
                // Without quorum nothing starts (freeze and stop alike).
                (GroupState::Stopped, Some(_)) => {}
                (GroupState::Running, Some(NoQuorumPolicy::Stop)) => {
                    out.log(
                        Level::Warn,
                        format!("Releasing resource group {key}: no quorum (no_quorum_policy stop)"),
                    );
                    self.stop(&key, "no quorum", out);
                }
                // Freeze: what runs stays, and nothing moves.
                (GroupState::Running, Some(_)) => {}
                (GroupState::Stopped, None) if want_start => {
                    if !self.intent_ready(i, view, out) {
                        continue;
                    }
                    let g = &mut self.groups[i];
                    g.intent = None;
                    g.state = GroupState::Starting;
                    g.claim = if g.took_from_dead { Claim::Seized } else { Claim::Normal };
                    let reason = if g.took_from_dead {
                        "its holder died".to_string()
                    } else if g.cfg.node == self.me {
                        "it is ours".to_string()
                    } else {
                        format!("{} cannot run it", g.cfg.node)
                    };
                    out.log(Level::Info, format!("Acquiring resource group {key} ({reason})"));
                    out.actions.push(Action::StartGroup { key, reason });
                }
                (GroupState::Running, None) => {
                    let all_up = self.peers.keys().all(|n| (view.active)(n));
                    if informed && all_up && !others_hold {
                        self.groups[i].claim = Claim::Normal;
                    }
                    if others_hold {
                        self.groups[i].contested = true;
                    } else if std::mem::take(&mut self.groups[i].contested) {
                        // We kept it through a healed partition: make the network forget the
                        // other holder's MAC.
                        out.log(
                            Level::Warn,
                            format!("group {key}: the other holder let go; announcing it again"),
                        );
                        out.actions.push(Action::Announce { key: key.clone() });
                    }
                    match desired {
                        Some(d) if d == self.me => {}
                        Some(d) if self.peers.get(&d).is_some_and(|p| !p.halo) && !others_hold => {
                            // Heartbeat ignores `ask_resources info=me` unless it is stable
                            // ("Other side is in flux"): wait for its `isstable=1`.
                            if !self.shutting_down && self.peers.get(&d).is_some_and(|p| p.known && p.stable)
                            {
                                to_heartbeat.entry(d).or_default().push(key);
                            }
                        }
                        Some(_)
                            if others_hold
                                && holders.iter().filter(|h| **h != self.me).all(|h| {
                                    self.peers.get(h).is_some_and(|p| !p.halo && now < p.hb_yields_until)
                                }) =>
                        {
                            // A Heartbeat peer back from a partition holds it too; it is
                            // about to give everything up and restart.
                        }
                        Some(d) => {
                            if !informed {
                                continue;
                            }
                            // Another halo node should run it (failback, standby, claim, or a
                            // partition healed with two holders): stop, say so, it starts.
                            let why = if holders.len() > 1 {
                                format!("{d} keeps it (both held it)")
                            } else {
                                format!("it belongs on {d}")
                            };
                            out.log(Level::Info, format!("Releasing resource group {key}: {why}"));
                            self.stop(&key, &why, out);
                        }
                        None => {
                            let why = "no node may run it (standby or failure)".to_string();
                            out.log(Level::Warn, format!("Releasing resource group {key}: {why}"));
                            self.stop(&key, &why, out);
                        }
                    }
                }
                _ => {}
            }
        }
        self.note_split_brains(now, view, out);
        self.reconcile_clones(view, out);
        self.run_pending_stops(out);
        // Heartbeat peers take groups only through their standby protocol.
        if self.ask.is_none() && now >= self.ask_quiet_until {
            if let Some((peer, keys)) = to_heartbeat.into_iter().next() {
                let mut set = RscSet::NONE;
                for k in &keys {
                    if let Some(g) = self.groups.iter().find(|g| g.cfg.key == *k) {
                        if g.cfg.node == self.me {
                            set.local = true;
                        } else {
                            set.foreign = true;
                        }
                    }
                }
                out.log(Level::Info, format!("asking {peer} to take [{}]: {}", set.name(), keys.join(" ")));
                let mut m = Message::of_type("ask_resources");
                m.add("rsc_hold", set.name());
                m.add("info", "me");
                m.add("halo_groups", keys.join(" "));
                out.msgs.push(m);
                self.ask = Some(Ask { peer, keys, set, since: now, phase: AskPhase::WaitOther });
            }
        }
        self.finish_owed_done(out);
        self.announce(now, view, None, out);
    }

    /// Whether we may start group `i` now that placement says it is ours: every live halo
    /// peer has read that we mean to (its statement acknowledges our intent round) and does
    /// not mean to start it itself. Two nodes whose views differ for a moment (one saw a
    /// statement the other has not yet) may each find a group theirs; starting at once would
    /// run it on both for a round trip. When two intents meet, the better rank (the group's
    /// preferred nodes in order, then ha.cf order) goes on and the other withdraws. A node
    /// never starts without a statement that a peer sent after reading its intent, and
    /// statements are whole: that one shows the peer's own start if it made one first.
    /// Without live halo peers (alone, or Heartbeat peers, which take groups through their
    /// own protocol) nothing waits.
    fn intent_ready(&mut self, i: usize, view: &View, out: &mut RscOut) -> bool {
        let key = self.groups[i].cfg.key.clone();
        let rank_of = |g: &Group, n: &str| -> usize {
            let prefs = g.cfg.preferred();
            match prefs.iter().position(|p| *p == n) {
                Some(k) => k,
                None => prefs.len() + self.nodes.iter().position(|m| m == n).unwrap_or(self.nodes.len()),
            }
        };
        let g = &self.groups[i];
        let mine = rank_of(g, &self.me);
        // A leaving peer starts nothing and, shutting down, no longer answers: not waited for.
        let peers: Vec<(&String, &PeerRsc)> =
            self.peers.iter().filter(|(n, p)| (view.alive)(n) && p.halo && !p.leaving).collect();
        if let Some((better, _)) =
            peers.iter().find(|(n, p)| p.intends.contains(&key) && rank_of(g, n) < mine)
        {
            if g.intent.is_some() {
                out.log(Level::Debug, format!("{better} also means to start {key} and goes first"));
            }
            self.groups[i].intent = None;
            return false;
        }
        if peers.is_empty() {
            self.groups[i].intent = None;
            return true;
        }
        let Some(round) = g.intent else {
            // Said in this reconcile's statement.
            self.intent_round += 1;
            self.groups[i].intent = Some(self.intent_round);
            return false;
        };
        let gen = self.generation;
        peers
            .iter()
            .all(|(_, p)| !p.intends.contains(&key) && p.ack_me.is_some_and(|(g, r)| g == gen && r >= round))
    }

    /// Clone instances: each node starts its own where the clone may run, keeps it there
    /// (restarts after monitor failures are `monitor_failed`'s), and never moves it.
    fn reconcile_clones(&mut self, view: &View, out: &mut RscOut) {
        for i in 0..self.clones.len() {
            let c = &self.clones[i];
            let key = c.cfg.key.clone();
            if c.pending_stop.is_some() {
                continue;
            }
            match (c.state, view.no_quorum) {
                (GroupState::Running, Some(NoQuorumPolicy::Stop)) => {
                    out.log(
                        Level::Warn,
                        format!("Stopping clone {key} here: no quorum (no_quorum_policy stop)"),
                    );
                    self.stop(&key, "no quorum", out);
                }
                (GroupState::Stopped, None)
                    if Self::clone_listed(c, &self.me)
                        && view.settled
                        && !self.shutting_down
                        && !c.failed_here
                        && self.order_ok(c, view) =>
                {
                    let c = &mut self.clones[i];
                    c.state = GroupState::Starting;
                    out.log(Level::Info, format!("Starting clone {key} here"));
                    out.actions.push(Action::StartGroup { key, reason: "clone instance".into() });
                }
                _ => {}
            }
        }
    }

    /// The next time reconcile must run even if nothing happens (RQSTDELAY, ask timeout).
    pub fn deadline(&self, now: u64) -> Option<u64> {
        let mut d: Option<u64> = None;
        let mut at = |t: u64| {
            if t > now {
                d = Some(d.map_or(t, |x: u64| x.min(t)))
            }
        };
        if let Some(up) = self.comm_up_at {
            if self.managed() {
                at(up + RQSTDELAY_MS);
            }
        }
        if let Some(a) = &self.ask {
            at(a.since + ASK_TIMEOUT_MS);
        }
        at(self.ask_quiet_until);
        for t in self.legacy.values().flat_map(|l| l.asked.values()) {
            at(t + IP_REQUEST_RETRY_MS);
        }
        for p in self.peers.values() {
            at(p.hb_yields_until);
        }
        for f in self.fences.values().filter(|f| !f.requested) {
            at(f.retry_at);
        }
        d
    }

    pub fn status(&self, now: u64, view: &View) -> ResourceStatus {
        let groups = self
            .groups
            .iter()
            .map(|g| {
                let holders = self.holders(g, view);
                GroupStatus {
                    key: g.cfg.key.clone(),
                    preferred: g.cfg.node.clone(),
                    name: g.cfg.name().to_string(),
                    preferred_nodes: g.cfg.preferred().iter().map(|n| n.to_string()).collect(),
                    state: g.state.name(),
                    desired: self.desired(g, &holders, view),
                    holders,
                    failed_here: g.failed_here,
                    last_error: g.last_error.clone(),
                }
            })
            .collect();
        let rscstatus = if self.in_flux() { "transition" } else { self.rsc_hold().name() };
        ResourceStatus {
            managed: self.managed(),
            auto_failback: match self.failback {
                AutoFailback::On => "on",
                AutoFailback::Off => "off",
                AutoFailback::Legacy => "legacy",
            },
            standby: self.standby.name(),
            rscstatus,
            stable: self.informed(now, view) && !self.in_flux(),
            groups,
            failovers: self.failovers,
            clones: self.clones.iter().map(|c| self.clone_status(c, view)).collect(),
            fencing: self
                .fences
                .iter()
                .map(|(node, f)| FenceStatus {
                    node: node.clone(),
                    state: if f.requested {
                        "requested"
                    } else if view.no_quorum.is_some() {
                        "no_quorum"
                    } else if f.last_error.is_some() {
                        "failed"
                    } else {
                        "waiting"
                    },
                    fencer: self.fencer(node, view),
                    attempts: f.attempts,
                    last_error: f.last_error.clone(),
                    pending_ms: now.saturating_sub(f.since),
                    retry_in_ms: (!f.requested && f.last_error.is_some())
                        .then(|| f.retry_at.saturating_sub(now)),
                })
                .collect(),
        }
    }

    fn clone_status(&self, c: &Group, view: &View) -> CloneStatus {
        let nodes: Vec<String> = self.nodes.iter().filter(|n| Self::clone_listed(c, n)).cloned().collect();
        let failed_on = nodes
            .iter()
            .filter(|n| {
                if **n == self.me {
                    c.failed_here
                } else {
                    self.peers.get(*n).is_some_and(|p| p.clones_failed.contains(&c.cfg.key))
                }
            })
            .cloned()
            .collect();
        CloneStatus {
            name: c.cfg.key.clone(),
            running_on: nodes.iter().filter(|n| self.runs_on(&c.cfg.key, n, view)).cloned().collect(),
            failed_on,
            nodes,
            state: c.state.name(),
            last_error: c.last_error.clone(),
        }
    }
}

// ----------------------------------------------------------------- legacy mode (ip-request)

impl Resources {
    /// Whether a peer that never stated its holdings (legacy mode) may hold `key`.
    fn legacy_maybe_held(&self, key: &str) -> bool {
        self.legacy.values().any(|l| l.maybe.contains(key))
    }

    /// `ip-request ipaddr=<key>` from a Heartbeat peer (its `req_resource`, legacy mode):
    /// give the group up, then answer as Heartbeat's `rc.d/ip-request` does.
    fn on_ip_request(&mut self, src: &str, msg: &Message, out: &mut RscOut) {
        let Some(key) = msg.get("ipaddr").filter(|k| !k.is_empty()) else { return };
        // halo nodes move groups by placement, never on request (a halo requester says
        // `halo=1`: its `starting` may not have reached us yet).
        if msg.get("halo") == Some("1") {
            if let Some(p) = self.peers.get_mut(src) {
                p.halo = true;
            }
            return;
        }
        if self.peers.get(src).is_none_or(|p| p.halo) {
            return;
        }
        let state = self.groups.iter().find(|g| g.cfg.key == key).map(|g| g.state);
        match state {
            None | Some(GroupState::Stopped) => self.answer_ip_request(src, key, false, out),
            Some(s) => {
                out.log(
                    Level::Info,
                    format!("node {src} asks for resource group {key} (ip-request): giving it up"),
                );
                if s == GroupState::StopFailed {
                    out.log(
                        Level::Crit,
                        format!("{key} failed to stop here: {src} gets no answer until `halo cleanup {key}`"),
                    );
                }
                self.owe_ip.insert(key.to_string(), (src.to_string(), true));
                self.stop(key, &format!("{src} asks for it (ip-request)"), out);
            }
        }
    }

    fn answer_ip_request(&mut self, peer: &str, key: &str, weown: bool, out: &mut RscOut) {
        let mut m = Message::of_type("ip-request-resp");
        m.add("dest", peer);
        m.add("ipaddr", key);
        m.add("weown", if weown { "yes" } else { "no" });
        m.add("ok", "OK");
        out.msgs.push(m);
        out.log(
            Level::Info,
            format!("ip-request-resp to {peer}: {key} weown={} ok=OK", if weown { "yes" } else { "no" }),
        );
        // Heartbeat's rc.d/ip-request-resp takes the group on `ok=OK`.
        if let Some(p) = self.peers.get_mut(peer) {
            p.holds.insert(key.to_string());
            p.known = true;
        }
        if let Some(l) = self.legacy.get_mut(peer) {
            l.maybe.insert(key.to_string());
        }
    }

    /// `ip-request-resp dest=<us>`: the peer gave the group up (or never held it).
    fn on_ip_request_resp(&mut self, src: &str, msg: &Message, out: &mut RscOut) {
        let Some(key) = msg.get("ipaddr") else { return };
        if msg.get("dest") == Some(src) {
            self.on_peer_takes(src, key, out);
            return;
        }
        if msg.get("dest") != Some(self.me.as_str()) {
            return;
        }
        let (weown, ok) = (msg.get("weown").unwrap_or(""), msg.get("ok").unwrap_or(""));
        if ok != "OK" {
            out.log(Level::Warn, format!("node {src} refused {key} (ip-request-resp ok={ok})"));
            return;
        }
        out.log(Level::Info, format!("received ip-request-resp {key} {ok} {weown} from {src}"));
        if let Some(l) = self.legacy.get_mut(src) {
            l.maybe.remove(key);
            l.asked.remove(key);
        }
        if let Some(p) = self.peers.get_mut(src) {
            p.holds.remove(key);
            // A Heartbeat that answers is comm-up and in legacy mode: it says nothing more.
            p.known = true;
        }
    }

    /// A legacy Heartbeat that counted itself alone (its `req_our_resources` runs before it
    /// records our `active` status) takes its group without asking: it says so only in a
    /// self-addressed `ip-request-resp`. It holds the group now; if we hold it too, placement
    /// leaves it with its preferred node and we stop ours.
    fn on_peer_takes(&mut self, src: &str, key: &str, out: &mut RscOut) {
        if self.failback != AutoFailback::Legacy || src == self.me {
            return;
        }
        let Some(p) = self.peers.get_mut(src) else { return };
        if p.halo {
            return;
        }
        p.holds.insert(key.to_string());
        p.known = true;
        if let Some(l) = self.legacy.get_mut(src) {
            l.maybe.insert(key.to_string());
        }
        let held = self.find(key).is_some_and(|g| g.state.held());
        out.log(
            if held { Level::Warn } else { Level::Info },
            format!("node {src} takes resource group {key} without asking (it counted itself alone)"),
        );
    }

    /// A legacy Heartbeat starting afresh takes its local groups at its comm up — by
    /// `ip-request`, or without asking when it has not yet recorded our `active` status (its
    /// `req_our_resources` counts us before it does): release them now, so that the two
    /// never hold one at once. They stay presumed its own (never restarted here) until it
    /// dies again.
    /// Legacy mode: stops the groups `name` prefers that run here (with `seized_only`, only
    /// those taken over while it was held dead), and presumes it may hold them.
    fn legacy_release_for(&mut self, name: &str, seized_only: bool, out: &mut RscOut) {
        let keys: Vec<String> = self
            .groups
            .iter()
            .filter(|g| g.cfg.node == name && g.state.held() && (!seized_only || g.claim == Claim::Seized))
            .map(|g| g.cfg.key.clone())
            .collect();
        if seized_only && keys.is_empty() {
            return;
        }
        let mut maybe: BTreeSet<String> =
            self.groups.iter().filter(|g| !g.state.held()).map(|g| g.cfg.key.clone()).collect();
        for k in &keys {
            if seized_only {
                out.log(
                    Level::Warn,
                    format!(
                        "node {name} is back after a partition (auto_failback legacy) and keeps what it held: \
                         giving up its group {k}, which we seized"
                    ),
                );
                self.stop(k, &format!("{name} is back after a partition (we seized it)"), out);
            } else {
                out.log(
                    Level::Info,
                    format!("node {name} starts afresh (auto_failback legacy): releasing its group {k} before it takes it"),
                );
                self.stop(k, &format!("{name} takes it at its start (auto_failback legacy)"), out);
            }
            maybe.insert(k.clone());
        }
        self.legacy.insert(name.to_string(), LegacyPeer { maybe, presumed: true, ..Default::default() });
    }

    /// Legacy mode, each reconcile: presume what silent peers may hold, ask them for our
    /// local groups, and answer the `ip-request`s whose group has stopped here.
    fn legacy_step(&mut self, now: u64, view: &View, out: &mut RscOut) {
        let names: Vec<String> = self.peers.keys().cloned().collect();
        for n in &names {
            let p = &self.peers[n];
            if self.failback != AutoFailback::Legacy || p.halo {
                self.legacy.remove(n);
                continue;
            }
            if !(view.alive)(n) {
                self.legacy.insert(n.clone(), LegacyPeer { dead: true, ..Default::default() });
                continue;
            }
            if self.legacy.get(n).is_none_or(|l| !l.presumed) {
                let dead = self.legacy.get(n).is_some_and(|l| l.dead);
                let maybe: BTreeSet<String> =
                    self.groups.iter().filter(|g| !g.state.held()).map(|g| g.cfg.key.clone()).collect();
                if !maybe.is_empty() {
                    out.log(
                        Level::Info,
                        format!(
                            "node {n} states no holdings (auto_failback legacy): presumed to hold {} until it answers",
                            maybe.iter().cloned().collect::<Vec<_>>().join(" ")
                        ),
                    );
                }
                self.legacy
                    .insert(n.clone(), LegacyPeer { maybe, dead, presumed: true, ..Default::default() });
            }
        }
        // Answers owed: once stopped here (a dead asker is owed nothing).
        let owed: Vec<(String, String, bool)> =
            self.owe_ip.iter().map(|(k, (p, w))| (k.clone(), p.clone(), *w)).collect();
        for (key, peer, weown) in owed {
            if !(view.alive)(&peer) {
                self.owe_ip.remove(&key);
                continue;
            }
            match self.group_state(&key) {
                Some(GroupState::Running) => {
                    self.stop(&key, &format!("{peer} asks for it (ip-request)"), out)
                }
                Some(GroupState::Stopped) | None => {
                    self.owe_ip.remove(&key);
                    self.answer_ip_request(&peer, &key, weown, out);
                }
                _ => {}
            }
        }
        if self.legacy.is_empty() || self.shutting_down || view.no_quorum.is_some() {
            return;
        }
        // Heartbeat's req_resource: ask for our local groups that a silent peer may hold.
        let me = self.me.clone();
        let wanted: Vec<String> = self
            .groups
            .iter()
            .filter(|g| {
                g.cfg.node == me
                    && g.state == GroupState::Stopped
                    && !g.failed_here
                    && !self.standby.covers(&me, &g.cfg.node)
                    && !self.owe_ip.contains_key(&g.cfg.key)
            })
            .map(|g| g.cfg.key.clone())
            .collect();
        for key in wanted {
            let due = self.legacy.values().any(|l| {
                l.maybe.contains(&key) && l.asked.get(&key).is_none_or(|t| now >= t + IP_REQUEST_RETRY_MS)
            });
            if !due {
                continue;
            }
            for l in self.legacy.values_mut().filter(|l| l.maybe.contains(&key)) {
                l.asked.insert(key.clone(), now);
            }
            let mut m = Message::of_type("ip-request");
            m.add("ipaddr", &key);
            m.add("halo", "1");
            out.msgs.push(m);
            out.log(Level::Info, format!("requesting resource group {key} (ip-request)"));
        }
    }
}

// ----------------------------------------------------------------- split-brain history

impl Resources {
    /// Records groups held here and by another node at once (a healed partition, an
    /// orphan): when it was found, with whom, and who kept what once it is over.
    fn note_split_brains(&mut self, now: u64, view: &View, out: &mut RscOut) {
        if !self.split_brains.open() && !self.groups.iter().any(|g| g.state.held()) {
            return;
        }
        let holders: Vec<(usize, Vec<String>)> =
            self.groups.iter().enumerate().map(|(i, g)| (i, self.holders(g, view))).collect();
        let desired: Vec<Option<String>> = holders
            .iter()
            .map(|(i, h)| if h.len() > 1 { self.desired(&self.groups[*i], h, view) } else { None })
            .collect();
        let seen: Vec<crate::status::HeldTwice> = holders
            .iter()
            .zip(&desired)
            .map(|((i, h), d)| crate::status::HeldTwice {
                key: &self.groups[*i].cfg.key,
                holders: h,
                desired: d.as_deref(),
            })
            .collect();
        for line in self.split_brains.observe(now, &self.me, &seen, view.alive) {
            out.log(Level::Warn, line);
        }
    }

    pub fn split_brains(&self) -> &crate::status::SplitBrains {
        &self.split_brains
    }
}
