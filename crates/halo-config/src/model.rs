//! The typed model every legacy file is turned into.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Everything read from one configuration directory (`/etc/ha.d` or a copy of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// The directory the files were read from.
    pub dir: PathBuf,
    pub ha_cf: HaCf,
    pub authkeys: AuthKeys,
    /// `None` when the directory has no `haresources` file.
    pub haresources: Option<Haresources>,
    /// First line of `nodeinfo` (without its newline) when that file exists and the line ends
    /// with a newline; it overrides `uname -n` as the local node name, as in Heartbeat.
    pub nodeinfo: Option<String>,
    /// What only `halo.toml` can say about resources: several preferred nodes per group,
    /// group names, clones, order and colocation. Empty for a legacy directory.
    pub placement: Placement,
    /// The director (`[director]` of halo.toml: ldirectord.cf inline or by file). `None` for a
    /// legacy directory, where the `ldirectord[::FILE]` resource reads its file when it starts.
    pub director: Option<Director>,
}

impl Model {
    /// The nodes a group prefers, most preferred first: halo.toml's `nodes`, or the one node
    /// of its haresources line.
    pub fn preferred_nodes(&self, key: &str) -> Vec<String> {
        if let Some(p) = self.placement.groups.iter().find(|g| g.key == key) {
            return p.nodes.clone();
        }
        self.haresources.as_ref().and_then(|h| h.group(key)).map(|g| vec![g.node.clone()]).unwrap_or_default()
    }

    /// The name this host goes by in the cluster: the `nodeinfo` override if present, else
    /// `uname` (the caller passes `uname -n`), lower-cased as Heartbeat does.
    pub fn local_node_name(&self, uname: &str) -> String {
        self.nodeinfo.as_deref().unwrap_or(uname).to_ascii_lowercase()
    }

    /// Heartbeat refuses to start when the local node is not listed in ha.cf (unless
    /// `autojoin any`, where it adds itself).
    pub fn check_local_node(&self, name: &str) -> Result<(), String> {
        let name = name.to_ascii_lowercase();
        if self.ha_cf.autojoin == Autojoin::Any || self.ha_cf.nodes.contains(&name) {
            return Ok(());
        }
        let listed =
            if self.ha_cf.nodes.is_empty() { "none".to_string() } else { self.ha_cf.nodes.join(", ") };
        Err(format!("node {name} is not listed in {}/ha.cf (node directives: {listed})", self.dir.display()))
    }
}

