//! The director's state, without I/O: what ldirectord.cf asks for, the health of every real
//! server, and from the two the [`Desired`] state the data plane must run and the
//! [`ipvsadm::Model`] that `halo lvs` prints.
//!
//! ldirectord's rules (spec §7.5) as pure functions:
//! * a real server starts **down** (until its first successful check);
//! * a real server that is up is in its virtual service at its configured weight;
//! * one that is down is removed, or with `quiescent=yes` kept at weight 0 (established
//!   connections and persistent clients stay, no new connections);
//! * when no real server of a virtual service is up, its `fallback` server is added with
//!   weight 1 (if the data plane can run it: an IPv4 address with the service's forwarding
//!   method, on the virtual port for direct routing), and removed when one comes back.
//!
//! * with `quiescent=yes` and `readdquiescent=no` (ldirectord's default), a real server that
//!   goes down while it is missing from the kernel's table (someone deleted it, e.g. with
//!   `ipvsadm -d`) is left out of it until it comes up again, as ldirectord's
//!   `_remove_service` leaves it; with `readdquiescent=yes` it is added back with weight 0.
//!   The runtime learns what the table holds when it applies: see
//!   [`DirectorState::settle_quiescent`].
//!
//! * a real server named in the `maintenancedir` (a file `IP:port`, `IP`, `name:port`,
//!   `name`, `short:port` or `short`, see [`maintenance_names`]) is down without being
//!   checked, as if its check had failed; once the file is gone its checks decide again.
//!
//! The runtime (halo's `director` module) builds a [`DirectorState`] with
//! [`DirectorState::load`] (host names resolved, as written kept for the maintenance files),
//! feeds it check results with [`DirectorState::record`] and the maintenance directory with
//! [`DirectorState::set_maintenance`], applies [`DirectorState::desired`] after every change,
//! and on a new configuration calls [`DirectorState::reconfigure`], which keeps the health
//! of every real server whose check did not change.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use halo_config::ldirectord_cf as ld;

use crate::alert::{Event, EventKind, MailSettings};
use crate::check::{spec_for, CheckResult, CheckSpec, Checker, HealthPolicy, Transition};
use crate::dataplane::{self, Desired, Forward, InvalidDesired, RealServer, RealStats, VirtualService};
use crate::ipvsadm;

/// Why a director cannot be built from an ldirectord.cf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectorError {
    #[error(transparent)]
    Invalid(#[from] InvalidDesired),
    #[error("ldirectord.cf line {line}: real server {real}: {why}")]
    Check { line: usize, real: String, why: String },
    #[error("ldirectord.cf line {line}: cannot resolve {name}: {why}")]
    Resolve { line: usize, name: String, why: String },
    #[error("ldirectord.cf has no virtual service")]
    Empty,
}

/// Replaces every host name of `cf` (virtual addresses, real servers, fallbacks) with its
/// first IPv4 address (IPv6 for `virtual6`), as ldirectord does when it reads the file.
/// Blocks on the resolver: call it where blocking is allowed.
pub fn resolve_names(cf: &ld::LdirectordCf) -> Result<ld::LdirectordCf, DirectorError> {
    fn lookup(name: &str, v6: bool, line: usize) -> Result<IpAddr, DirectorError> {
        let err = |why: String| DirectorError::Resolve { line, name: name.to_string(), why };
        let addrs = (name, 0u16).to_socket_addrs().map_err(|e| err(e.to_string()))?;
        addrs
            .map(|a| a.ip())
            .find(|ip| ip.is_ipv6() == v6)
            .ok_or_else(|| err(format!("no IPv{} address", if v6 { 6 } else { 4 })))
    }
    let mut out = cf.clone();
    let host = |h: &mut ld::Host, v6: bool, line: usize| -> Result<(), DirectorError> {
        if let ld::Host::Name(n) = h {
            *h = ld::Host::Ip(lookup(n, v6, line)?);
        }
        Ok(())
    };
    if let Some(f) = out.global.fallback.as_mut() {
        host(&mut f.addr, false, 0)?;
    }
    if let Some(f) = out.global.fallback6.as_mut() {
        host(&mut f.addr, true, 0)?;
    }
    for v in &mut out.virtuals {
        if let ld::VirtualAddr::Host { name, port } = &v.addr {
            v.addr = ld::VirtualAddr::Ip { ip: lookup(name, v.v6, v.line)?, port: *port };
        }
        let (line, v6) = (v.line, v.v6);
        if let Some(f) = v.fallback.as_mut() {
            host(&mut f.addr, v6, line)?;
        }
        for r in &mut v.reals {
            if r.range_end.is_none() {
                host(&mut r.addr, v6, r.line)?;
            }
        }
    }
    Ok(out)
}

/// One real server: its configured entry and its checker.
#[derive(Debug, Clone)]
pub struct RealState {
    pub addr: SocketAddr,
    /// The weight ldirectord.cf gives it.
    pub weight: u32,
    pub checker: Checker,
    /// Stable across reconfigurations that keep its check: a check result finds its real
    /// server by it, whatever moved in between.
    pub id: u64,
    /// The host name ldirectord.cf gives it, if it gives one (for the maintenance files).
    pub name: Option<String>,
    /// Its address's name in the resolver (reverse lookup), when the runtime found one: the
    /// name ldirectord builds the maintenance file names from.
    pub rdns: Option<String>,
    /// The maintenance file that holds it down, while there is one.
    pub maintenance: Option<String>,
    /// ldirectord's id of the real server (`get_real_id_str`: check, protocol, address, port,
    /// virtualhost, checkport, weight, forwarding, request, receive), for the monitorfile.
    pub ld_id: String,
    /// Went down with `quiescent=yes`, `readdquiescent=no`: the runtime has yet to look
    /// whether the kernel's table still holds it ([`DirectorState::settle_quiescent`]).
    pub unsettled: bool,
    /// Down, and missing from the kernel's table when it went down, with `quiescent=yes` and
    /// `readdquiescent=no`: left out of the table (not re-added with weight 0) until it comes
    /// up again.
    pub left_out: bool,
}

