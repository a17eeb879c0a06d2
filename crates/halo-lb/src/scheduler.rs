//! The IPVS schedulers, as pure and deterministic Rust.
//!
//! Each scheduler takes the decisions the kernel module of the same name takes
//! (`net/netfilter/ipvs/ip_vs_<name>.c`): the same formulas, the same tie-breaking, the same
//! walk order and the same state carried from one connection to the next. They were written
//! from the kernel's algorithms, not translated from its code, and they have not been compared
//! with a live kernel (the machines halo is built on have no IPVS); the tests pin the
//! behaviour each module documents.
//!
//! # The model
//!
//! * A virtual service's real servers are a slice of [`Dest`], in the order the kernel keeps
//!   its destination list; the slice order is what round-robin walks and what the hash tables
//!   are filled from. A destination is named by its [`Dest::id`], which must be unique in the
//!   slice and stable while it stays in the service.
//! * A connection to schedule is a [`Conn`]: client address, the address it was sent to, and
//!   the current time in milliseconds. Nothing here reads a clock.
//! * [`Scheduler::schedule`] returns the id of the chosen destination, or `None` when no
//!   destination can take the connection (the kernel then drops it or, for a cache cluster,
//!   bypasses the cache).
//!
//! The rules every scheduler shares, as in IPVS:
//! * a destination with weight 0 is *quiescent*: it keeps the connections it has but is never
//!   chosen for a new one;
//! * a destination whose `overloaded` flag is set (its upper connection threshold `-x` was
//!   reached and it has not yet fallen below the lower one) is never chosen either;
//! * the "overhead" of a destination is `active * 256 + inactive`
//!   (`ip_vs_dest_conn_overhead`); weighted comparisons are done by cross-multiplication in
//!   128-bit integers, never by division, so nothing rounds and nothing overflows.
//!
//! # State and destination changes
//!
//! The kernel tells a scheduler when a destination is added, removed or re-weighted. Here the
//! caller passes the whole slice on every call instead; a scheduler that keeps state derived
//! from the destination list (wrr's current weight, the sh/dh/mh lookup tables) notices when
//! the list or the weights it depends on changed and rebuilds exactly as the kernel's
//! `add_dest`/`del_dest`/`upd_dest` would. [`Scheduler::update`] does that rebuild ahead of
//! time, so that the first connection after a change does not pay for it.
//!
//! # Where halo deliberately differs
//!
//! * `mh` hashes with halo's own 64-bit mixer instead of the kernel's `hsiphash` with its
//!   fixed keys, and hashes the whole client and real-server address (the kernel folds an IPv6
//!   address to 32 bits and adds the port to it). The table size (4093), the permutation, the
//!   weight-to-turns rule and the fallback walk are the kernel's; which real server a given
//!   client lands on is not the kernel's. `sh` and `dh` use the kernel's `hash_32` and bucket
//!   filling, so that with the same destination order and weights a client hashes to the
//!   same real server as under the kernel.
//! * `mh` with `mh-fallback`: when the kernel's fallback walk finds only unavailable
//!   destinations (it samples the table, so it can miss a destination that holds few slots),
//!   halo finishes with a linear scan of the table, so that a connection is never refused while
//!   a destination could take it.
//! * `lblc` re-checks the `overloaded` flag of the destination it remembers; the kernel's
//!   `lblc` trusts its cache entry even when that destination reached its upper threshold.
//! * `lblc`/`lblcr` forget an entry as soon as it has been idle for the expiration time
//!   (the kernel's garbage collector runs every 30 minutes and would let it live until then),
//!   and their tables are capped ([`Lblc::with_max_entries`]).
//! * [`Persistence`] by default treats a quiescent destination as gone for persistent
//!   clients, the behaviour the kernel gives with `net.ipv4.vs.expire_quiescent_template = 1`
//!   (see [`Persistence::keep_quiescent`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// One real server of a virtual service, as the schedulers see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Dest {
    /// The caller's name for this destination; what [`Scheduler::schedule`] returns. Unique in
    /// a slice and stable while the destination stays in the service.
    pub id: usize,
    /// The real server's address and port. Only `mh` uses it: each real server's preferred
    /// slots in the Maglev table come from a hash of its address, so they depend on the server
    /// itself, not on the caller's ids.
    pub addr: SocketAddr,
    /// IPVS weight (ipvsadm `-w`, 0..=2147483647; ldirectord's `real=… weight`). 0 means
    /// quiescent.
    pub weight: u32,
    /// Active connections (`ActiveConn`: TCP established, SCTP up).
    pub active: u32,
    /// Inactive connections (`InActConn`: every other state, UDP included).
    pub inactive: u32,
    /// The upper connection threshold was reached (`IP_VS_DEST_F_OVERLOAD`).
    pub overloaded: bool,
}

impl Dest {
    /// A destination with no connections and no overload.
    pub fn new(id: usize, addr: SocketAddr, weight: u32) -> Dest {
        Dest { id, addr, weight, active: 0, inactive: 0, overloaded: false }
    }

    /// Whether this destination may be given a new connection: weight > 0 and not overloaded.
    pub fn available(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }

    /// IPVS's connection overhead: `active * 256 + inactive` (an active connection is
    /// reckoned 256 times as costly as an inactive one).
    pub fn overhead(&self) -> u64 {
        (u64::from(self.active) << 8) + u64::from(self.inactive)
    }
}

/// A new connection to schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conn {
    /// The client's address and port (`sh` and `mh` hash it; [`Persistence`] keys on it).
    pub src: SocketAddr,
    /// The address the packet was sent to. For a service on a VIP this is the VIP; for a
    /// firewall-mark service in front of a cache cluster it is the origin server the client
    /// wanted, which is what `dh`, `lblc` and `lblcr` key on.
    pub dst: SocketAddr,
    /// The current time, in milliseconds on any monotonic clock (`lblc`, `lblcr` and
    /// [`Persistence`] use it).
    pub now_ms: u64,
}

impl Conn {
    /// A connection from `src` to `dst` at `now_ms`.
    pub fn new(src: SocketAddr, dst: SocketAddr, now_ms: u64) -> Conn {
        Conn { src, dst, now_ms }
    }
}

/// A connection scheduler for one virtual service.
///
/// Implementations are deterministic: the same sequence of calls with the same arguments
/// gives the same answers. They never block, never read the time and never panic, whatever
/// the slice holds (empty, all quiescent, huge weights or counters).
pub trait Scheduler: Send + fmt::Debug {
    /// The name ipvsadm uses (`rr`, `wrr`, ...).
    fn name(&self) -> &'static str;

    /// Chooses the destination for a new connection and returns its [`Dest::id`], or `None`
    /// when no destination may take it.
    fn schedule(&mut self, dests: &[Dest], conn: &Conn) -> Option<usize>;

    /// Tells the scheduler the destination list changed (added, removed, re-weighted), so that
    /// it rebuilds its tables now rather than at the next [`schedule`](Scheduler::schedule).
    /// Calling it is optional: `schedule` notices changes by itself.
    fn update(&mut self, dests: &[Dest]) {
        let _ = dests;
    }
}

/// Every scheduler name [`by_name`] accepts, in the order of ipvsadm's manual.
pub const SCHEDULERS: &[&str] =
    &["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"];

/// Why [`by_name`] refused a scheduler name or flag.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SchedulerError {
    /// Not one of [`SCHEDULERS`].
    #[error("unknown scheduler {name:?}; expected one of: rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh")]
    UnknownScheduler {
        /// The name given.
        name: String,
    },
    /// A flag named after another scheduler (`sh-port` on `wrr`, say), which ipvsadm refuses.
    #[error("scheduler flag {flag:?} applies to the {applies_to} scheduler, not to {scheduler}")]
    IncompatibleFlag {
        /// The flag given.
        flag: String,
        /// The scheduler it was given for.
        scheduler: &'static str,
        /// The scheduler it belongs to.
        applies_to: &'static str,
    },
    /// Not a scheduler flag at all.
    #[error(
        "unknown scheduler flag {flag:?}; expected sh-fallback, sh-port (sh), mh-fallback, \
         mh-port (mh) or flag-1, flag-2, flag-3"
    )]
    UnknownFlag {
        /// The flag given.
        flag: String,
    },
}