/// `ha.cf`, with Heartbeat's defaults and derived values filled in (spec §1.4, §1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaCf {
    /// Normal cluster nodes, lower-cased, in config order, duplicates removed.
    pub nodes: Vec<String>,
    pub keepalive_ms: u64,
    pub deadtime_ms: u64,
    /// `deadtime / 2` unless set.
    pub warntime_ms: u64,
    /// Unless set: deadtime if deadtime > 10 s; 12 s if deadtime < 6 s; else 2 × deadtime.
    pub initdead_ms: u64,
    /// Deadtime of ping nodes; `deadtime` unless set.
    pub deadping_ms: u64,
    /// Final value of `udpport` (694 unless set). Media read the value current when the first
    /// medium of their kind was parsed, so use [`HaCf::port_of`] for a medium's real port.
    pub udpport: u16,
    /// `baud` (19200 unless set). Each `Serial` medium carries the speed it actually uses.
    pub baud: u32,
    /// Heartbeat media in config order (ping nodes are in `ping_nodes`).
    pub media: Vec<Medium>,
    pub ping_nodes: Vec<PingNode>,
    pub auto_failback: AutoFailback,
    /// halo extension (`no_quorum_policy ignore|freeze|stop`): what a node without quorum
    /// does. `ignore` (Heartbeat's behaviour) when not set.
    pub no_quorum_policy: String,
    pub logfile: Option<PathBuf>,
    pub debugfile: Option<PathBuf>,
    /// Syslog facility name; `None` when unset or `none`.
    pub logfacility: Option<String>,
    /// `use_logd` as written (`None` when absent).
    pub use_logd: Option<bool>,
    pub syslogmsgfmt: bool,
    pub debug: u8,
    pub hopfudge: u8,
    pub max_rexmit_delay_ms: u64,
    pub msgfmt: MsgFmt,
    pub hbgenmethod: GenMethod,
    pub uuidfrom: UuidFrom,
    pub realtime: bool,
    pub rtprio: Option<i32>,
    /// `memreserve` in KiB when set (Heartbeat's default is 6500).
    pub memreserve_kib: Option<u64>,
    pub respawn: Vec<Respawn>,
    pub failfast: Vec<Respawn>,
    /// halo extension (`notify /path/to/cmd [args]`, may repeat): commands run on cluster
    /// events (node dead/up, group start/stop, failover, fencing, quorum, reload), one at a
    /// time in event order, with the event in `HALO_*` environment variables.
    pub notify: Vec<Notify>,
    /// halo extension (`lvs_sync_daemon IFACE [id N] [port P] [group ADDR] [interval S]`):
    /// director connection sync.
    pub lvs_sync: Option<LvsSync>,
    /// `stonith TYPE CONFIGFILE`, the rest of the line as written.
    pub stonith: Option<String>,
    /// Each `stonith_host` line, the rest of the line as written.
    pub stonith_host: Vec<String>,
    /// Each `apiauth` line, the rest of the line as written (`CLIENT uid=.. gid=..`).
    pub apiauth: Vec<String>,
    /// Value of `crm` / `pacemaker` as written (see [`HaCf::pacemaker_enabled`]).
    pub crm: Option<String>,
    pub autojoin: Autojoin,
    pub cluster: String,
    pub watchdog: Option<PathBuf>,
    /// `env NAME=value` pairs; Heartbeat exports each as `HA_<NAME>=value`.
    pub env: Vec<(String, String)>,
    pub coredumps: bool,
    pub log_badpack: bool,
    /// Directives halo accepts without acting on them yet, kept with their values as written.
    pub conn_logd_time_ms: Option<u64>,
    pub use_apphbd: Option<bool>,
    pub coreroot: Option<PathBuf>,
    pub crm_daemon_dir: Option<PathBuf>,
    pub crmd_spawns_pengine: Option<bool>,
    pub compression: Option<String>,
    pub compression_threshold_kib: Option<u64>,
    pub traditional_compression: Option<bool>,
    pub record_config_changes: Option<bool>,
    pub record_pengine_inputs: Option<bool>,
    pub enable_config_writes: Option<bool>,
    pub quorum_server: Option<String>,
    /// The `udpport` each UDP media kind latched when its first medium was parsed.
    pub latched_ports: LatchedPorts,
    /// Every option directive's value as written, as Heartbeat records it for
    /// `cl_status hbparameter` and `HA_<name>` variables; later values replace earlier ones.
    /// Defaults and derived values are recorded the way Heartbeat's `init_config` does
    /// (`keepalive 1000ms`, `warntime 15000ms`, `udpport 694`, ...).
    pub recorded: Vec<(String, String)>,
    /// The first line each directive appeared on.
    pub directive_lines: Vec<(String, usize)>,
}

