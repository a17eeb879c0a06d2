//! What `ipvsadm` 1.31 prints, byte for byte, from a model of the IPVS table.
//!
//! ldirectord parses `ipvsadm -L -n` before every change, operators' scripts and monitoring
//! probes grep it, and people read it: halo's `lvs` views must print exactly the same text
//! whether the table lives in the kernel's IPVS or in halo's nftables data plane. The
//! functions here are pure: a [`Model`] in, the text out. They follow the format strings of
//! ipvsadm 1.31 (`ipvsadm.c`: `list_all`, `print_title`, `print_service_entry`,
//! `print_largenum`, `print_sched_flags`, `fwd_tun_info`, `print_tunnel_rule`, `list_conn`,
//! `print_conn`; `libipvs.c`: `ipvs_cmp_services`, `ipvs_cmp_dests`), see
//! `spec/heartbeat.md` §8.1. Trailing spaces are part of the format (`%-10u` on the last
//! column) and are reproduced.
//!
//! * [`list`] — `ipvsadm -L -n`; [`list_stats`] — `--stats`; [`list_rate`] — `--rate`;
//!   [`list_with`] — any [`View`] (also `--thresholds`, `--persistent-conn`, `--tun-info`)
//!   with [`Options`] (`--exact`, `--nosort`, names instead of numbers).
//! * [`list_conn`] / [`list_conn_with`] — `ipvsadm -L -n -c` (`/proc/net/ip_vs_conn`).
//! * [`save`] / [`save_with`] — `ipvsadm -S -n`, rules `ipvsadm -R` reads back.
//!
//! Order: ipvsadm sorts by default (`--sort` is a no-op kept for compatibility, `--nosort`
//! shows the kernel's order). Services are compared by fwmark, then address family (IPv4
//! before IPv6), protocol number (TCP 6 < UDP 17 < SCTP 132), address, port; so plain
//! services come before fwmark services, which follow in mark order. Destinations are
//! compared by address, then port. The comparisons are reproduced *with* their C quirks:
//! ipvsadm subtracts two unsigned 32-bit values and reads the difference as an `int`, so
//! addresses (and marks) more than 2³¹ apart compare backwards (`192.168.1.1` sorts before
//! `10.0.0.1`; a mark ≥ 2³¹ sorts before plain services), and the sort is glibc's merge
//! sort (`qsort` in glibc ≤ 2.36 and ≥ 2.39), reproduced here so the order matches even
//! where that comparison is not transitive. [`Options::sort`] `false` keeps the model's order.
//!
//! Two more 1.31 quirks kept on purpose: a fwmark is printed with `%d` (marks ≥ 2³¹ show
//! negative, fixed after 1.31), and in the `-L` view the persistence engine (` pe sip`) is
//! printed only for persistent services while `-S` prints `--pe` always.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::scheduler::Netmask;

/// The kernel's IPVS version code for 1.2.1 (`IP_VS_VERSION_CODE`).
pub const IPVS_VERSION_1_2_1: u32 = 0x010201;
/// The default connection-table hash size the kernel reports (`size=4096`).
pub const DEFAULT_CONN_TAB_SIZE: u32 = 4096;

/// Everything `ipvsadm -L` can show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// The kernel's IPVS version code, `major << 16 | minor << 8 | patch`.
    pub version: u32,
    /// The connection hash table size.
    pub size: u32,
    /// Virtual services, in the kernel's order (what `--nosort` shows).
    pub services: Vec<Service>,
    /// Connection entries, in `/proc/net/ip_vs_conn` order (`-c` never sorts).
    pub connections: Vec<Connection>,
}

impl Default for Model {
    fn default() -> Model {
        Model {
            version: IPVS_VERSION_1_2_1,
            size: DEFAULT_CONN_TAB_SIZE,
            services: Vec::new(),
            connections: Vec::new(),
        }
    }
}

/// A service's transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `-t`, shown `TCP`.
    Tcp,
    /// `-u`, shown `UDP`.
    Udp,
    /// `--sctp-service`, shown `SCTP`.
    Sctp,
}

