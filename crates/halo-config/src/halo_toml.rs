//! `halo.toml`, halo's own configuration format: one file for what ha.cf, authkeys,
//! haresources and ldirectord.cf say, plus what they cannot (several preferred nodes per
//! group, clones, order and colocation between groups).
//!
//! ```toml
//! notify = ["/usr/local/bin/on-event --site a"]  # ha.cf's `notify` hooks (before any table)
//!
//! [cluster]                      # ha.cf: the Heartbeat names, one key per directive
//! nodes = ["alpha", "beta"]
//! keepalive = 1                  # seconds, or "500ms" / "2s"
//! deadtime = 10
//! auto_failback = "on"
//!
//! [[link]]                       # bcast, mcast, mcast6, ucast, ucast6, serial
//! type = "ucast"
//! iface = "eth0"
//! peer = "192.168.10.12"
//!
//! [log]
//! logfacility = "daemon"
//!
//! [auth]                         # or no [auth]: the authkeys file beside halo.toml
//! active = 1
//! keys = [{ index = 1, method = "sha1", key = "secret" }]
//!
//! [[group]]
//! name = "web"
//! nodes = ["alpha", "beta"]      # preferred first
//! resources = ["IPaddr2::192.168.10.100/24/eth0", "apache2"]
//! ```
//!
//! How it is read: toml's parser gives a document with a byte span on every key and value;
//! halo walks it (rather than deriving serde structs) so that every unknown key and every
//! wrong type is reported at once, each as `halo.toml:LINE: what was expected`, with a "did
//! you mean" for near misses. The `[cluster]`, `[log]`, `[[link]]`, `[[ping]]`,
//! `[[respawn]]` and `[heartbeat]` keys are then lowered to ha.cf directives and applied by
//! the ha.cf parser itself, so both front ends share one set of Heartbeat defaults, derived
//! values (warntime, initdead, the parameters `cl_status hbparameter` prints) and checks; its
//! findings are renumbered to the halo.toml lines they came from. The inline director is
//! lowered to ldirectord.cf text the same way.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};

use ::toml::de::{DeTable, DeValue};
use ::toml::Spanned;

use crate::diag::{closest, Diagnostic, Sink};
use crate::ha_cf;
use crate::model::{
    AuthKey, AuthKeys, AuthMethodName, CloneSpec, Colocation, GroupPlacement, HaCf, Haresources, Order,
    Placement, ResourceGroup, ResourceSpec,
};

/// The file name `load_dir` looks for.
pub const FILE: &str = "halo.toml";

/// `[cluster]` keys: toml key → ha.cf directive.
pub const CLUSTER_KEYS: &[(&str, &str)] = &[
    ("name", "cluster"),
    ("nodes", "node"),
    ("keepalive", "keepalive"),
    ("deadtime", "deadtime"),
    ("warntime", "warntime"),
    ("initdead", "initdead"),
    ("deadping", "deadping"),
    ("udpport", "udpport"),
    ("baud", "baud"),
    ("auto_failback", "auto_failback"),
    ("autojoin", "autojoin"),
    ("hopfudge", "hopfudge"),
    ("max_rexmit_delay", "max_rexmit_delay"),
    ("msgfmt", "msgfmt"),
    ("hbgenmethod", "hbgenmethod"),
    ("uuidfrom", "uuidfrom"),
    ("realtime", "realtime"),
    ("rtprio", "rtprio"),
];

/// `[log]` keys (same names as in ha.cf).
pub const LOG_KEYS: &[&str] =
    &["logfile", "debugfile", "logfacility", "use_logd", "syslogmsgfmt", "log_badpack", "debug"];

/// `[heartbeat]` keys: ha.cf directives halo accepts without acting on them, kept so that a
/// converted configuration says everything the old one said. Values as written in ha.cf;
/// the repeatable ones take an array.
pub const HEARTBEAT_KEYS: &[&str] = &[
    "watchdog",
    "conn_logd_time",
    "use_apphbd",
    "coredumps",
    "coreroot",
    "crm_daemon_dir",
    "crmd_spawns_pengine",
    "crm",
    "pacemaker",
    "compression",
    "compression_threshold",
    "traditional_compression",
    "record_config_changes",
    "record_pengine_inputs",
    "enable_config_writes",
    "memreserve",
    "quorum_server",
    "env",
    "stonith",
    "stonith_host",
    "apiauth",
    "failfast",
];

/// `[heartbeat]` keys that may repeat (an array of values, one ha.cf line each).
const REPEATABLE: &[&str] = &["env", "stonith_host", "apiauth", "failfast"];
const TIMES: &[&str] = &["keepalive", "deadtime", "warntime", "initdead", "deadping", "conn_logd_time"];

