//! The runtime side of resource groups: carries out the engine's `StartGroup`, `StopGroup`
//! and `Announce` on worker threads (never the heartbeat thread), monitors running groups,
//! watches held addresses, and reports back through a channel and a wake-up pipe that the
//! heartbeat thread polls.
//!
//! One operation per group at a time: an operation asked while another runs for the same
//! group waits in a queue. Monitors run only for groups the engine says are running and
//! nothing else is happening to.
use halo_config::{CloneSpec, ResourceGroup};
use halo_core::Event;
use halo_host::group::{GroupEnv, GroupExecutor, ProbeResult};
use halo_host::{Level, Logger};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// How often a running group is monitored (`status` / OCF `monitor`).
pub const MONITOR_INTERVAL_MS: u64 = 5000;
/// How often held addresses are verified even without a netlink event.
const ADDR_CHECK_MS: i32 = 5000;

/// What a worker reports: the group it has finished with (free for the next operation),
/// and the event for the engine, if there is news.
struct Done {
    freed: Option<String>,
    event: Option<Event>,
    /// A stop asked by a reload finished (the key, and the error if it failed): the engine
    /// does not hear of it; the reload does.
    reload_stopped: Option<(String, Option<String>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Start,
    Stop,
    Announce,
    Monitor,
    /// A stop for a reload (the group was removed or changed): reported to the reload.
    ReloadStop,
}

pub struct Groups {
    exec: Arc<GroupExecutor>,
    director: Arc<crate::director::Director>,
    groups: BTreeMap<String, ResourceGroup>,
    logger: Arc<Logger>,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    wake_tx: Arc<OwnedFd>,
    wake_rx: OwnedFd,
    busy: BTreeSet<String>,
    queued: BTreeMap<String, VecDeque<Op>>,
    last_monitor_ms: u64,
    /// Groups being stopped by a reload: never monitored, their monitor failures ignored.
    retiring: BTreeSet<String>,
    reload_stopped: Vec<(String, Option<String>)>,
}

fn wake(fd: &OwnedFd) {
    let _ = nix::unistd::write(fd, &[1u8]);
}

impl Groups {
    /// Opens the executor (in this thread's network namespace), probes every group, and
    /// returns the runtime with the keys of the groups found fully running. A group found
    /// partly running is stopped first: half a group is an orphan, never a holding.
    ///
    /// halo.toml's clones run like groups whose key is the clone's name (the engine starts
    /// and stops this node's instance with that key).
    pub fn open(
        groups: &[ResourceGroup],
        clones: &[CloneSpec],
        config_dir: &Path,
        state_dir: &Path,
        node: &str,
        logger: Arc<Logger>,
    ) -> anyhow::Result<(Groups, Vec<String>)> {
        let env = GroupEnv {
            config_dir: config_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            env: vec![
                ("HA_CURHOST".into(), node.to_string()),
                ("HA_DIR".into(), config_dir.display().to_string()),
                ("HA_FUNCS".into(), config_dir.join("shellfuncs").display().to_string()),
                ("HA_RSCTMP".into(), "/run/resource-agents".into()),
            ],
            ..GroupEnv::default()
        };
        // `ldirectord` words run halo's own director (see crate::director).
        let director = Arc::new(crate::director::Director::new(config_dir, Arc::clone(&logger)));
        let mut exec = GroupExecutor::new(env);
        exec.register_builtin("ldirectord", Arc::clone(&director) as Arc<dyn halo_host::group::Builtin>);
        // cl_respawn's job as a resource: `respawn::/path/to/daemon::args` (or `cl_respawn::...`).
        let respawn: Arc<dyn halo_host::group::Builtin> =
            Arc::new(crate::supervise::Respawn::new(state_dir.to_path_buf(), Arc::clone(&logger)));
        exec.register_builtin("respawn", Arc::clone(&respawn));
        exec.register_builtin("cl_respawn", respawn);
        let exec = Arc::new(exec);
        if let Some(e) = exec.watch_error() {
            logger.log(
                Level::Warn,
                &format!("cannot watch addresses ({e}): held VIPs are checked every 5 s only"),
            );
        }
        let mut running = Vec::new();
        let all = definitions(groups, clones);
        for (key, g) in &all {
            let key = key.clone();
            let mut log = |l: Level, s: String| logger.log(l, &s);
            let probe = exec.probe_group(g, &mut log);
            let up = probe.iter().filter(|p| **p == ProbeResult::Running).count();
            for (r, p) in g.resources.iter().zip(&probe) {
                if let ProbeResult::Failed(why) = p {
                    logger.log(Level::Warn, &format!("probe of {} in group {key}: {why}", r.raw));
                }
            }
            if up == probe.len() && up > 0 {
                logger.log(
                    Level::Info,
                    &format!("group {key} is running here already (probed): held, not started again"),
                );
                // Its addresses are ours to watch and announce, as if we had started them.
                exec.adopt_group(g, &mut log);
                running.push(key);
            } else if up > 0 {
                logger.log(
                    Level::Warn,
                    &format!("group {key} is partly running here ({up} of {} resources): stopping it before joining", probe.len()),
                );
                if let Err(e) = exec.stop_group(g, &mut log) {
                    logger.log(Level::Crit, &format!("{e}"));
                }
            }
        }
        let (tx, rx) = mpsc::channel();
        let (wake_rx, wake_tx) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
        let wake_tx = Arc::new(wake_tx);
        let me = Groups {
            exec,
            director,
            groups: all.into_iter().collect(),
            logger,
            tx,
            rx,
            wake_tx,
            wake_rx,
            busy: BTreeSet::new(),
            queued: BTreeMap::new(),
            last_monitor_ms: 0,
            retiring: BTreeSet::new(),
            reload_stopped: Vec::new(),
        };
        me.watch_addresses();
        Ok((me, running))
    }

