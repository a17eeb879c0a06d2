//! Fencing (STONITH) devices: ha.cf's `stonith_host <from-node|*> <type> <params...>` and
//! `stonith <type> <file>` lines, and the call that powers a node off or resets it. Blocking
//! (a fence may take a minute, a meatware fence until an operator answers): for a worker
//! thread, never the heartbeat thread. Every call has a timeout; a failure is a value that
//! says why.
//!
//! Types:
//! * `external/NAME` — cluster-glue's external plugin interface: the script
//!   `<plugins>/external/NAME` (`/usr/lib/stonith/plugins/external/NAME`, Debian's
//!   `cluster-glue` ships ipmi, ssh, libvirt, riloe, ...; `HALO_STONITH_PLUGINS` names
//!   another `<plugins>` directory) gets its parameters as environment variables and is
//!   called `NAME gethosts` (a device that lists hosts and not the target is skipped) then
//!   `NAME reset TARGET`. Parameters are `name=value` words, or positional words named in
//!   the order `NAME getconfignames` prints (the legacy "info string" form of ha.cf).
//! * `ssh HOST...` — reboots the target over ssh (`ssh -o BatchMode=yes ... root@TARGET`
//!   then an immediate `reboot -nf`), for the listed hosts (all when none are listed). As
//!   cluster-glue says of its own ssh plugin: for tests, not production — a hung machine
//!   does not answer ssh.
//! * `ipmi HOSTNAME IPADDR USER PASSWORD [INTERFACE]` — `ipmitool -I lanplus -H IPADDR -U USER
//!   -E chassis power reset` (the password goes in `IPMI_PASSWORD`, not on the command line),
//!   for HOSTNAME only.
//! * `meatware` — an operator resets the node by hand and confirms with `halo fence confirm
//!   NODE`; the fence completes only then.
//! * `test [ok|fail] [FILE]` and `null` — for tests: records `reset TARGET` in FILE (when
//!   given) and succeeds (`null`, `test ok`) or fails (`test fail`).
use crate::agents::{run_program, Outcome};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Environment variables given to a command.
pub type Env = Vec<(String, String)>;

/// Where cluster-glue installs its plugins (`external/` below it).
pub const PLUGIN_DIR: &str = "/usr/lib/stonith/plugins";
/// Time a device gets to fence (each external script call, ssh, ipmitool).
pub const FENCE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time a meatware fence waits for the operator before it fails (and the engine retries).
pub const MEATWARE_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    External {
        name: String,
        path: PathBuf,
    },
    Ssh,
    Ipmi,
    Meatware,
    /// `test`/`null`: succeeds unless told `fail`; may record requests in a file.
    Test {
        ok: bool,
        record: Option<PathBuf>,
    },
}

/// One configured device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The node that may use it, or `*` for every node.
    pub from: String,
    pub kind: Kind,
    /// The words after the type, as written.
    pub params: Vec<String>,
    /// The line, for logs.
    pub line: String,
}

impl Device {
    /// Whether `node` may use the device.
    pub fn usable_by(&self, node: &str) -> bool {
        self.from == "*" || self.from.eq_ignore_ascii_case(node)
    }

    /// The type as written (`external/ipmi`, `meatware`).
    pub fn type_name(&self) -> String {
        match &self.kind {
            Kind::External { name, .. } => format!("external/{name}"),
            Kind::Ssh => "ssh".into(),
            Kind::Ipmi => "ipmi".into(),
            Kind::Meatware => "meatware".into(),
            Kind::Test { .. } => "test".into(),
        }
    }
}

/// Parses ha.cf's `stonith` (its file read here) and `stonith_host` lines. `plugins` is
/// cluster-glue's plugin directory (see [`plugin_dir`]).
pub fn parse_devices(
    stonith: Option<&str>,
    stonith_host: &[String],
    plugins: &Path,
) -> Result<Vec<Device>, String> {
    let mut out = Vec::new();
    for line in stonith_host {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 2 {
            return Err(format!("stonith_host {line}: expected 'stonith_host HOST|* TYPE PARAMS...'"));
        }
        let params: Vec<String> = words[2..].iter().map(|s| s.to_string()).collect();
        out.push(device(words[0].to_lowercase(), words[1], params, format!("stonith_host {line}"), plugins)?);
    }
    if let Some(line) = stonith {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [kind, file] = words[..] else {
            return Err(format!("stonith {line}: expected 'stonith TYPE CONFIGFILE'"));
        };
        let text =
            std::fs::read_to_string(file).map_err(|e| format!("stonith {line}: reading {file}: {e}"))?;
        // cluster-glue's config file: the device's parameters, whitespace-separated
        // (comments and blank lines aside).
        let params: Vec<String> = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .flat_map(|l| l.split_whitespace())
            .map(str::to_string)
            .collect();
        out.push(device("*".into(), kind, params, format!("stonith {line}"), plugins)?);
    }
    Ok(out)
}