const TOP_KEYS: &[&str] = &[
    "cluster",
    "log",
    "link",
    "ping",
    "respawn",
    "heartbeat",
    "auth",
    "group",
    "clone",
    "order",
    "colocation",
    "director",
    "notify",
    "lvs_sync_daemon",
];
const LINK_KEYS: &[&str] = &["type", "iface", "peer", "group", "port", "ttl", "loop", "hops", "device"];
const LINK_TYPES: &[&str] = &["bcast", "mcast", "mcast6", "ucast", "ucast6", "serial"];
const PING_KEYS: &[&str] = &["address", "address6", "group", "addresses"];
const RESPAWN_KEYS: &[&str] = &["user", "command"];
const AUTH_KEYS: &[&str] = &["active", "keys"];
const KEY_KEYS: &[&str] = &["index", "method", "key"];
const GROUP_KEYS: &[&str] = &["name", "nodes", "resources"];
const CLONE_KEYS: &[&str] = &["name", "nodes", "resources"];
const ORDER_KEYS: &[&str] = &["first", "then"];
const COLOCATION_KEYS: &[&str] = &["group", "with", "apart"];

/// Where the director's services come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectorSource {
    /// `[director] file = "..."`, as written, and the line it is on.
    File { path: PathBuf, line: usize },
    /// Inline tables lowered to ldirectord.cf text; `lines[i]` is the halo.toml line of the
    /// text's line `i + 1`.
    Inline { text: String, lines: Vec<usize> },
}

/// halo.toml read into the model's parts. `authkeys` is `None` when the file has no
/// `[auth]` (the `authkeys` file beside it is then read).
#[derive(Debug, Clone)]
pub struct HaloToml {
    pub ha_cf: HaCf,
    pub authkeys: Option<AuthKeys>,
    pub haresources: Option<Haresources>,
    pub placement: Placement,
    pub director: Option<DirectorSource>,
}

type Table<'i> = DeTable<'i>;
type Value<'i> = Spanned<DeValue<'i>>;

/// Reads halo.toml text. Always returns the best-effort result with errors and warnings.
pub fn parse_halo_toml(file: &Path, text: &str) -> (Option<HaloToml>, Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut cx = Cx { text, sink: Sink::new(file) };
    let doc = match DeTable::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let line = e.span().map(|s| cx.line_at(s.start)).unwrap_or(0);
            let msg = e.message().lines().next().unwrap_or("invalid TOML").trim().to_string();
            cx.sink.error(line, format!("expected valid TOML: {msg}"));
            return (None, cx.sink.errors, cx.sink.warnings);
        }
    };
    let root = doc.get_ref();
    cx.keys(root, "", TOP_KEYS);

    // ha.cf, lowered: (halo.toml line, ha.cf line).
    let mut hacf: Vec<(usize, String)> = Vec::new();
    let cluster = cx.table(root, "cluster");
    if cluster.is_none() {
        cx.sink.error(0, "expected a [cluster] table with at least nodes = [...]");
    }
    if let Some(t) = cluster {
        cx.keys(t, "cluster", &CLUSTER_KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>());
        // udpport and baud first: the media below read them (Heartbeat's plugins latch the
        // value current at their first medium).
        let mut order: Vec<&(&str, &str)> = CLUSTER_KEYS.iter().collect();
        order.sort_by_key(|(k, _)| !matches!(*k, "udpport" | "baud"));
        for (key, directive) in order {
            if let Some(v) = get(t, key) {
                let line = cx.line(v);
                if *key == "nodes" {
                    let names = cx.words(v, "cluster.nodes");
                    if !names.is_empty() {
                        hacf.push((line, format!("node {}", names.join(" "))));
                    }
                } else if let Some(w) = cx.word(v, &format!("cluster.{key}"), TIMES.contains(directive)) {
                    hacf.push((line, format!("{directive} {w}")));
                }
            }
        }
    }
    for (i, link) in cx.array_of_tables(root, "link").into_iter().enumerate() {
        cx.keys(link.get_ref(), &format!("link[{i}]"), LINK_KEYS);
        if let Some(l) = cx.link(&link, i) {
            hacf.push(l);
        }
    }
    for (i, ping) in cx.array_of_tables(root, "ping").into_iter().enumerate() {
        cx.keys(ping.get_ref(), &format!("ping[{i}]"), PING_KEYS);
        if let Some(l) = cx.ping(&ping) {
            hacf.push(l);
        }
    }
    for (i, r) in cx.array_of_tables(root, "respawn").into_iter().enumerate() {
        cx.keys(r.get_ref(), &format!("respawn[{i}]"), RESPAWN_KEYS);
        let line = cx.line(&r);
        let user = cx.req_str(&r, "user", &format!("respawn[{i}]"));
        let command = cx.req_str(&r, "command", &format!("respawn[{i}]"));
        if let (Some(u), Some(c)) = (user, command) {
            if cx.one_line(line, "respawn", &c) && cx.one_word(line, "respawn.user", &u) {
                hacf.push((line, format!("respawn {u} {c}")));
            }
        }
    }
    // `notify = ["/path/to/cmd args", ...]`: ha.cf's `notify` lines (a halo extension).
    if let Some(v) = get(root, "notify") {
        let items: Vec<&Value> = match v.get_ref() {
            DeValue::Array(a) => a.into_iter().collect(),
            _ => vec![v],
        };
        for item in items {
            let line = cx.line(item);
            if let Some(c) = cx.string(item, "notify") {
                if cx.one_line(line, "notify", &c) {
                    hacf.push((line, format!("notify {c}")));
                }
            }
        }
    }
    // `lvs_sync_daemon = "IFACE [id N] ..."`: ha.cf's `lvs_sync_daemon` (a halo extension).
    if let Some(v) = get(root, "lvs_sync_daemon") {
        let line = cx.line(v);
        if let Some(c) = cx.string(v, "lvs_sync_daemon") {
            if cx.one_line(line, "lvs_sync_daemon", &c) {
                hacf.push((line, format!("lvs_sync_daemon {c}")));
            }
        }
    }
    if let Some(t) = cx.table(root, "log") {
        cx.keys(t, "log", LOG_KEYS);
        for key in LOG_KEYS {
            if let Some(v) = get(t, key) {
                if let Some(w) = cx.word(v, &format!("log.{key}"), false) {
                    hacf.push((cx.line(v), format!("{key} {w}")));
                }
            }
        }
    }
    if let Some(t) = cx.table(root, "heartbeat") {
        cx.keys(t, "heartbeat", HEARTBEAT_KEYS);
        for key in HEARTBEAT_KEYS {
            let Some(v) = get(t, key) else { continue };
            let whole = ha_cf::WHOLE_LINE_DIRECTIVES.contains(key);
            let items: Vec<&Value> = match v.get_ref() {
                DeValue::Array(a) if REPEATABLE.contains(key) => a.into_iter().collect(),
                _ => vec![v],
            };
            for item in items {
                let line = cx.line(item);
                let w = if whole {
                    cx.string(item, &format!("heartbeat.{key}")).filter(|s| cx.one_line(line, key, s))
                } else {
                    cx.word(item, &format!("heartbeat.{key}"), TIMES.contains(key))
                };
                if let Some(w) = w {
                    hacf.push((line, format!("{key} {w}")));
                }
            }
        }
    }
    let (mut cfg, e, w) = lower_ha_cf(cx.sink.file, &hacf);
    cx.sink.errors.extend(e);
    cx.sink.warnings.extend(w);
    let (ce, cw) = ha_cf::check_start(cx.sink.file, &cfg);
    cx.sink.errors.extend(ce);
    cx.sink.warnings.extend(cw);
    cfg.directive_lines.sort_by_key(|(_, l)| *l);

    let authkeys = cx.table(root, "auth").and_then(|t| cx.auth(t, root));
    let (haresources, placement) = cx.resources(root, &cfg);
    let director = cx.director(root);
    let parsed = HaloToml { ha_cf: cfg, authkeys, haresources, placement, director };
    (Some(parsed), cx.sink.errors, cx.sink.warnings)
}

