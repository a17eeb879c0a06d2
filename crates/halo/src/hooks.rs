//! Notify hooks: the commands of ha.cf's `notify` lines (halo.toml `notify = [...]`), run on
//! cluster events. The heartbeat thread only queues an event (never blocks: a full queue
//! drops the event, counted and logged); one thread of its own takes them in order and runs
//! every command for one event, one command at a time, before it takes the next event. So
//! hooks see events strictly serialised and in the order the daemon logged them.
//!
//! A command is an absolute program path and its arguments (split on whitespace, no shell),
//! run with stdin closed, in a process group of its own (a timeout kills the whole group),
//! its stdout and stderr logged line by line. It gets the event in its environment:
//!
//! | variable          | value                                                            |
//! |-------------------|------------------------------------------------------------------|
//! | `HALO_EVENT`      | the event name (below)                                           |
//! | `HALO_NODE`       | the node it is about (the dead node, the fenced node, ...), or empty |
//! | `HALO_GROUP`      | the resource group (haresources key / halo.toml name), or empty  |
//! | `HALO_LOCAL_NODE` | this node's name                                                 |
//! | `HALO_TIME`       | when the event happened: seconds since the epoch (`1764620000.123`) |
//! | `HALO_DETAIL`     | a human-readable reason or error, or empty                       |
//! | `HALO_SEQ`        | the event's number since the daemon started (1, 2, ...)          |
//!
//! Events: `node_dead`, `node_up`, `group_starting`, `group_started`, `group_stopping`,
//! `group_stopped`, `group_failed` (a start, stop or monitor failed), `failover` (a group
//! taken over here from a dead node; `group_starting` follows), `split_brain_detected`,
//! `split_brain_resolved` (a group held on two nodes at once after a partition, and its
//! end), `fence_requested`, `fence_done`, `fence_failed`, `quorum_lost`, `quorum_regained`,
//! `reload_applied`.
use halo_host::{Level, Logger};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long one command may run before its process group is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Events waiting for the hook thread beyond this are dropped (and counted).
const QUEUE: usize = 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookEvent {
    pub event: &'static str,
    pub node: String,
    pub group: String,
    pub detail: String,
    pub time: SystemTime,
    pub seq: u64,
}

/// Counters for status and `/metrics`.
#[derive(Default, Debug)]
pub struct HookStats {
    pub events: AtomicU64,
    pub runs: AtomicU64,
    pub failures: AtomicU64,
    pub timeouts: AtomicU64,
    pub dropped: AtomicU64,
}

pub struct Hooks {
    tx: mpsc::SyncSender<HookEvent>,
    commands: Arc<Mutex<Vec<String>>>,
    stats: Arc<HookStats>,
    local: String,
    logger: Arc<Logger>,
    seq: u64,
}

impl Hooks {
    /// Starts the hook thread. `commands` may be empty (events are still logged and
    /// counted, and a reload may add commands).
    pub fn start(local: &str, commands: Vec<String>, logger: Arc<Logger>, timeout: Duration) -> Hooks {
        let (tx, rx) = mpsc::sync_channel::<HookEvent>(QUEUE);
        let commands = Arc::new(Mutex::new(commands));
        let stats = Arc::new(HookStats::default());
        let (c, s, l, local_name) =
            (Arc::clone(&commands), Arc::clone(&stats), Arc::clone(&logger), local.to_string());
        let spawned = std::thread::Builder::new().name("halo-hooks".into()).spawn(move || {
            halo_host::rt::set_normal();
            while let Ok(ev) = rx.recv() {
                let cmds = c.lock().map(|c| c.clone()).unwrap_or_default();
                for cmd in &cmds {
                    run_one(cmd, &ev, &local_name, &l, &s, timeout);
                }
            }
        });
        if let Err(e) = spawned {
            logger.log(Level::Crit, &format!("cannot start the notify hook thread: {e}; hooks will not run"));
        }
        Hooks { tx, commands, stats, local: local.to_string(), logger, seq: 0 }
    }

    /// Replaces the commands (a reload); events already queued run the new ones.
    pub fn set_commands(&self, commands: Vec<String>) {
        if let Ok(mut c) = self.commands.lock() {
            *c = commands;
        }
    }

    pub fn stats(&self) -> Arc<HookStats> {
        Arc::clone(&self.stats)
    }

