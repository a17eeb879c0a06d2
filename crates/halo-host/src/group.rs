//! The resource-group executor: starts, stops, probes and monitors one haresources group
//! the way Heartbeat's `ResourceManager` did (`spec/heartbeat.md` §4.2, §6), with halo's
//! built-in `IPaddr`/`IPaddr2` in place of the shell scripts.
//!
//! # For the daemon
//!
//! * Create one [`GroupExecutor`] with [`GroupExecutor::new`] **on the thread whose network
//!   namespace the addresses live in** (the daemon has just one; tests create it inside a
//!   namespace): its background announcer thread and its address watch are opened there,
//!   and every later call must come from a thread in that same namespace.
//! * Every operation is blocking (agents run up to [`GroupEnv::timeout`], a failing stop is
//!   retried [`GroupEnv::stop_retries`] times): call them from worker threads, never the
//!   heartbeat thread. Calls for different groups may run concurrently on different
//!   threads (the executor is `Send + Sync`); run one operation per group at a time.
//! * [`GroupExecutor::start_group`]: left to right; before each start `status` is asked and
//!   a running resource is skipped (a running built-in VIP is *adopted*: held, watched and
//!   announced again). On a failed start, what this call started is stopped in reverse
//!   order and `Err` names the resource; resources that were already running before the
//!   call are left alone — call [`GroupExecutor::stop_group`] to release the whole group
//!   as Heartbeat's `givegroup` would.
//! * [`GroupExecutor::stop_group`]: right to left; a failing stop is retried; if it still
//!   fails and `status` says the resource runs (or cannot say), that resource is reported
//!   in `Err` — the others are still stopped (so as much as possible is released). If
//!   `status` says it is stopped, the failure is only a warning ("probably not
//!   LSB-compliant", as Heartbeat said). What to do about a stop failure (Heartbeat
//!   rebooted) is the caller's decision.
//! * [`GroupExecutor::probe_group`] at daemon start (what runs already: no double start, no
//!   orphan VIP), then [`GroupExecutor::adopt_group`] for a group kept as running (its
//!   built-in VIPs are held and watched like started ones, announced only by a later
//!   `start_group` or refresh),
//!   [`GroupExecutor::monitor_group`] periodically for started groups.
//! * Held addresses: poll [`GroupExecutor::watch_fd`] (readable when any address changes in
//!   the namespace) and call [`GroupExecutor::check_addresses`] when it is readable — and,
//!   as a safety net, every few seconds anyway (it verifies every held address, not only
//!   the ones the events named). A held VIP removed behind halo's back is added again and
//!   re-announced (logged at warn); the keys of the groups whose address could not be put
//!   back are returned, for the caller to fail them over.
//! * [`GroupExecutor::held`] lists the held addresses with their announcement counters
//!   (for metrics and `halo status`).
//!
//! # Resource words
//!
//! * `IPaddr::spec`, `IPaddr2::spec` and bare addresses (`10.0.0.5/24/eth0`): built in,
//!   over netlink (no shell); `IPaddr2::2001:db8::5/64` works too (the `::` inside an IPv6
//!   address is not taken for argument separators): the address is added on the interface `findif` would pick
//!   (or the one given), `IPaddr` with an alias label `iface:N` (first free) unless a label
//!   is given, `IPaddr2` with no label unless given. After adding, the first gratuitous ARP
//!   request+reply pair (IPv6: one unsolicited NA) is sent before `start_group` returns;
//!   the rest of the burst ([`GroupEnv::announce_count`] pairs every
//!   [`GroupEnv::announce_interval`]) goes out from the background thread, then a second
//!   burst [`GroupEnv::reannounce_after`] later and one every
//!   [`GroupEnv::refresh_interval`] while the address is held (switches and firewalls that
//!   missed or ignored one form get it again). Stop cancels the announcements. `status` =
//!   the address is on an interface other than `lo`.
//!   **LVS-DR**: a VIP found as a host address (/32, /128) on `lo` is taken from `lo` at
//!   start (what was there is saved in `<state_dir>/lvs-lo/<ip>`, so a restarted halo can
//!   still put it back) and put back on `lo` at stop, like IPaddr2's `lvs_support`.
//! * `heartbeat:NAME::args`: the Heartbeat-class script `<config_dir>/resource.d/NAME`,
//!   even where halo has a built-in of that name (`heartbeat:IPaddr2::10.0.0.5/24` runs
//!   Debian's IPaddr2 wrapper instead of halo's own).
//! * `ocf:PROVIDER:TYPE::name=value::...`: the OCF agent with those parameters
//!   (`OCF_RESKEY_name`). `OCF::TYPE::INSTANCE`: the OCF agent `heartbeat/TYPE`, instance
//!   `INSTANCE`, its parameters read from `<config_dir>/conf/OCF/TYPE/INSTANCE` (shell
//!   `VAR=value` lines; an `OCF_RESKEY_` prefix on a name is dropped, so both the
//!   Heartbeat wrapper's files and plain `name=value` files work).
//! * A word whose script name was registered with [`GroupExecutor::register_builtin`]
//!   (`ldirectord`, `ldirectord::file.cf`: the daemon registers halo's director): carried
//!   out by that [`Builtin`] inside the daemon, with the `::` arguments. The binary owns
//!   the built-in (halo-host never depends on the director). Naming a script explicitly
//!   still runs the script: `heartbeat:ldirectord::file.cf` runs
//!   `<config_dir>/resource.d/ldirectord` (Debian's ldirectord), whatever is registered.
//! * Anything else: `agents::resolve_spec` — `<config_dir>/resource.d`, then the init
//!   directory, then OCF `heartbeat` agents — called with the `::` arguments before the
//!   operation (OCF agents: the arguments must be `name=value` parameters).
//!
//! Nothing here panics on agent output or kernel replies; every failure is a value that
//! names the group, the resource word and the reason.

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use halo_config::{ResourceGroup, ResourceSpec};