/// Applies lowered ha.cf lines with the ha.cf parser and renumbers what it found (and the
/// lines the model keeps) to the halo.toml lines.
fn lower_ha_cf(file: &Path, lines: &[(usize, String)]) -> (HaCf, Vec<Diagnostic>, Vec<Diagnostic>) {
    let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();
    let map: Vec<usize> = lines.iter().map(|(l, _)| *l).collect();
    let (mut cfg, mut e, mut w) = ha_cf::parse_ha_cf_lenient(file, &text);
    let at = |l: usize| if l == 0 { 0 } else { map.get(l - 1).copied().unwrap_or(0) };
    for d in e.iter_mut().chain(w.iter_mut()) {
        d.line = at(d.line);
    }
    for (_, l) in cfg.directive_lines.iter_mut() {
        *l = at(*l);
    }
    for r in cfg.respawn.iter_mut().chain(cfg.failfast.iter_mut()) {
        r.line = at(r.line);
    }
    for n in cfg.notify.iter_mut() {
        n.line = at(n.line);
    }
    // halo.toml is halo's own: ha.cf's warning that Heartbeat refuses `notify` is not for it.
    w.retain(|d| !d.message.starts_with("'notify' is a halo extension"));
    if let Some(l) = cfg.lvs_sync.as_mut() {
        l.line = at(l.line);
    }
    w.retain(|d| !d.message.starts_with("'lvs_sync_daemon' is a halo extension"));
    (cfg, e, w)
}

fn get<'a, 'i>(t: &'a Table<'i>, key: &str) -> Option<&'a Value<'i>> {
    t.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v)
}

fn kind(v: &DeValue) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

struct Cx<'a> {
    text: &'a str,
    sink: Sink<'a>,
}

