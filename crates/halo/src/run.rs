//! `halo run`: the daemon. Loads and validates the configuration (refusing to start with
//! the reason when it is invalid), raises the generation, opens the links, and drives the
//! engine from one poll(2) loop: packets in, ticks at the engine's deadlines, actions out.
use crate::control;
use crate::rsc::Groups;
use anyhow::{anyhow, bail, Context};
use halo_config::{AuthMethodName, GenMethod, Model, MsgFmt, UuidFrom};
use halo_core::{Action, CoreConfig, Engine, Event, GroupConfig, Level, Now, OperatorCmd, RscSet};
use halo_host::{Links, LogConfig, Logger};
use halo_wire::{AuthMethod, DropReason, Keyring, Message};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub struct RunArgs {
    pub config_dir: PathBuf,
    pub node: Option<String>,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// A group whose members may use the control socket too (mode 0660); root only when None.
    pub socket_group: Option<String>,
    /// Serve `/metrics` and `/api/status` over HTTP at this address (off when None).
    pub http: Option<std::net::SocketAddr>,
}

/// Heartbeat's own state file: a node migrating from Heartbeat keeps a generation its
/// peers will accept.
const LEGACY_GENERATION: &str = "/var/lib/heartbeat/hb_generation";
const LEGACY_UUID: &str = "/var/lib/heartbeat/hb_uuid";
/// How often the `ld` field (the load average) is refreshed: it is informational, and
/// reading /proc on every heartbeat would be a file access on the hot path.
const LOAD_REFRESH_MS: u64 = 5000;
/// Repeated drop warnings of one reason are logged at most this often.
const DROP_LOG_QUIET_MS: u64 = 5000;

/// Loads the configuration and resolves this node's name; shared with `halo check`.
pub fn load(config_dir: &Path, node: Option<&str>) -> anyhow::Result<(Model, Vec<String>, String)> {
    let loaded = halo_config::load_dir(config_dir)
        .map_err(|e| anyhow!("invalid configuration in {}:\n{e}", config_dir.display()))?;
    let warnings = loaded.warnings.iter().map(|w| w.to_string()).collect();
    let model = loaded.model;
    let uname = nix::sys::utsname::uname().context("uname")?;
    let name = match node {
        Some(n) => n.to_ascii_lowercase(),
        None => model.local_node_name(&uname.nodename().to_string_lossy()),
    };
    Ok((model, warnings, name))
}

pub fn keyring(model: &Model) -> Keyring {
    let keys = model
        .authkeys
        .keys
        .iter()
        .map(|k| {
            let m = match k.method {
                AuthMethodName::Crc => AuthMethod::Crc,
                AuthMethodName::Md5 => AuthMethod::Md5,
                AuthMethodName::Sha1 => AuthMethod::Sha1,
                AuthMethodName::Sha256 => AuthMethod::Sha256,
            };
            (k.index, m, k.key.clone().unwrap_or_default().into_bytes())
        })
        .collect();
    Keyring::new(model.authkeys.active, keys)
}

fn level(l: Level) -> halo_host::Level {
    match l {
        Level::Debug => halo_host::Level::Debug,
        Level::Info => halo_host::Level::Info,
        Level::Warn => halo_host::Level::Warn,
        Level::Error => halo_host::Level::Error,
        Level::Crit => halo_host::Level::Crit,
    }
}

/// Test hook: this many milliseconds (signed) are added to the wall clock the daemon puts
/// in its heartbeats (`ts`, `halo_ms`) and measures its peers' clocks against, as if this
/// host's clock were that far off. Network namespaces share one clock, so the end-to-end
/// tests of the clock-skew check set it on one node; nothing else should.
pub const TEST_CLOCK_OFFSET_ENV: &str = "HALO_TEST_CLOCK_OFFSET_MS";

struct Clock {
    start: Instant,
    offset_ms: i64,
}

impl Clock {
    fn new() -> Clock {
        let offset_ms =
            std::env::var(TEST_CLOCK_OFFSET_ENV).ok().and_then(|v| v.trim().parse::<i64>().ok()).unwrap_or(0);
        Clock { start: Instant::now(), offset_ms }
    }

