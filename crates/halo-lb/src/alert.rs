//! Alerts on changes of real servers: ldirectord's e-mail alerts (`emailalert`,
//! `emailalertfreq`, `emailalertstatus`, `emailalertfrom`, `smtp`) and halo's `alertcommand`.
//!
//! ldirectord's rules (`ld_emailalert_send`, `ld_emailalert_resend`), kept here as pure
//! bookkeeping in [`Alerter`] (time passed in):
//! * every change of a real server is an alert whose subject is ldirectord's log line
//!   (`Deleted real server: RIP:PORT (VIP:PORT)`, `Quiescent real server: … (Weight set to 0)`,
//!   `Added real server: … (Weight set to W)`, `Purged real server (stop): …`);
//! * a mail is sent only if the daemon's state (`starting`, `running`, `stopping`,
//!   `reloading`) is in the service's `emailalertstatus` and `emailalert` is not empty;
//! * a real server taken out (deleted or quiesced) is remembered with the time of its alert;
//!   while it stays out, `Inaccessible real server: RIP:PORT (VIP:PORT)` is sent again every
//!   `emailalertfreq` seconds (0: never) — [`Alerter::resend`], called once per check round
//!   as ldirectord does; its coming back or its purge forgets it;
//! * the mail (ldirectord's Net::SMTP path): envelope and `From:` `user@host` (or
//!   `emailalertfrom`), `To:` the list, `Subject:` the alert, and the body
//!   `ldirectord host: H` / `Log-Message: SUBJECT` / `Daemon-Status: STATE`.
//!
//! Without an `smtp` directive ldirectord hands the mail to the local mailer (Mail::Send);
//! halo speaks SMTP to `localhost`, port 25, which is where a local MTA listens. `smtp` names
//! the host; the port is always 25 (ldirectord reads only a host name there).
//!
//! [`send_mail`] is a small SMTP client (EHLO, falling back to HELO; MAIL FROM; RCPT TO for
//! each address; DATA with dot-stuffing; QUIT) under one deadline; [`run_command`] runs the
//! `alertcommand` with the change in its environment ([`Event::env`]). Both are async: the
//! runtime runs them on a task of their own, one alert after the other, never in the way of
//! the checks.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use halo_config::ldirectord_cf::{DaemonStatus, Globals, VirtualService};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::time::Instant;

/// SMTP port (ldirectord's Net::SMTP default; its `smtp` directive names only a host).
pub const SMTP_PORT: u16 = 25;

/// The SMTP server when `smtp` is not set.
pub const DEFAULT_SMTP: &str = "localhost";

/// Longest a mail or an alert command may take.
pub const ALERT_TIMEOUT: Duration = Duration::from_secs(30);

/// The e-mail settings of one virtual service (its own, else the global ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSettings {
    /// `emailalert`: empty means no mail.
    pub to: Vec<String>,
    /// `emailalertfreq` in seconds: 0 means no repeat.
    pub freq: u32,
    /// `emailalertstatus`: empty is `none`.
    pub status: Vec<DaemonStatus>,
    /// `smtp`: the server's host name or address.
    pub smtp: Option<String>,
    /// `emailalertfrom` (global only).
    pub from: Option<String>,
}

impl MailSettings {
    /// The global settings (for a virtual service that has none of its own, or no longer
    /// exists).
    pub fn global(g: &Globals) -> MailSettings {
        MailSettings {
            to: g.emailalert.clone(),
            freq: g.emailalertfreq,
            status: g.emailalertstatus.clone(),
            smtp: g.smtp.clone(),
            from: g.emailalertfrom.clone(),
        }
    }

    pub fn for_virtual(v: &VirtualService, g: &Globals) -> MailSettings {
        MailSettings {
            to: v.effective_emailalert(g).to_vec(),
            freq: v.effective_emailalertfreq(g),
            status: v.effective_emailalertstatus(g).to_vec(),
            smtp: v.effective_smtp(g).map(str::to_string),
            from: g.emailalertfrom.clone(),
        }
    }
}