/// Builds the scheduler ipvsadm calls `name`, with its scheduler flags (ipvsadm `-b`,
/// ldirectord `schedflags`).
///
/// Each element of `flags` may itself be a comma-separated list, as ipvsadm takes it. The
/// named flags are `sh-fallback` and `sh-port` (for `sh`), `mh-fallback` and `mh-port` (for
/// `mh`); the generic `flag-1`, `flag-2`, `flag-3` are the kernel's three scheduler bits and
/// are accepted for every scheduler (`flag-1` is the fallback and `flag-2` the port flag of
/// `sh` and `mh`; the others ignore them, as the kernel does).
pub fn by_name(name: &str, flags: &[&str]) -> Result<Box<dyn Scheduler>, SchedulerError> {
    let Some(&sched) = SCHEDULERS.iter().find(|&&s| s == name) else {
        return Err(SchedulerError::UnknownScheduler { name: name.to_string() });
    };
    let (mut flag1, mut flag2) = (false, false);
    for flag in flags.iter().flat_map(|f| f.split(',')).map(str::trim).filter(|f| !f.is_empty()) {
        match flag {
            "flag-1" => flag1 = true,
            "flag-2" => flag2 = true,
            "flag-3" => {}
            "sh-fallback" | "sh-port" | "mh-fallback" | "mh-port" => {
                let applies_to = if flag.starts_with("sh") { "sh" } else { "mh" };
                if applies_to != sched {
                    return Err(SchedulerError::IncompatibleFlag {
                        flag: flag.to_string(),
                        scheduler: sched,
                        applies_to,
                    });
                }
                if flag.ends_with("fallback") {
                    flag1 = true;
                } else {
                    flag2 = true;
                }
            }
            _ => return Err(SchedulerError::UnknownFlag { flag: flag.to_string() }),
        }
    }
    Ok(match sched {
        "rr" => Box::new(RoundRobin::new()),
        "wrr" => Box::new(WeightedRoundRobin::new()),
        "lc" => Box::new(LeastConnection),
        "wlc" => Box::new(WeightedLeastConnection),
        "lblc" => Box::new(Lblc::new()),
        "lblcr" => Box::new(Lblcr::new()),
        "dh" => Box::new(DestinationHash::new()),
        "sh" => Box::new(SourceHash::new(flag1, flag2)),
        "sed" => Box::new(ShortestExpectedDelay),
        "nq" => Box::new(NeverQueue),
        "fo" => Box::new(WeightedFailover),
        "ovf" => Box::new(WeightedOverflow),
        _ => Box::new(Maglev::new(flag1, flag2)),
    })
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// Whether a destination with overhead `doh` and weight `dw` is strictly less loaded than the
/// current choice (`loh`, `lw`): `loh/lw > doh/dw`, compared as `loh*dw > doh*lw` the way the
/// kernel does it, so that a weight-0 destination can never win and ties keep the earlier one.
fn less_loaded(loh: u64, lw: u32, doh: u64, dw: u32) -> bool {
    u128::from(loh) * u128::from(dw) > u128::from(doh) * u128::from(lw)
}

/// The available destination with the least `overhead / weight`; on a tie, the first in list
/// order. This is `wlc`, and the fresh choice of `lblc` and `lblcr`.
fn weighted_least(dests: &[Dest], overhead: fn(&Dest) -> u64) -> Option<usize> {
    let mut least: Option<usize> = None;
    for (i, d) in dests.iter().enumerate() {
        if !d.available() {
            continue;
        }
        least = match least {
            Some(l) if !less_loaded(overhead(&dests[l]), dests[l].weight, overhead(d), d.weight) => Some(l),
            _ => Some(i),
        };
    }
    least
}

/// SED's and NQ's expected delay numerator: active connections plus the new one.
fn expected_delay_overhead(d: &Dest) -> u64 {
    u64::from(d.active) + 1
}

fn position(dests: &[Dest], id: usize) -> Option<usize> {
    dests.iter().position(|d| d.id == id)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The kernel's `hash_32`: multiplicative hashing by the 32-bit golden ratio, top `bits` bits.
fn hash_32(val: u32, bits: u32) -> u32 {
    val.wrapping_mul(0x61C8_8647) >> (32 - bits)
}

/// An address folded to 32 bits as IPVS folds it: IPv4 as is, IPv6 as the XOR of its four
/// 32-bit words.
fn addr_fold(ip: IpAddr) -> u32 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            (0..4).fold(0, |acc, i| {
                acc ^ u32::from_be_bytes([o[4 * i], o[4 * i + 1], o[4 * i + 2], o[4 * i + 3]])
            })
        }
    }
}

/// Whether `sig` (what a table was built from) still describes `dests`.
fn same_list(sig: &[(usize, u32)], dests: &[Dest], weight: fn(&Dest) -> u32) -> bool {
    sig.len() == dests.len() && sig.iter().zip(dests).all(|(&(id, w), d)| id == d.id && w == weight(d))
}

fn list_sig(dests: &[Dest], weight: fn(&Dest) -> u32) -> Vec<(usize, u32)> {
    dests.iter().map(|d| (d.id, weight(d))).collect()
}

/// The locality schedulers' overload rule (`is_overloaded` in `ip_vs_lblc.c`): the remembered
/// destination has more active connections than its weight while some destination of the
/// service is below half of its own weight.
fn locality_overloaded(d: &Dest, dests: &[Dest]) -> bool {
    u64::from(d.active) > u64::from(d.weight)
        && dests.iter().any(|x| u64::from(x.active) * 2 < u64::from(x.weight))
}

/// A lookup table of destination positions, printed as a summary rather than 4093 entries.
#[derive(Clone, Default, PartialEq, Eq)]
struct Table(Vec<Option<usize>>);

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let filled = self.0.iter().filter(|b| b.is_some()).count();
        write!(f, "Table({} buckets, {} filled)", self.0.len(), filled)
    }
}

// ---------------------------------------------------------------------------------------------
// rr

/// `rr`, round robin: the next available destination after the one chosen last, in list order.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    /// The id and position of the destination chosen last.
    last: Option<(usize, usize)>,
}

impl RoundRobin {
    /// A round robin that starts at the head of the list.
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Scheduler for RoundRobin {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn schedule(&mut self, dests: &[Dest], _conn: &Conn) -> Option<usize> {
        let n = dests.len();
        let start = match self.last {
            None => 0,
            Some((id, pos)) => match dests.get(pos) {
                Some(d) if d.id == id => pos + 1,
                // The list changed: continue after the last one if it is still there; if it
                // was removed, its successor now sits at its position, as in ip_vs_rr_del_dest.
                _ => position(dests, id).map_or(pos, |p| p + 1),
            },
        };
        (0..n).map(|k| (start + k) % n.max(1)).find(|&i| dests[i].available()).map(|i| {
            self.last = Some((dests[i].id, i));
            dests[i].id
        })
    }
}

// ---------------------------------------------------------------------------------------------
// wrr

/// `wrr`, weighted round robin (ldirectord's default): passes over the list with a current
/// weight `cw` that starts at the highest weight and steps down by the gcd of the weights; a
/// pass picks, in list order, every destination whose weight is at least `cw`. Weights 4:3:2
/// give `A A B A B C A B C`.
#[derive(Clone, Debug, Default)]
pub struct WeightedRoundRobin {
    /// The (id, weight) list the marks were computed from; `None` before the first call.
    sig: Option<Vec<(usize, u32)>>,
    /// Position of the destination chosen last; `None` is the list head.
    cl: Option<usize>,
    /// Current weight.
    cw: i64,
    /// Highest weight, lowered by `di - 1` so that the last pass is at `cw = 1`.
    mw: i64,
    /// The step: gcd of the positive weights.
    di: i64,
}

impl WeightedRoundRobin {
    /// A weighted round robin that starts at the head of the list.
    pub fn new() -> WeightedRoundRobin {
        WeightedRoundRobin::default()
    }

    fn sync(&mut self, dests: &[Dest]) {
        if self.sig.as_deref().is_some_and(|sig| same_list(sig, dests, |d| d.weight)) {
            return;
        }
        let g = dests.iter().filter(|d| d.weight > 0).fold(0, |g, d| gcd(g, u64::from(d.weight)));
        let di = if g == 0 { 1 } else { g as i64 };
        let max = dests.iter().map(|d| i64::from(d.weight)).max().unwrap_or(0);
        self.mw = max - (di - 1);
        if self.sig.is_none() || self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if di > 1 {
            // Back onto the new grid of weights, as ip_vs_wrr_dest_changed does.
            self.cw = (self.cw / di) * di + 1;
        }
        self.di = di;
        self.cl = None;
        self.sig = Some(list_sig(dests, |d| d.weight));
    }
}

impl Scheduler for WeightedRoundRobin {
    fn name(&self) -> &'static str {
        "wrr"
    }

    fn update(&mut self, dests: &[Dest]) {
        self.sync(dests);
    }

