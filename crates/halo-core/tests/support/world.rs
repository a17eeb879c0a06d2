//! The virtual cluster: engines, a virtual clock, a virtual network through the real codec,
//! and a virtual executor. It plays a [`Scenario`] and checks the safety invariants after
//! every step (every instant at which something happened).
use super::scenario::{Mode, NoQuorumPolicy, Op, Scenario};
use super::Rng;
use halo_core::{Action, CoreConfig, Engine, Event, GroupState, NodeState, Now, OperatorCmd};
use halo_wire::{AuthMethod, Keyring};
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;

/// Ping nodes answer every this often.
const PING_EVERY_MS: u64 = 200;

enum Item {
    /// One copy of a message to one node. Every message goes through the real codec
    /// once, when sent (encoded, signed, decoded and verified); its copies share the
    /// decoded result, which is what each receiver would decode from the same bytes.
    Deliver {
        to: usize,
        msg: Rc<halo_wire::Message>,
    },
    AgentDone {
        node: usize,
        group: usize,
        token: u64,
    },
    /// A fence lands: the target is powered off (or the fence fails), and the requester
    /// (if this incarnation still runs) hears the result.
    FenceDone {
        from: usize,
        generation: u64,
        target: usize,
        ok: bool,
    },
    Op(usize),
    Settle,
    Cleanup,
}

struct Entry {
    at: u64,
    seq: u64,
    item: Item,
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    // Min-heap on (time, insertion order): ties resolve in a fixed order.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// A packet the attacker recorded, with the nodes it reached (and their generation then).
struct Recorded {
    msg: Rc<halo_wire::Message>,
    reached: Vec<(usize, u64)>,
}

/// An agent operation in flight.
#[derive(Clone, Copy)]
struct Pending {
    start: bool,
    ok: bool,
    token: u64,
}

/// What really runs on a machine for one group (the executor's truth, not the engine's).
#[derive(Clone, Copy, Default)]
struct Real {
    running: bool,
    op: Option<Pending>,
}

impl Real {
    /// Maybe running: a start or stop in flight counts (a VIP may already be up).
    fn active(&self) -> bool {
        self.running || self.op.is_some()
    }
}

struct Node {
    engine: Option<Engine>,
    generation: u64,
    real: Vec<Real>,
    modes: Vec<(Mode, Mode)>,
}

#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    pub steps: u64,
    pub messages: u64,
    pub max_double_ms: u64,
    /// With fencing: the longest a group ran on two nodes (not being fenced) at all,
    /// agreement or not (invariant (e): always 0 in a schedule that passes).
    pub max_fenced_double_ms: u64,
    pub max_settle_ms: u64,
    /// Old packets the attacker sent again.
    pub replayed: u64,
}

pub struct World {
    pub sc: Scenario,
    /// Group keys, then clone names: the index of `Node::real` and `modes`.
    keys: Vec<String>,
    pub now: u64,
    cfgs: Vec<CoreConfig>,
    names: Vec<String>,
    nodes: Vec<Node>,
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// `blocked[from][to]`: messages from `from` do not reach `to`.
    blocked: Vec<Vec<bool>>,
    quality: (u64, u64, u64),
    ping_ok: Vec<bool>,
    rng: Rng,
    /// The attacker's own draws (apart from `rng`: replays leave the rest of the schedule
    /// as it is) and what it recorded.
    replay_rng: Rng,
    recorded: Vec<Recorded>,
    keyring: Keyring,
    token: u64,
    pub trace: bool,
    pub violation: Option<String>,
    pub stats: Stats,
    /// Ground truth for invariant (a): `lost[i][j]` is None while node i hears node j, else
    /// since when it does not (0: never, this incarnation); `ping_lost[i]` likewise for
    /// the ping node.
    lost: Vec<Vec<Option<u64>>>,
    ping_lost: Vec<Option<u64>>,
    /// Last change of membership ground truth (network, crash, boot, exit).
    last_change: u64,
    agreed_since: Option<u64>,
    double_since: Vec<Option<u64>>,
    fenced_double_since: Vec<Option<u64>>,
    settled_since: Option<u64>,
    settle_phase: bool,
    /// Fences in flight against each node (requested, not yet landed).
    fencing_in_flight: Vec<usize>,
}