/// ldirectord's `get_real_id_str` for real server `r` (at `addr`) of `v`.
fn real_id_str(v: &ld::VirtualService, r: &ld::RealServer, addr: SocketAddr) -> String {
    let check = match v.checktype {
        ld::CheckType::Negotiate => format!("negotiate:{}", v.service.name()),
        ld::CheckType::Combined(_) => format!("combined:{}", v.service.name()),
        ld::CheckType::External => format!("external:{}", v.checkcommand),
        ld::CheckType::ExternalPerl => format!("external-perl:{}", v.checkcommand),
        ld::CheckType::Connect => "connect".to_string(),
        ld::CheckType::Ping => "ping".to_string(),
        ld::CheckType::Off => "off".to_string(),
        ld::CheckType::On => "on".to_string(),
    };
    let request = r.request.as_deref().or(v.request.as_deref()).unwrap_or("/");
    let request = if request.starts_with('/') { request.to_string() } else { format!("/{request}") };
    let receive = r.receive.as_deref().or(v.receive.as_deref()).unwrap_or("");
    format!(
        "{check}:{}:{}:{}:{}:{}:{}:{}:{request}:{receive}",
        v.protocol.name(),
        addr.ip(),
        addr.port(),
        v.virtualhost.as_deref().unwrap_or(""),
        v.checkport.map(|p| p.to_string()).unwrap_or_default(),
        r.weight,
        r.forward.name(),
    )
}

/// A line of ldirectord's `monitorfile` for one check of a real server whose
/// ldirectord id is `ld_id`: `[TIME] [PID] ID-with-colons-as-spaces [up|down] MESSAGE`
/// (`service_set`: runs of `:` become one space, backslashes go, and `%`, `|` and line
/// breaks in the message are %-escaped). `now` is ldirectord's `localtime()` text.
pub fn monitor_line(now: &str, pid: u32, ld_id: &str, up: bool, message: &str) -> String {
    let mut id = String::with_capacity(ld_id.len());
    let mut last_colon = false;
    for c in ld_id.chars() {
        match c {
            ':' if last_colon => {}
            ':' => {
                id.push(' ');
                last_colon = true;
            }
            '\\' => {}
            c => {
                id.push(c);
                last_colon = false;
            }
        }
    }
    let mut msg = String::with_capacity(message.len());
    for c in if message.is_empty() { "-" } else { message }.chars() {
        match c {
            '%' | '|' | '\r' | '\n' => msg.push_str(&format!("%{:02x}", c as u32)),
            c => msg.push(c),
        }
    }
    format!("[{now}] [{pid}] {id} [{}] {msg}\n", if up { "up" } else { "down" })
}

/// The files of the maintenance directory that take `addr` (named `name` in ldirectord.cf)
/// out, in ldirectord's order: `IP:port`, `IP`, `fqdn:port`, `fqdn`, `short:port`, `short`.
/// ldirectord takes the names from a reverse lookup of the address at every check; halo
/// takes the name written in ldirectord.cf and the reverse lookup the runtime refreshes in
/// the background ([`RealState::rdns`]), never a resolver call at check time.
pub fn maintenance_names(addr: SocketAddr, name: Option<&str>) -> Vec<String> {
    let mut v = vec![addr.to_string(), addr.ip().to_string()];
    if let Some(n) = name {
        v.push(format!("{n}:{}", addr.port()));
        v.push(n.to_string());
        if let Some((short, _)) = n.split_once('.') {
            v.push(format!("{short}:{}", addr.port()));
            v.push(short.to_string());
        }
    }
    v
}

impl RealState {
    pub fn is_up(&self) -> bool {
        self.checker.health().is_up()
    }

    /// After change `t`: one that comes up is in the table again; one that goes down with
    /// `settle` (quiescent, readdquiescent=no) waits for the runtime to see the table.
    fn note(&mut self, t: Transition, settle: bool) {
        match t {
            Transition::Up => {
                self.unsettled = false;
                self.left_out = false;
            }
            Transition::Down => self.unsettled = settle,
        }
    }
}

/// One virtual service: its configuration, its real servers, and its usable fallback.
#[derive(Debug, Clone)]
pub struct ServiceState {
    /// As configured (every real server at its configured weight).
    pub service: VirtualService,
    pub reals: Vec<RealState>,
    pub quiescent: bool,
    /// The global `readdquiescent`: with `quiescent`, a failed real server missing from the
    /// kernel's table is added back with weight 0 (yes) or left out (no, the default).
    pub readdquiescent: bool,
    /// The fallback server, when configured and runnable by the data plane.
    pub fallback: Option<SocketAddr>,
    /// Why a configured fallback is not used, if it is not.
    pub fallback_unusable: Option<String>,
    /// Seconds between two check passes of this service.
    pub checkinterval: Duration,
    /// ldirectord's id of the service (`tcp:192.0.2.10:80`).
    pub id: String,
    /// Its e-mail alert settings.
    pub mail: MailSettings,
    /// `fallbackcommand` (its own, else the global one).
    pub fallbackcommand: Option<String>,
    /// `monitorfile`: a line per check of each real server.
    pub monitorfile: Option<std::path::PathBuf>,
    /// `cleanstop`: taken out of the table when the director stops.
    pub cleanstop: bool,
}

impl ServiceState {
    /// Is any real server up?
    pub fn any_up(&self) -> bool {
        self.reals.iter().any(RealState::is_up)
    }

    /// The fallback is in the table now.
    pub fn fallback_active(&self) -> bool {
        self.fallback.is_some() && !self.any_up()
    }

    /// The alert for a change `t` of real server `real` (after it was recorded).
    pub fn event(&self, real: usize, t: Transition, reason: &str) -> Event {
        let r = &self.reals[real.min(self.reals.len().saturating_sub(1))];
        let vip = self.service.key.label();
        let (kind, weight, message) = match (t, self.quiescent) {
            (Transition::Up, _) => (
                EventKind::Added,
                Some(r.weight),
                format!("Added real server: {} ({vip}) (Weight set to {})", r.addr, r.weight),
            ),
            (Transition::Down, true) => (
                EventKind::Quiescent,
                Some(0),
                format!("Quiescent real server: {} ({vip}) (Weight set to 0)", r.addr),
            ),
            (Transition::Down, false) => {
                (EventKind::Deleted, None, format!("Deleted real server: {} ({vip})", r.addr))
            }
        };
        let (old_state, new_state) = if t == Transition::Up { ("down", "up") } else { ("up", "down") };
        Event {
            kind,
            virtual_service: vip,
            service_id: self.id.clone(),
            real: r.addr,
            old_state,
            new_state,
            weight,
            message,
            reason: reason.to_string(),
            fallback: false,
        }
    }