/// What happened to a real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Put in the table at its weight (it came up).
    Added,
    /// Taken out of the table (it went down, `quiescent=no`).
    Deleted,
    /// Kept at weight 0 (it went down, `quiescent=yes`).
    Quiescent,
    /// Removed because the director stops or its configuration no longer has it.
    Purged,
    /// Still out, `emailalertfreq` after the last alert (mail only).
    Inaccessible,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Added => "added",
            EventKind::Deleted => "deleted",
            EventKind::Quiescent => "quiescent",
            EventKind::Purged => "purged",
            EventKind::Inaccessible => "inaccessible",
        }
    }
}

/// One change of a real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// `VIP:PORT` of the virtual service.
    pub virtual_service: String,
    /// ldirectord's id of the virtual service (`tcp:VIP:PORT`).
    pub service_id: String,
    pub real: SocketAddr,
    /// `up` or `down` before and after.
    pub old_state: &'static str,
    pub new_state: &'static str,
    /// Its weight in the table after the change (`None`: not in the table).
    pub weight: Option<u32>,
    /// ldirectord's log line for the change; the mail's subject.
    pub message: String,
    /// Why (the last check's reason, the maintenance file, the reload).
    pub reason: String,
    /// The fallback (sorry) server rather than a real server: added when the last real
    /// server went down, deleted when one came back. Never repeated.
    pub fallback: bool,
}

impl Event {
    /// The real server as ldirectord names it in alerts: `RIP:PORT (VIP:PORT)`.
    pub fn id(&self) -> String {
        format!("{} ({})", self.real, self.virtual_service)
    }

    /// The environment of the alert command.
    pub fn env(&self, status: DaemonStatus, config: &str) -> Vec<(String, String)> {
        let pairs = [
            ("HALO_ALERT_EVENT", self.kind.name().to_string()),
            ("HALO_ALERT_VIRTUAL", self.virtual_service.clone()),
            ("HALO_ALERT_SERVICE_ID", self.service_id.clone()),
            ("HALO_ALERT_REAL", self.real.to_string()),
            ("HALO_ALERT_ROLE", if self.fallback { "fallback" } else { "real" }.to_string()),
            ("HALO_ALERT_OLD_STATE", self.old_state.to_string()),
            ("HALO_ALERT_NEW_STATE", self.new_state.to_string()),
            ("HALO_ALERT_WEIGHT", self.weight.map(|w| w.to_string()).unwrap_or_default()),
            ("HALO_ALERT_MESSAGE", self.message.clone()),
            ("HALO_ALERT_REASON", self.reason.clone()),
            ("HALO_ALERT_DAEMON_STATUS", status.name().to_string()),
            ("HALO_ALERT_CONFIG", config.to_string()),
        ];
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// A mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// SMTP server host (port [`SMTP_PORT`]).
    pub server: String,
    pub to: Vec<String>,
    pub from: Option<String>,
    pub subject: String,
    pub status: DaemonStatus,
}

/// ldirectord's `%EMAILSTATUS`: the real servers out of the table, for repeated alerts.
#[derive(Debug, Clone, Default)]
pub struct Alerter {
    out: BTreeMap<String, (Instant, Event, MailSettings)>,
}

impl Alerter {
    pub fn new() -> Alerter {
        Alerter::default()
    }

    /// Takes `event` into account; the mail to send for it, if any.
    pub fn event(
        &mut self,
        event: &Event,
        s: &MailSettings,
        status: DaemonStatus,
        now: Instant,
    ) -> Option<Mail> {
        let id = event.id();
        let tracked = !event.fallback
            && matches!(event.kind, EventKind::Deleted | EventKind::Quiescent | EventKind::Inaccessible);
        if tracked && s.freq > 0 {
            self.out.insert(id, (now, event.clone(), s.clone()));
        } else {
            self.out.remove(&id);
        }
        mail_for(&event.message, s, status)
    }

