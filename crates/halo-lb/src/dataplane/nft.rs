//! The nftables data plane: [`NftDataPlane::apply`] turns a [`Desired`] state into the content
//! of one table (`ip halo_lb` by default; IPv6 services in `ip6 halo_lb`, which exists only
//! while there are some) and reconciles it with what `nft -j list table` reports, in one
//! `nft -j -f -` transaction when they differ and not at all when they agree. It touches no
//! other table. The `ip6` table is built as the `ip` one below, with `ip6` payloads and
//! `ipv6_addr` sets; in names an IPv6 address is one field, `x` and 32 hex digits.
//!
//! The table (names are built from the service and real server addresses, so that the
//! objects of a real server that stays keep their state across applies):
//! * `prerouting` (nat, dstnat): `ip daddr VIP tcp dport P goto svc_…` per NAT service;
//!   `raw_prerouting` (filter, priority raw, before conntrack) the same per DR service.
//! * `svc_…`: first, per real server, "client already bound to it" (`ip saddr & mask` in its
//!   persistence set, or for DR `ip saddr . sport` or the masked address in its flow set):
//!   refresh the entry and `goto real_…`; then the scheduling verdict map (`numgen inc` or
//!   `jhash`) over the slots, to `new_…` (add the client to the set) or straight to `real_…`.
//! * `real_…`: NAT: `dnat to RIP:port`; DR: `counter`, `dup to RIP`, `drop`.
//! * `forward` (filter): one named counter per real server and direction for NAT
//!   (`in_…`/`out_…`); `postrouting` (nat, srcnat): `masquerade` for services that want it.
//! * sets `aff_…`: the persistence / DR flow sets, with timeouts and a size cap.
//!
//! Reconciling: every rule carries a comment that is a digest of its JSON, so comparing the
//! kernel's listing with the wanted table is comparing chain definitions, set definitions,
//! counter names and each chain's list of rule digests, which does not depend on how `nft`
//! prints expressions back (nft 1.0.6 cannot even print a dynamic-set statement in JSON).
//! When they differ, one transaction flushes every chain of the table, deletes what is no
//! longer wanted, adds what is missing and re-adds every rule: the kernel swaps it in
//! atomically. Sets and counters that are still wanted are never deleted, so persistence
//! entries, DR flows and traffic counters survive the apply; NAT connections survive anything
//! because conntrack holds them.
//!
//! This JSON is written with `serde_json` rather than the `nftables` crate's typed model: the
//! plane needs exact control of what it sends (the digests are over it) and only ever reads
//! back object names, definitions and counters, which the crate's types would add nothing to.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::scheduler::Netmask;

use super::{
    scheduling_of, slots, Desired, Forward, InvalidDesired, Protocol, Scheduling, ServiceKey, VirtualService,
    AFFINITY_SET_SIZE, DR_TCP_FLOW_TIMEOUT_S, DR_UDP_FLOW_TIMEOUT_S,
};

/// The table halo owns unless told otherwise.
pub const DEFAULT_TABLE: &str = "halo_lb";

/// An nftables table family: IPv4 services live in table `ip NAME`, IPv6 ones in `ip6 NAME`
/// (made only while there are IPv6 services).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const BOTH: [Family; 2] = [Family::V4, Family::V6];

    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// The table family and the payload protocol of the network header: `ip`, `ip6`.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
}

/// Seed of every `jhash`: fixed, so that the same desired state always gives the same rules
/// (and a client the same real server across applies).
const JHASH_SEED: u64 = 0x6861_6c6f;

/// What went wrong, with what was being run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the nft program {program:?} was not found: install nftables (Debian package `nftables`, \
         /usr/sbin/nft)"
    )]
    NftMissing { program: PathBuf },
    #[error("running {command}: {source}")]
    Spawn { command: String, source: std::io::Error },
    #[error("{command} failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
    #[error("{command}: unexpected output: {what}")]
    BadOutput { command: String, what: String },
    #[error(transparent)]
    Invalid(#[from] InvalidDesired),
}

/// How to run `nft`: which program, and optionally inside which named network namespace
/// (`ip netns exec NAME nft …`), which is how the tests drive a director namespace.
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
    netns: Option<String>,
}

impl Default for Nft {
    fn default() -> Self {
        Nft::new()
    }
}

impl Nft {
    /// `nft` from `PATH`, or `/usr/sbin/nft` (not on a normal user's `PATH`).
    pub fn new() -> Nft {
        Nft { program: PathBuf::from("nft"), netns: None }
    }

    /// Another program (a path, or a name looked up in `PATH`).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> Nft {
        self.program = program.into();
        self
    }

    /// Runs every command inside the named network namespace (`ip netns exec`).
    pub fn in_netns(mut self, name: impl Into<String>) -> Nft {
        self.netns = Some(name.into());
        self
    }

    /// The program that will run, found now (the error names what was looked for).
    fn locate(&self) -> Result<PathBuf, Error> {
        let p = &self.program;
        if p.components().count() > 1 {
            return if p.is_file() { Ok(p.clone()) } else { Err(Error::NftMissing { program: p.clone() }) };
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join(p))
            .find(|c| c.is_file())
            .ok_or_else(|| Error::NftMissing { program: p.clone() })
    }

    /// Runs `nft ARGS` with `input` on stdin; its stdout on success.
    pub fn run(&self, args: &[&str], input: Option<&str>) -> Result<String, Error> {
        let program = self.locate()?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        cmd.args(args);
        let command = format!(
            "{}{} {}",
            self.netns.as_ref().map(|n| format!("ip netns exec {n} ")).unwrap_or_default(),
            program.display(),
            args.join(" ")
        );
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|source| Error::Spawn { command: command.clone(), source })?;
        if let Some(text) = input {
            if let Some(mut stdin) = child.stdin.take() {
                stdin
                    .write_all(text.as_bytes())
                    .map_err(|source| Error::Spawn { command: command.clone(), source })?;
            }
        }
        let out =
            child.wait_with_output().map_err(|source| Error::Spawn { command: command.clone(), source })?;
        if !out.status.success() {
            return Err(Error::Failed {
                command,
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        String::from_utf8(out.stdout).map_err(|_| Error::BadOutput { command, what: "not UTF-8".into() })
    }

    fn run_json(&self, args: &[&str]) -> Result<Value, Error> {
        let text = self.run(args, None)?;
        serde_json::from_str(&text)
            .map_err(|e| Error::BadOutput { command: format!("nft {}", args.join(" ")), what: e.to_string() })
    }
}

/// One difference [`NftDataPlane::apply`] found (and removed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    TableCreated,
    ChainAdded(String),
    ChainRemoved(String),
    /// Its hook, type or priority differed: deleted and added again.
    ChainRedefined(String),
    /// Its rules differed from the wanted ones.
    RulesReplaced(String),
    SetAdded(String),
    SetRemoved(String),
    /// Its type, timeout or size differed: deleted (with its entries) and added again.
    SetRedefined(String),
    CounterAdded(String),
    CounterRemoved(String),
    /// The `ip6` table was deleted: no IPv6 virtual service is left.
    TableRemoved,
    /// A change of the `ip6` table (IPv6 virtual services).
    Ip6(Box<Change>),
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::TableCreated => write!(f, "table created"),
            Change::ChainAdded(n) => write!(f, "chain {n} added"),
            Change::ChainRemoved(n) => write!(f, "chain {n} removed"),
            Change::ChainRedefined(n) => write!(f, "chain {n} redefined"),
            Change::RulesReplaced(n) => write!(f, "rules of chain {n} replaced"),
            Change::SetAdded(n) => write!(f, "set {n} added"),
            Change::SetRemoved(n) => write!(f, "set {n} removed"),
            Change::SetRedefined(n) => write!(f, "set {n} redefined"),
            Change::CounterAdded(n) => write!(f, "counter {n} added"),
            Change::CounterRemoved(n) => write!(f, "counter {n} removed"),
            Change::TableRemoved => write!(f, "table removed"),
            Change::Ip6(c) => write!(f, "ip6: {c}"),
        }
    }
}