impl Protocol {
    /// The IP protocol number, which orders services.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Sctp => 132,
        }
    }

    /// The name `-L` prints (`protocol_name`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// The option `-S` prints (`option_from_protocol`).
    pub fn option(self) -> &'static str {
        match self {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
            Protocol::Sctp => "--sctp-service",
        }
    }
}

/// What identifies a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKey {
    /// `PROTO VIP:PORT`.
    Addr {
        /// Transport protocol.
        protocol: Protocol,
        /// Virtual address and port.
        addr: SocketAddr,
    },
    /// `FWM <mark>`: packets marked by netfilter.
    Fwmark {
        /// The firewall mark.
        mark: u32,
        /// An IPv6 fwmark service (`-6`).
        ipv6: bool,
    },
}

impl ServiceKey {
    fn ipv6(&self) -> bool {
        match self {
            ServiceKey::Addr { addr, .. } => addr.is_ipv6(),
            ServiceKey::Fwmark { ipv6, .. } => *ipv6,
        }
    }
}

/// Scheduler flags (`-b`): three bits whose names depend on the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SchedFlags {
    /// `IP_VS_SVC_F_SCHED1`: `sh-fallback` / `mh-fallback` / `flag-1`.
    pub flag1: bool,
    /// `IP_VS_SVC_F_SCHED2`: `sh-port` / `mh-port` / `flag-2`.
    pub flag2: bool,
    /// `IP_VS_SVC_F_SCHED3`: `flag-3` (no scheduler names it).
    pub flag3: bool,
}

impl SchedFlags {
    fn any(&self) -> bool {
        self.flag1 || self.flag2 || self.flag3
    }

    /// The comma-separated names `print_sched_flags` prints for scheduler `sched`.
    pub fn names(&self, sched: &str) -> String {
        let mut v: Vec<&str> = Vec::new();
        match sched {
            "sh" | "mh" => {
                let (fallback, port) =
                    if sched == "sh" { ("sh-fallback", "sh-port") } else { ("mh-fallback", "mh-port") };
                if self.flag1 {
                    v.push(fallback);
                }
                if self.flag2 {
                    v.push(port);
                }
            }
            _ => {
                if self.flag1 {
                    v.push("flag-1");
                }
                if self.flag2 {
                    v.push("flag-2");
                }
                if self.flag3 {
                    v.push("flag-3");
                }
            }
        }
        v.join(",")
    }
}

/// Client affinity (`-p timeout [-M netmask]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Persistent {
    /// Seconds.
    pub timeout: u32,
    /// Granularity: the IPv4 mask is shown for IPv4 services unless 255.255.255.255, the
    /// IPv6 prefix for IPv6 services unless 128.
    pub netmask: Netmask,
}

/// Counters since the service or destination was created (`--stats`), 64-bit as 1.31 reads
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Connections scheduled.
    pub conns: u64,
    /// Packets in.
    pub inpkts: u64,
    /// Packets out.
    pub outpkts: u64,
    /// Bytes in.
    pub inbytes: u64,
    /// Bytes out.
    pub outbytes: u64,
}

/// Rate estimates (`--rate`), per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    /// Packets in per second.
    pub inpps: u64,
    /// Packets out per second.
    pub outpps: u64,
    /// Bytes in per second.
    pub inbps: u64,
    /// Bytes out per second.
    pub outbps: u64,
}

/// A virtual service and its real servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Protocol and address, or fwmark.
    pub key: ServiceKey,
    /// Scheduler name (`wlc`, `wrr`, ...), printed as given.
    pub scheduler: String,
    /// Scheduler flags.
    pub sched_flags: SchedFlags,
    /// Persistence, if any.
    pub persistent: Option<Persistent>,
    /// Persistence engine name (`sip`), if any.
    pub pe_name: Option<String>,
    /// One-packet scheduling (`-o`, shown `ops`).
    pub ops: bool,
    /// Counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
    /// Real servers, in the kernel's order.
    pub dests: Vec<Destination>,
}