    /// The repeated alerts due at `now` (ldirectord's `ld_emailalert_resend`).
    pub fn resend(&mut self, status: DaemonStatus, now: Instant) -> Vec<Mail> {
        let due: Vec<String> = self
            .out
            .iter()
            .filter(|(_, (t, _, s))| {
                now.saturating_duration_since(*t) >= Duration::from_secs(u64::from(s.freq))
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut mails = Vec::new();
        for id in due {
            let Some((t, ev, s)) = self.out.get_mut(&id) else { continue };
            *t = now;
            let subject = format!("Inaccessible real server: {}", ev.id());
            mails.extend(mail_for(&subject, s, status));
        }
        mails
    }

    /// Forgets the real servers of services no longer configured (`keep` says which stay).
    pub fn retain(&mut self, keep: impl Fn(&Event) -> bool) {
        self.out.retain(|_, (_, e, _)| keep(e));
    }

    /// Real servers awaiting a repeated alert.
    pub fn pending(&self) -> usize {
        self.out.len()
    }
}

fn mail_for(subject: &str, s: &MailSettings, status: DaemonStatus) -> Option<Mail> {
    if !s.status.contains(&status) || s.to.is_empty() {
        return None;
    }
    Some(Mail {
        server: s.smtp.clone().unwrap_or_else(|| DEFAULT_SMTP.to_string()),
        to: s.to.clone(),
        from: s.from.clone(),
        subject: subject.to_string(),
        status,
    })
}

/// This host's name and the daemon's user, for `user@host`.
pub fn sender_identity() -> (String, String) {
    let host = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let host = if host.is_empty() { "localhost".to_string() } else { host };
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".to_string());
    (user, host)
}

/// The message text (headers and body, `\r\n` line ends, not dot-stuffed).
pub fn message_text(mail: &Mail, user: &str, host: &str) -> String {
    let from = mail.from.clone().unwrap_or_else(|| format!("{user}@{host}"));
    format!(
        "From: {from}\r\nTo: {}\r\nSubject: {}\r\n\r\nldirectord host: {host}\r\nLog-Message: {}\r\nDaemon-Status: {}\r\n",
        mail.to.join(", "),
        clean_header(&mail.subject),
        clean_header(&mail.subject),
        mail.status.name()
    )
}

/// No line break can reach a header from a real server's check reason.
fn clean_header(s: &str) -> String {
    s.chars().map(|c| if c == '\r' || c == '\n' { ' ' } else { c }).collect()
}

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum SmtpError {
    #[error("SMTP server {server}: {why}")]
    Connect { server: String, why: String },
    #[error("SMTP server {server}: after {after}: {reply}")]
    Refused { server: String, after: String, reply: String },
    #[error("SMTP server {server}: {why}")]
    Io { server: String, why: String },
    #[error("SMTP server {server}: no answer within {secs} s")]
    Timeout { server: String, secs: u64 },
}

/// Sends `mail` to its server (port `port`, [`SMTP_PORT`] in service) within `timeout`.
pub async fn send_mail(mail: &Mail, port: u16, timeout: Duration) -> Result<(), SmtpError> {
    let server = format!("{}:{port}", mail.server);
    match tokio::time::timeout(timeout, smtp_session(mail, port)).await {
        Ok(r) => r,
        Err(_) => Err(SmtpError::Timeout { server, secs: timeout.as_secs() }),
    }
}

async fn smtp_session(mail: &Mail, port: u16) -> Result<(), SmtpError> {
    let server = format!("{}:{port}", mail.server);
    let stream = tokio::net::TcpStream::connect((mail.server.as_str(), port))
        .await
        .map_err(|e| SmtpError::Connect { server: server.clone(), why: e.to_string() })?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let io = |e: std::io::Error| SmtpError::Io { server: server.clone(), why: e.to_string() };
    let (user, host) = sender_identity();
    let envelope = format!("{user}@{host}");

    expect(&mut r, &server, "connecting", &[220]).await?;
    w.write_all(format!("EHLO {host}\r\n").as_bytes()).await.map_err(io)?;
    if expect(&mut r, &server, "EHLO", &[250]).await.is_err() {
        w.write_all(format!("HELO {host}\r\n").as_bytes()).await.map_err(io)?;
        expect(&mut r, &server, "HELO", &[250]).await?;
    }
    w.write_all(format!("MAIL FROM:<{envelope}>\r\n").as_bytes()).await.map_err(io)?;
    expect(&mut r, &server, "MAIL FROM", &[250]).await?;
    for to in &mail.to {
        w.write_all(format!("RCPT TO:<{to}>\r\n").as_bytes()).await.map_err(io)?;
        expect(&mut r, &server, &format!("RCPT TO:<{to}>"), &[250, 251]).await?;
    }
    w.write_all(b"DATA\r\n").await.map_err(io)?;
    expect(&mut r, &server, "DATA", &[354]).await?;
    let data = data_block(&message_text(mail, &user, &host));
    w.write_all(data.as_bytes()).await.map_err(io)?;
    expect(&mut r, &server, "the message", &[250]).await?;
    w.write_all(b"QUIT\r\n").await.map_err(io)?;
    // The mail is accepted; a server that drops the line instead of answering QUIT is fine.
    let _ = read_reply(&mut r).await;
    Ok(())
}

/// The DATA block for `text` (CRLF lines): lines starting with `.` doubled (RFC 5321
/// 4.5.2), ended by `.` alone on a line.
fn data_block(text: &str) -> String {
    let mut data = String::new();
    for line in text.strip_suffix("\r\n").unwrap_or(text).split("\r\n") {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    data
}

async fn expect<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    server: &str,
    after: &str,
    ok: &[u16],
) -> Result<u16, SmtpError> {
    let (code, text) =
        read_reply(r).await.map_err(|e| SmtpError::Io { server: server.to_string(), why: e.to_string() })?;
    if ok.contains(&code) {
        Ok(code)
    } else {
        Err(SmtpError::Refused { server: server.to_string(), after: after.to_string(), reply: text })
    }
}

/// One SMTP reply (multi-line `250-…` continued until `250 …`): its code and text.
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<(u16, String)> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        // A line longer than this is not SMTP: a cap so a hostile server cannot fill memory.
        let n = (&mut *r).take(4096).read_line(&mut line).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        let line = line.trim_end();
        text.push_str(line);
        let code = line.get(..3).and_then(|c| c.parse::<u16>().ok()).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not an SMTP reply: {line:?}"))
        })?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push(' ');
        if text.len() > 65536 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "reply too long"));
        }
    }
}

