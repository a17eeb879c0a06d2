//! `ha.cf` (spec §1), parsed the way Heartbeat 3.0.6 `parse_config` reads it.
//!
//! * `#` starts a comment anywhere on a line; `\r`/`\n` end it; blank lines are skipped.
//! * The first word is the directive, case-sensitive. `udp` is the old name of `bcast`.
//! * Option directives split the rest of the line on commas and whitespace and apply once per
//!   word, so `node a b` adds two nodes and `keepalive 500 ms` fails on `ms`.
//! * `stonith`, `stonith_host`, `apiauth`, `respawn`, `failfast` take the rest of the line.
//! * `mcast`, `mcast6`, `ucast`, `ucast6`, `ping_group` parse the rest of the line themselves
//!   (split on whitespace only); `bcast`, `serial`, `ping`, `ping6` make one medium per word.
//! * `udpport` and `baud` are read by a media plugin when its first medium is parsed, so a
//!   late one does not reach the media above it (a warning, as Heartbeat only prints one).

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::diag::{ConfigError, Diagnostic, Sink};
use crate::model::{
    AutoFailback, Autojoin, GenMethod, HaCf, Medium, MsgFmt, PingKind, PingNode, Respawn, UuidFrom,
    DEFAULT_UDPPORT,
};
use crate::time::{parse_bool, parse_int, parse_time_ms, WHITESPACE};

/// Directives halo acts on today. Every other accepted directive is read, validated and kept
/// in the model, and draws one "accepted but not implemented" warning.
pub const IMPLEMENTED: &[&str] = &[
    "logfile",
    "debugfile",
    "logfacility",
    "debug",
    "keepalive",
    "deadtime",
    "warntime",
    "initdead",
    "udpport",
    "bcast",
    "mcast",
    "ucast",
    "serial",
    "baud",
    "node",
    "hopfudge",
    "max_rexmit_delay",
    "msgfmt",
    "hbgenmethod",
    "uuidfrom",
    "realtime",
    "rtprio",
    "syslogmsgfmt",
    "cluster",
    "log_badpack",
    "respawn",
    "no_quorum_policy",
    "notify",
    "lvs_sync_daemon",
    "ping",
    "ping6",
    "ping_group",
    "deadping",
    "autojoin",
    "auto_failback",
    "use_logd",
    "stonith",
    "stonith_host",
    // Obsolete spelling of auto_failback; Heartbeat converts it and so does halo.
    "nice_failback",
];

/// Heartbeat's `Directives[]` table as built by Debian (`normalpoll` is compiled out).
pub const OPTION_DIRECTIVES: &[&str] = &[
    "cluster",
    "node",
    "hopfudge",
    "keepalive",
    "deadtime",
    "deadping",
    "initdead",
    "warntime",
    "watchdog",
    "baud",
    "udpport",
    "logfacility",
    "logfile",
    "debugfile",
    "nice_failback",
    "auto_failback",
    "rtprio",
    "hbgenmethod",
    "realtime",
    "debug",
    "msgfmt",
    "use_logd",
    "conn_logd_time",
    "use_apphbd",
    "log_badpack",
    "syslogmsgfmt",
    "coredumps",
    "coreroot",
    "crm_daemon_dir",
    "crmd_spawns_pengine",
    "crm",
    "pacemaker",
    "autojoin",
    "uuidfrom",
    "compression",
    "compression_threshold",
    "traditional_compression",
    "env",
    "max_rexmit_delay",
    "record_config_changes",
    "record_pengine_inputs",
    "enable_config_writes",
    "memreserve",
    "quorum_server",
];

/// Option directives whose values Heartbeat does not record for `hbparameter`.
const NOT_RECORDED: &[&str] = &["node", "nice_failback", "use_apphbd", "crm", "env"];

/// Heartbeat's `WLdirectives[]`: handed the rest of the line.
pub const WHOLE_LINE_DIRECTIVES: &[&str] = &["stonith", "stonith_host", "apiauth", "respawn", "failfast"];

/// Media plugins (`HBcomm/*.so` installed by Debian) with a whole-line parser.
pub const WHOLE_LINE_MEDIA: &[&str] = &["mcast", "mcast6", "ucast", "ucast6", "ping_group"];

/// Media plugins that make one medium per word.
pub const PER_WORD_MEDIA: &[&str] = &["bcast", "serial", "ping", "ping6"];

/// Defaults Heartbeat records after parsing (`Directives[]` entries with a default value), in
/// table order.
const RECORDED_DEFAULTS: &[(&str, &str)] = &[
    ("cluster", "linux-ha"),
    ("hopfudge", "1"),
    ("keepalive", "1000ms"),
    ("deadtime", "30000ms"),
    ("baud", "19200"),
    ("auto_failback", "legacy"),
    ("hbgenmethod", "file"),
    ("realtime", "true"),
    ("msgfmt", "classic"),
    ("conn_logd_time", "60"),
    ("log_badpack", "true"),
    ("syslogmsgfmt", "true"),
    ("coredumps", "true"),
    ("pacemaker", "false"),
    ("autojoin", "none"),
    ("uuidfrom", "file"),
    ("compression", "zlib"),
    ("compression_threshold", "2"),
    ("traditional_compression", "no"),
    ("max_rexmit_delay", "250"),
    ("record_config_changes", "on"),
    ("record_pengine_inputs", "on"),
    ("enable_config_writes", "on"),
    ("memreserve", "6500"),
];

/// Syslog facilities glibc's `facilitynames` knows (cluster-glue `cl_syslogfac_str2int`,
/// case-sensitive), plus `none`.
const FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "mark", "news", "security", "syslog",
    "user", "uucp", "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

const BAUD_RATES: &[u32] = &[9600, 19200, 38400, 57600, 115200, 230400, 460800];

/// Heartbeat's `DELIMS`: option values are separated by commas or whitespace.
const DELIMS: &[char] = &[',', ' ', '\t', '\n', '\r', '\x0c'];