    fn now(&self) -> Now {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(1000);
        let wall_ms = wall.saturating_add(self.offset_ms).max(1000) as u64;
        Now { ms: self.start.elapsed().as_millis() as u64, wall_secs: wall_ms / 1000, wall_ms }
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    // systemd (Type=notify): read and clear its variables before any thread starts.
    let sd = crate::notify::Notifier::from_env();
    let (model, warnings, node) = load(&args.config_dir, args.node.as_deref())?;
    model.check_local_node(&node).map_err(|e| anyhow!("{e}"))?;
    let hc = &model.ha_cf;

    let logger = Arc::new(
        Logger::new(LogConfig {
            logfile: hc.logfile.clone(),
            debugfile: hc.debugfile.clone(),
            facility: hc.logfacility.clone(),
            ident: "halo".into(),
            node: node.clone(),
            debug_level: hc.debug,
            stderr: true,
            syslog_socket: PathBuf::from("/dev/log"),
        })
        .context("opening the logs")?,
    );
    logger.set_stderr_journal(crate::notify::stderr_is_journal());
    for w in &warnings {
        logger.log(halo_host::Level::Warn, w);
    }

    let now_secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    // Heartbeat's own state is honoured (and kept in step) only by a node using the system
    // state directory: that is the node being migrated, not a test or a second instance.
    let system = args.state_dir == Path::new(crate::DEFAULT_STATE_DIR);
    let legacy_gen = Path::new(LEGACY_GENERATION);
    let legacy_uuid = Path::new(LEGACY_UUID);
    let generation = halo_host::next_generation(
        &args.state_dir,
        hc.hbgenmethod == GenMethod::Time,
        (system && legacy_gen.exists()).then_some(legacy_gen),
        now_secs,
    )
    .with_context(|| format!("raising the generation in {}", args.state_dir.display()))?;
    let uuid = halo_host::node_uuid_with_legacy(
        &args.state_dir,
        (hc.uuidfrom == UuidFrom::Nodename).then_some(node.as_str()),
        (system && legacy_uuid.exists()).then_some(legacy_uuid),
    )
    .with_context(|| format!("reading the node uuid in {}", args.state_dir.display()))?;

    let mut links = Links::open(&hc.media, hc.udpport).context("opening the heartbeat links")?;

    // Ping nodes: echo replies reach the heartbeat thread through a channel and a pipe.
    let (aux_tx, aux_rx) = mpsc::channel::<Event>();
    let (aux_wake_rx, aux_wake_tx): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
    let aux_wake_tx = Arc::new(aux_wake_tx);
    // STONITH devices (ha.cf stonith/stonith_host): fences run on worker threads and report
    // through the same channel and pipe as the ping replies.
    let fence_devices = halo_host::fence::parse_devices(
        hc.stonith.as_deref(),
        &hc.stonith_host,
        &halo_host::fence::plugin_dir(),
    )
    .map_err(|e| anyhow::anyhow!("ha.cf: {e}"))?;
    let fencing = if fence_devices.is_empty() {
        None
    } else {
        let fencers = halo_host::fence::fencers(&fence_devices, &hc.nodes);
        logger.log(
            halo_host::Level::Info,
            &format!(
                "STONITH: {} device(s); nodes that can fence: {}{}",
                fence_devices.len(),
                fencers.join(" "),
                if fence_devices.iter().any(|d| d.usable_by(&node)) { "" } else { " (not this one)" }
            ),
        );
        Some(Arc::new(crate::fence::Fencing::new(
            fence_devices,
            node.clone(),
            fencers,
            aux_tx.clone(),
            Arc::clone(&aux_wake_tx),
            Arc::clone(&logger),
        )))
    };
    let mut targets = Vec::new();
    for p in &hc.ping_nodes {
        let mut addrs = Vec::new();
        for a in &p.addrs {
            match a.parse::<std::net::IpAddr>() {
                Ok(ip) => addrs.push(ip),
                Err(_) => logger.log(
                    halo_host::Level::Warn,
                    &format!("ping node {}: {a:?} is not an IP address; not pinged", p.name),
                ),
            }
        }
        targets.push(halo_host::net::ping::PingTarget { node: p.name.clone(), addrs });
    }
    let _pinger = if targets.is_empty() {
        None
    } else {
        let interval = std::time::Duration::from_millis(hc.keepalive_ms.max(10));
        let started = halo_host::net::ping::start(targets, interval, move |node| {
            let _ = aux_tx.send(Event::PingReply { node: node.to_string() });
            let _ = nix::unistd::write(&*aux_wake_tx, &[1u8]);
        });
        Some(started.context("opening raw ICMP sockets for the ping nodes")?)
    };
    // Director connection sync (ha.cf `lvs_sync_daemon`): a thread of its own.
    if let Some(ls) = &hc.lvs_sync {
        crate::dirsync::spawn(ls.clone(), node.clone(), crate::dirsync::keys(&model), Arc::clone(&logger));
    }
    let keyring = keyring(&model);

    // Signals are read from a signalfd in the poll loop; block them before any thread
    // starts so that every thread inherits the mask.
    let mut mask = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        mask.add(s);
    }
    mask.thread_block().context("blocking signals")?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;

    let (wake_rx, wake_tx): (OwnedFd, OwnedFd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
    let (req_tx, req_rx) = mpsc::channel();
    control::serve(&args.socket, args.socket_group.as_deref(), req_tx, wake_tx)?;
    if let Some(addr) = args.http {
        // A client of the control socket like the CLI: the heartbeat thread only ever
        // hands it snapshots.
        crate::http::serve(addr, args.socket.clone())?;
        logger.log(halo_host::Level::Info, &format!("metrics and status served on http://{addr}/"));
    }

    // Resource groups: probe what already runs here before deciding anything. Done before
    // this thread turns real-time, so the executor's own threads run at normal priority.
    let haresources = model.haresources.as_ref().map(|h| h.groups.clone()).unwrap_or_default();
    let placement = &model.placement;
    let (groups, running_at_start) = if haresources.is_empty() && placement.clones.is_empty() {
        (None, Vec::new())
    } else {
        let (g, running) = Groups::open(
            &haresources,
            &placement.clones,
            &args.config_dir,
            &args.state_dir,
            &node,
            Arc::clone(&logger),
        )?;
        (Some(g), running)
    };

    if hc.realtime {
        match halo_host::set_realtime(hc.rtprio) {
            Ok(p) => {
                logger.log(halo_host::Level::Info, &format!("heartbeat thread at real-time priority {p}"))
            }
            Err(e) => {
                logger.log(halo_host::Level::Warn, &format!("realtime: {e}; running at normal priority"))
            }
        }
        if let Err(e) = halo_host::lock_memory() {
            logger.log(halo_host::Level::Warn, &format!("realtime: cannot lock memory: {e}"));
        }
    }

    let links_names: Vec<String> = (0..links.len()).map(|i| links.name(i).to_string()).collect();
    for (i, name) in links_names.iter().enumerate() {
        logger.log(halo_host::Level::Info, &format!("{} link {name} opened", links.kind(i)));
    }
    let mut engine = Engine::new(core_config(
        &model,
        RunFields {
            node: node.clone(),
            generation,
            uuid,
            links: links_names,
            flow_control: true,
            seed: generation ^ u64::from(std::process::id()) ^ now_secs.rotate_left(17),
            running_at_start,
            ping_nodes: hc.ping_nodes.iter().map(|p| p.name.clone()).collect(),
            fencing: fencing.as_ref().map(|f| f.core_config()),
        },
    ));

    // Carried in every heartbeat, so that the nodes see whether they run one configuration.
    engine.set_config_digest(halo_config::config_digest(&model));

    // Notify hooks: a thread of their own (started after the signal mask is set).
    let hooks = crate::hooks::Hooks::start(
        &node,
        hc.notify.iter().map(|n| n.command.clone()).collect(),
        Arc::clone(&logger),
        crate::hooks::HOOK_TIMEOUT,
    );
    let director_texts =
        crate::cmd::reload::read_director_files(&model, &args.config_dir).unwrap_or_default();

    let has_serial = links.has_serial();
    let mut daemon = Daemon {
        clock: Clock::new(),
        engine: &mut engine,
        links: &mut links,
        keyring,
        netstring_only: hc.msgfmt == MsgFmt::Netstring,
        logger: &logger,
        wire_dropped: BTreeMap::new(),
        drop_quiet: BTreeMap::new(),
        send_quiet: BTreeMap::new(),
        last_load_ms: None,
        log_badpack: hc.log_badpack,
        has_serial,
        groups,
        model: model.clone(),
        exit: false,
        leave_by_ms: None,
        respawn_specs: hc
            .respawn
            .iter()
            .map(|r| halo_host::respawn::Spec {
                user: r.user.clone(),
                command: r.command.clone(),
                pidfile: None,
            })
            .collect(),
        respawn: None,
        sd,
        fencing,
        split_brains: load_split_brains(&args.state_dir, &logger),
        reload: ReloadState::new(&args, &node, hooks, director_texts),
    };
    let code = daemon.run(&sigfd, &wake_rx, &req_rx, &aux_wake_rx, &aux_rx);
    if let Some(sup) = daemon.respawn.take() {
        logger.log(halo_host::Level::Info, "stopping the respawn children");
        sup.stop();
    }
    let _ = std::fs::remove_file(&args.socket);
    daemon.sd.stopping("stopped");
    code
}

struct Daemon<'a> {
    clock: Clock,
    engine: &'a mut Engine,
    links: &'a mut Links,
    keyring: Keyring,
    netstring_only: bool,
    logger: &'a Arc<Logger>,
    wire_dropped: BTreeMap<&'static str, u64>,
    drop_quiet: BTreeMap<&'static str, u64>,
    send_quiet: BTreeMap<usize, u64>,
    last_load_ms: Option<u64>,
    log_badpack: bool,
    has_serial: bool,
    groups: Option<Groups>,
    /// The configuration: haresources for the resources of each group in status, ha.cf's
    /// recorded parameters for `cl_status hbparameter`.
    model: Model,
    /// The engine said the graceful shutdown is complete.
    exit: bool,
    /// A shutdown in progress gives up waiting for the groups to stop at this time.
    leave_by_ms: Option<u64>,
    /// STONITH devices and the meatware confirmations (None: no fencing configured).
    fencing: Option<Arc<crate::fence::Fencing>>,
    /// ha.cf `respawn` lines, started once communication is up (as Heartbeat does).
    respawn_specs: Vec<halo_host::respawn::Spec>,
    respawn: Option<halo_host::respawn::Supervisor>,
    /// systemd's notify socket: READY, WATCHDOG, STATUS, STOPPING.
    sd: crate::notify::Notifier,
    /// Split-brains of earlier runs (from the state directory) and the writer of the file.
    split_brains: crate::cmd::status::SplitBrainHistory,
    /// `halo reload` / SIGHUP, and the notify hooks with what they last saw.
    reload: ReloadState,
}