use crate::agents::{self, Agent, AgentClass, AgentError, Call, Op, Outcome, Running};
use crate::vip::{self, AddrInfo, AddrWatch, Announcer, LoopbackSave, Resolved, VipSpec};
use crate::Level;

/// Where things are and how long they may take.
#[derive(Debug, Clone)]
pub struct GroupEnv {
    /// `/etc/ha.d`: `resource.d/` and `conf/OCF/` live here.
    pub config_dir: PathBuf,
    /// `/etc/init.d`.
    pub init_dir: PathBuf,
    /// `/usr/lib/ocf`.
    pub ocf_root: PathBuf,
    /// halo's state directory; LVS-DR loopback saves go to `<state_dir>/lvs-lo/`.
    pub state_dir: PathBuf,
    /// Time each agent call (start, stop, status, monitor) gets before it is killed.
    pub timeout: Duration,
    /// Environment for every script (the `HA_*` variables).
    pub env: Vec<(String, String)>,
    /// Gratuitous ARP request+reply pairs (IPv6: neighbour advertisements) per burst;
    /// 0 turns announcements off.
    pub announce_count: u32,
    /// Time between two pairs of a burst (one frame every half of it for IPv4).
    pub announce_interval: Duration,
    /// A second burst this long after the first ends; `None`: none.
    pub reannounce_after: Option<Duration>,
    /// Then a burst every this long while the address is held; `None`: none.
    pub refresh_interval: Option<Duration>,
    /// A failing stop is tried again this many times (Heartbeat's `HA_STOPRETRYMAX`)...
    pub stop_retries: u32,
    /// ...this long apart.
    pub stop_retry_interval: Duration,
}

impl Default for GroupEnv {
    /// Debian's paths, halo's state directory, IPaddr2's 5 × 200 ms announcement, a second
    /// burst after 5 s, a refresh every 60 s, Heartbeat's 10 stop retries 1 s apart, and 60 s
    /// per agent call.
    fn default() -> GroupEnv {
        GroupEnv {
            config_dir: PathBuf::from("/etc/ha.d"),
            init_dir: PathBuf::from("/etc/init.d"),
            ocf_root: PathBuf::from("/usr/lib/ocf"),
            state_dir: PathBuf::from("/var/lib/halo"),
            timeout: Duration::from_secs(60),
            env: Vec::new(),
            announce_count: 5,
            announce_interval: Duration::from_millis(200),
            reannounce_after: Some(Duration::from_secs(5)),
            refresh_interval: Some(Duration::from_secs(60)),
            stop_retries: 10,
            stop_retry_interval: Duration::from_secs(1),
        }
    }
}

/// One resource that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceFailure {
    /// The resource word as written in haresources.
    pub resource: String,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for ResourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.resource, self.reason)
    }
}

/// Why a group operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// A resource would not start; what this call had started was stopped again (`undo`
    /// lists what would not stop).
    #[error("resource group {group}: cannot start {resource}: {reason}{}", undo_note(.undo))]
    Start { group: String, resource: String, reason: String, undo: Vec<ResourceFailure> },
    /// Resources that would not stop (after the retries) and may still run.
    #[error("resource group {group}: cannot stop {}", join(.failures))]
    Stop { group: String, failures: Vec<ResourceFailure> },
}

impl GroupError {
    /// The key of the group concerned.
    pub fn group(&self) -> &str {
        match self {
            GroupError::Start { group, .. } | GroupError::Stop { group, .. } => group,
        }
    }
}

fn join(f: &[ResourceFailure]) -> String {
    f.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn undo_note(undo: &[ResourceFailure]) -> String {
    if undo.is_empty() {
        String::new()
    } else {
        format!(" (and while undoing the start, cannot stop {})", join(undo))
    }
}

/// What a probe found for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Running,
    Stopped,
    /// The answer could not be had or means trouble (agent missing, timed out, OCF error).
    Failed(String),
}

/// A virtual address the executor holds, for metrics and status views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldAddress {
    /// Key of the group holding it.
    pub group: String,
    /// The resource word.
    pub resource: String,
    pub addr: IpAddr,
    /// Interface it is on.
    pub iface: String,
    /// It was taken from `lo` (LVS-DR) and goes back there at stop.
    pub from_loopback: bool,
    /// Announcement bursts begun (the first one included).
    pub bursts: u32,
    /// ARP/NA frames sent so far.
    pub frames_sent: u64,
    /// Frames the kernel refused.
    pub frames_failed: u64,
    /// Why the last announcement could not be made, if it could not.
    pub last_error: Option<String>,
}

/// Starts, stops, probes and monitors resource groups; holds the built-in VIPs it started
/// and keeps announcing them. See the module documentation.
pub struct GroupExecutor {
    env: GroupEnv,
    shared: Arc<Shared>,
    /// Serialises the built-in VIP changes with [`GroupExecutor::check_addresses`], so a
    /// stop's removal is never taken for a removal behind halo's back.
    addr_ops: Mutex<()>,
    watch: Mutex<Option<AddrWatch>>,
    watch_fd: Option<RawFd>,
    watch_error: Option<String>,
    announcer: Option<JoinHandle<()>>,
    builtins: HashMap<String, Arc<dyn Builtin>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    held: HashMap<IpAddr, Held>,
    shutdown: bool,
}

struct Held {
    group: String,
    resource: String,
    spec: VipSpec,
    resolved: Resolved,
    lo_save: Option<LoopbackSave>,
    burst: Option<Burst>,
    next_burst: Option<Instant>,
    bursts: u32,
    frames_sent: u64,
    frames_failed: u64,
    last_error: Option<String>,
}

struct Burst {
    ann: Announcer,
    due: Instant,
}