/// `MAXNODE`, `MAXMEDIA`, `HOSTLENG` from Heartbeat's headers.
const MAX_NODES: usize = 100;
const MAX_MEDIA: usize = 64;
const HOSTLENG: usize = 100;

const TIME_EXPECTED: &str = "expected a time such as 2, 1.5 or 500ms (seconds unless suffixed ms or us)";
const BOOL_EXPECTED: &str = "expected a boolean (true/false, on/off, yes/no, y/n, 1/0)";

/// Directives only halo knows. Heartbeat 3.0.6 refuses an ha.cf that uses them, so each use
/// is warned about: such a file cannot be shared with Heartbeat nodes.
///
/// * `no_quorum_policy ignore|freeze|stop`: what a node without quorum does.
/// * `notify /path/to/cmd [args]` (may repeat): a hook command run on every cluster event
///   (node dead/up, group starting/started/stopping/stopped/failed, failover, split-brain,
///   fencing, quorum lost/regained, reload applied), one at a time and in event order, with
///   the event in `HALO_EVENT`, `HALO_NODE`, `HALO_GROUP`, `HALO_LOCAL_NODE`, `HALO_TIME`,
///   `HALO_DETAIL` (see the halo crate's `hooks` module). The rest of the line is the
///   command: an absolute path and its arguments, split on whitespace, no shell.
/// * `lvs_sync_daemon IFACE [id N] [port P] [group ADDR] [interval S]`: director connection
///   sync, as `ipvsadm --start-daemon master|backup --mcast-interface IFACE --syncid N` (and
///   keepalived's `lvs_sync_daemon`): the node holding a director sends its flow and
///   persistence state to multicast `group:port` (224.0.0.81:8848 by default) on IFACE every
///   `interval` (1 s), signed with the authkeys secret; the others keep it for when they take
///   the director over.
pub const HALO_DIRECTIVES: &[&str] = &["no_quorum_policy", "notify", "lvs_sync_daemon"];

/// True for every directive Heartbeat 3.0.6 (Debian build) accepts in ha.cf, plus the legacy
/// alias `udp`, plus halo's own [`HALO_DIRECTIVES`].
pub fn is_legal_directive(name: &str) -> bool {
    name == "udp"
        || HALO_DIRECTIVES.contains(&name)
        || OPTION_DIRECTIVES.contains(&name)
        || WHOLE_LINE_DIRECTIVES.contains(&name)
        || WHOLE_LINE_MEDIA.contains(&name)
        || PER_WORD_MEDIA.contains(&name)
}

fn all_directives() -> impl Iterator<Item = &'static str> {
    OPTION_DIRECTIVES
        .iter()
        .chain(HALO_DIRECTIVES)
        .chain(WHOLE_LINE_DIRECTIVES)
        .chain(WHOLE_LINE_MEDIA)
        .chain(PER_WORD_MEDIA)
        .copied()
}

/// Parses ha.cf text. Pure: no file, network or host lookups (interfaces, users, serial
/// devices and peer names are checked when halo starts, not here).
///
/// Returns the model with defaults and derived values filled in, plus warnings. Heartbeat's
/// start conditions that need the whole configuration (media and nodes present, deadtime
/// against keepalive, ...) are checked by [`check_start`], which [`crate::load_dir`] runs.
pub fn parse_ha_cf(file: &Path, text: &str) -> Result<(HaCf, Vec<Diagnostic>), ConfigError> {
    let (cfg, errors, warnings) = parse_ha_cf_lenient(file, text);
    if errors.is_empty() {
        Ok((cfg, warnings))
    } else {
        Err(ConfigError::new(errors))
    }
}

/// Like [`parse_ha_cf`] but always returns the best-effort model with errors and warnings,
/// so that a caller can keep checking other files against it.
pub(crate) fn parse_ha_cf_lenient(file: &Path, text: &str) -> (HaCf, Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut p = Parser::new(file);
    for (idx, raw) in text.split('\n').enumerate() {
        p.line(idx + 1, raw);
    }
    p.finish()
}

/// What one `udpport`-reading plugin latched, and where.
#[derive(Debug, Clone, Copy)]
struct Latch<T> {
    value: T,
    line: usize,
}

struct Parser<'a> {
    sink: Sink<'a>,
    cfg: HaCf,
    node_lines: HashMap<String, usize>,
    warned: HashSet<String>,
    baud_line: Option<usize>,
    watchdog_line: Option<usize>,
    pacemaker_line: Option<usize>,
    apiauth_clients: HashMap<String, usize>,
    warntime: Option<u64>,
    initdead: Option<u64>,
    deadping: Option<u64>,
    udpport_set: bool,
    latch_bcast: Option<Latch<u16>>,
    latch_ucast: Option<Latch<u16>>,
    latch_ucast6: Option<Latch<u16>>,
    latch_serial: Option<Latch<u32>>,
}

impl<'a> Parser<'a> {
    fn new(file: &'a Path) -> Self {
        Parser {
            sink: Sink::new(file),
            cfg: HaCf::default(),
            node_lines: HashMap::new(),
            warned: HashSet::new(),
            baud_line: None,
            watchdog_line: None,
            pacemaker_line: None,
            apiauth_clients: HashMap::new(),
            warntime: None,
            initdead: None,
            deadping: None,
            udpport_set: false,
            latch_bcast: None,
            latch_ucast: None,
            latch_ucast6: None,
            latch_serial: None,
        }
    }

