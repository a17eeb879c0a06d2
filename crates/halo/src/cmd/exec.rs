//! `halo exec -- CMD`: runs one command on every node of the cluster at once (dsh, seed
//! 002) and prints each node's output line by line behind its name (`n1: ...`, as
//! `dsh -M` does), then each node's exit status. Also how halo reaches the other nodes
//! ([`Reach`]), which `halo config sync` shares.
//!
//! The nodes are reached with the system's ssh client, never a library of our own: the
//! operator's `~/.ssh/config` (Host aliases, users, ports, jump hosts, ControlMaster),
//! agent and known_hosts apply as they do for every other tool.
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming the ssh command (`HALO_SSH="ssh -F /root/cluster.ssh"`).
pub const SSH_ENV: &str = "HALO_SSH";

/// How the other nodes are reached: options shared by `halo exec` and `halo config sync`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ReachArgs {
    /// An ssh option for every connection, as ssh's `-o` takes it (repeatable):
    /// `--ssh-option Port=2222 --ssh-option User=admin`. Given before halo's own
    /// defaults (BatchMode=yes, ConnectTimeout=10), so it can override them.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    pub ssh_options: Vec<String>,
    /// Where to reach NODE instead of its name: `--host n2=10.0.0.2` or
    /// `--host n2=admin@n2.example.org` (repeatable).
    #[arg(long = "host", value_name = "NODE=[USER@]ADDRESS")]
    pub hosts: Vec<String>,
}

/// The ssh command line for each node.
#[derive(Debug, Clone)]
pub struct Reach {
    ssh: Vec<String>,
    options: Vec<String>,
    hosts: BTreeMap<String, String>,
}

impl Reach {
    /// `HALO_SSH` (split on blanks, no quoting) or `ssh`; `--ssh-option`s; `--host`s,
    /// each of which must name a node of `nodes`.
    pub fn new(args: &ReachArgs, nodes: &[String]) -> anyhow::Result<Reach> {
        let ssh: Vec<String> = match std::env::var(SSH_ENV) {
            Ok(v) if !v.trim().is_empty() => v.split_whitespace().map(str::to_string).collect(),
            _ => vec!["ssh".to_string()],
        };
        for o in &args.ssh_options {
            if !o.contains('=') && !o.contains(' ') {
                bail!("--ssh-option {o}: expected KEY=VALUE as ssh's -o takes it (e.g. Port=2222)");
            }
        }
        let mut hosts = BTreeMap::new();
        for h in &args.hosts {
            let Some((node, dest)) = h.split_once('=') else {
                bail!("--host {h}: expected NODE=ADDRESS (e.g. n2=10.0.0.2 or n2=root@10.0.0.2)");
            };
            let node = node.trim().to_ascii_lowercase();
            if dest.trim().is_empty() || dest.trim().starts_with('-') {
                bail!("--host {h}: expected an address or user@address after '='");
            }
            if !nodes.contains(&node) {
                bail!("--host {h}: {node} is not a node of the cluster (nodes: {})", nodes.join(", "));
            }
            hosts.insert(node, dest.trim().to_string());
        }
        Ok(Reach { ssh, options: args.ssh_options.clone(), hosts })
    }

    /// Where `node` is reached: its `--host` address, else its name.
    pub fn destination(&self, node: &str) -> String {
        self.hosts.get(node).cloned().unwrap_or_else(|| node.to_string())
    }

    /// `ssh [options] -- DEST REMOTE`: `remote` is one string that the remote user's shell
    /// runs, as ssh always does.
    pub fn command(&self, node: &str, remote: &str) -> Command {
        let mut c = Command::new(&self.ssh[0]);
        c.args(&self.ssh[1..]);
        for o in &self.options {
            c.arg("-o").arg(o);
        }
        // ssh keeps the first value given for an option: the operator's come first.
        c.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]);
        c.arg("--").arg(self.destination(node)).arg(remote);
        c
    }

    pub fn describe(&self) -> String {
        self.ssh.join(" ")
    }
}

