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
//!   default), the nftables table is deleted (each real server in it alerted as `Purged real
//!   server (stop)`); virtual services with `cleanstop=no` stay in it as they were. Stopping a director that does not run still deletes a table left over
//!   by a killed daemon.
//! * maintenance: with `maintenancedir`, the directory is listed every second (one
//!   `readdir`, never a file test per check); a real server named there (halo-lb's
//!   `maintenance_names`: its address, the name written in ldirectord.cf, and the name of its
//!   address in the resolver, looked up in the background every minute) is taken out at once
//!   as if its check had failed (weight 0 with `quiescent=yes`) and not checked; when the
//!   file goes, its next check decides.
//! * alerts: every change of a real server is an alert (halo-lb's `alert` module): a mail
//!   when `emailalert`/`emailalertstatus` say so, repeated every `emailalertfreq` while the
//!   server stays out (checked every `checkinterval`), and the `alertcommand` (a halo
//!   extension) with the change in `HALO_ALERT_*`. They are queued in the order of the
//!   changes to a thread of their own (`halo-alerts`): mails one after the other, commands
//!   one after the other, never in the way of the checks; a full queue drops with a warning.
//! * monitorfile: a line per check of each real server (`[TIME] [PID] ID [up|down] MSG`, as
//!   ldirectord's `service_set` writes it), appended by a writer task in batches.
//! * fallbackcommand: `CMD start VIP:PORT PROTO` when no real server of the service is up
//!   (so at start too, as ldirectord), `CMD stop …` once one is, each only when it changes,
//!   in the alert command's queue.
//! * configuration changes: every `checkinterval` the file's mtime is compared, then its MD5
//!   (ldirectord's `check_cfgfile`); a changed file runs `callback FILE` and, with
//!   `autoreload=yes`, [`Director::reconfigure`]: a file that does not parse or cannot run
//!   is refused (file:line logged, shown by `halo lvs --json` as `last_reload`) and the
//!   running configuration stays; a valid one is applied as a difference, real servers whose
//!   check did not change keeping their health, counters and rhythm.
//! * status: running iff the director thread runs.
//! * `halo lvs`: [`Director::lvs_json`] (blocking: it reads the nft counters and, for NAT
//!   services, dumps conntrack for `ActiveConn`/`InActConn` and the `-c` connection list;
//!   for DR services on nftables, reads them from the plane's flow sets)
//!   gives the ipvsadm views of what runs, and the health of every real server.
//!
//! One director per configuration file; each has its own table (`halo_lb` for
//! `ldirectord.cf`, `halo_lb_<name>` for another file).
//!
//! ldirectord's global directives about the daemon itself (spec §7.1, §7.3):
//! * `logfile`: every director line (real server added, deleted, quiesced, fallback, reload,
//!   start, stop: what halo logs as `director: …` at info and above) also goes where
//!   ldirectord would write it ([`LdLog`]): appended to the file as `[<localtime>|<CFGNAME>|<pid>]
//!   <message>` (default `/var/log/ldirectord.log`; CFGNAME is `ldirectord` for a bare
//!   `ldirectord` word, else the file's name as written, as ldirectord names it), or, for a
//!   facility name, to syslog (ident `ldirectord`, that facility, level info). A file that
//!   cannot be opened draws one warning in halo's log, and the director runs on.
//! * `supervised=yes`: ldirectord, not daemonized, logs `[<localtime>] <message>` to stdout
//!   instead of its logfile. halo is the daemon and its own log (stdout or the journal under
//!   systemd, ha.cf's `logfile`) is that stdout: the director's lines go to halo's log only,
//!   no logfile.
//! * `readdquiescent`: with `quiescent=yes`, a real server that goes down while missing from
//!   the kernel's table (deleted with `ipvsadm -d` behind the director's back) is added back
//!   with weight 0 (`yes`) or left out until it comes up (`no`, the default): the applier
//!   reads the IPVS table before every apply, a reload's too (halo-lb's `settle_quiescent`).
//!   On nftables the table is halo's alone and every apply rebuilds what is missing, so the
//!   case never arises.
//! * `fork=yes`: ldirectord forks a checker per virtual service; halo's checks already run
//!   per virtual service, and `fork=yes` lets each use its own `checkinterval`. Without it the
//!   global `checkinterval` paces every service (the parser warns, with file:line, about a
//!   virtual service's own `checkinterval`).
//! * `execute = CFG`: ldirectord starts, stops and reloads another instance for CFG with this
//!   one. halo runs a director for CFG (looked up as ldirectord does: `<config_dir>/CFG`,
//!   `<config_dir>/conf/CFG`, then as written) with its own globals and table, started with
//!   this one (every file read and checked first: an error in any names its file:line and
//!   nothing starts), reloaded with it (`halo reload`: every file checked first, an error
//!   refuses them all; directors newly named start, those no longer named stop; autoreload
//!   reloads its own file only), stopped after it. One already running (its own group) is
//!   not started again nor stopped with it, as ldirectord's `start` of a running instance
//!   exits 0.
//!
//! Data plane: `dataplane = auto|nftables|ipvs` in ldirectord.cf (a halo extension; `auto`
//! by default) picks it at start (`DataPlane::select`): `auto` drives the kernel's IPVS over
//! generic netlink where the kernel has it, else nftables. With IPVS the director owns the
//! virtual services it added (never another's, added with `ipvsadm`), a stop deletes only
//! those, and `halo lvs` lists the kernel's own table (counters, rates, ActiveConn/InActConn,
//! `-c` from `/proc/net/ip_vs_conn`; services added by others too): what `ipvsadm -L -n`
//! prints. A
//! stop of a director that does not run deletes the services its file names (left by a
//! killed daemon). A changed `dataplane` takes effect at the next start, not on a reload.

use halo_config::ldirectord_cf::{DaemonStatus, Globals, LogTarget};
use halo_host::group::Builtin;
use halo_host::{Level, LogConfig, Logger};
use halo_lb::alert::{self, Alerter, Event, EventKind, Mail, MailSettings};
use halo_lb::check::{pace, Transition};
use halo_lb::dataplane::{
    DataPlane, Forward, IpvsDataPlane, Nft, NftDataPlane, PlaneChoice, RealStats, ServiceKey,
};
pub use halo_lb::director::ReconfigureReport;
use halo_lb::director::{transition_message, DirectorState};
use halo_lb::ipvsadm;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

/// The configuration file of a bare `ldirectord` word.
pub const DEFAULT_CF: &str = "ldirectord.cf";

/// Longest one read of the conntrack dump may wait (for `halo lvs`).
const CONNTRACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest start waits for the first check pass.
const FIRST_PASS_WAIT_MAX: Duration = Duration::from_secs(40);

type Log<'a> = &'a mut dyn FnMut(Level, String);

/// Reads the kernel's table for [`settle_quiescent`] (`None`: the plane keeps none).
type TableRead<'a> = &'a dyn Fn() -> Result<Option<ipvsadm::Model>, String>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// ldirectord's own log of one director (`logfile`, `supervised`; see the module
/// documentation): where each director line goes besides halo's log.
struct LdLog {
    sink: LdSink,
    /// ldirectord's CFGNAME, in each file line.
    cfgname: String,
    /// The file could not be opened: warned once (again after it worked in between).
    failing: std::sync::atomic::AtomicBool,
}

enum LdSink {
    /// `supervised=yes`: halo's log is the director's stdout; nothing more.
    HaloOnly,
    File(PathBuf),
    /// A syslog facility: a logger of its own (ident `ldirectord`, syslog only).
    Syslog(Logger),
}

impl LdLog {
    /// The log `g` asks for. `syslog_socket` is `/dev/log` but in tests.
    fn new(g: &Globals, cfgname: &str, syslog_socket: &Path) -> LdLog {
        let sink = match (&g.logfile, g.supervised) {
            (_, true) => LdSink::HaloOnly,
            (LogTarget::File(p), false) => LdSink::File(p.clone()),
            (LogTarget::Syslog(facility), false) => {
                let cfg = LogConfig {
                    facility: Some(facility.clone()),
                    ident: "ldirectord".to_string(),
                    syslog_socket: syslog_socket.to_path_buf(),
                    ..LogConfig::default()
                };
                match Logger::new(cfg) {
                    Ok(l) => LdSink::Syslog(l),
                    Err(_) => LdSink::HaloOnly,
                }
            }
        };
        LdLog { sink, cfgname: cfgname.to_string(), failing: std::sync::atomic::AtomicBool::new(false) }
    }