fn device(
    from: String,
    kind: &str,
    params: Vec<String>,
    line: String,
    plugins: &Path,
) -> Result<Device, String> {
    let kind = match kind {
        "ssh" => Kind::Ssh,
        "ipmi" => {
            if params.len() < 4 {
                return Err(format!("{line}: ipmi needs HOSTNAME IPADDR USER PASSWORD [INTERFACE]"));
            }
            Kind::Ipmi
        }
        "meatware" => Kind::Meatware,
        "null" => Kind::Test { ok: true, record: None },
        "test" => {
            let ok = match params.first().map(String::as_str) {
                None | Some("ok") => true,
                Some("fail") => false,
                Some(w) => return Err(format!("{line}: test expects ok or fail, got '{w}'")),
            };
            Kind::Test { ok, record: params.get(1).map(PathBuf::from) }
        }
        k => match k.strip_prefix("external/") {
            Some(name) if !name.is_empty() && !name.contains('/') && name != ".." => {
                let path = plugins.join("external").join(name);
                if !path.is_file() {
                    return Err(format!("{line}: no STONITH plugin {}", path.display()));
                }
                Kind::External { name: name.to_string(), path }
            }
            _ => {
                return Err(format!(
                    "{line}: unknown STONITH type '{k}' (halo runs external/NAME, ssh, ipmi, meatware, test, null)"
                ))
            }
        },
    };
    Ok(Device { from, kind, params, line })
}

/// `HALO_STONITH_PLUGINS` or cluster-glue's [`PLUGIN_DIR`].
pub fn plugin_dir() -> PathBuf {
    std::env::var_os("HALO_STONITH_PLUGINS").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(PLUGIN_DIR))
}

/// The nodes (of `nodes`) that have a device.
pub fn fencers(devices: &[Device], nodes: &[String]) -> Vec<String> {
    nodes.iter().filter(|n| devices.iter().any(|d| d.usable_by(n))).cloned().collect()
}

/// Meatware requests waiting for an operator, shared between the fencing worker threads and
/// the control socket's `fence confirm`.
#[derive(Default)]
pub struct Meatware {
    waiting: Mutex<(BTreeSet<String>, BTreeSet<String>)>,
    cv: Condvar,
}

impl Meatware {
    /// The operator's word that `node` is down. True when a meatware fence was waiting.
    pub fn confirm(&self, node: &str) -> bool {
        let Ok(mut g) = self.waiting.lock() else { return false };
        if !g.0.contains(node) {
            return false;
        }
        g.1.insert(node.to_string());
        self.cv.notify_all();
        true
    }

    /// Nodes waiting for a confirmation.
    pub fn waiting(&self) -> Vec<String> {
        self.waiting.lock().map(|g| g.0.iter().cloned().collect()).unwrap_or_default()
    }

    fn wait(&self, node: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut g = self.waiting.lock().map_err(|_| "meatware: lock poisoned".to_string())?;
        g.0.insert(node.to_string());
        loop {
            if g.1.remove(node) {
                g.0.remove(node);
                return Ok("meatware: confirmed by the operator".into());
            }
            let now = Instant::now();
            if now >= deadline {
                g.0.remove(node);
                return Err(format!("meatware: no operator confirmation within {} s", timeout.as_secs()));
            }
            g = self.cv.wait_timeout(g, deadline - now).map_err(|_| "meatware: lock poisoned".to_string())?.0;
        }
    }
}

/// Fences `target` with the first of `devices` usable by `me` that covers it; the others
/// are tried in order when one fails. Ok: what did it.
pub fn fence(
    devices: &[Device],
    me: &str,
    target: &str,
    meatware: &Meatware,
    log: &mut dyn FnMut(String),
) -> Result<String, String> {
    let mine: Vec<&Device> = devices.iter().filter(|d| d.usable_by(me)).collect();
    if mine.is_empty() {
        return Err(format!("no STONITH device usable by {me}"));
    }
    let mut errors = Vec::new();
    for d in mine {
        let r = match &d.kind {
            Kind::External { name, path } => external(name, path, &d.params, target, FENCE_TIMEOUT),
            Kind::Ssh => ssh(&d.params, target, FENCE_TIMEOUT),
            Kind::Ipmi => ipmi(&d.params, target, FENCE_TIMEOUT),
            Kind::Meatware => {
                log(format!(
                    "STONITH meatware: reset node {target} by hand, then run 'halo fence confirm {target}'"
                ));
                meatware.wait(target, MEATWARE_TIMEOUT)
            }
            Kind::Test { ok, record } => test(*ok, record.as_deref(), target),
        };
        match r {
            Ok(detail) => return Ok(format!("{}: {detail}", d.type_name())),
            Err(e) => {
                log(format!("STONITH device {} could not fence {target}: {e}", d.line));
                errors.push(format!("{}: {e}", d.type_name()));
            }
        }
    }
    Err(errors.join("; "))
}

fn outcome_error(what: &str, o: &Outcome) -> String {
    let mut s = format!("{what}: {}", o.describe());
    let text = if o.stderr.trim().is_empty() { o.stdout.trim() } else { o.stderr.trim() };
    if !text.is_empty() {
        let text: String = text.lines().last().unwrap_or("").chars().take(200).collect();
        s.push_str(&format!(" ({text})"));
    }
    s
}