    fn schedule(&mut self, dests: &[Dest], _conn: &Conn) -> Option<usize> {
        self.sync(dests);
        if self.mw <= 0 {
            return None;
        }
        let di = self.di;
        // The highest weight a pass can pick; passes above it find nothing and are skipped
        // arithmetically below instead of walked (the kernel walks them: with weights like
        // 1000000 and 1 that is a million empty passes).
        let reachable =
            dests.iter().filter(|d| d.available()).map(|d| i64::from(d.weight)).max().unwrap_or(0);
        let last = self.cl;
        let mut pos = self.cl;
        let mut stop: Option<usize> = None;
        let (mut last_pass, mut restarted) = (false, false);
        loop {
            for (i, d) in dests.iter().enumerate().skip(pos.map_or(0, |p| p + 1)) {
                if !d.overloaded && i64::from(d.weight) >= self.cw {
                    self.cl = Some(i);
                    return Some(d.id);
                }
                if stop == Some(i) {
                    self.cl = Some(i);
                    return None;
                }
            }
            pos = None;
            if stop.is_none() {
                // The next k whole passes (cw - di, ..., cw - k*di) all stay above both what
                // any destination can match and the last-pass threshold: nothing changes in
                // them but cw.
                let floor = reachable.max(di);
                if self.cw > floor {
                    self.cw -= (self.cw - floor - 1) / di * di;
                }
            }
            self.cw -= di;
            if self.cw <= 0 {
                self.cw = self.mw;
                // Every destination was tried at weight >= 1 (either this was the last pass,
                // or the first traversal started at the head): nothing is available.
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= di;
            if last_pass && restarted && last.is_some() {
                // The first traversal checked weight >= 1 only after `last`; finish with the
                // destinations up to `last`.
                stop = last;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// lc, wlc, sed, nq

/// `lc`, least connection: the available destination with the smallest overhead
/// (`active * 256 + inactive`), weights aside; on a tie, the first in list order.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeastConnection;

impl Scheduler for LeastConnection {
    fn name(&self) -> &'static str {
        "lc"
    }

    fn schedule(&mut self, dests: &[Dest], _conn: &Conn) -> Option<usize> {
        let mut least: Option<&Dest> = None;
        for d in dests.iter().filter(|d| d.available()) {
            if least.is_none_or(|l| d.overhead() < l.overhead()) {
                least = Some(d);
            }
        }
        least.map(|d| d.id)
    }
}

/// `wlc`, weighted least connection (ipvsadm's default): the available destination with the
/// smallest `overhead / weight`; on a tie, the first in list order.
#[derive(Clone, Copy, Debug, Default)]
pub struct WeightedLeastConnection;

impl Scheduler for WeightedLeastConnection {
    fn name(&self) -> &'static str {
        "wlc"
    }

    fn schedule(&mut self, dests: &[Dest], _conn: &Conn) -> Option<usize> {
        weighted_least(dests, Dest::overhead).map(|i| dests[i].id)
    }
}

/// `sed`, shortest expected delay: the available destination with the smallest
/// `(active + 1) / weight` (inactive connections do not count); on a tie, the first.
#[derive(Clone, Copy, Debug, Default)]
pub struct ShortestExpectedDelay;

impl Scheduler for ShortestExpectedDelay {
    fn name(&self) -> &'static str {
        "sed"
    }

    fn schedule(&mut self, dests: &[Dest], _conn: &Conn) -> Option<usize> {
        weighted_least(dests, expected_delay_overhead).map(|i| dests[i].id)
    }
}

/// `nq`, never queue: the first available destination with no active connection, whatever
/// its weight; if every one is busy, `sed`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverQueue;

impl Scheduler for NeverQueue {
    fn name(&self) -> &'static str {
        "nq"
    }

    fn schedule(&mut self, dests: &[Dest], _conn: &Conn) -> Option<usize> {
        if let Some(idle) = dests.iter().find(|d| d.available() && d.active == 0) {
            return Some(idle.id);
        }
        weighted_least(dests, expected_delay_overhead).map(|i| dests[i].id)
    }
}

// ---------------------------------------------------------------------------------------------
// fo, ovf

/// `fo`, weighted failover: the available destination with the highest weight; on a tie,
/// the first in list order.
#[derive(Clone, Copy, Debug, Default)]
pub struct WeightedFailover;

impl Scheduler for WeightedFailover {
    fn name(&self) -> &'static str {
        "fo"
    }

    fn schedule(&mut self, dests: &[Dest], _conn: &Conn) -> Option<usize> {
        let mut best: Option<&Dest> = None;
        for d in dests.iter().filter(|d| d.available()) {
            if best.is_none_or(|b| d.weight > b.weight) {
                best = Some(d);
            }
        }
        best.map(|d| d.id)
    }
}

/// `ovf`, weighted overflow: the highest-weight available destination whose active
/// connections do not exceed its weight; when it fills up, the next highest takes the
/// overflow. `None` when every destination is full. Only active connections count, so it
/// suits TCP better than UDP.
#[derive(Clone, Copy, Debug, Default)]
pub struct WeightedOverflow;

impl Scheduler for WeightedOverflow {
    fn name(&self) -> &'static str {
        "ovf"
    }

    fn schedule(&mut self, dests: &[Dest], _conn: &Conn) -> Option<usize> {
        let mut best: Option<&Dest> = None;
        for d in dests.iter().filter(|d| d.available() && d.active <= d.weight) {
            if best.is_none_or(|b| d.weight > b.weight) {
                best = Some(d);
            }
        }
        best.map(|d| d.id)
    }
}

// ---------------------------------------------------------------------------------------------
// sh, dh

/// Buckets in the `sh` and `dh` tables (`CONFIG_IP_VS_SH_TAB_BITS`/`DH_TAB_BITS` = 8).
pub const HASH_TABLE_BITS: u32 = 8;
const HASH_TABLE_SIZE: usize = 1 << HASH_TABLE_BITS;
const HASH_TABLE_MASK: u32 = (1 << HASH_TABLE_BITS) - 1;

/// Fills the 256 buckets from the list in order, `weight` consecutive buckets per destination
/// (at least one, even at weight 0) when `weighted`, one each otherwise, wrapping around the
/// list until the table is full.
fn fill_buckets(dests: &[Dest], weighted: bool) -> Table {
    let mut buckets = vec![None; HASH_TABLE_SIZE];
    if dests.is_empty() {
        return Table(buckets);
    }
    let (mut p, mut count) = (0usize, 0u64);
    for bucket in buckets.iter_mut() {
        *bucket = Some(p);
        count += 1;
        if !weighted || count >= u64::from(dests[p].weight) {
            p = (p + 1) % dests.len();
            count = 0;
        }
    }
    Table(buckets)
}

fn sh_hashkey(ip: IpAddr, port: u16, offset: u32) -> usize {
    let h = hash_32(u32::from(port).wrapping_add(addr_fold(ip)), HASH_TABLE_BITS);
    (offset.wrapping_add(h) & HASH_TABLE_MASK) as usize
}

/// `sh`, source hashing: a static 256-bucket table maps a hash of the client address (and
/// port, with `sh-port`) to a destination; a destination holds as many consecutive buckets as
/// its weight. Without `sh-fallback` an unavailable destination means `None`; with it, the
/// buckets are walked from the client's own until an available destination is found.
///
/// Weights are bucket counts, so they should stay small: as in the kernel, weights adding up
/// to more than 256 leave the destinations at the end of the list without a bucket (and a
/// weight of 256 or more on the first one gives it every client).
#[derive(Clone, Debug)]
pub struct SourceHash {
    fallback: bool,
    port: bool,
    sig: Option<Vec<(usize, u32)>>,
    buckets: Table,
}

impl SourceHash {
    /// `sh` with the `sh-fallback` and `sh-port` flags as given.
    pub fn new(fallback: bool, port: bool) -> SourceHash {
        SourceHash { fallback, port, sig: None, buckets: Table::default() }
    }

    fn sync(&mut self, dests: &[Dest]) {
        if !self.sig.as_deref().is_some_and(|sig| same_list(sig, dests, |d| d.weight)) {
            self.buckets = fill_buckets(dests, true);
            self.sig = Some(list_sig(dests, |d| d.weight));
        }
    }
}

