//! halo's built-in director: the haresources words `ldirectord` and `ldirectord::FILE`
//! (FILE looked up as ldirectord does: `<config_dir>/FILE`, `<config_dir>/conf/FILE`, then
//! as written; default `ldirectord.cf`) run it while their group is held.
//!
//! Wiring: [`Director`] implements halo-host's [`Builtin`]; `rsc::Groups::open` registers it
//! with the group executor under the script name `ldirectord`, so the executor starts, stops,
//! probes and monitors it like any resource (halo-host never depends on halo-lb). A word
//! naming the script explicitly (`heartbeat:ldirectord::FILE`) still runs Debian's
//! ldirectord.
//!
//! * start: read and validate the file (halo-config's parser, halo-lb's [`DirectorState`]:
//!   anything the nftables plane cannot run is refused with its line), resolve host names,
//!   apply the initial state (every real server down; `quiescent=yes` ones at weight 0), then
//!   run the checks in a thread of its own (`halo-director`, a tokio current-thread runtime:
//!   one task per virtual service checks each of its real servers once per `checkinterval`,
//!   at a stable phase of its own so that the checks spread over the interval, each check
//!   under its ldirectord timeout; at most a few hundred checks of the director in flight —
//!   see halo-lb's `check::pace`). Every change of a real server's health makes the applier
//!   task reconcile the table again (`NftDataPlane::apply` on tokio's blocking pool, never on
//!   the runtime's thread). start returns once every real server has been checked once and
//!   that applied (as ldirectord reports `running` only then), or after the longest check
//!   timeout if that comes first.
//! * stop: the thread ends (checks in flight are dropped) and, with `cleanstop=yes` (the
//!   default), the nftables table is deleted. Stopping a director that does not run still
//!   deletes a table left over by a killed daemon.
//! * status: running iff the director thread runs.
//! * `halo lvs`: [`Director::lvs_json`] (blocking: it reads the nft counters) gives the
//!   ipvsadm views of what runs, and the health of every real server.
//!
//! One director per configuration file; each has its own table (`halo_lb` for
//! `ldirectord.cf`, `halo_lb_<name>` for another file).

use halo_host::group::Builtin;
use halo_host::{Level, Logger};
use halo_lb::check::pace;
use halo_lb::dataplane::{Forward, Nft, NftDataPlane, RealStats, ServiceKey};
use halo_lb::director::{resolve_names, transition_message, DirectorState};
use halo_lb::ipvsadm;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The configuration file of a bare `ldirectord` word.
pub const DEFAULT_CF: &str = "ldirectord.cf";

/// Longest start waits for the first check pass.
const FIRST_PASS_WAIT_MAX: Duration = Duration::from_secs(40);

type Log<'a> = &'a mut dyn FnMut(Level, String);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The directors of one daemon, one per configuration file.
pub struct Director {
    config_dir: PathBuf,
    logger: Arc<Logger>,
    instances: Mutex<BTreeMap<PathBuf, Instance>>,
}

struct Instance {
    group: String,
    plane: NftDataPlane,
    state: Arc<Mutex<DirectorState>>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: JoinHandle<()>,
    cleanstop: bool,
    /// The last counters read, for `--rate`.
    sample: Mutex<Option<(Instant, Vec<RealStats>)>>,
    rates: Mutex<BTreeMap<(ServiceKey, SocketAddrV4), ipvsadm::Rates>>,
}

impl Director {
    pub fn new(config_dir: &Path, logger: Arc<Logger>) -> Director {
        Director { config_dir: config_dir.to_path_buf(), logger, instances: Mutex::new(BTreeMap::new()) }
    }

    /// The file an `ldirectord[::FILE]` word names.
    pub fn config_path(&self, args: &[String]) -> Result<PathBuf, String> {
        let name = match args {
            [] => DEFAULT_CF,
            [f] if !f.is_empty() => f.as_str(),
            _ => return Err(format!("ldirectord takes one configuration file, not {args:?}")),
        };
        let p = Path::new(name);
        if p.is_absolute() {
            return Ok(p.to_path_buf());
        }
        let candidates = [self.config_dir.join(p), self.config_dir.join("conf").join(p), p.to_path_buf()];
        Ok(candidates.iter().find(|c| c.is_file()).unwrap_or(&candidates[0]).clone())
    }

    /// The nftables table of a configuration file.
    pub fn table_for(path: &Path) -> String {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name == DEFAULT_CF {
            return halo_lb::dataplane::nft::DEFAULT_TABLE.to_string();
        }
        let stem: String = name
            .trim_end_matches(".cf")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(32)
            .collect();
        format!("{}_{stem}", halo_lb::dataplane::nft::DEFAULT_TABLE)
    }