/// Traffic of one real server of one virtual service since its counters were created. `in`
/// is client → real server, `out` the replies (always 0 for DR, where the replies do not pass
/// the director; IPVS shows the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealStats {
    pub service: ServiceKey,
    pub real: SocketAddr,
    pub in_packets: u64,
    pub in_bytes: u64,
    pub out_packets: u64,
    pub out_bytes: u64,
}

/// The data plane: one table of one network namespace.
#[derive(Debug, Clone)]
pub struct NftDataPlane {
    nft: Nft,
    table: String,
}

impl NftDataPlane {
    /// The plane of table `ip halo_lb`.
    pub fn new(nft: Nft) -> NftDataPlane {
        NftDataPlane { nft, table: DEFAULT_TABLE.to_string() }
    }

    /// Another table name (tests run several planes side by side).
    pub fn with_table(mut self, table: impl Into<String>) -> NftDataPlane {
        self.table = table.into();
        self
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Makes the kernel's tables what `desired` says and returns what had to change (empty:
    /// nothing was sent to the kernel). IPv4 services are in table `ip NAME` (which exists
    /// whenever the plane runs), IPv6 ones in `ip6 NAME` (made with the first IPv6 service,
    /// deleted with the last); both change in one transaction. Blocks for one to four `nft`
    /// runs (~10 ms each).
    pub fn apply(&self, desired: &Desired) -> Result<Vec<Change>, Error> {
        can_run(desired)?;
        let tables = self.tables()?;
        let mut changes = Vec::new();
        let mut commands = Vec::new();
        let mut created = Vec::new();
        for family in Family::BOTH {
            let sub = of_family(desired, family);
            let exists = tables.contains(&family);
            if family == Family::V6 && sub.services.is_empty() {
                if exists {
                    changes.push(Change::Ip6(Box::new(Change::TableRemoved)));
                    commands
                        .push(json!({"delete": {"table": {"family": family.name(), "name": self.table}}}));
                }
                continue;
            }
            let have = if exists { self.read(family)? } else { None };
            let mut base = with_draining(&sub, have.as_ref());
            if have.is_none() {
                base = with_staged(&base, &super::flows::staged_sets(&self.table));
            }
            let want = Plan::build(&base, family);
            let (c, cmds) = want.reconcile(&self.table, family, have.as_ref());
            if have.is_none() {
                created.push(want);
            }
            commands.extend(cmds);
            changes.extend(c.into_iter().map(|c| match family {
                Family::V4 => c,
                Family::V6 => Change::Ip6(Box::new(c)),
            }));
        }
        if !created.is_empty() {
            // Becoming the director: the flows another director synced here go in with the
            // sets, in the same transaction (see `flows`).
            let (adds, n) = super::flows::take_commands(&self.table, |name| {
                created.iter().find_map(|p| p.sets.get(name).map(|d| d.timeout))
            });
            if n > 0 {
                commands.extend(adds);
            }
        }
        if !changes.is_empty() {
            let doc = json!({ "nftables": commands });
            self.nft.run(&["-j", "-f", "-"], Some(&doc.to_string()))?;
        }
        Ok(changes)
    }

    /// What [`apply`](Self::apply) would send to create the tables from nothing (for
    /// inspection: `halo lvs --nft`, tests).
    pub fn ruleset_json(&self, desired: &Desired) -> Result<Value, Error> {
        can_run(desired)?;
        let mut commands = Vec::new();
        for family in Family::BOTH {
            let sub = of_family(desired, family);
            if family == Family::V6 && sub.services.is_empty() {
                continue;
            }
            commands.extend(Plan::build(&sub, family).reconcile(&self.table, family, None).1);
        }
        Ok(json!({ "nftables": commands }))
    }

    /// Per real server traffic counters, ordered by service and real server.
    pub fn stats(&self) -> Result<Vec<RealStats>, Error> {
        let mut by_real: BTreeMap<(ServiceKey, SocketAddr), RealStats> = BTreeMap::new();
        for have in self.read_all()? {
            for (name, c) in &have.counters {
                let Some((dir, svc, real)) = parse_counter_name(name) else { continue };
                let e = by_real.entry((svc, real)).or_insert(RealStats {
                    service: svc,
                    real,
                    in_packets: 0,
                    in_bytes: 0,
                    out_packets: 0,
                    out_bytes: 0,
                });
                if dir == "in" {
                    (e.in_packets, e.in_bytes) = (c.0, c.1);
                } else {
                    (e.out_packets, e.out_bytes) = (c.0, c.1);
                }
            }
        }
        Ok(by_real.into_values().collect())
    }

    /// How many clients (persistence) or flows (DR) are bound to each real server now.
    pub fn affinity(&self) -> Result<BTreeMap<String, usize>, Error> {
        Ok(self.read_all()?.into_iter().flat_map(|k| k.sets.into_iter().map(|(n, s)| (n, s.elems))).collect())
    }

    /// The flow and persistence sets of the tables with their elements (empty when there is
    /// no table): what the active director sends to the standby ones (see `flows`).
    pub fn export_flows(&self) -> Result<Vec<super::flows::FlowSet>, Error> {
        Ok(self.listings()?.iter().flat_map(|(_, v)| super::flows::export(v)).collect())
    }

    /// [`export_flows`](Self::export_flows) and the tables' (service, real server) pairs,
    /// from one listing of each: what director sync sends each interval (the pairs pick the
    /// NAT connections out of conntrack).
    pub fn export_sync(&self) -> Result<SyncExport, Error> {
        self.export_sync_of(&self.tables()?)
    }

    /// [`export_sync`](Self::export_sync) of the tables of `families`, for a caller that
    /// listed the tables already (director sync does, every interval): one `nft` run per
    /// table, none to look for them.
    pub fn export_sync_of(&self, families: &[Family]) -> Result<SyncExport, Error> {
        let mut out = SyncExport::default();
        for (family, v) in self.listings_of(families)? {
            let k = Kernel::parse(&v).map_err(|what| Error::BadOutput {
                command: format!("nft -j list table {} {}", family.name(), self.table),
                what,
            })?;
            out.reals.extend(k.counters.keys().filter_map(|n| parse_counter_name(n)).map(|(_, s, r)| (s, r)));
            out.sets.extend(super::flows::export(&v));
        }
        out.reals.sort();
        out.reals.dedup();
        Ok(out)
    }

    /// `nft -j list table` of each table that exists.
    fn listings(&self) -> Result<Vec<(Family, Value)>, Error> {
        self.listings_of(&self.tables()?)
    }

    fn listings_of(&self, families: &[Family]) -> Result<Vec<(Family, Value)>, Error> {
        families
            .iter()
            .map(|&f| Ok((f, self.nft.run_json(&["-j", "list", "table", f.name(), &self.table])?)))
            .collect()
    }

    /// The flows (and persistence templates) of the DR `services` in the tables, for their
    /// `ActiveConn`/`InActConn` and the `-c` list (see [`super::flows::dr_flows`] and
    /// [`super::flows::DR_ACTIVE_IDLE_S`]); empty when there is no table.
    pub fn dr_flows(&self, services: &[ServiceKey]) -> Result<Vec<super::flows::DrFlow>, Error> {
        Ok(super::flows::dr_flows(&self.export_flows()?, services))
    }

    /// Deletes the tables (a clean stop); false when there was none.
    pub fn remove(&self) -> Result<bool, Error> {
        let tables = self.tables()?;
        if tables.is_empty() {
            return Ok(false);
        }
        let cmds: Vec<Value> = tables
            .iter()
            .map(|f| json!({"delete": {"table": {"family": f.name(), "name": self.table}}}))
            .collect();
        self.nft.run(&["-j", "-f", "-"], Some(&json!({"nftables": cmds}).to_string()))?;
        Ok(true)
    }

    /// The families in which the table exists.
    fn tables(&self) -> Result<Vec<Family>, Error> {
        let tables = self.nft.run_json(&["-j", "list", "tables"])?;
        Ok(table_families(&tables).into_iter().filter(|(n, _)| *n == self.table).map(|(_, f)| f).collect())
    }

    /// The kernel's view of the table of `family`, or None when it does not exist.
    fn read(&self, family: Family) -> Result<Option<Kernel>, Error> {
        let v = self.nft.run_json(&["-j", "list", "table", family.name(), &self.table])?;
        Kernel::parse(&v).map(Some).map_err(|what| Error::BadOutput {
            command: format!("nft -j list table {} {}", family.name(), self.table),
            what,
        })
    }

    /// The kernel's view of every table that exists.
    fn read_all(&self) -> Result<Vec<Kernel>, Error> {
        let mut out = Vec::new();
        for family in self.tables()? {
            out.extend(self.read(family)?);
        }
        Ok(out)
    }
}

/// [`Desired::validate`], and what this plane cannot run: `ipip` forwarding (IPVS only).
pub fn can_run(desired: &Desired) -> Result<(), InvalidDesired> {
    desired.validate()?;
    for s in &desired.services {
        if s.forward == Forward::Ipip {
            return Err(InvalidDesired::NeedsIpvs { service: s.key, what: "ipip forwarding (LVS-TUN)" });
        }
    }
    Ok(())
}

/// Every `ip` and `ip6` table of an `nft -j list tables` listing: (name, family).
pub fn table_families(listing: &Value) -> Vec<(String, Family)> {
    objects(listing)
        .filter(|(kind, _)| *kind == "table")
        .filter_map(|(_, o)| {
            let family = match str_of(o, "family")? {
                "ip" => Family::V4,
                "ip6" => Family::V6,
                _ => return None,
            };
            Some((str_of(o, "name")?.to_string(), family))
        })
        .collect()
}

/// The services of `desired` that run in the table of `family`.
fn of_family(desired: &Desired, family: Family) -> Desired {
    Desired {
        services: desired.services.iter().filter(|s| Family::of(s.key.vip) == family).cloned().collect(),
    }
}

/// What [`NftDataPlane::export_sync`] reads of a table.
#[derive(Debug, Default)]
pub struct SyncExport {
    pub sets: Vec<super::flows::FlowSet>,
    /// Each (service, real server) pair the tables have counters for, sorted.
    pub reals: Vec<(ServiceKey, SocketAddr)>,
}

/// `desired` plus, for each DR service without persistence, the real servers it no longer
/// lists whose flow sets in the kernel still hold flows, at weight 0: their established
/// connections keep going to them (conntrack does this for NAT), and a later apply drops them
/// once their flows have expired.
fn with_draining(desired: &Desired, have: Option<&Kernel>) -> Desired {
    let mut d = desired.clone();
    let Some(k) = have else { return d };
    for s in d.services.iter_mut().filter(|s| s.forward == Forward::Gate && s.persistence.is_none()) {
        let prefix = format!("aff_{}_", svc_tag(&s.key));
        for (name, set) in &k.sets {
            let Some(rest) = name.strip_prefix("aff_").filter(|_| name.starts_with(&prefix)) else {
                continue;
            };
            let Some((_, key, addr)) = parse_counter_name(&format!("in_{rest}")) else { continue };
            if set.elems > 0
                && key == s.key
                && (s.key.fwmark != 0 || addr.port() == s.key.port)
                && !s.reals.iter().any(|r| r.addr == addr)
            {
                s.reals.push(super::RealServer { addr, weight: 0 });
            }
        }
    }
    d
}

/// `desired` plus, for a table being created with flows synced from another director (see
/// `flows`), every real server those flows are bound to that `desired` does not list yet (its
/// first health check has not answered), at weight 0: its set exists from the first
/// transaction, so its clients keep going to it and no new client is sent to it until its
/// check says it is up. (A real server whose check then fails leaves like any other: its
/// flows drain, see [`with_draining`].)
fn with_staged(desired: &Desired, staged: &[String]) -> Desired {
    let mut d = desired.clone();
    for s in d.services.iter_mut() {
        let prefix = format!("aff_{}_", svc_tag(&s.key));
        for name in staged.iter().filter(|n| n.starts_with(&prefix)) {
            let rest = &name["aff_".len()..];
            let Some((_, key, addr)) = parse_counter_name(&format!("in_{rest}")) else { continue };
            if key == s.key && !s.reals.iter().any(|r| r.addr == addr) {
                s.reals.push(super::RealServer { addr, weight: 0 });
            }
        }
    }
    d
}

// ------------------------------------------------------------------------------------------
// Names

fn ip_tag(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(ip) => ip.octets().iter().map(u8::to_string).collect::<Vec<_>>().join("_"),
        // One field, so that names stay short and parse back unambiguously.
        IpAddr::V6(ip) => format!("x{:032x}", u128::from(ip)),
    }
}

