//! `respawn` (ha.cf): processes halo keeps running for as long as it runs itself, started
//! once communication is up, as Heartbeat does (spec §5.6).
//!
//! * Each command runs as `/bin/sh -c "exec <command>"` as the named user, in its own
//!   process group, with stdin on `/dev/null`.
//! * Exit code 100 means "do not restart me" (Heartbeat's magic code).
//! * A child that dies is restarted after a back-off that doubles with every death soon
//!   after its start (100 ms, 200 ms, ... up to 30 s) and resets once it has run for 30 s —
//!   Heartbeat restarted at once, which turns a crash loop into a fork bomb.
//! * More than 10 deaths within 30 s of their starts: the child is given up (logged as an
//!   error), as Heartbeat does.
//! * [`Supervisor::stop`] sends SIGTERM to the children last-started-first and waits for
//!   each (SIGKILL after a grace period), as Heartbeat's shutdown does.
//!
//! Every child has a thread of its own that blocks in `wait`; nothing here runs on the
//! heartbeat thread.
use crate::Level;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The exit code that tells the supervisor not to restart a child.
pub const DONT_RESTART: i32 = 100;
const MAX_DEATHS: usize = 10;
const DEATH_WINDOW: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// One process to keep running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// User to run as (a name from the passwd database, or a numeric uid).
    pub user: String,
    /// The command line, given to `/bin/sh -c "exec ..."`.
    pub command: String,
    /// Kept holding the running child's pid (written at every start, removed when the
    /// supervisor stops it), so that a restarted halo can find it.
    pub pidfile: Option<std::path::PathBuf>,
}

/// What a child is doing, for status views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStatus {
    pub command: String,
    pub pid: Option<u32>,
    pub starts: u64,
    /// Given up (too many deaths, exit 100, or it could not be started).
    pub given_up: bool,
}

struct Child {
    spec: Spec,
    pid: Mutex<Option<u32>>,
    starts: AtomicU64,
    given_up: AtomicBool,
    /// Order of the latest start, for stopping last-started-first.
    started_order: AtomicU64,
}

struct Shared {
    stopping: AtomicBool,
    wake: Condvar,
    lock: Mutex<()>,
    order: AtomicU64,
}

/// Keeps the `respawn` children running; see the module documentation.
pub struct Supervisor {
    children: Vec<Arc<Child>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

type LogFn = Arc<dyn Fn(Level, String) + Send + Sync>;

impl Supervisor {
    /// Starts every child, each with its supervising thread.
    pub fn start(specs: &[Spec], log: LogFn) -> Supervisor {
        let shared = Arc::new(Shared {
            stopping: AtomicBool::new(false),
            wake: Condvar::new(),
            lock: Mutex::new(()),
            order: AtomicU64::new(0),
        });
        let mut children = Vec::new();
        let mut threads = Vec::new();
        for spec in specs {
            let child = Arc::new(Child {
                spec: spec.clone(),
                pid: Mutex::new(None),
                starts: AtomicU64::new(0),
                given_up: AtomicBool::new(false),
                started_order: AtomicU64::new(0),
            });
            let (c, s, l) = (Arc::clone(&child), Arc::clone(&shared), Arc::clone(&log));
            match std::thread::Builder::new().name("halo-respawn".into()).spawn(move || supervise(&c, &s, &l))
            {
                Ok(t) => threads.push(t),
                Err(e) => {
                    log(Level::Error, format!("respawn {}: cannot start its thread: {e}", spec.command))
                }
            }
            children.push(child);
        }
        Supervisor { children, shared, threads }
    }

