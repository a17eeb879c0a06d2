//! `ldirectord.cf` (spec §7), read the way ldirectord 1:4.12.0 (`read_config`, `ld_setup`)
//! reads it, into the typed [`LdirectordCf`] the director runs from.
//!
//! Layout rules (spec §7.2):
//!
//! * Global directives and `virtual=`/`virtual6=` start in column 0, as `name = value` (spaces
//!   around `=` allowed). Blank lines and `#` lines are skipped at global level.
//! * A virtual section is every following line indented by at least 4 columns, a tab counting
//!   as 4 spaces (ldirectord replaces every tab of a section line with 4 spaces, values
//!   included, and so does halo). A line whose first non-blank character is `#` is skipped
//!   even in column 0; elsewhere `#` starts a comment, even inside quotes. The first line that
//!   is neither (a column-0 line or an empty line) ends the section.
//! * `request`, `receive`, `login`, `passwd`, `database`, `secret`, `load` and the global
//!   `callback` and `logfile` must be double-quoted; ldirectord reads them unquoted as
//!   "Unknown command", halo refuses them with the reason.
//!
//! Purity: ldirectord resolves host and service names, opens the log file and the monitor
//! file and checks the maintenance directory while it reads the file. halo does none of that
//! here. Host names are kept as [`Host::Name`] (and ranges between names as
//! [`RealServer::range_end`]) for the runtime to resolve; port names are looked up in a small
//! embedded table of `/etc/services` names ([`port_by_name`]); files and directories are
//! checked by the runtime when it opens them.
//!
//! Where ldirectord's unanchored regular expressions read only the start of a value
//! (`checktimeout=10 ; ten seconds` is 10), halo reads the first word and warns that the rest
//! is ignored; where they would silently misread a word (`checktimeout=500ms` is 500 seconds to
//! ldirectord), halo refuses it. Values ipvsadm would refuse when the director starts
//! (`persistent=0`, a weight above 65535) are refused here, with the reason. Duplicate virtual
//! services are compared as written: two names that resolve to the same address are caught
//! only when the runtime resolves them.
//!
//! halo extensions (global directives ldirectord does not have, accepted without the
//! unknown-directive error; Debian's ldirectord refuses a file that has them):
//! `alertcommand` ([`Globals::alertcommand`]) and `dataplane = auto|nftables|ipvs`
//! ([`Globals::dataplane`]: which kernel data plane halo's director drives).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use crate::diag::{ConfigError, Diagnostic, Sink};

/// Directives ldirectord accepts in column 0 (besides `virtual` and `virtual6`).
pub const GLOBAL_DIRECTIVES: &[&str] = &[
    "checktimeout",
    "negotiatetimeout",
    "checkinterval",
    "checkcount",
    "failurecount",
    "autoreload",
    "callback",
    "fallback",
    "fallback6",
    "fallbackcommand",
    "logfile",
    "emailalert",
    "emailalertfreq",
    "emailalertstatus",
    "emailalertfrom",
    "smtp",
    "quiescent",
    "readdquiescent",
    "cleanstop",
    "maintenancedir",
    "fork",
    "supervised",
    "execute",
    // halo's own, not ldirectord's: see [`Globals::alertcommand`].
    "alertcommand",
    // halo's own too: see [`Globals::dataplane`].
    "dataplane",
];

/// Directives ldirectord accepts inside a virtual section.
pub const VIRTUAL_DIRECTIVES: &[&str] = &[
    "real",
    "real6",
    "request",
    "receive",
    "checktype",
    "checkcommand",
    "checktimeout",
    "negotiatetimeout",
    "checkcount",
    "failurecount",
    "checkinterval",
    "checkport",
    "login",
    "passwd",
    "database",
    "secret",
    "load",
    "scheduler",
    "persistent",
    "schedflags",
    "netmask",
    "protocol",
    "ops",
    "service",
    "httpmethod",
    "virtualhost",
    "fallback",
    "fallback6",
    "fallbackcommand",
    "quiescent",
    "emailalert",
    "emailalertfreq",
    "emailalertstatus",
    "monitorfile",
    "cleanstop",
    "smtp",
    "servicename",
    "comment",
];

/// Most addresses one `real=a->b` range may expand to. ldirectord has no limit; a /16 is
/// already far more real servers than one virtual service can sensibly check.
pub const MAX_RANGE: u32 = 65536;

/// `ipvsadm` limits (`string_to_number` bounds in ipvsadm.c).
const MAX_WEIGHT: u32 = 65535;
const MAX_THRESHOLD: u32 = i32::MAX as u32;

/// Names of `/etc/services` (Debian netbase) that people write for ports in ldirectord.cf,
/// with their aliases. ldirectord calls `getservbyname`; halo must not read the host's files
/// while parsing, so the names are embedded. Protocols are not distinguished: each of these
/// names means the same port over TCP and UDP.
const PORT_NAMES: &[(&str, u16)] = &[
    ("echo", 7),
    ("discard", 9),
    ("daytime", 13),
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("mail", 25),
    ("time", 37),
    ("domain", 53),
    ("bootps", 67),
    ("bootpc", 68),
    ("tftp", 69),
    ("gopher", 70),
    ("finger", 79),
    ("http", 80),
    ("www", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("pop-3", 110),
    ("sunrpc", 111),
    ("portmapper", 111),
    ("auth", 113),
    ("ident", 113),
    ("nntp", 119),
    ("ntp", 123),
    ("imap2", 143),
    ("imap", 143),
    ("snmp", 161),
    ("snmp-trap", 162),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("microsoft-ds", 445),
    ("submissions", 465),
    ("ssmtp", 465),
    ("smtps", 465),
    ("syslog", 514),
    ("printer", 515),
    ("rtsp", 554),
    ("nntps", 563),
    ("submission", 587),
    ("ipp", 631),
    ("ldaps", 636),
    ("domain-s", 853),
    ("rsync", 873),
    ("ftps-data", 989),
    ("ftps", 990),
    ("telnets", 992),
    ("imaps", 993),
    ("pop3s", 995),
    ("socks", 1080),
    ("openvpn", 1194),
    ("ms-sql-s", 1433),
    ("radius", 1812),
    ("radius-acct", 1813),
    ("radacct", 1813),
    ("nfs", 2049),
    ("mysql", 3306),
    ("ms-wbt-server", 3389),
    ("svn", 3690),
    ("sip", 5060),
    ("sip-tls", 5061),
    ("xmpp-client", 5222),
    ("xmpp-server", 5269),
    ("postgresql", 5432),
    ("postgres", 5432),
    ("amqp", 5672),
    ("redis", 6379),
    ("http-alt", 8080),
    ("webcache", 8080),
    ("git", 9418),
    ("zabbix-agent", 10050),
    ("hkp", 11371),
];

/// Syslog facilities Perl's Sys::Syslog knows on Linux, for a non-path `logfile`.
const FACILITIES: &[&str] = &[
    "auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail", "news", "syslog", "user", "uucp",
    "local0", "local1", "local2", "local3", "local4", "local5", "local6", "local7",
];

/// The port an `/etc/services` name stands for, from the embedded table (see `PORT_NAMES`
/// in the source for the list). Case-sensitive, as `getservbyname` is.
pub fn port_by_name(name: &str) -> Option<u16> {
    PORT_NAMES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

/// A whole ldirectord.cf: global settings and virtual services in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LdirectordCf {
    pub global: Globals,
    pub virtuals: Vec<VirtualService>,
}

/// Global directives with ldirectord's `set_defaults` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Globals {
    /// Seconds; `None` is ldirectord's -1 ("unset"), see [`VirtualService::effective_checktimeout`].
    pub checktimeout: Option<u32>,
    /// Seconds; `None` is ldirectord's -1, see [`VirtualService::effective_negotiatetimeout`].
    pub negotiatetimeout: Option<u32>,
    /// Seconds between check rounds (default 10).
    pub checkinterval: u32,
    /// Deprecated ping retry count (default 1).
    pub checkcount: u32,
    /// Consecutive failures before a real server is taken out (default 1).
    pub failurecount: u32,
    pub autoreload: bool,
    /// Run as `callback <configfile>` when the file changed.
    pub callback: Option<String>,
    /// Fallback for IPv4 virtual services without their own.
    pub fallback: Option<Fallback>,
    /// Fallback for IPv6 virtual services without their own.
    pub fallback6: Option<Fallback>,
    /// Run as `cmd start|stop VIP:PORT tcp|udp|fwm` when all reals go down / one comes back.
    pub fallbackcommand: Option<String>,
    /// Default `/var/log/ldirectord.log`. halo's director writes its lines there too, in
    /// ldirectord's format, or to syslog as `ldirectord` for a facility (unless `supervised`).
    pub logfile: LogTarget,
    /// Alert recipients; empty means no mail.
    pub emailalert: Vec<String>,
    /// Seconds between repeated alerts while a server stays down; 0 = never repeat.
    pub emailalertfreq: u32,
    /// Daemon states in which alerts are sent (default all four; `none` is empty).
    pub emailalertstatus: Vec<DaemonStatus>,
    pub emailalertfrom: Option<String>,
    pub smtp: Option<String>,
    /// Default **no**: that is what ldirectord's code (`set_defaults`) does, although its POD
    /// documents `yes`. halo follows the code, so an existing director behaves the same.
    pub quiescent: bool,
    /// With `quiescent`, a failed real server missing from the kernel's table is added back
    /// with weight 0 (yes) or left out until it comes up (no, the default).
    pub readdquiescent: bool,
    /// Default yes: delete the managed virtual services on exit.
    pub cleanstop: bool,
    /// Not checked for existence here (ldirectord only warns); the runtime reads it.
    pub maintenancedir: Option<PathBuf>,
    /// One checker per virtual service: only then does a virtual service's own
    /// `checkinterval` count ([`VirtualService::effective_checkinterval`]).
    pub fork: bool,
    /// ldirectord logs to stdout instead of its logfile; halo's director logs to halo's log
    /// only (halo is the daemon, its log is that stdout).
    pub supervised: bool,
    /// Other ldirectord configurations started, stopped and reloaded with this one (names
    /// looked up as ldirectord does: `<dir>/CFG`, `<dir>/conf/CFG`, then as written).
    pub execute: Vec<String>,
    /// halo extension (ldirectord has no such directive): a command run, through `sh -c`,
    /// for every change of a real server, one at a time in the order of the changes, with
    /// the change in its environment (`HALO_ALERT_*`, see halo-lb's `alert` module).
    pub alertcommand: Option<String>,
    /// halo extension (`dataplane = auto|nftables|ipvs`): the kernel data plane halo's
    /// director drives. `auto` (the default) takes IPVS where the kernel has it, else
    /// nftables; `ipvs` on a kernel without IPVS makes the director's start fail.
    pub dataplane: Dataplane,
}