/// Runs `command` through `sh -c` with `env` added, within `timeout` (killed after it).
/// Returns how it ended.
pub async fn run_command(command: &str, env: &[(String, String)], timeout: Duration) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("cannot run {command}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Err(_) => Err(format!("{command}: killed after {} s", timeout.as_secs())),
        Ok(Err(e)) => Err(format!("{command}: {e}")),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            let err = err.trim();
            Err(format!(
                "{command}: {}{}",
                out.status,
                if err.is_empty() { String::new() } else { format!(": {err}") }
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn settings(freq: u32, status: &[DaemonStatus]) -> MailSettings {
        MailSettings {
            to: vec!["ops@example.org".into()],
            freq,
            status: status.to_vec(),
            smtp: None,
            from: None,
        }
    }

    fn event(kind: EventKind) -> Event {
        Event {
            kind,
            virtual_service: "10.0.0.1:80".into(),
            service_id: "tcp:10.0.0.1:80".into(),
            real: SocketAddr::from((Ipv4Addr::new(10, 0, 0, 2), 80)),
            old_state: "up",
            new_state: "down",
            weight: None,
            message: "Deleted real server: 10.0.0.2:80 (10.0.0.1:80)".into(),
            reason: "refused".into(),
            fallback: false,
        }
    }

    #[test]
    fn alerts_follow_the_status_filter_and_repeat_while_out() {
        let t0 = Instant::now();
        let s = settings(60, &DaemonStatus::ALL);
        let mut a = Alerter::new();
        let m = a.event(&event(EventKind::Deleted), &s, DaemonStatus::Running, t0).expect("mailed");
        assert_eq!(m.subject, "Deleted real server: 10.0.0.2:80 (10.0.0.1:80)");
        assert_eq!(m.server, "localhost");
        assert!(a.resend(DaemonStatus::Running, t0 + Duration::from_secs(59)).is_empty());
        let r = a.resend(DaemonStatus::Running, t0 + Duration::from_secs(60));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].subject, "Inaccessible real server: 10.0.0.2:80 (10.0.0.1:80)");
        assert!(a.resend(DaemonStatus::Running, t0 + Duration::from_secs(100)).is_empty(), "once per freq");
        assert_eq!(a.resend(DaemonStatus::Running, t0 + Duration::from_secs(120)).len(), 1);
        // A fallback server's deletion is never repeated.
        let fb = Event { fallback: true, ..event(EventKind::Deleted) };
        assert!(a.event(&fb, &s, DaemonStatus::Running, t0).is_some());
        assert_eq!(a.pending(), 0, "{a:?}");
        a.event(&event(EventKind::Deleted), &s, DaemonStatus::Running, t0);
        // Back up: forgotten.
        a.event(&event(EventKind::Added), &s, DaemonStatus::Running, t0);
        assert_eq!(a.pending(), 0);
        // Filtered by status (still tracked, as ldirectord does), and freq 0 never repeats.
        let only_stop = settings(0, &[DaemonStatus::Stopping]);
        assert!(a.event(&event(EventKind::Deleted), &only_stop, DaemonStatus::Running, t0).is_none());
        assert_eq!(a.pending(), 0);
        assert!(a.event(&event(EventKind::Purged), &only_stop, DaemonStatus::Stopping, t0).is_some());
        let none = settings(10, &[]);
        assert!(a.event(&event(EventKind::Deleted), &none, DaemonStatus::Running, t0).is_none());
        assert_eq!(a.pending(), 1, "tracked even when not mailed");
        assert!(a.resend(DaemonStatus::Running, t0 + Duration::from_secs(10)).is_empty());
    }

    #[test]
    fn message_is_ldirectords() {
        let m = Mail {
            server: "mx".into(),
            to: vec!["a@b".into(), "c@d".into()],
            from: None,
            subject: "Deleted real server: 10.0.0.2:80 (10.0.0.1:80)\r\nBcc: x@y".into(),
            status: DaemonStatus::Running,
        };
        let t = message_text(&m, "root", "lb1");
        assert_eq!(
            t,
            "From: root@lb1\r\nTo: a@b, c@d\r\nSubject: Deleted real server: 10.0.0.2:80 (10.0.0.1:80)  Bcc: x@y\r\n\r\n\
             ldirectord host: lb1\r\nLog-Message: Deleted real server: 10.0.0.2:80 (10.0.0.1:80)  Bcc: x@y\r\n\
             Daemon-Status: running\r\n"
        );
    }

    /// A scripted SMTP server on loopback: answers each command line with the next reply
    /// `reply(line)` gives, records the session.
    async fn server(reply: fn(&str) -> &'static str) -> (u16, tokio::task::JoinHandle<String>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let (c, _) = l.accept().await.expect("accept");
            let (r, mut w) = c.into_split();
            let mut r = BufReader::new(r);
            let mut seen = String::new();
            w.write_all(b"220-test\r\n220 ready\r\n").await.expect("greet");
            let mut in_data = false;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    return seen;
                }
                seen.push_str(&line);
                if in_data {
                    if line == ".\r\n" {
                        in_data = false;
                        w.write_all(b"250 queued\r\n").await.expect("write");
                    }
                    continue;
                }
                let answer = reply(line.trim_end());
                in_data = answer.starts_with("354");
                w.write_all(answer.as_bytes()).await.expect("write");
                if line.starts_with("QUIT") {
                    return seen;
                }
            }
        });
        (port, task)
    }

    fn mail() -> Mail {
        Mail {
            server: "127.0.0.1".into(),
            to: vec!["a@example.org".into(), "b@example.org".into()],
            from: Some("\"LB\" <lb@example.org>".into()),
            subject: ".starts with a dot".into(),
            status: DaemonStatus::Running,
        }
    }

    #[test]
    fn smtp_client_speaks_ehlo_or_helo_and_reports_refusals() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            // An old server: EHLO refused, HELO accepted.
            let (port, task) = server(|l| {
                if l.starts_with("EHLO") {
                    "502 no\r\n"
                } else if l == "DATA" {
                    "354 go\r\n"
                } else if l == "QUIT" {
                    "221 bye\r\n"
                } else {
                    "250-fine\r\n250 ok\r\n"
                }
            })
            .await;
            send_mail(&mail(), port, Duration::from_secs(5)).await.expect("sent");
            let seen = task.await.expect("server");
            let lines: Vec<&str> = seen.split("\r\n").collect();
            assert!(lines[0].starts_with("EHLO ") && lines[1].starts_with("HELO "), "{seen}");
            assert!(lines[2].starts_with("MAIL FROM:<") && lines[2].ends_with(">"), "{seen}");
            assert_eq!(lines[3..6], ["RCPT TO:<a@example.org>", "RCPT TO:<b@example.org>", "DATA"]);
            assert!(seen.contains("\r\nFrom: \"LB\" <lb@example.org>\r\n"), "{seen}");
            assert!(seen.contains("\r\nSubject: .starts with a dot\r\n"), "{seen}");
            assert!(seen.ends_with("Daemon-Status: running\r\n.\r\nQUIT\r\n"), "{seen}");

            // A refused recipient is an error that says which and why; the other servers'
            // errors are errors too (nothing listening, silence).
            let (port, _task) =
                server(|l| if l.starts_with("RCPT") { "550 no such user\r\n" } else { "250 ok\r\n" }).await;
            let e = send_mail(&mail(), port, Duration::from_secs(5)).await.expect_err("refused");
            assert!(e.to_string().contains("after RCPT TO:<a@example.org>: 550 no such user"), "{e}");
            let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = closed.local_addr().expect("addr").port();
            drop(closed);
            assert!(matches!(
                send_mail(&mail(), port, Duration::from_secs(5)).await,
                Err(SmtpError::Connect { .. })
            ));
            let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let port = silent.local_addr().expect("addr").port();
            let e = send_mail(&mail(), port, Duration::from_millis(300)).await.expect_err("timeout");
            assert!(matches!(e, SmtpError::Timeout { .. }), "{e}");
            drop(silent);
        });
    }

    #[test]
    fn data_block_stuffs_dots() {
        assert_eq!(data_block("a\r\n.b\r\n..\r\n"), "a\r\n..b\r\n...\r\n.\r\n");
        assert_eq!(data_block("x"), "x\r\n.\r\n");
    }

    #[test]
    fn alert_command_gets_the_event_in_its_environment() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let ev = event(EventKind::Deleted);
            let env = ev.env(DaemonStatus::Running, "/etc/ha.d/ldirectord.cf");
            let ok = run_command(
                "test \"$HALO_ALERT_EVENT $HALO_ALERT_REAL $HALO_ALERT_VIRTUAL $HALO_ALERT_OLD_STATE $HALO_ALERT_NEW_STATE $HALO_ALERT_DAEMON_STATUS\" = \"deleted 10.0.0.2:80 10.0.0.1:80 up down running\"",
                &env,
                Duration::from_secs(5),
            )
            .await;
            assert_eq!(ok, Ok(()));
            let e = run_command("echo oops >&2; exit 3", &env, Duration::from_secs(5)).await.expect_err("fails");
            assert!(e.contains("exit status: 3") && e.contains("oops"), "{e}");
            let e = run_command("sleep 5", &env, Duration::from_millis(200)).await.expect_err("killed");
            assert!(e.contains("killed after"), "{e}");
        });
    }
}
