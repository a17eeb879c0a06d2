//! `halo check`: validate the configuration and, unless `--config-only`, this host — one
//! line per check, `OK`, `WARN` or `FAIL`, with what to run when something is wrong; the
//! exit code is 1 when any check failed. `--json` prints the same as one JSON document.
//!
//! The checks, in order:
//! * `authkeys`: the key file (or halo.toml when it holds the `[auth]` keys) is not
//!   readable by group or others — Heartbeat refuses to start otherwise — and belongs to
//!   root;
//! * `configuration`: every file parses and passes Heartbeat's start conditions;
//! * `node`: this host's name (`nodeinfo`, else `uname -n`) is a node of ha.cf;
//! * `interface`: every heartbeat medium's interface (or serial device) exists;
//! * `daemon`, `peer`, `clock`, `config drift`: asked of the running daemon over the control
//!   socket — whether each node's heartbeats are heard, how far each node's clock is from
//!   ours, whether every node runs the configuration we run (a digest in the heartbeats),
//!   and whether the daemon still runs the files on disk;
//! * `reachable`: the peer addresses of `ucast` media, and the node names of `mcast`/`bcast`
//!   media when they resolve, answer an ICMP echo (a heartbeat path can be dead while the
//!   host is up, or the reverse: both are worth knowing);
//! * `lvs-dr`: for every virtual IP a director configuration routes to this host as a
//!   direct-routing (`gate`) real server, the VIP is on `lo` and ARP is quiet about it
//!   (`arp_ignore=1`, `arp_announce=2`), as `halo lvs realserver start` sets it;
//! * `ip_forward`: a node that can run a NAT (`masq`) director forwards IPv4.
use crate::cmd::status::CLOCK_SKEW_WARN_MS;
use halo_config::ldirectord_cf::{Forward, Host, LdirectordCf, VirtualAddr};
use halo_config::{Medium, Model};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::{IpAddr, ToSocketAddrs};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

struct Check {
    name: String,
    level: Level,
    detail: String,
    /// What to run (or do) to fix it.
    fix: Option<String>,
}

#[derive(Default)]
struct Report {
    checks: Vec<Check>,
}

impl Report {
    fn add(&mut self, level: Level, name: &str, detail: impl Into<String>, fix: Option<String>) {
        self.checks.push(Check { name: name.to_string(), level, detail: detail.into(), fix });
    }
    fn ok(&mut self, name: &str, detail: impl Into<String>) {
        self.add(Level::Ok, name, detail, None);
    }
    fn warn(&mut self, name: &str, detail: impl Into<String>, fix: Option<String>) {
        self.add(Level::Warn, name, detail, fix);
    }
    fn fail(&mut self, name: &str, detail: impl Into<String>, fix: Option<String>) {
        self.add(Level::Fail, name, detail, fix);
    }
    fn failed(&self) -> usize {
        self.checks.iter().filter(|c| c.level == Level::Fail).count()
    }
}

pub struct CheckArgs<'a> {
    pub config_dir: &'a Path,
    /// Check the files only, not this host.
    pub config_only: bool,
    /// Check as this node (default: nodeinfo, else `uname -n`).
    pub node: Option<&'a str>,
    /// The daemon's control socket.
    pub socket: &'a Path,
    pub json: bool,
}