/// The value of the `dataplane` halo extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dataplane {
    #[default]
    Auto,
    Nftables,
    Ipvs,
}

impl Dataplane {
    /// The word as written in ldirectord.cf.
    pub fn name(self) -> &'static str {
        match self {
            Dataplane::Auto => "auto",
            Dataplane::Nftables => "nftables",
            Dataplane::Ipvs => "ipvs",
        }
    }
}

fn dataplane(value: &str) -> Res<Dataplane> {
    match value.trim() {
        "auto" => Ok(Dataplane::Auto),
        "nftables" => Ok(Dataplane::Nftables),
        "ipvs" => Ok(Dataplane::Ipvs),
        "" => Err("no value: expected auto, nftables or ipvs".to_string()),
        v => Err(format!("expected auto, nftables or ipvs, got '{v}'")),
    }
}

impl Default for Globals {
    fn default() -> Self {
        Globals {
            checktimeout: None,
            negotiatetimeout: None,
            checkinterval: 10,
            checkcount: 1,
            failurecount: 1,
            autoreload: false,
            callback: None,
            fallback: None,
            fallback6: None,
            fallbackcommand: None,
            logfile: LogTarget::File(PathBuf::from("/var/log/ldirectord.log")),
            emailalert: Vec::new(),
            emailalertfreq: 0,
            emailalertstatus: DaemonStatus::ALL.to_vec(),
            emailalertfrom: None,
            smtp: None,
            quiescent: false,
            readdquiescent: false,
            cleanstop: true,
            maintenancedir: None,
            fork: false,
            supervised: false,
            execute: Vec::new(),
            alertcommand: None,
            dataplane: Dataplane::Auto,
        }
    }
}

/// Where ldirectord logs: a value starting with `/` is a file, anything else a syslog facility.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    File(PathBuf),
    Syslog(String),
}

/// ldirectord's daemon states, as filtered by `emailalertstatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DaemonStatus {
    Starting,
    Running,
    Stopping,
    Reloading,
}

impl DaemonStatus {
    pub const ALL: [DaemonStatus; 4] =
        [DaemonStatus::Starting, DaemonStatus::Running, DaemonStatus::Stopping, DaemonStatus::Reloading];

    pub fn name(self) -> &'static str {
        match self {
            DaemonStatus::Starting => "starting",
            DaemonStatus::Running => "running",
            DaemonStatus::Stopping => "stopping",
            DaemonStatus::Reloading => "reloading",
        }
    }
}

/// An address as written: an IP literal, or a host name the runtime resolves (ldirectord
/// resolves names while reading the file; halo's parser must not touch the network).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    /// IPv6 addresses in brackets, as ipvsadm and ldirectord write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// What a `virtual=` / `virtual6=` line names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum VirtualAddr {
    Ip {
        ip: IpAddr,
        port: u16,
    },
    /// A host name, resolved by the runtime (IPv4 for `virtual=`, IPv6 for `virtual6=`).
    Host {
        name: String,
        port: u16,
    },
    /// A firewall mark (`virtual=1`): protocol fwm, service none, port 0.
    Fwmark(u32),
}

impl fmt::Display for VirtualAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VirtualAddr::Ip { ip: IpAddr::V6(a), port } => write!(f, "[{a}]:{port}"),
            VirtualAddr::Ip { ip: IpAddr::V4(a), port } => write!(f, "{a}:{port}"),
            VirtualAddr::Host { name, port } => write!(f, "{name}:{port}"),
            VirtualAddr::Fwmark(m) => write!(f, "{m}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Fwm,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Fwm => "fwm",
        }
    }

    /// ipvsadm's service option: `-t`, `-u` or `-f`.
    pub fn ipvsadm_flag(self) -> &'static str {
        match self {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
            Protocol::Fwm => "-f",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// LVS forwarding method of a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forward {
    /// Direct routing (`-g`, shown as `Route`).
    Gate,
    /// NAT (`-m`, `Masq`).
    Masq,
    /// IP-in-IP tunnelling (`-i`, `Tunnel`).
    Ipip,
}

impl Forward {
    pub fn name(self) -> &'static str {
        match self {
            Forward::Gate => "gate",
            Forward::Masq => "masq",
            Forward::Ipip => "ipip",
        }
    }

    pub fn ipvsadm_flag(self) -> &'static str {
        match self {
            Forward::Gate => "-g",
            Forward::Masq => "-m",
            Forward::Ipip => "-i",
        }
    }

    fn parse(word: &str) -> Option<Forward> {
        match word {
            "gate" => Some(Forward::Gate),
            "masq" => Some(Forward::Masq),
            "ipip" => Some(Forward::Ipip),
            _ => None,
        }
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How real servers are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckType {
    /// TCP connect within checktimeout (a ping for UDP services).
    Connect,
    /// Speak the service's protocol ([`Service`]); the default.
    Negotiate,
    Ping,
    /// Run `checkcommand VIP|fwmark VPORT RIP RPORT`; exit 0 is up.
    External,
    /// `checkcommand` is a Perl file evaluated once into a sub.
    ExternalPerl,
    /// Never add the real servers.
    Off,
    /// Always add them, never check.
    On,
    /// `checktype=N`: N connect checks, then one negotiate check.
    Combined(u32),
}

impl fmt::Display for CheckType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckType::Connect => f.write_str("connect"),
            CheckType::Negotiate => f.write_str("negotiate"),
            CheckType::Ping => f.write_str("ping"),
            CheckType::External => f.write_str("external"),
            CheckType::ExternalPerl => f.write_str("external-perl"),
            CheckType::Off => f.write_str("off"),
            CheckType::On => f.write_str("on"),
            CheckType::Combined(n) => write!(f, "{n}"),
        }
    }
}

/// The protocol a negotiate check speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Dns,
    Ftp,
    Http,
    Https,
    HttpProxy,
    Imap,
    Imaps,
    Ldap,
    Ldaps,
    Mysql,
    Nntp,
    None,
    Oracle,
    Pgsql,
    Pop,
    Pops,
    Radius,
    Simpletcp,
    Sip,
    Smtp,
    Submission,
}

impl Service {
    /// Every service, in ldirectord's documentation order.
    pub const ALL: [Service; 21] = [
        Service::Dns,
        Service::Ftp,
        Service::Http,
        Service::Https,
        Service::HttpProxy,
        Service::Imap,
        Service::Imaps,
        Service::Ldap,
        Service::Ldaps,
        Service::Mysql,
        Service::Nntp,
        Service::None,
        Service::Oracle,
        Service::Pgsql,
        Service::Pop,
        Service::Pops,
        Service::Radius,
        Service::Simpletcp,
        Service::Sip,
        Service::Smtp,
        Service::Submission,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Service::Dns => "dns",
            Service::Ftp => "ftp",
            Service::Http => "http",
            Service::Https => "https",
            Service::HttpProxy => "http_proxy",
            Service::Imap => "imap",
            Service::Imaps => "imaps",
            Service::Ldap => "ldap",
            Service::Ldaps => "ldaps",
            Service::Mysql => "mysql",
            Service::Nntp => "nntp",
            Service::None => "none",
            Service::Oracle => "oracle",
            Service::Pgsql => "pgsql",
            Service::Pop => "pop",
            Service::Pops => "pops",
            Service::Radius => "radius",
            Service::Simpletcp => "simpletcp",
            Service::Sip => "sip",
            Service::Smtp => "smtp",
            Service::Submission => "submission",
        }
    }

    pub fn from_name(name: &str) -> Option<Service> {
        Service::ALL.iter().copied().find(|s| s.name() == name)
    }

    /// ldirectord's `ld_service_to_port`: the port a check uses when neither `checkport` nor
    /// the real server gives one.
    pub fn default_port(self) -> Option<u16> {
        PORT_SERVICES.iter().find(|(_, s)| *s == self).map(|(p, _)| *p)
    }

    /// ldirectord's `ld_port_to_service`: the service of a virtual without `service=`.
    pub fn from_port(port: u16) -> Service {
        PORT_SERVICES.iter().find(|(p, _)| *p == port).map_or(Service::None, |(_, s)| *s)
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// ldirectord's port ↔ service table (`ld_port_to_service`, `ld_service_to_port`).
const PORT_SERVICES: &[(u16, Service)] = &[
    (21, Service::Ftp),
    (25, Service::Smtp),
    (53, Service::Dns),
    (80, Service::Http),
    (110, Service::Pop),
    (119, Service::Nntp),
    (143, Service::Imap),
    (389, Service::Ldap),
    (443, Service::Https),
    (587, Service::Submission),
    (636, Service::Ldaps),
    (993, Service::Imaps),
    (995, Service::Pops),
    (1521, Service::Oracle),
    (1812, Service::Radius),
    (3128, Service::HttpProxy),
    (3306, Service::Mysql),
    (5060, Service::Sip),
    (5432, Service::Pgsql),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HttpMethod {
    #[default]
    Get,
    Head,
}

impl HttpMethod {
    pub fn name(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Head => "HEAD",
        }
    }
}

/// A `fallback=` server: added with weight 1 when no real server is up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fallback {
    pub addr: Host,
    /// `None`: the virtual service's port (see [`VirtualService::effective_fallback`]).
    pub port: Option<u16>,
    /// Default gate.
    pub forward: Forward,
}

/// One real server of a virtual service. A `real=a->b` range of IPv4 addresses becomes one
/// `RealServer` per address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealServer {
    /// Line of the `real=` directive.
    pub line: usize,
    pub addr: Host,
    /// Set only for a range with a host name at either end (`real=sql01->sql03:3306`): it cannot
    /// be expanded before the names are resolved, so the runtime resolves both ends and adds
    /// every IPv4 address from `addr` to `range_end` (first ≤ last, at most [`MAX_RANGE`]).
    pub range_end: Option<Host>,
    /// `None` when absent or 0 (ldirectord's port 0): ipvsadm then uses the virtual's port for
    /// gate and ipip, and checks use `checkport` or the service's port.
    pub port: Option<u16>,
    pub forward: Forward,
    /// 0..=65535, default 1.
    pub weight: u32,
    /// Per-real check override (both or neither, as written: see [`VirtualService::request`]).
    pub request: Option<String>,
    pub receive: Option<String>,
    /// `l:N`: ipvsadm lower connection threshold (`-y`).
    pub lower: Option<u32>,
    /// `u:N`: ipvsadm upper connection threshold (`-x`).
    pub upper: Option<u32>,
}