impl Scheduler for SourceHash {
    fn name(&self) -> &'static str {
        "sh"
    }

    fn update(&mut self, dests: &[Dest]) {
        self.sync(dests);
    }

    fn schedule(&mut self, dests: &[Dest], conn: &Conn) -> Option<usize> {
        self.sync(dests);
        let ip = conn.src.ip();
        let port = if self.port { conn.src.port() } else { 0 };
        let ihash = sh_hashkey(ip, port, 0);
        let first = self.buckets.0[ihash]?;
        if dests[first].available() {
            return Some(dests[first].id);
        }
        if !self.fallback {
            return None;
        }
        for offset in 0..HASH_TABLE_SIZE {
            let roffset = ((offset + ihash) % HASH_TABLE_SIZE) as u32;
            let p = self.buckets.0[sh_hashkey(ip, port, roffset)]?;
            if dests[p].available() {
                return Some(dests[p].id);
            }
        }
        None
    }
}

/// `dh`, destination hashing: a static 256-bucket table, one bucket per destination in turn
/// (weights play no part), maps a hash of the connection's destination address to a
/// destination; `None` when that destination is unavailable. Meant for cache clusters, where
/// the destination address is the origin server the client asked for.
#[derive(Clone, Debug, Default)]
pub struct DestinationHash {
    sig: Option<Vec<(usize, u32)>>,
    buckets: Table,
}

impl DestinationHash {
    /// A `dh` scheduler.
    pub fn new() -> DestinationHash {
        DestinationHash::default()
    }

    fn sync(&mut self, dests: &[Dest]) {
        // The kernel refills on add and delete only; a weight change keeps the table.
        if !self.sig.as_deref().is_some_and(|sig| same_list(sig, dests, |_| 0)) {
            self.buckets = fill_buckets(dests, false);
            self.sig = Some(list_sig(dests, |_| 0));
        }
    }
}

impl Scheduler for DestinationHash {
    fn name(&self) -> &'static str {
        "dh"
    }

    fn update(&mut self, dests: &[Dest]) {
        self.sync(dests);
    }

    fn schedule(&mut self, dests: &[Dest], conn: &Conn) -> Option<usize> {
        self.sync(dests);
        let bucket = hash_32(addr_fold(conn.dst.ip()), HASH_TABLE_BITS) as usize;
        let p = self.buckets.0[bucket]?;
        dests[p].available().then_some(dests[p].id)
    }
}

// ---------------------------------------------------------------------------------------------
// mh

/// Slots in the Maglev lookup table: the kernel's default (`CONFIG_IP_VS_MH_TAB_INDEX` = 12,
/// the fifth of its primes 251, 509, 1021, 2039, 4093, ...).
pub const MAGLEV_TABLE_SIZE: usize = 4093;
/// Weights are scaled down (by their gcd, then shifted) until the largest fits in this many
/// bits, so that a destination takes at most 63 consecutive turns while the table fills.
const MAGLEV_WEIGHT_BITS: u32 = 6;
const MAGLEV_SEED_1: u64 = 0x9E37_79B9_7F4A_7C15;
const MAGLEV_SEED_2: u64 = 0xC2B2_AE3D_27D4_EB4F;

/// SplitMix64's finaliser: a bijection on u64 that spreads every input bit over the output.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A keyed hash of an address, a port and a probe offset, stable across versions and
/// platforms (it decides which real server a client sticks to).
fn maglev_hash(seed: u64, ip: IpAddr, port: u16, offset: u64) -> u64 {
    let mut h = mix64(seed);
    match ip {
        IpAddr::V4(v4) => h = mix64(h ^ (4 << 32 | u64::from(u32::from(v4)))),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            h = mix64(h ^ 6);
            h = mix64(h ^ (bits >> 64) as u64);
            h = mix64(h ^ bits as u64);
        }
    }
    mix64(h ^ (u64::from(port) << 48 | offset))
}

/// `mh`, Maglev hashing (Eisenbud et al., NSDI 2016, §3.4): every destination has a
/// permutation of the 4093 table slots, given by an offset and a skip derived from two hashes
/// of its address; destinations take turns, in list order and in proportion to their weights,
/// claiming their next free preferred slot until the table is full. A client hashes to a
/// slot. Removing one of N destinations moves little more than the 1/N of clients it served.
///
/// As in the kernel, the table is built from each destination's *last non-zero* weight, so
/// quiescing a destination (weight 0) or overloading it leaves the table as it is: clients
/// that hash to it get `None`, or, with `mh-fallback`, another destination found by walking
/// the table from their slot. `mh-port` adds the client port to the hash.
#[derive(Clone, Debug)]
pub struct Maglev {
    fallback: bool,
    port: bool,
    /// What the table was built from: id, address and last non-zero weight of each
    /// destination, in list order; `None` before the first call.
    built_from: Option<Vec<(usize, SocketAddr, u32)>>,
    table: Table,
}

impl Maglev {
    /// `mh` with the `mh-fallback` and `mh-port` flags as given.
    pub fn new(fallback: bool, port: bool) -> Maglev {
        Maglev { fallback, port, built_from: None, table: Table::default() }
    }

    /// The lookup table: for each of the [`MAGLEV_TABLE_SIZE`] slots, the id of the
    /// destination that owns it (`None` everywhere when no destination has ever had a weight).
    /// Meant for tests and diagnostics.
    pub fn table(&mut self, dests: &[Dest]) -> Vec<Option<usize>> {
        self.sync(dests);
        self.table.0.iter().map(|slot| slot.map(|p| dests[p].id)).collect()
    }

    fn sync(&mut self, dests: &[Dest]) {
        let previous = self.built_from.as_deref().unwrap_or(&[]);
        // A destination keeps the weight it had before it was quiesced (`last_weight`); one
        // that arrives with weight 0 has none.
        let unchanged_list = previous.len() == dests.len()
            && previous.iter().zip(dests).all(|(&(id, addr, _), d)| id == d.id && addr == d.addr);
        let last_weights: Vec<(usize, SocketAddr, u32)> = if unchanged_list {
            previous
                .iter()
                .zip(dests)
                .map(|(&(id, addr, lw), d)| (id, addr, if d.weight != 0 { d.weight } else { lw }))
                .collect()
        } else {
            let before: HashMap<(usize, SocketAddr), u32> =
                previous.iter().map(|&(id, addr, lw)| ((id, addr), lw)).collect();
            dests
                .iter()
                .map(|d| {
                    let lw =
                        if d.weight != 0 { d.weight } else { *before.get(&(d.id, d.addr)).unwrap_or(&0) };
                    (d.id, d.addr, lw)
                })
                .collect()
        };
        if self.built_from.as_ref() != Some(&last_weights) {
            self.table = maglev_populate(&last_weights);
            self.built_from = Some(last_weights);
        }
    }
}

/// Builds the Maglev table from (id, address, last weight) in list order.
fn maglev_populate(dests: &[(usize, SocketAddr, u32)]) -> Table {
    let m = MAGLEV_TABLE_SIZE;
    let mut table = vec![None; m];
    let g = dests.iter().filter(|d| d.2 > 0).fold(0, |g, d| gcd(g, u64::from(d.2)));
    // With more destinations than slots the kernel refuses the change; no table here either.
    if g == 0 || dests.len() > m {
        return Table(table);
    }
    let max = dests.iter().map(|d| u64::from(d.2)).max().unwrap_or(0) / g;
    let shift = (u64::BITS - max.leading_zeros()).saturating_sub(MAGLEV_WEIGHT_BITS);
    struct Setup {
        perm: usize,
        skip: usize,
        turns: u64,
    }
    let mut setup: Vec<Setup> = dests
        .iter()
        .map(|&(_, addr, lw)| {
            let offset = (maglev_hash(MAGLEV_SEED_1, addr.ip(), addr.port(), 0) % m as u64) as usize;
            let skip = (maglev_hash(MAGLEV_SEED_2, addr.ip(), addr.port(), 0) % (m as u64 - 1)) as usize + 1;
            let turns = match (u64::from(lw) / g) >> shift {
                0 => u64::from(lw != 0),
                t => t,
            };
            Setup { perm: offset, skip, turns }
        })
        .collect();
    let mut filled = 0;
    let mut turn = 0;
    // Some destination has turns >= 1 (g > 0), so every round fills at least one slot; a
    // skip in 1..m with m prime visits every slot, so a free one is always found.
    loop {
        let mut i = 0;
        while i < setup.len() {
            let s = &mut setup[i];
            if s.turns == 0 {
                i += 1;
                continue;
            }
            while table[s.perm].is_some() {
                s.perm += s.skip;
                if s.perm >= m {
                    s.perm -= m;
                }
            }
            table[s.perm] = Some(i);
            filled += 1;
            if filled == m {
                return Table(table);
            }
            turn += 1;
            if turn >= s.turns {
                turn = 0;
                i += 1;
            }
        }
    }
}