/// How long a graceful shutdown waits for the groups to stop (each stop has its own
/// timeouts and retries) before leaving anyway.
const LEAVE_GRACE_MS: u64 = 120_000;

enum Source {
    Link,
    Signal,
    Wake,
    Groups,
    /// Ping replies.
    Aux,
}

impl Daemon<'_> {
    fn run(
        &mut self,
        sigfd: &SignalFd,
        wake: &OwnedFd,
        requests: &mpsc::Receiver<control::Request>,
        aux_wake: &OwnedFd,
        aux: &mpsc::Receiver<Event>,
    ) -> anyhow::Result<i32> {
        let mut fds: Vec<(libc::pollfd, Source)> = Vec::new();
        let pfd = |fd: RawFd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        for (_, fd) in self.links.poll_fds() {
            fds.push((pfd(fd), Source::Link));
        }
        fds.push((pfd(sigfd.as_raw_fd()), Source::Signal));
        fds.push((pfd(wake.as_raw_fd()), Source::Wake));
        if let Some(g) = &self.groups {
            fds.push((pfd(g.fd()), Source::Groups));
        }
        fds.push((pfd(aux_wake.as_raw_fd()), Source::Aux));
        let mut raw: Vec<libc::pollfd> = fds.iter().map(|(p, _)| *p).collect();
        let mut received = Vec::new();
        let mut actions = Vec::new();
        let mut hung_up = Vec::new();

        // The first event starts the engine (it sends its first status at once).
        let now = self.clock.now();
        self.engine.handle(now, Event::Tick, &mut actions);
        self.apply(&mut actions);
        let status = self.sd_status();
        self.sd.ready(Instant::now(), &status);

        loop {
            let now = self.clock.now();
            let deadline = self.engine.next_deadline();
            let mut timeout = deadline.saturating_sub(now.ms).min(1000) as libc::c_int;
            if let Some(d) = self.sd.until_ping(Instant::now()) {
                timeout = timeout.min(d.as_millis() as libc::c_int);
            }
            for p in raw.iter_mut() {
                p.revents = 0;
            }
            // SAFETY: `raw` is a valid, exclusively borrowed array of pollfd for the call.
            let n = unsafe { libc::poll(raw.as_mut_ptr(), raw.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                bail!("poll: {err}");
            }
            // Receive everything first: after a stall, the packets that waited in the socket
            // buffers must count before any death verdict of the tick below.
            let now = self.clock.now();
            for (i, p) in raw.iter().enumerate() {
                if p.revents == 0 {
                    continue;
                }
                match fds[i].1 {
                    Source::Link => {
                        received.clear();
                        if let Err(e) = self.links.recv(p.fd, &mut received) {
                            self.logger.log(halo_host::Level::Error, &format!("receive error: {e}"));
                            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                                // A serial line hung up: stop polling it rather than spin.
                                hung_up.push(i);
                            }
                        }
                        for (link, bytes) in received.drain(..) {
                            self.deliver(now, link, &bytes, &mut actions);
                        }
                    }
                    Source::Signal => {
                        while let Ok(Some(info)) = sigfd.read_signal() {
                            match Signal::try_from(info.ssi_signo as i32) {
                                Ok(sig @ (Signal::SIGUSR1 | Signal::SIGUSR2)) => {
                                    // As Heartbeat: USR1 raises the debug level, USR2 lowers it.
                                    let d = self.logger.debug_level();
                                    let d = if sig == Signal::SIGUSR1 {
                                        d.saturating_add(1)
                                    } else {
                                        d.saturating_sub(1)
                                    };
                                    self.logger.set_debug_level(d);
                                    self.logger
                                        .log(halo_host::Level::Info, &format!("{sig}: debug level now {d}"));
                                }
                                Ok(Signal::SIGHUP) => {
                                    self.logger.reopen();
                                    self.logger.log(halo_host::Level::Info, "SIGHUP: log files reopened");
                                    // And the configuration read again (the answer is logged).
                                    let _ = self.reload(now, &mut actions);
                                }
                                Ok(sig) => {
                                    if self.leave_by_ms.is_some() {
                                        self.logger.log(
                                            halo_host::Level::Warn,
                                            &format!("{sig} again: leaving now, without waiting for the groups to stop"),
                                        );
                                        return Ok(1);
                                    }
                                    self.logger.log(
                                        halo_host::Level::Info,
                                        &format!("{sig}: shutting down: releasing resources, then telling the cluster"),
                                    );
                                    self.leave_by_ms = Some(now.ms + LEAVE_GRACE_MS);
                                    self.sd.stopping("releasing resources, then leaving the cluster");
                                    self.engine.handle(now, Event::Shutdown, &mut actions);
                                    self.apply(&mut actions);
                                }
                                Err(_) => {}
                            }
                        }
                    }
                    Source::Aux => {
                        let mut buf = [0u8; 256];
                        while matches!(nix::unistd::read(aux_wake, &mut buf), Ok(n) if n > 0) {}
                        while let Ok(ev) = aux.try_recv() {
                            if let Event::FenceDone { node, ok, detail } = &ev {
                                let e = if *ok { "fence_done" } else { "fence_failed" };
                                self.reload.hooks.emit(e, node, "", detail);
                            }
                            self.engine.handle(now, ev, &mut actions);
                        }
                    }
                    Source::Groups => {
                        let (evs, stopped) = match self.groups.as_mut() {
                            Some(g) => (g.drain(), g.take_reload_stopped()),
                            None => (Vec::new(), Vec::new()),
                        };
                        for ev in evs {
                            self.group_event(&ev);
                            self.engine.handle(now, ev, &mut actions);
                        }
                        self.reload_stopped(now, stopped, &mut actions);
                    }
                    Source::Wake => {
                        let mut buf = [0u8; 64];
                        while matches!(nix::unistd::read(wake, &mut buf), Ok(n) if n > 0) {}
                        while let Ok(req) = requests.try_recv() {
                            // `lvs` reads nft counters (blocking): answered from a thread
                            // of its own with the director's state, never on this one.
                            if req.cmd.split_whitespace().next() == Some("lvs") {
                                let director = self.groups.as_ref().map(|g| g.director());
                                let _ =
                                    std::thread::Builder::new().name("halo-lvs".into()).spawn(move || {
                                        halo_host::rt::set_normal();
                                        let v = match director {
                                            Some(d) => d.lvs_json(),
                                            None => crate::director::empty_lvs_json(),
                                        };
                                        let _ = req.reply.send(v.to_string());
                                    });
                                continue;
                            }
                            let answer = self.answer(now, &req.cmd);
                            let _ = req.reply.send(answer);
                        }
                    }
                }
            }
            for i in hung_up.drain(..) {
                raw[i].fd = -1;
            }
            // A reload gave a daemon without groups its first ones: poll their results too.
            if let Some(fd) = self.reload.groups_opened.take() {
                fds.push((pfd(fd), Source::Groups));
                raw.push(pfd(fd));
            }
            self.apply(&mut actions);
            if self.exit {
                self.logger.log(halo_host::Level::Info, "halo stopped");
                return Ok(0);
            }
            if self.leave_by_ms.is_some_and(|t| now.ms >= t) {
                self.logger.log(
                    halo_host::Level::Crit,
                    "shutdown: resource groups did not stop in time; leaving without shutdone (peers wait deadtime)",
                );
                return Ok(1);
            }
            if self.respawn.is_none() && !self.respawn_specs.is_empty() && self.engine.comm_up() {
                let logger = Arc::clone(self.logger);
                let log: Arc<dyn Fn(halo_host::Level, String) + Send + Sync> =
                    Arc::new(move |l, m: String| logger.log(l, &m));
                self.respawn = Some(halo_host::respawn::Supervisor::start(&self.respawn_specs, log));
            }
            if let Some(g) = self.groups.as_mut() {
                if now.ms >= g.next_monitor_ms() {
                    let running = self.engine.running_groups();
                    g.monitor(now.ms, &running);
                }
            }
            let now = self.clock.now();
            if now.ms >= self.engine.next_deadline() {
                if self.last_load_ms.is_none_or(|t| now.ms >= t + LOAD_REFRESH_MS) {
                    self.last_load_ms = Some(now.ms);
                    self.engine.handle(now, Event::Load(halo_host::loadavg()), &mut actions);
                }
                self.engine.handle(now, Event::Tick, &mut actions);
                self.apply(&mut actions);
                if self.leave_by_ms.is_none() && self.sd.status_due(Instant::now()) {
                    let status = self.sd_status();
                    self.sd.status(&status);
                }
            }
            self.sd.watchdog_tick(Instant::now());
        }
    }

    /// The one-line status systemd shows (`systemctl status halo`).
    fn sd_status(&self) -> String {
        let st = self.engine.status(self.clock.now());
        let nodes = st.nodes.iter().filter(|n| n.kind != "ping");
        let up = nodes.clone().filter(|n| n.state == "active" || n.state == "up").count();
        let held = self.engine.running_groups().len();
        format!("{up} of {} nodes up, {held} group(s) held here, {}", nodes.count(), st.state)
    }

    fn deliver(&mut self, now: Now, link: usize, bytes: &[u8], actions: &mut Vec<Action>) {
        match halo_wire::decode(bytes, &self.keyring) {
            Ok(msg) => {
                if self.logger.debug_level() > 0 {
                    self.logger.log(
                        halo_host::Level::Debug,
                        &format!(
                            "got {} from {} (seq {}) on link {}",
                            msg.kind().unwrap_or("?"),
                            msg.get("src").unwrap_or("?"),
                            msg.get("seq").unwrap_or("-"),
                            self.links.name(link)
                        ),
                    );
                }
                self.engine.handle(now, Event::Message { link, msg }, actions)
            }
            Err(reason) => self.dropped(now, link, reason, bytes),
        }
    }

    fn dropped(&mut self, now: Now, link: usize, reason: DropReason, bytes: &[u8]) {
        let label = reason.label();
        *self.wire_dropped.entry(label).or_default() += 1;
        if !self.log_badpack {
            return;
        }
        let quiet = self.drop_quiet.entry(label).or_default();
        if now.ms < *quiet {
            return;
        }
        *quiet = now.ms + DROP_LOG_QUIET_MS;
        // Name the claimed sender if the packet says one; never trust it further than that.
        let src = halo_wire::codec::decode_unverified(bytes)
            .ok()
            .and_then(|m| m.get("src").map(|s| s.chars().take(64).collect::<String>()))
            .unwrap_or_else(|| "?".into());
        self.logger.log(
            halo_host::Level::Warn,
            &format!(
                "dropped a packet on link {} claiming to be from [{src}]: {label} (further ones logged at most every {} s; all are counted)",
                self.links.name(link),
                DROP_LOG_QUIET_MS / 1000
            ),
        );
    }

    fn apply(&mut self, actions: &mut Vec<Action>) {
        self.observe();
        for a in actions.drain(..) {
            match a {
                Action::Send(m) => self.send(&m),
                Action::Log(l, text) => self.logger.log(level(l), &text),
                Action::StartGroup { key, reason } => {
                    self.logger.log(halo_host::Level::Info, &format!("starting group {key}: {reason}"));
                    self.group_action(&key, &reason, true);
                    if let Some(g) = self.groups.as_mut() {
                        g.start(&key);
                    }
                }
                Action::StopGroup { key, reason } => {
                    self.logger.log(halo_host::Level::Info, &format!("stopping group {key}: {reason}"));
                    self.group_action(&key, &reason, false);
                    if let Some(g) = self.groups.as_mut() {
                        g.stop(&key);
                    }
                }
                Action::Announce { key } => {
                    if let Some(g) = self.groups.as_mut() {
                        g.announce(&key);
                    }
                }
                Action::Fence { node } => {
                    self.reload.hooks.emit("fence_requested", &node, "", "");
                    match &self.fencing {
                        Some(f) => f.fence(&node),
                        None => self
                            .logger
                            .log(halo_host::Level::Error, &format!("cannot fence {node}: no STONITH device")),
                    }
                }
                Action::Exit => self.exit = true,
            }
        }
        self.persist_split_brains();
    }

    fn send(&mut self, m: &Message) {
        let datagram = if self.netstring_only {
            halo_wire::codec::encode_netstring_only(m, &self.keyring)
        } else {
            halo_wire::encode(m, &self.keyring)
        };
        // Only serial lines carry classic text; don't sign a second rendering for nothing.
        let classic = if self.has_serial { halo_wire::encode_classic(m, &self.keyring) } else { Vec::new() };
        let failures = self.links.send_all(&datagram, &classic);
        if failures.is_empty() {
            return;
        }
        // A link that cannot send (interface down, no route) fails on every heartbeat:
        // say so, but at most once per link every DROP_LOG_QUIET_MS, not per packet.
        let now = self.clock.now().ms;
        for (link, e) in failures {
            let quiet = self.send_quiet.entry(link).or_default();
            if now >= *quiet {
                *quiet = now + DROP_LOG_QUIET_MS;
                self.logger.log(
                    halo_host::Level::Error,
                    &format!(
                        "cannot send on link {}: {e} (repeats are not logged for a while)",
                        self.links.name(link)
                    ),
                );
            }
        }
    }

    fn answer(&mut self, now: Now, cmd: &str) -> String {
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let set = |w: Option<&&str>| -> Result<RscSet, String> {
            let w = w.copied().unwrap_or("all");
            RscSet::parse(w).filter(|s| *s != RscSet::NONE).ok_or_else(|| {
                format!("'{w}' is not a resource set: expected all, local, foreign or failback")
            })
        };
        let op = match words.first().copied() {
            Some("status") => {
                let mut v = status_json(&self.engine.status(now), &self.wire_dropped, self.links);
                v["split_brains"] = self.split_brains_json(now);
                v["resources"] = resources_json(&self.engine.resource_status(now));
                v["hooks"] = self.reload.hooks.json();
                if let Some(h) = &self.model.haresources {
                    crate::cmd::status::add_group_resources(&mut v, &h.groups);
                }
                crate::cmd::status::add_consistency(&mut v, &self.engine.consistency());
                return v.to_string();
            }
            Some("reload") => {
                let mut actions = Vec::new();
                let r = self.reload(now, &mut actions);
                self.apply(&mut actions);
                return match r {
                    Ok(v) => v.to_string(),
                    Err(e) => control::error_json(&e),
                };
            }
            Some("parameter") => {
                let name = words.get(1).copied().unwrap_or("");
                return crate::cmd::cl_status::parameter_json(&self.model.ha_cf, name).to_string();
            }
            Some("standby") => set(words.get(1)).map(OperatorCmd::Standby),
            Some("takeover") => set(words.get(1)).map(OperatorCmd::Takeover),
            Some("cleanup") => Ok(OperatorCmd::Cleanup(words.get(1).map(|s| s.to_string()))),
            Some("fence") => {
                let r = self.fence_command(now, &words[1..]);
                return match r {
                    Ok(msg) => serde_json::json!({ "ok": msg }).to_string(),
                    Err(e) => control::error_json(&e),
                };
            }
            _ => Err(format!("unknown command '{cmd}'")),
        };
        let op = match op {
            Ok(op) => op,
            Err(e) => return control::error_json(&e),
        };
        let mut actions = Vec::new();
        let r = self.engine.operator(now, op, &mut actions);
        self.apply(&mut actions);
        match r {
            Ok(msg) => serde_json::json!({ "ok": msg }).to_string(),
            Err(e) => control::error_json(&e),
        }
    }
}