/// One `virtual=` / `virtual6=` section with ldirectord's per-virtual defaults. Per-virtual
/// overrides of global settings are `Option`s; the `effective_*` methods resolve them the way
/// ldirectord does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualService {
    /// Line of the `virtual=` directive.
    pub line: usize,
    pub addr: VirtualAddr,
    /// `virtual6=`: IPv6 addresses, `real6`, `fallback6`.
    pub v6: bool,
    /// Default tcp; udp for port 53; fwm for a firewall mark.
    pub protocol: Protocol,
    pub reals: Vec<RealServer>,
    /// Default negotiate.
    pub checktype: CheckType,
    /// Default by port ([`Service::from_port`]); none for a firewall mark.
    pub service: Service,
    /// Default `/bin/true`.
    pub checkcommand: String,
    pub checkport: Option<u16>,
    /// As written between the quotes; `None` is ldirectord's default `/`. ldirectord prepends
    /// `/` when missing and every check strips it again (http builds
    /// `scheme://RIP:checkport/<request without its leading />`), so a leading `/` is optional.
    pub request: Option<String>,
    /// A regular expression; `None` accepts any successful answer.
    pub receive: Option<String>,
    pub httpmethod: HttpMethod,
    /// HTTP Host header; `None` sends the real server's address.
    pub virtualhost: Option<String>,
    /// See [`VirtualService::effective_login`] for the ftp and sip defaults.
    pub login: Option<String>,
    pub passwd: Option<String>,
    pub database: Option<String>,
    pub secret: Option<String>,
    /// Default `wrr`; any `[a-z]+`, checked by ipvsadm.
    pub scheduler: String,
    pub schedflags: Option<String>,
    /// Seconds (`-p`).
    pub persistent: Option<u32>,
    /// Dotted quad (IPv4) or prefix length 1..=128 (IPv6), for `-M`; used only with persistent.
    pub netmask: Option<String>,
    /// One-packet scheduling; ldirectord passes `-o` only for UDP.
    pub ops: bool,
    pub checktimeout: Option<u32>,
    pub negotiatetimeout: Option<u32>,
    pub checkcount: Option<u32>,
    pub failurecount: Option<u32>,
    /// Used only with `fork=yes` (see [`VirtualService::effective_checkinterval`]).
    pub checkinterval: Option<u32>,
    pub fallback: Option<Fallback>,
    pub fallbackcommand: Option<String>,
    pub quiescent: Option<bool>,
    pub cleanstop: Option<bool>,
    pub emailalert: Option<Vec<String>>,
    pub emailalertfreq: Option<u32>,
    pub emailalertstatus: Option<Vec<DaemonStatus>>,
    pub smtp: Option<String>,
    /// Not opened here (ldirectord opens it for append while reading); the runtime does.
    pub monitorfile: Option<PathBuf>,
    pub servicename: Option<String>,
    pub comment: Option<String>,
    /// Undocumented; parsed and kept, used by nothing.
    pub load: Option<String>,
}

impl VirtualService {
    fn new(line: usize, addr: VirtualAddr, v6: bool) -> Self {
        let (protocol, service) = match &addr {
            VirtualAddr::Fwmark(_) => (Protocol::Fwm, Service::None),
            VirtualAddr::Ip { port, .. } | VirtualAddr::Host { port, .. } => {
                (if *port == 53 { Protocol::Udp } else { Protocol::Tcp }, Service::from_port(*port))
            }
        };
        VirtualService {
            line,
            addr,
            v6,
            protocol,
            reals: Vec::new(),
            checktype: CheckType::Negotiate,
            service,
            checkcommand: "/bin/true".to_string(),
            checkport: None,
            request: None,
            receive: None,
            httpmethod: HttpMethod::Get,
            virtualhost: None,
            login: None,
            passwd: None,
            database: None,
            secret: None,
            scheduler: "wrr".to_string(),
            schedflags: None,
            persistent: None,
            netmask: None,
            ops: false,
            checktimeout: None,
            negotiatetimeout: None,
            checkcount: None,
            failurecount: None,
            checkinterval: None,
            fallback: None,
            fallbackcommand: None,
            quiescent: None,
            cleanstop: None,
            emailalert: None,
            emailalertfreq: None,
            emailalertstatus: None,
            smtp: None,
            monitorfile: None,
            servicename: None,
            comment: None,
            load: None,
        }
    }

    /// The virtual port; 0 for a firewall mark.
    pub fn port(&self) -> u16 {
        match &self.addr {
            VirtualAddr::Ip { port, .. } | VirtualAddr::Host { port, .. } => *port,
            VirtualAddr::Fwmark(_) => 0,
        }
    }

    /// ldirectord's `get_virtual_id_str`: `tcp:192.168.6.240:80`, `udp:[2001:db8::1]:53`,
    /// `fwm:1`, `fwm6:1`. Two virtual services with the same id are duplicates.
    pub fn id(&self) -> String {
        match &self.addr {
            VirtualAddr::Fwmark(m) => format!("fwm{}:{m}", if self.v6 { "6" } else { "" }),
            a => format!("{}:{a}", self.protocol),
        }
    }

    /// `ld_setup`: virtual checktimeout → virtual negotiatetimeout → global checktimeout →
    /// global negotiatetimeout → 5 seconds.
    pub fn effective_checktimeout(&self, g: &Globals) -> u32 {
        self.checktimeout.or(self.negotiatetimeout).or(g.checktimeout).or(g.negotiatetimeout).unwrap_or(5)
    }

    /// `ld_setup`: virtual negotiatetimeout → virtual checktimeout → global negotiatetimeout →
    /// global checktimeout → 30 seconds.
    pub fn effective_negotiatetimeout(&self, g: &Globals) -> u32 {
        self.negotiatetimeout.or(self.checktimeout).or(g.negotiatetimeout).or(g.checktimeout).unwrap_or(30)
    }

    pub fn effective_checkcount(&self, g: &Globals) -> u32 {
        self.checkcount.unwrap_or(g.checkcount)
    }

    pub fn effective_failurecount(&self, g: &Globals) -> u32 {
        self.failurecount.unwrap_or(g.failurecount)
    }

    /// A per-virtual checkinterval counts only with `fork=yes` (one checker per virtual);
    /// otherwise one pass checks every virtual at the global interval.
    pub fn effective_checkinterval(&self, g: &Globals) -> u32 {
        if g.fork {
            self.checkinterval.unwrap_or(g.checkinterval)
        } else {
            g.checkinterval
        }
    }

    /// ldirectord's `fallback_find`: the virtual's own fallback, else the global `fallback`
    /// (`fallback6` for a virtual6), with the virtual's port when the fallback has none.
    pub fn effective_fallback(&self, g: &Globals) -> Option<Fallback> {
        let global = if self.v6 { &g.fallback6 } else { &g.fallback };
        let mut f = self.fallback.as_ref().or(global.as_ref())?.clone();
        if f.port.is_none() {
            f.port = Some(self.port());
        }
        Some(f)
    }

    pub fn effective_fallbackcommand<'a>(&'a self, g: &'a Globals) -> Option<&'a str> {
        self.fallbackcommand.as_deref().or(g.fallbackcommand.as_deref())
    }

    pub fn effective_quiescent(&self, g: &Globals) -> bool {
        self.quiescent.unwrap_or(g.quiescent)
    }

    pub fn effective_cleanstop(&self, g: &Globals) -> bool {
        self.cleanstop.unwrap_or(g.cleanstop)
    }

    pub fn effective_emailalert<'a>(&'a self, g: &'a Globals) -> &'a [String] {
        self.emailalert.as_deref().unwrap_or(&g.emailalert)
    }

    pub fn effective_emailalertfreq(&self, g: &Globals) -> u32 {
        self.emailalertfreq.unwrap_or(g.emailalertfreq)
    }

    pub fn effective_emailalertstatus<'a>(&'a self, g: &'a Globals) -> &'a [DaemonStatus] {
        self.emailalertstatus.as_deref().unwrap_or(&g.emailalertstatus)
    }

    pub fn effective_smtp<'a>(&'a self, g: &'a Globals) -> Option<&'a str> {
        self.smtp.as_deref().or(g.smtp.as_deref())
    }

    /// ldirectord's `ld_checkport`: `checkport`, else the real server's port, else the
    /// service's port.
    pub fn checkport_for(&self, real: &RealServer) -> Option<u16> {
        self.checkport.or(real.port).or_else(|| self.service.default_port())
    }

    /// The request a check of `real` sends: the real's own, else the virtual's, else `/`.
    pub fn request_for<'a>(&'a self, real: &'a RealServer) -> &'a str {
        real.request.as_deref().or(self.request.as_deref()).unwrap_or("/")
    }

    /// The pattern a check of `real` expects: the real's own, else the virtual's, else any.
    pub fn receive_for<'a>(&'a self, real: &'a RealServer) -> &'a str {
        real.receive.as_deref().or(self.receive.as_deref()).unwrap_or("")
    }

    /// `login`, else `anonymous` for ftp and `ldirectord@<hostname>` for sip. ldirectord applies
    /// these defaults only when `service=` is written; halo applies them to the service however
    /// it was chosen (for ftp, Net::FTP falls back to anonymous anyway; for sip the empty login
    /// would send `OPTIONS sip:`).
    pub fn effective_login(&self, hostname: &str) -> String {
        match (&self.login, self.service) {
            (Some(l), _) => l.clone(),
            (None, Service::Ftp) => "anonymous".to_string(),
            (None, Service::Sip) => format!("ldirectord@{hostname}"),
            (None, _) => String::new(),
        }
    }