impl Scheduler for Maglev {
    fn name(&self) -> &'static str {
        "mh"
    }

    fn update(&mut self, dests: &[Dest]) {
        self.sync(dests);
    }

    fn schedule(&mut self, dests: &[Dest], conn: &Conn) -> Option<usize> {
        self.sync(dests);
        let m = MAGLEV_TABLE_SIZE;
        let ip = conn.src.ip();
        let port = if self.port { conn.src.port() } else { 0 };
        let slot = |offset: usize| (maglev_hash(MAGLEV_SEED_1, ip, port, offset as u64) % m as u64) as usize;
        let ihash = slot(0);
        let first = self.table.0[ihash]?;
        if dests[first].available() {
            return Some(dests[first].id);
        }
        if !self.fallback {
            return None;
        }
        for offset in 0..m {
            let p = self.table.0[slot((offset + ihash) % m)]?;
            if dests[p].available() {
                return Some(dests[p].id);
            }
        }
        // halo's addition: the walk above samples; finish with every slot, from the client's.
        (0..m)
            .filter_map(|k| self.table.0[(ihash + k) % m])
            .find(|&p| dests[p].available())
            .map(|p| dests[p].id)
    }
}

// ---------------------------------------------------------------------------------------------
// lblc, lblcr

/// Default time after which an idle `lblc`/`lblcr` entry is forgotten and after which an
/// `lblcr` set that has not changed drops its busiest member: 24 hours
/// (`net.ipv4.vs.lblc_expiration`, `lblcr_expiration`).
pub const LOCALITY_DEFAULT_EXPIRATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Default cap on `lblc`/`lblcr` entries: the kernel's table size times 16.
pub const LOCALITY_DEFAULT_MAX_ENTRIES: usize = 1024 * 16;
/// When the table is full, entries idle this long are collected (`ENTRY_TIMEOUT`).
const LOCALITY_ENTRY_TIMEOUT_MS: u64 = 6 * 60 * 1000;
/// ... at most this often (`CHECK_EXPIRE_INTERVAL`), so a table full of live entries is not
/// swept on every connection.
const LOCALITY_SWEEP_INTERVAL_MS: u64 = 60 * 1000;

/// The per-destination-address table of `lblc` and `lblcr`: entry value and last use.
#[derive(Clone, Debug)]
struct LocalityTable<E> {
    expiration_ms: u64,
    max_entries: usize,
    entries: HashMap<IpAddr, (u64, E)>,
    last_sweep_ms: Option<u64>,
}

impl<E> LocalityTable<E> {
    fn new() -> LocalityTable<E> {
        LocalityTable {
            expiration_ms: LOCALITY_DEFAULT_EXPIRATION_MS,
            max_entries: LOCALITY_DEFAULT_MAX_ENTRIES,
            entries: HashMap::new(),
            last_sweep_ms: None,
        }
    }

    /// The entry for `key`, unless it has been idle for the expiration time (then it is
    /// dropped).
    fn live(&mut self, key: IpAddr, now: u64) -> Option<&mut (u64, E)> {
        let lastuse = self.entries.get(&key)?.0;
        if now.saturating_sub(lastuse) >= self.expiration_ms {
            self.entries.remove(&key);
            return None;
        }
        self.entries.get_mut(&key)
    }

    /// Whether a new entry may be added, collecting long-idle entries first when full.
    fn room(&mut self, now: u64) -> bool {
        if self.entries.len() < self.max_entries {
            return true;
        }
        if self.last_sweep_ms.is_none_or(|t| now.saturating_sub(t) >= LOCALITY_SWEEP_INTERVAL_MS) {
            let idle = LOCALITY_ENTRY_TIMEOUT_MS.min(self.expiration_ms);
            self.entries.retain(|_, (lastuse, _)| now.saturating_sub(*lastuse) < idle);
            self.last_sweep_ms = Some(now);
        }
        self.entries.len() < self.max_entries
    }

    fn expire(&mut self, now: u64) {
        let exp = self.expiration_ms;
        self.entries.retain(|_, (lastuse, _)| now.saturating_sub(*lastuse) < exp);
    }
}

/// `lblc`, locality-based least connection, for cache clusters: each destination address
/// (the origin server a client asked for) sticks to the real server first chosen for it by
/// `wlc`, until that server is unavailable or overloaded in the locality sense (more active
/// connections than its weight while some server is below half its weight); then `wlc`
/// chooses again and the entry follows.
#[derive(Clone, Debug)]
pub struct Lblc {
    table: LocalityTable<usize>,
}

/// The construction and housekeeping shared by the two locality schedulers (their tables
/// differ only in what an entry holds).
macro_rules! locality_scheduler_common {
    ($t:ident, $name:literal) => {
        impl Default for $t {
            fn default() -> $t {
                $t::new()
            }
        }

        impl $t {
            #[doc = concat!("`", $name, "` with the kernel's defaults (24 h expiration, 16384 entries).")]
            pub fn new() -> $t {
                $t { table: LocalityTable::new() }
            }

            /// The idle time after which an entry is forgotten (for `lblcr` also the time a
            /// set must go unchanged before it sheds its busiest member).
            pub fn with_expiration_ms(mut self, ms: u64) -> $t {
                self.table.expiration_ms = ms;
                self
            }

            /// Caps the number of remembered destination addresses; past it, new addresses
            /// are scheduled without being remembered.
            pub fn with_max_entries(mut self, n: usize) -> $t {
                self.table.max_entries = n;
                self
            }

            /// Drops every entry idle for the expiration time (the kernel's periodic full check).
            pub fn expire(&mut self, now_ms: u64) {
                self.table.expire(now_ms);
            }

            /// How many destination addresses are remembered.
            pub fn len(&self) -> usize {
                self.table.entries.len()
            }

            /// Whether no destination address is remembered.
            pub fn is_empty(&self) -> bool {
                self.table.entries.is_empty()
            }
        }
    };
}

locality_scheduler_common!(Lblc, "lblc");
locality_scheduler_common!(Lblcr, "lblcr");

impl Scheduler for Lblc {
    fn name(&self) -> &'static str {
        "lblc"
    }

    fn schedule(&mut self, dests: &[Dest], conn: &Conn) -> Option<usize> {
        let (key, now) = (conn.dst.ip(), conn.now_ms);
        if let Some(entry) = self.table.live(key, now) {
            entry.0 = now;
            if let Some(d) = dests.iter().find(|d| d.id == entry.1) {
                if d.available() && !locality_overloaded(d, dests) {
                    return Some(d.id);
                }
            }
        }
        let id = dests[weighted_least(dests, Dest::overhead)?].id;
        if let Some(entry) = self.table.entries.get_mut(&key) {
            *entry = (now, id);
        } else if self.table.room(now) {
            self.table.entries.insert(key, (now, id));
        }
        Some(id)
    }
}

/// An `lblcr` server set: member ids, the most recently added first, and when it last changed.
#[derive(Clone, Debug)]
struct ServerSet {
    members: Vec<usize>,
    lastmod: u64,
}

/// `lblcr`, locality-based least connection with replication: each destination address maps
/// to a *set* of real servers and is served by the least loaded (`overhead / weight`) member.
/// When every member is unavailable or that member is overloaded in the locality sense, `wlc`
/// picks a server from the whole service and it joins the set; when the set has more than one
/// member and has not changed for the expiration time, its most loaded member leaves it.
#[derive(Clone, Debug)]
pub struct Lblcr {
    table: LocalityTable<ServerSet>,
}

impl Lblcr {
    /// The server set of destination address `dst`, most recently added first.
    pub fn server_set(&self, dst: IpAddr) -> Option<&[usize]> {
        self.table.entries.get(&dst).map(|(_, set)| set.members.as_slice())
    }
}

/// The least loaded usable member of a set: not overloaded, weight > 0; ties to the first.
fn set_min(members: &[usize], dests: &[Dest]) -> Option<usize> {
    let mut least: Option<usize> = None;
    for p in members.iter().filter_map(|&id| position(dests, id)) {
        let d = &dests[p];
        if !d.available() {
            continue;
        }
        if least.is_none_or(|l| less_loaded(dests[l].overhead(), dests[l].weight, d.overhead(), d.weight)) {
            least = Some(p);
        }
    }
    least
}

/// The most loaded member with weight > 0 (overloaded or not); ties to the first.
fn set_max(members: &[usize], dests: &[Dest]) -> Option<usize> {
    let mut most: Option<usize> = None;
    for p in members.iter().filter_map(|&id| position(dests, id)) {
        let d = &dests[p];
        if d.weight == 0 {
            continue;
        }
        if most.is_none_or(|m| less_loaded(d.overhead(), d.weight, dests[m].overhead(), dests[m].weight)) {
            most = Some(p);
        }
    }
    most
}

