//! From ldirectord.cf's model to a [`CheckSpec`], with ldirectord's rules (`ld_setup`,
//! `_check_real`, `ld_checkport`, the `check_*` subs):
//!
//! * kind: `checktype` — `negotiate` speaks the virtual's `service` (by port when not
//!   written; `none` is always up, `submission` is smtp); `connect` on a UDP service is a
//!   ping; `external-perl` runs the file with `perl`; `checktype=N` is a negotiate check with
//!   [`Combined`] connect checks between.
//! * target: the real server's address and `checkport`, else the real server's port, else
//!   the service's port (port 0 when none applies, as ldirectord).
//! * timeout: `negotiatetimeout` for negotiate checks, `checktimeout` for connect, external,
//!   ping, ldap and radius checks, resolved as ldirectord does (§7.3). A ping's deadline is
//!   `checktimeout` × `checkcount` (ldirectord's worst case: `checkcount` attempts of
//!   `checktimeout` each).
//! * request/receive: the real server's own pair, else the virtual's, else `/` and any.
//! * external: `checkcommand VIP VPORT RIP RPORT` (a firewall mark as VIP and port 0 for a
//!   fwmark service; IPv6 addresses in brackets, as ldirectord writes them).
//! * login: `anonymous` / `ldirectord@<hostname>` defaults for ftp, `ldirectord@<hostname>`
//!   for sip ([`VirtualService::effective_login`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::Duration;

use halo_config::ldirectord_cf::{CheckType, Host, Protocol, Service, VirtualAddr};
use halo_config::{Globals, RealServer, VirtualService};

use super::{CheckKind, CheckSpec, Combined, Command, Receive, Transport};

/// Why a spec cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The real server is written as a host name: resolve it and call [`spec_for_addr`].
    #[error("real server {0} is a host name: resolve it first")]
    Unresolved(String),
    /// `receive` does not compile as a regular expression (Rust syntax: no look-around, no
    /// back-references).
    #[error("receive pattern /{pattern}/: {message}")]
    Receive { pattern: String, message: String },
}

/// The spec for checking `r` of `v`; `r` must be written as an address (see
/// [`spec_for_addr`] for host names resolved by the runtime).
pub fn spec_for(v: &VirtualService, r: &RealServer, g: &Globals) -> Result<CheckSpec, SpecError> {
    match &r.addr {
        Host::Ip(ip) => spec_for_addr(v, r, *ip, g),
        Host::Name(n) => Err(SpecError::Unresolved(n.clone())),
    }
}

/// [`spec_for`] with the real server's address given (resolved from its name).
pub fn spec_for_addr(
    v: &VirtualService,
    r: &RealServer,
    rip: IpAddr,
    g: &Globals,
) -> Result<CheckSpec, SpecError> {
    let checktimeout = secs(v.effective_checktimeout(g));
    let negotiatetimeout = secs(v.effective_negotiatetimeout(g));
    let udp = v.protocol == Protocol::Udp;
    let negotiate = negotiate_kind(v.service);
    let (kind, combined) = match v.checktype {
        CheckType::Negotiate => (negotiate, None),
        CheckType::Connect if udp => (CheckKind::Ping, None),
        CheckType::Connect => (CheckKind::Connect, None),
        CheckType::Ping => (CheckKind::Ping, None),
        CheckType::External | CheckType::ExternalPerl => (CheckKind::External, None),
        CheckType::On => (CheckKind::On, None),
        CheckType::Off => (CheckKind::Off, None),
        CheckType::Combined(n) => (negotiate, Some(Combined { connects: n, connect_timeout: checktimeout })),
    };
    let checkcount = v.effective_checkcount(g).max(1);
    let timeout = match kind {
        CheckKind::Ping => checktimeout.saturating_mul(checkcount),
        CheckKind::Connect | CheckKind::External | CheckKind::Ldap | CheckKind::Ldaps | CheckKind::Radius => {
            checktimeout
        }
        _ => negotiatetimeout,
    };
    let port = v.checkport_for(r).unwrap_or(0);
    let mut spec = CheckSpec::new(kind, SocketAddr::new(rip, port), timeout);
    spec.transport = if udp { Transport::Udp } else { Transport::Tcp };
    spec.request = v.request_for(r).to_string();
    let pattern = v.receive_for(r);
    spec.receive = if pattern.is_empty() {
        None
    } else {
        Some(
            Receive::new(pattern)
                .map_err(|e| SpecError::Receive { pattern: pattern.to_string(), message: e.to_string() })?,
        )
    };
    spec.virtualhost = v.virtualhost.clone();
    spec.httpmethod = v.httpmethod;
    let host = local_hostname();
    spec.login = v.effective_login(host);
    spec.passwd = v.effective_passwd(host);
    spec.database = v.database.clone().unwrap_or_default();
    spec.secret = v.secret.clone().unwrap_or_default();
    spec.attempts = if kind == CheckKind::Ping { checkcount } else { 1 };
    spec.combined = combined;
    if kind == CheckKind::External {
        let args = vec![vip_text(v), v.port().to_string(), ip_text(rip), r.port.unwrap_or(0).to_string()];
        spec.command = Some(if v.checktype == CheckType::ExternalPerl {
            // ldirectord evaluates the file inside its own Perl; a separate perl running the
            // same file with the same @ARGV gives the same verdict through its exit status.
            let mut all = vec![v.checkcommand.clone()];
            all.extend(args);
            Command { program: "perl".to_string(), args: all }
        } else {
            Command { program: v.checkcommand.clone(), args }
        });
    }
    Ok(spec)
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

/// ldirectord's `_check_real` dispatch on `service`.
fn negotiate_kind(service: Service) -> CheckKind {
    match service {
        Service::Dns => CheckKind::Dns,
        Service::Ftp => CheckKind::Ftp,
        Service::Http => CheckKind::Http,
        Service::Https => CheckKind::Https,
        Service::HttpProxy => CheckKind::HttpProxy,
        Service::Imap => CheckKind::Imap,
        Service::Imaps => CheckKind::Imaps,
        Service::Ldap => CheckKind::Ldap,
        Service::Ldaps => CheckKind::Ldaps,
        Service::Mysql => CheckKind::Mysql,
        Service::Nntp => CheckKind::Nntp,
        Service::None => CheckKind::On,
        Service::Oracle => CheckKind::Oracle,
        Service::Pgsql => CheckKind::Pgsql,
        Service::Pop => CheckKind::Pop,
        Service::Pops => CheckKind::Pops,
        Service::Radius => CheckKind::Radius,
        Service::Simpletcp => CheckKind::Simpletcp,
        Service::Sip => CheckKind::Sip,
        Service::Smtp | Service::Submission => CheckKind::Smtp,
    }
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// The VIP argument of an external check: the address as ldirectord writes it, the mark of a
/// fwmark service, or the host name as written (resolution belongs to the runtime).
fn vip_text(v: &VirtualService) -> String {
    match &v.addr {
        VirtualAddr::Ip { ip, .. } => ip_text(*ip),
        VirtualAddr::Host { name, .. } => name.clone(),
        VirtualAddr::Fwmark(m) => m.to_string(),
    }
}

/// This host's name, for the ftp password and sip login defaults and SMTP's EHLO.
pub(crate) fn local_hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| {
                !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            })
            .unwrap_or_else(|| "localhost".to_string())
    })
}