    /// After change `t` of a real server: the fallback server's own change, if it entered the
    /// table (the last real server went down) or left it (the first came back), as
    /// ldirectord logs and mails them (`Added fallback server: …`, `Deleted fallback server: …`).
    pub fn fallback_event(&self, t: Transition) -> Option<Event> {
        let f = self.fallback?;
        let up = self.reals.iter().filter(|r| r.is_up()).count();
        let vip = self.service.key.label();
        let (kind, old_state, new_state, weight, message) = match t {
            Transition::Down if up == 0 => (
                EventKind::Added,
                "down",
                "up",
                Some(1),
                format!("Added fallback server: {f} ({vip}) (Weight set to 1)"),
            ),
            Transition::Up if up == 1 => {
                (EventKind::Deleted, "up", "down", None, format!("Deleted fallback server: {f} ({vip})"))
            }
            _ => return None,
        };
        Some(Event {
            kind,
            virtual_service: vip,
            service_id: self.id.clone(),
            real: f,
            old_state,
            new_state,
            weight,
            message,
            reason: if t == Transition::Down { "no real server is up" } else { "a real server is up" }
                .to_string(),
            fallback: true,
        })
    }

    /// The alert for real server `real` leaving the table because the director stops
    /// (`tag` `stop`) or the configuration no longer has it (`reload`).
    pub fn purge_event(&self, real: usize, tag: &str) -> Event {
        let mut e = self.event(real, Transition::Down, &format!("purged ({tag})"));
        let up = self.reals.get(real).is_some_and(RealState::is_up);
        e.kind = EventKind::Purged;
        e.old_state = if up { "up" } else { "down" };
        e.new_state = "removed";
        e.weight = None;
        e.message = format!("Purged real server ({tag}): {} ({})", e.real, e.virtual_service);
        e
    }

    /// ldirectord's `fallbackcommand` for the state the service is in: `CMD start VIP:PORT
    /// PROTO` while no real server is up, `CMD stop VIP:PORT PROTO` once one is (the caller
    /// runs it when this differs from what it ran last).
    pub fn fallback_command(&self) -> Option<String> {
        let cmd = self.fallbackcommand.as_deref()?;
        let k = self.service.key;
        let what = if self.any_up() { "stop" } else { "start" };
        Some(if k.fwmark != 0 {
            format!("{cmd} {what} {} fwm", k.fwmark)
        } else {
            format!("{cmd} {what} {} {}", k.socket(), k.protocol)
        })
    }

    /// The service as the data plane must run it now.
    pub fn desired(&self) -> VirtualService {
        let mut s = self.service.clone();
        s.reals = self
            .reals
            .iter()
            .filter_map(|r| match (r.is_up(), self.quiescent) {
                (true, _) => Some(RealServer { addr: r.addr, weight: r.weight }),
                (false, true) if r.left_out => None,
                (false, true) => Some(RealServer { addr: r.addr, weight: 0 }),
                (false, false) => None,
            })
            .collect();
        if let Some(f) = self.fallback.filter(|_| !self.any_up()) {
            match s.reals.iter_mut().find(|r| r.addr == f) {
                Some(r) => r.weight = 1,
                None => s.reals.push(RealServer { addr: f, weight: 1 }),
            }
        }
        s
    }
}

/// Everything the director knows. See the module documentation.
#[derive(Debug, Clone)]
pub struct DirectorState {
    pub services: Vec<ServiceState>,
    /// The global directives (`maintenancedir`, `autoreload`, `alertcommand`, ...).
    pub global: ld::Globals,
    next_id: u64,
}

/// What [`DirectorState::reconfigure`] changed. Real servers are named `RIP:PORT (VIP:PORT)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconfigureReport {
    /// Real servers that were not there: down until their first check.
    pub added: Vec<String>,
    /// Real servers no longer configured: out of the table.
    pub removed: Vec<String>,
    /// Real servers whose check changed: their health starts again (down until checked).
    pub rechecked: Vec<String>,
    /// Real servers kept with their health and counters.
    pub kept: Vec<String>,
    /// Virtual services added and removed (`tcp:VIP:PORT`).
    pub services_added: Vec<String>,
    pub services_removed: Vec<String>,
    /// The data plane's changes (filled by the runtime that applied them).
    pub table_changes: Vec<String>,
    /// Alerts for the real servers that left the table (`Purged real server (reload)`).
    pub purged: Vec<Event>,
    /// Alerts for the real servers that were up and whose check changed: down until their
    /// new check succeeds.
    pub reset: Vec<Event>,
}

impl ReconfigureReport {
    /// True when the new configuration changed nothing the director runs.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.rechecked.is_empty()
            && self.services_added.is_empty()
            && self.services_removed.is_empty()
            && self.table_changes.is_empty()
    }
}

impl std::fmt::Display for ReconfigureReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        let mut list = |what: &str, v: &[String]| {
            if !v.is_empty() {
                parts.push(format!("{what} {}", v.join(", ")));
            }
        };
        list("virtual services added:", &self.services_added);
        list("virtual services removed:", &self.services_removed);
        list("real servers added:", &self.added);
        list("removed:", &self.removed);
        list("checks changed:", &self.rechecked);
        if parts.is_empty() {
            parts.push("no change".to_string());
        }
        write!(f, "{}; {} real server(s) kept with their health", parts.join("; "), self.kept.len())
    }
}

impl DirectorState {
    /// The state for `cf` (names resolved), every real server down and not checked yet.
    pub fn new(cf: &ld::LdirectordCf) -> Result<DirectorState, DirectorError> {
        if cf.virtuals.is_empty() {
            return Err(DirectorError::Empty);
        }
        let g = &cf.global;
        let desired = Desired::from_ldirectord(cf)?;
        let mut services = Vec::new();
        for (v, service) in cf.virtuals.iter().zip(desired.services) {
            let policy = HealthPolicy::for_virtual(v, g);
            let mut reals = Vec::new();
            for (r, rs) in v.reals.iter().zip(&service.reals) {
                let spec: CheckSpec = spec_for(v, r, g).map_err(|e| DirectorError::Check {
                    line: r.line,
                    real: rs.addr.to_string(),
                    why: e.to_string(),
                })?;
                reals.push(RealState {
                    addr: rs.addr,
                    weight: rs.weight,
                    checker: Checker::new(spec, policy),
                    id: 0,
                    name: None,
                    rdns: None,
                    maintenance: None,
                    ld_id: real_id_str(v, r, rs.addr),
                    unsettled: false,
                    left_out: false,
                });
            }
            let (fallback, fallback_unusable) = match v.effective_fallback(g) {
                None => (None, None),
                Some(f) => match usable_fallback(&f, &service) {
                    Ok(a) => (Some(a), None),
                    Err(why) => (None, Some(why)),
                },
            };
            services.push(ServiceState {
                id: service.key.to_string(),
                mail: MailSettings::for_virtual(v, g),
                fallbackcommand: v.effective_fallbackcommand(g).map(str::to_string),
                monitorfile: v.monitorfile.clone(),
                cleanstop: v.effective_cleanstop(g),
                quiescent: v.effective_quiescent(g),
                readdquiescent: g.readdquiescent,
                checkinterval: Duration::from_secs(u64::from(v.effective_checkinterval(g).max(1))),
                service,
                reals,
                fallback,
                fallback_unusable,
            });
        }
        let mut me = DirectorState { services, global: g.clone(), next_id: 0 };
        for s in &mut me.services {
            for r in &mut s.reals {
                r.id = me.next_id;
                me.next_id += 1;
            }
        }
        me.desired().validate()?;
        Ok(me)
    }

