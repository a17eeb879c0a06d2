//! Health checks of real servers: ldirectord's check types and negotiate protocols (spec §7.4)
//! as asynchronous tasks, thousands at once on one tokio runtime (a `current_thread` runtime is
//! enough: nothing here blocks a thread or needs `rt-multi-thread`).
//!
//! The model (user-pains item 6: one written model, no surprises):
//!
//! * A [`CheckSpec`] says what to check: the kind, the real server's `ip:checkport`, the
//!   request and the `receive` pattern, and a **total deadline** ([`CheckSpec::timeout`]) that
//!   covers everything — connect, TLS handshake, every command and every byte of the answer.
//!   [`spec_for`] builds one from ldirectord.cf's model with ldirectord's rules (checkport,
//!   default request, service by port, `checktimeout`/`negotiatetimeout` resolution, connect
//!   on UDP is a ping, combined `checktype=N`).
//! * [`run_check`] runs it once and returns a [`CheckResult`]: up or down, a one-line reason
//!   and how long it took. It never panics on what a server sends and never reads more than
//!   [`MAX_READ`] bytes of an answer.
//! * [`Health`] turns results into a state per real server: down after `fall` consecutive
//!   failures (ldirectord's `failurecount`, "Soft failure n/N" before that), up after `rise`
//!   consecutive successes (1 in ldirectord), the last results kept for status.
//! * [`Checker`] joins the two for one real server, including the alternation of connect and
//!   negotiate checks of `checktype=N`.
//! * [`pace`] says when checks run: each real server once per `checkinterval` at a stable
//!   phase of its own, spread over the interval, with a cap on the checks in flight;
//!   [`pace::drive`] runs a virtual service's checks that way (halo's director does).
//!
//! Implemented: `connect`, `external`, `external-perl` (run by `perl`), `ping` (ICMP echo),
//! `on`, `off`, and the negotiate services `http`, `https`, `http_proxy`, `simpletcp`, `ftp`,
//! `smtp`/`submission`, `pop`, `pops`, `imap`, `imaps`, `nntp`, `dns`, `sip`, `ldap`,
//! `ldaps`, `mysql`, `pgsql`, `radius`, `oracle` (at the TNS level, see below) and `none`.
//!
//! `oracle` is checked at the TNS level only: a TNS CONNECT to the real server's listener
//! for `database` (as a SID, as ldirectord's DBD::Oracle DSN asks, then as a service name),
//! up on ACCEPT or REDIRECT, down on REFUSE with the listener's ORA error. That shows the
//! listener answers and knows the database. ldirectord's login as `login`/`passwd` and its
//! `request` query are **not** done (Oracle's TTC/O5LOGON login is closed and large, and no
//! Oracle server can be installed here to test against); the reason of every oracle check
//! says "TNS level only". `checktype=external` with Oracle's own client is the way to check
//! a login.

mod connector;
mod crypto;
mod dns;
mod external;
mod ftp;
mod health;
mod http;
mod io;
mod ldap;
mod mail;
mod oracle;
pub mod pace;
mod ping;
mod radius;
mod sip;
mod spec;
mod sql;
mod tcp;
mod tls;

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use halo_config::ldirectord_cf::HttpMethod;
pub use health::{Checker, Health, HealthPolicy, Transition};
pub use spec::{spec_for, spec_for_addr, SpecError};

/// Most bytes a check reads from one answer (an HTTP body, an FTP file, a simpletcp reply).
/// Longer answers are cut there, and the pattern is matched against the first `MAX_READ` bytes.
pub const MAX_READ: usize = 64 * 1024;