    fn line(&mut self, lineno: usize, raw: &str) {
        let mut bp = raw.trim_start_matches(WHITESPACE);
        if let Some(i) = bp.find('#') {
            bp = &bp[..i];
        }
        if let Some(i) = bp.find(['\r', '\n']) {
            bp = &bp[..i];
        }
        if bp.is_empty() {
            return;
        }
        let dir_len = bp.find(WHITESPACE).unwrap_or(bp.len());
        let mut directive = &bp[..dir_len];
        if directive == "udp" {
            self.sink.warn(lineno, "directive 'udp' is the old name of 'bcast' and is read as 'bcast'");
            directive = "bcast";
        }
        if !is_legal_directive(directive) {
            let msg = unknown_directive_message(directive);
            self.sink.error(lineno, msg);
            return;
        }
        let rest = bp[dir_len..].trim_start_matches(DELIMS);

        if self.cfg.line_of(directive).is_none() {
            self.cfg.directive_lines.push((directive.to_string(), lineno));
        }
        if HALO_DIRECTIVES.contains(&directive) && self.warned.insert(directive.to_string()) {
            self.sink.warn(
                lineno,
                format!(
                    "'{directive}' is a halo extension: Heartbeat 3.0.6 refuses an ha.cf that uses it \
                     (keep it out of files shared with Heartbeat nodes; halo.toml has it too)"
                ),
            );
        }
        if !IMPLEMENTED.contains(&directive) && self.warned.insert(directive.to_string()) {
            self.sink.warn(
                lineno,
                format!("'{directive}' is accepted but not implemented by halo yet; it has no effect"),
            );
        }

        if directive == "notify" {
            self.notify(lineno, rest.trim_end_matches(WHITESPACE));
        } else if directive == "lvs_sync_daemon" {
            self.lvs_sync_daemon(lineno, rest.trim_end_matches(WHITESPACE));
        } else if WHOLE_LINE_MEDIA.contains(&directive) {
            self.whole_line_medium(lineno, directive, rest);
        } else if WHOLE_LINE_DIRECTIVES.contains(&directive) {
            self.whole_line(lineno, directive, rest.trim_end_matches(WHITESPACE));
        } else {
            let words: Vec<&str> = rest.split(DELIMS).filter(|w| !w.is_empty()).collect();
            if words.is_empty() {
                self.sink.warn(
                    lineno,
                    format!(
                        "'{directive}' has no value, so this line has no effect (Heartbeat ignores it too)"
                    ),
                );
            }
            for (i, word) in words.iter().enumerate() {
                let prev = if i > 0 { Some(words[i - 1]) } else { None };
                match self.option(lineno, directive, word, prev) {
                    Ok(()) => {
                        if OPTION_DIRECTIVES.contains(&directive) && !NOT_RECORDED.contains(&directive) {
                            self.record(directive, word);
                        }
                    }
                    Err(msg) => self.sink.error(lineno, format!("{directive}: {msg}")),
                }
            }
        }
    }