fn svc_tag(k: &ServiceKey) -> String {
    if k.fwmark != 0 {
        return format!("fwm_{}", k.fwmark);
    }
    format!("{}_{}_{}", k.protocol, ip_tag(k.vip), k.port)
}

fn real_tag(k: &ServiceKey, r: SocketAddr) -> String {
    format!("{}_{}_{}", svc_tag(k), ip_tag(r.ip()), r.port())
}

/// `in_tcp_10_0_0_1_80_10_0_0_11_8080` → ("in", tcp:10.0.0.1:80, 10.0.0.11:8080); IPv6
/// addresses are one field, `x` and 32 hex digits.
pub(super) fn parse_counter_name(name: &str) -> Option<(&'static str, ServiceKey, SocketAddr)> {
    let (dir, rest) =
        if let Some(r) = name.strip_prefix("in_") { ("in", r) } else { ("out", name.strip_prefix("out_")?) };
    let f: Vec<&str> = rest.split('_').collect();
    let protocol = match *f.first()? {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "fwm" => Protocol::Tcp,
        _ => return None,
    };
    // An address and a port from f[at..]; the index after them.
    let addr = |at: usize| -> Option<(SocketAddr, usize)> {
        let first = f.get(at)?;
        let (ip, next) = match first.strip_prefix('x') {
            Some(hex) if hex.len() == 32 => {
                (IpAddr::V6(Ipv6Addr::from(u128::from_str_radix(hex, 16).ok()?)), at + 1)
            }
            Some(_) => return None,
            None => {
                let o: Vec<u8> = f.get(at..at + 4)?.iter().map(|x| x.parse().ok()).collect::<Option<_>>()?;
                (IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3])), at + 4)
            }
        };
        Some((SocketAddr::new(ip, f.get(next)?.parse().ok()?), next + 1))
    };
    if f[0] == "fwm" {
        // `fwm_MARK_REAL_PORT`: the service has no address; its family is its real server's.
        let mark: u32 = f.get(1)?.parse().ok().filter(|m| *m != 0)?;
        let (real, at) = addr(2)?;
        if at != f.len() {
            return None;
        }
        let vip = if real.is_ipv4() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        };
        return Some((dir, ServiceKey { protocol, vip, port: 0, fwmark: mark }, real));
    }
    let (vip, at) = addr(1)?;
    let (real, at) = addr(at)?;
    if at != f.len() || vip.is_ipv4() != real.is_ipv4() {
        return None;
    }
    Some((dir, ServiceKey::addr(protocol, vip), real))
}