    /// `passwd`, else `ldirectord@<hostname>` for ftp (see [`VirtualService::effective_login`]).
    pub fn effective_passwd(&self, hostname: &str) -> String {
        match (&self.passwd, self.service) {
            (Some(p), _) => p.clone(),
            (None, Service::Ftp) => format!("ldirectord@{hostname}"),
            (None, _) => String::new(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

/// Parses ldirectord.cf text. Pure: no name lookups, no file checks (see the module docs).
/// Returns the model with ldirectord's defaults and the warnings, or every error found.
pub fn parse_ldirectord_cf(file: &Path, text: &str) -> Result<(LdirectordCf, Vec<Diagnostic>), ConfigError> {
    let (cfg, errors, warnings) = parse_ldirectord_cf_lenient(file, text);
    if errors.is_empty() {
        Ok((cfg, warnings))
    } else {
        Err(ConfigError::new(errors))
    }
}

/// Like [`parse_ldirectord_cf`] but always returns the best-effort model with errors and
/// warnings.
pub(crate) fn parse_ldirectord_cf_lenient(
    file: &Path,
    text: &str,
) -> (LdirectordCf, Vec<Diagnostic>, Vec<Diagnostic>) {
    let mut p = Parser::new(file);
    for (idx, raw) in text.split('\n').enumerate() {
        p.line(idx + 1, raw);
    }
    p.finish()
}

/// The virtual section being read.
struct Section {
    /// `None` when the `virtual=` line was refused: its lines are still checked.
    vs: Option<VirtualService>,
    line: usize,
    v6: bool,
    service_set: bool,
    lines: HashMap<&'static str, usize>,
    netmask_line: Option<usize>,
    ops_line: Option<usize>,
}

/// How the last virtual section ended, for the hint on a stray indented line.
#[derive(Clone, Copy)]
enum Ended {
    /// By an empty line (line numbers: the empty line, the `virtual=` line).
    Blank { blank: usize, virtual_line: usize },
    /// By a column-0 line right here.
    Column0 { virtual_line: usize },
}

struct Parser<'a> {
    sink: Sink<'a>,
    cfg: LdirectordCf,
    section: Option<Section>,
    ended: Option<Ended>,
    global_lines: HashMap<&'static str, usize>,
    /// Virtual service ids seen, with their lines.
    ids: HashMap<String, usize>,
    /// Per-virtual checkinterval lines, checked against `fork` at the end.
    checkinterval_lines: Vec<(usize, String)>,
}

/// What is wrong with a value; the caller prefixes the directive name and line.
type Res<T> = Result<T, String>;

impl<'a> Parser<'a> {
    fn new(file: &'a Path) -> Self {
        Parser {
            sink: Sink::new(file),
            cfg: LdirectordCf::default(),
            section: None,
            ended: None,
            global_lines: HashMap::new(),
            ids: HashMap::new(),
            checkinterval_lines: Vec::new(),
        }
    }

    fn finish(mut self) -> (LdirectordCf, Vec<Diagnostic>, Vec<Diagnostic>) {
        self.end_section();
        if !self.cfg.global.fork {
            for (line, id) in std::mem::take(&mut self.checkinterval_lines) {
                self.sink.warn(
                    line,
                    format!("checkinterval in virtual service {id} is ignored when fork=no (as in ldirectord): set fork=yes for one checker per virtual service, or set checkinterval globally"),
                );
            }
        }
        (self.cfg, self.sink.errors, self.sink.warnings)
    }

    fn line(&mut self, lineno: usize, raw: &str) {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if let Some(virtual_line) = self.section.as_ref().map(|s| s.line) {
            if raw.trim_start().starts_with('#') {
                return;
            }
            let text = strip_comment(raw).replace('\t', "    ");
            let body = text.trim_start_matches(' ');
            let indent = text.len() - body.len();
            let body = body.trim_end();
            if body.is_empty() {
                if indent > 4 {
                    self.sink.warn(
                        lineno,
                        "this blank-looking line holds only spaces or tabs; it ends the virtual section (ldirectord refuses such a line of more than 4 columns as \"Unknown command\")",
                    );
                }
                self.end_section();
                self.ended = Some(Ended::Blank { blank: lineno, virtual_line });
                return;
            }
            if indent >= 4 {
                self.virtual_line(lineno, body, raw);
                return;
            }
            if indent > 0 {
                // ldirectord ends the section here and then refuses the line as "Unknown
                // command"; halo refuses it and keeps reading the section so that one stray
                // space does not turn every following line into an error.
                self.sink.error(
                    lineno,
                    format!("this line is indented by {indent} column{}: lines of a virtual section must be indented by at least 4 spaces or a tab", if indent == 1 { "" } else { "s" }),
                );
                return;
            }
            self.end_section();
            self.ended = Some(Ended::Column0 { virtual_line });
        }
        self.global_line(lineno, raw);
    }

    fn global_line(&mut self, lineno: usize, raw: &str) {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return;
        }
        // ldirectord strips `#` comments only inside virtual sections; halo strips them on
        // global lines too, where ldirectord would read `autoreload=yes # x` as an error.
        let text = strip_comment(raw).trim_end();
        if text.trim_start().is_empty() {
            return;
        }
        if text.starts_with([' ', '\t']) {
            let msg = match self.ended {
                Some(Ended::Blank { blank, virtual_line }) => format!(
                    "this indented line is outside any virtual section: the empty line {blank} ended the section of the virtual at line {virtual_line}; remove the empty line (or write '#' on it) to keep this line in that section"
                ),
                _ => "this indented line is outside any virtual section: global directives start in column 0, and a virtual section starts with a virtual= line".to_string(),
            };
            self.sink.error(lineno, msg);
            return;
        }
        let ended = self.ended.take();
        let Some((name, value)) = split_directive(text) else {
            if text == "supervised" {
                self.sink.warn(
                    lineno,
                    "a bare 'supervised' is deprecated (read as supervised=yes, as ldirectord does); write supervised=yes",
                );
                self.set_global_line("supervised", lineno);
                self.cfg.global.supervised = true;
                return;
            }
            self.sink.error(lineno, no_equals_message(text, true));
            return;
        };
        match name {
            "virtual" | "virtual6" => self.start_virtual(lineno, name == "virtual6", value),
            "timeout" => self.sink.error(
                lineno,
                "the timeout directive is deprecated in favour of checktimeout and negotiatetimeout, and ldirectord refuses it: write checktimeout= (connect, ping and external checks) and/or negotiatetimeout= (negotiate checks)",
            ),
            "connecttimeout" => self.sink.error(
                lineno,
                "the connecttimeout directive is deprecated in favour of negotiatetimeout, and ldirectord refuses it: write negotiatetimeout=",
            ),
            n => {
                if let Some(&n) = GLOBAL_DIRECTIVES.iter().find(|d| **d == n) {
                    if let Err(msg) = self.global(lineno, n, value, raw) {
                        self.sink.error(lineno, format!("{n}: {msg}"));
                    }
                } else if VIRTUAL_DIRECTIVES.contains(&n) {
                    let mut msg = format!(
                        "'{n}' belongs in a virtual section: write it under a virtual= line, indented by at least 4 spaces or a tab"
                    );
                    if let Some(Ended::Column0 { virtual_line }) | Some(Ended::Blank { virtual_line, .. }) = ended {
                        msg.push_str(&format!(
                            " (the section of the virtual at line {virtual_line} ended before this line)"
                        ));
                    }
                    self.sink.error(lineno, msg);
                } else {
                    self.sink.error(lineno, unknown_directive_message(n, GLOBAL_DIRECTIVES, VIRTUAL_DIRECTIVES));
                }
            }
        }
    }

    fn set_global_line(&mut self, name: &'static str, lineno: usize) {
        if let Some(prev) = self.global_lines.insert(name, lineno) {
            if name != "execute" {
                self.sink.warn(
                    lineno,
                    format!("{name} is given again: this value replaces the one of line {prev} (as in ldirectord)"),
                );
            }
        }
    }

    /// One global directive. `raw` is the whole line before comment stripping, for hints.
    fn global(&mut self, lineno: usize, name: &'static str, value: &str, raw: &str) -> Res<()> {
        let g = &mut self.cfg.global;
        match name {
            "checktimeout" => {
                let v = self.positive_seconds(lineno, value)?;
                self.cfg.global.checktimeout = Some(v);
            }
            "negotiatetimeout" => {
                let v = self.positive_seconds(lineno, value)?;
                self.cfg.global.negotiatetimeout = Some(v);
            }
            "checkinterval" => {
                let v = self.positive_seconds(lineno, value)?;
                self.cfg.global.checkinterval = v;
            }
            "checkcount" => {
                let v = self.positive(lineno, value)?;
                self.cfg.global.checkcount = v;
                self.sink.warn(lineno, CHECKCOUNT_DEPRECATED);
            }
            "failurecount" => {
                let v = self.positive(lineno, value)?;
                self.cfg.global.failurecount = v;
            }
            "autoreload" => g.autoreload = yes_no(value)?,
            "callback" => {
                let v =
                    self.quoted_required(lineno, name, value, raw, "\"/usr/local/sbin/ldirectord-changed\"")?;
                self.cfg.global.callback = Some(v);
            }
            "fallback" | "fallback6" => {
                let f = self.fallback(value, name == "fallback6")?;
                if name == "fallback6" {
                    self.cfg.global.fallback6 = Some(f);
                } else {
                    self.cfg.global.fallback = Some(f);
                }
            }
            "fallbackcommand" => {
                let v = self.quoted_or_bare(lineno, value, "a command")?;
                self.cfg.global.fallbackcommand = Some(v);
            }
            "logfile" => {
                let v = self.quoted_required(
                    lineno,
                    name,
                    value,
                    raw,
                    "\"/var/log/ldirectord.log\" or \"local0\"",
                )?;
                self.cfg.global.logfile = log_target(&v)?;
            }
            "emailalert" => g.emailalert = emailalert(value)?,
            "emailalertfreq" => {
                let v = self.uint(lineno, value, "a number of seconds (0 = never repeat)")?;
                self.cfg.global.emailalertfreq = v;
            }
            "emailalertstatus" => g.emailalertstatus = emailalertstatus(value)?,
            "emailalertfrom" => {
                let v = self.quoted_or_bare(lineno, value, "a mail address")?;
                self.cfg.global.emailalertfrom = Some(v);
            }
            "smtp" => {
                let v = self.smtp(lineno, value)?;
                self.cfg.global.smtp = Some(v);
            }
            "quiescent" => g.quiescent = yes_no(value)?,
            "readdquiescent" => g.readdquiescent = yes_no(value)?,
            "cleanstop" => g.cleanstop = yes_no(value)?,
            "maintenancedir" => {
                let v = self.quoted_or_bare(lineno, value, "a directory")?;
                self.cfg.global.maintenancedir = Some(PathBuf::from(v));
            }
            "alertcommand" => {
                let v = self.quoted_or_bare(lineno, value, "a command")?;
                self.cfg.global.alertcommand = Some(v);
            }
            "dataplane" => g.dataplane = dataplane(value)?,
            "fork" => g.fork = yes_no(value)?,
            "supervised" => g.supervised = yes_no(value)?,
            "execute" => {
                let v = self.quoted_or_bare(lineno, value, "the name of another ldirectord configuration")?;
                if self.cfg.global.execute.contains(&v) {
                    self.sink.warn(lineno, format!("execute: '{v}' is listed twice; it is started once"));
                } else {
                    self.cfg.global.execute.push(v);
                }
            }
            _ => return Err("internal error: unhandled global directive".to_string()),
        }
        self.set_global_line(name, lineno);
        Ok(())
    }

    fn start_virtual(&mut self, lineno: usize, v6: bool, value: &str) {
        let name = if v6 { "virtual6" } else { "virtual" };
        let vs = match self.token(lineno, value, VIRTUAL_EXPECTED) {
            Ok(tok) => match parse_virtual_addr(tok, v6) {
                Ok(addr) => Some(VirtualService::new(lineno, addr, v6)),
                Err(msg) => {
                    self.sink.error(lineno, format!("{name}: {msg}"));
                    None
                }
            },
            Err(msg) => {
                self.sink.error(lineno, format!("{name}: {msg}"));
                None
            }
        };
        self.section = Some(Section {
            vs,
            line: lineno,
            v6,
            service_set: false,
            lines: HashMap::new(),
            netmask_line: None,
            ops_line: None,
        });
    }

    fn end_section(&mut self) {
        let Some(sec) = self.section.take() else {
            return;
        };
        let Some(mut vs) = sec.vs else {
            return;
        };
        if !sec.service_set {
            vs.service = match vs.addr {
                VirtualAddr::Fwmark(_) => Service::None,
                _ => Service::from_port(vs.port()),
            };
        }
        if let Some(line) = sec.netmask_line {
            if vs.persistent.is_none() {
                self.sink.warn(
                    line,
                    "netmask has no effect without persistent: ldirectord passes -M only with -p (as here)",
                );
            }
        }
        if let Some(line) = sec.ops_line {
            if vs.ops && vs.protocol != Protocol::Udp {
                self.sink.warn(
                    line,
                    format!("ops=yes has no effect on a {} service: one-packet scheduling is for UDP only (ldirectord passes -o only for udp, as here)", vs.protocol),
                );
            }
        }
        // Duplicate real servers (same address and port): ipvsadm keeps one.
        let mut seen: HashMap<(Host, Option<u16>), usize> = HashMap::new();
        for r in &vs.reals {
            if r.range_end.is_some() {
                continue;
            }
            if let Some(first) = seen.insert((r.addr.clone(), r.port), r.line) {
                let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
                self.sink.warn(
                    r.line,
                    format!("real server {}{port} is already listed at line {first} of this virtual service; LVS holds it once", r.addr),
                );
            }
        }
        let id = vs.id();
        if let Some(first) = self.ids.get(&id) {
            self.sink.error(
                vs.line,
                format!("duplicate virtual service {id}: it is already defined at line {first} (ldirectord refuses duplicates too)"),
            );
            return;
        }
        self.ids.insert(id.clone(), vs.line);
        if let Some(line) = sec.lines.get("checkinterval") {
            self.checkinterval_lines.push((*line, id));
        }
        self.cfg.virtuals.push(vs);
    }

    /// One directive of a virtual section; `body` has its indentation and comment removed.
    fn virtual_line(&mut self, lineno: usize, body: &str, raw: &str) {
        let Some((name, value)) = split_directive(body) else {
            self.sink.error(lineno, no_equals_message(body, false));
            return;
        };
        let known = VIRTUAL_DIRECTIVES.iter().find(|d| **d == name).copied();
        let Some(name) = known else {
            let msg = match name {
                "virtual" | "virtual6" => format!("{name}= starts a new virtual section and must be written in column 0, not indented"),
                "timeout" => "the timeout directive is deprecated in favour of checktimeout and negotiatetimeout, and ldirectord refuses it: write checktimeout= (connect, ping and external checks) and/or negotiatetimeout= (negotiate checks)".to_string(),
                "connecttimeout" => "the connecttimeout directive is deprecated in favour of negotiatetimeout, and ldirectord refuses it: write negotiatetimeout=".to_string(),
                n if GLOBAL_DIRECTIVES.contains(&n) => format!(
                    "'{n}' is a global directive and cannot be set per virtual service: write it in column 0, before the first virtual= line"
                ),
                n => unknown_directive_message(n, VIRTUAL_DIRECTIVES, GLOBAL_DIRECTIVES),
            };
            self.sink.error(lineno, msg);
            return;
        };
        if let Err(msg) = self.virtual_directive(lineno, name, value, raw) {
            self.sink.error(lineno, format!("{name}: {msg}"));
            return;
        }
        if !matches!(name, "real" | "real6") {
            if let Some(sec) = self.section.as_mut() {
                if let Some(prev) = sec.lines.insert(name, lineno) {
                    self.sink.warn(
                        lineno,
                        format!("{name} is given again in this virtual section: this value replaces the one of line {prev} (as in ldirectord)"),
                    );
                }
            }
        }
    }

    fn virtual_directive(&mut self, lineno: usize, name: &'static str, value: &str, raw: &str) -> Res<()> {
        let (v6, fwmark) = match self.section.as_ref() {
            Some(sec) => (sec.v6, sec.vs.as_ref().map(|v| matches!(v.addr, VirtualAddr::Fwmark(_)))),
            None => return Err("internal error: no virtual section".to_string()),
        };
        // Parse first (this may warn), then store into the section's service.
        let apply: Box<dyn FnOnce(&mut VirtualService)> = match name {
            "real" | "real6" => {
                if v6 != (name == "real6") {
                    return Err(if v6 {
                        "a virtual6 section takes real6=, not real=".to_string()
                    } else {
                        "a virtual (IPv4) section takes real=, not real6= (IPv6 real servers need a virtual6= service)".to_string()
                    });
                }
                let reals = parse_real(lineno, value, v6)?;
                Box::new(move |vs| vs.reals.extend(reals))
            }
            "request" => {
                let v = self.quoted_required(lineno, name, value, raw, "\"/index.html\"")?;
                if v.is_empty() {
                    return Err("no request string specified between the quotes".to_string());
                }
                Box::new(move |vs| vs.request = Some(v))
            }
            "receive" => {
                let v = self.quoted_required(lineno, name, value, raw, "\"Test Page\"")?;
                if v.is_empty() {
                    return Err("the receive string between the quotes is empty (ldirectord refuses it); leave receive out to accept any answer".to_string());
                }
                Box::new(move |vs| vs.receive = Some(v))
            }
            "login" | "passwd" | "database" | "secret" => {
                let example = match name {
                    "login" => "\"readuser\"",
                    "passwd" => "\"secret\"",
                    "database" => "\"portal\"",
                    _ => "\"somesecret\"",
                };
                let v = self.quoted_required(lineno, name, value, raw, example)?;
                if v.is_empty() {
                    return Err("the value between the quotes is empty (ldirectord refuses it)".to_string());
                }
                match name {
                    "login" => Box::new(move |vs| vs.login = Some(v)),
                    "passwd" => Box::new(move |vs| vs.passwd = Some(v)),
                    "database" => Box::new(move |vs| vs.database = Some(v)),
                    _ => Box::new(move |vs| vs.secret = Some(v)),
                }
            }
            "load" => {
                let v = self.quoted_required(lineno, name, value, raw, "\"word\"")?;
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    return Err(format!(
                        "expected one word of letters, digits or '_' between the quotes, got \"{v}\""
                    ));
                }
                Box::new(move |vs| vs.load = Some(v))
            }
            "checktype" => {
                let tok = self.token(lineno, value, CHECKTYPE_EXPECTED)?;
                let ct = match tok {
                    "connect" => CheckType::Connect,
                    "negotiate" => CheckType::Negotiate,
                    "ping" => CheckType::Ping,
                    "external" => CheckType::External,
                    "external-perl" => CheckType::ExternalPerl,
                    "off" => CheckType::Off,
                    "on" => CheckType::On,
                    t if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => CheckType::Combined(
                        t.parse::<u32>().map_err(|_| format!("{CHECKTYPE_EXPECTED}; '{t}' is too large"))?,
                    ),
                    t => return Err(format!("{CHECKTYPE_EXPECTED}, got '{t}'")),
                };
                Box::new(move |vs| vs.checktype = ct)
            }
            "checkcommand" => {
                let v = self.quoted_or_bare(lineno, value, "a command or file")?;
                Box::new(move |vs| vs.checkcommand = v)
            }
            "checktimeout" => {
                let v = self.positive_seconds(lineno, value)?;
                Box::new(move |vs| vs.checktimeout = Some(v))
            }
            "negotiatetimeout" => {
                let v = self.positive_seconds(lineno, value)?;
                Box::new(move |vs| vs.negotiatetimeout = Some(v))
            }
            "checkcount" => {
                let v = self.positive(lineno, value)?;
                self.sink.warn(lineno, CHECKCOUNT_DEPRECATED);
                Box::new(move |vs| vs.checkcount = Some(v))
            }
            "failurecount" => {
                let v = self.positive(lineno, value)?;
                Box::new(move |vs| vs.failurecount = Some(v))
            }
            "checkinterval" => {
                let v = self.positive_seconds(lineno, value)?;
                Box::new(move |vs| vs.checkinterval = Some(v))
            }
            "checkport" => {
                let tok = self.token(lineno, value, "a port from 1 to 65535")?;
                let port = digits(tok)
                    .filter(|p| (1..=65535).contains(p))
                    .ok_or_else(|| format!("expected a port from 1 to 65535, got '{tok}'"))?;
                let port = port as u16;
                Box::new(move |vs| vs.checkport = Some(port))
            }
            "scheduler" => {
                let tok = self.token(lineno, value, "a scheduler name such as wrr, rr, wlc, lc, sh or mh")?;
                if !tok.bytes().all(|b| b.is_ascii_lowercase()) {
                    return Err(format!(
                        "invalid scheduler '{tok}': expected lowercase letters only, such as wrr, rr, wlc, lc, sh or mh"
                    ));
                }
                let v = tok.to_string();
                Box::new(move |vs| vs.scheduler = v)
            }
            "persistent" => {
                let tok = self.token(lineno, value, "a number of seconds")?;
                let v = digits(tok).ok_or_else(|| format!("expected a number of seconds, got '{tok}'"))?;
                if v == 0 {
                    return Err("must be at least 1 second (ipvsadm refuses -p 0); leave persistent out for no persistence".to_string());
                }
                let v = u32::try_from(v)
                    .ok()
                    .filter(|v| *v <= MAX_THRESHOLD)
                    .ok_or_else(|| format!("'{tok}' is too large"))?;
                Box::new(move |vs| vs.persistent = Some(v))
            }
            "schedflags" => {
                let tok =
                    self.token(lineno, value, "scheduler flags such as sh-port or sh-fallback,sh-port")?;
                let v = tok.to_string();
                Box::new(move |vs| vs.schedflags = Some(v))
            }
            "netmask" => {
                let v = value.trim();
                let ok = if v6 {
                    digits(v).filter(|n| (1..=128).contains(n)).map(|n| n.to_string())
                } else if is_dotted_quad(v) {
                    v.parse::<Ipv4Addr>().ok().map(|a| a.to_string())
                } else {
                    None
                };
                let Some(mask) = ok else {
                    return Err(if v6 {
                        format!("invalid netmask '{v}': a prefix length between 1 and 128 is required for a virtual6 service")
                    } else {
                        format!(
                            "invalid netmask '{v}': dotted quad notation is required, as in 255.255.255.0"
                        )
                    });
                };
                if let Some(sec) = self.section.as_mut() {
                    sec.netmask_line = Some(lineno);
                }
                Box::new(move |vs| vs.netmask = Some(mask))
            }
            "protocol" => {
                let tok = self.token(lineno, value, "tcp, udp or fwm")?;
                let p = match (fwmark, tok) {
                    (Some(true), "fwm") => Protocol::Fwm,
                    (Some(true), t) => {
                        return Err(format!(
                            "protocol must be fwm if the virtual service is a fwmark (a number), got '{t}'"
                        ))
                    }
                    (_, "tcp") => Protocol::Tcp,
                    (_, "udp") => Protocol::Udp,
                    (_, t) => {
                        let mut m = format!("protocol must be tcp or udp if the virtual service is an address and port, got '{t}'");
                        if !["tcp", "udp", "fwm"].contains(&t) && t.bytes().all(|b| b.is_ascii_lowercase()) {
                            m.push_str(&format!(" (to choose the scheduler, write scheduler={t})"));
                        }
                        return Err(m);
                    }
                };
                Box::new(move |vs| vs.protocol = p)
            }
            "ops" => {
                let v = yes_no(value)?;
                if let Some(sec) = self.section.as_mut() {
                    sec.ops_line = Some(lineno);
                }
                Box::new(move |vs| vs.ops = v)
            }
            "service" => {
                let tok = self.token(lineno, value, SERVICE_EXPECTED)?;
                let s = Service::from_name(tok).ok_or_else(|| {
                    let mut m = format!("{SERVICE_EXPECTED}, got '{tok}'");
                    if let Some(s) = Service::from_name(&tok.to_ascii_lowercase()) {
                        m.push_str(&format!("; did you mean '{s}'?"));
                    }
                    m
                })?;
                if let Some(sec) = self.section.as_mut() {
                    sec.service_set = true;
                }
                Box::new(move |vs| vs.service = s)
            }
            "httpmethod" => {
                let tok = self.token(lineno, value, "GET or HEAD")?;
                let m = match tok.to_ascii_uppercase().as_str() {
                    "GET" => HttpMethod::Get,
                    "HEAD" => HttpMethod::Head,
                    _ => return Err(format!("httpmethod must be GET or HEAD, got '{tok}'")),
                };
                Box::new(move |vs| vs.httpmethod = m)
            }
            "virtualhost" => {
                let v = self.quoted_or_bare(lineno, value, "a host name")?;
                Box::new(move |vs| vs.virtualhost = Some(v))
            }
            "fallback" | "fallback6" => {
                if v6 != (name == "fallback6") {
                    return Err(if v6 {
                        "a virtual6 section takes fallback6=, not fallback=".to_string()
                    } else {
                        "a virtual (IPv4) section takes fallback=, not fallback6=".to_string()
                    });
                }
                let f = self.fallback(value, v6)?;
                Box::new(move |vs| vs.fallback = Some(f))
            }
            "fallbackcommand" => {
                let v = self.quoted_or_bare(lineno, value, "a command")?;
                Box::new(move |vs| vs.fallbackcommand = Some(v))
            }
            "quiescent" => {
                let v = yes_no(value)?;
                Box::new(move |vs| vs.quiescent = Some(v))
            }
            "cleanstop" => {
                let v = yes_no(value)?;
                Box::new(move |vs| vs.cleanstop = Some(v))
            }
            "emailalert" => {
                let v = emailalert(value)?;
                Box::new(move |vs| vs.emailalert = Some(v))
            }
            "emailalertfreq" => {
                let v = self.uint(lineno, value, "a number of seconds (0 = never repeat)")?;
                Box::new(move |vs| vs.emailalertfreq = Some(v))
            }
            "emailalertstatus" => {
                let v = emailalertstatus(value)?;
                Box::new(move |vs| vs.emailalertstatus = Some(v))
            }
            "monitorfile" => {
                let v = self.quoted_or_bare(lineno, value, "a file path")?;
                Box::new(move |vs| vs.monitorfile = Some(PathBuf::from(v)))
            }
            "smtp" => {
                let v = self.smtp(lineno, value)?;
                Box::new(move |vs| vs.smtp = Some(v))
            }
            "servicename" => {
                let v = value.trim().to_string();
                Box::new(move |vs| vs.servicename = Some(v))
            }
            "comment" => {
                let v = value.trim().to_string();
                Box::new(move |vs| vs.comment = Some(v))
            }
            _ => return Err("internal error: unhandled virtual directive".to_string()),
        };
        // When the virtual= line was refused there is nothing to apply to; the value was still
        // checked.
        if let Some(vs) = self.section.as_mut().and_then(|s| s.vs.as_mut()) {
            apply(vs);
        }
        Ok(())
    }

    // --- value helpers -------------------------------------------------------------------

    /// The first word of `value`; text after it (ldirectord's patterns read only the start of
    /// a value) draws a warning.
    fn token<'v>(&mut self, lineno: usize, value: &'v str, expected: &str) -> Res<&'v str> {
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("no value: expected {expected}"));
        }
        let end = value.find([' ', '\t']).unwrap_or(value.len());
        let (tok, rest) = value.split_at(end);
        let rest = rest.trim();
        if !rest.is_empty() {
            let mut msg = format!(
                "only '{tok}' is read; the rest of the line ('{rest}') is ignored, as ldirectord does"
            );
            if rest.starts_with(';') {
                msg.push_str(" (comments start with '#', not ';')");
            }
            self.sink.warn(lineno, msg);
        }
        Ok(tok)
    }

    fn uint(&mut self, lineno: usize, value: &str, expected: &str) -> Res<u32> {
        let tok = self.token(lineno, value, expected)?;
        let n = digits(tok).ok_or_else(|| number_message(tok, expected))?;
        u32::try_from(n).map_err(|_| format!("'{tok}' is too large"))
    }

    fn positive(&mut self, lineno: usize, value: &str) -> Res<u32> {
        let n = self.uint(lineno, value, "a whole number greater than 0")?;
        if n == 0 {
            return Err("must be greater than 0".to_string());
        }
        Ok(n)
    }

    fn positive_seconds(&mut self, lineno: usize, value: &str) -> Res<u32> {
        let n = self.uint(lineno, value, "a whole number of seconds greater than 0")?;
        if n == 0 {
            return Err("must be at least 1 second".to_string());
        }
        Ok(n)
    }

    /// A value that must be written `"..."`: the text between the first quote and the last
    /// one (ldirectord's greedy `"(.*)"`); text after the closing quote draws a warning.
    fn quoted_required(
        &mut self,
        lineno: usize,
        name: &str,
        value: &str,
        raw: &str,
        example: &str,
    ) -> Res<String> {
        let value = value.trim();
        let Some(inner) = value.strip_prefix('"') else {
            return Err(format!(
                "the value must be double-quoted, as in {name}={example}: ldirectord reads an unquoted {name} as \"Unknown command\""
            ));
        };
        let Some(close) = inner.rfind('"') else {
            let mut msg = "the closing double quote is missing".to_string();
            if raw.contains('#') {
                msg.push_str(
                    " ('#' starts a comment even inside quotes, so the rest of the line was cut off)",
                );
            }
            return Err(msg);
        };
        let rest = inner[close + 1..].trim();
        if !rest.is_empty() {
            self.sink
                .warn(lineno, format!("'{rest}' after the closing quote is ignored, as ldirectord does"));
        }
        Ok(inner[..close].to_string())
    }

    /// A value that may be quoted or bare; must not be empty.
    fn quoted_or_bare(&mut self, lineno: usize, value: &str, expected: &str) -> Res<String> {
        let value = value.trim();
        let v = if let Some(inner) = value.strip_prefix('"') {
            let Some(close) = inner.rfind('"') else {
                return Err("the closing double quote is missing".to_string());
            };
            let rest = inner[close + 1..].trim();
            if !rest.is_empty() {
                self.sink.warn(lineno, format!("'{rest}' after the closing quote is ignored"));
            }
            inner[..close].to_string()
        } else {
            value.to_string()
        };
        if v.is_empty() {
            return Err(format!("no value: expected {expected}"));
        }
        Ok(v)
    }

    fn smtp(&mut self, lineno: usize, value: &str) -> Res<String> {
        let tok = self.token(lineno, value, "an SMTP server name or address")?;
        let ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-');
        let end = tok.bytes().position(|b| !ok(b)).unwrap_or(tok.len());
        if end == 0 {
            return Err(format!("invalid SMTP server address '{tok}': expected a host name or IPv4 address"));
        }
        if end < tok.len() {
            self.sink.warn(
                lineno,
                format!("smtp: only '{}' is read; '{}' is ignored, as ldirectord does (alerts always go to port 25)", &tok[..end], &tok[end..]),
            );
        }
        Ok(tok[..end].to_string())
    }

    fn fallback(&self, value: &str, v6: bool) -> Res<Fallback> {
        let words: Vec<&str> = value.split_whitespace().collect();
        let (spec, fwd) = match words.as_slice() {
            [spec] => (*spec, None),
            [spec, fwd] => (*spec, Some(*fwd)),
            [] => return Err(format!("no value: expected {}", fallback_expected(v6))),
            _ => return Err(format!("expected {}, got '{}'", fallback_expected(v6), value.trim())),
        };
        let forward = match fwd {
            None => Forward::Gate,
            Some(w) => Forward::parse(w).ok_or_else(|| forward_message(w))?,
        };
        let (host, port) =
            split_host_port(spec, v6).map_err(|m| format!("{m} ({})", fallback_expected(v6)))?;
        let addr = parse_host(host, v6, HostChars::Real)?;
        let port = match port {
            Some(p) => Some(parse_port(p)?),
            None => None,
        };
        Ok(Fallback { addr, port, forward })
    }
}