    fn load(&self, path: &Path, log: Log) -> Result<DirectorState, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (cf, warnings) = halo_config::parse_ldirectord_cf(path, &text).map_err(|e| e.to_string())?;
        for w in warnings {
            log(Level::Warn, w.to_string());
        }
        let cf = resolve_names(&cf).map_err(|e| format!("{}: {e}", path.display()))?;
        let state = DirectorState::new(&cf).map_err(|e| format!("{}: {e}", path.display()))?;
        for s in &state.services {
            if let Some(why) = &s.fallback_unusable {
                log(Level::Warn, format!("virtual service {}: {why}; no fallback", s.id));
            }
        }
        if state.services.iter().any(|s| s.service.forward == Forward::Masq)
            && std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .map(|v| v.trim() == "0")
                .unwrap_or(false)
        {
            log(
                Level::Warn,
                "NAT virtual services but net.ipv4.ip_forward=0: the director will not forward".into(),
            );
        }
        Ok(state)
    }

    fn start_inner(&self, group: &str, args: &[String], log: Log) -> Result<(), String> {
        let path = self.config_path(args)?;
        if lock(&self.instances).get(&path).is_some_and(|i| !i.thread.is_finished()) {
            return Ok(());
        }
        let state = self.load(&path, log)?;
        let cleanstop = true;
        let table = Director::table_for(&path);
        let plane = NftDataPlane::new(Nft::new()).with_table(table.clone());
        plane.apply(&state.desired()).map_err(|e| format!("nftables table {table}: {e}"))?;
        log(
            Level::Info,
            format!(
                "director for {} started: {} virtual service(s), table ip {table}; real servers down until checked",
                path.display(),
                state.services.len()
            ),
        );
        let wait = (state.longest_check() + Duration::from_secs(2)).min(FIRST_PASS_WAIT_MAX);
        let state = Arc::new(Mutex::new(state));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let (state, plane, logger) = (Arc::clone(&state), plane.clone(), Arc::clone(&self.logger));
            std::thread::Builder::new()
                .name("halo-director".into())
                .spawn(move || {
                    halo_host::rt::set_normal();
                    director_thread(state, plane, stop_rx, logger, ready_tx)
                })
                .map_err(|e| format!("cannot start the director thread: {e}"))?
        };
        if ready_rx.recv_timeout(wait).is_err() {
            log(
                Level::Warn,
                format!("director for {}: first check pass not done yet; running", path.display()),
            );
        }
        let inst = Instance {
            group: group.to_string(),
            plane,
            state,
            stop,
            thread,
            cleanstop,
            sample: Mutex::new(None),
            rates: Mutex::new(BTreeMap::new()),
        };
        lock(&self.instances).insert(path, inst);
        Ok(())
    }

    fn stop_inner(&self, args: &[String], log: Log) -> Result<(), String> {
        let path = self.config_path(args)?;
        let inst = lock(&self.instances).remove(&path);
        let Some(inst) = inst else {
            // A table left by a daemon that was killed: nothing must forward any more.
            let plane = NftDataPlane::new(Nft::new()).with_table(Director::table_for(&path));
            match plane.remove() {
                Ok(true) => log(Level::Info, format!("removed the leftover table ip {}", plane.table())),
                Ok(false) => {}
                Err(e) => log(Level::Warn, format!("director for {}: {e}", path.display())),
            }
            return Ok(());
        };
        let _ = inst.stop.send(true);
        if inst.thread.join().is_err() {
            log(Level::Error, format!("the director thread for {} had panicked", path.display()));
        }
        if inst.cleanstop {
            inst.plane.remove().map_err(|e| format!("removing table ip {}: {e}", inst.plane.table()))?;
            log(
                Level::Info,
                format!("director for {} stopped; table ip {} removed", path.display(), inst.plane.table()),
            );
        }
        Ok(())
    }

    /// What `halo lvs` shows: the ipvsadm views (`list`, `stats`, `stats_exact`, `rate`,
    /// `conn`) of every running director, and each one's real servers with their health.
    /// Blocks (reads the nft counters): never call it on the heartbeat thread.
    pub fn lvs_json(&self) -> Value {
        let instances = lock(&self.instances);
        let mut model = ipvsadm::Model::default();
        let mut directors = Vec::new();
        for (path, inst) in instances.iter() {
            let running = !inst.thread.is_finished();
            let stats = inst.plane.stats().unwrap_or_default();
            let rates = inst.rates(&stats);
            let st = lock(&inst.state).clone();
            let mut m = st.model(&stats, &is_local);
            for s in &mut m.services {
                let ipvsadm::ServiceKey::Addr { addr: std::net::SocketAddr::V4(va), protocol } = s.key else {
                    continue;
                };
                let proto = if protocol == ipvsadm::Protocol::Udp {
                    halo_lb::dataplane::Protocol::Udp
                } else {
                    halo_lb::dataplane::Protocol::Tcp
                };
                let key = ServiceKey { protocol: proto, vip: *va.ip(), port: va.port() };
                for d in &mut s.dests {
                    let std::net::SocketAddr::V4(ra) = d.addr else { continue };
                    if let Some(r) = rates.get(&(key, ra)) {
                        d.rates = *r;
                        s.rates.inpps += r.inpps;
                        s.rates.outpps += r.outpps;
                        s.rates.inbps += r.inbps;
                        s.rates.outbps += r.outbps;
                    }
                }
            }
            model.services.extend(m.services);
            let services: Vec<Value> = st
                .services
                .iter()
                .map(|s| {
                    let d = s.desired();
                    json!({
                        "id": s.id,
                        "scheduler": s.service.scheduler,
                        "forward": if s.service.forward == Forward::Masq { "masq" } else { "gate" },
                        "quiescent": s.quiescent,
                        "fallback": s.fallback.map(|f| f.to_string()),
                        "fallback_active": s.fallback_active(),
                        "reals": s.reals.iter().map(|r| json!({
                            "addr": r.addr.to_string(),
                            "weight": r.weight,
                            "in_table": d.reals.iter().find(|x| x.addr == r.addr).map(|x| x.weight),
                            "health": r.checker.health().status(),
                            "last_check": r.checker.health().last().map(|c| c.reason.clone()),
                            "check": r.checker.spec().kind.name(),
                            // The data plane's counters (nft counts packets and bytes, not
                            // connections): the dashboard charts their rates.
                            "counters": stats
                                .iter()
                                .find(|x| x.service == d.key && x.real == r.addr)
                                .map(|x| json!({
                                    "inpkts": x.in_packets,
                                    "outpkts": x.out_packets,
                                    "inbytes": x.in_bytes,
                                    "outbytes": x.out_bytes,
                                })),
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            directors.push(json!({
                "config": path.display().to_string(),
                "group": inst.group,
                "table": inst.plane.table(),
                "running": running,
                "services": services,
            }));
        }
        lvs_views(&model, directors)
    }

    fn stats_key(s: &RealStats) -> (ServiceKey, SocketAddrV4) {
        (s.service, s.real)
    }
}

/// The answer when no director runs (or none is configured): empty IPVS views.
pub fn empty_lvs_json() -> Value {
    lvs_views(&ipvsadm::Model::default(), Vec::new())
}

fn lvs_views(model: &ipvsadm::Model, directors: Vec<Value>) -> Value {
    let exact = ipvsadm::Options { exact: true, ..ipvsadm::Options::default() };
    json!({
        "directors": directors,
        "list": ipvsadm::list(model),
        "stats": ipvsadm::list_stats(model),
        "stats_exact": ipvsadm::list_with(model, ipvsadm::View::Stats, &exact),
        "rate": ipvsadm::list_rate(model),
        "conn": ipvsadm::list_conn(model),
    })
}

impl Instance {
    /// Per-second rates from the previous counters read at least a second ago (the kernel's
    /// estimator averages over 2 s; here it is over the time between two `halo lvs`).
    fn rates(&self, now_stats: &[RealStats]) -> BTreeMap<(ServiceKey, SocketAddrV4), ipvsadm::Rates> {
        let now = Instant::now();
        let mut sample = lock(&self.sample);
        let mut rates = lock(&self.rates);
        match sample.as_ref() {
            Some((t, old)) if now.duration_since(*t) < Duration::from_secs(1) => {
                let _ = old;
            }
            Some((t, old)) => {
                let secs = now.duration_since(*t).as_secs_f64();
                let per = |a: u64, b: u64| (a.saturating_sub(b) as f64 / secs).round() as u64;
                rates.clear();
                for s in now_stats {
                    let Some(o) = old.iter().find(|o| Director::stats_key(o) == Director::stats_key(s))
                    else {
                        continue;
                    };
                    rates.insert(
                        Director::stats_key(s),
                        ipvsadm::Rates {
                            cps: 0,
                            inpps: per(s.in_packets, o.in_packets),
                            outpps: per(s.out_packets, o.out_packets),
                            inbps: per(s.in_bytes, o.in_bytes),
                            outbps: per(s.out_bytes, o.out_bytes),
                        },
                    );
                }
                *sample = Some((now, now_stats.to_vec()));
            }
            None => *sample = Some((now, now_stats.to_vec())),
        }
        rates.clone()
    }
}

/// This host's own address (a real server that is the director: IPVS shows it `Local`).
fn is_local(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

impl Builtin for Director {
    fn start(&self, group: &str, args: &[String], log: &mut dyn FnMut(Level, String)) -> Result<(), String> {
        self.start_inner(group, args, log)
    }

    fn stop(&self, _group: &str, args: &[String], log: &mut dyn FnMut(Level, String)) -> Result<(), String> {
        self.stop_inner(args, log)
    }

    fn status(&self, args: &[String]) -> Result<bool, String> {
        let path = self.config_path(args)?;
        Ok(lock(&self.instances).get(&path).is_some_and(|i| !i.thread.is_finished()))
    }
}

/// The director's cap on checks in flight, from its checks per second and longest timeout.
fn in_flight_limit(st: &DirectorState) -> usize {
    let per_s: f64 = st.services.iter().map(|s| s.reals.len() as f64 / s.checkinterval.as_secs_f64()).sum();
    pace::in_flight_cap(per_s, st.longest_check())
}

fn director_thread(
    state: Arc<Mutex<DirectorState>>,
    plane: NftDataPlane,
    mut stop: tokio::sync::watch::Receiver<bool>,
    logger: Arc<Logger>,
    ready: mpsc::Sender<()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            logger.log(Level::Crit, &format!("director: cannot build its runtime: {e}"));
            return;
        }
    };
    rt.block_on(async move {
        let changed = Arc::new(tokio::sync::Notify::new());
        let first_done = Arc::new(AtomicUsize::new(0));
        let (n, limit) = {
            let st = lock(&state);
            (st.services.len(), in_flight_limit(&st))
        };
        let limit = Arc::new(tokio::sync::Semaphore::new(limit));
        let mut tasks = tokio::task::JoinSet::new();
        for si in 0..n {
            tasks.spawn(service_loop(
                si,
                Arc::clone(&state),
                Arc::clone(&changed),
                Arc::clone(&first_done),
                Arc::clone(&limit),
                stop.clone(),
                Arc::clone(&logger),
            ));
        }
        let mut ready = Some(ready);
        loop {
            tokio::select! {
                _ = changed.notified() => {}
                _ = stop.changed() => break,
            }
            let desired = lock(&state).desired();
            let p = plane.clone();
            match tokio::task::spawn_blocking(move || p.apply(&desired)).await {
                Ok(Ok(changes)) if !changes.is_empty() => {
                    let what: Vec<String> = changes.iter().map(ToString::to_string).collect();
                    logger.log(
                        Level::Debug,
                        &format!("director: table ip {}: {}", plane.table(), what.join(", ")),
                    );
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    logger.log(Level::Error, &format!("director: applying table ip {}: {e}", plane.table()))
                }
                Err(e) => logger.log(Level::Error, &format!("director: apply task: {e}")),
            }
            if first_done.load(Ordering::SeqCst) >= n {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
        }
        tasks.abort_all();
    });
}

/// The checks of one virtual service, until stopped: each real server once per
/// `checkinterval` at its own phase, the first check of each at once (halo-lb's
/// [`pace`](halo_lb::check::pace)), at most `limit` checks of the director in flight. Each
/// result is recorded as it comes; a change of state wakes the applier at once.
async fn service_loop(
    si: usize,
    state: Arc<Mutex<DirectorState>>,
    changed: Arc<tokio::sync::Notify>,
    first_done: Arc<AtomicUsize>,
    limit: Arc<tokio::sync::Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    logger: Arc<Logger>,
) {
    let pacer = {
        let st = lock(&state);
        let s = &st.services[si];
        let targets: Vec<_> = s.reals.iter().map(|r| r.checker.spec().target).collect();
        pace::Pacer::new(tokio::time::Instant::now(), s.checkinterval, &targets)
    };
    let check = |ri: usize| {
        let spec = lock(&state).services[si].reals[ri].checker.next_spec_shared();
        let (state, changed, logger) = (Arc::clone(&state), Arc::clone(&changed), Arc::clone(&logger));
        async move {
            let result = halo_lb::check::run_check(&spec).await;
            let mut st = lock(&state);
            let up = result.up;
            let reason = if up { String::new() } else { result.reason.clone() };
            if let Some(t) = st.record(si, ri, result) {
                let msg = transition_message(&st.services[si], ri, t);
                drop(st);
                logger.log(Level::Info, &format!("director: {msg}"));
                changed.notify_one();
            } else if !up {
                let addr = st.services[si].reals[ri].addr;
                drop(st);
                logger.log(Level::Debug, &format!("director: check of {addr} failed: {reason}"));
            }
        }
    };
    let first_pass = || {
        first_done.fetch_add(1, Ordering::SeqCst);
        changed.notify_one();
    };
    tokio::select! {
        () = pace::drive(pacer, limit, check, first_pass) => {}
        _ = stop.changed() => {}
    }
}