/// The environment of an external plugin: `name=value` words as they are, positional words
/// named by `getconfignames`.
fn external_env(path: &Path, params: &[String], timeout: Duration) -> Result<Vec<(String, String)>, String> {
    let mut env = Vec::new();
    let mut positional = Vec::new();
    for p in params {
        match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => env.push((k.to_string(), v.to_string())),
            _ => positional.push(p.clone()),
        }
    }
    if !positional.is_empty() {
        let o = run_program(path, &["getconfignames".into()], &[], timeout);
        if o.exit != Some(0) {
            return Err(outcome_error("getconfignames", &o));
        }
        let names: Vec<&str> = o.stdout.split_whitespace().collect();
        let Some(last) = names.len().checked_sub(1) else {
            return Err("positional parameters given, but getconfignames names none".into());
        };
        // As the legacy info string: the last name takes the rest (`hostlist` = "n1 n2").
        for (i, n) in names.iter().enumerate().take(positional.len()) {
            let v = if i == last { positional[i..].join(" ") } else { positional[i].clone() };
            env.push((n.to_string(), v));
        }
    }
    Ok(env)
}

fn external(
    name: &str,
    path: &Path,
    params: &[String],
    target: &str,
    timeout: Duration,
) -> Result<String, String> {
    let env = external_env(path, params, timeout)?;
    let hosts = run_program(path, &["gethosts".into()], &env, timeout);
    if hosts.exit == Some(0) {
        let listed: Vec<&str> = hosts.stdout.split_whitespace().collect();
        if !listed.is_empty() && !listed.iter().any(|h| h.eq_ignore_ascii_case(target)) {
            return Err(format!("badhost: {target} is not among its hosts ({})", listed.join(" ")));
        }
    }
    let o = run_program(path, &["reset".into(), target.into()], &env, timeout);
    if o.exit == Some(0) {
        Ok(format!("{name} reset {target}: {}", o.describe()))
    } else {
        Err(outcome_error(&format!("{name} reset {target}"), &o))
    }
}

/// The ssh command that reboots `target` at once.
pub fn ssh_argv(target: &str) -> Vec<String> {
    [
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "StrictHostKeyChecking=accept-new",
        "-n",
        "-l",
        "root",
        target,
        "nohup sh -c 'sleep 1; reboot -nf' >/dev/null 2>&1 &",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn ssh(hosts: &[String], target: &str, timeout: Duration) -> Result<String, String> {
    let hosts: Vec<&str> = hosts.iter().flat_map(|h| h.split(',')).filter(|h| !h.is_empty()).collect();
    if !hosts.is_empty() && !hosts.iter().any(|h| h.eq_ignore_ascii_case(target)) {
        return Err(format!("badhost: {target} is not among its hosts ({})", hosts.join(" ")));
    }
    let o = run_program(Path::new("ssh"), &ssh_argv(target), &[], timeout);
    if o.exit == Some(0) {
        Ok(format!("rebooting {target} over ssh"))
    } else {
        Err(outcome_error(&format!("ssh {target}"), &o))
    }
}

/// `ipmitool` arguments and environment for `ipmi HOSTNAME IPADDR USER PASSWORD [INTERFACE]`
/// (None: the device is for another host).
pub fn ipmi_command(params: &[String], target: &str) -> Option<(Vec<String>, Env)> {
    let [host, ip, user, pass, rest @ ..] = params else { return None };
    if !host.eq_ignore_ascii_case(target) {
        return None;
    }
    let interface = rest.first().map(String::as_str).unwrap_or("lanplus");
    let argv = ["-I", interface, "-H", ip, "-U", user, "-E", "chassis", "power", "reset"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    Some((argv, vec![("IPMI_PASSWORD".into(), pass.clone())]))
}

fn ipmi(params: &[String], target: &str, timeout: Duration) -> Result<String, String> {
    let Some((argv, env)) = ipmi_command(params, target) else {
        return Err(format!(
            "badhost: this ipmi device is for {}",
            params.first().map_or("?", |s| s.as_str())
        ));
    };
    let o = run_program(Path::new("ipmitool"), &argv, &env, timeout);
    if o.exit == Some(0) {
        Ok(format!("ipmitool chassis power reset {target}: {}", o.stdout.trim()))
    } else {
        Err(outcome_error("ipmitool chassis power reset", &o))
    }
}

fn test(ok: bool, record: Option<&Path>, target: &str) -> Result<String, String> {
    if let Some(f) = record {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f)
            .map_err(|e| format!("recording in {}: {e}", f.display()))?;
        writeln!(file, "reset {target}").map_err(|e| format!("recording in {}: {e}", f.display()))?;
    }
    if ok {
        Ok(format!("reset {target}"))
    } else {
        Err(format!("test device told to fail (reset {target})"))
    }
}

#[cfg(test)]
mod tests;