const CHECKCOUNT_DEPRECATED: &str =
    "checkcount is deprecated and slated for removal (ldirectord warns too); see failurecount";
const CHECKTYPE_EXPECTED: &str =
    "checktype must be connect, negotiate, on, off, ping, external, external-perl or a number of connect checks";
const SERVICE_EXPECTED: &str = "service must be dns, ftp, http, https, http_proxy, imap, imaps, ldap, ldaps, mysql, nntp, none, oracle, pop, pops, radius, pgsql, simpletcp, sip, smtp or submission";
const VIRTUAL_EXPECTED: &str = "an IP:port, host:port or a firewall mark (a number)";

fn fallback_expected(v6: bool) -> &'static str {
    if v6 {
        "a fallback server as [IPv6]:port or host:port, optionally followed by gate, masq or ipip"
    } else {
        "a fallback server as IP:port or host:port, optionally followed by gate, masq or ipip"
    }
}

fn forward_message(w: &str) -> String {
    let mut m = format!("the forwarding method must be gate, masq or ipip, got '{w}'");
    if Forward::parse(&w.to_ascii_lowercase()).is_some() {
        m.push_str(" (lowercase)");
    }
    m
}

fn number_message(tok: &str, expected: &str) -> String {
    let lead = tok.bytes().take_while(|b| b.is_ascii_digit()).count();
    if lead > 0 && lead < tok.len() {
        format!(
            "expected {expected}, got '{tok}' (ldirectord would read only '{}' and ignore '{}'; write the number alone)",
            &tok[..lead],
            &tok[lead..]
        )
    } else {
        format!("expected {expected}, got '{tok}'")
    }
}

