//! `halo status [--json]`: a one-shot view of the cluster in the spirit of `crm_mon -1`
//! (seed 004): the stack, how many nodes and groups are configured, who is online, every
//! group with each of its resources and where it runs, the director's virtual services and
//! real servers (weight, health), failed actions, heartbeat links.
//! The text is rendered from the same JSON `--json` prints, so scripts and people see one
//! truth, and the view is tested from JSON fixtures without a daemon.
use serde_json::{json, Value};
use std::path::Path;

pub fn status(socket: &Path, json: bool) -> anyhow::Result<i32> {
    let mut v = crate::control::request(socket, "status")?;
    // The director's state is a second request: the daemon answers `status` on its
    // heartbeat thread and `lvs` (which reads the data plane's counters) on another.
    if !director_groups(&v).is_empty() {
        let lvs = crate::control::request(socket, "lvs").map_err(|e| format!("{e:#}"));
        add_director(&mut v, lvs.as_ref().map_err(String::clone));
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    print!("{}", render(&v));
    Ok(0)
}

/// An operator command (`standby all`, `takeover local`, `cleanup KEY`): prints the
/// daemon's answer.
pub fn operator(socket: &Path, cmd: &str) -> anyhow::Result<i32> {
    let v = crate::control::request(socket, cmd)?;
    println!("{}", v.get("ok").and_then(|o| o.as_str()).unwrap_or("done"));
    Ok(0)
}

/// Adds `resources: [{name, agent, args, state, nodes, failed}]` to every entry of
/// `resources.groups` of a status JSON, from haresources. The engine knows groups, not
/// resources: a resource runs where its group runs; `failed` marks the one the group's
/// `last_error` names.
pub fn add_group_resources(v: &mut Value, groups: &[halo_config::ResourceGroup]) {
    let me = v.get("node").and_then(|n| n.as_str()).unwrap_or("").to_string();
    let Some(list) = v.pointer_mut("/resources/groups").and_then(|g| g.as_array_mut()) else { return };
    for g in list.iter_mut() {
        let key = g.get("key").and_then(|k| k.as_str()).unwrap_or("");
        let Some(cfg) = groups.iter().find(|c| c.key() == key) else { continue };
        let holders: Vec<String> = strings(g.get("holders"));
        let here = g.get("state").and_then(|s| s.as_str()).unwrap_or("stopped");
        // Held by others, or by us unless we are stopping it.
        let only_us_stopping = here == "stopping" && holders == [me.as_str()];
        let (state, nodes) = if !holders.is_empty() && !only_us_stopping {
            ("started", holders)
        } else {
            match here {
                "starting" => ("starting", vec![me.clone()]),
                "stopping" => ("stopping", vec![me.clone()]),
                "stop_failed" => ("failed", vec![me.clone()]),
                _ => ("stopped", Vec::new()),
            }
        };
        let error = g.get("last_error").and_then(|e| e.as_str()).unwrap_or("").to_string();
        let resources: Vec<Value> = cfg
            .resources
            .iter()
            .map(|r| {
                let failed = !error.is_empty()
                    && (error.contains(&format!("start {}:", r.raw))
                        || error.contains(&format!("stop {}:", r.raw)));
                json!({
                    "name": r.raw,
                    "agent": r.agent,
                    "args": r.args,
                    "state": state,
                    "nodes": nodes,
                    "failed": failed,
                })
            })
            .collect();
        g["resources"] = Value::Array(resources);
    }
}

/// Adds what the heartbeats say about agreement between the nodes: `config_digest` (ours)
/// and `config_drift` (live peers running another configuration) at the top, and
/// `config_digest` and `clock_skew_ms` (its clock minus ours) to every entry of `nodes`.
pub fn add_consistency(v: &mut Value, c: &halo_core::status::ConsistencyStatus) {
    v["config_digest"] = json!(c.config_digest);
    v["config_drift"] = json!(c.config_drift);
    let Some(nodes) = v.get_mut("nodes").and_then(|n| n.as_array_mut()) else { return };
    for n in nodes.iter_mut() {
        let name = n.get("name").and_then(|x| x.as_str()).unwrap_or("");
        if let Some(e) = c.nodes.iter().find(|e| e.name == name) {
            n["config_digest"] = json!(e.config_digest);
            n["clock_skew_ms"] = json!(e.clock_skew_ms);
        }
    }
}

/// A clock this far from ours is worth a line in `halo status` and a warning in
/// `halo check` (seed 002 runs NTP on every node; NTP keeps them within milliseconds).
pub const CLOCK_SKEW_WARN_MS: i64 = 1000;

/// `Config: differs on n2 ...` and `Clock: n2 is 3.2 s ahead ...`, when there is something
/// to say.
fn consistency_lines(v: &Value) -> String {
    let mut out = String::new();
    let nodes: Vec<&Value> = v.get("nodes").and_then(|n| n.as_array()).into_iter().flatten().collect();
    let me = s(v, "node");
    let drift = strings(v.get("config_drift"));
    if !drift.is_empty() {
        let ours = v.get("config_digest").and_then(|d| d.as_str()).unwrap_or("?");
        let theirs: Vec<String> = drift
            .iter()
            .map(|d| {
                let digest = nodes
                    .iter()
                    .find(|n| s(n, "name") == d)
                    .and_then(|n| n.get("config_digest"))
                    .and_then(|x| x.as_str())
                    .unwrap_or("?");
                format!("{d} {digest}")
            })
            .collect();
        out.push_str(&format!(
            "Config: differs on {} (digest {me} {ours}, {}): the nodes do not run the same configuration\n",
            drift.join(" "),
            theirs.join(", ")
        ));
    }
    for n in &nodes {
        let Some(ms) = n.get("clock_skew_ms").and_then(|x| x.as_i64()) else { continue };
        if ms.abs() >= CLOCK_SKEW_WARN_MS {
            let side = if ms > 0 { "ahead of" } else { "behind" };
            out.push_str(&format!(
                "Clock: {} is {:.1} s {side} {me} (keep the clocks in step: NTP on every node)\n",
                s(n, "name"),
                ms.abs() as f64 / 1000.0
            ));
        }
    }
    out
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(|h| h.as_array())
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect()
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("?")
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn bracket(names: &[&str]) -> String {
    if names.is_empty() {
        return "[ ]".to_string();
    }
    format!("[ {} ]", names.join(" "))
}

/// The text view (what `halo status` prints).
pub fn render(v: &Value) -> String {
    let me = s(v, "node");
    let nodes: Vec<&Value> = v.get("nodes").and_then(|n| n.as_array()).into_iter().flatten().collect();
    let normal: Vec<&Value> = nodes.iter().copied().filter(|n| s(n, "type") != "ping").collect();
    let ping: Vec<&Value> = nodes.iter().copied().filter(|n| s(n, "type") == "ping").collect();
    let rsc = v.get("resources").filter(|r| r.get("managed").and_then(|m| m.as_bool()) == Some(true));
    let groups: Vec<&Value> =
        rsc.and_then(|r| r.get("groups")).and_then(|g| g.as_array()).into_iter().flatten().collect();
    let n_resources: usize =
        groups.iter().map(|g| g.get("resources").and_then(|r| r.as_array()).map_or(1, |r| r.len())).sum();

    let mut out = String::from("Stack: halo (Heartbeat 3 compatible)\n");
    let comm = if v.get("comm_up").and_then(|c| c.as_bool()) == Some(true) {
        "communication up"
    } else {
        "joining the cluster"
    };
    out.push_str(&format!(
        "Local node: {me} ({}, generation {}) - {comm}\n",
        s(v, "state"),
        v.get("generation").and_then(|g| g.as_u64()).unwrap_or(0)
    ));
    if let Some(q) = v.get("quorum").filter(|q| q.is_object()) {
        let have = q.get("have").and_then(|h| h.as_bool()) == Some(true);
        let votes = q.get("votes").and_then(|x| x.as_u64()).unwrap_or(0);
        let expected = q.get("expected").and_then(|x| x.as_u64()).unwrap_or(0);
        let tie = match q.get("tie_breaker").and_then(|t| t.as_bool()) {
            Some(true) => ", ping tie-breaker reached",
            Some(false) => ", ping tie-breaker lost",
            None => "",
        };
        out.push_str(&format!(
            "Quorum: {} ({votes} of {expected} votes{tie}; no_quorum_policy {})\n",
            if have { "partition with quorum" } else { "partition WITHOUT quorum" },
            s(q, "policy")
        ));
    }
    // Fences awaited: no group starts anywhere until they land (or an operator confirms).
    let fences = v.pointer("/resources/fencing").and_then(|f| f.as_array()).cloned().unwrap_or_default();
    for f in &fences {
        let node = s(f, "node");
        let by = f.get("fencer").and_then(|x| x.as_str()).unwrap_or("no node with a STONITH device");
        let line = match s(f, "state") {
            "failed" => format!(
                "FENCING of {node} FAILED (attempt {}): {}; retrying; its groups are not taken over\n",
                f.get("attempts").and_then(|x| x.as_u64()).unwrap_or(0),
                f.get("last_error").and_then(|x| x.as_str()).unwrap_or("?")
            ),
            "requested" => format!("Fencing {node}: under way here; its groups wait for it\n"),
            "no_quorum" => {
                format!("Fencing {node}: held back, this partition has no quorum; its groups wait\n")
            }
            _ => format!("Fencing {node}: waiting for {by}; its groups wait for it\n"),
        };
        out.push_str(&line);
    }
    out.push('\n');
    let mut conf = plural(normal.len(), "node configured", "nodes configured");
    if !ping.is_empty() {
        conf.push_str(&format!(", {}", plural(ping.len(), "ping node", "ping nodes")));
    }
    out.push_str(&conf);
    out.push('\n');
    match rsc {
        Some(r) => out.push_str(&format!(
            "{} ({}), auto_failback {}\n",
            plural(groups.len(), "resource group configured", "resource groups configured"),
            plural(n_resources, "resource", "resources"),
            s(r, "auto_failback")
        )),
        None => out.push_str("no resource groups configured (no haresources)\n"),
    }
    out.push('\n');

    let up = |n: &Value| matches!(s(n, "state"), "active" | "up" | "ping");
    let online: Vec<&str> = normal.iter().filter(|n| up(n)).map(|n| s(n, "name")).collect();
    let joining: Vec<&str> =
        normal.iter().filter(|n| s(n, "state") == "init").map(|n| s(n, "name")).collect();
    let offline: Vec<&str> =
        normal.iter().filter(|n| !up(n) && s(n, "state") != "init").map(|n| s(n, "name")).collect();
    if let Some(sb) = rsc.map(|r| s(r, "standby")).filter(|sb| *sb != "none" && *sb != "?") {
        out.push_str(&format!("Node {me}: standby ({sb})\n"));
    }
    out.push_str(&format!("Online: {}\n", bracket(&online)));
    if !joining.is_empty() {
        out.push_str(&format!("Joining: {}\n", bracket(&joining)));
    }
    if !offline.is_empty() {
        out.push_str(&format!("OFFLINE: {}\n", bracket(&offline)));
    }
    if !ping.is_empty() {
        let reached: Vec<&str> = ping.iter().filter(|n| up(n)).map(|n| s(n, "name")).collect();
        let lost: Vec<&str> = ping.iter().filter(|n| !up(n)).map(|n| s(n, "name")).collect();
        out.push_str(&format!("Ping nodes reached: {}\n", bracket(&reached)));
        if !lost.is_empty() {
            out.push_str(&format!("Ping nodes OFFLINE: {}\n", bracket(&lost)));
        }
    }

    out.push_str(&consistency_lines(v));

    if !groups.is_empty() {
        out.push_str("\nFull list of resources:\n\n");
        for g in &groups {
            let desired = match g.get("desired").and_then(|d| d.as_str()) {
                Some(d) => d.to_string(),
                None => "nowhere".to_string(),
            };
            out.push_str(&format!(
                " Resource Group: {} (prefers {}, belongs on {desired})\n",
                s(g, "key"),
                s(g, "node")
            ));
            match g.get("resources").and_then(|r| r.as_array()) {
                Some(list) => {
                    for r in list {
                        out.push_str(&format!(
                            "     {}\t({}):\t{}\n",
                            s(r, "name"),
                            s(r, "agent"),
                            where_line(s(r, "state"), &strings(r.get("nodes")), r, me)
                        ));
                    }
                }
                None => {
                    let holders = strings(g.get("holders"));
                    let state = if holders.is_empty() { "stopped" } else { "started" };
                    out.push_str(&format!("     {}:\t{}\n", s(g, "key"), where_line(state, &holders, g, me)));
                }
            }
        }
    }
    let clones: Vec<&Value> =
        rsc.and_then(|r| r.get("clones")).and_then(|c| c.as_array()).into_iter().flatten().collect();
    for c in &clones {
        let running = strings(c.get("running_on"));
        let failed = strings(c.get("failed_on"));
        out.push_str(&format!(" Clone Set: {}\n", s(c, "name")));
        out.push_str(&format!("     Started: [ {} ]\n", running.join(" ")));
        if !failed.is_empty() {
            out.push_str(&format!("     FAILED: [ {} ]\n", failed.join(" ")));
        }
    }

    out.push_str(&render_director(v));

    let failed: Vec<&&Value> =
        groups.iter().filter(|g| g.get("failed").and_then(|f| f.as_bool()) == Some(true)).collect();
    if !failed.is_empty() {
        out.push_str("\nFailed Resource Actions:\n");
        for g in failed {
            let what = g
                .get("resources")
                .and_then(|r| r.as_array())
                .and_then(|r| r.iter().find(|r| r.get("failed").and_then(|f| f.as_bool()) == Some(true)))
                .map(|r| s(r, "name"))
                .unwrap_or_else(|| s(g, "key"));
            let err = g.get("last_error").and_then(|e| e.as_str()).unwrap_or("failed");
            out.push_str(&format!(
                "* {what} (group {}) on {me}: {err} - blocked here until `halo cleanup {}`\n",
                s(g, "key"),
                s(g, "key")
            ));
        }
    }

    out.push_str(&render_split_brains(v));

    let with_links: Vec<&&Value> = nodes
        .iter()
        .filter(|n| n.get("links").and_then(|l| l.as_array()).is_some_and(|l| !l.is_empty()))
        .collect();
    if !with_links.is_empty() {
        out.push_str("\nHeartbeat links:\n");
        for n in with_links {
            let links: Vec<String> = n
                .get("links")
                .and_then(|l| l.as_array())
                .into_iter()
                .flatten()
                .map(|l| format!("{} {}", s(l, "name"), s(l, "state")))
                .collect();
            out.push_str(&format!(" * {}: {}\n", s(n, "name"), links.join(", ")));
        }
    }
    if let Some(d) = v.get("dropped").and_then(|d| d.as_object()) {
        let parts: Vec<String> = d
            .iter()
            .filter(|(k, c)| *k != "duplicate" && *k != "own" && c.as_u64() != Some(0))
            .map(|(k, c)| format!("{k}={c}"))
            .collect();
        if !parts.is_empty() {
            out.push_str(&format!("\nDropped packets: {}\n", parts.join(" ")));
        }
    }
    out
}

/// `Started n1`, `Started [ n1 n2 ]` (held twice: a healed partition), `Stopped`, ...
fn where_line(state: &str, nodes: &[String], entry: &Value, me: &str) -> String {
    let at = match nodes {
        [] => String::new(),
        [one] => format!(" {one}"),
        many => format!(" [ {} ]", many.join(" ")),
    };
    let failed = if entry.get("failed").and_then(|f| f.as_bool()) == Some(true) {
        format!(" (FAILED on {me})")
    } else {
        String::new()
    };
    match state {
        "started" => format!("Started{at}{failed}"),
        "starting" => format!("Starting{at}{failed}"),
        "stopping" => format!("Stopping{at}{failed}"),
        "failed" => format!("FAILED{at} (stop failed)"),
        _ => format!("Stopped{failed}"),
    }
}

// ------------------------------------------------------------------ split-brain history
//
// The engine records this run's episodes on its own clock; the daemon shows them with
// wall-clock times (Unix ms) after those of earlier runs, which it keeps in the state
// directory (`split_brains.json`) so that a restart does not forget them.

/// The history file in the state directory.
pub const SPLIT_BRAIN_FILE: &str = "split_brains.json";

/// One episode of this run as `status --json` shows it (`split_brains` entries): engine
/// times turned into Unix ms with the two clocks read now.
pub fn split_brain_json(e: &halo_core::status::SplitBrain, now_ms: u64, unix_now_ms: u64) -> Value {
    split_brain_json_anchored(e, now_ms, (now_ms, unix_now_ms))
}

/// [`split_brain_json`] converting engine times with a fixed `anchor` (engine ms, Unix ms
/// read together once): the same episode then always gets the same wall-clock times, in
/// `status` and in the file, however far apart the two clocks are read later.
fn split_brain_json_anchored(e: &halo_core::status::SplitBrain, now_ms: u64, anchor: (u64, u64)) -> Value {
    let unix = |t: u64| (anchor.1 as i128 + t as i128 - anchor.0 as i128).max(0) as u64;
    let keep = |v: &[String]| v.to_vec();
    json!({
        "id": e.id,
        "detected": unix(e.detected_ms),
        "resolved": e.resolved_ms.map(unix),
        "duration_ms": e.resolved_ms.map(|r| r.saturating_sub(e.detected_ms)),
        "ongoing_ms": e.resolved_ms.is_none().then(|| now_ms.saturating_sub(e.detected_ms)),
        "peers": e.peers,
        "groups": e.keys(),
        "kept_by": e.kept_by(),
        "released_by": e.released_by(),
        "outcome": e.groups.iter().map(|g| json!({
            "group": g.key,
            "held_by": keep(&g.held_by),
            "kept_by": g.kept_by,
            "released_by": keep(&g.released_by),
            "lost": keep(&g.lost),
        })).collect::<Vec<_>>(),
        "this_run": true,
    })
}

/// The daemon's split-brain history: earlier runs' episodes (from the state directory) and
/// this run's (from the engine), the last [`halo_core::status::MAX_SPLIT_BRAINS`] of them.
pub struct SplitBrainHistory {
    earlier: Vec<Value>,
    /// Engine ms and Unix ms as first read together: every conversion of this run uses it.
    anchor: std::sync::OnceLock<(u64, u64)>,
    /// The engine's change count last written out.
    saved: u64,
    /// The writer thread (None: nothing to persist to).
    writer: Option<std::sync::mpsc::Sender<Vec<u8>>>,
}

impl SplitBrainHistory {
    /// Reads `<state_dir>/split_brains.json` (absent: no history). A file that cannot be
    /// read is set aside as `split_brains.json.bad` and named in the warning returned.
    /// `on_error` hears of every failure to write the file later.
    pub fn load(
        state_dir: &Path,
        on_error: impl Fn(String) + Send + 'static,
    ) -> (SplitBrainHistory, Option<String>) {
        let path = state_dir.join(SPLIT_BRAIN_FILE);
        let (earlier, warning) = match std::fs::read_to_string(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
            Err(e) => {
                (Vec::new(), Some(format!("{}: {e}; split-brain history starts empty", path.display())))
            }
            Ok(text) => match parse_history(&text) {
                Ok(list) => (list, None),
                Err(why) => {
                    let bad = path.with_extension("json.bad");
                    let _ = std::fs::rename(&path, &bad);
                    (
                        Vec::new(),
                        Some(format!(
                            "{}: {why}; set aside as {}, split-brain history starts empty",
                            path.display(),
                            bad.display()
                        )),
                    )
                }
            },
        };
        let writer = spawn_writer(path, on_error);
        (SplitBrainHistory { earlier, anchor: Default::default(), saved: 0, writer }, warning)
    }

    /// A history that is never persisted (tests, views).
    pub fn in_memory(earlier: Vec<Value>) -> SplitBrainHistory {
        SplitBrainHistory { earlier, anchor: Default::default(), saved: 0, writer: None }
    }

    /// `split_brains` of `status --json`: oldest first, the last 20.
    pub fn json(&self, sb: &halo_core::status::SplitBrains, now_ms: u64, unix_now_ms: u64) -> Value {
        let mut all: Vec<Value> = self.earlier.clone();
        let anchor = *self.anchor.get_or_init(|| (now_ms, unix_now_ms));
        all.extend(sb.episodes().map(|e| split_brain_json_anchored(e, now_ms, anchor)));
        let skip = all.len().saturating_sub(halo_core::status::MAX_SPLIT_BRAINS);
        Value::Array(all.split_off(skip))
    }

    /// Whether the engine's episodes changed since they were last persisted.
    pub fn changed(&self, sb: &halo_core::status::SplitBrains) -> bool {
        sb.changes() != self.saved
    }

    /// Hands the history to the writer thread when the engine's changed since the last
    /// time (the heartbeat thread never touches the disk).
    pub fn persist(&mut self, sb: &halo_core::status::SplitBrains, now_ms: u64, unix_now_ms: u64) {
        if !self.changed(sb) {
            return;
        }
        self.saved = sb.changes();
        let Some(w) = &self.writer else { return };
        let doc = json!({ "version": 1, "split_brains": self.json(sb, now_ms, unix_now_ms) });
        let _ = w.send(serde_json::to_vec_pretty(&doc).unwrap_or_default());
    }
}

/// The episodes of a history file; those of this run become `this_run: false`.
fn parse_history(text: &str) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let list = v
        .get("split_brains")
        .and_then(|l| l.as_array())
        .ok_or("expected an object with a \"split_brains\" list")?;
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        if !e.get("detected").is_some_and(|d| d.is_u64()) || !e.get("groups").is_some_and(|g| g.is_array()) {
            return Err(format!("entry {i}: expected \"detected\" (Unix ms) and a \"groups\" list"));
        }
        let mut e = e.clone();
        e["this_run"] = Value::Bool(false);
        out.push(e);
    }
    Ok(out)
}