impl Daemon<'_> {
    /// `fence confirm NODE`: the operator vouches that NODE is down. A meatware fence
    /// waiting for it completes; otherwise a fence the engine awaits (no device, or one that
    /// keeps failing) ends as if it had succeeded.
    fn fence_command(&mut self, now: Now, words: &[&str]) -> Result<String, String> {
        let ["confirm", node] = words else {
            return Err("usage: fence confirm NODE".into());
        };
        let node = node.to_lowercase();
        if self.fencing.as_ref().is_some_and(|f| f.meatware.confirm(&node)) {
            self.logger.log(
                halo_host::Level::Info,
                &format!("operator confirmed that node {node} was reset (meatware)"),
            );
            return Ok(format!("meatware fence of {node} confirmed"));
        }
        let pending = self.engine.resource_status(now).fencing.iter().any(|f| f.node == node);
        if !pending {
            return Err(format!("no fence of {node} is pending"));
        }
        self.logger.log(
            halo_host::Level::Warn,
            &format!("operator confirmed that node {node} is down: its fence ends"),
        );
        let mut actions = Vec::new();
        let ev =
            Event::FenceDone { node: node.clone(), ok: true, detail: "confirmed by the operator".into() };
        self.engine.handle(now, ev, &mut actions);
        self.apply(&mut actions);
        Ok(format!("fence of {node} confirmed by the operator"))
    }
}

