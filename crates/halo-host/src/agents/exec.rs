//! Spawning an agent, capturing its output, and killing its process tree on timeout.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::{AgentClass, Call, Outcome};

/// Bytes kept of each of stdout and stderr: the first and the last half of this.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// `PATH` of every agent, as Heartbeat's scripts expect.
const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// Longest wait between SIGTERM and SIGKILL (shorter for short timeouts: half the timeout).
const MAX_GRACE: Duration = Duration::from_secs(2);
/// How long to wait for the tree to vanish after SIGKILL before giving up on it.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// After the agent exits, how long to keep reading output that children still write.
const DRAIN: Duration = Duration::from_millis(100);
/// Polling period while killing (the process table is rescanned at this rate) or when the
/// kernel has no pidfd to wake us when the agent exits.
const TICK: Duration = Duration::from_millis(20);

/// Runs one agent operation to completion or timeout. Never panics: a spawn failure is an
/// [`Outcome`] with `exit: None`, `signal: None` and the error in `stderr`.
///
/// Returns once the agent process itself has exited (plus up to 100 ms to collect output
/// its children are still writing), or, after `timeout`, once its process tree has been
/// killed: SIGTERM to the process group and every descendant, up to `min(timeout / 2, 2 s)`
/// for them to go, then SIGKILL. Descendants that left the group (`setsid`) are found by
/// their parent links in `/proc` and killed too.
pub fn run(call: &Call) -> Outcome {
    let started = Instant::now();
    match command(call) {
        Ok(cmd) => supervise(cmd, &call.agent.path, call.timeout, started),
        Err(e) => not_run(started, e),
    }
}

/// Runs any program the way [`run`] runs an agent (clean environment with `PATH` and
/// `env`, no stdin, output captured and bounded, the process tree killed at `timeout`):
/// for fencing agents and their command lines (`ipmitool ...`, `ssh ...`).
pub fn run_program(program: &Path, args: &[String], env: &[(String, String)], timeout: Duration) -> Outcome {
    let started = Instant::now();
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd.env_clear();
    cmd.env("PATH", PATH);
    for (k, v) in env {
        if let Err(e) = check_env_name(k) {
            return not_run(started, e);
        }
        cmd.env(k, v);
    }
    cmd.current_dir("/").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // SAFETY: `reset_child` only makes async-signal-safe system calls.
    unsafe { cmd.pre_exec(reset_child) };
    supervise(cmd, program, timeout, started)
}

fn supervise(mut cmd: Command, path: &Path, timeout: Duration, started: Instant) -> Outcome {
    let mut child = match spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => return not_run(started, format!("cannot run {}: {e}", path.display())),
    };
    let mut pipes = Pipes::new(
        child.stdout.take().map(|s| File::from(OwnedFd::from(s))),
        child.stderr.take().map(|s| File::from(OwnedFd::from(s))),
    );
    let pidfd = pidfd_open(child.id());
    // No deadline at all for a timeout too large to add to a clock reading.
    let deadline = started.checked_add(timeout);
    let mut status = None;
    let mut timed_out = false;
    let mut note = String::new();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                status = Some(st);
                break;
            }
            Ok(None) => {}
            Err(e) => {
                note = format!("[halo: cannot wait for the agent: {e}]");
                break;
            }
        }
        let now = Instant::now();
        let left = match deadline {
            Some(d) if now >= d => {
                timed_out = true;
                break;
            }
            Some(d) => d - now,
            None => Duration::from_secs(60),
        };
        // With a pidfd the poll wakes up when the agent exits; without one, look every tick.
        let wait = if pidfd.is_some() { left } else { left.min(TICK) };
        pipes.poll(pidfd.as_ref(), wait);
    }
    drop(pidfd);
    if timed_out {
        status = kill_tree(&mut child, &mut pipes, (timeout / 2).min(MAX_GRACE));
        if status.is_none() {
            // Unkillable (stuck in the kernel): let a thread reap it whenever it goes.
            note = format!("[halo: agent pid {} did not die after SIGKILL]", child.id());
            let _ = thread::Builder::new().name("halo-agent-reap".into()).spawn(move || {
                let _ = child.wait();
            });
        }
    }
    pipes.drain(DRAIN);
    let (stdout, mut stderr) = pipes.finish();
    if !note.is_empty() {
        if !stderr.is_empty() && !stderr.ends_with('\n') {
            stderr.push('\n');
        }
        stderr.push_str(&note);
    }
    Outcome {
        exit: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        timed_out,
        stdout,
        stderr,
        duration: started.elapsed(),
    }
}