/// The family of the table a set (or counter, or chain) named by [`real_tag`] lives in.
pub(super) fn family_of_set(name: &str) -> Option<Family> {
    let rest = name.strip_prefix("aff_")?;
    parse_counter_name(&format!("in_{rest}")).map(|(_, k, _)| Family::of(k.vip))
}

// ------------------------------------------------------------------------------------------
// JSON building blocks (libnftables-json, as nft 1.0.6 accepts it)

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn goto(chain: &str) -> Value {
    json!({"goto": {"target": chain}})
}

fn set_stmt(op: &str, elem: Value, set: &str) -> Value {
    json!({"set": {"op": op, "elem": elem, "set": format!("@{set}")}})
}

fn l4proto(p: Protocol) -> Value {
    matches("==", json!({"meta": {"key": "l4proto"}}), json!(p.name()))
}

/// `meta mark M`: the packets of a firewall-mark service.
fn mark_match(k: &ServiceKey) -> Value {
    matches("==", json!({"meta": {"key": "mark"}}), json!(k.fwmark))
}

/// `ip daddr VIP tcp dport P` (`ip6 daddr` for IPv6); `meta mark M` for a firewall mark.
fn service_match(k: &ServiceKey) -> Vec<Value> {
    if k.fwmark != 0 {
        return vec![mark_match(k)];
    }
    vec![
        matches("==", payload(Family::of(k.vip).name(), "daddr"), json!(k.vip.to_string())),
        matches("==", payload(k.protocol.name(), "dport"), json!(k.port)),
    ]
}

/// `ct original ip daddr VIP meta l4proto tcp ct original proto-dst P` (`ip6 daddr`): every
/// packet of a NATed connection of the service, both ways. A firewall-mark service has no
/// such address: nothing (the callers say what stands for it).
fn ct_service_match(k: &ServiceKey) -> Vec<Value> {
    if k.fwmark != 0 {
        return Vec::new();
    }
    let key = format!("{} daddr", Family::of(k.vip).name());
    vec![
        matches("==", json!({"ct": {"key": key, "dir": "original"}}), json!(k.vip.to_string())),
        l4proto(k.protocol),
        matches("==", json!({"ct": {"key": "proto-dst", "dir": "original"}}), json!(k.port)),
    ]
}

/// The transport header's protocol for port matches: the service's, or any (`th`) for a
/// firewall mark (its packets may be TCP or UDP).
fn transport(k: &ServiceKey) -> &'static str {
    if k.fwmark != 0 {
        "th"
    } else {
        k.protocol.name()
    }
}

/// `dport P` / `sport P` of a real server, none for a firewall-mark real server without a
/// port (its packets keep theirs).
fn port_match(k: &ServiceKey, field: &str, port: u16) -> Vec<Value> {
    if k.fwmark != 0 && port == 0 {
        return Vec::new();
    }
    vec![matches("==", payload(transport(k), field), json!(port))]
}