impl Scheduler for Lblcr {
    fn name(&self) -> &'static str {
        "lblcr"
    }

    fn schedule(&mut self, dests: &[Dest], conn: &Conn) -> Option<usize> {
        let (key, now) = (conn.dst.ip(), conn.now_ms);
        let expiration = self.table.expiration_ms;
        if let Some((lastuse, set)) = self.table.live(key, now) {
            *lastuse = now;
            // A server removed from the service leaves every set.
            set.members.retain(|&id| position(dests, id).is_some());
            let least = set_min(&set.members, dests);
            if set.members.len() > 1 && now > set.lastmod.saturating_add(expiration) {
                if let Some(m) = set_max(&set.members, dests) {
                    set.members.retain(|&id| id != dests[m].id);
                    set.lastmod = now;
                }
            }
            if let Some(p) = least.filter(|&p| !locality_overloaded(&dests[p], dests)) {
                return Some(dests[p].id);
            }
            let id = dests[weighted_least(dests, Dest::overhead)?].id;
            if !set.members.contains(&id) {
                set.members.insert(0, id);
                set.lastmod = now;
            }
            return Some(id);
        }
        let id = dests[weighted_least(dests, Dest::overhead)?].id;
        if self.table.room(now) {
            self.table.entries.insert(key, (now, ServerSet { members: vec![id], lastmod: now }));
        }
        Some(id)
    }
}

// ---------------------------------------------------------------------------------------------
// Persistence

/// The persistence granularity (ipvsadm `-M`, ldirectord `netmask`): clients whose addresses
/// are equal under the mask share one persistence entry. One value carries both families'
/// masks; the default is a single host (255.255.255.255 and /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Netmask {
    v4: Ipv4Addr,
    v6_prefix: u8,
}

/// A netmask that is neither a dotted IPv4 mask nor an IPv6 prefix length 1..=128.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid persistence netmask {input:?}: expected a dotted IPv4 mask (255.255.255.0) or an IPv6 prefix length (1..128)")]
pub struct NetmaskError {
    /// The text given.
    pub input: String,
}

impl Default for Netmask {
    fn default() -> Netmask {
        Netmask::HOST
    }
}

impl Netmask {
    /// One entry per client address: ipvsadm's default.
    pub const HOST: Netmask = Netmask { v4: Ipv4Addr::BROADCAST, v6_prefix: 128 };

    /// An IPv4 mask, applied bit by bit as the kernel does (it need not be contiguous); IPv6
    /// clients keep one entry per address.
    pub fn v4(mask: Ipv4Addr) -> Netmask {
        Netmask { v4: mask, v6_prefix: 128 }
    }

    /// An IPv6 prefix length, 1..=128; IPv4 clients keep one entry per address.
    pub fn v6(prefix: u8) -> Result<Netmask, NetmaskError> {
        if (1..=128).contains(&prefix) {
            Ok(Netmask { v4: Ipv4Addr::BROADCAST, v6_prefix: prefix })
        } else {
            Err(NetmaskError { input: prefix.to_string() })
        }
    }

    /// Reads a netmask as ldirectord and ipvsadm write it: a dotted quad for IPv4
    /// (`255.255.255.0`), a prefix length for IPv6 (`64`).
    pub fn parse(s: &str) -> Result<Netmask, NetmaskError> {
        let t = s.trim();
        if let Ok(mask) = t.parse::<Ipv4Addr>() {
            return Ok(Netmask::v4(mask));
        }
        match t.parse::<u8>() {
            Ok(prefix) if (1..=128).contains(&prefix) => Netmask::v6(prefix),
            _ => Err(NetmaskError { input: s.to_string() }),
        }
    }

    /// The IPv4 mask.
    pub fn v4_mask(&self) -> Ipv4Addr {
        self.v4
    }

    /// The IPv6 prefix length.
    pub fn v6_prefix(&self) -> u8 {
        self.v6_prefix
    }

    /// `ip` with the bits outside the mask cleared.
    pub fn apply(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & u32::from(self.v4))),
            IpAddr::V6(v6) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.v6_prefix)).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }
}

impl FromStr for Netmask {
    type Err = NetmaskError;

    fn from_str(s: &str) -> Result<Netmask, NetmaskError> {
        Netmask::parse(s)
    }
}

impl fmt::Display for Netmask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.v4)?;
        if self.v6_prefix != 128 {
            write!(f, " /{}", self.v6_prefix)?;
        }
        Ok(())
    }
}

/// Default persistence timeout when ipvsadm's `-p` has no value: 300 s.
pub const DEFAULT_PERSISTENT_TIMEOUT_MS: u64 = 300_000;
/// Default cap on persistence entries of one service.
pub const DEFAULT_PERSISTENT_MAX_ENTRIES: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
struct Template {
    dest: usize,
    expires_ms: u64,
}

/// Client affinity as IPVS does it for a service with `persistent` (ipvsadm `-p`): the first
/// connection of a client (its address under the [`Netmask`]) is scheduled normally and leaves
/// a *template*; later connections of that client go to the same destination, without asking
/// the scheduler, as long as the template lives. Each use pushes the template's expiry to
/// `now + timeout`, as the kernel restarts the template's timer.
///
/// A template dies when it expires, when its destination leaves the service, and (by default,
/// see [`keep_quiescent`](Persistence::keep_quiescent)) when its destination is quiescent; the
/// client is then scheduled afresh. An overloaded destination keeps its persistent clients, as
/// in the kernel: the threshold only steers new clients.
///
/// One `Persistence` serves one virtual service. The kernel also keeps a template alive while
/// connections it created are still open; here the caller extends it by scheduling through it.
#[derive(Clone, Debug)]
pub struct Persistence {
    timeout_ms: u64,
    netmask: Netmask,
    keep_quiescent: bool,
    max_entries: usize,
    templates: HashMap<IpAddr, Template>,
    by_expiry: BTreeSet<(u64, IpAddr)>,
}

impl Persistence {
    /// Persistence for `timeout_ms`, per client network under `netmask`.
    pub fn new(timeout_ms: u64, netmask: Netmask) -> Persistence {
        Persistence {
            timeout_ms,
            netmask,
            keep_quiescent: false,
            max_entries: DEFAULT_PERSISTENT_MAX_ENTRIES,
            templates: HashMap::new(),
            by_expiry: BTreeSet::new(),
        }
    }

    /// With `true`, a quiescent destination (weight 0) keeps receiving the new connections of
    /// its persistent clients until their templates expire: the kernel's behaviour with its
    /// default `net.ipv4.vs.expire_quiescent_template = 0`. halo's default, `false`, matches
    /// `expire_quiescent_template = 1`, because the director quiesces a real server when its
    /// health check fails (ldirectord's `quiescent = yes`), and persistent clients should not
    /// keep being sent to a server that failed; the IPVS data plane sets the sysctl to match.
    pub fn keep_quiescent(mut self, keep: bool) -> Persistence {
        self.keep_quiescent = keep;
        self
    }

    /// Caps the number of templates; past it, new clients are scheduled without affinity
    /// until templates expire (memory stays bounded whatever the number of clients).
    pub fn with_max_entries(mut self, n: usize) -> Persistence {
        self.max_entries = n;
        self
    }

    /// The persistence timeout.
    pub fn timeout_ms(&self) -> u64 {
        self.timeout_ms
    }

    /// The persistence netmask.
    pub fn netmask(&self) -> Netmask {
        self.netmask
    }

    /// Chooses the destination for `conn`: the one its client's live template names if that
    /// destination may still have it, otherwise `sched`'s choice, which then gets a template.
    pub fn schedule(&mut self, sched: &mut dyn Scheduler, dests: &[Dest], conn: &Conn) -> Option<usize> {
        let now = conn.now_ms;
        self.expire(now);
        let key = self.netmask.apply(conn.src.ip());
        if let Some(t) = self.templates.get(&key).copied() {
            let usable =
                dests.iter().find(|d| d.id == t.dest).is_some_and(|d| d.weight > 0 || self.keep_quiescent);
            self.by_expiry.remove(&(t.expires_ms, key));
            if usable {
                let expires_ms = now.saturating_add(self.timeout_ms);
                self.templates.insert(key, Template { dest: t.dest, expires_ms });
                self.by_expiry.insert((expires_ms, key));
                return Some(t.dest);
            }
            self.templates.remove(&key);
        }
        let dest = sched.schedule(dests, conn)?;
        if self.templates.len() < self.max_entries && self.timeout_ms > 0 {
            let expires_ms = now.saturating_add(self.timeout_ms);
            self.templates.insert(key, Template { dest, expires_ms });
            self.by_expiry.insert((expires_ms, key));
        }
        Some(dest)
    }