impl Default for HaCf {
    fn default() -> Self {
        HaCf {
            nodes: Vec::new(),
            keepalive_ms: 1000,
            deadtime_ms: 30000,
            warntime_ms: 15000,
            initdead_ms: 30000,
            deadping_ms: 30000,
            udpport: DEFAULT_UDPPORT,
            baud: DEFAULT_BAUD,
            media: Vec::new(),
            ping_nodes: Vec::new(),
            auto_failback: AutoFailback::Legacy,
            no_quorum_policy: "ignore".to_string(),
            logfile: None,
            debugfile: None,
            logfacility: None,
            use_logd: None,
            syslogmsgfmt: true,
            debug: 0,
            hopfudge: 1,
            max_rexmit_delay_ms: 250,
            msgfmt: MsgFmt::Classic,
            hbgenmethod: GenMethod::File,
            uuidfrom: UuidFrom::File,
            realtime: true,
            rtprio: None,
            memreserve_kib: None,
            respawn: Vec::new(),
            failfast: Vec::new(),
            notify: Vec::new(),
            lvs_sync: None,
            stonith: None,
            stonith_host: Vec::new(),
            apiauth: Vec::new(),
            crm: None,
            autojoin: Autojoin::None_,
            cluster: "linux-ha".to_string(),
            watchdog: None,
            env: Vec::new(),
            coredumps: true,
            log_badpack: true,
            conn_logd_time_ms: None,
            use_apphbd: None,
            coreroot: None,
            crm_daemon_dir: None,
            crmd_spawns_pengine: None,
            compression: None,
            compression_threshold_kib: None,
            traditional_compression: None,
            record_config_changes: None,
            record_pengine_inputs: None,
            enable_config_writes: None,
            quorum_server: None,
            latched_ports: LatchedPorts::default(),
            recorded: Vec::new(),
            directive_lines: Vec::new(),
        }
    }
}

/// Heartbeat's port when neither `udpport` nor `/etc/services` says otherwise.
pub const DEFAULT_UDPPORT: u16 = 694;
/// Heartbeat's serial speed when `baud` is not given.
pub const DEFAULT_BAUD: u32 = 19200;

impl HaCf {
    /// The recorded (as written, or default/derived) value of a parameter, as
    /// `cl_status hbparameter -p NAME` prints it. `node` is never recorded.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.recorded.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The line a directive first appeared on, if it appeared at all.
    pub fn line_of(&self, directive: &str) -> Option<usize> {
        self.directive_lines.iter().find(|(n, _)| n == directive).map(|(_, l)| *l)
    }

    /// True when `crm`/`pacemaker` turns Pacemaker on, which disables haresources mode.
    pub fn pacemaker_enabled(&self) -> bool {
        match self.crm.as_deref() {
            None => false,
            Some(v) => crate::time::parse_bool(v).unwrap_or(true),
        }
    }

    /// The UDP port a medium really uses. Heartbeat's bcast/ucast/ucast6 plugins read
    /// `udpport` once, when the first medium of their kind is parsed; mcast carries its own.
    pub fn port_of(&self, medium: &Medium) -> Option<u16> {
        match medium {
            Medium::Bcast { .. } => Some(self.latched_ports.bcast.unwrap_or(self.udpport)),
            Medium::Ucast { .. } => Some(self.latched_ports.ucast.unwrap_or(self.udpport)),
            Medium::Ucast6 { .. } => Some(self.latched_ports.ucast6.unwrap_or(self.udpport)),
            Medium::Mcast { port, .. } | Medium::Mcast6 { port, .. } => Some(*port),
            Medium::Serial { .. } => None,
        }
    }
}

/// The `udpport` value each UDP plugin took when its first medium was parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatchedPorts {
    pub bcast: Option<u16>,
    pub ucast: Option<u16>,
    pub ucast6: Option<u16>,
}

/// One heartbeat path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium {
    Bcast { iface: String },
    Mcast { iface: String, group: Ipv4Addr, port: u16, ttl: u8, looped: bool },
    Mcast6 { iface: String, group: Ipv6Addr, port: u16, hops: u8 },
    Ucast { iface: String, peer: String },
    Ucast6 { iface: String, peer: String },
    Serial { device: PathBuf, baud: u32 },
}

impl Medium {
    /// The link name Heartbeat reports (`cl_status listhblinks`, process titles): the
    /// interface for IP media, the device path for serial.
    pub fn link_name(&self) -> String {
        match self {
            Medium::Bcast { iface }
            | Medium::Mcast { iface, .. }
            | Medium::Mcast6 { iface, .. }
            | Medium::Ucast { iface, .. }
            | Medium::Ucast6 { iface, .. } => iface.clone(),
            Medium::Serial { device, .. } => device.display().to_string(),
        }
    }