impl Service {
    /// A service with no flags, persistence, counters or real servers.
    pub fn new(key: ServiceKey, scheduler: &str) -> Service {
        Service {
            key,
            scheduler: scheduler.to_string(),
            sched_flags: SchedFlags::default(),
            persistent: None,
            pe_name: None,
            ops: false,
            stats: Stats::default(),
            rates: Rates::default(),
            dests: Vec::new(),
        }
    }
}

/// Tunnel encapsulation type (`--tun-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelKind {
    /// IP-in-IP, the default.
    #[default]
    Ipip,
    /// Generic UDP Encapsulation to `port`.
    Gue {
        /// `--tun-port`.
        port: u16,
    },
    /// GRE.
    Gre,
}

/// Tunnel checksum mode (`--tun-nocsum`, `--tun-csum`, `--tun-remcsum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TunnelCsum {
    /// Without checksum (shown `-c`).
    #[default]
    NoCsum,
    /// With checksum (`+c`).
    Csum,
    /// With remote checksum offload (`r+c`).
    RemCsum,
}

impl TunnelCsum {
    fn short(self) -> &'static str {
        match self {
            TunnelCsum::NoCsum => "-c",
            TunnelCsum::Csum => "+c",
            TunnelCsum::RemCsum => "r+c",
        }
    }

    fn option(self) -> &'static str {
        match self {
            TunnelCsum::NoCsum => "--tun-nocsum",
            TunnelCsum::Csum => "--tun-csum",
            TunnelCsum::RemCsum => "--tun-remcsum",
        }
    }
}

/// Tunnel parameters of a tunnelled real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tunnel {
    /// Encapsulation.
    pub kind: TunnelKind,
    /// Checksum mode (GUE and GRE only).
    pub csum: TunnelCsum,
}

/// How packets reach a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT (`-m`).
    Masq,
    /// The real server is this host (shown `Local`, saved `-g`).
    Local,
    /// IP tunnelling (`-i`).
    Tunnel(Tunnel),
    /// Direct routing (`-g`, the default).
    Route,
}

impl Forward {
    /// The name `-L` prints (`fwd_name`).
    pub fn name(&self) -> &'static str {
        match self {
            Forward::Masq => "Masq",
            Forward::Local => "Local",
            Forward::Tunnel(_) => "Tunnel",
            Forward::Route => "Route",
        }
    }

    /// The option `-S` prints (`fwd_switch`).
    pub fn switch(&self) -> &'static str {
        match self {
            Forward::Masq => "-m",
            Forward::Tunnel(_) => "-i",
            Forward::Local | Forward::Route => "-g",
        }
    }
}

/// A real server of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Address and port (for DR and tunnels, IPVS keeps the service's port).
    pub addr: SocketAddr,
    /// Forwarding method.
    pub forward: Forward,
    /// Weight (0 = quiescent).
    pub weight: i32,
    /// Active connections.
    pub active: u32,
    /// Inactive connections.
    pub inactive: u32,
    /// Persistence templates pointing here (`--persistent-conn`).
    pub persist: u32,
    /// Upper connection threshold (0 = none).
    pub u_threshold: u32,
    /// Lower connection threshold.
    pub l_threshold: u32,
    /// Counters.
    pub stats: Stats,
    /// Rates.
    pub rates: Rates,
}

impl Destination {
    /// A real server with no connections, thresholds or counters.
    pub fn new(addr: SocketAddr, forward: Forward, weight: i32) -> Destination {
        Destination {
            addr,
            forward,
            weight,
            active: 0,
            inactive: 0,
            persist: 0,
            u_threshold: 0,
            l_threshold: 0,
            stats: Stats::default(),
            rates: Rates::default(),
        }
    }
}

/// One line of `/proc/net/ip_vs_conn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Protocol name as the kernel writes it (`TCP`, `UDP`, `SCTP`, ...).
    pub protocol: String,
    /// Client address.
    pub source: SocketAddr,
    /// Virtual address.
    pub virtual_addr: SocketAddr,
    /// Real server.
    pub destination: SocketAddr,
    /// Protocol state (`ESTABLISHED`, `FIN_WAIT`, `UDP`, ...).
    pub state: String,
    /// Seconds until the entry expires.
    pub expires: u32,
    /// Persistence engine name and data, when the entry has them.
    pub pe: Option<(String, String)>,
}