    /// [`DirectorState::new`] for `cf` as written: host names resolved ([`resolve_names`];
    /// blocks on the resolver), the names kept for the maintenance files.
    pub fn load(cf: &ld::LdirectordCf) -> Result<DirectorState, DirectorError> {
        let mut st = DirectorState::new(&resolve_names(cf)?)?;
        for (s, v) in st.services.iter_mut().zip(&cf.virtuals) {
            for (r, written) in s.reals.iter_mut().zip(&v.reals) {
                if let (ld::Host::Name(n), None) = (&written.addr, &written.range_end) {
                    r.name = Some(n.clone());
                }
            }
        }
        Ok(st)
    }

    /// The position (service, real) of the real server with this id. `hint` is where it
    /// was when its check started: found there at once unless a reconfiguration moved it.
    pub fn find(&self, id: u64, hint: (usize, usize)) -> Option<(usize, usize)> {
        let (si, ri) = hint;
        if self.services.get(si).and_then(|s| s.reals.get(ri)).is_some_and(|r| r.id == id) {
            return Some(hint);
        }
        self.services
            .iter()
            .enumerate()
            .find_map(|(si, s)| s.reals.iter().position(|r| r.id == id).map(|ri| (si, ri)))
    }

    /// Takes the configuration of `new` (built from the new file), keeping what did not
    /// change: a real server of the same virtual service, address and check (spec and
    /// `failurecount`) keeps its health, counters, history, maintenance state and id, so
    /// its place in the table does not move (its weight follows the new file). The others
    /// start down until checked, as at start. Real servers no longer configured leave.
    pub fn reconfigure(&mut self, mut new: DirectorState) -> ReconfigureReport {
        let mut report = ReconfigureReport::default();
        let name = |addr: SocketAddr, key: &dataplane::ServiceKey| format!("{addr} ({})", key.label());
        let mut old = std::mem::take(&mut self.services);
        for ns in &mut new.services {
            let key = ns.service.key;
            let mut os = old.iter_mut().find(|o| o.service.key == key);
            if os.is_none() {
                report.services_added.push(ns.id.clone());
            }
            // quiescent=yes with readdquiescent=no, before and after: whether a failed real
            // server's place in the table was (and must be) settled against the kernel's.
            let settle_was = os.as_ref().is_some_and(|o| o.quiescent && !o.readdquiescent);
            let settle_now = ns.quiescent && !ns.readdquiescent;
            for nr in &mut ns.reals {
                let found = os.as_ref().and_then(|os| os.reals.iter().position(|r| r.addr == nr.addr));
                let kept = match (found, os.as_deref_mut()) {
                    (Some(i), Some(os)) => {
                        let same = {
                            let or = &os.reals[i];
                            format!("{:?}", or.checker.spec()) == format!("{:?}", nr.checker.spec())
                                && or.checker.health().policy() == nr.checker.health().policy()
                        };
                        if !same && os.reals[i].is_up() {
                            let why = "its check changed: down until checked again";
                            report.reset.push(os.event(i, Transition::Down, why));
                        }
                        let or = os.reals.remove(i);
                        if same {
                            Some(or)
                        } else {
                            report.rechecked.push(name(nr.addr, &key));
                            None
                        }
                    }
                    _ => {
                        report.added.push(name(nr.addr, &key));
                        None
                    }
                };
                match kept {
                    Some(or) => {
                        report.kept.push(name(nr.addr, &key));
                        nr.checker = or.checker;
                        nr.id = or.id;
                        nr.maintenance = or.maintenance;
                        nr.rdns = or.rdns;
                        if settle_was == settle_now {
                            nr.unsettled = or.unsettled;
                            nr.left_out = or.left_out;
                        } else {
                            // The settings changed: what was left out (or waited to be) under
                            // the old ones is not under the new ones. A failed real server
                            // that is missing from the table because the director itself
                            // deleted it (quiescent=no) is no server an operator deleted, so
                            // readdquiescent=no does not keep it out: it goes in at weight 0.
                            nr.unsettled = false;
                            nr.left_out = false;
                        }
                    }
                    None => {
                        nr.id = self.next_id;
                        self.next_id += 1;
                    }
                }
            }
        }
        for os in &old {
            let gone = !new.services.iter().any(|n| n.service.key == os.service.key);
            if gone {
                report.services_removed.push(os.id.clone());
            }
            let d = os.desired();
            for (ri, r) in os.reals.iter().enumerate() {
                report.removed.push(name(r.addr, &os.service.key));
                if d.reals.iter().any(|x| x.addr == r.addr) {
                    report.purged.push(os.purge_event(ri, "reload"));
                }
            }
        }
        self.services = new.services;
        self.global = new.global;
        report
    }

    /// Applies the listing of the maintenance directory: a real server named there
    /// ([`maintenance_names`]) is forced down (no check), one no longer named is checked
    /// again (down until a check succeeds). Returns the changes of state, with the file.
    pub fn set_maintenance(&mut self, files: &BTreeSet<String>) -> Vec<(usize, usize, Transition)> {
        let mut out = Vec::new();
        if files.is_empty() {
            // The common case, every second: no file, no name to build.
            self.services.iter_mut().flat_map(|s| &mut s.reals).for_each(|r| r.maintenance = None);
            return out;
        }
        for (si, s) in self.services.iter_mut().enumerate() {
            for (ri, r) in s.reals.iter_mut().enumerate() {
                let mut names = maintenance_names(r.addr, r.name.as_deref());
                if r.rdns.is_some() && r.rdns != r.name {
                    names.extend(maintenance_names(r.addr, r.rdns.as_deref()).into_iter().skip(2));
                }
                let hit = names.into_iter().find(|n| files.contains(n));
                match (hit, r.maintenance.is_some()) {
                    (Some(f), _) => {
                        r.maintenance = Some(f);
                        if let Some(t) = r.checker.health_mut().force(false) {
                            r.note(t, s.quiescent && !s.readdquiescent);
                            out.push((si, ri, t));
                        }
                    }
                    (None, true) => r.maintenance = None,
                    (None, false) => {}
                }
            }
        }
        out
    }

