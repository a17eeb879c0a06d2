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
//! The runtime (halo's `director` module) resolves host names first ([`resolve_names`]),
//! builds a [`DirectorState`] with [`DirectorState::new`], feeds it check results with
//! [`DirectorState::record`], and applies [`DirectorState::desired`] after every change.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::time::Duration;

use halo_config::ldirectord_cf as ld;

use crate::check::{spec_for, CheckResult, CheckSpec, Checker, HealthPolicy, Transition};
use crate::dataplane::{self, Desired, Forward, InvalidDesired, RealServer, RealStats, VirtualService};
use crate::ipvsadm;
use crate::scheduler::Netmask;

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
    pub addr: SocketAddrV4,
    /// The weight ldirectord.cf gives it.
    pub weight: u32,
    pub checker: Checker,
}

impl RealState {
    pub fn is_up(&self) -> bool {
        self.checker.health().is_up()
    }
}

/// One virtual service: its configuration, its real servers, and its usable fallback.
#[derive(Debug, Clone)]
pub struct ServiceState {
    /// As configured (every real server at its configured weight).
    pub service: VirtualService,
    pub reals: Vec<RealState>,
    pub quiescent: bool,
    /// The fallback server, when configured and runnable by the data plane.
    pub fallback: Option<SocketAddrV4>,
    /// Why a configured fallback is not used, if it is not.
    pub fallback_unusable: Option<String>,
    /// Seconds between two check passes of this service.
    pub checkinterval: Duration,
    /// ldirectord's id of the service (`tcp:192.0.2.10:80`).
    pub id: String,
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

    /// The service as the data plane must run it now.
    pub fn desired(&self) -> VirtualService {
        let mut s = self.service.clone();
        s.reals = self
            .reals
            .iter()
            .filter_map(|r| match (r.is_up(), self.quiescent) {
                (true, _) => Some(RealServer { addr: r.addr, weight: r.weight }),
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
                quiescent: v.effective_quiescent(g),
                checkinterval: Duration::from_secs(u64::from(v.effective_checkinterval(g).max(1))),
                service,
                reals,
                fallback,
                fallback_unusable,
            });
        }
        let me = DirectorState { services };
        me.desired().validate()?;
        Ok(me)
    }

    /// What the data plane must run now.
    pub fn desired(&self) -> Desired {
        Desired { services: self.services.iter().map(ServiceState::desired).collect() }
    }

    /// Records a check result of real server `real` of service `service` (indexes into
    /// [`DirectorState::services`] and its `reals`); returns the change of state, if any.
    pub fn record(&mut self, service: usize, real: usize, result: CheckResult) -> Option<Transition> {
        self.services.get_mut(service)?.reals.get_mut(real)?.checker.record(result)
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
        let mut m = ipvsadm::Model::default();
        for s in &self.services {
            let d = s.desired();
            let protocol = match d.key.protocol {
                dataplane::Protocol::Tcp => ipvsadm::Protocol::Tcp,
                dataplane::Protocol::Udp => ipvsadm::Protocol::Udp,
            };
            let key = ipvsadm::ServiceKey::Addr {
                protocol,
                addr: SocketAddr::V4(SocketAddrV4::new(d.key.vip, d.key.port)),
            };
            let mut svc = ipvsadm::Service::new(key, &d.scheduler);
            svc.persistent = d
                .persistence
                .map(|p| ipvsadm::Persistent { timeout: p.timeout_s, netmask: Netmask::v4(p.netmask) });
            for r in &d.reals {
                let forward = match d.forward {
                    Forward::Masq => ipvsadm::Forward::Masq,
                    Forward::Gate if is_local(IpAddr::V4(*r.addr.ip())) => ipvsadm::Forward::Local,
                    Forward::Gate => ipvsadm::Forward::Route,
                };
                let weight = i32::try_from(r.weight).unwrap_or(i32::MAX);
                let mut dest = ipvsadm::Destination::new(SocketAddr::V4(r.addr), forward, weight);
                if let Some(st) = stats.iter().find(|x| x.service == d.key && x.real == r.addr) {
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
                svc.dests.push(dest);
            }
            m.services.push(svc);
        }
        m
    }
}

/// The fallback as the data plane can run it, or why not.
fn usable_fallback(f: &ld::Fallback, s: &VirtualService) -> Result<SocketAddrV4, String> {
    let ip = match &f.addr {
        ld::Host::Ip(IpAddr::V4(ip)) => *ip,
        other => return Err(format!("fallback {other}: the nftables data plane needs an IPv4 address")),
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
    if ip == Ipv4Addr::LOCALHOST && forward == Forward::Gate {
        return Err(format!("fallback {ip}: direct routing to the loopback address is not supported"));
    }
    Ok(SocketAddrV4::new(ip, port))
}

/// ldirectord's log lines for a change of a real server (`Added real server: …`).
pub fn transition_message(s: &ServiceState, real: usize, t: Transition) -> String {
    let Some(r) = s.reals.get(real) else { return String::new() };
    let vip = format!("{}:{}", s.service.key.vip, s.service.key.port);
    let why = r.checker.health().last().map(|c| c.reason.clone()).unwrap_or_default();
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
    fn director_refuses_what_it_cannot_run() {
        let (cf, _) =
            halo_config::parse_ldirectord_cf(Path::new("x"), "virtual=7\n\treal=10.0.0.2:80 gate\n")
                .expect("parses");
        assert!(matches!(DirectorState::new(&cf), Err(DirectorError::Invalid(_))));
        let (cf, _) = halo_config::parse_ldirectord_cf(Path::new("x"), "checkinterval=5\n").expect("parses");
        assert!(matches!(DirectorState::new(&cf), Err(DirectorError::Empty)));
    }
}