/// Announcement schedule, copied into the background thread.
#[derive(Clone, Copy)]
struct Schedule {
    count: u32,
    interval: Duration,
    reannounce_after: Option<Duration>,
    refresh_interval: Option<Duration>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Held {
    /// A VIP just taken or adopted, nothing announced yet.
    fn new(
        group: &str,
        r: &ResourceSpec,
        spec: &VipSpec,
        resolved: Resolved,
        lo_save: Option<LoopbackSave>,
    ) -> Held {
        Held {
            group: group.to_string(),
            resource: r.raw.clone(),
            spec: spec.clone(),
            resolved,
            lo_save,
            burst: None,
            next_burst: None,
            bursts: 0,
            frames_sent: 0,
            frames_failed: 0,
            last_error: None,
        }
    }

    fn next_due(&self) -> Option<Instant> {
        match &self.burst {
            Some(b) => Some(b.due),
            None => self.next_burst,
        }
    }

    /// Sends whatever is due at `now`.
    fn tick(&mut self, now: Instant, s: &Schedule) {
        while let Some(due) = self.next_due() {
            if due > now {
                return;
            }
            match &mut self.burst {
                Some(b) => {
                    let next = b.ann.send_next();
                    if let Some(wait) = next {
                        b.due = now + wait;
                    } else {
                        self.end_burst(now, s);
                    }
                }
                None => self.begin_burst(now, s),
            }
        }
    }

    fn begin_burst(&mut self, now: Instant, s: &Schedule) {
        self.next_burst = None;
        self.bursts = self.bursts.saturating_add(1);
        match Announcer::open(&self.resolved, s.count, s.interval) {
            Ok(ann) => self.burst = Some(Burst { ann, due: now }),
            Err(e) => {
                self.last_error = Some(e.to_string());
                self.next_burst = s.refresh_interval.map(|d| now + d);
            }
        }
    }

    fn end_burst(&mut self, now: Instant, s: &Schedule) {
        if let Some(b) = self.burst.take() {
            let st = b.ann.stats();
            self.frames_sent += u64::from(st.sent());
            self.frames_failed += u64::from(st.failed);
            if let Some(e) = &st.first_error {
                self.last_error = Some(e.clone());
            }
        }
        let after =
            if self.bursts == 1 { s.reannounce_after.or(s.refresh_interval) } else { s.refresh_interval };
        self.next_burst = after.map(|d| now + d);
    }

    fn view(&self, addr: IpAddr) -> HeldAddress {
        let (sent, failed) = match &self.burst {
            Some(b) => (u64::from(b.ann.stats().sent()), u64::from(b.ann.stats().failed)),
            None => (0, 0),
        };
        HeldAddress {
            group: self.group.clone(),
            resource: self.resource.clone(),
            addr,
            iface: self.resolved.iface.clone(),
            from_loopback: self.lo_save.is_some(),
            bursts: self.bursts,
            frames_sent: self.frames_sent + sent,
            frames_failed: self.frames_failed + failed,
            last_error: self.last_error.clone(),
        }
    }
}

fn announcer_loop(shared: Arc<Shared>, s: Schedule) {
    let mut st = lock(&shared.state);
    loop {
        if st.shutdown {
            return;
        }
        let now = Instant::now();
        for h in st.held.values_mut() {
            h.tick(now, &s);
        }
        let next = st.held.values().filter_map(Held::next_due).min();
        st = match next {
            Some(t) => {
                let wait = t.saturating_duration_since(Instant::now());
                shared.wake.wait_timeout(st, wait).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0)
            }
            None => shared.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
        };
    }
}

/// A resource run inside the daemon rather than by a script, registered under a script
/// name with [`GroupExecutor::register_builtin`]. Each call gets the group key, the `::`
/// arguments of the word and a log sink; calls are blocking and come from worker threads
/// (never the heartbeat thread), one operation per group at a time.
pub trait Builtin: Send + Sync {
    /// Starts it (it is not running: `status` said so). `Err` names the reason.
    fn start(&self, group: &str, args: &[String], log: &mut dyn FnMut(Level, String)) -> Result<(), String>;
    /// Stops it; stopping what does not run is a success.
    fn stop(&self, group: &str, args: &[String], log: &mut dyn FnMut(Level, String)) -> Result<(), String>;
    /// Does it run? `Err` when that cannot be told.
    fn status(&self, args: &[String]) -> Result<bool, String>;
}

/// How a resource word is carried out.
enum Kind {
    /// Registered with [`GroupExecutor::register_builtin`].
    Builtin {
        builtin: Arc<dyn Builtin>,
        args: Vec<String>,
    },
    /// halo's own IPaddr (`alias_label`: give it an `iface:N` label) or IPaddr2.
    Ip {
        spec: VipSpec,
        alias_label: bool,
    },
    Agent {
        agent: Agent,
        args: Vec<String>,
        params: Vec<(String, String)>,
        instance: String,
    },
}

type Log<'a> = &'a mut dyn FnMut(Level, String);

impl GroupExecutor {
    /// An executor acting in the network namespace of the calling thread (see the module
    /// documentation). Starts the background announcer thread and opens the address watch;
    /// if the watch cannot be opened, [`GroupExecutor::watch_fd`] is `None` and
    /// [`GroupExecutor::watch_error`] says why ([`GroupExecutor::check_addresses`] still
    /// works when called periodically).
    pub fn new(env: GroupEnv) -> GroupExecutor {
        let shared = Arc::new(Shared { state: Mutex::new(State::default()), wake: Condvar::new() });
        let sched = Schedule {
            count: env.announce_count,
            interval: env.announce_interval,
            reannounce_after: env.reannounce_after,
            refresh_interval: env.refresh_interval,
        };
        let s2 = Arc::clone(&shared);
        let announcer =
            thread::Builder::new().name("halo-announce".into()).spawn(move || announcer_loop(s2, sched)).ok();
        let (watch, watch_error) = match AddrWatch::open() {
            Ok(w) => (Some(w), None),
            Err(e) => (None, Some(e.to_string())),
        };
        let watch_fd = watch.as_ref().map(AsRawFd::as_raw_fd);
        GroupExecutor {
            env,
            shared,
            addr_ops: Mutex::new(()),
            watch: Mutex::new(watch),
            watch_fd,
            watch_error,
            announcer,
            builtins: HashMap::new(),
        }
    }