    /// The destination the template of `client` names, if it is live at `now_ms` (whether
    /// that destination may still take it is decided at [`schedule`](Persistence::schedule)).
    pub fn lookup(&self, client: IpAddr, now_ms: u64) -> Option<usize> {
        let t = self.templates.get(&self.netmask.apply(client))?;
        (now_ms < t.expires_ms).then_some(t.dest)
    }

    /// Drops every template that expired at or before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        while let Some(&(expires_ms, key)) = self.by_expiry.first() {
            if expires_ms > now_ms {
                break;
            }
            self.by_expiry.pop_first();
            self.templates.remove(&key);
        }
    }

    /// How many templates are held (expired ones included until the next call that expires).
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Whether no template is held.
    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 80))
    }

    fn dests(weights: &[u32]) -> Vec<Dest> {
        weights.iter().enumerate().map(|(i, &w)| Dest::new(i, addr(i), w)).collect()
    }

    fn conn_from(ip: [u8; 4], port: u16, now_ms: u64) -> Conn {
        Conn::new(SocketAddr::from((ip, port)), SocketAddr::from(([192, 168, 6, 240], 80)), now_ms)
    }

    fn conn() -> Conn {
        conn_from([10, 1, 1, 50], 40000, 0)
    }

    fn picks(s: &mut dyn Scheduler, d: &[Dest], n: usize) -> Vec<usize> {
        (0..n).map(|_| s.schedule(d, &conn()).expect("a destination")).collect()
    }

    #[test]
    fn names_are_ipvsadm_names() {
        for &name in SCHEDULERS {
            assert_eq!(by_name(name, &[]).expect("known").name(), name);
        }
    }

    #[test]
    fn unknown_names_and_flags_are_refused_with_the_valid_ones() {
        let err = by_name("wrrr", &[]).unwrap_err();
        assert!(err.to_string().contains("rr wrr lc wlc lblc lblcr dh sh sed nq fo ovf mh"), "{err}");
        assert!(matches!(by_name("sh", &["sh-port,bogus"]), Err(SchedulerError::UnknownFlag { .. })));
        assert!(matches!(
            by_name("wrr", &["sh-port"]),
            Err(SchedulerError::IncompatibleFlag { applies_to: "sh", scheduler: "wrr", .. })
        ));
        assert!(matches!(by_name("sh", &["mh-fallback"]), Err(SchedulerError::IncompatibleFlag { .. })));
        assert!(by_name("sh", &["sh-fallback, sh-port"]).is_ok());
        assert!(by_name("mh", &["mh-fallback", "mh-port"]).is_ok());
        assert!(by_name("wlc", &["flag-1,flag-2,flag-3"]).is_ok());
        assert!(by_name("", &[]).is_err());
    }

    #[test]
    fn empty_and_all_quiescent_lists_give_none_everywhere() {
        for &name in SCHEDULERS {
            let mut s = by_name(name, &[]).expect("known");
            assert_eq!(s.schedule(&[], &conn()), None, "{name} on an empty list");
            assert_eq!(s.schedule(&dests(&[0, 0, 0]), &conn()), None, "{name} with all quiescent");
            let mut d = dests(&[1, 2]);
            d.iter_mut().for_each(|d| d.overloaded = true);
            assert_eq!(s.schedule(&d, &conn()), None, "{name} with all overloaded");
        }
    }

    #[test]
    fn rr_rotates_skipping_unavailable_and_follows_list_changes() {
        let mut rr = RoundRobin::new();
        let mut d = dests(&[1, 5, 1, 1]);
        assert_eq!(picks(&mut rr, &d, 8), [0, 1, 2, 3, 0, 1, 2, 3]);
        d[2].weight = 0;
        d[3].overloaded = true;
        assert_eq!(picks(&mut rr, &d, 4), [0, 1, 0, 1]);
        // Remove the destination chosen last (id 1): its successor is next.
        let d2: Vec<Dest> = dests(&[1, 1, 1, 1]).into_iter().filter(|x| x.id != 1).collect();
        assert_eq!(picks(&mut rr, &d2, 3), [2, 3, 0]);
    }

    /// The kernel's loop, walked pass by pass with no shortcut: the reference for wrr.
    #[derive(Default)]
    struct NaiveWrr {
        sig: Option<Vec<(usize, u32)>>,
        cl: Option<usize>,
        cw: i64,
        mw: i64,
        di: i64,
    }

    impl NaiveWrr {
        fn schedule(&mut self, dests: &[Dest]) -> Option<usize> {
            let sig = list_sig(dests, |d| d.weight);
            if self.sig.as_ref() != Some(&sig) {
                let g = dests.iter().filter(|d| d.weight > 0).fold(0, |g, d| gcd(g, u64::from(d.weight)));
                let di = if g == 0 { 1 } else { g as i64 };
                let max = dests.iter().map(|d| i64::from(d.weight)).max().unwrap_or(0);
                self.mw = max - (di - 1);
                if self.sig.is_none() || self.cw > self.mw || self.cw == 0 {
                    self.cw = self.mw;
                } else if di > 1 {
                    self.cw = (self.cw / di) * di + 1;
                }
                self.di = di;
                self.cl = None;
                self.sig = Some(sig);
            }
            if self.mw == 0 {
                return None;
            }
            let last = self.cl;
            let mut pos = self.cl;
            let mut stop = None;
            let (mut last_pass, mut restarted) = (false, false);
            loop {
                for (i, d) in dests.iter().enumerate().skip(pos.map_or(0, |p| p + 1)) {
                    if !d.overloaded && i64::from(d.weight) >= self.cw {
                        self.cl = Some(i);
                        return Some(d.id);
                    }
                    if stop == Some(i) {
                        self.cl = Some(i);
                        return None;
                    }
                }
                pos = None;
                self.cw -= self.di;
                if self.cw <= 0 {
                    self.cw = self.mw;
                    if last_pass || last.is_none() {
                        self.cl = None;
                        return None;
                    }
                    restarted = true;
                }
                last_pass = self.cw <= self.di;
                if last_pass && restarted && last.is_some() {
                    stop = last;
                }
            }
        }
    }

    #[test]
    fn wrr_interleaves_4_3_2_as_ipvs_does() {
        let mut wrr = WeightedRoundRobin::new();
        let d = dests(&[4, 3, 2]);
        let seq = picks(&mut wrr, &d, 18);
        assert_eq!(seq[..9], [0, 0, 1, 0, 1, 2, 0, 1, 2]);
        assert_eq!(seq[9..], seq[..9]);
    }

    #[test]
    fn wrr_steps_by_the_gcd() {
        // Weights 40:30:20 behave as 4:3:2 (gcd 10 steps, last pass at cw = 1).
        let mut wrr = WeightedRoundRobin::new();
        assert_eq!(picks(&mut wrr, &dests(&[40, 30, 20]), 9), [0, 0, 1, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn wrr_huge_weight_gaps_do_not_walk_empty_passes() {
        let mut wrr = WeightedRoundRobin::new();
        let mut d = dests(&[2_000_000_000, 1, 1]);
        d[0].overloaded = true;
        // Only the weight-1 destinations can be picked; each call must come back at once.
        assert_eq!(picks(&mut wrr, &d, 6), [1, 2, 1, 2, 1, 2]);
    }

    proptest! {
        #[test]
        fn wrr_matches_the_kernel_loop(
            weights in prop::collection::vec(0u32..7, 1..6),
            steps in prop::collection::vec((any::<bool>(), 0usize..6, 0u32..7, any::<bool>()), 1..60),
        ) {
            let mut d = dests(&weights);
            let (mut fast, mut naive) = (WeightedRoundRobin::new(), NaiveWrr::default());
            for (flip, i, w, reweight) in steps {
                let i = i % d.len();
                if flip { d[i].overloaded = !d[i].overloaded; }
                if reweight { d[i].weight = w; }
                prop_assert_eq!(fast.schedule(&d, &conn()), naive.schedule(&d));
            }
        }
    }

    #[test]
    fn lc_uses_overhead_ignoring_weight() {
        let mut d = dests(&[1, 100, 1]);
        d[0].active = 1; // 256
        d[1].active = 1;
        d[1].inactive = 1; // 257
        d[2].inactive = 255; // 255
        assert_eq!(LeastConnection.schedule(&d, &conn()), Some(2));
        d[2].inactive = 256; // tie with d[0]: the first wins
        assert_eq!(LeastConnection.schedule(&d, &conn()), Some(0));
    }

    #[test]
    fn wlc_divides_overhead_by_weight_and_keeps_the_first_on_ties() {
        let mut d = dests(&[1, 3, 2]);
        d[0].active = 1; // 256 / 1 = 256
        d[1].active = 2; // 512 / 3 = 170.6
        d[2].active = 1;
        d[2].inactive = 100; // 356 / 2 = 178
        assert_eq!(WeightedLeastConnection.schedule(&d, &conn()), Some(1));
        d[1].inactive = 22; // 534 / 3 = 178: tie with d[2], d[1] comes first
        assert_eq!(WeightedLeastConnection.schedule(&d, &conn()), Some(1));
        d[1].inactive = 23; // 535 / 3 > 178
        assert_eq!(WeightedLeastConnection.schedule(&d, &conn()), Some(2));
    }

    #[test]
    fn sed_counts_the_new_connection_and_ignores_inactive() {
        let mut d = dests(&[1, 3]);
        // wlc would pick d[0] (0 < 3*256/3); sed compares (0+1)/1 = 1 with (3+1)/3 = 1.33.
        d[1].active = 3;
        d[0].inactive = 1000;
        assert_eq!(ShortestExpectedDelay.schedule(&d, &conn()), Some(0));
        d[1].active = 2; // (2+1)/3 = 1 = (0+1)/1: tie, first wins
        assert_eq!(ShortestExpectedDelay.schedule(&d, &conn()), Some(0));
        d[1].active = 1; // 2/3 < 1
        assert_eq!(ShortestExpectedDelay.schedule(&d, &conn()), Some(1));
    }

    #[test]
    fn nq_prefers_any_idle_server_then_sed() {
        let mut d = dests(&[10, 1, 5]);
        d[0].active = 1;
        d[2].active = 0;
        d[1].active = 0;
        // d[1] is idle and first among the idle, despite its weight.
        assert_eq!(NeverQueue.schedule(&d, &conn()), Some(1));
        d[1].weight = 0; // quiescent idle servers do not count
        assert_eq!(NeverQueue.schedule(&d, &conn()), Some(2));
        d[2].active = 4; // nobody idle: sed: 2/10 = 0.2 vs 5/5 = 1
        assert_eq!(NeverQueue.schedule(&d, &conn()), Some(0));
    }

    #[test]
    fn fo_takes_the_highest_available_weight() {
        let mut d = dests(&[5, 10, 10, 7]);
        assert_eq!(WeightedFailover.schedule(&d, &conn()), Some(1));
        d[1].overloaded = true;
        assert_eq!(WeightedFailover.schedule(&d, &conn()), Some(2));
        d[2].weight = 0;
        assert_eq!(WeightedFailover.schedule(&d, &conn()), Some(3));
    }

    #[test]
    fn ovf_overflows_when_active_exceeds_weight() {
        let mut d = dests(&[2, 5, 3]);
        assert_eq!(WeightedOverflow.schedule(&d, &conn()), Some(1));
        d[1].active = 5; // not more than its weight yet
        assert_eq!(WeightedOverflow.schedule(&d, &conn()), Some(1));
        d[1].active = 6;
        assert_eq!(WeightedOverflow.schedule(&d, &conn()), Some(2));
        d[2].active = 4;
        assert_eq!(WeightedOverflow.schedule(&d, &conn()), Some(0));
        d[0].active = 3;
        assert_eq!(WeightedOverflow.schedule(&d, &conn()), None);
    }

    #[test]
    fn sh_table_gives_each_destination_weight_buckets_in_turn() {
        let t = fill_buckets(&dests(&[2, 0, 1]), true);
        let head: Vec<usize> = t.0[..8].iter().map(|b| b.expect("filled")).collect();
        assert_eq!(head, [0, 0, 1, 2, 0, 0, 1, 2]);
        let t = fill_buckets(&dests(&[7, 3]), false);
        assert_eq!(t.0[..4], [Some(0), Some(1), Some(0), Some(1)]);
    }

    #[test]
    fn hash_32_is_the_kernels() {
        // hash_32(1, 8) = (0x61C88647 >> 24)
        assert_eq!(hash_32(1, 8), 0x61);
        assert_eq!(hash_32(0, 8), 0);
        assert_eq!(addr_fold("::1".parse().expect("v6")), 1);
        assert_eq!(addr_fold("1:0:0:0:0:0:0:1".parse().expect("v6")), 0x0001_0000 ^ 1);
    }

    #[test]
    fn sh_without_fallback_refuses_when_the_hashed_server_is_down() {
        let mut d = dests(&[1, 1]);
        let mut sh = SourceHash::new(false, false);
        let c = conn();
        let first = sh.schedule(&d, &c).expect("a destination");
        d[first].weight = 0;
        // The table is refilled (weights changed) but with weight 1 / 0 the buckets alternate
        // the same way; the hashed bucket still names the quiescent server.
        assert_eq!(sh.schedule(&d, &c), None);
        let mut shf = SourceHash::new(true, false);
        assert_eq!(shf.schedule(&d, &c), Some(1 - first));
    }

    #[test]
    fn dh_hashes_the_destination_address() {
        let d = dests(&[1, 1, 1, 1]);
        let mut dh = DestinationHash::new();
        let to = |ip: [u8; 4]| Conn::new(SocketAddr::from(([10, 9, 9, 9], 1)), SocketAddr::from((ip, 80)), 0);
        let a = dh.schedule(&d, &to([93, 184, 216, 34]));
        for port in [1, 2, 3] {
            let mut c = to([93, 184, 216, 34]);
            c.src.set_port(port);
            c.src.set_ip([172, 16, 0, port as u8].into());
            assert_eq!(dh.schedule(&d, &c), a, "the client does not matter");
        }
        let expected = hash_32(u32::from(Ipv4Addr::new(93, 184, 216, 34)), 8) as usize % 4;
        assert_eq!(a, Some(expected));
    }

    #[test]
    fn maglev_turns_follow_weights() {
        let d = dests(&[1, 3]);
        let mut mh = Maglev::new(false, false);
        let table = mh.table(&d);
        let zero = table.iter().filter(|&&s| s == Some(0)).count();
        let one = table.iter().filter(|&&s| s == Some(1)).count();
        assert_eq!(zero + one, MAGLEV_TABLE_SIZE);
        // Turns 1:3, so the table splits about 1:3.
        assert!((900..1150).contains(&zero), "{zero} slots for weight 1");
    }

    #[test]
    fn maglev_quiescing_keeps_the_table() {
        let mut d = dests(&[1, 1, 1]);
        let mut mh = Maglev::new(false, false);
        let before = mh.table(&d);
        d[1].weight = 0;
        assert_eq!(mh.table(&d), before);
        // A destination that arrives with weight 0 has no slots.
        let mut d2 = d.clone();
        d2.push(Dest::new(9, addr(9), 0));
        assert!(!mh.table(&d2).contains(&Some(9)));
    }

    #[test]
    fn lblc_sticks_until_locality_overload() {
        let mut d = dests(&[2, 2]);
        let mut lblc = Lblc::new();
        let c = conn();
        assert_eq!(lblc.schedule(&d, &c), Some(0));
        d[0].active = 3; // more than its weight, but nobody is below half its weight
        d[1].active = 1;
        assert_eq!(lblc.schedule(&d, &c), Some(0));
        d[1].active = 0; // d[1] is below half: d[0] counts as overloaded
        assert_eq!(lblc.schedule(&d, &c), Some(1));
        // The entry now follows d[1].
        d[0].active = 0;
        assert_eq!(lblc.schedule(&d, &c), Some(1));
    }

    #[test]
    fn netmask_parses_both_families() {
        let m = Netmask::parse("255.255.255.0").expect("v4");
        assert_eq!(m.apply("10.1.2.3".parse().expect("ip")), "10.1.2.0".parse::<IpAddr>().expect("ip"));
        let m = Netmask::parse("64").expect("v6");
        assert_eq!(
            m.apply("2001:db8::1:2".parse().expect("ip")),
            "2001:db8::".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(m.apply("10.1.2.3".parse().expect("ip")), "10.1.2.3".parse::<IpAddr>().expect("ip"));
        assert_eq!(
            Netmask::parse("128").expect("v6").apply("::1".parse().expect("ip")),
            "::1".parse::<IpAddr>().expect("ip")
        );
        for bad in ["", "0", "129", "255.255.255", "/24", "abc", "-1"] {
            assert!(Netmask::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Netmask::default(), Netmask::HOST);
    }
}