impl World {
    pub fn new(sc: Scenario) -> World {
        let n = sc.nodes;
        let names: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        let cfgs = (0..n)
            .map(|i| {
                let mut c = CoreConfig::new(&names[i], &refs, &["eth0"]);
                c.keepalive_ms = sc.keepalive_ms;
                c.deadtime_ms = sc.deadtime_ms;
                c.warntime_ms = sc.deadtime_ms / 2;
                c.initdead_ms = sc.initdead_ms;
                c.uuid = [i as u8 + 1; 16];
                c.seed = sc.seed.wrapping_mul(31).wrapping_add(i as u64);
                c.groups = sc.groups.clone();
                c.clones = sc.clones.clone();
                c.order = sc.order.clone();
                c.colocation = sc.colocation.clone();
                c.auto_failback = sc.failback;
                c.no_quorum_policy = sc.policy;
                if sc.fencing.is_some() {
                    c.fencing = Some(halo_core::FencingConfig::all(&names));
                }
                if sc.ping {
                    c.ping_nodes = vec!["gw".into()];
                    c.deadping_ms = sc.deadping_ms;
                }
                c
            })
            .collect();
        let g = sc.groups.len();
        // Groups first, then clones: invariants (b) and (c) look at the groups only (a
        // clone runs on many nodes by design).
        let keys: Vec<String> =
            sc.groups.iter().map(|g| g.key.clone()).chain(sc.clones.iter().map(|c| c.name.clone())).collect();
        let all = keys.len();
        let nodes = (0..n)
            .map(|_| Node {
                engine: None,
                generation: 100,
                real: vec![Real::default(); all],
                modes: vec![(Mode::Ok, Mode::Ok); all],
            })
            .collect();
        let mut w = World {
            keys,
            now: 0,
            cfgs,
            names,
            nodes,
            heap: BinaryHeap::new(),
            seq: 0,
            blocked: vec![vec![false; n]; n],
            quality: sc.quality,
            ping_ok: vec![true; n],
            rng: Rng::new(sc.seed ^ 0x5eed_f4e7),
            replay_rng: Rng::new(sc.seed ^ 0xa77a_c4e5),
            recorded: Vec::new(),
            keyring: Keyring::new(1, vec![(1, AuthMethod::Sha1, b"sim".to_vec())]),
            token: 0,
            trace: false,
            violation: None,
            stats: Stats::default(),
            lost: vec![vec![Some(0); n]; n],
            ping_lost: vec![None; n],
            last_change: 0,
            agreed_since: None,
            double_since: vec![None; g],
            fenced_double_since: vec![None; g],
            settled_since: None,
            settle_phase: false,
            fencing_in_flight: vec![0; n],
            sc,
        };
        for i in 0..w.sc.ops.len() {
            let at = w.sc.ops[i].0;
            w.push(at, Item::Op(i));
        }
        let (end, cleanup) = (w.sc.chaos_end, w.sc.cleanup_at());
        w.push(end, Item::Settle);
        w.push(cleanup, Item::Cleanup);
        w
    }

    fn push(&mut self, at: u64, item: Item) {
        self.seq += 1;
        self.heap.push(Entry { at, seq: self.seq, item });
    }

