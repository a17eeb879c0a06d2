//! `halo reload` and SIGHUP: the daemon reads its whole configuration again (ha.cf,
//! authkeys, haresources, halo.toml, and the ldirectord.cf files its director resources
//! use), refuses an invalid result as a whole (the running configuration stays, the error
//! names file and line), and applies only the difference. This module computes that
//! difference ([`diff`], pure: two models in, what changed out) and is the CLI; the daemon
//! (`run.rs`) applies it.
//!
//! Applied live: keepalive, deadtime, warntime, initdead, deadping, max_rexmit_delay,
//! hopfudge, the node list, auto_failback, no_quorum_policy, authkeys, msgfmt, debug,
//! log_badpack, notify hooks, and resource groups and clones: an unchanged group is not
//! touched; a removed or changed one is stopped if it runs here; new and changed ones are
//! placed by the engine as usual. What needs a restart (the links, ping nodes, STONITH
//! devices, log destinations, respawn lines, real-time settings, generation and uuid
//! methods) is reported as such, never silently ignored.
use halo_config::{Model, ResourceGroup};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `halo reload`: prints what changed (or that nothing did); non-zero exit and the reason
/// when the daemon refused the new configuration.
pub fn reload(socket: &Path) -> anyhow::Result<i32> {
    let v = crate::control::request(socket, "reload")?;
    print!("{}", render(&v));
    Ok(0)
}

/// The text of a reload answer (`{"ok", "changes": [...], "restart_needed": [...]}`).
pub fn render(v: &Value) -> String {
    let mut out = String::new();
    let strings = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let changes = strings("changes");
    if changes.is_empty() {
        out.push_str("configuration reloaded: nothing changed\n");
    } else {
        out.push_str("configuration reloaded:\n");
        for c in &changes {
            out.push_str(&format!("  {c}\n"));
        }
    }
    let restart = strings("restart_needed");
    if !restart.is_empty() {
        out.push_str(&format!("restart needed for: {}\n", restart.join("; ")));
    }
    if let Some(p) = v.get("pending").and_then(|p| p.as_str()).filter(|p| !p.is_empty()) {
        out.push_str(&format!("{p}\n"));
    }
    out
}

/// What a reload changes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Diff {
    /// One line per change, for the operator and the log.
    pub changes: Vec<String>,
    /// What was changed but only takes effect at the next start.
    pub restart_needed: Vec<String>,
    /// Keys of groups and clones (the runtime's definitions) added, removed, changed.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// ldirectord.cf files of unchanged director resources whose text changed.
    pub director_files: Vec<PathBuf>,
    /// Anything the engine must hear about (timing, nodes, placement, groups).
    pub engine: bool,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.restart_needed.is_empty()
    }
}

fn ms(v: u64) -> String {
    format!("{v} ms")
}

/// Every runtime definition of a model by key (haresources groups and clones).
pub fn definitions(m: &Model) -> BTreeMap<String, ResourceGroup> {
    let groups = m.haresources.as_ref().map(|h| h.groups.clone()).unwrap_or_default();
    crate::rsc::definitions(&groups, &m.placement.clones).into_iter().collect()
}

/// The same group for the runtime: same preferred node (for haresources) and the same
/// resources, word for word. Its line may differ (a group added above it).
fn same_group(a: &ResourceGroup, b: &ResourceGroup) -> bool {
    a.node == b.node && a.resources == b.resources
}

/// The ldirectord.cf files the director resources (`ldirectord[::FILE]`) of `m` use, as
/// the director looks them up.
pub fn director_files(m: &Model, config_dir: &Path) -> Vec<(String, PathBuf)> {
    let finder = crate::director::Director::new(config_dir, quiet_logger());
    let mut out = Vec::new();
    for (key, g) in definitions(m) {
        for r in g.resources.iter().filter(|r| r.agent == "ldirectord") {
            if let Ok(p) = finder.config_path(&r.args) {
                if !out.iter().any(|(_, q)| *q == p) {
                    out.push((key.clone(), p));
                }
            }
        }
    }
    out
}

fn quiet_logger() -> std::sync::Arc<halo_host::Logger> {
    std::sync::Arc::new(
        halo_host::Logger::new(halo_host::LogConfig {
            logfile: None,
            debugfile: None,
            facility: None,
            ident: "halo".into(),
            node: String::new(),
            debug_level: 0,
            stderr: false,
            syslog_socket: PathBuf::from("/nonexistent"),
        })
        .expect("a logger without destinations cannot fail"),
    )
}