/// What a check speaks. The names are ldirectord's (`checktype` values and `service` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// TCP connect within the deadline.
    Connect,
    /// HTTP/1.1 `httpmethod` of `request`; up iff the status is 2xx and the body matches.
    Http,
    /// [`CheckKind::Http`] over TLS, without certificate verification (ldirectord's
    /// `verify_hostname => 0`).
    Https,
    /// The real server is an HTTP proxy: `request` is an absolute URL sent to it.
    HttpProxy,
    /// Send `request` (`\n` written as a newline), shut down the write side, up iff a line of
    /// the answer matches.
    Simpletcp,
    /// Log in, `CWD /`, binary, passive, `RETR request`; up iff the file arrived and matches.
    Ftp,
    /// SMTP (and submission): a 2xx greeting, `EHLO` (or `HELO`) accepted, `QUIT`.
    Smtp,
    /// POP3: `+OK` greeting, and `USER`/`PASS` accepted when a login is set.
    Pop,
    /// [`CheckKind::Pop`] over TLS.
    Pops,
    /// IMAP: `* OK` (or `* PREAUTH`) greeting, and `LOGIN` accepted when a login is set.
    Imap,
    /// [`CheckKind::Imap`] over TLS.
    Imaps,
    /// NNTP: the greeting starts with `2`.
    Nntp,
    /// DNS query of `request` (A, or PTR for an address) to the real server; up iff an A or
    /// PTR answer matches.
    Dns,
    /// SIP `OPTIONS sip:<login>`; up iff the answer is `SIP/2.0 200 OK`.
    Sip,
    /// LDAP simple bind (as `login`/`passwd` when both are set, else anonymous), then a
    /// base-scope search of `request`; up iff one entry comes back and its DN matches.
    Ldap,
    /// [`CheckKind::Ldap`] over TLS.
    Ldaps,
    /// MySQL/MariaDB login as `login`/`passwd` to `database`, then `request`; up iff it
    /// returns at least one row.
    Mysql,
    /// PostgreSQL login (trust, password, md5, SCRAM-SHA-256), then `request`; up iff it
    /// returns at least one row.
    Pgsql,
    /// TNS CONNECT for `database` (SID, then service name); up iff the listener accepts or
    /// redirects. Login and `request` are not checked (TNS level only).
    Oracle,
    /// RADIUS Access-Request for `login`/`passwd` with `secret`; up iff Access-Accept.
    Radius,
    /// Run [`CheckSpec::command`]; up iff it exits 0 before the deadline.
    External,
    /// ICMP echo; up on the first reply of up to [`CheckSpec::attempts`] requests.
    Ping,
    /// No check: always up (`checktype=on`, and `service=none`).
    On,
    /// No check: always down (`checktype=off`: the real servers are never added).
    Off,
}

impl CheckKind {
    pub fn name(self) -> &'static str {
        match self {
            CheckKind::Connect => "connect",
            CheckKind::Http => "http",
            CheckKind::Https => "https",
            CheckKind::HttpProxy => "http_proxy",
            CheckKind::Simpletcp => "simpletcp",
            CheckKind::Ftp => "ftp",
            CheckKind::Smtp => "smtp",
            CheckKind::Pop => "pop",
            CheckKind::Pops => "pops",
            CheckKind::Imap => "imap",
            CheckKind::Imaps => "imaps",
            CheckKind::Nntp => "nntp",
            CheckKind::Dns => "dns",
            CheckKind::Sip => "sip",
            CheckKind::Ldap => "ldap",
            CheckKind::Ldaps => "ldaps",
            CheckKind::Mysql => "mysql",
            CheckKind::Pgsql => "pgsql",
            CheckKind::Oracle => "oracle",
            CheckKind::Radius => "radius",
            CheckKind::External => "external",
            CheckKind::Ping => "ping",
            CheckKind::On => "on",
            CheckKind::Off => "off",
        }
    }
}

impl fmt::Display for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Transport of the checks that can use either (dns, sip, simpletcp): the virtual service's
/// protocol, as in ldirectord (`fwm` services are checked over TCP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    #[default]
    Tcp,
    Udp,
}

/// A compiled `receive` pattern. It is matched against bytes (bodies need not be UTF-8), and
/// unanchored, as Perl's `=~ /$receive/` is; `\w`, `\d` and `.` work on bytes, as in Perl
/// without `use utf8`. Rust's regex syntax has no look-around and no back-references:
/// such patterns are refused when the spec is built.
#[derive(Clone)]
pub struct Receive {
    source: String,
    re: regex::bytes::Regex,
}

