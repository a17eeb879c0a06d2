//! Resource agents: finding the script behind a haresources word and running it the way
//! Heartbeat's `ResourceManager` does (spec §4.2), with a timeout on every call.
//!
//! Three classes of agent exist, told apart by where the script was found:
//!
//! * **Heartbeat** (`<config_dir>/resource.d/NAME`): called `NAME args... start|stop|status`
//!   (arguments first, operation last). Whether it runs is decided from the *stdout* of
//!   `status` alone, by `ResourceManager`'s `we_own_resource` patterns; the exit code of
//!   `status` is ignored ([`stdout_says_running`]).
//! * **LSB** (`/etc/init.d/NAME`): called `NAME start|stop|status` (haresources seldom gives
//!   an init script arguments; when it does they go first, as `ResourceManager` passes
//!   them); `status` answers by exit code (0 running, 3 stopped, 1/2 dead with a stale
//!   pid/lock file). `ResourceManager` read init scripts' status from stdout too; halo
//!   trusts the LSB code, and [`stdout_says_running`] is there for the old reading.
//! * **OCF** (`$OCF_ROOT/resource.d/PROVIDER/TYPE`): called `TYPE start|stop|monitor` with
//!   its parameters in `OCF_RESKEY_*` variables; answers by OCF exit codes. A haresources
//!   `OCF::TYPE::INSTANCE` word runs the agent directly ([`resolve_spec`]) instead of
//!   through Debian's generic `OCF` wrapper, which is broken on bookworm (spec §4.2).
//!
//! [`run`] is synchronous and meant for a worker thread, never the heartbeat thread: it
//! blocks for as long as the agent runs (bounded by the call's timeout plus a few seconds
//! of kill grace). It never panics and never leaves a timed-out agent behind: a hung agent
//! gets SIGTERM, then SIGKILL, with its whole process tree (its process group plus every
//! descendant that moved to another group or session). An agent that exits normally but
//! leaves a daemon behind (a `start` that launches a server, `IPaddr2`'s background
//! `send_arp`) is not touched, and `run` returns as soon as the agent itself has exited
//! even if the daemon still holds the agent's stdout; what the daemon writes later is read
//! and thrown away, so it never gets `SIGPIPE`.
//!
//! Agents run in a clean environment, as under Heartbeat's `harc`: `PATH=/usr/sbin:/usr/bin:
//! /sbin:/bin`, `OCF_ROOT`, whatever the caller passes in [`Call::env`] (the `HA_*`
//! variables), and for OCF agents the `OCF_*` variables. The working directory is `/`,
//! stdin is `/dev/null`, signal dispositions and the scheduling policy are reset to the
//! defaults (the calling thread may be real-time), and output is captured up to
//! [`OUTPUT_LIMIT`] bytes per stream for the caller to log.

mod exec;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use halo_config::ResourceSpec;

pub(crate) use exec::reset_child;
pub use exec::{run, run_program, OUTPUT_LIMIT};

/// How an agent is called and how its answers are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentClass {
    /// A script in `<config_dir>/resource.d`.
    Heartbeat,
    /// An init script in `/etc/init.d`.
    Lsb,
    /// An OCF resource agent of the given provider (`heartbeat`, `pacemaker`, ...).
    Ocf { provider: String },
}

/// A resource script that exists, with the class it was found as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The name it was looked up by (for OCF agents: the type, e.g. `IPaddr2`).
    pub name: String,
    pub class: AgentClass,
    /// The executable to run.
    pub path: PathBuf,
    /// `OCF_ROOT` given to every agent (Heartbeat exports it to all resource scripts).
    pub ocf_root: PathBuf,
}

/// Why a resource script could not be found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// No regular executable file of that name in any place searched.
    #[error("Cannot locate resource script {name} (looked in {})", list(.looked_in))]
    NotFound { name: String, looked_in: Vec<PathBuf> },
    /// A name that cannot be a script name (empty, `.`/`..`, contains `/` or NUL).
    #[error("invalid resource script name {0:?}")]
    BadName(String),
}