    /// Carries out the resource words whose script name is `name` (`ldirectord` for
    /// `ldirectord` and `ldirectord::file.cf`) with `builtin` from now on. Words that name a
    /// script class explicitly (`heartbeat:NAME`, `ocf:`, `OCF::`) are not affected.
    pub fn register_builtin(&mut self, name: &str, builtin: Arc<dyn Builtin>) {
        self.builtins.insert(name.to_string(), builtin);
    }

    /// The settings this executor runs with.
    pub fn env(&self) -> &GroupEnv {
        &self.env
    }

    /// Starts the group's resources left to right (see the module documentation).
    pub fn start_group(&self, g: &ResourceGroup, log: Log) -> Result<(), GroupError> {
        let key = g.key().to_string();
        let words: Vec<&str> = g.resources.iter().map(|r| r.raw.as_str()).collect();
        log(Level::Info, format!("Acquiring resource group: {} {}", g.node, words.join(" ")));
        let mut started: Vec<usize> = Vec::new();
        for (i, r) in g.resources.iter().enumerate() {
            match self.start_one(&key, r, log) {
                Ok(true) => started.push(i),
                Ok(false) => {}
                Err(reason) => {
                    log(Level::Error, format!("{key}: cannot start {}: {reason}", r.raw));
                    log(Level::Crit, format!("Giving up resources due to failure of {}", r.raw));
                    let mut undo = Vec::new();
                    for &j in started.iter().rev() {
                        let rj = &g.resources[j];
                        if let Err(why) = self.stop_one(&key, rj, log) {
                            log(
                                Level::Error,
                                format!("{key}: cannot stop {} while undoing the start: {why}", rj.raw),
                            );
                            undo.push(ResourceFailure { resource: rj.raw.clone(), reason: why });
                        }
                    }
                    return Err(GroupError::Start { group: key, resource: r.raw.clone(), reason, undo });
                }
            }
        }
        log(Level::Info, format!("resource group {key} started"));
        Ok(())
    }

    /// Stops the group's resources right to left (see the module documentation).
    pub fn stop_group(&self, g: &ResourceGroup, log: Log) -> Result<(), GroupError> {
        let key = g.key().to_string();
        let words: Vec<&str> = g.resources.iter().map(|r| r.raw.as_str()).collect();
        log(Level::Info, format!("Releasing resource group: {} {}", g.node, words.join(" ")));
        let mut failures = Vec::new();
        for r in g.resources.iter().rev() {
            if let Err(reason) = self.stop_one(&key, r, log) {
                log(Level::Crit, format!("{key}: Resource STOP failure of {}: {reason}", r.raw));
                failures.push(ResourceFailure { resource: r.raw.clone(), reason });
            }
        }
        if failures.is_empty() {
            log(Level::Info, format!("resource group {key} stopped"));
            Ok(())
        } else {
            Err(GroupError::Stop { group: key, failures })
        }
    }

    /// Asks every resource of the group whether it runs, one answer per resource in the
    /// group's order. Changes nothing.
    pub fn probe_group(&self, g: &ResourceGroup, log: Log) -> Vec<ProbeResult> {
        let key = g.key();
        g.resources
            .iter()
            .map(|r| {
                let res = match self.classify(r) {
                    Err(why) => ProbeResult::Failed(why),
                    Ok(kind) => match self.status(&kind, r, Op::Status, log) {
                        Running::Yes => ProbeResult::Running,
                        Running::No => ProbeResult::Stopped,
                        Running::Failed(why) => ProbeResult::Failed(why),
                    },
                };
                log(Level::Debug, format!("{key}: probe of {}: {res:?}", r.raw));
                res
            })
            .collect()
    }

    /// Announces the group's held built-in addresses again now (a new burst: the first
    /// pair before returning, the rest in the background), e.g. once another node that held
    /// the same VIP during a partition let go: the network must forget that node's MAC.
    /// IPaddr/IPaddr2 run as external agents (`ocf:heartbeat:IPaddr2::ip=...`,
    /// `heartbeat:IPaddr2::...`) are announced here too: a burst sent from this call (it
    /// blocks for the burst), since no announcer holds their addresses.
    pub fn announce_group(&self, g: &ResourceGroup, log: Log) {
        for r in &g.resources {
            let kind = self.classify(r);
            if let Ok(Kind::Agent { agent, args, params, .. }) = &kind {
                if agent.name == "IPaddr" || agent.name == "IPaddr2" {
                    let addr = params
                        .iter()
                        .find(|(k, _)| k == "ip")
                        .and_then(|(_, v)| v.parse::<IpAddr>().ok())
                        .or_else(|| args.first().and_then(|a| vip::parse_ip_spec(a).ok()).map(|s| s.addr));
                    if let Some(Ok(Some(info))) = addr.map(on_nic) {
                        let resolved = Resolved {
                            addr: info.addr,
                            prefix: info.prefix,
                            iface: info.iface.clone(),
                            ifindex: info.ifindex,
                            label: None,
                            broadcast: None,
                        };
                        log(Level::Info, format!("{}: announcing {} again ({})", g.key(), info.addr, r.raw));
                        let count = self.env.announce_count.max(1);
                        if let Err(e) = vip::announce(&resolved, count, self.env.announce_interval) {
                            log(Level::Warn, format!("{}: announcing {}: {e}", g.key(), info.addr));
                        }
                    }
                }
                continue;
            }
            let Ok(Kind::Ip { spec, .. }) = kind else { continue };
            let _ops = lock(&self.addr_ops);
            let held = lock(&self.shared.state).held.remove(&spec.addr);
            let Some(mut h) = held else { continue };
            log(Level::Info, format!("{}: announcing {} again", h.group, h.resolved.addr));
            self.first_pair(&mut h, log);
            lock(&self.shared.state).held.insert(spec.addr, h);
            self.shared.wake.notify_all();
        }
    }