impl Receive {
    /// Compiles `pattern`. The compiled size is capped, so a hostile or mistaken pattern cannot
    /// take the memory of the director.
    pub fn new(pattern: &str) -> Result<Receive, regex::Error> {
        let build = |unicode: bool| {
            regex::bytes::RegexBuilder::new(pattern)
                .unicode(unicode)
                .size_limit(1 << 20)
                .dfa_size_limit(1 << 20)
                .build()
        };
        // Byte semantics first (Perl's); Unicode classes such as \p{L} need the Unicode mode.
        let re = build(false).or_else(|_| build(true))?;
        Ok(Receive { source: pattern.to_string(), re })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, bytes: &[u8]) -> bool {
        self.re.is_match(bytes)
    }
}

impl fmt::Debug for Receive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Receive({:?})", self.source)
    }
}

/// A program and its arguments, run without a shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub program: String,
    pub args: Vec<String>,
}

/// `checktype=N`: after a successful negotiate check, `connects` connect checks (with
/// `connect_timeout`, ldirectord's checktimeout) before the next negotiate check; any
/// failure of a connect check makes the next check a negotiate one. See [`Checker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Combined {
    pub connects: u32,
    pub connect_timeout: Duration,
}

/// Everything one check needs. Build it with [`spec_for`] from ldirectord.cf, or with
/// [`CheckSpec::new`] and the public fields.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    pub kind: CheckKind,
    /// The real server's address and check port. The ping check ignores the port.
    pub target: SocketAddr,
    /// Total deadline for the whole check, connect included. For ping it covers every
    /// attempt.
    pub timeout: Duration,
    /// dns, sip and simpletcp: TCP or UDP.
    pub transport: Transport,
    /// As written in ldirectord.cf; a leading `/` is optional everywhere (ldirectord adds one
    /// and each check strips it again). http/https: the path (an absolute `http://…` URL is
    /// reduced to its path: the check always asks the real server itself); http_proxy: the
    /// absolute URL asked of the proxy; ftp: the file to `RETR`; dns: the name, or an address
    /// for a PTR query; simpletcp: the bytes sent, `\n` written as a newline.
    pub request: String,
    /// `None`: any successful answer (ldirectord's empty `receive`).
    pub receive: Option<Receive>,
    /// HTTP `Host` header (default: the real server's address) and TLS server name (SNI is
    /// sent only when this is a DNS name).
    pub virtualhost: Option<String>,
    pub httpmethod: HttpMethod,
    /// ftp, pop, imap: user (ftp default `anonymous`); sip: the `OPTIONS` target.
    pub login: String,
    pub passwd: String,
    /// mysql, pgsql: the database (empty: the server's default for the login); oracle: the
    /// SID or service name asked of the listener.
    pub database: String,
    /// radius: the shared secret.
    pub secret: String,
    /// External checks: the command and its arguments (`VIP VPORT RIP RPORT` for ldirectord).
    pub command: Option<Command>,
    /// Ping: echo requests sent (one after the other, each with an equal share of the
    /// deadline) before giving up. At least 1.
    pub attempts: u32,
    /// `checktype=N`, used by [`Checker`]; [`run_check`] ignores it.
    pub combined: Option<Combined>,
}

impl CheckSpec {
    /// A spec with ldirectord's defaults: request `/`, any answer, GET, one attempt.
    pub fn new(kind: CheckKind, target: SocketAddr, timeout: Duration) -> CheckSpec {
        CheckSpec {
            kind,
            target,
            timeout,
            transport: Transport::Tcp,
            request: "/".to_string(),
            receive: None,
            virtualhost: None,
            httpmethod: HttpMethod::Get,
            login: String::new(),
            passwd: String::new(),
            database: String::new(),
            secret: String::new(),
            command: None,
            attempts: 1,
            combined: None,
        }
    }

    /// Sets `receive` from a pattern; an empty pattern means any answer.
    pub fn with_receive(mut self, pattern: &str) -> Result<CheckSpec, regex::Error> {
        self.receive = if pattern.is_empty() { None } else { Some(Receive::new(pattern)?) };
        Ok(self)
    }

    pub fn with_request(mut self, request: &str) -> CheckSpec {
        self.request = request.to_string();
        self
    }