    fn record(&mut self, name: &str, value: &str) {
        match self.cfg.recorded.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.cfg.recorded.push((name.to_string(), value.to_string())),
        }
    }

    fn record_default(&mut self, name: &str, value: String) {
        if self.cfg.parameter(name).is_none() {
            self.cfg.recorded.push((name.to_string(), value));
        }
    }

    fn media_count(&self) -> usize {
        self.cfg.media.len() + self.cfg.ping_nodes.len()
    }

    fn check_media_room(&self) -> Result<(), String> {
        if self.media_count() >= MAX_MEDIA {
            Err(format!("too many media and ping nodes (Heartbeat allows at most {MAX_MEDIA})"))
        } else {
            Ok(())
        }
    }

    /// One word of an option directive or of a per-word medium.
    fn option(&mut self, line: usize, directive: &str, word: &str, prev: Option<&str>) -> Result<(), String> {
        let cfg = &mut self.cfg;
        match directive {
            "cluster" => cfg.cluster = word.to_string(),
            "quorum_server" => {
                // Heartbeat's set_quorum_server also overwrites the cluster name.
                cfg.quorum_server = Some(word.to_string());
                cfg.cluster = word.to_string();
            }
            "node" => self.add_node(line, word)?,
            "hopfudge" => cfg.hopfudge = int_in(word, 0, 255, "a whole number from 0 to 255")? as u8,
            "keepalive" => {
                let ms = time(word, prev)?;
                if ms == 0 {
                    return Err(format!("must be more than 0 ms, got '{word}'"));
                }
                cfg.keepalive_ms = ms;
            }
            "deadtime" => cfg.deadtime_ms = time(word, prev)?,
            "deadping" => self.deadping = Some(time(word, prev)?),
            "initdead" => self.initdead = Some(time(word, prev)?),
            "warntime" => {
                let ms = time(word, prev)?;
                if ms == 0 {
                    return Err(format!("must be more than 0 ms, got '{word}'"));
                }
                self.warntime = Some(ms);
            }
            "conn_logd_time" => {
                let ms = time(word, prev)?;
                if ms == 0 {
                    return Err(format!("must be more than 0 ms, got '{word}'"));
                }
                cfg.conn_logd_time_ms = Some(ms);
            }
            "watchdog" => {
                if let Some(first) = self.watchdog_line {
                    return Err(format!(
                        "the watchdog device may be given only once (first at line {first})"
                    ));
                }
                self.watchdog_line = Some(line);
                cfg.watchdog = Some(PathBuf::from(word));
            }
            "baud" => self.set_baud(line, word)?,
            "udpport" => self.set_udpport(line, word)?,
            "logfacility" => {
                if word == "none" {
                    cfg.logfacility = None;
                } else if FACILITIES.contains(&word) {
                    cfg.logfacility = Some(word.to_string());
                } else {
                    return Err(format!(
                        "expected a syslog facility (auth, authpriv, cron, daemon, ftp, kern, lpr, mail, news, syslog, user, uucp, local0 to local7) or none, got '{word}'"
                    ));
                }
            }
            "logfile" => cfg.logfile = Some(PathBuf::from(word)),
            "debugfile" => cfg.debugfile = Some(PathBuf::from(word)),
            "nice_failback" => {
                let on = boolean(word)?;
                let (now, as_written) =
                    if on { (AutoFailback::Off, "off") } else { (AutoFailback::Legacy, "legacy") };
                cfg.auto_failback = now;
                self.sink.warn(
                    line,
                    format!("nice_failback is obsolete: 'nice_failback {word}' is read as 'auto_failback {as_written}', as Heartbeat does; write auto_failback on, off or legacy instead"),
                );
            }
            "no_quorum_policy" => {
                let w = word.to_ascii_lowercase();
                if !["ignore", "freeze", "stop"].contains(&w.as_str()) {
                    return Err(format!("expected ignore, freeze or stop, got '{word}'"));
                }
                cfg.no_quorum_policy = w;
            }
            "auto_failback" => {
                cfg.auto_failback = match parse_bool(word) {
                    Some(true) => AutoFailback::On,
                    Some(false) => AutoFailback::Off,
                    None if word.eq_ignore_ascii_case("legacy") => AutoFailback::Legacy,
                    None => return Err(format!("expected on, off or legacy, got '{word}'")),
                }
            }
            "rtprio" => {
                cfg.rtprio = Some(int_in(
                    word,
                    1,
                    99,
                    "a realtime priority from 1 to 99 (the SCHED_FIFO range on Linux)",
                )? as i32)
            }
            "hbgenmethod" => {
                cfg.hbgenmethod = match word {
                    "file" => GenMethod::File,
                    "time" => GenMethod::Time,
                    _ => return Err(format!("expected file or time, got '{word}'")),
                }
            }
            "realtime" => cfg.realtime = boolean(word)?,
            "debug" => cfg.debug = int_in(word, 0, 255, "a debug level from 0 to 255")? as u8,
            "msgfmt" => {
                cfg.msgfmt = match word {
                    "classic" => MsgFmt::Classic,
                    "netstring" => MsgFmt::Netstring,
                    _ => return Err(format!("expected classic or netstring, got '{word}'")),
                }
            }
            "use_logd" => cfg.use_logd = Some(boolean(word)?),
            "use_apphbd" => cfg.use_apphbd = Some(boolean(word)?),
            "log_badpack" => cfg.log_badpack = boolean(word)?,
            "syslogmsgfmt" => cfg.syslogmsgfmt = boolean(word)?,
            "coredumps" => cfg.coredumps = boolean(word)?,
            "coreroot" => cfg.coreroot = Some(PathBuf::from(word)),
            "crm_daemon_dir" => {
                self.before_pacemaker()?;
                self.cfg.crm_daemon_dir = Some(PathBuf::from(word));
            }
            "crmd_spawns_pengine" => {
                self.before_pacemaker()?;
                self.cfg.crmd_spawns_pengine = Some(boolean(word)?);
            }
            "crm" | "pacemaker" => {
                if let Some(first) = self.pacemaker_line {
                    return Err(format!("crm/pacemaker may be given only once (first at line {first})"));
                }
                self.pacemaker_line = Some(line);
                let known = ["respawn", "minimal", "manual", "ccm-only", "valgrind"];
                if parse_bool(word).is_none() && !known.iter().any(|k| word.eq_ignore_ascii_case(k)) {
                    return Err(format!(
                        "expected a boolean, respawn, minimal, manual, ccm-only or valgrind, got '{word}'"
                    ));
                }
                self.cfg.crm = Some(word.to_string());
                if directive == "crm" {
                    // Heartbeat's `crm` is an alias that records the value as `pacemaker`.
                    self.record("pacemaker", word);
                }
            }
            "autojoin" => {
                cfg.autojoin = if word.eq_ignore_ascii_case("none") {
                    Autojoin::None_
                } else if word.eq_ignore_ascii_case("other") {
                    Autojoin::Other
                } else if word.eq_ignore_ascii_case("any") {
                    Autojoin::Any
                } else {
                    return Err(format!("expected none, other or any, got '{word}'"));
                }
            }
            "uuidfrom" => {
                cfg.uuidfrom = match word {
                    "file" => UuidFrom::File,
                    "nodename" => UuidFrom::Nodename,
                    _ => return Err(format!("expected file or nodename, got '{word}'")),
                }
            }
            "compression" => {
                if word != "zlib" && word != "bz2" {
                    return Err(format!(
                        "expected zlib or bz2 (the compression plugins Heartbeat ships), got '{word}'"
                    ));
                }
                cfg.compression = Some(word.to_string());
            }
            "compression_threshold" => {
                cfg.compression_threshold_kib =
                    Some(int_in(word, 1, i64::from(u32::MAX), "a size in KiB greater than 0")? as u64)
            }
            "traditional_compression" => cfg.traditional_compression = Some(boolean(word)?),
            "record_config_changes" => cfg.record_config_changes = Some(boolean(word)?),
            "record_pengine_inputs" => cfg.record_pengine_inputs = Some(boolean(word)?),
            "enable_config_writes" => cfg.enable_config_writes = Some(boolean(word)?),
            "env" => match word.split_once('=') {
                Some((name, value)) if !name.is_empty() => {
                    cfg.env.push((name.to_string(), value.to_string()))
                }
                _ => {
                    return Err(format!(
                        "expected NAME=value (exported as HA_NAME; no spaces or commas), got '{word}'"
                    ))
                }
            },
            "max_rexmit_delay" => {
                cfg.max_rexmit_delay_ms = int_in(
                    word,
                    1,
                    i64::from(u32::MAX),
                    "a whole number of milliseconds greater than 0 (no unit)",
                )? as u64
            }
            "memreserve" => {
                cfg.memreserve_kib =
                    Some(int_in(word, 1, i64::from(u32::MAX), "a size in KiB greater than 0")? as u64)
            }
            "bcast" => {
                self.check_media_room()?;
                self.udp_latch(line, |p| &mut p.latch_bcast);
                self.cfg.media.push(Medium::Bcast { iface: word.to_string() });
            }
            "serial" => {
                if !word.starts_with('/') {
                    return Err(format!(
                        "expected the full path of a serial device such as /dev/ttyS0, got '{word}'"
                    ));
                }
                self.check_media_room()?;
                let baud = match self.latch_serial {
                    Some(l) => l.value,
                    None => {
                        self.latch_serial = Some(Latch { value: self.cfg.baud, line });
                        self.cfg.baud
                    }
                };
                self.cfg.media.push(Medium::Serial { device: PathBuf::from(word), baud });
            }
            "ping" | "ping6" => {
                self.check_media_room()?;
                let kind = if directive == "ping" { PingKind::Ping } else { PingKind::Ping6 };
                self.cfg.ping_nodes.push(PingNode {
                    name: word.to_ascii_lowercase(),
                    addrs: vec![word.to_string()],
                    kind,
                });
            }
            other => return Err(format!("internal error: no handler for '{other}'")),
        }
        Ok(())
    }

    fn add_node(&mut self, line: usize, word: &str) -> Result<(), String> {
        let name = word.to_ascii_lowercase();
        if name.len() >= HOSTLENG {
            return Err(format!("node name '{word}' is longer than {} characters", HOSTLENG - 1));
        }
        if let Some(first) = self.node_lines.get(&name) {
            self.sink.warn(
                line,
                format!("node '{name}' is already listed at line {first}; the repeat is ignored"),
            );
            return Ok(());
        }
        if self.cfg.nodes.len() >= MAX_NODES {
            return Err(format!("too many nodes (Heartbeat allows at most {MAX_NODES})"));
        }
        self.node_lines.insert(name.clone(), line);
        self.cfg.nodes.push(name);
        Ok(())
    }

    fn before_pacemaker(&self) -> Result<(), String> {
        match self.pacemaker_line {
            Some(l) => Err(format!("must come before the crm/pacemaker directive (line {l})")),
            None => Ok(()),
        }
    }

    fn set_baud(&mut self, line: usize, word: &str) -> Result<(), String> {
        if let Some(first) = self.baud_line {
            return Err(format!("baud may be given only once (first at line {first})"));
        }
        self.baud_line = Some(line);
        let rate = parse_int(word)
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| BAUD_RATES.contains(v))
            .ok_or_else(|| {
                format!("expected one of 9600, 19200, 38400, 57600, 115200, 230400, 460800, got '{word}'")
            })?;
        self.cfg.baud = rate;
        if let Some(l) = self.latch_serial {
            self.sink.warn(
                line,
                format!(
                    "baud {rate} comes after the serial line at line {}, which already uses {} baud; \
                     as in Heartbeat, serial media keep {} baud (put baud before the serial lines)",
                    l.line, l.value, l.value
                ),
            );
        }
        Ok(())
    }

    fn set_udpport(&mut self, line: usize, word: &str) -> Result<(), String> {
        let port = parse_int(word)
            .and_then(|v| u16::try_from(v).ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("expected a port number from 1 to 65535, got '{word}'"))?;
        self.cfg.udpport = port;
        self.udpport_set = true;
        let mut late = Vec::new();
        for (kind, latch) in
            [("bcast", self.latch_bcast), ("ucast", self.latch_ucast), ("ucast6", self.latch_ucast6)]
        {
            if let Some(l) = latch {
                late.push(format!("{kind} at line {} keeps port {}", l.line, l.value));
            }
        }
        if !late.is_empty() {
            self.sink.warn(
                line,
                format!(
                    "udpport {port} comes after media that already took their port ({}); \
                     Heartbeat reads udpport when the first medium of a kind is parsed, \
                     so put udpport above the bcast/ucast lines",
                    late.join(", ")
                ),
            );
        }
        Ok(())
    }

    /// Returns the port a new bcast/ucast/ucast6 medium uses, latching it on first use.
    fn udp_latch(&mut self, line: usize, slot: fn(&mut Self) -> &mut Option<Latch<u16>>) -> u16 {
        let current = self.cfg.udpport;
        let latch = slot(self);
        match latch {
            Some(l) => l.value,
            None => {
                *latch = Some(Latch { value: current, line });
                current
            }
        }
    }

    fn whole_line(&mut self, line: usize, directive: &str, rest: &str) {
        let words: Vec<&str> = rest.split(WHITESPACE).filter(|w| !w.is_empty()).collect();
        let result: Result<(), String> = match directive {
            "stonith" => {
                if words.is_empty() {
                    Err("expected 'stonith TYPE CONFIGFILE', got nothing".to_string())
                } else if self.cfg.stonith.is_some() {
                    // Heartbeat keeps only the last device ("This will have to change to a list").
                    self.sink.warn(
                        line,
                        "stonith given again: as in Heartbeat, this line replaces the earlier one",
                    );
                    self.cfg.stonith = Some(rest.to_string());
                    Ok(())
                } else {
                    self.cfg.stonith = Some(rest.to_string());
                    Ok(())
                }
            }
            "stonith_host" => {
                if words.len() < 2 {
                    Err(format!("expected 'stonith_host HOST|* TYPE PARAMS...', got '{rest}'"))
                } else {
                    self.cfg.stonith_host.push(rest.to_string());
                    Ok(())
                }
            }
            "apiauth" => self.apiauth(line, rest, &words),
            "respawn" | "failfast" => {
                let usage = format!("expected '{directive} USER /full/path/to/program [args...]'");
                match words.first() {
                    None => Err(format!("{usage}, got nothing")),
                    Some(user) => {
                        let after_user = rest[user.len()..].trim_start_matches(WHITESPACE);
                        if !after_user.starts_with('/') {
                            Err(format!("{usage}; the program must be a full path, got '{after_user}'"))
                        } else {
                            let r = Respawn { user: user.to_string(), command: after_user.to_string(), line };
                            if directive == "respawn" {
                                self.cfg.respawn.push(r);
                            } else {
                                self.cfg.failfast.push(r);
                            }
                            Ok(())
                        }
                    }
                }
            }
            other => Err(format!("internal error: no handler for '{other}'")),
        };
        if let Err(msg) = result {
            self.sink.error(line, format!("{directive}: {msg}"));
        }
    }

    /// `notify /path/to/cmd [args]`: the whole rest of the line is the command.
    fn notify(&mut self, line: usize, rest: &str) {
        let usage = "notify: expected 'notify /full/path/to/program [args...]'";
        match rest.split(WHITESPACE).find(|w| !w.is_empty()) {
            None => self.sink.error(line, format!("{usage}, got nothing")),
            Some(p) if !p.starts_with('/') => {
                self.sink.error(line, format!("{usage}; the program must be a full path, got '{p}'"))
            }
            Some(_) => self.cfg.notify.push(crate::model::Notify { command: rest.to_string(), line }),
        }
    }

    fn lvs_sync_daemon(&mut self, line: usize, rest: &str) {
        match crate::model::LvsSync::parse(rest, line) {
            Ok(l) => {
                if self.cfg.lvs_sync.is_some() {
                    self.sink
                        .error(line, "lvs_sync_daemon: given twice; one sync daemon per node".to_string());
                } else {
                    self.cfg.lvs_sync = Some(l);
                }
            }
            Err(e) => self.sink.error(line, format!("lvs_sync_daemon: {e}")),
        }
    }

    fn apiauth(&mut self, line: usize, rest: &str, words: &[&str]) -> Result<(), String> {
        let usage = "expected 'apiauth CLIENT [uid=user,...] [gid=group,...]' with a uid or gid list";
        let Some(client) = words.first() else {
            return Err(format!("{usage}, got nothing"));
        };
        if client.len() >= 64 {
            return Err(format!("client name '{client}' is too long"));
        }
        let mut uid = false;
        let mut gid = false;
        for w in &words[1..] {
            let (seen, list) = if let Some(l) = w.strip_prefix("uid=") {
                (&mut uid, l)
            } else if let Some(l) = w.strip_prefix("gid=") {
                (&mut gid, l)
            } else {
                return Err(format!("{usage}; '{w}' is neither uid=... nor gid=..."));
            };
            if *seen {
                return Err(format!("{usage}; '{w}' repeats a uid or gid list"));
            }
            if list.is_empty() {
                return Err(format!("{usage}; '{w}' has an empty list"));
            }
            *seen = true;
        }
        if !uid && !gid {
            return Err(format!("{usage}, got '{rest}'"));
        }
        if let Some(first) = self.apiauth_clients.get(*client) {
            return Err(format!("duplicate apiauth for client '{client}' (first at line {first})"));
        }
        self.apiauth_clients.insert(client.to_string(), line);
        self.cfg.apiauth.push(rest.to_string());
        Ok(())
    }

    fn whole_line_medium(&mut self, line: usize, directive: &str, rest: &str) {
        let words: Vec<&str> = rest.split(WHITESPACE).filter(|w| !w.is_empty()).collect();
        if let Err(msg) = self.check_media_room() {
            self.sink.error(line, format!("{directive}: {msg}"));
            return;
        }
        let result = match directive {
            "mcast" => self.mcast(line, &words),
            "mcast6" => self.mcast6(line, &words),
            "ucast" => self.ucast(line, directive, &words),
            "ucast6" => self.ucast(line, directive, &words),
            "ping_group" => self.ping_group(&words),
            other => Err(format!("internal error: no handler for '{other}'")),
        };
        if let Err(msg) = result {
            self.sink.error(line, format!("{directive}: {msg}"));
        }
    }

    fn extra_words(&mut self, line: usize, directive: &str, after: &str, extra: &[&str]) {
        if !extra.is_empty() {
            self.sink.warn(
                line,
                format!(
                    "{directive}: the words after {after} ('{}') are ignored, as Heartbeat ignores them",
                    extra.join(" ")
                ),
            );
        }
    }

    fn mcast(&mut self, line: usize, w: &[&str]) -> Result<(), String> {
        const USAGE: &str = "expected 'mcast IFACE GROUP PORT TTL LOOP' (e.g. mcast eth0 225.0.0.1 694 1 0)";
        if w.is_empty() {
            self.sink.warn(line, "mcast with no interface defines no medium (Heartbeat ignores it too)");
            return Ok(());
        }
        let names = ["GROUP", "PORT", "TTL", "LOOP"];
        if w.len() < 5 {
            return Err(format!("{USAGE}; {} is missing", names[w.len() - 1]));
        }
        let group: Ipv4Addr = w[1].parse().ok().filter(|a: &Ipv4Addr| a.is_multicast()).ok_or_else(|| {
            format!(
                "GROUP must be an IPv4 multicast (class D, 224.0.0.0 to 239.255.255.255) address, got '{}'",
                w[1]
            )
        })?;
        let port = port_word(w[2])
            .ok_or_else(|| format!("PORT must be a port number from 1 to 65535, got '{}'", w[2]))?;
        let ttl = parse_int(w[3])
            .filter(|t| (0..=4).contains(t))
            .ok_or_else(|| {
                format!(
                    "TTL must be from 0 to 4 (Heartbeat's mcast plugin refuses larger values, although its man page says 0-255), got '{}'",
                    w[3]
                )
            })? as u8;
        let looped = loop_word(w[4]).ok_or_else(|| format!("LOOP must be 0 or 1, got '{}'", w[4]))?;
        self.extra_words(line, "mcast", "LOOP", &w[5..]);
        self.cfg.media.push(Medium::Mcast { iface: w[0].to_string(), group, port, ttl, looped });
        Ok(())
    }

    fn mcast6(&mut self, line: usize, w: &[&str]) -> Result<(), String> {
        const USAGE: &str =
            "expected 'mcast6 IFACE GROUP PORT HOPS LOOP' (e.g. mcast6 eth0 ff02::694 694 1 0)";
        let names = ["IFACE", "GROUP", "PORT", "HOPS", "LOOP"];
        if w.len() < 5 {
            return Err(format!("{USAGE}; {} is missing", names[w.len()]));
        }
        let group: Ipv6Addr = w[1]
            .parse()
            .ok()
            .filter(valid_mcast6_group)
            .ok_or_else(|| {
                format!(
                    "GROUP must be an IPv6 multicast address with link, admin, site or organization scope (e.g. ff02::694), got '{}'",
                    w[1]
                )
            })?;
        let port = port_word(w[2])
            .ok_or_else(|| format!("PORT must be a port number from 1 to 65535, got '{}'", w[2]))?;
        let hops = parse_int(w[3]).filter(|t| (0..=4).contains(t)).ok_or_else(|| {
            format!(
                "HOPS must be from 0 to 4 (Heartbeat's mcast6 plugin refuses larger values), got '{}'",
                w[3]
            )
        })? as u8;
        loop_word(w[4]).ok_or_else(|| format!("LOOP must be 0 or 1, got '{}'", w[4]))?;
        self.extra_words(line, "mcast6", "LOOP", &w[5..]);
        self.cfg.media.push(Medium::Mcast6 { iface: w[0].to_string(), group, port, hops });
        Ok(())
    }

    fn ucast(&mut self, line: usize, directive: &str, w: &[&str]) -> Result<(), String> {
        let v6 = directive == "ucast6";
        let usage = if v6 {
            "expected 'ucast6 IFACE PEER6[%scope]'"
        } else {
            "expected 'ucast IFACE PEER' (PEER is an address or host name)"
        };
        if w.is_empty() {
            if v6 {
                return Err(format!("{usage}; IFACE is missing"));
            }
            self.sink.warn(line, "ucast with no interface defines no medium (Heartbeat ignores it too)");
            return Ok(());
        }
        if w.len() < 2 {
            return Err(format!("{usage}; PEER is missing"));
        }
        if v6 && !valid_ucast6_peer(w[1]) {
            return Err(format!(
                "PEER6 must be an IPv6 unicast address (not multicast, unspecified or loopback), got '{}'",
                w[1]
            ));
        }
        self.extra_words(line, directive, "PEER (only one peer per line is used)", &w[2..]);
        let (iface, peer) = (w[0].to_string(), w[1].to_string());
        if v6 {
            self.udp_latch(line, |p| &mut p.latch_ucast6);
            self.cfg.media.push(Medium::Ucast6 { iface, peer });
        } else {
            self.udp_latch(line, |p| &mut p.latch_ucast);
            self.cfg.media.push(Medium::Ucast { iface, peer });
        }
        Ok(())
    }

    fn ping_group(&mut self, w: &[&str]) -> Result<(), String> {
        const USAGE: &str = "expected 'ping_group NAME HOST [HOST...]'";
        match w {
            [] => Err(format!("{USAGE}, got nothing")),
            [name] => Err(format!("{USAGE}; group '{name}' has no hosts")),
            [name, hosts @ ..] => {
                self.cfg.ping_nodes.push(PingNode {
                    name: name.to_ascii_lowercase(),
                    addrs: hosts.iter().map(|h| h.to_string()).collect(),
                    kind: PingKind::Group,
                });
                Ok(())
            }
        }
    }

    fn finish(mut self) -> (HaCf, Vec<Diagnostic>, Vec<Diagnostic>) {
        // Heartbeat's init_config: fixed defaults, then derived values, recorded as strings.
        for (name, value) in RECORDED_DEFAULTS {
            self.record_default(name, value.to_string());
        }
        self.record_default("debug", "0".to_string());

        let deadtime = self.cfg.deadtime_ms;
        self.cfg.warntime_ms = match self.warntime {
            Some(ms) => ms,
            None => {
                self.record_default("warntime", format!("{}ms", deadtime / 2));
                deadtime / 2
            }
        };
        self.cfg.initdead_ms = match self.initdead {
            Some(ms) => ms,
            None => {
                let ms = derived_initdead(deadtime);
                self.record_default("initdead", format!("{ms}ms"));
                ms
            }
        };
        self.cfg.deadping_ms = match self.deadping {
            Some(ms) => ms,
            None => {
                self.record_default("deadping", format!("{deadtime}ms"));
                deadtime
            }
        };
        if !self.udpport_set {
            self.record_default("udpport", DEFAULT_UDPPORT.to_string());
        }
        let no_log =
            self.cfg.logfile.is_none() && self.cfg.debugfile.is_none() && self.cfg.logfacility.is_none();
        if no_log && self.cfg.use_logd.is_none() {
            self.record_default("use_logd", "yes".to_string());
        }
        if self.cfg.logfacility.is_some() {
            self.record_default("logfile", "/dev/null".to_string());
            self.record_default("debugfile", "/dev/null".to_string());
        }
        self.cfg.latched_ports.bcast = self.latch_bcast.map(|l| l.value);
        self.cfg.latched_ports.ucast = self.latch_ucast.map(|l| l.value);
        self.cfg.latched_ports.ucast6 = self.latch_ucast6.map(|l| l.value);
        (self.cfg, self.sink.errors, self.sink.warnings)
    }
}