    /// Takes over a group found running by [`GroupExecutor::probe_group`] (a restarted
    /// daemon keeping what its predecessor started): every built-in VIP of it that is
    /// configured is held from now on — watched, restored if removed, refreshed — as if
    /// this executor had started it, but not announced at once (it may turn out to be an
    /// orphan whose group another node owns; [`GroupExecutor::announce_group`] announces when it is ours).
    /// Changes nothing else.
    pub fn adopt_group(&self, g: &ResourceGroup, log: Log) {
        let key = g.key();
        for r in &g.resources {
            if let Ok(Kind::Ip { spec, .. }) = self.classify(r) {
                if matches!(on_nic(spec.addr), Ok(Some(_))) {
                    log(Level::Info, format!("{key}: {} found configured; holding it", r.raw));
                    self.adopt_ip(key, r, &spec, false, log);
                }
            }
        }
    }

    /// Checks a started group: the index and reason of every resource that does not run
    /// (OCF `monitor`, `status` for the others, "address is on no interface but lo" for
    /// built-in VIPs).
    pub fn monitor_group(&self, g: &ResourceGroup, log: Log) -> Vec<(usize, String)> {
        let key = g.key();
        let mut failed = Vec::new();
        for (i, r) in g.resources.iter().enumerate() {
            let why = match self.classify(r) {
                Err(why) => Some(why),
                Ok(kind) => match self.status(&kind, r, Op::Monitor, log) {
                    Running::Yes => None,
                    Running::No => Some("not running".to_string()),
                    Running::Failed(why) => Some(why),
                },
            };
            if let Some(why) = why {
                log(Level::Warn, format!("{key}: monitor of {}: {why}", r.raw));
                failed.push((i, why));
            }
        }
        failed
    }

    /// The address watch's descriptor, to poll for readability (then call
    /// [`GroupExecutor::check_addresses`]). Valid as long as the executor lives.
    pub fn watch_fd(&self) -> Option<RawFd> {
        self.watch_fd
    }

    /// Why the address watch could not be opened, if it could not.
    pub fn watch_error(&self) -> Option<&str> {
        self.watch_error.as_deref()
    }