/// Reads and checks the ldirectord.cf files of `m`'s director resources: the first error
/// (file:line) refuses the reload. Returns each file's text.
/// The configurations their `execute` lines name (and theirs) are read too: a change in
/// one alone reconfigures that director.
pub fn read_director_files(m: &Model, config_dir: &Path) -> Result<BTreeMap<PathBuf, String>, String> {
    let finder = crate::director::Director::new(config_dir, quiet_logger());
    let mut texts = BTreeMap::new();
    let mut todo: Vec<(String, PathBuf)> = director_files(m, config_dir);
    while let Some((key, path)) = todo.pop() {
        if texts.contains_key(&path) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("group {key}: cannot read {}: {e}", path.display()))?;
        let (cfg, _) = halo_config::parse_ldirectord_cf(&path, &text).map_err(|e| e.to_string())?;
        for name in &cfg.global.execute {
            let target = finder.config_path(std::slice::from_ref(name))?;
            if !target.is_file() {
                return Err(format!("{}: execute: no configuration {name}", path.display()));
            }
            todo.push((key.clone(), target));
        }
        texts.insert(path, text);
    }
    Ok(texts)
}

/// What changed from `old` to `new`. `old_dir`/`new_dir`: the ldirectord.cf texts of each.
pub fn diff(
    old: &Model,
    new: &Model,
    old_dir: &BTreeMap<PathBuf, String>,
    new_dir: &BTreeMap<PathBuf, String>,
) -> Diff {
    let mut d = Diff::default();
    let (a, b) = (&old.ha_cf, &new.ha_cf);
    let live = |d: &mut Diff, name: &str, x: String, y: String, engine: bool| {
        if x != y {
            d.changes.push(format!("{name}: {x} -> {y}"));
            d.engine |= engine;
        }
    };
    live(&mut d, "keepalive", ms(a.keepalive_ms), ms(b.keepalive_ms), true);
    live(&mut d, "deadtime", ms(a.deadtime_ms), ms(b.deadtime_ms), true);
    live(&mut d, "warntime", ms(a.warntime_ms), ms(b.warntime_ms), true);
    live(&mut d, "initdead", ms(a.initdead_ms), ms(b.initdead_ms), true);
    live(&mut d, "deadping", ms(a.deadping_ms), ms(b.deadping_ms), true);
    live(&mut d, "max_rexmit_delay", ms(a.max_rexmit_delay_ms), ms(b.max_rexmit_delay_ms), true);
    live(&mut d, "hopfudge", a.hopfudge.to_string(), b.hopfudge.to_string(), true);
    live(&mut d, "nodes", a.nodes.join(" "), b.nodes.join(" "), true);
    live(&mut d, "auto_failback", format!("{:?}", a.auto_failback), format!("{:?}", b.auto_failback), true);
    live(&mut d, "no_quorum_policy", a.no_quorum_policy.clone(), b.no_quorum_policy.clone(), true);
    live(&mut d, "msgfmt", format!("{:?}", a.msgfmt), format!("{:?}", b.msgfmt), false);
    live(&mut d, "debug", a.debug.to_string(), b.debug.to_string(), false);
    live(&mut d, "log_badpack", a.log_badpack.to_string(), b.log_badpack.to_string(), false);
    let hooks = |c: &halo_config::HaCf| c.notify.iter().map(|n| n.command.clone()).collect::<Vec<_>>();
    if hooks(a) != hooks(b) {
        d.changes.push(format!("notify: {} hook(s) -> {}", a.notify.len(), b.notify.len()));
    }
    if old.authkeys != new.authkeys {
        let line = if old.authkeys.active != new.authkeys.active {
            format!(
                "authkeys: new keys, signing with key {} (was {}); peers must know it",
                new.authkeys.active, old.authkeys.active
            )
        } else {
            format!("authkeys: new keys, signing with key {}", new.authkeys.active)
        };
        d.changes.push(line);
    }
    // Placement of halo.toml (preferred nodes, names, constraints): the engine re-places.
    if old.placement.groups != new.placement.groups
        || old.placement.order != new.placement.order
        || old.placement.colocation != new.placement.colocation
        || old.placement.clones.iter().map(|c| (&c.name, &c.nodes)).ne(new
            .placement
            .clones
            .iter()
            .map(|c| (&c.name, &c.nodes)))
    {
        d.changes.push("placement (preferred nodes, order, colocation) changed".into());
        d.engine = true;
    }

    let mut restart = |what: &str, changed: bool| {
        if changed {
            d.restart_needed.push(what.to_string());
        }
    };
    restart("udpport", a.udpport != b.udpport || a.latched_ports != b.latched_ports);
    restart("media (bcast/mcast/ucast/serial links)", a.media != b.media);
    restart("baud", a.baud != b.baud);
    restart("ping nodes", a.ping_nodes != b.ping_nodes);
    restart("stonith/stonith_host", a.stonith != b.stonith || a.stonith_host != b.stonith_host);
    restart(
        "logfile/debugfile/logfacility",
        a.logfile != b.logfile || a.debugfile != b.debugfile || a.logfacility != b.logfacility,
    );
    restart("respawn", a.respawn != b.respawn);
    restart("realtime/rtprio", a.realtime != b.realtime || a.rtprio != b.rtprio);
    restart("hbgenmethod/uuidfrom", a.hbgenmethod != b.hbgenmethod || a.uuidfrom != b.uuidfrom);
    restart("halo.toml [director]", old.director != new.director);

    let (og, ng) = (definitions(old), definitions(new));
    for (k, g) in &ng {
        match og.get(k) {
            None => {
                d.changes.push(format!("group {k}: added"));
                d.added.push(k.clone());
            }
            Some(o) if !same_group(o, g) => {
                d.changes.push(format!("group {k}: changed (restarted where it runs)"));
                d.changed.push(k.clone());
            }
            Some(_) => {}
        }
    }
    for k in og.keys().filter(|k| !ng.contains_key(*k)) {
        d.changes.push(format!("group {k}: removed (stopped where it runs)"));
        d.removed.push(k.clone());
    }
    d.engine |= !(d.added.is_empty() && d.removed.is_empty() && d.changed.is_empty());
    // A director whose group did not change gets its new ldirectord.cf applied in place.
    for (path, text) in new_dir {
        if old_dir.get(path).is_some_and(|t| t != text) {
            d.changes.push(format!("{}: changed (director reconfigured)", path.display()));
            d.director_files.push(path.clone());
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(dir: &Path, ha_cf: &str, haresources: &str) -> Model {
        std::fs::create_dir_all(dir).expect("dir");
        std::fs::write(dir.join("ha.cf"), ha_cf).expect("ha.cf");
        let k = dir.join("authkeys");
        std::fs::write(&k, "auth 1\n1 sha1 secret\n").expect("authkeys");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(dir.join("haresources"), haresources).expect("haresources");
        halo_config::load_dir(dir).expect("valid").model
    }

    #[test]
    fn diff_names_what_changed_and_what_needs_a_restart() {
        let dir = std::env::temp_dir().join(format!("halo-reload-diff-{}", std::process::id()));
        let base = "node n1 n2\nbcast eth0\nkeepalive 1\ndeadtime 10\n";
        let old = model(&dir.join("a"), base, "n1 10.0.0.10 web\nn2 10.0.0.20\n");
        let same = model(&dir.join("b"), base, "n1 10.0.0.10 web\nn2 10.0.0.20\n");
        let none = BTreeMap::new();
        assert!(diff(&old, &same, &none, &none).is_empty());

        let new = model(
            &dir.join("c"),
            "node n1 n2\nbcast eth1\nkeepalive 500ms\ndeadtime 10\nudpport 700\n",
            "n2 10.0.0.30\nn1 10.0.0.10 web2\n",
        );
        let d = diff(&old, &new, &none, &none);
        assert_eq!(d.added, ["10.0.0.30"]);
        assert_eq!(d.removed, ["10.0.0.20"]);
        assert_eq!(d.changed, ["10.0.0.10"]);
        assert!(d.engine);
        assert!(d.changes.contains(&"keepalive: 1000 ms -> 500 ms".to_string()), "{:?}", d.changes);
        assert!(d.restart_needed.iter().any(|r| r == "udpport"), "{:?}", d.restart_needed);
        assert!(d.restart_needed.iter().any(|r| r.starts_with("media")), "{:?}", d.restart_needed);
        let text = render(&serde_json::json!({
            "ok": "reloaded", "changes": d.changes, "restart_needed": d.restart_needed
        }));
        assert!(text.contains("  group 10.0.0.30: added\n"), "{text}");
        assert!(text.contains("restart needed for: udpport; media"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