/// `s` quoted for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The cluster's nodes and this node's name from `config_dir` (read as the daemon reads
/// it). Without a readable configuration, the nodes given with `--node` (this node is then
/// `uname -n`); with neither, the configuration's error.
pub fn cluster_nodes(config_dir: &Path, requested: &[String]) -> anyhow::Result<(Vec<String>, String)> {
    match crate::run::load(config_dir, None) {
        Ok((model, _, local)) => {
            let nodes = model.ha_cf.nodes.clone();
            if nodes.is_empty() {
                bail!("{}: the configuration names no node", config_dir.join("ha.cf").display());
            }
            Ok((nodes, local))
        }
        Err(e) if requested.is_empty() => {
            Err(e.context("the nodes are read from the configuration (or name them with --node)"))
        }
        Err(e) => {
            eprintln!("halo: warning: {e:#}\nhalo: going on with the nodes given with --node");
            let uname = nix::sys::utsname::uname().context("uname")?;
            let local = uname.nodename().to_string_lossy().to_ascii_lowercase();
            Ok((requested.iter().map(|n| n.to_ascii_lowercase()).collect(), local))
        }
    }
}

/// The nodes asked for with `--node` (each must be a node of the cluster), or all of them,
/// in the order the configuration lists them.
pub fn select(nodes: &[String], requested: &[String]) -> anyhow::Result<Vec<String>> {
    if requested.is_empty() {
        return Ok(nodes.to_vec());
    }
    let mut out = Vec::new();
    for r in requested {
        let r = r.to_ascii_lowercase();
        if !nodes.contains(&r) {
            bail!("--node {r}: not a node of the cluster (nodes: {})", nodes.join(", "));
        }
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out.sort_by_key(|n| nodes.iter().position(|m| m == n));
    Ok(out)
}

/// How one node's command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    Signalled(i32),
    TimedOut(Duration),
    NotStarted(String),
}

/// Runs `child` until it ends or `timeout` passes (then kills it, and its process group
/// when it leads one).
fn wait(child: &mut Child, timeout: Option<Duration>) -> Outcome {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return outcome(st),
            Ok(None) => {}
            Err(e) => return Outcome::NotStarted(format!("waiting for it: {e}")),
        }
        if let Some(t) = timeout {
            if start.elapsed() >= t {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
                    let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                return Outcome::TimedOut(t);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn outcome(st: ExitStatus) -> Outcome {
    match (st.code(), st.signal()) {
        (Some(c), _) => Outcome::Exited(c),
        (None, Some(s)) => Outcome::Signalled(s),
        (None, None) => Outcome::Exited(-1),
    }
}

/// Copies `from` to `to` line by line, each line behind `prefix`; a last line without its
/// newline gets one. Lines are written whole, so two nodes' lines never mix.
fn forward(from: impl Read, prefix: String, to: fn() -> Box<dyn Write>) {
    let mut r = BufReader::new(from);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                let mut buf = prefix.clone().into_bytes();
                buf.extend_from_slice(&line);
                let mut w = to();
                let _ = w.write_all(&buf);
                let _ = w.flush();
            }
        }
    }
}

