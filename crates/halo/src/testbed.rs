//! A throw-away network of real hosts for `halo demo` and the end-to-end tests: one
//! network namespace per node, each with an `eth0` cabled (veth) to a bridge in a
//! "switch" namespace, real addresses, real ARP. Pulling a cable is setting the switch
//! port down. Everything (processes, namespaces, files) is removed on drop.
use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Testbed {
    prefix: String,
    pub dir: PathBuf,
    namespaces: Vec<String>,
    hosts: Vec<String>,
    children: Vec<Child>,
    switch: Option<String>,
    /// Environment given to every process [`spawn`](Self::spawn) starts (beside the test's
    /// own), so that tests running at once need not share one process-wide variable.
    pub env: Vec<(String, String)>,
}

/// A scratch directory of a test, removed when the test is done (dropped).
pub struct Scratch(pub PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn sh(args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("{} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// `cf` (an ldirectord.cf) with its `logfile` in `dir`, so that a test's director does not
/// write to the host's /var/log/ldirectord.log. The line goes last: the file's own lines keep
/// their numbers.
pub fn ldirectord_cf_logging_in(dir: &Path, cf: &str) -> String {
    let sep = if cf.is_empty() || cf.ends_with('\n') { "" } else { "\n" };
    format!("{cf}{sep}logfile=\"{}\"\n", dir.join("ldirectord.log").display())
}

/// Whether a test that needs root can run: false (the test is skipped with a note) when not
/// root, a panic instead when `HALO_REQUIRE_ROOT=1` (CI) — [`Testbed::for_test`]'s rule, for
/// a test that builds no testbed of its own (one that runs `halo demo`).
pub fn root_for_test() -> bool {
    if !is_root() {
        if std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1") {
            panic!("this test needs root (network namespaces) and HALO_REQUIRE_ROOT=1");
        }
        eprintln!("skipping: not root (set HALO_REQUIRE_ROOT=1 to make this a failure)");
        return false;
    }
    true
}

impl Testbed {
    /// A testbed for a test that needs root: without root, `None` (the test is skipped with
    /// a note) — unless `HALO_REQUIRE_ROOT=1` (CI), where that is a failure.
    pub fn for_test(tag: &str) -> Option<Testbed> {
        if !root_for_test() {
            return None;
        }
        Some(Testbed::new(tag).expect("testbed"))
    }

    pub fn new(tag: &str) -> anyhow::Result<Testbed> {
        if !is_root() {
            bail!("network namespaces need root: run this as root (sudo)");
        }
        // Unique in this process even when two tests of one binary (run at once) give the same
        // tag: the second gets a number after it.
        static TAGS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());
        let n = {
            let mut tags = TAGS.lock().unwrap_or_else(|p| p.into_inner());
            let n = tags.entry(tag.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let tag = if n == 1 { tag.to_string() } else { format!("{tag}{n}") };
        let prefix = format!("h{}{}", std::process::id(), tag);
        let dir = std::env::temp_dir().join(format!("halo-{prefix}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        Ok(Testbed {
            prefix,
            dir,
            namespaces: Vec::new(),
            hosts: Vec::new(),
            children: Vec::new(),
            switch: None,
            env: Vec::new(),
        })
    }

    /// What every namespace of this testbed is named after (`<prefix>-<host>`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespaces this testbed made (the switch's included).
    pub fn namespaces(&self) -> &[String] {
        &self.namespaces
    }

    /// SIGKILLs every process in the testbed's namespaces, children or not (a resource
    /// script's daemon outlives the script), and waits up to 5 s for them to be gone, so
    /// that deleting the namespaces frees them. Returns how many processes were killed.
    pub fn kill_all(&mut self) -> usize {
        let mut killed = std::collections::BTreeSet::new();
        for c in &mut self.children {
            if matches!(c.try_wait(), Ok(None)) {
                killed.insert(c.id());
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let me = std::process::id();
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let mut left = 0;
            for ns in &self.namespaces {
                let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() else { continue };
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let Ok(pid) = pid.parse::<u32>() else { continue };
                    if pid == me {
                        continue;
                    }
                    left += 1;
                    killed.insert(pid);
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            // Reap (and forget) our own children: no zombies, and no later kill of a reused pid.
            self.children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
            if left == 0 || Instant::now() > end {
                return killed.len();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn ns(&self, host: &str) -> String {
        format!("{}-{host}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> anyhow::Result<()> {
        sh(&["ip", "netns", "add", name])?;
        self.namespaces.push(name.to_string());
        sh(&["ip", "-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn switch(&mut self) -> anyhow::Result<String> {
        if let Some(s) = &self.switch {
            return Ok(s.clone());
        }
        let sw = self.ns("sw");
        self.add_ns(&sw)?;
        sh(&["ip", "-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        // Multicast must reach every port without IGMP snooping state.
        sh(&["ip", "-n", &sw, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0"])?;
        sh(&["ip", "-n", &sw, "link", "set", "br0", "up"])?;
        self.switch = Some(sw.clone());
        Ok(sw)
    }

    /// A host with `eth0` at `addr` (CIDR) plugged into the switch; returns its namespace.
    pub fn add_host(&mut self, host: &str, addr: &str) -> anyhow::Result<String> {
        let sw = self.switch()?;
        let ns = self.ns(host);
        self.add_ns(&ns)?;
        let port = self.port(host);
        self.hosts.push(host.to_string());
        cable(&ns, "eth0", &sw, &port, addr)?;
        Ok(ns)
    }

    fn port(&self, host: &str) -> String {
        let i = self.hosts.iter().position(|h| h == host).unwrap_or(self.hosts.len());
        format!("p{i}")
    }

    /// Plugs or pulls the cable of a host's `eth0` at the switch.
    pub fn cable(&self, host: &str, plugged: bool) -> anyhow::Result<()> {
        let sw = self.switch.clone().context("no switch")?;
        sh(&["ip", "-n", &sw, "link", "set", &self.port(host), if plugged { "up" } else { "down" }])?;
        Ok(())
    }

    pub fn exec(&self, host: &str, args: &[&str]) -> anyhow::Result<Output> {
        let ns = self.ns(host);
        let mut full = vec!["ip", "netns", "exec", &ns];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Starts a long-running process in a host's namespace; killed on drop.
    pub fn spawn(&mut self, host: &str, program: &Path, args: &[&str], log: &Path) -> anyhow::Result<u32> {
        let f = std::fs::File::create(log)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(host)])
            .arg(program)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {} in {host}", program.display()))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Starts `halo run` on `host` with the config dir `config_dir`; its control socket,
    /// state directory and output go under the testbed directory. Returns (pid, socket).
    pub fn start_halo(
        &mut self,
        host: &str,
        halo: &Path,
        config_dir: &Path,
    ) -> anyhow::Result<(u32, PathBuf)> {
        let sock = self.dir.join(format!("{host}.sock"));
        let state = self.dir.join(host).join("state");
        let out = self.dir.join(format!("{host}.out"));
        let (s, c, st) = (sock.to_string_lossy(), config_dir.to_string_lossy(), state.to_string_lossy());
        let pid = self.spawn(
            host,
            halo,
            &["--socket", &s, "run", "--config-dir", &c, "--node", host, "--state-dir", &st],
            &out,
        )?;
        Ok((pid, sock))
    }

    /// Sends a signal to a child started by [`spawn`](Self::spawn) and waits for it.
    pub fn stop(&mut self, pid: u32, sig: nix::sys::signal::Signal) -> anyhow::Result<Option<i32>> {
        let Some(i) = self.children.iter().position(|c| c.id() == pid) else { bail!("no child {pid}") };
        let mut child = self.children.remove(i);
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok(st.code());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("process {pid} did not stop within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What a node's daemon wrote: its logfile (`NODE.log`, where the tests' ha.cf puts it)
    /// then its stdout/stderr (`NODE.out`, see [`Testbed::start_halo`]); empty when neither
    /// exists yet.
    pub fn node_log(&self, node: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{node}.log"))).unwrap_or_default()
            + &std::fs::read_to_string(self.dir.join(format!("{node}.out"))).unwrap_or_default()
    }

    /// `nft list table FAMILY NAME` in `host`'s namespace: the kernel's copy of a director's
    /// table (what clients meet; `halo lvs` shows the decided state, applied a moment
    /// later), None while there is no such table.
    pub fn nft_table(&self, host: &str, family: &str, name: &str) -> Option<String> {
        let o = self.exec(host, &["nft", "list", "table", family, name]).ok()?;
        Some(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `halo lvs ARGS` against `host`'s daemon (its socket `HOST.sock`, as
    /// [`Testbed::start_halo`] names it), None when it does not answer.
    pub fn halo_lvs(&self, halo: &Path, host: &str, args: &[&str]) -> Option<String> {
        let out = Command::new(halo)
            .arg("--socket")
            .arg(self.dir.join(format!("{host}.sock")))
            .arg("lvs")
            .args(args)
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The body `host` gets for `url` (curl, trimmed; `[IPv6]` URLs work), None on an error,
    /// an empty answer or none within `max_time`.
    pub fn fetch(&self, host: &str, url: &str, max_time: Duration) -> Option<String> {
        let secs = format!("{}", max_time.as_secs_f64());
        let out = self.exec(host, &["curl", "-g", "-s", "--max-time", &secs, url]).ok()?;
        let body = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (!body.is_empty()).then_some(body)
    }

    /// Writes a node's configuration directory (`ha.cf`, `authkeys` with mode 0600).
    pub fn write_config(&self, node: &str, ha_cf: &str, authkeys: &str) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let d = self.dir.join(node).join("ha.d");
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("ha.cf"), ha_cf)?;
        let k = d.join("authkeys");
        std::fs::write(&k, authkeys)?;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600))?;
        Ok(d)
    }

    /// A director node's configuration directory: [`Testbed::write_config`], then its
    /// `haresources` and its `ldirectord.cf` (logging into the directory:
    /// [`ldirectord_cf_logging_in`]).
    pub fn write_director_config(
        &self,
        node: &str,
        ha_cf: &str,
        authkeys: &str,
        haresources: &str,
        ldirectord_cf: &str,
    ) -> anyhow::Result<PathBuf> {
        let d = self.write_config(node, ha_cf, authkeys)?;
        std::fs::write(d.join("haresources"), haresources)?;
        std::fs::write(d.join("ldirectord.cf"), ldirectord_cf_logging_in(&d, ldirectord_cf))?;
        Ok(d)
    }
}

/// A veth "cable" from `ifname` in `ns` (address `addr`) to `port` on the bridge of `sw`.
fn cable(ns: &str, ifname: &str, sw: &str, port: &str, addr: &str) -> anyhow::Result<()> {
    sh(&["ip", "link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", port, "netns", sw])?;
    sh(&["ip", "-n", sw, "link", "set", port, "master", "br0", "up"])?;
    sh(&["ip", "-n", ns, "addr", "add", addr, "brd", "+", "dev", ifname])?;
    sh(&["ip", "-n", ns, "link", "set", ifname, "up"])?;
    Ok(())
}

impl Drop for Testbed {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = c.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        if std::env::var_os("HALO_KEEP_TESTBED").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A Heartbeat-class resource script for demos and tests: an HTTP server on port 80 serving
/// `<config dir>/www` (a page naming the node), `status` printing running/stopped as
/// ResourceManager reads it. Every start is counted in `<config dir>/starts`; the server's
/// errors go to `<config dir>/web.err`. It waits up to 30 s for the server (a loaded machine
/// starts python slowly).
pub const WEB_SCRIPT: &str = r#"#!/bin/sh
D=$(cd "$(dirname "$0")/.." && pwd)
PID="$D/web.pid"
case "$1" in
start)
    [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null && exit 0
    cd "$D/www" || exit 1
    /usr/bin/python3 -m http.server 80 --bind 0.0.0.0 >/dev/null 2>>"$D/web.err" </dev/null &
    echo $! > "$PID"
    echo start >> "$D/starts"
    i=0
    while [ $i -lt 600 ]; do
        ss -ltn | grep -q ':80 ' && exit 0
        sleep 0.05; i=$((i+1))
    done
    exit 1 ;;
stop)
    [ -f "$PID" ] && kill "$(cat "$PID")" 2>/dev/null
    rm -f "$PID"; exit 0 ;;
status)
    if [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; then echo running; else echo stopped; fi ;;
esac
exit 0
"#;

/// Installs `script` as `<config_dir>/resource.d/<name>` (mode 0755).
pub fn install_script(config_dir: &Path, name: &str, script: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let rd = config_dir.join("resource.d");
    std::fs::create_dir_all(&rd)?;
    std::fs::write(rd.join(name), script)?;
    std::fs::set_permissions(rd.join(name), std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Installs [`WEB_SCRIPT`] as the `web` resource of `config_dir`, with a page answering `page`.
pub fn install_web(config_dir: &Path, page: &str) -> anyhow::Result<()> {
    install_script(config_dir, "web", WEB_SCRIPT)?;
    std::fs::create_dir_all(config_dir.join("www"))?;
    std::fs::write(config_dir.join("www/index.html"), format!("{page}\n"))?;
    Ok(())
}

/// A TCP server answering each line it reads with "NAME LINE" (NAME: its first argument),
/// on every port its other arguments name: what the director tests hold connections to, to
/// see which real server answers each across a failover.
pub const LINE_SERVER_PY: &str = r#"
import socket, sys, threading
name = sys.argv[1].encode()
def serve(c):
    f = c.makefile("rb")
    for line in f:
        c.sendall(name + b" " + line)
    c.close()
def listen(port):
    # Both families: IPv6 with IPv4-mapped addresses, or IPv4 alone where IPv6 is off.
    try:
        s = socket.socket(socket.AF_INET6)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        addr = ("::", port)
    except OSError:
        s = socket.socket()
        addr = ("0.0.0.0", port)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(addr)
    s.listen(128)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
for p in sys.argv[3:]:
    threading.Thread(target=listen, args=(int(p),), daemon=True).start()
listen(int(sys.argv[2]))
"#;

/// A client holding connections across a director failover. Arguments: VIP, N, GO-FILE and
/// optionally a persistent port. Opens N connections to VIP:7000 and asks once on each (then,
/// with a persistent port, two connections one after the other to it), prints "PHASE1 names";
/// waits for GO-FILE; asks again on each held connection in reverse order (5 s each at most;
/// then, with a persistent port, two new connections), prints "PHASE2 names" in the same
/// order. A broken connection answers CLOSED or ERR:<exception>. Against [`LINE_SERVER_PY`].
pub const HELD_CLIENT_PY: &str = r#"
import os, socket, sys, time
vip, n, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
pport = int(sys.argv[4]) if len(sys.argv) > 4 else None
conns = []
for i in range(n):
    c = socket.create_connection((vip, 7000), timeout=20)
    conns.append(c)
    time.sleep(0.05)
def ask(c, msg):
    try:
        c.sendall(msg)
        data = b""
        while not data.endswith(b"\n"):
            d = c.recv(100)
            if not d:
                return "CLOSED"
            data += d
        return data.decode().split()[0]
    except Exception as e:
        return "ERR:" + type(e).__name__
def once(port):
    c = socket.create_connection((vip, port), timeout=20)
    r = ask(c, b"persistent\n")
    c.close()
    return r
first = [ask(c, b"one\n") for c in conns]
if pport:
    first += [once(pport), once(pport)]
print("PHASE1", " ".join(first), flush=True)
while not os.path.exists(go):
    time.sleep(0.05)
for c in conns:
    c.settimeout(5)
second = [None] * n
for i in reversed(range(n)):
    second[i] = ask(conns[i], b"two\n")
if pport:
    second += [once(pport), once(pport)]
print("PHASE2", " ".join(second), flush=True)
"#;

impl Testbed {
    /// `halo lvs realserver start --vip VIP` on each of `hosts` (seed 002's LVS-DR real
    /// server side), each with its own state directory under the testbed's.
    pub fn lvs_realservers(&self, halo: &Path, hosts: &[&str], vip: &str) -> anyhow::Result<()> {
        for h in hosts {
            let st = self.dir.join(h).join("state");
            std::fs::create_dir_all(&st)?;
            let halo = halo.to_str().unwrap_or_default();
            let st = st.to_str().unwrap_or_default();
            let out = self.exec(h, &[halo, "lvs", "realserver", "start", "--vip", vip, "--state-dir", st])?;
            anyhow::ensure!(
                out.status.success(),
                "realserver start on {h}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Starts [`LINE_SERVER_PY`] on each of `hosts` (named after the host) on `ports`, its
    /// output in `<dir>/<host>.out`, and waits until every one listens on every port.
    pub fn start_line_servers(&mut self, hosts: &[&str], ports: &[u16]) -> anyhow::Result<()> {
        let server = self.dir.join("line_server.py");
        std::fs::write(&server, LINE_SERVER_PY)?;
        let ports: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
        for h in hosts {
            let log = self.dir.join(format!("{h}.out"));
            let mut args = vec![server.to_str().unwrap_or_default(), h];
            args.extend(ports.iter().map(|p| p.as_str()));
            self.spawn(h, Path::new("python3"), &args, &log)?;
        }
        for h in hosts {
            let listening = wait_for(Duration::from_secs(10), || {
                let o = self.exec(h, &["ss", "-ltn"]).ok()?;
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                ports.iter().all(|p| text.contains(&format!(":{p} "))).then_some(())
            });
            anyhow::ensure!(listening.is_some(), "{h}'s line server does not listen on {ports:?}");
        }
        Ok(())
    }
}

/// Polls `f` every 50 ms until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The state `observer`'s daemon (socket) holds of `node`, if it answers.
pub fn node_state(socket: &Path, node: &str) -> Option<String> {
    let v = crate::control::request(socket, "status").ok()?;
    v.get("nodes")?
        .as_array()?
        .iter()
        .find(|n| n.get("name").and_then(|x| x.as_str()) == Some(node))?
        .get("state")?
        .as_str()
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_testbeds_with_one_tag_get_their_own_namespaces_and_directories() {
        let Some(a) = Testbed::for_test("same") else { return };
        let b = Testbed::for_test("same").expect("root");
        assert_ne!(a.prefix(), b.prefix());
        assert_ne!(a.dir, b.dir);
        assert_ne!(a.ns("d"), b.ns("d"));
    }
}