    /// `request` without the leading `/` ldirectord adds.
    pub(crate) fn request_body(&self) -> &str {
        self.request.strip_prefix('/').unwrap_or(&self.request)
    }

    /// True when `bytes` match `receive` (always, without a pattern).
    pub(crate) fn receive_matches(&self, bytes: &[u8]) -> bool {
        self.receive.as_ref().is_none_or(|r| r.is_match(bytes))
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub kind: CheckKind,
    pub up: bool,
    /// One line: what was seen (`HTTP 200 OK`, `connect: Connection refused`, `no answer
    /// within the 5s deadline`, ...). Server text in it is cut short and made printable.
    pub reason: String,
    pub duration: Duration,
}

/// Up with a reason, or down with a reason.
pub(crate) type Outcome = Result<String, String>;

/// Runs one check under its total deadline. Never panics on what the server sends.
pub async fn run_check(spec: &CheckSpec) -> CheckResult {
    let start = Instant::now();
    let outcome = match spec.kind {
        CheckKind::On => Ok("no check (checktype=on or service=none): up by configuration".to_string()),
        CheckKind::Off => {
            Err("checktype=off: real servers of this virtual service are never added".to_string())
        }
        // The external check enforces its own deadline (it must kill the process group
        // first); the outer bound only guards against a command that cannot be reaped.
        CheckKind::External => {
            match tokio::time::timeout(spec.timeout + Duration::from_secs(2), Box::pin(external::check(spec)))
                .await
            {
                Ok(o) => o,
                Err(_) => Err(deadline_message(spec.timeout)),
            }
        }
        _ => match tokio::time::timeout(spec.timeout, dispatch(spec)).await {
            Ok(o) => o,
            Err(_) => Err(deadline_message(spec.timeout)),
        },
    };
    let (up, reason) = match outcome {
        Ok(r) => (true, r),
        Err(r) => (false, r),
    };
    CheckResult { kind: spec.kind, up, reason, duration: start.elapsed() }
}

/// connect and http run in place; the other checks are boxed, so that the future of every
/// check (moved into its task when the director spawns it) is the size of an http check, not
/// of the largest protocol's state (8.5 KiB, copied on every check).
async fn dispatch(spec: &CheckSpec) -> Outcome {
    match spec.kind {
        CheckKind::Connect => tcp::connect(spec).await,
        CheckKind::Http | CheckKind::Https | CheckKind::HttpProxy => http::check(spec).await,
        CheckKind::Simpletcp => Box::pin(tcp::simpletcp(spec)).await,
        CheckKind::Ftp => Box::pin(ftp::check(spec)).await,
        CheckKind::Smtp => Box::pin(mail::smtp(spec)).await,
        CheckKind::Pop | CheckKind::Pops => Box::pin(mail::pop(spec)).await,
        CheckKind::Imap | CheckKind::Imaps => Box::pin(mail::imap(spec)).await,
        CheckKind::Nntp => Box::pin(mail::nntp(spec)).await,
        CheckKind::Dns => Box::pin(dns::check(spec)).await,
        CheckKind::Sip => Box::pin(sip::check(spec)).await,
        CheckKind::Ldap | CheckKind::Ldaps => Box::pin(ldap::check(spec)).await,
        CheckKind::Mysql => Box::pin(sql::mysql(spec)).await,
        CheckKind::Pgsql => Box::pin(sql::pgsql(spec)).await,
        CheckKind::Oracle => Box::pin(oracle::check(spec)).await,
        CheckKind::Radius => Box::pin(radius::check(spec)).await,
        CheckKind::Ping => Box::pin(ping::check(spec)).await,
        CheckKind::External => Box::pin(external::check(spec)).await,
        CheckKind::On => Ok(String::new()),
        CheckKind::Off => Err("checktype=off".to_string()),
    }
}

fn deadline_message(timeout: Duration) -> String {
    format!("no complete answer within the {} deadline", fmt_duration(timeout))
}

/// `5s`, `1.5s`, `250ms`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.3}s", d.as_secs_f64())
    }
}

/// Server text for a reason: at most 120 characters, control characters escaped.
pub(crate) fn printable(bytes: &[u8]) -> String {
    const MAX: usize = 120;
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