/// All ASCII digits, as a number (`None` for anything else or an overflow of u64).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok()
}

fn yes_no(value: &str) -> Res<bool> {
    match value.trim() {
        "yes" => Ok(true),
        "no" => Ok(false),
        "" => Err("no value: expected yes or no".to_string()),
        v => {
            let mut m = format!("expected yes or no, got '{v}'");
            if crate::time::parse_bool(v).is_some() {
                m.push_str(" (ldirectord accepts only the lowercase words yes and no)");
            }
            Err(m)
        }
    }
}

/// ldirectord's `read_emailalert`: enclosing quotes stripped, then a comma-separated list.
fn emailalert(value: &str) -> Res<Vec<String>> {
    let mut v = value.trim();
    if let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        if !inner.contains('"') {
            v = inner;
        }
    }
    if v.trim().is_empty() {
        return Err("no email address specified".to_string());
    }
    let mut out = Vec::new();
    for a in v.split(',') {
        let a = a.trim();
        if a.is_empty() {
            return Err(format!("empty address in the list '{v}'"));
        }
        // ldirectord hands anything to the mailer; a space, quote or ';' can only be a typo
        // (often a comment written with ';') that would make every alert fail.
        if a.contains(|c: char| c.is_whitespace() || matches!(c, '"' | ';')) {
            return Err(format!(
                "invalid address '{a}': separate addresses with commas, and write comments on a line of their own starting with '#'"
            ));
        }
        out.push(a.to_string());
    }
    Ok(out)
}