    /// The built-in director (`ldirectord` words), for `halo lvs`.
    pub fn director(&self) -> Arc<crate::director::Director> {
        Arc::clone(&self.director)
    }

    /// The descriptor the heartbeat thread polls: readable when results are waiting.
    pub fn fd(&self) -> RawFd {
        self.wake_rx.as_raw_fd()
    }

    /// Results of finished operations, as engine events.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake_rx, &mut buf), Ok(n) if n > 0) {}
        let mut evs = Vec::new();
        while let Ok(done) = self.rx.try_recv() {
            if let Some(k) = done.freed {
                self.busy.remove(&k);
                self.next(&k);
            }
            if let Some(r) = done.reload_stopped {
                self.reload_stopped.push(r);
            }
            match done.event {
                Some(Event::MonitorFailed { key, .. }) if self.retiring.contains(&key) => {}
                ev => evs.extend(ev),
            }
        }
        evs
    }

    pub fn start(&mut self, key: &str) {
        self.submit(key, Op::Start);
    }

    pub fn stop(&mut self, key: &str) {
        self.submit(key, Op::Stop);
    }

    pub fn announce(&mut self, key: &str) {
        self.submit(key, Op::Announce);
    }

    /// When [`monitor`](Self::monitor) has work next.
    pub fn next_monitor_ms(&self) -> u64 {
        self.last_monitor_ms + MONITOR_INTERVAL_MS
    }

    /// Monitors the groups `running` says run here, at most every [`MONITOR_INTERVAL_MS`].
    pub fn monitor(&mut self, now_ms: u64, running: &[String]) {
        if now_ms < self.last_monitor_ms + MONITOR_INTERVAL_MS {
            return;
        }
        self.last_monitor_ms = now_ms;
        for k in running {
            if !self.retiring.contains(k)
                && !self.busy.contains(k)
                && self.queued.get(k).is_none_or(|q| q.is_empty())
            {
                self.submit(k, Op::Monitor);
            }
        }
    }

    /// Stops a group for a reload (removed or changed): with its current definition, after
    /// whatever is queued for it; [`take_reload_stopped`](Self::take_reload_stopped) reports
    /// the end.
    pub fn reload_stop(&mut self, key: &str) {
        self.retiring.insert(key.to_string());
        self.queued.entry(key.to_string()).or_default().retain(|op| *op != Op::Monitor);
        self.submit(key, Op::ReloadStop);
    }

    /// Reload stops that finished since the last call: (key, error).
    pub fn take_reload_stopped(&mut self) -> Vec<(String, Option<String>)> {
        std::mem::take(&mut self.reload_stopped)
    }

    /// A reload's new definitions (haresources groups and clones). Groups stopped for the
    /// reload are no longer retiring; a group left untouched keeps running as it is.
    pub fn set_definitions(&mut self, groups: &[ResourceGroup], clones: &[CloneSpec]) {
        self.groups = definitions(groups, clones).into_iter().collect();
        self.retiring.clear();
    }