fn list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Finds the script for a resource name, in `ResourceManager`'s order.
///
/// * `ocf:PROVIDER:TYPE` → `<ocf_root>/resource.d/PROVIDER/TYPE`.
/// * `OCF::TYPE` → `<ocf_root>/resource.d/heartbeat/TYPE`.
/// * anything else: `<config_dir>/resource.d/NAME` (Heartbeat class), then
///   `<init_dir>/NAME` (LSB), then `<ocf_root>/resource.d/heartbeat/NAME` (OCF). In each
///   place only a regular file (symbolic links followed) that is executable counts, like
///   the shell's `[ -f x -a -x x ]`.
///
/// Usual arguments: `/etc/ha.d`, `/etc/init.d`, `/usr/lib/ocf`.
pub fn resolve(name: &str, config_dir: &Path, init_dir: &Path, ocf_root: &Path) -> Result<Agent, AgentError> {
    if let Some(rest) = name.strip_prefix("ocf:") {
        let (provider, ty) = rest.split_once(':').ok_or_else(|| AgentError::BadName(name.to_string()))?;
        return resolve_ocf(name, provider, ty, ocf_root);
    }
    if let Some(ty) = name.strip_prefix("OCF::") {
        return resolve_ocf(name, "heartbeat", ty, ocf_root);
    }
    check_name(name)?;
    let agent = |class, path| Agent { name: name.to_string(), class, path, ocf_root: ocf_root.to_path_buf() };
    let heartbeat = config_dir.join("resource.d").join(name);
    if is_executable_file(&heartbeat) {
        return Ok(agent(AgentClass::Heartbeat, heartbeat));
    }
    let lsb = init_dir.join(name);
    if is_executable_file(&lsb) {
        return Ok(agent(AgentClass::Lsb, lsb));
    }
    let ocf = ocf_path(ocf_root, "heartbeat", name);
    if is_executable_file(&ocf) {
        return Ok(agent(AgentClass::Ocf { provider: "heartbeat".to_string() }, ocf));
    }
    Err(AgentError::NotFound { name: name.to_string(), looked_in: vec![heartbeat, lsb, ocf] })
}

/// [`resolve`] for a parsed haresources word, returning the agent and the arguments to pass
/// it. `OCF::TYPE::INSTANCE` (agent `OCF` with arguments) becomes the OCF agent `TYPE`
/// directly, with `[INSTANCE]` as the remaining arguments: the caller uses it as
/// [`Call::instance`] and supplies the parameters (Heartbeat's wrapper read them from
/// `<config_dir>/conf/OCF/TYPE/INSTANCE`). Every other word resolves its `agent` name.
pub fn resolve_spec(
    spec: &ResourceSpec,
    config_dir: &Path,
    init_dir: &Path,
    ocf_root: &Path,
) -> Result<(Agent, Vec<String>), AgentError> {
    match spec.args.split_first() {
        Some((ty, rest)) if spec.agent == "OCF" => {
            let agent = resolve_ocf(&spec.raw, "heartbeat", ty, ocf_root)?;
            Ok((agent, rest.to_vec()))
        }
        _ => Ok((resolve(&spec.agent, config_dir, init_dir, ocf_root)?, spec.args.clone())),
    }
}

fn resolve_ocf(name: &str, provider: &str, ty: &str, ocf_root: &Path) -> Result<Agent, AgentError> {
    for part in [provider, ty] {
        if part.contains(':') {
            return Err(AgentError::BadName(name.to_string()));
        }
        check_name(part).map_err(|_| AgentError::BadName(name.to_string()))?;
    }
    let path = ocf_path(ocf_root, provider, ty);
    if is_executable_file(&path) {
        Ok(Agent {
            name: ty.to_string(),
            class: AgentClass::Ocf { provider: provider.to_string() },
            path,
            ocf_root: ocf_root.to_path_buf(),
        })
    } else {
        Err(AgentError::NotFound { name: name.to_string(), looked_in: vec![path] })
    }
}

fn ocf_path(ocf_root: &Path, provider: &str, ty: &str) -> PathBuf {
    ocf_root.join("resource.d").join(provider).join(ty)
}

/// A name is joined to directories, so it must stay inside them.
fn check_name(name: &str) -> Result<(), AgentError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(AgentError::BadName(name.to_string()));
    }
    Ok(())
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).map(|m| m.is_file()).unwrap_or(false)
        && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
}

/// The operations halo asks of an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Stop,
    /// Is it running? (`status`; `monitor` for OCF agents).
    Status,
    /// Same question, for periodic checks (`monitor` for OCF agents, `status` otherwise,
    /// since Heartbeat-class and LSB scripts only promise `status`).
    Monitor,
}

impl Op {
    /// The word passed to an agent of this class.
    pub fn word(self, class: &AgentClass) -> &'static str {
        match (self, class) {
            (Op::Start, _) => "start",
            (Op::Stop, _) => "stop",
            (Op::Status | Op::Monitor, AgentClass::Ocf { .. }) => "monitor",
            (Op::Status | Op::Monitor, _) => "status",
        }
    }
}