pub fn resources_json(r: &halo_core::ResourceStatus) -> serde_json::Value {
    use serde_json::json;
    json!({
        "managed": r.managed,
        "auto_failback": r.auto_failback,
        "standby": r.standby,
        "rscstatus": r.rscstatus,
        "stable": r.stable,
        "failovers": r.failovers,
        "groups": r.groups.iter().map(|g| json!({
            "key": g.key,
            "node": g.preferred,
            "name": g.name,
            "nodes": g.preferred_nodes,
            "state": g.state,
            "holders": g.holders,
            "desired": g.desired,
            "failed": g.failed_here,
            "last_error": g.last_error,
        })).collect::<Vec<_>>(),
        "clones": r.clones.iter().map(|c| json!({
            "name": c.name,
            "nodes": c.nodes,
            "state": c.state,
            "running_on": c.running_on,
            "failed_on": c.failed_on,
            "last_error": c.last_error,
        })).collect::<Vec<_>>(),
        "fencing": r.fencing.iter().map(|f| json!({
            "node": f.node,
            "state": f.state,
            "fencer": f.fencer,
            "attempts": f.attempts,
            "last_error": f.last_error,
            "pending_ms": f.pending_ms,
            "retry_in_ms": f.retry_in_ms,
        })).collect::<Vec<_>>(),
    })
}