    /// The ha.cf directive (and Heartbeat plugin) name of this medium.
    pub fn kind(&self) -> &'static str {
        match self {
            Medium::Bcast { .. } => "bcast",
            Medium::Mcast { .. } => "mcast",
            Medium::Mcast6 { .. } => "mcast6",
            Medium::Ucast { .. } => "ucast",
            Medium::Ucast6 { .. } => "ucast6",
            Medium::Serial { .. } => "serial",
        }
    }

    /// How messages name this medium: its ha.cf words, e.g. `ucast eth0 nodeb`.
    pub fn describe(&self) -> String {
        match self {
            Medium::Bcast { iface } => format!("bcast {iface}"),
            Medium::Mcast { iface, group, .. } => format!("mcast {iface} {group}"),
            Medium::Mcast6 { iface, group, .. } => format!("mcast6 {iface} {group}"),
            Medium::Ucast { iface, peer } => format!("ucast {iface} {peer}"),
            Medium::Ucast6 { iface, peer } => format!("ucast6 {iface} {peer}"),
            Medium::Serial { device, .. } => format!("serial {}", device.display()),
        }
    }
}

/// A ping node: a pseudo-member that is "up" while it answers ICMP echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingNode {
    /// Node name (lower-cased): the address itself for `ping`/`ping6`, the group name for
    /// `ping_group`.
    pub name: String,
    pub addrs: Vec<String>,
    pub kind: PingKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingKind {
    Ping,
    Ping6,
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoFailback {
    On,
    Off,
    Legacy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgFmt {
    Classic,
    Netstring,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenMethod {
    File,
    Time,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UuidFrom {
    File,
    Nodename,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autojoin {
    None_,
    Other,
    Any,
}

/// A `respawn` or `failfast` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respawn {
    pub user: String,
    /// The command line as written (absolute program path, then its arguments); Heartbeat
    /// runs it as `/bin/sh -c "exec <command>"`.
    pub command: String,
    pub line: usize,
}

impl Respawn {
    /// The program path: the first word of `command`.
    pub fn program(&self) -> &str {
        self.command.split_whitespace().next().unwrap_or("")
    }
}

/// Director connection sync (ha.cf `lvs_sync_daemon`, halo.toml `lvs_sync_daemon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvsSync {
    pub interface: String,
    /// `syncid` as ipvsadm's: directors of different clusters on one segment ignore each
    /// other.
    pub syncid: u8,
    pub group: std::net::Ipv4Addr,
    pub port: u16,
    pub interval_ms: u64,
    pub line: usize,
}

impl LvsSync {
    /// IPVS's sync multicast group and port.
    pub const DEFAULT_GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(224, 0, 0, 81);
    pub const DEFAULT_PORT: u16 = 8848;

    /// `IFACE [id N] [port P] [group ADDR] [interval S]`.
    pub fn parse(rest: &str, line: usize) -> Result<LvsSync, String> {
        let usage =
            "expected 'lvs_sync_daemon IFACE [id 0-255] [port P] [group MULTICAST-ADDR] [interval SECONDS]'";
        let words: Vec<&str> = rest.split_whitespace().collect();
        let Some(iface) = words.first() else { return Err(format!("{usage}, got nothing")) };
        if iface.len() > 15 || iface.contains('/') {
            return Err(format!("{usage}; '{iface}' is not an interface name"));
        }
        let mut l = LvsSync {
            interface: iface.to_string(),
            syncid: 0,
            group: Self::DEFAULT_GROUP,
            port: Self::DEFAULT_PORT,
            interval_ms: 1000,
            line,
        };
        let mut it = words[1..].iter();
        while let Some(k) = it.next() {
            let Some(v) = it.next() else { return Err(format!("{usage}; '{k}' has no value")) };
            match *k {
                "id" => l.syncid = v.parse().map_err(|_| format!("id: expected 0 to 255, got '{v}'"))?,
                "port" => {
                    l.port = v
                        .parse()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or(format!("port: expected 1 to 65535, got '{v}'"))?
                }
                "group" => {
                    l.group = v
                        .parse()
                        .ok()
                        .filter(|a: &std::net::Ipv4Addr| a.is_multicast())
                        .ok_or(format!("group: expected an IPv4 multicast address, got '{v}'"))?
                }
                "interval" => {
                    let s: f64 = v.parse().map_err(|_| format!("interval: expected seconds, got '{v}'"))?;
                    if !(0.1..=60.0).contains(&s) {
                        return Err(format!("interval: expected 0.1 to 60 seconds, got '{v}'"));
                    }
                    l.interval_ms = (s * 1000.0) as u64;
                }
                _ => return Err(format!("{usage}; unknown option '{k}'")),
            }
        }
        Ok(l)
    }

    /// The line as ha.cf writes it.
    pub fn to_line(&self) -> String {
        let mut s = self.interface.clone();
        if self.syncid != 0 {
            s.push_str(&format!(" id {}", self.syncid));
        }
        if self.port != Self::DEFAULT_PORT {
            s.push_str(&format!(" port {}", self.port));
        }
        if self.group != Self::DEFAULT_GROUP {
            s.push_str(&format!(" group {}", self.group));
        }
        if self.interval_ms != 1000 {
            s.push_str(&format!(" interval {}", self.interval_ms as f64 / 1000.0));
        }
        s
    }
}

/// A `notify` line (ha.cf) or `notify` entry (halo.toml): a hook command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notify {
    /// The command line as written: an absolute program path, then its arguments (split on
    /// whitespace; no shell).
    pub command: String,
    pub line: usize,
}

/// Authentication methods of authkeys. `Sha256` (HMAC-SHA256) is a halo extension that
/// Heartbeat 3.0.6 does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethodName {
    Crc,
    Md5,
    Sha1,
    Sha256,
}

impl AuthMethodName {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethodName::Crc => "crc",
            AuthMethodName::Md5 => "md5",
            AuthMethodName::Sha1 => "sha1",
            AuthMethodName::Sha256 => "sha256",
        }
    }

    /// Method names are case-sensitive, as Heartbeat's plugin file names are.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "crc" => Some(AuthMethodName::Crc),
            "md5" => Some(AuthMethodName::Md5),
            "sha1" => Some(AuthMethodName::Sha1),
            "sha256" => Some(AuthMethodName::Sha256),
            _ => None,
        }
    }

    pub fn needs_key(self) -> bool {
        !matches!(self, AuthMethodName::Crc)
    }
}