    /// Writes one director line (`director: ` taken off, as ldirectord's lines have none):
    /// to the file, opened per line as ldirectord does (so logrotate needs no signal), or
    /// to syslog at level info. A file that cannot be opened is warned about once in halo's
    /// log (`halo`).
    fn write(&self, msg: &str, halo: &Logger) {
        let msg = msg.strip_prefix("director: ").unwrap_or(msg);
        match &self.sink {
            LdSink::HaloOnly => {}
            LdSink::Syslog(l) => l.log(Level::Info, msg),
            LdSink::File(path) => {
                use std::io::Write;
                let line = format!("[{}|{}|{}] {msg}\n", perl_localtime(), self.cfgname, std::process::id());
                let r = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .and_then(|mut f| f.write_all(line.as_bytes()));
                match r {
                    Ok(()) => self.failing.store(false, Ordering::Relaxed),
                    Err(e) => {
                        if !self.failing.swap(true, Ordering::Relaxed) {
                            halo.log(
                                Level::Warn,
                                &format!(
                                    "director: cannot write ldirectord's logfile {}: {e}; its lines go to halo's log only",
                                    path.display()
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    /// Same destination as `g` asks for?
    fn same(&self, g: &Globals) -> bool {
        match (&self.sink, &g.logfile, g.supervised) {
            (LdSink::HaloOnly, _, true) => true,
            (LdSink::File(a), LogTarget::File(b), false) => a == b,
            _ => false,
        }
    }
}

/// ldirectord's CFGNAME for an `ldirectord[::FILE]` word: `ldirectord` without a file (its
/// pid file is then `ldirectord.ldirectord.pid`), else the file's base name.
fn cfgname(args: &[String]) -> String {
    match args.first() {
        None => "ldirectord".to_string(),
        Some(f) => Path::new(f).file_name().map_or_else(|| f.clone(), |n| n.to_string_lossy().into_owned()),
    }
}

/// The line of `text` (an ldirectord.cf) that says `execute = name`, for messages.
fn execute_line(text: &str, name: &str) -> usize {
    text.lines()
        .position(|l| {
            l.strip_prefix("execute")
                .and_then(|r| r.trim_start().strip_prefix('='))
                .is_some_and(|v| v.split('#').next().unwrap_or("").trim().trim_matches('"') == name)
        })
        .map_or(0, |i| i + 1)
}

/// One configuration read and checked, not started yet.
struct Loaded {
    path: PathBuf,
    cfgname: String,
    mtime: Option<SystemTime>,
    text: String,
    state: DirectorState,
}

/// The directors of one daemon, one per configuration file.
pub struct Director {
    config_dir: PathBuf,
    logger: Arc<Logger>,
    instances: Mutex<BTreeMap<PathBuf, Instance>>,
}

struct Instance {
    group: String,
    /// The directors this one started for its `execute` lines (stopped and reloaded with it).
    executed: Vec<PathBuf>,
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Sender<bool>,
    thread: JoinHandle<()>,
    /// The last counters read, for `--rate`.
    sample: Mutex<Option<(Instant, Vec<RealStats>)>>,
    rates: Mutex<BTreeMap<(ServiceKey, SocketAddr), ipvsadm::Rates>>,
}

/// What the director thread, the alert queue and [`Director::reconfigure`] share.
struct Shared {
    path: PathBuf,
    plane: DataPlane,
    state: Mutex<DirectorState>,
    logger: Arc<Logger>,
    /// ldirectord's daemon state, for `emailalertstatus`.
    status: Mutex<DaemonStatus>,
    alerter: Mutex<Alerter>,
    alerts: AlertQueue,
    /// Tells the director thread to run the checks of a new configuration.
    respawn: tokio::sync::mpsc::UnboundedSender<()>,
    /// One reconfiguration at a time; a stop waits for the one under way.
    reloading: Mutex<()>,
    /// Set (under `reloading`) when the director stops: no reconfiguration applies after.
    stopped: std::sync::atomic::AtomicBool,
    /// The file as last read (mtime, text), to see it change.
    seen: Mutex<(Option<SystemTime>, String)>,
    /// Lines for the monitorfiles, to the writer task of the director thread.
    monitor: tokio::sync::mpsc::Sender<(PathBuf, String)>,
    monitor_rx: Mutex<Option<tokio::sync::mpsc::Receiver<(PathBuf, String)>>>,
    /// Per virtual service, the `fallbackcommand` run last (ldirectord runs it only when it
    /// changes from start to stop or back).
    fallback_ran: Mutex<HashMap<String, String>>,
    /// The outcome of the last reconfiguration, for `halo lvs --json`.
    last_reload: Mutex<Option<(SystemTime, Result<String, String>)>>,
    /// ldirectord's own log (`logfile`, `supervised`).
    ldlog: Mutex<LdLog>,
    /// What the data plane's table holds, as far as this director knows.
    applied: Mutex<Applied>,
}

/// The state last applied to the data plane with success (what its table holds: `halo lvs`
/// lists it, as ipvsadm lists the kernel's table), and the error of the last apply when that
/// failed. The director's decided state can be ahead of it for a moment (an apply under way)
/// or for longer (applies failing).
#[derive(Debug, Clone)]
struct Applied {
    desired: halo_lb::dataplane::Desired,
    error: Option<String>,
}

/// Alerts waiting for the `halo-alerts` thread.
const ALERT_QUEUE: usize = 1024;

enum AlertMsg {
    Mail(Mail),
    Command { command: String, env: Vec<(String, String)> },
}

/// The sending side of a director's alert thread (which ends once this is dropped and its
/// queue is drained).
struct AlertQueue {
    tx: tokio::sync::mpsc::Sender<AlertMsg>,
    logger: Arc<Logger>,
    /// Disconnected when the alert thread has ended (in a Mutex: Receiver is not Sync).
    done: Mutex<mpsc::Receiver<()>>,
}

/// Longest a stopping director waits for its queued alerts (ldirectord sends its last
/// alerts before it exits).
const ALERT_DRAIN_MAX: Duration = Duration::from_secs(10);

impl AlertQueue {
    fn spawn(logger: Arc<Logger>) -> Result<AlertQueue, String> {
        let (tx, rx) = tokio::sync::mpsc::channel(ALERT_QUEUE);
        let (done_tx, done) = mpsc::channel::<()>();
        let l = Arc::clone(&logger);
        std::thread::Builder::new()
            .name("halo-alerts".into())
            .spawn(move || {
                halo_host::rt::set_normal();
                alert_thread(rx, l);
                drop(done_tx);
            })
            .map_err(|e| format!("cannot start the alert thread: {e}"))?;
        Ok(AlertQueue { tx, logger, done: Mutex::new(done) })
    }

    /// Closes the queue and waits (at most [`ALERT_DRAIN_MAX`]) for what is queued to go.
    fn drain(self) {
        let AlertQueue { tx, logger, done } = self;
        drop(tx);
        let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Err(mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(ALERT_DRAIN_MAX) {
            logger.log(Level::Warn, "director: alerts still queued at stop are left to finish on their own");
        }
    }

    fn send(&self, m: AlertMsg) {
        if self.tx.try_send(m).is_err() {
            self.logger.log(Level::Warn, "director: alert queue full or closed: an alert is dropped");
        }
    }
}

/// Mails one after the other, commands one after the other (each in the order queued), the
/// two side by side: a slow mail server does not hold back the alert command.
fn alert_thread(mut rx: tokio::sync::mpsc::Receiver<AlertMsg>, logger: Arc<Logger>) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            logger.log(Level::Crit, &format!("director: cannot build the alert runtime: {e}"));
            return;
        }
    };
    rt.block_on(async move {
        let (mail_tx, mut mail_rx) = tokio::sync::mpsc::unbounded_channel::<Mail>();
        let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel::<(String, Vec<(String, String)>)>();
        let l = Arc::clone(&logger);
        let mails = tokio::spawn(async move {
            while let Some(m) = mail_rx.recv().await {
                match alert::send_mail(&m, alert::SMTP_PORT, alert::ALERT_TIMEOUT).await {
                    Ok(()) => l.log(
                        Level::Info,
                        &format!("director: emailalert: {} (to {})", m.subject, m.to.join(", ")),
                    ),
                    Err(e) => {
                        l.log(Level::Warn, &format!("director: emailalert not sent: {} ({e})", m.subject))
                    }
                }
            }
        });
        let l = Arc::clone(&logger);
        let commands = tokio::spawn(async move {
            while let Some((command, env)) = cmd_rx.recv().await {
                if let Err(e) = alert::run_command(&command, &env, alert::ALERT_TIMEOUT).await {
                    l.log(Level::Warn, &format!("director: alertcommand failed: {e}"));
                }
            }
        });
        while let Some(m) = rx.recv().await {
            match m {
                AlertMsg::Mail(m) => {
                    let _ = mail_tx.send(m);
                }
                AlertMsg::Command { command, env } => {
                    let _ = cmd_tx.send((command, env));
                }
            }
        }
        drop((mail_tx, cmd_tx));
        let _ = mails.await;
        let _ = commands.await;
    });
}

impl Shared {
    /// Applies `desired` to the data plane and records the outcome for `halo lvs`.
    fn apply(
        &self,
        desired: halo_lb::dataplane::Desired,
    ) -> Result<Vec<String>, halo_lb::dataplane::ipvs::PlaneError> {
        let r = self.plane.apply(&desired);
        let mut a = lock(&self.applied);
        match &r {
            Ok(_) => *a = Applied { desired, error: None },
            Err(e) => a.error = Some(e.to_string()),
        }
        r
    }

    /// The table `halo lvs` lists for this director on nftables (what was last applied), and
    /// whether the director has decided otherwise since.
    fn listed_table(
        &self,
        decided: &halo_lb::dataplane::Desired,
    ) -> (halo_lb::dataplane::Desired, bool, Option<String>) {
        let Applied { desired, error } = lock(&self.applied).clone();
        let pending = desired != *decided;
        (desired, pending, error)
    }

    /// halo's log, and at info and above ldirectord's (`logfile`, unless `supervised`).
    fn log(&self, level: Level, msg: &str) {
        self.logger.log(level, msg);
        if level >= Level::Info {
            lock(&self.ldlog).write(msg, &self.logger);
        }
    }

    fn status(&self) -> DaemonStatus {
        *lock(&self.status)
    }

    /// Queues the alerts of `event` (mail and command). Called with the state locked, so
    /// that alerts leave in the order of the changes.
    fn alert(&self, st: &DirectorState, event: &Event, mail: &MailSettings) {
        let status = self.status();
        if let Some(m) = lock(&self.alerter).event(event, mail, status, tokio::time::Instant::now()) {
            self.alerts.send(AlertMsg::Mail(m));
        }
        if let Some(command) = &st.global.alertcommand {
            if event.kind != EventKind::Inaccessible {
                let env = event.env(status, &self.path.display().to_string());
                self.alerts.send(AlertMsg::Command { command: command.clone(), env });
            }
        }
    }

    /// Logs and alerts a change `t` of real server `ri` of service `si` (already recorded).
    fn changed(&self, st: &DirectorState, si: usize, ri: usize, t: Transition) {
        let Some(s) = st.services.get(si) else { return };
        let msg = transition_message(s, ri, t);
        self.log(Level::Info, &format!("director: {msg}"));
        let reason = match s.reals.get(ri) {
            Some(r) => match &r.maintenance {
                Some(f) => format!("maintenance file {f}"),
                None => r.checker.health().last().map(|c| c.reason.clone()).unwrap_or_default(),
            },
            None => String::new(),
        };
        self.alert(st, &s.event(ri, t, &reason), &s.mail);
        if let Some(f) = s.fallback_event(t) {
            self.log(Level::Info, &format!("director: {}", f.message));
            self.alert(st, &f, &s.mail);
        }
        self.fallback_command(s);
    }

    /// Queues the service's `fallbackcommand` if its state (start: no real server up; stop:
    /// one is) differs from the one run last. Called with the state locked, so it runs in
    /// the order of the changes, in the alert command's queue.
    fn fallback_command(&self, s: &halo_lb::director::ServiceState) {
        let Some(command) = s.fallback_command() else { return };
        let mut ran = lock(&self.fallback_ran);
        if ran.get(&s.id) == Some(&command) {
            return;
        }
        ran.insert(s.id.clone(), command.clone());
        self.log(Level::Info, &format!("director: running fallbackcommand: {command}"));
        self.alerts.send(AlertMsg::Command { command, env: Vec::new() });
    }

    /// Reads the file (blocking: it also resolves names) and applies it as a difference.
    fn reconfigure(&self) -> Result<ReconfigureReport, String> {
        let _one = lock(&self.reloading);
        if self.stopped.load(Ordering::SeqCst) {
            return Err(format!("the director for {} is stopping", self.path.display()));
        }
        let result = self.reconfigure_inner();
        let outcome = match &result {
            Ok(r) => Ok(r.to_string()),
            Err(e) => Err(e.clone()),
        };
        *lock(&self.last_reload) = Some((SystemTime::now(), outcome));
        result
    }

    fn reconfigure_inner(&self) -> Result<ReconfigureReport, String> {
        self.reconfigure_reading(&|| self.plane.kernel_model().map_err(|e| e.to_string()))
    }

    /// [`Shared::reconfigure_inner`], reading the kernel's table with `table` (the plane's
    /// own reading; a given table in tests, as this machine may have no IPVS).
    fn reconfigure_reading(&self, table: TableRead) -> Result<ReconfigureReport, String> {
        let mtime = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        // Seen, valid or not: a refused file is not refused again every checkinterval.
        *lock(&self.seen) = (mtime, text.clone());
        let mut warnings = Vec::new();
        let new = load_text(&self.path, &text, &mut |l, m| warnings.push((l, m)))?;
        for (l, m) in warnings {
            self.log(l, &format!("director: {m}"));
        }
        let running = lock(&self.state).global.dataplane;
        if new.global.dataplane != running {
            self.log(
                Level::Warn,
                &format!(
                    "director: dataplane={} takes effect at the next start; {} stays",
                    new.global.dataplane.name(),
                    self.plane
                ),
            );
        }
        {
            let mut ldlog = lock(&self.ldlog);
            if !ldlog.same(&new.global) {
                let cfgname = ldlog.cfgname.clone();
                *ldlog = LdLog::new(&new.global, &cfgname, Path::new("/dev/log"));
            }
        }
        let previous = std::mem::replace(&mut *lock(&self.status), DaemonStatus::Reloading);
        let mut report = {
            let mut st = lock(&self.state);
            let report = st.reconfigure(new);
            let services = st.services.clone();
            lock(&self.alerter).retain(|e| {
                services.iter().any(|s| s.id == e.service_id && s.reals.iter().any(|r| r.addr == e.real))
            });
            for s in &st.services {
                self.fallback_command(s);
            }
            for e in report.reset.iter().chain(&report.purged) {
                self.log(Level::Info, &format!("director: {}", e.message));
                let mail = match st.services.iter().find(|s| s.id == e.service_id) {
                    Some(s) => s.mail.clone(),
                    None => MailSettings::global(&st.global),
                };
                self.alert(&st, e, &mail);
            }
            report
        };
        // As every apply: a real server that went down (quiescent=yes, readdquiescent=no)
        // while missing from the table is left out, not put back at weight 0 by the reload.
        settle_quiescent(self, table);
        let desired = lock(&self.state).desired();
        let applied = self.apply(desired);
        *lock(&self.status) =
            if previous == DaemonStatus::Reloading { DaemonStatus::Running } else { previous };
        let changes = applied.map_err(|e| format!("{}: {e}", self.plane))?;
        report.table_changes = changes.iter().map(ToString::to_string).collect();
        let _ = self.respawn.send(());
        self.log(Level::Info, &format!("director: {} reloaded: {report}", self.path.display()));
        Ok(report)
    }
}

/// Parses and validates ldirectord.cf `text` into a director state (names resolved:
/// blocks); warnings go to `log`. Errors name the file and line.
fn load_text(path: &Path, text: &str, log: Log) -> Result<DirectorState, String> {
    let (cf, warnings) = halo_config::parse_ldirectord_cf(path, text).map_err(|e| e.to_string())?;
    for w in warnings {
        log(Level::Warn, w.to_string());
    }
    let state = DirectorState::load(&cf).map_err(|e| format!("{}: {e}", path.display()))?;
    for s in &state.services {
        if let Some(why) = &s.fallback_unusable {
            log(Level::Warn, format!("virtual service {}: {why}; no fallback", s.id));
        }
    }
    if state.services.iter().any(|s| s.service.forward == Forward::Masq)
        && std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|v| v.trim() == "0").unwrap_or(false)
    {
        log(
            Level::Warn,
            "NAT virtual services but net.ipv4.ip_forward=0: the director will not forward".into(),
        );
    }
    if let Some(dir) = &state.global.maintenancedir {
        if !dir.is_dir() {
            log(
                Level::Warn,
                format!(
                    "maintenancedir {} is not a directory (yet): no real server is in maintenance",
                    dir.display()
                ),
            );
        }
    }
    Ok(state)
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

    /// The configuration files of the directors that run now.
    pub fn running_configs(&self) -> Vec<PathBuf> {
        lock(&self.instances)
            .iter()
            .filter(|(_, i)| !i.thread.is_finished())
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// Re-reads the configuration file `config` of a running director and applies it as a
    /// difference: **the entry point of `halo reload` / SIGHUP** (crates/halo/src/run.rs calls
    /// it for each ldirectord.cf whose text changed under an unchanged director resource),
    /// and what `autoreload=yes` calls when the file changes on disk.
    ///
    /// A file that does not parse or cannot run is refused with its file:line and the
    /// running configuration stays as it was. A valid one replaces it: real servers of the
    /// same virtual service, address and check keep their health, counters and check rhythm
    /// (no re-check, no weight flap); new ones start down and are checked at once; removed
    /// ones leave the table (alerted as `Purged real server (reload)`); the nftables table
    /// changes only where the desired state changed. Blocks (reads the file, resolves host
    /// names, applies the table): call it off the heartbeat thread. Errs if no director runs
    /// for `config`.
    pub fn reconfigure(&self, config: &Path) -> Result<ReconfigureReport, String> {
        let (shared, group, owned) = lock(&self.instances)
            .get(config)
            .filter(|i| !i.thread.is_finished())
            .map(|i| (Arc::clone(&i.shared), i.group.clone(), i.executed.clone()))
            .ok_or_else(|| format!("no director runs for {}", config.display()))?;
        let refuse = |e: String| {
            shared.log(
                Level::Error,
                &format!("director: new configuration refused, the running one stays: {e}"),
            );
            e
        };
        // execute: the file and every configuration it names (and theirs) are read and
        // checked first; an error in any refuses them all, as any configuration error does.
        let checked = match self.load_all(config, &[], true, &mut |_, _| {}) {
            Ok(c) => c,
            Err(e) => {
                *lock(&shared.last_reload) = Some((SystemTime::now(), Err(e.clone())));
                return Err(refuse(e));
            }
        };
        let r = shared.reconfigure().map_err(refuse)?;
        // Then, as ldirectord's reload: the instances it executes are reloaded, those no
        // longer named stopped, new ones started.
        let mut log = |l: Level, m: String| shared.log(l, &format!("director: {m}"));
        let wanted: Vec<PathBuf> = checked.iter().skip(1).map(|l| l.path.clone()).collect();
        for p in owned.iter().filter(|p| !wanted.contains(p)) {
            log(Level::Info, format!("execute: {} is no longer named: its director stops", p.display()));
            if let Err(e) = self.stop_path(p, &mut log) {
                log(Level::Warn, format!("execute {}: {e}", p.display()));
            }
        }
        let mut now_owned = Vec::new();
        for loaded in checked.into_iter().skip(1) {
            let p = loaded.path.clone();
            let running = lock(&self.instances)
                .get(&p)
                .filter(|i| !i.thread.is_finished())
                .map(|i| Arc::clone(&i.shared));
            match running {
                Some(sh) => {
                    if owned.contains(&p) {
                        now_owned.push(p.clone());
                    }
                    if let Err(e) = sh.reconfigure() {
                        log(
                            Level::Error,
                            format!(
                                "execute {}: new configuration refused, the running one stays: {e}",
                                p.display()
                            ),
                        );
                    }
                }
                None => match self.start_one(&group, loaded, Vec::new(), &mut log) {
                    Ok(()) => now_owned.push(p),
                    Err(e) => log(Level::Error, format!("execute {}: {e}", p.display())),
                },
            }
        }
        if let Some(i) = lock(&self.instances).get_mut(config) {
            i.executed = now_owned;
        }
        Ok(r)
    }

    /// Reads and checks `path`, then every configuration its `execute` lines name (and
    /// theirs), before anything starts: an error in any refuses them all, with its
    /// file:line. Returns `path`'s first, each file once; those already running are left out
    /// unless `running` (a reload checks them too).
    fn load_all(&self, path: &Path, args: &[String], running: bool, log: Log) -> Result<Vec<Loaded>, String> {
        let read = |path: &Path, cfgname: String, log: Log| -> Result<Loaded, String> {
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let state = load_text(path, &text, log)?;
            Ok(Loaded { path: path.to_path_buf(), cfgname, mtime, text, state })
        };
        let mut all = vec![read(path, cfgname(args), log)?];
        let mut i = 0;
        while i < all.len() {
            let names = all[i].state.global.execute.clone();
            for name in names {
                let from = &all[i];
                let target = self.config_path(std::slice::from_ref(&name))?;
                if !target.is_file() {
                    return Err(format!(
                        "{}:{}: execute: no configuration {name} (looked for {}, {} and {name})",
                        from.path.display(),
                        execute_line(&from.text, &name),
                        self.config_dir.join(&name).display(),
                        self.config_dir.join("conf").join(&name).display(),
                    ));
                }
                let skip =
                    !running && lock(&self.instances).get(&target).is_some_and(|i| !i.thread.is_finished());
                if skip || all.iter().any(|l| l.path == target) {
                    continue;
                }
                let loaded = read(&target, cfgname(std::slice::from_ref(&name)), log)
                    .map_err(|e| format!("{e} (execute={name} of {})", from.path.display()))?;
                all.push(loaded);
            }
            i += 1;
        }
        Ok(all)
    }

    fn start_inner(&self, group: &str, args: &[String], log: Log) -> Result<(), String> {
        let path = self.config_path(args)?;
        if lock(&self.instances).get(&path).is_some_and(|i| !i.thread.is_finished()) {
            return Ok(());
        }
        let mut all = self.load_all(&path, args, false, log)?.into_iter();
        let Some(main) = all.next() else { return Ok(()) };
        let mut started: Vec<PathBuf> = Vec::new();
        for other in all {
            let p = other.path.clone();
            if let Err(e) = self.start_one(group, other, Vec::new(), log) {
                for q in started.iter().rev() {
                    let _ = self.stop_path(q, log);
                }
                return Err(format!("execute: {e}"));
            }
            started.push(p);
        }
        if let Err(e) = self.start_one(group, main, started.clone(), log) {
            for q in started.iter().rev() {
                let _ = self.stop_path(q, log);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Starts the director of one configuration read by [`Director::load_all`].
    fn start_one(&self, group: &str, loaded: Loaded, executed: Vec<PathBuf>, log: Log) -> Result<(), String> {
        let Loaded { path, cfgname, mtime, text, state } = loaded;
        let ldlog = LdLog::new(&state.global, &cfgname, Path::new("/dev/log"));
        let table = Director::table_for(&path);
        let choice = PlaneChoice::from(state.global.dataplane);
        let plane = DataPlane::select(choice, NftDataPlane::new(Nft::new()).with_table(table.clone()))
            .map_err(|e| format!("{}: dataplane={choice}: {e}", path.display()))?;
        let first = state.desired();
        plane.apply(&first).map_err(|e| format!("{plane}: {e}"))?;
        log(
            Level::Info,
            format!(
                "director for {} started: {} virtual service(s), {plane} (dataplane={choice}); real servers down until checked",
                path.display(),
                state.services.len()
            ),
        );
        let wait = (state.longest_check() + Duration::from_secs(2)).min(FIRST_PASS_WAIT_MAX);
        let (respawn, respawn_rx) = tokio::sync::mpsc::unbounded_channel();
        let (monitor, monitor_rx) = tokio::sync::mpsc::channel(MONITOR_QUEUE);
        let shared = Arc::new(Shared {
            path: path.clone(),
            plane,
            state: Mutex::new(state),
            logger: Arc::clone(&self.logger),
            status: Mutex::new(DaemonStatus::Starting),
            alerter: Mutex::new(Alerter::new()),
            alerts: AlertQueue::spawn(Arc::clone(&self.logger))?,
            respawn,
            reloading: Mutex::new(()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            seen: Mutex::new((mtime, text)),
            applied: Mutex::new(Applied { desired: first, error: None }),
            last_reload: Mutex::new(None),
            ldlog: Mutex::new(ldlog),
            fallback_ran: Mutex::new(HashMap::new()),
            monitor,
            monitor_rx: Mutex::new(Some(monitor_rx)),
        });
        // ldirectord's first line (halo's log has its own, from the executor).
        lock(&shared.ldlog).write(
            &format!(
                "Starting halo's Linux Director for {} with pid: {}",
                path.display(),
                std::process::id()
            ),
            &shared.logger,
        );
        {
            // ldirectord's start: every real server down, so each fallbackcommand starts.
            let st = lock(&shared.state);
            for s in &st.services {
                shared.fallback_command(s);
            }
        }
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("halo-director".into())
                .spawn(move || {
                    halo_host::rt::set_normal();
                    director_thread(shared, stop_rx, respawn_rx, ready_tx)
                })
                .map_err(|e| format!("cannot start the director thread: {e}"))?
        };
        if ready_rx.recv_timeout(wait).is_err() {
            log(
                Level::Warn,
                format!("director for {}: first check pass not done yet; running", path.display()),
            );
        }
        *lock(&shared.status) = DaemonStatus::Running;
        let inst = Instance {
            group: group.to_string(),
            executed,
            shared,
            stop,
            thread,
            sample: Mutex::new(None),
            rates: Mutex::new(BTreeMap::new()),
        };
        lock(&self.instances).insert(path, inst);
        Ok(())
    }

    fn stop_inner(&self, args: &[String], log: Log) -> Result<(), String> {
        let path = self.config_path(args)?;
        let executed = match lock(&self.instances).get(&path) {
            Some(i) => i.executed.clone(),
            None => self.leftover_executed(&path),
        };
        let r = self.stop_path(&path, log);
        // Then the directors its `execute` lines started, as ldirectord stops them.
        for p in executed {
            if let Err(e) = self.stop_path(&p, log) {
                log(Level::Warn, format!("director: execute {}: {e}", p.display()));
            }
        }
        r
    }

    /// For a stop of a director that does not run (what a killed daemon left): the files
    /// its `execute` lines name whose directors do not run either, to clean up after them.
    fn leftover_executed(&self, path: &Path) -> Vec<PathBuf> {
        let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
        let Ok((cf, _)) = halo_config::parse_ldirectord_cf(path, &text) else { return Vec::new() };
        let instances = lock(&self.instances);
        cf.global
            .execute
            .iter()
            .filter_map(|n| self.config_path(std::slice::from_ref(n)).ok())
            .filter(|p| p != path && p.is_file() && instances.get(p).is_none_or(|i| i.thread.is_finished()))
            .collect()
    }

    /// Stops the director of `path` (see the module documentation).
    fn stop_path(&self, path: &Path, log: Log) -> Result<(), String> {
        let path = path.to_path_buf();
        let inst = lock(&self.instances).remove(&path);
        let Some(inst) = inst else {
            // A table left by a daemon that was killed: nothing must forward any more.
            let plane = NftDataPlane::new(Nft::new()).with_table(Director::table_for(&path));
            match plane.remove() {
                Ok(true) => log(Level::Info, format!("removed the leftover table ip {}", plane.table())),
                Ok(false) => {}
                Err(e) => log(Level::Warn, format!("director for {}: {e}", path.display())),
            }
            remove_ipvs_leftovers(&path, log);
            return Ok(());
        };
        {
            // A reconfiguration under way finishes first; none starts after.
            let _one = lock(&inst.shared.reloading);
            inst.shared.stopped.store(true, Ordering::SeqCst);
        }
        *lock(&inst.shared.status) = DaemonStatus::Stopping;
        let _ = inst.stop.send(true);
        if inst.thread.join().is_err() {
            log(Level::Error, format!("the director thread for {} had panicked", path.display()));
        }
        let sh = &inst.shared;
        // As before every apply: a real server that failed while missing from the table
        // (readdquiescent=no) is left out, not kept at weight 0 by cleanstop=no.
        settle_quiescent(sh, &|| sh.plane.kernel_model().map_err(|e| e.to_string()));
        let kept = {
            // ldirectord's `Purged real server (stop)` for every real server in the table of
            // a service with cleanstop=yes; those with cleanstop=no stay as they are.
            let st = lock(&sh.state);
            let mut kept = Vec::new();
            for s in &st.services {
                if !s.cleanstop {
                    kept.push(s.desired());
                    continue;
                }
                let d = s.desired();
                for (ri, r) in s.reals.iter().enumerate() {
                    if d.reals.iter().any(|x| x.addr == r.addr) {
                        let e = s.purge_event(ri, "stop");
                        lock(&sh.ldlog).write(&e.message, &sh.logger);
                        sh.alert(&st, &e, &s.mail);
                    }
                }
            }
            kept
        };
        if kept.is_empty() {
            sh.plane.remove().map_err(|e| format!("removing table ip {}: {e}", sh.plane.table()))?;
            log(
                Level::Info,
                format!("director for {} stopped; table ip {} removed", path.display(), sh.plane.table()),
            );
        } else {
            let n = kept.len();
            sh.apply(halo_lb::dataplane::Desired { services: kept })
                .map_err(|e| format!("table ip {}: {e}", sh.plane.table()))?;
            log(
                Level::Info,
                format!(
                    "director for {} stopped; cleanstop=no: table ip {} left with {n} virtual service(s)",
                    path.display(),
                    sh.plane.table()
                ),
            );
        }
        lock(&sh.ldlog).write(
            &format!("Linux Director Daemon terminated (halo's director for {} stopped)", path.display()),
            &sh.logger,
        );
        // The director thread is gone: this is the last reference, unless a reconfiguration
        // is under way on another thread (its alerts then finish on their own).
        if let Ok(sh) = Arc::try_unwrap(inst.shared) {
            sh.alerts.drain();
        }
        Ok(())
    }

    /// Each real server's connection counts in the kernel's IPVS table `k`.
    fn ipvs_counts(k: &ipvsadm::Model) -> ConnCounts {
        let mut counts = ConnCounts::new();
        for s in &k.services {
            let Some(key) = halo_lb::dataplane::ipvs::key_of(&s.key) else { continue };
            for d in &s.dests {
                counts.insert(
                    (key, d.addr),
                    halo_lb::conntrack::Conns { active: d.active, inactive: d.inactive },
                );
            }
        }
        counts
    }

    /// What `halo lvs` shows: the ipvsadm views (`list`, `stats`, `stats_exact`, `rate`,
    /// `conn`) of every running director, and each one's real servers with their health.
    /// Blocks (reads the nft counters): never call it on the heartbeat thread.
    pub fn lvs_json(&self) -> Value {
        let instances = lock(&self.instances);
        let mut model = ipvsadm::Model::default();
        let mut directors = Vec::new();
        // With IPVS, the kernel's whole table, read once: what `ipvsadm -L -n` lists.
        let mut kernel: Option<Result<ipvsadm::Model, String>> = None;
        for (path, inst) in instances.iter() {
            let running = !inst.thread.is_finished();
            let stats = inst.shared.plane.stats().unwrap_or_default();
            let rates = inst.rates(&stats);
            let st = lock(&inst.shared.state).clone();
            // nftables: the table as last applied (ipvsadm lists the kernel's table, not what
            // the director is about to put there); IPVS: replaced by the kernel's own below.
            let decided = st.desired();
            let (listed, table_pending, apply_error) = inst.shared.listed_table(&decided);
            let mut m = halo_lb::director::model_of(&listed, &stats, &is_local);
            // IPVS: the kernel's own table, as ipvsadm lists it.
            let ipvs = match &inst.shared.plane {
                DataPlane::Ipvs(p) => Some(
                    kernel
                        .get_or_insert_with(|| p.model().map_err(|e| format!("the IPVS table: {e}")))
                        .clone(),
                ),
                DataPlane::Nft(_) => None,
            };
            let on_ipvs = ipvs.is_some();
            // NAT connections per real server, from conntrack (DR ones never reach it).
            let nat: Vec<ServiceKey> = st
                .services
                .iter()
                .filter(|s| s.service.forward == Forward::Masq)
                .map(|s| s.service.key)
                .collect();
            let (mut conns, conntrack_error) = if let Some(k) = ipvs {
                match k {
                    Ok(k) => (Director::ipvs_counts(&k), None),
                    Err(e) => (BTreeMap::new(), Some(e)),
                }
            } else if nat.is_empty() {
                (BTreeMap::new(), None)
            } else {
                match halo_lb::conntrack::dump(CONNTRACK_TIMEOUT) {
                    Ok(entries) => {
                        m.connections = halo_lb::conntrack::connections(&entries, &nat);
                        (halo_lb::conntrack::count(&entries, &nat), None)
                    }
                    Err(e) => (BTreeMap::new(), Some(e.to_string())),
                }
            };
            // DR connections on nftables, from the plane's flow sets (see
            // halo_lb::dataplane::flows::DR_ACTIVE_IDLE_S for active and inactive).
            let dr: Vec<ServiceKey> = st
                .services
                .iter()
                .filter(|s| s.service.forward == Forward::Gate)
                .map(|s| s.service.key)
                .collect();
            let mut flows_error = None;
            if let (DataPlane::Nft(p), false) = (&inst.shared.plane, dr.is_empty()) {
                match p.dr_flows(&dr) {
                    Ok(f) => {
                        conns.extend(halo_lb::dataplane::flows::dr_count(&f));
                        m.connections.extend(halo_lb::dataplane::flows::dr_connections(&f));
                    }
                    Err(e) => flows_error = Some(format!("table ip {}: {e}", p.table())),
                }
            }
            for s in m.services.iter_mut().filter(|_| !on_ipvs) {
                let Some(key) = halo_lb::dataplane::ipvs::key_of(&s.key) else { continue };
                for d in &mut s.dests {
                    let ra = d.addr;
                    if let Some(c) = conns.get(&(key, ra)) {
                        d.active = c.active;
                        d.inactive = c.inactive;
                    }
                    if let Some(r) = rates.get(&(key, ra)) {
                        d.rates = *r;
                        s.rates.inpps += r.inpps;
                        s.rates.outpps += r.outpps;
                        s.rates.inbps += r.inbps;
                        s.rates.outbps += r.outbps;
                    }
                }
            }
            if !on_ipvs {
                model.services.extend(m.services);
                model.connections.extend(m.connections);
            }
            let services: Vec<Value> = st
                .services
                .iter()
                .map(|s| {
                    let key = s.service.key;
                    json!({
                        "id": s.id,
                        "scheduler": s.service.scheduler,
                        "forward": match s.service.forward {
                            Forward::Masq => "masq",
                            Forward::Gate => "gate",
                            Forward::Ipip => "ipip",
                        },
                        "quiescent": s.quiescent,
                        "fallback": s.fallback.map(|f| f.to_string()),
                        "fallback_active": s.fallback_active(),
                        "reals": s.reals.iter().map(|r| json!({
                            "addr": r.addr.to_string(),
                            "id": r.id,
                            "weight": r.weight,
                            "maintenance": r.maintenance,
                            "active_conns": conns.get(&(key, r.addr)).map(|c| c.active).unwrap_or(0),
                            "inact_conns": conns.get(&(key, r.addr)).map(|c| c.inactive).unwrap_or(0),
                            "checks": r.checker.health().checks(),
                            "successes": r.checker.health().successes(),
                            "failures": r.checker.health().failures(),
                            "in_table": listed
                                .services
                                .iter()
                                .find(|x| x.key == key)
                                .and_then(|x| x.reals.iter().find(|x| x.addr == r.addr))
                                .map(|x| x.weight),
                            "health": match &r.maintenance {
                                Some(f) => format!("down (maintenance file {f})"),
                                None => r.checker.health().status(),
                            },
                            "last_check": r.checker.health().last().map(|c| c.reason.clone()),
                            "check": r.checker.spec().kind.name(),
                            // The data plane's counters (nft counts packets and bytes, not
                            // connections): the dashboard charts their rates.
                            "counters": stats
                                .iter()
                                .find(|x| x.service == key && x.real == r.addr)
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
                "table": inst.shared.plane.table(),
                "dataplane": inst.shared.plane.name(),
                "daemon_status": inst.shared.status().name(),
                "conntrack_error": conntrack_error,
                // The data plane's table lags the director's decision (an apply under way, or
                // failing: `apply_error`); the listing shows the table as last applied.
                "table_pending": table_pending,
                "apply_error": apply_error,
                "flows_error": flows_error,
                "autoreload": st.global.autoreload,
                "maintenancedir": st.global.maintenancedir.as_ref().map(|d| d.display().to_string()),
                "alerts_pending_repeat": lock(&inst.shared.alerter).pending(),
                "last_reload": lock(&inst.shared.last_reload).as_ref().map(|(t, r)| json!({
                    "at_unix": t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                    "ok": r.is_ok(),
                    "message": match r { Ok(m) | Err(m) => m.clone() },
                })),
                "running": running,
                "services": services,
            }));
        }
        if let Some(Ok(k)) = kernel {
            (model.version, model.size) = (k.version, k.size);
            model.services.extend(k.services);
            model.connections.extend(k.connections);
        }
        lvs_views(&model, directors)
    }

    fn stats_key(s: &RealStats) -> (ServiceKey, SocketAddr) {
        (s.service, s.real)
    }
}

/// Connection counts per (virtual service, real server).
type ConnCounts = BTreeMap<(ServiceKey, SocketAddr), halo_lb::conntrack::Conns>;

/// A stop of a director that does not run, on a kernel with IPVS: the virtual services its
/// file names are deleted (a killed daemon's; the table has no record of who added them, and
/// these are the ones this director would have added). Nothing when the file says
/// `dataplane=nftables` or cannot be read.
fn remove_ipvs_leftovers(path: &Path, log: Log) {
    if !halo_lb::dataplane::ipvs::available() {
        return;
    }
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let Ok(state) = load_text(path, &text, &mut |_, _| {}) else { return };
    if state.global.dataplane == halo_config::ldirectord_cf::Dataplane::Nftables {
        return;
    }
    match IpvsDataPlane::new().remove_desired(&state.desired()) {
        Ok(true) => log(Level::Info, format!("removed the leftover IPVS services of {}", path.display())),
        Ok(false) => {}
        Err(e) => log(Level::Warn, format!("director for {}: IPVS: {e}", path.display())),
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
    fn rates(&self, now_stats: &[RealStats]) -> BTreeMap<(ServiceKey, SocketAddr), ipvsadm::Rates> {
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
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut respawn: tokio::sync::mpsc::UnboundedReceiver<()>,
    ready: mpsc::Sender<()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            shared.log(Level::Crit, &format!("director: cannot build its runtime: {e}"));
            return;
        }
    };
    rt.block_on(async move {
        let changed = Arc::new(tokio::sync::Notify::new());
        let first_done = Arc::new(AtomicUsize::new(0));
        let n = lock(&shared.state).services.len();
        // Each service's check grid (anchor, interval), kept across reconfigurations.
        let mut grids: HashMap<String, (tokio::time::Instant, Duration)> = HashMap::new();
        let mut tasks = spawn_services(&shared, &changed, &first_done, &stop, &mut grids);
        let mut side = tokio::task::JoinSet::new();
        side.spawn(maintenance_loop(Arc::clone(&shared), Arc::clone(&changed)));
        side.spawn(rdns_loop(Arc::clone(&shared)));
        if let Some(rx) = lock(&shared.monitor_rx).take() {
            side.spawn(monitor_writer(rx, Arc::clone(&shared)));
        }
        side.spawn(resend_loop(Arc::clone(&shared)));
        side.spawn(config_watch_loop(Arc::clone(&shared)));
        let mut ready = Some(ready);
        loop {
            tokio::select! {
                _ = changed.notified() => {}
                Some(()) = respawn.recv() => {
                    tasks.abort_all();
                    tasks = spawn_services(&shared, &changed, &first_done, &stop, &mut grids);
                    continue;
                }
                _ = stop.changed() => break,
            }
            let sh = Arc::clone(&shared);
            match tokio::task::spawn_blocking(move || {
                settle_quiescent(&sh, &|| sh.plane.kernel_model().map_err(|e| e.to_string()));
                let desired = lock(&sh.state).desired();
                sh.apply(desired)
            })
            .await
            {
                Ok(Ok(changes)) if !changes.is_empty() => {
                    let what: Vec<String> = changes.iter().map(ToString::to_string).collect();
                    shared.log(Level::Debug, &format!("director: {}: {}", shared.plane, what.join(", ")));
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => shared.log(Level::Error, &format!("director: applying {}: {e}", shared.plane)),
                Err(e) => shared.log(Level::Error, &format!("director: apply task: {e}")),
            }
            if first_done.load(Ordering::SeqCst) >= n {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(());
                }
            }
        }
        tasks.abort_all();
        side.abort_all();
    });
}

/// `readdquiescent=no`: real servers that went down (quiescent) while missing from the
/// kernel's IPVS table are left out of it (halo-lb's `settle_quiescent`). Blocking (it reads
/// the table with `table`): on the blocking pool, just before every apply (the director
/// thread's and a reload's). On nftables (halo's own table, which every apply rebuilds)
/// nothing is ever missing.
fn settle_quiescent(sh: &Shared, table: TableRead) {
    if !lock(&sh.state).unsettled() {
        return;
    }
    let have: Option<BTreeSet<(ServiceKey, SocketAddr)>> = match table() {
        Ok(Some(m)) => Some(
            m.services
                .iter()
                .filter_map(|s| Some((halo_lb::dataplane::ipvs::key_of(&s.key)?, s)))
                .flat_map(|(key, s)| s.dests.iter().map(move |d| (key, d.addr)))
                .collect(),
        ),
        Ok(None) => None,
        Err(e) => {
            sh.log(Level::Warn, &format!("director: readdquiescent: cannot read {}: {e}", sh.plane));
            None
        }
    };
    let left = lock(&sh.state).settle_quiescent(&|k, a| have.as_ref().is_none_or(|h| h.contains(&(k, a))));
    for l in left {
        sh.log(
            Level::Info,
            &format!("director: real server {l} went down while missing from {}: left out until it comes up (readdquiescent=no)", sh.plane),
        );
    }
}

/// One checking task per virtual service of the current configuration. A service whose
/// grid is known (it ran before a reconfiguration, same `checkinterval`) keeps it, and its
/// real servers already checked are not checked again before their turn.
fn spawn_services(
    shared: &Arc<Shared>,
    changed: &Arc<tokio::sync::Notify>,
    first_done: &Arc<AtomicUsize>,
    stop: &tokio::sync::watch::Receiver<bool>,
    grids: &mut HashMap<String, (tokio::time::Instant, Duration)>,
) -> tokio::task::JoinSet<()> {
    let now = tokio::time::Instant::now();
    let st = lock(&shared.state);
    let limit = Arc::new(tokio::sync::Semaphore::new(in_flight_limit(&st)));
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = HashMap::new();
    for (si, s) in st.services.iter().enumerate() {
        let anchor = match grids.get(&s.id) {
            Some(&(a, iv)) if iv == s.checkinterval => a,
            _ => now,
        };
        next.insert(s.id.clone(), (anchor, s.checkinterval));
        let targets: Vec<_> = s.reals.iter().map(|r| r.checker.spec().target).collect();
        let fresh: Vec<bool> = s.reals.iter().map(|r| r.checker.health().checks() == 0).collect();
        let pacer = pace::Pacer::resume(anchor, s.checkinterval, &targets, &fresh, now);
        tasks.spawn(service_loop(
            si,
            pacer,
            Arc::clone(shared),
            Arc::clone(changed),
            Arc::clone(first_done),
            Arc::clone(&limit),
            stop.clone(),
        ));
    }
    *grids = next;
    tasks
}

/// The checks of one virtual service, until stopped or replaced: each real server once per
/// `checkinterval` at its own phase (halo-lb's [`pace`](halo_lb::check::pace)), at most
/// `limit` checks of the director in flight. A real server in maintenance is not checked.
/// Each result is recorded as it comes, found by the real server's id (a reconfiguration
/// may have moved it); a change of state is logged, alerted and wakes the applier at once.
async fn service_loop(
    si: usize,
    pacer: pace::Pacer,
    shared: Arc<Shared>,
    changed: Arc<tokio::sync::Notify>,
    first_done: Arc<AtomicUsize>,
    limit: Arc<tokio::sync::Semaphore>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let check = |ri: usize| {
        let job = {
            let st = lock(&shared.state);
            st.services
                .get(si)
                .and_then(|s| s.reals.get(ri))
                .filter(|r| r.maintenance.is_none())
                .map(|r| (r.checker.next_spec_shared(), r.id))
        };
        let (shared, changed) = (Arc::clone(&shared), Arc::clone(&changed));
        async move {
            let Some((spec, id)) = job else { return };
            let result = halo_lb::check::run_check(&spec).await;
            let up = result.up;
            let reason = if up { String::new() } else { result.reason.clone() };
            let mut st = lock(&shared.state);
            let Some((si, ri)) = st.find(id, (si, ri)) else { return };
            if st.services[si].reals[ri].maintenance.is_some() {
                return;
            }
            if let Some(file) = &st.services[si].monitorfile {
                let ld_id = &st.services[si].reals[ri].ld_id;
                let msg = if up { "" } else { reason.as_str() };
                let line =
                    halo_lb::director::monitor_line(&perl_localtime(), std::process::id(), ld_id, up, msg);
                if shared.monitor.try_send((file.clone(), line)).is_err() {
                    shared.log(Level::Debug, "director: monitorfile queue full: a line is dropped");
                }
            }
            if let Some(t) = st.record(si, ri, result) {
                shared.changed(&st, si, ri, t);
                drop(st);
                changed.notify_one();
            } else if !up {
                let addr = st.services[si].reals[ri].addr;
                drop(st);
                shared.log(Level::Debug, &format!("director: check of {addr} failed: {reason}"));
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

/// Lines waiting for the monitorfile writer.
const MONITOR_QUEUE: usize = 8192;

/// Appends the monitorfile lines as they come, a batch per write on the blocking pool (one
/// open per file and batch, as ldirectord opens it per line: rotation works).
async fn monitor_writer(mut rx: tokio::sync::mpsc::Receiver<(PathBuf, String)>, shared: Arc<Shared>) {
    let mut failed: BTreeSet<PathBuf> = BTreeSet::new();
    while let Some(first) = rx.recv().await {
        let mut batch: BTreeMap<PathBuf, String> = BTreeMap::new();
        batch.entry(first.0).or_default().push_str(&first.1);
        while let Ok((p, l)) = rx.try_recv() {
            batch.entry(p).or_default().push_str(&l);
        }
        let results = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .map(|(p, text)| {
                    use std::io::Write;
                    let r = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&p)
                        .and_then(|mut f| f.write_all(text.as_bytes()));
                    (p, r)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (p, r) in results {
            match r {
                Ok(()) => {
                    failed.remove(&p);
                }
                Err(e) => {
                    if failed.insert(p.clone()) {
                        shared.log(
                            Level::Error,
                            &format!("director: writing monitorfile {}: {e}", p.display()),
                        );
                    }
                }
            }
        }
    }
}

/// The local time as Perl's scalar `localtime()` writes it (`Tue Dec  1 21:17:12 2026`).
fn perl_localtime() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: an all-zero `tm` is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let mut buf = [0u8; 64];
    // SAFETY: `now` and `tm` are valid for the call; strftime writes at most `buf.len()` bytes
    // into `buf` with a NUL-terminated format and returns how many (0 on failure).
    let n = unsafe {
        if libc::localtime_r(&now, &mut tm).is_null() {
            return String::new();
        }
        libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c"%a %b %e %H:%M:%S %Y".as_ptr(), &tm)
    };
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// How often the maintenance directory is listed.
const MAINTENANCE_POLL: Duration = Duration::from_secs(1);

/// Lists `maintenancedir` every second and applies it ([`DirectorState::set_maintenance`]).
async fn maintenance_loop(shared: Arc<Shared>, changed: Arc<tokio::sync::Notify>) {
    let mut last_error: Option<String> = None;
    loop {
        let (dir, idle) = {
            let st = lock(&shared.state);
            let any = st.services.iter().flat_map(|s| &s.reals).any(|r| r.maintenance.is_some());
            (st.global.maintenancedir.clone(), !any)
        };
        if dir.is_none() && idle {
            tokio::time::sleep(MAINTENANCE_POLL).await;
            continue;
        }
        let files = match dir {
            None => Ok(BTreeSet::new()),
            Some(d) => {
                tokio::task::spawn_blocking(move || list_dir(&d)).await.unwrap_or_else(|e| Err(e.to_string()))
            }
        };
        let files = match files {
            Ok(f) => {
                last_error = None;
                f
            }
            Err(e) => {
                if last_error.as_ref() != Some(&e) {
                    shared.log(
                        Level::Warn,
                        &format!("director: maintenancedir: {e}; no real server is in maintenance"),
                    );
                    last_error = Some(e);
                }
                BTreeSet::new()
            }
        };
        let mut any = false;
        {
            let mut st = lock(&shared.state);
            let before: Vec<(u64, Option<String>)> = st
                .services
                .iter()
                .flat_map(|s| s.reals.iter().map(|r| (r.id, r.maintenance.clone())))
                .collect();
            for (si, ri, t) in st.set_maintenance(&files) {
                shared.changed(&st, si, ri, t);
                any = true;
            }
            let after = st.services.iter().flat_map(|s| s.reals.iter());
            for ((id, was), r) in before.iter().zip(after) {
                if *id == r.id && was.is_some() && r.maintenance.is_none() {
                    shared
                        .log(Level::Info, &format!("director: {} leaves maintenance: checked again", r.addr));
                } else if *id == r.id && was.is_none() && r.maintenance.is_some() {
                    shared.log(
                        Level::Info,
                        &format!(
                            "director: {} in maintenance (file {})",
                            r.addr,
                            r.maintenance.as_deref().unwrap_or("")
                        ),
                    );
                }
            }
        }
        if any {
            changed.notify_one();
        }
        tokio::time::sleep(MAINTENANCE_POLL).await;
    }
}

/// How often the names of the real servers' addresses are looked up again.
const RDNS_REFRESH: Duration = Duration::from_secs(60);

/// With a `maintenancedir`: the name of each real server's address (reverse lookup, on the
/// blocking pool, one after the other), for the maintenance files named after it as
/// ldirectord names them; refreshed every minute, and at once after a reconfiguration adds
/// real servers. Without one, nothing is looked up.
async fn rdns_loop(shared: Arc<Shared>) {
    let mut done: BTreeMap<u64, tokio::time::Instant> = BTreeMap::new();
    loop {
        let todo: Vec<(u64, IpAddr)> = {
            let st = lock(&shared.state);
            if st.global.maintenancedir.is_none() {
                Vec::new()
            } else {
                let now = tokio::time::Instant::now();
                st.services
                    .iter()
                    .flat_map(|s| &s.reals)
                    .filter(|r| done.get(&r.id).is_none_or(|t| now.duration_since(*t) >= RDNS_REFRESH))
                    .map(|r| (r.id, r.addr.ip()))
                    .collect()
            }
        };
        {
            let st = lock(&shared.state);
            done.retain(|id, _| st.services.iter().flat_map(|s| &s.reals).any(|r| r.id == *id));
        }
        for (id, ip) in todo {
            let name = tokio::task::spawn_blocking(move || reverse_name(ip)).await.ok().flatten();
            done.insert(id, tokio::time::Instant::now());
            let mut st = lock(&shared.state);
            if let Some(r) = st.services.iter_mut().flat_map(|s| &mut s.reals).find(|r| r.id == id) {
                r.rdns = name;
            }
        }
        tokio::time::sleep(MAINTENANCE_POLL).await;
    }
}

/// The resolver's name for `ip` (`getnameinfo` with `NI_NAMEREQD`: /etc/hosts, DNS PTR, ...).
/// Blocks.
fn reverse_name(ip: IpAddr) -> Option<String> {
    let sa = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `sa` is a valid sockaddr (sockaddr_in or sockaddr_in6) of the length given;
    // `host` is a writable buffer of the length given, which getnameinfo NUL-terminates on
    // success; no service is asked.
    let rc = unsafe {
        libc::getnameinfo(
            sa.as_ptr().cast::<libc::sockaddr>(),
            sa.len(),
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success getnameinfo wrote a NUL-terminated string into `host`.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().filter(|n| !n.is_empty()).map(str::to_string)
}

fn list_dir(d: &Path) -> Result<BTreeSet<String>, String> {
    let rd = std::fs::read_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
}

/// The global `checkinterval` of the running configuration (at least a second).
fn global_interval(shared: &Shared) -> Duration {
    Duration::from_secs(u64::from(lock(&shared.state).global.checkinterval.max(1)))
}

/// ldirectord's `ld_emailalert_resend`, once per check round.
async fn resend_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(global_interval(&shared)).await;
        let mails = lock(&shared.alerter).resend(shared.status(), tokio::time::Instant::now());
        for m in mails {
            shared.log(Level::Info, &format!("director: {}", m.subject));
            shared.alerts.send(AlertMsg::Mail(m));
        }
    }
}

/// ldirectord's `check_cfgfile`, once per check round: a new mtime, then a new text, is a
/// change: `callback FILE` runs, and with `autoreload=yes` the director reconfigures.
async fn config_watch_loop(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(global_interval(&shared)).await;
        let mtime = std::fs::metadata(&shared.path).and_then(|m| m.modified()).ok();
        if mtime.is_none() || lock(&shared.seen).0 == mtime {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&shared.path) else { continue };
        let same = {
            let mut seen = lock(&shared.seen);
            let same = seen.1 == text;
            *seen = (mtime, text);
            same
        };
        if same {
            continue;
        }
        let (autoreload, callback) = {
            let st = lock(&shared.state);
            (st.global.autoreload, st.global.callback.clone())
        };
        shared.log(
            Level::Info,
            &format!(
                "director: configuration file '{}' has changed on disk - {}",
                shared.path.display(),
                if autoreload {
                    "reread new configuration"
                } else {
                    "ignore new configuration (autoreload=no)"
                }
            ),
        );
        if autoreload {
            let sh = Arc::clone(&shared);
            let before = lock(&shared.state).global.execute.clone();
            let r = tokio::task::spawn_blocking(move || sh.reconfigure()).await;
            match r {
                Ok(Ok(_)) => {
                    if lock(&shared.state).global.execute != before {
                        shared.log(
                            Level::Warn,
                            "director: its execute lines changed: `halo reload` (or the next start) starts and stops those directors; autoreload reloads this file only",
                        );
                    }
                }
                Ok(Err(e)) => shared.log(
                    Level::Error,
                    &format!("director: new configuration refused, the running one stays: {e}"),
                ),
                Err(e) => shared.log(Level::Error, &format!("director: reload task: {e}")),
            }
        }
        if let Some(cb) = callback {
            let command = format!("{cb} {}", shared.path.display());
            if let Err(e) = alert::run_command(&command, &[], alert::ALERT_TIMEOUT).await {
                shared.log(Level::Warn, &format!("director: callback: {e}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals(text: &str) -> Globals {
        halo_config::parse_ldirectord_cf(Path::new("ldirectord.cf"), text).expect("parses").0.global
    }

    /// A scratch directory, removed when the test ends (passed or not).
    fn tmpdir(tag: &str) -> crate::testbed::Scratch {
        let d = std::env::temp_dir().join(format!("halo-ldlog-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        crate::testbed::Scratch(d)
    }

    /// halo's own logger, writing to `dir/halo.log`.
    fn halo_logger(dir: &Path) -> Logger {
        Logger::new(LogConfig { logfile: Some(dir.join("halo.log")), ..LogConfig::default() }).unwrap()
    }

    /// `[Tue Dec  1 21:17:12 2026|CFG|PID] MSG`
    fn is_ld_line(line: &str, cfgname: &str, msg: &str) -> bool {
        let Some(rest) = line.strip_prefix('[') else { return false };
        let Some((stamp, rest)) = rest.split_once('|') else { return false };
        let want = format!("{cfgname}|{}] {msg}", std::process::id());
        stamp.len() == 24 && stamp.as_bytes()[3] == b' ' && stamp[20..].parse::<u32>().is_ok() && rest == want
    }

    #[test]
    fn ldlog_file_lines_are_ldirectords() {
        let dir = tmpdir("file");
        let file = dir.join("ld.log");
        let g = globals(&format!("logfile=\"{}\"\n", file.display()));
        let log = LdLog::new(&g, "ldirectord", Path::new("/nonexistent"));
        let halo = halo_logger(&dir);
        log.write("director: Added real server: 10.0.0.2:80 (10.0.0.1:80) (Weight set to 1)", &halo);
        log.write("Deleted real server: 10.0.0.2:80 (10.0.0.1:80)", &halo);
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            is_ld_line(
                lines[0],
                "ldirectord",
                "Added real server: 10.0.0.2:80 (10.0.0.1:80) (Weight set to 1)"
            ),
            "{text}"
        );
        assert!(
            is_ld_line(lines[1], "ldirectord", "Deleted real server: 10.0.0.2:80 (10.0.0.1:80)"),
            "{text}"
        );
        // The default is ldirectord's.
        assert!(
            matches!(LdLog::new(&globals(""), "x", Path::new("/x")).sink, LdSink::File(p) if p == Path::new("/var/log/ldirectord.log"))
        );
    }

    #[test]
    fn ldlog_unwritable_file_warns_once_in_halos_log() {
        let dir = tmpdir("unwritable");
        let file = dir.join("no-such-dir").join("ld.log");
        let g = globals(&format!("logfile=\"{}\"\n", file.display()));
        let log = LdLog::new(&g, "ldirectord.cf", Path::new("/nonexistent"));
        let halo = halo_logger(&dir);
        for _ in 0..3 {
            log.write("director: Added real server: 10.0.0.2:80 (10.0.0.1:80) (Weight set to 1)", &halo);
        }
        assert!(!file.exists());
        let text = std::fs::read_to_string(dir.join("halo.log")).unwrap();
        let warnings: Vec<&str> =
            text.lines().filter(|l| l.contains("cannot write ldirectord's logfile")).collect();
        assert_eq!(warnings.len(), 1, "{text}");
        assert!(warnings[0].contains("WARN") && warnings[0].contains(&file.display().to_string()), "{text}");
    }

    #[test]
    fn ldlog_supervised_writes_no_logfile() {
        let dir = tmpdir("supervised");
        let file = dir.join("ld.log");
        let g = globals(&format!("logfile=\"{}\"\nsupervised=yes\n", file.display()));
        let log = LdLog::new(&g, "ldirectord", Path::new("/nonexistent"));
        assert!(matches!(log.sink, LdSink::HaloOnly));
        log.write(
            "director: Added real server: 10.0.0.2:80 (10.0.0.1:80) (Weight set to 1)",
            &halo_logger(&dir),
        );
        assert!(!file.exists(), "supervised=yes: the lines are halo's log's only");
        assert!(log.same(&g));
        assert!(!log.same(&globals(&format!("logfile=\"{}\"\n", file.display()))));
    }

    #[test]
    fn ldlog_facility_goes_to_syslog_as_ldirectord_at_info() {
        let dir = tmpdir("syslog");
        let sock_path = dir.join("log.sock");
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let log = LdLog::new(&globals("logfile=\"local3\"\n"), "ldirectord", &sock_path);
        log.write(
            "director: Quiescent real server: 10.0.0.2:80 (10.0.0.1:80) (Weight set to 0)",
            &halo_logger(&dir),
        );
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).unwrap();
        let d = String::from_utf8_lossy(&buf[..n]).into_owned();
        // local3 = 19, info = 6: <158>.
        assert!(d.starts_with("<158>"), "{d}");
        assert!(
            d.ends_with(&format!(
                "ldirectord[{}]: Quiescent real server: 10.0.0.2:80 (10.0.0.1:80) (Weight set to 0)",
                std::process::id()
            )),
            "{d}"
        );
    }

    #[test]
    fn cfgname_and_execute_line_as_ldirectord() {
        assert_eq!(cfgname(&[]), "ldirectord");
        assert_eq!(cfgname(&["ldirectord.cf".to_string()]), "ldirectord.cf");
        assert_eq!(cfgname(&["/etc/ha.d/web.cf".to_string()]), "web.cf");
        let text = "checkinterval=5\nexecute = \"other.cf\"\nexecute=third.cf # x\n";
        assert_eq!(execute_line(text, "other.cf"), 2);
        assert_eq!(execute_line(text, "third.cf"), 3);
    }

    #[test]
    fn execute_reads_every_configuration_before_anything_starts() {
        let dir = tmpdir("execute");
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        let vs = |vip: &str| format!("virtual={vip}:80\n\treal=10.99.0.2:80 gate\n\tchecktype=connect\n");
        std::fs::write(dir.join("ldirectord.cf"), format!("execute=web.cf\n{}", vs("10.99.0.1"))).unwrap();
        // Found in conf/, as ldirectord looks there second; its own globals.
        std::fs::write(
            dir.join("conf").join("web.cf"),
            format!("quiescent=yes\nexecute=ldirectord.cf\n{}", vs("10.99.0.3")),
        )
        .unwrap();
        let d = Director::new(&dir, Arc::new(halo_logger(&dir)));
        let path = d.config_path(&[]).unwrap();
        let all = d.load_all(&path, &[], false, &mut |_, _| {}).unwrap();
        let got: Vec<(PathBuf, String, bool)> =
            all.iter().map(|l| (l.path.clone(), l.cfgname.clone(), l.state.global.quiescent)).collect();
        assert_eq!(
            got,
            vec![
                (dir.join("ldirectord.cf"), "ldirectord".to_string(), false),
                (dir.join("conf").join("web.cf"), "web.cf".to_string(), true),
            ],
            "each file once, even when they execute each other"
        );
        assert_eq!(all[1].state.services[0].id, "tcp:10.99.0.3:80");
        // An error in the executed file names its file:line and refuses the whole start.
        std::fs::write(
            dir.join("conf").join("web.cf"),
            format!("{}\tscheduler=rr\nfork=maybe\n", vs("10.99.0.3")),
        )
        .unwrap();
        let e = d.load_all(&path, &[], false, &mut |_, _| {}).err().unwrap();
        assert!(
            e.contains(&format!("{}:5: fork: expected yes or no", dir.join("conf").join("web.cf").display())),
            "{e}"
        );
        // A name that is nowhere: the execute line of the file that names it.
        std::fs::write(
            dir.join("ldirectord.cf"),
            format!("checkinterval=3\nexecute=\"gone.cf\"\n{}", vs("10.99.0.1")),
        )
        .unwrap();
        let e = d.load_all(&path, &[], false, &mut |_, _| {}).err().unwrap();
        assert!(e.starts_with(&format!("{}:2: execute: no configuration gone.cf", path.display())), "{e}");
    }

    /// A director's shared state as `start_one` builds it, for a test that drives it without
    /// a director thread (nothing applied yet: an empty table).
    fn test_shared(path: PathBuf, plane: DataPlane, state: DirectorState, logger: &Arc<Logger>) -> Shared {
        let (respawn, _) = tokio::sync::mpsc::unbounded_channel();
        let (monitor, monitor_rx) = tokio::sync::mpsc::channel(MONITOR_QUEUE);
        let ldlog = LdLog::new(&state.global, "ldirectord.cf", Path::new("/nonexistent"));
        Shared {
            path,
            plane,
            state: Mutex::new(state),
            logger: Arc::clone(logger),
            status: Mutex::new(DaemonStatus::Running),
            alerter: Mutex::new(Alerter::new()),
            alerts: AlertQueue::spawn(Arc::clone(logger)).expect("alert thread"),
            respawn,
            reloading: Mutex::new(()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            seen: Mutex::new((None, String::new())),
            last_reload: Mutex::new(None),
            ldlog: Mutex::new(ldlog),
            fallback_ran: Mutex::new(HashMap::new()),
            monitor,
            monitor_rx: Mutex::new(Some(monitor_rx)),
            applied: Mutex::new(Applied { desired: halo_lb::dataplane::Desired::default(), error: None }),
        }
    }

    #[test]
    fn halo_lvs_lists_the_table_last_applied_and_says_when_applies_fail() {
        // nft is a script here: it lists no tables, and its transactions fail while the file
        // `fail` exists. The listing follows the applies that succeed, not the decisions.
        use std::os::unix::fs::PermissionsExt;
        let dir = tmpdir("lvs-applied");
        let fake = dir.join("nft");
        let flag = dir.join("fail");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\ncase \"$*\" in\n*-f*) cat >/dev/null; [ -e {} ] && {{ echo 'Error: simulated' >&2; exit 1; }}; exit 0;;\n\
                 *) echo '{{\"nftables\": []}}';;\nesac\n",
                flag.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.join("ldirectord.cf");
        let text = "checktimeout=3\nvirtual=192.168.1.199:80\n\treal=192.168.1.61:80 gate\n\
                    \treal=192.168.1.62:80 gate\n\tchecktype=connect\n\tscheduler=rr\n";
        let mut state = load_text(&path, text, &mut |_, _| {}).expect("loads");
        let up = |up| halo_lb::check::CheckResult {
            kind: halo_lb::check::CheckKind::Connect,
            up,
            reason: "test".into(),
            duration: Duration::ZERO,
        };
        state.record(0, 0, up(true));
        let logger = Arc::new(halo_logger(&dir));
        let plane = DataPlane::Nft(NftDataPlane::new(Nft::new().with_program(&fake)).with_table("halo_lb_t"));
        let sh = test_shared(path, plane, state, &logger);
        let reals = |d: &halo_lb::dataplane::Desired| -> Vec<String> {
            d.services[0].reals.iter().map(|r| r.addr.to_string()).collect()
        };
        let first = lock(&sh.state).desired();
        sh.apply(first.clone()).expect("the first apply");
        let (listed, pending, err) = sh.listed_table(&first);
        assert_eq!((reals(&listed), pending, err), (vec!["192.168.1.61:80".to_string()], false, None));
        // r2 comes up; the apply of that decision fails.
        lock(&sh.state).record(0, 1, up(true));
        let second = lock(&sh.state).desired();
        std::fs::write(&flag, "").unwrap();
        let e = sh.apply(second.clone()).expect_err("nft fails");
        assert!(e.to_string().contains("simulated"), "{e}");
        let (listed, pending, err) = sh.listed_table(&second);
        assert_eq!(reals(&listed), vec!["192.168.1.61:80".to_string()], "still the table last applied");
        assert!(pending, "the table lags the decision");
        assert!(err.as_deref().is_some_and(|e| e.contains("simulated")), "{err:?}");
        // The listing as `halo lvs` prints it: r1 only.
        let list = ipvsadm::list(&halo_lb::director::model_of(&listed, &[], &|_| false));
        assert!(list.contains("192.168.1.61:80") && !list.contains("192.168.1.62:80"), "{list}");
        // nft works again: the next apply catches up.
        std::fs::remove_file(&flag).unwrap();
        sh.apply(second.clone()).expect("applies");
        let (listed, pending, err) = sh.listed_table(&second);
        assert_eq!(reals(&listed), vec!["192.168.1.61:80".to_string(), "192.168.1.62:80".to_string()]);
        assert!(!pending && err.is_none());
    }

    #[test]
    fn reload_leaves_a_real_server_that_failed_while_missing_out() {
        // quiescent=yes, readdquiescent=no (ldirectord's default): r2 was deleted from the
        // kernel's table by hand while up, then its check failed; a `halo reload` lands
        // before the director thread settles it. The reload's apply must leave it out, as
        // the director thread's apply does, not put it back at weight 0. In a private
        // network namespace: the reload applies to a real nftables table there (the table
        // read is IPVS's, given: this machine's kernel may have no IPVS).
        if !crate::testbed::root_for_test() {
            return;
        }
        let dir = tmpdir("reload-readdquiescent");
        let path = dir.join("ldirectord.cf");
        let text = format!(
            "logfile=\"{}\"\nquiescent=yes\nchecktimeout=3\nvirtual=192.168.1.199:80\n\
             \treal=192.168.1.61:80 gate\n\treal=192.168.1.62:80 gate\n\tchecktype=connect\n\tscheduler=rr\n",
            dir.join("ld.log").display()
        );
        std::fs::write(&path, &text).unwrap();
        let logger = Arc::new(halo_logger(&dir));
        let p = path.clone();
        let (report, desired, applied, left_out, unsettled) = std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("a network namespace");
            let mut state = load_text(&p, &text, &mut |_, _| {}).expect("loads");
            let up = |up| halo_lb::check::CheckResult {
                kind: halo_lb::check::CheckKind::Connect,
                up,
                reason: "test".into(),
                duration: Duration::ZERO,
            };
            state.record(0, 0, up(true));
            state.record(0, 1, up(true));
            // The table as the director left it with both up, then `ipvsadm -d` of r2.
            let mut table = state.model(&[], &|_| false);
            let r2: SocketAddr = "192.168.1.62:80".parse().unwrap();
            table.services[0].dests.retain(|x| x.addr != r2);
            assert_eq!(state.record(0, 1, up(false)), Some(Transition::Down));
            assert!(state.unsettled(), "r2 waits for a look at the table");
            let plane = DataPlane::Nft(NftDataPlane::new(Nft::new()).with_table("halo_lb_reloadtest"));
            let sh = test_shared(p, plane, state, &logger);
            // `halo reload` of the same file.
            let report = sh.reconfigure_reading(&|| Ok(Some(table.clone()))).expect("reloads");
            let st = lock(&sh.state);
            let desired: Vec<(String, u32)> =
                st.desired().services[0].reals.iter().map(|r| (r.addr.to_string(), r.weight)).collect();
            // What the reload's apply put in the data plane's table, read back.
            let applied: Vec<String> =
                sh.plane.stats().expect("reads the table").iter().map(|r| r.real.to_string()).collect();
            let _ = sh.plane.remove();
            (report, desired, applied, st.services[0].reals[1].left_out, st.unsettled())
        })
        .join()
        .expect("the reload thread");
        println!("reload: {report}\ndesired: {desired:?}\napplied: {applied:?}");
        assert_eq!(report.kept.len(), 2, "{report}");
        assert!(left_out && !unsettled, "r2 settled by the reload: left out");
        assert_eq!(desired, vec![("192.168.1.61:80".to_string(), 1)], "r2 not back at weight 0");
        assert_eq!(applied, vec!["192.168.1.61:80".to_string()], "the reload applied r1 only");
        let log = std::fs::read_to_string(dir.join("halo.log")).unwrap();
        assert!(
            log.contains("real server 192.168.1.62:80 (192.168.1.199:80) went down while missing from")
                && log.contains("left out until it comes up (readdquiescent=no)"),
            "{log}"
        );
    }
}