    /// Reads the pending address events and checks every held address: one that is no
    /// longer on an interface (other than `lo`) is added again and announced anew. Returns
    /// the keys of the groups whose address could not be put back.
    pub fn check_addresses(&self, log: Log) -> Vec<String> {
        if let Some(w) = lock(&self.watch).as_mut() {
            for ev in w.drain() {
                if let vip::AddrEvent::Lost { reason } = ev {
                    log(Level::Warn, format!("address events lost ({reason}); checking every held address"));
                }
            }
        }
        let _ops = lock(&self.addr_ops);
        let held: Vec<(IpAddr, String, String, VipSpec, Resolved)> = lock(&self.shared.state)
            .held
            .iter()
            .map(|(a, h)| (*a, h.group.clone(), h.resource.clone(), h.spec.clone(), h.resolved.clone()))
            .collect();
        let mut lost = Vec::new();
        for (addr, group, resource, spec, resolved) in held {
            match on_nic(addr) {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    log(Level::Error, format!("{group}: cannot check {resource}: {e}"));
                    continue;
                }
            }
            log(
                Level::Warn,
                format!(
                    "{group}: {addr} was removed from {} behind halo's back; adding it again",
                    resolved.iface
                ),
            );
            let readd = vip::add(&resolved).map(|()| resolved.clone()).or_else(|first| {
                // The interface may have been deleted and created again under a new index.
                let mut r = vip::resolve(&spec).map_err(|_| first)?;
                if r.iface == resolved.iface {
                    r.label.clone_from(&resolved.label);
                }
                vip::add(&r).map(|()| r)
            });
            match readd {
                Ok(r) => {
                    let mut st = lock(&self.shared.state);
                    if let Some(h) = st.held.get_mut(&addr) {
                        h.resolved = r;
                        h.burst = None;
                        h.next_burst = Some(Instant::now());
                        h.bursts = 0;
                    }
                    drop(st);
                    self.shared.wake.notify_all();
                    log(Level::Info, format!("{group}: {resource} restored and announced again"));
                }
                Err(e) => {
                    log(Level::Error, format!("{group}: cannot add {resource} again: {e}"));
                    if !lost.contains(&group) {
                        lost.push(group);
                    }
                }
            }
        }
        lost
    }

    /// The virtual addresses held now, with their announcement counters.
    pub fn held(&self) -> Vec<HeldAddress> {
        let st = lock(&self.shared.state);
        let mut v: Vec<HeldAddress> = st.held.iter().map(|(a, h)| h.view(*a)).collect();
        v.sort_by(|a, b| (&a.group, a.addr).cmp(&(&b.group, b.addr)));
        v
    }

    // ---- one resource ----

    /// Turns a resource word into what runs it.
    fn classify(&self, r: &ResourceSpec) -> Result<Kind, String> {
        let e = &self.env;
        match r.agent.as_str() {
            "IPaddr" | "IPaddr2" => {
                // haresources splits words on `::`, which cuts an IPv6 address in pieces
                // (`IPaddr2::2001:db8::5` → `2001:db8`, `5`): the argument is then
                // everything after the agent's `::` in the word as written.
                let whole = r.raw.strip_prefix(r.agent.as_str()).and_then(|x| x.strip_prefix("::"));
                let spec = match (r.args.as_slice(), whole.map(vip::parse_ip_spec)) {
                    ([arg], _) => vip::parse_ip_spec(arg).map_err(|e| e.to_string())?,
                    (_, Some(Ok(spec))) if spec.addr.is_ipv6() => spec,
                    (args, _) => {
                        return Err(format!(
                            "{} takes one argument, ip[/bits[/iface[:label]][/broadcast]], not {}",
                            r.agent,
                            args.len()
                        ))
                    }
                };
                Ok(Kind::Ip { spec, alias_label: r.agent == "IPaddr" })
            }
            a if self.builtins.contains_key(a) => {
                let builtin = Arc::clone(&self.builtins[a]);
                Ok(Kind::Builtin { builtin, args: r.args.clone() })
            }
            a if a.starts_with("heartbeat:") => {
                let name = &a["heartbeat:".len()..];
                if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0')
                {
                    return Err(AgentError::BadName(name.to_string()).to_string());
                }
                let path = e.config_dir.join("resource.d").join(name);
                if !is_executable_file(&path) {
                    return Err(
                        AgentError::NotFound { name: name.to_string(), looked_in: vec![path] }.to_string()
                    );
                }
                let agent = Agent {
                    name: name.to_string(),
                    class: AgentClass::Heartbeat,
                    path,
                    ocf_root: e.ocf_root.clone(),
                };
                Ok(Kind::Agent { agent, args: r.args.clone(), params: Vec::new(), instance: String::new() })
            }
            _ => {
                let (agent, args) = agents::resolve_spec(r, &e.config_dir, &e.init_dir, &e.ocf_root)
                    .map_err(|e| e.to_string())?;
                if !matches!(agent.class, AgentClass::Ocf { .. }) {
                    return Ok(Kind::Agent { agent, args, params: Vec::new(), instance: String::new() });
                }
                if r.agent == "OCF" {
                    let [instance] = args.as_slice() else {
                        return Err(format!(
                            "OCF::TYPE::INSTANCE takes one instance name, not {}",
                            args.len()
                        ));
                    };
                    if instance.is_empty() || instance.contains('/') || instance == "." || instance == ".." {
                        return Err(format!("invalid OCF instance name {instance:?}"));
                    }
                    let path = e.config_dir.join("conf").join("OCF").join(&agent.name).join(instance);
                    let text = fs::read_to_string(&path)
                        .map_err(|err| format!("cannot read the instance file {}: {err}", path.display()))?;
                    let params = parse_ocf_conf(&text, &path)?;
                    let instance = instance.clone();
                    return Ok(Kind::Agent { agent, args: Vec::new(), params, instance });
                }
                let mut params = Vec::new();
                for a in &args {
                    match a.split_once('=') {
                        Some((k, v)) if is_var_name(k) => params.push((k.to_string(), v.to_string())),
                        _ => {
                            return Err(format!(
                                "OCF agent {} takes name=value parameters, not {a:?}",
                                agent.name
                            ))
                        }
                    }
                }
                Ok(Kind::Agent { agent, args: Vec::new(), params, instance: String::new() })
            }
        }
    }

    /// Starts one resource unless it runs already: Ok(true) if this call started it.
    fn start_one(&self, key: &str, r: &ResourceSpec, log: Log) -> Result<bool, String> {
        let kind = self.classify(r)?;
        match self.status(&kind, r, Op::Status, log) {
            Running::Yes => {
                log(Level::Info, format!("{key}: {} is already running; not starting it", r.raw));
                if let Kind::Ip { spec, .. } = &kind {
                    self.adopt_ip(key, r, spec, true, log);
                }
                return Ok(false);
            }
            Running::No => {}
            Running::Failed(why) => {
                log(Level::Warn, format!("{key}: status of {} before start: {why}; starting it", r.raw));
            }
        }
        match &kind {
            Kind::Ip { spec, alias_label } => self.start_ip(key, r, spec, *alias_label, log)?,
            Kind::Builtin { builtin, args } => builtin.start(key, args, log)?,
            Kind::Agent { .. } => match self.run(&kind, r, Op::Start, log) {
                Running::Yes | Running::No => {}
                Running::Failed(why) => return Err(why),
            },
        }
        Ok(true)
    }

    /// Stops one resource, retrying; Ok when it is stopped (or status says so).
    fn stop_one(&self, key: &str, r: &ResourceSpec, log: Log) -> Result<(), String> {
        let kind = self.classify(r)?;
        let tries = self.env.stop_retries;
        let mut last = String::new();
        for attempt in 0..=tries {
            if attempt > 0 {
                log(
                    Level::Warn,
                    format!("{key}: stop of {} failed ({last}); retry {attempt} of {tries}", r.raw),
                );
                thread::sleep(self.env.stop_retry_interval);
            }
            let res = match &kind {
                Kind::Ip { spec, .. } => self.stop_ip(key, r, spec, log),
                Kind::Builtin { builtin, args } => builtin.stop(key, args, log),
                Kind::Agent { .. } => match self.run(&kind, r, Op::Stop, log) {
                    Running::Yes | Running::No => Ok(()),
                    Running::Failed(why) => Err(why),
                },
            };
            match res {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
        }
        match self.status(&kind, r, Op::Status, log) {
            Running::No => {
                log(
                    Level::Warn,
                    format!("{key}: {} did not stop cleanly ({last}) but status says it is stopped: probably not LSB-compliant", r.raw),
                );
                Ok(())
            }
            Running::Yes => Err(format!("{last}; status says it is still running")),
            Running::Failed(why) => Err(format!("{last}; and status failed: {why}")),
        }
    }

    /// Is it running? `op` is Status or Monitor.
    fn status(&self, kind: &Kind, r: &ResourceSpec, op: Op, log: Log) -> Running {
        match kind {
            Kind::Ip { spec, .. } => match on_nic(spec.addr) {
                Ok(Some(_)) => Running::Yes,
                Ok(None) => Running::No,
                Err(e) => Running::Failed(e.to_string()),
            },
            Kind::Builtin { builtin, args } => match builtin.status(args) {
                Ok(true) => Running::Yes,
                Ok(false) => Running::No,
                Err(why) => Running::Failed(why),
            },
            Kind::Agent { .. } => self.run(kind, r, op, log),
        }
    }

    /// Runs an external agent and reads its answer; logs the call and its output.
    fn run(&self, kind: &Kind, r: &ResourceSpec, op: Op, log: Log) -> Running {
        let Kind::Agent { agent, args, params, instance } = kind else {
            return Running::Failed("internal: not an agent".into());
        };
        let call = Call {
            agent,
            args,
            op,
            timeout: self.env.timeout,
            env: &self.env.env,
            ocf_params: params,
            instance,
        };
        let quiet = matches!(op, Op::Status | Op::Monitor);
        let level = if quiet { Level::Debug } else { Level::Info };
        log(level, format!("Running {}", call.command_line()));
        let o: Outcome = agents::run(&call);
        for line in o.stdout.lines().chain(o.stderr.lines()).filter(|l| !l.trim().is_empty()) {
            log(level, format!("{}: {line}", r.raw));
        }
        let res = agents::interpret_status(agent, op, &o);
        if let Running::Failed(why) = &res {
            // The reason is often the outcome itself ("exit 1"): say it once.
            let how = o.describe();
            let how = if *why == how { String::new() } else { format!(" ({how})") };
            log(Level::Error, format!("{} {} failed: {why}{how}", r.raw, op.word(&agent.class)));
        }
        res
    }

    // ---- built-in IPaddr / IPaddr2 ----

    fn start_ip(
        &self,
        key: &str,
        r: &ResourceSpec,
        spec: &VipSpec,
        alias_label: bool,
        log: Log,
    ) -> Result<(), String> {
        let _ops = lock(&self.addr_ops);
        let addr = spec.addr;
        let mut res = vip::resolve(spec).map_err(|e| e.to_string())?;
        if alias_label && res.label.is_none() && addr.is_ipv4() {
            res.label = Some(vip::next_free_label(&res.iface).map_err(|e| e.to_string())?);
        }
        let mut lo_save = vip::take_from_loopback(addr).map_err(|e| e.to_string())?;
        match &lo_save {
            Some(save) => {
                log(
                    Level::Info,
                    format!("{key}: {addr} was on {} (LVS-DR); taking it from there", save.iface),
                );
                if let Err(e) = self.persist_save(save) {
                    log(Level::Warn, format!("{key}: cannot save the loopback address of {addr}: {e}"));
                }
            }
            None => lo_save = self.load_save(addr, log),
        }
        let what = match &res.label {
            Some(l) => format!("{}/{} on {} label {l}", addr, res.prefix, res.iface),
            None => format!("{}/{} on {}", addr, res.prefix, res.iface),
        };
        log(Level::Info, format!("{key}: adding {what}"));
        if let Err(e) = vip::add(&res) {
            if let Some(save) = &lo_save {
                match vip::restore_loopback(save) {
                    Ok(()) => self.forget_save(addr),
                    Err(e2) => {
                        log(Level::Error, format!("{key}: cannot put {addr} back on {}: {e2}", save.iface))
                    }
                }
            }
            return Err(e.to_string());
        }
        let mut held = Held::new(key, r, spec, res, lo_save);
        self.first_pair(&mut held, log);
        lock(&self.shared.state).held.insert(addr, held);
        self.shared.wake.notify_all();
        Ok(())
    }

    /// The first request+reply pair (IPv6: the first NA) from this thread, the rest of the
    /// burst left to the background thread.
    fn first_pair(&self, h: &mut Held, log: Log) {
        if self.env.announce_count == 0 {
            return;
        }
        h.bursts = 1;
        let mut ann = match Announcer::open(&h.resolved, self.env.announce_count, self.env.announce_interval)
        {
            Ok(a) => a,
            Err(e) => {
                log(Level::Warn, format!("{}: cannot announce {}: {e}", h.group, h.resolved.addr));
                h.last_error = Some(e.to_string());
                h.next_burst = self.env.refresh_interval.map(|d| Instant::now() + d);
                return;
            }
        };
        let frames = if h.resolved.addr.is_ipv4() { 2 } else { 1 };
        let mut due = None;
        for i in 0..frames {
            due = ann.send_next();
            match due {
                Some(w) if i + 1 < frames => thread::sleep(w),
                _ => {}
            }
            if due.is_none() {
                break;
            }
        }
        if let Some(e) = &ann.stats().first_error {
            log(Level::Warn, format!("{}: announcing {}: {e}", h.group, h.resolved.addr));
        }
        let now = Instant::now();
        h.burst = Some(Burst { ann, due: now + due.unwrap_or_default() });
        if due.is_none() {
            let s = Schedule {
                count: self.env.announce_count,
                interval: self.env.announce_interval,
                reannounce_after: self.env.reannounce_after,
                refresh_interval: self.env.refresh_interval,
            };
            h.end_burst(now, &s);
        }
    }

    /// A VIP found running at start: hold it (watch, announce) without touching it.
    /// `announce`: send the first burst now (a start); else only the periodic refreshes (a
    /// restarted daemon's probe: the network already knows this MAC, and if the group turns
    /// out to be an orphan the owner's MAC must not be overridden).
    fn adopt_ip(&self, key: &str, r: &ResourceSpec, spec: &VipSpec, announce: bool, log: Log) {
        let _ops = lock(&self.addr_ops);
        let addr = spec.addr;
        if lock(&self.shared.state).held.contains_key(&addr) {
            return;
        }
        let Ok(Some(info)) = on_nic(addr) else { return };
        let resolved = Resolved {
            addr,
            prefix: info.prefix,
            iface: info.iface.clone(),
            ifindex: info.ifindex,
            label: info.label.clone().filter(|l| *l != info.iface),
            broadcast: vip::resolve(spec).ok().and_then(|r| r.broadcast),
        };
        let mut held = Held::new(key, r, spec, resolved, self.load_save(addr, log));
        if announce {
            self.first_pair(&mut held, log);
        } else {
            held.next_burst = self.env.refresh_interval.map(|d| Instant::now() + d);
        }
        lock(&self.shared.state).held.insert(addr, held);
        self.shared.wake.notify_all();
    }

    fn stop_ip(&self, key: &str, _r: &ResourceSpec, spec: &VipSpec, log: Log) -> Result<(), String> {
        let _ops = lock(&self.addr_ops);
        let addr = spec.addr;
        // Cancels its announcements too.
        let held = lock(&self.shared.state).held.remove(&addr);
        let lo_save = match held.and_then(|h| h.lo_save) {
            Some(s) => Some(s),
            None => self.load_save(addr, log),
        };
        for info in vip::present_all(addr).map_err(|e| e.to_string())? {
            if info.iface == "lo" {
                continue;
            }
            log(Level::Info, format!("{key}: removing {addr}/{} from {}", info.prefix, info.iface));
            vip::remove(&Resolved {
                addr,
                prefix: info.prefix,
                iface: info.iface.clone(),
                ifindex: info.ifindex,
                label: None,
                broadcast: None,
            })
            .map_err(|e| e.to_string())?;
        }
        if let Some(left) = on_nic(addr).map_err(|e| e.to_string())? {
            return Err(format!("{addr} is still on {}", left.iface));
        }
        if let Some(save) = lo_save {
            log(
                Level::Info,
                format!("{key}: putting {addr}/{} back on {} (LVS-DR)", save.prefix, save.iface),
            );
            vip::restore_loopback(&save).map_err(|e| {
                // Keep the save for the retry.
                let _ = self.persist_save(&save);
                format!("removed, but cannot put it back on {}: {e}", save.iface)
            })?;
            self.forget_save(addr);
        }
        Ok(())
    }

    // ---- LVS-DR loopback saves ----

    fn save_path(&self, addr: IpAddr) -> PathBuf {
        self.env.state_dir.join("lvs-lo").join(addr.to_string())
    }

    fn persist_save(&self, s: &LoopbackSave) -> Result<(), String> {
        let path = self.save_path(s.addr);
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let text = format_save(s);
        let tmp = path.with_extension("tmp");
        (|| -> std::io::Result<()> {
            fs::create_dir_all(&dir)?;
            let mut f = fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        })()
        .map_err(|e| format!("{}: {e}", path.display()))
    }

    fn load_save(&self, addr: IpAddr, log: Log) -> Option<LoopbackSave> {
        let path = self.save_path(addr);
        let text = fs::read_to_string(&path).ok()?;
        match parse_save(&text) {
            Some(s) if s.addr == addr => Some(s),
            _ => {
                log(Level::Warn, format!("ignoring unreadable loopback save {}", path.display()));
                None
            }
        }
    }

    fn forget_save(&self, addr: IpAddr) {
        let _ = fs::remove_file(self.save_path(addr));
    }
}