    fn submit(&mut self, key: &str, op: Op) {
        self.queued.entry(key.to_string()).or_default().push_back(op);
        if !self.busy.contains(key) {
            self.next(key);
        }
    }

    fn next(&mut self, key: &str) {
        let Some(op) = self.queued.get_mut(key).and_then(|q| q.pop_front()) else { return };
        let Some(g) = self.groups.get(key).cloned() else {
            self.logger.log(Level::Error, &format!("no resource group {key} in haresources"));
            return;
        };
        self.busy.insert(key.to_string());
        let exec = Arc::clone(&self.exec);
        let logger = Arc::clone(&self.logger);
        let tx = self.tx.clone();
        let wake_tx = Arc::clone(&self.wake_tx);
        let key = key.to_string();
        let spawned =
            std::thread::Builder::new().name(format!("halo-rsc-{op:?}").to_lowercase()).spawn(move || {
                halo_host::rt::set_normal();
                let mut log = |l: Level, s: String| logger.log(l, &s);
                let freed = Some(key.clone());
                if op == Op::ReloadStop {
                    let err = exec.stop_group(&g, &mut log).err().map(|e| e.to_string());
                    let _ = tx.send(Done { freed, event: None, reload_stopped: Some((key, err)) });
                    wake(&wake_tx);
                    return;
                }
                let event = match op {
                    Op::Start => match exec.start_group(&g, &mut log) {
                        Ok(()) => Some(Event::GroupStarted { key, ok: true, detail: String::new() }),
                        Err(e) => Some(Event::GroupStarted { key, ok: false, detail: e.to_string() }),
                    },
                    Op::Stop => match exec.stop_group(&g, &mut log) {
                        Ok(()) => Some(Event::GroupStopped { key, ok: true, detail: String::new() }),
                        Err(e) => Some(Event::GroupStopped { key, ok: false, detail: e.to_string() }),
                    },
                    Op::Announce => {
                        exec.announce_group(&g, &mut log);
                        None
                    }
                    Op::ReloadStop => None,
                    Op::Monitor => {
                        let failed = exec.monitor_group(&g, &mut log);
                        if failed.is_empty() {
                            None
                        } else {
                            let why = failed
                                .iter()
                                .map(|(i, w)| {
                                    format!(
                                        "{}: {w}",
                                        g.resources.get(*i).map(|r| r.raw.as_str()).unwrap_or("?")
                                    )
                                })
                                .collect::<Vec<_>>()
                                .join("; ");
                            Some(Event::MonitorFailed { key, why })
                        }
                    }
                };
                let _ = tx.send(Done { freed, event, reload_stopped: None });
                wake(&wake_tx);
            });
        if let Err(e) = spawned {
            self.logger.log(Level::Crit, &format!("cannot start a worker thread: {e}"));
        }
    }

    /// A thread of its own waits for address changes and restores held VIPs removed behind
    /// halo's back; a VIP that cannot be restored fails its group.
    fn watch_addresses(&self) {
        let exec = Arc::clone(&self.exec);
        let logger = Arc::clone(&self.logger);
        let tx = self.tx.clone();
        let wake_tx = Arc::clone(&self.wake_tx);
        let _ = std::thread::Builder::new().name("halo-addrwatch".into()).spawn(move || loop {
            match exec.watch_fd() {
                Some(fd) => {
                    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
                    // SAFETY: one valid pollfd for the duration of the call.
                    unsafe { libc::poll(&mut p, 1, ADDR_CHECK_MS) };
                }
                None => std::thread::sleep(Duration::from_millis(ADDR_CHECK_MS as u64)),
            }
            let mut log = |l: Level, s: String| logger.log(l, &s);
            for key in exec.check_addresses(&mut log) {
                let event = Some(Event::MonitorFailed { key, why: ADDR_LOST.into() });
                let _ = tx.send(Done { freed: None, event, reload_stopped: None });
                wake(&wake_tx);
            }
        });
    }
}

/// Every group the runtime runs, by key: haresources groups and halo.toml's clones (a clone
/// runs like a group whose key is its name).
pub fn definitions(groups: &[ResourceGroup], clones: &[CloneSpec]) -> Vec<(String, ResourceGroup)> {
    groups
        .iter()
        .map(|g| (g.key().to_string(), g.clone()))
        .chain(clones.iter().map(|c| {
            (
                c.name.clone(),
                ResourceGroup { node: String::new(), line: c.line, resources: c.resources.clone() },
            )
        }))
        .collect()
}

const ADDR_LOST: &str = "a held address was removed and could not be restored";