/// A thread writing each history it is handed (only the newest when several wait):
/// temporary file, fsync, rename.
fn spawn_writer(
    path: std::path::PathBuf,
    on_error: impl Fn(String) + Send + 'static,
) -> Option<std::sync::mpsc::Sender<Vec<u8>>> {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let spawned = std::thread::Builder::new().name("halo-splitbrain".into()).spawn(move || {
        // Threads inherit the heartbeat thread's real-time priority: not for disk writes.
        halo_host::rt::set_normal();
        while let Ok(mut bytes) = rx.recv() {
            while let Ok(newer) = rx.try_recv() {
                bytes = newer;
            }
            let tmp = path.with_extension("json.tmp");
            let written = std::fs::File::create(&tmp).and_then(|mut f| {
                std::io::Write::write_all(&mut f, &bytes)?;
                f.sync_all()
            });
            if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, &path)) {
                let _ = std::fs::remove_file(&tmp);
                on_error(format!("cannot write the split-brain history {}: {e}", path.display()));
            }
        }
    });
    spawned.ok().map(|_| tx)
}

/// `2026-12-01 20:41:03.123 UTC` from Unix ms.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let tod = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03} UTC",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        ms % 1000
    )
}

/// The "Split-brain history:" section of the text view (empty without episodes).
fn render_split_brains(v: &Value) -> String {
    let list: Vec<&Value> = v.get("split_brains").and_then(|l| l.as_array()).into_iter().flatten().collect();
    if list.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nSplit-brain history:\n");
    for e in list {
        let when = e.get("detected").and_then(|d| d.as_u64()).map_or_else(|| "?".to_string(), utc);
        let peers = strings(e.get("peers"));
        let earlier = e.get("this_run").and_then(|t| t.as_bool()) == Some(false);
        let end = match (
            e.get("duration_ms").and_then(|d| d.as_u64()),
            e.get("ongoing_ms").and_then(|d| d.as_u64()),
        ) {
            (Some(d), _) => format!("resolved after {d} ms"),
            (None, Some(o)) if !earlier => format!("ONGOING for {o} ms"),
            _ => "not resolved when halo stopped".to_string(),
        };
        out.push_str(&format!(
            "* {when} with {}: {end}\n",
            bracket(&peers.iter().map(|p| p.as_str()).collect::<Vec<_>>())
        ));
        for g in e.get("outcome").and_then(|o| o.as_array()).into_iter().flatten() {
            let held = strings(g.get("held_by"));
            let mut line = format!(
                "    {}: held by {}",
                s(g, "group"),
                bracket(&held.iter().map(|h| h.as_str()).collect::<Vec<_>>())
            );
            if let Some(k) = g.get("kept_by").and_then(|k| k.as_str()) {
                line.push_str(&format!(", kept by {k}"));
            }
            let released = strings(g.get("released_by"));
            if !released.is_empty() {
                line.push_str(&format!(", given up by {}", released.join(" ")));
            }
            let lost = strings(g.get("lost"));
            if !lost.is_empty() {
                line.push_str(&format!(", {} out of sight before letting go", lost.join(" ")));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

// ------------------------------------------------------------------------------ director
//
// `halo status` asks the daemon `lvs` too when a group runs a director (`ldirectord`,
// `ldirectord::FILE`) and shows it as `director` in the JSON and a "Director:" section in
// the text: the virtual services run here with every real server's weight in the table and
// health, and for a director group held elsewhere only where it runs (its real servers are
// known on that node, not here).

/// The director words of the status's groups (after [`add_group_resources`]):
/// (group key, resource word, state, nodes).
fn director_groups(v: &Value) -> Vec<(String, String, String, Vec<String>)> {
    v.pointer("/resources/groups")
        .and_then(|g| g.as_array())
        .into_iter()
        .flatten()
        .flat_map(|g| {
            g.get("resources").and_then(|r| r.as_array()).into_iter().flatten().filter_map(move |r| {
                let agent = s(r, "agent");
                (agent == "ldirectord" || agent == "heartbeat:ldirectord").then(|| {
                    (
                        s(g, "key").to_string(),
                        s(r, "name").to_string(),
                        s(r, "state").to_string(),
                        strings(r.get("nodes")),
                    )
                })
            })
        })
        .collect()
}

/// Adds `director` to a status JSON from the daemon's `lvs` answer (or why it could not be
/// had): `here` (a director runs on this node), `virtual_services` (those running here, each
/// with its `real_servers`), `groups` (every director group with where it runs) and `error`.
pub fn add_director(v: &mut Value, lvs: Result<&Value, String>) {
    let me = s(v, "node").to_string();
    let groups: Vec<Value> = director_groups(v)
        .into_iter()
        .map(|(group, resource, state, nodes)| {
            json!({ "group": group, "resource": resource, "state": state, "here": nodes.contains(&me), "nodes": nodes })
        })
        .collect();
    let (services, error) = match lvs {
        Ok(l) => (director_services(l, &me), None),
        Err(e) => (Vec::new(), Some(e)),
    };
    v["director"] = json!({
        "here": !services.is_empty(),
        "virtual_services": services,
        "groups": groups,
        "error": error,
    });
}

/// `tcp:10.0.0.100:80` (ldirectord's id) as (`TCP`, `10.0.0.100:80`).
fn service_address(id: &str) -> (String, String) {
    match id.split_once(':') {
        Some((p, a)) if matches!(p, "tcp" | "udp" | "sctp") => (p.to_uppercase(), a.to_string()),
        _ => (String::new(), id.to_string()),
    }
}

/// The virtual services of the `lvs` answer's directors, as `director.virtual_services`.
fn director_services(lvs: &Value, me: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for d in lvs.get("directors").and_then(|d| d.as_array()).into_iter().flatten() {
        for svc in d.get("services").and_then(|x| x.as_array()).into_iter().flatten() {
            let (protocol, address) = service_address(s(svc, "id"));
            let forward = svc.get("forward").cloned().unwrap_or(Value::Null);
            let reals: Vec<Value> = svc
                .get("reals")
                .and_then(|x| x.as_array())
                .into_iter()
                .flatten()
                .map(|r| {
                    let status = r.get("health").and_then(|h| h.as_str()).unwrap_or("");
                    let maintenance = r.get("maintenance").filter(|m| !m.is_null()).cloned();
                    let last_check = r.get("last_check").and_then(|c| c.as_str());
                    let health = if maintenance.is_some() {
                        "maintenance"
                    } else if status.starts_with("up") {
                        "up"
                    } else {
                        "down"
                    };
                    let reason = match (health, &maintenance) {
                        ("maintenance", Some(m)) => {
                            Some(format!("maintenance file {}", m.as_str().unwrap_or("?")))
                        }
                        ("down", _) if status.contains("not checked yet") => {
                            Some("not checked yet".to_string())
                        }
                        ("down", _) => last_check.map(str::to_string),
                        _ => None,
                    };
                    let weight = r.get("in_table").filter(|w| w.is_u64()).cloned();
                    json!({
                        "address": r.get("addr"),
                        "forward": forward,
                        "weight": weight,
                        "in_table": weight.is_some(),
                        "configured_weight": r.get("weight"),
                        "health": health,
                        "status": status,
                        "reason": reason,
                        "maintenance": maintenance,
                        "check": r.get("check"),
                        "last_check": last_check,
                        "checks": r.get("checks"),
                        "successes": r.get("successes"),
                        "failures": r.get("failures"),
                        "counters": r.get("counters"),
                    })
                })
                .collect();
            out.push(json!({
                "id": svc.get("id"),
                "protocol": protocol,
                "address": address,
                "scheduler": svc.get("scheduler"),
                "forward": forward,
                "quiescent": svc.get("quiescent"),
                "fallback": svc.get("fallback"),
                "fallback_active": svc.get("fallback_active"),
                "config": d.get("config"),
                "group": d.get("group"),
                "node": me,
                "running": d.get("running"),
                "daemon_status": d.get("daemon_status"),
                "real_servers": reals,
            }));
        }
    }
    out
}

/// The "Director:" section of the text view (empty when no group runs a director).
fn render_director(v: &Value) -> String {
    let Some(d) = v.get("director").filter(|d| d.is_object()) else { return String::new() };
    let mut out = String::from("\nDirector:\n");
    if let Some(e) = d.get("error").and_then(|e| e.as_str()) {
        out.push_str(&format!(" cannot read the director's state: {e}\n"));
    }
    let services: Vec<&Value> =
        d.get("virtual_services").and_then(|x| x.as_array()).into_iter().flatten().collect();
    for svc in &services {
        let config = svc.get("config").and_then(|c| c.as_str()).unwrap_or("?");
        let file = Path::new(config).file_name().map_or(config.into(), |f| f.to_string_lossy());
        let mut flags = String::new();
        if svc.get("quiescent").and_then(|q| q.as_bool()) == Some(true) {
            flags.push_str(" quiescent");
        }
        let mut state = String::new();
        if svc.get("running").and_then(|r| r.as_bool()) == Some(false) {
            state.push_str(" NOT RUNNING");
        } else if let Some(ds) = svc.get("daemon_status").and_then(|x| x.as_str()).filter(|x| *x != "running")
        {
            state.push_str(&format!(" {ds}"));
        }
        out.push_str(&format!(
            " {} {} {}{flags} ({file}, on {}){state}\n",
            s(svc, "protocol"),
            s(svc, "address"),
            s(svc, "scheduler"),
            s(svc, "node")
        ));
        for r in svc.get("real_servers").and_then(|x| x.as_array()).into_iter().flatten() {
            let weight = match r.get("weight").and_then(|w| w.as_u64()) {
                Some(w) => format!("weight {w}"),
                None => "out of the table".to_string(),
            };
            let status = s(r, "status");
            let health = match s(r, "health") {
                "up" => {
                    let detail = r
                        .get("last_check")
                        .and_then(|c| c.as_str())
                        .map(|c| format!(" (last check: {c})"))
                        .unwrap_or_default();
                    format!("{status}{detail}")
                }
                "maintenance" => format!("maintenance (file {})", s(r, "maintenance")),
                _ => match r.get("reason").and_then(|c| c.as_str()) {
                    Some(why) if !status.contains(why) => format!("{status}: {why}"),
                    _ => status.to_string(),
                },
            };
            out.push_str(&format!("     -> {} {} {weight} {health}\n", s(r, "address"), s(r, "forward")));
        }
        if svc.get("fallback_active").and_then(|f| f.as_bool()) == Some(true) {
            out.push_str(&format!("     -> {} fallback in use (no real server up)\n", s(svc, "fallback")));
        }
    }
    for g in d.get("groups").and_then(|x| x.as_array()).into_iter().flatten() {
        let nodes = strings(g.get("nodes"));
        let here = g.get("here").and_then(|h| h.as_bool()) == Some(true);
        let ours =
            services.iter().any(|svc| svc.get("group").and_then(|x| x.as_str()) == Some(s(g, "group")));
        if here && ours {
            continue;
        }
        let at = match nodes.as_slice() {
            [] => String::new(),
            [one] => format!(" {one}"),
            many => format!(" [ {} ]", many.join(" ")),
        };
        let where_ = match (s(g, "state"), here) {
            ("started", false) => format!("runs on{at} (its real servers: `halo status` there)"),
            ("started", true) => "held here, no director state yet".to_string(),
            ("starting", _) => format!("starting on{at}"),
            ("stopping", _) => format!("stopping on{at}"),
            ("failed", _) => format!("FAILED on{at}"),
            _ => "not running anywhere".to_string(),
        };
        out.push_str(&format!(" {} (group {}): {where_}\n", s(g, "resource"), s(g, "group")));
    }
    out
}