    /// The counters for `halo status --json` (`hooks`) and `/metrics`.
    pub fn json(&self) -> serde_json::Value {
        let s = &self.stats;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "commands": self.commands.lock().map(|c| c.len()).unwrap_or(0),
            "events": n(&s.events),
            "runs": n(&s.runs),
            "failures": n(&s.failures),
            "timeouts": n(&s.timeouts),
            "dropped": n(&s.dropped),
        })
    }

    /// Logs the event and queues it for the hook thread; never blocks.
    pub fn emit(&mut self, event: &'static str, node: &str, group: &str, detail: &str) {
        self.seq += 1;
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let mut text = format!("event {event}");
        if !node.is_empty() {
            text.push_str(&format!(" node={node}"));
        }
        if !group.is_empty() {
            text.push_str(&format!(" group={group}"));
        }
        if !detail.is_empty() {
            text.push_str(&format!(" ({detail})"));
        }
        self.logger.log(Level::Info, &text);
        let ev = HookEvent {
            event,
            node: node.to_string(),
            group: group.to_string(),
            detail: detail.to_string(),
            time: SystemTime::now(),
            seq: self.seq,
        };
        if let Err(mpsc::TrySendError::Full(ev)) = self.tx.try_send(ev) {
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            self.logger.log(
                Level::Error,
                &format!(
                    "notify hooks: {QUEUE} events already wait for slow hooks; event {} #{} not run ({n} dropped so far)",
                    ev.event, ev.seq
                ),
            );
        }
    }

    pub fn local(&self) -> &str {
        &self.local
    }
}

/// The environment a hook gets for `ev`.
pub fn env_of(ev: &HookEvent, local: &str) -> Vec<(&'static str, String)> {
    let t = ev.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    vec![
        ("HALO_EVENT", ev.event.to_string()),
        ("HALO_NODE", ev.node.clone()),
        ("HALO_GROUP", ev.group.clone()),
        ("HALO_LOCAL_NODE", local.to_string()),
        ("HALO_TIME", format!("{}.{:03}", t.as_secs(), t.subsec_millis())),
        ("HALO_DETAIL", ev.detail.clone()),
        ("HALO_SEQ", ev.seq.to_string()),
    ]
}