/// `authkeys`: the key selected for signing (`auth N`) and every key accepted inbound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthKeys {
    /// Index of the key used to sign outgoing messages.
    pub active: u8,
    /// Defined keys in file order (a redefined index keeps its first position).
    pub keys: Vec<AuthKey>,
}

impl AuthKeys {
    pub fn key(&self, index: u8) -> Option<&AuthKey> {
        self.keys.iter().find(|k| k.index == index)
    }

    /// The key `auth N` selects. Always present in a parsed file.
    pub fn active_key(&self) -> Option<&AuthKey> {
        self.key(self.active)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthKey {
    /// 0..=15.
    pub index: u8,
    pub method: AuthMethodName,
    /// The key token exactly as written (quotes included: `"secret"` is eight bytes);
    /// `None` for `crc`.
    pub key: Option<String>,
}

/// What halo.toml adds to haresources; `halo run` hands it to the engine (halo-core's
/// `GroupConfig::nodes`, `CloneConfig`, `OrderConfig`, `ColocationConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Groups that have a name of their own or more than one preferred node, by group key.
    /// A group not listed here is named by its key and prefers its haresources node.
    pub groups: Vec<GroupPlacement>,
    pub clones: Vec<CloneSpec>,
    pub order: Vec<Order>,
    pub colocation: Vec<Colocation>,
}

impl Placement {
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.clones.is_empty()
            && self.order.is_empty()
            && self.colocation.is_empty()
    }
}