/// `Command::spawn`, retried for a moment on `ETXTBSY`: a script is "busy" while any process
/// holds it open for writing, which includes a child another thread of ours forked while
/// the file was being written (until that child execs); that passes within milliseconds.
fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let mut tries = 0;
    loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                thread::sleep(Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn not_run(started: Instant, why: String) -> Outcome {
    Outcome {
        exit: None,
        signal: None,
        timed_out: false,
        stdout: String::new(),
        stderr: why,
        duration: started.elapsed(),
    }
}

fn command(call: &Call) -> Result<Command, String> {
    let agent = call.agent;
    let mut cmd = Command::new(&agent.path);
    cmd.args(call.argv());
    cmd.env_clear();
    cmd.env("PATH", PATH);
    cmd.env("OCF_ROOT", &agent.ocf_root);
    for (k, v) in call.env {
        check_env_name(k)?;
        cmd.env(k, v);
    }
    if let AgentClass::Ocf { provider } = &agent.class {
        for (k, v) in call.ocf_params {
            check_env_name(k)?;
            cmd.env(format!("OCF_RESKEY_{k}"), v);
        }
        let instance = if call.instance.is_empty() { agent.name.as_str() } else { call.instance };
        cmd.env("OCF_ROOT", &agent.ocf_root)
            .env("OCF_RA_VERSION_MAJOR", "1")
            .env("OCF_RA_VERSION_MINOR", "0")
            .env("OCF_RESOURCE_INSTANCE", instance)
            .env("OCF_RESOURCE_TYPE", &agent.name)
            .env("OCF_RESOURCE_PROVIDER", provider)
            .env("OCF_RESKEY_CRM_meta_timeout", call.timeout.as_millis().to_string());
    }
    cmd.current_dir("/").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // SAFETY: `reset_child` only makes async-signal-safe system calls.
    unsafe { cmd.pre_exec(reset_child) };
    Ok(cmd)
}

fn check_env_name(k: &str) -> Result<(), String> {
    if k.is_empty() || k.contains('=') || k.contains('\0') {
        return Err(format!("invalid environment variable name {k:?}"));
    }
    Ok(())
}

/// In the forked child, before exec: undo what halo's own process may have changed —
/// ignored signals (inherited across exec), a blocked signal mask, real-time scheduling
/// and a raised priority — so every agent starts like one run from a shell.
pub(crate) fn reset_child() -> io::Result<()> {
    // SAFETY: plain system calls on this process, with valid pointers to local values.
    unsafe {
        for sig in 1..=64 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        let param: libc::sched_param = std::mem::zeroed();
        libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
        libc::setpriority(libc::PRIO_PROCESS, 0, 0);
    }
    Ok(())
}

/// A pidfd becomes readable when the process exits; `None` on kernels before 5.3.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    let fd = i32::try_from(fd).ok().filter(|&fd| fd >= 0)?;
    // SAFETY: the descriptor was just created and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// SIGTERM, grace, SIGKILL, to the agent and everything it started. Returns the agent's
/// exit status once it has been reaped, `None` if it could not be.
fn kill_tree(child: &mut Child, pipes: &mut Pipes, grace: Duration) -> Option<ExitStatus> {
    let mut tree = Tree::new(child.id() as i32);
    let mut status = None;
    for (sig, wait) in [(Signal::SIGTERM, grace), (Signal::SIGKILL, KILL_WAIT)] {
        tree.signal(sig);
        let end = Instant::now() + wait;
        loop {
            if status.is_none() {
                if let Ok(Some(st)) = child.try_wait() {
                    status = Some(st);
                }
            }
            let alive = tree.refresh();
            if status.is_some() && !alive {
                return status;
            }
            let now = Instant::now();
            if now >= end {
                break;
            }
            if sig == Signal::SIGKILL {
                // Whatever was forked since the last round.
                tree.signal(sig);
            }
            // Keep reading: a dying agent may still write, and must not block on a full pipe.
            pipes.poll(None, (end - now).min(TICK));
        }
    }
    status
}

/// The agent's process tree: its process group, and every process descended from a member,
/// tracked by pid and start time so that a reused pid is never taken for a member.
struct Tree {
    pgid: i32,
    tracked: HashMap<i32, u64>,
    alive: Vec<i32>,
}

struct ProcStat {
    ppid: i32,
    pgrp: i32,
    start: u64,
    zombie: bool,
}

impl Tree {
    fn new(pgid: i32) -> Tree {
        Tree { pgid, tracked: HashMap::new(), alive: Vec::new() }
    }

    /// Rescans `/proc`, adds new members, and says whether any member is still alive
    /// (zombies are dead: only their parent's `wait` is missing).
    fn refresh(&mut self) -> bool {
        let procs = scan_proc();
        let is_member = |tracked: &HashMap<i32, u64>, pid: i32| matches!((tracked.get(&pid), procs.get(&pid)), (Some(&st), Some(p)) if p.start == st);
        loop {
            let new: Vec<(i32, u64)> = procs
                .iter()
                .filter(|(pid, p)| {
                    !p.zombie
                        && !self.tracked.contains_key(pid)
                        && (p.pgrp == self.pgid || is_member(&self.tracked, p.ppid))
                })
                .map(|(&pid, p)| (pid, p.start))
                .collect();
            if new.is_empty() {
                break;
            }
            self.tracked.extend(new);
        }
        self.alive = self
            .tracked
            .keys()
            .copied()
            .filter(|pid| is_member(&self.tracked, *pid) && procs.get(pid).is_some_and(|p| !p.zombie))
            .collect();
        !self.alive.is_empty()
    }

    fn signal(&mut self, sig: Signal) {
        self.refresh();
        let _ = killpg(Pid::from_raw(self.pgid), sig);
        for &pid in &self.alive {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }
}

fn scan_proc() -> HashMap<i32, ProcStat> {
    let mut procs = HashMap::new();
    let Ok(dir) = fs::read_dir("/proc") else { return procs };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(text) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid pgrp ... starttime(22nd) ...": comm may hold anything.
        let Some(close) = text.rfind(')') else { continue };
        let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
        let (Some(state), Some(ppid), Some(pgrp), Some(start)) = (
            f.first(),
            f.get(1).and_then(|s| s.parse().ok()),
            f.get(2).and_then(|s| s.parse().ok()),
            f.get(19).and_then(|s| s.parse().ok()),
        ) else {
            continue;
        };
        procs.insert(pid, ProcStat { ppid, pgrp, start, zombie: *state == "Z" || *state == "X" });
    }
    procs
}

/// The agent's stdout and stderr, read as data arrives.
struct Pipes {
    streams: [Stream; 2],
}

struct Stream {
    file: Option<File>,
    kept: Bounded,
}

impl Pipes {
    fn new(stdout: Option<File>, stderr: Option<File>) -> Pipes {
        Pipes {
            streams: [
                Stream { file: stdout, kept: Bounded::default() },
                Stream { file: stderr, kept: Bounded::default() },
            ],
        }
    }

    fn any_open(&self) -> bool {
        self.streams.iter().any(|s| s.file.is_some())
    }

    /// Waits up to `wait` for output (or for `also` to become readable) and reads what came.
    fn poll(&mut self, also: Option<&OwnedFd>, wait: Duration) {
        let mut ready = [false; 2];
        {
            let mut fds = Vec::with_capacity(3);
            let mut which = Vec::with_capacity(2);
            for (i, s) in self.streams.iter().enumerate() {
                if let Some(f) = &s.file {
                    fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                    which.push(i);
                }
            }
            if let Some(fd) = also {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout(wait)) {
                Ok(_) => {}
                Err(Errno::EINTR) => return,
                Err(_) => {
                    thread::sleep(wait.min(TICK));
                    return;
                }
            }
            for (k, &i) in which.iter().enumerate() {
                ready[i] = fds[k].revents().is_some_and(|r| !r.is_empty());
            }
        }
        for (i, s) in self.streams.iter_mut().enumerate() {
            if ready[i] {
                s.read_once();
            }
        }
    }

    /// Keeps reading until both streams are closed or `window` has passed.
    fn drain(&mut self, window: Duration) {
        let end = Instant::now() + window;
        while self.any_open() {
            let now = Instant::now();
            if now >= end {
                break;
            }
            self.poll(None, end - now);
        }
    }

    /// The captured text; streams still open (held by a daemon the agent started) are
    /// handed to the drain thread.
    fn finish(self) -> (String, String) {
        let [out, err] = self.streams;
        (out.finish(), err.finish())
    }
}

impl Stream {
    fn read_once(&mut self) {
        let Some(f) = &mut self.file else { return };
        let mut buf = [0u8; 16 * 1024];
        match f.read(&mut buf) {
            Ok(0) => self.file = None,
            Ok(n) => self.kept.push(&buf[..n]),
            Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {}
            Err(_) => self.file = None,
        }
    }

    fn finish(self) -> String {
        if let Some(f) = self.file {
            drain_in_background(f);
        }
        self.kept.finish()
    }
}

fn timeout(d: Duration) -> PollTimeout {
    // Round up so a sub-millisecond remainder does not turn into a busy loop.
    let ms = d.as_micros().div_ceil(1000).min(60_000);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

/// The first and last `OUTPUT_LIMIT / 2` bytes of a stream.
#[derive(Default)]
struct Bounded {
    head: Vec<u8>,
    tail: Vec<u8>,
    total: usize,
}

impl Bounded {
    const HALF: usize = OUTPUT_LIMIT / 2;

    fn push(&mut self, mut data: &[u8]) {
        self.total = self.total.saturating_add(data.len());
        if self.head.len() < Self::HALF {
            let n = (Self::HALF - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            data = &data[n..];
        }
        self.tail.extend_from_slice(data);
        if self.tail.len() > 2 * Self::HALF {
            self.tail.drain(..self.tail.len() - Self::HALF);
        }
    }

    fn finish(mut self) -> String {
        if self.tail.len() > Self::HALF {
            self.tail.drain(..self.tail.len() - Self::HALF);
        }
        let omitted = self.total - self.head.len() - self.tail.len();
        let mut bytes = self.head;
        if omitted > 0 {
            bytes.extend_from_slice(format!("\n[... {omitted} bytes omitted ...]\n").as_bytes());
        }
        bytes.extend_from_slice(&self.tail);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Output pipes still held open by processes an agent left running are read and discarded
/// by one shared thread until those processes close them, so their writes never fail with
/// `EPIPE`/`SIGPIPE` (which would kill a daemon that logs to stdout).
fn drain_in_background(f: File) {
    static DRAIN_TX: OnceLock<Option<mpsc::Sender<File>>> = OnceLock::new();
    let tx = DRAIN_TX.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("halo-agent-drain".into())
            .spawn(move || drain_forever(rx))
            .ok()
            .map(|_| tx)
    });
    if let Some(tx) = tx {
        let _ = tx.send(f);
    }
}

fn drain_forever(rx: mpsc::Receiver<File>) {
    let mut files: Vec<File> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if files.is_empty() {
            match rx.recv() {
                Ok(f) => files.push(f),
                Err(_) => return,
            }
        }
        files.extend(rx.try_iter());
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd> =
                files.iter().map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN)).collect();
            // New pipes are picked up at the next round; the pipe buffer absorbs writes meanwhile.
            if poll(&mut fds, PollTimeout::from(500u16)).is_err() {
                thread::sleep(TICK);
                continue;
            }
            fds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect()
        };
        files = files
            .into_iter()
            .zip(ready)
            .filter_map(|(mut f, ready)| {
                if !ready {
                    return Some(f);
                }
                match f.read(&mut buf) {
                    Ok(0) => None,
                    Ok(_) => Some(f),
                    Err(e) if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) => {
                        Some(f)
                    }
                    Err(_) => None,
                }
            })
            .collect();
    }
}