    fn say(&self, who: Option<usize>, text: impl FnOnce() -> String) {
        if self.trace {
            match who {
                Some(i) => println!("{:>7} n{} {}", self.now, i + 1, text()),
                None => println!("{:>7} -- {}", self.now, text()),
            }
        }
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.say(None, || format!("VIOLATION: {what}"));
            if self.trace {
                for (i, n) in self.nodes.iter().enumerate() {
                    if let Some(e) = &n.engine {
                        let now = Now::at(self.now);
                        let views: Vec<String> = (0..self.nodes.len())
                            .map(|j| format!("n{}={:?}", j + 1, e.node_state(&format!("n{}", j + 1))))
                            .collect();
                        println!(
                            "  n{} sees {}\n  n{} resources {:?}",
                            i + 1,
                            views.join(" "),
                            i + 1,
                            e.resource_status(now)
                        );
                    } else {
                        println!("  n{} is down", i + 1);
                    }
                }
            }
            self.violation = Some(format!("at {} ms: {what}", self.now));
        }
    }

    fn up(&self, i: usize) -> bool {
        self.nodes[i].engine.is_some()
    }

    /// Plays the whole scenario; the first violated invariant ends it.
    pub fn run(&mut self) -> Result<Stats, String> {
        let end = self.sc.end();
        let boots: Vec<(usize, u64)> = self.sc.boot_at.iter().copied().enumerate().collect();
        let mut boots_left = boots;
        boots_left.sort_by_key(|(i, t)| (*t, *i));
        let mut bi = 0;
        loop {
            let mut t = u64::MAX;
            if let Some(e) = self.heap.peek() {
                t = t.min(e.at);
            }
            if bi < boots_left.len() {
                t = t.min(boots_left[bi].1);
            }
            for n in &self.nodes {
                if let Some(e) = &n.engine {
                    t = t.min(e.next_deadline());
                }
            }
            if self.sc.ping {
                t = t.min((self.now / PING_EVERY_MS + 1) * PING_EVERY_MS);
            }
            if t > end || self.settled_since.is_some_and(|s| t > s + self.sc.steady_ms()) {
                break;
            }
            if t < self.now {
                self.fail(format!("an engine asked for a tick in the past ({t} ms)"));
                break;
            }
            self.now = t;
            self.stats.steps += 1;
            while bi < boots_left.len() && boots_left[bi].1 <= self.now {
                let i = boots_left[bi].0;
                bi += 1;
                if !self.up(i) {
                    self.boot(i);
                }
            }
            while self.heap.peek().is_some_and(|e| e.at <= self.now) {
                let e = self.heap.pop().expect("peeked");
                self.process(e.item);
            }
            for i in 0..self.nodes.len() {
                // A deadline already due after a tick is ticked again at once, as the runtime
                // does; one that stays due would spin the heartbeat thread.
                let mut ticks = 0;
                while self.nodes[i].engine.as_ref().is_some_and(|e| e.next_deadline() <= self.now) {
                    if ticks == 3 {
                        self.fail(format!("n{} spins: its next tick stays due after {ticks} ticks", i + 1));
                        break;
                    }
                    self.handle(i, Event::Tick);
                    ticks += 1;
                }
            }
            if self.sc.ping && self.now.is_multiple_of(PING_EVERY_MS) {
                for i in 0..self.nodes.len() {
                    if self.up(i) && self.ping_ok[i] {
                        self.handle(i, Event::PingReply { node: "gw".into() });
                    }
                }
            }
            self.check();
            if self.violation.is_some() {
                break;
            }
        }
        if self.violation.is_none() {
            let bound = self.sc.cleanup_at() + self.sc.settle_ms();
            match self.settled_since {
                Some(s) if s <= bound => {
                    self.stats.max_settle_ms = s.saturating_sub(self.sc.cleanup_at());
                }
                _ => self.fail("(c) the groups did not settle on exactly one node each".into()),
            }
        }
        match &self.violation {
            Some(v) => Err(v.clone()),
            None => Ok(self.stats),
        }
    }

    // ------------------------------------------------------------------ nodes

    fn boot(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.generation += 1;
        let mut c = self.cfgs[i].clone();
        c.generation = n.generation;
        c.running_at_start =
            self.keys.iter().zip(&n.real).filter(|(_, r)| r.running).map(|(k, _)| k.clone()).collect();
        let held = c.running_at_start.clone();
        n.engine = Some(Engine::new(c));
        // A new incarnation has heard nobody yet.
        self.lost[i].iter_mut().for_each(|l| *l = Some(0));
        self.say(Some(i), || {
            format!("** boots, generation {}, running at start {held:?}", self.nodes[i].generation)
        });
        self.membership_changed();
        self.handle(i, Event::Tick);
    }

    /// halo stops (crash or exit): agent operations in flight end as they would have.
    fn down(&mut self, i: usize, machine: bool) {
        self.nodes[i].engine = None;
        for r in self.nodes[i].real.iter_mut() {
            if let Some(p) = r.op.take() {
                r.running = if p.start { p.ok } else { !p.ok };
            }
            if machine {
                r.running = false;
            }
        }
        self.membership_changed();
    }

    fn handle(&mut self, i: usize, ev: Event) {
        let Some(e) = self.nodes[i].engine.as_mut() else { return };
        if self.trace {
            if let Event::Message { msg, .. } = &ev {
                let kind = msg.kind().unwrap_or("?");
                if !matches!(kind, "status" | "NS_ackmsg") {
                    let src = msg.get("src").unwrap_or("?");
                    println!("{:>7} n{} <- {src} {kind} {}", self.now, i + 1, describe(msg));
                }
            } else if !matches!(ev, Event::Tick | Event::PingReply { .. }) {
                println!("{:>7} n{} event {ev:?}", self.now, i + 1);
            }
        }
        let mut out = Vec::new();
        e.handle(Now::at(self.now), ev, &mut out);
        self.apply(i, out);
    }

    fn operator(&mut self, i: usize, cmd: OperatorCmd) {
        let Some(e) = self.nodes[i].engine.as_mut() else { return };
        if matches!(cmd, OperatorCmd::Cleanup(_)) {
            // `halo cleanup` vouches that a group whose stop failed is stopped: the operator
            // really cleaned it up by hand.
            let st = e.resource_status(Now::at(self.now));
            let states = st.groups.iter().map(|g| g.state).chain(st.clones.iter().map(|c| c.state));
            for (gi, state) in states.enumerate() {
                if state == "stop_failed" {
                    self.nodes[i].real[gi].running = false;
                }
            }
        }
        let e = self.nodes[i].engine.as_mut().expect("up");
        let mut out = Vec::new();
        let r = e.operator(Now::at(self.now), cmd.clone(), &mut out);
        self.say(Some(i), || format!("operator {cmd:?}: {r:?}"));
        self.apply(i, out);
    }

    fn apply(&mut self, from: usize, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(m) => self.send(from, &m),
                Action::Log(l, t) => self.say(Some(from), || format!("{l:?} {t}")),
                Action::StartGroup { key, reason } => {
                    self.say(Some(from), || format!("START {key} ({reason})"));
                    self.check_acquire(from, &key);
                    self.check_fenced(from, &key);
                    self.agent(from, &key, true);
                }
                Action::StopGroup { key, reason } => {
                    self.say(Some(from), || format!("STOP {key} ({reason})"));
                    self.agent(from, &key, false);
                }
                Action::Announce { key } => self.say(Some(from), || format!("announce {key}")),
                Action::Fence { node } => {
                    self.say(Some(from), || format!("FENCE {node}"));
                    let Some(target) = self.names.iter().position(|n| *n == node) else {
                        return self.fail(format!("n{} fences unknown node {node}", from + 1));
                    };
                    let fail_pct = if self.settle_phase { 0 } else { self.sc.fencing.unwrap_or(0) };
                    let ok = !self.rng.pct(fail_pct);
                    let (lo, hi) = self.sc.agent_ms;
                    let after = self.rng.range(lo, hi * 3);
                    self.fencing_in_flight[target] += 1;
                    let generation = self.nodes[from].generation;
                    self.push(self.now + after, Item::FenceDone { from, generation, target, ok });
                }
                Action::Exit => {
                    self.say(Some(from), || "** exits".into());
                    self.down(from, false);
                }
            }
        }
    }

    // ------------------------------------------------------------------ executor

    fn agent(&mut self, node: usize, key: &str, start: bool) {
        let Some(gi) = self.keys.iter().position(|k| k == key) else {
            return self.fail(format!("n{} acts on unknown group {key}", node + 1));
        };
        if self.nodes[node].real[gi].op.is_some() {
            return self.fail(format!("n{}: a second agent operation on {key} while one runs", node + 1));
        }
        let mode = if start { self.nodes[node].modes[gi].0 } else { self.nodes[node].modes[gi].1 };
        let (lo, hi) = self.sc.agent_ms;
        let (after, ok) = match mode {
            Mode::Ok => (self.rng.range(lo, hi), true),
            Mode::Fail => (self.rng.range(lo, hi), false),
            Mode::Hang => (self.sc.agent_timeout_ms, false),
        };
        self.token += 1;
        let token = self.token;
        self.nodes[node].real[gi].op = Some(Pending { start, ok, token });
        self.push(self.now + after, Item::AgentDone { node, group: gi, token });
    }

    fn agent_done(&mut self, node: usize, gi: usize, token: u64) {
        let r = &mut self.nodes[node].real[gi];
        let Some(p) = r.op.filter(|p| p.token == token) else { return };
        r.op = None;
        // A failed start leaves nothing behind (the executor stops what did start); a failed
        // or hung stop may leave the group running.
        r.running = if p.start { p.ok } else { !p.ok };
        let key = self.keys[gi].clone();
        let detail = if p.ok { String::new() } else { "agent failed".into() };
        let ev = if p.start {
            Event::GroupStarted { key, ok: p.ok, detail }
        } else {
            Event::GroupStopped { key, ok: p.ok, detail }
        };
        self.handle(node, ev);
    }

    // ------------------------------------------------------------------ network

    fn send(&mut self, from: usize, m: &halo_wire::Message) {
        self.stats.messages += 1;
        if self.trace {
            let kind = m.kind().unwrap_or("?");
            if !matches!(kind, "status" | "NS_ackmsg") {
                println!("{:>7} n{} -> {kind} {}", self.now, from + 1, describe(m));
            }
        }
        let bytes = halo_wire::encode(m, &self.keyring);
        let msg = match halo_wire::decode(&bytes, &self.keyring) {
            Ok(msg) => Rc::new(msg),
            Err(e) => return self.fail(format!("the codec rejected its own message: {e:?}")),
        };
        let recording = self.sc.replay_pct > 0 && !self.settle_phase;
        let mut reached = Vec::new();
        let (drop_pct, dup_pct, max_delay) = self.quality;
        for to in 0..self.nodes.len() {
            if to == from || self.blocked[from][to] {
                continue;
            }
            if self.rng.pct(drop_pct) {
                continue;
            }
            if recording && self.up(to) {
                reached.push((to, self.nodes[to].generation));
            }
            let copies = if self.rng.pct(dup_pct) { 2 } else { 1 };
            for _ in 0..copies {
                let at = self.now + self.rng.range(1, max_delay.max(1));
                self.push(at, Item::Deliver { to, msg: msg.clone() });
            }
        }
        if recording {
            self.replay(msg, reached);
        }
    }

    /// The attacker records some of what is sent and sends old packets again to nodes that
    /// received them, in the incarnation that did. A packet a node never got (cut off by a
    /// partition), or one from before the node's own restart (first contact: no generation
    /// known yet), is news to it: Heartbeat's protocol accepts it as such, and so does halo.
    /// Such a replay can fake a live peer for a deadtime; it is left out here.
    fn replay(&mut self, msg: Rc<halo_wire::Message>, reached: Vec<(usize, u64)>) {
        const RECORDED: usize = 64;
        if !reached.is_empty() {
            let r = Recorded { msg, reached };
            if self.recorded.len() < RECORDED {
                if self.replay_rng.pct(20) {
                    self.recorded.push(r);
                }
            } else if self.replay_rng.pct(5) {
                let i = self.replay_rng.below(RECORDED as u64) as usize;
                self.recorded[i] = r;
            }
        }
        if self.recorded.is_empty() || !self.replay_rng.pct(self.sc.replay_pct) {
            return;
        }
        let r = &self.recorded[self.replay_rng.below(self.recorded.len() as u64) as usize];
        let (to, generation) = r.reached[self.replay_rng.below(r.reached.len() as u64) as usize];
        if !self.up(to) || self.nodes[to].generation != generation {
            return;
        }
        let old = r.msg.clone();
        let at = self.now + self.replay_rng.range(1, 100);
        self.stats.replayed += 1;
        if self.trace {
            let kind = old.kind().unwrap_or("?");
            println!("{:>7} -- attacker replays to n{} at {at}: {kind} {}", self.now, to + 1, describe(&old));
        }
        self.push(at, Item::Deliver { to, msg: old });
    }

    fn process(&mut self, item: Item) {
        match item {
            Item::Deliver { to, msg } => {
                if !self.up(to) {
                    return;
                }
                let msg = Rc::try_unwrap(msg).unwrap_or_else(|shared| (*shared).clone());
                self.handle(to, Event::Message { link: 0, msg });
            }
            Item::AgentDone { node, group, token } => self.agent_done(node, group, token),
            Item::FenceDone { from, generation, target, ok } => {
                self.fencing_in_flight[target] -= 1;
                if ok {
                    // The device acts whether or not the requester still runs.
                    self.say(Some(target), || "** fenced: powered off".into());
                    self.down(target, true);
                }
                if self.up(from) && self.nodes[from].generation == generation {
                    let node = self.names[target].clone();
                    let detail = if ok { "sim: powered off" } else { "sim: device failed" }.to_string();
                    self.handle(from, Event::FenceDone { node, ok, detail });
                }
            }
            Item::Op(k) => {
                let op = self.sc.ops[k].1.clone();
                self.say(None, || format!("op {op:?}"));
                self.play(op);
            }
            Item::Settle => {
                self.say(None, || "settle: heal for good, restart, agents behave".into());
                self.settle_phase = true;
                for row in self.blocked.iter_mut() {
                    row.iter_mut().for_each(|b| *b = false);
                }
                self.quality = (0, 0, self.quality.2.min(5));
                self.ping_ok.iter_mut().for_each(|p| *p = true);
                for n in self.nodes.iter_mut() {
                    n.modes.iter_mut().for_each(|m| *m = (Mode::Ok, Mode::Ok));
                }
                self.membership_changed();
                for i in 0..self.nodes.len() {
                    if !self.up(i) {
                        self.boot(i);
                    }
                }
            }
            Item::Cleanup => {
                for i in 0..self.nodes.len() {
                    if !self.up(i) {
                        self.boot(i);
                    }
                }
                for i in 0..self.nodes.len() {
                    self.operator(i, OperatorCmd::Cleanup(None));
                }
            }
        }
    }

    fn play(&mut self, op: Op) {
        let n = self.nodes.len();
        match op {
            Op::Partition(sides) => {
                for a in 0..n {
                    for b in 0..n {
                        self.blocked[a][b] = sides[a] != sides[b];
                    }
                }
                self.membership_changed();
            }
            Op::OneWay { from, to } => {
                self.blocked[from][to] = true;
                self.membership_changed();
            }
            Op::Heal => {
                for row in self.blocked.iter_mut() {
                    row.iter_mut().for_each(|b| *b = false);
                }
                self.membership_changed();
            }
            Op::Quality { drop_pct, dup_pct, max_delay_ms } => {
                self.quality = (drop_pct, dup_pct, max_delay_ms)
            }
            Op::Ping { node, ok } => {
                self.ping_ok[node] = ok;
                self.membership_changed();
            }
            Op::CrashHalo(i) => {
                if self.up(i) {
                    self.down(i, false);
                }
            }
            Op::CrashMachine(i) => self.down(i, true),
            Op::Restart(i) => {
                if !self.up(i) {
                    self.boot(i);
                }
            }
            Op::Shutdown(i) => self.handle(i, Event::Shutdown),
            Op::Operator(i, cmd) => self.operator(i, cmd),
            Op::Agent { node, group, start, stop } => self.nodes[node].modes[group] = (start, stop),
            Op::MonitorFail { node, group } => {
                let key = self.sc.groups[group].key.clone();
                let runs =
                    self.nodes[node].engine.as_ref().is_some_and(|e| e.running_groups().contains(&key));
                let r = self.nodes[node].real[group];
                if runs && r.running && r.op.is_none() {
                    self.handle(node, Event::MonitorFailed { key, why: "not running".into() });
                }
            }
        }
    }

    // ------------------------------------------------------------------ invariants

    /// Whether messages from `j` reach `i` (ground truth).
    fn hears(&self, i: usize, j: usize) -> bool {
        self.up(j) && !self.blocked[j][i]
    }

    /// Whether node `i` may still count a vote for what it heard until `since`: a peer
    /// that fell silent counts for up to `grace`.
    fn recent(&self, since: Option<u64>, grace: u64) -> bool {
        since.is_none_or(|t| self.now <= t + grace)
    }

    /// The most votes node `i`'s view may count toward a start now (ground truth plus
    /// lag): a strict majority of the configured nodes it hears or heard lately, itself
    /// included; in a two-node cluster with a ping node, a lone node that reaches or lately
    /// reached it. "Lately" is the engine's freshness bound (`Scenario::fresh_ms`), not the
    /// time it takes to declare a peer dead: a start waits for quorum among fresh peers.
    fn may_have_quorum(&self, i: usize) -> bool {
        let n = self.nodes.len();
        let det = self.sc.fresh_ms();
        let votes = 1 + (0..n).filter(|j| *j != i && self.recent(self.lost[i][*j], det)).count();
        let ping_grace = self.sc.deadping_ms + PING_EVERY_MS + self.sc.keepalive_ms;
        if n == 2 && self.sc.ping {
            votes == 2 || self.recent(self.ping_lost[i], ping_grace)
        } else {
            votes * 2 > n
        }
    }

    fn membership_changed(&mut self) {
        self.last_change = self.now;
        let n = self.nodes.len();
        for i in 0..n {
            for j in 0..n {
                if i == j {
                    continue;
                }
                if self.up(i) && self.hears(i, j) {
                    self.lost[i][j] = None;
                } else if self.lost[i][j].is_none() {
                    self.lost[i][j] = Some(self.now);
                }
            }
            if self.ping_ok[i] {
                self.ping_lost[i] = None;
            } else if self.ping_lost[i].is_none() {
                self.ping_lost[i] = Some(self.now);
            }
        }
    }

    /// Invariant (a): with a quorum policy, a node never starts a group while its view
    /// cannot hold quorum — what it hears, plus what fell silent less than a detection
    /// time ago, is no majority.
    fn check_acquire(&mut self, i: usize, key: &str) {
        if self.sc.policy == NoQuorumPolicy::Ignore {
            return;
        }
        if !self.may_have_quorum(i) {
            self.fail(format!("(a) n{} acquired {key} without quorum", i + 1));
        }
    }

    /// Invariant (d): with fencing, a node never starts a group that still runs (or may run:
    /// an agent in flight) on a node it holds dead, unless that node is being fenced (between
    /// the fence request and the fence landing). Two holders that hear each other are
    /// placement's business, bounded by (b); a death verdict is fencing's.
    fn check_fenced(&mut self, i: usize, key: &str) {
        if self.sc.fencing.is_none() {
            return;
        }
        let Some(gi) = self.sc.groups.iter().position(|g| g.key == key) else { return };
        let Some(e) = &self.nodes[i].engine else { return };
        for j in 0..self.nodes.len() {
            if j == i || !self.nodes[j].real[gi].active() || self.fencing_in_flight[j] > 0 {
                continue;
            }
            if e.node_state(&self.names[j]) == Some(NodeState::Dead) {
                return self.fail(format!(
                    "(d) n{} starts {key} while n{}, which it holds dead and which is not being fenced, runs it",
                    i + 1,
                    j + 1
                ));
            }
        }
    }

    /// A holding that no invariant can hold against halo without fencing: the node's halo is
    /// down (an orphan a kill -9 left), or its stop failed. With fencing, only a node that is
    /// being fenced (between a fence request and the fence landing) is excused.
    fn excused(&self, i: usize, gi: usize) -> bool {
        if self.sc.fencing.is_some() {
            return self.fencing_in_flight[i] > 0;
        }
        match &self.nodes[i].engine {
            None => true,
            Some(e) => e.group_state(&self.sc.groups[gi].key) == Some(GroupState::StopFailed),
        }
    }

    /// Whether every node's view matches the ground truth: no cut or one-way loss, every
    /// live node sees every other live node active and every down node dead.
    fn agreed(&self) -> bool {
        let n = self.nodes.len();
        for i in 0..n {
            let Some(e) = &self.nodes[i].engine else { continue };
            if !e.comm_up() {
                return false;
            }
            for j in 0..n {
                if i == j {
                    continue;
                }
                if self.up(j) && self.blocked[j][i] {
                    return false;
                }
                let want = if self.up(j) { NodeState::Active } else { NodeState::Dead };
                if e.node_state(&self.names[j]) != Some(want) {
                    return false;
                }
            }
        }
        true
    }

    fn check(&mut self) {
        let g = self.sc.groups.len();
        let n = self.nodes.len();
        // (b) no group on two nodes for longer than the handover bound while they agree.
        if self.agreed() {
            self.agreed_since.get_or_insert(self.now);
        } else {
            self.agreed_since = None;
        }
        let open_at = self.agreed_since.map(|a| a.max(self.last_change + self.sc.deadtime_ms));
        for gi in 0..g {
            let holders: Vec<usize> =
                (0..n).filter(|i| self.nodes[*i].real[gi].active() && !self.excused(*i, gi)).collect();
            if self.sc.fencing.is_some() && holders.len() > 1 {
                if self.trace && self.fenced_double_since[gi].is_none() {
                    let who: Vec<usize> = holders.iter().map(|i| i + 1).collect();
                    println!(
                        "{:>8} !! {} on {who:?} outside a fence window",
                        self.now, self.sc.groups[gi].key
                    );
                }
                let since = *self.fenced_double_since[gi].get_or_insert(self.now);
                self.stats.max_fenced_double_ms = self.stats.max_fenced_double_ms.max(self.now - since);
                let key = self.sc.groups[gi].key.clone();
                self.fail(format!(
                    "(e) with fencing, {key} is active on {:?}, none of them being fenced",
                    holders.iter().map(|i| i + 1).collect::<Vec<_>>()
                ));
            } else {
                self.fenced_double_since[gi] = None;
            }
            match open_at {
                Some(open) if self.now >= open && holders.len() > 1 => {
                    let since = *self.double_since[gi].get_or_insert(self.now);
                    let d = self.now - since;
                    self.stats.max_double_ms = self.stats.max_double_ms.max(d);
                    if d > self.sc.handover_ms() {
                        let key = self.sc.groups[gi].key.clone();
                        self.fail(format!(
                            "(b) {key} runs on {:?} for {d} ms while the nodes agree on membership (bound {} ms)",
                            holders.iter().map(|i| i + 1).collect::<Vec<_>>(),
                            self.sc.handover_ms()
                        ));
                    }
                }
                _ => self.double_since[gi] = None,
            }
        }
        // (c) after the heal and the clean-up, every group runs on exactly one node.
        if self.settle_phase && self.now >= self.sc.cleanup_at() {
            let ok = (0..g).all(|gi| self.settled(gi));
            if ok {
                self.settled_since.get_or_insert(self.now);
            } else {
                self.settled_since = None;
                if self.now > self.sc.cleanup_at() + self.sc.settle_ms() {
                    let gi = (0..g).find(|gi| !self.settled(*gi)).expect("one is not settled");
                    let key = self.sc.groups[gi].key.clone();
                    let holders: Vec<String> = (0..n)
                        .filter(|i| self.nodes[*i].real[gi].active())
                        .map(|i| format!("n{}", i + 1))
                        .collect();
                    self.fail(format!(
                        "(c) {key} does not run on exactly one node {} ms after the clean-up (active on {holders:?})",
                        self.sc.settle_ms()
                    ));
                }
            }
        }
    }

    /// The group runs, finished, on exactly one node and nowhere else — or nowhere when
    /// every live node is in standby for it.
    fn settled(&self, gi: usize) -> bool {
        let n = self.nodes.len();
        let active = (0..n).filter(|i| self.nodes[*i].real[gi].active()).count();
        let running = (0..n)
            .filter(|i| {
                let r = self.nodes[*i].real[gi];
                r.running && r.op.is_none() && self.up(*i)
            })
            .count();
        match self.expected(gi, 0) {
            Some(true) => active == 1 && running == 1,
            Some(false) => active == 0,
            // What it is ordered after may run nowhere: it never starts then, but one that
            // started while that ran keeps running (order binds starts across nodes).
            None => active == running && running <= 1,
        }
    }

    /// Whether group `gi` is to run somewhere once settled: some live node is not in
    /// standby for it, and what it is ordered after may run there (a clone). None: a group
    /// it is ordered after may run nowhere (standby everywhere for that one).
    fn expected(&self, gi: usize, depth: usize) -> Option<bool> {
        let g = &self.sc.groups[gi];
        let n = self.nodes.len();
        let firsts_ok = depth < 8
            && self.sc.order.iter().filter(|o| o.then == g.key).all(|o| {
                match self.sc.groups.iter().position(|f| f.key == o.first) {
                    Some(fi) => self.expected(fi, depth + 1) == Some(true),
                    None => true,
                }
            });
        let mut expected = false;
        for i in 0..n {
            if let Some(e) = &self.nodes[i].engine {
                // A group ordered after a clone runs only where the clone may run.
                let clone_ok = self.sc.order.iter().filter(|o| o.then == g.key).all(|o| {
                    self.sc
                        .clones
                        .iter()
                        .filter(|c| c.name == o.first)
                        .all(|c| c.nodes.is_empty() || c.nodes.contains(&self.names[i]))
                });
                if !e.standby().covers(&self.names[i], &g.node) && clone_ok {
                    expected = true;
                }
            }
        }
        match (expected, firsts_ok) {
            (false, _) => Some(false),
            (true, true) => Some(true),
            (true, false) => None,
        }
    }
}

fn describe(m: &halo_wire::Message) -> String {
    m.fields()
        .iter()
        .filter(|f| {
            !matches!(
                f.name.as_str(),
                "t" | "src" | "srcuuid" | "destuuid" | "hg" | "ts" | "ttl" | "ld" | "auth"
            )
        })
        .map(|f| format!("{}={}", f.name, String::from_utf8_lossy(&f.value)))
        .collect::<Vec<_>>()
        .join(" ")
}