/// A group's name and its preferred nodes. Preferences, not a fence: when every listed node
/// is down the group may still run on any other cluster node, as a haresources group may.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPlacement {
    /// The group key (its first resource as written), as in [`Haresources::group`].
    pub key: String,
    /// The name constraints and operators use; the key when none was given.
    pub name: String,
    /// Lower-cased, most preferred first, never empty; the first is the group's
    /// [`ResourceGroup::node`].
    pub nodes: Vec<String>,
    pub line: usize,
}

/// Resources that run on every node at once (Pacemaker's clone, e.g. `gw_pingd_clone`),
/// started left to right and stopped right to left on each node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneSpec {
    pub name: String,
    pub resources: Vec<ResourceSpec>,
    /// The nodes it runs on, lower-cased; empty means every cluster node.
    pub nodes: Vec<String>,
    pub line: usize,
}

/// `then` starts only after `first` runs (on any node), and stops before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Group or clone names.
    pub first: String,
    pub then: String,
    pub line: usize,
}

/// `group` is placed where `with` runs (or, when `apart`, never where it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Colocation {
    pub group: String,
    pub with: String,
    pub apart: bool,
    pub line: usize,
}

/// The director's configuration as halo.toml gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Director {
    /// `file = "..."` as written (relative to the configuration directory) when the virtual
    /// services are in an ldirectord.cf; `None` when they are inline.
    pub file: Option<PathBuf>,
    /// The same services as ldirectord.cf text (the file's text, or the inline tables
    /// written out), for `halo config convert` and for tools that read ldirectord.cf.
    pub text: String,
    pub cf: crate::ldirectord_cf::LdirectordCf,
}

/// `haresources`: one resource group per logical line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Haresources {
    pub groups: Vec<ResourceGroup>,
}