pub fn check(args: CheckArgs) -> anyhow::Result<i32> {
    let mut r = Report::default();
    let digest = run_checks(&args, &mut r);
    let failed = r.failed();
    if args.json {
        let checks: Vec<Value> = r
            .checks
            .iter()
            .map(|c| {
                json!({
                    "check": c.name,
                    "status": c.level.name(),
                    "detail": c.detail,
                    "fix": c.fix,
                })
            })
            .collect();
        let doc = json!({
            "ok": failed == 0,
            "config_dir": args.config_dir.display().to_string(),
            "config_only": args.config_only,
            "config_digest": digest,
            "checks": checks,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        // Passed checks on stdout; problems on stderr, where scripts and people look first.
        for c in &r.checks {
            let mut line = format!("{:<4} {}: {}", c.level.name(), c.name, c.detail);
            if let Some(f) = &c.fix {
                line.push_str(&format!("; fix: {f}"));
            }
            if c.level == Level::Ok {
                println!("{line}");
            } else {
                eprintln!("{line}");
            }
        }
        if failed == 0 {
            println!(
                "configuration OK{}",
                if args.config_only { " (files only; host not checked)" } else { "" }
            );
        } else {
            eprintln!("{failed} check(s) FAILED");
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

/// Runs every check; returns the digest of the configuration on disk when it loads.
fn run_checks(args: &CheckArgs, r: &mut Report) -> Option<String> {
    check_keyfile(args.config_dir, r);
    let (model, warnings, name) = match crate::run::load(args.config_dir, args.node) {
        Ok(x) => x,
        Err(e) => {
            r.fail("configuration", format!("{e:#}"), None);
            return None;
        }
    };
    for w in &warnings {
        r.warn("configuration", w.clone(), None);
    }
    r.ok("configuration", summary(args.config_dir, &model));
    let digest = halo_config::config_digest(&model);
    if args.config_only {
        return Some(digest);
    }
    match model.check_local_node(&name) {
        Ok(()) => r.ok("node", format!("this host is {name}, a node of ha.cf")),
        Err(e) => r.fail(
            "node",
            e,
            Some(format!(
                "add 'node {name}' to ha.cf, or name this host as ha.cf does (hostnamectl, or {}/nodeinfo)",
                args.config_dir.display()
            )),
        ),
    }
    check_media(&model, r);
    check_daemon(args.socket, &model, &name, &digest, r);
    check_reachable(&model, &name, r);
    check_lvs(args.config_dir, &model, r);
    Some(digest)
}

fn summary(dir: &Path, model: &Model) -> String {
    let hc = &model.ha_cf;
    let active = model.authkeys.active_key().map(|k| k.method.as_str()).unwrap_or("?");
    let mut s = format!(
        "{}: {} node(s) [{}], {} medium/media, keepalive {} ms, deadtime {} ms, warntime {} ms, initdead {} ms, auth {} {active}",
        dir.display(),
        hc.nodes.len(),
        hc.nodes.join(" "),
        hc.media.len(),
        hc.keepalive_ms,
        hc.deadtime_ms,
        hc.warntime_ms,
        hc.initdead_ms,
        model.authkeys.active,
    );
    if let Some(h) = &model.haresources {
        s.push_str(&format!(", {} resource group(s)", h.groups.len()));
    }
    s.push_str(&format!(", digest {}", halo_config::config_digest(model)));
    s
}

/// The file that holds the keys: authkeys, or halo.toml when it has an `[auth]` table.
fn keyfile(dir: &Path) -> PathBuf {
    let toml = dir.join(halo_config::halo_toml::FILE);
    if let Ok(text) = std::fs::read_to_string(&toml) {
        if text.lines().any(|l| l.trim() == "[auth]") {
            return toml;
        }
    }
    dir.join("authkeys")
}

/// Heartbeat refuses a key file that group or others can read. It must belong to root too:
/// whoever owns it can make it readable again. Checked by a non-root user (a copy being
/// prepared, a test), a foreign owner is only a warning: the daemon runs as root.
fn check_keyfile(dir: &Path, r: &mut Report) {
    let path = keyfile(dir);
    let p = path.display();
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => {
            r.fail("authkeys", format!("cannot read {p}: {e}"), None);
            return;
        }
    };
    let mode = meta.mode() & 0o7777;
    let mut bad = false;
    if let Err(msg) = halo_config::check_keyfile_mode(&path, meta.mode()) {
        r.fail("authkeys", msg, Some(format!("chmod 600 {p}")));
        bad = true;
    }
    if meta.uid() != 0 {
        let detail = format!("{p} belongs to uid {}, not root", meta.uid());
        let fix = Some(format!("chown root:root {p}"));
        if nix::unistd::geteuid().is_root() {
            r.fail("authkeys", detail, fix);
        } else {
            r.warn("authkeys", format!("{detail} (the daemon runs as root)"), fix);
        }
        bad = true;
    }
    if !bad {
        r.ok("authkeys", format!("{p} mode {mode:04o}, owner root"));
    }
}

fn check_media(model: &Model, r: &mut Report) {
    for m in &model.ha_cf.media {
        match m {
            Medium::Serial { device, .. } => {
                if device.exists() {
                    r.ok("interface", format!("{}: {} exists", m.describe(), device.display()));
                } else {
                    r.fail(
                        "interface",
                        format!("{}: {} does not exist", m.describe(), device.display()),
                        None,
                    );
                }
            }
            _ => {
                let iface = m.link_name();
                if nix::net::if_::if_nametoindex(iface.as_str()).is_ok() {
                    r.ok("interface", format!("{}: {iface} present", m.describe()));
                } else {
                    r.fail(
                        "interface",
                        format!("{}: no interface named {iface} on this host", m.describe()),
                        Some(format!("name the interface this host has in ha.cf (ip -br link lists them), or bring {iface} up")),
                    );
                }
            }
        }
    }
}

fn check_daemon(socket: &Path, model: &Model, me: &str, digest: &str, r: &mut Report) {
    let v = match crate::control::request(socket, "status") {
        Ok(v) => v,
        Err(e) => {
            r.warn(
                "daemon",
                format!("{e:#}: the daemon is not running, so heartbeats, clock skew and configuration drift are not checked"),
                Some("start it (systemctl start halo) and check again".into()),
            );
            return;
        }
    };
    let s = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    r.ok("daemon", format!("running on {} as {} ({})", socket.display(), s(&v, "node"), s(&v, "state")));
    let nodes: Vec<Value> = v.get("nodes").and_then(|n| n.as_array()).cloned().unwrap_or_default();
    for peer in model.ha_cf.nodes.iter().filter(|n| *n != me) {
        let Some(n) = nodes.iter().find(|n| s(n, "name") == *peer) else {
            r.fail(
                "peer",
                format!("{peer}: the daemon does not know it (it runs another configuration?)"),
                None,
            );
            continue;
        };
        let state = s(n, "state");
        let heard = n.get("last_heard_ms").and_then(|x| x.as_u64());
        let deadtime = n.get("deadtime_ms").and_then(|x| x.as_u64()).unwrap_or(model.ha_cf.deadtime_ms);
        match (state.as_str(), heard) {
            ("dead", Some(ms)) => r.fail(
                "peer",
                format!("{peer}: dead, last heartbeat {:.1} s ago", ms as f64 / 1000.0),
                Some(format!(
                    "is halo running on {peer}? see the reachable lines and the links in halo status"
                )),
            ),
            (_, None) => r.fail(
                "peer",
                format!("{peer}: {state}, no heartbeat heard since this daemon started"),
                Some(format!(
                    "is halo running on {peer}? see the reachable lines and the links in halo status"
                )),
            ),
            (_, Some(ms)) if ms > deadtime / 2 => r.warn(
                "peer",
                format!(
                    "{peer}: {state}, last heartbeat {:.1} s ago (deadtime {:.1} s)",
                    ms as f64 / 1000.0,
                    deadtime as f64 / 1000.0
                ),
                None,
            ),
            (_, Some(ms)) => {
                r.ok("peer", format!("{peer}: {state}, heartbeat heard {:.1} s ago", ms as f64 / 1000.0))
            }
        }
        if let Some(skew) = n.get("clock_skew_ms").and_then(|x| x.as_i64()) {
            let side = if skew > 0 { "ahead of" } else { "behind" };
            let text = format!("{peer} is {:.3} s {side} this host", skew.abs() as f64 / 1000.0);
            if skew.abs() >= CLOCK_SKEW_WARN_MS {
                r.warn(
                    "clock",
                    text,
                    Some("run NTP on every node (apt-get install chrony), as seed 002 requires".into()),
                );
            } else {
                r.ok("clock", text);
            }
        }
    }
    // Configuration: every live halo peer's digest against ours, and ours against the files.
    let running = v.get("config_digest").and_then(|d| d.as_str()).unwrap_or("");
    let drift: Vec<String> = v
        .get("config_drift")
        .and_then(|d| d.as_array())
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect();
    let digest_of = |name: &str| {
        nodes
            .iter()
            .find(|n| s(n, "name") == name)
            .and_then(|n| n.get("config_digest"))
            .and_then(|d| d.as_str())
            .map(str::to_string)
    };
    if !drift.is_empty() {
        let theirs: Vec<String> =
            drift.iter().map(|d| format!("{d} {}", digest_of(d).unwrap_or_default())).collect();
        r.fail(
            "config drift",
            format!(
                "{} run(s) another configuration than this node ({me} {running}; {})",
                drift.join(" "),
                theirs.join(", ")
            ),
            Some(format!(
                "copy {} to every node (halo config sync, or scp), then halo reload on each",
                model.dir.display()
            )),
        );
    } else {
        let with: Vec<&str> = nodes
            .iter()
            .filter(|n| s(n, "type") != "ping" && s(n, "state") != "dead")
            .filter(|n| n.get("config_digest").and_then(|d| d.as_str()).is_some())
            .filter_map(|n| n.get("name").and_then(|x| x.as_str()))
            .collect();
        let without: Vec<&str> = nodes
            .iter()
            .filter(|n| s(n, "type") != "ping" && s(n, "state") != "dead")
            .filter(|n| n.get("config_digest").and_then(|d| d.as_str()).is_none())
            .filter_map(|n| n.get("name").and_then(|x| x.as_str()))
            .collect();
        let mut text = format!("same configuration (digest {running}) on {}", with.join(" "));
        if !without.is_empty() {
            text.push_str(&format!("; {} send(s) no digest (Heartbeat nodes?)", without.join(" ")));
        }
        r.ok("config drift", text);
    }
    if !running.is_empty() && running != digest {
        r.warn(
            "config drift",
            format!("the daemon runs configuration {running}, the files say {digest}: they changed since it loaded them"),
            Some("halo reload".into()),
        );
    }
}

/// The addresses of this host.
fn local_addrs() -> BTreeSet<IpAddr> {
    let mut out = BTreeSet::new();
    if let Ok(list) = nix::ifaddrs::getifaddrs() {
        for a in list {
            let Some(addr) = a.address else { continue };
            if let Some(v4) = addr.as_sockaddr_in() {
                out.insert(IpAddr::V4(v4.ip()));
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                out.insert(IpAddr::V6(v6.ip()));
            }
        }
    }
    out
}

fn resolve(host: &str) -> Vec<IpAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return vec![ip];
    }
    (host, 0).to_socket_addrs().map(|a| a.map(|s| s.ip()).collect()).unwrap_or_default()
}

/// Pings the peers' addresses the media name: `ucast` peers, and for `mcast`/`bcast` the
/// other nodes' names when they resolve.
fn check_reachable(model: &Model, me: &str, r: &mut Report) {
    let local = local_addrs();
    // (what it is, the address)
    let mut targets: Vec<(String, IpAddr)> = Vec::new();
    let add = |label: String, ip: IpAddr, targets: &mut Vec<(String, IpAddr)>| {
        if !local.contains(&ip) && !targets.iter().any(|(_, a)| *a == ip) {
            targets.push((label, ip));
        }
    };
    let mut by_name = false;
    for m in &model.ha_cf.media {
        match m {
            Medium::Ucast { peer, .. } | Medium::Ucast6 { peer, .. } => {
                for ip in resolve(peer) {
                    add(format!("{} peer {ip}", m.describe()), ip, &mut targets);
                }
            }
            Medium::Mcast { .. } | Medium::Mcast6 { .. } | Medium::Bcast { .. } => by_name = true,
            Medium::Serial { .. } => {}
        }
    }
    if by_name {
        for n in model.ha_cf.nodes.iter().filter(|n| *n != me) {
            for ip in resolve(n) {
                add(format!("node {n} ({ip})"), ip, &mut targets);
            }
        }
    }
    if targets.is_empty() {
        return;
    }
    let answered = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let seen = Arc::clone(&answered);
    let ping_targets: Vec<halo_host::net::ping::PingTarget> = targets
        .iter()
        .map(|(_, ip)| halo_host::net::ping::PingTarget { node: ip.to_string(), addrs: vec![*ip] })
        .collect();
    let pinger = halo_host::net::ping::start(ping_targets, Duration::from_millis(200), move |node| {
        seen.lock().unwrap_or_else(|e| e.into_inner()).insert(node.to_string());
    });
    let _pinger = match pinger {
        Ok(p) => p,
        Err(e) => {
            r.warn(
                "reachable",
                format!("cannot send ICMP echo ({e}): peer addresses not checked"),
                Some("run halo check as root".into()),
            );
            return;
        }
    };
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        if answered.lock().unwrap_or_else(|e| e.into_inner()).len() == targets.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let answered = answered.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for (label, ip) in &targets {
        if answered.contains(&ip.to_string()) {
            r.ok("reachable", format!("{label} answers ICMP echo"));
        } else {
            r.warn(
                "reachable",
                format!("{label} does not answer ICMP echo within 1.5 s (down, unplugged, or echo filtered)"),
                Some(format!("ip route get {ip}; ping {ip}")),
            );
        }
    }
}

/// The ldirectord configurations this directory runs: halo.toml's `[director]`, the files of
/// haresources' `ldirectord[::FILE]` resources, and a plain `ldirectord.cf` beside them (a
/// real server that only keeps the director's file). The second item says whether this
/// node can be the director (it runs one when its group lands here).
fn director_configs(dir: &Path, model: &Model, r: &mut Report) -> (Vec<(String, LdirectordCf)>, bool) {
    let mut out = Vec::new();
    let mut director = false;
    if let Some(d) = &model.director {
        out.push((format!("{} [director]", halo_config::halo_toml::FILE), d.cf.clone()));
        director = true;
    }
    let mut files: Vec<PathBuf> = Vec::new();
    for g in model.haresources.iter().flat_map(|h| &h.groups) {
        for res in &g.resources {
            if res.agent != "ldirectord" && res.agent != "heartbeat:ldirectord" {
                continue;
            }
            director = true;
            let name = res.args.first().cloned().unwrap_or_else(|| crate::director::DEFAULT_CF.to_string());
            let p = Path::new(&name);
            let path = if p.is_absolute() {
                p.to_path_buf()
            } else {
                let candidates = [dir.join(p), dir.join("conf").join(p)];
                candidates.iter().find(|c| c.is_file()).unwrap_or(&candidates[0]).clone()
            };
            if !files.contains(&path) {
                files.push(path);
            }
        }
    }
    let plain = dir.join(crate::director::DEFAULT_CF);
    if plain.is_file() && !files.contains(&plain) {
        files.push(plain);
    }
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) => {
                r.fail(
                    "lvs",
                    format!("cannot read {}: {e}: the director would not start", f.display()),
                    Some(format!("put the ldirectord configuration at {}", f.display())),
                );
                continue;
            }
        };
        match halo_config::parse_ldirectord_cf(&f, &text) {
            Ok((cf, _)) => out.push((f.display().to_string(), cf)),
            Err(e) => r.fail("lvs", format!("{e}"), None),
        }
    }
    (out, director)
}