    pub fn status(&self) -> Vec<ChildStatus> {
        self.children
            .iter()
            .map(|c| ChildStatus {
                command: c.spec.command.clone(),
                pid: *c.pid.lock().unwrap_or_else(|e| e.into_inner()),
                starts: c.starts.load(Ordering::Relaxed),
                given_up: c.given_up.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stops every child (SIGTERM, last started first; SIGKILL after a grace period) and
    /// waits for the supervising threads.
    pub fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        let mut order: Vec<&Arc<Child>> = self.children.iter().collect();
        order.sort_by_key(|c| std::cmp::Reverse(c.started_order.load(Ordering::Relaxed)));
        for c in order {
            let pid = *c.pid.lock().unwrap_or_else(|e| e.into_inner());
            let Some(pid) = pid else { continue };
            let pgid = nix::unistd::Pid::from_raw(pid as i32);
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
            let end = Instant::now() + STOP_GRACE;
            while c.pid.lock().unwrap_or_else(|e| e.into_inner()).is_some() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            if c.pid.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        for c in &self.children {
            if let Some(f) = &c.spec.pidfile {
                let _ = std::fs::remove_file(f);
            }
        }
    }
}

fn uid_gid(user: &str) -> Result<(u32, u32), String> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok((uid, uid));
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!("no user {user:?} in the password database")),
        Err(e) => Err(format!("looking up user {user:?}: {e}")),
    }
}

fn supervise(c: &Child, s: &Shared, log: &LogFn) {
    crate::rt::set_normal();
    let cmd = &c.spec.command;
    let (uid, gid) = match uid_gid(&c.spec.user) {
        Ok(ids) => ids,
        Err(e) => {
            log(Level::Error, format!("respawn {cmd}: {e}; not started"));
            c.given_up.store(true, Ordering::Relaxed);
            return;
        }
    };
    let mut deaths: Vec<Instant> = Vec::new();
    let mut backoff = FIRST_BACKOFF;
    while !s.stopping.load(Ordering::SeqCst) {
        let mut command = Command::new("/bin/sh");
        command.arg("-c").arg(format!("exec {cmd}")).stdin(Stdio::null()).process_group(0);
        // halo blocks the signals it reads from a signalfd and may run at real-time
        // priority: the child must start as from a shell.
        // SAFETY: reset_child makes only async-signal-safe calls on the child itself.
        unsafe {
            command.pre_exec(crate::agents::reset_child);
        }
        if uid != nix::unistd::getuid().as_raw() {
            command.uid(uid).gid(gid);
        }
        let started = Instant::now();
        let mut child = match command.spawn() {
            Ok(ch) => ch,
            Err(e) => {
                log(Level::Error, format!("respawn {cmd}: cannot start: {e}; given up"));
                c.given_up.store(true, Ordering::Relaxed);
                return;
            }
        };
        *c.pid.lock().unwrap_or_else(|e| e.into_inner()) = Some(child.id());
        if let Some(f) = &c.spec.pidfile {
            if let Some(d) = f.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            if let Err(e) = std::fs::write(f, format!("{}\n", child.id())) {
                log(Level::Warn, format!("respawn {cmd}: cannot write {}: {e}", f.display()));
            }
        }
        c.starts.fetch_add(1, Ordering::Relaxed);
        c.started_order.store(s.order.fetch_add(1, Ordering::Relaxed) + 1, Ordering::Relaxed);
        log(Level::Info, format!("Starting \"{cmd}\" as uid {uid} gid {gid} (pid {})", child.id()));
        let status = child.wait();
        *c.pid.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if s.stopping.load(Ordering::SeqCst) {
            return;
        }
        let how = match &status {
            Ok(st) => match (st.code(), std::os::unix::process::ExitStatusExt::signal(st)) {
                (Some(code), _) => format!("exit {code}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "unknown status".into(),
            },
            Err(e) => format!("wait failed: {e}"),
        };
        if status.as_ref().ok().and_then(|st| st.code()) == Some(DONT_RESTART) {
            log(Level::Info, format!("respawn {cmd} exited with {DONT_RESTART}: not restarted"));
            c.given_up.store(true, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        deaths.retain(|t| now.duration_since(*t) < DEATH_WINDOW);
        deaths.push(now);
        if deaths.len() > MAX_DEATHS {
            log(
                Level::Error,
                format!(
                    "respawn {cmd}: died {} times within {} s ({how}); given up",
                    deaths.len(),
                    DEATH_WINDOW.as_secs()
                ),
            );
            c.given_up.store(true, Ordering::Relaxed);
            return;
        }
        if now.duration_since(started) >= DEATH_WINDOW {
            backoff = FIRST_BACKOFF;
        }
        log(
            Level::Warn,
            format!("Managed \"{cmd}\" process {how}; restarting in {} ms", backoff.as_millis()),
        );
        let guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = s.wake.wait_timeout_while(guard, backoff, |_| !s.stopping.load(Ordering::SeqCst));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logs() -> (LogFn, Arc<Mutex<Vec<String>>>) {
        let store = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&store);
        (Arc::new(move |_, m| s.lock().unwrap().push(m)), store)
    }

    fn wait(mut f: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if f() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn me() -> String {
        nix::unistd::getuid().as_raw().to_string()
    }

    #[test]
    fn a_dying_child_is_restarted_with_growing_back_off() {
        let tmp = crate::testutil::TempDir::new("respawn");
        let count = tmp.0.join("count");
        let cmd = format!("/bin/sh -c 'echo x >> {}; exit 3'", count.display());
        let (log, store) = logs();
        let sup = Supervisor::start(&[Spec { user: me(), command: cmd, pidfile: None }], log);
        let ok = wait(|| std::fs::read_to_string(&count).map(|s| s.lines().count()).unwrap_or(0) >= 4);
        assert!(ok, "{:?}", store.lock().unwrap());
        let st = sup.status();
        assert!(st[0].starts >= 4);
        sup.stop();
        let l = store.lock().unwrap().join("\n");
        assert!(l.contains("exit 3; restarting in 100 ms"), "{l}");
        assert!(l.contains("restarting in 200 ms"), "{l}");
        assert!(l.contains("restarting in 400 ms"), "{l}");
    }

    #[test]
    fn exit_100_is_not_restarted_and_stop_terminates_a_long_runner() {
        let (log, store) = logs();
        let sup = Supervisor::start(
            &[
                Spec { user: me(), command: "/bin/sh -c 'exit 100'".into(), pidfile: None },
                Spec { user: me(), command: "/bin/sleep 60".into(), pidfile: None },
            ],
            log,
        );
        assert!(wait(|| sup.status()[0].given_up));
        assert!(wait(|| sup.status()[1].pid.is_some()));
        let pid = sup.status()[1].pid.unwrap();
        sup.stop();
        assert!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err(),
            "sleep was stopped"
        );
        let l = store.lock().unwrap().join("\n");
        assert!(l.contains("exited with 100: not restarted"), "{l}");
    }

    #[test]
    fn an_unknown_user_is_an_error_not_a_start() {
        let (log, store) = logs();
        let sup = Supervisor::start(
            &[Spec { user: "no-such-user-halo".into(), command: "/bin/true".into(), pidfile: None }],
            log,
        );
        assert!(wait(|| sup.status()[0].given_up));
        assert_eq!(sup.status()[0].starts, 0);
        sup.stop();
        assert!(store.lock().unwrap().iter().any(|m| m.contains("no user \"no-such-user-halo\"")));
    }
}