/// Heartbeat's initdead default: deadtime if deadtime > 10 s; 12 s if deadtime < 6 s; else
/// twice deadtime.
pub fn derived_initdead(deadtime_ms: u64) -> u64 {
    if deadtime_ms > 10_000 {
        deadtime_ms
    } else if deadtime_ms < 6000 {
        12_000
    } else {
        2 * deadtime_ms
    }
}

fn time(word: &str, prev: Option<&str>) -> Result<u64, String> {
    parse_time_ms(word).ok_or_else(|| {
        let unit_alone = {
            let l = word.to_ascii_lowercase();
            ["ms", "us", "s", "sec", "msec", "usec"].contains(&l.as_str())
        };
        let after_number = prev.is_some_and(|p| parse_time_ms(p).is_some());
        if unit_alone && after_number {
            let p = prev.unwrap_or_default();
            format!(
                "{TIME_EXPECTED}, got '{word}' (the unit must be attached to the number: write {p}{word})"
            )
        } else {
            format!("{TIME_EXPECTED}, got '{word}'")
        }
    })
}

fn boolean(word: &str) -> Result<bool, String> {
    parse_bool(word).ok_or_else(|| format!("{BOOL_EXPECTED}, got '{word}'"))
}

fn int_in(word: &str, lo: i64, hi: i64, what: &str) -> Result<i64, String> {
    parse_int(word).filter(|v| (lo..=hi).contains(v)).ok_or_else(|| format!("expected {what}, got '{word}'"))
}