/// Which `-L` view to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum View {
    /// `-L`: scheduler, flags, forwarding, weight, connections.
    #[default]
    Plain,
    /// `--stats`.
    Stats,
    /// `--rate`.
    Rate,
    /// `--thresholds`.
    Thresholds,
    /// `--persistent-conn`.
    PersistentConn,
    /// `--tun-info`.
    TunInfo,
}

/// Name lookups for output without `-n` (what `gethostbyaddr` and `getservbyport` answer).
/// `None` falls back to the number, as ipvsadm does when a lookup fails.
pub trait Names {
    /// The host name of `addr`.
    fn host(&self, addr: IpAddr) -> Option<String>;
    /// The service name of `port` for `protocol` (`None`: a protocol ipvsadm does not look
    /// names up for).
    fn service(&self, port: u16, protocol: Option<Protocol>) -> Option<String>;
}

/// Output options.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    /// Names instead of numbers (ipvsadm without `-n`); `None` is `-n`.
    pub names: Option<&'a dyn Names>,
    /// Sort services and destinations (the default; `false` is `--nosort`).
    pub sort: bool,
    /// Full numbers instead of K/M/G/T (`--exact`).
    pub exact: bool,
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options { names: None, sort: true, exact: false }
    }
}

impl std::fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("names", &self.names.is_some())
            .field("sort", &self.sort)
            .field("exact", &self.exact)
            .finish()
    }
}

/// `ipvsadm -L -n`.
pub fn list(model: &Model) -> String {
    list_with(model, View::Plain, &Options::default())
}

/// `ipvsadm -L -n --stats`.
pub fn list_stats(model: &Model) -> String {
    list_with(model, View::Stats, &Options::default())
}

/// `ipvsadm -L -n --rate`.
pub fn list_rate(model: &Model) -> String {
    list_with(model, View::Rate, &Options::default())
}

/// `ipvsadm -L` in any view: the version line, the view's title, then every service.
pub fn list_with(model: &Model, view: View, opts: &Options<'_>) -> String {
    let mut out = String::new();
    let v = model.version;
    let _ = writeln!(
        out,
        "IP Virtual Server version {}.{}.{} (size={})",
        (v >> 16) & 0xff,
        (v >> 8) & 0xff,
        v & 0xff,
        model.size as i32
    );
    title(&mut out, view);
    for s in ordered_services(model, opts) {
        service_entry(&mut out, s, view, opts);
    }
    out
}

/// `ipvsadm -S -n` (`ipvsadm-save -n`).
pub fn save(model: &Model) -> String {
    save_with(model, &Options::default())
}

/// `ipvsadm -S` with options (names without `-n`, `--nosort`).
pub fn save_with(model: &Model, opts: &Options<'_>) -> String {
    let mut out = String::new();
    for s in ordered_services(model, opts) {
        rule_entry(&mut out, s, opts);
    }
    out
}

/// `ipvsadm -L -n -c`.
pub fn list_conn(model: &Model) -> String {
    list_conn_with(model, false, &Options::default())
}

/// `ipvsadm -L -c` with options; `persistent_conn` adds the `pe name` and `pe_data` columns
/// (`--persistent-conn`), filled in for entries that have a persistence engine.
pub fn list_conn_with(model: &Model, persistent_conn: bool, opts: &Options<'_>) -> String {
    let mut out = String::new();
    out.push_str("IPVS connection entries\n");
    // "pro expire %-11s %-18s %-18s [%-18s %-16s ]%s\n" over the column names.
    if persistent_conn {
        out.push_str(
            "pro expire state       source             virtual            destination        pe name          pe_data\n",
        );
    } else {
        out.push_str("pro expire state       source             virtual            destination\n");
    }
    for c in &model.connections {
        let proto = match c.protocol.as_str() {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        };
        let cname = addrport(c.source, proto, opts);
        let vname = addrport(c.virtual_addr, proto, opts);
        let dname = addrport(c.destination, proto, opts);
        let expire = format!("{:02}:{:02}", c.expires / 60, c.expires % 60);
        match (&c.pe, persistent_conn) {
            (Some((pe_name, pe_data)), true) => {
                let _ = writeln!(
                    out,
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {:<16} {:<18} {}",
                    c.protocol, expire, c.state, cname, vname, dname, pe_name, pe_data
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
                    c.protocol, expire, c.state, cname, vname, dname
                );
            }
        }
    }
    out
}