/// One invocation of an agent.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub agent: &'a Agent,
    /// Arguments placed before the operation, as `ResourceManager` does for every script it
    /// finds (`IPaddr2 10.0.0.5/24 start`); usually empty for LSB scripts. Not passed to OCF
    /// agents, whose parameters go in [`Call::ocf_params`].
    pub args: &'a [String],
    pub op: Op,
    /// Time the agent gets before it is killed (with its process tree).
    pub timeout: Duration,
    /// Extra environment, e.g. the `HA_*` variables Heartbeat exports; may override `PATH`
    /// and `OCF_ROOT`.
    pub env: &'a [(String, String)],
    /// OCF parameters, exported as `OCF_RESKEY_<name>` (OCF agents only).
    pub ocf_params: &'a [(String, String)],
    /// `OCF_RESOURCE_INSTANCE` (OCF agents only); the agent's type when empty.
    pub instance: &'a str,
}

impl<'a> Call<'a> {
    /// A call with no arguments, environment or parameters.
    pub fn new(agent: &'a Agent, op: Op, timeout: Duration) -> Call<'a> {
        Call { agent, args: &[], op, timeout, env: &[], ocf_params: &[], instance: "" }
    }

    /// The argument vector after the program: `args... op` (just `op` for OCF agents).
    pub fn argv(&self) -> Vec<&'a str> {
        let mut v: Vec<&str> = match self.agent.class {
            AgentClass::Ocf { .. } => Vec::new(),
            _ => self.args.iter().map(String::as_str).collect(),
        };
        v.push(self.op.word(&self.agent.class));
        v
    }

    /// The command as it would be typed, for logs (`/etc/ha.d/resource.d/IPaddr2 10.0.0.5 start`).
    pub fn command_line(&self) -> String {
        let mut s = self.agent.path.display().to_string();
        for a in self.argv() {
            s.push(' ');
            s.push_str(a);
        }
        s
    }
}

/// What happened when an agent ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code; `None` when the agent was killed by a signal or could not be run.
    pub exit: Option<i32>,
    /// The signal that killed the agent, if one did.
    pub signal: Option<i32>,
    /// The agent outlived its timeout and was killed.
    pub timed_out: bool,
    /// Captured stdout, at most [`OUTPUT_LIMIT`] bytes (beginning and end kept, the middle
    /// replaced by a `[... N bytes omitted ...]` line), decoded lossily as UTF-8.
    pub stdout: String,
    /// Captured stderr, bounded the same way; holds the error when the agent could not be
    /// started.
    pub stderr: String,
    /// From spawn to the return of [`run`].
    pub duration: Duration,
}

impl Outcome {
    /// How the agent ended, for logs: `exit 0`, `killed by SIGSEGV`, `timed out (killed
    /// after 22.0s)`, `not run`.
    pub fn describe(&self) -> String {
        if self.timed_out {
            format!("timed out (killed after {:.1}s)", self.duration.as_secs_f64())
        } else if let Some(code) = self.exit {
            format!("exit {code}")
        } else if let Some(sig) = self.signal {
            format!("killed by {}", signal_name(sig))
        } else {
            "not run".to_string()
        }
    }
}

fn signal_name(sig: i32) -> String {
    match nix::sys::signal::Signal::try_from(sig) {
        Ok(s) => s.as_str().to_string(),
        Err(_) => format!("signal {sig}"),
    }
}

/// The state of a resource as an operation's outcome reveals it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Running {
    Yes,
    No,
    /// The agent failed or its answer means trouble; the resource may or may not be
    /// running. The text says why (`OCF_ERR_CONFIGURED (6)`, `timed out (killed after 22.0s)`).
    Failed(String),
}