/// FNV-1a 64: a stable digest of a rule (no need for a cryptographic hash: it only tells
/// halo's own rules apart from each other and from hand-made ones).
fn digest(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn rule_comment(expr: &Value) -> String {
    format!("halo {:016x}", digest(&expr.to_string()))
}

// ------------------------------------------------------------------------------------------
// The wanted table

#[derive(Debug, Clone, PartialEq, Eq)]
struct BaseChain {
    kind: &'static str,
    hook: &'static str,
    prio: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SetDef {
    key: Vec<String>,
    timeout: u64,
    size: u64,
}

#[derive(Debug, Default)]
struct Plan {
    /// In creation order; a chain's rules only jump to chains listed (anywhere) here.
    chains: Vec<(String, Option<BaseChain>, Vec<Value>)>,
    sets: BTreeMap<String, SetDef>,
    counters: BTreeSet<String>,
}

const NAT_PREROUTING: &str = "prerouting";
const NAT_POSTROUTING: &str = "postrouting";
const FORWARD: &str = "forward";
const RAW_PREROUTING: &str = "raw_prerouting";
const MARK_PREROUTING: &str = "mark_prerouting";

impl Plan {
    /// The table of `family` for the services of `desired` (all of that family).
    fn build(desired: &Desired, family: Family) -> Plan {
        let mut p = Plan::default();
        let net = family.name();
        let nat: Vec<&VirtualService> =
            desired.services.iter().filter(|s| s.forward == Forward::Masq).collect();
        let dr: Vec<&VirtualService> =
            desired.services.iter().filter(|s| s.forward == Forward::Gate).collect();
        if !nat.is_empty() {
            let rules = nat
                .iter()
                .map(|s| rule([&service_match(&s.key)[..], &[goto(&svc_chain(s))]].concat()))
                .collect();
            p.chains.push((
                NAT_PREROUTING.into(),
                Some(BaseChain { kind: "nat", hook: "prerouting", prio: -100 }),
                rules,
            ));
            let mut counting = Vec::new();
            for s in &nat {
                for r in &s.reals {
                    let tag = real_tag(&s.key, r.addr);
                    let (cin, cout) = (format!("in_{tag}"), format!("out_{tag}"));
                    let dir = |d: &str| matches("==", json!({"ct": {"key": "direction"}}), json!(d));
                    let dnat = matches("in", json!({"ct": {"key": "status"}}), json!("dnat"));
                    // A firewall-mark service: its marked packets one way, the replies of
                    // connections NATed to the real server the other.
                    let (fwm_in, fwm_out) = if s.key.fwmark != 0 {
                        (vec![mark_match(&s.key)], vec![dnat])
                    } else {
                        (vec![], vec![])
                    };
                    counting.push(rule(
                        [
                            &ct_service_match(&s.key)[..],
                            &fwm_in[..],
                            &[
                                dir("original"),
                                matches("==", payload(net, "daddr"), json!(r.addr.ip().to_string())),
                            ],
                            &port_match(&s.key, "dport", r.addr.port())[..],
                            &[json!({"counter": cin})],
                        ]
                        .concat(),
                    ));
                    counting.push(rule(
                        [
                            &ct_service_match(&s.key)[..],
                            &fwm_out[..],
                            &[
                                dir("reply"),
                                matches("==", payload(net, "saddr"), json!(r.addr.ip().to_string())),
                            ],
                            &port_match(&s.key, "sport", r.addr.port())[..],
                            &[json!({"counter": cout})],
                        ]
                        .concat(),
                    ));
                    p.counters.insert(cin);
                    p.counters.insert(cout);
                }
            }
            p.chains.push((
                FORWARD.into(),
                Some(BaseChain { kind: "filter", hook: "forward", prio: 0 }),
                counting,
            ));
            let masq: Vec<Value> = nat
                .iter()
                .filter(|s| s.masquerade)
                .map(|s| {
                    let status = matches("in", json!({"ct": {"key": "status"}}), json!("dnat"));
                    // The original direction's packets still carry their mark here.
                    let mark: Vec<Value> = if s.key.fwmark != 0 { vec![mark_match(&s.key)] } else { vec![] };
                    rule(
                        [
                            &[status][..],
                            &ct_service_match(&s.key)[..],
                            &mark[..],
                            &[json!({"masquerade": null})],
                        ]
                        .concat(),
                    )
                })
                .collect();
            if !masq.is_empty() {
                p.chains.push((
                    NAT_POSTROUTING.into(),
                    Some(BaseChain { kind: "nat", hook: "postrouting", prio: 100 }),
                    masq,
                ));
            }
        }
        if !dr.is_empty() {
            // Packets the director sends itself through lo (a DR real server that is the
            // director, or the clone of one) are delivered locally, never sent again.
            let not_lo = matches("!=", json!({"meta": {"key": "iifname"}}), json!("lo"));
            let entry = |s: &&VirtualService| {
                rule([&[not_lo.clone()][..], &service_match(&s.key)[..], &[goto(&svc_chain(s))]].concat())
            };
            let by_addr: Vec<Value> = dr.iter().filter(|s| s.key.fwmark == 0).map(entry).collect();
            if !by_addr.is_empty() {
                p.chains.push((
                    RAW_PREROUTING.into(),
                    Some(BaseChain { kind: "filter", hook: "prerouting", prio: -300 }),
                    by_addr,
                ));
            }
            // A firewall mark is set by the host's rules at the mangle priority (-150), after
            // raw: firewall-mark services are picked up just after it. (Conntrack has seen
            // the packet by then; the original is dropped, so its entry is never confirmed.)
            let by_mark: Vec<Value> = dr.iter().filter(|s| s.key.fwmark != 0).map(entry).collect();
            if !by_mark.is_empty() {
                p.chains.push((
                    MARK_PREROUTING.into(),
                    Some(BaseChain { kind: "filter", hook: "prerouting", prio: -140 }),
                    by_mark,
                ));
            }
        }
        for s in nat.iter().chain(&dr) {
            p.service(s);
        }
        p
    }

    /// The chains and sets of one virtual service.
    fn service(&mut self, s: &VirtualService) {
        let k = &s.key;
        let family = Family::of(k.vip);
        let net = family.name();
        let dr = s.forward == Forward::Gate;
        // What binds a client to a real server, and for how long.
        let affinity = match (s.persistence, dr) {
            (Some(p), _) => Some((
                json!({"&": [payload(net, "saddr"), mask_of(family, p.netmask)]}),
                vec![family.addr_type().to_string()],
                u64::from(p.timeout_s),
            )),
            (None, true) => Some((
                json!({"concat": [payload(net, "saddr"), payload(transport(k), "sport")]}),
                vec![family.addr_type().to_string(), "inet_service".to_string()],
                u64::from(if k.protocol == Protocol::Tcp {
                    DR_TCP_FLOW_TIMEOUT_S
                } else {
                    DR_UDP_FLOW_TIMEOUT_S
                }),
            )),
            (None, false) => None,
        };
        let mut svc_rules = Vec::new();
        for r in &s.reals {
            let tag = real_tag(k, r.addr);
            let real_chain = format!("real_{tag}");
            let real_rules = if dr {
                let cin = format!("in_{tag}");
                self.counters.insert(cin.clone());
                vec![rule(vec![
                    json!({"counter": cin}),
                    json!({"dup": {"addr": r.addr.ip().to_string()}}),
                    json!({"drop": null}),
                ])]
            } else if k.fwmark != 0 && r.addr.port() == 0 {
                // The packet keeps its port: the address alone is rewritten.
                vec![rule(vec![json!({"dnat": {"addr": r.addr.ip().to_string()}})])]
            } else if k.fwmark != 0 {
                vec![rule(vec![
                    matches("==", json!({"meta": {"key": "l4proto"}}), json!({"set": ["tcp", "udp"]})),
                    json!({"dnat": {"addr": r.addr.ip().to_string(), "port": r.addr.port()}}),
                ])]
            } else {
                vec![rule(vec![
                    l4proto(k.protocol),
                    json!({"dnat": {"addr": r.addr.ip().to_string(), "port": r.addr.port()}}),
                ])]
            };
            self.chains.push((real_chain.clone(), None, real_rules));
            if let Some((key, key_type, timeout)) = &affinity {
                let set = format!("aff_{tag}");
                self.sets.insert(
                    set.clone(),
                    SetDef { key: key_type.clone(), timeout: *timeout, size: u64::from(AFFINITY_SET_SIZE) },
                );
                svc_rules.push(rule(vec![
                    matches("==", key.clone(), json!(format!("@{set}"))),
                    set_stmt("update", key.clone(), &set),
                    goto(&real_chain),
                ]));
                // A full set only costs the binding, never the connection.
                let new_rules = vec![
                    rule(vec![set_stmt("add", key.clone(), &set), goto(&real_chain)]),
                    rule(vec![goto(&real_chain)]),
                ];
                self.chains.push((format!("new_{tag}"), None, new_rules));
            }
        }
        let slots = slots(s);
        if !slots.is_empty() {
            let target = |i: usize| {
                let tag = real_tag(k, s.reals[i].addr);
                if affinity.is_some() {
                    format!("new_{tag}")
                } else {
                    format!("real_{tag}")
                }
            };
            if slots.len() == 1 {
                svc_rules.push(rule(vec![goto(&target(slots[0]))]));
            } else {
                let n = slots.len();
                let key = match scheduling_of(&s.scheduler).0 {
                    Scheduling::Rotate => json!({"numgen": {"mode": "inc", "mod": n, "offset": 0}}),
                    Scheduling::SourceHash => {
                        json!({"jhash": {"expr": payload(net, "saddr"), "mod": n, "seed": JHASH_SEED, "offset": 0}})
                    }
                    Scheduling::DestinationHash => {
                        json!({"jhash": {"expr": payload(net, "daddr"), "mod": n, "seed": JHASH_SEED, "offset": 0}})
                    }
                };
                let data: Vec<Value> =
                    slots.iter().enumerate().map(|(j, &i)| json!([j, goto(&target(i))])).collect();
                svc_rules.push(rule(vec![json!({"vmap": {"key": key, "data": {"set": data}}})]));
            }
        }
        // No slot: the connection goes on to the director's own stack, as with IPVS.
        self.chains.push((svc_chain(s), None, svc_rules));
    }

    /// The differences from `have` and the one transaction that removes them.
    fn reconcile(&self, table: &str, family: Family, have: Option<&Kernel>) -> (Vec<Change>, Vec<Value>) {
        let fam = family.name();
        let t = |extra: Value| {
            let mut o = json!({"family": fam, "table": table});
            if let (Some(o), Value::Object(e)) = (o.as_object_mut(), extra) {
                o.extend(e);
            }
            o
        };
        let mut changes = Vec::new();
        let mut cmds = Vec::new();
        let empty = Kernel::default();
        let k = match have {
            Some(k) => k,
            None => {
                changes.push(Change::TableCreated);
                cmds.push(json!({"add": {"table": {"family": fam, "name": table}}}));
                &empty
            }
        };
        let wanted_chains: BTreeMap<&str, &Option<BaseChain>> =
            self.chains.iter().map(|(n, b, _)| (n.as_str(), b)).collect();
        let mut remove_chains = Vec::new();
        let mut add_chains = Vec::new();
        for (name, base) in &k.chains {
            match wanted_chains.get(name.as_str()) {
                None => {
                    changes.push(Change::ChainRemoved(name.clone()));
                    remove_chains.push(name.clone());
                }
                Some(b) if *b != base => {
                    changes.push(Change::ChainRedefined(name.clone()));
                    remove_chains.push(name.clone());
                    add_chains.push(name.clone());
                }
                Some(_) => {}
            }
        }
        for (name, _, rules) in &self.chains {
            if !k.chains.contains_key(name) {
                if have.is_some() {
                    changes.push(Change::ChainAdded(name.clone()));
                }
                add_chains.push(name.clone());
            } else if !add_chains.contains(name) {
                let want: Vec<Option<String>> =
                    rules.iter().map(|r| str_of(r, "comment").map(String::from)).collect();
                if k.rules.get(name) != Some(&want) {
                    changes.push(Change::RulesReplaced(name.clone()));
                }
            }
        }
        let mut remove_sets = Vec::new();
        let mut add_sets = Vec::new();
        for (name, set) in &k.sets {
            match self.sets.get(name) {
                None => {
                    changes.push(Change::SetRemoved(name.clone()));
                    remove_sets.push(name.clone());
                }
                Some(d) if *d != set.def => {
                    changes.push(Change::SetRedefined(name.clone()));
                    remove_sets.push(name.clone());
                    add_sets.push(name.clone());
                }
                Some(_) => {}
            }
        }
        for name in self.sets.keys() {
            if !k.sets.contains_key(name) {
                if have.is_some() {
                    changes.push(Change::SetAdded(name.clone()));
                }
                add_sets.push(name.clone());
            }
        }
        let remove_counters: Vec<&String> =
            k.counters.keys().filter(|n| !self.counters.contains(*n)).collect();
        let add_counters: Vec<&String> =
            self.counters.iter().filter(|n| !k.counters.contains_key(*n)).collect();
        if have.is_some() {
            changes.extend(remove_counters.iter().map(|n| Change::CounterRemoved((*n).clone())));
            changes.extend(add_counters.iter().map(|n| Change::CounterAdded((*n).clone())));
        }
        if have.is_some() && changes.is_empty() {
            return (changes, cmds);
        }
        // Rules go first (a chain, set or counter still used by a rule cannot be deleted),
        // then what is no longer wanted, then what is missing, then every rule again.
        for name in k.chains.keys() {
            cmds.push(json!({"flush": {"chain": t(json!({"name": name}))}}));
        }
        for name in &remove_chains {
            cmds.push(json!({"delete": {"chain": t(json!({"name": name}))}}));
        }
        for name in &remove_sets {
            cmds.push(json!({"delete": {"set": t(json!({"name": name}))}}));
        }
        for name in &remove_counters {
            cmds.push(json!({"delete": {"counter": t(json!({"name": name}))}}));
        }
        for name in &add_sets {
            if let Some(d) = self.sets.get(name) {
                let ty = if d.key.len() == 1 { json!(d.key[0]) } else { json!(d.key) };
                cmds.push(json!({"add": {"set": t(json!({
                    "name": name, "type": ty, "flags": ["timeout"], "timeout": d.timeout, "size": d.size
                }))}}));
            }
        }
        for name in &add_counters {
            cmds.push(json!({"add": {"counter": t(json!({"name": name}))}}));
        }
        for (name, base, _) in &self.chains {
            if !add_chains.contains(name) {
                continue;
            }
            let mut c = json!({"name": name});
            if let (Some(b), Some(o)) = (base, c.as_object_mut()) {
                o.insert("type".into(), json!(b.kind));
                o.insert("hook".into(), json!(b.hook));
                o.insert("prio".into(), json!(b.prio));
                o.insert("policy".into(), json!("accept"));
            }
            cmds.push(json!({"add": {"chain": t(c)}}));
        }
        for (name, _, rules) in &self.chains {
            for r in rules {
                let mut r = r.clone();
                if let Some(o) = r.as_object_mut() {
                    o.insert("family".into(), json!(fam));
                    o.insert("table".into(), json!(table));
                    o.insert("chain".into(), json!(name));
                }
                cmds.push(json!({"add": {"rule": r}}));
            }
        }
        changes.sort();
        (changes, cmds)
    }
}

/// The persistence mask as nft takes it: `255.255.255.0`, `ffff:ffff:ffff:ffff::`.
fn mask_of(family: Family, m: Netmask) -> Value {
    match family {
        Family::V4 => json!(m.v4_mask().to_string()),
        Family::V6 => {
            let bits = u128::MAX.checked_shl(128 - u32::from(m.v6_prefix())).unwrap_or(0);
            json!(Ipv6Addr::from(bits).to_string())
        }
    }
}

fn svc_chain(s: &VirtualService) -> String {
    format!("svc_{}", svc_tag(&s.key))
}

/// A rule body: its expressions and the comment that identifies it.
fn rule(expr: Vec<Value>) -> Value {
    let expr = Value::Array(expr);
    let comment = rule_comment(&expr);
    json!({"expr": expr, "comment": comment})
}

// ------------------------------------------------------------------------------------------
// The kernel's table, as `nft -j list table` reports it

#[derive(Debug, Default)]
struct KernelSet {
    def: SetDef,
    elems: usize,
}

#[derive(Debug, Default)]
struct Kernel {
    chains: BTreeMap<String, Option<BaseChain>>,
    /// Each chain's rule comments, in order (None: a rule without one, not halo's).
    rules: BTreeMap<String, Vec<Option<String>>>,
    sets: BTreeMap<String, KernelSet>,
    /// name → (packets, bytes)
    counters: BTreeMap<String, (u64, u64)>,
}

fn objects(v: &Value) -> impl Iterator<Item = (&str, &Value)> {
    v.get("nftables")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_object())
        .filter_map(|o| o.iter().next().map(|(k, v)| (k.as_str(), v)))
}

fn str_of<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str)
}