/// `print_largenum`: a counter in a 9-character column, abbreviated K/M/G/T (decimal
/// thousands) when it would not fit, or in full (`--exact`) with at least one space before.
pub fn largenum(i: u64, exact: bool) -> String {
    if exact {
        let len = i.to_string().len();
        let width = if len <= 8 { 9 } else { len + 1 };
        return format!("{i:>width$}");
    }
    if i < 100_000_000 {
        format!("{i:>9}")
    } else if i < 1_000_000_000 {
        format!("{:>8}K", i / 1_000)
    } else if i < 100_000_000_000 {
        format!("{:>8}M", i / 1_000_000)
    } else if i < 100_000_000_000_000 {
        format!("{:>8}G", i / 1_000_000_000)
    } else {
        format!("{:>8}T", i / 1_000_000_000_000)
    }
}

fn title(out: &mut String, view: View) {
    let head = "Prot LocalAddress:Port";
    match view {
        View::Stats => {
            let _ = writeln!(
                out,
                "{head:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"
            );
        }
        View::Rate => {
            let _ = writeln!(
                out,
                "{head:<33} {:>8} {:>8} {:>8} {:>8} {:>8}\n  -> RemoteAddress:Port",
                "CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"
            );
        }
        View::Thresholds => {
            let _ = writeln!(
                out,
                "{head:<33} {:<10} {:<10} {:<10} {:<10}\n  -> RemoteAddress:Port",
                "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
            );
        }
        View::PersistentConn => {
            let _ = writeln!(
                out,
                "{head:<33} {:<9} {:<11} {:<10} {:<10}\n  -> RemoteAddress:Port",
                "Weight", "PersistConn", "ActiveConn", "InActConn"
            );
        }
        View::TunInfo => out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n",
        ),
        View::Plain => out.push_str(
            "Prot LocalAddress:Port Scheduler Flags\n  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
        ),
    }
}