/// `halo exec`: `command`'s words joined by blanks are run by a shell on every selected
/// node (on this one by `sh -c`, on the others by ssh), all at once.
pub fn exec(
    config_dir: &Path,
    requested: &[String],
    timeout: Option<f64>,
    reach: &ReachArgs,
    command: &[String],
) -> anyhow::Result<i32> {
    if command.is_empty() {
        bail!("expected a command: halo exec [--node N]... -- CMD [ARGS...]");
    }
    let timeout = match timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => bail!("--timeout {t}: expected a number of seconds above 0"),
    };
    let (nodes, local) = cluster_nodes(config_dir, requested)?;
    let targets = select(&nodes, requested)?;
    let reach = Reach::new(reach, &nodes)?;
    let line = command.join(" ");

    let handles: Vec<_> = targets
        .iter()
        .map(|node| {
            let mut c = if *node == local {
                let mut c = Command::new("sh");
                // Its own process group, so that a timeout kills the whole pipeline.
                c.arg("-c").arg(&line).process_group(0);
                c
            } else {
                // ssh stays in our group: a Ctrl-C ends it (and the session) with us.
                reach.command(node, &line)
            };
            c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let node = node.clone();
            std::thread::spawn(move || run_one(&node, c, timeout))
        })
        .collect();
    let results: Vec<(String, bool, Outcome)> = targets
        .iter()
        .zip(handles)
        .map(|(n, h)| {
            let o = h.join().unwrap_or_else(|_| Outcome::NotStarted("its thread panicked".into()));
            (n.clone(), *n == local, o)
        })
        .collect();

    let mut failed = Vec::new();
    for (node, is_local, o) in &results {
        let how = match o {
            Outcome::Exited(0) => "exit 0".to_string(),
            Outcome::Exited(255) if !is_local => {
                "exit 255: ssh could not reach it (see its lines above), or the command itself exited 255"
                    .to_string()
            }
            Outcome::Exited(c) => format!("exit {c}"),
            Outcome::Signalled(s) => format!("killed by signal {s}"),
            Outcome::TimedOut(t) => format!("timed out after {} s (killed)", t.as_secs_f64()),
            Outcome::NotStarted(e) => format!("not started: {e}"),
        };
        if *o != Outcome::Exited(0) {
            failed.push(node.as_str());
        }
        eprintln!("halo exec: {node}: {how}");
    }
    if failed.is_empty() {
        Ok(0)
    } else {
        eprintln!("halo exec: {} of {} node(s) failed: {}", failed.len(), results.len(), failed.join(" "));
        Ok(1)
    }
}

fn run_one(node: &str, mut c: Command, timeout: Option<Duration>) -> Outcome {
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return Outcome::NotStarted(format!("{}: {e}", c.get_program().to_string_lossy())),
    };
    let prefix = format!("{node}: ");
    let out = child.stdout.take().map(|o| {
        let p = prefix.clone();
        std::thread::spawn(move || forward(o, p, || Box::new(std::io::stdout())))
    });
    let err = child.stderr.take().map(|e| {
        let p = prefix.clone();
        std::thread::spawn(move || forward(e, p, || Box::new(std::io::stderr())))
    });
    let o = wait(&mut child, timeout);
    // After a kill the pipes close with the process group; a command that left a daemon
    // holding them must not hold us: the readers are only waited for when it ended by itself.
    if !matches!(o, Outcome::TimedOut(_)) {
        for h in [out, err].into_iter().flatten() {
            let _ = h.join();
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_shell() {
        for s in ["plain", "with space", "it's", "", "$HOME;`x`", "a\nb"] {
            let out =
                Command::new("sh").arg("-c").arg(format!("printf %s {}", shell_quote(s))).output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), s);
        }
    }

    #[test]
    fn select_keeps_config_order_and_refuses_strangers() {
        let nodes: Vec<String> = ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect();
        assert_eq!(select(&nodes, &[]).unwrap(), nodes);
        assert_eq!(select(&nodes, &["N3".into(), "n1".into(), "n3".into()]).unwrap(), vec!["n1", "n3"]);
        let e = select(&nodes, &["n9".into()]).unwrap_err().to_string();
        assert_eq!(e, "--node n9: not a node of the cluster (nodes: n1, n2, n3)");
    }

    #[test]
    fn reach_builds_the_ssh_line_with_the_operators_options_first() {
        let nodes: Vec<String> = ["n1", "n2"].iter().map(|s| s.to_string()).collect();
        let args =
            ReachArgs { ssh_options: vec!["Port=2222".into()], hosts: vec!["N2=root@10.0.0.2".into()] };
        let r = Reach::new(&args, &nodes).unwrap();
        let c = r.command("n2", "uname -n");
        let argv: Vec<String> = c.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            argv,
            [
                "-o",
                "Port=2222",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "--",
                "root@10.0.0.2",
                "uname -n"
            ]
        );
        assert_eq!(r.destination("n1"), "n1");
        let bad = ReachArgs { ssh_options: vec![], hosts: vec!["n7=x".into()] };
        assert!(Reach::new(&bad, &nodes).unwrap_err().to_string().contains("n7 is not a node"));
        let bad = ReachArgs { ssh_options: vec![], hosts: vec!["n2".into()] };
        assert!(Reach::new(&bad, &nodes).unwrap_err().to_string().contains("expected NODE=ADDRESS"));
    }
}