    /// What the data plane must run now.
    pub fn desired(&self) -> Desired {
        Desired { services: self.services.iter().map(ServiceState::desired).collect() }
    }

    /// Records a check result of real server `real` of service `service` (indexes into
    /// [`DirectorState::services`] and its `reals`); returns the change of state, if any.
    pub fn record(&mut self, service: usize, real: usize, result: CheckResult) -> Option<Transition> {
        let s = self.services.get_mut(service)?;
        let settle = s.quiescent && !s.readdquiescent;
        let r = s.reals.get_mut(real)?;
        let t = r.checker.record(result)?;
        r.note(t, settle);
        Some(t)
    }

    /// Is any real server waiting for [`DirectorState::settle_quiescent`]? (Only then need
    /// the runtime read the kernel's table before it applies.)
    pub fn unsettled(&self) -> bool {
        self.services.iter().flat_map(|s| &s.reals).any(|r| r.unsettled)
    }

    /// ldirectord's `readdquiescent=no` (spec §7.5): every real server that went down (with
    /// `quiescent=yes`) since the last call and that `in_table` says the kernel's table does
    /// not hold is left out of the table until it comes up again, instead of being added back
    /// with weight 0. The runtime calls it with what the table holds just before it applies
    /// [`DirectorState::desired`]. Returns the real servers left out, `RIP:PORT (VIP:PORT)`.
    pub fn settle_quiescent(
        &mut self,
        in_table: &dyn Fn(dataplane::ServiceKey, SocketAddr) -> bool,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for s in &mut self.services {
            let key = s.service.key;
            for r in s.reals.iter_mut().filter(|r| r.unsettled) {
                r.unsettled = false;
                r.left_out = !r.is_up() && !in_table(key, r.addr);
                if r.left_out {
                    out.push(format!("{} ({})", r.addr, key.label()));
                }
            }
        }
        out
    }

    /// The longest a check may take (for waiting on a first pass).
    pub fn longest_check(&self) -> Duration {
        self.services
            .iter()
            .flat_map(|s| &s.reals)
            .map(|r| r.checker.spec().timeout)
            .max()
            .unwrap_or_default()
    }

    /// The IPVS view of what runs now, with the data plane's counters (`is_local` says
    /// which real servers are this host: shown `Local`, as IPVS does).
    pub fn model(&self, stats: &[RealStats], is_local: &dyn Fn(IpAddr) -> bool) -> ipvsadm::Model {
        model_of(&self.desired(), stats, is_local)
    }
}

/// A data plane's table as ipvsadm lists it: the virtual services of `desired`, their real
/// servers (`Local` where a DR real server is this host) and the plane's counters.
pub fn model_of(desired: &Desired, stats: &[RealStats], is_local: &dyn Fn(IpAddr) -> bool) -> ipvsadm::Model {
    // The services as the IPVS plane puts them in the kernel, then what only a listing has.
    let mut m =
        ipvsadm::Model { services: dataplane::ipvs::services_of(desired), ..ipvsadm::Model::default() };
    for (svc, d) in m.services.iter_mut().zip(&desired.services) {
        for dest in &mut svc.dests {
            if d.forward == Forward::Gate && is_local(dest.addr.ip()) {
                dest.forward = ipvsadm::Forward::Local;
            }
            if let Some(st) = stats.iter().find(|x| x.service == d.key && x.real == dest.addr) {
                dest.stats = ipvsadm::Stats {
                    conns: 0,
                    inpkts: st.in_packets,
                    outpkts: st.out_packets,
                    inbytes: st.in_bytes,
                    outbytes: st.out_bytes,
                };
            }
            svc.stats.inpkts += dest.stats.inpkts;
            svc.stats.outpkts += dest.stats.outpkts;
            svc.stats.inbytes += dest.stats.inbytes;
            svc.stats.outbytes += dest.stats.outbytes;
        }
    }
    m
}

/// The fallback as the data plane can run it, or why not.
fn usable_fallback(f: &ld::Fallback, s: &VirtualService) -> Result<SocketAddr, String> {
    let ip = match &f.addr {
        ld::Host::Ip(ip) if ip.is_ipv4() == s.key.vip.is_ipv4() => *ip,
        ld::Host::Ip(ip) => {
            return Err(format!("fallback {ip}: not of the family of the virtual address {}", s.key.vip))
        }
        other => return Err(format!("fallback {other}: its name was not resolved")),
    };
    let forward = match f.forward {
        ld::Forward::Masq => Forward::Masq,
        ld::Forward::Gate => Forward::Gate,
        ld::Forward::Ipip => return Err(format!("fallback {ip}: ipip forwarding is not supported")),
    };
    if forward != s.forward {
        return Err(format!("fallback {ip}: its forwarding method differs from the virtual service's"));
    }
    let port = f.port.unwrap_or(s.key.port);
    if forward == Forward::Gate && port != s.key.port {
        return Err(format!("fallback {ip}:{port}: direct routing cannot change the port"));
    }
    if ip.is_loopback() && forward == Forward::Gate {
        return Err(format!("fallback {ip}: direct routing to the loopback address is not supported"));
    }
    Ok(SocketAddr::new(ip, port))
}