/// Truncates to at most `n` bytes (on a character boundary), as ipvsadm's `buf[n] = '\0'`.
fn cut(mut s: String, n: usize) -> String {
    if s.len() > n {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// `addrport_to_anyname`: `a.b.c.d:port`, `[v6]:port`, or names; at most 59 bytes (its
/// 60-byte buffer).
fn addrport(addr: SocketAddr, proto: Option<Protocol>, opts: &Options<'_>) -> String {
    let (open, close) = if addr.is_ipv4() { ("", "") } else { ("[", "]") };
    let s = match opts.names {
        None => format!("{open}{}{close}:{}", addr.ip(), addr.port()),
        Some(n) => {
            let host = n.host(addr.ip()).unwrap_or_else(|| addr.ip().to_string());
            // getservbyport is asked only for TCP, UDP and SCTP; its answer for port 0 and
            // unknown protocols is none.
            let port = proto
                .and_then(|p| n.service(addr.port(), Some(p)))
                .unwrap_or_else(|| addr.port().to_string());
            format!("{open}{host}{close}:{port}")
        }
    };
    cut(s, 59)
}

/// The service's name column: `TCP  1.2.3.4:80` (cut at 33 for IPv4), `FWM  1 IPv6`.
fn service_name(s: &Service, opts: &Options<'_>) -> String {
    match s.key {
        ServiceKey::Fwmark { mark, ipv6 } => {
            // ipvsadm 1.31 prints the mark with %d.
            let mark = mark as i32;
            if ipv6 {
                format!("FWM  {mark} IPv6")
            } else {
                format!("FWM  {mark}")
            }
        }
        ServiceKey::Addr { protocol, addr } => {
            let name = format!("{:<4} {}", protocol.name(), addrport(addr, Some(protocol), opts));
            if addr.is_ipv4() {
                cut(name, 33)
            } else {
                name
            }
        }
    }
}

fn service_entry(out: &mut String, s: &Service, view: View, opts: &Options<'_>) {
    let name = service_name(s, opts);
    match view {
        View::Stats => {
            let st = &s.stats;
            let _ = write!(out, "{name:<33}");
            for v in [st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes] {
                out.push_str(&largenum(v, opts.exact));
            }
        }
        View::Rate => {
            let r = &s.rates;
            let _ = write!(out, "{name:<33}");
            for v in [r.cps, r.inpps, r.outpps, r.inbps, r.outbps] {
                out.push_str(&largenum(v, opts.exact));
            }
        }
        _ => {
            let _ = write!(out, "{name} {}", s.scheduler);
            if s.sched_flags.any() {
                let _ = write!(out, " ({})", s.sched_flags.names(&s.scheduler));
            }
            if let Some(p) = &s.persistent {
                let _ = write!(out, " persistent {}", p.timeout);
                if let Some(m) = mask_shown(&s.key, &p.netmask) {
                    let _ = write!(out, " mask {m}");
                }
                if let Some(pe) = &s.pe_name {
                    let _ = write!(out, " pe {pe}");
                }
            }
            if s.ops {
                out.push_str(" ops");
            }
        }
    }
    out.push('\n');

    for d in ordered_dests(s, opts) {
        let proto = service_protocol(s);
        let dname = addrport(d.addr, proto, opts);
        let dname = if d.addr.is_ipv4() { cut(dname, 28) } else { dname };
        match view {
            View::Stats => {
                let st = &d.stats;
                let _ = write!(out, "  -> {dname:<28}");
                for v in [st.conns, st.inpkts, st.outpkts, st.inbytes, st.outbytes] {
                    out.push_str(&largenum(v, opts.exact));
                }
                out.push('\n');
            }
            View::Rate => {
                let r = &d.rates;
                let _ = write!(out, "  -> {dname:<28} {:>8} {:>8} {:>8}", r.cps, r.inpps, r.outpps);
                out.push_str(&largenum(r.inbps, opts.exact));
                out.push_str(&largenum(r.outbps, opts.exact));
                out.push('\n');
            }
            View::Thresholds => {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<10} {:<10} {:<10} {:<10}",
                    d.u_threshold, d.l_threshold, d.active, d.inactive
                );
            }
            View::PersistentConn => {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<9} {:<11} {:<10} {:<10}",
                    // %u of the int weight.
                    d.weight as u32,
                    d.persist,
                    d.active,
                    d.inactive
                );
            }
            View::TunInfo => {
                let info = match d.forward {
                    Forward::Tunnel(t) => cut(tunnel_info(&t), 15),
                    _ => "n/a".to_string(),
                };
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<13} {:<6} {:<10} {:<10}",
                    d.forward.name(),
                    info,
                    d.weight,
                    d.active,
                    d.inactive
                );
            }
            View::Plain => {
                let _ = writeln!(
                    out,
                    "  -> {dname:<28} {:<7} {:<6} {:<10} {:<10}",
                    d.forward.name(),
                    d.weight,
                    d.active,
                    d.inactive
                );
            }
        }
    }
}

/// `fwd_tun_info`: `ipip`, `gue:6080:-c`, `gre:+c`.
fn tunnel_info(t: &Tunnel) -> String {
    match t.kind {
        TunnelKind::Ipip => "ipip".to_string(),
        TunnelKind::Gue { port } => format!("gue:{port}:{}", t.csum.short()),
        TunnelKind::Gre => format!("gre:{}", t.csum.short()),
    }
}

fn service_protocol(s: &Service) -> Option<Protocol> {
    match s.key {
        ServiceKey::Addr { protocol, .. } => Some(protocol),
        // ipvsadm passes the fwmark service's protocol (0, IPPROTO_IP) to getservbyport,
        // which finds nothing for it.
        ServiceKey::Fwmark { .. } => None,
    }
}