impl Haresources {
    /// The group whose key (first resource) is `key`.
    pub fn group(&self, key: &str) -> Option<&ResourceGroup> {
        self.groups.iter().find(|g| g.key() == key)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceGroup {
    /// Preferred node, lower-cased.
    pub node: String,
    /// Line the group starts on.
    pub line: usize,
    /// Never empty; started left to right, stopped right to left.
    pub resources: Vec<ResourceSpec>,
}

impl ResourceGroup {
    /// The group key: the first resource as written. Commands name groups by it.
    pub fn key(&self) -> &str {
        self.resources.first().map(|r| r.raw.as_str()).unwrap_or("")
    }
}

/// One resource word, and how ResourceManager turns it into a script call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceSpec {
    /// The word as written.
    pub raw: String,
    /// Script name, looked up in `resource.d` then `/etc/init.d`.
    pub agent: String,
    /// Arguments passed before the operation.
    pub args: Vec<String>,
}

impl ResourceSpec {
    /// ResourceManager's `canonname`/`resource2script`/`resource2arg`: a word that looks like
    /// an IP address (`[0-9]*.[0-9]*.[0-9]*.[0-9]*`) means `IPaddr` with the word as its
    /// argument; `Name::a::b` means script `Name` with arguments `a b`; anything else is a
    /// script without arguments.
    pub fn parse(raw: &str) -> ResourceSpec {
        if looks_like_ip(raw) {
            return ResourceSpec {
                raw: raw.to_string(),
                agent: "IPaddr".to_string(),
                args: vec![raw.to_string()],
            };
        }
        match raw.split_once("::") {
            Some((agent, rest)) => ResourceSpec {
                raw: raw.to_string(),
                agent: agent.to_string(),
                // `sed 's%::% %g'` then shell word splitting: empty arguments vanish.
                args: rest.split("::").filter(|a| !a.is_empty()).map(str::to_string).collect(),
            },
            None => ResourceSpec { raw: raw.to_string(), agent: raw.to_string(), args: Vec::new() },
        }
    }
}

/// The shell `case` pattern `[0-9]*.[0-9]*.[0-9]*.[0-9]*`: a digit first, then three times
/// a '.' directly followed by a digit, anything in between.
pub(crate) fn looks_like_ip(s: &str) -> bool {
    let b = s.as_bytes();
    if b.first().is_none_or(|c| !c.is_ascii_digit()) {
        return false;
    }
    let mut pos = 1;
    for _ in 0..3 {
        let mut found = None;
        let mut i = pos;
        while i + 1 < b.len() {
            if b[i] == b'.' && b[i + 1].is_ascii_digit() {
                found = Some(i);
                break;
            }
            i += 1;
        }
        match found {
            Some(i) => pos = i + 2,
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_spec_forms() {
        let r = ResourceSpec::parse("10.3.2.50/8/eth0:0");
        assert_eq!(r.agent, "IPaddr");
        assert_eq!(r.args, vec!["10.3.2.50/8/eth0:0"]);

        let r = ResourceSpec::parse("IPaddr::10.3.2.50/8/eth0:0");
        assert_eq!(r.agent, "IPaddr");
        assert_eq!(r.args, vec!["10.3.2.50/8/eth0:0"]);

        let r = ResourceSpec::parse("Filesystem::/dev/sda1::/data1::ext2");
        assert_eq!(r.agent, "Filesystem");
        assert_eq!(r.args, vec!["/dev/sda1", "/data1", "ext2"]);

        let r = ResourceSpec::parse("apache2");
        assert_eq!(r.agent, "apache2");
        assert!(r.args.is_empty());

        // One colon is not an argument separator: the whole word is the script name.
        let r = ResourceSpec::parse("IPAddr2:$VIP");
        assert_eq!(r.agent, "IPAddr2:$VIP");
        assert!(r.args.is_empty());

        let r = ResourceSpec::parse("Name::a::::b::");
        assert_eq!(r.args, vec!["a", "b"]);
    }

    #[test]
    fn ip_pattern_is_the_shell_glob() {
        assert!(looks_like_ip("10.0.0.5"));
        assert!(looks_like_ip("10.0.0.5/24/eth0"));
        assert!(looks_like_ip("1.2.3.4x"));
        assert!(looks_like_ip("1a.2b.3c.4d"));
        assert!(!looks_like_ip("1.2.3"));
        assert!(!looks_like_ip("a1.2.3.4"));
        assert!(!looks_like_ip("1..2.3"));
        assert!(!looks_like_ip(""));
        assert!(!looks_like_ip("IPaddr::1.2.3.4"));
    }

    #[test]
    fn link_names() {
        assert_eq!(Medium::Bcast { iface: "eth0".into() }.link_name(), "eth0");
        assert_eq!(Medium::Serial { device: "/dev/ttyS0".into(), baud: 19200 }.link_name(), "/dev/ttyS0");
        assert_eq!(Medium::Ucast { iface: "eth1".into(), peer: "10.0.0.2".into() }.link_name(), "eth1");
    }

    fn model_with_nodes(nodes: &[&str], nodeinfo: Option<&str>) -> Model {
        Model {
            dir: PathBuf::from("/etc/ha.d"),
            ha_cf: HaCf { nodes: nodes.iter().map(|s| s.to_string()).collect(), ..HaCf::default() },
            authkeys: AuthKeys {
                active: 1,
                keys: vec![AuthKey { index: 1, method: AuthMethodName::Crc, key: None }],
            },
            haresources: None,
            nodeinfo: nodeinfo.map(str::to_string),
            placement: Placement::default(),
            director: None,
        }
    }

    #[test]
    fn local_node_name_and_check() {
        let m = model_with_nodes(&["a", "b"], None);
        assert_eq!(m.local_node_name("A"), "a");
        assert!(m.check_local_node("A").is_ok());
        assert_eq!(
            m.check_local_node("c").unwrap_err(),
            "node c is not listed in /etc/ha.d/ha.cf (node directives: a, b)"
        );
        let m = model_with_nodes(&["a", "b"], Some("B"));
        assert_eq!(m.local_node_name("whatever"), "b");
        let mut m = model_with_nodes(&[], None);
        assert!(m.check_local_node("x").unwrap_err().contains("none"));
        m.ha_cf.autojoin = Autojoin::Any;
        assert!(m.check_local_node("x").is_ok());
    }
}