/// The one-minute load average of an `ld` field (`0.42 0.30 0.12 1/123 4567`).
fn load1(ld: &str) -> Option<f64> {
    ld.split_whitespace().next()?.parse::<f64>().ok().filter(|l| l.is_finite())
}

pub fn status_json(
    st: &halo_core::ClusterStatus,
    wire_dropped: &BTreeMap<&'static str, u64>,
    links: &Links,
) -> serde_json::Value {
    use serde_json::json;
    let mut dropped: BTreeMap<&str, u64> = wire_dropped.iter().map(|(k, v)| (*k, *v)).collect();
    for (k, v) in &st.dropped {
        *dropped.entry(k).or_default() += v;
    }
    let nodes: Vec<_> = st
        .nodes
        .iter()
        .map(|n| {
            json!({
                "name": n.name,
                "state": n.state,
                "type": n.kind,
                "generation": n.generation,
                "uuid": n.uuid.map(|u| u.iter().map(|b| format!("{b:02x}")).collect::<String>()),
                "links": n.links.iter().map(|l| json!({"name": l.name, "state": l.state})).collect::<Vec<_>>(),
                "last_heard_ms": n.last_heard_ms,
                "load": n.load,
                "load1": n.load.as_deref().and_then(load1),
                "deadtime_ms": n.deadtime_ms,
                "late_heartbeats": n.late_heartbeats,
                "lost_packets": n.lost_packets,
                // Cumulative: [[le_ms, intervals <= le_ms], ...]; `count` is the +Inf bucket.
                "heartbeat_interval": n.heartbeat_interval.as_ref().map(|h| json!({
                    "buckets": h.cumulative(),
                    "sum_ms": h.sum_ms,
                    "count": h.count,
                })),
            })
        })
        .collect();
    let link_stats: Vec<_> = (0..links.len())
        .map(|i| {
            let s = links.stats(i);
            json!({
                "name": links.name(i),
                "kind": links.kind(i),
                "rx_packets": s.rx_packets,
                "rx_bytes": s.rx_bytes,
                "tx_packets": s.tx_packets,
                "tx_bytes": s.tx_bytes,
                "tx_dropped": s.tx_dropped,
                "rx_errors": s.rx_errors,
            })
        })
        .collect();
    json!({
        "node": st.node,
        "state": st.state,
        "generation": st.generation,
        "comm_up": st.comm_up,
        "flow_control": st.flow_control,
        "nodes": nodes,
        "dropped": dropped,
        "links": link_stats,
        "sent_messages": st.sent_messages,
        "retransmitted": st.retransmitted,
        "max_lateness_ms": st.max_lateness_ms,
        "quorum": json!({
            "have": st.quorum.have,
            "votes": st.quorum.votes,
            "expected": st.quorum.expected,
            "tie_breaker": st.quorum.tie_breaker,
            "policy": st.quorum.policy,
        }),
    })
}

// ----------------------------------------------------------------- split-brain history

fn load_split_brains(state_dir: &Path, logger: &Arc<Logger>) -> crate::cmd::status::SplitBrainHistory {
    let l = Arc::clone(logger);
    let on_error = move |e: String| l.log(halo_host::Level::Error, &e);
    let (history, warning) = crate::cmd::status::SplitBrainHistory::load(state_dir, on_error);
    if let Some(w) = warning {
        logger.log(halo_host::Level::Warn, &w);
    }
    history
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl Daemon<'_> {
    fn split_brains_json(&self, now: Now) -> serde_json::Value {
        self.split_brains.json(self.engine.split_brains(), now.ms, unix_ms())
    }

    /// Keeps the history file in step with the engine's episodes (a counter compare when
    /// nothing changed).
    fn persist_split_brains(&mut self) {
        if !self.split_brains.changed(self.engine.split_brains()) {
            return;
        }
        let now = self.clock.now().ms;
        self.split_brains.persist(self.engine.split_brains(), now, unix_ms());
    }
}

// ------------------------------------------------------------ reload and notify hooks

/// What of the engine's configuration is this run's own rather than the files': kept by a
/// reload (ping nodes and fencing need a restart, see `cmd::reload`).
struct RunFields {
    node: String,
    generation: u64,
    uuid: [u8; 16],
    links: Vec<String>,
    flow_control: bool,
    seed: u64,
    running_at_start: Vec<String>,
    ping_nodes: Vec<String>,
    fencing: Option<halo_core::FencingConfig>,
}

impl RunFields {
    fn of(c: &CoreConfig) -> RunFields {
        RunFields {
            node: c.node.clone(),
            generation: c.generation,
            uuid: c.uuid,
            links: c.links.clone(),
            flow_control: c.flow_control,
            seed: c.seed,
            running_at_start: c.running_at_start.clone(),
            ping_nodes: c.ping_nodes.clone(),
            fencing: c.fencing.clone(),
        }
    }
}

/// The engine's configuration: what the model says (timing, nodes, placement, quorum
/// policy), at start and at every reload, over this run's own fields.
fn core_config(model: &Model, run: RunFields) -> CoreConfig {
    let hc = &model.ha_cf;
    // halo.toml's placement: preferred nodes in order, names, clones and constraints.
    let (groups, clones, order, colocation) = placement_config(model);
    CoreConfig {
        node: run.node,
        nodes: hc.nodes.clone(),
        keepalive_ms: hc.keepalive_ms,
        deadtime_ms: hc.deadtime_ms,
        warntime_ms: hc.warntime_ms,
        initdead_ms: hc.initdead_ms,
        max_rexmit_delay_ms: hc.max_rexmit_delay_ms,
        hopfudge: hc.hopfudge,
        generation: run.generation,
        uuid: run.uuid,
        links: run.links,
        flow_control: run.flow_control,
        seed: run.seed,
        groups,
        clones,
        order,
        colocation,
        auto_failback: hc.auto_failback,
        running_at_start: run.running_at_start,
        ping_nodes: run.ping_nodes,
        deadping_ms: hc.deadping_ms,
        // halo-config accepts only ignore, freeze and stop.
        no_quorum_policy: halo_core::NoQuorumPolicy::parse(&hc.no_quorum_policy).unwrap_or_default(),
        fencing: run.fencing,
    }
}