fn port_word(word: &str) -> Option<u16> {
    parse_int(word).and_then(|v| u16::try_from(v).ok()).filter(|v| *v > 0)
}

fn loop_word(word: &str) -> Option<bool> {
    match parse_int(word) {
        Some(0) => Some(false),
        Some(1) => Some(true),
        _ => None,
    }
}

/// Heartbeat's mcast6 `is_valid_mcast6_addr`: ff00::/8, no flags other than "transient",
/// link/admin/site/organization scope, and not all-zero after the scope byte.
fn valid_mcast6_group(a: &Ipv6Addr) -> bool {
    let o = a.octets();
    o[0] == 0xff
        && o[1] & 0xe0 == 0
        && matches!(o[1] & 0x0f, 0x2 | 0x4 | 0x5 | 0x8)
        && o[2..].iter().any(|b| *b != 0)
}

/// Heartbeat's ucast6 `is_valid_ucast6_addr`: an IPv6 address (an optional `%scope` is
/// stripped first) that is not multicast, unspecified or loopback.
fn valid_ucast6_peer(s: &str) -> bool {
    let addr = s.split('%').next().unwrap_or("");
    match addr.parse::<Ipv6Addr>() {
        Ok(a) => !(a.is_multicast() || a.is_unspecified() || a.is_loopback()),
        Err(_) => false,
    }
}