/// ldirectord's log lines for a change of a real server (`Added real server: …`).
pub fn transition_message(s: &ServiceState, real: usize, t: Transition) -> String {
    let Some(r) = s.reals.get(real) else { return String::new() };
    let vip = s.service.key.label();
    let why = match &r.maintenance {
        Some(f) => format!("maintenance file {f}"),
        None => r.checker.health().last().map(|c| c.reason.clone()).unwrap_or_default(),
    };
    match (t, s.quiescent) {
        (Transition::Up, _) => {
            format!("Added real server: {} ({vip}) (Weight set to {}) [{why}]", r.addr, r.weight)
        }
        (Transition::Down, true) => {
            format!("Quiescent real server: {} ({vip}) (Weight set to 0) [{why}]", r.addr)
        }
        (Transition::Down, false) => format!("Deleted real server: {} ({vip}) [{why}]", r.addr),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CheckKind;
    use std::net::Ipv4Addr;
    use std::path::Path;

    fn state(text: &str) -> DirectorState {
        let (cf, _) = halo_config::parse_ldirectord_cf(Path::new("ldirectord.cf"), text).expect("parses");
        DirectorState::new(&resolve_names(&cf).expect("resolves")).expect("builds")
    }

    fn result(up: bool) -> CheckResult {
        CheckResult { kind: CheckKind::Http, up, reason: "test".into(), duration: Duration::ZERO }
    }

    const SEED: &str = "checktimeout=3\ncheckinterval=2\nvirtual=192.168.1.199:80\n\
        \treal=192.168.1.61:80 gate 1 \"testcluster.html\", \"N1\"\n\
        \treal=192.168.1.62:80 gate 1 \"testcluster.html\", \"N2\"\n\
        \tchecktype=negotiate\n\tservice=http\n\tcheckport=80\n\tscheduler=rr\n";

    #[test]
    fn director_real_servers_join_when_up_and_leave_when_down() {
        let mut st = state(SEED);
        assert_eq!(st.services[0].checkinterval, Duration::from_secs(2));
        assert!(st.desired().services[0].reals.is_empty(), "down until checked");
        assert_eq!(st.record(0, 0, result(true)), Some(Transition::Up));
        assert_eq!(st.record(0, 1, result(true)), Some(Transition::Up));
        let d = st.desired();
        assert_eq!(d.services[0].reals.len(), 2);
        assert_eq!(st.record(0, 1, result(false)), Some(Transition::Down));
        let d2 = st.desired();
        assert_eq!(d2.services[0].reals, vec![d.services[0].reals[0]]);
        assert!(transition_message(&st.services[0], 1, Transition::Down)
            .starts_with("Deleted real server: 192.168.1.62:80 (192.168.1.199:80)"));
        let spec = st.services[0].reals[0].checker.spec();
        assert_eq!(spec.request.trim_start_matches('/'), "testcluster.html");
    }

    fn weights(st: &DirectorState) -> Vec<(String, u32)> {
        st.desired().services[0].reals.iter().map(|r| (r.addr.to_string(), r.weight)).collect()
    }

    #[test]
    fn director_readdquiescent_no_leaves_a_missing_failed_server_out() {
        // ldirectord's default readdquiescent=no: a real server that fails while it is
        // missing from the kernel's table (deleted behind the director's back) stays out.
        let mut st = state(&format!("quiescent=yes\n{SEED}"));
        assert!(!st.services[0].readdquiescent);
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 0), ("192.168.1.62:80".into(), 0)]);
        st.record(0, 0, result(true));
        st.record(0, 1, result(true));
        assert!(!st.unsettled(), "nothing went down");
        assert_eq!(st.record(0, 1, result(false)), Some(Transition::Down));
        assert!(st.unsettled());
        let missing: SocketAddr = "192.168.1.62:80".parse().unwrap();
        let left = st.settle_quiescent(&|_, a| a != missing);
        assert_eq!(left, vec!["192.168.1.62:80 (192.168.1.199:80)".to_string()]);
        assert!(!st.unsettled());
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 1)], "left out, not re-added at 0");
        // Further failures change nothing; a success brings it back at its weight.
        assert_eq!(st.record(0, 1, result(false)), None);
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 1)]);
        assert_eq!(st.record(0, 1, result(true)), Some(Transition::Up));
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 1), ("192.168.1.62:80".into(), 1)]);
        // Present in the table when it fails: quiesced at weight 0 as before.
        st.record(0, 1, result(false));
        assert!(st.settle_quiescent(&|_, _| true).is_empty());
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 1), ("192.168.1.62:80".into(), 0)]);
    }

    #[test]
    fn director_readdquiescent_yes_adds_a_missing_failed_server_back_at_weight_0() {
        let mut st = state(&format!("quiescent=yes\nreaddquiescent=yes\n{SEED}"));
        assert!(st.services[0].readdquiescent);
        st.record(0, 0, result(true));
        st.record(0, 1, result(true));
        assert_eq!(st.record(0, 1, result(false)), Some(Transition::Down));
        assert!(!st.unsettled(), "readdquiescent=yes needs no look at the table");
        assert!(st.settle_quiescent(&|_, _| false).is_empty());
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 1), ("192.168.1.62:80".into(), 0)]);
        // Without quiescent, readdquiescent changes nothing: a failed server is deleted.
        let mut st = state(&format!("readdquiescent=yes\n{SEED}"));
        st.record(0, 0, result(true));
        st.record(0, 1, result(true));
        st.record(0, 1, result(false));
        assert!(!st.unsettled());
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 1)]);
    }

    #[test]
    fn director_readdquiescent_no_applies_to_maintenance_too_and_survives_a_reload() {
        let mut st = state(&format!("quiescent=yes\n{SEED}"));
        st.record(0, 0, result(true));
        st.record(0, 1, result(true));
        let files: BTreeSet<String> = ["192.168.1.61".to_string()].into();
        assert_eq!(st.set_maintenance(&files).len(), 1);
        assert!(st.unsettled());
        st.settle_quiescent(&|_, a| a.ip() != IpAddr::V4(Ipv4Addr::new(192, 168, 1, 61)));
        assert_eq!(weights(&st), vec![("192.168.1.62:80".into(), 1)]);
        // The same file again: the real server kept by the reload stays left out.
        let report = st.reconfigure(state(&format!("quiescent=yes\n{SEED}")));
        assert_eq!(report.kept.len(), 2);
        assert!(st.services[0].reals[0].left_out);
        assert_eq!(weights(&st), vec![("192.168.1.62:80".into(), 1)]);
    }

    #[test]
    fn director_reload_that_changes_readdquiescent_settles_failed_servers_anew() {
        let no = format!("quiescent=yes\n{SEED}");
        let yes = format!("quiescent=yes\nreaddquiescent=yes\n{SEED}");
        let mut st = state(&no);
        st.record(0, 0, result(true));
        st.record(0, 1, result(true));
        st.record(0, 0, result(false));
        st.settle_quiescent(&|_, a| a.ip() != IpAddr::V4(Ipv4Addr::new(192, 168, 1, 61)));
        assert!(st.services[0].reals[0].left_out);
        assert_eq!(weights(&st), vec![("192.168.1.62:80".into(), 1)]);

        // readdquiescent=yes: the failed server goes back in at weight 0, nothing to settle.
        st.reconfigure(state(&yes));
        assert!(!st.unsettled());
        assert!(!st.services[0].reals[0].left_out);
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 0), ("192.168.1.62:80".into(), 1)]);

        // Back to readdquiescent=no: it stays at weight 0 (nobody deleted it by hand).
        st.reconfigure(state(&no));
        assert!(!st.unsettled());
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 0), ("192.168.1.62:80".into(), 1)]);
        // quiescent=no deletes it; quiescent=yes again puts it back at weight 0: the director
        // deleted it itself, so readdquiescent=no has nothing to keep out.
        st.reconfigure(state(SEED));
        assert_eq!(weights(&st), vec![("192.168.1.62:80".into(), 1)]);
        st.reconfigure(state(&no));
        assert!(!st.unsettled());
        assert_eq!(weights(&st), vec![("192.168.1.61:80".into(), 0), ("192.168.1.62:80".into(), 1)]);
        // Failing again while missing from the table (deleted by hand): left out, as before.
        st.record(0, 0, result(true));
        st.record(0, 0, result(false));
        assert!(st.unsettled());
        let hand_deleted =
            |_: dataplane::ServiceKey, a: SocketAddr| a.ip() != IpAddr::V4(Ipv4Addr::new(192, 168, 1, 61));
        assert_eq!(st.settle_quiescent(&hand_deleted).len(), 1);
        assert_eq!(weights(&st), vec![("192.168.1.62:80".into(), 1)]);
    }

    #[test]
    fn director_fork_gives_each_virtual_service_its_own_checkinterval() {
        let two = "checkinterval=7\nvirtual=192.168.1.199:80\n\treal=192.168.1.61:80 gate\n\tcheckinterval=3\n\tchecktype=connect\n\
            virtual=192.168.1.199:443\n\treal=192.168.1.61:443 gate\n\tchecktype=connect\n";
        // fork=no (the default): one interval for all, the global one (as ldirectord).
        let st = state(two);
        let iv: Vec<Duration> = st.services.iter().map(|s| s.checkinterval).collect();
        assert_eq!(iv, vec![Duration::from_secs(7), Duration::from_secs(7)]);
        // fork=yes: a checker per virtual service, each at its own checkinterval.
        let st = state(&format!("fork=yes\n{two}"));
        let iv: Vec<Duration> = st.services.iter().map(|s| s.checkinterval).collect();
        assert_eq!(iv, vec![Duration::from_secs(3), Duration::from_secs(7)]);
    }

    #[test]
    fn director_quiescent_and_fallback() {
        let text = format!("quiescent=yes\nfallback=192.168.1.70:80 gate\n{SEED}");
        let mut st = state(&text);
        let d = st.desired();
        let w: Vec<(String, u32)> =
            d.services[0].reals.iter().map(|r| (r.addr.to_string(), r.weight)).collect();
        assert_eq!(
            w,
            vec![("192.168.1.61:80".into(), 0), ("192.168.1.62:80".into(), 0), ("192.168.1.70:80".into(), 1)]
        );
        assert!(st.services[0].fallback_active());
        assert_eq!(st.services[0].fallback_command(), None, "no fallbackcommand");
        st.record(0, 0, result(true));
        let e = st.services[0].fallback_event(Transition::Up).expect("the fallback leaves");
        assert_eq!(e.message, "Deleted fallback server: 192.168.1.70:80 (192.168.1.199:80)");
        st.record(0, 1, result(true));
        assert_eq!(st.services[0].fallback_event(Transition::Up), None, "not the first one up");
        st.record(0, 1, result(false));
        assert_eq!(st.services[0].fallback_event(Transition::Down), None, "one is still up");
        st.record(0, 0, result(false));
        let e = st.services[0].fallback_event(Transition::Down).expect("the fallback comes");
        assert_eq!(e.message, "Added fallback server: 192.168.1.70:80 (192.168.1.199:80) (Weight set to 1)");
        assert!(e.fallback && e.kind == EventKind::Added);
        st.record(0, 0, result(true));
        let w: Vec<u32> = st.desired().services[0].reals.iter().map(|r| r.weight).collect();
        assert_eq!(w, vec![1, 0], "the fallback leaves when a real server is up");
        // A masq fallback for a gate service cannot run: said, not used.
        let text = format!("fallback=192.168.1.70:80 masq\n{SEED}");
        let st = state(&text);
        assert!(st.services[0].fallback.is_none());
        assert!(st.services[0].fallback_unusable.is_some());
    }

    #[test]
    fn director_fallbackcommand_start_while_none_is_up_stop_once_one_is() {
        let mut st = state(&format!("fallbackcommand=\"/usr/local/sbin/sorry\"\n{SEED}"));
        let start = "/usr/local/sbin/sorry start 192.168.1.199:80 tcp";
        assert_eq!(st.services[0].fallback_command().as_deref(), Some(start));
        st.record(0, 1, result(true));
        assert_eq!(
            st.services[0].fallback_command().as_deref(),
            Some("/usr/local/sbin/sorry stop 192.168.1.199:80 tcp")
        );
        st.record(0, 1, result(false));
        assert_eq!(st.services[0].fallback_command().as_deref(), Some(start));
    }

    #[test]
    fn director_monitorfile_lines_are_ldirectords() {
        let st = state(SEED);
        let r = &st.services[0].reals[0];
        assert_eq!(r.ld_id, "negotiate:http:tcp:192.168.1.61:80::80:1:gate:/testcluster.html:N1");
        assert_eq!(
            monitor_line("Tue Dec  1 21:17:12 2026", 42, &r.ld_id, true, ""),
            "[Tue Dec  1 21:17:12 2026] [42] negotiate http tcp 192.168.1.61 80 80 1 gate /testcluster.html N1 [up] -\n"
        );
        assert_eq!(
            monitor_line("T", 1, "connect:tcp:10.0.0.2:80:::1:gate:\\/:", false, "50% down|now\r\nx"),
            // An empty receive leaves a trailing ':' in the id: two spaces, as in ldirectord.
            "[T] [1] connect tcp 10.0.0.2 80 1 gate /  [down] 50%25 down%7cnow%0d%0ax\n"
        );
    }

    #[test]
    fn director_model_prints_like_ipvsadm() {
        let mut st = state(SEED);
        st.record(0, 0, result(true));
        st.record(0, 1, result(true));
        let stats = vec![RealStats {
            service: st.services[0].service.key,
            real: st.services[0].reals[1].addr,
            in_packets: 12,
            in_bytes: 3400,
            out_packets: 0,
            out_bytes: 0,
        }];
        let local = |ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::new(192, 168, 1, 61));
        let m = st.model(&stats, &local);
        assert_eq!(
            ipvsadm::list(&m),
            "IP Virtual Server version 1.2.1 (size=4096)\n\
             Prot LocalAddress:Port Scheduler Flags\n  \
             -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n\
             TCP  192.168.1.199:80 rr\n  \
             -> 192.168.1.61:80              Local   1      0          0         \n  \
             -> 192.168.1.62:80              Route   1      0          0         \n"
        );
        assert!(
            ipvsadm::list_stats(&m)
                .contains("  -> 192.168.1.62:80                     0       12        0     3400        0\n"),
            "{}",
            ipvsadm::list_stats(&m)
        );
    }

    #[test]
    fn director_maintenance_files_force_a_real_server_down_until_gone() {
        let mut st = state(&format!("quiescent=yes\n{SEED}"));
        st.record(0, 0, result(true));
        st.record(0, 1, result(true));
        assert_eq!(
            maintenance_names(st.services[0].reals[1].addr, Some("web2.example.org")),
            vec![
                "192.168.1.62:80",
                "192.168.1.62",
                "web2.example.org:80",
                "web2.example.org",
                "web2:80",
                "web2"
            ]
        );
        let files: BTreeSet<String> = ["192.168.1.62".to_string(), "unrelated".to_string()].into();
        assert_eq!(st.set_maintenance(&files), vec![(0, 1, Transition::Down)]);
        assert_eq!(st.services[0].reals[1].maintenance.as_deref(), Some("192.168.1.62"));
        let w: Vec<u32> = st.desired().services[0].reals.iter().map(|r| r.weight).collect();
        assert_eq!(w, vec![1, 0], "quiescent: weight 0");
        assert!(transition_message(&st.services[0], 1, Transition::Down)
            .contains("[maintenance file 192.168.1.62]"));
        assert!(st.set_maintenance(&files).is_empty(), "no second change");
        // By the name the resolver gives its address too (ldirectord's reverse lookup).
        st.services[0].reals[0].rdns = Some("web1.example.org".into());
        let short: BTreeSet<String> = ["web1:80".to_string()].into();
        assert_eq!(st.set_maintenance(&short), vec![(0, 0, Transition::Down)]);
        assert_eq!(st.services[0].reals[0].maintenance.as_deref(), Some("web1:80"));
        assert!(st.services[0].reals[1].maintenance.is_none());
        st.set_maintenance(&BTreeSet::new());
        st.record(0, 0, result(true));
        assert!(st.set_maintenance(&files).is_empty());
        assert!(st.set_maintenance(&BTreeSet::new()).is_empty(), "gone: down until checked");
        assert!(st.services[0].reals[1].maintenance.is_none());
        assert_eq!(st.record(0, 1, result(true)), Some(Transition::Up));
    }

    #[test]
    fn director_reconfigure_keeps_the_health_of_unchanged_real_servers() {
        let mut st = state(SEED);
        st.record(0, 0, result(true));
        st.record(0, 0, result(true));
        st.record(0, 1, result(true));
        let id0 = st.services[0].reals[0].id;
        // A third real server, the second one's check changed, a second service.
        let text = "checktimeout=3\ncheckinterval=2\nvirtual=192.168.1.199:80\n\
            \treal=192.168.1.61:80 gate 1 \"testcluster.html\", \"N1\"\n\
            \treal=192.168.1.62:80 gate 1 \"other.html\", \"N2\"\n\
            \treal=192.168.1.63:80 gate 1 \"testcluster.html\", \"N3\"\n\
            \tchecktype=negotiate\n\tservice=http\n\tcheckport=80\n\tscheduler=rr\n\
            virtual=192.168.1.199:443\n\treal=192.168.1.61:443 gate\n\tchecktype=connect\n";
        let report = st.reconfigure(state(text));
        assert_eq!(report.kept, vec!["192.168.1.61:80 (192.168.1.199:80)"]);
        assert_eq!(report.rechecked, vec!["192.168.1.62:80 (192.168.1.199:80)"]);
        let reset: Vec<&str> = report.reset.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(reset, vec!["Deleted real server: 192.168.1.62:80 (192.168.1.199:80)"]);
        assert_eq!(
            report.added,
            vec!["192.168.1.63:80 (192.168.1.199:80)", "192.168.1.61:443 (192.168.1.199:443)"]
        );
        assert_eq!(report.services_added, vec!["tcp:192.168.1.199:443"]);
        let r0 = &st.services[0].reals[0];
        assert_eq!((r0.id, r0.checker.health().checks(), r0.is_up()), (id0, 2, true), "kept as it was");
        assert!(!st.services[0].reals[1].is_up() && st.services[0].reals[1].checker.health().checks() == 0);
        let ids: BTreeSet<u64> = st.services.iter().flat_map(|s| s.reals.iter().map(|r| r.id)).collect();
        assert_eq!(ids.len(), 4, "ids stay unique");
        assert_eq!(st.find(id0, (1, 0)), Some((0, 0)), "found where it moved");
        // Back to one real server: the others leave, the one in the table with a purge alert.
        st.record(0, 2, result(true));
        let report = st.reconfigure(state(
            "checktimeout=3\ncheckinterval=2\nvirtual=192.168.1.199:80\n\
            \treal=192.168.1.61:80 gate 1 \"testcluster.html\", \"N1\"\n\
            \tchecktype=negotiate\n\tservice=http\n\tcheckport=80\n\tscheduler=rr\n",
        ));
        assert_eq!(report.services_removed, vec!["tcp:192.168.1.199:443"]);
        assert_eq!(report.removed.len(), 3);
        let purged: Vec<&str> = report.purged.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(purged, vec!["Purged real server (reload): 192.168.1.63:80 (192.168.1.199:80)"]);
        assert_eq!(st.desired().services.len(), 1);
        assert_eq!(st.services[0].reals[0].checker.health().checks(), 2);
        // A new weight only: health kept, the table takes the weight at once.
        let report = st.reconfigure(state(
            "checktimeout=3\ncheckinterval=2\nvirtual=192.168.1.199:80\n\
            \treal=192.168.1.61:80 gate 5 \"testcluster.html\", \"N1\"\n\
            \tchecktype=negotiate\n\tservice=http\n\tcheckport=80\n\tscheduler=rr\n",
        ));
        assert_eq!((report.kept.len(), report.rechecked.len()), (1, 0), "{report:?}");
        assert_eq!(st.desired().services[0].reals[0].weight, 5);
        assert!(st.services[0].reals[0].is_up());
    }

    #[test]
    fn director_refuses_what_it_cannot_run() {
        // A DR real server on another port than the virtual one.
        let (cf, _) = halo_config::parse_ldirectord_cf(
            Path::new("x"),
            "virtual=10.0.0.1:80\n\treal=10.0.0.2:81 gate\n",
        )
        .expect("parses");
        assert!(matches!(DirectorState::new(&cf), Err(DirectorError::Invalid(_))));
        let (cf, _) = halo_config::parse_ldirectord_cf(Path::new("x"), "checkinterval=5\n").expect("parses");
        assert!(matches!(DirectorState::new(&cf), Err(DirectorError::Empty)));
    }
}