/// The engine's view of the groups of a model: haresources groups with halo.toml's
/// preferred nodes and names, clones, order and colocation.
fn placement_config(
    model: &Model,
) -> (
    Vec<GroupConfig>,
    Vec<halo_core::CloneConfig>,
    Vec<halo_core::OrderConfig>,
    Vec<halo_core::ColocationConfig>,
) {
    let placement = &model.placement;
    let groups = model.haresources.as_ref().map(|h| h.groups.as_slice()).unwrap_or_default();
    (
        groups
            .iter()
            .map(|g| GroupConfig {
                key: g.key().to_string(),
                node: g.node.clone(),
                nodes: model.preferred_nodes(g.key()),
                name: placement
                    .groups
                    .iter()
                    .find(|p| p.key == g.key())
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
            })
            .collect(),
        placement
            .clones
            .iter()
            .map(|c| halo_core::CloneConfig { name: c.name.clone(), nodes: c.nodes.clone() })
            .collect(),
        placement
            .order
            .iter()
            .map(|o| halo_core::OrderConfig { first: o.first.clone(), then: o.then.clone() })
            .collect(),
        placement
            .colocation
            .iter()
            .map(|c| halo_core::ColocationConfig {
                group: c.group.clone(),
                with: c.with.clone(),
                apart: c.apart,
            })
            .collect(),
    )
}

/// A reload waiting for groups to stop here before the new configuration applies.
struct PendingReload {
    model: Model,
    diff: crate::cmd::reload::Diff,
    director_texts: BTreeMap<PathBuf, String>,
    waiting: std::collections::BTreeSet<String>,
    stopped: Vec<String>,
}

struct ReloadState {
    config_dir: PathBuf,
    state_dir: PathBuf,
    node: String,
    hooks: crate::hooks::Hooks,
    /// The ldirectord.cf texts the running directors were configured from.
    director_texts: BTreeMap<PathBuf, String>,
    pending: Option<PendingReload>,
    /// Groups opened by a reload: their descriptor, for the poll loop.
    groups_opened: Option<RawFd>,
    /// What the hooks last saw: each peer's state, quorum, split-brain episodes.
    seen_nodes: Vec<(String, halo_core::NodeState)>,
    seen_quorum: Option<bool>,
    seen_split_changes: u64,
    split_detected: u64,
    split_resolved: u64,
    /// The last peer seen dying (a failover's HALO_NODE).
    last_dead: String,
}

impl ReloadState {
    fn new(
        args: &RunArgs,
        node: &str,
        hooks: crate::hooks::Hooks,
        director_texts: BTreeMap<PathBuf, String>,
    ) -> ReloadState {
        ReloadState {
            config_dir: args.config_dir.clone(),
            state_dir: args.state_dir.clone(),
            node: node.to_string(),
            hooks,
            director_texts,
            pending: None,
            groups_opened: None,
            seen_nodes: Vec::new(),
            seen_quorum: None,
            seen_split_changes: 0,
            split_detected: 0,
            split_resolved: 0,
            last_dead: String::new(),
        }
    }
}