/// Runs one command for one event to its end (or its timeout); logs and counts the outcome.
fn run_one(
    cmd: &str,
    ev: &HookEvent,
    local: &str,
    logger: &Arc<Logger>,
    stats: &HookStats,
    timeout: Duration,
) {
    let mut words = cmd.split_whitespace();
    let Some(program) = words.next() else { return };
    let name = program.rsplit('/').next().unwrap_or(program).to_string();
    stats.runs.fetch_add(1, Ordering::Relaxed);
    let mut c = Command::new(program);
    c.args(words).envs(env_of(ev, local)).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // A group of its own, so a timeout reaches whatever the hook started.
    c.process_group(0);
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            stats.failures.fetch_add(1, Ordering::Relaxed);
            logger
                .log(Level::Error, &format!("notify hook {cmd} ({} #{}): cannot run: {e}", ev.event, ev.seq));
            return;
        }
    };
    let pid = child.id() as i32;
    // Output is logged as it comes, by two readers; they end when the pipes close.
    let readers: Vec<_> = [
        child.stdout.take().map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|r| {
        let (logger, name) = (Arc::clone(logger), name.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines() {
                let Ok(line) = line else { break };
                logger.log(Level::Info, &format!("notify hook {name}: {line}"));
            }
        })
    })
    .collect();
    let end = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= end => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => {
                logger.log(Level::Error, &format!("notify hook {cmd}: waiting for it: {e}"));
                break None;
            }
        }
    };
    match status {
        Some(st) => {
            // The hook is done; what it left behind in its group goes with it, so that the
            // readers (and the next event) never wait for a stray background process.
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            for r in readers {
                let _ = r.join();
            }
            if !st.success() {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                logger
                    .log(Level::Warn, &format!("notify hook {cmd} ({} #{}) failed: {st}", ev.event, ev.seq));
            }
        }
        None => {
            let _ =
                nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            let _ = child.wait();
            for r in readers {
                let _ = r.join();
            }
            stats.failures.fetch_add(1, Ordering::Relaxed);
            stats.timeouts.fetch_add(1, Ordering::Relaxed);
            logger.log(
                Level::Error,
                &format!(
                    "notify hook {cmd} ({} #{}) did not finish within {} s: killed with its process group",
                    ev.event,
                    ev.seq,
                    timeout.as_secs_f64()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn logger(dir: &std::path::Path) -> Arc<Logger> {
        Arc::new(
            Logger::new(halo_host::LogConfig {
                logfile: Some(dir.join("log")),
                debugfile: None,
                facility: None,
                ident: "halo".into(),
                node: "n1".into(),
                debug_level: 0,
                stderr: false,
                syslog_socket: dir.join("no-syslog"),
            })
            .expect("logger"),
        )
    }

    fn scratch(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("halo-hooks-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("scratch");
        d
    }

    fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p.display().to_string()
    }

    fn wait(stats: &HookStats, runs: u64) {
        let end = Instant::now() + Duration::from_secs(20);
        while stats.runs.load(Ordering::SeqCst) < runs {
            assert!(Instant::now() < end, "hooks did not run in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn commands_get_the_event_in_their_environment_one_at_a_time_in_order() {
        let d = scratch("order");
        let out = d.join("out");
        // Each run records its start and end: overlapping runs would interleave them.
        let hook = script(
            &d,
            "hook",
            &format!(
                "echo \"begin $HALO_SEQ $HALO_EVENT $HALO_NODE $HALO_GROUP $HALO_LOCAL_NODE $1\" >> {o}\nsleep 0.05\necho \"end $HALO_SEQ\" >> {o}\necho said $HALO_EVENT",
                o = out.display()
            ),
        );
        let log = logger(&d);
        let mut h = Hooks::start("n1", vec![format!("{hook} arg1")], Arc::clone(&log), HOOK_TIMEOUT);
        h.emit("node_dead", "n2", "", "");
        h.emit("failover", "n2", "10.0.0.1", "its holder died");
        h.emit("group_started", "", "10.0.0.1", "");
        let stats = h.stats();
        wait(&stats, 3);
        let end = Instant::now() + Duration::from_secs(10);
        let text = loop {
            let t = std::fs::read_to_string(&out).unwrap_or_default();
            if t.lines().count() >= 6 || Instant::now() > end {
                break t;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "begin 1 node_dead n2  n1 arg1",
                "end 1",
                "begin 2 failover n2 10.0.0.1 n1 arg1",
                "end 2",
                "begin 3 group_started  10.0.0.1 n1 arg1",
                "end 3"
            ]
        );
        assert_eq!(stats.failures.load(Ordering::SeqCst), 0);
        let logged = std::fs::read_to_string(d.join("log")).unwrap_or_default();
        assert!(logged.contains("notify hook hook: said failover"), "{logged}");
        assert!(logged.contains("event failover node=n2 group=10.0.0.1 (its holder died)"), "{logged}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_hook_over_its_timeout_is_killed_with_its_children_and_counted() {
        let d = scratch("timeout");
        let pidfile = d.join("child.pid");
        let hook = script(&d, "slow", &format!("sleep 60 &\necho $! > {}\nwait", pidfile.display()));
        let failing = script(&d, "failing", "exit 3");
        let log = logger(&d);
        let mut h = Hooks::start(
            "n1",
            vec![hook, failing, "/nonexistent/hook".into()],
            Arc::clone(&log),
            Duration::from_millis(300),
        );
        h.emit("quorum_lost", "", "", "");
        let stats = h.stats();
        wait(&stats, 3);
        let end = Instant::now() + Duration::from_secs(10);
        while stats.failures.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < end, "failures not counted: {stats:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(stats.timeouts.load(Ordering::SeqCst), 1);
        let child: i32 = std::fs::read_to_string(&pidfile).expect("pid").trim().parse().expect("a pid");
        // The background sleep went with its group.
        let gone = Instant::now() + Duration::from_secs(5);
        while nix::sys::signal::kill(nix::unistd::Pid::from_raw(child), None).is_ok()
            && std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(Instant::now() < gone, "the hook's child {child} survived the timeout");
            std::thread::sleep(Duration::from_millis(20));
        }
        let logged = std::fs::read_to_string(d.join("log")).unwrap_or_default();
        assert!(logged.contains("did not finish within 0.3 s: killed"), "{logged}");
        assert!(logged.contains("failing (quorum_lost #1) failed: exit status: 3"), "{logged}");
        assert!(logged.contains("/nonexistent/hook (quorum_lost #1): cannot run"), "{logged}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