/// The persistence mask as `-L`/`-S` show it: the IPv4 mask for IPv4 services unless
/// /32, the IPv6 prefix length for IPv6 services unless /128.
fn mask_shown(key: &ServiceKey, m: &Netmask) -> Option<String> {
    if key.ipv6() {
        (m.v6_prefix() != 128).then(|| m.v6_prefix().to_string())
    } else {
        (m.v4_mask() != std::net::Ipv4Addr::BROADCAST).then(|| m.v4_mask().to_string())
    }
}

fn rule_entry(out: &mut String, s: &Service, opts: &Options<'_>) {
    let svc = match s.key {
        ServiceKey::Fwmark { mark, ipv6 } => {
            let mark = mark as i32;
            if ipv6 {
                format!("-f {mark} -6")
            } else {
                format!("-f {mark}")
            }
        }
        ServiceKey::Addr { protocol, addr } => {
            format!("{} {}", protocol.option(), addrport(addr, Some(protocol), opts))
        }
    };
    let _ = write!(out, "-A {svc} -s {}", s.scheduler);
    if let Some(p) = &s.persistent {
        let _ = write!(out, " -p {}", p.timeout);
        if let Some(m) = mask_shown(&s.key, &p.netmask) {
            let _ = write!(out, " -M {m}");
        }
    }
    if let Some(pe) = &s.pe_name {
        let _ = write!(out, " --pe {pe}");
    }
    if s.ops {
        out.push_str(" -o");
    }
    if s.sched_flags.any() {
        let _ = write!(out, " -b {}", s.sched_flags.names(&s.scheduler));
    }
    out.push('\n');
    let proto = service_protocol(s);
    for d in ordered_dests(s, opts) {
        let dname = addrport(d.addr, proto, opts);
        let _ = write!(out, "-a {svc} -r {dname} {} -w {}", d.forward.switch(), d.weight);
        if let Forward::Tunnel(t) = d.forward {
            match t.kind {
                TunnelKind::Ipip => out.push_str(" --tun-type ipip"),
                TunnelKind::Gue { port } => {
                    let _ = write!(out, " --tun-type gue --tun-port {port} {}", t.csum.option());
                }
                TunnelKind::Gre => {
                    let _ = write!(out, " --tun-type gre {}", t.csum.option());
                }
            }
        }
        out.push('\n');
    }
}

/// `union nf_inet_addr` as four host-order words (IPv4 in the first, the rest zero), which
/// is what libipvs's comparisons read.
fn words(ip: IpAddr) -> [u32; 4] {
    match ip {
        IpAddr::V4(a) => [u32::from(a), 0, 0, 0],
        IpAddr::V6(a) => {
            let o = a.octets();
            let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
            [w(0), w(4), w(8), w(12)]
        }
    }
}

/// `ntohl(a) - ntohl(b)` computed in unsigned 32 bits and read as an `int`.
fn c_diff(a: u32, b: u32) -> i32 {
    a.wrapping_sub(b) as i32
}

/// libipvs's address comparison: four words if the first operand is IPv6, else one.
fn cmp_addr(a: IpAddr, b: IpAddr) -> i32 {
    let (wa, wb) = (words(a), words(b));
    if a.is_ipv6() {
        let mut r = 0;
        for i in 0..4 {
            r = c_diff(wa[i], wb[i]);
            if r != 0 {
                break;
            }
        }
        r
    } else {
        c_diff(wa[0], wb[0])
    }
}

/// `ipvs_cmp_services`.
fn cmp_services(a: &Service, b: &Service) -> i32 {
    // (fwmark, af, protocol, address, port) as the kernel reports them: fwmark services
    // have protocol 0 (IPPROTO_IP), an all-zero address and port 0.
    let parts = |s: &Service| -> (u32, i32, i32, IpAddr, i32) {
        let af = |v6: bool| if v6 { AF_INET6 } else { AF_INET };
        match s.key {
            ServiceKey::Addr { protocol, addr } => {
                (0, af(addr.is_ipv6()), i32::from(protocol.number()), addr.ip(), i32::from(addr.port()))
            }
            ServiceKey::Fwmark { mark, ipv6 } => {
                let zero = if ipv6 {
                    IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                } else {
                    IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
                };
                (mark, af(ipv6), 0, zero, 0)
            }
        }
    };
    let (fa, afa, pa, ada, poa) = parts(a);
    let (fb, afb, pb, adb, pob) = parts(b);
    let r = c_diff(fa, fb);
    if r != 0 {
        return r;
    }
    if afa != afb {
        return afa - afb;
    }
    if pa != pb {
        return pa - pb;
    }
    let r = cmp_addr(ada, adb);
    if r != 0 {
        return r;
    }
    poa - pob
}