impl Drop for GroupExecutor {
    /// Stops the background thread. Held addresses stay configured: releasing them is
    /// [`GroupExecutor::stop_group`]'s job.
    fn drop(&mut self) {
        lock(&self.shared.state).shutdown = true;
        self.shared.wake.notify_all();
        if let Some(h) = self.announcer.take() {
            let _ = h.join();
        }
    }
}

/// Where `addr` is configured on an interface other than `lo`.
fn on_nic(addr: IpAddr) -> Result<Option<AddrInfo>, vip::VipError> {
    Ok(vip::present_all(addr)?.into_iter().find(|i| i.iface != "lo"))
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).map(|m| m.is_file()).unwrap_or(false)
        && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

fn is_var_name(k: &str) -> bool {
    let mut c = k.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// `<config_dir>/conf/OCF/TYPE/INSTANCE`: shell `VAR=value` lines (optionally `export`ed,
/// values optionally quoted), `#` comments and blank lines.
fn parse_ocf_conf(text: &str, path: &Path) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map(str::trim_start).unwrap_or(line);
        let bad = || format!("{}:{}: expected VAR=value, not {line:?}", path.display(), n + 1);
        let (k, v) = line.split_once('=').ok_or_else(bad)?;
        if !is_var_name(k) {
            return Err(bad());
        }
        let v = v.trim();
        let v = match (v.chars().next(), v.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(e)) if v.len() >= 2 && e == q => &v[1..v.len() - 1],
            _ => v.split(" #").next().unwrap_or(v).trim_end(),
        };
        let k = k.strip_prefix("OCF_RESKEY_").filter(|k| !k.is_empty()).unwrap_or(k);
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

fn format_save(s: &LoopbackSave) -> String {
    format!(
        "addr={}\nprefix={}\niface={}\nlabel={}\nscope={}\n",
        s.addr,
        s.prefix,
        s.iface,
        s.label.as_deref().unwrap_or(""),
        s.scope
    )
}

fn parse_save(text: &str) -> Option<LoopbackSave> {
    let mut f: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        let (k, v) = line.split_once('=')?;
        f.insert(k, v);
    }
    let label = f.get("label").copied().filter(|l| !l.is_empty()).map(str::to_string);
    let iface = f.get("iface").copied().filter(|i| !i.is_empty() && i.len() <= 15)?.to_string();
    Some(LoopbackSave {
        addr: f.get("addr")?.parse().ok()?,
        prefix: f.get("prefix")?.parse().ok()?,
        iface,
        label,
        scope: f.get("scope")?.parse().ok()?,
    })
}