impl Kernel {
    fn parse(v: &Value) -> Result<Kernel, String> {
        if v.get("nftables").and_then(Value::as_array).is_none() {
            return Err("no \"nftables\" array".into());
        }
        let mut k = Kernel::default();
        let name = |o: &Value, what: &str| -> Result<String, String> {
            str_of(o, "name").map(String::from).ok_or_else(|| format!("a {what} without a name"))
        };
        for (kind, o) in objects(v) {
            match kind {
                "chain" => {
                    let n = name(o, "chain")?;
                    let base =
                        match (str_of(o, "type"), str_of(o, "hook"), o.get("prio").and_then(Value::as_i64)) {
                            (Some(kind), Some(hook), Some(prio)) => {
                                Some(BaseChain { kind: intern(kind), hook: intern(hook), prio })
                            }
                            _ => None,
                        };
                    // A base chain whose policy is not accept is not one halo made.
                    let base = match (base, str_of(o, "policy")) {
                        (Some(b), Some("accept")) => Some(b),
                        (Some(_), _) => Some(BaseChain { kind: "?", hook: "?", prio: 0 }),
                        (None, _) => None,
                    };
                    k.rules.entry(n.clone()).or_default();
                    k.chains.insert(n, base);
                }
                "rule" => {
                    let chain = str_of(o, "chain").ok_or("a rule without a chain")?;
                    k.rules
                        .entry(chain.to_string())
                        .or_default()
                        .push(str_of(o, "comment").map(String::from));
                }
                "set" | "map" => {
                    let n = name(o, kind)?;
                    let key = match o.get("type") {
                        Some(Value::String(s)) => vec![s.clone()],
                        Some(Value::Array(a)) => {
                            a.iter().filter_map(|x| x.as_str().map(String::from)).collect()
                        }
                        _ => Vec::new(),
                    };
                    let mut def = SetDef {
                        key,
                        timeout: o.get("timeout").and_then(Value::as_u64).unwrap_or(0),
                        size: o.get("size").and_then(Value::as_u64).unwrap_or(0),
                    };
                    if kind == "map" {
                        // halo makes no named maps: never equal to a wanted set.
                        def.key.push("map".into());
                    }
                    let elems = o.get("elem").and_then(Value::as_array).map_or(0, Vec::len);
                    k.sets.insert(n, KernelSet { def, elems });
                }
                "counter" => {
                    let n = name(o, "counter")?;
                    let packets = o.get("packets").and_then(Value::as_u64).unwrap_or(0);
                    let bytes = o.get("bytes").and_then(Value::as_u64).unwrap_or(0);
                    k.counters.insert(n, (packets, bytes));
                }
                _ => {}
            }
        }
        Ok(k)
    }
}