/// Reads an outcome the way the agent's class defines it.
///
/// For `Status`/`Monitor` this answers "is it running?":
/// * Heartbeat class: stdout only, by [`stdout_says_running`]; the exit code is ignored.
/// * LSB: 0 → running, 3 → stopped, 1/2 (dead, stale pid or lock file) and anything else →
///   `Failed` with the reason.
/// * OCF: 0 and 8 (`OCF_RUNNING_MASTER`) → running, 7 → stopped, others → `Failed` naming
///   the code.
///
/// For `Start`, success means running (`Yes`); for `Stop`, success means stopped (`No`) —
/// LSB and OCF agents may also answer a stop with 7 (not running), which is success too.
/// A failed start or stop is `Failed` with the code. An agent that timed out, was killed by
/// a signal or could not be run is always `Failed`.
pub fn interpret_status(agent: &Agent, op: Op, o: &Outcome) -> Running {
    if o.timed_out || o.exit.is_none() {
        let why = match (o.timed_out, o.signal) {
            (false, None) => format!("not run: {}", o.stderr.trim()),
            _ => o.describe(),
        };
        return Running::Failed(why);
    }
    let code = o.exit.unwrap_or(-1);
    match (&agent.class, op) {
        (AgentClass::Heartbeat, Op::Status | Op::Monitor) => {
            if stdout_says_running(&o.stdout) {
                Running::Yes
            } else {
                Running::No
            }
        }
        (AgentClass::Heartbeat, Op::Start) => ok_or_exit(code, Running::Yes),
        (AgentClass::Heartbeat, Op::Stop) => ok_or_exit(code, Running::No),
        (AgentClass::Lsb, Op::Status | Op::Monitor) => match code {
            0 => Running::Yes,
            3 => Running::No,
            _ => Running::Failed(format!("LSB status {code}: {}", lsb_status_meaning(code))),
        },
        (AgentClass::Lsb, Op::Start) if code == 0 => Running::Yes,
        (AgentClass::Lsb, Op::Stop) if code == 0 || code == 7 => Running::No,
        (AgentClass::Lsb, _) => Running::Failed(format!("LSB exit {code}: {}", lsb_exit_meaning(code))),
        (AgentClass::Ocf { .. }, Op::Status | Op::Monitor) => match code {
            0 | 8 => Running::Yes,
            7 => Running::No,
            _ => Running::Failed(ocf_code_name(code)),
        },
        (AgentClass::Ocf { .. }, Op::Start) if code == 0 => Running::Yes,
        (AgentClass::Ocf { .. }, Op::Stop) if code == 0 || code == 7 => Running::No,
        (AgentClass::Ocf { .. }, _) => Running::Failed(ocf_code_name(code)),
    }
}

fn ok_or_exit(code: i32, ok: Running) -> Running {
    if code == 0 {
        ok
    } else {
        Running::Failed(format!("exit {code}"))
    }
}

/// `ResourceManager`'s `we_own_resource`: the status output, matched as the shell `case`
///
/// ```text
/// *[Nn][Oo][Tt]\ *[Rr]unning*)  not running
/// *[Rr]unning*|*OK*)            running
/// *)                            not running
/// ```
///
/// So `is not running` → false, `Running OK` → true, `RUNNING` → false (only the `R` is
/// case-insensitive), `cannot be running` → false (`not ` inside `cannot `).
pub fn stdout_says_running(stdout: &str) -> bool {
    let b = stdout.as_bytes();
    let running_at =
        |i: usize| b.len() >= i + 7 && (b[i] == b'R' || b[i] == b'r') && &b[i + 1..i + 7] == b"unning";
    let not_at = |i: usize| b.len() >= i + 4 && b[i..i + 3].eq_ignore_ascii_case(b"not") && b[i + 3] == b' ';
    if let Some(n) = (0..b.len()).find(|&i| not_at(i)) {
        if (n + 4..b.len()).any(running_at) {
            return false;
        }
    }
    (0..b.len()).any(running_at) || stdout.contains("OK")
}

/// The OCF name of an exit code, as `OCF_ERR_CONFIGURED (6)`.
pub fn ocf_code_name(code: i32) -> String {
    let name = match code {
        0 => "OCF_SUCCESS",
        1 => "OCF_ERR_GENERIC",
        2 => "OCF_ERR_ARGS",
        3 => "OCF_ERR_UNIMPLEMENTED",
        4 => "OCF_ERR_PERM",
        5 => "OCF_ERR_INSTALLED",
        6 => "OCF_ERR_CONFIGURED",
        7 => "OCF_NOT_RUNNING",
        8 => "OCF_RUNNING_MASTER",
        9 => "OCF_FAILED_MASTER",
        _ => return format!("OCF exit {code} (unknown code)"),
    };
    format!("{name} ({code})")
}

/// LSB `status` exit codes (LSB core spec, init script actions).
fn lsb_status_meaning(code: i32) -> &'static str {
    match code {
        0 => "program is running or service is OK",
        1 => "program is dead and /var/run pid file exists",
        2 => "program is dead and /var/lock lock file exists",
        3 => "program is not running",
        4 => "program or service status is unknown",
        _ => "unexpected status code",
    }
}

/// LSB exit codes of the other actions.
fn lsb_exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "generic or unspecified error",
        2 => "invalid or excess argument(s)",
        3 => "unimplemented feature",
        4 => "user had insufficient privilege",
        5 => "program is not installed",
        6 => "program is not configured",
        7 => "program is not running",
        _ => "unexpected exit code",
    }
}

impl fmt::Display for AgentClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentClass::Heartbeat => f.write_str("heartbeat"),
            AgentClass::Lsb => f.write_str("lsb"),
            AgentClass::Ocf { provider } => write!(f, "ocf:{provider}"),
        }
    }
}