impl<'a> Cx<'a> {
    fn line_at(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    fn line_of(&self, span: Range<usize>) -> usize {
        self.line_at(span.start)
    }

    fn line<T>(&self, v: &Spanned<T>) -> usize {
        self.line_of(v.span())
    }

    /// Unknown keys of a table, each with a "did you mean" when one is close.
    fn keys(&mut self, t: &Table, section: &str, allowed: &[&str]) {
        for (k, _) in t.iter() {
            let name = k.get_ref().as_ref();
            if allowed.contains(&name) {
                continue;
            }
            let line = self.line(k);
            let place =
                if section.is_empty() { "at the top level".to_string() } else { format!("in [{section}]") };
            let msg = match closest(name, allowed.iter().copied()) {
                Some(s) => format!("unknown key '{name}' {place}: did you mean '{s}'?"),
                None => format!("unknown key '{name}' {place}: expected one of {}", allowed.join(", ")),
            };
            self.sink.error(line, msg);
        }
    }

    fn table<'t, 'i>(&mut self, t: &'t Table<'i>, key: &str) -> Option<&'t Table<'i>> {
        let v = get(t, key)?;
        match v.get_ref() {
            DeValue::Table(inner) => Some(inner),
            other => {
                let line = self.line(v);
                self.sink.error(line, format!("{key}: expected a table ([{key}]), got {}", kind(other)));
                None
            }
        }
    }

    /// `[[key]]` (or `key = [{...}]`): every element, as a spanned table.
    fn array_of_tables<'i>(&mut self, t: &Table<'i>, key: &str) -> Vec<Spanned<Table<'i>>> {
        let Some(v) = get(t, key) else { return Vec::new() };
        let DeValue::Array(a) = v.get_ref() else {
            let line = self.line(v);
            self.sink.error(
                line,
                format!("{key}: expected an array of tables ([[{key}]]), got {}", kind(v.get_ref())),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in a {
            match item.get_ref() {
                DeValue::Table(inner) => out.push(Spanned::new(item.span(), inner.clone())),
                other => {
                    let line = self.line(item);
                    self.sink
                        .error(line, format!("{key}: expected a table ([[{key}]]), got {}", kind(other)));
                }
            }
        }
        out
    }

    fn string(&mut self, v: &Value, what: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                let line = self.line(v);
                self.sink.error(line, format!("{what}: expected a string, got {}", kind(other)));
                None
            }
        }
    }

    fn req_str(&mut self, t: &Spanned<Table>, key: &str, what: &str) -> Option<String> {
        match get(t.get_ref(), key) {
            Some(v) => self.string(v, &format!("{what}.{key}")),
            None => {
                let line = self.line(t);
                self.sink.error(line, format!("{what}: expected a key '{key}'"));
                None
            }
        }
    }

    fn opt_str(&mut self, t: &Table, key: &str, what: &str) -> Option<String> {
        get(t, key).and_then(|v| self.string(v, &format!("{what}.{key}")))
    }

    fn one_word(&mut self, line: usize, what: &str, w: &str) -> bool {
        if w.is_empty() || w.contains(|c: char| c.is_whitespace() || c == ',' || c == '#') {
            self.sink.error(line, format!("{what}: expected one word (no spaces, commas or '#'), got '{w}'"));
            return false;
        }
        true
    }

    fn one_line(&mut self, line: usize, what: &str, w: &str) -> bool {
        if w.trim().is_empty() || w.contains(['\n', '\r', '#']) {
            self.sink.error(
                line,
                format!("{what}: expected a non-empty value on one line, without '#', got '{w}'"),
            );
            return false;
        }
        true
    }

    /// A scalar as one ha.cf word. Times may be a number of seconds or a string with `ms`,
    /// `us` or `s`.
    fn word(&mut self, v: &Value, what: &str, time: bool) -> Option<String> {
        let line = self.line(v);
        let w = match v.get_ref() {
            DeValue::String(s) => {
                let s = s.to_string();
                match s.strip_suffix('s') {
                    Some(n) if time && !n.ends_with(['m', 'u']) && !n.is_empty() => n.trim_end().to_string(),
                    _ => s,
                }
            }
            DeValue::Integer(i) => i.as_str().to_string(),
            DeValue::Float(f) => f.as_str().to_string(),
            DeValue::Boolean(b) => b.to_string(),
            other => {
                self.sink.error(
                    line,
                    format!("{what}: expected a string, number or boolean, got {}", kind(other)),
                );
                return None;
            }
        };
        self.one_word(line, what, &w).then_some(w)
    }

    /// An array of strings (or one string) of single words.
    fn words(&mut self, v: &Value, what: &str) -> Vec<String> {
        let items: Vec<&Value> = match v.get_ref() {
            DeValue::Array(a) => a.into_iter().collect(),
            DeValue::String(_) => vec![v],
            other => {
                let line = self.line(v);
                self.sink.error(line, format!("{what}: expected an array of strings, got {}", kind(other)));
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for item in items {
            let line = self.line(item);
            if let Some(s) = self.string(item, what) {
                if self.one_word(line, what, &s) {
                    out.push(s);
                }
            }
        }
        out
    }

    fn link(&mut self, t: &Spanned<Table>, i: usize) -> Option<(usize, String)> {
        let what = format!("link[{i}]");
        let line = self.line(t);
        let ty = self.req_str(t, "type", &what)?;
        if !LINK_TYPES.contains(&ty.as_str()) {
            let hint = closest(&ty, LINK_TYPES.iter().copied())
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            let at = get(t.get_ref(), "type").map(|v| self.line(v)).unwrap_or(line);
            self.sink.error(
                at,
                format!("{what}.type: expected one of {}, got '{ty}'{hint}", LINK_TYPES.join(", ")),
            );
            return None;
        }
        let need: &[&str] = match ty.as_str() {
            "bcast" => &["iface"],
            "ucast" | "ucast6" => &["iface", "peer"],
            "mcast" => &["iface", "group", "port", "ttl", "loop"],
            "mcast6" => &["iface", "group", "port", "hops", "loop"],
            _ => &["device"],
        };
        let mut words = vec![ty.clone()];
        for key in need {
            let v = match get(t.get_ref(), key) {
                Some(v) => self.word(v, &format!("{what}.{key}"), false),
                // Heartbeat's usual values, so that a link names only what matters.
                None => match *key {
                    "ttl" | "hops" => Some("1".to_string()),
                    "loop" => Some("0".to_string()),
                    _ => {
                        self.sink.error(line, format!("{what}: a {ty} link needs '{key}'"));
                        None
                    }
                },
            };
            words.push(v?);
        }
        for (k, v) in t.get_ref().iter() {
            let k = k.get_ref().as_ref();
            if k != "type" && LINK_KEYS.contains(&k) && !need.contains(&k) {
                let at = self.line(v);
                self.sink.error(
                    at,
                    format!("{what}: '{k}' does not apply to a {ty} link (it takes {})", need.join(", ")),
                );
            }
        }
        let words = words.iter().map(|w| {
            if w == "true" {
                "1".to_string()
            } else if w == "false" {
                "0".to_string()
            } else {
                w.clone()
            }
        });
        Some((line, words.collect::<Vec<_>>().join(" ")))
    }

    fn ping(&mut self, t: &Spanned<Table>) -> Option<(usize, String)> {
        let line = self.line(t);
        let tt = t.get_ref();
        let (a4, a6, g) = (get(tt, "address"), get(tt, "address6"), get(tt, "group"));
        match (a4, a6, g) {
            (Some(v), None, None) => self.word(v, "ping.address", false).map(|w| (line, format!("ping {w}"))),
            (None, Some(v), None) => {
                self.word(v, "ping.address6", false).map(|w| (line, format!("ping6 {w}")))
            }
            (None, None, Some(v)) => {
                let name = self.word(v, "ping.group", false)?;
                let addrs = match get(tt, "addresses") {
                    Some(a) => self.words(a, "ping.addresses"),
                    None => Vec::new(),
                };
                if addrs.is_empty() {
                    self.sink.error(line, "ping: a ping group needs addresses = [\"...\", ...]");
                    return None;
                }
                Some((line, format!("ping_group {name} {}", addrs.join(" "))))
            }
            _ => {
                self.sink.error(
                    line,
                    "ping: expected exactly one of address = \"IP\", address6 = \"IPv6\" or group = \"NAME\" with addresses = [...]",
                );
                None
            }
        }
    }

    fn auth(&mut self, t: &Table, root: &Table) -> Option<AuthKeys> {
        self.keys(t, "auth", AUTH_KEYS);
        let at = get(root, "auth").map(|v| self.line(v)).unwrap_or(0);
        let active = match get(t, "active") {
            Some(v) => match v.get_ref() {
                DeValue::Integer(i) => {
                    match i.as_str().parse::<u8>().ok().filter(|n| *n < crate::authkeys::MAX_AUTH) {
                        Some(n) => Some((n, self.line(v))),
                        None => {
                            let l = self.line(v);
                            self.sink.error(
                                l,
                                format!("auth.active: expected a key index from 0 to 15, got {}", i.as_str()),
                            );
                            None
                        }
                    }
                }
                other => {
                    let l = self.line(v);
                    self.sink.error(l, format!("auth.active: expected an integer, got {}", kind(other)));
                    None
                }
            },
            None => {
                self.sink.error(
                    at,
                    "auth: expected active = N, the index of the key that signs outgoing messages",
                );
                None
            }
        };
        let mut keys: Vec<AuthKey> = Vec::new();
        let items = match get(t, "keys") {
            Some(v) => match v.get_ref() {
                DeValue::Array(a) => a.into_iter().cloned().collect::<Vec<_>>(),
                other => {
                    let l = self.line(v);
                    self.sink.error(
                        l,
                        format!(
                            "auth.keys: expected an array of {{ index, method, key }} tables, got {}",
                            kind(other)
                        ),
                    );
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        for item in &items {
            let line = self.line(item);
            let DeValue::Table(kt) = item.get_ref() else {
                self.sink.error(
                    line,
                    format!(
                        "auth.keys: expected a table {{ index, method, key }}, got {}",
                        kind(item.get_ref())
                    ),
                );
                continue;
            };
            self.keys(kt, "auth.keys", KEY_KEYS);
            let index = match get(kt, "index").map(|v| v.get_ref()) {
                Some(DeValue::Integer(i)) => {
                    i.as_str().parse::<u8>().ok().filter(|n| *n < crate::authkeys::MAX_AUTH)
                }
                _ => None,
            };
            let Some(index) = index else {
                self.sink.error(line, "auth.keys: expected index = N, an integer from 0 to 15");
                continue;
            };
            let kspan = Spanned::new(item.span(), kt.clone());
            let Some(m) = self.req_str(&kspan, "method", "auth.keys") else { continue };
            let Some(method) = AuthMethodName::parse(&m) else {
                self.sink.error(
                    line,
                    format!("auth.keys: unknown method '{m}': expected crc, md5, sha1 or sha256"),
                );
                continue;
            };
            let key = self.opt_str(kt, "key", "auth.keys");
            match (&key, method.needs_key()) {
                (Some(_), false) => {
                    self.sink.error(line, format!("auth.keys: {} does not use a key", method.as_str()));
                    continue;
                }
                (None, true) => {
                    self.sink.error(line, format!("auth.keys: {} requires key = \"...\"", method.as_str()));
                    continue;
                }
                (Some(k), true) if k.is_empty() => {
                    self.sink.error(line, "auth.keys: the key must not be empty");
                    continue;
                }
                _ => {}
            }
            if keys.iter().any(|k| k.index == index) {
                self.sink.error(line, format!("auth.keys: key {index} is defined twice"));
                continue;
            }
            keys.push(AuthKey { index, method, key });
        }
        let (active, line) = active?;
        if !keys.iter().any(|k| k.index == active) {
            self.sink.error(line, format!("auth.active: key {active} is not defined in auth.keys"));
            return None;
        }
        Some(AuthKeys { active, keys })
    }

    fn resources(&mut self, root: &Table, cfg: &HaCf) -> (Option<Haresources>, Placement) {
        let mut placement = Placement::default();
        let groups = self.array_of_tables(root, "group");
        let has_groups = get(root, "group").is_some();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        let node_ok = |cx: &mut Cx, line: usize, what: &str, n: &str| {
            if !cfg.nodes.is_empty() && !cfg.nodes.contains(&n.to_ascii_lowercase()) {
                cx.sink.error(
                    line,
                    format!("{what}: '{n}' is not a node of [cluster] (nodes: {})", cfg.nodes.join(", ")),
                );
            }
        };
        for (i, g) in groups.iter().enumerate() {
            let what = format!("group[{i}]");
            self.keys(g.get_ref(), &what, GROUP_KEYS);
            let line = self.line(g);
            let resources = self.resource_list(g, &what);
            let nodes: Vec<String> = match get(g.get_ref(), "nodes") {
                Some(v) => {
                    let l = self.line(v);
                    let ns = self.words(v, &format!("{what}.nodes"));
                    for n in &ns {
                        node_ok(self, l, &format!("{what}.nodes"), n);
                    }
                    ns.iter().map(|n| n.to_ascii_lowercase()).collect()
                }
                None => Vec::new(),
            };
            if nodes.is_empty() {
                self.sink.error(
                    line,
                    format!(
                        "{what}: expected nodes = [\"NODE\", ...], the preferred nodes, most preferred first"
                    ),
                );
            }
            let mut seen = HashSet::new();
            if let Some(d) = nodes.iter().find(|n| !seen.insert(*n)) {
                self.sink.error(line, format!("{what}.nodes: '{d}' is listed twice"));
            }
            let Some(resources) = resources else { continue };
            if nodes.is_empty() {
                continue;
            }
            let key = resources[0].raw.clone();
            let name = self.opt_str(g.get_ref(), "name", &what);
            let shown = name.clone().unwrap_or_else(|| key.clone());
            if let Some(first) = names.get(&shown) {
                self.sink
                    .error(line, format!("{what}: the name '{shown}' is used twice (first at line {first})"));
                continue;
            }
            if out.iter().any(|g: &ResourceGroup| g.key() == key) {
                self.sink.error(line, format!("{what}: duplicate group key '{key}': the first resource of each group names it and must be unique"));
                continue;
            }
            names.insert(shown.clone(), line);
            if name.is_some() || nodes.len() > 1 {
                placement.groups.push(GroupPlacement {
                    key: key.clone(),
                    name: shown,
                    nodes: nodes.clone(),
                    line,
                });
            }
            out.push(ResourceGroup { node: nodes[0].clone(), line, resources });
        }
        for (i, c) in self.array_of_tables(root, "clone").iter().enumerate() {
            let what = format!("clone[{i}]");
            self.keys(c.get_ref(), &what, CLONE_KEYS);
            let line = self.line(c);
            let name = self.req_str(c, "name", &what);
            let resources = self.resource_list(c, &what);
            let nodes: Vec<String> = match get(c.get_ref(), "nodes") {
                Some(v) => {
                    let l = self.line(v);
                    let ns = self.words(v, &format!("{what}.nodes"));
                    for n in &ns {
                        node_ok(self, l, &format!("{what}.nodes"), n);
                    }
                    ns.iter().map(|n| n.to_ascii_lowercase()).collect()
                }
                None => Vec::new(),
            };
            let (Some(name), Some(resources)) = (name, resources) else { continue };
            if let Some(first) = names.get(&name) {
                self.sink
                    .error(line, format!("{what}: the name '{name}' is used twice (first at line {first})"));
                continue;
            }
            names.insert(name.clone(), line);
            placement.clones.push(CloneSpec { name, resources, nodes, line });
        }
        let known = |cx: &mut Cx, line: usize, what: &str, n: &str| -> bool {
            if names.contains_key(n) {
                return true;
            }
            let hint = closest(n, names.keys().map(String::as_str))
                .map(|s| format!(" (did you mean '{s}'?)"))
                .unwrap_or_default();
            cx.sink.error(line, format!("{what}: '{n}' is not the name of a group or clone{hint}"));
            false
        };
        for (i, o) in self.array_of_tables(root, "order").iter().enumerate() {
            let what = format!("order[{i}]");
            self.keys(o.get_ref(), &what, ORDER_KEYS);
            let line = self.line(o);
            let (Some(first), Some(then)) = (self.req_str(o, "first", &what), self.req_str(o, "then", &what))
            else {
                continue;
            };
            if known(self, line, &format!("{what}.first"), &first)
                & known(self, line, &format!("{what}.then"), &then)
            {
                if first == then {
                    self.sink.error(line, format!("{what}: '{first}' cannot be ordered after itself"));
                    continue;
                }
                placement.order.push(Order { first, then, line });
            }
        }
        if let Some(line) = order_cycle(&placement.order) {
            self.sink.error(line, "order: these constraints form a cycle, so none of its groups could start");
        }
        for (i, c) in self.array_of_tables(root, "colocation").iter().enumerate() {
            let what = format!("colocation[{i}]");
            self.keys(c.get_ref(), &what, COLOCATION_KEYS);
            let line = self.line(c);
            let (Some(group), Some(with)) = (self.req_str(c, "group", &what), self.req_str(c, "with", &what))
            else {
                continue;
            };
            let apart = match get(c.get_ref(), "apart").map(|v| (self.line(v), v.get_ref())) {
                None => false,
                Some((_, DeValue::Boolean(b))) => *b,
                Some((l, other)) => {
                    self.sink.error(l, format!("{what}.apart: expected a boolean, got {}", kind(other)));
                    false
                }
            };
            if known(self, line, &format!("{what}.group"), &group)
                & known(self, line, &format!("{what}.with"), &with)
            {
                if group == with {
                    self.sink.error(line, format!("{what}: '{group}' cannot be placed relative to itself"));
                    continue;
                }
                placement.colocation.push(Colocation { group, with, apart, line });
            }
        }
        let haresources = (has_groups || !out.is_empty()).then_some(Haresources { groups: out });
        (haresources, placement)
    }

    fn resource_list(&mut self, t: &Spanned<Table>, what: &str) -> Option<Vec<ResourceSpec>> {
        let line = self.line(t);
        let Some(v) = get(t.get_ref(), "resources") else {
            self.sink.error(
                line,
                format!("{what}: expected resources = [\"IPaddr2::10.0.0.10/24/eth0\", \"apache2\", ...]"),
            );
            return None;
        };
        let l = self.line(v);
        let words = self.words(v, &format!("{what}.resources"));
        if words.is_empty() {
            self.sink.error(l, format!("{what}.resources: expected at least one resource"));
            return None;
        }
        let specs: Vec<ResourceSpec> = words.iter().map(|w| ResourceSpec::parse(w)).collect();
        for r in &specs {
            if r.agent.is_empty() {
                self.sink.error(
                    l,
                    format!("{what}.resources: resource '{}' has no script name before '::'", r.raw),
                );
                return None;
            }
        }
        Some(specs)
    }

    fn director(&mut self, root: &Table) -> Option<DirectorSource> {
        let t = self.table(root, "director")?;
        let at = get(root, "director").map(|v| self.line(v)).unwrap_or(0);
        let mut allowed: Vec<&str> = vec!["file", "virtual"];
        allowed.extend(crate::ldirectord_cf::GLOBAL_DIRECTIVES);
        self.keys(t, "director", &allowed);
        if let Some(v) = get(t, "file") {
            let line = self.line(v);
            let path = self.string(v, "director.file")?;
            if t.len() > 1 {
                self.sink.error(
                    line,
                    "director: give either file = \"ldirectord.cf\" or the services inline, not both",
                );
            }
            return Some(DirectorSource::File { path: PathBuf::from(path), line });
        }
        let mut text = String::new();
        let mut lines = Vec::new();
        let mut push = |text: &mut String, line: usize, s: String| {
            text.push_str(&s);
            text.push('\n');
            lines.push(line);
        };
        for (k, v) in t.iter() {
            let k = k.get_ref().as_ref();
            if k == "virtual" || !allowed.contains(&k) {
                continue;
            }
            for (line, val) in self.ld_values(v, &format!("director.{k}")) {
                push(&mut text, line, format!("{k}={val}"));
            }
        }
        let virtuals = self.array_of_tables(t, "virtual");
        if virtuals.is_empty() {
            self.sink.error(
                at,
                "director: expected file = \"ldirectord.cf\" or at least one [[director.virtual]]",
            );
            return None;
        }
        for (i, v) in virtuals.iter().enumerate() {
            let what = format!("director.virtual[{i}]");
            let mut vallowed: Vec<&str> = vec!["virtual", "virtual6"];
            vallowed.extend(crate::ldirectord_cf::VIRTUAL_DIRECTIVES);
            self.keys(v.get_ref(), &what, &vallowed);
            let line = self.line(v);
            let head = match (get(v.get_ref(), "virtual"), get(v.get_ref(), "virtual6")) {
                (Some(a), None) => self
                    .ld_values(a, &format!("{what}.virtual"))
                    .pop()
                    .map(|(l, s)| (l, format!("virtual={s}"))),
                (None, Some(a)) => self
                    .ld_values(a, &format!("{what}.virtual6"))
                    .pop()
                    .map(|(l, s)| (l, format!("virtual6={s}"))),
                _ => {
                    self.sink.error(line, format!("{what}: expected exactly one of virtual = \"IP:PORT\" or virtual6 = \"[IPv6]:PORT\""));
                    None
                }
            };
            let Some((hl, head)) = head else { continue };
            push(&mut text, hl, head);
            // Keys come in toml's key order; `real` lines keep their array order.
            for (k, val) in v.get_ref().iter() {
                let k = k.get_ref().as_ref();
                if k == "virtual" || k == "virtual6" || !vallowed.contains(&k) {
                    continue;
                }
                for (line, s) in self.ld_values(val, &format!("{what}.{k}")) {
                    // ldirectord wants request and receive double-quoted; TOML already quotes.
                    let s = if matches!(k, "request" | "receive") && !s.starts_with('"') {
                        format!("\"{s}\"")
                    } else {
                        s
                    };
                    push(&mut text, line, format!("\t{k}={s}"));
                }
            }
        }
        Some(DirectorSource::Inline { text, lines })
    }

    /// An ldirectord directive's value(s): scalars as written (booleans as yes/no), arrays as
    /// one line per element.
    fn ld_values(&mut self, v: &Value, what: &str) -> Vec<(usize, String)> {
        let items: Vec<&Value> = match v.get_ref() {
            DeValue::Array(a) => a.into_iter().collect(),
            _ => vec![v],
        };
        let mut out = Vec::new();
        for item in items {
            let line = self.line(item);
            let s = match item.get_ref() {
                DeValue::String(s) => s.to_string(),
                DeValue::Integer(i) => i.as_str().to_string(),
                DeValue::Float(f) => f.as_str().to_string(),
                DeValue::Boolean(b) => if *b { "yes" } else { "no" }.to_string(),
                other => {
                    self.sink.error(
                        line,
                        format!("{what}: expected a string, number or boolean, got {}", kind(other)),
                    );
                    continue;
                }
            };
            if s.contains(['\n', '\r', '#']) {
                self.sink.error(
                    line,
                    format!(
                        "{what}: expected a value on one line without '#' (ldirectord.cf could not hold it)"
                    ),
                );
                continue;
            }
            out.push((line, s));
        }
        out
    }
}

/// The line of an order constraint on a cycle, if the constraints have one.
fn order_cycle(order: &[Order]) -> Option<usize> {
    let mut graph: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
    for o in order {
        graph.entry(o.first.as_str()).or_default().push((o.then.as_str(), o.line));
    }
    fn visit<'a>(
        n: &'a str,
        g: &HashMap<&'a str, Vec<(&'a str, usize)>>,
        state: &mut HashMap<&'a str, u8>,
    ) -> Option<usize> {
        state.insert(n, 1);
        for (m, line) in g.get(n).into_iter().flatten() {
            match state.get(m) {
                Some(1) => return Some(*line),
                Some(_) => {}
                None => {
                    if let Some(l) = visit(m, g, state) {
                        return Some(l);
                    }
                }
            }
        }
        state.insert(n, 2);
        None
    }
    let mut state = HashMap::new();
    let mut starts: Vec<&str> = graph.keys().copied().collect();
    starts.sort();
    for n in starts {
        if !state.contains_key(n) {
            if let Some(l) = visit(n, &graph, &mut state) {
                return Some(l);
            }
        }
    }
    None
}

/// Renumbers ldirectord.cf findings and the lines its model keeps to halo.toml lines.
pub(crate) fn remap_director(
    cf: &mut crate::ldirectord_cf::LdirectordCf,
    diags: &mut [Diagnostic],
    lines: &[usize],
) {
    let at = |l: usize| if l == 0 { 0 } else { lines.get(l - 1).copied().unwrap_or(0) };
    for d in diags.iter_mut() {
        d.line = at(d.line);
    }
    for v in cf.virtuals.iter_mut() {
        v.line = at(v.line);
        for r in v.reals.iter_mut() {
            r.line = at(r.line);
        }
    }
}

#[cfg(test)]
mod tests;