impl Daemon<'_> {
    /// `halo reload` and SIGHUP: reads the configuration again and applies the difference
    /// (see `cmd::reload`). Refused as a whole when invalid; the answer (or the refusal)
    /// is logged too. Groups removed or changed that run here are stopped first: the new
    /// configuration applies once they have stopped (`reload_stopped`).
    fn reload(&mut self, now: Now, actions: &mut Vec<Action>) -> Result<serde_json::Value, String> {
        let r = self.try_reload(now, actions);
        match &r {
            Ok(v) => self.logger.log(
                halo_host::Level::Info,
                &format!("reload: {}", crate::cmd::reload::render(v).trim_end().replace('\n', "; ")),
            ),
            Err(e) => self.logger.log(
                halo_host::Level::Error,
                &format!("reload refused, the running configuration stays: {e}"),
            ),
        }
        r
    }

    fn try_reload(&mut self, now: Now, actions: &mut Vec<Action>) -> Result<serde_json::Value, String> {
        use crate::cmd::reload;
        if let Some(p) = &self.reload.pending {
            return Err(format!(
                "a reload is under way: waiting for group(s) {} to stop",
                p.waiting.iter().cloned().collect::<Vec<_>>().join(" ")
            ));
        }
        let dir = self.reload.config_dir.clone();
        let (model, warnings, _) = load(&dir, Some(&self.reload.node)).map_err(|e| format!("{e:#}"))?;
        model.check_local_node(&self.reload.node)?;
        let texts = reload::read_director_files(&model, &dir)?;
        for w in &warnings {
            self.logger.log(halo_host::Level::Warn, w);
        }
        let diff = reload::diff(&self.model, &model, &self.reload.director_texts, &texts);

        // What needs no engine: applied now.
        let hc = &model.ha_cf;
        if model.authkeys != self.model.authkeys {
            self.keyring = keyring(&model);
        }
        self.netstring_only = hc.msgfmt == MsgFmt::Netstring;
        self.log_badpack = hc.log_badpack;
        if hc.debug != self.model.ha_cf.debug {
            self.logger.set_debug_level(hc.debug);
        }
        self.reload.hooks.set_commands(hc.notify.iter().map(|n| n.command.clone()).collect());

        // Removed or changed groups held here stop first, with their old definition.
        let held = |k: &String| {
            self.engine.group_state(k).is_some_and(|s| s != halo_core::resources::GroupState::Stopped)
        };
        let retiring: Vec<String> =
            diff.removed.iter().chain(&diff.changed).filter(|k| held(k)).cloned().collect();
        let mut v = serde_json::json!({
            "ok": if diff.is_empty() { "nothing changed" } else { "reloaded" },
            "changes": diff.changes,
            "restart_needed": diff.restart_needed,
        });
        match (retiring.is_empty(), self.groups.as_mut()) {
            (false, Some(g)) => {
                for k in &retiring {
                    self.logger
                        .log(halo_host::Level::Info, &format!("reload: stopping group {k} here first"));
                    g.reload_stop(k);
                }
                v["pending"] = format!(
                    "stopping group(s) {} here first; the new configuration applies once they have stopped",
                    retiring.join(" ")
                )
                .into();
                self.reload.pending = Some(PendingReload {
                    model,
                    diff,
                    director_texts: texts,
                    waiting: retiring.into_iter().collect(),
                    stopped: Vec::new(),
                });
            }
            _ => self.finish_reload(now, model, diff, texts, Vec::new(), actions),
        }
        Ok(v)
    }

    /// Reload stops that ended: once the last one has, the new configuration applies.
    fn reload_stopped(
        &mut self,
        now: Now,
        stopped: Vec<(String, Option<String>)>,
        actions: &mut Vec<Action>,
    ) {
        let Some(p) = self.reload.pending.as_mut() else { return };
        for (k, err) in stopped {
            match err {
                None => self.logger.log(halo_host::Level::Info, &format!("reload: group {k} stopped")),
                Some(e) => self.logger.log(
                    halo_host::Level::Crit,
                    &format!("reload: stopping group {k} FAILED ({e}); parts of it may still run here"),
                ),
            }
            p.waiting.remove(&k);
            p.stopped.push(k);
        }
        if p.waiting.is_empty() {
            if let Some(p) = self.reload.pending.take() {
                self.finish_reload(now, p.model, p.diff, p.director_texts, p.stopped, actions);
            }
        }
    }

    fn finish_reload(
        &mut self,
        now: Now,
        model: Model,
        diff: crate::cmd::reload::Diff,
        texts: BTreeMap<PathBuf, String>,
        stopped: Vec<String>,
        actions: &mut Vec<Action>,
    ) {
        let groups = model.haresources.as_ref().map(|h| h.groups.clone()).unwrap_or_default();
        let clones = &model.placement.clones;
        match self.groups.as_mut() {
            Some(g) => g.set_definitions(&groups, clones),
            None if !groups.is_empty() || !clones.is_empty() => {
                match Groups::open(
                    &groups,
                    clones,
                    &self.reload.config_dir,
                    &self.reload.state_dir,
                    &self.reload.node,
                    Arc::clone(self.logger),
                ) {
                    Ok((g, _running)) => {
                        self.reload.groups_opened = Some(g.fd());
                        self.groups = Some(g);
                    }
                    Err(e) => self
                        .logger
                        .log(halo_host::Level::Error, &format!("reload: cannot run resource groups: {e:#}")),
                }
            }
            None => {}
        }
        // A director whose resource did not change takes its new ldirectord.cf in place,
        // keeping the health of unchanged real servers. That blocks (it reads the file,
        // resolves names, applies the table): a thread of its own, its outcome logged.
        if let (false, Some(g)) = (diff.director_files.is_empty(), self.groups.as_ref()) {
            let (director, files, logger) =
                (g.director(), diff.director_files.clone(), Arc::clone(self.logger));
            let spawned = std::thread::Builder::new().name("halo-reload-director".into()).spawn(move || {
                halo_host::rt::set_normal();
                for path in files {
                    match director.reconfigure(&path) {
                        Ok(r) => logger.log(
                            halo_host::Level::Info,
                            &format!("reload: director for {} reconfigured: {r}", path.display()),
                        ),
                        // Refused (and logged) by the director: its running configuration stays.
                        Err(e) => logger.log(
                            halo_host::Level::Warn,
                            &format!("reload: director for {} not reconfigured: {e}", path.display()),
                        ),
                    }
                }
            });
            if let Err(e) = spawned {
                self.logger
                    .log(halo_host::Level::Error, &format!("reload: cannot reconfigure the director: {e}"));
            }
        }
        if diff.engine {
            let cfg = core_config(&model, RunFields::of(self.engine.config()));
            self.engine.reconfigure(now, &cfg, &stopped, actions);
        }
        // Heartbeats carry the digest of the configuration now running.
        self.engine.set_config_digest(halo_config::config_digest(&model));
        self.model = model;
        self.reload.director_texts = texts;
        let summary =
            if diff.changes.is_empty() { "nothing changed".to_string() } else { diff.changes.join("; ") };
        self.reload.hooks.emit("reload_applied", "", "", &summary);
    }

    /// Events the hooks hear that the engine does not announce: peers dying and coming
    /// up, quorum, split-brain episodes. Cheap when nothing changed (no allocation).
    fn observe(&mut self) {
        use halo_core::NodeState;
        let r = &mut self.reload;
        for n in self.engine.config().nodes.iter().filter(|n| **n != r.node) {
            let Some(st) = self.engine.node_state(n) else { continue };
            let prev = match r.seen_nodes.iter_mut().find(|(name, _)| name == n) {
                Some((_, s)) => std::mem::replace(s, st),
                None => {
                    r.seen_nodes.push((n.clone(), st));
                    NodeState::Init
                }
            };
            match (prev, st) {
                (p, NodeState::Dead) if p != NodeState::Dead => {
                    r.last_dead = n.clone();
                    r.hooks.emit("node_dead", n, "", "");
                }
                (NodeState::Init | NodeState::Dead, NodeState::Up | NodeState::Active) => {
                    r.hooks.emit("node_up", n, "", "")
                }
                _ => {}
            }
        }
        let q = self.engine.quorum();
        if r.seen_quorum.is_some_and(|had| had != q.have) {
            let e = if q.have { "quorum_regained" } else { "quorum_lost" };
            r.hooks.emit(e, "", "", &format!("{} of {} votes", q.votes, q.expected));
        }
        r.seen_quorum = Some(q.have);
        let sb = self.engine.split_brains();
        if sb.changes() != r.seen_split_changes {
            r.seen_split_changes = sb.changes();
            for ep in sb.episodes() {
                if ep.id > r.split_detected {
                    r.split_detected = ep.id;
                    r.hooks.emit("split_brain_detected", &ep.peers.join(" "), &ep.keys().join(" "), "");
                }
                if ep.resolved_ms.is_some() && ep.id > r.split_resolved {
                    r.split_resolved = ep.id;
                    let kept = ep.kept_by().join(" ");
                    r.hooks.emit("split_brain_resolved", &ep.peers.join(" "), &ep.keys().join(" "), &kept);
                }
            }
        }
    }

    /// The engine starts or stops a group here.
    fn group_action(&mut self, key: &str, reason: &str, start: bool) {
        let h = &mut self.reload.hooks;
        if !start {
            h.emit("group_stopping", "", key, reason);
            return;
        }
        // The engine's reason for a group taken from a node it saw die.
        if reason == "its holder died" {
            h.emit("failover", &self.reload.last_dead, key, reason);
        }
        h.emit("group_starting", "", key, reason);
    }

    /// A group operation ended here.
    fn group_event(&mut self, ev: &Event) {
        let h = &mut self.reload.hooks;
        match ev {
            Event::GroupStarted { key, ok: true, .. } => h.emit("group_started", "", key, ""),
            Event::GroupStopped { key, ok: true, .. } => h.emit("group_stopped", "", key, ""),
            Event::GroupStarted { key, detail, .. } => {
                h.emit("group_failed", "", key, &format!("start: {detail}"))
            }
            Event::GroupStopped { key, detail, .. } => {
                h.emit("group_failed", "", key, &format!("stop: {detail}"))
            }
            Event::MonitorFailed { key, why } => h.emit("group_failed", "", key, &format!("monitor: {why}")),
            _ => {}
        }
    }
}