/// ldirectord's `parse_emailalertstatus`: a comma list of all, none, starting, running,
/// stopping, reloading; none cannot be combined.
fn emailalertstatus(value: &str) -> Res<Vec<DaemonStatus>> {
    let value = value.trim();
    if value.is_empty() {
        return Err("no value: expected all, none or a comma list of starting, running, stopping, reloading"
            .to_string());
    }
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    let none = items.contains(&"none");
    let mut out: Vec<DaemonStatus> = Vec::new();
    for i in &items {
        let add: &[DaemonStatus] = match *i {
            "none" => continue,
            "all" => &DaemonStatus::ALL,
            "starting" => &[DaemonStatus::Starting],
            "running" => &[DaemonStatus::Running],
            "stopping" => &[DaemonStatus::Stopping],
            "reloading" => &[DaemonStatus::Reloading],
            other => {
                let mut m = format!(
                    "invalid email alert status at '{other}': expected all, none, starting, running, stopping or reloading, separated by commas"
                );
                if other.contains([' ', ';']) {
                    m.push_str(" (comments start with '#')");
                }
                return Err(m);
            }
        };
        if none {
            return Err(format!("'{i}' cannot be combined with 'none'"));
        }
        for s in add {
            if !out.contains(s) {
                out.push(*s);
            }
        }
    }
    // Keep ldirectord's bit order so that equal settings compare equal.
    out.sort_by_key(|s| DaemonStatus::ALL.iter().position(|a| a == s));
    Ok(out)
}

fn log_target(v: &str) -> Res<LogTarget> {
    if v.starts_with('/') {
        return Ok(LogTarget::File(PathBuf::from(v)));
    }
    if FACILITIES.contains(&v) {
        return Ok(LogTarget::Syslog(v.to_string()));
    }
    if v.is_empty() {
        return Err(
            "the value between the quotes is empty: expected an absolute file path or a syslog facility"
                .to_string(),
        );
    }
    Err(format!(
        "'{v}' is neither an absolute file path (starting with '/') nor a syslog facility ({})",
        FACILITIES.join(", ")
    ))
}

/// Strips a `#` comment (ldirectord's `s/#.*//`, which ignores quotes).
fn strip_comment(line: &str) -> &str {
    match line.find('#') {
        Some(i) => &line[..i],
        None => line,
    }
}

/// `name = value` → (name, value), value trimmed. `None` without `=` or with a name that is
/// not one word.
fn split_directive(text: &str) -> Option<(&str, &str)> {
    let (name, value) = text.split_once('=')?;
    let name = name.trim_end();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return None;
    }
    Some((name, value.trim()))
}

fn no_equals_message(text: &str, global: bool) -> String {
    let word = text.split([' ', '\t', ':']).next().unwrap_or(text);
    let rest = text[word.len()..].trim_start_matches([' ', '\t', ':']).trim();
    let known = GLOBAL_DIRECTIVES.contains(&word)
        || VIRTUAL_DIRECTIVES.contains(&word)
        || matches!(word, "virtual" | "virtual6");
    if known {
        return format!("expected '{word}=value', got '{text}'; did you mean '{word}={rest}'?");
    }
    if text.contains('=') {
        return format!("expected 'name=value' with a one-word name, got '{text}'");
    }
    let (first, second) = if global {
        (GLOBAL_DIRECTIVES, VIRTUAL_DIRECTIVES)
    } else {
        (VIRTUAL_DIRECTIVES, GLOBAL_DIRECTIVES)
    };
    let mut msg = format!("expected 'name=value', got '{text}'");
    if let Some(s) = suggestion(word, first, second) {
        msg.push_str(&format!("; did you mean '{s}=…'?"));
    }
    msg
}

fn unknown_directive_message(name: &str, first: &[&'static str], second: &[&'static str]) -> String {
    let mut msg = format!("unknown directive '{name}' (ldirectord would refuse it too: \"Unknown command\")");
    if let Some(s) = suggestion(name, first, second) {
        msg.push_str(&format!("; did you mean '{s}'?"));
    }
    msg
}

/// A case-insensitive match, else the closest name within 2 edits, from `first` then `second`.
fn suggestion(name: &str, first: &[&'static str], second: &[&'static str]) -> Option<&'static str> {
    let all = || first.iter().chain(second.iter()).chain(["virtual", "virtual6"].iter()).copied();
    if let Some(d) = all().find(|d| d.eq_ignore_ascii_case(name)) {
        return Some(d);
    }
    crate::diag::closest(&name.to_ascii_lowercase(), all())
}

/// Which characters a host name may hold (ldirectord's patterns differ slightly).
#[derive(Clone, Copy)]
enum HostChars {
    /// `virtual=`: `[0-9A-Za-z._+-]`.
    Virtual,
    /// `real=`, `fallback=`: `[A-Za-z0-9.-]`.
    Real,
}

fn is_dotted_quad(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// An address as written in ldirectord.cf: `[v6]`, a dotted quad, or a host name.
fn parse_host(s: &str, v6: bool, chars: HostChars) -> Res<Host> {
    if let Some(inner) = s.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or_else(|| format!("'{s}': the closing ']' is missing"))?;
        let a: Ipv6Addr = inner.parse().map_err(|_| format!("invalid IPv6 address '{inner}'"))?;
        if !v6 {
            return Err(format!(
                "'{s}' is an IPv6 address: IPv6 needs a virtual6= service with real6= and fallback6="
            ));
        }
        return Ok(Host::Ip(IpAddr::V6(a)));
    }
    if s.is_empty() {
        return Err("the address is missing".to_string());
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        if !is_dotted_quad(s) {
            return Err(format!("invalid address '{s}': expected a dotted quad such as 192.168.6.2"));
        }
        let a: Ipv4Addr = s.parse().map_err(|_| format!("invalid IPv4 address '{s}'"))?;
        if v6 {
            return Err(format!(
                "'{s}' is an IPv4 address, but this is a virtual6 service: write IPv6 addresses in brackets, as in [2001:db8::2]"
            ));
        }
        return Ok(Host::Ip(IpAddr::V4(a)));
    }
    if s.contains(':') {
        return Err(format!("'{s}': IPv6 addresses must be written in brackets, as in [2001:db8::1]"));
    }
    let ok = |b: u8| match chars {
        HostChars::Virtual => b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'),
        HostChars::Real => b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'),
    };
    if let Some(bad) = s.chars().find(|c| !c.is_ascii() || !ok(*c as u8)) {
        return Err(format!("invalid host name '{s}': '{bad}' is not allowed"));
    }
    Ok(Host::Name(s.to_string()))
}

/// A port number (0..=65535) or an `/etc/services` name.
fn parse_port(p: &str) -> Res<u16> {
    if let Some(n) = digits(p) {
        return u16::try_from(n).map_err(|_| format!("port {p} is out of range (0 to 65535)"));
    }
    if p.is_empty() {
        return Err("the port after ':' is missing".to_string());
    }
    if let Some(n) = port_by_name(p) {
        return Ok(n);
    }
    let mut m = format!("unknown port name '{p}': write the port number");
    if let Some(n) = port_by_name(&p.to_ascii_lowercase()) {
        m.push_str(&format!(" ({} is {n}; port names are lowercase)", p.to_ascii_lowercase()));
    } else if let Some(s) = Service::from_name(p).and_then(Service::default_port) {
        m.push_str(&format!(" ('{p}' is an ldirectord service name, not a port name; its port is {s})"));
    }
    Err(m)
}