fn real_is_local(addr: &Host, range_end: Option<&Host>, local: &BTreeSet<IpAddr>) -> bool {
    let Host::Ip(first) = addr else { return false };
    match (first, range_end) {
        (IpAddr::V4(a), Some(Host::Ip(IpAddr::V4(b)))) => {
            let (a, b) = (u32::from(*a), u32::from(*b));
            local.iter().any(|l| matches!(l, IpAddr::V4(x) if (a..=b).contains(&u32::from(*x))))
        }
        _ => local.contains(first),
    }
}

fn check_lvs(dir: &Path, model: &Model, r: &mut Report) {
    let (configs, director) = director_configs(dir, model, r);
    if configs.is_empty() {
        return;
    }
    let local = local_addrs();
    // VIP -> the virtual services that route it here by direct routing.
    let mut dr: Vec<(IpAddr, Vec<String>)> = Vec::new();
    let mut nat = Vec::new();
    for (file, cf) in &configs {
        for v in &cf.virtuals {
            if v.reals.iter().any(|x| x.forward == Forward::Masq) {
                nat.push(format!("{file}: virtual={}", v.addr));
            }
            let VirtualAddr::Ip { ip, .. } = v.addr else { continue };
            let here = v
                .reals
                .iter()
                .any(|x| x.forward == Forward::Gate && real_is_local(&x.addr, x.range_end.as_ref(), &local));
            if here {
                let what = format!("virtual={} of {file}", v.addr);
                match dr.iter_mut().find(|(a, _)| *a == ip) {
                    Some((_, list)) => list.push(what),
                    None => dr.push((ip, vec![what])),
                }
            }
        }
    }
    if !dr.is_empty() {
        let vips: Vec<IpAddr> = dr.iter().map(|(a, _)| *a).collect();
        let state = Path::new(crate::DEFAULT_STATE_DIR).join("lvs-realserver");
        match halo_host::vip::realserver::status(&vips, None, &state) {
            Err(e) => r.fail("lvs-dr", format!("cannot read the real-server settings: {e}"), None),
            Ok(st) => {
                let problems = st.problems();
                for (vip, why) in &dr {
                    // realserver's problems start with the VIP, then ':' or ' is not on'.
                    let (colon, space) = (format!("{vip}:"), format!("{vip} "));
                    let mine: Vec<&String> =
                        problems.iter().filter(|p| p.starts_with(&colon) || p.starts_with(&space)).collect();
                    let what =
                        format!("{vip} (this host is a direct-routing real server of {})", why.join(", "));
                    if mine.is_empty() {
                        r.ok("lvs-dr", format!("{what}: on lo, arp_ignore=1 and arp_announce=2"));
                    } else {
                        let text: Vec<&str> = mine.iter().map(|p| p.as_str()).collect();
                        r.fail(
                            "lvs-dr",
                            format!("{what}: {}", text.join("; ")),
                            Some(format!(
                                "halo lvs realserver start --vip {vip} (the VIP on lo, arp_ignore=1, arp_announce=2)"
                            )),
                        );
                    }
                }
            }
        }
    }
    if director && !nat.is_empty() {
        let fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim().to_string());
        match fwd.as_deref() {
            Ok("1") => r.ok("ip_forward", format!("net.ipv4.ip_forward=1 for the NAT services ({})", nat.join(", "))),
            Ok(v) => r.fail(
                "ip_forward",
                format!(
                    "net.ipv4.ip_forward={v}, but this node can run the director and {} use NAT (masq): replies from the real servers would not be forwarded",
                    nat.join(", ")
                ),
                Some("sysctl -w net.ipv4.ip_forward=1, and net.ipv4.ip_forward = 1 in /etc/sysctl.d/ to keep it".into()),
            ),
            Err(e) => r.warn("ip_forward", format!("cannot read /proc/sys/net/ipv4/ip_forward: {e}"), None),
        }
    }
}