/// The chain types and hooks halo uses, as `&'static str` (anything else compares unequal).
fn intern(s: &str) -> &'static str {
    ["nat", "filter", "prerouting", "postrouting", "forward", "input", "output"]
        .into_iter()
        .find(|x| *x == s)
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::{Persistence, RealServer};

    fn sock4(ip: Ipv4Addr, port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    fn desired() -> Desired {
        let real = |d: u8, w: u32| RealServer { addr: sock4(Ipv4Addr::new(10, 0, 0, d), 80), weight: w };
        Desired {
            services: vec![
                VirtualService {
                    key: ServiceKey {
                        protocol: Protocol::Tcp,
                        vip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
                        port: 80,
                        fwmark: 0,
                    },
                    scheduler: "wrr".into(),
                    persistence: None,
                    forward: Forward::Masq,
                    masquerade: true,
                    reals: vec![real(11, 3), real(12, 1)],
                },
                VirtualService {
                    key: ServiceKey {
                        protocol: Protocol::Udp,
                        vip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100)),
                        port: 53,
                        fwmark: 0,
                    },
                    scheduler: "rr".into(),
                    persistence: Some(Persistence {
                        timeout_s: 60,
                        netmask: Netmask::v4(Ipv4Addr::new(255, 255, 255, 0)),
                    }),
                    forward: Forward::Gate,
                    masquerade: false,
                    reals: vec![
                        RealServer { addr: sock4(Ipv4Addr::new(10, 0, 0, 11), 53), weight: 1 },
                        RealServer { addr: sock4(Ipv4Addr::new(10, 0, 0, 12), 53), weight: 0 },
                    ],
                },
            ],
        }
    }

    #[test]
    fn dataplane_plan_names_and_slots() {
        let p = Plan::build(&desired(), Family::V4);
        let names: Vec<&str> = p.chains.iter().map(|(n, _, _)| n.as_str()).collect();
        for n in [
            "prerouting",
            "forward",
            "postrouting",
            "raw_prerouting",
            "svc_tcp_10_0_0_100_80",
            "real_tcp_10_0_0_100_80_10_0_0_11_80",
            "svc_udp_10_0_0_100_53",
            "new_udp_10_0_0_100_53_10_0_0_12_53",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        assert_eq!(p.sets.len(), 2);
        assert!(p.counters.contains("in_tcp_10_0_0_100_80_10_0_0_12_80"));
        assert!(p.counters.contains("out_tcp_10_0_0_100_80_10_0_0_12_80"));
        assert!(p.counters.contains("in_udp_10_0_0_100_53_10_0_0_12_53"));
        let svc = p.chains.iter().find(|(n, _, _)| n == "svc_tcp_10_0_0_100_80").map(|c| c.2.clone());
        let text = serde_json::to_string(&svc).unwrap_or_default();
        assert!(
            text.contains("numgen") && text.matches("real_tcp_10_0_0_100_80_10_0_0_11_80").count() == 3,
            "{text}"
        );
        // The weight-0 DR real keeps its "already bound" rule but gets no slot: one goto.
        let svc = p.chains.iter().find(|(n, _, _)| n == "svc_udp_10_0_0_100_53").map(|c| c.2.clone());
        let text = serde_json::to_string(&svc).unwrap_or_default();
        assert!(text.contains("aff_udp_10_0_0_100_53_10_0_0_12_53") && !text.contains("numgen"), "{text}");
    }

    fn desired6() -> Desired {
        let ip = |s: &str| -> IpAddr { s.parse().expect("ip") };
        let real = |s: &str, w: u32| RealServer { addr: SocketAddr::new(ip(s), 80), weight: w };
        Desired {
            services: vec![
                VirtualService {
                    key: ServiceKey {
                        protocol: Protocol::Tcp,
                        vip: ip("2001:db8::100"),
                        port: 80,
                        fwmark: 0,
                    },
                    scheduler: "sh".into(),
                    persistence: None,
                    forward: Forward::Gate,
                    masquerade: false,
                    reals: vec![real("2001:db8::11", 1), real("2001:db8::12", 1)],
                },
                VirtualService {
                    key: ServiceKey {
                        protocol: Protocol::Tcp,
                        vip: ip("2001:db8::100"),
                        port: 443,
                        fwmark: 0,
                    },
                    scheduler: "rr".into(),
                    persistence: Some(Persistence {
                        timeout_s: 300,
                        netmask: Netmask::v6(64).expect("prefix"),
                    }),
                    forward: Forward::Masq,
                    masquerade: true,
                    reals: vec![RealServer { addr: SocketAddr::new(ip("2001:db8::11"), 8443), weight: 1 }],
                },
            ],
        }
    }

    #[test]
    fn dataplane_ipv6_services_make_an_ip6_table_of_ip6_rules() {
        let d = desired6();
        let p = Plan::build(&d, Family::V6);
        let tag = "tcp_x20010db8000000000000000000000100_80";
        assert!(p.chains.iter().any(|(n, _, _)| n == &format!("svc_{tag}")), "{:?}", p.chains);
        // DR flows keyed by the IPv6 client address and port; persistence by the /64.
        let flow = format!("aff_{tag}_x20010db8000000000000000000000011_80");
        assert_eq!(p.sets[&flow].key, vec!["ipv6_addr".to_string(), "inet_service".to_string()]);
        let rules: Vec<&Value> = p.chains.iter().flat_map(|(_, _, r)| r).collect();
        let text = serde_json::to_string(&rules).expect("json");
        assert!(text.contains(r#""field":"daddr","protocol":"ip6""#), "{text}");
        assert!(text.contains("ffff:ffff:ffff:ffff::"), "the /64 persistence mask: {text}");
        assert!(text.contains(r#""dup":{"addr":"2001:db8::11"}"#), "{text}");
        assert!(text.contains(r#""dnat":{"addr":"2001:db8::11","port":8443}"#), "{text}");
        assert!(text.contains(r#""key":"ip6 daddr""#), "ct original ip6 daddr: {text}");
        assert!(!text.contains(r#""protocol":"ip","#), "no IPv4 payload in the ip6 table: {text}");
        let (_, cmds) = p.reconcile("halo_lb", Family::V6, None);
        assert_eq!(cmds[0], json!({"add": {"table": {"family": "ip6", "name": "halo_lb"}}}));
        assert!(cmds.iter().skip(1).all(|c| c.to_string().contains(r#""family":"ip6""#)), "{cmds:?}");
        // Names parse back to their service and real server, and say their family.
        let counter = format!("in_{tag}_x20010db8000000000000000000000011_80");
        let (_, k, r) = parse_counter_name(&counter).expect("parses");
        assert_eq!((k, r), (d.services[0].key, d.services[0].reals[0].addr));
        assert_eq!(family_of_set(&flow), Some(Family::V6));
        assert_eq!(family_of_set("aff_tcp_10_0_0_1_80_10_0_0_2_80"), Some(Family::V4));
        // A mixed name is no name of halo's.
        assert_eq!(parse_counter_name(&format!("in_{tag}_10_0_0_11_80")), None);
        assert_eq!(parse_counter_name("in_tcp_x2001_80_x2001_80"), None);
    }

    #[test]
    fn dataplane_a_real_server_of_another_family_is_refused() {
        let mut d = desired6();
        d.services[0].reals.push(RealServer { addr: sock4(Ipv4Addr::new(10, 0, 0, 11), 80), weight: 1 });
        assert!(matches!(d.validate(), Err(InvalidDesired::MixedFamily { .. })), "{:?}", d.validate());
    }

    #[test]
    fn dataplane_counter_names_parse_back() {
        let k = ServiceKey {
            protocol: Protocol::Udp,
            vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            port: 53,
            fwmark: 0,
        };
        let r = sock4(Ipv4Addr::new(198, 51, 100, 255), 5353);
        let n = format!("out_{}", real_tag(&k, r));
        assert_eq!(parse_counter_name(&n), Some(("out", k, r)));
        // A firewall-mark service's names: the mark, then the real server.
        let fwm = ServiceKey {
            protocol: Protocol::Tcp,
            vip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            fwmark: 7,
        };
        let r0 = sock4(Ipv4Addr::new(10, 0, 0, 11), 0);
        assert_eq!(real_tag(&fwm, r0), "fwm_7_10_0_0_11_0");
        assert_eq!(parse_counter_name("in_fwm_7_10_0_0_11_0"), Some(("in", fwm, r0)));
        assert_eq!(parse_counter_name("in_fwm_0_10_0_0_11_0"), None, "mark 0 is no mark");
        assert_eq!(parse_counter_name("in_tcp_1_2_3"), None);
        assert_eq!(parse_counter_name("in_sctp_1_2_3_4_5_6_7_8_9_10"), None);
        assert_eq!(parse_counter_name("in_tcp_1_2_3_400_5_6_7_8_9_10"), None);
    }

    #[test]
    fn dataplane_reconcile_against_an_identical_listing_is_empty() {
        let p = Plan::build(&desired(), Family::V4);
        let (changes, cmds) = p.reconcile("halo_lb", Family::V4, None);
        assert_eq!(changes, vec![Change::TableCreated]);
        // A listing made of exactly what was sent (nft lists the same objects, with handles).
        let listing =
            json!({"nftables": cmds.iter().filter_map(|c| c.get("add")).cloned().collect::<Vec<_>>()});
        let k = Kernel::parse(&listing).expect("parses");
        let (changes, cmds) = p.reconcile("halo_lb", Family::V4, Some(&k));
        assert!(changes.is_empty(), "{changes:?}");
        assert!(cmds.is_empty());
        // One real server fewer: its chain, set and counter go, the rest stays.
        let mut d = desired();
        d.services[1].reals.pop();
        let (changes, _) = Plan::build(&d, Family::V4).reconcile("halo_lb", Family::V4, Some(&k));
        assert!(
            changes.contains(&Change::SetRemoved("aff_udp_10_0_0_100_53_10_0_0_12_53".into())),
            "{changes:?}"
        );
        assert!(changes.contains(&Change::CounterRemoved("in_udp_10_0_0_100_53_10_0_0_12_53".into())));
        assert!(changes.contains(&Change::RulesReplaced("svc_udp_10_0_0_100_53".into())));
        assert!(!changes.iter().any(|c| matches!(c, Change::SetRemoved(n) if n.contains("10_0_0_11"))));
    }
}