/// `ipvs_cmp_dests`.
fn cmp_dests(a: &Destination, b: &Destination) -> i32 {
    let r = cmp_addr(a.addr.ip(), b.addr.ip());
    if r != 0 {
        return r;
    }
    i32::from(a.addr.port()) - i32::from(b.addr.port())
}

// Linux address family numbers (the values libipvs subtracts).
const AF_INET: i32 = 2;
const AF_INET6: i32 = 10;

/// glibc's `qsort` (its merge sort, `msort_with_tmp`): split in halves (the first half the
/// smaller), sort each, merge taking from the first half while `cmp <= 0`. Stable, and
/// total on any comparison function, transitive or not.
fn msort<'a, T>(v: &mut [&'a T], cmp: &impl Fn(&T, &T) -> i32) {
    let n = v.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    msort(&mut v[..n1], cmp);
    msort(&mut v[n1..], cmp);
    let mut merged: Vec<&'a T> = Vec::with_capacity(n);
    let (mut i, mut j) = (0, n1);
    while i < n1 && j < n {
        if cmp(v[i], v[j]) <= 0 {
            merged.push(v[i]);
            i += 1;
        } else {
            merged.push(v[j]);
            j += 1;
        }
    }
    merged.extend_from_slice(&v[i..n1]);
    merged.extend_from_slice(&v[j..n]);
    v.copy_from_slice(&merged);
}

fn ordered_services<'m>(model: &'m Model, opts: &Options<'_>) -> Vec<&'m Service> {
    let mut v: Vec<&Service> = model.services.iter().collect();
    if opts.sort {
        msort(&mut v, &cmp_services);
    }
    v
}

fn ordered_dests<'s>(s: &'s Service, opts: &Options<'_>) -> Vec<&'s Destination> {
    let mut v: Vec<&Destination> = s.dests.iter().collect();
    if opts.sort {
        msort(&mut v, &cmp_dests);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_sort_is_glibcs_on_a_non_transitive_order() {
        // With the wrapped differences: 10.0.0.1 > 192.168.1.1 (they are more than 2^31
        // apart), 10.0.0.1 < 100.0.0.1, 100.0.0.1 < 192.168.1.1: a cycle. glibc's merge
        // sort gives a definite answer; so must we.
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "192.168.1.1".parse().expect("ip");
        let c: IpAddr = "100.0.0.1".parse().expect("ip");
        assert!(cmp_addr(a, b) > 0);
        assert!(cmp_addr(a, c) < 0);
        assert!(cmp_addr(c, b) < 0);
        let items = [a, b, c];
        let mut v: Vec<&IpAddr> = items.iter().collect();
        msort(&mut v, &|x: &IpAddr, y: &IpAddr| cmp_addr(*x, *y));
        // [a] | [b, c] -> [b, c] sorted as [c, b]; merge a vs c: a < c -> a; then c, b.
        assert_eq!(v, vec![&a, &c, &b]);
    }

    #[test]
    fn msort_matches_a_stable_sort_when_the_order_is_total() {
        let mut seed = 12345u64;
        for n in 0..40 {
            let items: Vec<(u8, usize)> = (0..n)
                .map(|i| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((seed >> 60) as u8, i)
                })
                .collect();
            let mut v: Vec<&(u8, usize)> = items.iter().collect();
            msort(&mut v, &|x: &(u8, usize), y: &(u8, usize)| i32::from(x.0) - i32::from(y.0));
            let mut w: Vec<&(u8, usize)> = items.iter().collect();
            w.sort_by_key(|x| x.0);
            assert_eq!(v, w);
        }
    }
}