/// Splits `host[:port]` / `[v6][:port]`. The port part is ldirectord's `[A-Za-z0-9_-]+`.
fn split_host_port(spec: &str, v6: bool) -> Res<(&str, Option<&str>)> {
    if spec.starts_with('[') {
        let close = spec.rfind(']').ok_or_else(|| format!("'{spec}': the closing ']' is missing"))?;
        let after = &spec[close + 1..];
        return match after {
            "" => Ok((&spec[..=close], None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((&spec[..=close], Some(p))),
                None => Err(format!("'{spec}': expected ':port' after ']'")),
            },
        };
    }
    let colons = spec.matches(':').count();
    if colons == 0 {
        return Ok((spec, None));
    }
    if colons > 1 {
        if spec.contains("::") && !v6 && spec.split("::").next().is_some_and(is_dotted_quad) {
            return Err(format!(
                "'{spec}': write one ':' between the address and the port, as in {}",
                spec.replacen("::", ":", 1)
            ));
        }
        let host = spec.rsplit_once(':').map_or(spec, |(h, _)| h);
        if spec.parse::<Ipv6Addr>().is_ok() || host.parse::<Ipv6Addr>().is_ok() {
            let mut m =
                format!("'{spec}': IPv6 addresses must be written in brackets, as in [2001:db8::1]:80");
            if !v6 {
                m.push_str(", in a virtual6= section");
            }
            return Err(m);
        }
        return Err(format!("'{spec}': expected one ':' between the address and the port"));
    }
    match spec.split_once(':') {
        Some((h, p)) => Ok((h, Some(p))),
        None => Ok((spec, None)),
    }
}

fn parse_virtual_addr(tok: &str, v6: bool) -> Res<VirtualAddr> {
    if tok.bytes().all(|b| b.is_ascii_digit()) {
        let m = tok
            .parse::<u32>()
            .map_err(|_| format!("firewall mark '{tok}' is out of range (1 to 4294967295)"))?;
        if m == 0 {
            return Err("firewall mark 0 is not allowed: marks start at 1".to_string());
        }
        return Ok(VirtualAddr::Fwmark(m));
    }
    if tok.starts_with('[') && !v6 {
        return Err(format!("cannot specify an IPv6 address here ('{tok}'): use virtual6= instead"));
    }
    let (host, port) = split_host_port(tok, v6)?;
    let Some(port) = port else {
        let mut m = format!("expected {VIRTUAL_EXPECTED}, got '{tok}'");
        if is_dotted_quad(tok) || tok.starts_with('[') {
            m.push_str(&format!(
                "; the port is required, as in {tok}:80 (ldirectord would read '{tok}' as firewall mark {})",
                tok.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).unwrap_or("?")
            ));
        }
        return Err(m);
    };
    if !v6 && host.starts_with('[') {
        return Err(format!("cannot specify an IPv6 address here ('{tok}'): use virtual6= instead"));
    }
    let port_ok =
        !port.is_empty() && port.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !port_ok {
        return Err(format!(
            "invalid port '{port}' in '{tok}': expected a number or a service name such as http"
        ));
    }
    let port = parse_port(port)?;
    match parse_host(host, v6, HostChars::Virtual)? {
        Host::Ip(ip) => Ok(VirtualAddr::Ip { ip, port }),
        Host::Name(name) => Ok(VirtualAddr::Host { name, port }),
    }
}

/// `ip|host[->ip|host][:port] gate|masq|ipip [weight] ["request", "receive"] [l:N] [u:N]`,
/// ranges of IPv4 addresses expanded.
fn parse_real(line: usize, value: &str, v6: bool) -> Res<Vec<RealServer>> {
    let value = value.trim();
    if value.is_empty() {
        return Err(REAL_EXPECTED.to_string());
    }
    let end = value.find([' ', '\t']).unwrap_or(value.len());
    let (spec, rest) = value.split_at(end);
    let (hosts, port) = split_host_port_range(spec, v6)?;
    let port = match port {
        Some(p) => match parse_port(p)? {
            0 => None,
            n => Some(n),
        },
        None => None,
    };
    let (first_s, last_s) = match hosts.split_once("->") {
        Some((a, b)) => (a, Some(b)),
        None => (hosts, None),
    };
    let first = parse_host(first_s, v6, HostChars::Real)?;
    let last = match last_s {
        Some(b) => {
            if b.contains("->") {
                return Err(format!("'{spec}': a range has one '->', as in 10.0.0.1->10.0.0.9"));
            }
            Some(parse_host(b, v6, HostChars::Real)?)
        }
        None => None,
    };

    // Flags.
    let rest = rest.trim_start();
    if rest.is_empty() {
        return Err(format!(
            "a forwarding method (gate, masq or ipip) must follow the address, as in real={spec} gate"
        ));
    }
    let fend = rest.find([' ', '\t']).unwrap_or(rest.len());
    let forward = Forward::parse(&rest[..fend]).ok_or_else(|| forward_message(&rest[..fend]))?;
    let mut rest = rest[fend..].trim_start();
    let mut weight = None;
    let mut check: Option<(String, String)> = None;
    let mut lower = None;
    let mut upper = None;
    while !rest.is_empty() {
        let wend = rest.find([' ', '\t']).unwrap_or(rest.len());
        let word = &rest[..wend];
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            if weight.is_some() || check.is_some() || lower.is_some() || upper.is_some() {
                return Err(format!(
                    "unexpected '{word}': the weight comes right after the forwarding method"
                ));
            }
            let w = digits(word).filter(|w| *w <= u64::from(MAX_WEIGHT)).ok_or_else(|| {
                format!("invalid weight '{word}': expected a whole number from 0 to {MAX_WEIGHT}")
            })?;
            weight = Some(w as u32);
            rest = rest[wend..].trim_start();
        } else if rest.starts_with('"') {
            if check.is_some() || lower.is_some() || upper.is_some() {
                return Err(format!(
                    "unexpected '{rest}': one \"request\", \"receive\" pair may follow the weight, before l: and u:"
                ));
            }
            let (req, after) = quoted_prefix(rest).ok_or_else(|| REQ_RECV_EXPECTED.to_string())?;
            let after = after.trim_start();
            let after = after.strip_prefix(',').unwrap_or(after).trim_start();
            let (recv, after) = quoted_prefix(after).ok_or_else(|| REQ_RECV_EXPECTED.to_string())?;
            check = Some((req.to_string(), recv.to_string()));
            rest = after.trim_start();
        } else if let Some(n) = word.strip_prefix("l:") {
            if lower.is_some() {
                return Err("l: is given twice".to_string());
            }
            lower = Some(threshold(n, "l")?);
            rest = rest[wend..].trim_start();
        } else if let Some(n) = word.strip_prefix("u:") {
            if upper.is_some() {
                return Err("u: is given twice".to_string());
            }
            upper = Some(threshold(n, "u")?);
            rest = rest[wend..].trim_start();
        } else {
            let mut m = format!(
                "invalid real server line around '{rest}': after the forwarding method come an optional weight, an optional \"request\", \"receive\" pair, and optional l:N and u:N thresholds"
            );
            if word.contains("l:") || word.contains("u:") {
                m.push_str(" (write thresholds as l:5 u:100, without quotes or angle brackets)");
            }
            return Err(m);
        }
    }
    let (request, receive) = match check {
        Some((a, b)) => (Some(a), Some(b)),
        None => (None, None),
    };
    let template = RealServer {
        line,
        addr: first.clone(),
        range_end: None,
        port,
        forward,
        weight: weight.unwrap_or(1),
        request,
        receive,
        lower,
        upper,
    };
    match last {
        None => Ok(vec![template]),
        Some(last) => match (&first, &last) {
            (Host::Ip(IpAddr::V4(a)), Host::Ip(IpAddr::V4(b))) => {
                let (a, b) = (u32::from(*a), u32::from(*b));
                if a > b {
                    return Err(format!(
                        "invalid range {first}->{last}: the first address must not be greater than the last"
                    ));
                }
                if b - a >= MAX_RANGE {
                    return Err(format!(
                        "the range {first}->{last} holds {} addresses; halo expands at most {MAX_RANGE}",
                        u64::from(b - a) + 1
                    ));
                }
                Ok((a..=b)
                    .map(|n| RealServer { addr: Host::Ip(IpAddr::V4(Ipv4Addr::from(n))), ..template.clone() })
                    .collect())
            }
            (Host::Ip(IpAddr::V6(_)), _) | (_, Host::Ip(IpAddr::V6(_))) => {
                Err("address ranges are not supported for IPv6 (ldirectord: \"not supported yet\")"
                    .to_string())
            }
            _ => Ok(vec![RealServer { range_end: Some(last), ..template }]),
        },
    }
}

const REAL_EXPECTED: &str =
    "expected ip|host[->ip|host][:port] gate|masq|ipip [weight] [\"request\", \"receive\"] [l:N] [u:N]";
const REQ_RECV_EXPECTED: &str =
    "a per-real check is written as two quoted strings, \"request\", \"receive\" (both, each closed by a double quote)";

/// Like [`split_host_port`] for a real server spec, which may hold `a->b` before the port.
fn split_host_port_range(spec: &str, v6: bool) -> Res<(&str, Option<&str>)> {
    if spec.starts_with('[') {
        // [a] or [a]->[b], then optional :port.
        let close = spec.rfind(']').ok_or_else(|| format!("'{spec}': the closing ']' is missing"))?;
        let after = &spec[close + 1..];
        return match after {
            "" => Ok((spec, None)),
            _ => match after.strip_prefix(':') {
                Some(p) => Ok((&spec[..=close], Some(p))),
                None => Err(format!("'{spec}': expected ':port' after ']'")),
            },
        };
    }
    let (hosts, port) = split_host_port(spec, v6)?;
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(format!(
                "invalid port '{p}' in '{spec}': expected a number or a service name such as http"
            ));
        }
    }
    Ok((hosts, port))
}

/// `"text"` at the start of `s` → (text, rest after the closing quote).
fn quoted_prefix(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('"')?;
    let close = inner.find('"')?;
    Some((&inner[..close], &inner[close + 1..]))
}

fn threshold(n: &str, which: &str) -> Res<u32> {
    digits(n).filter(|v| *v <= u64::from(MAX_THRESHOLD)).map(|v| v as u32).ok_or_else(|| {
        format!(
            "invalid threshold '{which}:{n}': expected {which}: followed by a whole number of connections"
        )
    })
}

#[cfg(test)]
mod tests;