fn unknown_directive_message(directive: &str) -> String {
    let mut msg = format!("unknown directive '{directive}' (Heartbeat 3.0.6 would refuse it too)");
    if let Some(name) = all_directives().find(|d| d.eq_ignore_ascii_case(directive)) {
        msg.push_str(&format!("; did you mean '{name}'?"));
        return msg;
    }
    match directive {
        "hbaping" | "rds" | "tipc" => {
            msg.push_str("; its media plugin exists in Heartbeat's source but is not built");
            return msg;
        }
        "normalpoll" => {
            msg.push_str("; it is compiled out of Heartbeat 3.0.6");
            return msg;
        }
        _ => {}
    }
    if let Some((name, value)) = directive.split_once(['=', ':']) {
        if is_legal_directive(name) {
            msg.push_str(&format!("; did you mean '{name} {value}'? (values are separated by spaces)"));
            return msg;
        }
    }
    if let Some(name) = crate::diag::closest(directive, all_directives()) {
        msg.push_str(&format!("; did you mean '{name}'?"));
    }
    msg
}

/// Heartbeat's start conditions that concern ha.cf alone (spec §1.1, `init_config`):
/// returns `(errors, warnings)`. [`crate::load_dir`] runs it after parsing.
pub fn check_start(file: &Path, cfg: &HaCf) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut s = Sink::new(file);
    let line = |d: &str| cfg.line_of(d).unwrap_or(0);

    if cfg.media.is_empty() && cfg.ping_nodes.is_empty() {
        s.error(
            0,
            "no heartbeat media: add a bcast, mcast, ucast or serial line (Heartbeat refuses to start without one)",
        );
    }
    if cfg.nodes.is_empty() && cfg.autojoin != Autojoin::Any {
        s.error(
            0,
            "no node directives: list every cluster member, e.g. 'node alpha beta' (names as printed by uname -n)",
        );
    }
    if cfg.deadtime_ms <= cfg.keepalive_ms.saturating_mul(2) {
        let at = cfg.line_of("deadtime").or(cfg.line_of("keepalive")).unwrap_or(0);
        s.error(
            at,
            format!(
                "deadtime ({} ms) must be more than twice keepalive ({} ms)",
                cfg.deadtime_ms, cfg.keepalive_ms
            ),
        );
    }
    if cfg.initdead_ms < cfg.deadtime_ms {
        s.error(
            line("initdead"),
            format!(
                "initdead ({} ms) must not be smaller than deadtime ({} ms)",
                cfg.initdead_ms, cfg.deadtime_ms
            ),
        );
    } else if cfg.initdead_ms < 10_000 {
        s.warn(
            line("initdead"),
            format!(
                "initdead ({} ms) may be too small: it covers slow network start-up and should be at least deadtime and at least 10 s",
                cfg.initdead_ms
            ),
        );
    }
    if cfg.line_of("deadping").is_some() && cfg.deadping_ms <= cfg.keepalive_ms.saturating_mul(2) {
        s.error(
            line("deadping"),
            format!(
                "deadping ({} ms) must be more than twice keepalive ({} ms)",
                cfg.deadping_ms, cfg.keepalive_ms
            ),
        );
    }
    let no_log = cfg.logfile.is_none() && cfg.debugfile.is_none() && cfg.logfacility.is_none();
    if no_log {
        if cfg.use_logd == Some(false) {
            s.error(
                line("use_logd"),
                "no logfile, debugfile or logfacility and use_logd is off: Heartbeat refuses to start without somewhere to log",
            );
        } else {
            s.warn(
                0,
                "no logfile, debugfile or logfacility: Heartbeat would log through ha_logd, but halo has no logd, so it logs to stderr only",
            );
        }
    }
    if cfg.auto_failback == AutoFailback::Legacy && !cfg.pacemaker_enabled() {
        s.warn(
            line("auto_failback"),
            "Deprecated 'legacy' auto_failback option selected (the default when auto_failback is not set); set auto_failback on or off",
        );
    }
    (s.errors, s.warnings)
}

#[cfg(test)]
mod tests;
